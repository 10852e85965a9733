// APoT and PoT against METHODS.md: the level sets exactly as listed (all 32 values for B = 5),
// projection with ties to the smaller level at levels, midpoints and beyond the clip, gradients of
// seed 004 eq. 2.14 element by element, ∂x̂/∂α by finite differences on the saturated branch.
#include <doctest/doctest.h>

#include "quant/apot.h"
#include "quant/apot_kernels.h"
#include "tests/test_quant_util.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {

ApotOptions aopts(int bits, Ste ste = Ste::method_default) {
  ApotOptions o;
  o.bits = bits;
  o.ste = ste;
  return o;
}

// Nearest level by a scan over the listed set, a tie to the smaller: the definition.
double nearest(double a, const std::vector<double>& L) {
  double best = L[0];
  for (double l : L)
    if (std::fabs(a - l) < std::fabs(a - best)) best = l;
  return best;
}

}  // namespace

TEST_CASE("apot: level sets exactly as METHODS.md lists them, B = 1..5") {
  CHECK(apot_levels(1) == std::vector<double>{0, 1});
  CHECK(apot_levels(2) == std::vector<double>{0, 0.25, 0.5, 1});
  CHECK(apot_levels(3) == std::vector<double>{0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1});
  CHECK(apot_levels(4) == std::vector<double>{0, 1.0 / 48, 1.0 / 24, 1.0 / 16, 1.0 / 12, 1.0 / 8, 1.0 / 6, 3.0 / 16,
                                              1.0 / 4, 1.0 / 3, 3.0 / 8, 1.0 / 2, 2.0 / 3, 11.0 / 16, 3.0 / 4, 1});
  const std::vector<double> b5{0,   .01, .02, .03, .04, .05, .06, .07, .08, .10, .12, .14, .16, .17, .20, .21,
                               .24, .28, .32, .34, .36, .38, .48, .52, .64, .65, .68, .69, .72, .76, .96, 1};
  auto l5 = apot_levels(5);
  REQUIRE(l5.size() == 32);
  for (size_t i = 0; i < 32; ++i) CHECK_MESSAGE(l5[i] == doctest::Approx(b5[i]).epsilon(1e-15), "level ", i);
  // Every B = 5 level is an exact multiple of 1/100.
  for (double v : l5) CHECK(std::fabs(v * 100 - std::round(v * 100)) < 1e-12);
  CHECK_THROWS_WITH_AS(apot_levels(6), doctest::Contains("apot_levels: B must be in [1, 5]"), Error);
}

TEST_CASE("pot: level sets {0, 2^-(2^B-2), ..., 1}") {
  CHECK(pot_levels(1) == std::vector<double>{0, 1});
  CHECK(pot_levels(2) == std::vector<double>{0, 0.25, 0.5, 1});
  CHECK(pot_levels(3) == std::vector<double>{0, 1.0 / 64, 1.0 / 32, 1.0 / 16, 1.0 / 8, 0.25, 0.5, 1});
  for (int B = 1; B <= 8; ++B) {
    auto l = pot_levels(B);
    CHECK(l.size() == (size_t)(1 << B));  // 2^B magnitudes: 2^b values for activations
    CHECK(l[1] == std::ldexp(1.0, -((1 << B) - 2)));
  }
}

