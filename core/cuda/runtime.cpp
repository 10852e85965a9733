// The GPU build's device runtime: core/device_memory.h for real (a caching allocator, copies on
// the one stream), the stream and library handles, and the error helpers of core/cuda/runtime.h.
// The state here is process-wide on purpose: a device, its stream and its cached blocks belong to
// the process (as in PyTorch's caching allocator); it is created on first use and never destroyed,
// so tensors freed during static destruction still find their allocator.
#include "core/cuda/runtime.h"

#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/cuda/kernels.h"
#include "core/device_memory.h"

namespace lowbit {
namespace cuda {

[[noreturn]] void fail_cuda(const char* op, const char* call, cudaError_t e) {
  LB_FAIL(op, ": ", call, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}
[[noreturn]] void fail_cublas(const char* op, const char* call, cublasStatus_t s) {
  LB_FAIL(op, ": ", call, " failed: cuBLAS status ", (int)s);
}
[[noreturn]] void fail_cudnn(const char* op, const char* call, cudnnStatus_t s) {
  LB_FAIL(op, ": ", call, " failed: ", cudnnGetErrorString(s));
}

namespace {

// Size buckets: powers of two up to 1 MiB, then multiples of 1 MiB. A freed block goes back on its
// bucket's list and the next request of that bucket reuses it, so a training loop (same shapes
// every step) stops calling cudaMalloc after its first step. One stream: a block freed on the host
// can be handed out again at once, since any later use is queued after the last use of the old one.
size_t bucket_of(size_t bytes) {
  const size_t mib = size_t(1) << 20;
  if (bytes > mib) return (bytes + mib - 1) / mib * mib;
  size_t b = 512;
  while (b < bytes) b <<= 1;
  return b;
}

struct Runtime {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
  void* ws = nullptr;
  size_t ws_bytes = 0;

  void release_cached() {
    for (auto& kv : free_blocks)
      for (void* p : kv.second) cudaFree(p);
    free_blocks.clear();
  }
};

Runtime& rt() {
  static Runtime* r = [] {
    LB_CHECK(cuda_available(), "cuda: no CUDA device found (this lowbit was built with CUDA, but "
             "the driver reports no GPU)");
    auto* x = new Runtime();
    LB_CUDA("cuda init", cudaStreamCreateWithFlags(&x->stream, cudaStreamNonBlocking));
    LB_CUBLAS("cuda init", cublasCreate(&x->cublas));
    LB_CUBLAS("cuda init", cublasSetStream(x->cublas, x->stream));
    // Plain float32 GEMMs (no TF32) unless asked: results track the CPU backend.
    LB_CUBLAS("cuda init", cublasSetMathMode(x->cublas, CUBLAS_DEFAULT_MATH));
    LB_CUDNN("cuda init", cudnnCreate(&x->cudnn));
    LB_CUDNN("cuda init", cudnnSetStream(x->cudnn, x->stream));
    return x;
  }();
  return *r;
}

}  // namespace

cudaStream_t stream() { return rt().stream; }
cublasHandle_t cublas() { return rt().cublas; }
cudnnHandle_t cudnn() { return rt().cudnn; }

void* workspace(size_t bytes) {
  Runtime& r = rt();
  if (bytes <= r.ws_bytes) return r.ws;
  if (r.ws) cuda_free(r.ws, r.ws_bytes);
  r.ws = cuda_alloc(bytes);
  r.ws_bytes = bytes;
  return r.ws;
}

}  // namespace cuda

bool cuda_available() {
  static const bool ok = [] {
    int n = 0;
    // No driver or no device both mean "no GPU"; clear the sticky error so later calls are clean.
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return n > 0;
  }();
  return ok;
}

void* cuda_alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  cuda::Runtime& r = cuda::rt();
  const size_t b = cuda::bucket_of(bytes);
  std::lock_guard<std::mutex> lock(r.mu);
  auto& list = r.free_blocks[b];
  if (!list.empty()) {
    void* p = list.back();
    list.pop_back();
    return p;
  }
  void* p = nullptr;
  if (cudaMalloc(&p, b) != cudaSuccess) {
    // Out of memory: give the cached blocks back to the driver and try once more.
    cudaGetLastError();
    LB_CUDA("cuda_alloc", cudaStreamSynchronize(r.stream));
    r.release_cached();
    LB_CUDA("cuda_alloc", cudaMalloc(&p, b));
  }
  return p;
}

void cuda_free(void* p, size_t bytes) {
  if (!p) return;
  cuda::Runtime& r = cuda::rt();
  std::lock_guard<std::mutex> lock(r.mu);
  r.free_blocks[cuda::bucket_of(bytes)].push_back(p);
}

void cuda_memset_zero(void* p, size_t bytes) {
  if (!p || bytes == 0) return;
  LB_CUDA("cuda_memset_zero", cudaMemsetAsync(p, 0, bytes, cuda::stream()));
}

void cuda_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  cudaStream_t s = cuda::stream();
  if (dst_dev == Device::cuda && src_dev == Device::cuda) {
    LB_CUDA("cuda_copy", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
    return;
  }
  // Host memory is pageable: wait for the copy so the caller may reuse or read the host buffer.
  const cudaMemcpyKind kind = dst_dev == Device::cuda ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  LB_CUDA("cuda_copy", cudaMemcpyAsync(dst, src, bytes, kind, s));
  LB_CUDA("cuda_copy", cudaStreamSynchronize(s));
  cuda::poll_checks();
}

void cuda_synchronize() {
  if (!cuda_available()) return;
  LB_CUDA("cuda_synchronize", cudaStreamSynchronize(cuda::stream()));
  cuda::poll_checks();
}

std::string cuda_describe() {
  int rv = 0, dv = 0;
  cudaRuntimeGetVersion(&rv);
  if (cudaDriverGetVersion(&dv) != cudaSuccess) cudaGetLastError();
  std::string s = str_cat("CUDA built in (runtime ", rv / 1000, ".", (rv % 1000) / 10, ", cuDNN ",
                          cudnnGetVersion(), ")");
  if (!cuda_available()) return s + "; no CUDA device found";
  cudaDeviceProp p;
  LB_CUDA("cuda_describe", cudaGetDeviceProperties(&p, 0));
  return str_cat(s, "; device 0: ", p.name, " (sm_", p.major, p.minor, ")");
}

}  // namespace lowbit
