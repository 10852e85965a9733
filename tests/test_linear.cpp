// matmul and linear: forward against naive loops, backward by finite differences, float32 against
// float64, bit-identical reruns, errors naming the op.
#include <doctest/doctest.h>

#include <cstring>

#include "core/autograd.h"
#include "core/ops.h"
#include "tests/gradcheck.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {
double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  REQUIRE(va.size() == vb.size());
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::fabs(va[i] - vb[i]));
  return m;
}
// y (n, out) = x (n, in) W^T (out, in) + b, the plain triple loop.
std::vector<double> naive_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t n = x.size(0), in = x.size(1), out = w.size(0);
  std::vector<double> y((size_t)(n * out));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = b.defined() ? b.data<double>()[o] : 0.0;
      for (int64_t k = 0; k < in; ++k) s += x.data<double>()[r * in + k] * w.data<double>()[o * in + k];
      y[(size_t)(r * out + o)] = s;
    }
  return y;
}
}  // namespace

TEST_CASE("matmul: (M, K) x (K, N) against the triple loop, gradients, errors") {
  Tensor a = Tensor::from_vector<double>({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = Tensor::from_vector<double>({3, 2}, {7, 8, 9, 10, 11, 12});
  CHECK(matmul(a, b).to_vector<double>() == std::vector<double>{58, 64, 139, 154});
  Tensor ar = rand_tensor({5, 7}, 1), br = rand_tensor({7, 3}, 2);
  Tensor y = matmul(ar, br);
  REQUIRE(y.shape() == Shape{5, 3});
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 3; ++j) {
      double s = 0;
      for (int64_t k = 0; k < 7; ++k) s += ar.data<double>()[i * 7 + k] * br.data<double>()[k * 3 + j];
      CHECK(y.data<double>()[i * 3 + j] == doctest::Approx(s).epsilon(1e-12));
    }
  CHECK(max_abs_diff(matmul(ar.to(DType::f32), br.to(DType::f32)), y) < 1e-5);
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); },
                            {rand_tensor({4, 3}, 3), rand_tensor({3, 5}, 4)}));
  // An empty inner dimension gives zeros, not uninitialised memory.
  CHECK(matmul(Tensor::zeros({2, 0}, DType::f64), Tensor::zeros({0, 3}, DType::f64)).to_vector<double>() ==
        std::vector<double>(6, 0.0));
  CHECK_THROWS_WITH_AS(matmul(ar, ar), doctest::Contains("matmul"), Error);
  CHECK_THROWS_WITH_AS(matmul(ar, ar), doctest::Contains("(5, 7)"), Error);
  CHECK_THROWS_WITH_AS(matmul(rand_tensor({2}, 1), br), doctest::Contains("matmul"), Error);
  CHECK_THROWS_WITH_AS(matmul(ar, br.to(DType::f32)), doctest::Contains("matmul: dtype mismatch"),
                       Error);
}

TEST_CASE("linear: x W^T + b with and without bias, gradients for x, W and b") {
  Tensor x = rand_tensor({6, 5}, 5), w = rand_tensor({4, 5}, 6), b = rand_tensor({4}, 7);
  Tensor y = linear(x, w, b);
  REQUIRE(y.shape() == Shape{6, 4});
  auto want = naive_linear(x, w, b);
  auto got = y.to_vector<double>();
  for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-12));
  auto want_nb = naive_linear(x, w, Tensor());
  auto got_nb = linear(x, w, Tensor()).to_vector<double>();
  for (size_t i = 0; i < want_nb.size(); ++i)
    CHECK(got_nb[i] == doctest::Approx(want_nb[i]).epsilon(1e-12));
  CHECK(max_abs_diff(linear(x.to(DType::f32), w.to(DType::f32), b.to(DType::f32)), y) < 1e-5);

  CHECK_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
      {rand_tensor({3, 4}, 8), rand_tensor({5, 4}, 9), rand_tensor({5}, 10)}));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return linear(in[0], in[1], Tensor()); },
                            {rand_tensor({3, 4}, 11), rand_tensor({2, 4}, 12)}));
  // The bias gradient is the column sum of the upstream gradient.
  Tensor bb = Tensor::zeros({2}, DType::f64).set_requires_grad(true);
  Tensor g = Tensor::from_vector<double>({3, 2}, {1, 2, 3, 4, 5, 6});
  backward(linear(rand_tensor({3, 4}, 13), rand_tensor({2, 4}, 14), bb), g);
  CHECK(bb.grad().to_vector<double>() == std::vector<double>{9, 12});

  CHECK_THROWS_WITH_AS(linear(x, rand_tensor({4, 3}, 1), b), doctest::Contains("linear"), Error);
  CHECK_THROWS_WITH_AS(linear(x, rand_tensor({4, 3}, 1), b), doctest::Contains("(4, 3)"), Error);
  CHECK_THROWS_WITH_AS(linear(x, w, rand_tensor({3}, 1)), doctest::Contains("linear: bias"), Error);
  CHECK_THROWS_WITH_AS(linear(x, w, b.to(DType::f32)), doctest::Contains("linear"), Error);
}

TEST_CASE("linear: float32 forward and backward are bit-identical on a rerun") {
  Tensor x = rand_tensor({64, 300}, 15, -1, 1, DType::f32);
  Tensor w = rand_tensor({200, 300}, 16, -1, 1, DType::f32);
  Tensor b = rand_tensor({200}, 17, -1, 1, DType::f32);
  auto run = [&](std::vector<float>& gw) {
    w.zero_grad();
    w.set_requires_grad(true);
    Tensor y = linear(x, w, b);
    backward(sum(square(y)));
    gw = w.grad().to_vector<float>();
    return y.to_vector<float>();
  };
  std::vector<float> g1, g2;
  auto y1 = run(g1), y2 = run(g2);
  CHECK(std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(float)) == 0);
}
