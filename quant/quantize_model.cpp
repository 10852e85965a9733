// quantize_model and friends (quant/quantize_model.h): walks the model tree, decides each Conv2d /
// Linear's weight and input quantizer from the config (first/last rule, per-layer bits), and
// installs them as QuantizerModule children; bit skipping and the checkpoint's JSON form.
#include "quant/quantize_model.h"

#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "core/error.h"
#include "layers/layers.h"
#include "layers/quant_module.h"
#include "quant/quantizer.h"

namespace lowbit {

namespace {

struct QuantLayer {
  std::string path;
  QuantizableLayer* m;  // a Conv2d or a Linear
  bool is_linear;
  bool act_signed() const { return m->act_signed; }
  const Tensor& weight() const { return m->weight; }
};

std::vector<QuantLayer> quant_layers(Module& root) {
  std::vector<QuantLayer> out;
  for (auto& [path, m] : root.named_modules()) {
    if (auto* q = dynamic_cast<QuantizableLayer*>(m))
      out.push_back({path, q, dynamic_cast<Linear*>(m) != nullptr});
  }
  return out;
}

// "lsq:4:pc" with its bits replaced by `bits`.
std::string with_bits(const std::string& spec, int bits) {
  const auto c1 = spec.find(':');
  const auto c2 = spec.find(':', c1 + 1);
  return spec.substr(0, c1 + 1) + std::to_string(bits) + (c2 == std::string::npos ? "" : spec.substr(c2));
}

std::shared_ptr<QuantizerModule> make_qm(const std::string& spec, bool is_weight, bool is_signed,
                                         const QuantLayer& l, const char* flag) {
  try {
    return std::make_shared<QuantizerModule>(
        make_quantizer(spec, is_weight, is_signed, l.weight().dtype(), l.weight().size(0)));
  } catch (const Error& e) {
    LB_FAIL(flag, " '", spec, "' for layer '", l.path, "': ", e.what());
  }
}

// The per-layer overrides, checked: {"layer": {"w": int, "a": int}}.
std::map<std::string, std::pair<int, int>> parse_bits(const nlohmann::json& j, const std::string& src) {
  LB_CHECK(j.is_object(), "--bits-config ", src, ": expected a JSON object {\"layer\": {\"w\": b, \"a\": b}}");
  std::map<std::string, std::pair<int, int>> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    LB_CHECK(it->is_object(), "--bits-config ", src, ": layer '", it.key(), "' must map to {\"w\": b, \"a\": b}");
    std::pair<int, int> wa{0, 0};
    for (auto f = it->begin(); f != it->end(); ++f) {
      LB_CHECK(f.key() == "w" || f.key() == "a", "--bits-config ", src, ": layer '", it.key(),
               "': unknown key '", f.key(), "' (expected w, a)");
      LB_CHECK(f->is_number_integer() && f->get<int>() >= 1, "--bits-config ", src, ": layer '",
               it.key(), "': ", f.key(), " must be a positive integer");
      (f.key() == "w" ? wa.first : wa.second) = f->get<int>();
    }
    out[it.key()] = wa;
  }
  return out;
}

nlohmann::json effective_bits(const QuantConfig& cfg) {
  LB_CHECK(cfg.bits_config.empty() || cfg.bits.empty(), "quantize: --bits-config '", cfg.bits_config,
           "' and inline bits are both set");
  if (!cfg.bits_config.empty()) return read_json_file(cfg.bits_config, "--bits-config");
  return cfg.bits;
}

}  // namespace

nlohmann::json read_json_file(const std::string& path, const char* flag) {
  std::ifstream f(path);
  LB_CHECK(f.good(), flag, ": cannot read '", path, "'");
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    LB_FAIL(flag, ": '", path, "' is not valid JSON: ", e.what());
  }
}

bool quant_enabled(const QuantConfig& cfg) { return !cfg.wq.empty() || !cfg.aq.empty(); }