TEST_CASE("apot_a / pot_a: forward at levels, midpoints (ties to the smaller), 0, α and beyond") {
  for (bool pot : {false, true})
    for (int bits = 2; bits <= (pot ? 8 : 5); ++bits)
      for (DType dt : {DType::f64, DType::f32}) {
        // The levels as the kernel holds them (rounded to the dtype); a midpoint of two of them
        // that the dtype represents is a true tie.
        std::vector<double> L = pot ? pot_levels(bits) : apot_levels(bits);
        if (dt == DType::f32)
          for (double& l : L) l = (double)(float)l;
        const double alpha = 2.0;  // a power of two: u = x/α and q·α are exact
        std::vector<double> x, want;
        int ties = 0;
        for (size_t i = 0; i < L.size(); ++i) {
          x.push_back(L[i] * alpha), want.push_back(L[i] * alpha);
          if (i + 1 < L.size()) {
            // A tie in the dtype's arithmetic: the two distances compare equal there (for the
            // non-dyadic levels of B = 3 and 5 only some midpoints are).
            const double m = 0.5 * (L[i] + L[i + 1]);
            const float lf = (float)L[i], hf = (float)L[i + 1], mf = (float)m;
            const bool tie = dt == DType::f64 ? (L[i + 1] - m == m - L[i])
                                              : ((double)mf == m && hf - mf == mf - lf);
            if (tie) {
              x.push_back(m * alpha), want.push_back(L[i] * alpha);
              ++ties;
            }
            const double near_hi = L[i] + 0.75 * (L[i + 1] - L[i]);
            x.push_back(near_hi * alpha), want.push_back(L[i + 1] * alpha);
          }
        }
        CHECK(ties > 0);
        for (double v : {-0.5, -7.0}) x.push_back(v), want.push_back(0);
        for (double v : {2.0, 2.5, 100.0}) x.push_back(v), want.push_back(alpha);
        Tensor xt = Tensor::from_vector<double>({(int64_t)x.size()}, x).to(dt);
        Tensor a = Tensor::scalar(alpha, dt);
        auto y = vals(pot ? pot_quantize_activation(xt, a, aopts(bits)) : apot_quantize_activation(xt, a, aopts(bits)));
        for (size_t i = 0; i < x.size(); ++i)
          CHECK_MESSAGE(y[i] == doctest::Approx(want[i]).epsilon(dt == DType::f64 ? 1e-15 : 1e-7),
                        std::string(pot ? "pot" : "apot"), " bits ", bits, " x ", x[i]);
      }
}

TEST_CASE("apot_w kernel: signed projection at levels, midpoints (ties to the smaller |level|), clip") {
  // The kernel with mean 0, std 1 and α = 1, so that u = w exactly.
  for (int B = 1; B <= 4; ++B) {
    const std::vector<double> L = apot_levels(B);
    std::vector<double> w, want;
    for (size_t i = 0; i < L.size(); ++i)
      for (double sg : {1.0, -1.0}) {
        w.push_back(sg * L[i]), want.push_back(sg * L[i]);
        if (i + 1 < L.size() && L[i + 1] - 0.5 * (L[i] + L[i + 1]) == 0.5 * (L[i] + L[i + 1]) - L[i])
          w.push_back(sg * 0.5 * (L[i] + L[i + 1])), want.push_back(sg * L[i]);
      }
    for (double v : {1.5, -1.5, 40.0}) w.push_back(v), want.push_back(v > 0 ? 1 : -1);
    std::vector<double> y(w.size());
    const double alpha = 1, stats[2] = {0, 1};
    apot_w_forward_cpu<double>(y.data(), w.data(), &alpha, stats, L.data(), (int64_t)L.size(), (int64_t)w.size());
    CHECK_MESSAGE(y == want, "B ", B);
  }
}

TEST_CASE("apot_w / pot_w: forward normalises with mean and unbiased std, then projects") {
  for (bool pot : {false, true})
    for (int bits = 2; bits <= (pot ? 8 : 5); ++bits) {
      Tensor w = rand_tensor({4, 30}, 200 + bits, -0.3, 0.5);
      const double alpha = 1.2;
      auto wv = vals(w);
      double mean = 0, ss = 0;
      for (double v : wv) mean += v;
      mean /= wv.size();
      for (double v : wv) ss += (v - mean) * (v - mean);
      const double sd = std::sqrt(ss / (wv.size() - 1));
      const std::vector<double> L = pot ? pot_levels(bits - 1) : apot_levels(bits - 1);
      auto y = vals(pot ? pot_quantize_weight(w, Tensor::scalar(alpha, DType::f64), aopts(bits))
                        : apot_quantize_weight(w, Tensor::scalar(alpha, DType::f64), aopts(bits)));
      int clipped = 0;
      for (size_t i = 0; i < wv.size(); ++i) {
        const double u = (wv[i] - mean) / sd / alpha;
        clipped += std::fabs(u) > 1;
        const double q = nearest(std::fabs(clampd(u, -1, 1)), L);
        CHECK(y[i] == doctest::Approx((u < 0 ? -q : q) * alpha).epsilon(1e-12));
      }
      CHECK(clipped > 0);
    }
}

