// Optimizers against closed-form steps worked out by hand from torch.optim's update rules, in
// float64 (to 1e-12) and float32; parameter groups; state_dict round trips; LR schedules against
// their closed forms.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/optim.h"
#include "layers/schedule.h"

using namespace lowbit;

namespace {

// One scalar parameter p (float64), gradient set by `grad_of(p)` before each step.
std::vector<double> run_steps(Optimizer& opt, Tensor& p, int steps,
                              const std::function<double(double)>& grad_of) {
  std::vector<double> out;
  for (int i = 0; i < steps; ++i) {
    p.set_grad(Tensor::full(p.shape(), grad_of(p.to_vector<double>()[0]), p.dtype()));
    opt.step();
    out.push_back(p.to_vector<double>()[0]);
  }
  return out;
}

ParamGroup group_of(const std::string& name, Tensor p, double wd = 0, double lr_factor = 1) {
  ParamGroup g;
  g.name = name;
  g.params = {{name, p}};
  g.weight_decay = wd;
  g.lr_factor = lr_factor;
  return g;
}

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i)
    CHECK_MESSAGE(std::fabs(got[i] - want[i]) <= tol, "step ", i + 1, ": got ", got[i],
                  ", expected ", want[i]);
}

// Loss p^2: gradient 2p (SGD cases); (p - 0.3)^2: gradient 2(p - 0.3) (Adam cases, where a
// gradient proportional to p would hide the weight decay behind Adam's normalisation).
double g_sq(double p) { return 2 * p; }
double g_shift(double p) { return 2 * (p - 0.3); }

struct SgdCase {
  const char* name;
  double momentum, dampening, wd;
  bool nesterov;
  std::vector<double> want;  // p after steps 1..3, from p0 = 1, lr 0.1
};

}  // namespace

