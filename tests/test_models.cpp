// The model zoo: exact parameter counts (derived by formula below, and the published figures),
// output shapes, ResNet-20's MACs, state_dict names of the reference PyTorch definitions, the
// option-A shortcut's values and gradient, and the errors of make_model.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <map>

#include "core/autograd.h"
#include "core/rng.h"
#include "models/models.h"
#include "models/resnet_cifar.h"
#include "tests/run_cli.h"

using namespace lowbit;
using lowbit::test::run_lowbit;

namespace {

// Every model of the zoo is built once per run, without the seeded init: drawing the weights
// (done once by the layers' constructors anyway) is what dominates the time of these tests.
Module& zoo(const std::string& name) {
  static std::map<std::string, ModelPtr> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, build_model(name, 10)).first;
  return *it->second;
}
int64_t count(const std::string& name) { return zoo(name).num_parameters(); }

std::map<std::string, Shape> state_shapes(const Module& m) {
  std::map<std::string, Shape> out;
  for (auto& [name, t] : m.state_dict()) out[name] = t.shape();
  return out;
}

Tensor random_input(const Shape& s, uint64_t seed) {
  Tensor x = Tensor::empty(s);
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] = (float)(2 * rng_uniform(seed, 7, (uint64_t)i) - 1);
  return x;
}

// ---- parameter counts by formula (conv: out*in/groups*k*k, no bias; BN: 2*C; linear: out*in+out)
int64_t conv(int64_t in, int64_t out, int64_t k, int64_t groups = 1) { return out * (in / groups) * k * k; }
int64_t bn(int64_t c) { return 2 * c; }
int64_t fc(int64_t in, int64_t out) { return out * in + out; }

// He et al. CIFAR ResNet, n blocks per stage; option B adds 1x1 conv + BN on the 2 changing shortcuts.
int64_t resnet_cifar_params(int64_t n, bool option_b, int64_t classes) {
  int64_t p = conv(3, 16, 3) + bn(16);
  int64_t in = 16;
  for (int64_t w : {16, 32, 64})
    for (int64_t b = 0; b < n; ++b) {
      p += conv(in, w, 3) + bn(w) + conv(w, w, 3) + bn(w);
      if (option_b && in != w) p += conv(in, w, 1) + bn(w);
      in = w;
    }
  return p + fc(64, classes);
}

int64_t resnet18_params(int64_t classes) {
  int64_t p = conv(3, 64, 3) + bn(64), in = 64;
  for (int64_t w : {64, 128, 256, 512})
    for (int b = 0; b < 2; ++b) {
      p += conv(in, w, 3) + bn(w) + conv(w, w, 3) + bn(w);
      if (in != w) p += conv(in, w, 1) + bn(w);
      in = w;
    }
  return p + fc(512, classes);
}

// xternalz WRN: per block BN(in), conv3x3 in->out, BN(out), conv3x3 out->out, 1x1 conv if in != out.
int64_t wrn_params(int64_t n, int64_t k, int64_t classes) {
  int64_t p = conv(3, 16, 3), in = 16;
  for (int64_t w : {16 * k, 32 * k, 64 * k})
    for (int64_t b = 0; b < n; ++b) {
      p += bn(in) + conv(in, w, 3) + bn(w) + conv(w, w, 3) + (in != w ? conv(in, w, 1) : 0);
      in = w;
    }
  return p + bn(64 * k) + fc(64 * k, classes);
}

