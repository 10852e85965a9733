// The post-training roundings of seed 001 on a uniform grid of step s (METHODS.md "Min-max fake
// quantization", last paragraph; "Levels"): nearest y = clip(round(x/s), -Q_N, Q_P)·s; stochastic
// rounds v = x/s up with probability v - floor(v); mid-rise puts the levels at ±(k+½)s, no zero level.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "quant/levels.h"

namespace lowbit {

struct RoundingOptions {
  int bits = 8;              // [2, 16]
  bool is_signed = true;     // grid [-Q_N, Q_P] or [0, Q_P] (nearest, stochastic); mid-rise is signed
  bool per_channel = false;  // s of shape (C), C = x.size(0)
  // Default clipped: the gradient passes where x/s is strictly inside the grid's range
  // (-Q_N < v < Q_P; mid-rise -2^(b-1) < v < 2^(b-1)), seed 001's 1[w_q ∈ (w_min, w_max)].
  Ste ste = Ste::method_default;
  uint64_t seed = 0;    // stochastic: the draw for element i is rng_uniform(seed, stream, i),
  uint64_t stream = 0;  // so it is the same on any device and for any thread count
};

// s: () / (1,) or (C,), > 0, x's dtype; a fixed step: it receives no gradient (the node's only
// input is x). Node kinds "nearest_round", "stochastic_round", "midrise", input ("x").
Tensor nearest_round(const Tensor& x, const Tensor& s, const RoundingOptions& o);
Tensor stochastic_round(const Tensor& x, const Tensor& s, const RoundingOptions& o);
// Mid-rise: y = (clip(floor(x/s), -2^(b-1), 2^(b-1)-1) + ½)·s; a value exactly on a multiple of s
// (a decision boundary) goes to the level above it, as floor puts it in the bin [k, k+1).
Tensor midrise_quantize(const Tensor& x, const Tensor& s, const RoundingOptions& o);

enum class RoundingKind { nearest, stochastic, midrise };

// CPU kernels. x, y, gx, gy: (C, inner); s: (C). lo/hi: the clip range of v = x/s in steps.
template <class T>
void rounding_forward_cpu(T* y, const T* x, const T* s, RoundingKind kind, int64_t lo, int64_t hi,
                          uint64_t seed, uint64_t stream, int64_t channels, int64_t inner);
// gx = gy·1[lo < x/s < hi] when clipped, else gy.
template <class T>
void rounding_backward_cpu(T* gx, const T* gy, const T* x, const T* s, int64_t lo, int64_t hi,
                           bool clipped, int64_t channels, int64_t inner);

}  // namespace lowbit
