// conv2d's input checks and geometry (core/ops_conv.cpp), shared with the fused inference op
// conv2d_bn_act (core/ops_conv_bn.cpp) so that both reject bad input with the same messages.
#pragma once
#include "core/cpu/conv_kernels.h"
#include "core/ops.h"

namespace lowbit {

// Validates x, w and b for conv2d with options o (errors name conv2d and the shapes) and returns
// the geometry.
ConvGeom conv_geom(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o);

}  // namespace lowbit
