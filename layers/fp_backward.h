// "Full-precision backward" (METHODS.md "Gradient estimators to audit"; seed 004 §4.2.1, Table 4.3):
// a conv/linear whose forward uses the quantized input and weight (xq, wq) but whose backward is
// computed with the full-precision ones (x, w), and whose gradients go to x and w directly.
#pragma once
#include "core/ops.h"

namespace lowbit {

// Forward: y = conv2d(xq, wq, bias). Records one node "conv2d_fp_backward" with inputs
// ("x", "weight", "bias") = (x, w, bias) -- not xq/wq -- whose backward is conv2d's backward taken at
// (x, w): dL/dx = conv_backward_data(g, w), dL/dw = conv_backward_weight(g, x), dL/dbias = Σ g.
// The gradients reach x and w without passing through the quantizers: no STE mask, and the
// quantizers' own parameters (LSQ step, APoT α) receive no gradient from this layer (they keep
// their data-driven or fixed init). xq/wq must have the shapes of x/w. No grad mode: plain conv2d.
Tensor conv2d_fp_backward(const Tensor& xq, const Tensor& wq, const Tensor& x, const Tensor& w,
                          const Tensor& bias, const Conv2dOptions& o);
// The same for y = xq wq^T + bias: dL/dx = g w, dL/dw = g^T x, node "linear_fp_backward".
Tensor linear_fp_backward(const Tensor& xq, const Tensor& wq, const Tensor& x, const Tensor& w,
                          const Tensor& bias);

}  // namespace lowbit
