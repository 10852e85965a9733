// Quantization-aware training: quantizers inside Conv2d/Linear (names, signedness, forward),
// full-precision backward, optimizer groups, per-layer bits, bit skipping, checkpoints with quant
// metadata, --init from a full-precision checkpoint, and QAT vs FP accuracy on the synthetic set.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

#include "core/safetensors.h"
#include "layers/layers.h"
#include "layers/quant_module.h"
#include "models/models.h"
#include "quant/lsq.h"
#include "quant/maxabs.h"
#include "quant/quantize_model.h"
#include "tests/temp_dir.h"
#include "tests/test_quant_util.h"
#include "tools/trainer.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {

std::set<std::string> state_names(const Module& m) {
  std::set<std::string> s;
  for (auto& e : m.state_dict()) s.insert(e.first);
  return s;
}

Module* find_module(Module& root, const std::string& path) {
  for (auto& [p, m] : root.named_modules())
    if (p == path) return m;
  FAIL("no module ", path);
  return nullptr;
}

bool signed_input(Module& root, const std::string& path) {
  Module* m = find_module(root, path);
  if (auto* c = dynamic_cast<Conv2d*>(m)) return c->act_signed;
  return dynamic_cast<Linear*>(m)->act_signed;
}

QuantizerModule* quantizer_of(Module& root, const std::string& layer, const std::string& role) {
  for (auto& r : list_quantizers(root))
    if (r.layer_path == layer && r.role == role) return r.qm;
  return nullptr;
}

QuantConfig lsq44(const std::string& first_last = "8") {
  QuantConfig q;
  q.wq = "lsq:4";
  q.aq = "lsq:4";
  q.first_last = first_last;
  return q;
}

// A float32 tensor with values uniform in [lo, hi).
Tensor rand_f32(const Shape& s, uint64_t seed, double lo = -1, double hi = 1) {
  return rand_tensor(s, seed, lo, hi).to(DType::f32);
}

