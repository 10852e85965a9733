// Per-sample augmentation for CIFAR-style training: a random HxW crop of the image zero-padded by
// `pad` on each side, then a random horizontal flip, fused with HWC uint8 -> CHW float32
// normalisation. The choice for a sample is a pure function of (seed, epoch, sample index).
#pragma once
#include <cstdint>

#include "datasets/dataset.h"

namespace lowbit {

struct CropFlip {
  int dx = 0, dy = 0;  // top-left corner of the crop in the padded image, in [0, 2*pad]
  bool flip = false;
};
// The identity (no augmentation) is dx = dy = pad, flip = false.
CropFlip crop_flip_for(uint64_t seed, int64_t epoch, int64_t sample, int pad = 4);

// Per-channel lookup table: value v of channel c becomes lut[c * 256 + v] = (v/255 - mean)/std.
// A table makes the result bit-identical however the batch is split, and is cheaper than math.
void normalization_lut(const Normalization& n, float* lut /* 3*256 */);

// out: (3, h, w) float32; img: (h, w, 3) uint8. out[c][y][x] = lut(img[y'][x'][c]) where
// x' = (flip ? w-1-x : x) + dx - pad, y' = y + dy - pad, and a pixel outside the image is 0
// (the zero padding, as torchvision's RandomCrop(padding=4) on uint8 images).
void crop_flip_normalize(float* out, const uint8_t* img, int64_t h, int64_t w, const CropFlip& a,
                         int pad, const float* lut);

}  // namespace lowbit
