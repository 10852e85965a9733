// End to end: the small CNN learns the synthetic set; an interrupted and resumed run ends with
// exactly the weights of an uninterrupted one; eval of the saved checkpoint matches the run;
// --conv picks the convolution kernels and is recorded.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/cpu/conv_winograd.h"
#include "core/safetensors.h"
#include "tests/temp_dir.h"
#include "tools/trainer.h"

using namespace lowbit;
using lowbit::test::TempDir;

namespace {
TrainConfig small_config(const std::string& out) {
  TrainConfig c;
  c.model = "smallcnn";
  c.data = "synthetic";
  c.batch = 64;
  c.lr = 0.05;
  c.sched = "cosine";
  c.wd = 5e-4;
  c.seed = 3;
  c.out = out;
  c.progress = false;
  return c;
}
}  // namespace

TEST_CASE("train: smallcnn on the synthetic set reaches far above chance") {
  TempDir tmp;
  const std::string dir = tmp.path();
  TrainConfig c = small_config(dir + "/run");
  c.epochs = 4;
  c.lr = 0.1;
  c.limit_train = 4000;
  c.limit_test = 1000;
  TrainResult r = train(c);
  MESSAGE("synthetic smallcnn test accuracy after 4 epochs: ", r.final_test_acc);
  CHECK(r.final_test_acc > 0.5);  // chance is 0.1
  // The checkpoint reloads and evaluates to the same accuracy as the run reported.
  LoadedModel m = load_model_checkpoint(c.out + "/model.safetensors");
  CHECK(m.model_name == "smallcnn");
  // As `lowbit eval` does it: the train split is not read (one image), the checkpoint's recorded
  // normalisation is used.
  REQUIRE(m.has_norm);
  DataOptions dopt;
  dopt.seed = c.seed;
  dopt.limit_train = 1;
  dopt.limit_test = c.limit_test;
  DataSplit data = load_data("synthetic", dopt);
  EvalResult ev = evaluate(*m.model, data.test, eval_normalization(m, data), 256);
  CHECK(ev.acc == doctest::Approx(r.final_test_acc).epsilon(1e-12));
  std::ifstream summary(c.out + "/summary.json");
  CHECK(summary.good());
  std::ifstream metrics(c.out + "/metrics.jsonl");
  int lines = 0;
  for (std::string l; std::getline(metrics, l);) ++lines;
  CHECK(lines == 8);  // one train and one eval line per epoch
}

TEST_CASE("train: interrupted and resumed run ends with identical weights") {
  TempDir tmp;
  const std::string dir = tmp.path();
  TrainConfig a = small_config(dir + "/full");
  a.epochs = 2;
  a.limit_train = 640;
  a.limit_test = 128;
  train(a);
  TrainConfig b = a;
  b.out = dir + "/split";
  b.stop_after_epochs = 1;
  train(b);
  TrainConfig r = small_config("ignored");
  r.resume = b.out + "/model.safetensors";
  const TrainResult rr = train(r);
  CHECK(rr.out_dir == b.out);  // the resumed run's own directory, not the ignored --out
  SafetensorsFile fa = load_safetensors(a.out + "/model.safetensors");
  SafetensorsFile fb = load_safetensors(b.out + "/model.safetensors");
  REQUIRE(fa.tensors.size() == fb.tensors.size());
  for (size_t i = 0; i < fa.tensors.size(); ++i) {
    CHECK(fa.tensors[i].first == fb.tensors[i].first);
    const Tensor& ta = fa.tensors[i].second;
    const Tensor& tb = fb.tensors[i].second;
    REQUIRE(ta.nbytes() == tb.nbytes());
    CHECK_MESSAGE(std::memcmp(ta.raw(), tb.raw(), ta.nbytes()) == 0, fa.tensors[i].first);
  }
}

TEST_CASE("train: bad settings are clear errors") {
  TrainConfig c = small_config("/tmp/lowbit-never");
  c.epochs = 1;
  c.model = "resnet7";
  CHECK_THROWS_WITH_AS(train(c), doctest::Contains("resnet7"), Error);
  c.model = "smallcnn";
  c.sched = "zigzag";
  c.limit_train = 64;
  c.limit_test = 64;
  CHECK_THROWS_WITH_AS(train(c), doctest::Contains("zigzag"), Error);
  c.sched = "cosine";
  c.conv = "fft";
  CHECK_THROWS_WITH_AS(train(c), doctest::Contains("--conv: expected winograd, winograd2, winograd4 or direct, got 'fft'"),
                       Error);
  CHECK(conv_winograd_enabled());  // a failed run leaves the switch as it was
  c.conv = "winograd";
  c.data = "/nonexistent/cifar";
  CHECK_THROWS_WITH_AS(train(c), doctest::Contains("/nonexistent/cifar"), Error);
}

TEST_CASE("train: --conv direct, winograd2 and winograd train the same recipe to nearby losses") {
  // ResNet-20's 3x3 layers take Winograd by default (4x4 tiles at 32x32, 16x16 and 8x8);
  // --conv winograd2 keeps 2x2 tiles and --conv direct the direct kernels. They round
  // differently, so one step apart the weights differ in the last bits and the losses stay close;
  // the choice is recorded with the run's settings.
  TempDir tmp;
  TrainConfig c = small_config(tmp.path() + "/wino");
  c.model = "resnet20";
  c.epochs = 1;
  c.batch = 32;
  c.limit_train = 128;
  c.limit_test = 64;
  const TrainResult w = train(c);
  c.out = tmp.path() + "/wino2";
  c.conv = "winograd2";
  const TrainResult w2 = train(c);
  CHECK(conv_winograd_tile() == 0);  // put back after the run
  c.out = tmp.path() + "/direct";
  c.conv = "direct";
  const TrainResult d = train(c);
  CHECK(conv_winograd_enabled());  // put back after the run
  ConvGeom layer;  // ResNet-20's first stage
  layer.N = 32, layer.C = layer.O = 16, layer.H = layer.W = layer.OH = layer.OW = 32;
  layer.KH = layer.KW = 3, layer.ph = layer.pw = 1;
  if (conv_winograd_preferred(layer)) {  // (a build without vector kernels has no Winograd)
    CHECK(w.final_train_loss != d.final_train_loss);  // another kernel really ran
    CHECK(w.final_train_loss != w2.final_train_loss);
  }
  CHECK(std::fabs(w.final_train_loss - d.final_train_loss) < 1e-3 * (1 + w.final_train_loss));
  CHECK(std::fabs(w.final_train_loss - w2.final_train_loss) < 1e-3 * (1 + w.final_train_loss));
  std::ifstream summary(c.out + "/summary.json");
  const nlohmann::json j = nlohmann::json::parse(summary);
  CHECK(j.at("config").at("conv") == "direct");
}
