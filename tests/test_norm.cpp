// batch_norm2d: PyTorch golden values (tests/fixtures/make_golden_shapeops.py), batch statistics
// and running-stat update against the formula, gradients by finite differences in training (through
// the batch statistics) and eval mode, float32 against float64, determinism, errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

#include "core/autograd.h"
#include "core/cpu/lane_sums.h"
#include "core/cpu/norm_kernels.h"
#include "core/ops.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "tests/gradcheck.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {
// x[i] = ((i*a) % b) / c - 1, the same inputs as pattern() in make_golden_shapeops.py.
Tensor pattern(const Shape& s, int64_t a, int64_t b, double c) {
  Tensor t = Tensor::empty(s, DType::f64);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = (double)((i * a) % b) / c - 1.0;
  return t;
}
Tensor vec(const std::vector<double>& v) { return Tensor::from_vector<double>({(int64_t)v.size()}, v); }
void check_close(const Tensor& t, const std::vector<double>& want, double tol) {
  auto got = t.to_vector<double>();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK_MESSAGE(std::fabs(got[i] - want[i]) <= tol, "element ", i, ": ", got[i], " vs ", want[i]);
}
double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::fabs(va[i] - vb[i]));
  return m;
}
}  // namespace

TEST_CASE("batch_norm2d: training step matches PyTorch (output, gradients, running stats)") {
  // From tests/fixtures/make_golden_shapeops.py (torch 1.13, float64).
  const std::vector<double> kBnY = {-2.0379513778237985, 1.3827708266942791, 0.91265045927459953, -0.22759027556475978, 0.59590343451663952, -2.336144169355999, 1.6271081270169989, -0.57192757588747956, -0.30903604233899967, 0.42397585862915993, -2.0103611022590391, 2.5506018370983981};
  const std::vector<double> kBnDx = {-2.0776921403094022, -0.89133609363815769, 0.10588189800720231, 0.16451900816355047, 2.0337254263129543, -0.52760242106083388, -0.59280123823640318, 3.5618294721839625, -0.075629927148001611, -0.19477097902275103, -0.30635714551037746, -1.1997658597417431};
  const std::vector<double> kBnDw = {1.8528911941139585, -4.2046377097201377, 3.7566859924618177};
  const std::vector<double> kBnDb = {3.5, 4.75, 1.75};
  const std::vector<double> kBnRunMean = {0.47500000000000003, -0.8035714285714286, 0.00357142857142857};
  const std::vector<double> kBnRunVar = {1.9025510204081633, 0.55255102040816328, 1.0025510204081634};

  Tensor x = pattern({2, 3, 1, 2}, 37, 23, 7).set_requires_grad(true);
  Tensor w = vec({1.5, -0.5, 2.0}).set_requires_grad(true);
  Tensor b = vec({0.1, 0.2, -0.3}).set_requires_grad(true);
  Tensor rm = vec({0.5, -1.0, 0.0}), rv = vec({2.0, 0.5, 1.0});
  Tensor y = batch_norm2d(x, w, b, rm, rv, true, 0.1, 1e-5);
  backward(y, pattern({2, 3, 1, 2}, 7, 17, 4));
  check_close(y, kBnY, 1e-12);
  check_close(x.grad(), kBnDx, 1e-12);
  check_close(w.grad(), kBnDw, 1e-12);
  check_close(b.grad(), kBnDb, 1e-12);
  check_close(rm, kBnRunMean, 1e-15);
  check_close(rv, kBnRunVar, 1e-15);
}

