// Winograd F(2x2, 3x3) and F(4x4, 3x3) for float32 3x3 stride-1 convolutions (Lavin & Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016; the definitions are in conv_winograd.cpp
// and conv_winograd4.cpp).
//
// Why: a 2x2 block of outputs of a 3x3 convolution costs 36 multiply-adds per (input, output)
// channel pair done directly, 16 in the Winograd domain: 2.25x fewer. The price is transforms of
// the input tiles (4x4, overlapping by 2), the weights and the outputs, made of additions only, and
// a float32 rounding that differs from the direct sum (the transforms' coefficients are 0, +-1 and
// +-1/2; the tests bound it against float64). ResNet-20 and the CIFAR ResNets are almost all
// stride-1 3x3 layers, which is where these kernels go. F(4x4, 3x3) takes the forward and data
// gradient from 8x8 outputs up: 36 products per 4x4 tile, 2.25 an output against F(2x2)'s 4, for
// larger transforms (coefficients up to 8 and 1/24) and a larger rounding error.
//
// The data gradient of such a layer is again one (conv_data_grad_geom), so it runs on the same
// forward kernel with the flipped, transposed weights. The weight gradient runs the transposed
// algorithms, F(3x3, 2x2) and (from 32x32 outputs) F(3x3, 4x4), whose sums over the tiles are
// long dot products.
//
// Results depend only on the inputs and the thread count (each output's sums run in a fixed
// order), as everywhere in lowbit.
#pragma once
#include "core/cpu/conv_kernels.h"

namespace lowbit {

// 3x3 kernel, stride 1, dilation 1, one group, padding at most 2 on each side (so that the data
// gradient is a convolution too), and a build with the vector kernels (AVX2 + FMA or AVX-512).
bool conv_winograd_supported(const ConvGeom& g);
// Supported, switched on (conv_winograd_enabled) and faster than the other kernels: outputs of
// at least 4x4 and at least 8 input and output channels (measured with bench-ops; see
// docs/perf.md). For the data gradient the same test on the transposed geometry.
bool conv_winograd_preferred(const ConvGeom& g);
bool conv_winograd_data_preferred(const ConvGeom& g);
// The weight gradient: preferred and outputs of at least 16x16.
bool conv_winograd_weight_preferred(const ConvGeom& g);
// The switch (on by default; `--conv direct` turns it off for runs that must keep the direct
// kernels' numbers, and the tests use it to compare the two).
bool& conv_winograd_enabled();
// Output tiles of the forward and data-gradient kernels: 0 (the default) picks by geometry
// (conv_winograd_tile_for), 2 forces F(2x2, 3x3) and 4 F(4x4, 3x3) (conv_winograd4.cpp), for
// runs that must keep one algorithm's numbers and for the tests.
int& conv_winograd_tile();
// The tile conv2d_forward_winograd uses for g: the forced one, else 4 where measured faster.
int conv_winograd_tile_for(const ConvGeom& g);
// The dy tile of conv2d_backward_weight_winograd for g (F(3x3, 2x2) or F(3x3, 4x4)): the forced
// one, else the one measured faster.
int conv_winograd_wgrad_tile_for(const ConvGeom& g);

// The contracts of conv2d_forward_cpu / conv2d_backward_data_cpu (conv_kernels.h). tile_nq as in
// conv2d_forward_direct (0: the kernels' pick).
void conv2d_forward_winograd(float* y, const float* x, const float* w, const float* b,
                             const ConvGeom& g, const ConvEpilogue<float>* ep = nullptr,
                             int tile_nq = 0);
// With accumulate, dx += the data gradient (conv2d_backward_data_add_cpu).
void conv2d_backward_data_winograd(float* dx, const float* dy, const float* w, const ConvGeom& g,
                                   int tile_nq = 0, bool accumulate = false);
// dw = the weight gradient through F(3x3, 2x2) or F(3x3, 4x4) (conv_winograd_wgrad.cpp);
// overwrites dw. Per-chunk partial sums are added in chunk order: a given thread count always
// gives the same bits.
void conv2d_backward_weight_winograd(float* dw, const float* dy, const float* x, const ConvGeom& g);

}  // namespace lowbit
