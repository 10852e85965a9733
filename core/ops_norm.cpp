// batch_norm2d: y = (x - mean) / sqrt(var + eps) * weight + bias per channel of x (N, C, H, W).
// Training normalises with the batch mean and biased variance and updates the running averages
// in place (r = (1-m) r + m batch, unbiased variance: PyTorch's convention); eval uses them.
#include <memory>
#include <string>

#include "core/autograd.h"
#include "core/cpu/norm_kernels.h"
#include "core/cuda/kernels.h"
#include "core/ops.h"
#include "core/ops_cuda.h"

namespace lowbit {

namespace {

void check_channel_param(const Tensor& t, const Tensor& x, const char* arg) {
  if (!t.defined()) return;
  check_float(t, "batch_norm2d", arg);
  check_cpu(t, "batch_norm2d");
  LB_CHECK(t.dtype() == x.dtype(), "batch_norm2d: ", arg, " is ", dtype_name(t.dtype()),
           ", x is ", dtype_name(x.dtype()));
  LB_CHECK(t.dim() == 1 && t.shape()[0] == x.shape()[1], "batch_norm2d: ", arg, " has shape ",
           shape_str(t.shape()), ", expected (", x.shape()[1], ",) for x of shape ",
           shape_str(x.shape()));
}

}  // namespace

std::string batch_norm_node_name(bool residual, FusedAct act) {
  std::string name = residual ? "batch_norm2d+add" : "batch_norm2d";
  if (act != FusedAct::none) name += std::string("+") + fused_act_name(act);
  return name;
}

Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                    Tensor running_var, bool training, double momentum, double eps, FusedAct act,
                    const Tensor& residual) {
  if (on_cuda("batch_norm2d", {&x, &weight, &bias, &running_mean, &running_var, &residual},
              {"x", "weight", "bias", "running_mean", "running_var", "residual"}))
    return batch_norm2d_cuda(x, weight, bias, running_mean, running_var, training, momentum, eps,
                             act, residual);
  check_float(x, "batch_norm2d", "x");
  check_cpu(x, "batch_norm2d");
  LB_CHECK(x.dim() == 4, "batch_norm2d: x must be 4-d (N, C, H, W), got shape ",
           shape_str(x.shape()));
  check_channel_param(weight, x, "weight");
  check_channel_param(bias, x, "bias");
  check_channel_param(running_mean, x, "running_mean");
  check_channel_param(running_var, x, "running_var");
  LB_CHECK(running_mean.defined() == running_var.defined(),
           "batch_norm2d: running_mean and running_var must be given together");
  LB_CHECK(eps >= 0, "batch_norm2d: eps must be >= 0, got ", eps);
  if (residual.defined()) {
    check_float(residual, "batch_norm2d", "residual");
    check_cpu(residual, "batch_norm2d");
    LB_CHECK(residual.dtype() == x.dtype(), "batch_norm2d: residual is ",
             dtype_name(residual.dtype()), ", x is ", dtype_name(x.dtype()));
    LB_CHECK(residual.shape() == x.shape(), "batch_norm2d: residual has shape ",
             shape_str(residual.shape()), ", expected x's shape ", shape_str(x.shape()));
  }
  const int64_t n = x.shape()[0], c = x.shape()[1], hw = x.shape()[2] * x.shape()[3];
  const int64_t count = n * hw;
  if (training) {
    // The unbiased variance (and any meaningful batch statistic) needs two values per channel.
    LB_CHECK(count > 1, "batch_norm2d: expected more than 1 value per channel when training, got x "
             "of shape ", shape_str(x.shape()));
    LB_CHECK(momentum >= 0 && momentum <= 1, "batch_norm2d: momentum must be in [0, 1], got ",
             momentum);
  } else {
    LB_CHECK(running_mean.defined(), "batch_norm2d: eval mode needs running_mean and running_var");
  }

  // Statistics used for normalising, saved (not the running buffers, which may change later).
  auto mean = std::make_shared<std::vector<double>>((size_t)c);
  auto invstd = std::make_shared<std::vector<double>>((size_t)c);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  LB_DISPATCH_FLOAT(x.dtype(), "batch_norm2d", [&] {
    std::vector<double> var((size_t)c);
    if (training) {
      batch_norm_stats_cpu(mean->data(), var.data(), x.data<scalar_t>(), n, c, hw);
    } else {
      const scalar_t* rm = running_mean.data<scalar_t>();
      const scalar_t* rv = running_var.data<scalar_t>();
      for (int64_t i = 0; i < c; ++i) {
        (*mean)[i] = (double)rm[i];
        var[i] = (double)rv[i];
      }
    }
    batch_norm_invstd(invstd->data(), var.data(), c, eps);
    if (training && running_mean.defined()) {  // after the checks: a failed call changes nothing
      scalar_t* rm = running_mean.data<scalar_t>();
      scalar_t* rv = running_var.data<scalar_t>();
      const double unbias = (double)count / (double)(count - 1);
      for (int64_t i = 0; i < c; ++i) {
        rm[i] = (scalar_t)((1 - momentum) * (double)rm[i] + momentum * (*mean)[i]);
        rv[i] = (scalar_t)((1 - momentum) * (double)rv[i] + momentum * var[i] * unbias);
      }
    }
    batch_norm_forward_cpu(y.data<scalar_t>(), x.data<scalar_t>(), mean->data(), invstd->data(),
                           weight.defined() ? weight.data<scalar_t>() : nullptr,
                           bias.defined() ? bias.data<scalar_t>() : nullptr, n, c, hw, act,
                           residual.defined() ? residual.data<scalar_t>() : nullptr);
  });

  Tensor sx = x.detach();
  Tensor sw = weight.defined() ? weight.detach() : Tensor();
  // The fused activation's mask comes from the output, which the next op keeps anyway.
  Tensor sy = act == FusedAct::none ? Tensor() : y.detach();
  return record(
      y, batch_norm_node_name(residual.defined(), act), {x, weight, bias, residual}, {"x", "weight", "bias", "residual"},
      [sx, sw, sy, act, mean, invstd, training, n, c, hw](const Node& node, const Tensor& g) {
        // needs_grad throws on an undefined input: ask only for the inputs that exist.
        const bool want_x = node.needs_grad(0);
        const bool want_w = node.inputs[1].defined() && node.needs_grad(1);
        const bool want_b = node.inputs[2].defined() && node.needs_grad(2);
        const bool want_r = node.inputs[3].defined() && node.needs_grad(3);
        Tensor gx = want_x ? Tensor::empty(sx.shape(), sx.dtype()) : Tensor();
        Tensor gw = want_w ? Tensor::empty({c}, sx.dtype()) : Tensor();
        Tensor gb = want_b ? Tensor::empty({c}, sx.dtype()) : Tensor();
        // The residual's gradient is the incoming one, masked by the activation if there is one
        // (written by the backward's first pass, which its second then reads).
        Tensor gr = !want_r ? Tensor() : act == FusedAct::none ? g : Tensor::empty(sx.shape(), sx.dtype());
        LB_DISPATCH_FLOAT(sx.dtype(), "batch_norm2d backward", [&] {
          std::vector<double> dgamma((size_t)c), dbeta((size_t)c);
          batch_norm_backward_cpu(want_x ? gx.data<scalar_t>() : nullptr, dgamma.data(),
                                  dbeta.data(), g.data<scalar_t>(), sx.data<scalar_t>(),
                                  mean->data(), invstd->data(),
                                  sw.defined() ? sw.data<scalar_t>() : nullptr, training, n, c, hw,
                                  sy.defined() ? sy.data<scalar_t>() : nullptr, act,
                                  want_r && act != FusedAct::none ? gr.data<scalar_t>() : nullptr);
          for (int64_t i = 0; i < c; ++i) {
            if (want_w) gw.data<scalar_t>()[i] = (scalar_t)dgamma[i];
            if (want_b) gb.data<scalar_t>()[i] = (scalar_t)dbeta[i];
          }
        });
        return std::vector<Tensor>{gx, gw, gb, gr};
      });
}

}  // namespace lowbit