// Reference LSQ fake quantization, computed in the tensor's precision as the kernel does.
Tensor ref_lsq(const Tensor& x, float s, int bits, bool is_signed) {
  const double qn = is_signed ? std::ldexp(1.0, bits - 1) : 0;
  const double qp = is_signed ? std::ldexp(1.0, bits - 1) - 1 : std::ldexp(1.0, bits) - 1;
  std::vector<float> v = x.to_vector<float>();
  for (float& e : v) e = (float)(ref_round(clampd((double)(e / s), -qn, qp)) * s);
  return Tensor::from_vector<float>(x.shape(), v);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto va = vals(a), vb = vals(b);
  REQUIRE(va.size() == vb.size());
  double m = 0;
  for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::fabs(va[i] - vb[i]));
  return m;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST_CASE("qat: maxabs quantizer rounds to max|w|/127 steps with the identity STE") {
  Tensor w = rand_tensor({4, 3, 3, 3}, 7);
  w.data<double>()[5] = -1.5;  // the max |w|, negative: the grid is symmetric ±127
  Tensor gy = rand_tensor({4, 3, 3, 3}, 8);
  auto g = grads_of([](const std::vector<Tensor>& in) { return maxabs_quantize(in[0], {}); }, {w}, gy);
  Tensor y = maxabs_quantize(w, {});
  const double s = 1.5 / 127;
  auto vy = vals(y), vw = vals(w);
  for (size_t i = 0; i < vw.size(); ++i) CHECK(vy[i] == doctest::Approx(ref_round(vw[i] / s) * s).epsilon(1e-12));
  CHECK(vy[5] == doctest::Approx(-1.5));
  CHECK(max_abs_diff(g[0], gy) == 0);  // every element, the extreme one included
  auto q = make_quantizer("maxabs:8", true, true, DType::f64);
  CHECK(q->initialized());
  CHECK(q->parameters().empty());
  CHECK(max_abs_diff(q->forward(w, true), y) == 0);
  CHECK_THROWS_WITH_AS(make_quantizer("lsq:4:pc", true, true), doctest::Contains("needs the number of output channels"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("lsq:4:xx", true, true, DType::f32, 4), doctest::Contains("unknown option 'xx'"), Error);
  CHECK_THROWS_WITH_AS(make_quantizer("lsq:4:pc", false, false, DType::f32, 4), doctest::Contains("weight quantizers only"), Error);
}

TEST_CASE("qat: quantized resnet20 state_dict names; first/last rule") {
  ModelPtr m = build_model("resnet20", 10);
  const auto fp_names = state_names(*m);
  quantize_model(*m, lsq44("8"));
  auto n = state_names(*m);
  for (const char* k : {"layer1.0.conv1.wq.step", "layer1.0.conv1.wq.initialized", "layer1.0.conv1.aq.step",
                        "layer1.0.conv1.aq.initialized", "layer3.2.conv2.aq.step", "conv1.wq.initialized",
                        "linear.wq.initialized", "conv1.weight", "linear.bias"})
    CHECK_MESSAGE(n.count(k), k);
  for (const char* k : {"conv1.aq.step", "conv1.aq.initialized", "conv1.wq.step", "linear.aq.step"})
    CHECK_MESSAGE(!n.count(k), k);
  // Every full-precision name is still there, unchanged.
  for (auto& k : fp_names) CHECK(n.count(k));
  auto refs = list_quantizers(*m);
  CHECK(refs.size() == 18 * 2 + 2);  // 18 block convs with wq+aq; conv1 and linear weight-only
  CHECK(refs.front().layer_path == "conv1");
  CHECK(refs.front().qm->quantizer().method() == "maxabs");
  CHECK(refs.front().qm->quantizer().bits() == 8);
  CHECK(refs.back().layer_path == "linear");
  CHECK(refs.back().role == "wq");
  CHECK(quantizer_of(*m, "layer2.1.conv2", "wq")->quantizer().method() == "lsq");
  // Nodes are named after the layer: "layer1.0.conv1/wq".
  Tensor y = (*m)(rand_f32({2, 3, 32, 32}, 1));
  std::set<std::string> nodes;
  for (auto& nd : graph_nodes(y)) nodes.insert(nd->name);
  CHECK(nodes.count("layer1.0.conv1/wq"));
  CHECK(nodes.count("layer1.0.conv1/aq"));
  CHECK(nodes.count("conv1/wq"));
  CHECK(nodes.count("layer1.0.conv1"));
  CHECK(quantizer_of(*m, "layer1.0.conv1", "aq")->quantizer().initialized());

  ModelPtr f = build_model("resnet20", 10);
  quantize_model(*f, lsq44("fp"));
  CHECK(!quantizer_of(*f, "conv1", "wq"));
  CHECK(!quantizer_of(*f, "linear", "wq"));
  CHECK(list_quantizers(*f).size() == 36);
  ModelPtr s = build_model("resnet20", 10);
  quantize_model(*s, lsq44("same"));
  CHECK(quantizer_of(*s, "conv1", "aq")->quantizer().is_signed());  // the image
  CHECK(quantizer_of(*s, "conv1", "wq")->quantizer().method() == "lsq");
  CHECK_FALSE(quantizer_of(*s, "linear", "aq")->quantizer().is_signed());
  // Full precision: nothing installed, and installing twice is an error.
  ModelPtr p = build_model("resnet20", 10);
  quantize_model(*p, QuantConfig());
  CHECK(state_names(*p) == fp_names);
  CHECK_THROWS_WITH_AS(quantize_model(*s, lsq44()), doctest::Contains("already holds quantizers"), Error);
  QuantConfig bad = lsq44();
  bad.first_last = "16";
  CHECK_THROWS_WITH_AS(quantize_model(*p, bad), doctest::Contains("--first-last"), Error);
  bad = lsq44();
  bad.wq = "lsq";
  CHECK_THROWS_WITH_AS(quantize_model(*p, bad), doctest::Contains("--wq 'lsq'"), Error);
}

TEST_CASE("qat: act_signed marks the layers whose input is not a ReLU output") {
  ModelPtr r = build_model("resnet20", 10);
  CHECK(signed_input(*r, "conv1"));
  for (const char* l : {"layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer3.2.conv2", "linear"})
    CHECK_MESSAGE(!signed_input(*r, l), l);
  ModelPtr m = build_model("mobilenetv2", 10);
  CHECK(signed_input(*m, "conv1"));
  CHECK_FALSE(signed_input(*m, "layers.0.conv1"));   // takes relu(bn1(conv1))
  CHECK(signed_input(*m, "layers.1.conv1"));         // takes block 0's linear bottleneck
  CHECK(signed_input(*m, "layers.1.shortcut.0"));    // 16->24 shortcut conv, same input
  CHECK_FALSE(signed_input(*m, "layers.1.conv2"));   // depthwise after ReLU
  CHECK_FALSE(signed_input(*m, "layers.1.conv3"));   // projection after ReLU
  CHECK(signed_input(*m, "layers.16.conv1"));
  CHECK(signed_input(*m, "conv2"));                  // 320->1280 after the last bottleneck
  CHECK_FALSE(signed_input(*m, "linear"));
  quantize_model(*m, lsq44());
  CHECK(quantizer_of(*m, "layers.1.conv1", "aq")->quantizer().is_signed());
  ModelPtr s = build_model("shufflenetv2_0.5", 10);
  CHECK(signed_input(*s, "conv1"));
  CHECK_FALSE(signed_input(*s, "layer1.0.conv1"));  // depthwise on the block input (after ReLU)
  CHECK(signed_input(*s, "layer1.0.conv2"));        // 1x1 after depthwise-BN, no ReLU
  CHECK_FALSE(signed_input(*s, "layer1.0.conv3"));
  CHECK(signed_input(*s, "layer1.0.conv5"));
  CHECK_FALSE(signed_input(*s, "layer1.1.conv1"));
  CHECK(signed_input(*s, "layer1.1.conv3"));
  CHECK_FALSE(signed_input(*s, "linear"));
  CHECK_FALSE(quantizer_of(*m, "layers.1.conv2", "aq")->quantizer().is_signed());
}

TEST_CASE("qat: quantized conv/linear forward = op of the hand-quantized tensors") {
  auto seq = std::make_shared<Sequential>();
  auto conv = std::make_shared<Conv2d>(3, 4, 3, 1, 1);
  conv->act_signed = true;
  auto lin = std::make_shared<Linear>(5, 2);
  seq->add(conv);
  QuantConfig q = lsq44("same");
  q.aq = "lsq:3";
  quantize_model(*seq, q);
  Tensor x = rand_f32({2, 3, 6, 6}, 11, -2, 2);
  Tensor y = (*seq)(x);
  const float sw = conv->wq->quantizer().parameters()[0].second.item<float>();
  const float sa = conv->aq->quantizer().parameters()[0].second.item<float>();
  CHECK(sa > 0);
  Tensor ref = conv2d(ref_lsq(x, sa, 3, true), ref_lsq(conv->weight, sw, 4, true), Tensor(), conv->opts);
  CHECK(max_abs_diff(y, ref) < 1e-5);
  CHECK(max_abs_diff(y, conv2d(x, conv->weight, Tensor(), conv->opts)) > 1e-3);  // it did quantize
  // Linear: unsigned input (after a ReLU), per-channel weight steps.
  auto root = std::make_shared<Sequential>();
  root->add(lin);
  QuantConfig ql = lsq44("same");
  ql.wq = "lsq:3:pc";
  quantize_model(*root, ql);
  Tensor xl = rand_f32({4, 5}, 12, 0, 3);
  Tensor yl = (*root)(xl);
  Tensor steps = lin->wq->quantizer().parameters()[0].second;
  REQUIRE(steps.numel() == 2);
  std::vector<float> wv = lin->weight.to_vector<float>();
  for (int o = 0; o < 2; ++o) {
    Tensor row = Tensor::from_vector<float>({5}, std::vector<float>(wv.begin() + o * 5, wv.begin() + o * 5 + 5));
    Tensor qr = ref_lsq(row, steps.to_vector<float>()[o], 3, true);
    auto qv = qr.to_vector<float>();
    std::copy(qv.begin(), qv.end(), wv.begin() + o * 5);
  }
  const float sal = lin->aq->quantizer().parameters()[0].second.item<float>();
  Tensor refl = linear(ref_lsq(xl, sal, 4, false), Tensor::from_vector<float>({2, 5}, wv), lin->bias);
  CHECK(max_abs_diff(yl, refl) < 1e-5);
}

TEST_CASE("qat: fp_backward gives the full-precision conv/linear gradients") {
  for (bool is_conv : {true, false}) {
    CAPTURE(is_conv);
    auto root = std::make_shared<Sequential>();
    std::shared_ptr<Conv2d> conv;
    std::shared_ptr<Linear> lin;
    if (is_conv) root->add(conv = std::make_shared<Conv2d>(3, 4, 3, 2, 1, 1, true));
    else root->add(lin = std::make_shared<Linear>(6, 3));
    QuantConfig q = lsq44("same");
    q.wq = "lsq:2";
    q.aq = "lsq:2";
    q.ste = "fp";
    quantize_model(*root, q);
    Tensor& w = is_conv ? conv->weight : lin->weight;
    Tensor& b = is_conv ? conv->bias : lin->bias;
    CHECK((is_conv ? conv->fp_backward : lin->fp_backward));
    const Shape xs = is_conv ? Shape{2, 3, 5, 5} : Shape{4, 6};
    Tensor x = rand_f32(xs, 21, 0, 2);
    x.set_requires_grad(true);
    Tensor y = (*root)(x);
    Tensor gy = rand_f32(y.shape(), 22);
    backward(y, gy);
    // The same layer without fp_backward: the forward is the same quantized conv.
    Tensor w2 = w.detach().clone(), x2 = x.detach().clone(), b2 = b.detach().clone();
    w2.set_requires_grad(true);
    x2.set_requires_grad(true);
    b2.set_requires_grad(true);
    Tensor yf = is_conv ? conv2d(x2, w2, b2, conv->opts) : linear(x2, w2, b2);
    backward(yf, gy);
    CHECK(max_abs_diff(x.grad(), x2.grad()) < 1e-5);
    CHECK(max_abs_diff(w.grad(), w2.grad()) < 1e-5);
    CHECK(max_abs_diff(b.grad(), b2.grad()) < 1e-5);
    // The quantizers are bypassed: their steps get no gradient from this layer.
    CHECK_FALSE((is_conv ? conv->wq : lin->wq)->quantizer().parameters()[0].second.grad().defined());
    // And the forward is the quantized one (2 bits: far from the float output).
    CHECK(max_abs_diff(y, yf) > 1e-3);
  }
}

TEST_CASE("qat: optimizer groups and lr factors") {
  ModelPtr m = build_model("smallcnn", 10);
  quantize_model(*m, lsq44());
  TrainConfig c;
  c.wd = 5e-4;
  c.wq_lr_factor = 0.1;
  c.aq_lr_factor = 0.01;
  auto groups = make_param_groups(*m, c);
  REQUIRE(groups.size() == 3);
  CHECK(groups[0].name == "all");
  CHECK(groups[0].weight_decay == 5e-4);
  CHECK(groups[0].lr_factor == 1.0);
  CHECK(groups[1].name == "wq");
  CHECK(groups[1].lr_factor == 0.1);
  CHECK(groups[1].weight_decay == 0);
  CHECK(groups[2].name == "aq");
  CHECK(groups[2].lr_factor == 0.01);
  CHECK(groups[2].weight_decay == 0);
  // smallcnn: conv2, conv3 carry lsq wq/aq; conv1 and linear carry maxabs (no parameters).
  std::vector<std::string> wq_names, aq_names;
  for (auto& p : groups[1].params) wq_names.push_back(p.first);
  for (auto& p : groups[2].params) aq_names.push_back(p.first);
  CHECK(wq_names == std::vector<std::string>{"conv2.wq.step", "conv3.wq.step"});
  CHECK(aq_names == std::vector<std::string>{"conv2.aq.step", "conv3.aq.step"});
  size_t total = 0;
  for (auto& g : groups) total += g.params.size();
  CHECK(total == m->named_parameters().size());
  for (auto& p : groups[0].params) CHECK(p.first.find(".wq.") == std::string::npos);
  SGD opt(groups, 0.9);
  opt.set_lr(0.5);
  CHECK(opt.group_lr(1) == doctest::Approx(0.05));
  CHECK(opt.group_lr(2) == doctest::Approx(0.005));
  // Full precision: one group, as before.
  ModelPtr f = build_model("smallcnn", 10);
  CHECK(make_param_groups(*f, c).size() == 1);
}

TEST_CASE("qat: per-layer bits from --bits-config; unknown layers are errors") {
  TempDir dir;
  write_text(dir.file("bits.json"), R"({"layer1.0.conv1": {"w": 3, "a": 2}, "layer3.1.conv2": {"w": 5}})");
  ModelPtr m = build_model("resnet20", 10);
  QuantConfig q = lsq44();
  q.bits_config = dir.file("bits.json");
  quantize_model(*m, q);
  CHECK(quantizer_of(*m, "layer1.0.conv1", "wq")->quantizer().bits() == 3);
  CHECK(quantizer_of(*m, "layer1.0.conv1", "aq")->quantizer().bits() == 2);
  CHECK(quantizer_of(*m, "layer3.1.conv2", "wq")->quantizer().bits() == 5);
  CHECK(quantizer_of(*m, "layer3.1.conv2", "aq")->quantizer().bits() == 4);
  CHECK(quantizer_of(*m, "layer1.0.conv2", "wq")->quantizer().bits() == 4);
  // The checkpoint form carries the bits inline.
  nlohmann::json j = quant_config_to_json(q);
  CHECK(j["bits"]["layer1.0.conv1"]["w"] == 3);
  QuantConfig back = quant_config_from_json(j);
  CHECK(back.bits_config.empty());
  CHECK(back.wq == "lsq:4");
  ModelPtr m2 = build_model("resnet20", 10);
  quantize_model(*m2, back);
  CHECK(quantizer_of(*m2, "layer1.0.conv1", "aq")->quantizer().bits() == 2);

  write_text(dir.file("typo.json"), R"({"layer9.0.conv1": {"w": 3}})");
  q.bits_config = dir.file("typo.json");
  ModelPtr m3 = build_model("resnet20", 10);
  CHECK_THROWS_WITH_AS(quantize_model(*m3, q), doctest::Contains("unknown layer 'layer9.0.conv1'"), Error);
  CHECK(list_quantizers(*m3).empty());  // checked before anything is installed
  write_text(dir.file("first.json"), R"({"conv1": {"w": 4}})");
  q.bits_config = dir.file("first.json");
  CHECK_THROWS_WITH_AS(quantize_model(*m3, q), doctest::Contains("--first-last 8"), Error);
  write_text(dir.file("key.json"), R"({"layer1.0.conv1": {"bits": 4}})");
  q.bits_config = dir.file("key.json");
  CHECK_THROWS_WITH_AS(quantize_model(*m3, q), doctest::Contains("unknown key 'bits'"), Error);
  q.bits_config = dir.file("missing.json");
  CHECK_THROWS_WITH_AS(quantize_model(*m3, q), doctest::Contains("--bits-config: cannot read"), Error);
}

TEST_CASE("qat: bit skipping keeps every 2^(b-t)-th LSQ level") {
  for (bool is_signed : {false, true}) {
    CAPTURE(is_signed);
    auto qm = std::make_shared<QuantizerModule>(make_quantizer("lsq:4", !is_signed, is_signed, DType::f64));
    Tensor x = Tensor::zeros({1, 4001}, DType::f64);
    for (int i = 0; i < 4001; ++i) x.data<double>()[i] = -2.0 + i * 0.001;  // spans past both ends
    qm->forward(x);  // initialises the step
    Tensor step = qm->quantizer().parameters()[0].second;
    step.fill(0.1);
    for (int t : {3, 2}) {
      CAPTURE(t);
      qm->set_skip_bits(t);
      const int k = 1 << (4 - t);
      // The kept levels of the 4-bit grid: from its lowest level -Q_N (0 unsigned), every k-th.
      std::vector<double> levels;
      const int lo = is_signed ? -8 : 0, hi = is_signed ? 7 : 15;
      for (int j = lo; j <= hi; j += k) levels.push_back(j * 0.1);
      CHECK(levels.size() == (size_t)(1 << t));
      Tensor y = qm->forward(x);
      auto vx = vals(x), vy = vals(y);
      for (size_t i = 0; i < vx.size(); ++i) {
        double best = levels[0];
        for (double l : levels)
          if (std::fabs(vx[i] - l) < std::fabs(vx[i] - best) - 1e-9) best = l;
        // Exactly at a midpoint the kernel rounds half to even; away from them, the nearest level.
        double to_mid = 1e9;
        for (size_t a = 0; a + 1 < levels.size(); ++a) to_mid = std::min(to_mid, std::fabs(vx[i] - (levels[a] + levels[a + 1]) / 2));
        if (to_mid > 1e-6) CHECK_MESSAGE(std::fabs(vy[i] - best) < 1e-12, "x = ", vx[i], " y = ", vy[i]);
        CHECK(std::find_if(levels.begin(), levels.end(), [&](double l) { return std::fabs(l - vy[i]) < 1e-12; }) != levels.end());
      }
    }
    qm->set_skip_bits(0);
    Tensor y4 = qm->forward(x);
    const std::vector<double> v4 = vals(y4);
    std::set<double> distinct(v4.begin(), v4.end());
    CHECK(distinct.size() == 16);  // back at 4 bits
    CHECK_THROWS_WITH_AS(qm->set_skip_bits(5), doctest::Contains("must be in [2, 4]"), Error);
  }
  auto ap = std::make_shared<QuantizerModule>(make_quantizer("apot:4", true, true));
  CHECK_THROWS_WITH_AS(ap->set_skip_bits(3), doctest::Contains("uses apot"), Error);
  // From a JSON spec, on a model.
  ModelPtr m = build_model("smallcnn", 10);
  quantize_model(*m, lsq44());
  apply_skip_bits(*m, nlohmann::json::parse(R"({"conv2": {"w": 3, "a": 2}})"), "skip.json");
  CHECK(quantizer_of(*m, "conv2", "wq")->skip_bits() == 3);
  CHECK(quantizer_of(*m, "conv2", "aq")->skip_bits() == 2);
  CHECK(quantizer_of(*m, "conv3", "wq")->skip_bits() == 0);
  CHECK_THROWS_WITH_AS(apply_skip_bits(*m, nlohmann::json::parse(R"({"conv9": {"w": 3}})"), "skip.json"),
                       doctest::Contains("unknown layer 'conv9'"), Error);
  CHECK_THROWS_WITH_AS(apply_skip_bits(*m, nlohmann::json::parse(R"({"conv1": {"w": 3}})"), "skip.json"),
                       doctest::Contains("uses maxabs"), Error);
  CHECK_THROWS_WITH_AS(apply_skip_bits(*m, nlohmann::json::parse(R"({"conv1": {"a": 3}})"), "skip.json"),
                       doctest::Contains("has no aq quantizer"), Error);
}

TEST_CASE("qat: checkpoints record the quant config; eval rebuilds and matches; --init from FP") {
  TempDir dir;
  ModelPtr m = make_model("smallcnn", 10, 5);
  QuantConfig q = lsq44();
  q.wq = "lsq:3:pc";
  quantize_model(*m, q);
  Tensor x = rand_f32({4, 3, 32, 32}, 31);
  (*m)(x);  // initialises every step from data
  m->eval();
  Tensor y = (*m)(x);
  save_model_checkpoint(dir.file("q.safetensors"), *m, "smallcnn", 10, 7, q);
  SafetensorsFile f = load_safetensors(dir.file("q.safetensors"));
  REQUIRE(f.metadata.count("quant"));
  CHECK(nlohmann::json::parse(f.metadata["quant"])["wq"] == "lsq:3:pc");
  LoadedModel l = load_model_checkpoint(dir.file("q.safetensors"));
  CHECK(l.quant.wq == "lsq:3:pc");
  CHECK(l.epoch == 7);
  CHECK(quantizer_of(*l.model, "conv2", "aq")->quantizer().initialized());
  CHECK(quantizer_of(*l.model, "conv2", "wq")->quantizer().parameters()[0].second.numel() == 32);
  l.model->eval();
  CHECK(max_abs_diff((*l.model)(x), y) == 0);

  // A full-precision checkpoint is exactly the torch state_dict: no quantizer names, no "quant".
  ModelPtr fp = make_model("smallcnn", 10, 6);
  save_model_checkpoint(dir.file("fp.safetensors"), *fp, "smallcnn", 10, 1);
  SafetensorsFile ff = load_safetensors(dir.file("fp.safetensors"));
  CHECK_FALSE(ff.metadata.count("quant"));
  for (auto& e : ff.tensors) CHECK(e.first.find(".wq.") == std::string::npos);
  CHECK(ff.tensors.size() == fp->state_dict().size());

  // --init: FP weights into a quantized model; quantizers stay uninitialised until the first batch.
  ModelPtr qi = make_model("smallcnn", 10, 9);
  quantize_model(*qi, lsq44());
  load_init_weights(*qi, dir.file("fp.safetensors"));
  CHECK(max_abs_diff(dynamic_cast<Conv2d*>(find_module(*qi, "conv2"))->weight,
                     dynamic_cast<Conv2d*>(find_module(*fp, "conv2"))->weight) == 0);
  CHECK_FALSE(quantizer_of(*qi, "conv2", "wq")->quantizer().initialized());
  // A checkpoint missing a non-quantizer entry, or with an unknown one, is refused.
  auto sd = fp->state_dict();
  sd.erase(sd.begin());
  save_safetensors(dir.file("partial.safetensors"), sd, {});
  CHECK_THROWS_WITH_AS(load_init_weights(*qi, dir.file("partial.safetensors")),
                       doctest::Contains("conv1.weight"), Error);
  sd = fp->state_dict();
  sd.push_back({"conv9.weight", Tensor::zeros({1})});
  save_safetensors(dir.file("extra.safetensors"), sd, {});
  CHECK_THROWS_WITH_AS(load_init_weights(*qi, dir.file("extra.safetensors")),
                       doctest::Contains("unexpected key 'conv9.weight'"), Error);
  // And a quantized checkpoint loads into a quantized model completely, initialized included.
  ModelPtr qj = make_model("smallcnn", 10, 9);
  quantize_model(*qj, q);
  load_init_weights(*qj, dir.file("q.safetensors"));
  CHECK(quantizer_of(*qj, "conv3", "aq")->quantizer().initialized());
}

TEST_CASE("qat: smallcnn W4A4 LSQ trains to within 3 points of full precision") {
  TempDir dir;
  TrainConfig c;
  c.model = "smallcnn";
  c.data = "synthetic";
  c.batch = 64;
  c.lr = 0.05;
  c.sched = "cosine";
  c.wd = 5e-4;
  c.seed = 3;
  c.epochs = 3;
  c.limit_train = 4000;
  c.limit_test = 1000;
  c.progress = false;
  c.out = dir.file("fp");
  TrainResult fp = train(c);
  c.out = dir.file("qat");
  c.wq = "lsq:4";
  c.aq = "lsq:4";
  TrainResult q = train(c);
  MESSAGE("synthetic smallcnn, 3 epochs: FP ", fp.final_test_acc, ", W4A4 LSQ ", q.final_test_acc);
  CHECK(fp.final_test_acc > 0.5);
  CHECK(q.final_test_acc >= fp.final_test_acc - 0.03);
  // The run's checkpoint evaluates to the accuracy the run reported.
  LoadedModel l = load_model_checkpoint(c.out + "/model.safetensors");
  CHECK(l.quant.aq == "lsq:4");
  DataOptions dopt;
  dopt.seed = c.seed;
  dopt.limit_train = c.limit_train;
  dopt.limit_test = c.limit_test;
  DataSplit data = load_data("synthetic", dopt);
  EvalResult ev = evaluate(*l.model, data.test, cifar_normalization(data), 256);
  CHECK(ev.acc == doctest::Approx(q.final_test_acc).epsilon(1e-12));
}

TEST_CASE("qat: an interrupted and resumed QAT run ends with identical weights and steps") {
  TempDir dir;
  TrainConfig a;
  a.model = "smallcnn";
  a.batch = 64;
  a.lr = 0.05;
  a.seed = 4;
  a.epochs = 2;
  a.limit_train = 320;
  a.limit_test = 64;
  a.progress = false;
  a.wq = "lsq:3";
  a.aq = "lsq:3";
  a.wq_lr_factor = 0.5;
  a.out = dir.file("full");
  train(a);
  TrainConfig b = a;
  b.out = dir.file("split");
  b.stop_after_epochs = 1;
  train(b);
  TrainConfig r;
  r.resume = b.out + "/model.safetensors";
  r.progress = false;
  train(r);
  SafetensorsFile fa = load_safetensors(a.out + "/model.safetensors");
  SafetensorsFile fb = load_safetensors(b.out + "/model.safetensors");
  REQUIRE(fa.tensors.size() == fb.tensors.size());
  bool has_step = false;
  for (size_t i = 0; i < fa.tensors.size(); ++i) {
    CHECK(fa.tensors[i].first == fb.tensors[i].first);
    has_step = has_step || fa.tensors[i].first == "conv2.wq.step";
    const Tensor& ta = fa.tensors[i].second;
    const Tensor& tb = fb.tensors[i].second;
    REQUIRE(ta.nbytes() == tb.nbytes());
    CHECK_MESSAGE(std::memcmp(ta.raw(), tb.raw(), ta.nbytes()) == 0, fa.tensors[i].first);
  }
  CHECK(has_step);
  CHECK(fb.metadata.count("quant"));
}
