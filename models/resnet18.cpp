// ResNet-18, CIFAR variant (He et al. 2016 with a 3x3 stride-1 stem and no max pool, for 32x32
// inputs): 4 stages of 2 BasicBlocks, 64/128/256/512 channels, 1x1 conv + BN on changing shortcuts.
// Names follow kuangliu/pytorch-cifar (models/resnet.py, ResNet18): conv1, bn1, layer1..4.{0,1}.
// {conv1,bn1,conv2,bn2,shortcut.0,shortcut.1}, linear; it loads there with strict=True.
#include "models/models.h"
#include "models/resnet_cifar.h"

namespace lowbit {

ModelPtr make_resnet18(int64_t num_classes) {
  // kuangliu pools with F.avg_pool2d(out, 4) on the 4x4 map: the same as the global pool here.
  return std::make_shared<CifarResNet>(64, std::vector<int64_t>{64, 128, 256, 512},
                                       std::vector<int64_t>{2, 2, 2, 2}, Shortcut::B, num_classes);
}

}  // namespace lowbit
