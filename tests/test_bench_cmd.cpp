// `lowbit bench` through the binary (LOWBIT_BIN, set by `make test`): the quantization flags are
// taken as `lowbit train` takes them, reported in the JSON, and a bad spec is a clear error. Tiny
// runs (batch 4, one iteration): this checks the flags, not the speed. --profile's table: its rows,
// calls and shares, not its times.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/run_cli.h"

using lowbit::test::run_lowbit;

namespace {

// The JSON line of bench's output (the one starting with '{').
nlohmann::json json_line(const std::string& out) {
  for (size_t at = 0; at < out.size();) {
    const size_t end = std::min(out.find('\n', at), out.size());
    if (out[at] == '{') return nlohmann::json::parse(out.substr(at, end - at));
    at = end + 1;
  }
  FAIL("no JSON line in: ", out);
  return {};
}

}  // namespace

TEST_CASE("bench: --wq/--aq/--first-last run the QAT step and are reported") {
  const char* bin = std::getenv("LOWBIT_BIN");
  if (!bin) {
    MESSAGE("LOWBIT_BIN not set (run through make test): skipping the command-line check");
    return;
  }
  const std::string base = "bench --model smallcnn --batch 4 --iters 1 --warmup 0 --threads 1 --json";
  int status = 0;
  std::string out = run_lowbit(bin, base + " --wq lsq:4 --aq lsq:4", status);
  REQUIRE_MESSAGE(status == 0, out);
  nlohmann::json j = json_line(out);
  CHECK(j.at("wq") == "lsq:4");
  CHECK(j.at("aq") == "lsq:4");
  CHECK(j.at("first_last") == "8");  // train's default
  // smallcnn: 3 convs + 1 linear; first and last keep an 8-bit weight quantizer only, the two
  // middle convs get wq and aq.
  CHECK(j.at("quantizers") == 6);
  CHECK(j.at("train_img_per_s").get<double>() > 0);
  CHECK(j.at("eval_img_per_s").get<double>() > 0);
  CHECK(j.at("peak_rss_mb").get<double>() > 0);

  out = run_lowbit(bin, base + " --wq lsq:4 --aq lsq:4 --first-last same", status);
  REQUIRE_MESSAGE(status == 0, out);
  j = json_line(out);
  CHECK(j.at("first_last") == "same");
  CHECK(j.at("quantizers") == 8);

  out = run_lowbit(bin, base, status);  // full precision: no quantizer, reported as fp
  REQUIRE_MESSAGE(status == 0, out);
  j = json_line(out);
  CHECK(j.at("wq") == "fp");
  CHECK(j.at("aq") == "fp");
  CHECK(j.at("first_last") == "fp");
  CHECK(j.at("quantizers") == 0);
  CHECK(j.at("conv") == "winograd");  // the default
  CHECK_FALSE(j.contains("profile"));  // only with --profile

  for (const char* conv : {"direct", "winograd2", "winograd4"}) {
    out = run_lowbit(bin, base + " --conv " + conv, status);
    REQUIRE_MESSAGE(status == 0, out);
    CHECK(json_line(out).at("conv") == conv);
  }
}

TEST_CASE("bench: a bad quantizer spec or --first-last value is a clear error") {
  const char* bin = std::getenv("LOWBIT_BIN");
  if (!bin) {
    MESSAGE("LOWBIT_BIN not set (run through make test): skipping the command-line check");
    return;
  }
  const std::string base = "bench --model smallcnn --batch 4 --iters 1 --warmup 0 --threads 1";
  int status = 0;
  std::string out = run_lowbit(bin, base + " --wq nonsense:4", status);
  CHECK(status != 0);
  CHECK_MESSAGE(out.find("--wq 'nonsense:4'") != std::string::npos, out);
  out = run_lowbit(bin, base + " --conv fft", status);
  CHECK(status != 0);
  CHECK_MESSAGE(out.find("--conv") != std::string::npos, out);
  CHECK_MESSAGE(out.find("fft") != std::string::npos, out);
  out = run_lowbit(bin, base + " --aq lsq:1", status);
  CHECK(status != 0);
  CHECK_MESSAGE(out.find("--aq 'lsq:1'") != std::string::npos, out);
  out = run_lowbit(bin, base + " --wq lsq:4 --first-last 4", status);
  CHECK(status != 0);
  CHECK_MESSAGE(out.find("--first-last must be fp, 8 or same") != std::string::npos, out);
}

