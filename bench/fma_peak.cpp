// The machine's float32 FMA peak, the ceiling for docs/perf.md's GFLOP/s figures: each thread runs
// twelve independent chains of fused multiply-adds (enough to cover the FMA latency on two pipes),
// so the loop is bound by FMA throughput alone; 8-wide (AVX2) always, 16-wide (AVX-512) when the
// compiler targets it. Best of three runs per thread count.
//   g++ -O2 -march=native -fopenmp bench/fma_peak.cpp -o build/fma_peak && build/fma_peak
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

// V: the vector type; Ops: its set1 / fmadd / add and a reduction to one float.
template <class V, class Ops>
static double run(int threads, long iters) {
  const auto t0 = std::chrono::steady_clock::now();
  float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
  {
    // Twelve named registers (an array in a loop may be kept in memory by the compiler).
    V a0 = Ops::set1(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0,
      a9 = a0, a10 = a0, a11 = a0;
    const V b = Ops::set1(0.999999f), c = Ops::set1(1e-7f);
    for (long i = 0; i < iters; ++i) {
      a0 = Ops::fma(a0, b, c), a1 = Ops::fma(a1, b, c), a2 = Ops::fma(a2, b, c);
      a3 = Ops::fma(a3, b, c), a4 = Ops::fma(a4, b, c), a5 = Ops::fma(a5, b, c);
      a6 = Ops::fma(a6, b, c), a7 = Ops::fma(a7, b, c), a8 = Ops::fma(a8, b, c);
      a9 = Ops::fma(a9, b, c), a10 = Ops::fma(a10, b, c), a11 = Ops::fma(a11, b, c);
    }
    const V s = Ops::add(Ops::add(Ops::add(Ops::add(a0, a1), Ops::add(a2, a3)),
                                  Ops::add(Ops::add(a4, a5), Ops::add(a6, a7))),
                         Ops::add(Ops::add(a8, a9), Ops::add(a10, a11)));
    sink += Ops::first(s);  // keeps the chains alive
  }
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (sink == 12345.0f) std::puts("");  // never true; stops the compiler from dropping the work
  return (double)iters * 12 * Ops::kWidth * 2 * threads / dt / 1e9;  // 12 chains x lanes x 2 FLOP
}

struct Avx2 {
  static constexpr int kWidth = 8;
  static __m256 set1(float v) { return _mm256_set1_ps(v); }
  static __m256 fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
  static __m256 add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
  static float first(__m256 v) { return _mm256_cvtss_f32(v); }
};

#ifdef __AVX512F__
struct Avx512 {
  static constexpr int kWidth = 16;
  static __m512 set1(float v) { return _mm512_set1_ps(v); }
  static __m512 fma(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
  static __m512 add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
  static float first(__m512 v) { return _mm512_cvtss_f32(v); }
};
#endif

int main() {
  const int maxt = omp_get_max_threads();
  for (int t = 1; t <= maxt; t *= 2) {
    double best = 0;
    for (int r = 0; r < 3; ++r) best = std::max(best, run<__m256, Avx2>(t, 20000000));
    std::printf("%d thread(s): %.1f GFLOP/s float32 FMA peak, AVX2 (8 lanes)\n", t, best);
#ifdef __AVX512F__
    best = 0;
    for (int r = 0; r < 3; ++r) best = std::max(best, run<__m512, Avx512>(t, 20000000));
    std::printf("%d thread(s): %.1f GFLOP/s float32 FMA peak, AVX-512 (16 lanes)\n", t, best);
#endif
  }
}
