// Copy kernels for the shape ops (core/ops_shape.cpp). They move bytes, so one kernel serves every
// dtype (add_axis_block_cpu, which adds, is typed). A tensor is seen as (outer, axis, inner) around the axis the op works on.
#pragma once
#include <cstdint>

namespace lowbit {

// Copies a block of `len` positions along the axis from src (outer, src_axis, inner) starting at
// src_start into dst (outer, dst_axis, inner) starting at dst_start. elem: bytes per element.
void copy_axis_block_cpu(void* dst, int64_t dst_axis, int64_t dst_start, const void* src,
                         int64_t src_axis, int64_t src_start, int64_t len, int64_t outer,
                         int64_t inner, int64_t elem);

// dst (outer, dst_axis, inner) = zeros, with src (outer, len, inner) placed at [start, start +
// len) along the axis: slice's backward. Each element is written once, in one parallel pass (a
// zero fill of the whole and then the copy wrote the placed part twice, the fill on one thread).
void place_axis_block_cpu(void* dst, int64_t dst_axis, int64_t start, const void* src, int64_t len,
                          int64_t outer, int64_t inner, int64_t elem);

// dst's block [start, start + len) along the axis += src (outer, len, inner), as dst + src
// element by element: slice's backward adding into a gradient already pending (pending_grad).
template <class T>
void add_axis_block_cpu(T* dst, int64_t dst_axis, int64_t start, const T* src, int64_t len,
                        int64_t outer, int64_t inner);

// Channel shuffle: x (N, g, C/g, HW) -> y (N, C/g, g, HW), i.e. output channel j*g + i takes input
// channel i*(C/g) + j. Shuffling with C/g groups undoes it. elem: bytes per element.
void channel_shuffle_cpu(void* y, const void* x, int64_t n, int64_t c, int64_t groups, int64_t hw,
                         int64_t elem);

// channel_shuffle(concat(a, b), 2) in one copy, a and b (N, c, HW): y (N, 2c, HW) with channel 2j
// from a's j and 2j+1 from b's j. With `split` the other way round: a and b from y (the backward).
void interleave_channels_cpu(void* y, void* a, void* b, int64_t n, int64_t c, int64_t hw,
                             int64_t elem, bool split);

}  // namespace lowbit
