// CUDA kernels of the quantizers (quant/*_kernels.h and quant/*.cpp hold the CPU specification).
// Levels must equal the CPU's to the bit: rintf is round-half-even like std::nearbyint, every
// division is a true IEEE division (__fdiv_rn), products and sums are rounded one by one
// (__fmul_rn/__fadd_rn, and the file is compiled with -fmad=false), in the CPU's order.
// Gradients of learnable parameters are reduced on the device: per-element contributions in double,
// then a fixed-shape tree per channel (no atomics), so a run is bit-reproducible.
#include <cmath>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"
#include "core/device_memory.h"
#include "core/error.h"

namespace lowbit {
namespace cuda {

namespace {

// Per-channel sums in a fixed order, whatever the GPU: channel c's `inner` values are cut into
// chunks of kChunk; one block sums a chunk (each thread a fixed strided subsequence, then a
// shared-memory tree), and a second pass adds a channel's chunk sums the same way. No atomics, so
// a run is bit-reproducible. (One block per channel was the first version: an activation quantizer
// is one channel of millions of values, and that single block made LSQ's backward the slowest
// part of a QAT step at batch 512.)
constexpr int64_t kChunk = 8192;

// out[c * chunks + k] = Σ of chunk k of channel c; grid (chunks, channels).
__global__ void chunk_sum_k(double* out, const double* v, int64_t inner, int64_t chunks) {
  __shared__ double part[kThreads];
  const int64_t c = blockIdx.y, k = blockIdx.x;
  const int64_t b = k * kChunk, e = b + kChunk < inner ? b + kChunk : inner;
  double acc = 0;
  for (int64_t i = b + threadIdx.x; i < e; i += kThreads) acc += v[c * inner + i];
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[c * chunks + k] = part[0];
}

__global__ void scale_store_k(float* dst, const double* src, double scale, int64_t n) {
  LB_GRID_LOOP(i, n) dst[i] = (float)(scale * src[i]);
}

// Temporary device buffers for the reductions (returned to the caching allocator).
struct DeviceBuf {
  void* p;
  size_t bytes;
  explicit DeviceBuf(size_t b) : p(cuda_alloc(b)), bytes(b) {}
  ~DeviceBuf() { cuda_free(p, bytes); }
  double* d() const { return (double*)p; }
};

// sums[c] = Σ_{i < inner} v[c*inner + i] (device buffer of `channels` doubles).
void channel_sums(double* sums, const double* v, int64_t channels, int64_t inner, const char* op) {
  if (channels == 0) return;
  const int64_t chunks = inner > 0 ? (inner + kChunk - 1) / kChunk : 1;
  LB_CHECK(channels <= 65535 && chunks <= 0x7fffffff, op, ": ", channels, " channels of ", inner,
           " values is beyond the reduction's grid");
  DeviceBuf part((size_t)(channels * chunks) * sizeof(double));
  chunk_sum_k<<<dim3((unsigned)chunks, (unsigned)channels), kThreads, 0, stream()>>>(part.d(), v,
                                                                                    inner, chunks);
  LB_CUDA_LAUNCHED(op);
  chunk_sum_k<<<dim3(1, (unsigned)channels), kThreads, 0, stream()>>>(sums, part.d(), chunks, 1);
  LB_CUDA_LAUNCHED(op);
}

// dst[c] = (float)(scale · Σ contributions of channel c).
void reduce_channels(float* dst, const double* contrib, double scale, int64_t channels,
                     int64_t inner, const char* op) {
  DeviceBuf sums((size_t)channels * sizeof(double));
  channel_sums(sums.d(), contrib, channels, inner, op);
  LB_LAUNCH(op, scale_store_k, channels, dst, sums.d(), scale, channels);
}

__device__ __forceinline__ float clampf(float v, float lo, float hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// ---- LSQ / LSQ+ ----
__global__ void lsq_fwd_k(float* y, const float* x, const float* s, const float* beta, float lo,
                          float hi, int64_t inner, int64_t n) {
  LB_GRID_LOOP(i, n) {
    const int64_t c = i / inner;
    const float off = beta ? beta[c] : 0.f;
    const float v = clampf(__fdiv_rn(__fsub_rn(x[i], off), s[c]), lo, hi);
    y[i] = __fadd_rn(__fmul_rn(rintf(v), s[c]), off);
  }
}

__global__ void lsq_bwd_k(float* gx, double* cs, double* cb, const float* gy, const float* x,
                          const float* s, const float* beta, float lo, float hi, bool clipped,
                          int64_t inner, int64_t n) {
  LB_GRID_LOOP(i, n) {
    const int64_t c = i / inner;
    const float off = beta ? beta[c] : 0.f;
    const float v = __fdiv_rn(__fsub_rn(x[i], off), s[c]);
    const bool below = v <= lo, above = v >= hi;
    if (gx) gx[i] = (!clipped || !(below || above)) ? gy[i] : 0.f;
    const float ds = below ? lo : (above ? hi : __fsub_rn(rintf(v), v));
    if (cs) cs[i] = (double)gy[i] * (double)ds;
    if (cb) cb[i] = (below || above) ? (double)gy[i] : 0.0;
  }
}

// ---- PACT ----
__global__ void pact_fwd_k(float* y, const float* x, const float* alpha, float m, int64_t n) {
  const float a = alpha[0];
  LB_GRID_LOOP(i, n) {
    const float c = x[i] < 0 ? 0.f : (x[i] > a ? a : x[i]);
    y[i] = __fdiv_rn(__fmul_rn(rintf(__fdiv_rn(__fmul_rn(c, m), a)), a), m);
  }
}

__global__ void pact_bwd_k(float* gx, double* ca, const float* gy, const float* x,
                           const float* alpha, bool clipped, int64_t n) {
  const float a = alpha[0];
  LB_GRID_LOOP(i, n) {
    if (gx) gx[i] = (!clipped || (x[i] >= 0 && x[i] < a)) ? gy[i] : 0.f;
    if (ca) ca[i] = x[i] >= a ? (double)gy[i] : 0.0;
  }
}

// ---- DoReFa ----
// tanh through double, rounded once: the closest float to tanh(w), which is what glibc's tanhf
// returns for all but a handful of inputs (the test compares levels exactly to catch those).
__device__ __forceinline__ float tanh_f(float w) { return (float)tanh((double)w); }

__device__ __forceinline__ float quantize_k(float r, float lv) {
  return __fdiv_rn(rintf(__fmul_rn(r, lv)), lv);
}

// One block: max |tanh w| (exact in any order).
__global__ void absmax_tanh_k(float* m, const float* w, int64_t n) {
  __shared__ float part[kThreads];
  float mx = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) mx = fmaxf(mx, fabsf(tanh_f(w[i])));
  part[threadIdx.x] = mx;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) part[threadIdx.x] = fmaxf(part[threadIdx.x], part[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) m[0] = part[0];
}

__global__ void dorefa_w_fwd_k(float* y, const float* m, const float* w, float lv, int64_t n) {
  const float mx = m[0];
  LB_GRID_LOOP(i, n) {
    const float r = mx > 0 ? __fadd_rn(__fmul_rn(__fdiv_rn(tanh_f(w[i]), mx), 0.5f), 0.5f) : 0.5f;
    y[i] = __fsub_rn(__fmul_rn(2.f, quantize_k(r, lv)), 1.f);
  }
}

// Per element: the contribution to g_m (double) and whether it ties the max (as 1.0).
__global__ void dorefa_w_contrib_k(double* cg, double* ct, const float* gy, const float* w,
                                   const float* m, int64_t n) {
  const double mx = (double)m[0];
  LB_GRID_LOOP(i, n) {
    const float t = tanh_f(w[i]);
    cg[i] = -(double)gy[i] * (double)t / (mx * mx);
    ct[i] = fabsf(t) == m[0] ? 1.0 : 0.0;
  }
}

__global__ void dorefa_w_bwd_k(float* gw, const float* gy, const float* w, const float* m,
                               const double* sums, int64_t n) {
  const float mx = m[0];
  const float share = mx > 0 ? (float)(sums[0] / sums[1]) : 0.f;
  LB_GRID_LOOP(i, n) {
    if (!(mx > 0)) {
      gw[i] = 0;
      continue;
    }
    const float t = tanh_f(w[i]);
    float gt = __fdiv_rn(gy[i], mx);
    if (fabsf(t) == mx) gt = __fadd_rn(gt, t > 0 ? share : -share);
    gw[i] = __fmul_rn(gt, __fsub_rn(1.f, __fmul_rn(t, t)));
  }
}

__global__ void dorefa_a_fwd_k(float* y, const float* x, float lv, int64_t n) {
  LB_GRID_LOOP(i, n) y[i] = quantize_k(x[i] < 0 ? 0.f : (x[i] > 1 ? 1.f : x[i]), lv);
}

__global__ void dorefa_a_bwd_k(float* gx, const float* gy, const float* x, bool clipped, int64_t n) {
  LB_GRID_LOOP(i, n) gx[i] = (!clipped || (x[i] >= 0 && x[i] <= 1)) ? gy[i] : 0.f;
}

// ---- counter-based RNG: core/rng.cpp's Philox4x32-10, bit for bit, so stochastic rounding and
// dropout draw the CPU's numbers for the same (seed, stream, index) ----
__device__ uint32_t rng_u32_d(uint64_t seed, uint64_t stream, uint64_t index) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  const uint64_t block = index >> 2;
  uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32), c2 = (uint32_t)stream,
           c3 = (uint32_t)(stream >> 32);
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = (uint64_t)M0 * c0, p1 = (uint64_t)M1 * c2;
    const uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    const uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  const int which = (int)(index & 3);
  return which == 0 ? c0 : (which == 1 ? c1 : (which == 2 ? c2 : c3));
}
__device__ double rng_uniform_d(uint64_t seed, uint64_t stream, uint64_t index) {
  const uint64_t hi = rng_u32_d(seed, stream, 2 * index) >> 5;
  const uint64_t lo = rng_u32_d(seed, stream, 2 * index + 1) >> 6;
  return (double)((hi << 26) | lo) * (1.0 / 9007199254740992.0);
}
__device__ float rng_uniform_f_d(uint64_t seed, uint64_t stream, uint64_t index) {
  return (float)(rng_u32_d(seed, stream, index) >> 8) * (1.0f / 16777216.0f);
}

// ---- APoT / PoT ----
// Nearest of L[0..nl) (ascending) to a, ties to the smaller level (std::upper_bound's search).
__device__ float project_nearest_d(float a, const float* L, int64_t nl) {
  int64_t lo = 0, hi = nl;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (a < L[mid]) hi = mid; else lo = mid + 1;
  }
  if (lo == 0) return L[0];
  if (lo == nl) return L[nl - 1];
  const float h = L[lo], l = L[lo - 1];
  return __fsub_rn(h, a) < __fsub_rn(a, l) ? h : l;
}

