// The gradient audit: quantizer statistics on hand-built graphs against counts made by hand, op
// attrs on nodes and in DOT, cosine and level-change math, gradients at quantizer inputs, the audit
// loop on a tiny model with a hand-written full-precision backward, the training-log JSON and
// `lowbit plot --quant`. METHODS.md "Gradient estimators to audit".
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/module.h"
#include "quant/apot.h"
#include "quant/audit.h"
#include "quant/dorefa.h"
#include "quant/lsq.h"
#include "quant/minmax.h"
#include "quant/pact.h"
#include "quant/quant_stats.h"
#include "quant/rounding.h"
#include "tests/temp_dir.h"
#include "tools/audit_report.h"
#include "tools/commands.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {

Tensor vec(std::vector<double> v, bool grad = false) {
  Tensor t = Tensor::from_vector<double>({(int64_t)v.size()}, v);
  if (grad) t.set_requires_grad(true);
  return t;
}

const QuantNodeStats& find(const std::vector<QuantNodeStats>& s, const std::string& node) {
  for (const auto& e : s)
    if (e.node == node) return e;
  FAIL("no stats for node ", node);
  return s.front();
}

double grad_norm(const QuantNodeStats& s, const std::string& name) {
  for (const auto& [n, v] : s.grad_norms)
    if (n == name) return v;
  return -1;
}

}  // namespace

TEST_CASE("quant stats: LSQ weight and activation nodes of a hand-built graph, clip counts by hand") {
  // 4-bit signed: Q_N = 8, Q_P = 7; s = 0.5 clips x <= -4 low and x >= 3.5 high.
  Tensor x = vec({-5, -4, -1, 0, 0.3, 1, 2, 3.5, 4, 10});
  Tensor sa = vec({0.5}, true);
  Tensor w = Tensor::from_vector<double>({2, 10}, std::vector<double>(20, 0.1)).set_requires_grad(true);
  w.data<double>()[0] = 0.9;  // the only weight beyond Q_P·s_w = 7·0.1 = 0.7
  Tensor sw = vec({0.1}, true);
  LsqOptions o;
  Tensor xq = name_node(lsq_quantize(x, sa, o), "fc/aq");
  Tensor wq = name_node(lsq_quantize(w, sw, o), "fc/wq");
  Tensor loss = sum(linear(reshape(xq, {1, 10}), wq, Tensor()));

  auto before = collect_quant_stats(loss);
  REQUIRE(before.size() == 2);
  const QuantNodeStats& a = find(before, "fc/aq");
  CHECK(a.kind == "lsq");
  CHECK(a.bits == 4);
  CHECK_FALSE(a.is_weight);
  CHECK(a.param_name == "s");
  CHECK(a.step == doctest::Approx(0.5));
  CHECK(a.numel == 10);
  CHECK(a.clip_low == doctest::Approx(0.2));   // -5, -4
  CHECK(a.clip_high == doctest::Approx(0.3));  // 3.5, 4, 10
  CHECK(a.grad_norms.empty());                 // before backward
  const QuantNodeStats& b = find(before, "fc/wq");
  CHECK(b.is_weight);
  CHECK(b.clip_low == 0);
  CHECK(b.clip_high == doctest::Approx(1.0 / 20));

  backward(loss);
  auto after = collect_quant_stats(loss);
  CHECK(grad_norm(find(after, "fc/aq"), "s") == doctest::Approx(std::fabs(sa.grad().item<double>())));
  CHECK(grad_norm(find(after, "fc/aq"), "x") == -1);  // x needs no gradient
  CHECK(grad_norm(find(after, "fc/wq"), "s") == doctest::Approx(std::fabs(sw.grad().item<double>())));
  double gw = 0;
  for (double v : w.grad().to_vector<double>()) gw += v * v;
  CHECK(grad_norm(find(after, "fc/wq"), "x") == doctest::Approx(std::sqrt(gw)));
  CHECK(gw > 0);
}

