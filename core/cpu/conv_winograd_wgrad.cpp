// Winograd weight gradient for 3x3 stride-1 convolutions (conv_winograd.h).
//
// Per output tile the weight gradient is a correlation of the input tile d with the r x r dy tile
// e, giving 3x3 taps: F(3x3, r x r), the transpose of the forward's F(r x r, 3x3),
//   dW_tile = G^T [ (A e A^T) (.) (B^T d B) ] G,
// with the forward's B^T (so the input transform is the forward's), A = (A^T)^T and G^T. For r = 2
// (WgradF2) d is 4x4 and there are 16 products per tile; for r = 4 (WgradF4, from 32x32 outputs
// up: conv_winograd_wgrad_tile_for) d is 6x6 and there are 36 products per 4x4 tile, 0.56x
// F(2x2)'s products and transformed values per output. Summed over tiles and images, the
// element-wise product becomes P products Mw_p[o][c] = sum_t E_p[o][t] * V_p[c][t] with a long
// sum over the tiles t: a dot product of two rows, vectorised along t (lanes hold partial sums)
// and reduced across the lanes once per pass.
#include <algorithm>
#include <vector>

#include "core/cpu/conv_util.h"
#include "core/cpu/conv_winograd.h"
#include "core/cpu/conv_winograd4_planes.h"
#include "core/error.h"

namespace lowbit {

#ifndef LB_SIMD

void conv2d_backward_weight_winograd(float*, const float*, const float*, const ConvGeom&) {
  LB_FAIL("conv2d_backward_weight_winograd: this build has no AVX2/FMA or AVX-512 kernels");
}

#else

namespace {

using namespace winograd;

constexpr int64_t kWgradPassBytes = 2 << 20;  // a pass's V and E: about this much

// Wgrad passes of algorithm A: as many tiles as kWgradPassBytes of F(3x3, 2x2)'s V and E would
// hold (at least one image), one block. F(3x3, 4x4)'s passes hold as many tiles as F(2x2)'s, so
// 36/16 times the bytes: each dot product reduces its lanes once a pass, and with passes of the
// same bytes (113 tiles at 64 channels) that reduction made ResNet-18's 64-channel 32x32 weight
// gradient slower than F(2x2)'s instead of faster (bench-ops, docs/perf.md).
template <class A>
Tiling make_wgrad_tiling(const ConvGeom& g, int64_t chunk_images) {
  Tiling t = base_tiling(g, A::R);
  const int64_t per_tile = 16 * (round_up(g.C, 4) + round_up(g.O, 4)) * (int64_t)sizeof(float);
  const int64_t tiles = std::max<int64_t>(1, kWgradPassBytes / per_tile);
  set_pass(t, std::max<int64_t>(1, std::min<int64_t>(chunk_images, tiles / t.tiles())));
  t.Tb = round_up(t.m * t.tiles(), W);
  t.ld = t.Tb + W;
  return t;
}

// F(3x3, 2x2): 2x2 dy tiles, 4x4 input tiles on 2x2 phase planes, 16 products.
struct WgradF2 {
  static constexpr int R = 2, P = 16;
  static void fill_planes(float* P, const float* x, int64_t im, const Tiling& t) {
    winograd::fill_planes(P, x, im, t);
  }
  static void input_transform(float* Vb, int64_t ps, const float* P, const BlockScan& scan,
                              const Tiling& t) {
    winograd::input_transform(Vb, ps, P, scan, t);
  }

  // dy of image slot im (O, OH, OW) onto compact phase planes: Pe[(o*4 + i*2 + j) * ld + t] =
  // dy[o][2th + i][2tw + j] for the slot's tiles t; outside dy stays zero (zeroed once).
  static void fill_dy_planes(float* Pe, const float* dy, int64_t im, const Tiling& t) {
    for (int64_t o = 0; o < t.O; ++o)
      for (int64_t h = 0; h < t.OH; ++h) {
        float* row = Pe + (o * 4 + (h & 1) * 2) * t.ld + im * t.tiles() + (h >> 1) * t.TW;
        split_row(row, row + t.ld, dy + (o * t.OH + h) * t.OW, t.OW, 0);
      }
  }

