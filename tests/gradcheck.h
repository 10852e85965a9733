// Central finite differences in float64 for the smooth ops (DESIGN.md, Tests). gradcheck(f, inputs)
// compares the autograd gradient of sum(f(inputs) * R) (R a fixed random weighting, so every
// output element matters) with (L(x+h) - L(x-h)) / 2h for every element of every input.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"

namespace lowbit::test {

// A float64 tensor with values uniform in [lo, hi), reproducible from the seed.
inline Tensor rand_tensor(const Shape& shape, uint64_t seed, double lo = -1, double hi = 1,
                          DType dt = DType::f64) {
  Tensor t = Tensor::empty(shape, DType::f64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = lo + (hi - lo) * rng_uniform(seed, 77, (uint64_t)i);
  return dt == DType::f64 ? t : t.to(dt);
}

struct GradcheckResult {
  double max_rel_err = 0;
  std::string worst;
};

// Returns the worst relative error |a - n| / max(1, |a|, |n|) over all checked elements.
inline GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                 std::vector<Tensor> inputs, double h = 1e-6) {
  for (auto& t : inputs) t.set_requires_grad(true);
  Tensor out0 = f(inputs);
  Tensor weights = rand_tensor(out0.shape(), 4242, -1, 1);
  auto loss_of = [&](const std::vector<Tensor>& in) {
    NoGradGuard ng;
    Tensor o = f(in);
    const double* po = o.data<double>();
    const double* pw = weights.data<double>();
    double s = 0;
    for (int64_t i = 0; i < o.numel(); ++i) s += po[i] * pw[i];
    return s;
  };
  for (auto& t : inputs) t.zero_grad();
  Tensor out = f(inputs);
  backward(out, weights);
  GradcheckResult r;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor g = inputs[k].grad();
    REQUIRE_MESSAGE(g.defined(), "no gradient reached input ", k);
    double* px = inputs[k].data<double>();
    const double* pg = g.data<double>();
    for (int64_t i = 0; i < inputs[k].numel(); ++i) {
      double keep = px[i];
      px[i] = keep + h;
      double lp = loss_of(inputs);
      px[i] = keep - h;
      double lm = loss_of(inputs);
      px[i] = keep;
      double num = (lp - lm) / (2 * h);
      double err = std::fabs(num - pg[i]) / std::max({1.0, std::fabs(num), std::fabs(pg[i])});
      if (err > r.max_rel_err) {
        r.max_rel_err = err;
        r.worst = "input " + std::to_string(k) + " element " + std::to_string(i) +
                  ": autograd " + std::to_string(pg[i]) + " vs numeric " + std::to_string(num);
      }
    }
  }
  return r;
}

// The tolerance used throughout: h = 1e-6 in float64 gives errors around 1e-8 on smooth ops.
constexpr double kGradTol = 1e-6;

#define CHECK_GRADCHECK(result)                                     \
  do {                                                              \
    auto _r = (result);                                             \
    CHECK_MESSAGE(_r.max_rel_err < ::lowbit::test::kGradTol, _r.worst); \
  } while (0)

}  // namespace lowbit::test
