// PACT against METHODS.md: forward at levels, half-levels, 0 and α and beyond; masks 1[0 <= x < α]
// and ∂/∂α = 1[x >= α] per element; ∂/∂α by finite differences where it is a true derivative.
#include <doctest/doctest.h>

#include "quant/pact.h"
#include "tests/test_quant_util.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {
PactOptions popts(int bits) {
  PactOptions o;
  o.bits = bits;
  return o;
}
}  // namespace

TEST_CASE("pact: forward at levels, half-levels (ties to even), 0, α and beyond, bits 2..8") {
  for (DType dt : {DType::f64, DType::f32})
    for (int bits = 2; bits <= 8; ++bits) {
      const int64_t n = (1 << bits) - 1;
      const double alpha = n * 0.25;  // the grid step α/n = 0.25 keeps every value exact
      std::vector<double> x, want;
      for (int64_t k = 0; k <= n; ++k) {
        x.push_back(k * 0.25), want.push_back(k * 0.25);
        if (k < n) x.push_back((k + 0.5) * 0.25), want.push_back((k % 2 == 0 ? k : k + 1) * 0.25);
      }
      for (double v : {-0.1, -5.0}) x.push_back(v), want.push_back(0);
      for (double v : {alpha + 0.1, alpha + 7}) x.push_back(v), want.push_back(alpha);
      Tensor y = pact_quantize(Tensor::from_vector<double>({(int64_t)x.size()}, x).to(dt),
                               Tensor::scalar(alpha, dt), popts(bits));
      CHECK_MESSAGE(vals(y) == want, "bits ", bits);
    }
}

TEST_CASE("pact: random forward and per-element backward") {
  for (DType dt : {DType::f64, DType::f32})
    for (int bits = 2; bits <= 8; ++bits) {
      const double alpha = 1.7, n = (1 << bits) - 1;
      Tensor x = rand_tensor({300}, 40 + bits, -1, 3, dt);
      std::vector<double> xv = vals(x);
      xv[0] = 0, xv[1] = alpha, xv[2] = -0.0;  // the mask's closed and open ends
      x = Tensor::from_vector<double>({300}, xv).to(dt);
      Tensor a = Tensor::scalar(alpha, dt), gy = rand_tensor({300}, 5, -1, 1, dt);
      auto y = vals(pact_quantize(x, a, popts(bits)));
      auto g = grads_of([&](const std::vector<Tensor>& in) { return pact_quantize(in[0], in[1], popts(bits)); },
                        {x, a}, gy);
      auto gv = vals(gy), gx = vals(g[0]);
      const double av = vals(a)[0];
      double want_a = 0;
      for (size_t i = 0; i < xv.size(); ++i) {
        const double xi = vals(x)[i];
        const double c = clampd(xi, 0, av);
        CHECK(y[i] == doctest::Approx(ref_round(c * n / av) * av / n).epsilon(dt == DType::f64 ? 1e-12 : 1e-6));
        CHECK(gx[i] == ((xi >= 0 && xi < av) ? gv[i] : 0.0));
        if (xi >= av) want_a += gv[i];
      }
      CHECK(gx[0] == gv[0]);  // x = 0 passes
      CHECK(gx[1] == 0);      // x = α does not
      CHECK(rel_close(g[1].item<double>(), want_a, dt == DType::f64 ? 1e-12 : 1e-5));
    }
}

TEST_CASE("pact: ∂y_q/∂α matches finite differences on the saturated branch") {
  // x >= α or x < 0 everywhere: y_q = α or 0, so ∂y_q/∂α = 1[x >= α] is the true derivative.
  Tensor x = Tensor::from_vector<double>({6}, {-2, -0.5, 3, 4.5, 5, 9});
  for (int bits : {2, 3, 5, 8})
    CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& in) { return pact_quantize(x, in[0], popts(bits)); },
                              {Tensor::scalar(2.2, DType::f64)}));
}

TEST_CASE("pact: identity STE, recorded node, penalty, bad input") {
  Tensor x = Tensor::from_vector<double>({3}, {-1, 0.5, 3}), a = Tensor::scalar(1, DType::f64);
  PactOptions o = popts(3);
  o.ste = Ste::identity;
  auto g = grads_of([&](const std::vector<Tensor>& in) { return pact_quantize(in[0], in[1], o); }, {x, a},
                    Tensor::from_vector<double>({3}, {1, 2, 3}));
  CHECK(vals(g[0]) == std::vector<double>{1, 2, 3});
  CHECK(g[1].item<double>() == 3);  // only x = 3 >= α
  Tensor y = pact_quantize(x, a, o);
  CHECK(y.node()->kind == "pact");
  CHECK(y.node()->input_names == std::vector<std::string>{"x", "alpha"});
  Tensor al = Tensor::scalar(2, DType::f64).set_requires_grad(true);
  Tensor pen = pact_penalty(al, 0.01);
  CHECK(pen.item<double>() == doctest::Approx(0.04));
  backward(pen);
  CHECK(al.grad().item<double>() == doctest::Approx(0.04));
  CHECK_THROWS_WITH_AS(pact_quantize(x, a, popts(1)), doctest::Contains("pact: bits must be in [2, 16]"), Error);
  CHECK_THROWS_WITH_AS(pact_quantize(x, Tensor::scalar(0, DType::f64), popts(4)), doctest::Contains("pact: 'alpha' must be > 0"), Error);
  CHECK_THROWS_WITH_AS(pact_quantize(x, Tensor::ones({2}, DType::f64), popts(4)), doctest::Contains("pact: per-tensor 'alpha'"), Error);
  CHECK_THROWS_WITH_AS(pact_quantize(x, Tensor::scalar(1, DType::f32), popts(4)), doctest::Contains("pact: dtype mismatch"), Error);
}