TEST_CASE("bench: --profile splits a training step per op kind, forward and backward") {
  const char* bin = std::getenv("LOWBIT_BIN");
  if (!bin) {
    MESSAGE("LOWBIT_BIN not set (run through make test): skipping the command-line check");
    return;
  }
  int status = 0;
  std::string out =
      run_lowbit(bin, "bench --model smallcnn --batch 8 --iters 2 --profile --json", status);
  REQUIRE_MESSAGE(status == 0, out);
  const nlohmann::json j = json_line(out);
  REQUIRE_MESSAGE(j.contains("profile"), out);
  const nlohmann::json& p = j.at("profile");
  CHECK(p.at("steps") == 2);
  CHECK(p.at("device_sync") == false);
  const double step_ms = p.at("step_ms").get<double>();
  CHECK(step_ms > 0);
  const nlohmann::json& rows = p.at("rows");
  REQUIRE(rows.is_array());

  double pct_sum = 0, charged_ms = 0, prev_total = 1e300;
  std::map<std::string, nlohmann::json> by_kind;
  for (const nlohmann::json& r : rows) {
    const std::string kind = r.at("kind");
    by_kind[kind] = r;
    for (const char* key : {"forward_pct", "backward_pct", "total_pct"}) {
      const double v = r.at(key).get<double>();
      CHECK_MESSAGE(v >= 0, kind, " ", key, " = ", v);
      CHECK_MESSAGE(v <= 100, kind, " ", key, " = ", v);
    }
    const double total = r.at("total_ms").get<double>();
    CHECK_MESSAGE(total <= prev_total, "rows are not sorted by total at ", kind);
    prev_total = total;
    pct_sum += r.at("total_pct").get<double>();
    if (kind != "other") charged_ms += total;
  }
  CHECK(pct_sum == doctest::Approx(100).epsilon(0.001));
  // The charged intervals lie inside the step (rounding aside).
  CHECK(charged_ms <= step_ms * (1 + 1e-6) + 1e-6);

  // smallcnn: 3 convs, 3 batch norms with their ReLUs fused (one node each), 1 linear, the loss;
  // each run forward and backward.
  REQUIRE_MESSAGE(by_kind.count("conv2d"), out);
  const nlohmann::json& conv = by_kind["conv2d"];
  CHECK(conv.at("forward_ms").get<double>() > 0);
  CHECK(conv.at("backward_ms").get<double>() > 0);
  CHECK(conv.at("forward_calls") == 3);
  CHECK(conv.at("backward_calls") == 3);
  CHECK(conv.at("total_ms").get<double>() ==
        doctest::Approx(conv.at("forward_ms").get<double>() + conv.at("backward_ms").get<double>()));
  for (const char* kind : {"batch_norm2d+relu", "linear", "softmax_cross_entropy",
                           "optimizer update", "grad accumulate", "other"})
    CHECK_MESSAGE(by_kind.count(kind) == 1, kind, " missing in ", out);
  CHECK(by_kind["batch_norm2d+relu"].at("forward_calls") == 3);
  CHECK(by_kind["batch_norm2d+relu"].at("backward_calls") == 3);
  CHECK(by_kind.count("relu") == 0);
  CHECK(by_kind["softmax_cross_entropy"].at("backward_calls") == 1);
  CHECK(by_kind["optimizer update"].at("forward_ms").get<double>() == 0);

  // Without --json the same table follows the usual line.
  out = run_lowbit(bin, "bench --model smallcnn --batch 8 --iters 1 --warmup 0 --profile", status);
  REQUIRE_MESSAGE(status == 0, out);
  CHECK_MESSAGE(out.find("train_img_per_s=") != std::string::npos, out);
  CHECK_MESSAGE(out.find("profile (cpu)") != std::string::npos, out);
  CHECK_MESSAGE(out.find("  conv2d ") != std::string::npos, out);
}