TEST_CASE("quant stats: PACT, APoT, DoReFa, min-max and rounding clip fractions by hand") {
  Tensor alpha = vec({2}, true);
  Tensor p = pact_quantize(vec({-1, 0, 1, 1.99, 2, 3}), alpha, PactOptions{});  // low x<0, high x>=2
  // APoT weights: mean 0, unbiased std sqrt(20/4) = 2.236; u = w/std beyond ±1 for ±3 only.
  ApotOptions ao;
  Tensor aw = apot_quantize_weight(vec({-3, -1, 0, 1, 3}, true), vec({1}, true), ao);
  Tensor aa = apot_quantize_activation(vec({-3, 1, 2, 2.5, 5}), vec({2}, true), ao);  // u < -1: 1, u > 1: 2
  Tensor dw = dorefa_quantize_weight(vec({-2, 0.5, 3}, true), DorefaOptions{});
  MinMaxOptions mo;  // 8-bit asymmetric, range [0, 1]: S = 1/255, Z = 0
  Tensor xm = vec({-2, 0, 1, 5}, true);
  Tensor mm = minmax_quantize(xm, vec({0}), vec({1}), mo);
  MinMaxOptions mc;
  mc.per_channel = true;
  Tensor mcx = minmax_quantize(Tensor::from_vector<double>({2, 3}, {-1, 0, 2, 5, 6, 7}).set_requires_grad(true), mc);
  RoundingOptions ro;
  ro.bits = 2;  // signed: lo = -2, hi = 1 with step 1
  Tensor nr = nearest_round(vec({-3, -2, 0, 1, 2}, true), vec({1}), ro);
  Tensor total = add(add(add(sum(p), sum(aw)), add(sum(aa), sum(dw))), add(add(sum(mm), sum(mcx)), sum(nr)));
  auto st = collect_quant_stats(total);
  REQUIRE(st.size() == 7);
  auto by_kind = [&](const std::string& k) -> const QuantNodeStats& {
    for (const auto& e : st)
      if (e.kind == k) return e;
    FAIL("no node of kind ", k);
    return st.front();
  };
  const auto& sp = by_kind("pact");
  CHECK(sp.clip_low == doctest::Approx(1.0 / 6));
  CHECK(sp.clip_high == doctest::Approx(2.0 / 6));
  CHECK(sp.step == 2);
  CHECK(sp.param_name == "alpha");
  CHECK(by_kind("apot_w").clip_low == doctest::Approx(0.2));
  CHECK(by_kind("apot_w").clip_high == doctest::Approx(0.2));
  CHECK(by_kind("apot_w").is_weight);
  CHECK(by_kind("apot_a").clip_low == doctest::Approx(0.2));
  CHECK(by_kind("apot_a").clip_high == doctest::Approx(0.4));
  CHECK_FALSE(by_kind("apot_a").is_weight);
  CHECK(by_kind("dorefa_w").clip_low == 0);
  CHECK(std::isnan(by_kind("dorefa_w").step));
  CHECK(by_kind("minmax").clip_low == doctest::Approx(0.25));
  CHECK(by_kind("minmax").clip_high == doctest::Approx(0.25));
  CHECK(by_kind("minmax").step == doctest::Approx(1.0 / 255));
  CHECK(by_kind("nearest_round").clip_low == doctest::Approx(0.4));   // -3, -2
  CHECK(by_kind("nearest_round").clip_high == doctest::Approx(0.4));  // 1, 2
  // unnamed nodes are keyed kind#ordinal; the per-channel range from x itself clips nothing
  int n_mm = 0;
  for (const auto& e : st)
    if (e.kind == "minmax" && e.node.rfind("minmax#", 0) == 0) ++n_mm;
  CHECK(n_mm == 2);
  const QuantNodeStats* pc = nullptr;
  for (const auto& e : st)
    if (e.kind == "minmax" && e.numel == 6) pc = &e;
  REQUIRE(pc);
  CHECK(pc->clip_low == 0);
  CHECK(pc->clip_high == 0);
}

