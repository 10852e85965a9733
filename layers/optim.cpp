// SGD, Adam and AdamW, following torch.optim's single-tensor (foreach=False) code operation by
// operation, with the hyperparameters cast to the parameter's dtype as torch's scalar ops do, so
// float32 runs track PyTorch's to rounding. The loops touch raw storage: no graph is recorded.
#include "layers/optim.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "core/cuda/kernels.h"
#include "core/error.h"
#include "core/parallel.h"

namespace lowbit {

// ---- Optimizer ----

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  std::unordered_set<std::string> names;
  std::unordered_set<const TensorImpl*> tensors;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const ParamGroup& pg = groups_[g];
    LB_CHECK(pg.lr_factor >= 0, "optimizer: group '", pg.name, "' has lr_factor ", pg.lr_factor,
             " < 0");
    LB_CHECK(pg.weight_decay >= 0, "optimizer: group '", pg.name, "' has weight_decay ",
             pg.weight_decay, " < 0");
    for (auto& [name, t] : pg.params) {
      LB_CHECK(!name.empty(), "optimizer: group '", pg.name, "' has a parameter without a name");
      check_defined(t, "optimizer", name.c_str());
      LB_CHECK(is_floating(t.dtype()), "optimizer: parameter '", name, "' is ",
               dtype_name(t.dtype()), ", expected float32 or float64");
      LB_CHECK(names.insert(name).second, "optimizer: parameter name '", name,
               "' appears twice");
      LB_CHECK(tensors.insert(t.impl_ptr().get()).second, "optimizer: parameter '", name,
               "' is the same tensor as another parameter (in group '", pg.name, "')");
      slots_.push_back({name, t, g});
    }
  }
  state_.resize(slots_.size());
  masks_.resize(slots_.size());
}

void Optimizer::set_lr(double base_lr) {
  LB_CHECK(std::isfinite(base_lr) && base_lr >= 0, "optimizer: lr must be finite and >= 0, got ",
           base_lr);
  base_lr_ = base_lr;
  lr_set_ = true;
}

double Optimizer::group_lr(size_t group) const {
  LB_CHECK(group < groups_.size(), "optimizer: group ", group, " out of range (",
           groups_.size(), " groups)");
  return base_lr_ * groups_[group].lr_factor;
}

void Optimizer::step() {
  LB_CHECK(lr_set_, kind(), " step: no learning rate; call set_lr first");
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    Tensor g = s.param.grad();
    if (!g.defined()) continue;
    if (!on_cuda("optimizer step", {&s.param, &g}, {s.name.c_str(), "its gradient"}))
      check_cpu(s.param, "optimizer step");
    LB_CHECK(g.shape() == s.param.shape() && g.dtype() == s.param.dtype(),
             "optimizer step: gradient of '", s.name, "' is ", shape_str(g.shape()), " ",
             dtype_name(g.dtype()), ", parameter is ", shape_str(s.param.shape()), " ",
             dtype_name(s.param.dtype()));
    update(s, g, group_lr(s.group), groups_[s.group].weight_decay, state_[i]);
    if (masks_[i].defined() && s.param.device() == Device::cuda) {
      LB_CHECK(masks_[i].device() == Device::cuda, "optimizer: the update mask of '", s.name,
               "' is on the cpu, the parameter on cuda");
      cuda::apply_mask(s.param.data<float>(), masks_[i].data<float>(), s.param.numel());
    } else if (masks_[i].defined()) {
      LB_DISPATCH_FLOAT(s.param.dtype(), "optimizer mask", [&] {
        scalar_t* p = s.param.data<scalar_t>();
        const scalar_t* m = masks_[i].data<scalar_t>();
        for (int64_t k = 0; k < s.param.numel(); ++k)
          if (m[k] == 0) p[k] = 0;
      });
    }
  }
  ++steps_;
}

void Optimizer::zero_grad() {
  for (auto& s : slots_) s.param.zero_grad();
}

void Optimizer::set_update_mask(const Tensor& param, const Tensor& mask) {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i].param.same(param)) continue;
    if (mask.defined())
      LB_CHECK(mask.shape() == param.shape() && mask.dtype() == param.dtype(),
               "set_update_mask: mask for '", slots_[i].name, "' is ", shape_str(mask.shape()),
               " ", dtype_name(mask.dtype()), ", parameter is ", shape_str(param.shape()), " ",
               dtype_name(param.dtype()));
    masks_[i] = mask;
    return;
  }
  LB_FAIL("set_update_mask: tensor '", param.defined() ? param.name() : std::string("?"),
          "' is not a parameter of this optimizer");
}

