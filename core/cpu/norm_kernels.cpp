// Batch-norm CPU kernels (Ioffe & Szegedy 2015; PyTorch's conventions, see core/ops.h). Per-channel
// sums: each image's row of H*W values is summed in 8 independent double lanes (a loop the
// compiler vectorises; one serial chain of double additions was the slowest part of a ResNet
// step), the lanes and rows then added in a fixed order (core/cpu/lane_sums.h). Parallel over
// the (N, C) rows, in memory order.
#include "core/cpu/norm_kernels.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/cpu/lane_sums.h"
#include "core/error.h"
#include "core/parallel.h"

namespace lowbit {

namespace {

// Rows are summed kRowsAtOnce at a time: one row's sums are two chains of double additions, each
// waiting on its previous addition's latency, and interleaving independent rows' chains hides it.
// Each row's lanes see the same additions in the same order as alone: the same bits. (Statistics
// 3-4x faster, the backward's sums 1.4x: development figures from a harness over the kernels,
// docs/perf.md; `lowbit bench-ops --only bn` times them now.)
constexpr int kRowsAtOnce = 4;

// fn(r, K) for the rows [r0, r1): groups of kRowsAtOnce, then the rest one at a time (K as a
// std::integral_constant).
template <class F>
void row_groups(int64_t r0, int64_t r1, F&& fn) {
  for (int64_t r = r0; r < r1;) {
    if (r1 - r >= kRowsAtOnce) {
      fn(r, std::integral_constant<int, kRowsAtOnce>());
      r += kRowsAtOnce;
    } else {
      fn(r, std::integral_constant<int, 1>());
      ++r;
    }
  }
}

// s[k] = sum_j a_k(j) and t[k] = sum_j b_k(j) over j < n for K rows, each sum in kLanes double
// lanes (element j to lane j mod kLanes) added in lane order (lanes_total). terms(k, j, a, b)
// gives element j's two terms; vterms(k, j, va, vb) the same for kLanes elements as Lanes8 (float
// input in SIMD builds).
// Four rows without a tail take their totals from one transpose (lanes_totals8).
template <int K, class T, class Terms, class VTerms>
void row_sums(int64_t n, Terms terms, VTerms vterms, double* s, double* t) {
  double a[K][kLanes] = {}, b[K][kLanes] = {};
  int64_t j = 0;
#ifdef LB_SIMD
  if constexpr (std::is_same_v<T, float>) {
    Lanes8 va[K], vb[K];
    for (int k = 0; k < K; ++k) va[k] = vb[k] = Lanes8::zero();
    for (; j + kLanes <= n; j += kLanes)
      for (int k = 0; k < K; ++k) {
        Lanes8 ta, tb;
        vterms(k, j, ta, tb);
        va[k] = va[k] + ta;
        vb[k] = vb[k] + tb;
      }
    if constexpr (K == 4) {
      if (j == n) {
        const Lanes8 v[8] = {va[0], va[1], va[2], va[3], vb[0], vb[1], vb[2], vb[3]};
        alignas(64) double tot[8];
        lanes_totals8(tot, v);
        for (int k = 0; k < 4; ++k) s[k] = tot[k], t[k] = tot[4 + k];
        return;
      }
    }
    for (int k = 0; k < K; ++k) va[k].store(a[k]), vb[k].store(b[k]);
  }
#endif
  double ta, tb;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < K; ++k)
      for (int l = 0; l < kLanes; ++l) terms(k, j + l, ta, tb), a[k][l] += ta, b[k][l] += tb;
  for (int l = 0; j < n; ++j, ++l)
    for (int k = 0; k < K; ++k) terms(k, j, ta, tb), a[k][l] += ta, b[k][l] += tb;
  for (int k = 0; k < K; ++k) s[k] = lanes_total(a[k]), t[k] = lanes_total(b[k]);
}

// s[k] = sum_j p_k[j] and ss[k] = sum_j p_k[j]^2 for the K rows p_k = p + k * stride. One pass:
// the statistics read the activations once. var = E[x^2] - mean^2 in double cancels only when
// mean^2/var approaches 1e9 (double keeps 16 digits, float inputs carry 7), far beyond any
// activation, so no second centred pass is needed.
template <int K, class T>
void rows_sum_and_sq(const T* p, int64_t stride, int64_t n, double* s, double* ss) {
  auto terms = [&](int k, int64_t j, double& a, double& b) {
    const double v = (double)p[k * stride + j];
    a = v, b = v * v;
  };
  auto vterms = [&](int k, int64_t j, auto& a, auto& b) {
    const auto v = std::decay_t<decltype(a)>::load8(p + k * stride + j);
    a = v, b = v * v;
  };
  row_sums<K, T>(n, terms, vterms, s, ss);
}

// ta[ch] = sum over b of ra[b * c + ch] in batch order (tb likewise): the per-row sums of an
// (N, C) buffer added per channel. Walked a row of the buffer at a time, not a channel at a time:
// channel by channel, each addition read from another cache line C doubles on (ShuffleNetV2's
// 1024 x 4x4 statistics spent most of their 1.2 ms there). The same order per channel: the same
// bits.
void channel_totals(double* ta, double* tb, const double* ra, const double* rb, int64_t n,
                    int64_t c) {
  std::fill(ta, ta + c, 0.0);
  std::fill(tb, tb + c, 0.0);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch) ta[ch] += ra[b * c + ch], tb[ch] += rb[b * c + ch];
}

