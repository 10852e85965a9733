// A small fast CNN for quick runs and tests (lowbit's own; no reference definition): three
// conv3x3-BN-ReLU stages of 16/32/64 channels with 2x2 max pools between them, global average
// pool, linear. 24,346 parameters with 10 classes; 2.80 M MACs per 32x32 image.
// Names: conv1, bn1, conv2, bn2, conv3, bn3, linear (pools carry no state).
#include "layers/layers.h"
#include "models/models.h"

namespace lowbit {

namespace {

class SmallCnn : public Module {
 public:
  explicit SmallCnn(int64_t num_classes) {
    conv1_ = register_module("conv1", std::make_shared<Conv2d>(3, 16, 3, 1, 1));
    conv1_->act_signed = true;  // the normalised image; the other layers follow a ReLU
    bn1_ = register_module("bn1", std::make_shared<BatchNorm2d>(16));
    pool1_ = register_module("pool1", std::make_shared<MaxPool2d>(2, 2));
    conv2_ = register_module("conv2", std::make_shared<Conv2d>(16, 32, 3, 1, 1));
    bn2_ = register_module("bn2", std::make_shared<BatchNorm2d>(32));
    pool2_ = register_module("pool2", std::make_shared<MaxPool2d>(2, 2));
    conv3_ = register_module("conv3", std::make_shared<Conv2d>(32, 64, 3, 1, 1));
    bn3_ = register_module("bn3", std::make_shared<BatchNorm2d>(64));
    pool3_ = register_module("avgpool", std::make_shared<GlobalAvgPool>());
    linear_ = register_module("linear", std::make_shared<Linear>(64, num_classes));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = (*pool1_)(conv1_->forward_bn_act(x, *bn1_, FusedAct::relu));
    out = (*pool2_)(conv2_->forward_bn_act(out, *bn2_, FusedAct::relu));
    out = conv3_->forward_bn_act(out, *bn3_, FusedAct::relu);
    return (*linear_)((*pool3_)(out));
  }
  std::string kind() const override { return "SmallCNN"; }

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_, conv3_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_, bn3_;
  std::shared_ptr<MaxPool2d> pool1_, pool2_;
  std::shared_ptr<GlobalAvgPool> pool3_;
  std::shared_ptr<Linear> linear_;
};

}  // namespace

ModelPtr make_smallcnn(int64_t num_classes) {
  LB_CHECK(num_classes > 0, "smallcnn: num_classes must be positive, got ", num_classes);
  return std::make_shared<SmallCnn>(num_classes);
}

}  // namespace lowbit
