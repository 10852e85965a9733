// log_softmax, softmax, softmax_cross_entropy (label smoothing 0 and 0.1) and kl_div (T = 1, 4):
// naive references and PyTorch golden values (tests/fixtures/make_golden_shapeops.py), gradients
// by finite differences, float32 against float64, errors naming the op.
#include <doctest/doctest.h>

#include "core/autograd.h"
#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {
using V = std::vector<Tensor>;
Tensor pattern(const Shape& s, int64_t a, int64_t b, double c) {
  Tensor t = Tensor::empty(s, DType::f64);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = (double)((i * a) % b) / c - 1.0;
  return t;
}
void check_close(const Tensor& t, const std::vector<double>& want, double tol) {
  auto got = t.to_vector<double>();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i)
    CHECK_MESSAGE(std::fabs(got[i] - want[i]) <= tol, "element ", i, ": ", got[i], " vs ", want[i]);
}
double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::fabs(va[i] - vb[i]));
  return m;
}
// log softmax of row r of x (rows, k) * scale, the direct formula.
std::vector<double> naive_log_softmax(const Tensor& x, int64_t r, double scale = 1.0) {
  const int64_t k = x.size(1);
  double s = 0;
  for (int64_t j = 0; j < k; ++j) s += std::exp(x.data<double>()[r * k + j] * scale);
  std::vector<double> out((size_t)k);
  for (int64_t j = 0; j < k; ++j) out[(size_t)j] = x.data<double>()[r * k + j] * scale - std::log(s);
  return out;
}
Tensor targets(const std::vector<int64_t>& t) { return Tensor::from_vector<int64_t>({(int64_t)t.size()}, t); }
}  // namespace

TEST_CASE("log_softmax and softmax: values, stability, gradients") {
  Tensor x = rand_tensor({3, 5}, 1, -3, 3);
  Tensor ls = log_softmax(x), sm = softmax(x);
  for (int64_t r = 0; r < 3; ++r) {
    auto want = naive_log_softmax(x, r);
    double row = 0;
    for (int64_t j = 0; j < 5; ++j) {
      CHECK(ls.data<double>()[r * 5 + j] == doctest::Approx(want[j]).epsilon(1e-13));
      CHECK(sm.data<double>()[r * 5 + j] == doctest::Approx(std::exp(want[j])).epsilon(1e-13));
      row += sm.data<double>()[r * 5 + j];
    }
    CHECK(row == doctest::Approx(1.0).epsilon(1e-14));
  }
  // Large logits: the naive exp overflows, the max-shifted form does not.
  Tensor big = Tensor::from_vector<double>({1, 3}, {1000, 1001, 999});
  check_close(log_softmax(big), {-1.4076059644443801, -0.40760596444438013, -2.4076059644443801}, 1e-12);
  check_close(softmax(big.to(DType::f32)), {0.24472847105479764, 0.66524095823440138, 0.09003057317038046}, 1e-6);
  CHECK(max_abs_diff(log_softmax(x.to(DType::f32)), ls) < 1e-5);
  CHECK_GRADCHECK(gradcheck([](const V& in) { return log_softmax(in[0]); }, {rand_tensor({3, 4}, 2, -2, 2)}));
  CHECK_GRADCHECK(gradcheck([](const V& in) { return softmax(in[0]); }, {rand_tensor({3, 4}, 3, -2, 2)}));
  CHECK_THROWS_WITH_AS(softmax(rand_tensor({2, 3, 4}, 1)), doctest::Contains("softmax"), Error);
  CHECK_THROWS_WITH_AS(log_softmax(rand_tensor({4}, 1)), doctest::Contains("log_softmax"), Error);
}

TEST_CASE("softmax_cross_entropy: naive reference for smoothing 0 and 0.1, PyTorch golden") {
  Tensor z = rand_tensor({4, 5}, 11, -3, 3);
  Tensor t = targets({3, 0, 4, 1});
  for (double eps : {0.0, 0.1}) {
    CAPTURE(eps);
    double want = 0;
    for (int64_t r = 0; r < 4; ++r) {
      auto lp = naive_log_softmax(z, r);
      for (int64_t j = 0; j < 5; ++j) {
        const double q = (1 - eps) * (j == t.data<int64_t>()[r] ? 1.0 : 0.0) + eps / 5;
        want -= q * lp[j];
      }
    }
    want /= 4;
    Tensor loss = softmax_cross_entropy(z, t, eps);
    CHECK(loss.dim() == 0);
    CHECK(loss.item<double>() == doctest::Approx(want).epsilon(1e-13));
    CHECK(softmax_cross_entropy(z.to(DType::f32), t, eps).item<double>() ==
          doctest::Approx(want).epsilon(1e-6));
    CHECK_GRADCHECK(gradcheck([t, eps](const V& in) { return softmax_cross_entropy(in[0], t, eps); },
                              {rand_tensor({4, 5}, 12, -2, 2)}));
  }
  // From tests/fixtures/make_golden_shapeops.py (torch 1.13, float64, label_smoothing 0.1).
  const std::vector<double> kCeLoss = {3.8970833104985401};
  const std::vector<double> kCeGrad = {-0.008333231434858061, -0.0081490965680742194, 0.024774552557328116, -0.0082922245543958391, -0.035842136020727791, -0.0082997052480576396, 0.052467671162065743, -0.0083258298932802829, 0.26415786397927216, -0.0082997052480576396, 0.052467671162065729, -0.30832582989328028};
  Tensor zg = mul_scalar(pattern({3, 4}, 5, 11, 2), 3.0).set_requires_grad(true);  // as the script
  Tensor loss = softmax_cross_entropy(zg, targets({2, 0, 3}), 0.1);
  CHECK(loss.item<double>() == doctest::Approx(kCeLoss[0]).epsilon(1e-13));
  backward(loss);
  check_close(zg.grad(), kCeGrad, 1e-14);
  // The upstream gradient scales the result: (softmax - q) / N * g.
  zg.zero_grad();
  backward(softmax_cross_entropy(zg, targets({2, 0, 3}), 0.1), Tensor::scalar(2.5, DType::f64));
  for (size_t i = 0; i < kCeGrad.size(); ++i) CHECK(zg.grad().data<double>()[i] == doctest::Approx(2.5 * kCeGrad[i]));
}

