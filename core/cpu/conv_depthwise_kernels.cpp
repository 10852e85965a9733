// Direct depthwise conv2d kernels (groups == C, O = C*m): output channel o reads only input
// channel o/m, so im2col would feed GEMMs of a single row; direct loops over the window are
// faster and need no buffer. Same math as conv_kernels.cpp: y[n,o,i,j] = b[o] +
// sum_{kh,kw} w[o,0,kh,kw] * x[n, o/m, i*sh - ph + kh*dh, j*sw - pw + kw*dw].
#include <algorithm>

#include "core/cpu/conv_kernels.h"
#include "core/cpu/conv_util.h"

namespace lowbit {

// y (N,O,OH,OW), x (N,C,H,W), w (O,1,KH,KW), b (O) or null. One (n, o) plane per task.
template <class T>
void depthwise_conv2d_forward_cpu(T* y, const T* x, const T* w, const T* b, const ConvGeom& g) {
  const int64_t m = g.O / g.C, ohw = g.OH * g.OW, hw = g.H * g.W;
  parallel_for(g.N * g.O, ohw * g.KH * g.KW, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / g.O, o = p % g.O;
      const T* xp = x + (n * g.C + o / m) * hw;
      T* yp = y + p * ohw;
      std::fill(yp, yp + ohw, b ? b[o] : T(0));
      for (int64_t kh = 0; kh < g.KH; ++kh)
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const T wv = w[(o * g.KH + kh) * g.KW + kw];
          const int64_t off_w = kw * g.dw - g.pw;
          int64_t lo, hi;
          conv_valid_range(off_w, g.sw, g.W, g.OW, lo, hi);
          for (int64_t oh = 0; oh < g.OH; ++oh) {
            const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
            if (ih < 0 || ih >= g.H) continue;
            const T* xr = xp + ih * g.W + off_w;
            T* yr = yp + oh * g.OW;
            for (int64_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow * g.sw];
          }
        }
    }
  });
}

// dx (N,C,H,W) from dy (N,O,OH,OW): one input plane per task gathers from its m output planes,
// so no two tasks write the same element and the order of the additions is fixed.
template <class T>
void depthwise_conv2d_backward_data_cpu(T* dx, const T* dy, const T* w, const ConvGeom& g) {
  const int64_t m = g.O / g.C, ohw = g.OH * g.OW, hw = g.H * g.W;
  parallel_for(g.N * g.C, m * ohw * g.KH * g.KW, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / g.C, c = p % g.C;
      T* dxp = dx + p * hw;
      std::fill(dxp, dxp + hw, T(0));
      for (int64_t j = 0; j < m; ++j) {
        const int64_t o = c * m + j;
        const T* dyp = dy + (n * g.O + o) * ohw;
        for (int64_t kh = 0; kh < g.KH; ++kh)
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            const T wv = w[(o * g.KH + kh) * g.KW + kw];
            const int64_t off_w = kw * g.dw - g.pw;
            int64_t lo, hi;
            conv_valid_range(off_w, g.sw, g.W, g.OW, lo, hi);
            for (int64_t oh = 0; oh < g.OH; ++oh) {
              const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
              if (ih < 0 || ih >= g.H) continue;
              T* xr = dxp + ih * g.W + off_w;
              const T* yr = dyp + oh * g.OW;
              for (int64_t ow = lo; ow < hi; ++ow) xr[ow * g.sw] += wv * yr[ow];
            }
          }
      }
    }
  });
}

// dw (O,1,KH,KW): one output channel per task sums over the whole batch in a fixed order (images,
// then rows), so the result does not depend on the thread count at all.
template <class T>
void depthwise_conv2d_backward_weight_cpu(T* dw, const T* dy, const T* x, const ConvGeom& g) {
  const int64_t m = g.O / g.C, ohw = g.OH * g.OW, hw = g.H * g.W;
  parallel_for(g.O, g.N * ohw * g.KH * g.KW, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t kh = 0; kh < g.KH; ++kh)
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const int64_t off_w = kw * g.dw - g.pw;
          int64_t lo, hi;
          conv_valid_range(off_w, g.sw, g.W, g.OW, lo, hi);
          double s = 0;  // a batch-wide sum: float32 would lose digits over N*OH rows
          for (int64_t n = 0; n < g.N; ++n) {
            const T* xp = x + (n * g.C + o / m) * hw;
            const T* dyp = dy + (n * g.O + o) * ohw;
            for (int64_t oh = 0; oh < g.OH; ++oh) {
              const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
              if (ih < 0 || ih >= g.H) continue;
              const T* xr = xp + ih * g.W + off_w;
              const T* yr = dyp + oh * g.OW;
              T r = 0;  // one row at a time keeps the float32 partial sums short
              for (int64_t ow = lo; ow < hi; ++ow) r += yr[ow] * xr[ow * g.sw];
              s += r;
            }
          }
          dw[(o * g.KH + kh) * g.KW + kw] = (T)s;
        }
  });
}

#define LB_DW_INSTANTIATE(T)                                                                          \
  template void depthwise_conv2d_forward_cpu<T>(T*, const T*, const T*, const T*, const ConvGeom&); \
  template void depthwise_conv2d_backward_data_cpu<T>(T*, const T*, const T*, const ConvGeom&);     \
  template void depthwise_conv2d_backward_weight_cpu<T>(T*, const T*, const T*, const ConvGeom&);
LB_DW_INSTANTIATE(float)
LB_DW_INSTANTIATE(double)

}  // namespace lowbit