  // E[p][o][0 .. nt) = (A e A^T)[p] for the pass's tiles (rows of t.ld floats, position slabs ps
  // floats apart; channel rows padded to a multiple of 4 stay zero).
  static void dy_transform(float* Eb, int64_t ps, const float* Pe, int64_t nt, const Tiling& t) {
    for (int64_t o = 0; o < t.O; ++o) {
      const float* e = Pe + o * 4 * t.ld;
      float* out = Eb + o * t.ld;
      for (int64_t v = 0; v < nt; v += W) {
        const V e00 = Simd::load(e + v), e01 = Simd::load(e + t.ld + v);
        const V e10 = Simd::load(e + 2 * t.ld + v), e11 = Simd::load(e + 3 * t.ld + v);
        // A e: rows e0, e0 + e1, e0 - e1, -e1; then each row (a, b) times A^T: a, a + b, a - b, -b
        const V h[4][2] = {{e00, e01},
                           {Simd::add(e00, e10), Simd::add(e01, e11)},
                           {Simd::sub(e00, e10), Simd::sub(e01, e11)},
                           {Simd::sub(Simd::zero(), e10), Simd::sub(Simd::zero(), e11)}};
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) {
          Simd::store(out + (r * 4 + 0) * ps + v, h[r][0]);
          Simd::store(out + (r * 4 + 1) * ps + v, Simd::add(h[r][0], h[r][1]));
          Simd::store(out + (r * 4 + 2) * ps + v, Simd::sub(h[r][0], h[r][1]));
          Simd::store(out + (r * 4 + 3) * ps + v, Simd::sub(Simd::zero(), h[r][1]));
        }
      }
    }
  }

  // out (3x3) = G^T m G for the 4x4 sums m, in double (G^T = | 1 1/2 1/2 0 | 0 1/2 -1/2 0 |
  // 0 1/2 1/2 1 |).
  static void weights(const double* m, float* out) {
    double z[3][4];  // G^T m
    for (int j = 0; j < 4; ++j) {
      z[0][j] = m[j] + 0.5 * (m[4 + j] + m[8 + j]);
      z[1][j] = 0.5 * (m[4 + j] - m[8 + j]);
      z[2][j] = 0.5 * (m[4 + j] + m[8 + j]) + m[12 + j];
    }
    for (int r = 0; r < 3; ++r) {  // (G^T m) G
      out[r * 3 + 0] = (float)(z[r][0] + 0.5 * (z[r][1] + z[r][2]));
      out[r * 3 + 1] = (float)(0.5 * (z[r][1] - z[r][2]));
      out[r * 3 + 2] = (float)(0.5 * (z[r][1] + z[r][2]) + z[r][3]);
    }
  }
};

// F(3x3, 4x4): 4x4 dy tiles, 6x6 input tiles on 4x4 phase planes (conv_winograd4_planes.h), 36
// products. With the forward's A^T (conv_winograd4.cpp), A e A^T takes each column (then row)
// (e0, e1, e2, e3) of the tile to
//   (e0, e0 + e1 + e2 + e3, e0 - e1 + e2 - e3, e0 + 2e1 + 4e2 + 8e3, e0 - 2e1 + 4e2 - 8e3, e3).
struct WgradF4 {
  static constexpr int R = 4, P = 36;
  static void fill_planes(float* P, const float* x, int64_t im, const Tiling& t) {
    fill_planes4(P, x, im, t);
  }
  static void input_transform(float* Vb, int64_t ps, const float* P, const BlockScan& scan,
                              const Tiling& t) {
    input_transform4(Vb, ps, P, scan, t);
  }

  // Pe[(o*16 + i*4 + j) * ld + t] = dy[o][4th + i][4tw + j] (zero outside dy, zeroed once).
  static void fill_dy_planes(float* Pe, const float* dy, int64_t im, const Tiling& t) {
    for (int64_t o = 0; o < t.O; ++o)
      for (int64_t h = 0; h < t.OH; ++h) {
        float* row = Pe + (o * 16 + (h & 3) * 4) * t.ld + im * t.tiles() + (h >> 2) * t.TW;
        float* const ph[4] = {row, row + t.ld, row + 2 * t.ld, row + 3 * t.ld};
        split_row4(ph, dy + (o * t.OH + h) * t.OW, t.OW, 0);
      }
  }