TEST_CASE("apot / pot: backward element by element (eq. 2.14), both STE choices") {
  for (bool pot : {false, true})
    for (int bits = 2; bits <= (pot ? 8 : 5); ++bits)
      for (DType dt : {DType::f64, DType::f32}) {
        const double tol = dt == DType::f64 ? 1e-10 : 1e-5;
        // Weights.
        Tensor w = rand_tensor({50}, 300 + bits, -1, 1, dt), gy = rand_tensor({50}, 301, -1, 1, dt);
        Tensor a = Tensor::scalar(0.9, dt);
        const std::vector<double> Lw = pot ? pot_levels(bits - 1) : apot_levels(bits - 1);
        auto wop = [&](Ste ste) {
          return [=](const std::vector<Tensor>& in) {
            return pot ? pot_quantize_weight(in[0], in[1], aopts(bits, ste)) : apot_quantize_weight(in[0], in[1], aopts(bits, ste));
          };
        };
        auto g = grads_of(wop(Ste::method_default), {w, a}, gy);
        auto gc = grads_of(wop(Ste::clipped), {w, a}, gy);
        auto wv = vals(w), gv = vals(gy), gw = vals(g[0]), gwc = vals(gc[0]);
        double mean = 0, ss = 0;
        for (double v : wv) mean += v;
        mean /= wv.size();
        for (double v : wv) ss += (v - mean) * (v - mean);
        const double sd = std::sqrt(ss / (wv.size() - 1)), av = vals(a)[0];
        double want_a = 0;
        int out = 0;
        for (size_t i = 0; i < wv.size(); ++i) {
          const double u = (wv[i] - mean) / sd / av;
          CHECK(rel_close(gw[i], gv[i] / sd, tol));  // identity: not masked
          CHECK(rel_close(gwc[i], std::fabs(u) <= 1 ? gv[i] / sd : 0.0, tol));
          out += std::fabs(u) > 1;
          const double q = (u < 0 ? -1 : 1) * nearest(std::fabs(u), Lw);
          want_a += gv[i] * (std::fabs(u) > 1 ? (u > 0 ? 1 : -1) : q - u);
        }
        CHECK(out > 0);
        CHECK(rel_close(g[1].item<double>(), want_a, tol));
        // Activations (including negative inputs: the authors' 1[u > 1] + (q - u)·1[u <= 1]).
        Tensor x = rand_tensor({60}, 400 + bits, -0.5, 3, dt);
        Tensor al = Tensor::scalar(2.0, dt);
        const std::vector<double> La = pot ? pot_levels(bits) : apot_levels(bits);
        Tensor gyt = rand_tensor({60}, 5, -1, 1, dt);
        auto ga = grads_of([&](const std::vector<Tensor>& in) {
          return pot ? pot_quantize_activation(in[0], in[1], aopts(bits)) : apot_quantize_activation(in[0], in[1], aopts(bits));
        }, {x, al}, gyt);
        auto gy2 = vals(gyt);
        auto xv = vals(x), gx = vals(ga[0]);
        double want_al = 0;
        for (size_t i = 0; i < xv.size(); ++i) {
          const double u = xv[i] / 2.0;
          CHECK(gx[i] == (u <= 1 ? gy2[i] : 0.0));  // mask exact
          want_al += gy2[i] * (u > 1 ? 1 : nearest(u, La) - u);
        }
        CHECK(rel_close(ga[1].item<double>(), want_al, tol));
      }
}

