// 2-d convolution CPU kernels on raw pointers (cross-correlation, as PyTorch's conv2d):
// y[n,o,i,j] = b[o] + sum_{c in group(o), kh, kw} w[o,c,kh,kw] * x[n, c, i*sh - ph + kh*dh, j*sw - pw + kw*dw]
// (zero outside the image). General path: im2col + gemm per image; depthwise path: direct loops.
#pragma once
#include <cstdint>

#include "core/cpu/conv_epilogue.h"

namespace lowbit {

// Everything a kernel needs to know about one convolution. Shapes:
// x (N, C, H, W), w (O, C/groups, KH, KW), b (O), y (N, O, OH, OW).
struct ConvGeom {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t O = 0, KH = 0, KW = 0, OH = 0, OW = 0;
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  int64_t groups = 1;
};

// Output size floor((in + 2p - d(k-1) - 1) / s) + 1; may be <= 0 (the op rejects that).
int64_t conv_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d);

// ---- general path: im2col + gemm, any groups ----
// y (N,O,OH,OW) = conv(x, w) + b; b may be null. ep (inference only, may be null): applied to each
// output plane as soon as it is final (core/cpu/conv_epilogue.h).
template <class T>
void conv2d_forward_cpu(T* y, const T* x, const T* w, const T* b, const ConvGeom& g,
                        const ConvEpilogue<T>* ep = nullptr);
// dx (N,C,H,W) = conv_transpose(dy, w): gemm into a column buffer, then col2im. Overwrites dx.
template <class T>
void conv2d_backward_data_cpu(T* dx, const T* dy, const T* w, const ConvGeom& g);
// Whether conv2d_backward_data_add_cpu takes g: float32 layers whose data gradient runs on a
// kernel that can add its outputs into dx as it stores them (the Winograd ones).
bool conv2d_backward_data_adds(const ConvGeom& g);
// dx += conv_transpose(dy, w), for a layer where conv2d_backward_data_adds(g): a residual block's
// input, whose gradient from the skip is already pending (pending_grad, core/autograd.h), takes the
// convolution's on top in the same pass that would have stored it, instead of a new tensor and
// the engine's add over both. The same values as that add (dx + the stored gradient).
void conv2d_backward_data_add_cpu(float* dx, const float* dy, const float* w, const ConvGeom& g);
// dw (O,C/groups,KH,KW) = sum_n dy_n col(x_n)^T; overwrites dw. Per-chunk partial sums are added
// in chunk order, so a given thread count always gives the same bits.
template <class T>
void conv2d_backward_weight_cpu(T* dw, const T* dy, const T* x, const ConvGeom& g);

// The most bytes of column matrix the weight gradient puts in one block at outputs under 16x16
// (conv_kernels.cpp, weight_grad_batched): 64 MB by default; tests lower it to run many blocks.
int64_t& conv_wgrad_block_bytes();
// db (O) = sum over n, oh, ow of dy; overwrites db. One channel per task: the order of the sum
// never depends on the thread count.
template <class T>
void conv2d_backward_bias_cpu(T* db, const T* dy, const ConvGeom& g);

// ---- direct depthwise path: groups == C, O = C * m (channel multiplier m), no im2col ----
// Output channel o reads input channel o / m.
template <class T>
void depthwise_conv2d_forward_cpu(T* y, const T* x, const T* w, const T* b, const ConvGeom& g,
                                  const ConvEpilogue<T>* ep = nullptr);
template <class T>
void depthwise_conv2d_backward_data_cpu(T* dx, const T* dy, const T* w, const ConvGeom& g);
template <class T>
void depthwise_conv2d_backward_weight_cpu(T* dw, const T* dy, const T* x, const ConvGeom& g);

// True when the direct depthwise kernels apply (and beat im2col, which has one-row GEMMs there).
inline bool conv_is_depthwise(const ConvGeom& g) {
  return g.groups == g.C && g.groups > 1 && g.O % g.C == 0;
}

}  // namespace lowbit
