// TrainConfig <-> JSON, for the training state file (resume uses the saved settings) and
// summary.json. Unknown keys in a saved config are an error, so a typo cannot pass silently.
#pragma once
#include <nlohmann/json.hpp>

#include "tools/trainer.h"

namespace lowbit {

#define LB_TRAIN_CONFIG_FIELDS(X)                                                               \
  X(model) X(data) X(epochs) X(batch) X(lr) X(sched) X(warmup_epochs) X(milestones) X(gamma)   \
  X(wd) X(momentum) X(nesterov) X(label_smoothing) X(seed) X(threads) X(conv) X(out) X(init) X(augment) \
  X(limit_train) X(limit_test) X(wq) X(aq) X(first_last) X(bits_config) X(wq_lr_factor)        \
  X(aq_lr_factor) X(ste) X(device) X(deterministic)

inline nlohmann::json config_to_json(const TrainConfig& c) {
  nlohmann::json j;
#define LB_TO_JSON(f) j[#f] = c.f;
  LB_TRAIN_CONFIG_FIELDS(LB_TO_JSON)
#undef LB_TO_JSON
  return j;
}

inline TrainConfig config_from_json(const nlohmann::json& j) {
  TrainConfig c;
  LB_CHECK(j.is_object(), "train config: expected a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool known = false;
#define LB_KNOWN(f) known = known || it.key() == #f;
    LB_TRAIN_CONFIG_FIELDS(LB_KNOWN)
#undef LB_KNOWN
    LB_CHECK(known, "train config: unknown setting '", it.key(), "'");
  }
  try {
#define LB_FROM_JSON(f) \
  if (j.contains(#f)) j.at(#f).get_to(c.f);
    LB_TRAIN_CONFIG_FIELDS(LB_FROM_JSON)
#undef LB_FROM_JSON
  } catch (const nlohmann::json::exception& e) {
    LB_FAIL("train config: ", e.what());
  }
  return c;
}

}  // namespace lowbit
