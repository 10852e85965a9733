// LSQ and LSQ+ against METHODS.md element by element: forward at levels, half-levels (ties to
// even) and beyond the clip; masks and ∂x̂/∂s, ∂x̂/∂β per element; gradient scale; init; errors.
#include <doctest/doctest.h>

#include <algorithm>

#include "quant/lsq.h"
#include "tests/test_quant_util.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {

// Expected LSQ(+) forward from METHODS.md, with the test's own rounding.
double lsq_ref(double x, double s, double beta, int64_t qn, int64_t qp) {
  return ref_round(clampd((x - beta) / s, -(double)qn, (double)qp)) * s + beta;
}

// ∂x̂/∂s of METHODS.md (before the gradient scale).
double lsq_ds_ref(double v, int64_t qn, int64_t qp) {
  if (v <= -(double)qn) return -(double)qn;
  if (v >= (double)qp) return (double)qp;
  return ref_round(v) - v;
}

LsqOptions opts(int bits, bool sgn, bool pc = false) {
  LsqOptions o;
  o.bits = bits;
  o.is_signed = sgn;
  o.per_channel = pc;
  return o;
}

}  // namespace

TEST_CASE("lsq: forward at levels, half-levels (ties to even) and beyond the clip, bits 2..8") {
  for (DType dt : {DType::f64, DType::f32})
    for (int bits = 2; bits <= 8; ++bits)
      for (bool sgn : {true, false}) {
        const int64_t qn = sgn ? (1 << (bits - 1)) : 0, qp = sgn ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
        const double s = 0.25;  // a power of two: k·s and (k+½)·s are exact in float32 too
        std::vector<double> x, want;
        for (int64_t k = -qn; k <= qp; ++k) {
          x.push_back(k * s), want.push_back(k * s);  // exactly at a level: unchanged
          if (k < qp) {
            x.push_back((k + 0.5) * s);  // half-level: the even neighbour
            want.push_back(((k % 2 == 0) ? k : k + 1) * s);
          }
        }
        x.push_back((qp + 0.5) * s), want.push_back(qp * s);  // clipped before rounding
        x.push_back((qp + 3) * s), want.push_back(qp * s);
        x.push_back((-qn - 0.5) * s), want.push_back(-qn * s);
        x.push_back((-qn - 7) * s), want.push_back(-qn * s);
        Tensor xt = Tensor::from_vector<double>({(int64_t)x.size()}, x).to(dt);
        Tensor y = lsq_quantize(xt, Tensor::scalar(s, dt), opts(bits, sgn));
        CHECK(y.dtype() == dt);
        CHECK_MESSAGE(vals(y) == want, "bits ", bits, " signed ", sgn);
      }
}

TEST_CASE("lsq: forward at random values matches the formula, per-tensor and per-channel") {
  for (int bits = 2; bits <= 8; ++bits) {
    LsqOptions o = opts(bits, true);
    const auto r = quant_range(bits, true);
    Tensor x = rand_tensor({200}, 10 + bits, -3, 3);
    const double s = 3.0 / (r.qp + 1.5);
    auto y = vals(lsq_quantize(x, Tensor::scalar(s, DType::f64), o));
    auto xv = vals(x);
    for (size_t i = 0; i < xv.size(); ++i) CHECK(y[i] == doctest::Approx(lsq_ref(xv[i], s, 0, r.qn, r.qp)).epsilon(1e-12));
    // Per-channel: channel c uses s[c].
    Tensor w = rand_tensor({3, 2, 5}, 20 + bits, -2, 2);
    Tensor sc = Tensor::from_vector<double>({3}, {0.1, 0.3, 0.7});
    auto yc = vals(lsq_quantize(w, sc, opts(bits, true, true)));
    auto wv = vals(w);
    for (size_t i = 0; i < wv.size(); ++i)
      CHECK(yc[i] == doctest::Approx(lsq_ref(wv[i], sc.to_vector<double>()[i / 10], 0, r.qn, r.qp)).epsilon(1e-12));
  }
}