// One block: mean, then the unbiased std, in double (two passes, fixed tree).
__global__ void mean_std_k(float* stats, double* ms, const float* w, int64_t n) {
  __shared__ double part[kThreads];
  __shared__ double mean;
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) acc += (double)w[i];
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) mean = part[0] / (double)n;
  __syncthreads();
  acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    const double d = (double)w[i] - mean;
    acc += d * d;
  }
  __syncthreads();
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double sd = sqrt(part[0] / (double)(n - 1));
    ms[0] = mean;
    ms[1] = sd > 0 ? sd : 1.0;
    stats[0] = (float)ms[0];
    stats[1] = (float)ms[1];
  }
}

__device__ __forceinline__ float apot_u(float w, const float* stats, float a) {
  return __fdiv_rn(__fdiv_rn(__fsub_rn(w, stats[0]), stats[1]), a);
}

__global__ void apot_w_fwd_k(float* y, const float* w, const float* alpha, const float* stats,
                             const float* L, int64_t nl, int64_t n) {
  const float a = alpha[0];
  LB_GRID_LOOP(i, n) {
    const float u = clampf(apot_u(w[i], stats, a), -1.f, 1.f);
    const float q = project_nearest_d(fabsf(u), L, nl);
    y[i] = __fmul_rn(u < 0 ? -q : q, a);
  }
}

