// The machine's memory bandwidth, the ceiling for docs/perf.md's GB/s figures (batch norm, the
// copies of slice / concat / shuffle): over arrays far larger than the caches (256 MB each),
// a read (a sum), a copy with ordinary stores (each destination line is read for ownership
// first, so it moves three lines per line copied, counted here as two) and a copy with
// non-temporal stores (no read for ownership). Best of five runs per thread count; the copies
// count the bytes read plus the bytes written. AVX-512 builds only.
//   g++ -O2 -march=native -fopenmp bench/mem_bandwidth.cpp -o build/mem_bandwidth && build/mem_bandwidth
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#ifndef __AVX512F__
#error "bench/mem_bandwidth.cpp: build with -march=native on an AVX-512 machine"
#endif

namespace {

constexpr size_t kFloats = size_t(64) << 20;  // 256 MB an array

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// GB/s of the best of five runs of f, which moves `bytes`.
template <class F>
double best_rate(double bytes, F&& f) {
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::max(best, bytes / seconds_since(t0) / 1e9);
  }
  return best;
}

}  // namespace

int main() {
  float* a = static_cast<float*>(std::aligned_alloc(64, kFloats * sizeof(float)));
  float* b = static_cast<float*>(std::aligned_alloc(64, kFloats * sizeof(float)));
  if (!a || !b) {
    std::fprintf(stderr, "mem_bandwidth: could not allocate 2 x 256 MB\n");
    return 1;
  }
  const long n = (long)kFloats;
  std::printf("threads  read GB/s  copy GB/s  copy, non-temporal stores GB/s\n");
  for (int threads : {1, 2}) {
    // First touch by the threads that will use the pages (and no page faults in the timings).
#pragma omp parallel for num_threads(threads)
    for (long i = 0; i < n; ++i) a[i] = 1.0f, b[i] = 0.0f;
    volatile float sink = 0;
    const double bytes = (double)n * sizeof(float);
    const double read = best_rate(bytes, [&] {
      __m512 acc = _mm512_setzero_ps();
#pragma omp parallel num_threads(threads)
      {
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();  // two chains: not add-bound
#pragma omp for
        for (long i = 0; i < n; i += 32) {
          s0 = _mm512_add_ps(s0, _mm512_load_ps(a + i));
          s1 = _mm512_add_ps(s1, _mm512_load_ps(a + i + 16));
        }
#pragma omp critical
        acc = _mm512_add_ps(acc, _mm512_add_ps(s0, s1));
      }
      sink = sink + _mm512_reduce_add_ps(acc);
    });
    const double copy = best_rate(2 * bytes, [&] {
#pragma omp parallel for num_threads(threads)
      for (long i = 0; i < n; i += 16) _mm512_store_ps(b + i, _mm512_load_ps(a + i));
    });
    const double stream = best_rate(2 * bytes, [&] {
#pragma omp parallel num_threads(threads)
      {
#pragma omp for nowait
        for (long i = 0; i < n; i += 16) _mm512_stream_ps(b + i, _mm512_load_ps(a + i));
        _mm_sfence();  // each thread's streamed lines reach memory before the clock stops
      }
    });
    std::printf("%7d  %9.1f  %9.1f  %9.1f\n", threads, read, copy, stream);
  }
  std::free(a);
  std::free(b);
  return 0;
}
