// Helpers for the quantizer tests: an independent round-half-even (floor based, not the
// nearbyint the kernels use), random tensors, and running an op's backward with a given gradient.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/parallel.h"
#include "tests/gradcheck.h"

namespace lowbit::test {

// Round half to even written from the definition, so the tests do not reuse the kernels' helper.
inline double ref_round(double v) {
  double f = std::floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return std::fmod(f, 2.0) == 0 ? f : f + 1;  // tie: the even neighbour
}

inline double clampd(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

inline std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

// Gradients of the inputs after backward(op(inputs), gy). Inputs get requires_grad.
inline std::vector<Tensor> grads_of(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                    std::vector<Tensor> inputs, const Tensor& gy) {
  for (auto& t : inputs) {
    t.set_requires_grad(true);
    t.zero_grad();
  }
  Tensor y = f(inputs);
  backward(y, gy);
  std::vector<Tensor> g;
  for (auto& t : inputs) g.push_back(t.grad());
  return g;
}

// Relative tolerance, with an absolute floor of 1e-12 for sums that cancel to about zero.
inline bool rel_close(double a, double b, double tol = 1e-6) {
  return std::fabs(a - b) <= tol * std::max(std::fabs(a), std::fabs(b)) + 1e-12;
}

// Runs fn with 1 thread and then with `n` threads, restoring the count.
inline void with_threads(int n, const std::function<void()>& fn) {
  const int keep = num_threads();
  set_num_threads(n);
  fn();
  set_num_threads(keep);
}

}  // namespace lowbit::test
