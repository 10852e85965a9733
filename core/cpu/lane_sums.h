// Sums over a row in kLanes independent double partial sums (element j goes to lane j mod
// kLanes), added in lane order at the end. A single running sum is one serial chain of additions
// that the compiler may not reorder (IEEE), so it neither vectorises nor pipelines; fixed lanes do
// both and still give the same bits on every run and thread count. The lanes are double, not T:
// batch-norm's sum of dy cancels to a small fraction of the sum of |dy|, and float32 lanes moved
// a ResNet-20 step's BN-bias gradients by 0.3% against double accumulation.
#pragma once
#include <cstdint>

#include "core/cpu/simd.h"

namespace lowbit {

constexpr int kLanes = 8;

// The kLanes double lanes as one vector (AVX-512) or two (AVX2), for sums that must be the
// scalar lanes' bit for bit: each lane gets the same IEEE operations, products and sums rounded
// separately as with -ffp-contract=off. GCC vectorised the scalar form two lanes at a time with
// the sums spilled to the stack. load8 widens 8 floats.
struct Lanes8 {
#if LB_SIMD == 512
  __m512d v;
  static Lanes8 zero() { return {_mm512_setzero_pd()}; }
  static Lanes8 set1(double a) { return {_mm512_set1_pd(a)}; }
  // (maskz with every lane: the plain form hands GCC 12 an undefined vector it warns about)
  static Lanes8 load8(const float* p) { return {_mm512_maskz_cvtps_pd(0xFF, _mm256_loadu_ps(p))}; }
  friend Lanes8 operator+(Lanes8 a, Lanes8 b) { return {_mm512_add_pd(a.v, b.v)}; }
  friend Lanes8 operator-(Lanes8 a, Lanes8 b) { return {_mm512_sub_pd(a.v, b.v)}; }
  friend Lanes8 operator*(Lanes8 a, Lanes8 b) { return {_mm512_mul_pd(a.v, b.v)}; }
  void store(double* p) const { _mm512_storeu_pd(p, v); }
#elif LB_SIMD == 256
  __m256d lo, hi;
  static Lanes8 zero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  static Lanes8 set1(double a) { return {_mm256_set1_pd(a), _mm256_set1_pd(a)}; }
  static Lanes8 load8(const float* p) {
    return {_mm256_cvtps_pd(_mm_loadu_ps(p)), _mm256_cvtps_pd(_mm_loadu_ps(p + 4))};
  }
  friend Lanes8 operator+(Lanes8 a, Lanes8 b) { return {_mm256_add_pd(a.lo, b.lo), _mm256_add_pd(a.hi, b.hi)}; }
  friend Lanes8 operator-(Lanes8 a, Lanes8 b) { return {_mm256_sub_pd(a.lo, b.lo), _mm256_sub_pd(a.hi, b.hi)}; }
  friend Lanes8 operator*(Lanes8 a, Lanes8 b) { return {_mm256_mul_pd(a.lo, b.lo), _mm256_mul_pd(a.hi, b.hi)}; }
  void store(double* p) const { _mm256_storeu_pd(p, lo), _mm256_storeu_pd(p + 4, hi); }
#endif
};

inline double lanes_total(const double* acc) {
  double s = 0;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// out[r] = lanes_total of v[r]'s lanes, r < 8, the same additions in the same order, eight rows
// at a time: an 8 x 8 transpose puts lane l of every row in one vector, then the lanes are added
// in order. (Eight rows of 16 values, batch norm at 4x4, paid more for their lane totals, one
// serial chain of eight additions each, than for their sums.)
#ifdef LB_SIMD
inline void lanes_totals8(double* out, const Lanes8 v[8]) {
#if LB_SIMD == 512
  constexpr __mmask8 all = 0xFF;  // maskz with every lane, as load8 (GCC 12's undefined vector)
  __m512d t[8], u[8], c[8];
  for (int k = 0; k < 4; ++k) {
    t[2 * k] = _mm512_maskz_unpacklo_pd(all, v[2 * k].v, v[2 * k + 1].v);  // (r0[2i], r1[2i])
    t[2 * k + 1] = _mm512_maskz_unpackhi_pd(all, v[2 * k].v, v[2 * k + 1].v);
  }
  for (int h = 0; h < 2; ++h) {  // rows 4h .. 4h + 3: u[4h + m] holds columns m and m + 4
    u[4 * h + 0] = _mm512_maskz_shuffle_f64x2(all, t[4 * h], t[4 * h + 2], 0x88);      // 0, 4
    u[4 * h + 1] = _mm512_maskz_shuffle_f64x2(all, t[4 * h], t[4 * h + 2], 0xDD);      // 2, 6
    u[4 * h + 2] = _mm512_maskz_shuffle_f64x2(all, t[4 * h + 1], t[4 * h + 3], 0x88);  // 1, 5
    u[4 * h + 3] = _mm512_maskz_shuffle_f64x2(all, t[4 * h + 1], t[4 * h + 3], 0xDD);  // 3, 7
  }
  c[0] = _mm512_maskz_shuffle_f64x2(all, u[0], u[4], 0x88), c[4] = _mm512_maskz_shuffle_f64x2(all, u[0], u[4], 0xDD);
  c[2] = _mm512_maskz_shuffle_f64x2(all, u[1], u[5], 0x88), c[6] = _mm512_maskz_shuffle_f64x2(all, u[1], u[5], 0xDD);
  c[1] = _mm512_maskz_shuffle_f64x2(all, u[2], u[6], 0x88), c[5] = _mm512_maskz_shuffle_f64x2(all, u[2], u[6], 0xDD);
  c[3] = _mm512_maskz_shuffle_f64x2(all, u[3], u[7], 0x88), c[7] = _mm512_maskz_shuffle_f64x2(all, u[3], u[7], 0xDD);
  __m512d s = _mm512_setzero_pd();
  for (int l = 0; l < kLanes; ++l) s = _mm512_add_pd(s, c[l]);
  _mm512_storeu_pd(out, s);
#else
  for (int r = 0; r < 8; ++r) {
    double a[kLanes];
    v[r].store(a);
    out[r] = lanes_total(a);
  }
#endif
}
#endif

// sum_j a[j]
template <class T>
double lane_sum(const T* a, int64_t n) {
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += (double)a[j + l];
  for (int l = 0; j < n; ++j, ++l) acc[l] += (double)a[j];
  return lanes_total(acc);
}

// sum_j a[j] * b[j]
template <class T>
double lane_dot(const T* a, const T* b, int64_t n) {
  double acc[kLanes] = {};  // products of floats are exact in double
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += (double)a[j + l] * (double)b[j + l];
  for (int l = 0; j < n; ++j, ++l) acc[l] += (double)a[j] * (double)b[j];
  return lanes_total(acc);
}

}  // namespace lowbit
