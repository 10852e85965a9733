// Pooling kernels (see pool_kernels.h for the semantics). Each task owns whole (n, c) planes of
// the output and of the input gradient, so the backward scatters need no atomics and add in a
// fixed order whatever the thread count.
#include "core/cpu/pool_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/parallel.h"

namespace lowbit {

int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p) {
  const int64_t num = in + 2 * p - k;
  if (num < 0 || s <= 0) return 0;
  return num / s + 1;
}

template <class T>
void max_pool2d_forward_cpu(T* y, int32_t* idx, const T* x, const PoolGeom& g) {
  const int64_t hw = g.H * g.W, ohw = g.OH * g.OW;
  parallel_for(g.N * g.C, ohw * g.KH * g.KW, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const T* xp = x + p * hw;
      for (int64_t oh = 0; oh < g.OH; ++oh)
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
          const int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + g.KH, g.H);
          const int64_t ws = std::max<int64_t>(w0, 0), we = std::min(w0 + g.KW, g.W);
          // Padding is -inf, so only in-image elements compete; '>' keeps the first maximum.
          T best = -std::numeric_limits<T>::infinity();
          int64_t bi = -1;
          for (int64_t ih = hs; ih < he; ++ih)
            for (int64_t iw = ws; iw < we; ++iw) {
              const T v = xp[ih * g.W + iw];
              // The first NaN wins and propagates, as in PyTorch (nothing compares > NaN).
              if (bi < 0 || v > best || (std::isnan(v) && !std::isnan(best))) {
                best = v;
                bi = ih * g.W + iw;
              }
            }
          y[p * ohw + oh * g.OW + ow] = best;
          idx[p * ohw + oh * g.OW + ow] = (int32_t)bi;
        }
    }
  });
}

template <class T>
void max_pool2d_backward_cpu(T* dx, const T* dy, const int32_t* idx, const PoolGeom& g) {
  const int64_t hw = g.H * g.W, ohw = g.OH * g.OW;
  parallel_for(g.N * g.C, ohw + hw, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      T* dxp = dx + p * hw;
      std::fill(dxp, dxp + hw, T(0));
      for (int64_t i = 0; i < ohw; ++i)
        if (idx[p * ohw + i] >= 0) dxp[idx[p * ohw + i]] += dy[p * ohw + i];
    }
  });
}

namespace {
// PyTorch's average-pool window: the divisor counts the padded window (clipped at H + p) when
// count_include_pad, else only the in-image elements; [hs, he) x [ws, we) is the in-image part.
struct AvgWindow {
  int64_t hs, he, ws, we;
  double div;
};
inline AvgWindow avg_window(const PoolGeom& g, int64_t oh, int64_t ow, bool include_pad) {
  AvgWindow a;
  int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
  int64_t h1 = std::min(h0 + g.KH, g.H + g.ph), w1 = std::min(w0 + g.KW, g.W + g.pw);
  const int64_t padded = (h1 - h0) * (w1 - w0);
  a.hs = std::max<int64_t>(h0, 0), a.ws = std::max<int64_t>(w0, 0);
  a.he = std::min(h1, g.H), a.we = std::min(w1, g.W);
  a.div = (double)(include_pad ? padded : (a.he - a.hs) * (a.we - a.ws));
  return a;
}
// A 1x1 window without padding: each output is one input element (x / 1 is x exactly).
bool one_by_one(const PoolGeom& g) { return g.KH == 1 && g.KW == 1 && g.ph == 0 && g.pw == 0; }
}  // namespace

template <class T>
void avg_pool2d_forward_cpu(T* y, const T* x, const PoolGeom& g, bool include_pad) {
  const int64_t hw = g.H * g.W, ohw = g.OH * g.OW;
  if (one_by_one(g)) {  // a strided subsample (ResNet's option-A shortcut): plain copies
    parallel_for(g.N * g.C, ohw, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const T* xr = x + p * hw + oh * g.sh * g.W;
          T* yr = y + p * ohw + oh * g.OW;
          for (int64_t ow = 0; ow < g.OW; ++ow) yr[ow] = xr[ow * g.sw];
        }
    });
    return;
  }
  parallel_for(g.N * g.C, ohw * g.KH * g.KW, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const T* xp = x + p * hw;
      for (int64_t oh = 0; oh < g.OH; ++oh)
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const AvgWindow a = avg_window(g, oh, ow, include_pad);
          T s = 0;
          for (int64_t ih = a.hs; ih < a.he; ++ih)
            for (int64_t iw = a.ws; iw < a.we; ++iw) s += xp[ih * g.W + iw];
          y[p * ohw + oh * g.OW + ow] = s / (T)a.div;
        }
    }
  });
}

