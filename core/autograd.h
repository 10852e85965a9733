// Define-by-run autograd. Every differentiable op computes its output and, when grad mode is on
// and an input requires a gradient, records a Node: its kind ("conv2d"), a name a module gives it
// ("layer1.0.conv1"), its inputs, and a hand-written backward. backward() walks the nodes in
// reverse topological order; gradients accumulate here only.
#pragma once
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace lowbit {

struct Node;

// Backward of one node: given dL/d(output), return dL/d(input_i) for every input (an undefined
// Tensor where the input needs no gradient; Node::needs_grad(i) says which are wanted).
using BackwardFn = std::function<std::vector<Tensor>(const Node& node, const Tensor& grad_out)>;

// Called after a node's backward ran: the node, the gradient of its output, and the gradients it
// produced for its inputs (aligned with node.inputs).
using GradHook =
    std::function<void(const Node& node, const Tensor& grad_out, const std::vector<Tensor>& grad_in)>;

struct Node {
  std::string kind;  // op kind: "conv2d", "lsq", ...
  std::string name;  // optional: "layer1.0.conv1", "layer1.0.conv1/wq"; empty if unnamed
  std::vector<Tensor> inputs;
  std::vector<std::string> input_names;  // "x", "weight", ...; same length as inputs
  Shape out_shape;
  DType out_dtype = DType::f32;
  std::weak_ptr<TensorImpl> output;  // weak: the output owns the node, not the reverse
  BackwardFn backward;
  std::vector<GradHook> grad_hooks;
  int64_t seq = 0;  // creation order, for stable topological order and dumps
  // Op attributes for auditing and graph dumps: the options an op ran with that its inputs do not
  // carry (a quantizer's "bits", "signed", "per_channel", a fixed step...), numbers only, in the
  // order the op set them. Empty for most ops; set with set_node_attrs, read with attr().
  std::vector<std::pair<std::string, double>> attrs;

  bool needs_grad(size_t i) const {
    return i < inputs.size() && inputs[i].defined() && inputs[i].requires_grad();
  }
  std::string label() const { return name.empty() ? kind : name + " (" + kind + ")"; }
  Tensor output_tensor() const;  // undefined if the output was freed
  // The value of attribute key, or fallback when the node has none.
  double attr(const std::string& key, double fallback) const;
  bool has_attr(const std::string& key) const;
};

// Grad mode is thread-local, as in PyTorch: recording state is a property of the calling thread,
// not of any tensor, and threading it through every op signature would only add noise.
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when an op with these inputs must record a node.
bool should_record(const std::vector<Tensor>& inputs);

// For an elementwise backward: true when it may write its input gradient over g, node n's output
// gradient as the engine handed it over, because nothing else will read g: the engine holds the
// only reference to its tensor and storage (no other node's pending gradient, no view, no user's
// handle) and n has no grad hooks (they are shown g after the backward). Saves a fresh tensor's
// allocation and its first-touch cache misses per call.
bool grad_reusable(const Node& n, const Tensor& g);

// For a backward whose gradient for input i covers only part of that input (slice's): the
// gradient other consumers have already handed on for node.inputs[i], which it may add its own
// part into in place and return (the engine then adds nothing). Undefined unless the engine holds
// the only reference to that gradient, the tensor is on the CPU, and n has no grad hooks (they
// must be shown this node's own gradients); always for a leaf input, whose gradient goes to its
// .grad, which a user may hold, and is never pending. Without it, each slice of a split makes a gradient of the whole input,
// zeros outside its part, and the engine adds those full-size tensors: ShuffleNetV2's halves.
Tensor pending_grad(const Node& n, size_t i);

// Records the node for `out` (no-op when should_record is false). Returns `out`.
Tensor record(Tensor out, const std::string& kind, std::vector<Tensor> inputs,
              std::vector<std::string> input_names, BackwardFn backward);

// Gives the node that produced t a name (no-op for leaves); returns t.
Tensor name_node(Tensor t, const std::string& name);
// Sets (adds or overwrites) attributes of the node that produced t (no-op for leaves, i.e. when
// nothing was recorded); returns t.
Tensor set_node_attrs(Tensor t, const std::vector<std::pair<std::string, double>>& attrs);

struct BackwardOptions {
  bool retain_graph = false;  // keep the backward closures (and what they saved) after the pass
};

// Backpropagates from `root`. grad_root defaults to ones (only allowed for one-element roots).
void backward(const Tensor& root, const Tensor& grad_root = Tensor(),
              const BackwardOptions& opts = BackwardOptions());

// All nodes reachable from root, in topological order (inputs before consumers).
std::vector<std::shared_ptr<Node>> graph_nodes(const Tensor& root);

// Graphviz DOT of the graph that produced root: one box per node with its name, kind, output
// shape and attributes (a third line "bits=4 signed=1"); leaves (parameters, inputs) as ellipses
// with their names and shapes.
void write_dot(const Tensor& root, std::ostream& os);

// Sums g over the broadcast axes so that it has `shape` (the backward of broadcasting).
Tensor sum_to_shape(const Tensor& g, const Shape& shape);

}  // namespace lowbit
