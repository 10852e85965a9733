// ShuffleNetV2 (Ma et al. 2018), CIFAR variant: a 3x3 stride-1 stem of 24 channels and no max
// pool, so the three stages run at 16x16, 8x8 and 4x4; each stage is one down-sampling unit and
// 3/7/3 basic units (4/8/4 units), then a 1x1 conv, global average pool, linear.
// Structure and names follow kuangliu/pytorch-cifar (models/shufflenetv2.py): conv1, bn1,
// layer{1,2,3}.0 = DownBlock {conv1..conv5, bn1..bn5}, layer{1,2,3}.i = BasicBlock {conv1..conv3,
// bn1..bn3}, conv2, bn2, linear. Widths are the paper's; kuangliu's config has 224 instead of 244
// for the 2.0x first stage (a typo there), so only 0.5/1.0/1.5 load into it unchanged.
#include <cmath>

#include "layers/layers.h"
#include "models/models.h"

namespace lowbit {

namespace {


// A module that registers children under given names and lets the owner call them; keeps the
// blocks below short.
class Unit : public Module {
 protected:
  std::shared_ptr<Conv2d> add_conv(const std::string& name, int64_t in, int64_t out, int64_t k,
                                   int64_t stride = 1, int64_t groups = 1) {
    return register_module(name, std::make_shared<Conv2d>(in, out, k, stride, k / 2, groups));
  }
  std::shared_ptr<BatchNorm2d> add_bn(const std::string& name, int64_t c) {
    return register_module(name, std::make_shared<BatchNorm2d>(c));
  }
};

// Basic unit (stride 1): split the channels in halves; the first half passes, the second goes
// through 1x1-BN-ReLU, depthwise 3x3-BN, 1x1-BN-ReLU; concat; shuffle with 2 groups.
class ShuffleBasicBlock : public Unit {
 public:
  explicit ShuffleBasicBlock(int64_t channels) : channels_(channels) {
    const int64_t c = channels / 2;  // split ratio 0.5, as int(C * 0.5) in the reference
    conv1_ = add_conv("conv1", c, c, 1);
    bn1_ = add_bn("bn1", c);
    conv2_ = add_conv("conv2", c, c, 3, 1, c);
    bn2_ = add_bn("bn2", c);
    conv3_ = add_conv("conv3", c, c, 1);
    conv3_->act_signed = true;  // takes the depthwise conv's BN output, no ReLU
    bn3_ = add_bn("bn3", c);
  }
  Tensor forward(const Tensor& x) override {
    LB_CHECK(x.dim() == 4 && x.size(1) == channels_, node_name(), ": expected (N, ", channels_,
             ", H, W), got ", shape_str(x.shape()));
    const int64_t c = channels_ / 2;
    std::vector<Tensor> halves = split(x, {c, channels_ - c}, 1);
    Tensor out = conv1_->forward_bn_act(halves[1], *bn1_, FusedAct::relu);
    out = conv2_->forward_bn_act(out, *bn2_, FusedAct::none);
    out = conv3_->forward_bn_act(out, *bn3_, FusedAct::relu);
    // Equal halves (every width of the family is even) join in one copy; odd ones as two ops.
    if (halves[0].shape() == out.shape()) return concat_shuffle(halves[0], out);
    return channel_shuffle(concat({halves[0], out}, 1), 2);
  }
  std::string kind() const override { return "ShuffleBasicBlock"; }
  std::string describe() const override { return str_cat(channels_, " channels"); }