// kuangliu MobileNetV2: (expansion, out, blocks, stride) with the CIFAR strides.
int64_t mobilenetv2_params(int64_t classes) {
  const int64_t cfg[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 1}, {6, 32, 3, 2}, {6, 64, 4, 2},
                             {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  int64_t p = conv(3, 32, 3) + bn(32), in = 32;
  for (auto& s : cfg)
    for (int64_t b = 0; b < s[2]; ++b) {
      const int64_t planes = s[0] * in, out = s[1], stride = b == 0 ? s[3] : 1;
      p += conv(in, planes, 1) + bn(planes) + conv(planes, planes, 3, planes) + bn(planes) +
           conv(planes, out, 1) + bn(out);
      if (stride == 1 && in != out) p += conv(in, out, 1) + bn(out);
      in = out;
    }
  return p + conv(320, 1280, 1) + bn(1280) + fc(1280, classes);
}

// kuangliu ShuffleNetV2: per stage one down unit and 3/7/3 basic units.
int64_t shufflenetv2_params(const std::vector<int64_t>& w, int64_t classes) {
  int64_t p = conv(3, 24, 3) + bn(24), in = 24;
  const int64_t basic[3] = {3, 7, 3};
  for (int s = 0; s < 3; ++s) {
    const int64_t mid = w[s] / 2;
    p += conv(in, in, 3, in) + bn(in) + conv(in, mid, 1) + bn(mid);                 // left
    p += conv(in, mid, 1) + bn(mid) + conv(mid, mid, 3, mid) + bn(mid) + conv(mid, mid, 1) + bn(mid);
    p += basic[s] * (conv(mid, mid, 1) + bn(mid) + conv(mid, mid, 3, mid) + bn(mid) + conv(mid, mid, 1) + bn(mid));
    in = w[s];
  }
  return p + conv(in, w[3], 1) + bn(w[3]) + fc(w[3], classes);
}

}  // namespace

TEST_CASE("models: parameter counts match the formulas and the published figures") {
  // Published: ResNet-20 0.27 M (269,722 with option A), ResNet-56 0.85 M, ResNet-110 1.7 M.
  CHECK(resnet_cifar_params(3, false, 10) == 269722);
  CHECK(count("resnet20") == 269722);
  CHECK(count("resnet32") == resnet_cifar_params(5, false, 10));
  CHECK(count("resnet44") == resnet_cifar_params(7, false, 10));
  CHECK(count("resnet56") == 853018);
  CHECK(resnet_cifar_params(9, false, 10) == 853018);
  CHECK(count("resnet110") == 1727962);
  CHECK(resnet_cifar_params(18, false, 10) == 1727962);
  // Option B: + 16->32 (512 + 64) and 32->64 (2048 + 128) shortcut conv + BN = 2,752.
  CHECK(count("resnet20b") == 269722 + 2752);
  for (const char* name : {"resnet32b", "resnet44b", "resnet56b", "resnet110b"})
    CHECK(count(name) == count(std::string(name).substr(0, std::string(name).size() - 1)) + 2752);
  CHECK(build_model("resnet32b", 100)->num_parameters() == resnet_cifar_params(5, true, 100));
  // ResNet-18 (kuangliu): 11,173,962, the published 11.17 M.
  CHECK(count("resnet18") == 11173962);
  CHECK(resnet18_params(10) == 11173962);
  // WRN-40-4: 8,949,210 (published 8.9 M). WRN-28-10: 36,479,194 (published 36.5 M), checked by
  // the formula only: building it draws 36 M weights, and its code path is wrn-40-4's.
  CHECK(count("wrn-40-4") == 8949210);
  CHECK(wrn_params(6, 4, 10) == 8949210);
  CHECK(wrn_params(4, 10, 10) == 36479194);
  CHECK(build_model("wrn-16-2", 100)->num_parameters() == wrn_params(2, 2, 100));
  // MobileNetV2 (kuangliu, CIFAR): 2,296,922 with 10 classes.
  CHECK(count("mobilenetv2") == 2296922);
  CHECK(mobilenetv2_params(10) == 2296922);
  // ShuffleNetV2 (kuangliu's structure): 1.0x 1,263,854; 0.5x 352,042; 1.5x 2,488,874;
  // 2.0x (paper widths) 5,365,486.
  CHECK(count("shufflenetv2") == 1263854);
  CHECK(count("shufflenetv2_1.0") == 1263854);
  CHECK(shufflenetv2_params({116, 232, 464, 1024}, 10) == 1263854);
  CHECK(count("shufflenetv2_0.5") == 352042);
  CHECK(shufflenetv2_params({48, 96, 192, 1024}, 10) == 352042);
  CHECK(count("shufflenetv2_1.5") == 2488874);
  CHECK(shufflenetv2_params({176, 352, 704, 1024}, 10) == 2488874);
  // 2.0x by the formula only (5.4 M weights to draw; its code path is 1.5x's).
  CHECK(shufflenetv2_params({244, 488, 976, 2048}, 10) == 5365486);
  // smallcnn: 432 + 32 + 4,608 + 64 + 18,432 + 128 + 650.
  CHECK(count("smallcnn") == 24346);
}

