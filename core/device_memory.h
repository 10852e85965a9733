// The CUDA memory entry points the core needs. A CPU-only build links core/cuda/stub.cpp, whose
// functions throw a clear error; the GPU build (GPU=1) links the real ones from core/cuda/.
#pragma once
#include <cstddef>

#include "core/dtype.h"

namespace lowbit {

bool cuda_available();  // false in the CPU build
void* cuda_alloc(size_t bytes);
void cuda_free(void* p, size_t bytes);
void cuda_memset_zero(void* p, size_t bytes);
void cuda_copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);

}  // namespace lowbit
