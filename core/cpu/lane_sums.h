// Sums over a row in kLanes independent double partial sums (element j goes to lane j mod
// kLanes), added in lane order at the end. A single running sum is one serial chain of additions
// that the compiler may not reorder (IEEE), so it neither vectorises nor pipelines; fixed lanes do
// both and still give the same bits on every run and thread count. The lanes are double, not T:
// batch-norm's sum of dy cancels to a small fraction of the sum of |dy|, and float32 lanes moved
// a ResNet-20 step's BN-bias gradients by 0.3% against double accumulation.
#pragma once
#include <cstdint>

namespace lowbit {

constexpr int kLanes = 8;

inline double lanes_total(const double* acc) {
  double s = 0;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

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
