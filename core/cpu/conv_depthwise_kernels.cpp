// Direct depthwise conv2d kernels (groups == C, O = C*m): output channel o reads only input
// channel o/m, so im2col would feed GEMMs of a single row; direct loops over the window are
// faster. Every stride runs on padded planes split into phases (below).
// Same math as conv_kernels.cpp: y[n,o,i,j] = b[o] +
// sum_{kh,kw} w[o,0,kh,kw] * x[n, o/m, i*sh - ph + kh*dh, j*sw - pw + kw*dw].
#include <algorithm>
#include <type_traits>
#include <vector>

#include "core/cpu/conv_depthwise_lanes.h"
#include "core/cpu/conv_kernels.h"
#include "core/cpu/lane_sums.h"
#include "core/cpu/conv_util.h"

namespace lowbit {

namespace {

// ---- planes padded once, split into stride phases, outputs on a grid (as conv_direct.h) ----
// The padded plane (Hp = H + 2*ph rows of Wp = W + 2*pw) is split into sh x sw phase planes:
// phase (a, b) holds padded pixel (sh*i + a, sw*j + b) at (i, j), in rows of Wq = ceil(Wp/sw).
// Output (oh, ow) then reads tap (kh, kw) from phase ((kh*dh) % sh, (kw*dw) % sw) at
// (oh + kh*dh/sh, ow + kw*dw/sw): on the grid q = oh*Wq + ow every tap is a constant offset, and
// one tap over the whole grid is a contiguous loop the compiler vectorises, with no bounds to
// check. Stride 1 is one phase (Wq = Wp). The grid's columns ow >= OW are computed and dropped.
struct DwGrid {
  int64_t H, W, ph, pw, sh, sw;
  int64_t Hq, Wq, plane;  // a phase plane: rows, row width (the grid's), floats
  int64_t OH, OW, Q;      // the output: its size, and the grid positions OH * Wq
  int64_t size;           // all phase planes, plus slack for the last position's farthest tap
  std::vector<int64_t> tap;     // per tap (kh, kw): offset of its input from a grid position
  std::vector<int64_t> col_at;  // per column w of the plane: where it lands in its phase row

  // An H x W plane padded (ph, pw), read with the kernel, stride and dilation of g.
  DwGrid(int64_t h, int64_t w, int64_t ph_, int64_t pw_, int64_t sh_, int64_t sw_,
         const ConvGeom& g)
      : H(h), W(w), ph(ph_), pw(pw_), sh(sh_), sw(sw_) {
    const int64_t hp = h + 2 * ph_, wp = w + 2 * pw_;
    Hq = (hp + sh - 1) / sh, Wq = (wp + sw - 1) / sw, plane = Hq * Wq;
    OH = (hp - g.dh * (g.KH - 1) - 1) / sh + 1, OW = (wp - g.dw * (g.KW - 1) - 1) / sw + 1;
    Q = OH * Wq;
    size = sh * sw * plane + g.dw * (g.KW - 1) / sw;
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t rh = kh * g.dh, rw = kw * g.dw;
        tap.push_back(((rh % sh) * sw + rw % sw) * plane + (rh / sh) * Wq + rw / sw);
      }
    for (int64_t c = 0; c < w; ++c) col_at.push_back(((c + pw) % sw) * plane + (c + pw) / sw);
  }
  // Where padded row h + ph starts in its phase (its column 0 before col_at).
  int64_t row_at(int64_t hh) const { return ((hh + ph) % sh) * sw * plane + (hh + ph) / sh * Wq; }
  // Interior copy; the border and the slack stay as they are (zero, set once per buffer).
  template <class T>
  void fill(T* dst, const T* src) const {
    for (int64_t hh = 0; hh < H; ++hh) {
      const T* s = src + hh * W;
      T* d = dst + row_at(hh);
      if (sw == 1) {
        std::copy(s, s + W, d + pw);
      } else if (sw == 2) {  // the even and odd columns: two strided loops that vectorise
        for (int64_t c0 = 0; c0 < 2 && c0 < W; ++c0) {
          T* __restrict dd = d + col_at[(size_t)c0];
          const T* __restrict ss = s + c0;
          for (int64_t j = 0; j < (W - c0 + 1) / 2; ++j) dd[j] = ss[2 * j];
        }
      } else {
        for (int64_t c = 0; c < W; ++c) d[col_at[(size_t)c]] = s[c];
      }
    }
  }
  // The inverse: the interior back into an H x W plane.
  template <class T>
  void gather(T* dst, const T* src) const {
    for (int64_t hh = 0; hh < H; ++hh) {
      const T* s = src + row_at(hh);
      T* d = dst + hh * W;
      if (sw == 1)
        std::copy(s + pw, s + pw + W, d);
      else
        for (int64_t c = 0; c < W; ++c) d[c] = s[col_at[(size_t)c]];
    }
  }
};

// The grid of x's planes for g.
DwGrid input_grid(const ConvGeom& g) { return DwGrid(g.H, g.W, g.ph, g.pw, g.sh, g.sw, g); }

// acc[q] = init + sum over taps t, in order, of w[t] * xp[q + off[t]], q < Q; with accumulate
// the sums start from acc[q] instead of init. NT > 0: that many taps, fixed at compile time, so
// the tap loop unrolls into registers and each output is stored once (a 3x3 kernel: 9 loads and
// multiply-adds per vector of outputs, where a pass per tap loads and stores the sums 9 times).
// The order of the additions is the same either way.
template <int NT, bool Accumulate, class T>
void taps_fixed(T* __restrict acc, const T* __restrict xp, const int64_t* off, const T* w, T init,
                int64_t Q) {
  const T* x[NT];
  T wt[NT];
  for (int t = 0; t < NT; ++t) x[t] = xp + off[t], wt[t] = w[t];
  for (int64_t q = 0; q < Q; ++q) {
    T s = Accumulate ? acc[q] : init;
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) s += wt[t] * x[t][q];
    acc[q] = s;
  }
}

