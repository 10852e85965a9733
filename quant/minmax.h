// Min-max fake quantization (Jacob et al. 2018; seed 001 §2.3, §8.3): r = S(q - Z) with the range
// widened to contain 0; asymmetric S = (max-min)/(2^b-1), Z = round(-min/S) clamped to [0, 2^b-1];
// symmetric S = max|x|/(2^(b-1)-1), Z = 0; STE inside the range. METHODS.md "Min-max fake quantization".
#pragma once
#include <utility>

#include "core/tensor.h"
#include "quant/levels.h"

namespace lowbit {

struct MinMaxOptions {
  int bits = 8;            // [2, 16]
  bool symmetric = false;  // symmetric codes are the narrow range [-(2^(b-1)-1), 2^(b-1)-1] (±127 at 8 bits)
  bool per_channel = false;  // ranges per channel of axis 0 (weights)
  // Default clipped: the gradient passes where the code before clamping, round(x/S) + Z, lies in
  // [q_min, q_max] (PyTorch's fake-quantize mask); identity passes everything.
  Ste ste = Ste::method_default;
  double ema_decay = 0.99;  // for activation ranges (minmax_ema_update)
};

// Scale and zero point of a range (METHODS.md). A range that is a single point (0 after widening)
// gets S = 1, so that the op stays finite (every value then quantizes to 0).
void minmax_scale_zero(double range_min, double range_max, int bits, bool symmetric, double* scale,
                       double* zero);

// Min and max of x: shape (1,) per-tensor, (C,) per channel of axis 0; x's dtype, detached.
std::pair<Tensor, Tensor> minmax_range(const Tensor& x, bool per_channel);

// Fake-quantizes x with the given range (shape () / (1,) per-tensor, (C,) per-channel, x's dtype,
// min <= max). Records node kind "minmax", input ("x"); the ranges are not differentiated.
Tensor minmax_quantize(const Tensor& x, const Tensor& range_min, const Tensor& range_max,
                       const MinMaxOptions& o);
// The range from x itself (weights, or a batch without running statistics).
Tensor minmax_quantize(const Tensor& x, const MinMaxOptions& o);

// Training-time state update of activation ranges (not recorded): the first call (initialized
// false) copies x's range and sets initialized; later calls r ← decay·r + (1-decay)·range(x).
// running_min/max must already have the range's shape ((1,) or (C,)) and x's dtype.
void minmax_ema_update(Tensor& running_min, Tensor& running_max, bool& initialized, const Tensor& x,
                       bool per_channel, double decay);

// CPU kernels. x, y, gx, gy: (C, inner); scale, zero: (C); codes clamp to [qmin, qmax].
template <class T>
void minmax_forward_cpu(T* y, const T* x, const T* scale, const T* zero, int64_t qmin, int64_t qmax,
                        int64_t channels, int64_t inner);
template <class T>
void minmax_backward_cpu(T* gx, const T* gy, const T* x, const T* scale, const T* zero, int64_t qmin,
                         int64_t qmax, bool clipped, int64_t channels, int64_t inner);

}  // namespace lowbit
