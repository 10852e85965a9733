// DoReFa against METHODS.md: activations at levels, half-levels, 0, 1 and beyond with the mask
// 1[0 <= x <= 1]; weights' forward from the formula and their backward (through tanh and the max)
// against finite differences of the smooth surrogate tanh(w)/max|tanh(w)| that the STE differentiates.
#include <doctest/doctest.h>

#include "quant/dorefa.h"
#include "tests/test_quant_util.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {
DorefaOptions dopts(int bits) {
  DorefaOptions o;
  o.bits = bits;
  return o;
}
}  // namespace

TEST_CASE("dorefa_a: forward at levels, half-levels (ties to even), 0, 1 and beyond, bits 2..8") {
  int ties_checked = 0;
  for (int bits = 2; bits <= 8; ++bits) {
    const int64_t n = (1 << bits) - 1;
    std::vector<double> x, want;
    for (int64_t k = 0; k <= n; ++k) {
      x.push_back((double)k / n), want.push_back((double)k / n);
      const double h = (k + 0.5) / n;
      if (k < n && h * n == k + 0.5) {  // a half-level that is exact in binary: a true tie
        x.push_back(h), want.push_back((double)(k % 2 == 0 ? k : k + 1) / n);
        ++ties_checked;
      }
    }
    for (double v : {-0.2, -3.0}) x.push_back(v), want.push_back(0);
    for (double v : {1.0, 1.2, 8.0}) x.push_back(v), want.push_back(1);
    Tensor y = dorefa_quantize_activation(Tensor::from_vector<double>({(int64_t)x.size()}, x), dopts(bits));
    CHECK_MESSAGE(vals(y) == want, "bits ", bits);
  }
  CHECK(ties_checked > 50);
}

TEST_CASE("dorefa_a: random forward and the mask 1[0 <= x <= 1]") {
  for (int bits = 2; bits <= 8; ++bits) {
    const double n = (1 << bits) - 1;
    std::vector<double> xv = vals(rand_tensor({200}, 60 + bits, -0.5, 1.5));
    xv[0] = 0, xv[1] = 1;
    Tensor x = Tensor::from_vector<double>({200}, xv), gy = rand_tensor({200}, 3);
    auto y = vals(dorefa_quantize_activation(x, dopts(bits)));
    auto gx = vals(grads_of([&](const std::vector<Tensor>& in) { return dorefa_quantize_activation(in[0], dopts(bits)); },
                            {x}, gy)[0]);
    auto gv = vals(gy);
    for (size_t i = 0; i < xv.size(); ++i) {
      CHECK(y[i] == doctest::Approx(ref_round(clampd(xv[i], 0, 1) * n) / n).epsilon(1e-12));
      CHECK(gx[i] == ((xv[i] >= 0 && xv[i] <= 1) ? gv[i] : 0.0));
    }
    CHECK(gx[0] == gv[0]);
    CHECK(gx[1] == gv[1]);
  }
  DorefaOptions o = dopts(3);
  o.ste = Ste::identity;
  Tensor x = Tensor::from_vector<double>({2}, {-1, 2});
  CHECK(vals(grads_of([&](const std::vector<Tensor>& in) { return dorefa_quantize_activation(in[0], o); }, {x},
                      Tensor::from_vector<double>({2}, {5, 6}))[0]) == std::vector<double>{5, 6});
}

TEST_CASE("dorefa_w: forward from the formula, levels 2k/(2^b-1) - 1") {
  for (DType dt : {DType::f64, DType::f32})
    for (int bits = 2; bits <= 8; ++bits) {
      const double n = (1 << bits) - 1;
      Tensor w = rand_tensor({4, 25}, 80 + bits, -2, 2, dt);
      auto wv = vals(w), y = vals(dorefa_quantize_weight(w, dopts(bits)));
      double m = 0;
      for (double v : wv) m = std::max(m, std::fabs(std::tanh(v)));
      for (size_t i = 0; i < wv.size(); ++i) {
        const double want = 2 * ref_round((std::tanh(wv[i]) / m * 0.5 + 0.5) * n) / n - 1;
        CHECK(y[i] == doctest::Approx(want).epsilon(dt == DType::f64 ? 1e-12 : 1e-6));
        const double k = (y[i] + 1) / 2 * n;  // an integer level index
        CHECK(std::fabs(k - std::round(k)) < 1e-4);
      }
    }
}