template <int NT, class T>
void taps_on_grid(T* acc, const T* xp, const int64_t* off, const T* w, int64_t nt, T init,
                  bool accumulate, int64_t Q) {
  if constexpr (NT > 0) {
    if (accumulate) return taps_fixed<NT, true>(acc, xp, off, w, init, Q);
    return taps_fixed<NT, false>(acc, xp, off, w, init, Q);
  } else {
    if (!accumulate) std::fill(acc, acc + Q, init);
    for (int64_t t = 0; t < nt; ++t) {
      T* __restrict a = acc;
      const T* __restrict x = xp + off[t];
      const T wv = w[t];
      for (int64_t q = 0; q < Q; ++q) a[q] += wv * x[q];
    }
  }
}

template <class T>
void dw_forward_grid(T* y, const T* x, const T* w, const T* b, const ConvGeom& g,
                     const ConvEpilogue<T>* ep) {
  const int64_t m = g.O / g.C, ohw = g.OH * g.OW, hw = g.H * g.W, taps = g.KH * g.KW;
  const DwGrid gr = input_grid(g);
  auto run = taps == 9 ? &taps_on_grid<9, T> : &taps_on_grid<0, T>;
  parallel_for(g.N * g.O, ohw * taps, [&](int64_t p0, int64_t p1) {
    std::vector<T> xp((size_t)gr.size, T(0)), acc((size_t)gr.Q);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / g.O, o = p % g.O;
      if (p == p0 || o % m == 0) gr.fill(xp.data(), x + (n * g.C + o / m) * hw);
      run(acc.data(), xp.data(), gr.tap.data(), w + o * taps, taps, b ? b[o] : T(0), false, gr.Q);
      T* yp = y + p * ohw;
      for (int64_t oh = 0; oh < g.OH; ++oh)
        std::copy(acc.data() + oh * gr.Wq, acc.data() + oh * gr.Wq + g.OW, yp + oh * g.OW);
      conv_epilogue_plane(yp, ohw, ep, n, o, g.O);
    }
  });
}

// Stride 1 with padding p <= d*(k-1): dx is the same convolution of dy padded by d*(k-1) - p,
// taps flipped, gathered per input position.
bool dw_data_gathers(const ConvGeom& g) {
  return g.sh == 1 && g.sw == 1 && g.ph <= g.dh * (g.KH - 1) && g.pw <= g.dw * (g.KW - 1);
}

