// `lowbit bench --model M --batch B --iters N [--wq lsq:4 --aq lsq:4]`: median time of a training
// step (forward, backward, SGD update; with quantizers, the real QAT step of `lowbit train`) and of
// an eval forward on random data, after warm-up; images/s, achieved GFLOP/s (from the model's
// full-precision MACs: a training step counts 3x the forward) and peak resident memory.
// --device cuda times the GPU build's step (the clock is read after the stream drained).
// --profile then runs --iters more training steps under an OpProfiler (core/profiler.h) and prints
// where their time goes per op kind, forward and backward, the optimizer update and the rest.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "core/cuda/kernels.h"
#include "core/parallel.h"
#include "core/profiler.h"
#include "core/rng.h"
#include "layers/optim.h"
#include "layers/quant_module.h"
#include "models/models.h"
#include "quant/quantize_model.h"
#include "quant/quantizer.h"
#include "tools/commands.h"
#include "tools/conv_option.h"
#include "tools/quant_flags.h"
#include "tools/trainer.h"
#include "tools/device_option.h"
#include "tools/profile_report.h"

namespace lowbit {

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

int cmd_bench(int argc, char** argv) {
  CLI::App app{"Time training and evaluation steps of a model on random data", "lowbit bench"};
  std::string model_name = "resnet20";
  int64_t batch = 128, iters = 20, warmup = 3, classes = 10;
  int threads = 0;
  bool json = false, deterministic = false, profile = false;
  std::string device = "cpu";
  app.add_option("--model", model_name)->capture_default_str();
  app.add_option("--device", device, "cpu | cuda (a GPU build: make GPU=1)")->capture_default_str();
  app.add_flag("--deterministic", deterministic, "cuda: only deterministic cuDNN algorithms");
  app.add_option("--batch", batch)->capture_default_str();
  app.add_option("--iters", iters, "timed iterations")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed iterations first")->capture_default_str();
  app.add_option("--classes", classes)->capture_default_str();
  app.add_option("--threads", threads, "0: all cores")->capture_default_str();
  std::string conv = "winograd";
  add_conv_option(app, conv);
  QuantConfig quant;  // the flags, defaults and checks of `lowbit train`
  add_quant_flags(app, quant.wq, quant.aq, quant.first_last);
  app.add_flag("--json", json, "print the result as JSON");
  app.add_flag("--profile", profile,
               "then time --iters more training steps per op kind (forward, backward), optimizer "
               "update and the rest");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  LB_CHECK(batch >= 1 && iters >= 1 && warmup >= 0, "bench: --batch and --iters must be >= 1");
  check_quant_config(quant);  // a bad spec fails before any work
  set_num_threads(threads);
  apply_conv_option(conv);
  const Device dev = select_device(device, deterministic);
  auto model = make_model(model_name, classes, 1);
  int64_t macs = 0;  // before quantizing: model_info's forward of zeros would initialise the steps
  for (const LayerInfo& l : model_info(*model)) macs += l.macs;
  quantize_model(*model, quant);
  const auto quantizers = list_quantizers(*model);

  Tensor x = Tensor::empty({batch, 3, 32, 32});
  float* px = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) px[i] = (float)rng_normal(1, 5, (uint64_t)i);
  Tensor y = Tensor::empty({batch}, DType::i64);
  for (int64_t i = 0; i < batch; ++i) y.data<int64_t>()[i] = i % classes;
  model->to_device(dev);
  if (dev != Device::cpu) {  // the data stays on the device: the step is what is timed
    x = x.to_device(dev);
    y = y.to_device(dev);
  }

