// Pooling: max/avg pool against naive references over kernel, stride, padding, odd/even sizes
// (f64 and f32), finite-difference gradients (max pool on distinct values, away from ties),
// PyTorch's conventions (first maximum, -inf padding, count_include_pad, adaptive bins), errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/rng.h"
#include "tests/gradcheck.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {

// Distinct values 0.01 apart in a shuffled order: no ties, and a finite-difference step of 1e-6
// never changes which element is the maximum.
Tensor distinct_tensor(const Shape& shape, uint64_t seed, DType dt = DType::f64) {
  const int64_t n = shape_numel(shape);
  std::vector<int64_t> order((size_t)n);
  std::iota(order.begin(), order.end(), 0);
  std::vector<double> key((size_t)n);
  for (int64_t i = 0; i < n; ++i) key[i] = rng_uniform(seed, 5, (uint64_t)i);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key[a] < key[b]; });
  std::vector<double> v((size_t)n);
  for (int64_t i = 0; i < n; ++i) v[order[i]] = 0.01 * (double)(i - n / 2);
  Tensor t = Tensor::from_vector<double>(shape, v);
  return dt == DType::f64 ? t : t.to(dt);
}

// Naive pooling in double: max over in-image elements, or the mean with PyTorch's divisor.
std::vector<double> naive_pool(const Tensor& x, const Pool2dOptions& o, bool is_max, Shape& out) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = (H + 2 * o.padding[0] - o.kernel[0]) / o.stride[0] + 1;
  const int64_t OW = (W + 2 * o.padding[1] - o.kernel[1]) / o.stride[1] + 1;
  out = {N, C, OH, OW};
  auto xv = x.to_vector<double>();
  std::vector<double> y;
  for (int64_t p = 0; p < N * C; ++p)
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        double best = -std::numeric_limits<double>::infinity(), s = 0;
        int64_t cnt = 0, padded = 0;
        for (int64_t kh = 0; kh < o.kernel[0]; ++kh)
          for (int64_t kw = 0; kw < o.kernel[1]; ++kw) {
            const int64_t ih = i * o.stride[0] - o.padding[0] + kh;
            const int64_t iw = j * o.stride[1] - o.padding[1] + kw;
            if (ih < H + o.padding[0] && iw < W + o.padding[1]) ++padded;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            const double v = xv[(p * H + ih) * W + iw];
            best = std::max(best, v);
            s += v;
            ++cnt;
          }
        y.push_back(is_max ? best : s / (double)(o.count_include_pad ? padded : cnt));
      }
  return y;
}

double max_rel_diff(const Tensor& a, const std::vector<double>& r) {
  auto av = a.to_vector<double>();
  REQUIRE(av.size() == r.size());
  double m = 0;
  for (size_t i = 0; i < r.size(); ++i) m = std::max(m, std::fabs(av[i] - r[i]) / (1 + std::fabs(r[i])));
  return m;
}

// Every (kernel, stride, padding <= kernel/2, size parity, count_include_pad) combination.
template <class F>
void for_pool_combos(F f) {
  for (int64_t k : {2, 3})
    for (int64_t s : {1, 2})
      for (int64_t p = 0; p <= k / 2; ++p)
        for (bool odd : {true, false})
          for (bool inc : {true, false}) {
            Pool2dOptions o;
            o.kernel[0] = o.kernel[1] = k, o.stride[0] = o.stride[1] = s;
            o.padding[0] = o.padding[1] = p, o.count_include_pad = inc;
            const Shape shape = odd ? Shape{2, 3, 5, 7} : Shape{2, 3, 6, 4};
            INFO("kernel ", k, " stride ", s, " pad ", p, odd ? " odd" : " even",
                 inc ? " count_include_pad" : "");
            f(o, shape);
          }
}

}  // namespace