template <class T>
void dw_backward_data_gather(T* dx, const T* dy, const T* w, const ConvGeom& g) {
  const int64_t m = g.O / g.C, ohw = g.OH * g.OW, hw = g.H * g.W, taps = g.KH * g.KW;
  const DwGrid gr(g.OH, g.OW, g.dh * (g.KH - 1) - g.ph, g.dw * (g.KW - 1) - g.pw, 1, 1, g);
  auto run = taps == 9 ? &taps_on_grid<9, T> : &taps_on_grid<0, T>;
  parallel_for(g.N * g.C, m * ohw * taps, [&](int64_t p0, int64_t p1) {
    std::vector<T> dyp((size_t)gr.size, T(0)), acc((size_t)gr.Q), wf((size_t)taps);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / g.C, c = p % g.C;
      for (int64_t j = 0; j < m; ++j) {
        const int64_t o = c * m + j;
        gr.fill(dyp.data(), dy + (n * g.O + o) * ohw);
        for (int64_t t = 0; t < taps; ++t) wf[(size_t)t] = w[o * taps + taps - 1 - t];  // flipped
        // The first output channel's sums start from zero, later ones add onto them.
        run(acc.data(), dyp.data(), gr.tap.data(), wf.data(), taps, T(0), j > 0, gr.Q);
      }
      T* dxp = dx + p * hw;
      for (int64_t h = 0; h < g.H; ++h)
        std::copy(acc.data() + h * gr.Wq, acc.data() + h * gr.Wq + g.W, dxp + h * g.W);
    }
  });
}

// Any stride: each tap scatters w * dy onto the phase planes of dx, a contiguous loop per tap,
// and dx's interior is gathered back. dy sits on the grid with its columns past OW zero, so
// those add nothing.
template <class T>
void dw_backward_data_scatter(T* dx, const T* dy, const T* w, const ConvGeom& g) {
  const int64_t m = g.O / g.C, ohw = g.OH * g.OW, hw = g.H * g.W, taps = g.KH * g.KW;
  const DwGrid gr = input_grid(g);
  parallel_for(g.N * g.C, m * ohw * taps, [&](int64_t p0, int64_t p1) {
    std::vector<T> acc((size_t)gr.size), dyg((size_t)gr.Q, T(0));
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / g.C, c = p % g.C;
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t j = 0; j < m; ++j) {
        const int64_t o = c * m + j;
        const T* dyp = dy + (n * g.O + o) * ohw;
        for (int64_t oh = 0; oh < g.OH; ++oh)
          std::copy(dyp + oh * g.OW, dyp + (oh + 1) * g.OW, dyg.data() + oh * gr.Wq);
        for (int64_t t = 0; t < taps; ++t) {
          T* __restrict a = acc.data() + gr.tap[(size_t)t];
          const T* __restrict d = dyg.data();
          const T wv = w[o * taps + t];
          for (int64_t q = 0; q < gr.Q; ++q) a[q] += wv * d[q];
        }
      }
      gr.gather(dx + p * hw, acc.data());
    }
  });
}

// s[t][l] += sum over blocks j of dyg[j + l] * x_t[j + l] (x_t = xp + off[t]) for all taps at
// once: one pass over dy per image, each tap's kLanes double lanes kept across the whole batch
// (reduced once at the end, not per image: at ShuffleNetV2's 4x4 planes the per-call reduction
// cost more than the products). Q is a multiple of kLanes, the zero columns of dyg padding it.
template <int NT, class T>
void wgrad_lanes_fixed(double (*s)[kLanes], const T* __restrict dyg, const T* __restrict xp,
                       const int64_t* off, int64_t, int64_t Q) {
  const T* x[NT];
  double acc[NT][kLanes];  // in registers (s might alias, as far as the compiler knows)
  for (int t = 0; t < NT; ++t) {
    x[t] = xp + off[t];
    for (int l = 0; l < kLanes; ++l) acc[t][l] = s[t][l];
  }
  for (int64_t j = 0; j < Q; j += kLanes) {
    double d[kLanes];
    for (int l = 0; l < kLanes; ++l) d[l] = (double)dyg[j + l];
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t)
      for (int l = 0; l < kLanes; ++l) acc[t][l] += d[l] * (double)x[t][j + l];
  }
  for (int t = 0; t < NT; ++t)
    for (int l = 0; l < kLanes; ++l) s[t][l] = acc[t][l];
}

template <class T>
void wgrad_lanes_any(double (*s)[kLanes], const T* __restrict dyg, const T* __restrict xp,
                     const int64_t* off, int64_t nt, int64_t Q) {
  for (int64_t t = 0; t < nt; ++t) {
    const T* x = xp + off[t];
    for (int64_t j = 0; j < Q; j += kLanes)
      for (int l = 0; l < kLanes; ++l) s[t][l] += (double)dyg[j + l] * (double)x[j + l];
  }
}

