// Post-training roundings of seed 001 against their definitions: nearest (ties to even), stochastic
// (only floor or ceil, unbiased, reproducible from (seed, stream), independent of the thread count),
// mid-rise levels ±(k+½)s with no zero level; STE masks; bad input.
#include <doctest/doctest.h>

#include "quant/rounding.h"
#include "tests/test_quant_util.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {
RoundingOptions ropts(int bits, bool sgn = true, uint64_t seed = 1) {
  RoundingOptions o;
  o.bits = bits;
  o.is_signed = sgn;
  o.seed = seed;
  return o;
}
}  // namespace

TEST_CASE("nearest_round: levels, half-levels (ties to even), clip, bits 2..8") {
  for (int bits = 2; bits <= 8; ++bits)
    for (bool sgn : {true, false}) {
      const auto r = quant_range(bits, sgn);
      const double s = 0.5;
      std::vector<double> x, want;
      for (int64_t k = -r.qn; k <= r.qp; ++k) {
        x.push_back(k * s), want.push_back(k * s);
        if (k < r.qp) x.push_back((k + 0.5) * s), want.push_back((k % 2 == 0 ? k : k + 1) * s);
      }
      x.push_back((r.qp + 2) * s), want.push_back(r.qp * s);
      x.push_back((-r.qn - 2.5) * s), want.push_back(-r.qn * s);
      Tensor y = nearest_round(Tensor::from_vector<double>({(int64_t)x.size()}, x), Tensor::scalar(s, DType::f64),
                               ropts(bits, sgn));
      CHECK_MESSAGE(vals(y) == want, "bits ", bits);
    }
}

TEST_CASE("stochastic_round: floor or ceil only, exact levels unchanged, clip, unbiased") {
  for (int bits = 2; bits <= 8; ++bits) {
    const auto r = quant_range(bits, true);
    Tensor x = rand_tensor({2000}, 700 + bits, -(double)r.qn - 1, (double)r.qp + 1);
    const double s = 1.0;
    auto y = vals(stochastic_round(x, Tensor::scalar(s, DType::f64), ropts(bits)));
    auto xv = vals(x);
    for (size_t i = 0; i < xv.size(); ++i) {
      const double v = clampd(xv[i], -(double)r.qn, (double)r.qp);
      CHECK((y[i] == std::floor(v) || y[i] == std::floor(v) + 1));
    }
    // Levels stay where they are; beyond the clip, the end level.
    std::vector<double> lv;
    for (int64_t k = -r.qn; k <= r.qp; ++k) lv.push_back((double)k);
    lv.push_back(r.qp + 3.7);
    lv.push_back(-r.qn - 0.2);
    auto yl = vals(stochastic_round(Tensor::from_vector<double>({(int64_t)lv.size()}, lv), Tensor::scalar(1, DType::f64), ropts(bits)));
    for (int64_t k = 0; k < r.qn + r.qp + 1; ++k) CHECK(yl[k] == lv[k]);
    CHECK(yl[yl.size() - 2] == r.qp);
    CHECK(yl.back() == -r.qn);
  }
  // Unbiased: E[y] = x. 40000 draws of x = 0.3·s (variance 0.21·s² each): mean within 5 standard errors.
  for (DType dt : {DType::f64, DType::f32})
    for (double frac : {0.3, 0.5, 0.9}) {
      const double s = 0.25, xv = (2 + frac) * s, n = 40000;
      auto y = vals(stochastic_round(Tensor::full({40000}, xv, dt), Tensor::scalar(s, dt), ropts(4, true, 77)));
      double m = 0;
      for (double v : y) m += v;
      m /= n;
      const double se = s * std::sqrt(frac * (1 - frac) / n);
      CHECK_MESSAGE(std::fabs(m - xv) < 5 * se, "frac ", frac, ": mean ", m, " vs ", xv);
    }
}

TEST_CASE("stochastic_round: reproducible from (seed, stream), independent of the thread count") {
  Tensor x = rand_tensor({5, 20000}, 3, -4, 4), s = Tensor::scalar(0.5, DType::f64);
  RoundingOptions o = ropts(4, true, 123);
  std::vector<double> a1, a2;
  with_threads(1, [&] { a1 = vals(stochastic_round(x, s, o)); });
  with_threads(2, [&] { a2 = vals(stochastic_round(x, s, o)); });
  CHECK(a1 == a2);
  CHECK(vals(stochastic_round(x, s, o)) == a1);
  RoundingOptions o2 = o;
  o2.seed = 124;
  CHECK(vals(stochastic_round(x, s, o2)) != a1);
  RoundingOptions o3 = o;
  o3.stream = 1;
  CHECK(vals(stochastic_round(x, s, o3)) != a1);
  // Element i draws rng_uniform(seed, stream, i): the same numbers whatever the shape.
  CHECK(vals(stochastic_round(x.view({100000}), s, o)) == a1);
}