// dy masked as relu's (relu6's) backward would hand it on, into m. A loop of its own so that it
// compiles to vector compares and blends: folded into the double-lane sums below, GCC turned the
// select into a branch per element (5x slower, measured).
template <FusedAct Act, class T>
void mask_row(T* __restrict m, const T* __restrict g, const T* __restrict y, int64_t n) {
  static_assert(Act != FusedAct::none, "nothing to mask");
  for (int64_t j = 0; j < n; ++j) {
    const T v = y[j];
    if constexpr (Act == FusedAct::relu) m[j] = v > 0 ? g[j] : (T)0;
    else m[j] = (v > 0) & (v < (T)6) ? g[j] : (T)0;
  }
}

// s_g[k] = sum_j g_k[j] and s_gx[k] = sum_j g_k[j] * (p_k[j] - mu[k]), for the K rows g_k = g +
// k * stride (p likewise).
template <int K, class T>
void rows_sums_grad(const T* g, const T* p, int64_t stride, int64_t n, const double* mu,
                    double* s_g, double* s_gx) {
  auto terms = [&](int k, int64_t j, double& a, double& b) {
    const T gv = g[k * stride + j];
    a = (double)gv, b = (double)gv * ((double)p[k * stride + j] - mu[k]);
  };
  auto vterms = [&](int k, int64_t j, auto& a, auto& b) {
    using L8 = std::decay_t<decltype(a)>;
    const L8 gv = L8::load8(g + k * stride + j);
    a = gv, b = gv * (L8::load8(p + k * stride + j) - L8::set1(mu[k]));
  };
  row_sums<K, T>(n, terms, vterms, s_g, s_gx);
}

// With a residual, y = act(affine(x) + residual): the sum the separate add would have formed
// from the rounded affine value, so the same bits.
template <FusedAct Act, class T>
void forward_rows(T* y, const T* x, const T* res, const T* mu, const T* scale, const T* shift,
                  int64_t n, int64_t c, int64_t hw) {
  parallel_for(n * c, res ? 2 * hw : hw, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const size_t ch = (size_t)(r % c);
      const T m0 = mu[ch], sc = scale[ch], sh = shift[ch];
      const T* __restrict p = x + r * hw;
      T* __restrict q = y + r * hw;
      if (res) {
        const T* __restrict s = res + r * hw;
        for (int64_t j = 0; j < hw; ++j) q[j] = act_fwd<Act>((p[j] - m0) * sc + sh + s[j]);
      } else {
        for (int64_t j = 0; j < hw; ++j) q[j] = act_fwd<Act>((p[j] - m0) * sc + sh);
      }
    }
  });
}