template <class T>
void dw_backward_weight_grid(T* dw, const T* dy, const T* x, const ConvGeom& g) {
  const int64_t m = g.O / g.C, ohw = g.OH * g.OW, hw = g.H * g.W, taps = g.KH * g.KW;
  const DwGrid gr = input_grid(g);
  const int64_t Qr = (gr.Q + kLanes - 1) / kLanes * kLanes;
  auto run = taps == 9 ? &wgrad_lanes_fixed<9, T> : &wgrad_lanes_any<T>;
  // One output channel per task, images in order: the sums never depend on the thread count.
  parallel_for(g.O, g.N * ohw * taps, [&](int64_t o0, int64_t o1) {
    // xp: slack for the reads past Q up to Qr; dyg: dy on the grid, zero past OW and past Q.
    std::vector<T> xp((size_t)(gr.size + Qr - gr.Q), T(0)), dyg((size_t)Qr, T(0));
    std::vector<double> s((size_t)(taps * kLanes));
    auto* lanes = reinterpret_cast<double (*)[kLanes]>(s.data());
    for (int64_t o = o0; o < o1; ++o) {
      std::fill(s.begin(), s.end(), 0.0);
      for (int64_t n = 0; n < g.N; ++n) {
        gr.fill(xp.data(), x + (n * g.C + o / m) * hw);
        const T* dyp = dy + (n * g.O + o) * ohw;
        for (int64_t oh = 0; oh < g.OH; ++oh)  // columns past OW stay zero: they add nothing
          std::copy(dyp + oh * g.OW, dyp + (oh + 1) * g.OW, dyg.data() + oh * gr.Wq);
        run(lanes, dyg.data(), xp.data(), gr.tap.data(), taps, Qr);
      }
      for (int64_t t = 0; t < taps; ++t) dw[o * taps + t] = (T)lanes_total(lanes[t]);
    }
  });
}

}  // namespace

// y (N,O,OH,OW), x (N,C,H,W), w (O,1,KH,KW), b (O) or null. One (n, o) plane per task.
template <class T>
void depthwise_conv2d_forward_cpu(T* y, const T* x, const T* w, const T* b, const ConvGeom& g,
                                  const ConvEpilogue<T>* ep) {
  if constexpr (std::is_same_v<T, float>)
    if (dw_lanes_preferred(g)) return dw_lanes_forward(y, x, w, b, g, ep);
  dw_forward_grid(y, x, w, b, g, ep);
}

// dx (N,C,H,W) from dy (N,O,OH,OW): one input plane per task sums its m output planes' parts, so
// no two tasks write the same element and the order of the additions is fixed.
template <class T>
void depthwise_conv2d_backward_data_cpu(T* dx, const T* dy, const T* w, const ConvGeom& g) {
  if constexpr (std::is_same_v<T, float>)
    if (dw_lanes_preferred(g)) return dw_lanes_backward_data(dx, dy, w, g);
  if (dw_data_gathers(g)) return dw_backward_data_gather(dx, dy, w, g);
  dw_backward_data_scatter(dx, dy, w, g);
}

// dw (O,1,KH,KW): one output channel per task sums over the whole batch in a fixed order (images,
// then taps), so the result does not depend on the thread count at all.
template <class T>
void depthwise_conv2d_backward_weight_cpu(T* dw, const T* dy, const T* x, const ConvGeom& g) {
  if constexpr (std::is_same_v<T, float>)
    if (dw_lanes_preferred(g)) return dw_lanes_backward_weight(dw, dy, x, g);
  dw_backward_weight_grid(dw, dy, x, g);
}

#define LB_DW_INSTANTIATE(T)                                                                          \
  template void depthwise_conv2d_forward_cpu<T>(T*, const T*, const T*, const T*, const ConvGeom&, \
                                                const ConvEpilogue<T>*);                          \
  template void depthwise_conv2d_backward_data_cpu<T>(T*, const T*, const T*, const ConvGeom&);     \
  template void depthwise_conv2d_backward_weight_cpu<T>(T*, const T*, const T*, const ConvGeom&);
LB_DW_INSTANTIATE(float)
LB_DW_INSTANTIATE(double)

}  // namespace lowbit
