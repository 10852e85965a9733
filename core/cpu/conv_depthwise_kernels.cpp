// Direct depthwise conv2d kernels (groups == C, O = C*m): output channel o reads only input
// channel o/m, so im2col would feed GEMMs of a single row; direct loops over the window are
// faster. Stride 1 runs on padded planes (below); other strides loop over the window in place.
// Same math as conv_kernels.cpp: y[n,o,i,j] = b[o] +
// sum_{kh,kw} w[o,0,kh,kw] * x[n, o/m, i*sh - ph + kh*dh, j*sw - pw + kw*dw].
#include <algorithm>
#include <vector>

#include "core/cpu/conv_kernels.h"
#include "core/cpu/lane_sums.h"
#include "core/cpu/conv_util.h"

namespace lowbit {

namespace {

// ---- stride 1: planes padded once, outputs on the padded grid (as conv_direct.h explains) ----
// On a grid of width Wp = W + 2*pw, tap (kh, kw) of output position q reads the padded plane at
// q + kh*dh*Wp + kw*dw: each tap is one contiguous multiply-add over the whole plane, a loop the
// compiler vectorises, with no bounds to check. The data gradient is the same convolution of dy
// with the taps flipped (padding d*(k-1) - p), so it needs that padding to be >= 0.
bool depthwise_grid_applies(const ConvGeom& g) {
  return g.sh == 1 && g.sw == 1 && g.ph <= g.dh * (g.KH - 1) && g.pw <= g.dw * (g.KW - 1);
}

// Padded plane geometry for an H x W plane, padding (ph, pw), kernel reach (KH, KW, dh, dw).
struct DwGrid {
  int64_t H, W, ph, pw, Hp, Wp, OH, Q, size;
  DwGrid(int64_t h, int64_t w, int64_t ph_, int64_t pw_, const ConvGeom& g)
      : H(h), W(w), ph(ph_), pw(pw_), Hp(h + 2 * ph_), Wp(w + 2 * pw_) {
    OH = Hp - g.dh * (g.KH - 1);
    Q = OH * Wp;
    size = Hp * Wp + g.dw * (g.KW - 1);  // the last position's farthest tap stays inside
  }
  // Interior copy; the border and the tail stay as they are (zero, set once per buffer).
  template <class T>
  void fill(T* dst, const T* src) const {
    for (int64_t h = 0; h < H; ++h)
      std::copy(src + h * W, src + (h + 1) * W, dst + (h + ph) * Wp + pw);
  }
};

// acc[q] += w * xp[q + off] for q < Q: one tap over the grid.
template <class T>
void tap_axpy(T* acc, const T* xp, int64_t off, T w, int64_t Q) {
  T* __restrict a = acc;
  const T* __restrict x = xp + off;
  for (int64_t q = 0; q < Q; ++q) a[q] += w * x[q];
}

template <class T>
void dw_forward_grid(T* y, const T* x, const T* w, const T* b, const ConvGeom& g,
                     const ConvEpilogue<T>* ep) {
  const int64_t m = g.O / g.C, ohw = g.OH * g.OW, hw = g.H * g.W;
  const DwGrid gr(g.H, g.W, g.ph, g.pw, g);
  parallel_for(g.N * g.O, ohw * g.KH * g.KW, [&](int64_t p0, int64_t p1) {
    std::vector<T> xp((size_t)gr.size, T(0)), acc((size_t)gr.Q);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / g.O, o = p % g.O;
      gr.fill(xp.data(), x + (n * g.C + o / m) * hw);
      std::fill(acc.begin(), acc.end(), b ? b[o] : T(0));
      for (int64_t kh = 0; kh < g.KH; ++kh)
        for (int64_t kw = 0; kw < g.KW; ++kw)
          tap_axpy(acc.data(), xp.data(), kh * g.dh * gr.Wp + kw * g.dw,
                   w[(o * g.KH + kh) * g.KW + kw], gr.Q);
      T* yp = y + p * ohw;
      for (int64_t oh = 0; oh < g.OH; ++oh)
        std::copy(acc.data() + oh * gr.Wp, acc.data() + oh * gr.Wp + g.OW, yp + oh * g.OW);
      conv_epilogue_plane(yp, ohw, ep, n, o, g.O);
    }
  });
}

template <class T>
void dw_backward_data_grid(T* dx, const T* dy, const T* w, const ConvGeom& g) {
  const int64_t m = g.O / g.C, ohw = g.OH * g.OW, hw = g.H * g.W;
  // dy planes padded by d*(k-1) - p; the result grid has width Wp = OW + 2*pw' and H rows.
  const DwGrid gr(g.OH, g.OW, g.dh * (g.KH - 1) - g.ph, g.dw * (g.KW - 1) - g.pw, g);
  parallel_for(g.N * g.C, m * ohw * g.KH * g.KW, [&](int64_t p0, int64_t p1) {
    std::vector<T> dyp((size_t)gr.size, T(0)), acc((size_t)gr.Q);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / g.C, c = p % g.C;
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t j = 0; j < m; ++j) {
        const int64_t o = c * m + j;
        gr.fill(dyp.data(), dy + (n * g.O + o) * ohw);
        for (int64_t kh = 0; kh < g.KH; ++kh)
          for (int64_t kw = 0; kw < g.KW; ++kw)  // flipped taps
            tap_axpy(acc.data(), dyp.data(), kh * g.dh * gr.Wp + kw * g.dw,
                     w[(o * g.KH + (g.KH - 1 - kh)) * g.KW + (g.KW - 1 - kw)], gr.Q);
      }
      T* dxp = dx + p * hw;
      for (int64_t h = 0; h < g.H; ++h)
        std::copy(acc.data() + h * gr.Wp, acc.data() + h * gr.Wp + g.W, dxp + h * g.W);
    }
  });
}

