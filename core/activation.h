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

// relu's and relu6's forward, as core/ops_activation.cpp computes them; Act is a template
// argument so that each loop using it compiles to vector selects without a test inside.
template <FusedAct Act, class T>
inline T act_fwd(T v) {
  if constexpr (Act == FusedAct::relu) return v > 0 ? v : (T)0;
  else if constexpr (Act == FusedAct::relu6) return v > 0 ? (v < (T)6 ? v : (T)6) : (T)0;
  else return v;
}

}  // namespace lowbit
