// WideResNet-D-K (Zagoruyko & Komodakis 2016) for CIFAR: a 3x3 stem of 16 channels, 3 groups of
// n = (D-4)/6 pre-activation blocks (BN-ReLU-conv3x3-BN-ReLU-conv3x3) of 16K/32K/64K channels,
// the 2nd and 3rd groups starting with stride 2, then BN-ReLU, global average pool, linear.
// No dropout. Structure and names follow xternalz/WideResNet-pytorch (wideresnet.py): conv1,
// block{1,2,3}.layer.{i}.{bn1,conv1,bn2,conv2,convShortcut}, bn1, fc; it loads there with
// strict=True (dropRate=0).
#include "layers/layers.h"
#include "models/models.h"

namespace lowbit {

namespace {

class WideBasicBlock : public Module {
 public:
  WideBasicBlock(int64_t in, int64_t out, int64_t stride)
      : in_(in), out_(out), stride_(stride), equal_in_out_(in == out) {
    bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(in));
    conv1_ = register_module("conv1", std::make_shared<Conv2d>(in, out, 3, stride, 1));
    bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(out));
    conv2_ = register_module("conv2", std::make_shared<Conv2d>(out, out, 3, 1, 1));
    // As the reference: a 1x1 conv shortcut (no BN) exactly when the widths differ. The
    // reference would add an identity at stride 2 with equal widths; no WRN config has that.
    LB_CHECK(!(equal_in_out_ && stride != 1), "WideBasicBlock: stride ", stride,
             " with equal widths ", in, " has no shortcut in the reference definition");
    if (!equal_in_out_)
      shortcut_ = register_module("convShortcut", std::make_shared<Conv2d>(in, out, 1, stride, 0));
  }
  Tensor forward(const Tensor& x) override {
    // The reference pre-activates x itself when the width changes, so the 1x1 shortcut then sees
    // BN-ReLU(x); with equal widths the identity shortcut takes the raw x.
    Tensor act = bn1_->forward_relu(x);
    Tensor out = conv1_->forward_bn_act(act, *bn2_, FusedAct::relu);
    out = (*conv2_)(out);
    return add(equal_in_out_ ? x : (*shortcut_)(act), out);
  }
  std::string kind() const override { return "WideBasicBlock"; }
  std::string describe() const override { return str_cat(in_, "->", out_, " s", stride_); }

 private:
  int64_t in_, out_, stride_;
  bool equal_in_out_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_;
  std::shared_ptr<Conv2d> conv1_, conv2_, shortcut_;
};

// The reference's NetworkBlock: one child "layer", a Sequential of blocks.
class NetworkBlock : public Module {
 public:
  NetworkBlock(int64_t n, int64_t in, int64_t out, int64_t stride) {
    layer_ = std::make_shared<Sequential>();
    for (int64_t i = 0; i < n; ++i) layer_->add(std::make_shared<WideBasicBlock>(i == 0 ? in : out, out, i == 0 ? stride : 1));
    register_module("layer", layer_);
  }
  Tensor forward(const Tensor& x) override { return layer_->forward(x); }
  std::string kind() const override { return "NetworkBlock"; }

 private:
  std::shared_ptr<Sequential> layer_;
};

class WideResNet : public Module {
 public:
  WideResNet(int64_t n, int64_t k, int64_t num_classes) {
    const int64_t c[4] = {16, 16 * k, 32 * k, 64 * k};
    conv1_ = register_module("conv1", std::make_shared<Conv2d>(3, c[0], 3, 1, 1));
    conv1_->act_signed = true;  // the normalised image; the blocks' convs take BN-ReLU outputs
    block1_ = register_module("block1", std::make_shared<NetworkBlock>(n, c[0], c[1], 1));
    block2_ = register_module("block2", std::make_shared<NetworkBlock>(n, c[1], c[2], 2));
    block3_ = register_module("block3", std::make_shared<NetworkBlock>(n, c[2], c[3], 2));
    bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(c[3]));
    // The reference: F.avg_pool2d(out, 8) on the 8x8 map, the same as the global pool here.
    pool_ = register_module("avgpool", std::make_shared<GlobalAvgPool>());
    fc_ = register_module("fc", std::make_shared<Linear>(c[3], num_classes));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = (*conv1_)(x);
    out = (*block3_)((*block2_)((*block1_)(out)));
    out = bn1_->forward_relu(out);
    return (*fc_)((*pool_)(out));
  }
  std::string kind() const override { return "WideResNet"; }

 private:
  std::shared_ptr<Conv2d> conv1_;
  std::shared_ptr<NetworkBlock> block1_, block2_, block3_;
  std::shared_ptr<BatchNorm2d> bn1_;
  std::shared_ptr<GlobalAvgPool> pool_;
  std::shared_ptr<Linear> fc_;
};

}  // namespace

ModelPtr make_wrn(int depth, int widen, int64_t num_classes) {
  LB_CHECK(depth >= 10 && (depth - 4) % 6 == 0, "wrn: depth must be 6n+4 (16, 22, 28, 40), got ",
           depth);
  LB_CHECK(widen >= 1, "wrn: widen factor must be >= 1, got ", widen);
  LB_CHECK(num_classes > 0, "wrn: num_classes must be positive, got ", num_classes);
  return std::make_shared<WideResNet>((depth - 4) / 6, widen, num_classes);
}

}  // namespace lowbit
