// The CUDA backend's entry points, as op code sees them: plain functions on raw device pointers
// (float32; shapes in the comments), queued on the backend's one stream. Declared here without any
// CUDA type so that op files include this header in every build: the GPU build defines them in
// core/cuda/*.cu and *.cpp, the CPU build in core/cuda/stub.cpp, where they throw. An op reaches
// them only with tensors on Device::cuda, which the CPU build cannot create.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/activation.h"
#include "core/tensor.h"

namespace lowbit {

// ---- runtime (core/cuda/runtime.cpp) ----
void cuda_synchronize();       // waits for the stream (no-op without a device)
std::string cuda_describe();   // "CUDA built in (...); device 0: ..." or why there is none
// --deterministic: only deterministic cuDNN algorithms (and no float atomics, which the kernels
// never use anyway). Process-wide, like the device itself.
void cuda_set_deterministic(bool on);
bool cuda_deterministic();

// p[0..n) on the device must be > 0 and finite; checked by a kernel and reported (an Error whose
// message starts with `what`) at the next copy to or from the host or cuda_synchronize
// (core/cuda/checks.cu says why it is deferred).
void cuda_check_positive(const float* p, int64_t n, const std::string& what);

// True when any defined tensor of `ts` is on cuda; then all must be (error names op and input).
bool on_cuda(const char* op, std::initializer_list<const Tensor*> ts,
             std::initializer_list<const char*> names);
// Float32 only on the GPU: float64 exists for CPU gradient checks.
void check_cuda_f32(const Tensor& t, const char* op);

namespace cuda {

// ---- elementwise (core/cuda/elementwise.cu) ----
enum class Bin : int { add, sub, mul, div, first };  // first: y = a (broadcast copy)
// y (out) = a op b with NumPy broadcasting; sa, sb: element strides per output axis (0 = broadcast).
void binary_broadcast(Bin op, float* y, const float* a, const float* b, const Shape& out,
                      const std::vector<int64_t>& sa, const std::vector<int64_t>& sb);
enum class Scalar : int { add, mul, square };
void scalar_op(Scalar op, float* y, const float* x, float s, int64_t n);  // x, y: (n)
void fill(float* y, float v, int64_t n);
// relu (hi < 0) / relu6 (hi = 6): y = clamp(x, 0, hi); gx = g where 0 < x < hi.
void clamp_relu_forward(float* y, const float* x, float hi, int64_t n);
void clamp_relu_backward(float* gx, const float* g, const float* x, float hi, int64_t n);
// Sum over the axes where red[d]; y has the kept axes in order. Double accumulation in a fixed
// order per output element: deterministic.
void sum_axes(float* y, const float* x, const Shape& in, const std::vector<bool>& red);
// Copies a (outer, len, inner) block: dst[o, dst_off + j, i] = src[o, src_off + j, i], j < len;
// the axis lengths are dst_axis and src_axis. Slice, split, concat and their backwards.
void copy_axis_block(float* dst, const float* src, int64_t outer, int64_t inner, int64_t len,
                     int64_t dst_axis, int64_t dst_off, int64_t src_axis, int64_t src_off);
// x (N, g, C/g, HW) -> y (N, C/g, g, HW).
void channel_shuffle(float* y, const float* x, int64_t n, int64_t groups, int64_t per_group,
                     int64_t hw);
// logits (N, K), target int64 (N) -> prob (N, K) softmax, loss (1) = mean of the smoothed
// cross-entropy; rows reduced in a fixed order.
void softmax_xent_forward(float* loss, float* prob, const float* logits, const int64_t* target,
                          int64_t n, int64_t k, double smoothing);
// gx (N, K) = g · (prob - (1-eps) onehot - eps/K) / N; g: (1) on the device.
void softmax_xent_backward(float* gx, const float* g, const float* prob, const int64_t* target,
                           int64_t n, int64_t k, double smoothing);
// torch.optim's single-tensor updates, operation by operation (layers/optim.cpp is the spec).
void sgd_update(float* p, const float* g, float* buf, bool first, float wd, float momentum,
                float damp, float neg_lr, bool nesterov, int64_t n);
void adam_update(float* p, const float* g, float* m, float* v, float wd, float decay, float b1,
                 float b2, float one_b1, float one_b2, float c2, float eps, float neg_step,
                 bool decoupled, bool small_w, int64_t n);
void apply_mask(float* p, const float* mask, int64_t n);

// ---- quantizers (core/cuda/quant.cu; quant/*_kernels.h are the spec) ----
void lsq_forward(float* y, const float* x, const float* s, const float* beta, int64_t qn,
                 int64_t qp, int64_t channels, int64_t inner);
void lsq_backward(float* gx, float* gs, float* gbeta, const float* gy, const float* x,
                  const float* s, const float* beta, int64_t qn, int64_t qp, double grad_scale,
                  double beta_scale, bool clipped, int64_t channels, int64_t inner);
void pact_forward(float* y, const float* x, const float* alpha, int64_t levels, int64_t n);
void pact_backward(float* gx, float* galpha, const float* gy, const float* x, const float* alpha,
                   bool clipped, int64_t n);
void dorefa_w_forward(float* y, float* m, const float* w, int64_t levels, int64_t n);
void dorefa_w_backward(float* gw, const float* gy, const float* w, const float* m, int64_t n);
void dorefa_a_forward(float* y, const float* x, int64_t levels, int64_t n);
void dorefa_a_backward(float* gx, const float* gy, const float* x, bool clipped, int64_t n);

// APoT/PoT (quant/apot_kernels.h): levels (nl) ascending on the device; stats (2) = (mean, std).
// w_stats: mean and unbiased std of w (n) in double, written to stats (2, float) and to host_ms.
void apot_w_stats(float* stats, double host_ms[2], const float* w, int64_t n);
void apot_w_forward(float* y, const float* w, const float* alpha, const float* stats,
                    const float* levels, int64_t nl, int64_t n);
void apot_w_backward(float* gw, float* galpha, const float* gy, const float* w, const float* alpha,
                     const float* stats, const float* levels, int64_t nl, bool clipped, int64_t n);
void apot_a_forward(float* y, const float* x, const float* alpha, const float* levels, int64_t nl,
                    int64_t n);
void apot_a_backward(float* gx, float* galpha, const float* gy, const float* x, const float* alpha,
                     const float* levels, int64_t nl, bool clipped, int64_t n);
// Nearest / stochastic / mid-rise rounding (quant/rounding.cpp); kind: 0, 1, 2 in that order.
// Stochastic draws rng_uniform(seed, stream, i) with a device copy of core/rng.cpp's Philox.
void rounding_forward(float* y, const float* x, const float* s, int kind, int64_t lo, int64_t hi,
                      uint64_t seed, uint64_t stream, int64_t channels, int64_t inner);
void rounding_backward(float* gx, const float* gy, const float* x, const float* s, int64_t lo,
                       int64_t hi, bool clipped, int64_t channels, int64_t inner);
// s (1) = max|x| / qp, or 1 when x is all zeros (quant/maxabs.cpp).
void maxabs_scale(float* s, const float* x, double qp, int64_t n);
// MinMax (quant/minmax.cpp): scale, zero (C) on the device.
void minmax_forward(float* y, const float* x, const float* scale, const float* zero, int64_t qmin,
                    int64_t qmax, int64_t channels, int64_t inner);
void minmax_backward(float* gx, const float* gy, const float* x, const float* scale,
                     const float* zero, int64_t qmin, int64_t qmax, bool clipped, int64_t channels,
                     int64_t inner);
// Dropout (core/ops_activation.cpp): mask = keep_scale where rng_uniform_f(seed, stream, i) >= p.
void dropout_forward(float* y, float* mask, const float* x, float p, float keep_scale,
                     uint64_t seed, uint64_t stream, int64_t n);

// ---- cuBLAS and cuDNN (core/cuda/dnn.cpp) ----
// Row-major C (M, N) = op(A) op(B), lda/ldb the stored row strides (core/cpu/blas.h's contract).
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
          const float* b, int64_t ldb, float* c);
struct ConvShape {  // x (N, C, H, W), w (O, C/groups, KH, KW), y (N, O, OH, OW)
  int64_t n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups;
};
void conv2d_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s);
void conv2d_backward_data(float* gx, const float* gy, const float* w, const ConvShape& s);
void conv2d_backward_filter(float* gw, const float* gy, const float* x, const ConvShape& s);
void conv2d_backward_bias(float* gb, const float* gy, const ConvShape& s);
// Batch norm over (N, C, H, W) per channel, hw = H·W. Training mode is our own kernels
// (core/cuda/batch_norm.cu): updates the running statistics in place if given (unbiased variance,
// r = (1-m) r + m batch), saves mean / inverse std (C) for the backward, and fuses what the CPU's
// node fuses: y = act((x - mean)·w·invstd + b + residual), residual may be null.
void batch_norm_train_forward(float* y, float* save_mean, float* save_invstd, const float* x,
                              const float* weight, const float* bias, float* running_mean,
                              float* running_var, double momentum, double eps, int64_t n,
                              int64_t c, int64_t hw, FusedAct act, const float* residual);