TEST_CASE("batch_norm2d: batch statistics and the running-stat update follow the formula") {
  const int64_t n = 3, c = 4, hw = 6;
  Tensor x = rand_tensor({n, c, 2, 3}, 21, -2, 3);
  Tensor w = rand_tensor({c}, 22, 0.5, 2), b = rand_tensor({c}, 23);
  Tensor rm = rand_tensor({c}, 24), rv = rand_tensor({c}, 25, 0.5, 2);
  Tensor rm0 = rm.clone(), rv0 = rv.clone();
  const double mom = 0.25, eps = 1e-3;
  Tensor y = batch_norm2d(x, w, b, rm, rv, true, mom, eps);
  for (int64_t ch = 0; ch < c; ++ch) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < hw; ++j) s += x.data<double>()[(i * c + ch) * hw + j];
    const double mu = s / (n * hw);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < hw; ++j) ss += std::pow(x.data<double>()[(i * c + ch) * hw + j] - mu, 2);
    const double var = ss / (n * hw);  // biased: used to normalise
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < hw; ++j) {
        const int64_t k = (i * c + ch) * hw + j;
        const double want = (x.data<double>()[k] - mu) / std::sqrt(var + eps) * w.data<double>()[ch] +
                            b.data<double>()[ch];
        CHECK(y.data<double>()[k] == doctest::Approx(want).epsilon(1e-12));
      }
    // Running averages: the variance is the unbiased one, var * M / (M - 1).
    CHECK(rm.data<double>()[ch] ==
          doctest::Approx((1 - mom) * rm0.data<double>()[ch] + mom * mu).epsilon(1e-14));
    CHECK(rv.data<double>()[ch] ==
          doctest::Approx((1 - mom) * rv0.data<double>()[ch] + mom * ss / (n * hw - 1)).epsilon(1e-14));
  }
}

TEST_CASE("batch_norm2d: training gradients through the batch statistics") {
  using V = std::vector<Tensor>;
  // Running stats are left out here: each of gradcheck's evaluations would update them.
  CHECK_GRADCHECK(gradcheck(
      [](const V& in) { return batch_norm2d(in[0], in[1], in[2], Tensor(), Tensor(), true, 0.1, 1e-5); },
      {rand_tensor({3, 2, 2, 2}, 31, -1, 2), rand_tensor({2}, 32, 0.5, 1.5), rand_tensor({2}, 33)}));
  CHECK_GRADCHECK(gradcheck(
      [](const V& in) { return batch_norm2d(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5); },
      {rand_tensor({2, 3, 1, 3}, 34)}));
  // With running stats given, the gradient is the same (the update is not part of the graph).
  Tensor x = rand_tensor({3, 2, 2, 2}, 35).set_requires_grad(true);
  backward(sum(square(batch_norm2d(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5))));
  Tensor g1 = x.grad().clone();
  x.zero_grad();
  backward(sum(square(batch_norm2d(x, Tensor(), Tensor(), Tensor::zeros({2}, DType::f64),
                                   Tensor::ones({2}, DType::f64), true, 0.1, 1e-5))));
  CHECK(max_abs_diff(g1, x.grad()) == 0.0);
}

TEST_CASE("batch_norm2d: eval mode uses the running stats and leaves them alone") {
  using V = std::vector<Tensor>;
  Tensor rm = vec({0.3, -0.2}), rv = vec({0.8, 1.7});
  Tensor x = rand_tensor({2, 2, 2, 2}, 41);
  Tensor w = vec({1.25, -0.75}), b = vec({0.5, 0.0});
  Tensor y = batch_norm2d(x, w, b, rm, rv, false, 0.1, 1e-5);
  for (int64_t k = 0; k < 16; ++k) {
    const int64_t ch = (k / 4) % 2;
    const double want = (x.data<double>()[k] - rm.data<double>()[ch]) /
                            std::sqrt(rv.data<double>()[ch] + 1e-5) * w.data<double>()[ch] +
                        b.data<double>()[ch];
    CHECK(y.data<double>()[k] == doctest::Approx(want).epsilon(1e-12));
  }
  CHECK(rm.to_vector<double>() == std::vector<double>{0.3, -0.2});
  CHECK(rv.to_vector<double>() == std::vector<double>{0.8, 1.7});
  CHECK_GRADCHECK(gradcheck(
      [rm, rv](const V& in) { return batch_norm2d(in[0], in[1], in[2], rm, rv, false, 0.1, 1e-5); },
      {rand_tensor({2, 2, 2, 2}, 42), rand_tensor({2}, 43), rand_tensor({2}, 44)}));
  // dx = dy * gamma * invstd exactly: no batch-statistics terms.
  Tensor xe = rand_tensor({2, 2, 1, 1}, 45).set_requires_grad(true);
  backward(sum(batch_norm2d(xe, w, b, rm, rv, false, 0.1, 1e-5)));
  check_close(xe.grad(), {1.25 / std::sqrt(0.8 + 1e-5), -0.75 / std::sqrt(1.7 + 1e-5),
                          1.25 / std::sqrt(0.8 + 1e-5), -0.75 / std::sqrt(1.7 + 1e-5)}, 1e-14);
}