void check_quant_config(const QuantConfig& cfg) {
  LB_CHECK(cfg.first_last == "fp" || cfg.first_last == "8" || cfg.first_last == "same",
           "--first-last must be fp, 8 or same, got '", cfg.first_last, "'");
  LB_CHECK(cfg.ste == "default" || cfg.ste == "fp", "--ste must be default or fp, got '", cfg.ste, "'");
  // Parse the specs once on a dummy shape so a typo fails before any data is loaded.
  for (auto [spec, flag, w] : {std::tuple<std::string, const char*, bool>{cfg.wq, "--wq", true},
                               {cfg.aq, "--aq", false}}) {
    if (spec.empty()) continue;
    try {
      make_quantizer(spec, w, true, DType::f32, 1);
    } catch (const Error& e) {
      LB_FAIL(flag, " '", spec, "': ", e.what());
    }
  }
  if (!quant_enabled(cfg))
    LB_CHECK(cfg.bits_config.empty() && cfg.bits.empty(),
             "--bits-config needs --wq or --aq (the model is full precision)");
  parse_bits(effective_bits(cfg), cfg.bits_config.empty() ? "(inline)" : cfg.bits_config);
}

void quantize_model(Module& root, const QuantConfig& cfg) {
  check_quant_config(cfg);
  if (!quant_enabled(cfg)) return;
  const std::string src = cfg.bits_config.empty() ? "(checkpoint bits)" : cfg.bits_config;
  auto bits = parse_bits(effective_bits(cfg), src);
  std::vector<QuantLayer> layers = quant_layers(root);
  LB_CHECK(!layers.empty(), "quantize: the model has no Conv2d or Linear layer");
  const auto existing = list_quantizers(root);
  LB_CHECK(existing.empty(), "quantize: the model already holds quantizers ('",
           existing.empty() ? "" : existing[0].layer_path + "." + existing[0].role, "')");
  for (auto& [name, wa] : bits) {
    bool found = false;
    for (auto& l : layers) found = found || l.path == name;
    LB_CHECK(found, "--bits-config ", src, ": unknown layer '", name,
                    "' (not a Conv2d/Linear of the model; see lowbit info)");
  }
  // First: the first Conv2d/Linear in model order; last: the last Linear (the classifier).
  size_t last = layers.size() - 1;
  for (size_t i = layers.size(); i-- > 0;)
    if (layers[i].is_linear) {
      last = i;
      break;
    }
  // Every quantizer is built (and every override checked) before any is installed, so an error
  // leaves the model as it was.
  std::vector<std::pair<std::shared_ptr<QuantizerModule>, std::shared_ptr<QuantizerModule>>> made;
  for (size_t i = 0; i < layers.size(); ++i) {
    const QuantLayer& l = layers[i];
    auto ov = bits.count(l.path) ? bits[l.path] : std::pair<int, int>{0, 0};
    const bool edge = (i == 0 || i == last) && cfg.first_last != "same";
    std::shared_ptr<QuantizerModule> wq, aq;
    if (edge) {
      LB_CHECK(ov.first == 0 && ov.second == 0, "--bits-config ", src, ": layer '", l.path,
               "' is the first/last layer, kept at ", cfg.first_last == "fp" ? "full precision" : "8 bits",
               " by --first-last ", cfg.first_last, " (use --first-last same to set its bits)");
      if (cfg.first_last == "8") wq = make_qm("maxabs:8", true, true, l, "--first-last");
    } else {
      LB_CHECK(ov.first == 0 || !cfg.wq.empty(), "--bits-config ", src, ": layer '", l.path,
               "' sets w but --wq is not given (weights are full precision)");
      LB_CHECK(ov.second == 0 || !cfg.aq.empty(), "--bits-config ", src, ": layer '", l.path,
               "' sets a but --aq is not given (inputs are full precision)");
      if (!cfg.wq.empty())
        wq = make_qm(ov.first ? with_bits(cfg.wq, ov.first) : cfg.wq, true, true, l, "--wq");
      if (!cfg.aq.empty())
        aq = make_qm(ov.second ? with_bits(cfg.aq, ov.second) : cfg.aq, false, l.act_signed(), l, "--aq");
    }
    made.push_back({wq, aq});
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    const QuantLayer& l = layers[i];
    auto& [wq, aq] = made[i];
    if (!wq && !aq) continue;
    for (auto* q : {wq.get(), aq.get()})
      if (q) q->train(l.m->training());
    l.m->set_quantizers(wq, aq);
    l.m->fp_backward = cfg.ste == "fp";
  }
}