std::vector<std::pair<std::string, Tensor>> Optimizer::state_dict() const {
  std::vector<std::pair<std::string, Tensor>> out;
  out.push_back({"step", Tensor::full({}, (double)steps_, DType::i64)});
  for (const std::string& kind : state_names())
    for (size_t i = 0; i < slots_.size(); ++i) {
      auto f = state_[i].find(kind);
      if (f != state_[i].end()) out.push_back({kind + "." + slots_[i].name, f->second.to_device(Device::cpu)});  // device-independent
    }
  return out;
}

void Optimizer::load_state_dict(const std::vector<std::pair<std::string, Tensor>>& sd) {
  std::unordered_map<std::string, size_t> slot_of;
  for (size_t i = 0; i < slots_.size(); ++i) slot_of[slots_[i].name] = i;
  auto kinds = state_names();
  std::vector<std::map<std::string, Tensor>> fresh(slots_.size());
  int64_t steps = 0;
  bool have_step = false;
  for (auto& [key, t] : sd) {
    LB_CHECK(t.defined(), kind(), " load_state_dict: '", key, "' is undefined");
    if (key == "step") {
      LB_CHECK(t.dtype() == DType::i64 && t.numel() == 1, kind(), " load_state_dict: 'step' must ",
               "be a one-element int64 tensor, got ", shape_str(t.shape()), " ",
               dtype_name(t.dtype()));
      steps = t.item<int64_t>();
      have_step = true;
      continue;
    }
    const size_t dot = key.find('.');
    const std::string k = key.substr(0, dot);
    LB_CHECK(dot != std::string::npos && std::find(kinds.begin(), kinds.end(), k) != kinds.end(),
             kind(), " load_state_dict: unexpected key '", key, "' (not a state of ", kind(), ")");
    auto f = slot_of.find(key.substr(dot + 1));
    LB_CHECK(f != slot_of.end(), kind(), " load_state_dict: unexpected key '", key,
             "' (no parameter named '", key.substr(dot + 1), "')");
    const Tensor& p = slots_[f->second].param;
    // "step.<name>" is a per-parameter counter (0-d int64); the other states are shaped as p.
    const bool counter = k == "step";
    const Shape want = counter ? Shape{} : p.shape();
    const DType want_dt = counter ? DType::i64 : p.dtype();
    LB_CHECK(t.shape() == want && t.dtype() == want_dt, kind(), " load_state_dict: '", key,
             "' is ", shape_str(t.shape()), " ", dtype_name(t.dtype()), ", expected ",
             shape_str(want), " ", dtype_name(want_dt));
    LB_CHECK(fresh[f->second].emplace(k, counter ? t.clone() : t.to_device(p.device())).second, kind(), " load_state_dict: key '",
             key, "' given twice");
  }
  LB_CHECK(have_step, kind(), " load_state_dict: missing key 'step'");
  // Replaced only once everything checked out.
  state_ = std::move(fresh);
  steps_ = steps;
}

// ---- SGD ----

SGD::SGD(std::vector<ParamGroup> groups, double momentum_, double dampening_, bool nesterov_)
    : Optimizer(std::move(groups)), momentum(momentum_), dampening(dampening_),
      nesterov(nesterov_) {
  LB_CHECK(momentum_ >= 0, "SGD: momentum must be >= 0, got ", momentum_);
  LB_CHECK(!nesterov_ || (momentum_ > 0 && dampening_ == 0),
           "SGD: Nesterov momentum requires a momentum > 0 and zero dampening, got momentum ",
           momentum_, ", dampening ", dampening_);
}

void SGD::update(const Slot& s, const Tensor& grad, double lr, double wd,
                 std::map<std::string, Tensor>& state) {
  const bool first = momentum != 0 && !state.count("momentum_buffer");
  if (first) state["momentum_buffer"] = Tensor::zeros(s.param.shape(), s.param.dtype(), s.param.device());
  if (s.param.device() == Device::cuda) {
    cuda::sgd_update(s.param.data<float>(), grad.data<float>(),
                     momentum != 0 ? state["momentum_buffer"].data<float>() : nullptr, first,
                     (float)wd, (float)momentum, (float)(1 - dampening), (float)(-lr), nesterov,
                     s.param.numel());
    return;
  }
  LB_DISPATCH_FLOAT(s.param.dtype(), "SGD", [&] {
    scalar_t* p = s.param.data<scalar_t>();
    const scalar_t* g = grad.data<scalar_t>();
    scalar_t* buf = momentum != 0 ? state["momentum_buffer"].data<scalar_t>() : nullptr;
    const scalar_t w = (scalar_t)wd, m = (scalar_t)momentum, damp = (scalar_t)(1 - dampening),
                   a = (scalar_t)(-lr);
    parallel_for(s.param.numel(), 4, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        scalar_t d = wd != 0 ? g[i] + w * p[i] : g[i];
        if (buf) {
          buf[i] = first ? d : buf[i] * m + damp * d;
          d = nesterov ? d + m * buf[i] : buf[i];
        }
        p[i] = p[i] + a * d;
      }
    });
  });
}

