// The machine's float32 FMA peak, the ceiling for docs/perf.md's GFLOP/s figures: each thread runs
// ten independent chains of 8-wide fused multiply-adds (enough to cover the FMA latency on two
// pipes), so the loop is bound by FMA throughput alone. Best of three runs per thread count.
//   g++ -O2 -mavx2 -mfma -fopenmp bench/fma_peak.cpp -o build/fma_peak && build/fma_peak
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

static double run(int threads, long iters) {
  const auto t0 = std::chrono::steady_clock::now();
  float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
  {
    // Ten named registers (an array in a loop may be kept in memory by the compiler).
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
           a7 = a0, a8 = a0, a9 = a0;
    const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iters; ++i) {
      a0 = _mm256_fmadd_ps(a0, b, c), a1 = _mm256_fmadd_ps(a1, b, c);
      a2 = _mm256_fmadd_ps(a2, b, c), a3 = _mm256_fmadd_ps(a3, b, c);
      a4 = _mm256_fmadd_ps(a4, b, c), a5 = _mm256_fmadd_ps(a5, b, c);
      a6 = _mm256_fmadd_ps(a6, b, c), a7 = _mm256_fmadd_ps(a7, b, c);
      a8 = _mm256_fmadd_ps(a8, b, c), a9 = _mm256_fmadd_ps(a9, b, c);
    }
    const __m256 s = _mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                      _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7))),
        _mm256_add_ps(a8, a9));
    float t[8];
    _mm256_storeu_ps(t, s);
    sink += t[0];  // keeps the chains alive
  }
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (sink == 12345.0f) std::puts("");  // never true; stops the compiler from dropping the work
  return (double)iters * 10 * 16 * threads / dt / 1e9;  // 10 chains x 8 lanes x 2 FLOP
}

int main() {
  const int maxt = omp_get_max_threads();
  for (int t = 1; t <= maxt; t *= 2) {
    double best = 0;
    for (int r = 0; r < 3; ++r) best = std::max(best, run(t, 20000000));
    std::printf("%d thread(s): %.1f GFLOP/s float32 FMA peak\n", t, best);
  }
}
