// Threads: OpenMP for the engine's own loops; the count is set once from --threads (default: all
// cores) through set_num_threads, which also sets OpenBLAS's count so the two never oversubscribe.
#pragma once
#include <cstdint>

namespace lowbit {

void set_num_threads(int n);  // n <= 0: all cores
int num_threads();
int omp_threads_in_region();  // inside a parallel region: its thread count
int omp_thread_index();       // inside a parallel region: this thread's index

// Chunks [0, n) over the threads when the work (n * cost_per_item) is large enough to pay for a
// parallel region. fn(begin, end) must only write disjoint data per index.
template <class F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& fn) {
  const bool par = n > 1 && n * cost_per_item >= 32768 && num_threads() > 1;
  if (!par) {
    if (n > 0) fn((int64_t)0, n);
    return;
  }
#pragma omp parallel
  {
    int nt = omp_threads_in_region();
    int t = omp_thread_index();
    int64_t chunk = (n + nt - 1) / nt;
    int64_t b = t * chunk, e = b + chunk < n ? b + chunk : n;
    if (b < e) fn(b, e);
  }
}

}  // namespace lowbit
