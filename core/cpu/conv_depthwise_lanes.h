// Depthwise convolutions with one filter per channel (O = C = groups), float32, with sixteen
// channels in the AVX-512 lanes (conv_depthwise_lanes.cpp says why). The depthwise entry points
// (conv_kernels.h) take them where dw_lanes_preferred holds; the plane kernels
// (conv_depthwise_kernels.cpp) keep channel multipliers, double and builds without AVX-512.
#pragma once
#include "core/cpu/conv_kernels.h"

namespace lowbit {

// Any stride, padding and dilation, kernels of up to 25 taps; false in builds without AVX-512.
bool dw_lanes_supported(const ConvGeom& g);
// What the depthwise entry points take: supported, unless dw_lanes_off() (tests and A/B timing
// set it to run the plane kernels instead).
bool dw_lanes_preferred(const ConvGeom& g);
bool& dw_lanes_off();

// The contracts of depthwise_conv2d_forward_cpu, _backward_data_cpu and _backward_weight_cpu.
void dw_lanes_forward(float* y, const float* x, const float* w, const float* b, const ConvGeom& g,
                      const ConvEpilogue<float>* ep);
void dw_lanes_backward_data(float* dx, const float* dy, const float* w, const ConvGeom& g);
void dw_lanes_backward_weight(float* dw, const float* dy, const float* x, const ConvGeom& g);

}  // namespace lowbit