TEST_CASE("lsq: backward element by element (masks exact, ∂x̂/∂s, gradient scale)") {
  for (DType dt : {DType::f64, DType::f32})
    for (int bits = 2; bits <= 8; ++bits)
      for (bool sgn : {true, false})
        for (bool pc : {false, true}) {
          const auto r = quant_range(bits, sgn);
          const int64_t C = pc ? 3 : 1;
          Tensor x = rand_tensor({3, 40}, 100 + bits, -(double)r.qn - 2, (double)r.qp + 2, dt);
          std::vector<double> sv = pc ? std::vector<double>{1.0, 0.5, 1.25} : std::vector<double>{0.75};
          Tensor s = Tensor::from_vector<double>({C}, sv).to(dt);
          Tensor gy = rand_tensor({3, 40}, 7, -1, 1, dt);
          LsqOptions o = opts(bits, sgn, pc);
          auto g = grads_of([&](const std::vector<Tensor>& in) { return lsq_quantize(in[0], in[1], o); },
                            {x, s}, gy);
          const double gscale = 1.0 / std::sqrt((pc ? 40.0 : 120.0) * r.qp);  // METHODS.md default N
          auto xv = vals(x), gv = vals(gy), gx = vals(g[0]), gs = vals(g[1]);
          std::vector<double> want_s(C, 0.0);
          for (size_t i = 0; i < xv.size(); ++i) {
            const int64_t c = pc ? i / 40 : 0;
            // v as the kernel computes it, in the tensor's dtype, so that masks compare exactly.
            const double v = dt == DType::f32 ? (double)((float)xv[i] / (float)sv[c]) : xv[i] / sv[c];
            const bool inside = -(double)r.qn < v && v < (double)r.qp;
            CHECK(gx[i] == (inside ? gv[i] : 0.0));
            want_s[c] += gv[i] * lsq_ds_ref(v, r.qn, r.qp);
          }
          for (int64_t c = 0; c < C; ++c)
            CHECK_MESSAGE(rel_close(gs[c], gscale * want_s[c], dt == DType::f64 ? 1e-10 : 1e-5),
                          "bits ", bits, " signed ", sgn, " per_channel ", pc, ": ", gs[c], " vs ",
                          gscale * want_s[c]);
        }
}

TEST_CASE("lsq: gradient scale, default and explicit") {
  Tensor x = rand_tensor({4, 15}, 3, -2, 2);
  LsqOptions o = opts(4, true);  // Q_P = 7
  CHECK(lsq_grad_scale(x, o) == doctest::Approx(1 / std::sqrt(60.0 * 7)));
  o.per_channel = true;
  CHECK(lsq_grad_scale(x, o) == doctest::Approx(1 / std::sqrt(15.0 * 7)));
  o.grad_scale_n = 10;
  CHECK(lsq_grad_scale(x, o) == doctest::Approx(1 / std::sqrt(10.0 * 7)));
  o.grad_scale = 0.5;
  CHECK(lsq_grad_scale(x, o) == 0.5);
  // The explicit scale reaches the gradient: g(scale 0.5) = 0.5 · g(scale 1).
  Tensor s = Tensor::scalar(0.3, DType::f64), gy = rand_tensor({4, 15}, 9);
  auto run = [&](double gs_) {
    LsqOptions p = opts(4, true);
    p.grad_scale = gs_;
    return grads_of([&](const std::vector<Tensor>& in) { return lsq_quantize(in[0], in[1], p); }, {x, s}, gy)[1].item<double>();
  };
  const double g1 = run(1.0);
  CHECK(g1 != 0);
  CHECK(run(0.5) == doctest::Approx(0.5 * g1).epsilon(1e-12));
  CHECK(run(-1) == doctest::Approx(g1 / std::sqrt(60.0 * 7)).epsilon(1e-12));
}

TEST_CASE("lsq: straight-through choice and the recorded node") {
  Tensor x = Tensor::from_vector<double>({4}, {-9, -0.3, 0.4, 9});
  Tensor s = Tensor::scalar(0.5, DType::f64), gy = Tensor::from_vector<double>({4}, {1, 2, 3, 4});
  LsqOptions o = opts(3, true);
  auto g = grads_of([&](const std::vector<Tensor>& in) { return lsq_quantize(in[0], in[1], o); }, {x, s}, gy);
  CHECK(vals(g[0]) == std::vector<double>{0, 2, 3, 0});
  o.ste = Ste::identity;
  g = grads_of([&](const std::vector<Tensor>& in) { return lsq_quantize(in[0], in[1], o); }, {x, s}, gy);
  CHECK(vals(g[0]) == std::vector<double>{1, 2, 3, 4});
  x.set_requires_grad(true);
  Tensor y = lsq_quantize(x, s, o);
  REQUIRE(y.node());
  CHECK(y.node()->kind == "lsq");
  CHECK(y.node()->input_names == std::vector<std::string>{"x", "s"});
}

