// The standard layers. Each records its graph nodes under its own path (Module::node_name), and
// holds parameters under PyTorch's names, so a checkpoint loads into the matching torch.nn module.
#pragma once
#include <cstdint>

#include "layers/module.h"

namespace lowbit {

class QuantizerModule;  // layers/quant_module.h
class BatchNorm2d;

// Quantization-aware training (quant/quantize_model.h installs the quantizers): Conv2d and Linear
// compute op(aq ? aq(x) : x, wq ? wq(weight) : weight, bias). wq/aq null: full precision, and the
// state_dict is exactly torch's; set, they are children "wq"/"aq" ("layer1.0.conv1.wq.step").
// act_signed: the layer's input can be negative (not a ReLU output: the image, a linear
// bottleneck, a BN without ReLU), so its activation quantizer must be signed (seed 003 §2.1); the
// models set it. fp_backward: forward with the quantized tensors, backward with the
// full-precision ones, gradients straight to x and weight (layers/fp_backward.h).

// What Conv2d and Linear share for quantization-aware training (see above): set_quantizers
// installs either quantizer (or both) as children "wq"/"aq", once only; quantized_operands gives
// the op's (input, weight) operands, quantized where a quantizer is set.
class QuantizableLayer : public Module {
 public:
  void set_quantizers(std::shared_ptr<QuantizerModule> wq, std::shared_ptr<QuantizerModule> aq);
  std::shared_ptr<QuantizerModule> wq, aq;
  bool act_signed = false;
  bool fp_backward = false;
  Tensor weight, bias;

 protected:
  std::pair<Tensor, Tensor> quantized_operands(const Tensor& x) const;
};

// torch.nn.Conv2d. Init: kaiming_normal_(mode='fan_out', nonlinearity='relu'), as torchvision's
// ResNets do; bias (when present) zero.
class Conv2d : public QuantizableLayer {
 public:
  Conv2d(int64_t in_ch, int64_t out_ch, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
         int64_t groups = 1, bool bias = false, int64_t dilation = 1);
  Tensor forward(const Tensor& x) override;
  // act(bn(forward(x)) + residual), the way a block ends (residual may be undefined: none; act
  // relu, relu6 or none). In evaluation without grad (bn.training() false, grad mode off) it is
  // one op, conv2d_bn_act: the batch norm, residual and activation run on each output plane while
  // it is in cache; otherwise a conv2d node and a batch_norm2d node with the residual and the
  // activation fused in (batch_norm2d+add+relu). The values are the same either way, bit for
  // bit. The models call it wherever a batch norm follows a conv.
  Tensor forward_bn_act(const Tensor& x, BatchNorm2d& bn, FusedAct act,
                        const Tensor& residual = Tensor());
  std::string kind() const override { return "Conv2d"; }
  void reset_parameters(uint64_t seed) override;
  std::string describe() const override;
  Conv2dOptions opts;
  int64_t in_channels, out_channels, kernel_size;
};

// torch.nn.Linear. Init as PyTorch: weight and bias uniform in +-1/sqrt(in).
class Linear : public QuantizableLayer {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "Linear"; }
  void reset_parameters(uint64_t seed) override;
  std::string describe() const override;
  int64_t in_features, out_features;
};

// torch.nn.BatchNorm2d: weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked
// (int64) counted in training.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x) override;
  // relu(forward(x)) as one node (core/activation.h): the same numbers, one memory pass and one
  // saved tensor less. The models use it wherever a ReLU follows a batch norm directly.
  Tensor forward_relu(const Tensor& x) { return forward_act(x, FusedAct::relu); }
  // act(forward(x) + residual) as one node (residual may be undefined: none); see batch_norm2d.
  Tensor forward_act(const Tensor& x, FusedAct act, const Tensor& residual = Tensor());
  std::string kind() const override { return "BatchNorm2d"; }
  void reset_parameters(uint64_t seed) override;
  std::string describe() const override;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  double eps, momentum;
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "ReLU"; }
};

class ReLU6 : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "ReLU6"; }
};

class MaxPool2d : public Module {
 public:
  MaxPool2d(int64_t kernel, int64_t stride, int64_t padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "MaxPool2d"; }
  Pool2dOptions opts;
};

class AvgPool2d : public Module {
 public:
  AvgPool2d(int64_t kernel, int64_t stride, int64_t padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "AvgPool2d"; }
  Pool2dOptions opts;
};

// (N, C, H, W) -> (N, C)
class GlobalAvgPool : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "GlobalAvgPool"; }
};

class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "Flatten"; }
};

class ChannelShuffle : public Module {
 public:
  explicit ChannelShuffle(int64_t groups) : groups(groups) {}
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "ChannelShuffle"; }
  int64_t groups;
};

// Dropout draws its mask from (seed, a per-call counter), so a run is reproducible.
class Dropout : public Module {
 public:
  explicit Dropout(double p, uint64_t seed = 0) : p(p), seed(seed) {}
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "Dropout"; }
  double p;
  uint64_t seed, calls = 0;
};

class Sequential : public Module {
 public:
  Sequential() = default;
  // Children are named "0", "1", ... as in torch.nn.Sequential.
  Sequential& add(ModulePtr m);
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "Sequential"; }
  size_t size() const { return layers_.size(); }
  ModulePtr at(size_t i) const { return layers_.at(i); }

 private:
  std::vector<ModulePtr> layers_;
};

// Weight init helpers (counter-based RNG: the same seed gives the same weights).
void init_kaiming_normal_fan_out(Tensor& w, uint64_t seed, uint64_t stream);
void init_uniform(Tensor& w, double bound, uint64_t seed, uint64_t stream);

}  // namespace lowbit
