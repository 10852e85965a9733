// Quantizer modules: the factory's specs, parameter names, init on the first batch (and not again
// once initialized, as after loading a checkpoint), LSQ's N per use, min-max EMA state, errors.
#include <doctest/doctest.h>

#include "quant/lsq.h"
#include "quant/quantizer.h"
#include "tests/test_quant_util.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {
std::vector<std::string> names(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> out;
  for (const auto& p : v) out.push_back(p.first);
  return out;
}
}  // namespace

TEST_CASE("quantizer: LSQ weight init, gradient scale over the whole weight, no second init") {
  auto q = make_quantizer("lsq:4", true, true, DType::f64);
  CHECK(q->method() == "lsq");
  CHECK(q->bits() == 4);
  CHECK(names(q->parameters()) == std::vector<std::string>{"step"});
  CHECK(names(q->buffers()) == std::vector<std::string>{"initialized"});
  CHECK_FALSE(q->initialized());
  Tensor w = rand_tensor({4, 3, 3, 3}, 1), gy = rand_tensor({4, 3, 3, 3}, 2);
  q->set_node_name("conv1/wq");
  Tensor y = q->forward(w, true);
  CHECK(q->initialized());
  Tensor step = q->parameters()[0].second;
  double mabs = 0;
  for (double v : vals(w)) mabs += std::fabs(v);
  mabs /= w.numel();
  CHECK(step.item<double>() == doctest::Approx(2 * mabs / std::sqrt(7.0)));
  REQUIRE(y.node());
  CHECK(y.node()->name == "conv1/wq");
  backward(y, gy);
  LsqOptions o;
  o.bits = 4;
  o.grad_scale = 1 / std::sqrt(108.0 * 7);
  Tensor s2 = step.detach().clone();
  auto ref = grads_of([&](const std::vector<Tensor>& in) { return lsq_quantize(w, in[0], o); }, {s2}, gy);
  CHECK(step.grad().item<double>() == doctest::Approx(ref[0].item<double>()).epsilon(1e-12));
  // A second batch does not re-initialise.
  step.fill(0.123);
  q->forward(mul_scalar(w, 5.0), true);
  CHECK(step.item<double>() == 0.123);
}

TEST_CASE("quantizer: LSQ activations use N = C·H·W; a loaded 'initialized' flag skips init") {
  auto q = make_quantizer("lsq:3", false, false, DType::f64);
  Tensor x = rand_tensor({2, 3, 4}, 3, 0, 2), gy = rand_tensor({2, 3, 4}, 4);
  Tensor y = q->forward(x, true);
  backward(y, gy);
  Tensor step = q->parameters()[0].second;
  LsqOptions o;
  o.bits = 3;
  o.is_signed = false;
  o.grad_scale_n = 12;
  Tensor s2 = step.detach().clone();
  auto ref = grads_of([&](const std::vector<Tensor>& in) { return lsq_quantize(x, in[0], o); }, {s2}, gy);
  CHECK(step.grad().item<double>() == doctest::Approx(ref[0].item<double>()).epsilon(1e-12));
  auto r = make_quantizer("lsq:3", false, false, DType::f64);
  Tensor flag = r->buffers()[0].second, rs = r->parameters()[0].second;  // handles share storage
  flag.fill(1);  // as load_state_dict would
  rs.fill(0.5);
  r->forward(x, true);
  CHECK(r->parameters()[0].second.item<double>() == 0.5);
}

TEST_CASE("quantizer: LSQ+, APoT/PoT, PACT, DoReFa and min-max modules") {
  auto lp = make_quantizer("lsqplus:4", false, false, DType::f64);
  CHECK(names(lp->parameters()) == std::vector<std::string>{"step", "offset"});
  Tensor x = Tensor::from_vector<double>({2, 2}, {-1, 0.5, 2, 14});
  lp->forward(x, true);
  CHECK(lp->parameters()[0].second.item<double>() == doctest::Approx(1.0));  // (14 - -1)/15
  CHECK(lp->parameters()[1].second.item<double>() == doctest::Approx(-1.0));
  for (const char* spec : {"apot:3", "pot:4"}) {
    auto qw = make_quantizer(spec, true, true), qa = make_quantizer(spec, false, false);
    CHECK(names(qw->parameters()) == std::vector<std::string>{"alpha"});
    CHECK(qw->parameters()[0].second.item<double>() == 3.0);
    CHECK(qa->parameters()[0].second.item<double>() == 8.0);
    CHECK(qw->initialized());
    CHECK(qw->parameters()[0].second.dtype() == DType::f32);
    Tensor w = rand_tensor({4, 4}, 5, -1, 1, DType::f32);
    CHECK(qw->forward(w, true).shape() == w.shape());
  }
  auto pq = make_quantizer("pact:4", false, false);
  CHECK(names(pq->parameters()) == std::vector<std::string>{"alpha"});
  CHECK(pq->parameters()[0].second.item<double>() == 10.0);
  auto dq = make_quantizer("dorefa:2", true, true, DType::f64);
  CHECK(dq->parameters().empty());
  for (double v : vals(dq->forward(rand_tensor({6}, 1), true)))
    CHECK((v == doctest::Approx(-1) || v == doctest::Approx(-1.0 / 3) || v == doctest::Approx(1.0 / 3) || v == doctest::Approx(1)));
  auto mq = make_quantizer("minmax:8", false, false, DType::f64);
  CHECK(names(mq->buffers()) == std::vector<std::string>{"initialized", "running_min", "running_max"});
  mq->forward(Tensor::from_vector<double>({2}, {-1, 3}), true);
  mq->forward(Tensor::from_vector<double>({2}, {-2, 1}), true);
  CHECK(mq->buffers()[1].second.item<double>() == doctest::Approx(-1.01));
  CHECK(mq->buffers()[2].second.item<double>() == doctest::Approx(2.98));
  mq->forward(Tensor::from_vector<double>({2}, {-50, 50}), false);  // eval: no update
  CHECK(mq->buffers()[2].second.item<double>() == doctest::Approx(2.98));
  auto mw = make_quantizer("minmax:8", true, true, DType::f64);
  CHECK(vals(mw->forward(Tensor::from_vector<double>({2}, {-1, 1.27}), true))[1] == doctest::Approx(1.27));
}

TEST_CASE("quantizer: bad specs name make_quantizer") {
  CHECK_THROWS_WITH_AS(make_quantizer("lsq", true, true), doctest::Contains("make_quantizer: spec 'lsq' must be method:bits"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("lsq:x", true, true), doctest::Contains("make_quantizer: bits in 'lsq:x'"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("apot:6", true, true), doctest::Contains("make_quantizer: bits must be in [2, 5], got 6"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("lsq:1", true, true), doctest::Contains("make_quantizer: bits must be in [2, 16], got 1"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("pact:4", true, true), doctest::Contains("make_quantizer: pact quantizes activations"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("xnor:1", true, true), doctest::Contains("make_quantizer: unknown method 'xnor'"), Error);
}
