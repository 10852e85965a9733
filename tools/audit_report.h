// The loop and the report of `lowbit audit` (tools/cmd_audit.cpp), apart from how the model is
// loaded so that tests can run it on a hand-built model: training batches without an update, each
// run twice (STE, then full-precision backward), statistics per quantizer node, table and JSON.
// METHODS.md "Gradient estimators to audit".
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "layers/module.h"
#include "quant/quant_stats.h"

namespace lowbit {

struct AuditNode {
  QuantNodeStats stats;  // accumulated over the batches (quant_stats.h)
  // Mean over the batches of cos(dL/dx under STE, dL/dx under the full-precision backward), x the
  // node's input (a weight: its full-precision gradient; an activation: the gradient of the
  // layer's input). NaN where x gets no gradient (the images) or one of them is zero.
  double cos_ste_fp = kNaN;
  // Weights: mean over the batches of the share of elements whose level changes after one SGD
  // step with the STE gradient, q(w - lr·g) != q(w); NaN for activations or a node that cannot be
  // replayed.
  double level_change = kNaN;
  int64_t cos_batches = 0, level_batches = 0;
};

struct AuditReport {
  std::vector<AuditNode> nodes;  // topological order of the first batch's graph
  int64_t batches = 0;
  double lr = 0;
};

// Runs up to `batches` batches from next_batch on model (train mode, no optimizer step; buffers
// such as BN running statistics and min-max ranges restored before the second pass, so that both
// passes see the same forward). set_fp_backward(on) switches the quantized layers' full-precision
// backward. The loss is softmax cross-entropy of the model's output and the batch's labels. The
// passes run on the model's device (module_device): batches made on the host are copied there.
AuditReport run_audit(Module& model, const std::function<bool(Batch&)>& next_batch, int64_t batches,
                      double lr, const std::function<void(bool)>& set_fp_backward);

// An aligned text table: node, method:bits, step/clip, clip low %, clip high %, |grad| per
// parameter, cos(STE, fp), level change %; "-" for NaN.
std::string audit_table(const AuditReport& r);
// {"batches", "lr", "nodes": [quant_node_json + "cos_ste_fp", "level_change"]}; NaN as null.
nlohmann::json audit_json(const AuditReport& r);

}  // namespace lowbit
