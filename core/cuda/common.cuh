// Shared by the .cu files: launch geometry and a grid-stride loop over n elements.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda/runtime.h"

namespace lowbit {
namespace cuda {

constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return (unsigned)(b < 1 ? 1 : (b > 65535 ? 65535 : b));
}

}  // namespace cuda
}  // namespace lowbit

#define LB_GRID_LOOP(i, n)                                                         \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);        \
       i += (int64_t)gridDim.x * blockDim.x)

// Launches KERNEL<<<blocks_for(n), kThreads, 0, stream()>>>(args...) and checks the launch.
#define LB_LAUNCH(op, kernel, n, ...)                                                       \
  do {                                                                                      \
    if ((n) > 0) {                                                                          \
      kernel<<<::lowbit::cuda::blocks_for(n), ::lowbit::cuda::kThreads, 0,                  \
               ::lowbit::cuda::stream()>>>(__VA_ARGS__);                                    \
      LB_CUDA_LAUNCHED(op);                                                                 \
    }                                                                                       \
  } while (0)
