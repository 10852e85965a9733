// The float32 vector type the hand-written kernels are written against: AVX-512 (16 lanes, 32
// registers) when the build targets it, else AVX2 + FMA (8 lanes, 16 registers). A kernel written
// once against Simd gets the machine's full vector width; its tile sizes follow from Simd::kWidth
// and Simd::kRegs. Chosen at compile time (the build is -march=native), so no dispatch cost.
#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>
#define LB_SIMD 512
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LB_SIMD 256
#endif

#ifdef LB_SIMD
namespace lowbit {

#if LB_SIMD == 512
struct Simd {
  using V = __m512;
  static constexpr int kWidth = 16;  // floats per vector
  static constexpr int kRegs = 32;   // vector registers
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V zero() { return _mm512_setzero_ps(); }
  static V bcast(const float* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }  // a*b + c, one rounding
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
};
#else
struct Simd {
  using V = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kRegs = 16;
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V zero() { return _mm256_setzero_ps(); }
  static V bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
};
#endif

}  // namespace lowbit
#endif  // LB_SIMD
