// `--conv winograd|winograd2|winograd4|direct` of the lowbit commands that run convolutions on the
// CPU: which float32 kernels the 3x3 stride-1 layers take (core/cpu/conv_winograd.h). winograd,
// the default and the fastest, picks F(4x4, 3x3) or F(2x2, 3x3) by layer (forward and data
// gradient; the weight gradient F(3x3, 4x4) from 32x32 outputs); winograd2 and winograd4 force
// one tile size for all three (winograd2: those layers' sums as before F(4x4) came in); direct
// keeps the direct kernels' sums, as before Winograd. Other layers are not affected: since
// 2026-12-07 strided layers take their data gradient per phase (conv_phase_data.cpp) under every
// choice, so a whole run made before then is reproduced bit for bit only by a binary of its time.
// One definition, so every command spells and checks it the same way.
#pragma once
#include <CLI/CLI.hpp>
#include <algorithm>
#include <string>
#include <vector>

#include "core/cpu/conv_winograd.h"
#include "core/error.h"

namespace lowbit {

inline const std::vector<std::string>& conv_choices() {
  static const std::vector<std::string> v{"winograd", "winograd2", "winograd4", "direct"};
  return v;
}

inline void add_conv_option(CLI::App& app, std::string& conv) {
  app.add_option("--conv", conv,
                 "CPU 3x3 stride-1 convolutions: winograd (F(4x4,3x3) or F(2x2,3x3) by layer), "
                 "winograd2 or winograd4 (one tile size), or direct (the direct kernels' sums)")
      ->check(CLI::IsMember(conv_choices()))
      ->capture_default_str();
}

inline void apply_conv_option(const std::string& conv) {
  const auto& c = conv_choices();
  LB_CHECK(std::find(c.begin(), c.end(), conv) != c.end(),
           "--conv: expected winograd, winograd2, winograd4 or direct, got '", conv, "'");
  conv_winograd_enabled() = conv != "direct";
  conv_winograd_tile() = conv == "winograd2" ? 2 : conv == "winograd4" ? 4 : 0;
}

// apply_conv_option for a scope (a train() call inside a longer-lived process, as in the tests):
// the switch is put back as it was on the way out.
class ScopedConvOption {
 public:
  explicit ScopedConvOption(const std::string& conv)
      : saved_(conv_winograd_enabled()), saved_tile_(conv_winograd_tile()) {
    apply_conv_option(conv);
  }
  ~ScopedConvOption() {
    conv_winograd_enabled() = saved_;
    conv_winograd_tile() = saved_tile_;
  }
  ScopedConvOption(const ScopedConvOption&) = delete;
  ScopedConvOption& operator=(const ScopedConvOption&) = delete;

 private:
  bool saved_;
  int saved_tile_;
};

}  // namespace lowbit
