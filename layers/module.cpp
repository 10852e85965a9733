// Module: the model tree. Names and orders follow PyTorch's nn.Module: a state_dict lists, for
// each module depth-first, its own parameters, then its own buffers, then its children in
// registration order (torch's _save_to_state_dict then the recursion over _modules).
#include "layers/module.h"

#include <unordered_map>
#include <unordered_set>

#include "core/error.h"

namespace lowbit {

namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// A name of a parameter, buffer or child: non-empty and without '.', which separates path parts.
void check_local_name(const std::string& name, const char* what, const std::string& path) {
  LB_CHECK(!name.empty(), "Module '", path, "': ", what, " name is empty");
  LB_CHECK(name.find('.') == std::string::npos, "Module '", path, "': ", what, " name '", name,
           "' contains '.'");
}

}  // namespace

void Module::train(bool on) {
  training_ = on;
  on_train_mode(on);
  for (auto& c : children_) c.second->train(on);
}

std::string Module::node_name(const std::string& suffix) const {
  if (suffix.empty()) return path_;
  return path_.empty() ? suffix : path_ + "/" + suffix;
}

void Module::collect(const std::string& prefix, bool params, bool buffers,
                     std::vector<std::pair<std::string, Tensor>>& out) const {
  if (params)
    for (auto& p : params_) out.push_back({prefix + p.first, p.second});
  if (buffers)
    for (auto& b : buffers_) out.push_back({prefix + b.first, b.second});
  for (auto& c : children_) c.second->collect(prefix + c.first + ".", params, buffers, out);
}

// named_parameters/named_buffers drop a tensor met a second time (weight sharing), as PyTorch's
// remove_duplicate=True does, so that an optimizer updates a shared weight once.
static std::vector<std::pair<std::string, Tensor>> dedup(
    std::vector<std::pair<std::string, Tensor>> all) {
  std::unordered_set<const TensorImpl*> seen;
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& e : all)
    if (seen.insert(e.second.impl_ptr().get()).second) out.push_back(std::move(e));
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", true, false, out);
  return dedup(std::move(out));
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", false, true, out);
  return dedup(std::move(out));
}

std::vector<std::pair<std::string, Tensor>> Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", true, true, out);
  return out;
}

void Module::to_device(Device d) {
  for (auto& e : state_dict())
    if (is_floating(e.second.dtype()) && e.second.dim() >= 1) {
      Tensor t = e.second;
      t.move_to(d);
    }
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& p : named_parameters()) out.push_back(p.second);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out;
  // Explicit stack (children pushed in reverse) keeps the depth-first, registration order.
  std::vector<std::pair<std::string, Module*>> stack{{"", this}};
  while (!stack.empty()) {
    auto cur = stack.back();
    stack.pop_back();
    out.push_back(cur);
    auto& ch = cur.second->children_;
    for (auto it = ch.rbegin(); it != ch.rend(); ++it)
      stack.push_back({join(cur.first, it->first), it->second.get()});
  }
  return out;
}

void Module::load_state_dict(const std::vector<std::pair<std::string, Tensor>>& sd, bool strict) {
  std::unordered_map<std::string, const Tensor*> given;
  std::vector<std::string> errors;
  for (auto& e : sd) {
    if (!given.emplace(e.first, &e.second).second)
      errors.push_back("duplicate key '" + e.first + "' in the given state_dict");
    else if (!e.second.defined())
      errors.push_back("'" + e.first + "' is an undefined tensor");
  }
  auto own = state_dict();
  std::unordered_set<std::string> own_names;
  std::vector<std::pair<Tensor, const Tensor*>> copies;
  for (auto& e : own) {
    own_names.insert(e.first);
    auto f = given.find(e.first);
    if (f == given.end()) {
      if (strict) errors.push_back("missing key '" + e.first + "'");
      continue;
    }
    const Tensor& src = *f->second;
    if (!src.defined()) continue;
    // Shape and dtype mismatches are errors even when not strict: a silent partial load or a
    // silent conversion would hide a wrong checkpoint.
    if (src.shape() != e.second.shape())
      errors.push_back("shape mismatch for '" + e.first + "': checkpoint " +
                       shape_str(src.shape()) + ", model " + shape_str(e.second.shape()));
    else if (src.dtype() != e.second.dtype())
      errors.push_back(str_cat("dtype mismatch for '", e.first, "': checkpoint ",
                               dtype_name(src.dtype()), ", model ", dtype_name(e.second.dtype())));
    else
      copies.push_back({e.second, &src});
  }
  if (strict)
    for (auto& e : sd)
      if (!own_names.count(e.first)) errors.push_back("unexpected key '" + e.first + "'");
  if (!errors.empty()) {
    std::string msg = "load_state_dict";
    if (!path_.empty()) msg += " into '" + path_ + "'";
    msg += ": ";
    for (size_t i = 0; i < errors.size(); ++i) msg += (i ? "; " : "") + errors[i];
    LB_FAIL(msg);
  }
  // Nothing is copied unless everything checked out, so a failed load leaves the model intact.
  for (auto& c : copies) c.first.copy_from(*c.second);
}

void Module::zero_grad() {
  for (auto& p : named_parameters()) p.second.zero_grad();
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : named_parameters()) n += p.second.numel();
  return n;
}

void Module::init(uint64_t seed) {
  for (auto& m : named_modules()) m.second->reset_parameters(seed);
}

Tensor& Module::register_parameter(const std::string& name, Tensor t) {
  check_local_name(name, "parameter", path_);
  check_defined(t, "register_parameter", name.c_str());
  for (auto& p : params_)
    LB_CHECK(p.first != name, "Module '", path_, "': parameter '", name, "' registered twice");
  for (auto& b : buffers_)
    LB_CHECK(b.first != name, "Module '", path_, "': '", name, "' is already a buffer");
  t.set_requires_grad(true);
  t.set_name(join(path_, name));
  params_.push_back({name, t});
  return params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  check_local_name(name, "buffer", path_);
  check_defined(t, "register_buffer", name.c_str());
  for (auto& b : buffers_)
    LB_CHECK(b.first != name, "Module '", path_, "': buffer '", name, "' registered twice");
  for (auto& p : params_)
    LB_CHECK(p.first != name, "Module '", path_, "': '", name, "' is already a parameter");
  t.set_name(join(path_, name));
  buffers_.push_back({name, t});
  return buffers_.back().second;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_local_name(name, "child module", path_);
  LB_CHECK(m != nullptr, "Module '", path_, "': child '", name, "' is null");
  LB_CHECK(m.get() != this, "Module '", path_, "': cannot register itself as child '", name, "'");
  for (auto& c : children_)
    LB_CHECK(c.first != name, "Module '", path_, "': child '", name, "' registered twice");
  children_.push_back({name, m});
  m->set_path(join(path_, name));
}

void Module::set_path(const std::string& p) {
  path_ = p;
  for (auto& e : params_) e.second.set_name(join(p, e.first));
  for (auto& e : buffers_) e.second.set_name(join(p, e.first));
  for (auto& c : children_) c.second->set_path(join(p, c.first));
}

}  // namespace lowbit
