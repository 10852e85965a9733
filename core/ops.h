// Every differentiable op of the engine, device-agnostic: each checks its inputs (errors name the
// op, the shapes and the offending value), allocates the output, calls the kernel for the tensor's
// device and records a node with a hand-written backward (core/autograd.h).
// Float ops take float32 or float64 (float64 is what gradient checks run in); mixing is an error.
#pragma once
#include <cstdint>
#include <vector>

#include "core/activation.h"
#include "core/tensor.h"

namespace lowbit {

// ---- elementwise with NumPy broadcasting (core/ops_elementwise.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, double s);
Tensor mul_scalar(const Tensor& a, double s);
Tensor neg(const Tensor& a);
Tensor square(const Tensor& a);
Shape broadcast_shape(const Shape& a, const Shape& b, const char* op);
Tensor broadcast_to(const Tensor& x, const Shape& shape);  // backward: sum_to_shape
// acc += b in place, same shape, dtype and device; not recorded (no autograd). For the engine's
// gradient sums, where acc is a tensor nothing else holds (core/autograd.cpp, accumulate).
void add_into(const Tensor& acc, const Tensor& b);

// ---- reductions (core/ops_reduce.cpp) ----
// Empty axes = all axes. Negative axes count from the end.
Tensor sum(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);

// ---- activations (core/ops_activation.cpp) ----
Tensor relu(const Tensor& x);
Tensor relu6(const Tensor& x);
// relu(add(a, b)) as one node "add+relu" (a residual block's end), a and b of the same shape: the
// same values and gradients bit for bit, one pass and one tensor less.
Tensor add_relu(const Tensor& a, const Tensor& b);
// Inverted dropout: zero with probability p, scale kept elements by 1/(1-p). The mask comes from
// the counter-based RNG keyed by (seed, stream), so it is the same whatever the thread count.
Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t stream);

// ---- shape ops (core/ops_shape.cpp) ----
Tensor reshape(const Tensor& x, const Shape& shape);  // -1 infers one axis
Tensor flatten(const Tensor& x, int64_t start_dim = 1);  // (N, C, H, W) -> (N, C*H*W)
Tensor concat(const std::vector<Tensor>& xs, int64_t axis = 1);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis = 1);
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t length);
// Channel shuffle with g groups: view (N, g, C/g, H, W), swap axes 1 and 2, flatten back.
Tensor channel_shuffle(const Tensor& x, int64_t groups);
// channel_shuffle(concat({a, b}, 1), 2), the end of a ShuffleNetV2 unit, as one node
// "concat+shuffle": a and b of one shape (N, c, H, W), output (N, 2c, H, W) with channel 2j = a's
// j and 2j+1 = b's j. One copy forward and one backward instead of two each; the same values.
Tensor concat_shuffle(const Tensor& a, const Tensor& b);

// ---- matrix products (core/ops_linear.cpp; GEMMs through core/cpu/blas.h) ----
Tensor matmul(const Tensor& a, const Tensor& b);  // (M, K) x (K, N) -> (M, N)
// y = x W^T + b; x (N, in), weight (out, in), bias (out) or undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- convolution and pooling (core/ops_conv.cpp, core/ops_pool.cpp) ----
struct Conv2dOptions {
  int64_t stride[2] = {1, 1};
  int64_t padding[2] = {0, 0};
  int64_t dilation[2] = {1, 1};
  int64_t groups = 1;  // depthwise: groups = in channels
};
// x (N, C, H, W), weight (O, C/groups, KH, KW), bias (O) or undefined -> (N, O, OH, OW).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o);

struct Pool2dOptions {
  int64_t kernel[2] = {2, 2};
  int64_t stride[2] = {2, 2};
  int64_t padding[2] = {0, 0};
  bool count_include_pad = true;  // avg pool: PyTorch's default counts the zero padding
};
Tensor max_pool2d(const Tensor& x, const Pool2dOptions& o);
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& o);
Tensor global_avg_pool2d(const Tensor& x);  // (N, C, H, W) -> (N, C)
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);  // PyTorch's bins

// ---- normalisation (core/ops_norm.cpp) ----
// Training: normalise with the batch statistics (biased variance) and update the running
// averages in place (unbiased variance, PyTorch's convention: r = (1-m) r + m x).
// Eval: normalise with the running statistics. weight/bias (C) may be undefined (affine off).
// act fuses relu or relu6 after it (core/activation.h): one node "batch_norm2d+relu" whose values
// and gradients equal relu(batch_norm2d(...))'s bit for bit, with one pass and one tensor less.
// residual (x's shape, may be undefined) is added before the activation, a residual block's end:
// one node "batch_norm2d+add+relu" equal to add_relu(batch_norm2d(...), residual) bit for bit,
// which saves the add's pass over the output and, backward, one read of the masked gradient.
Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                    Tensor running_var, bool training, double momentum, double eps,
                    FusedAct act = FusedAct::none, const Tensor& residual = Tensor());

// ---- inference fusion (core/ops_conv_bn.cpp) ----
// act(batch_norm2d(conv2d(x, weight, bias), eval mode) + residual) as one op that records no node:
// the batch norm (running statistics), the residual add and the activation are applied to each
// output plane while the convolution still has it in cache (core/cpu/conv_epilogue.h), instead of
// three more passes over the output. The values are the separate ops' bit for bit. bn_weight and
// bn_bias may be undefined (affine off); residual may be undefined (none), else of the output's
// shape. Inference only: with grad mode on, an input that requires grad is an error (no graph
// could be recorded). Conv2d::forward_bn_act (layers/layers.h) picks it in no-grad evaluation.
// On the GPU it runs the separate ops.
Tensor conv2d_bn_act(const Tensor& x, const Tensor& weight, const Tensor& bias,
                     const Conv2dOptions& o, const Tensor& bn_weight, const Tensor& bn_bias,
                     const Tensor& running_mean, const Tensor& running_var, double eps,
                     const Tensor& residual, FusedAct act);

// ---- losses (core/ops_loss.cpp) ----
Tensor log_softmax(const Tensor& x);  // over the last axis of a 2-d tensor
Tensor softmax(const Tensor& x);      // over the last axis of a 2-d tensor
// Mean over the batch of the cross-entropy of logits (N, K) against int64 targets (N), with
// label smoothing eps: target distribution (1-eps) one-hot + eps/K.
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0);
// T^2 * KL(softmax(target/T) || softmax(x/T)), averaged over the batch; x and target are logits
// (METHODS.md, Distillation). No gradient flows to target.
Tensor kl_div(const Tensor& x, const Tensor& target, double temperature = 1.0);

}  // namespace lowbit