TEST_CASE("apot: ∂x̂/∂α matches finite differences on the saturated branch") {
  // |u| > 1 everywhere: x̂ = sign(u)·α (weights) or α (activations), linear in α.
  Tensor w = Tensor::from_vector<double>({6}, {-5, -4, -3.5, 3.5, 4, 5});  // normalised |u| > 1 for α = 0.5
  Tensor x = Tensor::from_vector<double>({4}, {3, 4, 7, 9});
  for (int bits : {2, 3, 5}) {
    CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& in) { return apot_quantize_weight(w, in[0], aopts(bits)); },
                              {Tensor::scalar(0.5, DType::f64)}));
    CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& in) { return apot_quantize_activation(x, in[0], aopts(bits)); },
                              {Tensor::scalar(2.0, DType::f64)}));
    CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& in) { return pot_quantize_weight(w, in[0], aopts(bits)); },
                              {Tensor::scalar(0.5, DType::f64)}));
  }
}

TEST_CASE("apot / pot: init constants, recorded nodes, bad input") {
  CHECK(kApotAlphaInitWeight == 3.0);
  CHECK(kApotAlphaInitActivation == 8.0);
  Tensor w = rand_tensor({8}, 1).set_requires_grad(true), a = Tensor::scalar(3, DType::f64);
  CHECK(apot_quantize_weight(w, a, aopts(3)).node()->kind == "apot_w");
  CHECK(apot_quantize_weight(w, a, aopts(3)).node()->input_names == std::vector<std::string>{"w", "alpha"});
  CHECK(pot_quantize_weight(w, a, aopts(3)).node()->kind == "pot_w");
  CHECK(apot_quantize_activation(w, a, aopts(3)).node()->kind == "apot_a");
  CHECK(apot_quantize_activation(w, a, aopts(3)).node()->input_names == std::vector<std::string>{"x", "alpha"});
  CHECK(pot_quantize_activation(w, a, aopts(3)).node()->kind == "pot_a");
  // A constant weight tensor (std 0) is taken with std 1: no NaN.
  for (double v : vals(apot_quantize_weight(Tensor::full({4}, 0.7, DType::f64), a, aopts(3)))) CHECK(v == 0);
  CHECK_THROWS_WITH_AS(apot_quantize_weight(w, a, aopts(1)), doctest::Contains("apot_w: bits must be in [2, 5], got 1"), Error);
  CHECK_THROWS_WITH_AS(apot_quantize_weight(w, a, aopts(6)), doctest::Contains("apot_w: bits must be in [2, 5], got 6"), Error);
  CHECK_THROWS_WITH_AS(apot_quantize_activation(w, a, aopts(6)), doctest::Contains("apot_a: bits must be in [2, 5]"), Error);
  CHECK_THROWS_WITH_AS(pot_quantize_activation(w, a, aopts(9)), doctest::Contains("pot_a: bits must be in [2, 8]"), Error);
  CHECK_THROWS_WITH_AS(apot_quantize_weight(w, Tensor::scalar(-1, DType::f64), aopts(3)),
                       doctest::Contains("apot_w: 'alpha' must be > 0"), Error);
  CHECK_THROWS_WITH_AS(apot_quantize_weight(w, Tensor::ones({3}, DType::f64), aopts(3)),
                       doctest::Contains("apot_w: per-tensor 'alpha'"), Error);
  CHECK_THROWS_WITH_AS(pot_quantize_weight(w, Tensor::scalar(1, DType::f32), aopts(3)),
                       doctest::Contains("pot_w: dtype mismatch"), Error);
  CHECK_THROWS_WITH_AS(apot_quantize_weight(Tensor::ones({1}, DType::f64), a, aopts(3)),
                       doctest::Contains("apot_w: needs at least 2 weights"), Error);
}