std::vector<QuantizerRef> list_quantizers(Module& root) {
  std::vector<QuantizerRef> out;
  for (auto& l : quant_layers(root)) {
    auto wq = l.m->wq;
    auto aq = l.m->aq;
    if (wq) out.push_back({l.path, "wq", l.m, wq.get()});
    if (aq) out.push_back({l.path, "aq", l.m, aq.get()});
  }
  return out;
}

bool is_quantizer_entry(Module& root, const std::string& name) {
  for (auto& r : list_quantizers(root)) {
    const std::string prefix = (r.layer_path.empty() ? "" : r.layer_path + ".") + r.role + ".";
    if (name.compare(0, prefix.size(), prefix) == 0) return true;
  }
  return false;
}

nlohmann::json quant_config_to_json(const QuantConfig& cfg) {
  return {{"wq", cfg.wq}, {"aq", cfg.aq}, {"first_last", cfg.first_last}, {"ste", cfg.ste},
          {"bits", effective_bits(cfg)}};
}

QuantConfig quant_config_from_json(const nlohmann::json& j) {
  LB_CHECK(j.is_object(), "quant config: expected a JSON object");
  QuantConfig c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    LB_CHECK(k == "wq" || k == "aq" || k == "first_last" || k == "ste" || k == "bits",
             "quant config: unknown key '", k, "'");
  }
  try {
    if (j.contains("wq")) j.at("wq").get_to(c.wq);
    if (j.contains("aq")) j.at("aq").get_to(c.aq);
    if (j.contains("first_last")) j.at("first_last").get_to(c.first_last);
    if (j.contains("ste")) j.at("ste").get_to(c.ste);
    if (j.contains("bits")) c.bits = j.at("bits");
  } catch (const nlohmann::json::exception& e) {
    LB_FAIL("quant config: ", e.what());
  }
  return c;
}

void apply_skip_bits(Module& root, const nlohmann::json& spec, const std::string& source) {
  LB_CHECK(spec.is_object(), "--skip-bits ", source, ": expected {\"layer\": {\"w\": t, \"a\": t}}");
  auto refs = list_quantizers(root);
  std::set<std::string> layers;
  for (auto& l : quant_layers(root)) layers.insert(l.path);
  for (auto it = spec.begin(); it != spec.end(); ++it) {
    LB_CHECK(layers.count(it.key()), "--skip-bits ", source, ": unknown layer '", it.key(), "'");
    LB_CHECK(it->is_object(), "--skip-bits ", source, ": layer '", it.key(), "' must map to {\"w\": t, \"a\": t}");
    for (auto f = it->begin(); f != it->end(); ++f) {
      LB_CHECK(f.key() == "w" || f.key() == "a", "--skip-bits ", source, ": layer '", it.key(),
               "': unknown key '", f.key(), "' (expected w, a)");
      LB_CHECK(f->is_number_integer(), "--skip-bits ", source, ": layer '", it.key(), "': ",
               f.key(), " must be an integer");
      const std::string role = f.key() == "w" ? "wq" : "aq";
      QuantizerModule* qm = nullptr;
      for (auto& r : refs)
        if (r.layer_path == it.key() && r.role == role) qm = r.qm;
      LB_CHECK(qm, "--skip-bits ", source, ": layer '", it.key(), "' has no ", role, " quantizer");
      try {
        qm->set_skip_bits(f->get<int>());
      } catch (const Error& e) {
        LB_FAIL("--skip-bits ", source, ": ", e.what());
      }
    }
  }
}

}  // namespace lowbit
