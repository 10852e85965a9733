// CPU kernels of LSQ and LSQ+ (METHODS.md, "LSQ", "LSQ+"): the readable specification.
//   v = (x - β)/s (true division), x̂ = round(clip(v, -Q_N, Q_P))·s + β     (LSQ: β = 0)
//   ∂x̂/∂x = 1[-Q_N < v < Q_P];  ∂x̂/∂s = round(v) - v inside, -Q_N / Q_P saturated;  ∂x̂/∂β = 1[outside]
#pragma once
#include <cstdint>

#include "core/cpu/lane_sums.h"
#include "quant/levels.h"
#include "quant/reduce_kernels.h"

namespace lowbit {

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
    for (int64_t i = b; i < e; ++i) {
      T v = (xi[i] - off) / sc;  // true division: the level must not depend on a reciprocal
      v = v < lo ? lo : (v > hi ? hi : v);
      yo[i] = round_half_even(v) * sc + off;
    }
  });
}

// gx: (C, inner) or null; gs, gbeta: (C) or null, overwritten with grad_scale (beta_scale for
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
    const T* __restrict xi = x;
    const T* __restrict gi = gy;
    T* __restrict go = gx;
    double as[kLanes] = {}, ab[kLanes] = {};
    // One pass: the input gradient is written per element, the parameter gradients summed.
    for (int64_t i0 = b; i0 < e; i0 += kLanes)
      for (int l = 0; l < kLanes && i0 + l < e; ++l) {
        const int64_t i = i0 + l;
        const T v = (xi[i] - off) / sc;
        const bool below = v <= lo, above = v >= hi;
        if (go) go[i] = (!clipped || !(below || above)) ? gi[i] : (T)0;
        const T ds = below ? lo : (above ? hi : round_half_even(v) - v);
        as[l] += (double)gi[i] * (double)ds;
        ab[l] += (below || above) ? (double)gi[i] : 0.0;
      }
    ps[(size_t)k] = lanes_total(as);
    pb[(size_t)k] = lanes_total(ab);
  });
  for (int64_t c = 0; c < channels; ++c) {
    double ts = 0, tb = 0;
    for (int64_t k = 0; k < nb; ++k) {
      ts += ps[(size_t)(c * nb + k)];
      tb += pb[(size_t)(c * nb + k)];
    }
    if (gs) gs[c] = (T)(grad_scale * ts);
    if (gbeta) gbeta[c] = (T)(beta_scale * tb);
  }
}

}  // namespace lowbit
