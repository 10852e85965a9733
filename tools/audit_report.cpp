// `lowbit audit`'s loop and report (tools/audit_report.h): per batch an STE pass (statistics,
// gradients, level changes) and a full-precision-backward pass (gradients), then the cosines.
// METHODS.md "Gradient estimators to audit".
#include "tools/audit_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "core/ops.h"
#include "quant/audit.h"
#include "tools/device_option.h"

namespace lowbit {

namespace {

// Copies of the model's buffers (BN running statistics, min-max ranges, init flags), restored so
// that the second pass of a batch runs the same forward as the first. Each copy lives on its
// buffer's device (clone and copy_from work within and across devices).
class BufferSnapshot {
 public:
  explicit BufferSnapshot(Module& m) {
    for (auto& [name, t] : m.named_buffers()) saved_.emplace_back(t, t.clone());
  }
  void restore() {
    for (auto& [live, copy] : saved_) live.copy_from(copy);
  }

 private:
  std::vector<std::pair<Tensor, Tensor>> saved_;
};

std::string fmt(double v, const char* f) {
  if (!std::isfinite(v)) return "-";
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

nlohmann::json num_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

}  // namespace

AuditReport run_audit(Module& model, const std::function<bool(Batch&)>& next_batch, int64_t batches,
                      double lr, const std::function<void(bool)>& set_fp_backward) {
  LB_CHECK(batches >= 1, "audit: --batches must be >= 1, got ", batches);
  LB_CHECK(std::isfinite(lr) && lr > 0, "audit: --lr must be > 0, got ", lr);
  AuditReport rep;
  rep.lr = lr;
  QuantStatsAccumulator acc;
  struct Sums {
    double cos = 0, level = 0;
    int64_t cos_n = 0, level_n = 0;
  };
  std::map<std::string, Sums> sums;
  model.train();
  // Batches are made on the host; both passes run where the model's parameters are. Statistics,
  // cosines and level counts read device tensors through host copies (quant_stats.h, audit.h).
  const Device dev = module_device(model);
  Batch b;
  while (rep.batches < batches && next_batch(b)) {
    const Tensor x = to_device_if(b.x, dev), y = to_device_if(b.y, dev);
    BufferSnapshot snap(model);
    // Pass 1: the quantizers' own estimators (STE).
    set_fp_backward(false);
    model.zero_grad();
    std::map<std::string, Tensor> g_ste;
    {
      Tensor loss = softmax_cross_entropy(model(x), y);
      LB_CHECK(loss.requires_grad(), "audit: the model's loss does not require a gradient");
      QuantInputGrads cap;
      cap.attach(loss);
      backward(loss);
      acc.add(collect_quant_stats(loss));  // after backward: clip fractions and gradient norms
      g_ste = cap.collect();
      for (auto& [key, n] : quant_nodes(loss)) {
        if (!is_weight_quant_node(*n) || !g_ste.count(key)) continue;
        double share = kNaN;
        try {
          share = level_change_share(quant_op_spec(*n), n->inputs[0], g_ste[key], lr);
        } catch (const Error&) {
          // a node that cannot be replayed (per-channel ranges not on the node): no level change
        }
        if (std::isfinite(share)) sums[key].level += share, ++sums[key].level_n;
      }
    }
    // Pass 2: the same batch and forward, full-precision backward in every quantized layer.
    snap.restore();
    set_fp_backward(true);
    model.zero_grad();
    {
      Tensor loss = softmax_cross_entropy(model(x), y);
      QuantInputGrads cap;
      cap.attach(loss);
      // Under the full-precision backward the quantizer nodes are bypassed (their float inputs
      // feed the layer's *_fp_backward node directly), so the gradients at the quantizers'
      // inputs are the fp node's input gradients: x for "P/aq", the weight for "P/wq".
      auto fp_caught = std::make_shared<std::map<std::string, Tensor>>();
      for (auto& node : graph_nodes(loss)) {
        if (node->kind != "conv2d_fp_backward" && node->kind != "linear_fp_backward") continue;
        node->grad_hooks.push_back([fp_caught](const Node& n, const Tensor&, const std::vector<Tensor>& gin) {
          if (gin.size() > 0 && gin[0].defined()) (*fp_caught)[n.name + "/aq"] = gin[0].clone();
          if (gin.size() > 1 && gin[1].defined()) (*fp_caught)[n.name + "/wq"] = gin[1].clone();
        });
      }
      backward(loss);
      std::map<std::string, Tensor> g_fp = cap.collect();
      for (auto& [key, g] : *fp_caught) g_fp.emplace(key, g);
      for (auto& [key, g] : g_ste) {
        auto it = g_fp.find(key);
        const double c = it == g_fp.end() ? kNaN : cosine_similarity(g, it->second);
        if (std::isfinite(c)) sums[key].cos += c, ++sums[key].cos_n;
      }
    }
    set_fp_backward(false);
    model.zero_grad();
    ++rep.batches;
  }
  LB_CHECK(rep.batches > 0, "audit: the data has no training batches");
  for (QuantNodeStats& s : acc.result()) {
    AuditNode n;
    n.stats = s;
    const Sums& e = sums[s.node];
    n.cos_batches = e.cos_n, n.level_batches = e.level_n;
    if (e.cos_n) n.cos_ste_fp = e.cos / (double)e.cos_n;
    if (e.level_n) n.level_change = e.level / (double)e.level_n;
    rep.nodes.push_back(n);
  }
  return rep;
}

std::string audit_table(const AuditReport& r) {
  std::vector<std::vector<std::string>> rows = {
      {"node", "method:bits", "step/clip", "clip low %", "clip high %", "|grad|", "cos(STE,fp)", "level chg %"}};
  for (const AuditNode& n : r.nodes) {
    const QuantNodeStats& s = n.stats;
    std::string grads;
    for (const auto& [name, v] : s.grad_norms) grads += (grads.empty() ? "" : " ") + name + "=" + fmt(v, "%.3g");
    rows.push_back({s.node, s.kind + ":" + std::to_string(s.bits),
                    s.param_name.empty() ? "-" : s.param_name + "=" + fmt(s.step, "%.4g"),
                    fmt(100 * s.clip_low, "%.2f"), fmt(100 * s.clip_high, "%.2f"), grads.empty() ? "-" : grads,
                    fmt(n.cos_ste_fp, "%.4f"), fmt(100 * n.level_change, "%.3f")});
  }
  std::vector<size_t> w(rows[0].size(), 0);
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) w[c] = std::max(w[c], row[c].size());
  std::string out;
  for (size_t i = 0; i < rows.size(); ++i) {
    for (size_t c = 0; c < rows[i].size(); ++c) {
      const std::string& cell = rows[i][c];
      const std::string pad(w[c] - cell.size(), ' ');
      // text columns left-aligned, numbers right-aligned
      out += (c == 0 || c == 1 || c == 2 || c == 5) ? cell + pad : pad + cell;
      out += c + 1 < rows[i].size() ? "  " : "\n";
    }
    if (i == 0) {
      size_t total = 0;
      for (size_t c = 0; c < w.size(); ++c) total += w[c] + (c + 1 < w.size() ? 2 : 0);
      out += std::string(total, '-') + "\n";
    }
  }
  return out;
}

nlohmann::json audit_json(const AuditReport& r) {
  nlohmann::json nodes = nlohmann::json::array();
  for (const AuditNode& n : r.nodes) {
    nlohmann::json j = quant_node_json(n.stats);
    j["cos_ste_fp"] = num_or_null(n.cos_ste_fp);
    j["level_change"] = num_or_null(n.level_change);
    nodes.push_back(j);
  }
  return {{"batches", r.batches}, {"lr", r.lr}, {"nodes", nodes}};
}

}  // namespace lowbit