  // A times a column of four tile vectors: six.
  static void arows(V* h, const V* e, V four) {
    const V s02 = Simd::add(e[0], e[2]), s13 = Simd::add(e[1], e[3]);
    const V t02 = Simd::fma(four, e[2], e[0]);
    V t13 = Simd::fma(four, e[3], e[1]);
    t13 = Simd::add(t13, t13);  // 2 e1 + 8 e3
    h[0] = e[0];
    h[1] = Simd::add(s02, s13);
    h[2] = Simd::sub(s02, s13);
    h[3] = Simd::add(t02, t13);
    h[4] = Simd::sub(t02, t13);
    h[5] = e[3];
  }

  static void dy_transform(float* Eb, int64_t ps, const float* Pe, int64_t nt, const Tiling& t) {
    const float c4 = 4;
    const V four = Simd::bcast(&c4);
    for (int64_t o = 0; o < t.O; ++o) {
      const float* e = Pe + o * 16 * t.ld;
      float* out = Eb + o * t.ld;
      for (int64_t v = 0; v < nt; v += W) {
        V h[6][4];  // A e, column by column
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          V col[4], r[6];
#pragma GCC unroll 4
          for (int i = 0; i < 4; ++i) col[i] = Simd::load(e + (i * 4 + j) * t.ld + v);
          arows(r, col, four);
#pragma GCC unroll 6
          for (int i = 0; i < 6; ++i) h[i][j] = r[i];
        }
#pragma GCC unroll 6
        for (int i = 0; i < 6; ++i) {  // (A e) A^T, row by row
          V u[6];
          arows(u, h[i], four);
#pragma GCC unroll 6
          for (int k = 0; k < 6; ++k) Simd::store(out + (i * 6 + k) * ps + v, u[k]);
        }
      }
    }
  }

  // out (3x3) = G^T m G for the 6x6 sums m, in double, with the forward's G (conv_winograd4.cpp).
  static void weights(const double* m, float* out) {
    constexpr double k6 = 1.0 / 6, k12 = 1.0 / 12, k24 = 1.0 / 24;
    static const double G[6][3] = {{0.25, 0, 0},    {-k6, -k6, -k6}, {-k6, k6, -k6},
                                   {k24, k12, k6},  {k24, -k12, k6}, {0, 0, 1}};
    double z[3][6];  // G^T m
    for (int r = 0; r < 3; ++r)
      for (int j = 0; j < 6; ++j) {
        double s = 0;
        for (int i = 0; i < 6; ++i) s += G[i][r] * m[i * 6 + j];
        z[r][j] = s;
      }
    for (int r = 0; r < 3; ++r)  // (G^T m) G
      for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (int j = 0; j < 6; ++j) s += z[r][j] * G[j][c];
        out[r * 3 + c] = (float)s;
      }
  }
};

// r[k] = the sum of a[k]'s lanes, k < 16, by a tree of shuffles: each level halves the lanes of
// two vectors and adds them, so 16 sums cost 15 additions and 30 shuffles instead of 16 separate
// reductions. The tree leaves the sums in a scrambled order, found once by running it on known
// values (kth vector = k) and undone with one permutation.
#if LB_SIMD == 512
// Lane indices for _mm512_permutex2var_ps (0-15 the first vector, 16-31 the second) that pick,
// per group of `span` lanes, every other group: from = 0 the even groups, 1 the odd ones; the
// first vector fills the low half of each 2*span... (see reduce_tree: at each level a pair of
// vectors becomes one, whose lanes are the sums of the pair's halves).
__m512i pair_index(int span, int from) {
  alignas(64) int32_t idx[16];
  // Output lane l: within blocks of 2*span lanes, the first span come from vector a, the next
  // span from vector b, each taking group (2 * block + from) of span lanes.
  for (int l = 0; l < 16; ++l) {
    const int block = l / (2 * span), within = l % (2 * span), src = within < span ? 0 : 16;
    idx[l] = src + (2 * block + from) * span + within % span;
  }
  return _mm512_load_si512(idx);
}

__m512 halve(__m512 a, __m512 b, const __m512i& even, const __m512i& odd) {
  return _mm512_add_ps(_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b));
}