TEST_CASE("max_pool2d and avg_pool2d: forward matches the naive reference (f64 and f32)") {
  uint64_t seed = 1;
  for_pool_combos([&](const Pool2dOptions& o, const Shape& shape) {
    for (DType dt : {DType::f64, DType::f32}) {
      const double tol = dt == DType::f64 ? 1e-12 : 1e-6;
      Tensor x = rand_tensor(shape, seed++, -1, 1, dt);
      Shape sm, sa;
      auto rm = naive_pool(x, o, true, sm), ra = naive_pool(x, o, false, sa);
      Tensor ym = max_pool2d(x, o), ya = avg_pool2d(x, o);
      REQUIRE(ym.shape() == sm);
      REQUIRE(ya.shape() == sa);
      CHECK(max_rel_diff(ym, rm) < tol);
      CHECK(max_rel_diff(ya, ra) < tol);
    }
  });
}

TEST_CASE("max_pool2d and avg_pool2d: gradients by finite differences") {
  uint64_t seed = 50;
  for_pool_combos([&](const Pool2dOptions& o, const Shape& shape) {
    CHECK_GRADCHECK(gradcheck([o](const std::vector<Tensor>& in) { return max_pool2d(in[0], o); },
                              {distinct_tensor(shape, seed++)}));
    CHECK_GRADCHECK(gradcheck([o](const std::vector<Tensor>& in) { return avg_pool2d(in[0], o); },
                              {rand_tensor(shape, seed++)}));
  });
}

TEST_CASE("max_pool2d: ties go to the first maximum, padding is -inf, NaN propagates") {
  Pool2dOptions o;  // 2x2, stride 2
  Tensor x = Tensor::from_vector<double>({1, 1, 2, 4}, {3, 3, -5, -2, 3, 3, -7, -2});
  x.set_requires_grad(true);
  Tensor y = max_pool2d(x, o);
  CHECK(y.to_vector<double>() == std::vector<double>{3, -2});
  backward(y, Tensor::from_vector<double>({1, 1, 1, 2}, {10, 20}));
  // Window 1: the first 3 (row-major) takes it all; window 2: the first -2 (top row).
  CHECK(x.grad().to_vector<double>() == std::vector<double>{10, 0, 0, 20, 0, 0, 0, 0});

  Pool2dOptions p;  // 3x3, stride 1, padding 1 on all-negative values: never 0 from the padding
  p.kernel[0] = p.kernel[1] = 3, p.stride[0] = p.stride[1] = 1, p.padding[0] = p.padding[1] = 1;
  Tensor neg = Tensor::full({1, 1, 2, 2}, -4.0, DType::f64);
  for (double v : max_pool2d(neg, p).to_vector<double>()) CHECK(v == -4.0);

  Tensor nan = Tensor::from_vector<double>({1, 1, 2, 2}, {1, std::nan(""), 5, 2});
  CHECK(std::isnan(max_pool2d(nan, o).item<double>()));
}

TEST_CASE("avg_pool2d: count_include_pad decides the divisor at the border") {
  Pool2dOptions o;
  o.kernel[0] = o.kernel[1] = 3, o.stride[0] = o.stride[1] = 1, o.padding[0] = o.padding[1] = 1;
  Tensor x = Tensor::ones({1, 1, 3, 3}, DType::f64);
  auto inc = avg_pool2d(x, o).to_vector<double>();
  CHECK(inc[0] == doctest::Approx(4.0 / 9));  // corner: 4 image elements over 9
  CHECK(inc[1] == doctest::Approx(6.0 / 9));
  CHECK(inc[4] == doctest::Approx(1.0));
  o.count_include_pad = false;
  for (double v : avg_pool2d(x, o).to_vector<double>()) CHECK(v == doctest::Approx(1.0));
}

