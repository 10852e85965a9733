// Winograd F(4x4, 3x3), the forward kernel behind conv2d_forward_winograd and
// conv2d_backward_data_winograd where conv_winograd.cpp picks 4x4 output tiles (conv_winograd.h).
// Private to the Winograd files; the algorithm is described at the top of conv_winograd4.cpp.
#pragma once
#include "core/cpu/conv_kernels.h"

namespace lowbit {

// y = conv(x, w) + b (b may be null), then the epilogue; the contract of conv2d_forward_winograd.
void winograd4_conv(float* y, const float* x, const float* w, const float* b, const ConvGeom& g,
                    const ConvEpilogue<float>* ep, int force_nq, bool accumulate = false);

}  // namespace lowbit
