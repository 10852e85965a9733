// Module mechanics and the standard layers: PyTorch state_dict names and order, strict loading,
// train/eval propagation, seeded init (reproducible, order-independent, kaiming statistics) and
// module paths in graph node names.
#include <doctest/doctest.h>

#include <cmath>
#include <sstream>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/layers.h"

using namespace lowbit;

namespace {

// A BasicBlock-like custom module: conv, bn and a Sequential "down" registered in that order.
struct Block : Module {
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1;
  std::shared_ptr<Sequential> down;
  bool seen_mode = true;
  Block() {
    conv1 = register_module("conv1", std::make_shared<Conv2d>(2, 4, 3, 1, 1));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(4));
    auto seq = std::make_shared<Sequential>();
    seq->add(std::make_shared<Conv2d>(2, 4, 1)).add(std::make_shared<BatchNorm2d>(4));
    down = register_module("down", seq);
  }
  Tensor forward(const Tensor& x) override { return add((*bn1)((*conv1)(x)), (*down)(x)); }
  std::string kind() const override { return "Block"; }
  void on_train_mode(bool on) override { seen_mode = on; }
};

// Model with its own parameter and buffer before its children, to check the per-module order.
struct Net : Module {
  Tensor scale, counter;
  std::shared_ptr<Sequential> layer1;
  std::shared_ptr<Linear> fc;
  Net() {
    // The child Sequential is filled before it is registered: paths must still come out right.
    auto seq = std::make_shared<Sequential>();
    seq->add(std::make_shared<Block>());
    layer1 = register_module("layer1", seq);
    scale = register_parameter("scale", Tensor::ones({1}));
    counter = register_buffer("counter", Tensor::zeros({}, DType::i64));
    fc = register_module("fc", std::make_shared<Linear>(3, 2));
  }
  Tensor forward(const Tensor& x) override { return (*fc)(x); }
  std::string kind() const override { return "Net"; }
};

std::vector<std::string> names(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> out;
  for (auto& e : v) out.push_back(e.first);
  return out;
}

}  // namespace

TEST_CASE("module: state_dict names and order follow PyTorch") {
  Net net;
  const std::vector<std::string> expected = {
      "scale",
      "counter",
      "layer1.0.conv1.weight",
      "layer1.0.bn1.weight",
      "layer1.0.bn1.bias",
      "layer1.0.bn1.running_mean",
      "layer1.0.bn1.running_var",
      "layer1.0.bn1.num_batches_tracked",
      "layer1.0.down.0.weight",
      "layer1.0.down.1.weight",
      "layer1.0.down.1.bias",
      "layer1.0.down.1.running_mean",
      "layer1.0.down.1.running_var",
      "layer1.0.down.1.num_batches_tracked",
      "fc.weight",
      "fc.bias",
  };
  auto sd = net.state_dict();
  CHECK(names(sd) == expected);
  // The tensors themselves carry their full names (set when the parent was registered later).
  for (auto& e : sd) CHECK(e.second.name() == e.first);
  CHECK(names(net.named_parameters()) ==
        std::vector<std::string>{"scale", "layer1.0.conv1.weight", "layer1.0.bn1.weight",
                                 "layer1.0.bn1.bias", "layer1.0.down.0.weight",
                                 "layer1.0.down.1.weight", "layer1.0.down.1.bias", "fc.weight",
                                 "fc.bias"});
  CHECK(net.named_buffers().size() == 7);
  CHECK(net.num_parameters() == 1 + 4 * 2 * 9 + 8 + 4 * 2 + 8 + 6 + 2);
  for (auto& p : net.parameters()) CHECK(p.requires_grad());
  CHECK(sd[7].second.dtype() == DType::i64);
  CHECK(sd[7].second.dim() == 0);

  auto mods = net.named_modules();
  std::vector<std::string> mpaths;
  for (auto& m : mods) mpaths.push_back(m.first);
  CHECK(mpaths == std::vector<std::string>{"", "layer1", "layer1.0", "layer1.0.conv1",
                                           "layer1.0.bn1", "layer1.0.down", "layer1.0.down.0",
                                           "layer1.0.down.1", "fc"});
  CHECK(mods[3].second->path() == "layer1.0.conv1");
  CHECK(mods[3].second->node_name("wq") == "layer1.0.conv1/wq");
  CHECK(mods[3].second->kind() == "Conv2d");
  // A sub-module's own state_dict is relative to it, as in PyTorch.
  CHECK(names(mods[5].second->state_dict())[0] == "0.weight");
}

