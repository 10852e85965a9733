// Audit math (quant/audit.h): cosine of gradient estimates, replay of a quantizer node from its
// kind, attrs and parameters, level changes after an SGD step, gradients at quantizer inputs.
// METHODS.md "Gradient estimators to audit".
#include "quant/audit.h"

#include <cmath>

#include "core/ops.h"
#include "quant/apot.h"
#include "quant/dorefa.h"
#include "quant/lsq.h"
#include "quant/minmax.h"
#include "quant/pact.h"
#include "quant/quant_stats.h"
#include "quant/rounding.h"

namespace lowbit {

namespace {

double spec_attr(const QuantOpSpec& s, const char* key, double fallback) {
  for (const auto& kv : s.attrs)
    if (kv.first == key) return kv.second;
  return fallback;
}

bool spec_has(const QuantOpSpec& s, const char* key) {
  for (const auto& kv : s.attrs)
    if (kv.first == key) return true;
  return false;
}

const Tensor& spec_param(const QuantOpSpec& s, const char* name) {
  for (const auto& kv : s.params)
    if (kv.first == name && kv.second.defined()) return kv.second;
  LB_FAIL("apply_quant_op: ", s.kind, " node has no input '", name, "'");
}

// A per-tensor range or step read back from the node's attrs, on x's device: the op takes its
// parameters where x is (the GPU ops refuse a host tensor beside a device one).
Tensor scalar_param(double v, const Tensor& x) {
  const Tensor t = Tensor::from_vector<double>({1}, {v}).to(x.dtype());
  return x.device() == Device::cpu ? t : t.to_device(x.device());
}

}  // namespace

double cosine_similarity(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) return kNaN;
  LB_CHECK(a.numel() == b.numel(), "cosine_similarity: the tensors have ", a.numel(), " and ", b.numel(),
           " elements");
  // to_vector copies a device tensor to the host once: the sums run there, in double.
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double xy = 0, xx = 0, yy = 0;
  for (size_t i = 0; i < x.size(); ++i) xy += x[i] * y[i], xx += x[i] * x[i], yy += y[i] * y[i];
  if (!(xx > 0) || !(yy > 0)) return kNaN;
  return xy / (std::sqrt(xx) * std::sqrt(yy));
}

QuantOpSpec quant_op_spec(const Node& n) {
  LB_CHECK(is_quant_kind(n.kind), "quant_op_spec: node ", n.label(), " is not a quantizer op");
  QuantOpSpec s;
  s.kind = n.kind;
  s.attrs = n.attrs;
  for (size_t i = 1; i < n.inputs.size(); ++i)
    s.params.emplace_back(n.input_names[i], n.inputs[i].defined() ? n.inputs[i].detach() : Tensor());
  return s;
}