TEST_CASE("batch_norm2d: float32 agrees with float64 and reruns are bit-identical") {
  // Large enough (C * N * HW >= 32768) that the channel loop runs in parallel.
  Tensor x = rand_tensor({8, 16, 16, 16}, 51, -1, 3);
  Tensor w = rand_tensor({16}, 52, 0.5, 1.5), b = rand_tensor({16}, 53);
  Tensor g = rand_tensor({8, 16, 16, 16}, 54);
  auto run = [&](DType dt, std::vector<Tensor>& grads) {
    Tensor xs = x.to(dt).set_requires_grad(true), ws = w.to(dt).set_requires_grad(true),
           bs = b.to(dt).set_requires_grad(true);
    Tensor rm = Tensor::zeros({16}, dt), rv = Tensor::ones({16}, dt);
    Tensor y = batch_norm2d(xs, ws, bs, rm, rv, true, 0.1, 1e-5);
    backward(y, g.to(dt));
    grads = {xs.grad(), ws.grad(), bs.grad(), rm, rv};
    return y;
  };
  std::vector<Tensor> g64, g32a, g32b;
  Tensor y64 = run(DType::f64, g64), y32a = run(DType::f32, g32a), y32b = run(DType::f32, g32b);
  CHECK(max_abs_diff(y64, y32a) < 1e-5);
  CHECK(max_abs_diff(g64[0], g32a[0]) < 1e-5);
  // dweight/dbias sum 2048 terms of order 1: float32 rounding of the terms allows ~1e-4.
  CHECK(max_abs_diff(g64[1], g32a[1]) < 1e-4);
  CHECK(max_abs_diff(g64[2], g32a[2]) < 1e-4);
  CHECK(max_abs_diff(g64[3], g32a[3]) < 1e-6);
  CHECK(max_abs_diff(g64[4], g32a[4]) < 1e-6);
  CHECK(std::memcmp(y32a.raw(), y32b.raw(), y32a.nbytes()) == 0);
  for (size_t i = 0; i < 3; ++i) CHECK(std::memcmp(g32a[i].raw(), g32b[i].raw(), g32a[i].nbytes()) == 0);
  // One channel per work item: one thread gives the same bits as all of them.
  const int threads = num_threads();
  set_num_threads(1);
  std::vector<Tensor> g32c;
  Tensor y32c = run(DType::f32, g32c);
  set_num_threads(threads);
  CHECK(std::memcmp(y32a.raw(), y32c.raw(), y32a.nbytes()) == 0);
  for (size_t i = 0; i < 3; ++i) CHECK(std::memcmp(g32a[i].raw(), g32c[i].raw(), g32a[i].nbytes()) == 0);
}