TEST_CASE("softmax_cross_entropy: bad targets and shapes name the op and the value") {
  Tensor z = rand_tensor({3, 4}, 13);
  CHECK_THROWS_WITH_AS(softmax_cross_entropy(z, targets({0, 4, 1})),
                       doctest::Contains("softmax_cross_entropy: target[1] = 4"), Error);
  CHECK_THROWS_WITH_AS(softmax_cross_entropy(z, targets({0, 1, -1})),
                       doctest::Contains("target[2] = -1"), Error);
  CHECK_THROWS_WITH_AS(softmax_cross_entropy(z, targets({0, 1, 2}).to(DType::i32)),
                       doctest::Contains("softmax_cross_entropy: target must be int64"), Error);
  CHECK_THROWS_WITH_AS(softmax_cross_entropy(z, Tensor::zeros({3}, DType::f32)),
                       doctest::Contains("float32"), Error);
  CHECK_THROWS_WITH_AS(softmax_cross_entropy(z, targets({0, 1})),
                       doctest::Contains("softmax_cross_entropy: shape mismatch"), Error);
  CHECK_THROWS_WITH_AS(softmax_cross_entropy(rand_tensor({3}, 1), targets({0, 1, 2})),
                       doctest::Contains("softmax_cross_entropy"), Error);
  CHECK_THROWS_WITH_AS(softmax_cross_entropy(z, targets({0, 1, 2}), 1.5),
                       doctest::Contains("label_smoothing"), Error);
}

TEST_CASE("kl_div: T^2 * KL(softmax(t/T) || softmax(x/T)) for T = 1 and 4, gradient to x only") {
  Tensor x = rand_tensor({3, 4}, 21, -2, 2), tt = rand_tensor({3, 4}, 22, -2, 2);
  for (double T : {1.0, 4.0}) {
    CAPTURE(T);
    double want = 0;
    for (int64_t r = 0; r < 3; ++r) {
      auto ls = naive_log_softmax(x, r, 1 / T), lt = naive_log_softmax(tt, r, 1 / T);
      for (int64_t j = 0; j < 4; ++j) want += std::exp(lt[j]) * (lt[j] - ls[j]);
    }
    want *= T * T / 3;
    CHECK(kl_div(x, tt, T).item<double>() == doctest::Approx(want).epsilon(1e-12));
    CHECK(kl_div(x.to(DType::f32), tt.to(DType::f32), T).item<double>() ==
          doctest::Approx(want).epsilon(1e-5));
    CHECK_GRADCHECK(gradcheck([tt, T](const V& in) { return kl_div(in[0], tt, T); },
                              {rand_tensor({3, 4}, 23, -2, 2)}));
  }
  CHECK(kl_div(x, x, 4.0).item<double>() == doctest::Approx(0.0).epsilon(1e-15));
  // No gradient flows to the teacher's logits.
  Tensor xs = x.clone().set_requires_grad(true), tg = tt.clone().set_requires_grad(true);
  backward(kl_div(xs, tg, 2.0));
  CHECK(xs.grad().defined());
  CHECK_FALSE(tg.grad().defined());

  // From tests/fixtures/make_golden_shapeops.py (torch 1.13, float64, T = 4).
  const std::vector<double> kKlLoss = {10.432024352795745};
  const std::vector<double> kKlGrad = {0.12835257782892279, -1.0856166605377058, 0.95726408270878305, -0.20500294048761725, 0.98958957533688119, -0.78458663484926383};
  Tensor gx = pattern({2, 3}, 3, 7, 1).set_requires_grad(true);
  Tensor loss = kl_div(gx, pattern({2, 3}, 5, 9, 0.5), 4.0);
  CHECK(loss.item<double>() == doctest::Approx(kKlLoss[0]).epsilon(1e-13));
  backward(loss);
  check_close(gx.grad(), kKlGrad, 1e-13);

  CHECK_THROWS_WITH_AS(kl_div(x, rand_tensor({3, 5}, 1)), doctest::Contains("kl_div: shape mismatch"), Error);
  CHECK_THROWS_WITH_AS(kl_div(x, tt, 0.0), doctest::Contains("kl_div: temperature"), Error);
  CHECK_THROWS_WITH_AS(kl_div(x, tt.to(DType::f32)), doctest::Contains("kl_div"), Error);
}