template <class T>
void dw_backward_weight_grid(T* dw, const T* dy, const T* x, const ConvGeom& g) {
  const int64_t m = g.O / g.C, ohw = g.OH * g.OW, hw = g.H * g.W, taps = g.KH * g.KW;
  const DwGrid gr(g.H, g.W, g.ph, g.pw, g);
  // One output channel per task, images in order: the sums never depend on the thread count.
  parallel_for(g.O, g.N * ohw * taps, [&](int64_t o0, int64_t o1) {
    std::vector<T> xp((size_t)gr.size, T(0)), dyg((size_t)gr.Q, T(0));  // dyg: dy on the grid
    std::vector<double> s((size_t)taps);
    for (int64_t o = o0; o < o1; ++o) {
      std::fill(s.begin(), s.end(), 0.0);
      for (int64_t n = 0; n < g.N; ++n) {
        gr.fill(xp.data(), x + (n * g.C + o / m) * hw);
        const T* dyp = dy + (n * g.O + o) * ohw;
        for (int64_t oh = 0; oh < g.OH; ++oh)  // columns past OW stay zero: they add nothing
          std::copy(dyp + oh * g.OW, dyp + (oh + 1) * g.OW, dyg.data() + oh * gr.Wp);
        for (int64_t kh = 0; kh < g.KH; ++kh)
          for (int64_t kw = 0; kw < g.KW; ++kw)
            s[(size_t)(kh * g.KW + kw)] +=
                lane_dot(dyg.data(), xp.data() + kh * g.dh * gr.Wp + kw * g.dw, gr.Q);
      }
      for (int64_t t = 0; t < taps; ++t) dw[o * taps + t] = (T)s[(size_t)t];
    }
  });
}

}  // namespace

// y (N,O,OH,OW), x (N,C,H,W), w (O,1,KH,KW), b (O) or null. One (n, o) plane per task.
template <class T>
void depthwise_conv2d_forward_cpu(T* y, const T* x, const T* w, const T* b, const ConvGeom& g,
                                  const ConvEpilogue<T>* ep) {
  if (depthwise_grid_applies(g)) return dw_forward_grid(y, x, w, b, g, ep);
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
            if (g.sw == 1) {  // contiguous: restrict pointers so the loop vectorises
              T* __restrict yo = yr;
              const T* __restrict xi = xr;
              for (int64_t ow = lo; ow < hi; ++ow) yo[ow] += wv * xi[ow];
            } else {
              for (int64_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow * g.sw];
            }
          }
        }
      conv_epilogue_plane(yp, ohw, ep, n, o, g.O);
    }
  });
}

// dx (N,C,H,W) from dy (N,O,OH,OW): one input plane per task gathers from its m output planes,
// so no two tasks write the same element and the order of the additions is fixed.
template <class T>
void depthwise_conv2d_backward_data_cpu(T* dx, const T* dy, const T* w, const ConvGeom& g) {
  if (depthwise_grid_applies(g)) return dw_backward_data_grid(dx, dy, w, g);
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
              if (g.sw == 1) {
                T* __restrict xo = xr;
                const T* __restrict yi = yr;
                for (int64_t ow = lo; ow < hi; ++ow) xo[ow] += wv * yi[ow];
              } else {
                for (int64_t ow = lo; ow < hi; ++ow) xr[ow * g.sw] += wv * yr[ow];
              }
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
  if (depthwise_grid_applies(g)) return dw_backward_weight_grid(dw, dy, x, g);
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
              // One row at a time keeps the float32 partial sums short.
              if (g.sw == 1) {
                s += lane_dot(yr + lo, xr + lo, hi - lo);
              } else {
                T r = 0;
                for (int64_t ow = lo; ow < hi; ++ow) r += yr[ow] * xr[ow * g.sw];
                s += r;
              }
            }
          }
          dw[(o * g.KH + kh) * g.KW + kw] = (T)s;
        }
  });
}

#define LB_DW_INSTANTIATE(T)                                                                          \
  template void depthwise_conv2d_forward_cpu<T>(T*, const T*, const T*, const T*, const ConvGeom&, \
                                                const ConvEpilogue<T>*);                          \
  template void depthwise_conv2d_backward_data_cpu<T>(T*, const T*, const T*, const ConvGeom&);     \
  template void depthwise_conv2d_backward_weight_cpu<T>(T*, const T*, const T*, const ConvGeom&);
LB_DW_INSTANTIATE(float)
LB_DW_INSTANTIATE(double)

}  // namespace lowbit