__m512 reduce_tree(const __m512 a[16]) {
  static const __m512i e8 = pair_index(8, 0), o8 = pair_index(8, 1);
  static const __m512i e4 = pair_index(4, 0), o4 = pair_index(4, 1);
  static const __m512i e2 = pair_index(2, 0), o2 = pair_index(2, 1);
  static const __m512i e1 = pair_index(1, 0), o1 = pair_index(1, 1);
  __m512 b[8], c[4], d[2];
  for (int k = 0; k < 8; ++k) b[k] = halve(a[k], a[k + 8], e8, o8);
  for (int k = 0; k < 4; ++k) c[k] = halve(b[k], b[k + 4], e4, o4);
  for (int k = 0; k < 2; ++k) d[k] = halve(c[k], c[k + 2], e2, o2);
  return halve(d[0], d[1], e1, o1);
}

const __m512i& reduce_order() {
  static const __m512i perm = [] {
    __m512 a[16];
    for (int k = 0; k < 16; ++k) a[k] = _mm512_set1_ps((float)k);
    alignas(64) float r[16];
    _mm512_store_ps(r, reduce_tree(a));
    alignas(64) int32_t idx[16];
    for (int l = 0; l < 16; ++l) idx[(int)(r[l] / 16)] = l;  // lane l holds the sum of a[r/16]
    return _mm512_load_si512(idx);
  }();
  return perm;
}
#endif

void reduce16_add(float* out, const V a[16]) {
#if LB_SIMD == 512
  const __m512 t = reduce_tree(a);
  const __m512 r = _mm512_permutex2var_ps(t, reduce_order(), t);
  _mm512_storeu_ps(out, _mm512_add_ps(_mm512_loadu_ps(out), r));
#else
  alignas(32) float tmp[W];
  for (int k = 0; k < 16; ++k) {
    Simd::store(tmp, a[k]);
    float s = 0;
    for (int l = 0; l < W; ++l) s += tmp[l];
    out[k] += s;
  }
#endif
}

// acc[i*4 + j] += sum over t < n of e[i*ld + t] * v[j*ld + t], i, j < 4 (n a multiple of W).
void dot_tile_4x4(float* acc, const float* e, const float* v, int64_t ld, int64_t n) {
  V a[16];
#pragma GCC unroll 16
  for (int k = 0; k < 16; ++k) a[k] = Simd::zero();
  for (int64_t t = 0; t < n; t += W) {
    V e0 = Simd::load(e + t), e1 = Simd::load(e + ld + t);
    V e2 = Simd::load(e + 2 * ld + t), e3 = Simd::load(e + 3 * ld + t);
    V v0 = Simd::load(v + t), v1 = Simd::load(v + ld + t);
    V v2 = Simd::load(v + 2 * ld + t), v3 = Simd::load(v + 3 * ld + t);
    // Keeps the eight in registers: GCC otherwise folds each use of one set into its FMA as a
    // memory operand, 20 loads per 16 FMAs instead of 8, and the loop becomes load-bound.
    asm("" : "+v"(e0), "+v"(e1), "+v"(e2), "+v"(e3), "+v"(v0), "+v"(v1), "+v"(v2), "+v"(v3));
    a[0] = Simd::fma(e0, v0, a[0]), a[1] = Simd::fma(e0, v1, a[1]);
    a[2] = Simd::fma(e0, v2, a[2]), a[3] = Simd::fma(e0, v3, a[3]);
    a[4] = Simd::fma(e1, v0, a[4]), a[5] = Simd::fma(e1, v1, a[5]);
    a[6] = Simd::fma(e1, v2, a[6]), a[7] = Simd::fma(e1, v3, a[7]);
    a[8] = Simd::fma(e2, v0, a[8]), a[9] = Simd::fma(e2, v1, a[9]);
    a[10] = Simd::fma(e2, v2, a[10]), a[11] = Simd::fma(e2, v3, a[11]);
    a[12] = Simd::fma(e3, v0, a[12]), a[13] = Simd::fma(e3, v1, a[13]);
    a[14] = Simd::fma(e3, v2, a[14]), a[15] = Simd::fma(e3, v3, a[15]);
  }
  reduce16_add(acc, a);
}

