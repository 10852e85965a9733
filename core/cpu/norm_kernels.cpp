// Batch-norm CPU kernels (Ioffe & Szegedy 2015; PyTorch's conventions, see core/ops.h). Per-channel
// sums: each image's row of H*W values is summed in 8 independent double lanes (a loop the
// compiler vectorises; one serial chain of double additions was the slowest part of a ResNet
// step), the lanes and rows then added in a fixed order (core/cpu/lane_sums.h). Parallel over
// channels only.
#include "core/cpu/norm_kernels.h"

#include <algorithm>

#include "core/cpu/lane_sums.h"
#include "core/parallel.h"

namespace lowbit {

namespace {

// sum_j p[j] and sum_j p[j]^2, in double lanes. One pass: the statistics read the activations once.
// var = E[x^2] - mean^2 in double cancels only when mean^2/var approaches 1e9 (double keeps 16
// digits, float inputs carry 7), far beyond any activation, so no second centred pass is needed.
template <class T>
void row_sum_and_sq(const T* p, int64_t n, double& s, double& ss) {
  double a[kLanes] = {}, b[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double v = (double)p[j + l];
      a[l] += v;
      b[l] += v * v;
    }
  for (int l = 0; j < n; ++j, ++l) {
    const double v = (double)p[j];
    a[l] += v;
    b[l] += v * v;
  }
  s += lanes_total(a);
  ss += lanes_total(b);
}

// sum_j g[j] and sum_j g[j] * (p[j] - mu), in double.
template <class T>
void row_sums_grad(const T* g, const T* p, int64_t n, double mu, double& s_g, double& s_gx) {
  double a[kLanes] = {}, b[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      a[l] += (double)g[j + l];
      b[l] += (double)g[j + l] * ((double)p[j + l] - mu);
    }
  for (int l = 0; j < n; ++j, ++l) {
    a[l] += (double)g[j];
    b[l] += (double)g[j] * ((double)p[j] - mu);
  }
  s_g += lanes_total(a);
  s_gx += lanes_total(b);
}

}  // namespace

template <class T>
void batch_norm_stats_cpu(double* mean, double* var, const T* x, int64_t n, int64_t c, int64_t hw) {
  const double m = (double)(n * hw);
  parallel_for(c, n * hw, [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch) {
      double s = 0, ss = 0;
      for (int64_t b = 0; b < n; ++b) row_sum_and_sq(x + (b * c + ch) * hw, hw, s, ss);
      const double mu = m > 0 ? s / m : 0.0;
      mean[ch] = mu;
      var[ch] = m > 0 ? std::max(0.0, ss / m - mu * mu) : 0.0;
    }
  });
}

template <class T>
void batch_norm_forward_cpu(T* y, const T* x, const double* mean, const double* invstd,
                            const T* gamma, const T* beta, int64_t n, int64_t c, int64_t hw) {
  parallel_for(c, n * hw, [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch) {
      const T mu = (T)mean[ch];
      const T scale = (T)(invstd[ch] * (gamma ? (double)gamma[ch] : 1.0));
      const T shift = beta ? beta[ch] : (T)0;
      for (int64_t b = 0; b < n; ++b) {
        const T* p = x + (b * c + ch) * hw;
        T* q = y + (b * c + ch) * hw;
        for (int64_t j = 0; j < hw; ++j) q[j] = (p[j] - mu) * scale + shift;
      }
    }
  });
}

template <class T>
void batch_norm_backward_cpu(T* dx, double* dgamma, double* dbeta, const T* dy, const T* x,
                             const double* mean, const double* invstd, const T* gamma,
                             bool training, int64_t n, int64_t c, int64_t hw) {
  const double m = (double)(n * hw);
  parallel_for(c, 2 * n * hw, [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch) {
      const double mu = mean[ch], is = invstd[ch];
      double s_dy = 0, s_dy_xc = 0;  // sums of dy and of dy * (x - mean)
      for (int64_t b = 0; b < n; ++b)
        row_sums_grad(dy + (b * c + ch) * hw, x + (b * c + ch) * hw, hw, mu, s_dy, s_dy_xc);
      const double s_dy_xhat = s_dy_xc * is;
      dgamma[ch] = s_dy_xhat;
      dbeta[ch] = s_dy;
      if (!dx) continue;
      const double k = is * (gamma ? (double)gamma[ch] : 1.0);
      // Training: the mean and variance depend on x, which removes the gradient's mean and its
      // projection on x_hat. Eval: a per-channel affine map.
      const T a = training && m > 0 ? (T)(s_dy / m) : (T)0;
      const T bcoef = training && m > 0 ? (T)(s_dy_xhat / m) : (T)0;
      const T muT = (T)mu, isT = (T)is, kT = (T)k;
      for (int64_t b = 0; b < n; ++b) {
        const T* p = x + (b * c + ch) * hw;
        const T* g = dy + (b * c + ch) * hw;
        T* q = dx + (b * c + ch) * hw;
        for (int64_t j = 0; j < hw; ++j) q[j] = kT * (g[j] - a - (p[j] - muT) * isT * bcoef);
      }
    }
  });
}

#define LB_INSTANTIATE(T)                                                                        \
  template void batch_norm_stats_cpu<T>(double*, double*, const T*, int64_t, int64_t, int64_t); \
  template void batch_norm_forward_cpu<T>(T*, const T*, const double*, const double*, const T*, \
                                          const T*, int64_t, int64_t, int64_t);                  \
  template void batch_norm_backward_cpu<T>(T*, double*, double*, const T*, const T*,            \
                                           const double*, const double*, const T*, bool,        \
                                           int64_t, int64_t, int64_t);
LB_INSTANTIATE(float)
LB_INSTANTIATE(double)
#undef LB_INSTANTIATE

}  // namespace lowbit
