// The ResNet family shared by resnet_cifar.cpp (He et al. 2016, CIFAR ResNet-20..110) and
// resnet18.cpp (the CIFAR ResNet-18 of kuangliu/pytorch-cifar): a 3x3 stem, stages of
// BasicBlocks, global average pool, linear. Internal to models/.
#pragma once
#include <vector>

#include "layers/layers.h"

namespace lowbit {

enum class Shortcut { A, B };  // A: subsample + zero channels (no parameters); B: 1x1 conv + BN

// conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU (each conv with its BN through
// Conv2d::forward_bn_act: one op in no-grad evaluation). Children conv1, bn1, conv2, bn2 and,
// where the shape changes, shortcut (option A: a parameter-free module; option B: Sequential of
// a 1x1 conv "shortcut.0" and a BN "shortcut.1").
class BasicBlock : public Module {
 public:
  BasicBlock(int64_t in_planes, int64_t planes, int64_t stride, Shortcut option);
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "BasicBlock"; }
  std::string describe() const override;

 private:
  std::shared_ptr<Conv2d> conv1_, conv2_;
  std::shared_ptr<BatchNorm2d> bn1_, bn2_;
  ModulePtr shortcut_;  // null: identity
  // Option B: the shortcut's conv and BN (shortcut.0, shortcut.1), run as one forward_bn_act.
  std::shared_ptr<Conv2d> sc_conv_;
  std::shared_ptr<BatchNorm2d> sc_bn_;
  int64_t in_planes_, planes_, stride_;
};

// conv1 (3 -> stem, 3x3), bn1, layer1..layerK (blocks[i] BasicBlocks of widths[i], the first of
// each stage after the first with stride 2), global average pool, linear.
class CifarResNet : public Module {
 public:
  CifarResNet(int64_t stem, const std::vector<int64_t>& widths, const std::vector<int64_t>& blocks,
              Shortcut option, int64_t num_classes);
  Tensor forward(const Tensor& x) override;
  std::string kind() const override { return "ResNet"; }

 private:
  std::shared_ptr<Conv2d> conv1_;
  std::shared_ptr<BatchNorm2d> bn1_;
  std::vector<std::shared_ptr<Sequential>> layers_;
  std::shared_ptr<GlobalAvgPool> pool_;
  std::shared_ptr<Linear> linear_;
};

}  // namespace lowbit
