// Learning-rate schedules as pure functions of the step: constant, step (MultiStepLR), cosine
// (CosineAnnealingLR) and onecycle (OneCycleLR, cos annealing, two phases), with an optional
// linear warm-up. A resumed run gets its lr back from the step count alone.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {

struct LrSchedule {
  std::string kind = "constant";  // constant | step | cosine | onecycle
  double base_lr = 0.1;           // onecycle: the peak (torch's max_lr)
  // Linear warm-up over the first warmup_steps, as torch's LinearLR: at step k < warmup_steps
  // the factor is f + (1 - f) k / warmup_steps, f = warmup_start_factor. Not for onecycle, which
  // has its own warm-up phase.
  int64_t warmup_steps = 0;
  double warmup_start_factor = 0.0;
  std::vector<int64_t> milestones;  // step: absolute steps at which lr *= gamma
  double gamma = 0.1;
  double min_lr = 0;  // cosine: eta_min
  double onecycle_pct_start = 0.3;
  double onecycle_div_factor = 25;    // initial lr = base_lr / div_factor
  double onecycle_final_div = 1e4;    // final lr = initial lr / final_div
};

// The lr at `step` (0-based) of a run of total_steps (used by cosine and onecycle).
double lr_at(const LrSchedule& s, int64_t step, int64_t total_steps);

}  // namespace lowbit