// Both passes of the backward for one activation (see batch_norm_backward_cpu).
template <FusedAct Act, class T>
void backward_rows(T* dx, double* dgamma, double* dbeta, const T* dy, const T* x, const T* y,
                   T* dmask, const double* mean, const double* invstd, const T* gamma,
                   bool training, int64_t n, int64_t c, int64_t hw) {
  const double m = (double)(n * hw);
  // Pass 1: per row, sums of dy and of dy * (x - mean).
  std::vector<double> rg((size_t)(n * c)), rgx((size_t)(n * c));
  // With an activation, the masked dy goes to dmask if given (the residual's gradient), else
  // where dx will be (a row buffer if dx is not wanted), and pass 2 reads it from there: y is
  // read once.
  T* const masked = dmask ? dmask : dx;
  parallel_for(n * c, 2 * hw, [&](int64_t r0, int64_t r1) {
    std::vector<T> rows(Act == FusedAct::none || masked ? 0 : (size_t)(kRowsAtOnce * hw));
    row_groups(r0, r1, [&](int64_t r, auto kc) {
      constexpr int K = decltype(kc)::value;
      const T* g = dy + r * hw;
      if constexpr (Act != FusedAct::none) {
        T* m = masked ? masked + r * hw : rows.data();
        for (int i = 0; i < K; ++i) mask_row<Act>(m + i * hw, g + i * hw, y + (r + i) * hw, hw);
        g = m;
      }
      double mu[K];
      for (int i = 0; i < K; ++i) mu[i] = mean[(r + i) % c];
      rows_sums_grad<K>(g, x + r * hw, hw, hw, mu, &rg[(size_t)r], &rgx[(size_t)r]);
    });
  });
  std::vector<T> ka((size_t)c), kb((size_t)c), kk((size_t)c), kmu((size_t)c), kis((size_t)c);
  std::vector<double> sg((size_t)c), sgx((size_t)c);
  channel_totals(sg.data(), sgx.data(), rg.data(), rgx.data(), n, c);
  for (int64_t ch = 0; ch < c; ++ch) {
    const double s_dy = sg[(size_t)ch], s_dy_xc = sgx[(size_t)ch];
    const double is = invstd[ch], s_dy_xhat = s_dy_xc * is;
    dgamma[ch] = s_dy_xhat;
    dbeta[ch] = s_dy;
    // Training: the mean and variance depend on x, which removes the gradient's mean and its
    // projection on x_hat. Eval: a per-channel affine map.
    ka[(size_t)ch] = training && m > 0 ? (T)(s_dy / m) : (T)0;
    kb[(size_t)ch] = training && m > 0 ? (T)(s_dy_xhat / m) : (T)0;
    kk[(size_t)ch] = (T)(is * (gamma ? (double)gamma[ch] : 1.0));
    kmu[(size_t)ch] = (T)mean[ch];
    kis[(size_t)ch] = (T)is;
  }
  if (!dx) return;
  // Pass 2: dx row by row.
  parallel_for(n * c, 3 * hw, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const size_t ch = (size_t)(r % c);
      const T a = ka[ch], bcoef = kb[ch], kT = kk[ch], muT = kmu[ch], isT = kis[ch];
      const T* __restrict p = x + r * hw;
      T* __restrict q = dx + r * hw;
      if (Act == FusedAct::none || dmask) {  // dy, or the masked dy pass 1 put in dmask
        const T* __restrict g = (Act == FusedAct::none ? dy : dmask) + r * hw;
        for (int64_t j = 0; j < hw; ++j) q[j] = kT * (g[j] - a - (p[j] - muT) * isT * bcoef);
      } else {  // q holds the masked dy from pass 1
        for (int64_t j = 0; j < hw; ++j) q[j] = kT * (q[j] - a - (p[j] - muT) * isT * bcoef);
      }
    }
  });
}

}  // namespace

// Every pass below walks the (N, C) rows in memory order, split over the threads by rows: per
// channel instead, a thread reads N short rows C*HW floats apart, which the prefetchers follow
// badly (BN ran at under 20 GB/s that way on ResNet-20). Per-row sums go to an (N, C) buffer and
// are added per channel over n in a fixed order, so the bits never depend on the thread count.

template <class T>
void batch_norm_stats_cpu(double* mean, double* var, const T* x, int64_t n, int64_t c, int64_t hw) {
  const double m = (double)(n * hw);
  std::vector<double> rs((size_t)(n * c)), rq((size_t)(n * c));
  parallel_for(n * c, hw, [&](int64_t r0, int64_t r1) {
    row_groups(r0, r1, [&](int64_t r, auto kc) {
      rows_sum_and_sq<decltype(kc)::value>(x + r * hw, hw, hw, &rs[(size_t)r], &rq[(size_t)r]);
    });
  });
  std::vector<double> ts((size_t)c), tq((size_t)c);
  channel_totals(ts.data(), tq.data(), rs.data(), rq.data(), n, c);
  for (int64_t ch = 0; ch < c; ++ch) {
    const double s = ts[(size_t)ch], ss = tq[(size_t)ch];
    const double mu = m > 0 ? s / m : 0.0;
    mean[ch] = mu;
    var[ch] = m > 0 ? std::max(0.0, ss / m - mu * mu) : 0.0;
  }
}