TEST_CASE("SGD: plain, weight decay, momentum, dampening, Nesterov against hand-computed steps") {
  // Worked by hand: e.g. momentum 0.9: d=2, buf=2, p=0.8; d=1.6, buf=3.4, p=0.46; d=0.92,
  // buf=3.98, p=0.062.
  const std::vector<SgdCase> cases = {
      {"plain", 0, 0, 0, false, {0.8, 0.64, 0.512}},
      {"weight decay", 0, 0, 0.1, false, {0.79, 0.6241, 0.493039}},
      {"momentum", 0.9, 0, 0, false, {0.8, 0.46, 0.062}},
      {"dampening", 0.9, 0.5, 0, false, {0.8, 0.54, 0.252}},
      {"nesterov", 0.9, 0, 0, true, {0.62, 0.2224, -0.108352}},
      {"nesterov + wd", 0.9, 0, 0.1, true, {0.601, 0.191101, -0.140468399}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    for (DType dt : {DType::f64, DType::f32}) {
      Tensor p = Tensor::full({3}, 1.0, dt);
      SGD opt({group_of("w", p, c.wd)}, c.momentum, c.dampening, c.nesterov);
      opt.set_lr(0.1);
      check_close(run_steps(opt, p, 3, g_sq), c.want, dt == DType::f64 ? 1e-12 : 1e-6);
      CHECK(opt.steps() == 3);
    }
  }
  Tensor p = Tensor::ones({1});
  CHECK_THROWS_WITH_AS(SGD({group_of("w", p)}, 0.9, 0.1, true), doctest::Contains("Nesterov"),
                       Error);
}

TEST_CASE("Adam and AdamW against hand-computed steps") {
  // p0 = 1, lr 0.1, betas (0.9, 0.999), eps 1e-8. Step 1 moves by lr * g/(|g| + eps) whatever
  // the gradient; step 2 from m = 0.09 g1 + 0.1 g2, v = 0.000999 g1^2 + 0.001 g2^2, bias
  // corrections 0.19 and 0.001999 (values from the formulas evaluated in double).
  struct Case {
    const char* name;
    bool decoupled;
    double wd, lr, beta1;
    std::vector<double> want;
  };
  const std::vector<Case> cases = {
      {"adam", false, 0, 0.1, 0.9, {0.9000000007142857, 0.8006944197516025}},
      {"adam L2", false, 0.5, 0.1, 0.9, {0.9000000005263158, 0.8006132944219304}},
      {"adamw", true, 0.5, 0.1, 0.9, {0.8500000007142856, 0.7088335586702559}},
      // beta1 0.3: torch's lerp takes its other form (weight >= 0.5).
      {"adam b1=0.3", false, 0, 0.05, 0.3, {0.9500000003571428, 0.9010298207320591}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    for (DType dt : {DType::f64, DType::f32}) {
      Tensor p = Tensor::full({2, 2}, 1.0, dt);
      std::unique_ptr<Adam> opt;
      if (c.decoupled)
        opt = std::make_unique<AdamW>(std::vector<ParamGroup>{group_of("w", p, c.wd)});
      else
        opt = std::make_unique<Adam>(std::vector<ParamGroup>{group_of("w", p, c.wd)}, c.beta1);
      opt->set_lr(c.lr);
      check_close(run_steps(*opt, p, 2, g_shift), c.want, dt == DType::f64 ? 1e-12 : 1e-6);
      CHECK(opt->kind() == (c.decoupled ? "AdamW" : "Adam"));
    }
  }
}

TEST_CASE("optimizer: groups get their own lr and weight decay; missing gradients are skipped") {
  Tensor a = Tensor::ones({2}, DType::f64), b = Tensor::ones({2}, DType::f64);
  Tensor c = Tensor::ones({2}, DType::f64);
  ParamGroup g1 = group_of("a", a, 0.0, 1.0);
  ParamGroup g2 = group_of("b", b, 0.5, 0.1);
  g2.params.push_back({"c", c});
  SGD opt({g1, g2});
  opt.set_lr(0.2);
  CHECK(opt.group_lr(0) == doctest::Approx(0.2));
  CHECK(opt.group_lr(1) == doctest::Approx(0.02));
  a.set_grad(Tensor::full({2}, 1.0, DType::f64));
  b.set_grad(Tensor::full({2}, 1.0, DType::f64));
  opt.step();  // c has no gradient: untouched
  CHECK(a.to_vector<double>()[0] == doctest::Approx(1 - 0.2 * 1));
  CHECK(b.to_vector<double>()[0] == doctest::Approx(1 - 0.02 * (1 + 0.5)));
  CHECK(c.to_vector<double>() == std::vector<double>{1, 1});
  opt.zero_grad();
  CHECK_FALSE(a.grad().defined());

  // The update is not recorded: the parameter stays a leaf.
  CHECK(a.node() == nullptr);
  CHECK_THROWS_WITH_AS(SGD({group_of("a", a), group_of("a", b)}), doctest::Contains("'a' appears twice"),
                       Error);
  CHECK_THROWS_WITH_AS(SGD({group_of("a", a), group_of("b", a)}),
                       doctest::Contains("same tensor"), Error);
  a.set_grad(Tensor::ones({3}, DType::f64));
  CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("gradient of 'a'"), Error);
}

TEST_CASE("optimizer: update mask keeps pruned weights at zero") {
  Tensor w = Tensor::from_vector<double>({3}, {1, 0, 2});
  SGD opt({group_of("w", w)}, 0.9);
  opt.set_lr(0.1);
  opt.set_update_mask(w, Tensor::from_vector<double>({3}, {1, 0, 1}));
  w.set_grad(Tensor::full({3}, 1.0, DType::f64));
  opt.step();
  CHECK(w.to_vector<double>() == std::vector<double>{0.9, 0, 1.9});
  CHECK_THROWS_WITH_AS(opt.set_update_mask(w, Tensor::ones({2}, DType::f64)),
                       doctest::Contains("mask for 'w'"), Error);
}

TEST_CASE("optimizer: state_dict round trip continues identically") {
  for (int which = 0; which < 3; ++which) {
    CAPTURE(which);
    auto make = [&](Tensor p, Tensor q) -> std::unique_ptr<Optimizer> {
      std::vector<ParamGroup> gs{group_of("layer.w", p, 0.01), group_of("b", q)};
      if (which == 0) return std::make_unique<SGD>(gs, 0.9, 0, true);
      if (which == 1) return std::make_unique<Adam>(gs);
      return std::make_unique<AdamW>(gs);
    };
    Tensor p1 = Tensor::from_vector<float>({2}, {1.f, -2.f}), q1 = Tensor::ones({1});
    auto o1 = make(p1, q1);
    o1->set_lr(0.05);
    auto set_grads = [](Tensor& p, Tensor& q, int k) {
      std::vector<float> pv = p.to_vector<float>();
      p.set_grad(Tensor::from_vector<float>({2}, {pv[0] * 2 + 0.1f * k, pv[1] - 0.3f}));
      // q gets a gradient only at some steps: its per-parameter Adam step lags.
      if (k % 2 == 0) q.set_grad(Tensor::full({1}, 0.5 + k, DType::f32));
      else q.zero_grad();
    };
    for (int k = 0; k < 3; ++k) set_grads(p1, q1, k), o1->step();
    auto sd = o1->state_dict();
    CHECK(sd[0].first == "step");
    CHECK(sd[0].second.item<int64_t>() == 3);
    if (which == 0) CHECK(sd[1].first == "momentum_buffer.layer.w");
    if (which > 0) CHECK(sd[1].first == "step.layer.w");
    if (which > 0) CHECK(sd[2].second.item<int64_t>() == 2);  // step.b: 2 of 3 steps had a grad

    // A fresh optimizer on copies of the parameters, loaded from the state, continues exactly.
    Tensor p2 = p1.clone(), q2 = q1.clone();
    auto o2 = make(p2, q2);
    o2->set_lr(0.05);
    o2->load_state_dict(sd);
    CHECK(o2->steps() == 3);
    for (int k = 3; k < 6; ++k) {
      set_grads(p1, q1, k), o1->step();
      set_grads(p2, q2, k), o2->step();
    }
    CHECK(p1.to_vector<float>() == p2.to_vector<float>());
    CHECK(q1.to_vector<float>() == q2.to_vector<float>());

    auto bad = sd;
    bad.push_back({"exp_avg.nope", Tensor::ones({2})});
    CHECK_THROWS_WITH_AS(o2->load_state_dict(bad), doctest::Contains("unexpected key 'exp_avg.nope'"),
                         Error);
    bad = sd;
    bad[1].second = Tensor::zeros({7}, bad[1].second.dtype());
    CHECK_THROWS_WITH_AS(o2->load_state_dict(bad), doctest::Contains(bad[1].first.c_str()), Error);
  }
}

TEST_CASE("optimizer: a fresh optimizer without the loaded state diverges (control)") {
  auto run = [](bool load) {
    Tensor p = Tensor::full({1}, 1.0, DType::f64);
    SGD o1({group_of("w", p)}, 0.9);
    o1.set_lr(0.1);
    run_steps(o1, p, 2, g_sq);
    SGD o2({group_of("w", p)}, 0.9);
    o2.set_lr(0.1);
    if (load) o2.load_state_dict(o1.state_dict());
    return run_steps(o2, p, 1, g_sq)[0];
  };
  // Loaded: continues as the third momentum step (0.062); fresh: restarts the buffer.
  CHECK(run(true) == doctest::Approx(0.062));
  CHECK(run(false) == doctest::Approx(0.46 - 0.1 * 0.92));
}

TEST_CASE("lr schedules against their closed forms") {
  LrSchedule s;
  s.base_lr = 0.1;
  s.kind = "constant";
  CHECK(lr_at(s, 0, 100) == 0.1);
  CHECK(lr_at(s, 99, 100) == 0.1);

  s.kind = "step";
  s.milestones = {30, 60};
  CHECK(lr_at(s, 29, 100) == doctest::Approx(0.1));
  CHECK(lr_at(s, 30, 100) == doctest::Approx(0.01));
  CHECK(lr_at(s, 59, 100) == doctest::Approx(0.01));
  CHECK(lr_at(s, 60, 100) == doctest::Approx(0.001));

  s.kind = "cosine";
  s.min_lr = 0.001;
  CHECK(lr_at(s, 0, 100) == doctest::Approx(0.1));
  CHECK(lr_at(s, 50, 100) == doctest::Approx(0.001 + 0.099 / 2));
  CHECK(lr_at(s, 25, 100) == doctest::Approx(0.001 + 0.099 * (1 + std::sqrt(0.5)) / 2));
  CHECK(lr_at(s, 100, 100) == doctest::Approx(0.001));
  CHECK(lr_at(s, 150, 100) == doctest::Approx(0.001));

  // Warm-up: linear from 0 over 10 steps, then cosine over the remaining 90.
  s.warmup_steps = 10;
  CHECK(lr_at(s, 0, 100) == 0.0);
  CHECK(lr_at(s, 5, 100) == doctest::Approx(0.05));
  CHECK(lr_at(s, 10, 100) == doctest::Approx(0.1));
  CHECK(lr_at(s, 55, 100) == doctest::Approx(0.001 + 0.099 / 2));
  s.warmup_start_factor = 0.1;
  CHECK(lr_at(s, 0, 100) == doctest::Approx(0.01));
  CHECK(lr_at(s, 5, 100) == doctest::Approx(0.1 * (0.1 + 0.9 * 0.5)));

  // OneCycleLR(max_lr=1, total_steps=100, pct_start=0.3, div 25, final_div 1e4): starts at
  // 1/25, peaks at step 29 (= 0.3*100 - 1), ends at 1/25/1e4 at step 99.
  LrSchedule oc;
  oc.kind = "onecycle";
  oc.base_lr = 1.0;
  CHECK(lr_at(oc, 0, 100) == doctest::Approx(0.04));
  CHECK(lr_at(oc, 29, 100) == doctest::Approx(1.0));
  CHECK(lr_at(oc, 28, 100) < 1.0);
  CHECK(lr_at(oc, 99, 100) == doctest::Approx(4e-6));
  // Halfway through phase 2 (step 29 + 35 = 64): the mean of peak and final.
  CHECK(lr_at(oc, 64, 100) == doctest::Approx((1.0 + 4e-6) / 2));
  // Halfway through phase 1 (step 14.5 is not a step; step 10: pct 10/29).
  const double pct = 10.0 / 29;
  CHECK(lr_at(oc, 10, 100) ==
        doctest::Approx(1.0 + (0.04 - 1.0) / 2 * (std::cos(3.14159265358979323846 * pct) + 1)));
  CHECK_THROWS_WITH_AS(lr_at(oc, 101, 100), doctest::Contains("past total_steps"), Error);

  LrSchedule bad;
  bad.kind = "linear";
  CHECK_THROWS_WITH_AS(lr_at(bad, 0, 10), doctest::Contains("unknown kind 'linear'"), Error);
}
