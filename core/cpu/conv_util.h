// Helpers shared by the conv kernels: the range of output columns whose input column falls inside
// the image, and the fixed batch chunking that keeps OpenMP and OpenBLAS from oversubscribing the
// cores while keeping reductions in a deterministic order.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "core/cpu/blas.h"
#include "core/parallel.h"

namespace lowbit {

// Output positions j in [lo, hi) (clipped to [0, out)) have input index j*stride + off in [0, in).
inline void conv_valid_range(int64_t off, int64_t stride, int64_t in, int64_t out, int64_t& lo,
                             int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  hi = (in - 1 - off) < 0 ? 0 : (in - 1 - off) / stride + 1;
  lo = std::min(lo, out);
  hi = std::max(lo, std::min(hi, out));
}

// The batch is cut into this many chunks: a few per thread (at least one, at most one per image),
// so a thread that the OS preempts on a busy machine does not leave the others waiting at the end.
// The cut depends only on N and the configured thread count, never on OpenMP's scheduling.
inline int64_t conv_image_chunks(int64_t n) {
  const int64_t t = num_threads();
  return std::max<int64_t>(1, std::min<int64_t>(n, t > 1 ? 4 * t : 1));
}

// Runs fn(chunk, n0, n1) for each chunk of images [n0, n1), the chunks handed out to the threads
// one at a time from a shared counter. Which thread runs a chunk never changes its result, so
// the caller's per-chunk partial sums, reduced in chunk order, give the same bits every run.
// While several chunks run at once, OpenBLAS is held to one thread (each chunk's GEMMs are then
// single-threaded) and given back the configured count afterwards; a single chunk keeps
// OpenBLAS's own threading.
template <class F>
void conv_for_image_chunks(int64_t n, int64_t cost_per_image, F&& fn) {
  const int64_t chunks = conv_image_chunks(n);
  auto run = [&](int64_t c) { fn(c, c * n / chunks, (c + 1) * n / chunks); };
  if (chunks == 1 || n * cost_per_image < 65536) {  // too small to pay for a parallel region:
    for (int64_t c = 0; c < chunks; ++c) run(c);    // the same chunks serially, the same bits
    return;
  }
  struct BlasOneThread {  // restores the count even if fn throws (it should not)
    BlasOneThread() { blas_set_num_threads(1); }
    ~BlasOneThread() { blas_set_num_threads(num_threads()); }
  } guard;
  std::atomic<int64_t> next{0};
  // One task per thread (a cost large enough that parallel_for always splits); each takes chunks
  // from the counter until none is left.
  parallel_for(std::min<int64_t>(chunks, num_threads()), 1 << 20, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t c = next++; c < chunks; c = next++) run(c);
  });
}

// The buffers of thread_scratch, one name each, so that no two kernels that can be live at once
// (a kernel and the one it calls, or the calling thread's buffer and its chunks') share one.
enum ScratchSlot : int {
  kScratchWinoPlanes,     // conv_winograd_driver.h (both tile sizes), per chunk
  kScratchWinoV,
  kScratchWinoM,
  kScratchWinoWeights,    // conv_winograd_driver.h, the calling thread: U
  kScratchWgradPlanes,    // conv_winograd_wgrad.cpp, per chunk
  kScratchWgradDyPlanes,
  kScratchWgradV,
  kScratchWgradE,
  kScratchWgradSums,      // conv_winograd_wgrad.cpp, the calling thread: the chunks' sums
  kScratchPackedIn,       // conv_1x1_packed.cpp, the calling thread (around the direct kernels)
  kScratchPackedOut,
  kScratchDwIn,           // conv_depthwise_lanes.cpp, per task: channels in lanes
  kScratchDwTmp,
  kScratchDwOut,
  kScratchSlots
};

// Per-thread scratch that outlives the call: `slot` names one buffer of the calling kernel, grown
// to n floats when smaller, never shrunk. Why: a kernel that allocated its megabytes of temporary
// planes per call mapped fresh pages each time, and on this VM the page faults cost more than a
// small layer's arithmetic. The buffer starts on a 64-byte boundary, so rows of whole vectors are
// whole cache lines (a vector load across two lines costs two).
//
// layout = 0: the contents are whatever the last user left. layout != 0 names how the caller lays
// out its data, for buffers whose untouched parts must be zero (the zero borders of padded
// planes): the buffer is zeroed unless its last user was the same slot with the same layout and
// size, who wrote only where this caller will write again. Zeroing megabytes per call cost a few
// percent of a training step.
struct ThreadScratch {
  std::vector<float> buf;
  uint64_t layout = 0;
  size_t n = 0;
};

inline float* thread_scratch(ScratchSlot slot, size_t n, uint64_t layout = 0) {
  constexpr size_t kAlign = 64 / sizeof(float);
  thread_local ThreadScratch bufs[kScratchSlots];
  ThreadScratch& b = bufs[slot];
  if (b.buf.size() < n + kAlign) b.buf.resize(n + kAlign);
  const uintptr_t at = reinterpret_cast<uintptr_t>(b.buf.data());
  float* p = b.buf.data() + ((64 - at % 64) % 64) / sizeof(float);
  if (layout != 0 && (layout != b.layout || n != b.n)) std::fill(p, p + n, 0.0f);
  b.layout = layout, b.n = n;
  return p;
}

// A layout key for thread_scratch from the numbers that fix a layout (and a tag per caller).
inline uint64_t scratch_layout(std::initializer_list<int64_t> v) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (int64_t x : v) h = (h ^ (uint64_t)x) * 0x100000001b3ull + (h >> 29);
  return h | 1;  // never 0
}

}  // namespace lowbit