// dy is masked by the activation at the output y (null without one); gres, if not null, receives
// the masked dy (the residual's gradient; only with an activation). gx may be null; gweight and
// gbias (C) are always written.
void batch_norm_train_backward(float* gx, float* gweight, float* gbias, float* gres,
                               const float* gy, const float* x, const float* y,
                               const float* weight, const float* save_mean,
                               const float* save_invstd, int64_t n, int64_t c, int64_t hw,
                               FusedAct act);
// Eval mode, cuDNN's inference kernel; saves running_mean and 1/sqrt(running_var + eps) (C).
void batch_norm_eval_forward(float* y, float* save_mean, float* save_invstd, const float* x,
                             const float* weight, const float* bias, const float* running_mean,
                             const float* running_var, double eps, int64_t n, int64_t c, int64_t h,
                             int64_t w);
// Eval mode: save_mean = running_mean, save_invstd = 1/sqrt(running_var + eps) (C).
void bn_eval_stats(float* save_mean, float* save_invstd, const float* running_mean,
                   const float* running_var, double eps, int64_t c);
// Backward with fixed statistics: gx = gy·w·invstd; gw = Σ gy·x̂; gb = Σ gy (per channel, fixed
// order). gx may be null; gw, gb are always written.
void bn_eval_backward(float* gx, float* gw, float* gb, const float* gy, const float* x,
                      const float* weight, const float* mean, const float* invstd, int64_t n,
                      int64_t c, int64_t hw);
struct PoolShape {  // x (N, C, H, W) -> y (N, C, OH, OW)
  int64_t n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw;
  bool max, count_include_pad;
};
void pool2d_forward(float* y, const float* x, const PoolShape& s);
void pool2d_backward(float* gx, const float* gy, const float* y, const float* x, const PoolShape& s);

}  // namespace cuda
}  // namespace lowbit
