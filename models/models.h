// The CIFAR model zoo (ResNet-20..110 with shortcut option A or B, ResNet-18, ShuffleNetV2,
// MobileNetV2, WideResNet, a small CNN) and a per-layer table of output shapes, parameters and
// multiply-accumulates. Parameter names follow the PyTorch reference definition named in each
// model's file, so a checkpoint loads into it with strict=True (METHODS.md, "Layers of the
// small-dense models").
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "layers/module.h"

namespace lowbit {

using ModelPtr = std::shared_ptr<Module>;

// name: resnet20|resnet32|resnet44|resnet56|resnet110 (option A shortcuts), the same with suffix
// "b" (option B: 1x1 conv + BN on changing shortcuts), resnet18 (CIFAR variant), shufflenetv2
// (= shufflenetv2_1.0), shufflenetv2_0.5|_1.0|_1.5|_2.0, mobilenetv2, wrn-D-K (any depth
// D = 6n+4 and width K, e.g. wrn-40-4, wrn-28-10; no dropout), smallcnn.
// The parameters are initialised from `seed` (Module::init). Unknown name: error listing the names.
ModelPtr make_model(const std::string& name, int64_t num_classes, uint64_t seed);
std::vector<std::string> model_names();  // the names make_model accepts (wrn: two examples)
// make_model without the seeded init: the weights are those the layers' constructors drew. For
// a checkpoint about to be loaded, or a count of parameters, this skips one pass of the RNG
// over every weight (seconds for the wide models).
ModelPtr build_model(const std::string& name, int64_t num_classes);

// The builders make_model dispatches to (parameters left at their constructors' values).
ModelPtr make_resnet_cifar(int depth, bool option_b, int64_t num_classes);  // models/resnet_cifar.cpp
ModelPtr make_resnet18(int64_t num_classes);                                // models/resnet18.cpp
ModelPtr make_shufflenetv2(double width, int64_t num_classes);              // models/shufflenetv2.cpp
ModelPtr make_mobilenetv2(int64_t num_classes);                             // models/mobilenetv2.cpp
ModelPtr make_wrn(int depth, int widen, int64_t num_classes);               // models/wrn.cpp
ModelPtr make_smallcnn(int64_t num_classes);                                // models/smallcnn.cpp

struct LayerInfo {
  std::string name, kind, describe;
  Shape out_shape;  // with the batch axis of the input given to model_info
  int64_t params = 0, macs = 0;  // macs: per image
};

// Runs one forward of `input`-shaped zeros (eval mode, restored afterwards) and reports every
// Conv2d / Linear / BatchNorm2d / pool layer in execution order with its output shape, its
// parameters and its multiply-accumulates per image (conv: output elements * C/groups * kh * kw;
// linear: out * in; BatchNorm and pools: 0, as BN folds into the conv at inference).
// Shapes come from the recorded graph (nodes carry their module's path), so grad mode must be on.
std::vector<LayerInfo> model_info(Module& model, const Shape& input = {1, 3, 32, 32});
// An aligned text table, one row per layer, with a totals line.
std::string format_model_info(const std::vector<LayerInfo>& rows);

}  // namespace lowbit