TEST_CASE("models: every model maps a batch of 2 to (2, classes)") {
  // The heavy models run on 16x16 inputs (all of them end in a global average pool) to keep the
  // suite fast; the light ones on CIFAR's 32x32. wrn-28-10 and shufflenetv2_2.0 are not built
  // (drawing their weights takes seconds): they are wrn-40-4's and shufflenetv2_1.5's code with
  // other numbers (see the parameter test).
  const std::map<std::string, int64_t> small_input = {
      {"resnet110", 16}, {"resnet110b", 16}, {"resnet18", 16}, {"wrn-40-4", 16},
      {"mobilenetv2", 16}};
  NoGradGuard ng;
  for (const std::string& name : model_names()) {
    if (name == "wrn-28-10" || name == "shufflenetv2_2.0") continue;
    CAPTURE(name);
    Module& m = zoo(name);
    const int64_t hw = small_input.count(name) ? small_input.at(name) : 32;
    m.eval();  // no running-statistics updates in the cached models
    Tensor y = m.forward(random_input({2, 3, hw, hw}, 3));
    m.train();
    CHECK(y.shape() == Shape{2, 10});
  }
  // The class count reaches the last layer.
  Tensor y = make_model("smallcnn", 7, 1)->forward(random_input({2, 3, 32, 32}, 4));
  CHECK(y.shape() == Shape{2, 7});
}

TEST_CASE("models: the same seed gives the same weights, another seed others") {
  ModelPtr a = make_model("resnet20", 10, 5), b = make_model("resnet20", 10, 5), c = make_model("resnet20", 10, 6);
  auto sa = a->state_dict(), sb = b->state_dict(), sc = c->state_dict();
  REQUIRE(sa.size() == sb.size());
  REQUIRE(sa[0].first == "conv1.weight");
  CHECK(sa[0].second.to_vector<float>() == sb[0].second.to_vector<float>());
  CHECK(sa[0].second.to_vector<float>() != sc[0].second.to_vector<float>());
}

TEST_CASE("models: ResNet-20 layer table, MACs ~40.6 M per image") {
  ModelPtr m = make_model("resnet20", 10, 0);
  std::vector<LayerInfo> rows = model_info(*m);
  // 19 convs + 19 BNs + the pool + the linear, in execution order.
  REQUIRE(rows.size() == 40);
  CHECK(rows[0].name == "conv1");
  CHECK(rows[0].kind == "Conv2d");
  CHECK(rows[0].out_shape == Shape{1, 16, 32, 32});
  CHECK(rows[0].params == 432);
  CHECK(rows[0].macs == 16 * 32 * 32 * 27);
  CHECK(rows[1].name == "bn1");
  CHECK(rows[2].name == "layer1.0.conv1");
  CHECK(rows.back().name == "linear");
  CHECK(rows.back().out_shape == Shape{1, 10});
  CHECK(rows.back().macs == 640);
  int64_t params = 0, macs = 0;
  for (const LayerInfo& r : rows) {
    params += r.params;
    macs += r.macs;
    if (r.name == "layer3.0.conv1") {
      CHECK(r.out_shape == Shape{1, 64, 8, 8});
      CHECK(r.macs == 64 * 8 * 8 * 32 * 9);
    }
    if (r.name == "avgpool") CHECK(r.out_shape == Shape{1, 64});
  }
  CHECK(params == 269722);
  // Convs: 442,368 + 6 x 2,359,296 + 2 x (1,179,648 + 5 x 2,359,296); linear 640.
  CHECK(macs == 40551040);
  CHECK(std::abs(macs - 40.6e6) / 40.6e6 < 0.01);
  const std::string table = format_model_info(rows);
  CHECK(table.find("layer3.2.bn2") != std::string::npos);
  CHECK(table.find("40,551,040") != std::string::npos);
  CHECK(table.find("269,722") != std::string::npos);
  CHECK(m->training());  // model_info restores the mode

  // Option B lists the shortcut conv and BN, and the grouped convs of MobileNetV2 count C/groups.
  ModelPtr b = make_model("resnet20b", 10, 0);
  bool found = false;
  for (const LayerInfo& r : model_info(*b))
    if (r.name == "layer2.0.shortcut.0") {
      found = true;
      CHECK(r.out_shape == Shape{1, 32, 16, 16});
      CHECK(r.macs == 32 * 16 * 16 * 16);
    }
  CHECK(found);
}

