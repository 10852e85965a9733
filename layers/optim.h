// Optimizers over named parameter groups: SGD (momentum, dampening, Nesterov), Adam and AdamW,
// each step exactly torch.optim's single-tensor algorithm. Updates run in the parameter's dtype
// (float32 or float64), in place on its storage, outside the autograd graph.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace lowbit {

// A set of parameters sharing hyperparameters: lr = base_lr * lr_factor, its own weight decay
// (e.g. none on BN and bias, a smaller lr on quantizer step sizes).
struct ParamGroup {
  std::string name;
  std::vector<std::pair<std::string, Tensor>> params;
  double lr_factor = 1.0;
  double weight_decay = 0.0;
};

class Optimizer {
 public:
  // Parameter names must be unique and a tensor may sit in one group only. lr starts at 0 until
  // set_lr is called (a schedule sets it every step).
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual std::string kind() const = 0;
  void set_lr(double base_lr);
  double base_lr() const { return base_lr_; }
  double group_lr(size_t group) const;
  const std::vector<ParamGroup>& groups() const { return groups_; }

  // One update of every parameter whose gradient is defined; the others are skipped and keep
  // their state (as torch skips p.grad is None).
  void step();
  void zero_grad();  // drops the gradients (set_to_none, torch's default)
  int64_t steps() const { return steps_; }  // calls to step() so far

  // Elements where mask == 0 are set to 0 after every step (pruned weights stay pruned, as a mask
  // applied after optimizer.step() in a torch pruning loop). Same shape and dtype as the param;
  // an undefined mask removes it.
  void set_update_mask(const Tensor& param, const Tensor& mask);

  // Named state: "step" (0-d int64), then per-parameter "<state>.<param name>" tensors
  // ("momentum_buffer.fc.weight", "exp_avg.fc.weight", "step.fc.weight" for Adam, ...).
  // Loading checks every name, shape and dtype (errors name the tensor); names absent from the
  // dict mean "no state yet", as for a parameter that never had a gradient.
  std::vector<std::pair<std::string, Tensor>> state_dict() const;
  void load_state_dict(const std::vector<std::pair<std::string, Tensor>>& sd);

 protected:
  struct Slot {
    std::string name;
    Tensor param;
    size_t group;
  };
  // Updates one parameter with its (checked) gradient; `state` maps state names to tensors,
  // which the update creates on first use.
  virtual void update(const Slot& s, const Tensor& grad, double lr, double weight_decay,
                      std::map<std::string, Tensor>& state) = 0;
  // State names this optimizer keeps per parameter, for load_state_dict's checks.
  virtual std::vector<std::string> state_names() const = 0;

 private:
  std::vector<ParamGroup> groups_;
  std::vector<Slot> slots_;
  std::vector<std::map<std::string, Tensor>> state_;  // per slot
  std::vector<Tensor> masks_;                          // per slot, maybe undefined
  double base_lr_ = 0;
  int64_t steps_ = 0;
};

// torch.optim.SGD: g += wd*p; buf = g at the first step, then m*buf + (1-dampening)*g;
// g = nesterov ? g + m*buf : buf; p -= lr*g.
class SGD : public Optimizer {
 public:
  SGD(std::vector<ParamGroup> groups, double momentum = 0, double dampening = 0,
      bool nesterov = false);
  std::string kind() const override { return "SGD"; }
  double momentum, dampening;
  bool nesterov;

 protected:
  void update(const Slot& s, const Tensor& grad, double lr, double weight_decay,
              std::map<std::string, Tensor>& state) override;
  std::vector<std::string> state_names() const override { return {"momentum_buffer"}; }
};

// torch.optim.Adam (amsgrad off): g += wd*p (L2); m = lerp(m, g, 1-b1); v = b2 v + (1-b2) g^2;
// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). AdamW instead decays p *= 1 - lr*wd first
// (Loshchilov & Hutter's decoupled weight decay) and leaves g alone.
class Adam : public Optimizer {
 public:
  Adam(std::vector<ParamGroup> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);
  std::string kind() const override { return decoupled_ ? "AdamW" : "Adam"; }
  double beta1, beta2, eps;

 protected:
  Adam(std::vector<ParamGroup> groups, double beta1, double beta2, double eps, bool decoupled);
  void update(const Slot& s, const Tensor& grad, double lr, double weight_decay,
              std::map<std::string, Tensor>& state) override;
  std::vector<std::string> state_names() const override {
    return {"step", "exp_avg", "exp_avg_sq"};
  }

 private:
  bool decoupled_;
};

class AdamW : public Adam {
 public:
  AdamW(std::vector<ParamGroup> groups, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8)
      : Adam(std::move(groups), beta1, beta2, eps, /*decoupled=*/true) {}
};

}  // namespace lowbit