TEST_CASE("lsq: saturated ∂x̂/∂s and LSQ+ ∂x̂/∂β agree with finite differences") {
  // Every element clipped (|x/s| well past the ends): x̂ = ±Q·s + β is linear in s and β there.
  Tensor x = Tensor::from_vector<double>({6}, {-50, -31, -20, 20, 33, 47});
  for (int bits : {2, 4, 8}) {
    const auto r = quant_range(bits, true);
    LsqOptions o = opts(bits, true);
    o.grad_scale = 1;  // the raw derivative
    const double s0 = 15.0 / (r.qn + 0.5);
    CHECK_GRADCHECK(gradcheck([&](const std::vector<Tensor>& in) { return lsq_quantize(x, in[0], o); },
                              {Tensor::scalar(s0, DType::f64)}));
    CHECK_GRADCHECK(gradcheck(
        [&](const std::vector<Tensor>& in) { return lsqplus_quantize(x, in[0], in[1], o); },
        {Tensor::scalar(s0, DType::f64), Tensor::scalar(0.3, DType::f64)}));
  }
}

TEST_CASE("lsqplus: forward and backward element by element, per-tensor and per-channel") {
  for (int bits = 2; bits <= 8; ++bits)
    for (bool pc : {false, true}) {
      const auto r = quant_range(bits, false);
      const int64_t C = pc ? 2 : 1;
      Tensor x = rand_tensor({2, 50}, 300 + bits, -1.5, (double)r.qp * 0.1 + 1);
      std::vector<double> sv = pc ? std::vector<double>{0.1, 0.13} : std::vector<double>{0.1};
      std::vector<double> bv = pc ? std::vector<double>{-0.6, -0.2} : std::vector<double>{-0.4};
      Tensor s = Tensor::from_vector<double>({C}, sv), b = Tensor::from_vector<double>({C}, bv);
      Tensor gy = rand_tensor({2, 50}, 8);
      LsqOptions o = opts(bits, false, pc);
      o.grad_scale = 0.25;
      Tensor y = lsqplus_quantize(x, s, b, o);
      auto g = grads_of([&](const std::vector<Tensor>& in) { return lsqplus_quantize(in[0], in[1], in[2], o); },
                        {x, s, b}, gy);
      auto xv = vals(x), yv = vals(y), gv = vals(gy), gx = vals(g[0]);
      std::vector<double> ws(C, 0.0), wb(C, 0.0);
      int clipped = 0;
      for (size_t i = 0; i < xv.size(); ++i) {
        const int64_t c = pc ? i / 50 : 0;
        const double v = (xv[i] - bv[c]) / sv[c];
        CHECK(yv[i] == doctest::Approx(lsq_ref(xv[i], sv[c], bv[c], r.qn, r.qp)).epsilon(1e-12));
        const bool inside = -(double)r.qn < v && v < (double)r.qp;
        clipped += !inside;
        CHECK(gx[i] == (inside ? gv[i] : 0.0));
        ws[c] += gv[i] * lsq_ds_ref(v, r.qn, r.qp);
        wb[c] += inside ? 0.0 : gv[i];
      }
      CHECK(clipped > 0);
      for (int64_t c = 0; c < C; ++c) {
        CHECK(rel_close(vals(g[1])[c], 0.25 * ws[c], 1e-10));
        CHECK(rel_close(vals(g[2])[c], 0.25 * wb[c], 1e-10));
      }
    }
  // β's gradient unscaled on request; s's keeps its scale.
  {
    Tensor x = Tensor::from_vector<double>({3}, {-5, 0.12, 5}), gy = Tensor::from_vector<double>({3}, {1, 2, 4});
    LsqOptions o = opts(2, false);  // grid [0, 3]·0.1 - 0
    o.grad_scale = 0.5;
    auto run = [&](bool scaled) {
      o.scale_offset_grad = scaled;
      return grads_of([&](const std::vector<Tensor>& in) { return lsqplus_quantize(in[0], in[1], in[2], o); },
                      {x, Tensor::scalar(0.1, DType::f64), Tensor::scalar(0, DType::f64)}, gy);
    };
    // Clipped: -5 (below) and 5 (above) → ∂β = 1 + 4 = 5; ∂s = 0·1 + (1 - 1.2)·2 + 3·4 = 11.6.
    CHECK(run(true)[2].item<double>() == doctest::Approx(2.5));
    CHECK(run(false)[2].item<double>() == doctest::Approx(5));
    CHECK(run(false)[1].item<double>() == doctest::Approx(0.5 * 11.6));
  }
  Tensor x = rand_tensor({5}, 1);
  x.set_requires_grad(true);
  Tensor y = lsqplus_quantize(x, Tensor::scalar(0.1, DType::f64), Tensor::scalar(0, DType::f64), opts(4, false));
  CHECK(y.node()->kind == "lsqplus");
  CHECK(y.node()->input_names == std::vector<std::string>{"x", "s", "beta"});
}