void batch_norm_invstd(double* invstd, const double* var, int64_t c, double eps) {
  for (int64_t i = 0; i < c; ++i) {
    LB_CHECK(var[i] + eps > 0, "batch_norm2d: variance + eps is ", var[i] + eps, " in channel ",
             i, " (eps = ", eps, "); cannot normalise");
    invstd[i] = 1.0 / std::sqrt(var[i] + eps);
  }
}

template <class T>
void batch_norm_affine(T* mu, T* scale, T* shift, const double* mean, const double* invstd,
                       const T* gamma, const T* beta, int64_t c) {
  for (int64_t ch = 0; ch < c; ++ch) {
    mu[ch] = (T)mean[ch];
    scale[ch] = (T)(invstd[ch] * (gamma ? (double)gamma[ch] : 1.0));
    shift[ch] = beta ? beta[ch] : (T)0;
  }
}

template <class T>
void batch_norm_forward_cpu(T* y, const T* x, const double* mean, const double* invstd,
                            const T* gamma, const T* beta, int64_t n, int64_t c, int64_t hw,
                            FusedAct act, const T* residual) {
  std::vector<T> mu((size_t)c), scale((size_t)c), shift((size_t)c);
  batch_norm_affine(mu.data(), scale.data(), shift.data(), mean, invstd, gamma, beta, c);
  const T *pm = mu.data(), *ps = scale.data(), *pb = shift.data();
  switch (act) {
    case FusedAct::none: return forward_rows<FusedAct::none>(y, x, residual, pm, ps, pb, n, c, hw);
    case FusedAct::relu: return forward_rows<FusedAct::relu>(y, x, residual, pm, ps, pb, n, c, hw);
    case FusedAct::relu6:
      return forward_rows<FusedAct::relu6>(y, x, residual, pm, ps, pb, n, c, hw);
  }
}

template <class T>
void batch_norm_backward_cpu(T* dx, double* dgamma, double* dbeta, const T* dy, const T* x,
                             const double* mean, const double* invstd, const T* gamma,
                             bool training, int64_t n, int64_t c, int64_t hw, const T* y,
                             FusedAct act, T* dmask) {
  LB_CHECK(act != FusedAct::none || !dmask, "batch_norm_backward_cpu: dmask without an activation");
  switch (act) {
    case FusedAct::none:
      return backward_rows<FusedAct::none>(dx, dgamma, dbeta, dy, x, y, dmask, mean, invstd, gamma,
                                           training, n, c, hw);
    case FusedAct::relu:
      return backward_rows<FusedAct::relu>(dx, dgamma, dbeta, dy, x, y, dmask, mean, invstd, gamma,
                                           training, n, c, hw);
    case FusedAct::relu6:
      return backward_rows<FusedAct::relu6>(dx, dgamma, dbeta, dy, x, y, dmask, mean, invstd, gamma,
                                            training, n, c, hw);
  }
}

#define LB_INSTANTIATE(T)                                                                        \
  template void batch_norm_affine<T>(T*, T*, T*, const double*, const double*, const T*,        \
                                     const T*, int64_t);                                         \
  template void batch_norm_stats_cpu<T>(double*, double*, const T*, int64_t, int64_t, int64_t); \
  template void batch_norm_forward_cpu<T>(T*, const T*, const double*, const double*, const T*, \
                                          const T*, int64_t, int64_t, int64_t, FusedAct,         \
                                          const T*);                                             \
  template void batch_norm_backward_cpu<T>(T*, double*, double*, const T*, const T*,            \
                                           const double*, const double*, const T*, bool,        \
                                           int64_t, int64_t, int64_t, const T*, FusedAct, T*);
LB_INSTANTIATE(float)
LB_INSTANTIATE(double)
#undef LB_INSTANTIATE

}  // namespace lowbit
