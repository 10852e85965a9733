// Max-abs symmetric quantizer: the first conv / last linear weights of the APoT authors' CIFAR
// setup (METHODS.md "Non-uniform quantizers", last item): s = max|x| / Q_P with Q_P = 2^(b-1)-1
// (±127 levels at 8 bits), x̂ = round(x/s)·s, identity STE; s is a statistic, not differentiated.
#pragma once
#include "core/tensor.h"

namespace lowbit {

struct MaxAbsOptions {
  int bits = 8;  // [2, 16]
};

// The scale max|x| / (2^(b-1)-1) as a (1,) tensor of x's dtype, detached. An all-zero x gives
// scale 1 (every value rounds to 0 anyway), so the op never divides by zero.
Tensor maxabs_scale(const Tensor& x, int bits);

// x: any float tensor on the cpu. Records node "nearest_round" (input "x") with the identity STE:
// every x/s lies inside [-Q_P, Q_P] by construction, so a clipped STE would only zero the gradient
// of the largest element (x/s = Q_P exactly), which is not what the method asks.
Tensor maxabs_quantize(const Tensor& x, const MaxAbsOptions& o);

}  // namespace lowbit
