// An activation fused into the op before it (batch_norm2d): one pass over memory instead of two,
// and one tensor kept for the backward instead of two. Each is exactly the op it replaces
// (core/ops_activation.cpp): the same values, and the same gradient mask, taken from the output:
// relu passes dy where 0 < y, relu6 where 0 < y < 6 (y = clamp(x), so 0 < y < 6 iff 0 < x < 6).
#pragma once

namespace lowbit {

enum class FusedAct { none, relu, relu6 };

inline const char* fused_act_name(FusedAct a) {
  return a == FusedAct::relu ? "relu" : a == FusedAct::relu6 ? "relu6" : "none";
}

}  // namespace lowbit
