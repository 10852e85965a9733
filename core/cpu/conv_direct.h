// Direct convolution kernels for float32 (AVX-512, or AVX2 + FMA): no im2col matrix.
//
// Why: the im2col + GEMM path writes a column matrix KH*KW times the size of the image and then
// OpenBLAS copies it once more into its packed panels; for ResNet-20's 16-channel layers those two
// copies cost more than the multiply itself. With stride 1 there is a cheaper trick: pad the image
// once into planes of width Wp = W + 2*pw and compute the output on the same "grid" of width Wp
// (the last Wp - OW columns of each grid row are computed and thrown away). On that grid, kernel
// tap (kh, kw) of channel c reads the padded plane at a constant offset c*plane + kh*dh*Wp + kw*dw
// from the output position, so 16 consecutive outputs read 16 consecutive inputs for every tap:
// the "column matrix" is the padded image itself, read through an offset table.
//
// The data gradient of a stride-1 convolution is again a stride-1 convolution (of dy with the
// weights flipped in space and transposed in channels, padding d*(k-1) - p), so it runs on the
// same kernel. The weight gradient is a reduction over output positions of dy times the same
// shifted planes.
//
// Results depend only on the inputs (each output is summed in a fixed order; the weight gradient
// is reduced per image chunk in chunk order), so a given thread count gives the same bits.
#pragma once
#include <memory>
#include <vector>

#include "core/cpu/conv_kernels.h"

namespace lowbit {

// Forward and weight gradient: any stride (s > 1 through phase planes, see conv_direct.cpp),
// padding and dilation, any groups but depthwise (which has its own kernels); needs a build with
// AVX2 and FMA, or AVX-512. The data gradient also needs stride 1 and padding at most the dilated
// kernel extent minus one, so that it is again a convolution (of dy with the flipped weights).
bool conv_direct_supported(const ConvGeom& g);
bool conv_direct_data_supported(const ConvGeom& g);
// When they are also the faster choice, which the conv2d kernels then take (forward and weight
// gradient: conv_direct_preferred; data gradient: also conv_direct_data_supported): not for
// outputs under 8x8, nor for an unpadded 1x1 stride-1 convolution (a GEMM on x itself, no
// im2col) unless conv_direct_prefers_1x1() (the AVX-512 build).
bool conv_direct_preferred(const ConvGeom& g);
bool conv_direct_data_preferred(const ConvGeom& g);
bool conv_direct_prefers_1x1();

// Same contracts as conv2d_forward_cpu / conv2d_backward_data_cpu / conv2d_backward_weight_cpu.
// tile_nq: position vectors per forward tile, 1 .. conv_direct_max_tile_nq(); 0 picks the
// cheapest for the layer (the kernels' callers); a fixed one is for tests and experiments.
void conv2d_forward_direct(float* y, const float* x, const float* w, const float* b,
                           const ConvGeom& g, int tile_nq = 0,
                           const ConvEpilogue<float>* ep = nullptr);
void conv2d_backward_data_direct(float* dx, const float* dy, const float* w, const ConvGeom& g,
                                 int tile_nq = 0);
int conv_direct_max_tile_nq();
void conv2d_backward_weight_direct(float* dw, const float* dy, const float* x, const ConvGeom& g);

// The forward kernel an image at a time, for callers with their own loop over images (the phased
// data gradient, conv_phase_data.cpp): plan_direct packs w for g (whose N is unused) once;
// direct_image then computes image n's outputs yn (O, OH, OW) from xn (C, H, W), + b, then ep,
// exactly as conv2d_forward_direct does for that image. buf: one per thread, reused per image.
struct DirectPlan;
struct DirectPlanDeleter {
  void operator()(DirectPlan* p) const;
};
using DirectPlanPtr = std::unique_ptr<DirectPlan, DirectPlanDeleter>;
DirectPlanPtr plan_direct(const float* w, const ConvGeom& g, int tile_nq = 0);
struct DirectImageBuffers {
  DirectImageBuffers() = default;  // none (a phase without taps)
  explicit DirectImageBuffers(const DirectPlan& p);
  std::vector<float> x, y;  // the planes (borders zeroed once) and the output grid
};
void direct_image(const DirectPlan& p, float* yn, const float* xn, const float* b, int64_t n,
                  const ConvEpilogue<float>* ep, DirectImageBuffers& buf);

// The data gradient of a stride-1 convolution whose padding is at most the dilated kernel extent
// minus one is again a convolution: dx = conv(dy, w') in the geometry conv_data_grad_geom(g)
// (dy as the input, padding d*(k-1) - p), with w'[c][o][kh][kw] = w[o][c][KH-1-kh][KW-1-kw]
// inside each group (conv_data_grad_weights). The direct and the Winograd kernels both use it.
ConvGeom conv_data_grad_geom(const ConvGeom& g);
std::vector<float> conv_data_grad_weights(const float* w, const ConvGeom& g);

// The data gradient of a strided convolution (one group, no dilation) as stride-1 convolutions of
// dy on the direct kernels, one per phase of dx (conv_phase_data.cpp); preferred where the phases
// are at least 8x8. With accumulate, dx += the gradient. The bits do not depend on the threads.
bool conv_phase_data_supported(const ConvGeom& g);
bool conv_phase_data_preferred(const ConvGeom& g);
void conv2d_backward_data_phases(float* dx, const float* dy, const float* w, const ConvGeom& g,
                                 bool accumulate = false);

// Unpadded 1x1 stride-1 convolutions with outputs under 8x8 (conv_1x1_packed.cpp): the batch
// regrouped into wide pseudo-images for the direct tiles. Preferred in the AVX-512 build (as
// conv_direct_prefers_1x1); the same contracts as the conv2d kernels.
// The gradients prefer it only for small weights (conv_1x1_packed_grad_preferred).
bool conv_1x1_packed_preferred(const ConvGeom& g);
bool conv_1x1_packed_grad_preferred(const ConvGeom& g);
void conv1x1_packed_forward(float* y, const float* x, const float* w, const float* b,
                            const ConvGeom& g, const ConvEpilogue<float>* ep = nullptr);
void conv1x1_packed_backward_data(float* dx, const float* dy, const float* w, const ConvGeom& g);
void conv1x1_packed_backward_weight(float* dw, const float* dy, const float* x, const ConvGeom& g);

}  // namespace lowbit
