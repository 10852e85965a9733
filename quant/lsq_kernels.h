// CPU kernels of LSQ and LSQ+ (METHODS.md, "LSQ", "LSQ+"): the readable specification.
//   v = (x - β)/s (true division), x̂ = round(clip(v, -Q_N, Q_P))·s + β     (LSQ: β = 0)
//   ∂x̂/∂x = 1[-Q_N < v < Q_P];  ∂x̂/∂s = round(v) - v inside, -Q_N / Q_P saturated;  ∂x̂/∂β = 1[outside]
#pragma once
#include <cstdint>

#include "quant/levels.h"
#include "quant/reduce_kernels.h"

namespace lowbit {

// x, y: (C, inner) contiguous; s, beta: (C), C = 1 for per-tensor; beta null for LSQ.
template <class T>
void lsq_forward_cpu(T* y, const T* x, const T* s, const T* beta, int64_t qn, int64_t qp,
                     int64_t channels, int64_t inner) {
  const T lo = (T)-qn, hi = (T)qp;
  parallel_for(channels * inner, 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t c = i / inner;
      const T off = beta ? beta[c] : (T)0;
      T v = (x[i] - off) / s[c];
      v = v < lo ? lo : (v > hi ? hi : v);
      y[i] = round_half_even(v) * s[c] + off;
    }
  });
}

// gx: (C, inner) or null; gs, gbeta: (C) or null, overwritten with grad_scale (beta_scale for
// gbeta) · Σ over the channel. clipped: ∂x̂/∂x = 1[-Q_N < v < Q_P] (LSQ's definition); identity:
// 1 everywhere (for audits).
template <class T>
void lsq_backward_cpu(T* gx, T* gs, T* gbeta, const T* gy, const T* x, const T* s, const T* beta,
                      int64_t qn, int64_t qp, double grad_scale, double beta_scale, bool clipped,
                      int64_t channels, int64_t inner) {
  const T lo = (T)-qn, hi = (T)qp;
  std::vector<double> ss((size_t)channels), sb((size_t)channels);
  // One pass: the input gradient is written per element, the parameter gradients summed per block.
  channel_block_sums(ss.data(), channels, inner, [&](int64_t i) -> double {
    const int64_t c = i / inner;
    const T off = beta ? beta[c] : (T)0;
    const T v = (x[i] - off) / s[c];
    const bool below = v <= lo, above = v >= hi;
    if (gx) gx[i] = (!clipped || !(below || above)) ? gy[i] : (T)0;
    const T ds = below ? lo : (above ? hi : round_half_even(v) - v);
    return (double)gy[i] * (double)ds;
  });
  if (gbeta)
    channel_block_sums(sb.data(), channels, inner, [&](int64_t i) -> double {
      const int64_t c = i / inner;
      const T v = (x[i] - beta[c]) / s[c];
      return (v <= lo || v >= hi) ? (double)gy[i] : 0.0;
    });
  for (int64_t c = 0; c < channels; ++c) {
    if (gs) gs[c] = (T)(grad_scale * ss[(size_t)c]);
    if (gbeta) gbeta[c] = (T)(beta_scale * sb[(size_t)c]);
  }
}

}  // namespace lowbit
