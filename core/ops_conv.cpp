// The conv2d op: checks, output allocation, dispatch to the im2col+gemm or the direct depthwise
// kernels (core/cpu/conv_kernels.h), and a node "conv2d" (inputs x, weight, bias) whose backward
// computes dx = conv_transpose(dy, w), dw = sum_n dy_n * col(x_n)^T and db = sum of dy.
#include <type_traits>

#include "core/autograd.h"
#include "core/cpu/conv_kernels.h"
#include "core/cuda/kernels.h"
#include "core/ops.h"
#include "core/ops_conv_geom.h"
#include "core/ops_cuda.h"

namespace lowbit {

// Validates the inputs (errors name conv2d and the shapes) and returns the geometry.
ConvGeom conv_geom(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o) {
  const char* op = "conv2d";
  check_float(x, op, "x");
  check_float(w, op, "weight");
  LB_CHECK(x.dim() == 4, "conv2d: input x must be 4-d (N, C, H, W), got shape ", shape_str(x.shape()));
  LB_CHECK(w.dim() == 4, "conv2d: weight must be 4-d (O, C/groups, KH, KW), got shape ",
           shape_str(w.shape()));
  LB_CHECK(x.dtype() == w.dtype(), "conv2d: dtype mismatch, x ", dtype_name(x.dtype()), " ",
           shape_str(x.shape()), " vs weight ", dtype_name(w.dtype()), " ", shape_str(w.shape()));
  check_cpu(x, op);
  check_cpu(w, op);
  for (int i = 0; i < 2; ++i) {
    LB_CHECK(o.stride[i] >= 1, "conv2d: stride must be >= 1, got ", o.stride[0], "x", o.stride[1],
             " (x ", shape_str(x.shape()), ")");
    LB_CHECK(o.padding[i] >= 0, "conv2d: padding must be >= 0, got ", o.padding[0], "x",
             o.padding[1], " (x ", shape_str(x.shape()), ")");
    LB_CHECK(o.dilation[i] >= 1, "conv2d: dilation must be >= 1, got ", o.dilation[0], "x",
             o.dilation[1], " (x ", shape_str(x.shape()), ")");
  }
  LB_CHECK(o.groups >= 1, "conv2d: groups must be >= 1, got ", o.groups, " (x ",
           shape_str(x.shape()), ")");
  ConvGeom g;
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.O = w.size(0), g.KH = w.size(2), g.KW = w.size(3);
  g.sh = o.stride[0], g.sw = o.stride[1], g.ph = o.padding[0], g.pw = o.padding[1];
  g.dh = o.dilation[0], g.dw = o.dilation[1], g.groups = o.groups;
  LB_CHECK(g.C % g.groups == 0, "conv2d: input channels ", g.C, " of x ", shape_str(x.shape()),
           " are not divisible by groups = ", g.groups);
  LB_CHECK(g.O % g.groups == 0, "conv2d: output channels ", g.O, " of weight ", shape_str(w.shape()),
           " are not divisible by groups = ", g.groups);
  LB_CHECK(w.size(1) == g.C / g.groups, "conv2d: weight ", shape_str(w.shape()), " expects ",
           w.size(1) * g.groups, " input channels (C/groups = ", w.size(1), " with groups = ",
           g.groups, "), but x ", shape_str(x.shape()), " has ", g.C);
  LB_CHECK(g.KH >= 1 && g.KW >= 1, "conv2d: empty kernel in weight ", shape_str(w.shape()));
  if (b.defined()) {
    check_float(b, op, "bias");
    check_cpu(b, op);
    LB_CHECK(b.dim() == 1 && b.size(0) == g.O, "conv2d: bias must have shape (", g.O,
             ",) for weight ", shape_str(w.shape()), ", got ", shape_str(b.shape()));
    LB_CHECK(b.dtype() == x.dtype(), "conv2d: dtype mismatch, bias ", dtype_name(b.dtype()), " ",
             shape_str(b.shape()), " vs x ", dtype_name(x.dtype()), " ", shape_str(x.shape()));
  }
  g.OH = conv_out_size(g.H, g.KH, g.sh, g.ph, g.dh);
  g.OW = conv_out_size(g.W, g.KW, g.sw, g.pw, g.dw);
  LB_CHECK(g.OH >= 1 && g.OW >= 1, "conv2d: output size ", g.OH, "x", g.OW,
           " is too small for x ", shape_str(x.shape()), " and weight ", shape_str(w.shape()),
           " (stride ", g.sh, "x", g.sw, ", padding ", g.ph, "x", g.pw, ", dilation ", g.dh, "x",
           g.dw, ")");
  return g;
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& o) {
  if (on_cuda("conv2d", {&x, &weight, &bias}, {"x", "weight", "bias"})) return conv2d_cuda(x, weight, bias, o);
  const ConvGeom g = conv_geom(x, weight, bias, o);
  const bool dw = conv_is_depthwise(g);
  Tensor y = Tensor::empty({g.N, g.O, g.OH, g.OW}, x.dtype());
  LB_DISPATCH_FLOAT(x.dtype(), "conv2d", [&] {
    const scalar_t* pb = bias.defined() ? bias.data<scalar_t>() : nullptr;
    if (dw)
      depthwise_conv2d_forward_cpu(y.data<scalar_t>(), x.data<scalar_t>(), weight.data<scalar_t>(),
                                   pb, g);
    else
      conv2d_forward_cpu(y.data<scalar_t>(), x.data<scalar_t>(), weight.data<scalar_t>(), pb, g);
  });
  // The backward reads x and weight through the node's inputs (they are kept alive there).
  return record(y, "conv2d", {x, weight, bias}, {"x", "weight", "bias"},
                [g, dw](const Node& node, const Tensor& gy) {
                  const Tensor& xs = node.inputs[0];
                  const Tensor& ws = node.inputs[1];
                  const bool has_b = node.inputs[2].defined();
                  std::vector<Tensor> out(3);
                  LB_DISPATCH_FLOAT(gy.dtype(), "conv2d backward", [&] {
                    const scalar_t* pg = gy.data<scalar_t>();
                    // x's gradient from its other consumers (a residual block's skip), where
                    // the kernel can add into it as it stores (conv2d_backward_data_add_cpu).
                    Tensor pending;
                    if (std::is_same_v<scalar_t, float> && !dw && node.needs_grad(0) &&
                        conv2d_backward_data_adds(g))
                      pending = pending_grad(node, 0);
                    if (pending.defined()) {
                      conv2d_backward_data_add_cpu(pending.data<float>(), gy.data<float>(),
                                                   ws.data<float>(), g);
                      out[0] = pending;
                    } else if (node.needs_grad(0)) {
                      out[0] = Tensor::empty(xs.shape(), xs.dtype());
                      scalar_t* p = out[0].data<scalar_t>();
                      if (dw)
                        depthwise_conv2d_backward_data_cpu(p, pg, ws.data<scalar_t>(), g);
                      else
                        conv2d_backward_data_cpu(p, pg, ws.data<scalar_t>(), g);
                    }
                    if (node.needs_grad(1)) {
                      out[1] = Tensor::empty(ws.shape(), ws.dtype());
                      scalar_t* p = out[1].data<scalar_t>();
                      if (dw)
                        depthwise_conv2d_backward_weight_cpu(p, pg, xs.data<scalar_t>(), g);
                      else
                        conv2d_backward_weight_cpu(p, pg, xs.data<scalar_t>(), g);
                    }
                    if (has_b && node.needs_grad(2)) {
                      out[2] = Tensor::empty({g.O}, gy.dtype());
                      conv2d_backward_bias_cpu(out[2].data<scalar_t>(), pg, g);
                    }
                  });
                  return out;
                });
}

}  // namespace lowbit
