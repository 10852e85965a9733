// Min-max fake quantization against METHODS.md: S and Z from ranges (widened to contain 0, Z
// clamped, symmetric), forward at levels, half-levels and beyond the range, the STE mask per
// element, per-channel ranges, the EMA update of activation ranges, bad input.
#include <doctest/doctest.h>

#include "quant/minmax.h"
#include "tests/test_quant_util.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {
MinMaxOptions mopts(int bits, bool sym = false, bool pc = false) {
  MinMaxOptions o;
  o.bits = bits;
  o.symmetric = sym;
  o.per_channel = pc;
  return o;
}
Tensor t1(double v) { return Tensor::from_vector<double>({1}, {v}); }
}  // namespace

TEST_CASE("minmax: scale and zero point from a range") {
  double S, Z;
  minmax_scale_zero(-1, 3, 8, false, &S, &Z);
  CHECK(S == doctest::Approx(4.0 / 255));
  CHECK(Z == 64);  // round(63.75)
  minmax_scale_zero(0.5, 2, 8, false, &S, &Z);  // widened to [0, 2]
  CHECK(S == doctest::Approx(2.0 / 255));
  CHECK(Z == 0);
  minmax_scale_zero(-3, -1, 8, false, &S, &Z);  // widened to [-3, 0]
  CHECK(S == doctest::Approx(3.0 / 255));
  CHECK(Z == 255);
  minmax_scale_zero(-1, 3, 8, true, &S, &Z);
  CHECK(S == doctest::Approx(3.0 / 127));
  CHECK(Z == 0);
  minmax_scale_zero(-1, 3, 2, true, &S, &Z);
  CHECK(S == doctest::Approx(3.0));
  minmax_scale_zero(0, 0, 4, false, &S, &Z);  // degenerate range
  CHECK(S == 1);
  CHECK(Z == 0);
  // Zero is exactly representable.
  for (int bits = 2; bits <= 8; ++bits)
    CHECK(minmax_quantize(Tensor::from_vector<double>({3}, {0, -0.37, 1.91}), t1(-0.37), t1(1.91), mopts(bits))
              .to_vector<double>()[0] == 0);
}

TEST_CASE("minmax: forward at levels, half-levels (ties to even) and beyond the range, bits 2..8") {
  for (DType dt : {DType::f64, DType::f32})
    for (int bits = 2; bits <= 8; ++bits)
      for (bool sym : {false, true}) {
        const double S = 0.25;  // chosen so that S and every level are exact
        const int64_t n = (1 << bits) - 1, qp = (1 << (bits - 1)) - 1;
        const int64_t Z = sym ? 0 : (1 << (bits - 1)), qmin = sym ? -qp : 0, qmax = sym ? qp : n;
        const double mn = sym ? -qp * S : -Z * S, mx = sym ? qp * S : (n - Z) * S;
        std::vector<double> x, want;
        for (int64_t q = qmin; q <= qmax; ++q) {
          const int64_t j = q - Z;  // the level j·S
          x.push_back(j * S), want.push_back(j * S);
          if (q < qmax) x.push_back((j + 0.5) * S), want.push_back((j % 2 == 0 ? j : j + 1) * S);
        }
        for (double v : {mx + 0.1, mx + 40}) x.push_back(v), want.push_back(mx);
        for (double v : {mn - 0.1, mn - 40}) x.push_back(v), want.push_back(mn);
        Tensor y = minmax_quantize(Tensor::from_vector<double>({(int64_t)x.size()}, x).to(dt), t1(mn).to(dt),
                                   t1(mx).to(dt), mopts(bits, sym));
        CHECK_MESSAGE(vals(y) == want, "bits ", bits, " symmetric ", sym);
      }
}

