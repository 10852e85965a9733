// PACT (Choi et al. 2018; seed 004 §2.2.1) for activations with a learnable clip level α:
//   y = clip(x, 0, α), y_q = round(y·(2^b-1)/α)·α/(2^b-1);  ∂y_q/∂x = 1[0 <= x < α], ∂y_q/∂α = 1[x >= α]
// METHODS.md "Uniform quantizers" (PACT). The L2 penalty λ_α·α² is pact_penalty (a plain graph).
#pragma once
#include "core/tensor.h"
#include "quant/levels.h"

namespace lowbit {

struct PactOptions {
  int bits = 4;                   // [2, 16]
  Ste ste = Ste::method_default;  // default clipped: ∂y_q/∂x = 1[0 <= x < α]; identity: 1
};

// x: any shape; alpha: () or (1,), > 0, x's dtype. Records node kind "pact", inputs ("x", "alpha").
Tensor pact_quantize(const Tensor& x, const Tensor& alpha, const PactOptions& o);

// The method's regulariser λ·α² summed over α's elements, recorded (so it reaches α's gradient).
Tensor pact_penalty(const Tensor& alpha, double lambda);

// CPU kernels. x, y, gx: (n); alpha: (1); galpha: (1), overwritten with the sum.
template <class T>
void pact_forward_cpu(T* y, const T* x, const T* alpha, int64_t levels, int64_t n);
template <class T>
void pact_backward_cpu(T* gx, T* galpha, const T* gy, const T* x, const T* alpha, bool clipped,
                       int64_t n);

}  // namespace lowbit