 private:
  int64_t channels_;
  std::shared_ptr<Conv2d> conv1_, conv2_, conv3_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_, bn3_;
};

// Down-sampling unit (stride 2): left branch depthwise 3x3 s2-BN, 1x1-BN-ReLU; right branch
// 1x1-BN-ReLU, depthwise 3x3 s2-BN, 1x1-BN-ReLU; each gives out/2 channels; concat; shuffle.
class ShuffleDownBlock : public Unit {
 public:
  ShuffleDownBlock(int64_t in, int64_t out) : in_(in), out_(out) {
    const int64_t mid = out / 2;
    conv1_ = add_conv("conv1", in, in, 3, 2, in);
    bn1_ = add_bn("bn1", in);
    conv2_ = add_conv("conv2", in, mid, 1);
    conv2_->act_signed = true;  // after depthwise-BN, no ReLU (as conv5 below)
    bn2_ = add_bn("bn2", mid);
    conv3_ = add_conv("conv3", in, mid, 1);
    bn3_ = add_bn("bn3", mid);
    conv4_ = add_conv("conv4", mid, mid, 3, 2, mid);
    bn4_ = add_bn("bn4", mid);
    conv5_ = add_conv("conv5", mid, mid, 1);
    conv5_->act_signed = true;
    bn5_ = add_bn("bn5", mid);
  }
  Tensor forward(const Tensor& x) override {
    Tensor left = conv1_->forward_bn_act(x, *bn1_, FusedAct::none);
    left = conv2_->forward_bn_act(left, *bn2_, FusedAct::relu);
    Tensor right = conv3_->forward_bn_act(x, *bn3_, FusedAct::relu);
    right = conv4_->forward_bn_act(right, *bn4_, FusedAct::none);
    right = conv5_->forward_bn_act(right, *bn5_, FusedAct::relu);
    return concat_shuffle(left, right);  // both out/2 channels
  }
  std::string kind() const override { return "ShuffleDownBlock"; }
  std::string describe() const override { return str_cat(in_, "->", out_, " s2"); }

 private:
  int64_t in_, out_;
  std::shared_ptr<Conv2d> conv1_, conv2_, conv3_, conv4_, conv5_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_, bn3_, bn4_, bn5_;
};

class ShuffleNetV2 : public Unit {
 public:
  ShuffleNetV2(const std::vector<int64_t>& widths, int64_t num_classes) {
    const std::vector<int64_t> basic_units = {3, 7, 3};
    conv1_ = add_conv("conv1", 3, 24, 3);
    conv1_->act_signed = true;  // the normalised image
    bn1_ = add_bn("bn1", 24);
    int64_t in = 24;
    for (size_t s = 0; s < 3; ++s) {
      auto layer = std::make_shared<Sequential>();
      layer->add(std::make_shared<ShuffleDownBlock>(in, widths[s]));
      for (int64_t i = 0; i < basic_units[s]; ++i)
        layer->add(std::make_shared<ShuffleBasicBlock>(widths[s]));
      in = widths[s];
      layers_.push_back(register_module("layer" + std::to_string(s + 1), layer));
    }
    conv2_ = add_conv("conv2", in, widths[3], 1);
    bn2_ = add_bn("bn2", widths[3]);
    // kuangliu: F.avg_pool2d(out, 4) on the 4x4 map, the same as the global pool here.
    pool_ = register_module("avgpool", std::make_shared<GlobalAvgPool>());
    linear_ = register_module("linear", std::make_shared<Linear>(widths[3], num_classes));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = conv1_->forward_bn_act(x, *bn1_, FusedAct::relu);
    for (auto& layer : layers_) out = layer->forward(out);
    out = conv2_->forward_bn_act(out, *bn2_, FusedAct::relu);
    return (*linear_)((*pool_)(out));
  }
  std::string kind() const override { return "ShuffleNetV2"; }

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_;
  std::vector<std::shared_ptr<Sequential>> layers_;
  std::shared_ptr<GlobalAvgPool> pool_;
  std::shared_ptr<Linear> linear_;
};

}  // namespace

ModelPtr make_shufflenetv2(double width, int64_t num_classes) {
  LB_CHECK(num_classes > 0, "shufflenetv2: num_classes must be positive, got ", num_classes);
  // (stage 1, stage 2, stage 3, final 1x1 conv) output channels, Table 5 of the paper.
  std::vector<int64_t> widths;
  if (width == 0.5) widths = {48, 96, 192, 1024};
  else if (width == 1.0) widths = {116, 232, 464, 1024};
  else if (width == 1.5) widths = {176, 352, 704, 1024};
  else if (width == 2.0) widths = {244, 488, 976, 2048};
  else LB_FAIL("shufflenetv2: width must be 0.5, 1.0, 1.5 or 2.0, got ", width);
  return std::make_shared<ShuffleNetV2>(widths, num_classes);
}

}  // namespace lowbit
