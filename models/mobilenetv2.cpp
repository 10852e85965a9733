// MobileNetV2 (Sandler et al. 2018), CIFAR variant: stem conv stride 1 (not 2) and stride 1 (not
// 2) in the 24-channel stage, so 32x32 inputs reach the last stages at 4x4; then a 1x1 conv to
// 1280, global average pool, linear. Inverted residual blocks: 1x1 expand-BN-ReLU, depthwise
// 3x3-BN-ReLU, 1x1 project-BN, plus a shortcut at stride 1.
// Structure and names follow kuangliu/pytorch-cifar (models/mobilenetv2.py): conv1, bn1,
// layers.{0..16}.{conv1,bn1,conv2,bn2,conv3,bn3,shortcut.0,shortcut.1}, conv2, bn2, linear. As
// there, the activation is ReLU (not ReLU6), the first block also expands (by 1), and a stride-1
// block whose width changes gets a 1x1 conv + BN shortcut (the paper has none there).
#include "layers/layers.h"
#include "models/models.h"

namespace lowbit {

namespace {

class InvertedResidual : public Module {
 public:
  // signed_input: x is a previous block's linear-bottleneck output (BN, no ReLU), so the convs
  // that read x (conv1 and the shortcut conv) see negative values.
  InvertedResidual(int64_t in, int64_t out, int64_t expansion, int64_t stride, bool signed_input)
      : in_(in), out_(out), expansion_(expansion), stride_(stride) {
    const int64_t planes = expansion * in;
    conv1_ = register_module("conv1", std::make_shared<Conv2d>(in, planes, 1));
    conv1_->act_signed = signed_input;
    bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
    conv2_ = register_module("conv2", std::make_shared<Conv2d>(planes, planes, 3, stride, 1, planes));
    bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
    conv3_ = register_module("conv3", std::make_shared<Conv2d>(planes, out, 1));
    bn3_ = register_module("bn3", std::make_shared<BatchNorm2d>(out));
    if (stride == 1 && in != out) {
      auto seq = std::make_shared<Sequential>();
      sc_conv_ = std::make_shared<Conv2d>(in, out, 1);
      sc_conv_->act_signed = signed_input;
      sc_bn_ = std::make_shared<BatchNorm2d>(out);
      seq->add(sc_conv_);
      seq->add(sc_bn_);
      shortcut_ = register_module("shortcut", seq);
    }
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = conv1_->forward_bn_act(x, *bn1_, FusedAct::relu);
    out = conv2_->forward_bn_act(out, *bn2_, FusedAct::relu);
    if (stride_ != 1) return conv3_->forward_bn_act(out, *bn3_, FusedAct::none);
    const Tensor sc = sc_conv_ ? sc_conv_->forward_bn_act(x, *sc_bn_, FusedAct::none) : x;
    return conv3_->forward_bn_act(out, *bn3_, FusedAct::none, sc);
  }
  std::string kind() const override { return "InvertedResidual"; }
  std::string describe() const override {
    return str_cat(in_, "->", out_, " t", expansion_, " s", stride_);
  }

 private:
  int64_t in_, out_, expansion_, stride_;
  std::shared_ptr<Conv2d> conv1_, conv2_, conv3_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_, bn3_;
  ModulePtr shortcut_;  // registered as "shortcut" where there is one
  std::shared_ptr<Conv2d> sc_conv_;  // its conv and BN (shortcut.0, .1); null: identity
  std::shared_ptr<BatchNorm2d> sc_bn_;
};

class MobileNetV2 : public Module {
 public:
  explicit MobileNetV2(int64_t num_classes) {
    struct Stage { int64_t expansion, out, blocks, stride; };
    // Table 2 of the paper, with the CIFAR change: stride 1 in the 24-channel stage.
    const Stage cfg[] = {{1, 16, 1, 1}, {6, 24, 2, 1}, {6, 32, 3, 2}, {6, 64, 4, 2},
                         {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    conv1_ = register_module("conv1", std::make_shared<Conv2d>(3, 32, 3, 1, 1));
    conv1_->act_signed = true;  // the normalised image
    bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(32));
    layers_ = std::make_shared<Sequential>();
    int64_t in = 32;
    for (const Stage& s : cfg)
      for (int64_t b = 0; b < s.blocks; ++b) {
        layers_->add(std::make_shared<InvertedResidual>(in, s.out, s.expansion, b == 0 ? s.stride : 1,
                                                        /*signed_input=*/layers_->size() > 0));
        in = s.out;
      }
    register_module("layers", layers_);
    conv2_ = register_module("conv2", std::make_shared<Conv2d>(320, 1280, 1));
    conv2_->act_signed = true;  // the last block's linear-bottleneck output
    bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(1280));
    // kuangliu: F.avg_pool2d(out, 4) on the 4x4 map, the same as the global pool here.
    pool_ = register_module("avgpool", std::make_shared<GlobalAvgPool>());
    linear_ = register_module("linear", std::make_shared<Linear>(1280, num_classes));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = conv1_->forward_bn_act(x, *bn1_, FusedAct::relu);
    out = layers_->forward(out);
    out = conv2_->forward_bn_act(out, *bn2_, FusedAct::relu);
    return (*linear_)((*pool_)(out));
  }
  std::string kind() const override { return "MobileNetV2"; }

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_;
  std::shared_ptr<Sequential> layers_;
  std::shared_ptr<GlobalAvgPool> pool_;
  std::shared_ptr<Linear> linear_;
};

}  // namespace

ModelPtr make_mobilenetv2(int64_t num_classes) {
  LB_CHECK(num_classes > 0, "mobilenetv2: num_classes must be positive, got ", num_classes);
  return std::make_shared<MobileNetV2>(num_classes);
}

}  // namespace lowbit
