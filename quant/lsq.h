// LSQ (Esser et al., ICLR 2020) and LSQ+ (Bhalgat et al., CVPRW 2020) as graph ops with a learnable
// step s (and offset β for LSQ+): x̂ = round(clip((x-β)/s, -Q_N, Q_P))·s + β, gradients of s (and β)
// scaled by g = 1/sqrt(N·Q_P). METHODS.md "Uniform quantizers" (LSQ, LSQ+); kernels in lsq_kernels.h.
#pragma once
#include <cstdint>
#include <utility>

#include "core/tensor.h"
#include "quant/levels.h"

namespace lowbit {

struct LsqOptions {
  int bits = 4;            // [2, 16]
  bool is_signed = true;   // signed grid (weights) or unsigned (after ReLU)
  bool per_channel = false;  // s (and β) of shape (C), C = x.size(0)
  // Factor g on the gradients of s and β. < 0: the default 1/sqrt(N·Q_P), with N = grad_scale_n
  // when > 0, else N = the elements of x (per-tensor) or of one channel of x (per-channel, the
  // weight default of METHODS.md). A layer's activation quantizer passes grad_scale_n = C·H·W.
  double grad_scale = -1;
  int64_t grad_scale_n = 0;
  Ste ste = Ste::method_default;  // default clipped: ∂x̂/∂x = 1[-Q_N < x/s < Q_P]
  // LSQ+ only: β's gradient gets the same factor g as s's (the usual LSQ+ reading); false leaves
  // it unscaled.
  bool scale_offset_grad = true;
};

// x: any shape (per-channel: >= 2-d, channel axis 0); s: () or (1,) per-tensor, (C,) per-channel,
// > 0, same dtype as x. Records node kind "lsq", inputs ("x", "s").
Tensor lsq_quantize(const Tensor& x, const Tensor& s, const LsqOptions& o);
// LSQ+: beta has the shape of s. Records node kind "lsqplus", inputs ("x", "s", "beta"). The
// gradient of β is scaled by g too unless scale_offset_grad is false.
Tensor lsqplus_quantize(const Tensor& x, const Tensor& s, const Tensor& beta, const LsqOptions& o);

// The gradient scale the op uses for these options and this x.
double lsq_grad_scale(const Tensor& x, const LsqOptions& o);

// LSQ init: s = 2·mean(|x|)/sqrt(Q_P), over all of x (shape (1,)) or per channel of axis 0
// (shape (C,)); x's dtype, detached. Mean in double.
Tensor lsq_init_step(const Tensor& x, int bits, bool is_signed, bool per_channel = false);

// LSQ+ init from a batch by min/max: s = (max-min)/(Q_P+Q_N), β = min + Q_N·s, so that min and max
// land exactly on the grid's ends. Returns (s, β), each of shape (1,) or (C,).
std::pair<Tensor, Tensor> lsqplus_init_minmax(const Tensor& x, int bits, bool is_signed,
                                              bool per_channel = false);
// LSQ+ init minimising the MSE of x - x̂ (per-tensor): a coordinate grid search over the range's
// upper end (1, 0.99, ..., 0.01 of [min, max]), then its lower end; min/max is a candidate, so the
// result is never worse than lsqplus_init_minmax. Returns (s, β).
std::pair<Tensor, Tensor> lsqplus_init_mse(const Tensor& x, int bits, bool is_signed);

}  // namespace lowbit
