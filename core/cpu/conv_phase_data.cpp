// The data gradient of a strided convolution as stride-1 convolutions of dy, one per phase of dx
// (conv_direct.h says when).
//
// Why: with stride s the data gradient is no convolution of dy (its taps skip), so it ran on
// im2col + GEMM: a column gradient KH*KW times dx's size, then col2im adding it back. ResNet-20's
// two stride-2 layers took 4.0 and 3.2 ms a step there (75 and 94 GFLOP/s, 2 threads), two to
// three times their forward. Split by phase it is a convolution again: row h = s*i + a of dx gets
// dy row oh through tap kh where h = s*oh - ph + kh, that is kh = a + ph (mod s) and oh = i + d
// with d = (a + ph - kh) / s. Taken in order of d, the taps of phase a are a stride-1 correlation
// of dy with kernel rows kh_max, kh_max - s, ... (Ka of them, from d_min = d(kh_max) up):
//   dx[c][s*i + a][s*j + b] = sum_{o, m < Ka, n < Kb} dy[o][i + dmin_a + m][j + dmin_b + n]
//                                                     * w[o][c][khmax_a - s*m][kwmax_b - s*n].
// Each phase runs on the direct kernels (plan_direct / direct_image) with dy as the input and the
// picked taps as a (C, O, Ka, Kb) weight, padded so that every wanted output lies in its result
// (an extra row or column where Ka or Kb is even); the phases' results for one image are then
// interleaved into dx while they are in cache. For 3x3 stride 2 the phases have 1x1, 1x2, 2x1
// and 2x2 taps: the 9 of the layer, no zero products. Each dx element is summed in one fixed
// order (the direct kernels'): the bits do not
// depend on the thread count.
#include <algorithm>
#include <vector>

#include "core/cpu/conv_direct.h"
#include "core/cpu/conv_util.h"
#include "core/cpu/simd.h"
#include "core/error.h"
#include "core/parallel.h"

