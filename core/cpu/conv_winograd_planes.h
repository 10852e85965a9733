// The phase planes and the input transform that the Winograd kernels share: the forward and data
// gradient (conv_winograd.cpp) and the weight gradient (conv_winograd_wgrad.cpp). Private to
// those two files; the algorithm and its layout are described at the top of conv_winograd.cpp.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/cpu/conv_kernels.h"
#include "core/cpu/simd.h"
#include "core/cpu/split_row.h"
#include "core/error.h"

#ifdef LB_SIMD
#include "core/cpu/conv_direct_tiles.h"

namespace lowbit {
namespace winograd {

using conv_tiles::round_up;
using conv_tiles::W;
using V = Simd::V;

// How one convolution's tiles lie on the phase planes, and how a pass cuts them into blocks.
// Tiles are numbered compactly, t = (image * TH + th) * TW + tw within a pass; on the planes tile
// (image, th, tw) sits at position q = image * S + th * Wq + tw, where the positions with th = TH
// or tw = TW are not tiles (the input transform skips them, so no work is spent on them).
struct Tiling {
  int64_t C = 0, H = 0, Wd = 0, ph = 0, pw = 0, O = 0, OH = 0, OW = 0;
  int64_t TH = 0, TW = 0;  // tiles down and across an image
  int64_t Wq = 0;          // phase plane row: TW + 1 positions
  int64_t S = 0;           // floats per image in one phase plane, (TH + 1) * Wq
  int64_t m = 0;           // images per pass, their planes end to end
  int64_t run = 0;         // floats per (channel, phase) plane run of a pass, with read slack
  int64_t nq = 0, Tb = 0;  // position vectors per register tile; tiles per block
  int64_t ld = 0;          // floats per (position, channel) row of a block: Tb and store slack
  int64_t tiles() const { return TH * TW; }
  int64_t pos(int64_t t) const {
    const int64_t im = t / tiles(), r = t % tiles();
    return im * S + (r / TW) * Wq + r % TW;
  }
};


// The tiles of g on its phase planes (no pass or block sizes yet), for output tiles r x r: r = 2
// (F(2x2, 3x3), 4x4 input tiles on 2x2 phase planes) or r = 4 (F(4x4, 3x3), 6x6 input tiles on
// 4x4 phase planes). Either way element (i, j) of a tile lies within one plane row and column of
// the tile's position (i / r, j / r <= 1).
inline Tiling base_tiling(const ConvGeom& g, int64_t r = 2) {
  Tiling t;
  t.C = g.C, t.H = g.H, t.Wd = g.W, t.ph = g.ph, t.pw = g.pw, t.O = g.O, t.OH = g.OH, t.OW = g.OW;
  t.TH = (g.OH + r - 1) / r, t.TW = (g.OW + r - 1) / r, t.Wq = t.TW + 1, t.S = (t.TH + 1) * t.Wq;
  // The padded image (ph + H + ph rows) fits r * (TH + 1) rows since OH = H + 2ph - 2; same across.
  LB_CHECK(g.ph + g.H <= r * (t.TH + 1) && g.pw + g.W <= r * t.Wq, "conv2d winograd: ", g.H, "x",
           g.W, " padded by ", g.ph, ",", g.pw, " does not fit ", t.TH, "x", t.TW, " tiles of ", r,
           "x", r);
  return t;
}

// The transforms load or store one vector in each of 16 (F(2x2)) or 36 (F(4x4)) position slabs
// in a row. Slabs a multiple of 4 KB apart put all those accesses into a few L1 sets and made
// every store alias the following loads (4K aliasing): at 64 channels the weight transform cost
// more than the products, and the output transform ran at half speed. So slabs are an odd
// number of cache lines apart: n floats rounded up to that.
inline int64_t odd_lines(int64_t n) {
  constexpr int64_t kLine = 64 / (int64_t)sizeof(float);
  const int64_t r = round_up(n, kLine);
  return (r / kLine) % 2 ? r : r + kLine;
}
// Floats between the position slabs of a block's V (rows = C) or M (rows = O), and of U (O * C).
inline int64_t slab(int64_t rows, const Tiling& t) { return odd_lines(rows * t.ld); }

// Sets the pass's plane runs for m images: a block's last vector starts before position m * S
// and reads W - 1 + Wq + 1 floats past it.
inline void set_pass(Tiling& t, int64_t m) {
  t.m = m;
  t.run = round_up(t.m * t.S + W + t.Wq + 1, W);
}

// Copies image x (C, H, W) into slot im of the pass's phase planes P (channel c, phase a*2 + b at
// P + (c*4 + a*2 + b) * run); the borders stay zero (zeroed once, never written).
inline void fill_planes(float* P, const float* x, int64_t im, const Tiling& t) {
  for (int64_t c = 0; c < t.C; ++c)
    for (int64_t h = 0; h < t.H; ++h) {
      const int64_t r = h + t.ph;
      float* row = P + (c * 4 + (r & 1) * 2) * t.run + im * t.S + (r >> 1) * t.Wq;
      split_row(row, row + t.run, x + (c * t.H + h) * t.Wd, t.Wd, t.pw);
    }
}

// dst[0 .. n) = src[0 .. n), or with Add dst + src (an output added into what the destination
// holds): a few vector stores (a loop here became a memmove call).
template <bool Add = false>
inline void copy_floats(float* dst, const float* src, int64_t n) {
#if LB_SIMD == 512
  for (int64_t k = 0; k < n; k += W) {
    const int64_t c = std::min<int64_t>(W, n - k);
    const __mmask16 m = c == W ? (__mmask16)0xffff : (__mmask16)((1u << c) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, src + k);
    _mm512_mask_storeu_ps(dst + k, m, Add ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + k), v) : v);
  }
#else
  for (int64_t k = 0; k < n; ++k) dst[k] = Add ? dst[k] + src[k] : src[k];
#endif
}

