// Batch-norm CPU kernels (Ioffe & Szegedy 2015; PyTorch's conventions, see core/ops.h). Per-channel
// sums are accumulated in double; elementwise work stays in T. Parallel over channels only.
#include "core/cpu/norm_kernels.h"

#include "core/parallel.h"

namespace lowbit {

template <class T>
void batch_norm_stats_cpu(double* mean, double* var, const T* x, int64_t n, int64_t c, int64_t hw) {
  const double m = (double)(n * hw);
  parallel_for(c, n * hw, [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch) {
      double s = 0;
      for (int64_t b = 0; b < n; ++b) {
        const T* p = x + (b * c + ch) * hw;
        for (int64_t j = 0; j < hw; ++j) s += (double)p[j];
      }
      const double mu = m > 0 ? s / m : 0.0;
      // Second pass on the centred values: no cancellation when |mean| >> std.
      double ss = 0;
      for (int64_t b = 0; b < n; ++b) {
        const T* p = x + (b * c + ch) * hw;
        for (int64_t j = 0; j < hw; ++j) {
          const double d = (double)p[j] - mu;
          ss += d * d;
        }
      }
      mean[ch] = mu;
      var[ch] = m > 0 ? ss / m : 0.0;
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
      double s_dy = 0, s_dy_xhat = 0;
      for (int64_t b = 0; b < n; ++b) {
        const T* p = x + (b * c + ch) * hw;
        const T* g = dy + (b * c + ch) * hw;
        for (int64_t j = 0; j < hw; ++j) {
          s_dy += (double)g[j];
          s_dy_xhat += (double)g[j] * (((double)p[j] - mu) * is);
        }
      }
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
