// DoReFa-Net (Zhou et al. 2016) quantizers, METHODS.md "Uniform quantizers" (DoReFa):
//   quantize_k(r) = round((2^k-1)·r)/(2^k-1) with an STE;  weights: t = tanh(w), m = max|t|,
//   w_q = 2·quantize_k(t/m·½ + ½) - 1, differentiated through tanh and the max;  activations: quantize_k(clip(x,0,1)).
#pragma once
#include "core/tensor.h"
#include "quant/levels.h"

namespace lowbit {

struct DorefaOptions {
  int bits = 4;                   // k, in [2, 16]
  Ste ste = Ste::method_default;  // activations only (default clipped: 1[0 <= x <= 1]); weights
                                  // have no clip, so setting it for them is an error
};

// Weights, any shape, no learnable parameter. Records node kind "dorefa_w", input ("w").
// Backward as the authors' code differentiates it (STE through quantize_k):
//   ∂/∂t_i = gy_i/m, the max's gradient g_m = -Σ_j gy_j·t_j/m² goes to the arg-max of |t| times
//   sign(t) (shared equally among ties, as TensorFlow's reduce_max does), then × (1 - t²).
// All-zero weights (m = 0): t/m is taken as 0 and the gradient is 0.
Tensor dorefa_quantize_weight(const Tensor& w, const DorefaOptions& o);
// Activations, any shape. Records node kind "dorefa_a", input ("x").
Tensor dorefa_quantize_activation(const Tensor& x, const DorefaOptions& o);

// CPU kernels. w, y, gw, gy: (n); m: (1), written by the forward (max |tanh w|), read by backward.
template <class T>
void dorefa_w_forward_cpu(T* y, T* m, const T* w, int64_t levels, int64_t n);
template <class T>
void dorefa_w_backward_cpu(T* gw, const T* gy, const T* w, const T* m, int64_t n);
template <class T>
void dorefa_a_forward_cpu(T* y, const T* x, int64_t levels, int64_t n);
template <class T>
void dorefa_a_backward_cpu(T* gx, const T* gy, const T* x, bool clipped, int64_t n);

}  // namespace lowbit
