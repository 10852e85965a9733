// Op-level profiler of training steps (`lowbit bench --profile`): where a step's time goes, per op
// kind, forward and backward, plus sections the caller names (the optimizer update). Not sampled:
// the autograd engine reads a clock at fixed points and charges each interval to one row.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace lowbit {

// How time is attributed (an approximation; the intervals are disjoint, so rows never overlap):
// - forward: when an op records its node (record(), at the end of its forward, with grad on), the
//   time since the previous clock mark is charged to the node's kind. An op's checks, allocation,
//   compute and node recording are charged to it, and so is whatever ran between it and the op
//   before: module bookkeeping, and helper ops that recorded nothing (an op on tensors that need
//   no gradient). An op built on another recorded op (conv2d_fp_backward runs conv2d) is charged
//   only the part after the inner op's record.
// - backward: each node's backward function is charged to its kind, adding the gradients it
//   returned into the pending ones to "grad accumulate", and the engine's own work (topological
//   sort, lookups, hooks, freeing a node's saved tensors) to "autograd engine".
// - sections: the caller calls mark(), runs the section, and charges it by name.
// - "other": the rest of each step as the caller timed it (add_step), e.g. zero_grad and the time
//   between the loss and backward().
// With sync_device each clock read first waits for the CUDA stream (cuda_synchronize), so device
// work is charged to the op that queued it; the waits remove the overlap of host and device work,
// so a profiled step is slower than an unprofiled one.
class OpProfiler {
 public:
  enum class Phase { forward, backward, section };
  struct Row {
    std::string name;  // op kind ("conv2d"), a section ("optimizer update"), or "other"
    double forward_s = 0, backward_s = 0, section_s = 0;  // summed over steps
    int64_t forward_calls = 0, backward_calls = 0;  // summed over steps
    double total_s() const { return forward_s + backward_s + section_s; }
  };

  explicit OpProfiler(bool sync_device);

  // Starts the next interval now: the time since the previous mark is charged to nobody.
  void mark();
  // Charges the time since the previous mark to `name` in `phase`, and marks. `call`: the interval
  // is one call of an op (counted in the row's calls), not a stretch of engine work.
  void charge(const std::string& name, Phase phase, bool call = true);
  // A step that ran under this profiler, timed by the caller from before its first mark to after
  // its last charge: its uncharged time becomes "other".
  void add_step(double seconds);

  bool sync_device() const { return sync_; }
  int64_t steps() const { return steps_; }
  double step_s() const { return step_s_; }  // summed over steps
  // Every charged row plus "other", sorted by total time, longest first (ties by name).
  std::vector<Row> rows() const;

 private:
  double now() const;  // seconds on the steady clock; waits for the device first when sync_

  bool sync_;
  double last_;
  std::unordered_map<std::string, Row> rows_;
  int64_t steps_ = 0;
  double step_s_ = 0;
};

// Installs `p` as the calling thread's profiler while the scope lives (restoring the previous one
// after), for the autograd engine to charge. A scope the caller opens, as NoGradGuard, rather than
// a profiler argument: every op reaches the engine through record(), and threading a diagnostic
// through every op and module signature would add an argument everywhere for one command. It is
// thread-local so that nothing outside the scope's thread (a loader thread, another test) is
// charged, and the engine's normal path costs one predictable branch on a null pointer.
// Defined in core/autograd.cpp, beside grad mode, so the engine reads the pointer directly.
class ProfileScope {
 public:
  explicit ProfileScope(OpProfiler& p);
  ~ProfileScope();
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  OpProfiler* prev_;
};

}  // namespace lowbit
