// Sums over a row in kLanes independent partial sums (element j goes to lane j mod kLanes),
// added in lane order in double at the end. A single running sum is one serial chain of
// additions that the compiler may not reorder (IEEE), so it neither vectorises nor pipelines;
// fixed lanes do both and still give the same bits on every run and thread count.
#pragma once
#include <cstdint>

namespace lowbit {

constexpr int kLanes = 8;

template <class T>
double lanes_total(const T* acc) {
  double s = 0;
  for (int l = 0; l < kLanes; ++l) s += (double)acc[l];
  return s;
}

// sum_j a[j]
template <class T>
double lane_sum(const T* a, int64_t n) {
  T acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[j + l];
  for (int l = 0; j < n; ++j, ++l) acc[l] += a[j];
  return lanes_total(acc);
}

// sum_j a[j] * b[j]
template <class T>
double lane_dot(const T* a, const T* b, int64_t n) {
  T acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[j + l] * b[j + l];
  for (int l = 0; j < n; ++j, ++l) acc[l] += a[j] * b[j];
  return lanes_total(acc);
}

}  // namespace lowbit