TEST_CASE("module: registration errors") {
  struct Bad : Module {
    Tensor forward(const Tensor& x) override { return x; }
    std::string kind() const override { return "Bad"; }
    void twice() {
      register_parameter("w", Tensor::ones({1}));
      register_parameter("w", Tensor::ones({1}));
    }
    void dotted() { register_buffer("a.b", Tensor::ones({1})); }
    void null_child() { register_module("c", std::shared_ptr<Module>()); }
  };
  Bad b;
  CHECK_THROWS_WITH_AS(b.twice(), doctest::Contains("'w' registered twice"), Error);
  CHECK_THROWS_WITH_AS(b.dotted(), doctest::Contains("contains '.'"), Error);
  CHECK_THROWS_WITH_AS(b.null_child(), doctest::Contains("is null"), Error);
}

TEST_CASE("module: load_state_dict copies values and names what is wrong") {
  Net a, b;
  a.init(1);
  b.init(2);
  CHECK(a.fc->weight.to_vector<float>() != b.fc->weight.to_vector<float>());
  b.load_state_dict(a.state_dict());
  CHECK(a.fc->weight.to_vector<float>() == b.fc->weight.to_vector<float>());
  CHECK(a.layer1->at(0)->state_dict()[0].second.to_vector<float>() ==
        b.layer1->at(0)->state_dict()[0].second.to_vector<float>());
  // Values are copied, not shared.
  CHECK_FALSE(a.fc->weight.same(b.fc->weight));

  auto sd = a.state_dict();
  auto missing = sd;
  missing.erase(missing.begin() + 2);
  CHECK_THROWS_WITH_AS(b.load_state_dict(missing),
                       doctest::Contains("missing key 'layer1.0.conv1.weight'"), Error);
  b.load_state_dict(missing, /*strict=*/false);  // fine when not strict

  auto extra = sd;
  extra.push_back({"fc.extra", Tensor::ones({1})});
  CHECK_THROWS_WITH_AS(b.load_state_dict(extra), doctest::Contains("unexpected key 'fc.extra'"),
                       Error);
  b.load_state_dict(extra, false);

  auto shape = sd;
  shape.back().second = Tensor::zeros({3});
  CHECK_THROWS_WITH_AS(b.load_state_dict(shape, false),
                       doctest::Contains("shape mismatch for 'fc.bias'"), Error);
  auto dtype = sd;
  dtype.back().second = Tensor::zeros({2}, DType::f64);
  CHECK_THROWS_WITH_AS(b.load_state_dict(dtype), doctest::Contains("dtype mismatch for 'fc.bias'"),
                       Error);

  // A failed load changes nothing.
  b.init(3);
  auto before = b.fc->weight.to_vector<float>();
  auto bad = a.state_dict();
  bad.back().second = Tensor::zeros({5});
  CHECK_THROWS_AS(b.load_state_dict(bad), Error);
  CHECK(b.fc->weight.to_vector<float>() == before);
}

TEST_CASE("module: train/eval propagates to every module") {
  Net net;
  auto blk = std::static_pointer_cast<Block>(net.layer1->at(0));
  net.eval();
  for (auto& m : net.named_modules()) CHECK_FALSE(m.second->training());
  CHECK_FALSE(blk->seen_mode);
  net.train();
  for (auto& m : net.named_modules()) CHECK(m.second->training());
  CHECK(blk->seen_mode);
}

TEST_CASE("init: reproducible from the seed, different across seeds, order-independent") {
  Net a, b;
  a.init(7);
  b.init(7);
  auto sa = a.state_dict(), sb = b.state_dict();
  for (size_t i = 0; i < sa.size(); ++i)
    CHECK(sa[i].second.to_vector<double>() == sb[i].second.to_vector<double>());
  b.init(8);
  CHECK(a.fc->weight.to_vector<float>() != b.fc->weight.to_vector<float>());
  CHECK(a.layer1->at(0)->state_dict()[0].second.to_vector<float>() !=
        b.layer1->at(0)->state_dict()[0].second.to_vector<float>());

  // Same tensor name built another way (conv alone inside a Sequential named like the Net's
  // path) gets the same weights: the stream is keyed by the full name.
  struct Other : Module {
    std::shared_ptr<Linear> fc;
    Other() {
      register_module("pre", std::make_shared<Linear>(5, 5));
      fc = register_module("fc", std::make_shared<Linear>(3, 2));
    }
    Tensor forward(const Tensor& x) override { return x; }
    std::string kind() const override { return "Other"; }
  } o;
  o.init(7);
  CHECK(o.fc->weight.to_vector<float>() == a.fc->weight.to_vector<float>());
  CHECK(o.fc->bias.to_vector<float>() == a.fc->bias.to_vector<float>());
  // BatchNorm resets to the identity transform.
  auto bn = std::static_pointer_cast<Block>(a.layer1->at(0))->bn1;
  CHECK(bn->weight.to_vector<float>() == std::vector<float>(4, 1.f));
  CHECK(bn->running_var.to_vector<float>() == std::vector<float>(4, 1.f));
  CHECK(bn->running_mean.to_vector<float>() == std::vector<float>(4, 0.f));
}

