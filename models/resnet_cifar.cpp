// CIFAR ResNet-20/32/44/56/110 (He et al. 2016, "Deep Residual Learning", section 4.2): a 3x3
// stem of 16 channels, 3 stages of n BasicBlocks (16/32/64 channels, n = (depth-2)/6), global
// average pool, linear. Shortcut option A (identity, strided subsampling, zero-padded channels:
// no parameters, 0.27 M parameters for ResNet-20) or B (1x1 conv + BN where the shape changes).
//
// Names follow akamaster/pytorch_resnet_cifar10 (resnet.py): conv1, bn1, layer{1,2,3}.{i}.conv1,
// .bn1, .conv2, .bn2, option B .shortcut.0 (conv) / .shortcut.1 (BN), linear. Its option A
// shortcut is a parameter-free LambdaLayer, so a lowbit checkpoint loads into that definition
// with strict=True (option B: the same definition built with option='B').
#include "models/resnet_cifar.h"

#include "models/models.h"

namespace lowbit {

namespace {

// Option A of He et al.: x[:, :, ::2, ::2] with pad zero channels on each side, as akamaster's
// LambdaLayer (F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes//4, planes//4))). Composed of
// existing ops (a 1x1 average pool of stride 2 is exactly the strided subsample, and a concat
// with zeros is the channel pad) so that it has a backward, and a GPU path, without a new kernel.
class ShortcutA : public Module {
 public:
  ShortcutA(int64_t pad, int64_t stride) : pad_(pad) {
    opts_.kernel[0] = opts_.kernel[1] = 1;
    opts_.stride[0] = opts_.stride[1] = stride;
  }
  Tensor forward(const Tensor& x) override {
    LB_CHECK(x.dim() == 4, node_name(), ": shortcut A expects (N, C, H, W), got ",
             shape_str(x.shape()));
    Tensor sub = avg_pool2d(x, opts_);
    Tensor zeros =
        Tensor::zeros({sub.size(0), pad_, sub.size(2), sub.size(3)}, sub.dtype(), sub.device());
    return name_node(concat({zeros, sub, zeros}, 1), node_name());
  }
  std::string kind() const override { return "ShortcutA"; }
  std::string describe() const override {
    return str_cat("subsample s", opts_.stride[0], ", +", pad_, "+", pad_, " zero channels");
  }

 private:
  int64_t pad_;
  Pool2dOptions opts_;
};

}  // namespace

BasicBlock::BasicBlock(int64_t in_planes, int64_t planes, int64_t stride, Shortcut option)
    : in_planes_(in_planes), planes_(planes), stride_(stride) {
  conv1_ = register_module("conv1", std::make_shared<Conv2d>(in_planes, planes, 3, stride, 1));
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
  conv2_ = register_module("conv2", std::make_shared<Conv2d>(planes, planes, 3, 1, 1));
  bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  if (stride == 1 && in_planes == planes) return;  // identity shortcut
  if (option == Shortcut::A) {
    // The zero pad puts planes/4 channels on each side: only right when the width doubles.
    LB_CHECK(planes == 2 * in_planes && stride == 2, "BasicBlock: shortcut option A needs stride 2 "
             "and doubled channels, got ", in_planes, "->", planes, " stride ", stride);
    shortcut_ = register_module("shortcut", std::make_shared<ShortcutA>(planes / 4, stride));
  } else {
    auto seq = std::make_shared<Sequential>();
    sc_conv_ = std::make_shared<Conv2d>(in_planes, planes, 1, stride, 0);
    sc_bn_ = std::make_shared<BatchNorm2d>(planes);
    seq->add(sc_conv_);
    seq->add(sc_bn_);
    shortcut_ = register_module("shortcut", seq);
  }
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor out = conv1_->forward_bn_act(x, *bn1_, FusedAct::relu);
  const Tensor sc = sc_conv_    ? sc_conv_->forward_bn_act(x, *sc_bn_, FusedAct::none)
                    : shortcut_ ? shortcut_->forward(x)
                                : x;
  return conv2_->forward_bn_act(out, *bn2_, FusedAct::relu, sc);
}

std::string BasicBlock::describe() const {
  return str_cat(in_planes_, "->", planes_, " s", stride_);
}

CifarResNet::CifarResNet(int64_t stem, const std::vector<int64_t>& widths,
                         const std::vector<int64_t>& blocks, Shortcut option, int64_t num_classes) {
  LB_CHECK(widths.size() == blocks.size() && !widths.empty(), "ResNet: ", widths.size(),
           " stage widths for ", blocks.size(), " stage depths");
  LB_CHECK(num_classes > 0, "ResNet: num_classes must be positive, got ", num_classes);
  conv1_ = register_module("conv1", std::make_shared<Conv2d>(3, stem, 3, 1, 1));
  conv1_->act_signed = true;  // the normalised image; every other conv and the linear follow a ReLU
  bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(stem));
  int64_t in = stem;
  for (size_t s = 0; s < widths.size(); ++s) {
    auto layer = std::make_shared<Sequential>();
    for (int64_t b = 0; b < blocks[s]; ++b) {
      const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      layer->add(std::make_shared<BasicBlock>(in, widths[s], stride, option));
      in = widths[s];
    }
    layers_.push_back(register_module("layer" + std::to_string(s + 1), layer));
  }
  // The references pool functionally (avg_pool2d over the whole 8x8 / 4x4 map); a stateless
  // child adds nothing to the state_dict and makes the pool show in the layer table.
  pool_ = register_module("avgpool", std::make_shared<GlobalAvgPool>());
  linear_ = register_module("linear", std::make_shared<Linear>(in, num_classes));
}

Tensor CifarResNet::forward(const Tensor& x) {
  Tensor out = conv1_->forward_bn_act(x, *bn1_, FusedAct::relu);
  for (auto& layer : layers_) out = layer->forward(out);
  return (*linear_)((*pool_)(out));
}

ModelPtr make_resnet_cifar(int depth, bool option_b, int64_t num_classes) {
  LB_CHECK(depth >= 8 && (depth - 2) % 6 == 0, "resnet: depth must be 6n+2 (20, 32, 44, 56, 110), got ",
           depth);
  const int64_t n = (depth - 2) / 6;
  return std::make_shared<CifarResNet>(16, std::vector<int64_t>{16, 32, 64},
                                       std::vector<int64_t>{n, n, n},
                                       option_b ? Shortcut::B : Shortcut::A, num_classes);
}

}  // namespace lowbit
