// Depthwise convolutions with one filter per channel (O = C = groups), float32, AVX-512: sixteen
// channels in the vector lanes (conv_depthwise_lanes.h).
//
// Why: the plane kernels (conv_depthwise_kernels.cpp) work one (image, channel) plane at a time,
// and at ShuffleNetV2's 8x8 and 4x4 planes a plane is 64 or 16 outputs, 36 or 9 vector
// multiply-adds, so the copies in and out and the loop set-up around them cost several times the
// arithmetic (5-40 GFLOP/s). Here a task takes sixteen channels of one image and transposes them
// so that each position's sixteen values are one vector (core/cpu/transpose.h). A tap is then one
// multiply-add per output position, whatever the plane size, on a copy of the plane with a zero
// border (so no tap needs a bounds check).
//
// The sums run in the plane kernels' order (forward: taps in (kh, kw) order from the bias, the
// zero border included; data gradient at stride 1: the flipped taps from zero; at other strides:
// each input's taps in (kh, kw) order from zero, as the plane kernels' scatter adds them), but
// each tap is one fused multiply-add where they round the product and the sum separately: the
// values agree to float rounding, not bit for bit. The weight gradient sums each image's
// positions in float and the images in order in double, so its bits depend on neither the
// thread count nor the schedule.
#include "core/cpu/conv_depthwise_lanes.h"

#include <algorithm>
#include <vector>

#include "core/cpu/conv_util.h"
#include "core/cpu/simd.h"
#include "core/cpu/transpose.h"
#include "core/error.h"