__global__ void apot_w_bwd_k(float* gw, double* ca, const float* gy, const float* w,
                             const float* alpha, const float* stats, const float* L, int64_t nl,
                             bool clipped, int64_t n) {
  const float a = alpha[0];
  LB_GRID_LOOP(i, n) {
    const float u = apot_u(w[i], stats, a);
    const bool out = fabsf(u) > 1.f;
    if (gw) gw[i] = (!clipped || !out) ? __fdiv_rn(gy[i], stats[1]) : 0.f;
    if (ca) {
      if (out) {
        ca[i] = u > 0 ? (double)gy[i] : -(double)gy[i];
      } else {
        const float q = project_nearest_d(fabsf(u), L, nl);
        ca[i] = (double)gy[i] * (double)__fsub_rn(u < 0 ? -q : q, u);
      }
    }
  }
}

__global__ void apot_a_fwd_k(float* y, const float* x, const float* alpha, const float* L,
                             int64_t nl, int64_t n) {
  const float a = alpha[0];
  LB_GRID_LOOP(i, n) {
    const float u = __fdiv_rn(x[i], a);
    y[i] = __fmul_rn(project_nearest_d(u > 1.f ? 1.f : u, L, nl), a);
  }
}

__global__ void apot_a_bwd_k(float* gx, double* ca, const float* gy, const float* x,
                             const float* alpha, const float* L, int64_t nl, bool clipped,
                             int64_t n) {
  const float a = alpha[0];
  LB_GRID_LOOP(i, n) {
    const float u = __fdiv_rn(x[i], a);
    const bool out = u > 1.f;
    if (gx) gx[i] = (!clipped || !out) ? gy[i] : 0.f;
    if (ca) ca[i] = out ? (double)gy[i] : (double)gy[i] * (double)__fsub_rn(project_nearest_d(u, L, nl), u);
  }
}