// ---- Adam / AdamW ----

Adam::Adam(std::vector<ParamGroup> groups, double b1, double b2, double e)
    : Adam(std::move(groups), b1, b2, e, false) {}

Adam::Adam(std::vector<ParamGroup> groups, double b1, double b2, double e, bool decoupled)
    : Optimizer(std::move(groups)), beta1(b1), beta2(b2), eps(e), decoupled_(decoupled) {
  const char* name = decoupled ? "AdamW" : "Adam";
  LB_CHECK(b1 >= 0 && b1 < 1, name, ": beta1 must be in [0, 1), got ", b1);
  LB_CHECK(b2 >= 0 && b2 < 1, name, ": beta2 must be in [0, 1), got ", b2);
  LB_CHECK(e >= 0, name, ": eps must be >= 0, got ", e);
}

void Adam::update(const Slot& s, const Tensor& grad, double lr, double wd,
                  std::map<std::string, Tensor>& state) {
  if (!state.count("step")) {
    state["step"] = Tensor::zeros({}, DType::i64);
    state["exp_avg"] = Tensor::zeros(s.param.shape(), s.param.dtype(), s.param.device());
    state["exp_avg_sq"] = Tensor::zeros(s.param.shape(), s.param.dtype(), s.param.device());
  }
  const int64_t t = ++state["step"].data<int64_t>()[0];
  // Python-side scalars of torch's _single_tensor_adam, in double.
  const double bc1 = 1 - std::pow(beta1, (double)t);
  const double bc2_sqrt = std::sqrt(1 - std::pow(beta2, (double)t));
  const double step_size = lr / bc1;
  if (s.param.device() == Device::cuda) {  // the step counter stays on the host
    const float one_b1 = (float)(1 - beta1);
    cuda::adam_update(s.param.data<float>(), grad.data<float>(), state["exp_avg"].data<float>(),
                      state["exp_avg_sq"].data<float>(), (float)wd, (float)(1 - lr * wd),
                      1.f - one_b1, (float)beta2, one_b1, (float)(1 - beta2), (float)bc2_sqrt,
                      (float)eps, (float)(-step_size), decoupled_, 1 - beta1 < 0.5, s.param.numel());
    return;
  }
  LB_DISPATCH_FLOAT(s.param.dtype(), kind().c_str(), [&] {
    scalar_t* p = s.param.data<scalar_t>();
    const scalar_t* g = grad.data<scalar_t>();
    scalar_t* m = state["exp_avg"].data<scalar_t>();
    scalar_t* v = state["exp_avg_sq"].data<scalar_t>();
    const scalar_t w = (scalar_t)wd, decay = (scalar_t)(1 - lr * wd), b2 = (scalar_t)beta2,
                   one_b1 = (scalar_t)(1 - beta1), one_b2 = (scalar_t)(1 - beta2),
                   c2 = (scalar_t)bc2_sqrt, ep = (scalar_t)eps, a = (scalar_t)(-step_size);
    const bool decoupled = decoupled_, small_w = 1 - beta1 < 0.5;
    const scalar_t b1 = (scalar_t)1 - one_b1;  // torch computes 1 - weight from the weight
    parallel_for(s.param.numel(), 8, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        scalar_t gi = g[i];
        if (decoupled)
          p[i] = p[i] * decay;
        else if (wd != 0)
          gi = gi + w * p[i];
        // torch's lerp(m, g, w): two forms, chosen by w, for accuracy near either end.
        m[i] = small_w ? m[i] + one_b1 * (gi - m[i]) : gi - (gi - m[i]) * b1;
        v[i] = v[i] * b2 + one_b2 * gi * gi;
        const scalar_t denom = std::sqrt(v[i]) / c2 + ep;
        p[i] = p[i] + a * (m[i] / denom);
      }
    });
  });
}

}  // namespace lowbit