TEST_CASE("batch_norm2d: a fused relu/relu6 gives relu(batch_norm2d)'s bits, values and gradients") {
  // Weights up to 4 and shifts up to 3 put many outputs above 6, so relu6's upper bound is tested.
  Tensor x = rand_tensor({4, 8, 9, 7}, 61, -1, 3);
  Tensor w = rand_tensor({8}, 62, -4, 4), b = rand_tensor({8}, 63, -3, 3);
  Tensor g = rand_tensor({4, 8, 9, 7}, 64);
  for (const FusedAct act : {FusedAct::relu, FusedAct::relu6})
    for (const DType dt : {DType::f32, DType::f64})
      for (const bool training : {true, false}) {
        CAPTURE(fused_act_name(act));
        CAPTURE(dtype_name(dt));
        CAPTURE(training);
        auto run = [&](bool fused, std::vector<Tensor>& out) {
          Tensor xs = x.to(dt).set_requires_grad(true), ws = w.to(dt).set_requires_grad(true),
                 bs = b.to(dt).set_requires_grad(true);
          Tensor rm = rand_tensor({8}, 65, -0.5, 0.5).to(dt), rv = rand_tensor({8}, 66, 0.5, 2).to(dt);
          Tensor y;
          if (fused) {
            y = batch_norm2d(xs, ws, bs, rm, rv, training, 0.1, 1e-5, act);
            CHECK(y.node()->kind == std::string("batch_norm2d+") + fused_act_name(act));
          } else {
            Tensor t = batch_norm2d(xs, ws, bs, rm, rv, training, 0.1, 1e-5);
            y = act == FusedAct::relu ? relu(t) : relu6(t);
          }
          backward(y, g.to(dt));
          out = {y, xs.grad(), ws.grad(), bs.grad(), rm, rv};
        };
        std::vector<Tensor> fused, composed;
        run(true, fused);
        run(false, composed);
        const char* what[] = {"y", "dx", "dweight", "dbias", "running_mean", "running_var"};
        for (size_t i = 0; i < fused.size(); ++i) {
          CAPTURE(what[i]);
          REQUIRE(fused[i].nbytes() == composed[i].nbytes());
          CHECK(std::memcmp(fused[i].raw(), composed[i].raw(), fused[i].nbytes()) == 0);
        }
        // The masks are not trivial: some outputs are clamped at 0 and, for relu6, at 6.
        auto yv = fused[0].to_vector<double>();
        CHECK(std::count(yv.begin(), yv.end(), 0.0) > 0);
        if (act == FusedAct::relu6) CHECK(std::count(yv.begin(), yv.end(), 6.0) > 0);
      }
}

TEST_CASE("batch_norm2d: a fused residual gives act(batch_norm2d + residual)'s bits, values and gradients") {
  Tensor x = rand_tensor({4, 8, 9, 7}, 81, -1, 3);
  Tensor w = rand_tensor({8}, 82, -4, 4), b = rand_tensor({8}, 83, -3, 3);
  Tensor r = rand_tensor({4, 8, 9, 7}, 84, -2, 2), g = rand_tensor({4, 8, 9, 7}, 85);
  for (const FusedAct act : {FusedAct::none, FusedAct::relu, FusedAct::relu6})
    for (const DType dt : {DType::f32, DType::f64})
      for (const bool training : {true, false})
        for (const bool x_grad : {true, false}) {  // without dx the masked dy still goes to dr
          CAPTURE(fused_act_name(act));
          CAPTURE(dtype_name(dt));
          CAPTURE(training);
          CAPTURE(x_grad);
          auto run = [&](bool fused, std::vector<Tensor>& out) {
            Tensor xs = x.to(dt).set_requires_grad(x_grad), ws = w.to(dt).set_requires_grad(true),
                   bs = b.to(dt).set_requires_grad(true), rs = r.to(dt).set_requires_grad(true);
            Tensor rm = rand_tensor({8}, 86, -0.5, 0.5).to(dt), rv = rand_tensor({8}, 87, 0.5, 2).to(dt);
            Tensor y;
            if (fused) {
              y = batch_norm2d(xs, ws, bs, rm, rv, training, 0.1, 1e-5, act, rs);
              const std::string a = act == FusedAct::none ? "" : std::string("+") + fused_act_name(act);
              CHECK(y.node()->kind == "batch_norm2d+add" + a);
            } else {
              Tensor t = batch_norm2d(xs, ws, bs, rm, rv, training, 0.1, 1e-5);
              y = act == FusedAct::relu    ? add_relu(t, rs)
                  : act == FusedAct::relu6 ? relu6(add(t, rs))
                                           : add(t, rs);
            }
            backward(y, g.to(dt));
            out = {y, ws.grad(), bs.grad(), rs.grad(), rm, rv};
            if (x_grad) out.push_back(xs.grad());
          };
          std::vector<Tensor> fused, composed;
          run(true, fused);
          run(false, composed);
          const char* what[] = {"y", "dweight", "dbias", "dresidual", "running_mean", "running_var", "dx"};
          REQUIRE(fused.size() == composed.size());
          for (size_t i = 0; i < fused.size(); ++i) {
            CAPTURE(what[i]);
            REQUIRE(fused[i].defined());
            REQUIRE(fused[i].nbytes() == composed[i].nbytes());
            CHECK(std::memcmp(fused[i].raw(), composed[i].raw(), fused[i].nbytes()) == 0);
          }
          // The residual matters and the masks are not trivial.
          auto yv = fused[0].to_vector<double>();
          if (act != FusedAct::none) CHECK(std::count(yv.begin(), yv.end(), 0.0) > 0);
          if (act == FusedAct::relu6) CHECK(std::count(yv.begin(), yv.end(), 6.0) > 0);
          Tensor plain = batch_norm2d(x.to(dt), w.to(dt), b.to(dt), rand_tensor({8}, 86, -0.5, 0.5).to(dt),
                                      rand_tensor({8}, 87, 0.5, 2).to(dt), training, 0.1, 1e-5, act);
          CHECK(max_abs_diff(plain, fused[0]) > 0.1);
        }
}