namespace lowbit {

bool& dw_lanes_off() {
  static bool off = false;
  return off;
}

bool dw_lanes_preferred(const ConvGeom& g) { return !dw_lanes_off() && dw_lanes_supported(g); }

#if LB_SIMD != 512

bool dw_lanes_supported(const ConvGeom&) { return false; }
void dw_lanes_forward(float*, const float*, const float*, const float*, const ConvGeom&,
                      const ConvEpilogue<float>*) {
  LB_FAIL("depthwise conv2d (channels in lanes): needs a build with AVX-512");
}
void dw_lanes_backward_data(float*, const float*, const float*, const ConvGeom&) {
  LB_FAIL("depthwise conv2d (channels in lanes): needs a build with AVX-512");
}
void dw_lanes_backward_weight(float*, const float*, const float*, const ConvGeom&) {
  LB_FAIL("depthwise conv2d (channels in lanes): needs a build with AVX-512");
}

#else

namespace {

using V = Simd::V;
constexpr int64_t L = Simd::kWidth;  // channels per task
constexpr int64_t kMaxTaps = 25;     // the weight gradient keeps one vector per tap

int64_t blocks(const ConvGeom& g) { return (g.C + L - 1) / L; }

// The weights (C, 1, KH, KW) tap-major per block of L channels: block c0 / L holds w[c0 + l][t]
// at (c0 / L) * taps * L + t * L + l, zero past the last channel; flip: the taps in reverse order
// (the data gradient at stride 1).
std::vector<float> lane_weights(const float* w, const ConvGeom& g, bool flip) {
  const int64_t taps = g.KH * g.KW;
  std::vector<float> wt((size_t)(blocks(g) * taps * L), 0.0f);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t t = 0; t < taps; ++t)
      wt[(size_t)((c / L * taps + (flip ? taps - 1 - t : t)) * L + c % L)] = w[c * taps + t];
  return wt;
}

// A plane of h x w positions inside a zero border of ph rows and pw columns, 16 channels per
// position: the layout all three kernels compute on, so that no tap needs a bounds check.
struct Padded {
  int64_t h, w, ph, pw, Hp, Wp;
  Padded(int64_t h_, int64_t w_, int64_t ph_, int64_t pw_, int64_t extra_h, int64_t extra_w)
      : h(h_), w(w_), ph(ph_), pw(pw_), Hp(h_ + 2 * ph_ + extra_h), Wp(w_ + 2 * pw_ + extra_w) {}
  int64_t floats() const { return Hp * Wp * L; }
  float* at(float* p, int64_t i, int64_t j) const { return p + ((i + ph) * Wp + j + pw) * L; }
};

// Fills the interior of pd's buffer p with channels [c0, c0 + nc) of one image's (C, h*w) planes
// src (lanes past nc keep what they held: they are computed and never stored). Rows of whole
// 16-position blocks are transposed straight into place; narrower ones through tmp (h*w*L).
void fill(float* p, const Padded& pd, const float* src, int64_t nc, float* tmp) {
  const int64_t hw = pd.h * pd.w;
  if (pd.w % 16 == 0) {
    for (int64_t i = 0; i < pd.h; ++i) transpose(pd.at(p, i, 0), L, src + i * pd.w, hw, nc, pd.w);
    return;
  }
  transpose(tmp, L, src, hw, nc, hw);
  for (int64_t i = 0; i < pd.h; ++i)
    std::copy(tmp + i * pd.w * L, tmp + (i + 1) * pd.w * L, pd.at(p, i, 0));
}

// out[(i * ow + j) * L ..] = init + sum over taps t (in order) of wt[t] * in[(i*sh*Wp + j*sw)*L +
// off[t]], i < oh, j < ow: a convolution of a padded buffer, K taps fixed at compile time (their
// weights then stay in registers) or K = 0 for any number.
template <int K>
void conv_lanes(float* out, int64_t oh, int64_t ow, const float* in, int64_t Wp, int64_t sh,
                int64_t sw, const int64_t* off, const float* wt, int64_t taps, V init) {
  V wv[K > 0 ? K : 1];
  int64_t o[K > 0 ? K : 1];
  if constexpr (K > 0)
    for (int t = 0; t < K; ++t) wv[t] = Simd::load(wt + t * L), o[t] = off[t];
  for (int64_t i = 0; i < oh; ++i)
    for (int64_t j = 0; j < ow; ++j) {
      const float* base = in + (i * sh * Wp + j * sw) * L;
      V acc = init;
      if constexpr (K > 0) {
#pragma GCC unroll 25
        for (int t = 0; t < K; ++t) acc = Simd::fma(wv[t], Simd::load(base + o[t]), acc);
      } else {
        for (int64_t t = 0; t < taps; ++t)
          acc = Simd::fma(Simd::load(wt + t * L), Simd::load(base + off[t]), acc);
      }
      Simd::store(out + (i * ow + j) * L, acc);
    }
}

void conv_lanes_any(float* out, int64_t oh, int64_t ow, const float* in, int64_t Wp, int64_t sh,
                    int64_t sw, const int64_t* off, const float* wt, int64_t taps, V init) {
  if (taps == 9) return conv_lanes<9>(out, oh, ow, in, Wp, sh, sw, off, wt, taps, init);
  conv_lanes<0>(out, oh, ow, in, Wp, sh, sw, off, wt, taps, init);
}

// Offsets of the taps (kh, kw) in a padded buffer of row width Wp, in (kh, kw) order.
std::vector<int64_t> tap_offsets(const ConvGeom& g, int64_t Wp) {
  std::vector<int64_t> off;
  for (int64_t kh = 0; kh < g.KH; ++kh)
    for (int64_t kw = 0; kw < g.KW; ++kw) off.push_back((kh * g.dh * Wp + kw * g.dw) * L);
  return off;
}

// x's plane with its padding, which the forward and the weight gradient read: the last output's
// farthest tap is padded row (OH - 1)*sh + (KH - 1)*dh, inside H + 2*ph when OH is the
// convolution's output size (columns likewise), so no slack is needed past the border.
Padded input_plane(const ConvGeom& g) {
  LB_CHECK((g.OH - 1) * g.sh + (g.KH - 1) * g.dh < g.H + 2 * g.ph &&
               (g.OW - 1) * g.sw + (g.KW - 1) * g.dw < g.W + 2 * g.pw,
           "depthwise conv2d: output ", g.OH, "x", g.OW, " reaches past the padded ", g.H, "x",
           g.W, " input");
  return Padded(g.H, g.W, g.ph, g.pw, 0, 0);
}

// Runs fn(n, c0, nc, padded, out) for every task (image n, channels [c0, c0 + nc), 16 at a time)
// over the threads: `padded` holds those channels of image n of `in` ((N, C, pd.h * pd.w)) in
// pd's layout, its border zero; `out` is the task's out_floats of scratch.
template <class F>
void for_channel_blocks(const ConvGeom& g, const Padded& pd, uint64_t layout, const float* in,
                        int64_t out_floats, int64_t cost, F&& fn) {
  const int64_t nb = blocks(g), in_hw = pd.h * pd.w;
  parallel_for(g.N * nb, cost, [&](int64_t t0, int64_t t1) {
    float* padded = thread_scratch(kScratchDwIn, (size_t)pd.floats(), layout);  // border zero
    float* tmp = thread_scratch(kScratchDwTmp, (size_t)(in_hw * L));
    float* out = thread_scratch(kScratchDwOut, (size_t)out_floats);
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t n = task / nb, c0 = task % nb * L, nc = std::min(L, g.C - c0);
      fill(padded, pd, in + (n * g.C + c0) * in_hw, nc, tmp);
      fn(n, c0, nc, padded, out);
    }
  });
}

}  // namespace