template <class A>
void winograd_wgrad(float* dw, const float* dy, const float* x, const ConvGeom& g) {
  constexpr int P = A::P, kPhases = A::R * A::R;
  const int64_t chunks = conv_image_chunks(g.N);
  const int64_t chunk_images = (g.N + chunks - 1) / chunks;
  const Tiling t = make_wgrad_tiling<A>(g, chunk_images);
  const int64_t C4 = round_up(g.C, 4), O4 = round_up(g.O, 4);
  // Mw per chunk, [p][o/4][c/4][4][4]: a 4x4 tile's sums are 16 consecutive floats.
  const int64_t msize = P * O4 * C4;
  // Per-chunk sums from the calling thread's scratch (each chunk zeroes its own).
  float* partial = thread_scratch(kScratchWgradSums, (size_t)(chunks * msize));
  const uint64_t layout =
      scratch_layout({A::R, g.C, g.H, g.W, g.ph, g.pw, g.O, t.m, t.run, t.ld});
  conv_for_image_chunks(g.N, g.O * g.C * 16 * g.OH * g.OW / 4, [&](int64_t chunk, int64_t n0, int64_t n1) {
    float* acc = partial + chunk * msize;
    std::fill(acc, acc + msize, 0.0f);
    // Zero where never written (thread_scratch's layouts): the planes' borders, dy's positions
    // outside a dy whose size is not a multiple of the tile, and V's and E's padding channel rows
    // (so their products add nothing).
    float* Pl = thread_scratch(kScratchWgradPlanes, (size_t)(g.C * kPhases * t.run), layout);
    float* Pe = thread_scratch(kScratchWgradDyPlanes, (size_t)(g.O * kPhases * t.ld), layout);
    float* Vb = thread_scratch(kScratchWgradV, (size_t)(P * C4 * t.ld), layout);
    float* Eb = thread_scratch(kScratchWgradE, (size_t)(P * O4 * t.ld), layout);
    for (int64_t n = n0; n < n1; n += t.m) {
      const int64_t images = std::min(t.m, n1 - n), nt = images * t.tiles();
      for (int64_t im = 0; im < images; ++im) {
        A::fill_planes(Pl, x + (n + im) * g.C * g.H * g.W, im, t);
        A::fill_dy_planes(Pe, dy + (n + im) * g.O * g.OH * g.OW, im, t);
      }
      // Slabs back to back (not odd_lines apart): the dot products read them as one.
      A::input_transform(Vb, C4 * t.ld, Pl, scan_block(0, nt, t), t);
      // The lanes past nt up to the vector end must add nothing: dy's planes there are zeroed
      // (they may hold an earlier pass's images), and so are V's (an earlier call's values,
      // perhaps not finite).
      const int64_t nv = round_up(nt, W);
      if (nv > nt) {
        for (int64_t r = 0; r < g.O * kPhases; ++r)
          std::fill(Pe + r * t.ld + nt, Pe + r * t.ld + nv, 0.0f);
        for (int64_t r = 0; r < P * C4; ++r) std::fill(Vb + r * t.ld + nt, Vb + r * t.ld + nv, 0.0f);
      }
      A::dy_transform(Eb, O4 * t.ld, Pe, nv, t);
      for (int p = 0; p < P; ++p) {
        const float* Ep = Eb + p * O4 * t.ld;
        const float* Vp = Vb + p * C4 * t.ld;
        float* ap = acc + p * O4 * C4;
        for (int64_t o = 0; o < O4; o += 4)
          for (int64_t c = 0; c < C4; c += 4)
            dot_tile_4x4(ap + (o * C4 + c * 4), Ep + o * t.ld, Vp + c * t.ld, t.ld, nv);
      }
    }
  });
  // Chunks in order (the same bits for a given thread count), then dW = G^T Mw G in double.
  for (int64_t k = 1; k < chunks; ++k)
    for (int64_t i = 0; i < msize; ++i) partial[i] += partial[k * msize + i];
  for (int64_t o = 0; o < g.O; ++o)
    for (int64_t c = 0; c < g.C; ++c) {
      double m[P];
      for (int p = 0; p < P; ++p)
        m[p] = partial[p * O4 * C4 + (o / 4 * 4) * C4 + (c / 4) * 16 + (o % 4) * 4 + c % 4];
      A::weights(m, dw + (o * g.C + c) * 9);
    }
}

}  // namespace

void conv2d_backward_weight_winograd(float* dw, const float* dy, const float* x,
                                     const ConvGeom& g) {
  LB_CHECK(conv_winograd_supported(g), "conv2d_backward_weight_winograd: not a 3x3 stride-1 "
           "convolution with one group and padding at most 2");
  if (conv_winograd_wgrad_tile_for(g) == 4) return winograd_wgrad<WgradF4>(dw, dy, x, g);
  winograd_wgrad<WgradF2>(dw, dy, x, g);
}

#endif  // LB_SIMD

}  // namespace lowbit
