// 2-d pooling CPU kernels on raw pointers, PyTorch's semantics: max pool (padding acts as -inf,
// the first maximum of a window in row-major order takes the gradient, NaN propagates), average
// pool (divisor counts the padding when count_include_pad), and adaptive average pool with bins
// [floor(i*H/out), ceil((i+1)*H/out)). Every kernel works on independent (n, c) planes.
#pragma once
#include <cstdint>

namespace lowbit {

// x (N, C, H, W) -> y (N, C, OH, OW); window (KH, KW), stride (sh, sw), padding (ph, pw).
struct PoolGeom {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t KH = 2, KW = 2, sh = 2, sw = 2, ph = 0, pw = 0;
  int64_t OH = 0, OW = 0;
};

// Output size floor((in + 2p - k) / s) + 1; may be <= 0 (the ops reject that).
int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p);

// y (N,C,OH,OW); idx (N,C,OH,OW): flat index ih*W + iw of the winning element in its plane.
template <class T>
void max_pool2d_forward_cpu(T* y, int32_t* idx, const T* x, const PoolGeom& g);
// dx (N,C,H,W) = scatter of dy to the winners; overwrites dx.
template <class T>
void max_pool2d_backward_cpu(T* dx, const T* dy, const int32_t* idx, const PoolGeom& g);

template <class T>
void avg_pool2d_forward_cpu(T* y, const T* x, const PoolGeom& g, bool count_include_pad);
template <class T>
void avg_pool2d_backward_cpu(T* dx, const T* dy, const PoolGeom& g, bool count_include_pad);

// x (N,C,H,W) -> y (N,C,OH,OW) with OH, OW the requested output size (g.KH.. are unused).
template <class T>
void adaptive_avg_pool2d_forward_cpu(T* y, const T* x, const PoolGeom& g);
template <class T>
void adaptive_avg_pool2d_backward_cpu(T* dx, const T* dy, const PoolGeom& g);

}  // namespace lowbit
