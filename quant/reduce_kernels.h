// Deterministic per-channel sums for the gradients of quantizer parameters (a step size, an
// offset, a clip level): the gradient of a per-tensor parameter is the sum over all elements, of a
// per-channel one the sum over its channel. Blocks of a fixed size are summed in parallel and the
// block sums added in order, so the result is the same for any thread count.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/parallel.h"

namespace lowbit {

constexpr int64_t kReduceBlock = 4096;

inline int64_t reduce_blocks(int64_t inner) { return (inner + kReduceBlock - 1) / kReduceBlock; }

// Runs fn(k, c, begin, end) for every block k of every channel c of a (channels, inner) layout:
// block k = c * reduce_blocks(inner) + j covers elements [begin, end) of channel c (global
// indices), at most kReduceBlock of them. Blocks run in parallel; fn must write only its own.
template <class F>
void for_channel_blocks(int64_t channels, int64_t inner, int64_t cost_per_item, F fn) {
  const int64_t nb = reduce_blocks(inner);
  parallel_for(channels * nb, kReduceBlock * cost_per_item, [&](int64_t b0, int64_t b1) {
    for (int64_t k = b0; k < b1; ++k) {
      const int64_t c = k / nb, j = k % nb;
      fn(k, c, c * inner + j * kReduceBlock, c * inner + std::min(inner, (j + 1) * kReduceBlock));
    }
  });
}

// out[c] = the sum of channel c's block sums part[c * reduce_blocks(inner) + j], in block order.
inline void add_block_sums(double* out, const double* part, int64_t channels, int64_t inner) {
  const int64_t nb = reduce_blocks(inner);
  for (int64_t c = 0; c < channels; ++c) {
    double acc = 0;
    for (int64_t j = 0; j < nb; ++j) acc += part[c * nb + j];
    out[c] = acc;
  }
}

// For every channel c of a (channels, inner) layout: out[c] = sum over i in channel c of f(i),
// accumulated in double. f(i) may also write per-element outputs at index i (it is called exactly
// once per element). out: (channels).
template <class F>
void channel_block_sums(double* out, int64_t channels, int64_t inner, F f) {
  std::vector<double> part((size_t)(channels * reduce_blocks(inner)));
  for_channel_blocks(channels, inner, 1, [&](int64_t k, int64_t, int64_t lo, int64_t hi) {
    double acc = 0;
    for (int64_t i = lo; i < hi; ++i) acc += f(i);
    part[(size_t)k] = acc;
  });
  add_block_sums(out, part.data(), channels, inner);
}

}  // namespace lowbit
