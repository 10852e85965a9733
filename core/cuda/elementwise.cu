// CUDA kernels for the elementwise, reduction, shape, loss and optimizer ops: the same arithmetic
// as the CPU kernels in the same order (compiled with -fmad=false), reductions in double in a
// fixed order per output element so results do not depend on scheduling (--deterministic).
#include <cmath>
#include <cstdint>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"
#include "core/device_memory.h"

namespace lowbit {
namespace cuda {

namespace {

constexpr int kMaxDims = 8;
struct Dims {
  int nd;
  int64_t size[kMaxDims], sa[kMaxDims], sb[kMaxDims];
};

// The binary ops' arithmetic, one place for the broadcast and the same-shape kernels (op: cuda::Bin).
__device__ __forceinline__ float bin_apply(int op, float u, float v) {
  switch (op) {
    case 0: return u + v;
    case 1: return u - v;
    case 2: return u * v;
    case 3: return u / v;
    default: return u;
  }
}

__global__ void binary_k(int op, float* y, const float* a, const float* b, Dims d, int64_t n) {
  LB_GRID_LOOP(i, n) {
    int64_t r = i, ia = 0, ib = 0;
    for (int k = d.nd - 1; k >= 0; --k) {
      const int64_t idx = r % d.size[k];
      r /= d.size[k];
      ia += idx * d.sa[k];
      ib += idx * d.sb[k];
    }
    y[i] = bin_apply(op, a[ia], b[ib]);
  }
}

// Same-shape operands (a residual add, a gradient sum): no index arithmetic, and four floats per
// thread when the pointers allow it. The broadcast kernel above spends 64-bit divisions per axis
// on every element: the likely gap to PyTorch at batch 512 (not yet measured on a GPU).

__global__ void binary_flat_k(int op, float* y, const float* a, const float* b, int64_t n) {
  LB_GRID_LOOP(i, n) y[i] = bin_apply(op, a[i], b[i]);
}

__global__ void binary_flat4_k(int op, float4* y, const float4* a, const float4* b, int64_t n4) {
  LB_GRID_LOOP(i, n4) {
    const float4 u = a[i], v = b[i];
    y[i] = make_float4(bin_apply(op, u.x, v.x), bin_apply(op, u.y, v.y), bin_apply(op, u.z, v.z),
                       bin_apply(op, u.w, v.w));
  }
}

__global__ void scalar_k(int op, float* y, const float* x, float s, int64_t n) {
  LB_GRID_LOOP(i, n) {
    const float v = x[i];
    y[i] = op == 0 ? v + s : (op == 1 ? v * s : v * v);
  }
}

__global__ void fill_k(float* y, float v, int64_t n) {
  LB_GRID_LOOP(i, n) y[i] = v;
}

__global__ void relu_fwd_k(float* y, const float* x, float hi, int64_t n) {
  LB_GRID_LOOP(i, n) {
    const float v = x[i];
    y[i] = hi < 0 ? (v > 0 ? v : 0.f) : (v > 0 ? (v < hi ? v : hi) : 0.f);
  }
}

__global__ void relu_bwd_k(float* gx, const float* g, const float* x, float hi, int64_t n) {
  LB_GRID_LOOP(i, n) gx[i] = (x[i] > 0 && (hi < 0 || x[i] < hi)) ? g[i] : 0.f;
}

// One thread per output element; it walks its reduced elements in row-major order.
struct RedDims {
  int nd;
  int64_t size[kMaxDims];
  int64_t kept_size[kMaxDims], kept_stride[kMaxDims];  // kept axes: sizes, input strides
  int nk;
  int64_t red_size[kMaxDims], red_stride[kMaxDims];
  int nr;
  int64_t red_count;
};

__global__ void sum_axes_k(float* y, const float* x, RedDims d, int64_t n_out) {
  LB_GRID_LOOP(o, n_out) {
    int64_t r = o, base = 0;
    for (int k = d.nk - 1; k >= 0; --k) {
      base += (r % d.kept_size[k]) * d.kept_stride[k];
      r /= d.kept_size[k];
    }
    double acc = 0;
    for (int64_t j = 0; j < d.red_count; ++j) {
      int64_t q = j, off = 0;
      for (int k = d.nr - 1; k >= 0; --k) {
        off += (q % d.red_size[k]) * d.red_stride[k];
        q /= d.red_size[k];
      }
      acc += (double)x[base + off];
    }
    y[o] = (float)acc;
  }
}

__global__ void copy_block_k(float* dst, const float* src, int64_t inner, int64_t len,
                             int64_t dst_axis, int64_t dst_off, int64_t src_axis, int64_t src_off,
                             int64_t n) {
  LB_GRID_LOOP(i, n) {
    const int64_t in = i % inner, j = (i / inner) % len, o = i / (inner * len);
    dst[(o * dst_axis + dst_off + j) * inner + in] = src[(o * src_axis + src_off + j) * inner + in];
  }
}

__global__ void shuffle_k(float* y, const float* x, int64_t groups, int64_t per_group, int64_t hw,
                          int64_t n) {
  LB_GRID_LOOP(i, n) {  // i indexes x (N, g, C/g, HW)
    const int64_t p = i % hw, c = (i / hw) % per_group, gi = (i / (hw * per_group)) % groups,
                  b = i / (hw * per_group * groups);
    y[((b * per_group + c) * groups + gi) * hw + p] = x[i];
  }
}

// One thread per row: max, log-sum-exp in double, probabilities, the row's smoothed loss.
__global__ void xent_rows_k(double* row_loss, float* prob, const float* logits, const int64_t* t,
                            int64_t n, int64_t k, double eps) {
  LB_GRID_LOOP(r, n) {
    const float* z = logits + r * k;
    double mx = z[0];
    for (int64_t j = 1; j < k; ++j) mx = z[j] > mx ? z[j] : mx;
    double se = 0;
    for (int64_t j = 0; j < k; ++j) se += exp((double)z[j] - mx);
    const double lse = mx + log(se);
    double sum_logp = 0;
    for (int64_t j = 0; j < k; ++j) {
      const double lp = (double)z[j] - lse;
      prob[r * k + j] = (float)exp(lp);
      sum_logp += lp;
    }
    const double lp_t = (double)z[t[r]] - lse;
    row_loss[r] = -((1 - eps) * lp_t + eps / (double)k * sum_logp);
  }
}

// One thread sums the rows in order: the loss is a scalar, n is a batch size.
__global__ void mean_rows_k(float* loss, const double* row_loss, int64_t n) {
  double s = 0;
  for (int64_t r = 0; r < n; ++r) s += row_loss[r];
  loss[0] = (float)(s / (double)n);
}

__global__ void xent_bwd_k(float* gx, const float* g, const float* prob, const int64_t* t,
                           int64_t n, int64_t k, double eps, int64_t total) {
  LB_GRID_LOOP(i, total) {
    const int64_t r = i / k, j = i % k;
    const double target = (j == t[r] ? 1 - eps : 0) + eps / (double)k;
    gx[i] = (float)(((double)prob[i] - target) * (double)g[0] / (double)n);
  }
}

__global__ void sgd_k(float* p, const float* g, float* buf, bool first, float w, float m,
                      float damp, float a, bool nesterov, bool has_wd, int64_t n) {
  LB_GRID_LOOP(i, n) {
    float d = has_wd ? g[i] + w * p[i] : g[i];
    if (buf) {
      buf[i] = first ? d : buf[i] * m + damp * d;
      d = nesterov ? d + m * buf[i] : buf[i];
    }
    p[i] = p[i] + a * d;
  }
}

__global__ void adam_k(float* p, const float* g, float* m, float* v, float w, float decay,
                       float b1, float b2, float one_b1, float one_b2, float c2, float ep, float a,
                       bool decoupled, bool has_wd, bool small_w, int64_t n) {
  LB_GRID_LOOP(i, n) {
    float gi = g[i];
    if (decoupled)
      p[i] = p[i] * decay;
    else if (has_wd)
      gi = gi + w * p[i];
    m[i] = small_w ? m[i] + one_b1 * (gi - m[i]) : gi - (gi - m[i]) * b1;
    v[i] = v[i] * b2 + one_b2 * gi * gi;
    const float denom = sqrtf(v[i]) / c2 + ep;
    p[i] = p[i] + a * (m[i] / denom);
  }
}

__global__ void mask_k(float* p, const float* mask, int64_t n) {
  LB_GRID_LOOP(i, n) if (mask[i] == 0) p[i] = 0;
}

__global__ void bn_eval_stats_k(float* m, float* is, const float* rm, const float* rv, double eps,
                                int64_t c) {
  LB_GRID_LOOP(i, c) {
    m[i] = rm[i];
    is[i] = (float)(1.0 / sqrt((double)rv[i] + eps));
  }
}

// One block per channel: fixed strided partial sums, then a fixed tree (deterministic).
__global__ void bn_eval_bwd_k(float* gx, float* gw, float* gb, const float* gy, const float* x,
                              const float* w, const float* mean, const float* invstd, int64_t n,
                              int64_t c, int64_t hw) {
  __shared__ double pw[kThreads], pb[kThreads];
  const int64_t ch = blockIdx.x, count = n * hw;
  const double m = mean[ch], is = invstd[ch];
  const float scale = (float)((w ? (double)w[ch] : 1.0) * is);
  double aw = 0, ab = 0;
  for (int64_t j = threadIdx.x; j < count; j += kThreads) {
    const int64_t i = ((j / hw) * c + ch) * hw + j % hw;
    aw += (double)gy[i] * (((double)x[i] - m) * is);
    ab += (double)gy[i];
    if (gx) gx[i] = gy[i] * scale;
  }
  pw[threadIdx.x] = aw;
  pb[threadIdx.x] = ab;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) {
      pw[threadIdx.x] += pw[threadIdx.x + s];
      pb[threadIdx.x] += pb[threadIdx.x + s];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    gw[ch] = (float)pw[0];
    gb[ch] = (float)pb[0];
  }
}

}  // namespace

void bn_eval_stats(float* save_mean, float* save_invstd, const float* running_mean,
                   const float* running_var, double eps, int64_t c) {
  LB_LAUNCH("batch_norm2d", bn_eval_stats_k, c, save_mean, save_invstd, running_mean, running_var,
            eps, c);
}

void bn_eval_backward(float* gx, float* gw, float* gb, const float* gy, const float* x,
                      const float* weight, const float* mean, const float* invstd, int64_t n,
                      int64_t c, int64_t hw) {
  if (c == 0) return;
  bn_eval_bwd_k<<<(unsigned)c, kThreads, 0, stream()>>>(gx, gw, gb, gy, x, weight, mean, invstd, n,
                                                        c, hw);
  LB_CUDA_LAUNCHED("batch_norm2d backward");
}

void binary_broadcast(Bin op, float* y, const float* a, const float* b, const Shape& out,
                      const std::vector<int64_t>& sa, const std::vector<int64_t>& sb) {
  LB_CHECK(out.size() <= (size_t)kMaxDims, "cuda binary op: at most ", kMaxDims, " axes, got ",
           shape_str(out));
  const int64_t n = shape_numel(out);
  bool flat = true;  // both operands contiguous with the output's shape
  for (int64_t k = (int64_t)out.size() - 1, step = 1; k >= 0; step *= out[(size_t)k], --k)
    if (out[(size_t)k] != 1 && (sa[(size_t)k] != step || sb[(size_t)k] != step)) flat = false;
  if (flat) {
    const bool vec4 = n % 4 == 0 && ((uintptr_t)y | (uintptr_t)a | (uintptr_t)b) % 16 == 0;
    if (vec4)
      LB_LAUNCH("cuda binary op", binary_flat4_k, n / 4, (int)op, (float4*)y, (const float4*)a,
                (const float4*)b, n / 4);
    else
      LB_LAUNCH("cuda binary op", binary_flat_k, n, (int)op, y, a, b, n);
    return;
  }
  Dims d{};
  d.nd = (int)out.size();
  for (int k = 0; k < d.nd; ++k) d.size[k] = out[k], d.sa[k] = sa[k], d.sb[k] = sb[k];
  LB_LAUNCH("cuda binary op", binary_k, n, (int)op, y, a, b, d, n);
}

void scalar_op(Scalar op, float* y, const float* x, float s, int64_t n) {
  LB_LAUNCH("cuda scalar op", scalar_k, n, (int)op, y, x, s, n);
}

void fill(float* y, float v, int64_t n) { LB_LAUNCH("cuda fill", fill_k, n, y, v, n); }

void clamp_relu_forward(float* y, const float* x, float hi, int64_t n) {
  LB_LAUNCH("relu", relu_fwd_k, n, y, x, hi, n);
}
void clamp_relu_backward(float* gx, const float* g, const float* x, float hi, int64_t n) {
  LB_LAUNCH("relu backward", relu_bwd_k, n, gx, g, x, hi, n);
}

void sum_axes(float* y, const float* x, const Shape& in, const std::vector<bool>& red) {
  LB_CHECK(in.size() <= (size_t)kMaxDims, "sum: the CUDA backend takes at most ", kMaxDims,
           " axes, got ", shape_str(in));
  RedDims d{};
  d.nd = (int)in.size();
  d.red_count = 1;
  int64_t n_out = 1, stride = 1;
  std::vector<int64_t> strides(in.size());
  for (int k = d.nd - 1; k >= 0; --k) strides[k] = stride, stride *= in[k];
  for (int k = 0; k < d.nd; ++k) {
    if (red[k]) {
      d.red_size[d.nr] = in[k], d.red_stride[d.nr++] = strides[k];
      d.red_count *= in[k];
    } else {
      d.kept_size[d.nk] = in[k], d.kept_stride[d.nk++] = strides[k];
      n_out *= in[k];
    }
  }
  LB_LAUNCH("sum", sum_axes_k, n_out, y, x, d, n_out);
}

void copy_axis_block(float* dst, const float* src, int64_t outer, int64_t inner, int64_t len,
                     int64_t dst_axis, int64_t dst_off, int64_t src_axis, int64_t src_off) {
  const int64_t n = outer * inner * len;
  LB_LAUNCH("cuda slice/concat", copy_block_k, n, dst, src, inner, len, dst_axis, dst_off,
            src_axis, src_off, n);
}

void channel_shuffle(float* y, const float* x, int64_t n, int64_t groups, int64_t per_group,
                     int64_t hw) {
  const int64_t total = n * groups * per_group * hw;
  LB_LAUNCH("channel_shuffle", shuffle_k, total, y, x, groups, per_group, hw, total);
}

void softmax_xent_forward(float* loss, float* prob, const float* logits, const int64_t* target,
                          int64_t n, int64_t k, double smoothing) {
  double* rows = (double*)cuda_alloc((size_t)n * sizeof(double));
  LB_LAUNCH("softmax_cross_entropy", xent_rows_k, n, rows, prob, logits, target, n, k, smoothing);
  mean_rows_k<<<1, 1, 0, stream()>>>(loss, rows, n);
  LB_CUDA_LAUNCHED("softmax_cross_entropy");
  cuda_free(rows, (size_t)n * sizeof(double));  // one stream: reuse is ordered after this use
}

void softmax_xent_backward(float* gx, const float* g, const float* prob, const int64_t* target,
                           int64_t n, int64_t k, double smoothing) {
  LB_LAUNCH("softmax_cross_entropy backward", xent_bwd_k, n * k, gx, g, prob, target, n, k,
            smoothing, n * k);
}

void sgd_update(float* p, const float* g, float* buf, bool first, float wd, float momentum,
                float damp, float neg_lr, bool nesterov, int64_t n) {
  LB_LAUNCH("SGD", sgd_k, n, p, g, buf, first, wd, momentum, damp, neg_lr, nesterov, wd != 0, n);
}

void adam_update(float* p, const float* g, float* m, float* v, float wd, float decay, float b1,
                 float b2, float one_b1, float one_b2, float c2, float eps, float neg_step,
                 bool decoupled, bool small_w, int64_t n) {
  LB_LAUNCH("Adam", adam_k, n, p, g, m, v, wd, decay, b1, b2, one_b1, one_b2, c2, eps, neg_step,
            decoupled, wd != 0, small_w, n);
}

void apply_mask(float* p, const float* mask, int64_t n) {
  LB_LAUNCH("optimizer mask", mask_k, n, p, mask, n);
}

}  // namespace cuda
}  // namespace lowbit
