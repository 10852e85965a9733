// The math of `lowbit audit` (METHODS.md "Gradient estimators to audit"), testable on tensors:
// cosine between two gradient estimates, replaying a quantizer node on another tensor, the share of
// weights whose level changes after one SGD step, and the gradients reaching quantizer inputs.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/autograd.h"

namespace lowbit {

// cos(a, b) = <a, b> / (|a| |b|), in double over all elements. NaN when either is undefined or
// all zero; a and b must have the same number of elements.
double cosine_similarity(const Tensor& a, const Tensor& b);

// A quantizer op as a node ran it: enough to apply it again to another tensor.
struct QuantOpSpec {
  std::string kind;                                   // "lsq", "apot_w", ...
  std::vector<std::pair<std::string, double>> attrs;  // the node's attrs (bits, signed, ...)
  std::vector<std::pair<std::string, Tensor>> params;  // inputs after x by name ("s", "beta", "alpha"), detached
};
QuantOpSpec quant_op_spec(const Node& n);

// The op of spec applied to x (same shape as the node's x), no graph recorded. APoT/PoT and DoReFa
// weights and min-max with ranges from x recompute their statistics from x, as the op would on
// the next step. Errors name the kind where a replay is impossible: per-channel min-max with ranges
// from outside, per-channel rounding (their ranges/steps are not on the node).
Tensor apply_quant_op(const QuantOpSpec& spec, const Tensor& x);

// Share of w's elements whose quantized value changes after one SGD step with the quantizer's
// parameters held fixed: q(w - lr·grad) != q(w). NaN for an empty w.
double level_change_share(const QuantOpSpec& spec, const Tensor& w, const Tensor& grad, double lr);

// dL/dx of every quantizer node's input x after a backward pass, by node key (quant_nodes). attach
// before backward(root): for an x computed by a node it hooks that node, whose output gradient is
// dL/dx summed over every use of x; for a leaf x (a weight) collect reads x.grad(), so zero the
// leaves' gradients before the pass. An x that needs no gradient (the images) has no entry.
class QuantInputGrads {
 public:
  void attach(const Tensor& root);
  std::map<std::string, Tensor> collect() const;

 private:
  std::shared_ptr<std::map<std::string, Tensor>> hooked_ = std::make_shared<std::map<std::string, Tensor>>();
  std::vector<std::pair<std::string, Tensor>> leaves_;
};

}  // namespace lowbit