namespace lowbit {

namespace {

// One dimension of one phase: which taps, where its sub-convolution's result sits.
struct PhaseDim {
  int64_t taps = 0;   // Ka: 0 when no tap reaches this phase (then it gets no gradient)
  int64_t kmax = 0;   // the largest tap index kh of the phase; tap m is kmax - s*m
  int64_t pad = 0;    // the sub-convolution's padding
  int64_t out = 0;    // its output size
  int64_t off = 0;    // dx phase index i is its output i + off
  int64_t count = 0;  // rows (columns) of dx in this phase
};

PhaseDim phase_dim(int64_t a, int64_t s, int64_t k, int64_t p, int64_t in, int64_t out) {
  PhaseDim d;
  d.count = a < in ? (in - a + s - 1) / s : 0;
  for (int64_t kh = k - 1; kh >= 0; --kh)
    if (((a + p - kh) % s + s) % s == 0) {
      if (d.taps == 0) d.kmax = kh;
      ++d.taps;
    }
  if (d.taps == 0 || d.count == 0) return d;
  // (a + p - kmax) is a multiple of s; it may be negative, so divide exactly.
  const int64_t dmin = (a + p - d.kmax) / s;
  d.pad = std::max<int64_t>({0, -dmin, d.count - 1 + dmin - out + d.taps});
  d.out = out + 2 * d.pad - d.taps + 1;
  d.off = dmin + d.pad;
  return d;
}

// dst[s*j + b] (+)= src[b][j] for j < n, b < s, where src[b] == nullptr stands for zeros (a
// phase no tap reaches, as the odd rows and columns of a 1x1 stride-2 layer).
template <bool Acc>
void interleave_row(float* dst, const float* const* src, int64_t s, int64_t n, int64_t width) {
  int64_t j = 0;
#if LB_SIMD == 512
  if (s == 2) {
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ih = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (; j + 16 <= n && 2 * j + 32 <= width; j += 16) {
      const __m512 a = src[0] ? _mm512_loadu_ps(src[0] + j) : _mm512_setzero_ps();
      const __m512 b = src[1] ? _mm512_loadu_ps(src[1] + j) : _mm512_setzero_ps();
      __m512 lo = _mm512_permutex2var_ps(a, il, b), hi = _mm512_permutex2var_ps(a, ih, b);
      if (Acc) {
        lo = _mm512_add_ps(_mm512_loadu_ps(dst + 2 * j), lo);
        hi = _mm512_add_ps(_mm512_loadu_ps(dst + 2 * j + 16), hi);
      }
      _mm512_storeu_ps(dst + 2 * j, lo);
      _mm512_storeu_ps(dst + 2 * j + 16, hi);
    }
  }
#endif
  for (; j < n; ++j)
    for (int64_t b = 0; b < s && s * j + b < width; ++b) {
      const float v = src[b] ? src[b][j] : 0.0f;
      float& d = dst[s * j + b];
      d = Acc ? d + v : v;
    }
}

}  // namespace

bool conv_phase_data_supported(const ConvGeom& g) {
  return conv_direct_supported(g) && (g.sh > 1 || g.sw > 1) && g.dh == 1 && g.dw == 1 &&
         g.groups == 1;
}

// Measured with bench-ops (docs/perf.md): where the phases' outputs are at least 8x8, as for the
// direct kernels themselves (below that their thrown-away columns cost more than im2col saves).
bool conv_phase_data_preferred(const ConvGeom& g) {
  return conv_phase_data_supported(g) && (g.H / g.sh) * (g.W / g.sw) >= 64;
}

void conv2d_backward_data_phases(float* dx, const float* dy, const float* w, const ConvGeom& g,
                                 bool accumulate) {
  LB_CHECK(conv_phase_data_supported(g), "conv2d_backward_data_phases: not a strided convolution "
           "with one group and no dilation (", g.C, "->", g.O, ", ", g.KH, "x", g.KW, " stride ",
           g.sh, "x", g.sw, ", groups ", g.groups, ")");
  const int64_t sh = g.sh, sw = g.sw, phases = sh * sw;
  std::vector<PhaseDim> rows(sh), cols(sw);
  for (int64_t a = 0; a < sh; ++a) rows[a] = phase_dim(a, sh, g.KH, g.ph, g.H, g.OH);
  for (int64_t b = 0; b < sw; ++b) cols[b] = phase_dim(b, sw, g.KW, g.pw, g.W, g.OW);
  // Per live phase: its sub-convolution (dy as the input, dx's channels as the outputs) planned
  // once, and where its result for one image, (C, rows.out, cols.out), lies in a thread's buffer.
  std::vector<DirectPlanPtr> plans((size_t)phases);
  std::vector<int64_t> at(phases + 1, 0);
  int64_t cost = 0;
  for (int64_t p = 0; p < phases; ++p) {
    const PhaseDim &r = rows[p / sw], &c = cols[p % sw];
    at[p + 1] = at[p];
    if (!(r.taps && c.taps && r.count && c.count)) continue;
    ConvGeom s = g;
    s.N = 1, s.C = g.O, s.H = g.OH, s.W = g.OW, s.O = g.C;
    s.KH = r.taps, s.KW = c.taps, s.sh = s.sw = 1, s.ph = r.pad, s.pw = c.pad;
    s.OH = r.out, s.OW = c.out;
    std::vector<float> wp((size_t)(g.C * g.O * r.taps * c.taps));
    for (int64_t ci = 0; ci < g.C; ++ci)
      for (int64_t o = 0; o < g.O; ++o)
        for (int64_t m = 0; m < r.taps; ++m)
          for (int64_t n = 0; n < c.taps; ++n)
            wp[(size_t)(((ci * g.O + o) * r.taps + m) * c.taps + n)] =
                w[((o * g.C + ci) * g.KH + (r.kmax - sh * m)) * g.KW + (c.kmax - sw * n)];
    plans[(size_t)p] = plan_direct(wp.data(), s);
    at[p + 1] += g.C * r.out * c.out;
    cost += g.C * g.O * r.taps * c.taps * r.out * c.out;
  }
  // An image at a time: its phases into a buffer that stays in cache, then interleaved into dx
  // at once (all phases of all images first wrote and read back a buffer of dx's size, and each
  // phase's planes were filled in a pass of their own).
  conv_for_image_chunks(g.N, cost, [&](int64_t, int64_t n0, int64_t n1) {
    std::vector<DirectImageBuffers> bufs;
    for (int64_t p = 0; p < phases; ++p)
      bufs.emplace_back(plans[(size_t)p] ? DirectImageBuffers(*plans[(size_t)p])
                                         : DirectImageBuffers());
    std::vector<float> res((size_t)std::max<int64_t>(1, at[phases]));
    std::vector<const float*> src((size_t)sw);
    for (int64_t n = n0; n < n1; ++n) {
      const float* dyn = dy + n * g.O * g.OH * g.OW;
      for (int64_t p = 0; p < phases; ++p)
        if (plans[(size_t)p])
          direct_image(*plans[(size_t)p], res.data() + at[p], dyn, nullptr, 0, nullptr,
                       bufs[(size_t)p]);
      // Row h = sh*i + a of each channel plane from the phases (a, b).
      for (int64_t ci = 0; ci < g.C; ++ci)
        for (int64_t h = 0; h < g.H; ++h) {
          const int64_t a = h % sh, i = h / sh;
          for (int64_t b = 0; b < sw; ++b) {
            const int64_t p = a * sw + b;
            const PhaseDim &r = rows[a], &c = cols[b];
            src[b] = plans[(size_t)p]
                         ? res.data() + at[p] + (ci * r.out + i + r.off) * c.out + c.off
                         : nullptr;
          }
          float* dst = dx + ((n * g.C + ci) * g.H + h) * g.W;
          if (accumulate)
            interleave_row<true>(dst, src.data(), sw, cols[0].count, g.W);
          else
            interleave_row<false>(dst, src.data(), sw, cols[0].count, g.W);
        }
    }
  });
}

}  // namespace lowbit
