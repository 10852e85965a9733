// Module: a node of the model tree with parameters, buffers and children, named as PyTorch's
// state_dict names them ("layer1.0.conv1.weight", "bn1.running_mean"). A module knows its own
// path ("layer1.0.conv1"), which it gives to the graph nodes it records, so a graph dump or a
// hook names the layer.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "core/ops.h"

namespace lowbit {

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Single-input forward: what Sequential chains. Modules with other signatures add their own.
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }

  // Short kind for tables and dumps ("Conv2d", "BasicBlock").
  virtual std::string kind() const = 0;
  // One-line description of the configuration ("16->32, k3 s2 p1").
  virtual std::string describe() const { return ""; }

  void train(bool on = true);  // recursive
  void eval() { train(false); }
  bool training() const { return training_; }

  const std::string& path() const { return path_; }  // "" for the root
  // path + "/" + suffix, or suffix for the root: the name of a graph node this module records.
  std::string node_name(const std::string& suffix = "") const;

  // Recursive, in registration order, with full dotted names.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  // Parameters then buffers, PyTorch's state_dict order within each module.
  std::vector<std::pair<std::string, Tensor>> state_dict() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const {
    return children_;
  }
  // Every module of the tree with its path, depth-first, the root first.
  std::vector<std::pair<std::string, Module*>> named_modules();

  // Copies values into the existing tensors by name. strict: the names must match exactly
  // (missing or unexpected names and shape/dtype mismatches are errors naming the tensor).
  void load_state_dict(const std::vector<std::pair<std::string, Tensor>>& sd, bool strict = true);
  void zero_grad();
  int64_t num_parameters() const;
  // Moves every float parameter and buffer of the tree to device d in place (the tensors keep
  // their identity, so optimizers built before still see them); integer buffers such as
  // num_batches_tracked and 0-d flags (a quantizer's "initialized") stay on the host, where they
  // are counted and read every step without a device round trip.
  void to_device(Device d);

  // (Re)initialises this module's own parameters and buffers from the seed. Each tensor draws
  // from its own stream, stream_id(full name), so init does not depend on construction order.
  virtual void reset_parameters(uint64_t seed) {}
  // Calls reset_parameters on every module of the tree.
  void init(uint64_t seed);

 protected:
  Tensor& register_parameter(const std::string& name, Tensor t);  // sets requires_grad
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  // Called after the module's training flag changes (train/eval), e.g. to switch quantizers.
  virtual void on_train_mode(bool) {}

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void set_path(const std::string& p);  // renames this module, its tensors and its descendants
  void collect(const std::string& prefix, bool params, bool buffers,
               std::vector<std::pair<std::string, Tensor>>& out) const;

  bool training_ = true;
  std::string path_;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

using ModulePtr = std::shared_ptr<Module>;

}  // namespace lowbit
