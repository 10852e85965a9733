// A table of ops runnable by name on tensors from files (`lowbit grad OP ...`). Each area adds its
// ops in one function (core ops in tools/grad_ops_core.cpp, quantizers in quant/grad_ops_quant.cpp)
// and tools/cmd_grad.cpp collects them. Options are strings parsed by OpOptions, which rejects
// unknown names and bad values with an error naming the op and the option.
#pragma once
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace lowbit {

class OpOptions {
 public:
  OpOptions(std::string op, std::map<std::string, std::string> values)
      : op_(std::move(op)), values_(std::move(values)) {}
  // Typed getters with defaults; each marks the option as known.
  double get_double(const std::string& key, double def) const;
  int64_t get_int(const std::string& key, int64_t def) const;
  bool get_bool(const std::string& key, bool def) const;  // true/false/1/0
  std::string get_string(const std::string& key, const std::string& def) const;
  // Pairs such as stride=2 or stride=2,1 (PyTorch's int-or-tuple).
  std::vector<int64_t> get_pair(const std::string& key, int64_t def) const;
  bool has(const std::string& key) const { return values_.count(key) > 0; }
  // Throws if a given option was never read by the op (an unknown or misspelt option).
  void check_all_used() const;

 private:
  const std::string* find(const std::string& key) const;
  std::string op_;
  std::map<std::string, std::string> values_;
  mutable std::set<std::string> used_;
};

struct OpInput {
  std::string name;
  bool optional = false;
  bool integer = false;  // e.g. class targets: int64, never differentiated
};

struct OpOption {
  std::string name;
  std::string help;  // includes the default, e.g. "stride (default 1)"
};

struct RegisteredOp {
  std::string name;
  std::string summary;
  std::vector<OpInput> inputs;
  std::vector<OpOption> options;
  // Runs the op forward, recording the graph. Inputs are keyed by name (optional ones may be
  // absent). Returns the output tensor.
  std::function<Tensor(const std::map<std::string, Tensor>& in, const OpOptions& opt)> run;
};

void add_core_grad_ops(std::vector<RegisteredOp>& table);   // tools/grad_ops_core.cpp
void add_quant_grad_ops(std::vector<RegisteredOp>& table);  // quant/grad_ops_quant.cpp
const std::vector<RegisteredOp>& registered_ops();          // all of them, sorted by name
const RegisteredOp& find_registered_op(const std::string& name);  // error lists the known names

}  // namespace lowbit