// ---- rounding, maxabs, minmax, dropout ----
__global__ void rounding_fwd_k(float* y, const float* x, const float* s, int kind, float l, float h,
                               uint64_t seed, uint64_t stream, int64_t inner, int64_t n) {
  LB_GRID_LOOP(i, n) {
    const int64_t c = i / inner;
    float v = __fdiv_rn(x[i], s[c]);
    if (kind == 0) {
      v = clampf(v, l, h);
      y[i] = __fmul_rn(rintf(v), s[c]);
    } else if (kind == 1) {
      v = clampf(v, l, h);
      const float f = floorf(v);
      const double u = rng_uniform_d(seed, stream, (uint64_t)i);
      y[i] = __fmul_rn(u < (double)__fsub_rn(v, f) ? __fadd_rn(f, 1.f) : f, s[c]);
    } else {
      float f = floorf(v);
      const float top = __fsub_rn(h, 1.f);
      f = f < l ? l : (f > top ? top : f);
      y[i] = __fmul_rn(__fadd_rn(f, 0.5f), s[c]);
    }
  }
}

__global__ void rounding_bwd_k(float* gx, const float* gy, const float* x, const float* s, float l,
                               float h, bool clipped, int64_t inner, int64_t n) {
  LB_GRID_LOOP(i, n) {
    const float v = __fdiv_rn(x[i], s[i / inner]);
    gx[i] = (!clipped || (v > l && v < h)) ? gy[i] : 0.f;
  }
}

__global__ void maxabs_k(float* s, const float* x, double qp, int64_t n) {
  __shared__ double part[kThreads];
  double m = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) m = fmax(m, fabs((double)x[i]));
  part[threadIdx.x] = m;
  __syncthreads();
  for (int k = kThreads / 2; k > 0; k >>= 1) {
    if ((int)threadIdx.x < k) part[threadIdx.x] = fmax(part[threadIdx.x], part[threadIdx.x + k]);
    __syncthreads();
  }
  if (threadIdx.x == 0) s[0] = (float)(part[0] > 0 ? part[0] / qp : 1.0);
}

__global__ void minmax_fwd_k(float* y, const float* x, const float* scale, const float* zero,
                             float lo, float hi, int64_t inner, int64_t n) {
  LB_GRID_LOOP(i, n) {
    const int64_t c = i / inner;
    const float q = clampf(__fadd_rn(rintf(__fdiv_rn(x[i], scale[c])), zero[c]), lo, hi);
    y[i] = __fmul_rn(__fsub_rn(q, zero[c]), scale[c]);
  }
}