template <class T>
void avg_pool2d_backward_cpu(T* dx, const T* dy, const PoolGeom& g, bool include_pad) {
  const int64_t hw = g.H * g.W, ohw = g.OH * g.OW;
  if (one_by_one(g)) {
    parallel_for(g.N * g.C, hw, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        T* dxp = dx + p * hw;
        std::fill(dxp, dxp + hw, T(0));
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const T* dyr = dy + p * ohw + oh * g.OW;
          T* dxr = dxp + oh * g.sh * g.W;
          for (int64_t ow = 0; ow < g.OW; ++ow) dxr[ow * g.sw] = dyr[ow];
        }
      }
    });
    return;
  }
  parallel_for(g.N * g.C, ohw * g.KH * g.KW + hw, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      T* dxp = dx + p * hw;
      std::fill(dxp, dxp + hw, T(0));
      for (int64_t oh = 0; oh < g.OH; ++oh)
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const AvgWindow a = avg_window(g, oh, ow, include_pad);
          const T v = dy[p * ohw + oh * g.OW + ow] / (T)a.div;
          for (int64_t ih = a.hs; ih < a.he; ++ih)
            for (int64_t iw = a.ws; iw < a.we; ++iw) dxp[ih * g.W + iw] += v;
        }
    }
  });
}

namespace {
// Bin i of `out` over `in` elements: [floor(i*in/out), ceil((i+1)*in/out)).
inline int64_t bin_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
inline int64_t bin_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }
}  // namespace

template <class T>
void adaptive_avg_pool2d_forward_cpu(T* y, const T* x, const PoolGeom& g) {
  const int64_t hw = g.H * g.W, ohw = g.OH * g.OW;
  parallel_for(g.N * g.C, hw + ohw, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const T* xp = x + p * hw;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const int64_t hs = bin_start(oh, g.H, g.OH), he = bin_end(oh, g.H, g.OH);
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t ws = bin_start(ow, g.W, g.OW), we = bin_end(ow, g.W, g.OW);
          T s = 0;
          for (int64_t ih = hs; ih < he; ++ih)
            for (int64_t iw = ws; iw < we; ++iw) s += xp[ih * g.W + iw];
          y[p * ohw + oh * g.OW + ow] = s / (T)((he - hs) * (we - ws));
        }
      }
    }
  });
}

template <class T>
void adaptive_avg_pool2d_backward_cpu(T* dx, const T* dy, const PoolGeom& g) {
  const int64_t hw = g.H * g.W, ohw = g.OH * g.OW;
  parallel_for(g.N * g.C, hw + ohw, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      T* dxp = dx + p * hw;
      std::fill(dxp, dxp + hw, T(0));
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const int64_t hs = bin_start(oh, g.H, g.OH), he = bin_end(oh, g.H, g.OH);
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t ws = bin_start(ow, g.W, g.OW), we = bin_end(ow, g.W, g.OW);
          const T v = dy[p * ohw + oh * g.OW + ow] / (T)((he - hs) * (we - ws));
          for (int64_t ih = hs; ih < he; ++ih)
            for (int64_t iw = ws; iw < we; ++iw) dxp[ih * g.W + iw] += v;
        }
      }
    }
  });
}

#define LB_POOL_INSTANTIATE(T)                                                                  \
  template void max_pool2d_forward_cpu<T>(T*, int32_t*, const T*, const PoolGeom&);            \
  template void max_pool2d_backward_cpu<T>(T*, const T*, const int32_t*, const PoolGeom&);     \
  template void avg_pool2d_forward_cpu<T>(T*, const T*, const PoolGeom&, bool);                \
  template void avg_pool2d_backward_cpu<T>(T*, const T*, const PoolGeom&, bool);               \
  template void adaptive_avg_pool2d_forward_cpu<T>(T*, const T*, const PoolGeom&);             \
  template void adaptive_avg_pool2d_backward_cpu<T>(T*, const T*, const PoolGeom&);
LB_POOL_INSTANTIATE(float)
LB_POOL_INSTANTIATE(double)

}  // namespace lowbit
