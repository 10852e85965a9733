// Quantization-aware training of a whole model: installs weight ("wq") and input ("aq") quantizers
// in every Conv2d/Linear (layers/layers.h), with APoT's first/last layer rule, per-layer bit widths
// (mixed precision) and bit skipping. METHODS.md "Uniform quantizers", "Non-uniform quantizers"
// (first/last layers), "Gradient estimators to audit", "Mixed precision: Bit skipping".
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "layers/module.h"

namespace lowbit {

class QuantizerModule;

struct QuantConfig {
  // METHOD:BITS[:OPTIONS] (make_quantizer's spec: lsq, lsqplus, pact, dorefa, apot, pot, minmax,
  // maxabs); OPTIONS "pc" = per-output-channel steps (lsq/lsqplus weights). "" = full precision.
  // An activation quantizer is signed where the layer's input can be negative (act_signed).
  std::string wq, aq;
  // The first conv and the last linear (in model order) when wq or aq is set:
  //  "8"    weights uniform symmetric 8-bit, scale max|w|/127, identity STE ("maxabs:8"); the
  //         input stays in floating point (APoT authors' CIFAR setup; the default);
  //  "fp"   both in floating point;  "same"  quantized like every other layer.
  std::string first_last = "8";
  // JSON file {"layer1.0.conv1": {"w": 3, "a": 4}, ...}: per-layer bit widths replacing BITS of
  // wq/aq for the named layers. Unknown layers, keys other than w/a, a width for a role that has
  // no quantizer there (full precision, or a first/last layer under "8"/"fp") are errors.
  std::string bits_config;
  // The same overrides inline (what a checkpoint records, so eval needs no file). bits_config and
  // bits together are an error.
  nlohmann::json bits = nlohmann::json::object();
  std::string ste = "default";  // "default" | "fp": full-precision backward on every quantized layer
};

// Whether cfg quantizes anything (wq or aq set): otherwise quantize_model leaves the model alone.
bool quant_enabled(const QuantConfig& cfg);
// Checks cfg (specs parse, first_last/ste values, bits file readable); errors name the flag.
void check_quant_config(const QuantConfig& cfg);
// Installs quantizers in every Conv2d/Linear of root (in root's dtype and train/eval mode).
void quantize_model(Module& root, const QuantConfig& cfg);

struct QuantizerRef {
  std::string layer_path;  // "layer1.0.conv1"
  std::string role;        // "wq" | "aq"
  Module* layer;           // the Conv2d or Linear
  QuantizerModule* qm;
};
std::vector<QuantizerRef> list_quantizers(Module& root);  // in model order, wq before aq
// Whether a state_dict name belongs to a quantizer ("conv1.wq.step").
bool is_quantizer_entry(Module& root, const std::string& name);

// Checkpoint metadata: {"wq", "aq", "first_last", "ste", "bits": the effective overrides}; the
// bits file is read and stored inline. from_json rejects unknown keys.
nlohmann::json quant_config_to_json(const QuantConfig& cfg);
QuantConfig quant_config_from_json(const nlohmann::json& j);

// Bit skipping (QuantizerModule::set_skip_bits) from {"layer path": {"w": t, "a": t}}; `source`
// (the file name) goes into errors. Unknown layers, or a role without a quantizer, are errors.
void apply_skip_bits(Module& root, const nlohmann::json& spec, const std::string& source);
// Reads a JSON file; errors name the flag and the file.
nlohmann::json read_json_file(const std::string& path, const char* flag);

}  // namespace lowbit
