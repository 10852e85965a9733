// Closed forms of torch.optim.lr_scheduler's MultiStepLR, CosineAnnealingLR and OneCycleLR
// (anneal_strategy='cos', three_phase=False), evaluated at a step rather than stepped, so they
// need no state. Warm-up is torch's LinearLR chained before the schedule.
#include "layers/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace lowbit {

namespace {

constexpr double kPi = 3.14159265358979323846;

// torch's _annealing_cos: from start (pct 0) to end (pct 1) along half a cosine.
double anneal_cos(double start, double end, double pct) {
  return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1);
}

// OneCycleLR.get_lr: phase 1 warms from base/div to base over steps [0, pct*total - 1], phase 2
// anneals to base/div/final_div at step total - 1.
double onecycle(const LrSchedule& s, int64_t step, int64_t total) {
  LB_CHECK(s.onecycle_pct_start > 0 && s.onecycle_pct_start < 1,
           "lr schedule onecycle: pct_start must be in (0, 1), got ", s.onecycle_pct_start);
  LB_CHECK(s.onecycle_div_factor > 0 && s.onecycle_final_div > 0,
           "lr schedule onecycle: div_factor ", s.onecycle_div_factor, " and final_div ",
           s.onecycle_final_div, " must be > 0");
  LB_CHECK(s.warmup_steps == 0, "lr schedule onecycle: warmup_steps must be 0 (onecycle warms ",
           "up itself), got ", s.warmup_steps);
  LB_CHECK(step <= total, "lr schedule onecycle: step ", step, " is past total_steps ", total);
  const double initial = s.base_lr / s.onecycle_div_factor;
  const double final_lr = initial / s.onecycle_final_div;
  const double end1 = s.onecycle_pct_start * (double)total - 1, end2 = (double)total - 1;
  LB_CHECK(end1 > 0 && end2 > end1, "lr schedule onecycle: total_steps ", total,
           " too small for pct_start ", s.onecycle_pct_start);
  const double t = (double)step;
  if (t <= end1) return anneal_cos(initial, s.base_lr, t / end1);
  return anneal_cos(s.base_lr, final_lr, (t - end1) / (end2 - end1));
}

}  // namespace

double lr_at(const LrSchedule& s, int64_t step, int64_t total_steps) {
  LB_CHECK(step >= 0, "lr schedule: step must be >= 0, got ", step);
  LB_CHECK(std::isfinite(s.base_lr) && s.base_lr >= 0, "lr schedule: base_lr must be >= 0, got ",
           s.base_lr);
  LB_CHECK(s.warmup_steps >= 0, "lr schedule: warmup_steps must be >= 0, got ", s.warmup_steps);
  const bool known = s.kind == "constant" || s.kind == "step" || s.kind == "cosine" ||
                     s.kind == "onecycle";
  LB_CHECK(known, "lr schedule: unknown kind '", s.kind,
           "' (expected constant, step, cosine or onecycle)");
  if (s.kind == "onecycle") {
    LB_CHECK(total_steps > 0, "lr schedule onecycle: total_steps must be > 0, got ", total_steps);
    return onecycle(s, step, total_steps);
  }
  double lr = s.base_lr;
  if (s.kind == "step") {
    LB_CHECK(s.gamma > 0, "lr schedule step: gamma must be > 0, got ", s.gamma);
    // MultiStepLR: the decay applies from the milestone step on.
    for (int64_t m : s.milestones) {
      LB_CHECK(m >= 0, "lr schedule step: milestone ", m, " is negative");
      if (step >= m) lr *= s.gamma;
    }
  } else if (s.kind == "cosine") {
    const int64_t T = total_steps - s.warmup_steps;
    LB_CHECK(T > 0, "lr schedule cosine: total_steps ", total_steps,
             " must exceed warmup_steps ", s.warmup_steps);
    LB_CHECK(s.min_lr >= 0 && s.min_lr <= s.base_lr, "lr schedule cosine: min_lr ", s.min_lr,
             " must be in [0, base_lr ", s.base_lr, "]");
    // Past the end the lr stays at min_lr rather than rising again as torch's would.
    const double t = (double)std::min<int64_t>(std::max<int64_t>(step - s.warmup_steps, 0), T);
    lr = s.min_lr + (s.base_lr - s.min_lr) * (1 + std::cos(kPi * t / (double)T)) / 2;
  }
  if (step < s.warmup_steps) {
    LB_CHECK(s.warmup_start_factor >= 0 && s.warmup_start_factor <= 1,
             "lr schedule: warmup_start_factor must be in [0, 1], got ", s.warmup_start_factor);
    const double f = s.warmup_start_factor;
    lr *= f + (1 - f) * (double)step / (double)s.warmup_steps;
  }
  return lr;
}

}  // namespace lowbit
