// CPU kernels of LSQ and LSQ+ (METHODS.md, "LSQ", "LSQ+"): the readable specification.
//   v = (x - β)/s (true division), x̂ = round(clip(v, -Q_N, Q_P))·s + β     (LSQ: β = 0)
//   ∂x̂/∂x = 1[-Q_N < v < Q_P];  ∂x̂/∂s = round(v) - v inside, -Q_N / Q_P saturated;  ∂x̂/∂β = 1[outside]
#pragma once
#include <cstdint>
#include <type_traits>

#include "core/cpu/lane_sums.h"
#include "quant/levels.h"
#include "quant/reduce_kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
constexpr bool kLsqAvx2 = true;
#else
constexpr bool kLsqAvx2 = false;
#endif

namespace lowbit {

#if defined(__AVX2__) && defined(__FMA__)
// float32 paths in AVX2 with the same arithmetic as the scalar loops: true division, rounding to
// nearest even (_mm256_round_ps, as nearbyint), and products gy*ds exact in double (24+24 bits),
// summed in 8 lanes (lane = element mod 8): the same bits as the generic kLanes loops.
// Each handles whole groups of 8 from b and returns where the scalar loop must continue.
inline int64_t lsq_forward_avx2(float* y, const float* x, int64_t b, int64_t e, float sc, float off,
                                float lo, float hi) {
  const __m256 vs = _mm256_set1_ps(sc), vo = _mm256_set1_ps(off);
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  for (; b + 8 <= e; b += 8) {
    __m256 v = _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(x + b), vo), vs);
    v = _mm256_min_ps(vhi, _mm256_max_ps(vlo, v));  // operand order: a NaN v stays NaN, as in C++
    v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_ps(y + b, _mm256_add_ps(_mm256_mul_ps(v, vs), vo));
  }
  return b;
}

inline int64_t lsq_backward_avx2(float* go, const float* gi, const float* xi, int64_t b, int64_t e,
                                 float sc, float off, float lo, float hi, bool clipped,
                                 double* as, double* ab) {
  const __m256 vs = _mm256_set1_ps(sc), vo = _mm256_set1_ps(off);
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, b0 = s0, b1 = s0;
  for (; b + 8 <= e; b += 8) {
    const __m256 g = _mm256_loadu_ps(gi + b);
    const __m256 v = _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(xi + b), vo), vs);
    const __m256 below = _mm256_cmp_ps(v, vlo, _CMP_LE_OQ), above = _mm256_cmp_ps(v, vhi, _CMP_GE_OQ);
    const __m256 out = _mm256_or_ps(below, above);
    if (go) _mm256_storeu_ps(go + b, clipped ? _mm256_andnot_ps(out, g) : g);
    __m256 ds = _mm256_sub_ps(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), v);
    ds = _mm256_blendv_ps(_mm256_blendv_ps(ds, vlo, below), vhi, above);
    const __m256 go_out = _mm256_and_ps(out, g);
    s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(g)),
                         _mm256_cvtps_pd(_mm256_castps256_ps128(ds)), s0);
    s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(g, 1)),
                         _mm256_cvtps_pd(_mm256_extractf128_ps(ds, 1)), s1);
    b0 = _mm256_add_pd(b0, _mm256_cvtps_pd(_mm256_castps256_ps128(go_out)));
    b1 = _mm256_add_pd(b1, _mm256_cvtps_pd(_mm256_extractf128_ps(go_out, 1)));
  }
  _mm256_storeu_pd(as, s0);
  _mm256_storeu_pd(as + 4, s1);
  _mm256_storeu_pd(ab, b0);
  _mm256_storeu_pd(ab + 4, b1);
  return b;
}
#else
inline int64_t lsq_forward_avx2(float*, const float*, int64_t b, int64_t, float, float, float, float) {
  return b;
}
inline int64_t lsq_backward_avx2(float*, const float*, const float*, int64_t b, int64_t, float,
                                 float, float, float, bool, double*, double*) {
  return b;
}
#endif

// The loops run per block of one channel (kReduceBlock elements, quant/reduce_kernels.h) with the
// channel's s and beta hoisted and __restrict pointers, so they vectorise (the per-element
// channel index i / inner and the pointers read through lambda captures stopped that and made
// the quantizers the largest part of a QAT step's overhead).

