// Shared pieces of every quantizer: the integer range of a uniform grid (Q_N, Q_P), rounding half
// to even, the STE choice, and the checks every quantizer op makes on its inputs.
// METHODS.md "Uniform quantizers" (Levels): signed Q_N = 2^(b-1), Q_P = 2^(b-1)-1; unsigned 0, 2^b-1.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace lowbit {

struct QuantRange {
  int64_t qn = 0;  // the grid reaches -qn
  int64_t qp = 0;  // and +qp (in steps)
};

// Levels of a b-bit uniform grid (METHODS.md, Levels). lowbit uses Q_P = 2^b - 1 for unsigned
// grids (seed 003's 2^b would need b+1 bits).
inline QuantRange quant_range(int bits, bool is_signed) {
  QuantRange r;
  if (is_signed) {
    r.qn = int64_t(1) << (bits - 1);
    r.qp = (int64_t(1) << (bits - 1)) - 1;
  } else {
    r.qn = 0;
    r.qp = (int64_t(1) << bits) - 1;
  }
  return r;
}

// Round half to even, as torch.round and NumPy do (METHODS.md, Notation). std::nearbyint rounds
// in the current floating-point rounding mode, whose default (FE_TONEAREST, never changed by
// lowbit) is round-to-nearest with ties to even; unlike std::rint it raises no inexact flag, and
// unlike std::round (ties away from zero) it matches the reference implementations bit for bit.
template <class T>
inline T round_half_even(T v) {
  return std::nearbyint(v);
}

// Straight-through estimator of a quantizer's input gradient (METHODS.md, "Gradient estimators to
// audit"): clipped passes the gradient only where the input is inside the quantizer's range,
// identity passes it everywhere. method_default is whatever the method's definition says: clipped
// for LSQ, LSQ+, PACT, DoReFa activations, APoT/PoT activations, min-max and the rounding ops;
// identity for APoT/PoT weights (the authors' code does not mask them). DoReFa weights have no
// clipping (tanh squashes them), so they have no choice.
enum class Ste { method_default, clipped, identity };
Ste parse_ste(const std::string& s, const char* op);  // "identity" | "clipped" | "" (default)
const char* ste_name(Ste s);
inline bool ste_clipped(Ste s, bool method_default_clipped) {
  return s == Ste::method_default ? method_default_clipped : s == Ste::clipped;
}

// Input checks shared by the ops; each error names the op.
void check_bits(const char* op, int bits, int lo, int hi);
// x is a float tensor on the cpu; p has x's dtype (arg names it in errors).
// cuda_ok: the quantizer has a CUDA kernel (lsq, lsqplus, pact, dorefa), so x may live on cuda.
void check_quant_input(const Tensor& x, const char* op, const char* arg, bool cuda_ok = false);
void check_param_dtype(const Tensor& x, const Tensor& p, const char* op, const char* arg);
// A per-tensor parameter has shape () or (1); a per-channel one has shape (C) with C = x.size(0),
// and needs x of at least 2 dimensions (channel axis 0, as for a weight (O, I, KH, KW)).
// Returns the number of channels (1 per-tensor).
int64_t check_param_shape(const Tensor& x, const Tensor& p, bool per_channel, const char* op,
                          const char* arg);
// Every element of p is > 0 (and finite).
void check_positive(const Tensor& p, const char* op, const char* arg);

}  // namespace lowbit