TEST_CASE("global_avg_pool2d and adaptive_avg_pool2d: values, PyTorch's bins, gradients") {
  Tensor x = rand_tensor({2, 3, 5, 7}, 3);
  Tensor g = global_avg_pool2d(x);
  CHECK(g.shape() == Shape{2, 3});
  auto xv = x.to_vector<double>();
  double s = 0;
  for (int i = 0; i < 35; ++i) s += xv[35 + i];  // (n=0, c=1)
  CHECK(g.to_vector<double>()[1] == doctest::Approx(s / 35).epsilon(1e-12));
  CHECK_GRADCHECK(gradcheck([](const std::vector<Tensor>& in) { return global_avg_pool2d(in[0]); }, {x}));

  // H = 5 into 3 bins: [0,2), [1,4), [3,5); W = 7 into 2 bins: [0,4), [3,7).
  Tensor r = Tensor::empty({1, 1, 5, 7}, DType::f64);
  for (int64_t i = 0; i < 35; ++i) r.data<double>()[i] = (double)i;
  auto a = adaptive_avg_pool2d(r, 3, 2).to_vector<double>();
  auto mean_of = [&](int h0, int h1, int w0, int w1) {
    double m = 0;
    for (int h = h0; h < h1; ++h)
      for (int w = w0; w < w1; ++w) m += h * 7 + w;
    return m / ((h1 - h0) * (w1 - w0));
  };
  CHECK(a[0] == doctest::Approx(mean_of(0, 2, 0, 4)));
  CHECK(a[3] == doctest::Approx(mean_of(1, 4, 3, 7)));
  CHECK(a[4] == doctest::Approx(mean_of(3, 5, 0, 4)));
  // Growing (3 -> 5) and equal (4 -> 4) sizes, in float32 too.
  Tensor small = rand_tensor({1, 2, 3, 4}, 4);
  auto same = adaptive_avg_pool2d(small, 3, 4).to_vector<double>();
  auto sv = small.to_vector<double>();
  for (size_t i = 0; i < sv.size(); ++i) CHECK(same[i] == doctest::Approx(sv[i]).epsilon(1e-12));
  CHECK(adaptive_avg_pool2d(small, 5, 2).shape() == Shape{1, 2, 5, 2});
  CHECK(adaptive_avg_pool2d(small.to(DType::f32), 2, 3).dtype() == DType::f32);
  for (auto hw : {std::pair<int64_t, int64_t>{3, 2}, {5, 4}, {1, 1}, {4, 7}})
    CHECK_GRADCHECK(gradcheck([hw](const std::vector<Tensor>& in) {
      return adaptive_avg_pool2d(in[0], hw.first, hw.second);
    }, {x}));
}

TEST_CASE("pooling: bad inputs are errors naming the op and the shape") {
  Tensor x = rand_tensor({2, 3, 5, 5}, 1);
  Pool2dOptions o;
  Tensor x3 = rand_tensor({3, 5, 5}, 1);
  CHECK_THROWS_WITH_AS(max_pool2d(x3, o), doctest::Contains("max_pool2d"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d(x3, o), doctest::Contains("(3, 5, 5)"), Error);
  CHECK_THROWS_WITH_AS(avg_pool2d(x3, o), doctest::Contains("avg_pool2d"), Error);
  CHECK_THROWS_WITH_AS(global_avg_pool2d(x3), doctest::Contains("global_avg_pool2d"), Error);
  CHECK_THROWS_WITH_AS(adaptive_avg_pool2d(x3, 2, 2), doctest::Contains("(3, 5, 5)"), Error);
  Pool2dOptions big;  // kernel 7 > 5
  big.kernel[0] = big.kernel[1] = 7;
  CHECK_THROWS_WITH_AS(max_pool2d(x, big), doctest::Contains("max_pool2d"), Error);
  CHECK_THROWS_WITH_AS(avg_pool2d(x, big), doctest::Contains("(2, 3, 5, 5)"), Error);
  Pool2dOptions pad;  // padding 2 > kernel 3 / 2
  pad.kernel[0] = pad.kernel[1] = 3, pad.padding[1] = 2;
  CHECK_THROWS_WITH_AS(max_pool2d(x, pad), doctest::Contains("at most half the kernel"), Error);
  CHECK_THROWS_WITH_AS(avg_pool2d(x, pad), doctest::Contains("avg_pool2d"), Error);
  Pool2dOptions s0;
  s0.stride[0] = 0;
  CHECK_THROWS_WITH_AS(max_pool2d(x, s0), doctest::Contains("stride"), Error);
  CHECK_THROWS_WITH_AS(adaptive_avg_pool2d(x, 0, 2), doctest::Contains("adaptive_avg_pool2d"), Error);
  Tensor xi = Tensor::zeros({1, 1, 4, 4}, DType::i64);
  CHECK_THROWS_WITH_AS(max_pool2d(xi, o), doctest::Contains("int64"), Error);
  CHECK_THROWS_WITH_AS(global_avg_pool2d(xi), doctest::Contains("global_avg_pool2d"), Error);
}