__global__ void minmax_bwd_k(float* gx, const float* gy, const float* x, const float* scale,
                             const float* zero, float lo, float hi, bool clipped, int64_t inner,
                             int64_t n) {
  LB_GRID_LOOP(i, n) {
    const int64_t c = i / inner;
    const float q = __fadd_rn(rintf(__fdiv_rn(x[i], scale[c])), zero[c]);
    gx[i] = (!clipped || (q >= lo && q <= hi)) ? gy[i] : 0.f;
  }
}

__global__ void dropout_k(float* y, float* m, const float* x, float p, float keep, uint64_t seed,
                          uint64_t stream, int64_t n) {
  LB_GRID_LOOP(i, n) {
    m[i] = rng_uniform_f_d(seed, stream, (uint64_t)i) >= p ? keep : 0.f;
    y[i] = __fmul_rn(x[i], m[i]);
  }
}

}  // namespace

void lsq_forward(float* y, const float* x, const float* s, const float* beta, int64_t qn,
                 int64_t qp, int64_t channels, int64_t inner) {
  const int64_t n = channels * inner;
  LB_LAUNCH("lsq", lsq_fwd_k, n, y, x, s, beta, (float)-qn, (float)qp, inner, n);
}

void lsq_backward(float* gx, float* gs, float* gbeta, const float* gy, const float* x,
                  const float* s, const float* beta, int64_t qn, int64_t qp, double grad_scale,
                  double beta_scale, bool clipped, int64_t channels, int64_t inner) {
  const int64_t n = channels * inner;
  if (n == 0) return;
  DeviceBuf cs(gs ? (size_t)n * sizeof(double) : 0), cb(gbeta ? (size_t)n * sizeof(double) : 0);
  LB_LAUNCH("lsq backward", lsq_bwd_k, n, gx, gs ? cs.d() : nullptr, gbeta ? cb.d() : nullptr, gy,
            x, s, beta, (float)-qn, (float)qp, clipped, inner, n);
  if (gs) reduce_channels(gs, cs.d(), grad_scale, channels, inner, "lsq backward");
  if (gbeta) reduce_channels(gbeta, cb.d(), beta_scale, channels, inner, "lsq backward");
}

void pact_forward(float* y, const float* x, const float* alpha, int64_t levels, int64_t n) {
  LB_LAUNCH("pact", pact_fwd_k, n, y, x, alpha, (float)levels, n);
}

void pact_backward(float* gx, float* galpha, const float* gy, const float* x, const float* alpha,
                   bool clipped, int64_t n) {
  if (n == 0) return;
  DeviceBuf ca(galpha ? (size_t)n * sizeof(double) : 0);
  LB_LAUNCH("pact backward", pact_bwd_k, n, gx, galpha ? ca.d() : nullptr, gy, x, alpha, clipped, n);
  if (galpha) reduce_channels(galpha, ca.d(), 1.0, 1, n, "pact backward");
}

void dorefa_w_forward(float* y, float* m, const float* w, int64_t levels, int64_t n) {
  absmax_tanh_k<<<1, kThreads, 0, stream()>>>(m, w, n);
  LB_CUDA_LAUNCHED("dorefa_w");
  LB_LAUNCH("dorefa_w", dorefa_w_fwd_k, n, y, m, w, (float)levels, n);
}

void dorefa_w_backward(float* gw, const float* gy, const float* w, const float* m, int64_t n) {
  if (n == 0) return;
  DeviceBuf cg((size_t)n * sizeof(double)), ct((size_t)n * sizeof(double)), sums(2 * sizeof(double));
  LB_LAUNCH("dorefa_w backward", dorefa_w_contrib_k, n, cg.d(), ct.d(), gy, w, m, n);
  channel_sums(sums.d(), cg.d(), 1, n, "dorefa_w backward");
  channel_sums(sums.d() + 1, ct.d(), 1, n, "dorefa_w backward");
  LB_LAUNCH("dorefa_w backward", dorefa_w_bwd_k, n, gw, gy, w, m, sums.d(), n);
}

void dorefa_a_forward(float* y, const float* x, int64_t levels, int64_t n) {
  LB_LAUNCH("dorefa_a", dorefa_a_fwd_k, n, y, x, (float)levels, n);
}

void dorefa_a_backward(float* gx, const float* gy, const float* x, bool clipped, int64_t n) {
  LB_LAUNCH("dorefa_a backward", dorefa_a_bwd_k, n, gx, gy, x, clipped, n);
}