TEST_CASE("batch_norm2d: a fused residual's gradients match finite differences; bad residuals") {
  using V = std::vector<Tensor>;
  for (const FusedAct act : {FusedAct::none, FusedAct::relu, FusedAct::relu6}) {
    CAPTURE(fused_act_name(act));
    CHECK_GRADCHECK(gradcheck(
        [act](const V& in) {
          return batch_norm2d(in[0], in[1], in[2], Tensor(), Tensor(), true, 0.1, 1e-5, act, in[3]);
        },
        {rand_tensor({2, 3, 1, 3}, 71), rand_tensor({3}, 72, 3, 4), rand_tensor({3}, 73, 1, 2),
         rand_tensor({2, 3, 1, 3}, 74, -1, 1)}));
  }
  Tensor x = rand_tensor({2, 3, 2, 2}, 61);
  Tensor c3 = Tensor::ones({3}, DType::f64);
  CHECK_THROWS_WITH_AS(batch_norm2d(x, c3, c3, c3, c3, true, 0.1, 1e-5, FusedAct::relu,
                                    rand_tensor({2, 3, 2, 3}, 62)),
                       doctest::Contains("batch_norm2d: residual has shape (2, 3, 2, 3), expected x's shape (2, 3, 2, 2)"),
                       Error);
  CHECK_THROWS_WITH_AS(batch_norm2d(x, c3, c3, c3, c3, true, 0.1, 1e-5, FusedAct::relu,
                                    rand_tensor({2, 3, 2, 2}, 62, -1, 1, DType::f32)),
                       doctest::Contains("batch_norm2d: residual is float32, x is float64"), Error);
}

TEST_CASE("batch_norm2d: the fused relu's and relu6's gradients match finite differences") {
  using V = std::vector<Tensor>;
  // 18 outputs of a unit normal times up to 4 plus up to 2: some clamped at 0 and some at 6, none
  // within gradcheck's step of a kink (seeds checked).
  for (const FusedAct act : {FusedAct::relu, FusedAct::relu6}) {
    CAPTURE(fused_act_name(act));
    CHECK_GRADCHECK(gradcheck(
        [act](const V& in) {
          return batch_norm2d(in[0], in[1], in[2], Tensor(), Tensor(), true, 0.1, 1e-5, act);
        },
        {rand_tensor({2, 3, 1, 3}, 71), rand_tensor({3}, 72, 3, 4), rand_tensor({3}, 73, 1, 2)}));
  }
}

TEST_CASE("batch_norm2d: bad inputs name the op and the shapes") {
  Tensor x = rand_tensor({2, 3, 2, 2}, 61);
  Tensor c3 = Tensor::ones({3}, DType::f64);
  CHECK_THROWS_WITH_AS(batch_norm2d(rand_tensor({2, 3, 4}, 1), c3, c3, c3, c3, true, 0.1, 1e-5),
                       doctest::Contains("batch_norm2d"), Error);
  CHECK_THROWS_WITH_AS(batch_norm2d(x, Tensor::ones({4}, DType::f64), c3, c3, c3, true, 0.1, 1e-5),
                       doctest::Contains("batch_norm2d: weight has shape (4,)"), Error);
  CHECK_THROWS_WITH_AS(batch_norm2d(x, c3, c3, c3, Tensor::ones({2}, DType::f64), true, 0.1, 1e-5),
                       doctest::Contains("running_var"), Error);
  CHECK_THROWS_WITH_AS(batch_norm2d(x, c3, c3, Tensor(), Tensor(), false, 0.1, 1e-5),
                       doctest::Contains("batch_norm2d: eval mode"), Error);
  CHECK_THROWS_WITH_AS(batch_norm2d(rand_tensor({1, 3, 1, 1}, 1), c3, c3, c3, c3, true, 0.1, 1e-5),
                       doctest::Contains("more than 1 value per channel"), Error);
  CHECK_THROWS_WITH_AS(batch_norm2d(x, c3.to(DType::f32), c3, c3, c3, true, 0.1, 1e-5),
                       doctest::Contains("batch_norm2d"), Error);
  // A failed call leaves the running stats untouched.
  Tensor rm = Tensor::zeros({3}, DType::f64), rv = Tensor::ones({3}, DType::f64);
  CHECK_THROWS_AS(batch_norm2d(Tensor::zeros({2, 3, 1, 1}, DType::f64), c3, c3, rm, rv, true, 0.1, 0.0),
                  Error);
  CHECK(rm.to_vector<double>() == std::vector<double>{0, 0, 0});
}

