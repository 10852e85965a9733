// The CUDA halves of conv2d, batch_norm2d, relu/relu6, pooling and softmax_cross_entropy
// (core/ops_cuda.h). Compiled in both builds: in the CPU build the kernels are the throwing stubs
// and nothing here is reachable, since no tensor can live on cuda there.
#include "core/ops_cuda.h"

#include "core/autograd.h"
#include "core/cuda/kernels.h"

namespace lowbit {

namespace {
float* fp(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
  return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}
}  // namespace

Tensor conv2d_cuda(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o) {
  const char* op = "conv2d";
  on_cuda(op, {&x, &w, &b}, {"x", "weight", "bias"});
  LB_CHECK(x.dim() == 4 && w.dim() == 4, op, ": x ", shape_str(x.shape()), " and weight ",
           shape_str(w.shape()), " must be 4-d");
  LB_CHECK(o.groups >= 1 && x.size(1) % o.groups == 0 && w.size(0) % o.groups == 0 &&
               w.size(1) * o.groups == x.size(1),
           op, ": weight ", shape_str(w.shape()), " does not fit x ", shape_str(x.shape()),
           " with groups = ", o.groups);
  for (int i = 0; i < 2; ++i)
    LB_CHECK(o.stride[i] >= 1 && o.padding[i] >= 0 && o.dilation[i] >= 1, op,
             ": stride and dilation must be >= 1 and padding >= 0");
  if (b.defined())
    LB_CHECK(b.dim() == 1 && b.size(0) == w.size(0), op, ": bias must have shape (", w.size(0),
             ",), got ", shape_str(b.shape()));
  cuda::ConvShape s{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3),
                    0, 0, o.stride[0], o.stride[1], o.padding[0], o.padding[1], o.dilation[0],
                    o.dilation[1], o.groups};
  s.oh = out_size(s.h, s.kh, s.sh, s.ph, s.dh);
  s.ow = out_size(s.w, s.kw, s.sw, s.pw, s.dw);
  LB_CHECK(s.oh >= 1 && s.ow >= 1, op, ": output size ", s.oh, "x", s.ow, " is too small for x ",
           shape_str(x.shape()), " and weight ", shape_str(w.shape()));
  Tensor y = Tensor::empty({s.n, s.o, s.oh, s.ow}, DType::f32, Device::cuda);
  cuda::conv2d_forward(fp(y), fp(x), fp(w), fp(b), s);
  return record(y, op, {x, w, b}, {"x", "weight", "bias"}, [s](const Node& node, const Tensor& gy) {
    std::vector<Tensor> out(3);
    if (node.needs_grad(0)) {
      out[0] = Tensor::empty(node.inputs[0].shape(), DType::f32, Device::cuda);
      cuda::conv2d_backward_data(fp(out[0]), fp(gy), fp(node.inputs[1]), s);
    }
    if (node.needs_grad(1)) {
      out[1] = Tensor::empty(node.inputs[1].shape(), DType::f32, Device::cuda);
      cuda::conv2d_backward_filter(fp(out[1]), fp(gy), fp(node.inputs[0]), s);
    }
    if (node.inputs[2].defined() && node.needs_grad(2)) {
      out[2] = Tensor::empty({s.o}, DType::f32, Device::cuda);
      cuda::conv2d_backward_bias(fp(out[2]), fp(gy), s);
    }
    return out;
  });
}

