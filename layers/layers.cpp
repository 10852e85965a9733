// The standard layers: thin modules over the ops of core/ops.h, holding PyTorch-named parameters
// and initialised as PyTorch (or torchvision's ResNets) do, from the counter-based RNG with one
// stream per tensor, stream_id(full name), so init does not depend on construction order.
#include "layers/layers.h"

#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "layers/fp_backward.h"
#include "layers/quant_module.h"

namespace lowbit {

namespace {

// Names the node that produced `out` unless the op passed its input through unchanged (dropout in
// eval, a no-op reshape): renaming that node would rename the previous layer's node.
Tensor named(const Tensor& out, const Tensor& in, const std::string& name) {
  if (out.defined() && out.node() && !(in.defined() && out.node() == in.node()))
    name_node(out, name);
  return out;
}

uint64_t stream_of(const Tensor& t) { return stream_id(t.name().c_str()); }

}  // namespace

// ---- init helpers ----

// torch.nn.init.kaiming_normal_(w, mode='fan_out', nonlinearity='relu'): std = sqrt(2 / fan_out)
// with torch's fan_out = size(0) * prod(size(2:)) (no division by groups).
void init_kaiming_normal_fan_out(Tensor& w, uint64_t seed, uint64_t stream) {
  check_float(w, "init_kaiming_normal_fan_out", "w");
  check_cpu(w, "init_kaiming_normal_fan_out");
  LB_CHECK(w.dim() >= 2, "init_kaiming_normal_fan_out: '", w.name(), "' needs >= 2 dims, got ",
           shape_str(w.shape()));
  int64_t fan_out = w.size(0);
  for (int64_t d = 2; d < w.dim(); ++d) fan_out *= w.size(d);
  LB_CHECK(fan_out > 0, "init_kaiming_normal_fan_out: '", w.name(), "' has fan_out 0");
  const double std = std::sqrt(2.0 / (double)fan_out);
  LB_DISPATCH_FLOAT(w.dtype(), "init_kaiming_normal_fan_out", [&] {
    scalar_t* p = w.data<scalar_t>();
    for (int64_t i = 0; i < w.numel(); ++i) p[i] = (scalar_t)(std * rng_normal(seed, stream, i));
  });
}

// Uniform in [-bound, bound).
void init_uniform(Tensor& w, double bound, uint64_t seed, uint64_t stream) {
  check_float(w, "init_uniform", "w");
  check_cpu(w, "init_uniform");
  LB_CHECK(bound >= 0, "init_uniform: bound must be >= 0, got ", bound);
  LB_DISPATCH_FLOAT(w.dtype(), "init_uniform", [&] {
    scalar_t* p = w.data<scalar_t>();
    for (int64_t i = 0; i < w.numel(); ++i)
      p[i] = (scalar_t)(bound * (2.0 * rng_uniform(seed, stream, i) - 1.0));
  });
}

// ---- Conv2d ----

Conv2d::Conv2d(int64_t in_ch, int64_t out_ch, int64_t kernel, int64_t stride, int64_t padding,
               int64_t groups, bool has_bias, int64_t dilation)
    : in_channels(in_ch), out_channels(out_ch), kernel_size(kernel) {
  LB_CHECK(in_ch > 0 && out_ch > 0, "Conv2d: channels must be > 0, got ", in_ch, "->", out_ch);
  LB_CHECK(kernel > 0 && stride > 0 && dilation > 0 && padding >= 0, "Conv2d: kernel ", kernel,
           ", stride ", stride, ", dilation ", dilation, " must be > 0 and padding ", padding,
           " >= 0");
  LB_CHECK(groups > 0 && in_ch % groups == 0 && out_ch % groups == 0, "Conv2d: groups ", groups,
           " must divide in_channels ", in_ch, " and out_channels ", out_ch);
  opts.stride[0] = opts.stride[1] = stride;
  opts.padding[0] = opts.padding[1] = padding;
  opts.dilation[0] = opts.dilation[1] = dilation;
  opts.groups = groups;
  weight = register_parameter("weight", Tensor::zeros({out_ch, in_ch / groups, kernel, kernel}));
  if (has_bias) bias = register_parameter("bias", Tensor::zeros({out_ch}));
  reset_parameters(0);  // usable standalone; Module::init(seed) re-draws under the full names
}

void Conv2d::reset_parameters(uint64_t seed) {
  init_kaiming_normal_fan_out(weight, seed, stream_of(weight));
  if (bias.defined()) bias.fill(0);
}

// ---- QuantizableLayer ----

void QuantizableLayer::set_quantizers(std::shared_ptr<QuantizerModule> w_q,
                                      std::shared_ptr<QuantizerModule> a_q) {
  LB_CHECK(!wq && !aq, "set_quantizers: '", path(), "' already holds quantizers");
  if (w_q) register_module("wq", w_q);
  if (a_q) register_module("aq", a_q);
  wq = std::move(w_q);
  aq = std::move(a_q);
}

std::pair<Tensor, Tensor> QuantizableLayer::quantized_operands(const Tensor& x) const {
  return {aq ? aq->forward(x) : x, wq ? wq->forward(weight) : weight};
}

Tensor Conv2d::forward(const Tensor& x) {
  if (!wq && !aq) return named(conv2d(x, weight, bias, opts), x, node_name());
  const auto [xq, w] = quantized_operands(x);
  Tensor y = fp_backward ? conv2d_fp_backward(xq, w, x, weight, bias, opts) : conv2d(xq, w, bias, opts);
  return named(y, x, node_name());
}

Tensor Conv2d::forward_bn_act(const Tensor& x, BatchNorm2d& bn, FusedAct act,
                              const Tensor& residual) {
  if (bn.training() || grad_enabled()) {
    return bn.forward_act(forward(x), act, residual);
  }
  const auto [xq, w] = quantized_operands(x);
  return conv2d_bn_act(xq, w, bias, opts, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                       bn.eps, residual, act);
}

std::string Conv2d::describe() const {
  std::string s = str_cat(in_channels, "->", out_channels, ", k", kernel_size, " s",
                          opts.stride[0], " p", opts.padding[0]);
  if (opts.groups > 1) s += str_cat(" g", opts.groups);
  if (opts.dilation[0] > 1) s += str_cat(" d", opts.dilation[0]);
  if (bias.defined()) s += ", bias";
  return s;
}

// ---- Linear ----

Linear::Linear(int64_t in_f, int64_t out_f, bool has_bias) : in_features(in_f), out_features(out_f) {
  LB_CHECK(in_f > 0 && out_f > 0, "Linear: features must be > 0, got ", in_f, "->", out_f);
  weight = register_parameter("weight", Tensor::zeros({out_f, in_f}));
  if (has_bias) bias = register_parameter("bias", Tensor::zeros({out_f}));
  reset_parameters(0);
}

// PyTorch's default: kaiming_uniform_(a=sqrt(5)) gives bound gain*sqrt(3/fan_in) with
// gain = sqrt(2/(1+5)), i.e. 1/sqrt(fan_in); the bias uses the same bound.
void Linear::reset_parameters(uint64_t seed) {
  const double bound = 1.0 / std::sqrt((double)in_features);
  init_uniform(weight, bound, seed, stream_of(weight));
  if (bias.defined()) init_uniform(bias, bound, seed, stream_of(bias));
}

Tensor Linear::forward(const Tensor& x) {
  if (!wq && !aq) return named(linear(x, weight, bias), x, node_name());
  const auto [xq, w] = quantized_operands(x);
  Tensor y = fp_backward ? linear_fp_backward(xq, w, x, weight, bias) : linear(xq, w, bias);
  return named(y, x, node_name());
}

std::string Linear::describe() const {
  return str_cat(in_features, "->", out_features, bias.defined() ? "" : ", no bias");
}

// ---- BatchNorm2d ----

BatchNorm2d::BatchNorm2d(int64_t channels, double eps_, double momentum_)
    : eps(eps_), momentum(momentum_) {
  LB_CHECK(channels > 0, "BatchNorm2d: channels must be > 0, got ", channels);
  LB_CHECK(eps_ > 0, "BatchNorm2d: eps must be > 0, got ", eps_);
  LB_CHECK(momentum_ >= 0 && momentum_ <= 1, "BatchNorm2d: momentum must be in [0, 1], got ",
           momentum_);
  weight = register_parameter("weight", Tensor::ones({channels}));
  bias = register_parameter("bias", Tensor::zeros({channels}));
  running_mean = register_buffer("running_mean", Tensor::zeros({channels}));
  running_var = register_buffer("running_var", Tensor::ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", Tensor::zeros({}, DType::i64));
}

void BatchNorm2d::reset_parameters(uint64_t) {
  weight.fill(1);
  bias.fill(0);
  running_mean.fill(0);
  running_var.fill(1);
  num_batches_tracked.fill(0);
}

Tensor BatchNorm2d::forward(const Tensor& x) { return forward_act(x, FusedAct::none); }

Tensor BatchNorm2d::forward_act(const Tensor& x, FusedAct act, const Tensor& residual) {
  Tensor y = batch_norm2d(x, weight, bias, running_mean, running_var, training(), momentum, eps, act,
                          residual);
  if (training()) num_batches_tracked.data<int64_t>()[0] += 1;
  return named(y, x, node_name());
}

std::string BatchNorm2d::describe() const {
  return str_cat(weight.numel(), ", eps ", eps, ", momentum ", momentum);
}

// ---- activations, pools, shape ----

Tensor ReLU::forward(const Tensor& x) { return named(relu(x), x, node_name()); }
Tensor ReLU6::forward(const Tensor& x) { return named(relu6(x), x, node_name()); }

static Pool2dOptions pool_options(const char* op, int64_t kernel, int64_t stride, int64_t padding) {
  LB_CHECK(kernel > 0 && stride > 0, op, ": kernel ", kernel, " and stride ", stride,
           " must be > 0");
  // PyTorch's rule: the padding may be at most half the kernel.
  LB_CHECK(padding >= 0 && 2 * padding <= kernel, op, ": padding ", padding,
           " must be in [0, kernel/2] for kernel ", kernel);
  Pool2dOptions o;
  o.kernel[0] = o.kernel[1] = kernel;
  o.stride[0] = o.stride[1] = stride;
  o.padding[0] = o.padding[1] = padding;
  return o;
}

MaxPool2d::MaxPool2d(int64_t kernel, int64_t stride, int64_t padding)
    : opts(pool_options("MaxPool2d", kernel, stride, padding)) {}
Tensor MaxPool2d::forward(const Tensor& x) { return named(max_pool2d(x, opts), x, node_name()); }

AvgPool2d::AvgPool2d(int64_t kernel, int64_t stride, int64_t padding)
    : opts(pool_options("AvgPool2d", kernel, stride, padding)) {}
Tensor AvgPool2d::forward(const Tensor& x) { return named(avg_pool2d(x, opts), x, node_name()); }

Tensor GlobalAvgPool::forward(const Tensor& x) {
  return named(global_avg_pool2d(x), x, node_name());
}

Tensor Flatten::forward(const Tensor& x) { return named(flatten(x, 1), x, node_name()); }

Tensor ChannelShuffle::forward(const Tensor& x) {
  LB_CHECK(groups > 0, "ChannelShuffle '", path(), "': groups must be > 0, got ", groups);
  return named(channel_shuffle(x, groups), x, node_name());
}

// The mask of call k comes from stream (path, k): reproducible, and distinct per layer and call.
// Only training calls advance the counter, as only they draw numbers.
Tensor Dropout::forward(const Tensor& x) {
  if (!training() || p == 0) return dropout(x, p, false, seed, 0);
  uint64_t stream = stream_id(path().c_str(), calls++);
  return named(dropout(x, p, true, seed, stream), x, node_name());
}

// ---- Sequential ----

Sequential& Sequential::add(ModulePtr m) {
  register_module(std::to_string(layers_.size()), m);
  layers_.push_back(std::move(m));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& l : layers_) y = l->forward(y);
  return y;
}

}  // namespace lowbit
