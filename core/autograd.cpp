// The autograd engine: node recording, reverse-topological backward with gradient accumulation,
// graph walking and Graphviz output.
#include "core/autograd.h"

#include <algorithm>
#include <atomic>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "core/ops.h"
#include "core/profiler.h"

namespace lowbit {

namespace {
thread_local bool g_grad_enabled = true;
// The profiler a ProfileScope installed on this thread (bench --profile), else null: the engine's
// charge points below each cost one predictable branch when not profiling.
thread_local OpProfiler* g_profiler = nullptr;
// Rows the backward pass charges besides the node kinds (core/profiler.h).
const char* const kEngineRow = "autograd engine";
const char* const kAccumulateRow = "grad accumulate";
std::atomic<int64_t> g_node_seq{0};
using PendingGrads = std::unordered_map<Node*, std::shared_ptr<TensorImpl>>;
// The running backward's pending gradients, and those pending_grad handed to the node now running
// (returned, they are already added), on this thread; null outside a backward.
struct BackwardState {
  PendingGrads pending;
  std::vector<const TensorImpl*> handed;
};
thread_local BackwardState* g_backward = nullptr;

// True when the one reference p names a plain tensor that nothing else holds, nor its storage, so
// writing into it cannot change a value anyone else reads. An op may hand one tensor to several
// inputs (add's backward returns g for both), a backward may return a view or a detached saved
// tensor, and a user may hold a leaf's gradient: all of those raise a count. (So a tensor passing
// this shares no storage with any other, g included.)
bool only_holder(const std::shared_ptr<TensorImpl>& p) {
  return p.use_count() == 1 && p->storage && p->storage.use_count() == 1 && !p->node &&
         !p->requires_grad;
}

// The slot's tensor can take g added in place.
bool sole_owner(const std::shared_ptr<TensorImpl>& slot, const Tensor& g) {
  return only_holder(slot) && slot->dtype == g.dtype() && slot->shape == g.shape() &&
         slot->storage->device == g.device();
}

// Adds g into the slot. The first gradient is kept as it is (no copy: most slots receive exactly
// one). A second one is added in place when the slot is the sole owner of its tensor (a residual
// block's input: the skip's gradient, then the convolution's), else into a fresh sum; the same
// bits either way.
void accumulate(std::shared_ptr<TensorImpl>& slot, const Tensor& g) {
  if (!g.defined()) return;
  if (!slot) {
    slot = g.impl_ptr();
    return;
  }
  NoGradGuard ng;
  if (sole_owner(slot, g)) {
    add_into(Tensor(slot), g);
    return;
  }
  slot = add(Tensor(slot), g).impl_ptr();
}
}  // namespace

bool grad_reusable(const Node& n, const Tensor& g) {
  return g.defined() && n.grad_hooks.empty() && only_holder(g.impl_ptr());
}

Tensor pending_grad(const Node& n, size_t i) {
  if (!g_backward || !n.grad_hooks.empty() || i >= n.inputs.size()) return Tensor();
  const Tensor& in = n.inputs[i];
  if (!in.defined() || !in.node()) return Tensor();  // a leaf's gradient is never pending
  auto it = g_backward->pending.find(in.node().get());
  if (it == g_backward->pending.end() || !it->second) return Tensor();
  const std::shared_ptr<TensorImpl>& slot = it->second;
  if (!only_holder(slot) || slot->storage->device != Device::cpu || slot->shape != in.shape() ||
      slot->dtype != in.dtype())
    return Tensor();
  g_backward->handed.push_back(slot.get());
  return Tensor(slot);
}

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }
ProfileScope::ProfileScope(OpProfiler& p) : prev_(g_profiler) { g_profiler = &p; }
ProfileScope::~ProfileScope() { g_profiler = prev_; }

Tensor Node::output_tensor() const {
  auto p = output.lock();
  return p ? Tensor(p) : Tensor();
}