// x, y: (C, inner) contiguous; s, beta: (C), C = 1 for per-tensor; beta null for LSQ.
template <class T>
void lsq_forward_cpu(T* y, const T* x, const T* s, const T* beta, int64_t qn, int64_t qp,
                     int64_t channels, int64_t inner) {
  const T lo = (T)-qn, hi = (T)qp;
  for_channel_blocks(channels, inner, 4, [&](int64_t, int64_t c, int64_t b, int64_t e) {
    const T sc = s[c], off = beta ? beta[c] : (T)0;
    const T* __restrict xi = x;
    T* __restrict yo = y;
    if constexpr (kLsqAvx2 && std::is_same_v<T, float>) b = lsq_forward_avx2(yo, xi, b, e, sc, off, lo, hi);
    for (int64_t i = b; i < e; ++i) {
      T v = (xi[i] - off) / sc;  // true division: the level must not depend on a reciprocal
      v = v < lo ? lo : (v > hi ? hi : v);
      yo[i] = round_half_even(v) * sc + off;
    }
  });
}

// One element of the backward: writes gx[i] when WithGx, adds to the lanes. go may be gi (the
// backward writes over its output gradient where nothing else reads it): gi[i] is read first.
template <class T, bool WithGx>
inline void lsq_backward_elem(T* go, const T* gi, const T* __restrict xi,
                              int64_t i, T sc, T off, T lo, T hi, bool clipped, double& as,
                              double& ab) {
  const T g = gi[i], v = (xi[i] - off) / sc;
  const bool below = v <= lo, above = v >= hi;
  if (WithGx) go[i] = (!clipped || !(below || above)) ? g : (T)0;
  const T ds = below ? lo : (above ? hi : round_half_even(v) - v);
  as += (double)g * (double)ds;
  ab += (below || above) ? (double)g : 0.0;
}

// One block [b, e) of one channel: lane sums of gy * dx̂/ds and of gy outside the range.
template <class T, bool WithGx>
void lsq_backward_block(T* go, const T* gi, const T* xi, int64_t b, int64_t e, T sc, T off, T lo,
                        T hi, bool clipped, double& sum_s, double& sum_b) {
  double as[kLanes] = {}, ab[kLanes] = {};
  int64_t i0 = b;
  if constexpr (kLsqAvx2 && std::is_same_v<T, float>)
    i0 = lsq_backward_avx2(WithGx ? go : nullptr, gi, xi, b, e, sc, off, lo, hi, clipped, as, ab);
  for (; i0 + kLanes <= e; i0 += kLanes)  // whole lane groups: a loop the compiler vectorises
    for (int l = 0; l < kLanes; ++l)
      lsq_backward_elem<T, WithGx>(go, gi, xi, i0 + l, sc, off, lo, hi, clipped, as[l], ab[l]);
  for (int l = 0; i0 < e; ++i0, ++l)
    lsq_backward_elem<T, WithGx>(go, gi, xi, i0, sc, off, lo, hi, clipped, as[l], ab[l]);
  sum_s = lanes_total(as);
  sum_b = lanes_total(ab);
}

// gx: (C, inner) or null, may be gy itself;
// gs, gbeta: (C) or null, overwritten with grad_scale (beta_scale for
// gbeta) · Σ over the channel. clipped: ∂x̂/∂x = 1[-Q_N < v < Q_P] (LSQ's definition); identity:
// 1 everywhere (for audits). Sums: kLanes double lanes per block, blocks added in order.
template <class T>
void lsq_backward_cpu(T* gx, T* gs, T* gbeta, const T* gy, const T* x, const T* s, const T* beta,
                      int64_t qn, int64_t qp, double grad_scale, double beta_scale, bool clipped,
                      int64_t channels, int64_t inner) {
  const T lo = (T)-qn, hi = (T)qp;
  const int64_t nb = reduce_blocks(inner);
  std::vector<double> ps((size_t)(channels * nb)), pb((size_t)(channels * nb));
  for_channel_blocks(channels, inner, 4, [&](int64_t k, int64_t c, int64_t b, int64_t e) {
    const T sc = s[c], off = beta ? beta[c] : (T)0;
    if (gx)
      lsq_backward_block<T, true>(gx, gy, x, b, e, sc, off, lo, hi, clipped, ps[(size_t)k], pb[(size_t)k]);
    else
      lsq_backward_block<T, false>(gx, gy, x, b, e, sc, off, lo, hi, clipped, ps[(size_t)k], pb[(size_t)k]);
  });
  std::vector<double> ts((size_t)channels), tb((size_t)channels);
  add_block_sums(ts.data(), ps.data(), channels, inner);
  add_block_sums(tb.data(), pb.data(), channels, inner);
  for (int64_t c = 0; c < channels; ++c) {
    if (gs) gs[c] = (T)(grad_scale * ts[(size_t)c]);
    if (gbeta) gbeta[c] = (T)(beta_scale * tb[(size_t)c]);
  }
}

}  // namespace lowbit
