// Batch norm in training mode (N, C, H, W), written here instead of cuDNN's legacy NCHW kernels:
// on an H200 those took 41% of a ResNet-20 training step at batch 512 (`lowbit bench --device cuda
// --profile`: 0.13 ms forward and 0.34 ms backward a layer, several times what their memory
// traffic needs). Each direction is three launches:
//   1. partial sums per (chunk, channel) in double: Σx, Σx² forward; Σdy, Σdy·(x - mean) backward;
//   2. one thread per channel adds its chunks' partials in a fixed order and derives the per-channel
//      coefficients (no atomics anywhere: same input, same bits);
//   3. an elementwise pass over the tensor with those coefficients.
// Like the CPU's node, a residual add and a relu / relu6 can be fused in (`batch_norm2d+add+relu`):
// forward y = act((x - mean)·scale + bias + residual); backward masks dy by the output (relu: y > 0,
// relu6: 0 < y < 6) in both passes and hands the masked dy to the residual.
// Rows of H·W floats are read as float4 where H·W % 4 == 0 and every pointer is 16-byte aligned.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/cuda/common.cuh"
#include "core/activation.h"
#include "core/cuda/kernels.h"

namespace lowbit {
namespace cuda {
namespace {

constexpr int kBnThreads = 256;  // a multiple of 32: the block sum works warp by warp

template <int V>
__device__ inline void load(float (&r)[V], const float* p) {
  if constexpr (V == 4) {
    const float4 t = *reinterpret_cast<const float4*>(p);
    r[0] = t.x, r[1] = t.y, r[2] = t.z, r[3] = t.w;
  } else {
    r[0] = *p;
  }
}

template <int V>
__device__ inline void store(float* p, const float (&r)[V]) {
  if constexpr (V == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(r[0], r[1], r[2], r[3]);
  } else {
    *p = r[0];
  }
}

// Whether relu's (A = 1) or relu6's (A = 2) backward passes dy at output y (core/activation.h).
template <int A>
__device__ inline bool passes(float y) {
  if constexpr (A == 1) return y > 0.f;
  else if constexpr (A == 2) return y > 0.f && y < 6.f;
  else return true;
}

// relu's (A = 1) and relu6's (A = 2) forward, core/activation.h's act_fwd on the device.
template <int A>
__device__ inline float act_fwd_dev(float v) {
  if constexpr (A == 1) return v > 0.f ? v : 0.f;
  else if constexpr (A == 2) return v > 0.f ? (v < 6.f ? v : 6.f) : 0.f;
  else return v;
}

// The incoming gradient as the fused activation hands it on: dy where the output passes, else 0.
template <int V, int A>
__device__ inline void load_masked(float (&g)[V], const float* gy, const float* y) {
  load<V>(g, gy);
  if constexpr (A != 0) {
    float yv[V];
    load<V>(yv, y);
    for (int k = 0; k < V; ++k) g[k] = passes<A>(yv[k]) ? g[k] : 0.f;
  }
}

// Sums a and b over the block in a fixed order (warp shuffles, then the warps' sums); the result
// is valid in thread 0.
__device__ inline void block_sum2(double& a, double& b) {
  __shared__ double sa[kBnThreads / 32], sb[kBnThreads / 32];
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_down_sync(0xffffffffu, a, o);
    b += __shfl_down_sync(0xffffffffu, b, o);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) sa[warp] = a, sb[warp] = b;
  __syncthreads();
  if (warp == 0) {
    a = lane < kBnThreads / 32 ? sa[lane] : 0.0;
    b = lane < kBnThreads / 32 ? sb[lane] : 0.0;
    for (int o = kBnThreads / 64; o > 0; o >>= 1) {
      a += __shfl_down_sync(0xffffffffu, a, o);
      b += __shfl_down_sync(0xffffffffu, b, o);
    }
  }
}

// Block (s, ch) sums vectors [s·chunk, (s+1)·chunk) of channel ch, whose n rows of hwv vectors
// lie c·hwv vectors apart. Grad = false: Σx, Σx²; Grad = true: Σdy, Σdy·(x - mean[ch]), dy masked
// by the fused activation A (0 none, 1 relu, 2 relu6) at the output y.
// I: the index type (32-bit where the tensor's size allows: 64-bit division is slow).
template <int V, bool Grad, int A, typename I>
__global__ void __launch_bounds__(kBnThreads)
    bn_partial_k(double* part, const float* x, const float* gy, const float* y, const float* mean,
                 I c, I hwv, I nvec, I chunk) {
  const I ch = blockIdx.y, s = blockIdx.x;
  const I beg = s * chunk, end = min(nvec, beg + chunk);
  const double m = Grad ? (double)mean[ch] : 0.0;
  double a = 0, b = 0;
  for (I j = beg + threadIdx.x; j < end; j += kBnThreads) {
    const I row = j / hwv;
    const I off = ((row * c + ch) * hwv + (j - row * hwv)) * V;
    float xv[V];
    load<V>(xv, x + off);
    if constexpr (Grad) {
      float gv[V];
      load_masked<V, A>(gv, gy + off, y + off);
      for (int k = 0; k < V; ++k) {
        a += (double)gv[k];
        b += (double)gv[k] * ((double)xv[k] - m);
      }
    } else {
      for (int k = 0; k < V; ++k) {
        a += (double)xv[k];
        b += (double)xv[k] * (double)xv[k];
      }
    }
  }
  block_sum2(a, b);
  if (threadIdx.x == 0) {
    part[((size_t)ch * gridDim.x + s) * 2] = a;
    part[((size_t)ch * gridDim.x + s) * 2 + 1] = b;
  }
}

// Forward finish, per channel: batch mean and (biased) variance, the saved mean and inverse std,
// the running statistics (r = (1-m) r + m batch, unbiased variance: ops_norm.cpp's rule), and
// coef = (mean, w·invstd, bias) for the apply pass.
__global__ void bn_finish_forward_k(float* coef, float* save_mean, float* save_invstd, float* rm,
                                    float* rv, const double* part, int chunks, const float* w,
                                    const float* bias, double count, double momentum, double eps,
                                    int64_t c) {
  LB_GRID_LOOP(ch, c) {
    double s = 0, q = 0;
    for (int k = 0; k < chunks; ++k) {
      s += part[(ch * chunks + k) * 2];
      q += part[(ch * chunks + k) * 2 + 1];
    }
    const double mean = s / count;
    const double var = fmax(q / count - mean * mean, 0.0);
    const double invstd = 1.0 / sqrt(var + eps);
    save_mean[ch] = (float)mean;
    save_invstd[ch] = (float)invstd;
    if (rm) {
      rm[ch] = (float)((1 - momentum) * (double)rm[ch] + momentum * mean);
      rv[ch] = (float)((1 - momentum) * (double)rv[ch] + momentum * var * (count / (count - 1)));
    }
    coef[ch * 4] = (float)mean;
    coef[ch * 4 + 1] = (float)((w ? (double)w[ch] : 1.0) * invstd);
    coef[ch * 4 + 2] = bias ? bias[ch] : 0.f;
  }
}

// Backward finish, per channel: gw = Σdy·x̂, gb = Σdy, and coef = (mean, k, k·gb/count,
// k·invstd·gw/count) with k = w·invstd, so that gx = k·dy - coef[2] - (x - mean)·coef[3].
__global__ void bn_finish_backward_k(float* coef, float* gw, float* gb, const double* part,
                                     int chunks, const float* w, const float* mean,
                                     const float* invstd, double count, int64_t c) {
  LB_GRID_LOOP(ch, c) {
    double sdy = 0, sdyx = 0;
    for (int k = 0; k < chunks; ++k) {
      sdy += part[(ch * chunks + k) * 2];
      sdyx += part[(ch * chunks + k) * 2 + 1];
    }
    const double is = invstd[ch];
    const double dw = sdyx * is;
    const double k = (w ? (double)w[ch] : 1.0) * is;
    gw[ch] = (float)dw;
    gb[ch] = (float)sdy;
    coef[ch * 4] = mean[ch];
    coef[ch * 4 + 1] = (float)k;
    coef[ch * 4 + 2] = (float)(k * sdy / count);
    coef[ch * 4 + 3] = (float)(k * is * dw / count);
  }
}

// y = act((x - mean)·scale + bias + residual), coef per channel as bn_finish_forward_k writes
// it; residual may be null.
template <int V, int A, typename I>
__global__ void bn_apply_forward_k(float* y, const float* x, const float* res, const float* coef,
                                   I c, I hwv, I total) {
  for (I v = (I)blockIdx.x * blockDim.x + threadIdx.x; v < total; v += (I)gridDim.x * blockDim.x) {
    const I ch = (v / hwv) % c;
    const float m = coef[ch * 4], sc = coef[ch * 4 + 1], b = coef[ch * 4 + 2];
    float r[V];
    load<V>(r, x + (size_t)v * V);
    for (int k = 0; k < V; ++k) r[k] = (r[k] - m) * sc + b;
    if (res) {
      float rv[V];
      load<V>(rv, res + (size_t)v * V);
      for (int k = 0; k < V; ++k) r[k] = r[k] + rv[k];
    }
    for (int k = 0; k < V; ++k) r[k] = act_fwd_dev<A>(r[k]);
    store<V>(y + (size_t)v * V, r);
  }
}

// gx = k·dy - a - (x - mean)·b, coef per channel as bn_finish_backward_k writes it, dy masked by
// the fused activation A at the output y; gres (if not null) gets the masked dy. gx may be null.
template <int V, int A, typename I>
__global__ void bn_apply_backward_k(float* gx, float* gres, const float* gy, const float* x,
                                    const float* y, const float* coef, I c, I hwv, I total) {
  for (I v = (I)blockIdx.x * blockDim.x + threadIdx.x; v < total; v += (I)gridDim.x * blockDim.x) {
    const size_t o = (size_t)v * V;
    float g[V];
    load_masked<V, A>(g, gy + o, y + o);
    if (gres) store<V>(gres + o, g);
    if (!gx) continue;
    const I ch = (v / hwv) % c;
    const float m = coef[ch * 4], k = coef[ch * 4 + 1], a = coef[ch * 4 + 2], b = coef[ch * 4 + 3];
    float xv[V];
    load<V>(xv, x + o);
    for (int j = 0; j < V; ++j) g[j] = (k * g[j] - a) - (xv[j] - m) * b;
    store<V>(gx + o, g);
  }
}

bool aligned16(const void* p) { return p == nullptr || (uintptr_t)p % 16 == 0; }

// How a (N, C, HW) tensor is cut: vector width, vectors per row and per channel, and chunks per
// channel (at least 256 vectors each, about 2048, and enough blocks in all to fill the GPU).
struct Plan {
  int v;
  int64_t hwv, nvec, chunk, chunks;
};

Plan plan(int64_t n, int64_t c, int64_t hw, std::initializer_list<const void*> ptrs) {
  bool vec = hw % 4 == 0;
  for (const void* p : ptrs) vec = vec && aligned16(p);
  Plan p;
  p.v = vec ? 4 : 1;
  p.hwv = hw / p.v;
  p.nvec = n * p.hwv;
  const int64_t want = std::max((p.nvec + 2047) / 2048, (1024 + c - 1) / c);
  const int64_t most = std::max<int64_t>((p.nvec + 255) / 256, 1);
  p.chunks = std::min<int64_t>(std::min(want, most), 65535);
  p.chunk = (p.nvec + p.chunks - 1) / p.chunks;
  p.chunks = (p.nvec + p.chunk - 1) / p.chunk;
  return p;
}

unsigned apply_blocks(int64_t total) {
  return (unsigned)std::min<int64_t>(std::max<int64_t>((total + kBnThreads - 1) / kBnThreads, 1),
                                     132 * 16);
}

// Offsets in floats fit 32 bits: the kernels' index type can be 32-bit (64-bit division is slow).
bool small_tensor(int64_t n, int64_t c, int64_t hw) { return n * c * hw < (int64_t)INT32_MAX; }

template <int K>
using Int = std::integral_constant<int, K>;

// Calls f(Int<V>, I{}, Int<A>) for the plan's vector width, the index type and the activation:
// each kernel launch below is written once for all their combinations.
template <class F>
void dispatch(const Plan& p, int64_t n, int64_t c, FusedAct act, F&& f) {
  auto by_act = [&](auto v, auto i) {
    if (act == FusedAct::relu) f(v, i, Int<1>{});
    else if (act == FusedAct::relu6) f(v, i, Int<2>{});
    else f(v, i, Int<0>{});
  };
  const bool small = small_tensor(n, c, p.hwv * p.v);
  if (p.v == 4) small ? by_act(Int<4>{}, uint32_t{}) : by_act(Int<4>{}, uint64_t{});
  else small ? by_act(Int<1>{}, uint32_t{}) : by_act(Int<1>{}, uint64_t{});
}

// Scratch for the partials (chunks·c pairs of doubles) and the coefficients (4 floats a channel).
struct Scratch {
  double* part;
  float* coef;
};

Scratch scratch(const Plan& p, int64_t c) {
  const size_t part_bytes = (size_t)(p.chunks * c) * 2 * sizeof(double);
  char* ws = (char*)workspace(part_bytes + (size_t)c * 4 * sizeof(float));
  return {(double*)ws, (float*)(ws + part_bytes)};
}

}  // namespace

void batch_norm_train_forward(float* y, float* save_mean, float* save_invstd, const float* x,
                              const float* weight, const float* bias, float* running_mean,
                              float* running_var, double momentum, double eps, int64_t n,
                              int64_t c, int64_t hw, FusedAct act, const float* residual) {
  const char* op = "batch_norm2d";
  LB_CHECK(c <= 65535, op, ": at most 65535 channels on cuda, got ", c);
  const Plan p = plan(n, c, hw, {x, y, residual});
  const Scratch s = scratch(p, c);
  const dim3 grid((unsigned)p.chunks, (unsigned)c);
  const int64_t total = n * c * p.hwv;
  dispatch(p, n, c, FusedAct::none, [&](auto v, auto i, auto) {
    using I = decltype(i);
    constexpr int V = decltype(v)::value;
    bn_partial_k<V, false, 0, I><<<grid, kBnThreads, 0, stream()>>>(
        s.part, x, nullptr, nullptr, nullptr, (I)c, (I)p.hwv, (I)p.nvec, (I)p.chunk);
  });
  LB_CUDA_LAUNCHED(op);
  LB_LAUNCH(op, bn_finish_forward_k, c, s.coef, save_mean, save_invstd, running_mean, running_var,
            s.part, (int)p.chunks, weight, bias, (double)(n * hw), momentum, eps, c);
  dispatch(p, n, c, act, [&](auto v, auto i, auto a) {
    using I = decltype(i);
    constexpr int V = decltype(v)::value, A = decltype(a)::value;
    bn_apply_forward_k<V, A, I><<<apply_blocks(total), kBnThreads, 0, stream()>>>(
        y, x, residual, s.coef, (I)c, (I)p.hwv, (I)total);
  });
  LB_CUDA_LAUNCHED(op);
}

void batch_norm_train_backward(float* gx, float* gweight, float* gbias, float* gres,
                               const float* gy, const float* x, const float* y,
                               const float* weight, const float* save_mean,
                               const float* save_invstd, int64_t n, int64_t c, int64_t hw,
                               FusedAct act) {
  const char* op = "batch_norm2d backward";
  LB_CHECK(c <= 65535, op, ": at most 65535 channels on cuda, got ", c);
  LB_CHECK(act != FusedAct::none || !gres, op, ": a residual gradient to write needs an activation "
           "(without one it is dy itself)");
  LB_CHECK(act == FusedAct::none || y, op, ": the fused activation's mask needs the output y");
  const Plan p = plan(n, c, hw, {x, gy, gx, y, gres});
  const Scratch s = scratch(p, c);
  const dim3 grid((unsigned)p.chunks, (unsigned)c);
  const int64_t total = n * c * p.hwv;
  dispatch(p, n, c, act, [&](auto v, auto i, auto a) {
    using I = decltype(i);
    constexpr int V = decltype(v)::value, A = decltype(a)::value;
    bn_partial_k<V, true, A, I><<<grid, kBnThreads, 0, stream()>>>(
        s.part, x, gy, y, save_mean, (I)c, (I)p.hwv, (I)p.nvec, (I)p.chunk);
  });
  LB_CUDA_LAUNCHED(op);
  LB_LAUNCH(op, bn_finish_backward_k, c, s.coef, gweight, gbias, s.part, (int)p.chunks, weight,
            save_mean, save_invstd, (double)(n * hw), c);
  if (!gx && !gres) return;
  dispatch(p, n, c, act, [&](auto v, auto i, auto a) {
    using I = decltype(i);
    constexpr int V = decltype(v)::value, A = decltype(a)::value;
    bn_apply_backward_k<V, A, I><<<apply_blocks(total), kBnThreads, 0, stream()>>>(
        gx, gres, gy, x, y, s.coef, (I)c, (I)p.hwv, (I)total);
  });
  LB_CUDA_LAUNCHED(op);
}

}  // namespace cuda
}  // namespace lowbit
