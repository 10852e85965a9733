// CPU kernels of APoT/PoT (quant/apot.h; METHODS.md "Non-uniform quantizers"): projection to the
// nearest of a sorted level set with ties to the smaller level (the authors' argmin over
// |x - level| returns the first, smallest, minimiser), and the forward/backward of weights and
// activations with u = x/α (weights: x = (w - mean)/std), gradients per seed 004 eq. 2.14.
#pragma once
#include <algorithm>
#include <cstdint>

#include "quant/reduce_kernels.h"

namespace lowbit {

// Nearest of L[0..nl) (ascending) to a; a tie goes to the smaller level; below L[0] gives L[0].
template <class T>
inline T project_nearest(T a, const T* L, int64_t nl) {
  const T* hi = std::upper_bound(L, L + nl, a);  // first level > a
  if (hi == L) return L[0];
  if (hi == L + nl) return L[nl - 1];
  const T* lo = hi - 1;
  return (*hi - a) < (a - *lo) ? *hi : *lo;
}

// w, y: (n); alpha: (1); stats: (2) = (mean, std) of w; levels: (nl) magnitudes, ascending.
template <class T>
void apot_w_forward_cpu(T* y, const T* w, const T* alpha, const T* stats, const T* levels, int64_t nl,
                        int64_t n) {
  const T a = alpha[0], mean = stats[0], sd = stats[1];
  parallel_for(n, 8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      T u = (w[i] - mean) / sd / a;
      u = u < (T)-1 ? (T)-1 : (u > (T)1 ? (T)1 : u);
      const T q = project_nearest(std::fabs(u), levels, nl);
      y[i] = (u < 0 ? -q : q) * a;
    }
  });
}

// gw: (n) or null, = gy/std (·1[|u| <= 1] when clipped); galpha: (1) or null, the sum of
// gy·(sign(u)·1[|u| > 1] + (q(u) - u)·1[|u| <= 1]).
template <class T>
void apot_w_backward_cpu(T* gw, T* galpha, const T* gy, const T* w, const T* alpha, const T* stats,
                         const T* levels, int64_t nl, bool clipped, int64_t n) {
  const T a = alpha[0], mean = stats[0], sd = stats[1];
  double sum = 0;
  channel_block_sums(&sum, 1, n, [&](int64_t i) -> double {
    const T u = (w[i] - mean) / sd / a;
    const bool out = std::fabs(u) > (T)1;
    if (gw) gw[i] = (!clipped || !out) ? gy[i] / sd : (T)0;
    if (out) return u > 0 ? (double)gy[i] : -(double)gy[i];
    const T q = project_nearest(std::fabs(u), levels, nl);
    return (double)gy[i] * (double)((u < 0 ? -q : q) - u);
  });
  if (galpha) galpha[0] = (T)sum;
}

// x, y: (n); alpha: (1); levels: (nl) ascending from 0.
template <class T>
void apot_a_forward_cpu(T* y, const T* x, const T* alpha, const T* levels, int64_t nl, int64_t n) {
  const T a = alpha[0];
  parallel_for(n, 8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T u = x[i] / a;
      y[i] = project_nearest(u > (T)1 ? (T)1 : u, levels, nl) * a;
    }
  });
}

// gx: (n) or null, = gy·1[u <= 1] when clipped, else gy; galpha: (1) or null, the sum of
// gy·(1[u > 1] + (q(u) - u)·1[u <= 1]).
template <class T>
void apot_a_backward_cpu(T* gx, T* galpha, const T* gy, const T* x, const T* alpha, const T* levels,
                         int64_t nl, bool clipped, int64_t n) {
  const T a = alpha[0];
  double sum = 0;
  channel_block_sums(&sum, 1, n, [&](int64_t i) -> double {
    const T u = x[i] / a;
    const bool out = u > (T)1;
    if (gx) gx[i] = (!clipped || !out) ? gy[i] : (T)0;
    if (out) return (double)gy[i];
    return (double)gy[i] * (double)(project_nearest(u, levels, nl) - u);
  });
  if (galpha) galpha[0] = (T)sum;
}

}  // namespace lowbit
