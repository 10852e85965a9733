// Op-level profiler: clock marks and the rows they are charged to (the attribution rules are in
// core/profiler.h; the engine's charge points in core/autograd.cpp).
#include "core/profiler.h"

#include <algorithm>
#include <chrono>

#include "core/cuda/kernels.h"

namespace lowbit {

OpProfiler::OpProfiler(bool sync_device) : sync_(sync_device), last_(now()) {}

double OpProfiler::now() const {
  // On the GPU an op only queues work: without the wait its kernels would be charged to whichever
  // later op first blocks on the stream. A no-op in the CPU build (core/cuda/stub.cpp).
  if (sync_) cuda_synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void OpProfiler::mark() { last_ = now(); }

void OpProfiler::charge(const std::string& name, Phase phase, bool call) {
  const double t = now();
  const double d = t - last_;
  last_ = t;
  Row& r = rows_[name];
  switch (phase) {
    case Phase::forward:
      r.forward_s += d;
      r.forward_calls += call;
      break;
    case Phase::backward:
      r.backward_s += d;
      r.backward_calls += call;
      break;
    case Phase::section:
      r.section_s += d;
      break;
  }
}

void OpProfiler::add_step(double seconds) {
  ++steps_;
  step_s_ += seconds;
}

std::vector<OpProfiler::Row> OpProfiler::rows() const {
  std::vector<Row> out;
  double charged = 0;
  for (const auto& [name, r] : rows_) {
    out.push_back(r);
    out.back().name = name;
    charged += r.total_s();
  }
  Row other;
  other.name = "other";
  // Never negative: the charged intervals lie inside the steps (clamped against rounding only).
  other.section_s = std::max(0.0, step_s_ - charged);
  out.push_back(other);
  std::sort(out.begin(), out.end(), [](const Row& a, const Row& b) {
    return a.total_s() != b.total_s() ? a.total_s() > b.total_s() : a.name < b.name;
  });
  return out;
}

}  // namespace lowbit
