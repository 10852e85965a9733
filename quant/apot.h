// APoT (Li, Dong, Wang, ICLR 2020; seed 004 §2.2.2) and PoT (seed 004 eq. 2.10) non-uniform
// quantizers with a learnable clip α, as the APoT authors' code does them: x̂ = α·q(clip(u)), u = x/α,
// q the nearest level (ties to the smaller), ∂x̂/∂α = sign(u)·1[|u|>1] + (q(u)-u)·1[|u|<=1] (eq. 2.14).
// METHODS.md "Non-uniform quantizers". Kernels in quant/apot_kernels.h.
#pragma once
#include <vector>

#include "core/tensor.h"
#include "quant/levels.h"

namespace lowbit {

// The authors' initial clip levels.
constexpr double kApotAlphaInitWeight = 3.0;
constexpr double kApotAlphaInitActivation = 8.0;

// Level sets Q(1, B), ascending, normalised so that the largest level is 1 (METHODS.md lists them).
// APoT, B = 1..5: sums of one term from each base set, divided by their maximum; PoT, B >= 1:
// {0, 2^-(2^B-2), ..., 2^-1, 1}.
std::vector<double> apot_levels(int B);
std::vector<double> pot_levels(int B);

struct ApotOptions {
  int bits = 4;  // APoT [2, 5], PoT [2, 8]; weights use B = bits-1 magnitude bits plus a sign, activations B = bits
  // Weights: default identity (∂x̂/∂w = 1/std, unmasked as in the authors' code), clipped masks
  // 1[|u| <= 1]. Activations: default clipped, 1[u <= 1]; identity passes everything.
  Ste ste = Ste::method_default;
};

// Weights: w normalised with its mean and unbiased std (statistics not differentiated; a constant
// w, std 0, is taken as std 1), divided by α, clipped to [-1, 1], |·| projected, sign restored,
// times α: the output stays in normalised units. w: >= 2 elements; alpha: () or (1,), > 0.
// Records node kind "apot_w" / "pot_w", inputs ("w", "alpha").
Tensor apot_quantize_weight(const Tensor& w, const Tensor& alpha, const ApotOptions& o);
Tensor pot_quantize_weight(const Tensor& w, const Tensor& alpha, const ApotOptions& o);
// Activations: u = x/α clipped above at 1, projected (a negative u goes to level 0), times α.
// ∂x̂/∂α = 1[u > 1] + (q(u) - u)·1[u <= 1], the authors' code; it is eq. 2.14 for u >= -1, and the
// activations it sees are >= 0 (after ReLU). Records "apot_a" / "pot_a", inputs ("x", "alpha").
Tensor apot_quantize_activation(const Tensor& x, const Tensor& alpha, const ApotOptions& o);
Tensor pot_quantize_activation(const Tensor& x, const Tensor& alpha, const ApotOptions& o);

}  // namespace lowbit