TEST_CASE("quant attrs: quantizer nodes carry their options, and DOT shows them") {
  LsqOptions o;
  o.bits = 3;
  o.is_signed = false;
  Tensor y = name_node(lsq_quantize(vec({0.1, 0.5, 2}), vec({0.25}, true), o), "l/aq");
  REQUIRE(y.node());
  CHECK(y.node()->attr("bits", 0) == 3);
  CHECK(y.node()->attr("signed", -1) == 0);
  CHECK(y.node()->has_attr("grad_scale"));
  CHECK_FALSE(y.node()->has_attr("nope"));
  CHECK(std::isnan(y.node()->attr("nope", std::nan(""))));
  Tensor aw = apot_quantize_weight(vec({-3, -1, 0, 1, 3}, true), vec({1}, true), ApotOptions{});
  CHECK(aw.node()->attr("std", 0) == doctest::Approx(std::sqrt(5.0)));
  std::ostringstream dot;
  write_dot(sum(y), dot);
  CHECK(dot.str().find("bits=3 signed=0 per_channel=0") != std::string::npos);
  // set_node_attrs overwrites, and is a no-op on a leaf
  set_node_attrs(y, {{"bits", 5}});
  CHECK(y.node()->attr("bits", 0) == 5);
  Tensor leaf = vec({1});
  CHECK_NOTHROW(set_node_attrs(leaf, {{"bits", 5}}));
}

TEST_CASE("audit math: cosine of gradients") {
  Tensor a = vec({1, -2, 3});
  CHECK(cosine_similarity(a, a) == doctest::Approx(1));
  CHECK(cosine_similarity(a, mul_scalar(a, -3)) == doctest::Approx(-1));
  CHECK(cosine_similarity(vec({1, 0}), vec({0, 5})) == doctest::Approx(0));
  CHECK(std::isnan(cosine_similarity(a, vec({0, 0, 0}))));
  CHECK(std::isnan(cosine_similarity(a, Tensor())));
  CHECK_THROWS_AS(cosine_similarity(a, vec({1, 2})), Error);
}

TEST_CASE("audit math: replaying a node reproduces its output; level changes after an SGD step") {
  // LSQ, s = 1, 4-bit: q(w) = round(w); w - 0.3·g moves only 0.6 -> 0.3 across a level.
  Tensor w = vec({0.4, 0.6, 2.0, -3.2}, true);
  Tensor y = lsq_quantize(w, vec({1}, true), LsqOptions{});
  QuantOpSpec spec = quant_op_spec(*y.node());
  CHECK(apply_quant_op(spec, w).to_vector<double>() == y.to_vector<double>());
  CHECK(level_change_share(spec, w, vec({1, 1, -1, 0}), 0.3) == doctest::Approx(0.25));
  CHECK(level_change_share(spec, w, vec({1, 1, -1, 0}), 0.0) == 0);
  CHECK_THROWS_AS(level_change_share(spec, w, vec({1, 1}), 0.3), Error);
  // APoT weights (statistics recomputed from w), PACT, min-max per-tensor: replay == output.
  Tensor w2 = vec({-1.5, -0.2, 0.1, 0.7, 2.2, 0.05}, true);
  Tensor ya = apot_quantize_weight(w2, vec({1.3}, true), ApotOptions{});
  CHECK(apply_quant_op(quant_op_spec(*ya.node()), w2).to_vector<double>() == ya.to_vector<double>());
  Tensor yp = pact_quantize(w2, vec({1.0}, true), PactOptions{});
  CHECK(apply_quant_op(quant_op_spec(*yp.node()), w2).to_vector<double>() == yp.to_vector<double>());
  Tensor ym = minmax_quantize(w2, vec({-1}), vec({1}), MinMaxOptions{});
  CHECK(apply_quant_op(quant_op_spec(*ym.node()), w2).to_vector<double>() == ym.to_vector<double>());
  // DoReFa (4-bit: 15 steps, no level at 0): a zero gradient changes nothing; the step w - 2w = -w
  // mirrors every level, so every element changes.
  Tensor yd = dorefa_quantize_weight(w2, DorefaOptions{});
  QuantOpSpec sd = quant_op_spec(*yd.node());
  CHECK(level_change_share(sd, w2, Tensor::zeros({6}, DType::f64), 1.0) == 0);
  CHECK(level_change_share(sd, w2, mul_scalar(w2.detach(), 2.0), 1.0) == 1);
  CHECK_THROWS_AS(quant_op_spec(*sum(w2).node()), Error);
}