bool dw_lanes_supported(const ConvGeom& g) {
  return g.groups == g.C && g.O == g.C && g.KH * g.KW <= kMaxTaps;
}

void dw_lanes_forward(float* y, const float* x, const float* w, const float* b, const ConvGeom& g,
                      const ConvEpilogue<float>* ep) {
  LB_CHECK(dw_lanes_supported(g), "depthwise conv2d (channels in lanes): needs O = C = groups");
  const int64_t ohw = g.OH * g.OW, taps = g.KH * g.KW;
  const Padded pd = input_plane(g);
  const std::vector<int64_t> off = tap_offsets(g, pd.Wp);
  const std::vector<float> wts = lane_weights(w, g, false);
  std::vector<float> bias((size_t)(blocks(g) * L), 0.0f);
  if (b) std::copy(b, b + g.C, bias.begin());
  const uint64_t layout = scratch_layout({31, pd.Hp, pd.Wp, g.ph, g.pw});
  for_channel_blocks(g, pd, layout, x, ohw * L, ohw * taps * L,
                     [&](int64_t n, int64_t c0, int64_t nc, const float* xp, float* yh) {
    conv_lanes_any(yh, g.OH, g.OW, xp, pd.Wp, g.sh, g.sw, off.data(), wts.data() + c0 * taps,
                   taps, Simd::load(bias.data() + c0));
    float* yn = y + (n * g.C + c0) * ohw;
    transpose(yn, ohw, yh, L, ohw, nc);
    for (int64_t l = 0; l < nc; ++l) conv_epilogue_plane(yn + l * ohw, ohw, ep, n, c0 + l, g.O);
  });
}

