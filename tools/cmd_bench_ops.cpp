// `lowbit bench-ops`: times the conv2d kernels (forward, backward-data, backward-weight) at every
// distinct conv shape of CIFAR ResNet-20 (ResNet-18, ShuffleNetV2), training batch norm + ReLU
// at their output shapes, the final linear layer, and a plain SGEMM for OpenBLAS's own rate. Rate = 2 * multiply-adds / median time. Prints a Markdown table (docs/perf.md).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "core/cpu/blas.h"
#include "core/cpu/conv_kernels.h"
#include "core/cpu/norm_kernels.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "tools/commands.h"
#include "tools/conv_option.h"

namespace lowbit {

namespace {

struct Timing {
  double ms = 0, gflops = 0;
};

// Process CPU time in ms. With one thread it is the kernel's own time even when other
// processes share the cores (time slices spent elsewhere are not counted), which wall time is not.
double cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// One run of fn in ms: wall time, or (cpu_clock) process CPU time.
double run_ms(const std::function<void()>& fn, bool cpu_clock) {
  if (cpu_clock) {
    const double c0 = cpu_ms();
    fn();
    return cpu_ms() - c0;
  }
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// The time reported for a set of runs: wall time, the median; or (cpu_clock) process CPU time,
// the fastest run (interference from other processes only ever adds time).
double summary_ms(std::vector<double> ms, bool cpu_clock) {
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  return cpu_clock ? ms[0] : n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
}

// a's and b's times (summary_ms), run alternately, run by run, so that both see the same phases of
// a noisy machine: `iters` runs each after two warm-up rounds.
std::pair<double, double> alternate(const std::function<void()>& a, const std::function<void()>& b,
                                    int iters, bool cpu_clock) {
  std::vector<double> ta, tb;
  for (int i = 0; i < iters + 2; ++i)
    for (const bool first : {true, false}) {
      const double ms = run_ms(first ? a : b, cpu_clock);
      if (i >= 2) (first ? ta : tb).push_back(ms);
    }
  return {summary_ms(ta, cpu_clock), summary_ms(tb, cpu_clock)};
}

// fn's time over `iters` runs after two warm-up runs (summary_ms).
Timing time_it(const std::function<void()>& fn, int iters, double macs, bool cpu_clock) {
  for (int i = 0; i < 2; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) ms.push_back(run_ms(fn, cpu_clock));
  Timing t;
  t.ms = summary_ms(ms, cpu_clock);
  t.gflops = 2.0 * macs / (t.ms * 1e-3) / 1e9;
  return t;
}

std::vector<float> rand_vec(int64_t n, uint64_t seed) {
  std::vector<float> v((size_t)n);
  for (int64_t i = 0; i < n; ++i) v[i] = 2 * rng_uniform_f(seed, 1, (uint64_t)i) - 1;
  return v;
}

struct ConvShape {
  const char* name;
  int64_t C, O, H, stride, k = 3;  // padding k / 2
  int64_t groups = 1;              // C: depthwise
};

// The distinct convolutions of each model at CIFAR's 32x32 (models/resnet_cifar.cpp, resnet18.cpp).
std::vector<ConvShape> shapes_of(const std::string& model) {
  if (model == "resnet18")
    return {{"conv 3->64 32x32", 3, 64, 32, 1},         {"conv 64->64 32x32", 64, 64, 32, 1},
            {"conv 64->128 32x32 s2", 64, 128, 32, 2},  {"conv 128->128 16x16", 128, 128, 16, 1},
            {"conv 128->256 16x16 s2", 128, 256, 16, 2}, {"conv 256->256 8x8", 256, 256, 8, 1},
            {"conv 256->512 8x8 s2", 256, 512, 8, 2},   {"conv 512->512 4x4", 512, 512, 4, 1},
            {"conv1x1 64->128 32x32 s2", 64, 128, 32, 2, 1},
            {"conv1x1 128->256 16x16 s2", 128, 256, 16, 2, 1},
            {"conv1x1 256->512 8x8 s2", 256, 512, 8, 2, 1}};
  if (model == "shufflenetv2")  // 1.0x (models/shufflenetv2.cpp); "xN": layers of the shape
    return {{"conv 3->24 32x32", 3, 24, 32, 1},
            {"dw 24 32x32 s2 (x1)", 24, 24, 32, 2, 3, 24},
            {"conv1x1 24->58 32x32 (x1)", 24, 58, 32, 1, 1},
            {"conv1x1 24->58 16x16 (x1)", 24, 58, 16, 1, 1},
            {"dw 58 32x32 s2 (x1)", 58, 58, 32, 2, 3, 58},
            {"conv1x1 58->58 16x16 (x7)", 58, 58, 16, 1, 1},
            {"dw 58 16x16 (x3)", 58, 58, 16, 1, 3, 58},
            {"dw 116 16x16 s2 (x2)", 116, 116, 16, 2, 3, 116},
            {"conv1x1 116->116 16x16 (x1)", 116, 116, 16, 1, 1},
            {"conv1x1 116->116 8x8 (x16)", 116, 116, 8, 1, 1},
            {"dw 116 8x8 (x7)", 116, 116, 8, 1, 3, 116},
            {"dw 232 8x8 s2 (x2)", 232, 232, 8, 2, 3, 232},
            {"conv1x1 232->232 8x8 (x1)", 232, 232, 8, 1, 1},
            {"conv1x1 232->232 4x4 (x8)", 232, 232, 4, 1, 1},
            {"dw 232 4x4 (x3)", 232, 232, 4, 1, 3, 232},
            {"conv1x1 464->1024 4x4 (x1)", 464, 1024, 4, 1, 1}};
  return {{"conv 3->16 32x32", 3, 16, 32, 1},      {"conv 16->16 32x32", 16, 16, 32, 1},
          {"conv 16->32 32x32 s2", 16, 32, 32, 2}, {"conv 32->32 16x16", 32, 32, 16, 1},
          {"conv 32->64 16x16 s2", 32, 64, 16, 2}, {"conv 64->64 8x8", 64, 64, 8, 1}};
}

void print_row(const std::string& name, const Timing& f, const Timing& d, const Timing& w) {
  std::printf("| %-28s | %8.3f | %7.1f | %8.3f | %7.1f | %8.3f | %7.1f |\n", name.c_str(), f.ms,
              f.gflops, d.ms, d.gflops, w.ms, w.gflops);
  std::fflush(stdout);
}

// Training batch norm with ReLU at each distinct conv output shape of the model: the statistics
// pass, the normalising pass and the backward (both its passes), with the rate at which each moves
// the tensors it must (1, 2 and 5 of them: x; x and y; dy, y and x, then x and dx).
void time_batch_norms(const std::string& model, int64_t batch, const std::string& only, int iters,
                      bool cpu_clock) {
  std::vector<std::pair<int64_t, int64_t>> seen;  // (channels, output size)
  bool header = false;
  for (const ConvShape& s : shapes_of(model)) {
    const int64_t c = s.O, h = (s.H + 2 * (s.k / 2) - s.k) / s.stride + 1, hw = h * h;
    const std::string name = "bn+relu " + std::to_string(c) + " " + std::to_string(h) + "x" + std::to_string(h);
    if (name.find(only) == std::string::npos) continue;
    if (std::find(seen.begin(), seen.end(), std::make_pair(c, h)) != seen.end()) continue;
    seen.push_back({c, h});
    if (!header) {
      std::printf("\n| %-28s | %8s | %7s | %8s | %7s | %8s | %7s |\n", "batch norm (training)",
                  "stats ms", "GB/s", "fwd ms", "GB/s", "bwd ms", "GB/s");
      std::printf("|%s|---------:|--------:|---------:|--------:|---------:|--------:|\n",
                  std::string(30, '-').c_str());
      header = true;
    }
    const int64_t total = batch * c * hw;
    auto x = rand_vec(total, 10), dy = rand_vec(total, 11);
    std::vector<float> y((size_t)total), dx((size_t)total), gamma((size_t)c, 1.f), beta((size_t)c, 0.f);
    std::vector<double> mean((size_t)c), var((size_t)c), invstd((size_t)c), dg((size_t)c), db((size_t)c);
    auto stats = [&] {
      batch_norm_stats_cpu(mean.data(), var.data(), x.data(), batch, c, hw);
      batch_norm_invstd(invstd.data(), var.data(), c, 1e-5);
    };
    stats();
    const double mb = (double)total * sizeof(float) / 1e6;
    // time_it's "GFLOP/s" from 2 * macs: macs = bytes / 2 makes it GB/s
    Timing st = time_it(stats, iters, mb * 1e6 / 2, cpu_clock);
    Timing f = time_it([&] {
      batch_norm_forward_cpu(y.data(), x.data(), mean.data(), invstd.data(), gamma.data(),
                             beta.data(), batch, c, hw, FusedAct::relu);
    }, iters, 2 * mb * 1e6 / 2, cpu_clock);
    Timing b = time_it([&] {
      batch_norm_backward_cpu(dx.data(), dg.data(), db.data(), dy.data(), x.data(), mean.data(),
                              invstd.data(), gamma.data(), true, batch, c, hw, y.data(),
                              FusedAct::relu);
    }, iters, 5 * mb * 1e6 / 2, cpu_clock);
    print_row(name, st, f, b);
  }
}

// A residual block's end in training, forward and backward through the ops (allocations
// included): batch_norm2d, then add_relu with the block's input, against batch_norm2d with the
// residual fused (one node, batch_norm2d+add+relu). At the output shape of each stride-1 layer
// whose channels do not change (the blocks' second convolutions); the two are timed in
// alternation, run by run, so that both see the same phases of a noisy machine.
void time_residual_ends(const std::string& model, int64_t batch, const std::string& only,
                        int iters, bool cpu_clock) {
  if (model == "shufflenetv2") return;  // its units end in a concat, not an add
  bool header = false;
  for (const ConvShape& s : shapes_of(model)) {
    if (s.stride != 1 || s.C != s.O || s.groups != 1) continue;
    const int64_t c = s.O, h = s.H;
    const std::string name = "bn+add+relu " + std::to_string(c) + " " + std::to_string(h) + "x" +
                             std::to_string(h);
    if (name.find(only) == std::string::npos) continue;
    if (!header) {
      std::printf("\n| %-28s | %12s | %12s |\n", "residual end, fwd + bwd", "separate ms",
                  "fused ms");
      std::printf("|%s|-------------:|-------------:|\n", std::string(30, '-').c_str());
      header = true;
    }
    const Shape shape{batch, c, h, h};
    const int64_t total = batch * c * h * h;
    const Tensor x0 = Tensor::from_vector(shape, rand_vec(total, 12));
    const Tensor r0 = Tensor::from_vector(shape, rand_vec(total, 13));
    const Tensor g = Tensor::from_vector(shape, rand_vec(total, 14));
    Tensor w = Tensor::ones({c}).set_requires_grad(true), b = Tensor::zeros({c}).set_requires_grad(true);
    Tensor rm = Tensor::zeros({c}), rv = Tensor::ones({c});
    Tensor x = x0.clone().set_requires_grad(true), r = r0.clone().set_requires_grad(true);
    auto step = [&](bool fused) {
      for (Tensor* t : {&x, &r, &w, &b}) t->zero_grad();
      Tensor y = fused ? batch_norm2d(x, w, b, rm, rv, true, 0.1, 1e-5, FusedAct::relu, r)
                       : add_relu(batch_norm2d(x, w, b, rm, rv, true, 0.1, 1e-5), r);
      backward(y, g);
    };
    const auto t = alternate([&] { step(false); }, [&] { step(true); }, iters, cpu_clock);
    std::printf("| %-28s | %12.3f | %12.3f |\n", name.c_str(), t.first, t.second);
    std::fflush(stdout);
  }
}

}  // namespace

int cmd_bench_ops(int argc, char** argv) {
  CLI::App app{"time conv2d/linear kernels at ResNet-20's (ResNet-18's, ShuffleNetV2's) shapes "
               "(float32)",
               "lowbit bench-ops"};
  int threads = 0, iters = 10;
  std::string model = "resnet20";
  app.add_option("--shapes", model, "whose convolutions: resnet20 | resnet18 | shufflenetv2")
      ->check(CLI::IsMember({"resnet20", "resnet18", "shufflenetv2"}))
      ->capture_default_str();
  std::string only;
  app.add_option("--only", only, "time only the rows whose name contains this, e.g. '512->512'");
  int64_t batch = 128;
  app.add_option("--threads", threads, "threads for OpenMP and OpenBLAS (0: all cores)");
  app.add_option("--iters", iters, "timed runs per kernel")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "batch size")->check(CLI::PositiveNumber);
  std::string conv = "winograd";
  add_conv_option(app, conv);
  std::string clock = "wall";
  app.add_option("--clock", clock,
                 "wall | cpu: process CPU time, for --threads 1 on a machine others are using")
      ->check(CLI::IsMember({"wall", "cpu"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  set_num_threads(threads);
  apply_conv_option(conv);
  const bool cpu_clock = clock == "cpu";
  LB_CHECK(!cpu_clock || num_threads() == 1, "bench-ops: --clock cpu needs --threads 1 (CPU time "
           "adds up every thread's time), got ", num_threads(), " threads");
  std::printf("bench-ops: %s's convolutions, batch %lld, float32, %d thread(s), OpenBLAS core %s, %d "
              "runs after 2 warm-up, %s\n\n",
              model.c_str(), (long long)batch, num_threads(), blas_core_name().c_str(), iters,
              cpu_clock ? "process CPU time, the fastest run" : "wall time, the median");
  std::printf("| %-28s | %8s | %7s | %8s | %7s | %8s | %7s |\n", "op (pad k/2)", "fwd ms",
              "GFLOP/s", "bwd-d ms", "GFLOP/s", "bwd-w ms", "GFLOP/s");
  std::printf("|%s|---------:|--------:|---------:|--------:|---------:|--------:|\n",
              std::string(30, '-').c_str());

  for (const ConvShape& s : shapes_of(model)) {
    if (std::string(s.name).find(only) == std::string::npos) continue;
    ConvGeom g;
    g.N = batch, g.C = s.C, g.H = g.W = s.H, g.O = s.O, g.KH = g.KW = s.k;
    g.sh = g.sw = s.stride, g.ph = g.pw = s.k / 2, g.groups = s.groups;
    g.OH = conv_out_size(g.H, s.k, g.sh, g.ph, 1), g.OW = conv_out_size(g.W, s.k, g.sw, g.pw, 1);
    const int64_t cg = g.C / g.groups;
    const double macs = (double)g.N * g.O * cg * s.k * s.k * g.OH * g.OW;
    auto x = rand_vec(g.N * g.C * g.H * g.W, 1), w = rand_vec(g.O * cg * s.k * s.k, 2);
    auto b = rand_vec(g.O, 3), dy = rand_vec(g.N * g.O * g.OH * g.OW, 4);
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size());
    const bool dwise = conv_is_depthwise(g);  // the kernels conv2d picks (core/ops_conv.cpp)
    Timing f = time_it([&] {
      if (dwise) depthwise_conv2d_forward_cpu(y.data(), x.data(), w.data(), b.data(), g);
      else conv2d_forward_cpu(y.data(), x.data(), w.data(), b.data(), g);
    }, iters, macs, cpu_clock);
    Timing d = time_it([&] {
      if (dwise) depthwise_conv2d_backward_data_cpu(dx.data(), dy.data(), w.data(), g);
      else conv2d_backward_data_cpu(dx.data(), dy.data(), w.data(), g);
    }, iters, macs, cpu_clock);
    Timing wt = time_it([&] {
      if (dwise) depthwise_conv2d_backward_weight_cpu(dw.data(), dy.data(), x.data(), g);
      else conv2d_backward_weight_cpu(dw.data(), dy.data(), x.data(), g);
    }, iters, macs, cpu_clock);
    print_row(s.name, f, d, wt);
  }

  time_batch_norms(model, batch, only, iters, cpu_clock);
  time_residual_ends(model, batch, only, iters, cpu_clock);
  if (!only.empty()) return 0;
  {  // the classifier, 64 (512) -> 10: y = x W^T, dx = dy W, dW = dy^T x, one GEMM each
    const int64_t in = model == "resnet18" ? 512 : model == "shufflenetv2" ? 1024 : 64, out = 10;
    auto x = rand_vec(batch * in, 5), w = rand_vec(out * in, 6), dy = rand_vec(batch * out, 7);
    std::vector<float> y(batch * out), dx(batch * in), dw(out * in);
    const double macs = (double)batch * in * out;
    Timing f = time_it([&] { gemm(false, true, batch, out, in, 1.f, x.data(), in, w.data(), in, 0.f, y.data(), out); }, iters, macs, cpu_clock);
    Timing d = time_it([&] { gemm(false, false, batch, in, out, 1.f, dy.data(), out, w.data(), in, 0.f, dx.data(), in); }, iters, macs, cpu_clock);
    Timing wt = time_it([&] { gemm(true, false, out, in, batch, 1.f, dy.data(), out, x.data(), in, 0.f, dw.data(), in); }, iters, macs, cpu_clock);
    print_row("linear " + std::to_string(in) + "->10", f, d, wt);
  }

  {  // OpenBLAS's own rate on a large square SGEMM
    const int64_t n = 1024;
    auto a = rand_vec(n * n, 8), bm = rand_vec(n * n, 9);
    std::vector<float> c(n * n);
    Timing t = time_it([&] { gemm(false, false, n, n, n, 1.f, a.data(), n, bm.data(), n, 0.f, c.data(), n); },
                       iters, (double)n * n * n, cpu_clock);
    std::printf("\nSGEMM %lldx%lldx%lld: %.3f ms, %.1f GFLOP/s\n", (long long)n, (long long)n,
                (long long)n, t.ms, t.gflops);
  }
  return 0;
}

}  // namespace lowbit
