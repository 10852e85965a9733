// conv2d_bn_act: inference's convolution + eval batch norm + residual + activation in one op
// (core/ops.h). The kernels are conv2d's, handed an epilogue (core/cpu/conv_epilogue.h) that
// each output plane goes through once the convolution has finished it: the batch norm's
// per-channel affine map from the running statistics (batch_norm_affine, the same rounding as
// batch_norm2d's), the residual, the activation. BN folding into the weights would save the
// epilogue's few flops but change the values; this keeps them bit for bit.
#include <vector>

#include "core/autograd.h"
#include "core/cpu/conv_kernels.h"
#include "core/cpu/norm_kernels.h"
#include "core/ops.h"
#include "core/ops_conv_geom.h"

namespace lowbit {

namespace {

const char* const kOp = "conv2d_bn_act";

void check_channels(const Tensor& t, const char* arg, const Tensor& x, int64_t o) {
  if (!t.defined()) return;
  check_float(t, kOp, arg);
  check_cpu(t, kOp);
  LB_CHECK(t.dtype() == x.dtype(), kOp, ": ", arg, " is ", dtype_name(t.dtype()), ", x is ",
           dtype_name(x.dtype()));
  LB_CHECK(t.dim() == 1 && t.size(0) == o, kOp, ": ", arg, " has shape ", shape_str(t.shape()),
           ", expected (", o, ",) for the convolution's ", o, " output channels");
}

// The separate ops (the GPU path): what the fused op's values equal.
Tensor composed(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o,
                const Tensor& bn_weight, const Tensor& bn_bias, const Tensor& running_mean,
                const Tensor& running_var, double eps, const Tensor& residual, FusedAct act) {
  return batch_norm2d(conv2d(x, weight, bias, o), bn_weight, bn_bias, running_mean, running_var,
                      false, 0.0, eps, act, residual);
}

}  // namespace

Tensor conv2d_bn_act(const Tensor& x, const Tensor& weight, const Tensor& bias,
                     const Conv2dOptions& o, const Tensor& bn_weight, const Tensor& bn_bias,
                     const Tensor& running_mean, const Tensor& running_var, double eps,
                     const Tensor& residual, FusedAct act) {
  check_defined(x, kOp, "x");
  check_defined(weight, kOp, "weight");
  if (grad_enabled())
    for (const Tensor* t : {&x, &weight, &bias, &bn_weight, &bn_bias, &residual})
      LB_CHECK(!t->defined() || !t->requires_grad(), kOp,
               ": inference only, but an input requires grad with grad mode on (train with "
               "conv2d and batch_norm2d, or evaluate under NoGradGuard)");
  LB_CHECK(running_mean.defined() && running_var.defined(), kOp,
           ": needs the batch norm's running_mean and running_var");
  if (x.device() != Device::cpu)  // the GPU runs the separate ops (they check their inputs)
    return composed(x, weight, bias, o, bn_weight, bn_bias, running_mean, running_var, eps,
                    residual, act);
  const ConvGeom g = conv_geom(x, weight, bias, o);
  check_channels(bn_weight, "bn_weight", x, g.O);
  check_channels(bn_bias, "bn_bias", x, g.O);
  check_channels(running_mean, "running_mean", x, g.O);
  check_channels(running_var, "running_var", x, g.O);
  LB_CHECK(eps >= 0, kOp, ": eps must be >= 0, got ", eps);
  const Shape out_shape{g.N, g.O, g.OH, g.OW};
  if (residual.defined()) {
    check_float(residual, kOp, "residual");
    check_cpu(residual, kOp);
    LB_CHECK(residual.dtype() == x.dtype(), kOp, ": residual is ", dtype_name(residual.dtype()),
             ", x is ", dtype_name(x.dtype()));
    LB_CHECK(residual.shape() == out_shape, kOp, ": residual has shape ",
             shape_str(residual.shape()), ", the convolution's output ", shape_str(out_shape));
  }
  Tensor y = Tensor::empty(out_shape, x.dtype());
  LB_DISPATCH_FLOAT(x.dtype(), kOp, [&] {
    const int64_t c = g.O;
    std::vector<double> mean((size_t)c), var((size_t)c), invstd((size_t)c);
    const scalar_t* rm = running_mean.data<scalar_t>();
    const scalar_t* rv = running_var.data<scalar_t>();
    for (int64_t i = 0; i < c; ++i) mean[(size_t)i] = (double)rm[i], var[(size_t)i] = (double)rv[i];
    batch_norm_invstd(invstd.data(), var.data(), c, eps);
    std::vector<scalar_t> mu((size_t)c), scale((size_t)c), shift((size_t)c);
    batch_norm_affine(mu.data(), scale.data(), shift.data(), mean.data(), invstd.data(),
                      bn_weight.defined() ? bn_weight.data<scalar_t>() : nullptr,
                      bn_bias.defined() ? bn_bias.data<scalar_t>() : nullptr, c);
    ConvEpilogue<scalar_t> ep;
    ep.mu = mu.data(), ep.scale = scale.data(), ep.shift = shift.data();
    ep.residual = residual.defined() ? residual.data<scalar_t>() : nullptr;
    ep.act = act;
    const scalar_t* pb = bias.defined() ? bias.data<scalar_t>() : nullptr;
    if (conv_is_depthwise(g))
      depthwise_conv2d_forward_cpu(y.data<scalar_t>(), x.data<scalar_t>(),
                                   weight.data<scalar_t>(), pb, g, &ep);
    else
      conv2d_forward_cpu(y.data<scalar_t>(), x.data<scalar_t>(), weight.data<scalar_t>(), pb, g,
                         &ep);
  });
  return y;
}

}  // namespace lowbit
