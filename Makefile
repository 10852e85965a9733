# lowbit: one entry point. `make` builds build/lowbit; `make test` runs the doctest suite;
# `make demo` trains a small model end to end; `make deps` installs Debian packages;
# SAN=1 builds with ASan+UBSan (into build-san/); GPU=0|1|auto picks the backend (default 0: CPU
# build linking the stub in core/cuda/stub.cpp, whose CUDA entry points throw a clear error; GPU=1
# builds the CUDA backend into build-gpu/ so it never clobbers the CPU build).

SAN ?= 0
GPU ?= 0
OPT ?= -O3 -march=native

CXX ?= g++
ifeq ($(SAN),1)
  BUILD := build-san
  # -march=native as in the normal build, so the AVX2 kernels are the ones sanitized
  OPT := -O1 -g -march=native -fno-omit-frame-pointer -fsanitize=address,undefined \
         -fno-sanitize-recover=undefined
  LDSAN := -fsanitize=address,undefined
else
  BUILD := build
  LDSAN :=
endif

# GPU=auto: the CUDA backend when nvcc and cudnn.h are found, else the CPU build with a message.
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_HOME ?= /usr/local/cuda
ifeq ($(GPU),auto)
  ifneq ($(and $(NVCC),$(wildcard $(CUDA_HOME)/include/cudnn.h)),)
    override GPU := 1
  else
    $(info GPU=auto: nvcc or cudnn.h not found, building the CPU backend)
    override GPU := 0
  endif
endif

# -ffp-contract=off: GCC must not contract a*b+c into an FMA, which METHODS.md asks of the
# quantizer arithmetic (a level must be the written expression's, and the CUDA build's, to the bit);
# kernels that want FMAs use them explicitly. For C++ GCC contracts by default even with an ISO
# -std (only C's -std turns it off): the GPU tests caught LSQ+ levels one ulp off this way.
CXXFLAGS := -std=c++17 $(OPT) -ffp-contract=off -fopenmp -Wall -Wextra -Wno-unused-parameter -I. \
            -I/usr/include/x86_64-linux-gnu/openblas-pthread -MMD -MP
LDLIBS := -fopenmp -lopenblas -lpthread -lm $(LDSAN)

LIB_DIRS := core core/cpu layers quant prune models datasets tools
LIB_SRCS := $(filter-out tools/main.cpp,$(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.cpp)))
# GPU=1: the CUDA backend's own files (core/cuda/*.cu, and core/cuda/*.cpp but the stub) compile
# into build-gpu/ with the CUDA headers; everything else is the CPU build's objects, shared as they
# are (same flags: op code has no #ifdef, so they are byte for byte what GPU=1 would compile), and
# the binaries land in build-gpu/. The CPU build's binaries are never touched, and the GPU build
# costs its CUDA files and a link.
CU_OBJS :=
OUT := $(BUILD)
ifeq ($(GPU),1)
  ifeq ($(NVCC),)
    $(error GPU=1: nvcc not found (looked on PATH and in /usr/local/cuda/bin); build with GPU=0)
  endif
  ifeq ($(wildcard $(CUDA_HOME)/include/cudnn.h),)
    $(error GPU=1: $(CUDA_HOME)/include/cudnn.h not found (cuDNN 9 is needed); build with GPU=0)
  endif
  OUT := $(if $(filter 1,$(SAN)),build-gpu-san,build-gpu)
  CU_SRCS := $(wildcard core/cuda/*.cu)
  CUDA_CPP_SRCS := $(filter-out core/cuda/stub.cpp,$(wildcard core/cuda/*.cpp))
  CU_OBJS := $(CU_SRCS:%.cu=$(OUT)/obj/%.o) $(CUDA_CPP_SRCS:%.cpp=$(OUT)/obj/%.o)
  CUDA_CXXFLAGS := $(CXXFLAGS) -isystem $(CUDA_HOME)/include
  LDLIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lcublas -lcudart
  # sm_90 code for the H100 plus compute_90 PTX that newer GPUs JIT-compile: one arch keeps the
  # build quick. -fmad=false: no a*b+c contraction, so a quantizer level computed on the GPU is
  # the CPU's to the bit (METHODS.md); the few kernels where FMA is harmless lose little.
  NVCCFLAGS := -std=c++17 -O3 -gencode arch=compute_90,code=sm_90 \
               -gencode arch=compute_90,code=compute_90 -fmad=false -I. -MMD -MP \
               -Xcompiler -Wall,-Wextra,-Wno-unused-parameter -Werror all-warnings
else
  LIB_SRCS += core/cuda/stub.cpp
endif
TEST_SRCS := $(wildcard tests/*.cpp)

LIB_OBJS := $(LIB_SRCS:%.cpp=$(BUILD)/obj/%.o)
TEST_OBJS := $(TEST_SRCS:%.cpp=$(BUILD)/obj/%.o)
MAIN_OBJ := $(BUILD)/obj/tools/main.o

.PHONY: all test demo deps clean bench
all: $(OUT)/lowbit

# Objects depend on the flags they were built with: changing OPT (or SAN) rebuilds them.
FLAGS_STAMP := $(BUILD)/.flags
$(shell mkdir -p $(BUILD); echo '$(CXXFLAGS)' | cmp -s - $(FLAGS_STAMP) || echo '$(CXXFLAGS)' > $(FLAGS_STAMP))

$(BUILD)/obj/%.o: %.cpp $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

ifeq ($(GPU),1)
GPU_STAMP := $(OUT)/.flags
$(shell mkdir -p $(OUT); echo '$(CUDA_CXXFLAGS) $(NVCCFLAGS)' | cmp -s - $(GPU_STAMP) || echo '$(CUDA_CXXFLAGS) $(NVCCFLAGS)' > $(GPU_STAMP))
$(OUT)/obj/%.o: %.cu $(GPU_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@
$(OUT)/obj/%.o: %.cpp $(GPU_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CUDA_CXXFLAGS) -c $< -o $@
endif

$(OUT)/lowbit: $(MAIN_OBJ) $(LIB_OBJS) $(CU_OBJS)
	$(CXX) -o $@ $^ $(LDLIBS)

$(OUT)/lowbit_tests: $(TEST_OBJS) $(LIB_OBJS) $(CU_OBJS)
	$(CXX) -o $@ $^ $(LDLIBS)

# TEST_ARGS passes doctest options, e.g. make test TEST_ARGS='-tc="conv2d*"'.
test: $(OUT)/lowbit_tests $(OUT)/lowbit
	LOWBIT_BIN=$(abspath $(OUT)/lowbit) ./$(OUT)/lowbit_tests $(TEST_ARGS)

DEMO_ARGS ?=
demo: deps $(OUT)/lowbit
	./tools/demo.sh $(OUT)/lowbit $(DEMO_ARGS)

bench: $(OUT)/lowbit
	./$(OUT)/lowbit bench --model resnet20 --batch 128 --iters 20

# Installs what is missing from Debian's packages (sudo when not root).
DEB_PKGS := g++ make libopenblas-dev libstb-dev doctest-dev nlohmann-json3-dev libcli11-dev
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "make deps: all packages present"; fi

clean:
	rm -rf build build-san build-gpu build-gpu-san

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(MAIN_OBJ:.o=.d) $(CU_OBJS:.o=.d)