Tensor batch_norm2d_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         Tensor running_mean, Tensor running_var, bool training, double momentum,
                         double eps, FusedAct act, const Tensor& residual) {
  const char* op = "batch_norm2d";
  on_cuda(op, {&x, &weight, &bias, &running_mean, &running_var, &residual},
          {"x", "weight", "bias", "running_mean", "running_var", "residual"});
  LB_CHECK(x.dim() == 4, op, ": x must be 4-d (N, C, H, W), got shape ", shape_str(x.shape()));
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  for (const Tensor* t : std::initializer_list<const Tensor*>{&weight, &bias, &running_mean, &running_var})
    if (t->defined())
      LB_CHECK(t->dim() == 1 && t->size(0) == c, op, ": per-channel tensors must have shape (", c,
               ",), got ", shape_str(t->shape()));
  LB_CHECK(running_mean.defined() == running_var.defined(),
           "batch_norm2d: running_mean and running_var must be given together");
  LB_CHECK(eps > 0, op, ": eps must be > 0 on cuda, got ", eps);
  if (residual.defined())
    LB_CHECK(residual.shape() == x.shape(), op, ": residual has shape ", shape_str(residual.shape()),
             ", expected x's shape ", shape_str(x.shape()));
  if (training) {
    LB_CHECK(n * h * w > 1, op, ": expected more than 1 value per channel when training, got x "
             "of shape ", shape_str(x.shape()));
    LB_CHECK(momentum >= 0 && momentum <= 1, op, ": momentum must be in [0, 1], got ", momentum);
  } else {
    LB_CHECK(running_mean.defined(), op, ": eval mode needs running_mean and running_var");
    if (act != FusedAct::none || residual.defined()) {
      // cuDNN's inference kernel fuses nothing: the batch norm, then the separate nodes.
      Tensor y = batch_norm2d_cuda(x, weight, bias, running_mean, running_var, false, momentum, eps,
                                   FusedAct::none, Tensor());
      if (residual.defined()) {
        if (act == FusedAct::relu) return add_relu(y, residual);
        y = add(y, residual);
      }
      return act == FusedAct::relu ? relu(y) : act == FusedAct::relu6 ? relu6(y) : y;
    }
  }
  Tensor y = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  Tensor mean = Tensor::empty({c}, DType::f32, Device::cuda);
  Tensor invstd = Tensor::empty({c}, DType::f32, Device::cuda);
  if (training)
    cuda::batch_norm_train_forward(fp(y), fp(mean), fp(invstd), fp(x), fp(weight), fp(bias),
                                   fp(running_mean), fp(running_var), momentum, eps, n, c, h * w,
                                   act, fp(residual));
  else
    cuda::batch_norm_eval_forward(fp(y), fp(mean), fp(invstd), fp(x), fp(weight), fp(bias),
                                  fp(running_mean), fp(running_var), eps, n, c, h, w);
  Tensor sx = x.detach();
  Tensor sw = weight.defined() ? weight.detach() : Tensor();
  Tensor sy = act == FusedAct::none ? Tensor() : y.detach();  // the activation's mask
  return record(
      y, batch_norm_node_name(residual.defined(), act), {x, weight, bias, residual},
      {"x", "weight", "bias", "residual"},
      [sx, sw, sy, act, mean, invstd, training, n, c, h, w](const Node& node, const Tensor& g) {
        const bool want_x = node.needs_grad(0);
        const bool want_w = node.inputs[1].defined() && node.needs_grad(1);
        const bool want_b = node.inputs[2].defined() && node.needs_grad(2);
        const bool want_r = node.inputs[3].defined() && node.needs_grad(3);
        Tensor gx = want_x ? Tensor::empty(sx.shape(), DType::f32, Device::cuda) : Tensor();
        // The backward writes both parameter gradients: allocate them, drop the unwanted.
        Tensor gw = Tensor::empty({c}, DType::f32, Device::cuda);
        Tensor gb = Tensor::empty({c}, DType::f32, Device::cuda);
        // The residual's gradient: dy itself, or dy masked by the activation (the kernel writes it).
        Tensor gr = !want_r ? Tensor()
                    : act == FusedAct::none ? g
                                            : Tensor::empty(sx.shape(), DType::f32, Device::cuda);
        if (training)
          cuda::batch_norm_train_backward(fp(gx), fp(gw), fp(gb),
                                          act == FusedAct::none ? nullptr : fp(gr), fp(g), fp(sx),
                                          fp(sy), fp(sw), fp(mean), fp(invstd), n, c, h * w, act);
        else
          cuda::bn_eval_backward(fp(gx), fp(gw), fp(gb), fp(g), fp(sx), fp(sw), fp(mean),
                                 fp(invstd), n, c, h * w);
        return std::vector<Tensor>{gx, want_w ? gw : Tensor(), want_b ? gb : Tensor(), gr};
      });
}

Tensor clamp_relu_cuda(const Tensor& x, double hi, const char* op) {
  on_cuda(op, {&x}, {"x"});
  Tensor y = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  cuda::clamp_relu_forward(fp(y), fp(x), (float)hi, x.numel());
  Tensor sx = x.detach();
  return record(y, op, {x}, {"x"}, [sx, hi](const Node&, const Tensor& g) {
    Tensor gx = Tensor::empty(g.shape(), DType::f32, Device::cuda);
    cuda::clamp_relu_backward(fp(gx), fp(g), fp(sx), (float)hi, g.numel());
    return std::vector<Tensor>{gx};
  });
}