TEST_CASE("batch norm kernels: the sums are each row's double lanes, bit for bit") {
  // The kernels sum several rows at once in vector registers (core/cpu/norm_kernels.cpp); each
  // row must still be its kLanes double lanes, added in lane order, then the rows of a channel
  // in batch order. 7 images x 3 channels (21 rows: groups of four and a remainder, whichever
  // way the threads split them), rows of 37 values (whole lane groups and a tail) and of 16 (no
  // tail: four rows' lane totals then come from one transpose, lanes_totals8).
  const int64_t n = 7, c = 3;
  for (int64_t hw : {37, 16}) {
  std::vector<float> x((size_t)(n * c * hw)), dy(x.size()), y(x.size()), dx(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = 2 * rng_uniform_f(91, 1, i) - 1 + 0.3f;
    dy[i] = 2 * rng_uniform_f(92, 1, i) - 1;
  }
  auto row_lanes = [&](int64_t r, auto term) {
    double a[kLanes] = {};
    for (int64_t j = 0; j < hw; ++j) a[j % kLanes] += term(r * hw + j);
    return lanes_total(a);
  };
  std::vector<double> mean((size_t)c), var((size_t)c), invstd((size_t)c), dg((size_t)c), db((size_t)c);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    batch_norm_stats_cpu(mean.data(), var.data(), x.data(), n, c, hw);
    batch_norm_invstd(invstd.data(), var.data(), c, 1e-5);
    std::vector<float> gamma = {1.f, 0.5f, 2.f}, beta = {0.f, 0.1f, -0.2f};
    batch_norm_forward_cpu(y.data(), x.data(), mean.data(), invstd.data(), gamma.data(),
                           beta.data(), n, c, hw, FusedAct::relu);
    batch_norm_backward_cpu(dx.data(), dg.data(), db.data(), dy.data(), x.data(), mean.data(),
                            invstd.data(), gamma.data(), true, n, c, hw, y.data(), FusedAct::relu);
    for (int64_t ch = 0; ch < c; ++ch) {
      double s = 0, ss = 0, sg = 0, sgx = 0;
      for (int64_t b = 0; b < n; ++b) {
        const int64_t r = b * c + ch;
        s += row_lanes(r, [&](int64_t i) { return (double)x[(size_t)i]; });
        ss += row_lanes(r, [&](int64_t i) { return (double)x[(size_t)i] * (double)x[(size_t)i]; });
        auto g = [&](int64_t i) { return y[(size_t)i] > 0 ? (double)dy[(size_t)i] : 0.0; };
        sg += row_lanes(r, g);
        sgx += row_lanes(r, [&](int64_t i) { return g(i) * ((double)x[(size_t)i] - mean[(size_t)ch]); });
      }
      const double mu = s / (double)(n * hw);
      INFO(threads, " thread(s), rows of ", hw, ", channel ", ch);
      CHECK(mean[(size_t)ch] == mu);
      CHECK(var[(size_t)ch] == std::max(0.0, ss / (double)(n * hw) - mu * mu));
      CHECK(db[(size_t)ch] == sg);
      CHECK(dg[(size_t)ch] == sgx * invstd[(size_t)ch]);
    }
  }
  }
  set_num_threads(0);
}