TEST_CASE("lsq: init step and LSQ+ min/max and MSE init") {
  Tensor x = Tensor::from_vector<double>({2, 2}, {1, -2, 3, -4});
  CHECK(lsq_init_step(x, 3, true).item<double>() == doctest::Approx(2 * 2.5 / std::sqrt(3.0)));
  auto pc = vals(lsq_init_step(x, 3, true, true));
  REQUIRE(pc.size() == 2);
  CHECK(pc[0] == doctest::Approx(3 / std::sqrt(3.0)));
  CHECK(pc[1] == doctest::Approx(7 / std::sqrt(3.0)));
  CHECK(lsq_init_step(x, 4, false).item<double>() == doctest::Approx(5 / std::sqrt(15.0)));
  CHECK(lsq_init_step(x.to(DType::f32), 3, true).dtype() == DType::f32);
  Tensor a = Tensor::from_vector<double>({4}, {-1, 0.5, 2, 3});
  auto [s, b] = lsqplus_init_minmax(a, 2, false);  // Q_N 0, Q_P 3
  CHECK(s.item<double>() == doctest::Approx(4.0 / 3));
  CHECK(b.item<double>() == doctest::Approx(-1));
  auto [s2, b2] = lsqplus_init_minmax(a, 2, true);  // Q_N 2, Q_P 1
  CHECK(s2.item<double>() == doctest::Approx(4.0 / 3));
  CHECK(b2.item<double>() == doctest::Approx(-1 + 8.0 / 3));
  auto y = vals(lsqplus_quantize(a, s2, b2, opts(2, true)));  // min and max are on the grid
  CHECK(y[0] == doctest::Approx(-1));
  CHECK(y[3] == doctest::Approx(3));
  // MSE init: never worse than min/max (which is one of its candidates).
  Tensor z = rand_tensor({500}, 5, -1, 1);
  z.data<double>()[0] = 6;  // an outlier that min/max spends levels on
  auto err = [&](const std::pair<Tensor, Tensor>& p) {
    auto q = vals(lsqplus_quantize(z, p.first, p.second, opts(3, false)));
    auto zv = vals(z);
    double e = 0;
    for (size_t i = 0; i < zv.size(); ++i) e += (zv[i] - q[i]) * (zv[i] - q[i]);
    return e;
  };
  const double e_mse = err(lsqplus_init_mse(z, 3, false)), e_mm = err(lsqplus_init_minmax(z, 3, false));
  CHECK(e_mse < 0.5 * e_mm);
}

