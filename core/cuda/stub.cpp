// CPU-only build: the CUDA entry points exist and throw, so op code needs no #ifdef and a user who
// asks for --device cuda learns why it cannot work.
#include "core/device_memory.h"
#include "core/error.h"

namespace lowbit {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  LB_FAIL(what, ": this lowbit was built without CUDA (rebuild with `make GPU=1` on a machine with "
          "the CUDA toolkit and cuDNN)");
}
}  // namespace

bool cuda_available() { return false; }
void* cuda_alloc(size_t) { no_cuda("cuda_alloc"); }
void cuda_free(void*, size_t) {}
void cuda_memset_zero(void*, size_t) { no_cuda("cuda_memset_zero"); }
void cuda_copy(void*, Device, const void*, Device, size_t) { no_cuda("cuda_copy"); }

}  // namespace lowbit
