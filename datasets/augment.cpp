// Crop + flip + normalise in one pass over the output (see augment.h for the exact mapping).
#include "datasets/augment.h"

#include "core/rng.h"

namespace lowbit {

CropFlip crop_flip_for(uint64_t seed, int64_t epoch, int64_t sample, int pad) {
  // One 32-bit draw per sample, keyed by the data set index (not the position in the batch), so a
  // sample's augmentation does not depend on the shuffle, the batch size or the thread count.
  // The modulo bias is at most (2*pad+1)^2*2 / 2^32, far below anything measurable.
  uint32_t r = rng_u32(seed, stream_id("augment", (uint64_t)epoch), (uint64_t)sample);
  const uint32_t span = (uint32_t)(2 * pad + 1);
  CropFlip a;
  a.dx = (int)(r % span);
  r /= span;
  a.dy = (int)(r % span);
  r /= span;
  a.flip = (r & 1u) != 0;
  return a;
}

void normalization_lut(const Normalization& n, float* lut) {
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) lut[c * 256 + v] = ((float)v / 255.0f - n.mean[c]) / n.std[c];
}

void crop_flip_normalize(float* out, const uint8_t* img, int64_t h, int64_t w, const CropFlip& a,
                         int pad, const float* lut) {
  const int64_t plane = h * w;
  for (int64_t y = 0; y < h; ++y) {
    const int64_t sy = y + a.dy - pad;
    for (int64_t x = 0; x < w; ++x) {
      const int64_t sx = (a.flip ? w - 1 - x : x) + a.dx - pad;
      const bool inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
      const uint8_t* p = inside ? img + (sy * w + sx) * 3 : nullptr;
      for (int c = 0; c < 3; ++c) out[c * plane + y * w + x] = lut[c * 256 + (inside ? p[c] : 0)];
    }
  }
}

}  // namespace lowbit