namespace {

// The data gradient at stride s > 1 as a gather. Input row ih receives kernel row k from output
// row (ih + p - k*d) / s where that divides, so the rows fall into s classes by ih mod s, each
// with a fixed set of kernel rows; in class i, row ih = i + s*q reads output row q + e_k,
// e_k = (i + p - k*d) / s. Same across. A class pair (row class, column class) is then a fixed
// list of taps at fixed offsets from (q, r) in dy padded by `lo` rows (columns) before and `hi`
// after, where the reads past dy find zeros.
struct StrideClasses {
  int64_t lo = 0, hi = 0;
  std::vector<std::vector<std::pair<int64_t, int64_t>>> taps;  // per class: (k, e_k), k ascending
  StrideClasses(int64_t in, int64_t out, int64_t s, int64_t p, int64_t k, int64_t d) {
    taps.resize((size_t)s);
    for (int64_t i = 0; i < s; ++i)
      for (int64_t kk = 0; kk < k; ++kk) {
        const int64_t num = i + p - kk * d;
        if (((num % s) + s) % s != 0) continue;
        const int64_t e = num / s;  // exact
        taps[(size_t)i].push_back({kk, e});
        lo = std::max(lo, -e);                                  // q = 0 reads row e
        hi = std::max(hi, (in - 1 - i) / s + e - (out - 1));    // the class's last q
      }
  }
};

// dx at the positions (i + sh*q, j + sw*r) of one class pair: the sum of its taps, (weight index,
// offset from (q, r) in the padded dy) in order.
void gather_class(float* __restrict dxh, const ConvGeom& g, int64_t i, int64_t j,
                  const float* __restrict dyp, int64_t Wp, const float* __restrict wt,
                  const std::vector<std::pair<int64_t, int64_t>>& taps) {
  int64_t k[kMaxTaps], o[kMaxTaps];
  const int64_t nt = (int64_t)taps.size();
  for (int64_t u = 0; u < nt; ++u) k[u] = taps[(size_t)u].first * L, o[u] = taps[(size_t)u].second;
  for (int64_t ih = i, q = 0; ih < g.H; ih += g.sh, ++q)
    for (int64_t iw = j, r = 0; iw < g.W; iw += g.sw, ++r) {
      const float* base = dyp + (q * Wp + r) * L;
      V acc = Simd::zero();
      for (int64_t u = 0; u < nt; ++u) acc = Simd::fma(Simd::load(wt + k[u]), Simd::load(base + o[u]), acc);
      Simd::store(dxh + (ih * g.W + iw) * L, acc);
    }
}

}  // namespace

void dw_lanes_backward_data(float* dx, const float* dy, const float* w, const ConvGeom& g) {
  LB_CHECK(dw_lanes_supported(g), "depthwise conv2d (channels in lanes): needs O = C = groups");
  const int64_t hw = g.H * g.W, ohw = g.OH * g.OW, taps = g.KH * g.KW;
  // Stride 1 with padding at most the kernel's reach: dx is the forward of dy padded by
  // d*(k-1) - p with the taps flipped. Otherwise a gather by stride classes (StrideClasses).
  const bool flipped = g.sh == 1 && g.sw == 1 && g.ph <= g.dh * (g.KH - 1) && g.pw <= g.dw * (g.KW - 1);
  const StrideClasses rc(g.H, g.OH, g.sh, g.ph, g.KH, g.dh), cc(g.W, g.OW, g.sw, g.pw, g.KW, g.dw);
  const Padded pdy = flipped ? Padded(g.OH, g.OW, g.dh * (g.KH - 1) - g.ph, g.dw * (g.KW - 1) - g.pw, 0, 0)
                             : Padded(g.OH, g.OW, rc.lo, cc.lo, std::max<int64_t>(0, rc.hi - rc.lo),
                                      std::max<int64_t>(0, cc.hi - cc.lo));
  const std::vector<int64_t> off = tap_offsets(g, pdy.Wp);
  const std::vector<float> wts = lane_weights(w, g, flipped);
  // Per class pair, its taps: (weight index, offset in the padded dy from (q, r)).
  std::vector<std::vector<std::pair<int64_t, int64_t>>> cls;
  for (int64_t i = 0; !flipped && i < g.sh; ++i)
    for (int64_t j = 0; j < g.sw; ++j) {
      std::vector<std::pair<int64_t, int64_t>> t;
      for (const auto& [kh, eh] : rc.taps[(size_t)i])
        for (const auto& [kw, ew] : cc.taps[(size_t)j])
          t.push_back({kh * g.KW + kw, ((eh + rc.lo) * pdy.Wp + ew + cc.lo) * L});
      cls.push_back(std::move(t));
    }
  const uint64_t layout = scratch_layout({32, pdy.Hp, pdy.Wp, pdy.ph, pdy.pw});
  for_channel_blocks(g, pdy, layout, dy, hw * L, ohw * taps * L,
                     [&](int64_t n, int64_t c0, int64_t nc, const float* dyp, float* dxh) {
    const float* wt = wts.data() + c0 * taps;
    if (flipped) {
      conv_lanes_any(dxh, g.H, g.W, dyp, pdy.Wp, 1, 1, off.data(), wt, taps, Simd::zero());
    } else {
      for (int64_t i = 0; i < g.sh; ++i)
        for (int64_t j = 0; j < g.sw; ++j)
          gather_class(dxh, g, i, j, dyp, pdy.Wp, wt, cls[(size_t)(i * g.sw + j)]);
    }
    transpose(dx + (n * g.C + c0) * hw, hw, dxh, L, hw, nc);
  });
}

