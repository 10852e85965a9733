// The quantization flags of `lowbit train` and `lowbit bench` (--wq, --aq, --first-last): one
// definition, so both commands take the same spellings, defaults and help text. The strings are
// QuantConfig's fields (quant/quantize_model.h); check_quant_config / quantize_model validate them.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace lowbit {

// Adds the flags bound to wq, aq and first_last; their current values are the defaults shown.
inline void add_quant_flags(CLI::App& app, std::string& wq, std::string& aq, std::string& first_last) {
  app.add_option("--wq", wq, "weight quantizer METHOD:BITS[:pc], e.g. lsq:4 (default: full precision)");
  app.add_option("--aq", aq, "input (activation) quantizer METHOD:BITS, e.g. lsq:4");
  app.add_option("--first-last", first_last,
                 "first conv / last linear: 8 (8-bit max-abs weights, float inputs), fp, or same")
      ->capture_default_str();
}

}  // namespace lowbit