bool should_record(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Tensor record(Tensor out, const std::string& kind, std::vector<Tensor> inputs,
              std::vector<std::string> input_names, BackwardFn backward) {
  if (!should_record(inputs)) return out;
  auto node = std::make_shared<Node>();
  node->kind = kind;
  node->inputs = std::move(inputs);
  node->input_names = std::move(input_names);
  node->input_names.resize(node->inputs.size());
  node->out_shape = out.shape();
  node->out_dtype = out.dtype();
  node->output = out.impl_ptr();
  node->backward = std::move(backward);
  node->seq = g_node_seq++;
  out.impl().node = node;
  out.impl().requires_grad = true;
  // The op's forward ends here: charge it the time since the previous mark (the previous op's
  // record), including the recording above. Only recorded nodes, i.e. with grad on: ops inside a
  // backward function run under NoGradGuard and are their node's backward time.
  if (g_profiler) g_profiler->charge(kind, OpProfiler::Phase::forward);
  return out;
}

Tensor name_node(Tensor t, const std::string& name) {
  if (t.defined() && t.node()) t.node()->name = name;
  return t;
}

Tensor set_node_attrs(Tensor t, const std::vector<std::pair<std::string, double>>& attrs) {
  if (!t.defined() || !t.node()) return t;
  auto& own = t.node()->attrs;
  for (const auto& kv : attrs) {
    auto it = std::find_if(own.begin(), own.end(), [&](const auto& a) { return a.first == kv.first; });
    if (it == own.end())
      own.push_back(kv);
    else
      it->second = kv.second;
  }
  return t;
}

double Node::attr(const std::string& key, double fallback) const {
  for (const auto& kv : attrs)
    if (kv.first == key) return kv.second;
  return fallback;
}

bool Node::has_attr(const std::string& key) const {
  for (const auto& kv : attrs)
    if (kv.first == key) return true;
  return false;
}

std::vector<std::shared_ptr<Node>> graph_nodes(const Tensor& root) {
  std::vector<std::shared_ptr<Node>> order;
  if (!root.defined() || !root.node()) return order;
  // Iterative post-order DFS: a deep network must not overflow the stack.
  std::unordered_set<Node*> seen;
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack;
  stack.push_back({root.node(), 0});
  seen.insert(root.node().get());
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    if (next < node->inputs.size()) {
      const Tensor& in = node->inputs[next++];
      if (in.defined() && in.node() && !seen.count(in.node().get())) {
        seen.insert(in.node().get());
        stack.push_back({in.node(), 0});
      }
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }
  return order;
}

void backward(const Tensor& root, const Tensor& grad_root, const BackwardOptions& opts) {
  OpProfiler* const prof = g_profiler;
  // What ran between the loss and this call (zero_grad, ...) is the caller's: start afresh.
  if (prof) prof->mark();
  check_defined(root, "backward", "root");
  LB_CHECK(root.requires_grad(), "backward: the root tensor does not require a gradient (no input "
           "of the graph requires one, or it was computed under no_grad)");
  Tensor g0 = grad_root;
  if (!g0.defined()) {
    LB_CHECK(root.numel() == 1, "backward: root has shape ", shape_str(root.shape()),
             "; a gradient must be given for a root with more than one element");
    g0 = Tensor::full(root.shape(), 1.0, root.dtype());
    if (root.device() != Device::cpu) g0 = g0.to_device(root.device());
  }
  LB_CHECK(g0.shape() == root.shape(), "backward: gradient shape ", shape_str(g0.shape()),
           " does not match root shape ", shape_str(root.shape()));
  LB_CHECK(g0.dtype() == root.dtype(), "backward: gradient dtype ", dtype_name(g0.dtype()),
           " does not match root dtype ", dtype_name(root.dtype()));

  if (!root.node()) {  // a leaf: its gradient is the given one
    std::shared_ptr<TensorImpl>& slot = root.impl().grad;
    accumulate(slot, g0);
    if (prof) prof->charge(kAccumulateRow, OpProfiler::Phase::backward, false);
    return;
  }
  // Each node's output gradient is accumulated in this map while consumers run.
  BackwardState state;
  PendingGrads& pending = state.pending;
  struct Scope {  // pending_grad sees this backward's state, and none after it (or a throw)
    BackwardState* prev;
    explicit Scope(BackwardState* s) : prev(g_backward) { g_backward = s; }
    ~Scope() { g_backward = prev; }
  } scope(&state);
  std::vector<std::shared_ptr<Node>> order = graph_nodes(root);
  accumulate(pending[root.node().get()], g0);
  NoGradGuard no_grad;  // backward functions compute plain tensors
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node& node = **it;
    auto found = pending.find(&node);
    if (found == pending.end() || !found->second) continue;  // no gradient flows here
    Tensor gout(found->second);
    pending.erase(found);
    LB_CHECK(node.backward, "backward: node ", node.label(), " was already freed; pass "
             "retain_graph to backpropagate twice through the same graph");
    if (prof) prof->charge(kEngineRow, OpProfiler::Phase::backward, false);
    state.handed.clear();
    std::vector<Tensor> gin = node.backward(node, gout);
    if (prof) prof->charge(node.kind, OpProfiler::Phase::backward);
    LB_CHECK(gin.size() == node.inputs.size(), "backward of ", node.label(), " returned ",
             gin.size(), " gradients for ", node.inputs.size(), " inputs");
    for (auto& hook : node.grad_hooks) hook(node, gout, gin);
    // Hooks are the engine's (a clock read fewer per node without them: on the GPU each waits).
    if (prof && !node.grad_hooks.empty()) prof->charge(kEngineRow, OpProfiler::Phase::backward, false);
    for (size_t i = 0; i < gin.size(); ++i) {
      const Tensor& in = node.inputs[i];
      if (!gin[i].defined() || !in.defined() || !in.requires_grad()) continue;
      LB_CHECK(gin[i].shape() == in.shape(), "backward of ", node.label(), ": gradient for input ",
               i, " has shape ", shape_str(gin[i].shape()), ", input has ", shape_str(in.shape()));
      if (in.node()) {
        std::shared_ptr<TensorImpl>& slot = pending[in.node().get()];
        auto handed = std::find(state.handed.begin(), state.handed.end(), gin[i].impl_ptr().get());
        if (handed != state.handed.end() && slot == gin[i].impl_ptr()) {
          state.handed.erase(handed);  // added in place through pending_grad: nothing to add
          continue;
        }
        accumulate(slot, gin[i]);
      }
      else
        accumulate(in.impl().grad, gin[i]);
    }
    if (prof) prof->charge(kAccumulateRow, OpProfiler::Phase::backward, false);
    if (!opts.retain_graph) node.backward = nullptr;  // frees what the closure saved
  }
  if (prof) prof->charge(kEngineRow, OpProfiler::Phase::backward, false);
}

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  // Sum the leading axes that broadcasting added, then the axes where shape has size 1.
  const int64_t lead = g.dim() - (int64_t)shape.size();
  LB_CHECK(lead >= 0, "sum_to_shape: cannot reduce ", shape_str(g.shape()), " to ", shape_str(shape));
  std::vector<int64_t> axes;
  for (int64_t i = 0; i < lead; ++i) axes.push_back(i);
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] == 1 && g.shape()[lead + i] != 1) axes.push_back(lead + (int64_t)i);
  Tensor r = axes.empty() ? g : sum(g, axes, /*keepdim=*/false);
  return r.view(shape);
}

