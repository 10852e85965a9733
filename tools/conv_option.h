// `--conv winograd|direct` of the lowbit commands that run convolutions on the CPU: which float32
// kernels the 3x3 stride-1 layers take (core/cpu/conv_winograd.h). Winograd is the default and
// the faster; direct keeps the direct kernels' sums, the numbers of runs made before Winograd.
// One definition, so every command spells and checks it the same way.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "core/cpu/conv_winograd.h"
#include "core/error.h"

namespace lowbit {

inline void add_conv_option(CLI::App& app, std::string& conv) {
  app.add_option("--conv", conv,
                 "CPU 3x3 stride-1 convolutions: winograd (F(2x2,3x3)) or direct (the direct "
                 "kernels' sums)")
      ->check(CLI::IsMember({"winograd", "direct"}))
      ->capture_default_str();
}

inline void apply_conv_option(const std::string& conv) {
  LB_CHECK(conv == "winograd" || conv == "direct", "--conv: expected winograd or direct, got '",
           conv, "'");
  conv_winograd_enabled() = conv == "winograd";
}

// apply_conv_option for a scope (a train() call inside a longer-lived process, as in the tests):
// the switch is put back as it was on the way out.
class ScopedConvOption {
 public:
  explicit ScopedConvOption(const std::string& conv) : saved_(conv_winograd_enabled()) {
    apply_conv_option(conv);
  }
  ~ScopedConvOption() { conv_winograd_enabled() = saved_; }
  ScopedConvOption(const ScopedConvOption&) = delete;
  ScopedConvOption& operator=(const ScopedConvOption&) = delete;

 private:
  bool saved_;
};

}  // namespace lowbit