// Stores the lanes of v set in mask, packed, at out (which has W floats of room); returns how
// many.
inline int store_packed(float* out, V v, unsigned mask) {
#if LB_SIMD == 512
  _mm512_storeu_ps(out, _mm512_maskz_compress_ps((__mmask16)mask, v));
  return __builtin_popcount(mask);
#else
  alignas(32) float tmp[W];
  Simd::store(tmp, v);
  int n = 0;
  for (int l = 0; l < W; ++l)
    if (mask >> l & 1) out[n++] = tmp[l];
  return n;
#endif
}

// The plane positions of a block's tiles [t0, t1), a vector of W positions at a time: where each
// vector starts and which of its lanes are tiles of the block. When a row of tiles is whole
// vectors (TW a multiple of W: ResNet-20's 32x32 layers with AVX-512) the vectors follow the rows
// and every lane is a tile; otherwise they run over consecutive positions, across rows and
// images, and the lanes on the thrown-away positions are masked out.
struct BlockScan {
  std::vector<int64_t> q;
  std::vector<unsigned> masks;
};

constexpr unsigned kAllLanes = (1u << W) - 1;

inline BlockScan scan_block(int64_t t0, int64_t t1, const Tiling& t) {
  BlockScan b;
  if (t.TW % W == 0) {  // then t0 and t1 are whole vectors of one row
    for (int64_t tt = t0; tt < t1; tt += W) b.q.push_back(t.pos(tt)), b.masks.push_back(kAllLanes);
    return b;
  }
  const int64_t q1 = t.pos(t1 - 1) + 1;
  for (int64_t q = t.pos(t0); q < q1; q += W) {
    unsigned mask = 0;
    for (int l = 0; l < W && q + l < q1; ++l) {
      const int64_t r = (q + l) % t.S;
      if (r / t.Wq < t.TH && r % t.Wq < t.TW) mask |= 1u << l;
    }
    b.q.push_back(q), b.masks.push_back(mask);
  }
  return b;
}

// V[p][c][0 .. nt) = (B^T d B)[p] for the block's nt tiles, rows of t.ld floats, position slabs
// ps floats apart (at least C rows).
inline void input_transform(float* Vb, int64_t ps, const float* P, const BlockScan& scan,
                     const Tiling& t) {
  for (int64_t c = 0; c < t.C; ++c) {
    const float* ph[4];
    for (int a = 0; a < 4; ++a) ph[a] = P + (c * 4 + a) * t.run;
    float* out = Vb + c * t.ld;
    int64_t n = 0;
    for (size_t vi = 0; vi < scan.q.size(); ++vi) {
      const int64_t q = scan.q[vi];
      V d[4][4];
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j)
          d[i][j] = Simd::load(ph[(i & 1) * 2 + (j & 1)] + (i >> 1) * t.Wq + (j >> 1) + q);
      V r[4][4];  // B^T d
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        r[0][j] = Simd::sub(d[0][j], d[2][j]);
        r[1][j] = Simd::add(d[1][j], d[2][j]);
        r[2][j] = Simd::sub(d[2][j], d[1][j]);
        r[3][j] = Simd::sub(d[1][j], d[3][j]);
      }
      V u[4][4];  // (B^T d) B
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        u[i][0] = Simd::sub(r[i][0], r[i][2]);
        u[i][1] = Simd::add(r[i][1], r[i][2]);
        u[i][2] = Simd::sub(r[i][2], r[i][1]);
        u[i][3] = Simd::sub(r[i][1], r[i][3]);
      }
      const unsigned mask = scan.masks[vi];
      if (mask == kAllLanes) {
#pragma GCC unroll 16
        for (int k = 0; k < 16; ++k) Simd::store(out + k * ps + n, u[k / 4][k % 4]);
        n += W;
      } else {
        int cnt = 0;
#pragma GCC unroll 16
        for (int k = 0; k < 16; ++k) cnt = store_packed(out + k * ps + n, u[k / 4][k % 4], mask);
        n += cnt;
      }
    }
  }
}

}  // namespace winograd
}  // namespace lowbit
#endif  // LB_SIMD
