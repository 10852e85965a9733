// Plain 1x1 convolutions (stride 1, no padding) with outputs under 8x8, on the direct tiles.
//
// Why: at 4x4 (ShuffleNetV2's and MobileNetV2's last stage) an image has 16 positions, one vector,
// too few for the direct tiles (conv_direct_preferred leaves them to OpenBLAS, whose GEMM runs at
// a third of the tiles' rate on the machine image's Haswell kernel). But a 1x1 convolution treats
// every position alike, wherever it sits: the batch can be regrouped into a few wide
// pseudo-images, images side by side along the width, and convolved as one 1x1 layer over those.
// The copies in and out move each activation once; the multiply-adds then run on rows of hundreds
// of positions. As many pseudo-images as conv_for_image_chunks wants chunks, so the threads still
// split the work; the last ones are zero-padded when the batch does not divide evenly (zeros add
// nothing to the weight gradient).
#include <algorithm>

#include "core/cpu/conv_direct.h"
#include "core/cpu/conv_util.h"

namespace lowbit {

namespace {

struct Packing {
  int64_t groups_of = 0;  // pseudo-images
  int64_t per = 0;        // images per pseudo-image (the last ones may hold fewer real ones)
  int64_t hw = 0;
  ConvGeom g;             // the geometry over the pseudo-images
};

Packing packing(const ConvGeom& g) {
  Packing p;
  p.hw = g.H * g.W;
  p.groups_of = conv_image_chunks(g.N);
  p.per = (g.N + p.groups_of - 1) / p.groups_of;
  p.g = g;
  p.g.N = p.groups_of;
  p.g.H = p.g.OH = 1;
  p.g.W = p.g.OW = p.per * p.hw;
  return p;
}

// t (P, ch, per*hw) from a (N, ch, hw) batch: image n = i*per + j to pseudo-image i, slot j;
// slots past the batch are zero.
void pack(float* t, const float* a, int64_t ch, const Packing& p, int64_t n_images) {
  const int64_t width = p.per * p.hw;
  parallel_for(p.groups_of * ch, width, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r / ch, c = r % ch;
      float* row = t + r * width;
      for (int64_t j = 0; j < p.per; ++j) {
        const int64_t n = i * p.per + j;
        float* dst = row + j * p.hw;
        if (n < n_images)
          std::copy(a + (n * ch + c) * p.hw, a + (n * ch + c + 1) * p.hw, dst);
        else
          std::fill(dst, dst + p.hw, 0.0f);
      }
    }
  });
}

// The inverse for the real images, each (image, channel) plane then through ep.
void unpack(float* a, const float* t, int64_t ch, const Packing& p, int64_t n_images,
            const ConvEpilogue<float>* ep) {
  const int64_t width = p.per * p.hw;
  parallel_for(n_images * ch, p.hw, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / ch, c = r % ch, i = n / p.per, j = n % p.per;
      const float* src = t + (i * ch + c) * width + j * p.hw;
      std::copy(src, src + p.hw, a + r * p.hw);
      conv_epilogue_plane(a + r * p.hw, p.hw, ep, n, c, ch);
    }
  });
}

}  // namespace

bool conv_1x1_packed_preferred(const ConvGeom& g) {
  const bool plain_1x1 = g.KH == 1 && g.KW == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 &&
                         g.pw == 0;
  return plain_1x1 && g.OH * g.OW < 64 && conv_direct_prefers_1x1() && conv_direct_supported(g) &&
         g.N > 0;
}

// The gradients only up to 64K weights (ShuffleNetV2's 232->232: 54K). Measured at 464->1024
// (475K, `lowbit bench-ops --shapes shufflenetv2 --threads 1 --clock cpu --only conv1x1`): the
// forward still gained (20 -> 15-17 ms), the data gradient did not (20 -> 18-24 ms) and the
// weight gradient lost (22 -> 39-46 ms; its per-chunk sums of every weight and a dy transposed
// wider than the caches), so those stay on OpenBLAS.
bool conv_1x1_packed_grad_preferred(const ConvGeom& g) {
  return conv_1x1_packed_preferred(g) && g.C / g.groups * g.O <= 65536;
}

// The packed copies live in the calling thread's scratch (conv_util.h), not cleared: pack and the
// direct kernels write every element, so a zero fill would be one more pass per call.
void conv1x1_packed_forward(float* y, const float* x, const float* w, const float* b,
                            const ConvGeom& g, const ConvEpilogue<float>* ep) {
  const Packing p = packing(g);
  float* xt = thread_scratch(kScratchPackedIn, (size_t)(p.groups_of * g.C * p.g.W));
  float* yt = thread_scratch(kScratchPackedOut, (size_t)(p.groups_of * g.O * p.g.W));
  pack(xt, x, g.C, p, g.N);
  conv2d_forward_direct(yt, xt, w, b, p.g);
  unpack(y, yt, g.O, p, g.N, ep);
}

void conv1x1_packed_backward_data(float* dx, const float* dy, const float* w, const ConvGeom& g) {
  const Packing p = packing(g);
  float* dyt = thread_scratch(kScratchPackedIn, (size_t)(p.groups_of * g.O * p.g.W));
  float* dxt = thread_scratch(kScratchPackedOut, (size_t)(p.groups_of * g.C * p.g.W));
  pack(dyt, dy, g.O, p, g.N);
  conv2d_backward_data_direct(dxt, dyt, w, p.g);
  unpack(dx, dxt, g.C, p, g.N, nullptr);
}

void conv1x1_packed_backward_weight(float* dw, const float* dy, const float* x, const ConvGeom& g) {
  const Packing p = packing(g);
  float* dyt = thread_scratch(kScratchPackedIn, (size_t)(p.groups_of * g.O * p.g.W));
  float* xt = thread_scratch(kScratchPackedOut, (size_t)(p.groups_of * g.C * p.g.W));
  pack(dyt, dy, g.O, p, g.N);
  pack(xt, x, g.C, p, g.N);
  conv2d_backward_weight_direct(dw, dyt, xt, p.g);
}

}  // namespace lowbit
