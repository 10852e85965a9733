// Per-node statistics of the quantizers in an autograd graph, for `lowbit audit` and the training
// log: bits, step or clip value, the fractions of elements clipped below and above the range, and
// the gradient norms of the node's leaf inputs. Works from the graph alone (node kind, inputs and
// attrs). METHODS.md "Uniform quantizers", "Non-uniform quantizers", "Gradient estimators to audit".
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/autograd.h"

namespace lowbit {

// The node kinds of the quantizer ops: lsq, lsqplus, pact, dorefa_w, dorefa_a, apot_w, apot_a,
// pot_w, pot_a, minmax, nearest_round, stochastic_round, midrise.
bool is_quant_kind(const std::string& kind);

// The quantizer nodes of root's graph in topological order, each with its key: the node's name
// ("layer1.0.conv1/wq"), or "<kind>#<k>" for an unnamed node, k its ordinal among the quantizer
// nodes (the same for two forwards of the same model, unlike Node::seq).
std::vector<std::pair<std::string, std::shared_ptr<Node>>> quant_nodes(const Tensor& root);

// A weight quantizer: kind *_w (kind *_a is not); else by name, ".../wq" is and ".../aq" is not;
// else when x is a leaf that requires a gradient (a parameter).
bool is_weight_quant_node(const Node& n);

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct QuantNodeStats {
  std::string node;  // key from quant_nodes: "layer1.0.conv1/wq"
  std::string kind;  // "lsq", "apot_w", ...
  int bits = 0;
  bool is_weight = false;
  // The step or clip value: LSQ/LSQ+ s, PACT/APoT/PoT α, min-max S, rounding s (per-channel: the
  // mean over channels); NaN where there is none (DoReFa) or it is not on the node.
  double step = kNaN;
  std::string param_name;  // what step is: "s", "alpha", "scale", "step"; "" if none
  // Fractions of x's elements clipped below / above the quantizer's range (definitions below);
  // NaN where the node does not carry what they need (per-channel min-max or rounding steps).
  double clip_low = kNaN, clip_high = kNaN;
  int64_t numel = 0;  // elements of x
  // ||g||_2 of each leaf input of the node that holds a gradient, by input name: the learnable
  // "s", "beta", "alpha", and the weight ("x" / "w") of a weight quantizer. Empty before backward.
  std::vector<std::pair<std::string, double>> grad_norms;
};

// Statistics of every quantizer node of root's graph, in topological order. Reads the nodes'
// inputs, so call it before an optimizer step changes the parameters in place; the gradient norms
// are those the leaves hold (after backward(root), zero them before it). Clipping, per method:
//   lsq        v = x/s:       low v <= -Q_N, high v >= Q_P   (where ∂x̂/∂s saturates)
//   lsqplus    v = (x-β)/s:   the same
//   pact       low x < 0, high x >= α                        (∂y_q/∂x = 1[0 <= x < α])
//   dorefa_a   low x < 0, high x > 1;   dorefa_w: none (tanh squashes), 0 and 0
//   apot/pot   u = x/α (weights: u = (w - mean)/std/α, the op's statistics): low u < -1, high u > 1
//   minmax     code round(x/S) + Z: low code < q_min, high code > q_max (the op's clamp)
//   rounding   v = x/s: low v <= lo, high v >= hi (the clipped STE's mask; lo/hi of the grid)
std::vector<QuantNodeStats> collect_quant_stats(const Tensor& root);
// The same for one node (key as quant_nodes gives it).
QuantNodeStats quant_node_stats(const Node& n, const std::string& key);

// Accumulates the statistics of several batches (nodes matched by key, first-seen order): clip
// fractions over all elements seen, step and gradient norms averaged over the batches that had them.
class QuantStatsAccumulator {
 public:
  void add(const std::vector<QuantNodeStats>& batch);
  std::vector<QuantNodeStats> result() const;
  int64_t batches() const { return batches_; }

 private:
  struct Entry {
    QuantNodeStats first;
    double step_sum = 0, low = 0, high = 0;
    int64_t step_n = 0, clip_elems = 0, numel = 0;
    std::vector<std::pair<std::string, std::pair<double, int64_t>>> grads;  // sum, count
  };
  std::vector<Entry> entries_;
  int64_t batches_ = 0;
};

// One JSON object per node (NaN as null): node, kind, bits, is_weight, param, step, clip_low,
// clip_high, numel, grad_norms {name: norm}.
nlohmann::json quant_node_json(const QuantNodeStats& s);
// The training log's lines: a JSON array with one object per node,
// {"type":"quant","epoch":E,"node":...,"kind":...,"bits":...,"is_weight":...,"param":...,
//  "step":...,"clip_low":...,"clip_high":...}; append each element to metrics.jsonl.
nlohmann::json quant_stats_json(const std::vector<QuantNodeStats>& stats, int64_t epoch);

}  // namespace lowbit