void apot_w_stats(float* stats, double host_ms[2], const float* w, int64_t n) {
  DeviceBuf ms(2 * sizeof(double));
  mean_std_k<<<1, kThreads, 0, stream()>>>(stats, ms.d(), w, n);
  LB_CUDA_LAUNCHED("apot_w");
  cuda_copy(host_ms, Device::cpu, ms.p, Device::cuda, 2 * sizeof(double));
}

void apot_w_forward(float* y, const float* w, const float* alpha, const float* stats,
                    const float* levels, int64_t nl, int64_t n) {
  LB_LAUNCH("apot_w", apot_w_fwd_k, n, y, w, alpha, stats, levels, nl, n);
}

void apot_w_backward(float* gw, float* galpha, const float* gy, const float* w, const float* alpha,
                     const float* stats, const float* levels, int64_t nl, bool clipped, int64_t n) {
  if (n == 0) return;
  DeviceBuf ca(galpha ? (size_t)n * sizeof(double) : 0);
  LB_LAUNCH("apot_w backward", apot_w_bwd_k, n, gw, galpha ? ca.d() : nullptr, gy, w, alpha, stats,
            levels, nl, clipped, n);
  if (galpha) reduce_channels(galpha, ca.d(), 1.0, 1, n, "apot_w backward");
}

void apot_a_forward(float* y, const float* x, const float* alpha, const float* levels, int64_t nl,
                    int64_t n) {
  LB_LAUNCH("apot_a", apot_a_fwd_k, n, y, x, alpha, levels, nl, n);
}

void apot_a_backward(float* gx, float* galpha, const float* gy, const float* x, const float* alpha,
                     const float* levels, int64_t nl, bool clipped, int64_t n) {
  if (n == 0) return;
  DeviceBuf ca(galpha ? (size_t)n * sizeof(double) : 0);
  LB_LAUNCH("apot_a backward", apot_a_bwd_k, n, gx, galpha ? ca.d() : nullptr, gy, x, alpha,
            levels, nl, clipped, n);
  if (galpha) reduce_channels(galpha, ca.d(), 1.0, 1, n, "apot_a backward");
}

void rounding_forward(float* y, const float* x, const float* s, int kind, int64_t lo, int64_t hi,
                      uint64_t seed, uint64_t stream_id, int64_t channels, int64_t inner) {
  const int64_t n = channels * inner;
  LB_LAUNCH("rounding", rounding_fwd_k, n, y, x, s, kind, (float)lo, (float)hi, seed, stream_id,
            inner, n);
}

void rounding_backward(float* gx, const float* gy, const float* x, const float* s, int64_t lo,
                       int64_t hi, bool clipped, int64_t channels, int64_t inner) {
  const int64_t n = channels * inner;
  LB_LAUNCH("rounding backward", rounding_bwd_k, n, gx, gy, x, s, (float)lo, (float)hi, clipped,
            inner, n);
}

void maxabs_scale(float* s, const float* x, double qp, int64_t n) {
  maxabs_k<<<1, kThreads, 0, stream()>>>(s, x, qp, n);
  LB_CUDA_LAUNCHED("maxabs_quantize");
}

void minmax_forward(float* y, const float* x, const float* scale, const float* zero, int64_t qmin,
                    int64_t qmax, int64_t channels, int64_t inner) {
  const int64_t n = channels * inner;
  LB_LAUNCH("minmax", minmax_fwd_k, n, y, x, scale, zero, (float)qmin, (float)qmax, inner, n);
}

void minmax_backward(float* gx, const float* gy, const float* x, const float* scale,
                     const float* zero, int64_t qmin, int64_t qmax, bool clipped, int64_t channels,
                     int64_t inner) {
  const int64_t n = channels * inner;
  LB_LAUNCH("minmax backward", minmax_bwd_k, n, gx, gy, x, scale, zero, (float)qmin, (float)qmax,
            clipped, inner, n);
}

void dropout_forward(float* y, float* mask, const float* x, float p, float keep_scale,
                     uint64_t seed, uint64_t stream_id, int64_t n) {
  LB_LAUNCH("dropout", dropout_k, n, y, mask, x, p, keep_scale, seed, stream_id, n);
}

}  // namespace cuda
}  // namespace lowbit