TEST_CASE("models: state_dict names follow the reference PyTorch definitions") {
  auto r20 = state_shapes(zoo("resnet20"));  // akamaster/pytorch_resnet_cifar10
  CHECK(r20.size() == 19 + 19 * 5 + 2);  // conv weights, BN (weight, bias, 2 stats, count), linear
  CHECK(r20.at("layer1.0.conv1.weight") == Shape{16, 16, 3, 3});
  CHECK(r20.at("layer3.2.bn2.running_var") == Shape{64});
  CHECK(r20.at("linear.bias") == Shape{10});
  CHECK(r20.count("bn1.num_batches_tracked") == 1);
  CHECK(r20.count("layer2.0.shortcut.0.weight") == 0);  // option A has no parameters
  auto order = zoo("resnet20").state_dict();
  CHECK(order[0].first == "conv1.weight");
  CHECK(order[1].first == "bn1.weight");
  CHECK(order.back().first == "linear.bias");

  auto r20b = state_shapes(zoo("resnet20b"));
  CHECK(r20b.at("layer2.0.shortcut.0.weight") == Shape{32, 16, 1, 1});
  CHECK(r20b.at("layer3.0.shortcut.1.running_mean") == Shape{64});
  CHECK(r20b.count("layer1.0.shortcut.0.weight") == 0);

  auto r18 = state_shapes(zoo("resnet18"));  // kuangliu/pytorch-cifar
  CHECK(r18.at("layer4.1.bn2.weight") == Shape{512});
  CHECK(r18.at("layer2.0.shortcut.0.weight") == Shape{128, 64, 1, 1});
  CHECK(r18.at("linear.weight") == Shape{10, 512});

  auto shn = state_shapes(zoo("shufflenetv2"));  // kuangliu/pytorch-cifar
  CHECK(shn.at("layer1.0.conv1.weight") == Shape{24, 1, 3, 3});
  CHECK(shn.at("layer1.0.conv5.weight") == Shape{58, 58, 1, 1});
  CHECK(shn.at("layer2.7.bn3.running_var") == Shape{116});
  CHECK(shn.count("layer2.8.conv1.weight") == 0);
  CHECK(shn.at("conv2.weight") == Shape{1024, 464, 1, 1});
  CHECK(shn.at("linear.weight") == Shape{10, 1024});

  auto mbn = state_shapes(zoo("mobilenetv2"));  // kuangliu/pytorch-cifar
  CHECK(mbn.at("layers.0.shortcut.0.weight") == Shape{16, 32, 1, 1});
  CHECK(mbn.at("layers.16.conv3.weight") == Shape{320, 960, 1, 1});
  CHECK(mbn.at("layers.1.conv2.weight") == Shape{96, 1, 3, 3});
  CHECK(mbn.count("layers.2.shortcut.0.weight") == 0);
  CHECK(mbn.at("bn2.running_mean") == Shape{1280});

  auto wrn = state_shapes(zoo("wrn-40-4"));  // xternalz/WideResNet-pytorch
  CHECK(wrn.at("block1.layer.0.convShortcut.weight") == Shape{64, 16, 1, 1});
  CHECK(wrn.count("block1.layer.1.convShortcut.weight") == 0);
  CHECK(wrn.at("block3.layer.5.bn2.running_mean") == Shape{256});
  CHECK(wrn.at("bn1.weight") == Shape{256});
  CHECK(wrn.at("fc.weight") == Shape{10, 256});
}

