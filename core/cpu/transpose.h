// Float matrix transposes for the kernels that move between a channel-major layout (NCHW: a
// channel's positions consecutive) and a position-major one (a position's channels consecutive,
// the vector lanes): the direct weight gradient's dy (conv_direct.cpp) and the depthwise kernels
// (conv_depthwise_lanes.cpp).
//
// Why not element by element: walking one source row scatters its values down a destination
// column, one cache line per store, lines a power of two apart and so in a few L1 sets; for dy in
// the direct weight gradient that took twice as long as the multiply-adds. With AVX-512 the full
// 16 x 16 blocks go through registers (partial ones with masked loads and stores); without AVX-512
// the values are copied in blocks of 16 destination rows, which stay in L1 while they fill.
#pragma once
#include <algorithm>
#include <cstdint>

#include "core/cpu/simd.h"

namespace lowbit {

#if LB_SIMD == 512
// out[i] lane j = in[j] lane i, i, j < 16: interleave pairs of rows, then pairs of pairs (a 4 x 4
// transpose in each 128-bit lane), then gather each column's four 128-bit pieces with two rounds
// of lane shuffles. (The maskz forms with every lane set: the plain ones pass GCC 12 an undefined
// vector that its -Wuninitialized reports.)
inline void transpose16_regs(__m512 out[16], const __m512 in[16]) {
  constexpr __mmask16 all = 0xFFFF;
  __m512 t[16], u[16];
  for (int k = 0; k < 8; ++k) {
    t[2 * k] = _mm512_maskz_unpacklo_ps(all, in[2 * k], in[2 * k + 1]);
    t[2 * k + 1] = _mm512_maskz_unpackhi_ps(all, in[2 * k], in[2 * k + 1]);
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
    out[j] = _mm512_maskz_shuffle_f32x4(all, v0, w0, 0x88);
    out[4 + j] = _mm512_maskz_shuffle_f32x4(all, v1, w1, 0x88);
    out[8 + j] = _mm512_maskz_shuffle_f32x4(all, v0, w0, 0xDD);
    out[12 + j] = _mm512_maskz_shuffle_f32x4(all, v1, w1, 0xDD);
  }
}

// dst[i * ldd + j] = src[j * lds + i] for j < rows, i < cols (both at most 16): masked loads and
// stores touch nothing outside the block (a partial block is the last channels of a tensor, or
// the last positions of a plane; copying it through a zeroed 16 x 16 buffer cost more than the
// whole depthwise layer's arithmetic at 24 channels).
inline void transpose16(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows = 16,
                        int64_t cols = 16) {
  const __mmask16 mc = (__mmask16)((1u << cols) - 1), mr = (__mmask16)((1u << rows) - 1);
  __m512 in[16], out[16];
  for (int r = 0; r < 16; ++r)
    in[r] = r < rows ? _mm512_maskz_loadu_ps(mc, src + r * lds) : _mm512_setzero_ps();
  transpose16_regs(out, in);
  for (int c = 0; c < cols; ++c) _mm512_mask_storeu_ps(dst + c * ldd, mr, out[c]);
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
      transpose16(d, ldd, s, lds, std::min<int64_t>(16, rows - r0), std::min<int64_t>(16, n - p0));
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