TEST_CASE("audit: gradients at quantizer inputs (a hooked producer, a leaf weight)") {
  Tensor x = vec({-1, 0.5, 1, 3}, true);
  Tensor h = mul_scalar(x, 2.0);  // h = {-2, 1, 2, 6}: PACT α = 4 passes 1, 2 only
  Tensor w = vec({0.3, -0.2}, true);
  Tensor hq = name_node(pact_quantize(h, vec({4}, true), PactOptions{}), "n/aq");
  Tensor wq = name_node(lsq_quantize(w, vec({0.1}, true), LsqOptions{}), "n/wq");
  Tensor loss = add(sum(mul_scalar(hq, 3.0)), sum(mul(wq, vec({1, 2}))));
  QuantInputGrads cap;
  cap.attach(loss);
  backward(loss);
  auto g = cap.collect();
  REQUIRE(g.count("n/aq"));
  REQUIRE(g.count("n/wq"));
  CHECK(g["n/aq"].to_vector<double>() == std::vector<double>{0, 3, 3, 0});  // dL/dh = 3·1[0<=h<4]
  CHECK(g["n/wq"].to_vector<double>() == std::vector<double>{1, 2});
}

TEST_CASE("quant stats: accumulated over batches, and the training log's JSON lines") {
  QuantNodeStats a;
  a.node = "c/wq", a.kind = "lsq", a.bits = 4, a.is_weight = true, a.step = 0.1, a.param_name = "s";
  a.clip_low = 0.5, a.clip_high = 0, a.numel = 10, a.grad_norms = {{"s", 2.0}};
  QuantNodeStats b = a;
  b.step = 0.3, b.clip_low = 0, b.clip_high = 1, b.numel = 30, b.grad_norms = {{"s", 4.0}};
  QuantStatsAccumulator acc;
  acc.add({a});
  acc.add({b});
  auto r = acc.result();
  REQUIRE(r.size() == 1);
  CHECK(acc.batches() == 2);
  CHECK(r[0].step == doctest::Approx(0.2));
  CHECK(r[0].clip_low == doctest::Approx(5.0 / 40));   // weighted by elements
  CHECK(r[0].clip_high == doctest::Approx(30.0 / 40));
  CHECK(r[0].grad_norms.at(0).second == doctest::Approx(3.0));
  QuantNodeStats d;
  d.node = "fc/wq", d.kind = "dorefa_w", d.bits = 2, d.clip_low = d.clip_high = 0;  // step NaN
  nlohmann::json lines = quant_stats_json({r[0], d}, 7);
  REQUIRE(lines.size() == 2);
  for (const char* k : {"type", "epoch", "node", "kind", "bits", "step", "clip_low", "clip_high"})
    CHECK_MESSAGE(lines[0].contains(k), k);
  CHECK(lines[0]["type"] == "quant");
  CHECK(lines[0]["epoch"] == 7);
  CHECK(lines[0]["node"] == "c/wq");
  CHECK(lines[1]["step"].is_null());
  CHECK(nlohmann::json::parse(lines[1].dump())["clip_high"] == 0);  // one valid JSON line each
}