Tensor apply_quant_op(const QuantOpSpec& s, const Tensor& x_in) {
  NoGradGuard ng;
  const Tensor x = x_in.detach();
  const std::string& k = s.kind;
  LB_CHECK(spec_has(s, "bits"), "apply_quant_op: the ", k, " node has no 'bits' attribute");
  const int bits = (int)spec_attr(s, "bits", 0);
  const bool per_channel = spec_attr(s, "per_channel", 0) != 0;
  if (k == "lsq" || k == "lsqplus") {
    LsqOptions o;
    o.bits = bits;
    o.is_signed = spec_attr(s, "signed", 1) != 0;
    o.per_channel = per_channel;
    return k == "lsq" ? lsq_quantize(x, spec_param(s, "s"), o)
                      : lsqplus_quantize(x, spec_param(s, "s"), spec_param(s, "beta"), o);
  }
  if (k == "pact") {
    PactOptions o;
    o.bits = bits;
    return pact_quantize(x, spec_param(s, "alpha"), o);
  }
  if (k == "dorefa_w" || k == "dorefa_a") {
    DorefaOptions o;
    o.bits = bits;
    return k == "dorefa_w" ? dorefa_quantize_weight(x, o) : dorefa_quantize_activation(x, o);
  }
  if (k == "apot_w" || k == "apot_a" || k == "pot_w" || k == "pot_a") {
    ApotOptions o;
    o.bits = bits;
    const Tensor& a = spec_param(s, "alpha");
    if (k == "apot_w") return apot_quantize_weight(x, a, o);
    if (k == "pot_w") return pot_quantize_weight(x, a, o);
    if (k == "apot_a") return apot_quantize_activation(x, a, o);
    return pot_quantize_activation(x, a, o);
  }
  if (k == "minmax") {
    MinMaxOptions o;
    o.bits = bits;
    o.symmetric = spec_attr(s, "symmetric", 0) != 0;
    o.per_channel = per_channel;
    if (spec_attr(s, "range_from_x", 0) != 0) return minmax_quantize(x, o);
    LB_CHECK(!per_channel && spec_has(s, "range_min") && spec_has(s, "range_max"),
             "apply_quant_op: minmax node with per-channel ranges from outside cannot be replayed "
             "(its ranges are not on the node)");
    return minmax_quantize(x, scalar_param(spec_attr(s, "range_min", 0), x),
                           scalar_param(spec_attr(s, "range_max", 0), x), o);
  }
  if (k == "nearest_round" || k == "stochastic_round" || k == "midrise") {
    LB_CHECK(!per_channel && spec_has(s, "step"), "apply_quant_op: ", k,
             " node with per-channel steps cannot be replayed (its steps are not on the node)");
    RoundingOptions o;
    o.bits = bits;
    o.is_signed = spec_attr(s, "signed", 1) != 0;
    o.seed = (uint64_t)spec_attr(s, "seed", 0);  // exact below 2^53
    o.stream = (uint64_t)spec_attr(s, "stream", 0);
    const Tensor st = scalar_param(spec_attr(s, "step", 1), x);
    if (k == "nearest_round") return nearest_round(x, st, o);
    if (k == "stochastic_round") return stochastic_round(x, st, o);
    return midrise_quantize(x, st, o);
  }
  LB_FAIL("apply_quant_op: unknown quantizer kind '", k, "'");
}

double level_change_share(const QuantOpSpec& spec, const Tensor& w, const Tensor& grad, double lr) {
  LB_CHECK(w.defined() && grad.defined(), "level_change_share: weight and gradient must be defined");
  LB_CHECK(w.shape() == grad.shape(), "level_change_share: gradient shape ", shape_str(grad.shape()),
           " differs from the weight's ", shape_str(w.shape()));
  LB_CHECK(std::isfinite(lr) && lr >= 0, "level_change_share: lr must be finite and >= 0, got ", lr);
  if (w.numel() == 0) return kNaN;
  NoGradGuard ng;
  const Tensor wd = w.detach();
  // The step and both quantizations run where w is (the GPU's quantizer kernels give the CPU's
  // levels); only the two results come to the host. Tensor::to converts on the host only, and a
  // gradient of w's dtype needs no conversion (on the GPU both are float32).
  const Tensor g = grad.dtype() == wd.dtype() ? grad.detach() : grad.detach().to(wd.dtype());
  const Tensor stepped = sub(wd, mul_scalar(g, lr));
  const std::vector<double> a = apply_quant_op(spec, wd).to_vector<double>();
  const std::vector<double> b = apply_quant_op(spec, stepped).to_vector<double>();
  int64_t changed = 0;
  for (size_t i = 0; i < a.size(); ++i) changed += a[i] != b[i];
  return (double)changed / (double)a.size();
}

void QuantInputGrads::attach(const Tensor& root) {
  for (auto& [key, n] : quant_nodes(root)) {
    if (n->inputs.empty() || !n->inputs[0].defined()) continue;
    const Tensor& x = n->inputs[0];
    if (x.node()) {
      auto store = hooked_;
      const std::string k = key;
      x.node()->grad_hooks.push_back(
          [store, k](const Node&, const Tensor& gout, const std::vector<Tensor>&) { (*store)[k] = gout.clone(); });
    } else if (x.requires_grad()) {
      leaves_.emplace_back(key, x);
    }
  }
}

std::map<std::string, Tensor> QuantInputGrads::collect() const {
  std::map<std::string, Tensor> out = *hooked_;
  for (const auto& [key, x] : leaves_) {
    Tensor g = x.grad();
    if (g.defined()) out[key] = g.clone();
  }
  return out;
}

}  // namespace lowbit
