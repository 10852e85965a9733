// The F(4x4, 3x3) phase planes and input transform, shared by the forward and data gradient
// (conv_winograd4.cpp) and the weight gradient (conv_winograd_wgrad.cpp). Private to those files;
// the algorithm and the 4x4 phase layout are described at the top of conv_winograd4.cpp.
#pragma once
#include "core/cpu/conv_winograd_planes.h"

#ifdef LB_SIMD

namespace lowbit {
namespace winograd {

// Scatters one image row: padded column col = w + pw goes to phase col % 4 at col / 4, so the
// elements w = 4i + k (one residue k) all land in one phase, consecutively: a deinterleave by 4.
inline void split_row4(float* const ph[4], const float* src, int64_t n, int64_t pw) {
  float* dst[4];
  for (int k = 0; k < 4; ++k) dst[k] = ph[(k + pw) % 4] + (k + pw) / 4;
#if LB_SIMD == 512
  // 32 floats at a time (a last, shorter chunk masked): residue k's elements are lanes k, k+4,
  // ... of the two vectors, gathered into the low lanes by one permute.
  int64_t at = 0;
  for (; at + 32 <= n; at += 32) {
    const __m512 a = _mm512_loadu_ps(src + at), b = _mm512_loadu_ps(src + at + 16);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512i idx = _mm512_setr_epi32(k, 4 + k, 8 + k, 12 + k, 16 + k, 20 + k, 24 + k, 28 + k,
                                            0, 0, 0, 0, 0, 0, 0, 0);
      _mm512_mask_storeu_ps(dst[k] + at / 4, 0x00FF, _mm512_permutex2var_ps(a, idx, b));
    }
  }
  if (at + 16 <= n) {  // 16 floats (rows of 16, or the rest of a longer row)
    const __m512 a = _mm512_loadu_ps(src + at);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512i idx = _mm512_setr_epi32(k, 4 + k, 8 + k, 12 + k, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
      _mm512_mask_storeu_ps(dst[k] + at / 4, 0x000F, _mm512_permutex2var_ps(a, idx, a));
    }
    at += 16;
  }
  if (at + 8 <= n) {  // 8 floats (rows of 8)
    const __m256 a = _mm256_loadu_ps(src + at);
    // lanes k and k + 4 of a to dst[k]: the two 128-bit halves transposed as 4x2
    const __m256 lo = _mm256_permute2f128_ps(a, a, 0x00), hi = _mm256_permute2f128_ps(a, a, 0x11);
    const __m128 l = _mm256_castps256_ps128(lo), h = _mm256_castps256_ps128(hi);
    const __m128 e01 = _mm_unpacklo_ps(l, h), e23 = _mm_unpackhi_ps(l, h);  // l0 h0 l1 h1 | l2 h2 l3 h3
    _mm_storel_pi((__m64*)(dst[0] + at / 4), e01);
    _mm_storeh_pi((__m64*)(dst[1] + at / 4), e01);
    _mm_storel_pi((__m64*)(dst[2] + at / 4), e23);
    _mm_storeh_pi((__m64*)(dst[3] + at / 4), e23);
    at += 8;
  }
  for (; at < n; ++at) dst[at % 4][at / 4] = src[at];
#else
  for (int64_t i = 0; 4 * i < n; ++i)
    for (int k = 0; k < 4 && 4 * i + k < n; ++k) dst[k][i] = src[4 * i + k];
#endif
}

// Copies image x (C, H, W) into slot im of the pass's phase planes P (channel c, phase a*4 + b at
// P + (c*16 + a*4 + b) * run); the borders stay zero (zeroed once, never written).
inline void fill_planes4(float* P, const float* x, int64_t im, const Tiling& t) {
  for (int64_t c = 0; c < t.C; ++c)
    for (int64_t h = 0; h < t.H; ++h) {
      const int64_t r = h + t.ph;
      float* row = P + (c * 16 + (r & 3) * 4) * t.run + im * t.S + (r >> 2) * t.Wq;
      float* const ph[4] = {row, row + t.run, row + 2 * t.run, row + 3 * t.run};
      split_row4(ph, x + (c * t.H + h) * t.Wd, t.Wd, t.pw);
    }
}

// B^T applied to one column (or row) of six tile vectors.
struct InputTransform4 {
  V four = splat(4.f), m4 = splat(-4.f), m5 = splat(-5.f);
  static V splat(float v) { return Simd::bcast(&v); }
  void operator()(V* t, const V* d) const {
    const V a = Simd::fma(m4, d[2], d[4]);  // d4 - 4 d2
    const V b = Simd::fma(m4, d[1], d[3]);  // d3 - 4 d1
    const V c = Simd::sub(d[4], d[2]);
    const V h = Simd::sub(d[3], d[1]);
    const V e = Simd::add(h, h);            // 2 (d3 - d1)
    t[0] = Simd::fma(four, d[0], Simd::fma(m5, d[2], d[4]));
    t[1] = Simd::add(a, b);
    t[2] = Simd::sub(a, b);
    t[3] = Simd::add(c, e);
    t[4] = Simd::sub(c, e);
    t[5] = Simd::fma(four, d[1], Simd::fma(m5, d[3], d[5]));
  }
};

// V[p][c][0 .. nt) = (B^T d B)[p] for the block's nt tiles, rows of t.ld floats, position slabs
// ps floats apart.
inline void input_transform4(float* Vb, int64_t ps, const float* P, const BlockScan& scan,
                      const Tiling& t) {
  const InputTransform4 bt;
  for (int64_t c = 0; c < t.C; ++c) {
    const float* ph[16];
    for (int a = 0; a < 16; ++a) ph[a] = P + (c * 16 + a) * t.run;
    float* out = Vb + c * t.ld;
    int64_t n = 0;
    for (size_t vi = 0; vi < scan.q.size(); ++vi) {
      const int64_t q = scan.q[vi];
      V tt[6][6];  // B^T d, column by column
#pragma GCC unroll 6
      for (int j = 0; j < 6; ++j) {
        V d[6], col[6];
#pragma GCC unroll 6
        for (int i = 0; i < 6; ++i)
          d[i] = Simd::load(ph[(i & 3) * 4 + (j & 3)] + (i >> 2) * t.Wq + (j >> 2) + q);
        bt(col, d);
#pragma GCC unroll 6
        for (int i = 0; i < 6; ++i) tt[i][j] = col[i];
      }
      const unsigned mask = scan.masks[vi];
      int cnt = W;
#pragma GCC unroll 6
      for (int i = 0; i < 6; ++i) {  // (B^T d) B, row by row
        V u[6];
        bt(u, tt[i]);
        if (mask == kAllLanes) {
#pragma GCC unroll 6
          for (int k = 0; k < 6; ++k) Simd::store(out + (i * 6 + k) * ps + n, u[k]);
        } else {
#pragma GCC unroll 6
          for (int k = 0; k < 6; ++k) cnt = store_packed(out + (i * 6 + k) * ps + n, u[k], mask);
        }
      }
      n += cnt;
    }
  }
}

}  // namespace winograd
}  // namespace lowbit
#endif  // LB_SIMD