namespace {

// fc(relu(x W0^T)) with fc's input quantized by PACT ("fc/aq") and its weight by LSQ ("fc/wq").
// fp_backward: fc's backward uses the full-precision input and weight (METHODS.md), written by hand.
class TinyQNet : public Module {
 public:
  TinyQNet() {
    w0 = register_parameter("w0", Tensor::from_vector<float>({4, 6}, {0.3f, -0.2f, 0.5f, 0.1f, -0.4f, 0.2f,
                                                                   -0.1f, 0.4f, 0.3f, -0.5f, 0.2f, 0.1f,
                                                                   0.2f, 0.2f, -0.3f, 0.4f, 0.1f, -0.2f,
                                                                   0.5f, -0.1f, 0.1f, 0.2f, 0.3f, 0.4f}));
    w1 = register_parameter("w1", Tensor::from_vector<float>({3, 4}, {0.7f, -0.3f, 0.2f, 0.45f, -0.6f, 0.25f,
                                                                   0.9f, -0.15f, 0.05f, 0.8f, -0.35f, 0.5f}));
    step = register_parameter("step", Tensor::from_vector<float>({1}, {0.3f}));
    alpha = register_parameter("alpha", Tensor::from_vector<float>({1}, {1.0f}));
    seen = register_buffer("seen", Tensor::zeros({1}, DType::f32));
  }
  std::string kind() const override { return "TinyQNet"; }
  Tensor forward(const Tensor& x) override {
    seen.fill(seen.item<double>() + 1);  // a buffer the forward changes, like BN statistics
    Tensor h = relu(linear(x, w0, Tensor()));
    PactOptions po;
    po.bits = 2;
    LsqOptions lo;
    lo.bits = 2;
    Tensor hq = name_node(pact_quantize(h, alpha, po), "fc/aq");
    Tensor wq = name_node(lsq_quantize(w1, step, lo), "fc/wq");
    if (!fp_backward) return linear(hq, wq, Tensor());
    Tensor y = linear(hq.detach(), wq.detach(), Tensor());  // the forward value
    Tensor hf = h.detach(), wf = w1.detach();
    return record(y.detach(), "fp_linear", {hq, wq}, {"x", "weight"}, [hf, wf](const Node&, const Tensor& gy) {
      const int64_t n = gy.size(0), o = gy.size(1), in = wf.size(1);
      std::vector<float> g = gy.to_vector<float>(), xv = hf.to_vector<float>(), wv = wf.to_vector<float>();
      std::vector<float> gx((size_t)(n * in), 0.f), gw((size_t)(o * in), 0.f);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < o; ++j)
          for (int64_t k = 0; k < in; ++k) {
            gx[i * in + k] += g[i * o + j] * wv[j * in + k];  // full-precision weight
            gw[j * in + k] += g[i * o + j] * xv[i * in + k];  // full-precision input
          }
      return std::vector<Tensor>{Tensor::from_vector<float>({n, in}, gx), Tensor::from_vector<float>({o, in}, gw)};
    });
  }
  Tensor w0, w1, step, alpha, seen;
  bool fp_backward = false;
};

std::function<bool(Batch&)> fixed_batches(int64_t count) {
  auto k = std::make_shared<int64_t>(0);
  return [k, count](Batch& b) {
    if (*k >= count) return false;
    std::vector<float> v(5 * 6);
    for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.7f * (float)(i + 31 * *k)) * 2.0f;
    b.x = Tensor::from_vector<float>({5, 6}, v);
    b.y = Tensor::from_vector<int64_t>({5}, {0, 1, 2, 1, 0});
    ++*k;
    return true;
  };
}

}  // namespace