TEST_CASE("midrise: levels ±(k+½)s, no zero level, boundaries go up, clip, bits 2..8") {
  for (int bits = 2; bits <= 8; ++bits) {
    const int64_t K = 1 << (bits - 1);
    const double s = 0.25;
    std::vector<double> x, want;
    for (int64_t k = -K; k < K; ++k) {
      x.push_back((k + 0.5) * s), want.push_back((k + 0.5) * s);  // on a level
      x.push_back(k * s), want.push_back((k + 0.5) * s);          // on a bin edge: the level above
      x.push_back((k + 0.9) * s), want.push_back((k + 0.5) * s);
    }
    x.push_back(K * s), want.push_back((K - 0.5) * s);  // the top edge is clipped
    x.push_back(100.0), want.push_back((K - 0.5) * s);
    x.push_back(-100.0), want.push_back((-K + 0.5) * s);
    Tensor y = midrise_quantize(Tensor::from_vector<double>({(int64_t)x.size()}, x), Tensor::scalar(s, DType::f64), ropts(bits));
    CHECK_MESSAGE(vals(y) == want, "bits ", bits);
    for (double v : vals(y)) CHECK(v != 0);
  }
}

TEST_CASE("rounding: STE masks per element, per-channel steps, nodes, bad input") {
  Tensor x = Tensor::from_vector<double>({2, 4}, {-5, -4, 2.9, 3, -2.5, -1, 0.5, 4});
  Tensor s = Tensor::from_vector<double>({2}, {1, 0.5});
  Tensor gy = Tensor::from_vector<double>({2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
  RoundingOptions o = ropts(3);
  o.per_channel = true;
  // Channel 1 has s = 0.5: v = -5, -2, 1, 8.
  auto want = std::vector<double>{0, 0, 3, 0, 0, 6, 7, 0};
  for (auto f : {nearest_round, stochastic_round})
    CHECK(vals(grads_of([&](const std::vector<Tensor>& in) { return f(in[0], s, o); }, {x}, gy)[0]) == want);
  CHECK(vals(nearest_round(x, s, o)) == std::vector<double>{-4, -4, 3, 3, -2, -1, 0.5, 1.5});
  // Mid-rise at 3 bits: v in (-4, 4) passes.
  CHECK(vals(grads_of([&](const std::vector<Tensor>& in) { return midrise_quantize(in[0], s, o); }, {x}, gy)[0]) ==
        std::vector<double>{0, 0, 3, 4, 0, 6, 7, 0});
  o.ste = Ste::identity;
  CHECK(vals(grads_of([&](const std::vector<Tensor>& in) { return nearest_round(in[0], s, o); }, {x}, gy)[0]) == vals(gy));
  Tensor xr = rand_tensor({4}, 1).set_requires_grad(true), s1 = Tensor::scalar(0.1, DType::f64);
  CHECK(stochastic_round(xr, s1, ropts(4)).node()->kind == "stochastic_round");
  CHECK(midrise_quantize(xr, s1, ropts(4)).node()->kind == "midrise");
  CHECK(nearest_round(xr, s1, ropts(4)).node()->kind == "nearest_round");
  CHECK(midrise_quantize(xr, s1, ropts(4)).node()->input_names == std::vector<std::string>{"x"});
  CHECK_THROWS_WITH_AS(stochastic_round(xr, s1, ropts(1)), doctest::Contains("stochastic_round: bits must be in [2, 16]"), Error);
  CHECK_THROWS_WITH_AS(midrise_quantize(xr, Tensor::scalar(0, DType::f64), ropts(4)), doctest::Contains("midrise: 's' must be > 0"), Error);
  CHECK_THROWS_WITH_AS(midrise_quantize(xr, s1, ropts(4, false)), doctest::Contains("midrise: mid-rise levels"), Error);
  RoundingOptions pc = ropts(4);
  pc.per_channel = true;
  CHECK_THROWS_WITH_AS(stochastic_round(xr, Tensor::ones({4}, DType::f64), pc), doctest::Contains("stochastic_round: per_channel needs"), Error);
  CHECK_THROWS_WITH_AS(stochastic_round(xr, Tensor::scalar(1, DType::f32), ropts(4)), doctest::Contains("stochastic_round: dtype mismatch"), Error);
}