TEST_CASE("init: kaiming normal fan_out and Linear's uniform bounds") {
  // fan_out = 64 * 3 * 3 = 576, whatever the groups: std = sqrt(2/576).
  Conv2d conv(64, 64, 3, 1, 1, /*groups=*/4);
  conv.init(11);
  auto w = conv.weight.to_vector<double>();
  CHECK(w.size() == 64 * 16 * 9);
  double m = 0, v = 0;
  for (double x : w) m += x;
  m /= (double)w.size();
  for (double x : w) v += (x - m) * (x - m);
  const double sd = std::sqrt(v / (double)w.size()), expect = std::sqrt(2.0 / 576);
  CHECK(std::fabs(m) < 4 * expect / std::sqrt((double)w.size()));
  CHECK(sd == doctest::Approx(expect).epsilon(0.03));  // n = 9216: sd's relative error ~0.7%

  Linear fc(400, 300);
  fc.init(5);
  const double bound = 1.0 / 20;
  auto lw = fc.weight.to_vector<double>();
  double lo = 1, hi = -1, s2 = 0;
  for (double x : lw) lo = std::min(lo, x), hi = std::max(hi, x), s2 += x * x;
  CHECK(lo >= -bound);
  CHECK(hi <= bound);
  CHECK(lo < -0.99 * bound);
  CHECK(hi > 0.99 * bound);
  CHECK(std::sqrt(s2 / (double)lw.size()) == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.02));
  for (double x : fc.bias.to_vector<double>()) CHECK(std::fabs(x) <= bound);
}

TEST_CASE("layers: forward names graph nodes with the module path") {
  Sequential seq;
  seq.add(std::make_shared<Linear>(3, 4))
      .add(std::make_shared<ReLU>())
      .add(std::make_shared<Dropout>(0.5, 1))
      .add(std::make_shared<Linear>(4, 2));
  struct Top : Module {
    std::shared_ptr<Sequential> features;
    explicit Top(std::shared_ptr<Sequential> s) { features = register_module("features", s); }
    Tensor forward(const Tensor& x) override { return (*features)(x); }
    std::string kind() const override { return "Top"; }
  };
  auto seqp = std::shared_ptr<Sequential>(&seq, [](Sequential*) {});
  Top top(seqp);
  Tensor x = Tensor::ones({2, 3});
  Tensor y = top(x);
  CHECK(y.shape() == Shape{2, 2});
  std::ostringstream dot;
  write_dot(sum(y), dot);
  for (const char* n : {"features.0", "features.1", "features.2", "features.3",
                        "features.0.weight", "features.3.bias"})
    CHECK_MESSAGE(dot.str().find(std::string("\"") + n) != std::string::npos, n);

  // In eval, dropout passes its input through and must not rename the ReLU's node.
  top.eval();
  Tensor y2 = (*seq.at(2))((*seq.at(1))((*seq.at(0))(x)));
  CHECK(y2.node()->name == "features.1");
  top.train();
  // Dropout: a fresh mask per training call, reproducible from the seed.
  Dropout d1(0.5, 3), d2(0.5, 3);
  Tensor big = Tensor::ones({1000});
  auto m1 = d1(big).to_vector<float>(), m1b = d1(big).to_vector<float>();
  auto m2 = d2(big).to_vector<float>();
  CHECK(m1 == m2);
  CHECK(m1 != m1b);
  int kept = 0;
  for (float v : m1) kept += v != 0;
  CHECK(kept > 400);
  CHECK(kept < 600);
}

TEST_CASE("layers: BatchNorm2d counts batches in training only; describe and checks") {
  BatchNorm2d bn(3);
  Tensor x = Tensor::ones({2, 3, 2, 2});
  bn(x);
  bn(x);
  CHECK(bn.num_batches_tracked.item<int64_t>() == 2);
  bn.eval();
  bn(x);
  CHECK(bn.num_batches_tracked.item<int64_t>() == 2);
  CHECK(Conv2d(16, 32, 3, 2, 1).describe() == "16->32, k3 s2 p1");
  CHECK(Linear(8, 4, false).describe() == "8->4, no bias");
  CHECK(Conv2d(8, 8, 3, 1, 1, 8, true).bias.defined());
  CHECK(Conv2d(8, 8, 3, 1, 1, 8).weight.shape() == Shape{8, 1, 3, 3});
  CHECK_THROWS_WITH_AS(Conv2d(6, 8, 3, 1, 1, 4), doctest::Contains("groups 4"), Error);
  CHECK_THROWS_WITH_AS(MaxPool2d(2, 2, 2), doctest::Contains("padding 2"), Error);
  CHECK_THROWS_WITH_AS(BatchNorm2d(0), doctest::Contains("channels must be > 0"), Error);
}