void write_dot(const Tensor& root, std::ostream& os) {
  os << "digraph lowbit {\n  rankdir=BT;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  auto order = graph_nodes(root);
  std::unordered_map<const void*, std::string> leaf_ids;
  auto quote = [](const std::string& s) {
    std::string r;
    for (char c : s) r += (c == '"' ? std::string("\\\"") : std::string(1, c));
    return r;
  };
  for (auto& n : order) {
    std::string id = "n" + std::to_string(n->seq);
    os << "  " << id << " [shape=box, label=\"" << quote(n->name.empty() ? n->kind : n->name)
       << "\\n" << n->kind << " " << shape_str(n->out_shape);
    if (!n->attrs.empty()) {
      os << "\\n";
      for (size_t k = 0; k < n->attrs.size(); ++k) {
        std::ostringstream v;
        v << n->attrs[k].second;  // shortest default form: 4, 0.0312, 1e-05
        os << (k ? " " : "") << quote(n->attrs[k].first) << "=" << v.str();
      }
    }
    os << "\"];\n";
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const Tensor& in = n->inputs[i];
      if (!in.defined()) continue;
      std::string src;
      if (in.node()) {
        src = "n" + std::to_string(in.node()->seq);
      } else {
        const void* key = in.impl_ptr().get();
        auto f = leaf_ids.find(key);
        if (f == leaf_ids.end()) {
          src = "l" + std::to_string(leaf_ids.size());
          leaf_ids[key] = src;
          std::string label = in.name().empty() ? n->input_names[i] : in.name();
          os << "  " << src << " [shape=ellipse, label=\"" << quote(label) << "\\n"
             << shape_str(in.shape()) << "\"" << (in.requires_grad() ? ", style=bold" : "") << "];\n";
        } else {
          src = f->second;
        }
      }
      os << "  " << src << " -> " << id << " [label=\"" << quote(n->input_names[i]) << "\"];\n";
    }
  }
  os << "}\n";
}

}  // namespace lowbit
