// Float matrix transposes for the kernels that move between a channel-major layout (NCHW: a
// channel's positions consecutive) and a position-major one (a position's channels consecutive,
// the vector lanes): the direct weight gradient's dy (conv_direct.cpp) and the depthwise kernels
// (conv_depthwise_lanes.cpp).
//
// Why not element by element: walking one source row scatters its values down a destination
// column, one cache line per store, lines a power of two apart and so in a few L1 sets; for dy in
// the direct weight gradient that took twice as long as the multiply-adds. With AVX-512 the full
// 16 x 16 blocks go through registers (partial ones through a padded block); without AVX-512
// the values are copied in blocks of 16 destination rows, which stay in L1 while they fill.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/cpu/simd.h"

namespace lowbit {

#if LB_SIMD == 512
// dst[i * ldd + j] = src[j * lds + i] for i, j < 16: interleave pairs of rows, then pairs of
// pairs (a 4 x 4 transpose in each 128-bit lane), then gather each column's four 128-bit pieces
// with two rounds of lane shuffles. (The maskz forms with every lane set: the plain ones pass
// GCC 12 an undefined vector that its -Wuninitialized reports.)
inline void transpose16(float* dst, int64_t ldd, const float* src, int64_t lds) {
  constexpr __mmask16 all = 0xFFFF;
  __m512 t[16], u[16];
  for (int k = 0; k < 8; ++k) {
    const __m512 a = _mm512_loadu_ps(src + 2 * k * lds), b = _mm512_loadu_ps(src + (2 * k + 1) * lds);
    t[2 * k] = _mm512_maskz_unpacklo_ps(all, a, b);
    t[2 * k + 1] = _mm512_maskz_unpackhi_ps(all, a, b);
  }
  for (int k = 0; k < 4; ++k) {  // u[4k + j], lane L: column 4L + j of rows 4k .. 4k + 3
    u[4 * k + 0] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
    u[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
    u[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
    u[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 v0 = _mm512_maskz_shuffle_f32x4(all, u[j], u[4 + j], 0x88);  // lanes 0, 2 of each
    const __m512 v1 = _mm512_maskz_shuffle_f32x4(all, u[j], u[4 + j], 0xDD);  // lanes 1, 3
    const __m512 w0 = _mm512_maskz_shuffle_f32x4(all, u[8 + j], u[12 + j], 0x88);
    const __m512 w1 = _mm512_maskz_shuffle_f32x4(all, u[8 + j], u[12 + j], 0xDD);
    _mm512_storeu_ps(dst + j * ldd, _mm512_maskz_shuffle_f32x4(all, v0, w0, 0x88));
    _mm512_storeu_ps(dst + (4 + j) * ldd, _mm512_maskz_shuffle_f32x4(all, v1, w1, 0x88));
    _mm512_storeu_ps(dst + (8 + j) * ldd, _mm512_maskz_shuffle_f32x4(all, v0, w0, 0xDD));
    _mm512_storeu_ps(dst + (12 + j) * ldd, _mm512_maskz_shuffle_f32x4(all, v1, w1, 0xDD));
  }
}
#endif

#if LB_SIMD == 512
// The same for a block of at most 16 x 16 (rows x cols), through 16 x 16 buffers: the full
// transpose reads and writes 16 whole rows, which past the block would be someone else's data.
inline void transpose_part16(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows,
                             int64_t cols) {
  alignas(64) float a[16 * 16] = {}, b[16 * 16];
  for (int64_t r = 0; r < rows; ++r) std::copy(src + r * lds, src + r * lds + cols, a + r * 16);
  transpose16(b, 16, a, 16);
  for (int64_t c = 0; c < cols; ++c) std::copy(b + c * 16, b + c * 16 + rows, dst + c * ldd);
}
#endif

// dst[p * ldd + r] = src[r * lds + p] for r < rows, p < n.
inline void transpose(float* __restrict dst, int64_t ldd, const float* __restrict src, int64_t lds,
                      int64_t rows, int64_t n) {
#if LB_SIMD == 512
  for (int64_t r0 = 0; r0 < rows; r0 += 16)
    for (int64_t p0 = 0; p0 < n; p0 += 16) {
      float* d = dst + p0 * ldd + r0;
      const float* s = src + r0 * lds + p0;
      if (r0 + 16 <= rows && p0 + 16 <= n) transpose16(d, ldd, s, lds);
      else transpose_part16(d, ldd, s, lds, std::min<int64_t>(16, rows - r0), std::min<int64_t>(16, n - p0));
    }
#else
  constexpr int64_t kSpan = 16;
  for (int64_t p0 = 0; p0 < n; p0 += kSpan) {
    const int64_t p1 = std::min(n, p0 + kSpan);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t p = p0; p < p1; ++p) dst[p * ldd + r] = src[r * lds + p];
  }
#endif
}

}  // namespace lowbit