Tensor pool2d_cuda(const Tensor& x, const Pool2dOptions& o, bool is_max, const char* op) {
  on_cuda(op, {&x}, {"x"});
  LB_CHECK(x.dim() == 4, op, ": input x must be 4-d (N, C, H, W), got shape ", shape_str(x.shape()));
  for (int i = 0; i < 2; ++i)
    LB_CHECK(o.kernel[i] >= 1 && o.stride[i] >= 1 && o.padding[i] >= 0 &&
                 o.padding[i] <= o.kernel[i] / 2,
             op, ": kernel ", o.kernel[0], "x", o.kernel[1], ", stride ", o.stride[0], "x",
             o.stride[1], ", padding ", o.padding[0], "x", o.padding[1], " is not a valid window");
  cuda::PoolShape s{x.size(0), x.size(1), x.size(2), x.size(3), 0, 0, o.kernel[0], o.kernel[1],
                    o.stride[0], o.stride[1], o.padding[0], o.padding[1], is_max,
                    o.count_include_pad};
  // floor mode, as the CPU op (and PyTorch's default)
  s.oh = (s.h + 2 * s.ph - s.kh) / s.sh + 1;
  s.ow = (s.w + 2 * s.pw - s.kw) / s.sw + 1;
  LB_CHECK(s.oh >= 1 && s.ow >= 1, op, ": output size ", s.oh, "x", s.ow, " is too small for x ",
           shape_str(x.shape()));
  Tensor y = Tensor::empty({s.n, s.c, s.oh, s.ow}, DType::f32, Device::cuda);
  cuda::pool2d_forward(fp(y), fp(x), s);
  Tensor sx = x.detach(), sy = y.detach();
  return record(y, op, {x}, {"x"}, [s, sx, sy](const Node&, const Tensor& gy) {
    Tensor gx = Tensor::empty(sx.shape(), DType::f32, Device::cuda);
    // cuDNN reads dy with y's layout: make it the same (contiguous, 4-d) view.
    cuda::pool2d_backward(fp(gx), fp(gy), fp(sy), fp(sx), s);
    return std::vector<Tensor>{gx};
  });
}

Tensor dropout_cuda(const Tensor& x, double p, uint64_t seed, uint64_t stream) {
  Tensor mask = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  Tensor y = Tensor::empty(x.shape(), DType::f32, Device::cuda);
  cuda::dropout_forward(fp(y), fp(mask), fp(x), (float)p, (float)(1.0 / (1.0 - p)), seed, stream,
                        x.numel());
  return record(y, "dropout", {x}, {"x"}, [mask](const Node&, const Tensor& g) {
    NoGradGuard ng;
    return std::vector<Tensor>{mul(g, mask)};
  });
}

Tensor softmax_cross_entropy_cuda(const Tensor& logits, const Tensor& target, double smoothing) {
  const char* op = "softmax_cross_entropy";
  on_cuda(op, {&logits, &target}, {"logits", "target"});
  LB_CHECK(logits.dtype() == DType::f32 && logits.dim() == 2, op,
           ": logits must be 2-d float32 (N, K), got ", shape_str(logits.shape()));
  LB_CHECK(target.dtype() == DType::i64 && target.dim() == 1 && target.size(0) == logits.size(0),
           op, ": target must be int64 (", logits.size(0), ",), got ", dtype_name(target.dtype()),
           " ", shape_str(target.shape()));
  const int64_t rows = logits.size(0), k = logits.size(1);
  LB_CHECK(rows > 0 && k > 0, op, ": empty logits of shape ", shape_str(logits.shape()));
  LB_CHECK(smoothing >= 0 && smoothing <= 1, op, ": label_smoothing must be in [0, 1], got ",
           smoothing);
  // The class range is checked on the host: one small copy, and a bad label must not read out
  // of bounds on the device.
  const std::vector<int64_t> t = target.to_vector<int64_t>();
  for (int64_t i = 0; i < rows; ++i)
    LB_CHECK(t[i] >= 0 && t[i] < k, op, ": target[", i, "] = ", t[i], " is out of range for ", k,
             " classes (logits ", shape_str(logits.shape()), ")");
  Tensor prob = Tensor::empty(logits.shape(), DType::f32, Device::cuda);
  Tensor y = Tensor::empty({}, DType::f32, Device::cuda);
  cuda::softmax_xent_forward(fp(y), fp(prob), fp(logits), target.data<int64_t>(), rows, k, smoothing);
  Tensor st = target.clone();
  return record(y, op, {logits}, {"logits"}, [prob, st, rows, k, smoothing](const Node&, const Tensor& g) {
    Tensor gx = Tensor::empty(prob.shape(), DType::f32, Device::cuda);
    cuda::softmax_xent_backward(fp(gx), fp(g), fp(prob), st.data<int64_t>(), rows, k, smoothing);
    return std::vector<Tensor>{gx};
  });
}

}  // namespace lowbit