  // The optimizer of `lowbit train` with its defaults (weight decay, Nesterov momentum; quantizer
  // parameters in their own groups without decay).
  const TrainConfig tc;
  SGD opt(make_param_groups(*model, tc), tc.momentum, 0.0, tc.nesterov);
  opt.set_lr(0.01);
  std::vector<double> train_t, eval_t;
  model->train();
  if (!quantizers.empty()) {
    // Data-dependent init (LSQ steps from the first batch) as in training, outside the timing, so
    // even --warmup 0 times only real QAT steps.
    NoGradGuard ng;
    (*model)(x);
    for (const QuantizerRef& r : quantizers)
      LB_CHECK(r.qm->quantizer().initialized(), "bench: quantizer ", r.layer_path, ".", r.role,
               " was not initialised by the first batch");
  }
  // One training step; under --profile prof marks the forward + backward and charges the update.
  auto train_step = [&](OpProfiler* prof) {
    if (prof) prof->mark();
    Tensor loss = softmax_cross_entropy((*model)(x), y);
    opt.zero_grad();
    backward(loss);
    if (prof) prof->mark();
    opt.step();
    if (prof) prof->charge("optimizer update", OpProfiler::Phase::section);
    cuda_synchronize();  // no-op on the cpu
  };
  for (int64_t i = 0; i < warmup + iters; ++i) {
    double t0 = now_s();
    train_step(nullptr);
    if (i >= warmup) train_t.push_back(now_s() - t0);
  }
  model->eval();
  {
    NoGradGuard ng;
    for (int64_t i = 0; i < warmup + iters; ++i) {
      double t0 = now_s();
      Tensor out = (*model)(x);
      cuda_synchronize();
      if (i >= warmup) eval_t.push_back(now_s() - t0);
    }
  }
  // Separate steps after the timed ones, so that the profiler's clock reads (and on the GPU its
  // waits for the stream) leave the usual figures untouched.
  OpProfiler prof(dev != Device::cpu);
  if (profile) {
    model->train();
    ProfileScope scope(prof);
    for (int64_t i = 0; i < iters; ++i) {
      const double t0 = now_s();
      train_step(&prof);
      prof.add_step(now_s() - t0);
    }
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double peak_mb = (double)ru.ru_maxrss / 1024.0;
  const double tt = median(train_t), te = median(eval_t);
  const double train_ips = (double)batch / tt, eval_ips = (double)batch / te;
  const double train_gflops = 3.0 * 2.0 * (double)macs * (double)batch / tt * 1e-9;
  const double eval_gflops = 2.0 * (double)macs * (double)batch / te * 1e-9;
  const std::string wq = quant.wq.empty() ? "fp" : quant.wq, aq = quant.aq.empty() ? "fp" : quant.aq;
  const std::string fl = quant_enabled(quant) ? quant.first_last : "fp";
  nlohmann::json j = {{"model", model_name}, {"batch", batch}, {"threads", num_threads()},
                      {"iters", iters}, {"device", device_name(dev)}, {"wq", wq}, {"aq", aq},
                      {"first_last", fl}, {"quantizers", quantizers.size()}, {"conv", conv},
                      {"train_img_per_s", train_ips}, {"eval_img_per_s", eval_ips},
                      {"train_step_ms", 1e3 * tt}, {"eval_step_ms", 1e3 * te},
                      {"train_gflops", train_gflops}, {"eval_gflops", eval_gflops},
                      {"macs_per_image", macs}, {"peak_rss_mb", peak_mb}};
  if (profile) j["profile"] = profile_json(prof);
  if (json) {
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("train_img_per_s=%.1f eval_img_per_s=%.1f train_gflops=%.1f eval_gflops=%.1f "
              "peak_rss_mb=%.0f (model %s, wq %s, aq %s, first/last %s, batch %lld, %s, threads %d, "
              "conv %s, median of %lld)\n",
              train_ips, eval_ips, train_gflops, eval_gflops, peak_mb, model_name.c_str(),
              wq.c_str(), aq.c_str(), fl.c_str(), (long long)batch, device_name(dev), num_threads(),
              conv.c_str(), (long long)iters);
  if (profile) std::printf("%s", profile_table(prof, tt, device_name(dev)).c_str());
  return 0;
}

}  // namespace lowbit