TEST_CASE("minmax: random forward and backward mask per element, per-tensor and per-channel") {
  for (int bits = 2; bits <= 8; ++bits)
    for (bool sym : {false, true})
      for (bool pc : {false, true}) {
        Tensor x = rand_tensor({3, 40}, 500 + bits, -5, 7), gy = rand_tensor({3, 40}, 501);
        // Ranges narrower than the data, so that some elements are clipped.
        std::vector<double> mnv = pc ? std::vector<double>{-1, -0.5, 0.3} : std::vector<double>{-1.2};
        std::vector<double> mxv = pc ? std::vector<double>{2, 1.5, 2.5} : std::vector<double>{2.2};
        const int64_t C = pc ? 3 : 1;
        Tensor mn = Tensor::from_vector<double>({C}, mnv), mx = Tensor::from_vector<double>({C}, mxv);
        MinMaxOptions o = mopts(bits, sym, pc);
        auto y = vals(minmax_quantize(x, mn, mx, o));
        auto gx = vals(grads_of([&](const std::vector<Tensor>& in) { return minmax_quantize(in[0], mn, mx, o); }, {x}, gy)[0]);
        auto xv = vals(x), gv = vals(gy);
        const double n = (1 << bits) - 1, qp = (1 << (bits - 1)) - 1;
        int clipped = 0;
        for (size_t i = 0; i < xv.size(); ++i) {
          const size_t c = pc ? i / 40 : 0;
          const double lo = std::min(mnv[c], 0.0), hi = std::max(mxv[c], 0.0);
          const double S = sym ? std::max(-lo, hi) / qp : (hi - lo) / n;
          const double Z = sym ? 0 : clampd(ref_round(-lo / S), 0, n);
          const double qmin = sym ? -qp : 0, qmax = sym ? qp : n;
          const double q0 = ref_round(xv[i] / S) + Z;
          CHECK(y[i] == doctest::Approx((clampd(q0, qmin, qmax) - Z) * S).epsilon(1e-12));
          const bool inside = q0 >= qmin && q0 <= qmax;
          clipped += !inside;
          CHECK(gx[i] == (inside ? gv[i] : 0.0));
        }
        CHECK(clipped > 0);
      }
  // Ranges from the tensor itself: min and max are reproduced (up to the grid).
  Tensor w = rand_tensor({4, 9}, 9, -1, 1);
  auto [mn, mx] = minmax_range(w, true);
  CHECK(mn.shape() == Shape{4});
  auto y = vals(minmax_quantize(w, mopts(8, true, true)));
  auto wv = vals(w);
  for (size_t i = 0; i < wv.size(); ++i) {
    const double m = std::max(-vals(mn)[i / 9], vals(mx)[i / 9]);  // max|w| of the channel
    CHECK(std::fabs(y[i] - wv[i]) <= 0.5 * m / 127 + 1e-12);
  }
  MinMaxOptions id = mopts(4);
  id.ste = Ste::identity;
  Tensor big = Tensor::from_vector<double>({2}, {-9, 9});
  CHECK(vals(grads_of([&](const std::vector<Tensor>& in) { return minmax_quantize(in[0], t1(-1), t1(1), id); }, {big},
                      Tensor::ones({2}, DType::f64))[0]) == std::vector<double>{1, 1});
  Tensor xr = rand_tensor({3}, 1).set_requires_grad(true);
  CHECK(minmax_quantize(xr, mopts(4)).node()->kind == "minmax");
  CHECK(minmax_quantize(xr, mopts(4)).node()->input_names == std::vector<std::string>{"x"});
}

TEST_CASE("minmax: EMA of activation ranges, decay 0.99") {
  Tensor rmin = Tensor::zeros({1}, DType::f64), rmax = Tensor::zeros({1}, DType::f64);
  bool init = false;
  minmax_ema_update(rmin, rmax, init, Tensor::from_vector<double>({3}, {-1, 0, 4}), false, 0.99);
  CHECK(init);
  CHECK(rmin.item<double>() == -1);
  CHECK(rmax.item<double>() == 4);
  minmax_ema_update(rmin, rmax, init, Tensor::from_vector<double>({2}, {-3, 2}), false, 0.99);
  CHECK(rmin.item<double>() == doctest::Approx(0.99 * -1 + 0.01 * -3));
  CHECK(rmax.item<double>() == doctest::Approx(0.99 * 4 + 0.01 * 2));
  Tensor cmin = Tensor::zeros({2}, DType::f64), cmax = Tensor::zeros({2}, DType::f64);
  bool cinit = false;
  minmax_ema_update(cmin, cmax, cinit, Tensor::from_vector<double>({2, 2}, {1, 2, -5, 3}), true, 0.9);
  minmax_ema_update(cmin, cmax, cinit, Tensor::from_vector<double>({2, 2}, {0, 0, 0, 0}), true, 0.9);
  CHECK(vals(cmin)[0] == doctest::Approx(0.9));
  CHECK(vals(cmin)[1] == doctest::Approx(-4.5));
  CHECK(vals(cmax)[1] == doctest::Approx(2.7));
  CHECK_THROWS_WITH_AS(minmax_ema_update(cmin, cmax, cinit, Tensor::ones({3, 2}, DType::f64), true, 0.9),
                       doctest::Contains("minmax_ema_update: running range must have shape (3,)"), Error);
}

TEST_CASE("minmax: bad input is an error naming the op") {
  Tensor x = rand_tensor({3, 4}, 1);
  CHECK_THROWS_WITH_AS(minmax_quantize(x, mopts(1)), doctest::Contains("minmax: bits must be in [2, 16], got 1"), Error);
  CHECK_THROWS_WITH_AS(minmax_quantize(x, mopts(17)), doctest::Contains("minmax: bits"), Error);
  CHECK_THROWS_WITH_AS(minmax_quantize(rand_tensor({5}, 1), mopts(8, false, true)),
                       doctest::Contains("minmax: per_channel needs"), Error);
  CHECK_THROWS_WITH_AS(minmax_quantize(x, t1(2), t1(1), mopts(8)), doctest::Contains("minmax: range must be finite with min <= max"), Error);
  CHECK_THROWS_WITH_AS(minmax_quantize(x, Tensor::zeros({4}, DType::f64), Tensor::ones({4}, DType::f64), mopts(8, false, true)),
                       doctest::Contains("minmax: per-channel 'range_min' must have shape (3,)"), Error);
  CHECK_THROWS_WITH_AS(minmax_quantize(x, t1(0).to(DType::f32), t1(1), mopts(8)), doctest::Contains("minmax: dtype mismatch"), Error);
}