TEST_CASE("dorefa_w: backward equals finite differences of tanh(w)/max|tanh(w)| (STE surrogate)") {
  for (int bits = 2; bits <= 8; ++bits) {
    Tensor w = rand_tensor({3, 7}, 90 + bits, -1.5, 1.5), gy = rand_tensor({3, 7}, 91);
    auto gw = vals(grads_of([&](const std::vector<Tensor>& in) { return dorefa_quantize_weight(in[0], dopts(bits)); },
                            {w}, gy)[0]);
    std::vector<double> wv = vals(w), gv = vals(gy);
    auto surrogate = [&](const std::vector<double>& u) {  // Σ gy·(2·r - 1), r = t/m·½ + ½
      double m = 0, s = 0;
      for (double v : u) m = std::max(m, std::fabs(std::tanh(v)));
      for (size_t i = 0; i < u.size(); ++i) s += gv[i] * std::tanh(u[i]) / m;
      return s;
    };
    for (size_t i = 0; i < wv.size(); ++i) {
      auto p = wv, q = wv;
      p[i] += 1e-6, q[i] -= 1e-6;
      const double num = (surrogate(p) - surrogate(q)) / 2e-6;
      CHECK_MESSAGE(rel_close(gw[i], num, 1e-6), "element ", i, ": ", gw[i], " vs ", num);
    }
  }
}

TEST_CASE("dorefa_w: the max's gradient is shared by tied elements; errors") {
  Tensor w = Tensor::from_vector<double>({3}, {0.5, -0.5, 0.2});
  auto gw = vals(grads_of([&](const std::vector<Tensor>& in) { return dorefa_quantize_weight(in[0], dopts(3)); }, {w},
                          Tensor::ones({3}, DType::f64))[0]);
  const double t0 = std::tanh(0.5), t2 = std::tanh(0.2), m = t0;
  const double gm = -(t0 - t0 + t2) / (m * m);  // -Σ gy_j t_j / m², split between the two ties
  CHECK(gw[0] == doctest::Approx((1 / m + gm / 2) * (1 - t0 * t0)));
  CHECK(gw[1] == doctest::Approx((1 / m - gm / 2) * (1 - t0 * t0)));
  CHECK(gw[2] == doctest::Approx((1 / m) * (1 - t2 * t2)));
  // All-zero weights: the midpoint level, zero gradient.
  Tensor z = Tensor::zeros({4}, DType::f64);
  for (double v : vals(dorefa_quantize_weight(z, dopts(2)))) CHECK(v == doctest::Approx(1.0 / 3));
  auto gz = vals(grads_of([&](const std::vector<Tensor>& in) { return dorefa_quantize_weight(in[0], dopts(2)); }, {z},
                          Tensor::ones({4}, DType::f64))[0]);
  CHECK(gz == std::vector<double>(4, 0.0));
  Tensor wr = rand_tensor({4}, 1).set_requires_grad(true);
  Tensor y = dorefa_quantize_weight(wr, dopts(2));
  CHECK(y.node()->kind == "dorefa_w");
  CHECK(y.node()->input_names == std::vector<std::string>{"w"});
  CHECK(dorefa_quantize_activation(wr, dopts(2)).node()->kind == "dorefa_a");
  DorefaOptions o = dopts(4);
  o.ste = Ste::identity;
  CHECK_THROWS_WITH_AS(dorefa_quantize_weight(w, o), doctest::Contains("dorefa_w: ste cannot be chosen"), Error);
  CHECK_THROWS_WITH_AS(dorefa_quantize_weight(w, dopts(1)), doctest::Contains("dorefa_w: bits must be in [2, 16]"), Error);
  CHECK_THROWS_WITH_AS(dorefa_quantize_activation(w, dopts(17)), doctest::Contains("dorefa_a: bits"), Error);
  CHECK_THROWS_WITH_AS(dorefa_quantize_activation(Tensor::ones({2}, DType::i32), dopts(4)),
                       doctest::Contains("dorefa_a: input 'x' must be float"), Error);
}
