// The CUDA runtime of the GPU build (GPU=1 only; op code includes core/cuda/kernels.h instead):
// the one stream every kernel and library call is queued on, the cuBLAS and cuDNN handles bound to
// it, a reusable workspace, the deterministic switch, and the macros that turn a failed CUDA,
// cuBLAS or cuDNN call into a lowbit::Error naming the op and the call.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstddef>

#include "core/error.h"

namespace lowbit {
namespace cuda {

cudaStream_t stream();
cublasHandle_t cublas();
cudnnHandle_t cudnn();
// Device scratch of at least `bytes`, valid until the next workspace() call (one stream, so the
// previous user has been queued before the next one can overwrite it).
void* workspace(size_t bytes);

// Reads the pending device-side argument checks (core/cuda/checks.cu), throwing for a failed one;
// called wherever the host has just waited for the stream.
void poll_checks();

[[noreturn]] void fail_cuda(const char* op, const char* call, cudaError_t e);
[[noreturn]] void fail_cublas(const char* op, const char* call, cublasStatus_t s);
[[noreturn]] void fail_cudnn(const char* op, const char* call, cudnnStatus_t s);

}  // namespace cuda
}  // namespace lowbit

// LB_CUDA(op, cudaMemcpyAsync(...)): throws "op: cudaMemcpyAsync(...) failed: <reason>".
#define LB_CUDA(op, call)                                                  \
  do {                                                                     \
    cudaError_t lb_e_ = (call);                                            \
    if (lb_e_ != cudaSuccess) ::lowbit::cuda::fail_cuda(op, #call, lb_e_); \
  } while (0)
#define LB_CUBLAS(op, call)                                                            \
  do {                                                                                 \
    cublasStatus_t lb_s_ = (call);                                                     \
    if (lb_s_ != CUBLAS_STATUS_SUCCESS) ::lowbit::cuda::fail_cublas(op, #call, lb_s_); \
  } while (0)
#define LB_CUDNN(op, call)                                                           \
  do {                                                                               \
    cudnnStatus_t lb_s_ = (call);                                                    \
    if (lb_s_ != CUDNN_STATUS_SUCCESS) ::lowbit::cuda::fail_cudnn(op, #call, lb_s_); \
  } while (0)
// After a kernel launch: launch errors (bad configuration) surface at once, naming the kernel.
#define LB_CUDA_LAUNCHED(op) LB_CUDA(op, cudaGetLastError())
