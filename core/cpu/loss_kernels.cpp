// Softmax, log-softmax, cross-entropy with label smoothing and the distillation KL, row by row in
// double (log p = z - max - log sum exp(z - max)). Definitions: core/ops.h; METHODS.md,
// Distillation. Parallel over rows only, so results do not depend on the thread count.
#include "core/cpu/loss_kernels.h"

#include <cmath>

#include "core/parallel.h"

namespace lowbit {

namespace {

// log sum_j exp(z_j) with z_j = x_j * scale, stably.
template <class T>
double row_logsumexp(const T* x, int64_t k, double scale) {
  double mx = -INFINITY;
  for (int64_t j = 0; j < k; ++j) mx = std::fmax(mx, (double)x[j] * scale);
  double s = 0;
  for (int64_t j = 0; j < k; ++j) s += std::exp((double)x[j] * scale - mx);
  return mx + std::log(s);
}

}  // namespace

template <class T>
void log_softmax_cpu(T* y, const T* x, int64_t rows, int64_t k, double scale) {
  parallel_for(rows, 4 * k, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * k;
      const double lse = row_logsumexp(xr, k, scale);
      for (int64_t j = 0; j < k; ++j) y[r * k + j] = (T)((double)xr[j] * scale - lse);
    }
  });
}

template <class T>
void softmax_cpu(T* y, const T* x, int64_t rows, int64_t k, double scale) {
  parallel_for(rows, 4 * k, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * k;
      const double lse = row_logsumexp(xr, k, scale);
      for (int64_t j = 0; j < k; ++j) y[r * k + j] = (T)std::exp((double)xr[j] * scale - lse);
    }
  });
}

template <class T>
void log_softmax_backward_cpu(T* dx, const T* g, const T* y, int64_t rows, int64_t k) {
  parallel_for(rows, 4 * k, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      double sg = 0;
      for (int64_t j = 0; j < k; ++j) sg += (double)g[r * k + j];
      for (int64_t j = 0; j < k; ++j)
        dx[r * k + j] = (T)((double)g[r * k + j] - std::exp((double)y[r * k + j]) * sg);
    }
  });
}

template <class T>
void softmax_backward_cpu(T* dx, const T* g, const T* y, int64_t rows, int64_t k) {
  parallel_for(rows, 2 * k, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      double sgy = 0;
      for (int64_t j = 0; j < k; ++j) sgy += (double)g[r * k + j] * (double)y[r * k + j];
      for (int64_t j = 0; j < k; ++j)
        dx[r * k + j] = (T)((double)y[r * k + j] * ((double)g[r * k + j] - sgy));
    }
  });
}

template <class T>
void cross_entropy_forward_cpu(double* loss_rows, T* prob, const T* x, const int64_t* target,
                               int64_t rows, int64_t k, double eps) {
  parallel_for(rows, 4 * k, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * k;
      const double lse = row_logsumexp(xr, k, 1.0);
      // sum_j q_j log p_j = (1-eps) log p_t + (eps/k) sum_j log p_j, with log p_j = x_j - lse.
      double sum_logp = 0;
      for (int64_t j = 0; j < k; ++j) {
        const double lp = (double)xr[j] - lse;
        sum_logp += lp;
        prob[r * k + j] = (T)std::exp(lp);
      }
      const double lp_t = (double)xr[target[r]] - lse;
      loss_rows[r] = -((1 - eps) * lp_t + eps / (double)k * sum_logp);
    }
  });
}

template <class T>
void cross_entropy_backward_cpu(T* dx, const T* prob, const int64_t* target, int64_t rows,
                                int64_t k, double eps, double scale) {
  const double off = eps / (double)k;  // q_j off the target
  parallel_for(rows, k, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t j = 0; j < k; ++j)
        dx[r * k + j] = (T)(scale * ((double)prob[r * k + j] - off - (j == target[r] ? 1 - eps : 0)));
    }
  });
}

template <class T>
void kl_div_forward_cpu(double* loss_rows, T* ps, T* pt, const T* x, const T* t, int64_t rows,
                        int64_t k, double temp) {
  const double scale = 1.0 / temp;
  parallel_for(rows, 8 * k, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * k;
      const T* tr = t + r * k;
      const double lse_s = row_logsumexp(xr, k, scale), lse_t = row_logsumexp(tr, k, scale);
      double kl = 0;
      for (int64_t j = 0; j < k; ++j) {
        const double lps = (double)xr[j] * scale - lse_s, lpt = (double)tr[j] * scale - lse_t;
        const double p_t = std::exp(lpt);
        kl += p_t * (lpt - lps);  // p_t underflowing to 0 contributes 0, as 0 log 0 = 0
        ps[r * k + j] = (T)std::exp(lps);
        pt[r * k + j] = (T)p_t;
      }
      loss_rows[r] = kl;
    }
  });
}

#define LB_INSTANTIATE(T)                                                                       \
  template void log_softmax_cpu<T>(T*, const T*, int64_t, int64_t, double);                    \
  template void softmax_cpu<T>(T*, const T*, int64_t, int64_t, double);                        \
  template void log_softmax_backward_cpu<T>(T*, const T*, const T*, int64_t, int64_t);         \
  template void softmax_backward_cpu<T>(T*, const T*, const T*, int64_t, int64_t);             \
  template void cross_entropy_forward_cpu<T>(double*, T*, const T*, const int64_t*, int64_t,   \
                                             int64_t, double);                                 \
  template void cross_entropy_backward_cpu<T>(T*, const T*, const int64_t*, int64_t, int64_t,  \
                                              double, double);                                 \
  template void kl_div_forward_cpu<T>(double*, T*, T*, const T*, const T*, int64_t, int64_t,   \
                                      double);
LB_INSTANTIATE(float)
LB_INSTANTIATE(double)
#undef LB_INSTANTIATE

}  // namespace lowbit