TEST_CASE("audit loop: STE vs itself gives cosine 1; a full-precision backward differs") {
  TinyQNet net;
  AuditReport same = run_audit(net, fixed_batches(2), 5, 0.05, [](bool) {});
  CHECK(same.batches == 2);  // the data ran out before 5
  REQUIRE(same.nodes.size() == 2);
  CHECK(same.nodes[0].stats.node == "fc/aq");  // topological order: the input's quantizer first
  CHECK(same.nodes[1].stats.node == "fc/wq");
  for (const AuditNode& n : same.nodes) CHECK(n.cos_ste_fp == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(std::isnan(same.nodes[0].level_change));  // activations have none
  CHECK(same.nodes[1].level_change >= 0);
  CHECK(same.nodes[1].level_change <= 1);
  CHECK(net.seen.item<double>() == 2);  // restored before each second pass: one count per batch
  CHECK(net.step.grad().defined() == false);  // gradients are left zeroed

  TinyQNet fp;
  AuditReport diff = run_audit(fp, fixed_batches(2), 2, 0.05, [&](bool on) { fp.fp_backward = on; });
  CHECK_FALSE(fp.fp_backward);
  REQUIRE(diff.nodes.size() == 2);
  for (const AuditNode& n : diff.nodes) {
    CHECK(std::isfinite(n.cos_ste_fp));
    CHECK(n.cos_ste_fp < 0.999999);
    CHECK(n.cos_ste_fp > -1.000001);
  }
  // the STE pass's statistics do not depend on the second pass
  CHECK(diff.nodes[1].stats.clip_high == doctest::Approx(same.nodes[1].stats.clip_high));
  CHECK(diff.nodes[0].stats.step == doctest::Approx(1.0));
  const std::string table = audit_table(diff);
  CHECK(table.find("cos(STE,fp)") != std::string::npos);
  CHECK(table.find("fc/wq") != std::string::npos);
  CHECK(table.find("lsq:2") != std::string::npos);
  nlohmann::json j = audit_json(diff);
  CHECK(j["batches"] == 2);
  CHECK(j["nodes"][1]["node"] == "fc/wq");
  CHECK(j["nodes"][0]["level_change"].is_null());
  CHECK(j["nodes"][1]["grad_norms"].contains("s"));
  CHECK_THROWS_WITH_AS(run_audit(fp, fixed_batches(1), 0, 0.05, [](bool) {}), doctest::Contains("--batches"), Error);
}

namespace {

int run_plot(std::vector<std::string> args) {
  args.insert(args.begin(), "plot");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return cmd_plot((int)args.size(), argv.data());
}

bool is_png(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char h[8] = {};
  f.read(h, 8);
  return f.gcount() == 8 && std::string(h, 8) == std::string("\x89PNG\r\n\x1a\n", 8);
}

}  // namespace

TEST_CASE("plot --quant: draws a run's quantizer lines; fails clearly without them") {
  TempDir dir;
  {
    std::ofstream f(dir.file("metrics.jsonl"));
    for (int e = 1; e <= 3; ++e) {
      f << nlohmann::json({{"type", "train"}, {"epoch", e}, {"loss", 2.0 / e}, {"acc", 0.1 * e}}).dump() << "\n";
      for (int n = 0; n < 20; ++n) {
        QuantNodeStats s;
        s.node = "layer" + std::to_string(n) + (n % 2 ? "/wq" : "/aq");
        s.kind = "lsq", s.bits = 4, s.is_weight = n % 2, s.param_name = "s";
        s.step = 0.1 * (n + 1) / e, s.clip_low = 0.01 * n, s.clip_high = n == 3 ? kNaN : 0.02 * e;
        f << quant_stats_json({s}, e)[0].dump() << "\n";
      }
    }
  }
  REQUIRE(run_plot({dir.path(), "--quant"}) == 0);  // 20 nodes: a legend of 12
  CHECK(is_png(dir.file("quant.png")));
  CHECK(std::filesystem::file_size(dir.file("quant.png")) > 1000);
  REQUIRE(run_plot({dir.path()}) == 0);  // the usual curves still work on the same log
  CHECK(is_png(dir.file("curves.png")));

  TempDir plain;
  {
    std::ofstream f(plain.file("metrics.jsonl"));
    f << R"({"type":"train","epoch":1,"loss":2.1,"acc":0.2})" << "\n";
  }
  CHECK_THROWS_WITH_AS(run_plot({plain.path(), "--quant"}), doctest::Contains("no quantizer lines"), Error);
  CHECK_FALSE(std::filesystem::exists(plain.file("quant.png")));
}