void dw_lanes_backward_weight(float* dw, const float* dy, const float* x, const ConvGeom& g) {
  LB_CHECK(dw_lanes_supported(g), "depthwise conv2d (channels in lanes): needs O = C = groups");
  const int64_t hw = g.H * g.W, ohw = g.OH * g.OW, taps = g.KH * g.KW, nb = blocks(g);
  const Padded pd = input_plane(g);
  const std::vector<int64_t> off = tap_offsets(g, pd.Wp);
  const uint64_t layout = scratch_layout({33, pd.Hp, pd.Wp, g.ph, g.pw});
  // One channel block per task, all images in order: the sums never depend on the thread count.
  parallel_for(nb, g.N * ohw * taps * L, [&](int64_t b0, int64_t b1) {
    float* xp = thread_scratch(kScratchDwIn, (size_t)pd.floats(), layout);  // border zero
    float* tmp = thread_scratch(kScratchDwTmp, (size_t)(hw * L));  // fill's
    float* dyh = thread_scratch(kScratchDwOut, (size_t)(ohw * L));
    for (int64_t cb = b0; cb < b1; ++cb) {
      const int64_t c0 = cb * L, nc = std::min(L, g.C - c0);
      double total[kMaxTaps][L] = {};
      for (int64_t n = 0; n < g.N; ++n) {
        fill(xp, pd, x + (n * g.C + c0) * hw, nc, tmp);
        transpose(dyh, L, dy + (n * g.C + c0) * ohw, ohw, nc, ohw);
        // This image's sums in float, taps x lanes (in registers for 3x3 kernels).
        V acc[kMaxTaps];
        for (int64_t t = 0; t < taps; ++t) acc[t] = Simd::zero();
        for (int64_t i = 0; i < g.OH; ++i)
          for (int64_t j = 0; j < g.OW; ++j) {
            const V d = Simd::load(dyh + (i * g.OW + j) * L);
            const float* base = xp + (i * g.sh * pd.Wp + j * g.sw) * L;
            if (taps == 9) {
#pragma GCC unroll 9
              for (int t = 0; t < 9; ++t) acc[t] = Simd::fma(d, Simd::load(base + off[(size_t)t]), acc[t]);
            } else {
              for (int64_t t = 0; t < taps; ++t)
                acc[t] = Simd::fma(d, Simd::load(base + off[(size_t)t]), acc[t]);
            }
          }
        alignas(64) float part[L];
        for (int64_t t = 0; t < taps; ++t) {
          Simd::store(part, acc[t]);
          for (int64_t l = 0; l < L; ++l) total[t][l] += (double)part[l];
        }
      }
      for (int64_t l = 0; l < nc; ++l)
        for (int64_t t = 0; t < taps; ++t) dw[(c0 + l) * taps + t] = (float)total[t][l];
    }
  });
}

#endif  // LB_SIMD == 512

}  // namespace lowbit
