// Argument checks whose values live on the GPU (quant/levels.cpp check_positive: a step size or a
// clip value must be > 0 and finite). Reading the value on the host at every quantizer call would
// stall the stream each time, so a kernel raises a flag in a slot instead, and the flags are read
// where the host waits for the stream anyway (a copy to or from the host, cuda_synchronize): that
// read throws, naming the op and the argument. The check is late by at most the work queued in
// between, never skipped: the CPU backend refuses such a value at once, and without this the GPU
// went on quantizing with, say, a negative APoT alpha.
#include <mutex>
#include <string>
#include <vector>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"
#include "core/cuda/runtime.h"

namespace lowbit {
namespace cuda {

namespace {

__global__ void check_positive_k(int* flag, const float* p, int64_t n) {
  LB_GRID_LOOP(i, n) {
    const float v = p[i];
    if (!(v > 0.f) || isinf(v)) *flag = 1;  // NaN fails v > 0; every writer stores the same 1
  }
}

constexpr size_t kSlots = 4096;

struct Checks {
  std::mutex mu;
  int* flags = nullptr;            // kSlots ints on the device, zero while no check failed
  std::vector<std::string> what;   // slot i: "op: 'arg'", pending since the last poll
};

Checks& checks() {
  static Checks* c = new Checks;  // never destroyed, like the runtime
  return *c;
}

// Reads and clears the pending flags (the caller holds the lock); throws for the first one set.
void poll_locked(Checks& c) {
  if (c.what.empty()) return;
  std::vector<int> h(c.what.size());
  LB_CUDA("cuda checks", cudaMemcpyAsync(h.data(), c.flags, h.size() * sizeof(int),
                                         cudaMemcpyDeviceToHost, stream()));
  LB_CUDA("cuda checks", cudaStreamSynchronize(stream()));
  std::string failed;
  for (size_t i = 0; i < h.size() && failed.empty(); ++i)
    if (h[i]) failed = c.what[i];
  if (!failed.empty())
    LB_CUDA("cuda checks", cudaMemsetAsync(c.flags, 0, h.size() * sizeof(int), stream()));
  c.what.clear();
  LB_CHECK(failed.empty(), failed, " must be > 0 and finite (found on the GPU, where the check "
           "is read at the next copy or synchronisation; on the CPU the op refuses it at once)");
}

}  // namespace

void poll_checks() {
  Checks& c = checks();
  std::lock_guard<std::mutex> lock(c.mu);
  poll_locked(c);
}

}  // namespace cuda

void cuda_check_positive(const float* p, int64_t n, const std::string& what) {
  if (n <= 0) return;
  cuda::Checks& c = cuda::checks();
  std::lock_guard<std::mutex> lock(c.mu);
  if (!c.flags) {
    LB_CUDA("cuda checks", cudaMalloc(&c.flags, cuda::kSlots * sizeof(int)));
    LB_CUDA("cuda checks", cudaMemsetAsync(c.flags, 0, cuda::kSlots * sizeof(int), cuda::stream()));
  }
  if (c.what.size() == cuda::kSlots) cuda::poll_locked(c);  // full: read them now
  LB_LAUNCH("cuda checks", cuda::check_positive_k, n, c.flags + c.what.size(), p, n);
  c.what.push_back(what);
}

}  // namespace lowbit