TEST_CASE("lsq: bad input is an error naming the op") {
  Tensor x = rand_tensor({3, 4}, 1), s = Tensor::scalar(0.1, DType::f64);
  CHECK_THROWS_WITH_AS(lsq_quantize(x, s, opts(1, true)), doctest::Contains("lsq: bits must be in [2, 16], got 1"), Error);
  CHECK_THROWS_WITH_AS(lsq_quantize(x, s, opts(17, true)), doctest::Contains("lsq: bits"), Error);
  CHECK_THROWS_WITH_AS(lsq_quantize(x, Tensor::scalar(0, DType::f64), opts(4, true)),
                       doctest::Contains("lsq: 's' must be > 0"), Error);
  CHECK_THROWS_WITH_AS(lsq_quantize(x, Tensor::scalar(-1, DType::f64), opts(4, true)),
                       doctest::Contains("lsq: 's' must be > 0"), Error);
  CHECK_THROWS_WITH_AS(lsq_quantize(x, Tensor::ones({2}, DType::f64), opts(4, true)),
                       doctest::Contains("lsq: per-tensor 's' must have shape"), Error);
  CHECK_THROWS_WITH_AS(lsq_quantize(x, Tensor::ones({4}, DType::f64), opts(4, true, true)),
                       doctest::Contains("lsq: per-channel 's' must have shape (3,)"), Error);
  CHECK_THROWS_WITH_AS(lsq_quantize(rand_tensor({6}, 1), Tensor::ones({6}, DType::f64), opts(4, true, true)),
                       doctest::Contains("lsq: per_channel needs"), Error);
  CHECK_THROWS_WITH_AS(lsq_quantize(x, Tensor::scalar(0.1, DType::f32), opts(4, true)),
                       doctest::Contains("lsq: dtype mismatch"), Error);
  CHECK_THROWS_WITH_AS(lsq_quantize(Tensor::ones({2}, DType::i64), s, opts(4, true)),
                       doctest::Contains("lsq: input 'x' must be float32 or float64"), Error);
  CHECK_THROWS_WITH_AS(lsqplus_quantize(x, s, Tensor::zeros({1, 1}, DType::f64), opts(4, true)),
                       doctest::Contains("lsqplus: 'beta' must have the shape"), Error);
  CHECK_THROWS_WITH_AS(lsqplus_quantize(x, s, Tensor(), opts(4, true)),
                       doctest::Contains("lsqplus: input 'beta' is missing"), Error);
  CHECK_THROWS_WITH_AS(lsq_init_step(Tensor::zeros({3}, DType::f64), 4, true),
                       doctest::Contains("lsq_init_step"), Error);
}

TEST_CASE("lsq: parameter gradient is the same for any thread count") {
  Tensor x = rand_tensor({4, 30000}, 11, -3, 3), gy = rand_tensor({4, 30000}, 12);
  Tensor s = Tensor::scalar(0.37, DType::f64);
  std::vector<double> one, many;
  auto run = [&] {
    return vals(grads_of([&](const std::vector<Tensor>& in) { return lsq_quantize(in[0], in[1], opts(4, true)); },
                         {x, s}, gy)[1]);
  };
  with_threads(1, [&] { one = run(); });
  with_threads(2, [&] { many = run(); });
  CHECK(one == many);  // bitwise: fixed-size blocks summed in order
}

TEST_CASE("lsq: a backward that writes x's gradient over its output gradient gives the same bits") {
  // loss = sum(lsq(x, s) * c): mul's backward hands lsq a fresh gradient that nothing else reads,
  // so lsq's backward writes x's gradient over it (grad_reusable); a hook on the lsq node keeps
  // the gradient alive and makes it allocate instead. 111 elements: vector groups and a scalar
  // tail, many of them clipped (their gradient is zeroed in place after it was read for ∂/∂s).
  for (DType dt : {DType::f32, DType::f64}) {
    std::vector<double> gx[2], gs[2];
    for (int hooked = 0; hooked < 2; ++hooked) {
      Tensor x = rand_tensor({3, 37}, 21, -12, 12, dt).set_requires_grad(true);
      Tensor s = Tensor::scalar(0.5, dt).set_requires_grad(true);
      const Tensor c = rand_tensor({3, 37}, 22, -1, 1, dt);
      Tensor q = lsq_quantize(x, s, opts(4, true));
      if (hooked) q.node()->grad_hooks.push_back([](const Node&, const Tensor&, const std::vector<Tensor>&) {});
      backward(sum(mul(q, c)));
      gx[hooked] = vals(x.grad()), gs[hooked] = vals(s.grad());
    }
    CHECK(gx[0] == gx[1]);
    CHECK(gs[0] == gs[1]);
    CHECK(std::count(gx[0].begin(), gx[0].end(), 0.0) > 30);  // the clipped ones
  }
}
