// `lowbit bench` through the binary (LOWBIT_BIN, set by `make test`): the quantization flags are
// taken as `lowbit train` takes them, reported in the JSON, and a bad spec is a clear error. Tiny
// runs (batch 4, one iteration): this checks the flags, not the speed.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
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
  out = run_lowbit(bin, base + " --aq lsq:1", status);
  CHECK(status != 0);
  CHECK_MESSAGE(out.find("--aq 'lsq:1'") != std::string::npos, out);
  out = run_lowbit(bin, base + " --wq lsq:4 --first-last 4", status);
  CHECK(status != 0);
  CHECK_MESSAGE(out.find("--first-last must be fp, 8 or same") != std::string::npos, out);
}
