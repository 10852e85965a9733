// Copy kernels for the shape ops: slice/concat/split as block copies along an axis, and the
// channel shuffle permutation (METHODS.md, Layers of the small-dense models).
#include "core/cpu/shape_kernels.h"

#include <cstring>

#include "core/parallel.h"

namespace lowbit {

void copy_axis_block_cpu(void* dst, int64_t dst_axis, int64_t dst_start, const void* src,
                         int64_t src_axis, int64_t src_start, int64_t len, int64_t outer,
                         int64_t inner, int64_t elem) {
  // Within one outer index the block is contiguous in both tensors: one memcpy per outer index.
  const int64_t block = len * inner * elem;
  if (block == 0) return;
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  parallel_for(outer, block / 8 + 1, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o)
      std::memcpy(d + ((o * dst_axis + dst_start) * inner) * elem,
                  s + ((o * src_axis + src_start) * inner) * elem, (size_t)block);
  });
}

void place_axis_block_cpu(void* dst, int64_t dst_axis, int64_t start, const void* src, int64_t len,
                          int64_t outer, int64_t inner, int64_t elem) {
  const int64_t row = dst_axis * inner * elem, before = start * inner * elem;
  const int64_t block = len * inner * elem, after = row - before - block;
  if (row == 0) return;
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  parallel_for(outer, row / 8 + 1, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      char* r = d + o * row;
      std::memset(r, 0, (size_t)before);
      if (block) std::memcpy(r + before, s + o * block, (size_t)block);
      std::memset(r + before + block, 0, (size_t)after);
    }
  });
}

template <class T>
void add_axis_block_cpu(T* dst, int64_t dst_axis, int64_t start, const T* src, int64_t len,
                        int64_t outer, int64_t inner) {
  const int64_t block = len * inner;
  parallel_for(outer, block, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      T* __restrict d = dst + (o * dst_axis + start) * inner;
      const T* __restrict s = src + o * block;
      for (int64_t j = 0; j < block; ++j) d[j] = d[j] + s[j];
    }
  });
}
template void add_axis_block_cpu<float>(float*, int64_t, int64_t, const float*, int64_t, int64_t,
                                        int64_t);
template void add_axis_block_cpu<double>(double*, int64_t, int64_t, const double*, int64_t,
                                         int64_t, int64_t);

void channel_shuffle_cpu(void* y, const void* x, int64_t n, int64_t c, int64_t groups, int64_t hw,
                         int64_t elem) {
  const int64_t per = c / groups;  // channels per group
  const int64_t plane = hw * elem;
  char* py = static_cast<char*>(y);
  const char* px = static_cast<const char*>(x);
  parallel_for(n * c, plane / 8 + 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // r indexes (sample, input channel)
      const int64_t b = r / c, ci = r % c;
      const int64_t i = ci / per, j = ci % per;  // input channel = group i, member j
      const int64_t co = j * groups + i;
      if (plane) std::memcpy(py + (b * c + co) * plane, px + r * plane, (size_t)plane);
    }
  });
}

void interleave_channels_cpu(void* y, void* a, void* b, int64_t n, int64_t c, int64_t hw,
                             int64_t elem, bool split) {
  const int64_t plane = hw * elem;
  char* py = static_cast<char*>(y);
  char* pa = static_cast<char*>(a);
  char* pb = static_cast<char*>(b);
  parallel_for(n * c, 2 * plane / 8 + 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // r indexes (sample, channel j of a and b)
      const int64_t s = r / c, j = r % c;
      char* ya = py + (s * 2 * c + 2 * j) * plane;
      if (!plane) continue;
      if (split) {
        std::memcpy(pa + r * plane, ya, (size_t)plane);
        std::memcpy(pb + r * plane, ya + plane, (size_t)plane);
      } else {
        std::memcpy(ya, pa + r * plane, (size_t)plane);
        std::memcpy(ya + plane, pb + r * plane, (size_t)plane);
      }
    }
  });
}

}  // namespace lowbit