TEST_CASE("models: option A shortcut subsamples and zero-pads, and passes the gradient") {
  // With conv2's weight zero, bn2 (eval, fresh statistics) outputs 0, so the block is
  // relu(shortcut(x)): for x >= 0 exactly the shortcut.
  BasicBlock block(4, 8, 2, Shortcut::A);
  block.init(1);
  block.eval();
  for (auto& [name, t] : block.named_parameters())
    if (name == "conv2.weight") t.fill(0);
  Tensor x = random_input({1, 4, 4, 4}, 9);
  float* px = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) px[i] = std::abs(px[i]) + 0.1f;
  x.set_requires_grad(true);
  Tensor y = block.forward(x);
  REQUIRE(y.shape() == Shape{1, 8, 2, 2});
  std::vector<float> v = y.to_vector<float>(), xv = x.to_vector<float>();
  for (int64_t c = 0; c < 8; ++c)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t w = 0; w < 2; ++w) {
        const float expect = (c < 2 || c >= 6) ? 0.f : xv[((c - 2) * 4 + 2 * h) * 4 + 2 * w];
        CHECK(v[(c * 2 + h) * 2 + w] == doctest::Approx(expect).epsilon(1e-6));
      }
  // d sum(y) / dx: 1 at the subsampled positions (all kept: y > 0 there), 0 elsewhere (the conv
  // path is cut by conv2's zero weight).
  backward(sum(y));
  std::vector<float> g = x.grad().to_vector<float>();
  for (int64_t i = 0; i < 64; ++i) {
    const int64_t h = (i / 4) % 4, w = i % 4;
    CHECK(g[i] == doctest::Approx((h % 2 == 0 && w % 2 == 0) ? 1.0 : 0.0));
  }
}

TEST_CASE("models: errors name the problem") {
  CHECK_THROWS_WITH_AS(make_model("resnet21", 10, 0), doctest::Contains("resnet20, resnet32"), Error);
  CHECK_THROWS_WITH_AS(make_model("wrn-40-x", 10, 0), doctest::Contains("unknown model"), Error);
  CHECK_THROWS_WITH_AS(make_model("wrn-41-4", 10, 0), doctest::Contains("6n+4"), Error);
  CHECK_THROWS_WITH_AS(make_model("resnet20", 0, 0), doctest::Contains("num_classes"), Error);
  CHECK_THROWS_WITH_AS(BasicBlock(16, 48, 2, Shortcut::A), doctest::Contains("option A"), Error);
  ModelPtr m = make_model("smallcnn", 10, 0);
  NoGradGuard ng;
  CHECK_THROWS_WITH_AS(model_info(*m), doctest::Contains("grad mode"), Error);
}

TEST_CASE("models: lowbit info prints the layer table and rejects unknown models") {
  const char* bin = std::getenv("LOWBIT_BIN");  // set by `make test`
  if (!bin) {
    MESSAGE("LOWBIT_BIN not set (run through make test): skipping the command-line check");
    return;
  }
  auto run = [&](const std::string& args, int& status) { return run_lowbit(bin, args, status); };
  int status = 0;
  std::string out = run("info --model resnet20", status);
  CHECK(status == 0);
  CHECK(out.find("layer2.0.conv1") != std::string::npos);
  CHECK(out.find("(1, 32, 16, 16)") != std::string::npos);
  CHECK(out.find("40,551,040") != std::string::npos);
  out = run("info --model resnet20b --state-dict", status);
  CHECK(status == 0);
  CHECK(out.find("layer2.0.shortcut.0.weight (32, 16, 1, 1)") != std::string::npos);
  out = run("info --model resnet21", status);
  CHECK(status != 0);
  CHECK(out.find("unknown model") != std::string::npos);
}
