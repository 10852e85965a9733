// The deinterleave of an image row onto two phase planes, shared by the Winograd kernels
// (conv_winograd_planes.h) and the direct kernels' stride-2 planes (conv_direct.cpp).
#pragma once
#include <cstdint>

#include "core/cpu/simd.h"

#ifdef LB_SIMD

namespace lowbit {

// Scatters one image row: padded column col = w + pw goes to the even (col % 2 == 0) or odd phase
// row at col / 2. The row's even-indexed elements all land in one phase and the odd-indexed in the
// other (which is which depends on pw's parity), so it is a plain deinterleave: whole vectors
// where there are, no masked loads or stores (those made this loop the slowest part of the pass).
inline void split_row(float* even, float* odd, const float* src, int64_t n, int64_t pw) {
  float* first = (pw % 2 == 0 ? even : odd) + pw / 2;         // gets src[0], src[2], ...
  float* second = (pw % 2 == 0 ? odd : even) + (pw + 1) / 2;  // gets src[1], src[3], ...
  const int64_t pairs = n / 2;
  int64_t k = 0;
#if LB_SIMD == 512
  const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (; k + 16 <= pairs; k += 16) {
    const __m512 a = _mm512_loadu_ps(src + 2 * k), b = _mm512_loadu_ps(src + 2 * k + 16);
    _mm512_storeu_ps(first + k, _mm512_permutex2var_ps(a, ie, b));
    _mm512_storeu_ps(second + k, _mm512_permutex2var_ps(a, io, b));
  }
#endif
  for (; k + 8 <= pairs; k += 8) {  // 8 pairs with 256-bit vectors (the AVX2 build too)
    const __m256 lo = _mm256_loadu_ps(src + 2 * k), hi = _mm256_loadu_ps(src + 2 * k + 8);
    // shuffle: s0 s2 s8 s10 | s4 s6 s12 s14; then 64-bit blocks 0, 2, 1, 3: s0 s2 s4 ... s14
    const __m256 e = _mm256_shuffle_ps(lo, hi, 0x88), o = _mm256_shuffle_ps(lo, hi, 0xDD);
    _mm256_storeu_ps(first + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
    _mm256_storeu_ps(second + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8)));
  }
  for (; k < pairs; ++k) first[k] = src[2 * k], second[k] = src[2 * k + 1];
  if (n & 1) first[pairs] = src[n - 1];
}

}  // namespace lowbit

#endif  // LB_SIMD
