// Winograd F(2x2, 3x3) convolution (see conv_winograd.h for when and why).
//
// One 2x2 output tile Y from the 4x4 input tile d under it (rows 2*th - ph .. +3, columns
// 2*tw - pw .. +3, zero outside the image) and the 3x3 kernel g:
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A,      (.) = element-wise product of 4x4 matrices,
//   B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
//         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |        | 0    0    1   |
// Summed over the input channels, the element-wise product becomes 16 independent matrix
// products, one per position p of the 4x4 domain: M_p[o][t] = sum_c U_p[o][c] * V_p[c][t], with
// U = G g G^T per (o, c) and V = B^T d B per (c, tile t). Those products run on the direct
// convolution's forward register tile (conv_direct_tiles.h) with the channels as its "taps".
//
// Tiles are vectorised across neighbouring tiles. The padded image is split into 2x2 phase
// planes, phase (a, b) holding padded pixel (2R + a, 2C + b) at (R, C), each row TW + 1 wide (TW
// tiles a row, plus one thrown away, as the direct kernels' grid): then element (i, j) of tile
// (th, tw) sits in phase (i % 2, j % 2) at (th + i/2, tw + j/2), a constant offset from tile
// position q = th * (TW + 1) + tw, so 16 consecutive tiles read 16 consecutive floats, across rows
// and, with several images' planes laid end to end, across images.
#include "core/cpu/conv_winograd.h"

#include <algorithm>
#include <vector>

#include "core/cpu/conv_direct.h"
#include "core/cpu/conv_util.h"
#include "core/cpu/simd.h"
#include "core/error.h"

#ifdef LB_SIMD
#include "core/cpu/conv_direct_tiles.h"
#endif

namespace lowbit {

bool& conv_winograd_enabled() {
  static bool on = true;
  return on;
}

#ifndef LB_SIMD

bool conv_winograd_supported(const ConvGeom&) { return false; }
bool conv_winograd_preferred(const ConvGeom&) { return false; }
bool conv_winograd_data_preferred(const ConvGeom&) { return false; }
void conv2d_forward_winograd(float*, const float*, const float*, const float*, const ConvGeom&,
                             const ConvEpilogue<float>*, int) {
  LB_FAIL("conv2d_forward_winograd: this build has no AVX2/FMA or AVX-512 kernels");
}
void conv2d_backward_data_winograd(float*, const float*, const float*, const ConvGeom&, int) {
  LB_FAIL("conv2d_backward_data_winograd: this build has no AVX2/FMA or AVX-512 kernels");
}
void conv2d_backward_weight_winograd(float*, const float*, const float*, const ConvGeom&) {
  LB_FAIL("conv2d_backward_weight_winograd: this build has no AVX2/FMA or AVX-512 kernels");
}

#else

namespace {

using conv_tiles::round_up;
using conv_tiles::W;
using V = Simd::V;

constexpr int64_t kBlockBytes = 384 << 10;  // a block's V and M (16 positions each): in L2

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

constexpr int64_t kPassBytes = 128 << 10;  // a pass's planes or its outputs, at most about

// The tiles of g on its phase planes (no pass or block sizes yet).
Tiling base_tiling(const ConvGeom& g) {
  Tiling t;
  t.C = g.C, t.H = g.H, t.Wd = g.W, t.ph = g.ph, t.pw = g.pw, t.O = g.O, t.OH = g.OH, t.OW = g.OW;
  t.TH = (g.OH + 1) / 2, t.TW = (g.OW + 1) / 2, t.Wq = t.TW + 1, t.S = (t.TH + 1) * t.Wq;
  // The padded image (ph + H + ph rows) fits 2 * (TH + 1) rows since OH = H + 2ph - 2; same across.
  LB_CHECK(g.ph + g.H <= 2 * (t.TH + 1) && g.pw + g.W <= 2 * t.Wq, "conv2d winograd: ", g.H, "x",
           g.W, " padded by ", g.ph, ",", g.pw, " does not fit ", t.TH, "x", t.TW, " tiles");
  return t;
}

// Sets the pass's plane runs for m images: a block's last vector starts before position m * S
// and reads W - 1 + Wq + 1 floats past it.
void set_pass(Tiling& t, int64_t m) {
  t.m = m;
  t.run = round_up(t.m * t.S + W + t.Wq + 1, W);
}

// Forward: passes of about kPassBytes of planes (or outputs), blocks of V and M that fit L2.
Tiling make_tiling(const ConvGeom& g, int64_t chunk_images, int force_nq) {
  Tiling t = base_tiling(g);
  const int64_t per_image = 4 * std::max(g.C, g.O) * t.S * (int64_t)sizeof(float);
  set_pass(t, std::max<int64_t>(1, std::min<int64_t>(chunk_images, kPassBytes / per_image)));
  t.nq = conv_tiles::pick_nq(g.O, t.m * t.tiles(), force_nq);
  const int64_t tile = t.nq * W;
  const int64_t fit = kBlockBytes / (int64_t)sizeof(float) / (16 * (g.C + g.O));
  t.Tb = std::min(std::max(tile, fit / tile * tile), round_up(t.m * t.tiles(), tile));
  t.ld = t.Tb + W;
  return t;
}

// Scatters one image row: padded column col = w + pw goes to the even (col % 2 == 0) or odd phase
// row at col / 2. The row's even-indexed elements all land in one phase and the odd-indexed in the
// other (which is which depends on pw's parity), so it is a plain deinterleave: whole vectors
// where there are, no masked loads or stores (those made this loop the slowest part of the pass).
void split_row(float* even, float* odd, const float* src, int64_t n, int64_t pw) {
  float* first = (pw % 2 == 0 ? even : odd) + pw / 2;         // gets src[0], src[2], ...
  float* second = (pw % 2 == 0 ? odd : even) + (pw + 1) / 2;  // gets src[1], src[3], ...
  const int64_t pairs = n / 2;
  int64_t k = 0;
#if LB_SIMD == 512
  const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (; k + 16 <= pairs; k += 16) {
    const __m512 a = _mm512_loadu_ps(src + 2 * k), b = _mm512_loadu_ps(src + 2 * k + 16);
    _mm512_storeu_ps(first + k, _mm512_permutex2var_ps(a, ie, b));
    _mm512_storeu_ps(second + k, _mm512_permutex2var_ps(a, io, b));
  }
#endif
  for (; k + 8 <= pairs; k += 8) {  // 8 pairs with 256-bit vectors (the AVX2 build too)
    const __m256 lo = _mm256_loadu_ps(src + 2 * k), hi = _mm256_loadu_ps(src + 2 * k + 8);
    // shuffle: s0 s2 s8 s10 | s4 s6 s12 s14; then 64-bit blocks 0, 2, 1, 3: s0 s2 s4 ... s14
    const __m256 e = _mm256_shuffle_ps(lo, hi, 0x88), o = _mm256_shuffle_ps(lo, hi, 0xDD);
    _mm256_storeu_ps(first + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
    _mm256_storeu_ps(second + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8)));
  }
  for (; k < pairs; ++k) first[k] = src[2 * k], second[k] = src[2 * k + 1];
  if (n & 1) first[pairs] = src[n - 1];
}

// Copies image x (C, H, W) into slot im of the pass's phase planes P (channel c, phase a*2 + b at
// P + (c*4 + a*2 + b) * run); the borders stay zero (zeroed once, never written).
void fill_planes(float* P, const float* x, int64_t im, const Tiling& t) {
  for (int64_t c = 0; c < t.C; ++c)
    for (int64_t h = 0; h < t.H; ++h) {
      const int64_t r = h + t.ph;
      float* row = P + (c * 4 + (r & 1) * 2) * t.run + im * t.S + (r >> 1) * t.Wq;
      split_row(row, row + t.run, x + (c * t.H + h) * t.Wd, t.Wd, t.pw);
    }
}

// Stores the lanes of v set in mask, packed, at out (which has W floats of room); returns how
// many.
int store_packed(float* out, V v, unsigned mask) {
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

BlockScan scan_block(int64_t t0, int64_t t1, const Tiling& t) {
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

// V[p][c][0 .. nt) = (B^T d B)[p] for the block's nt tiles, rows of t.ld floats, position slabs of
// crows >= C rows.
void input_transform(float* Vb, int64_t crows, const float* P, const BlockScan& scan,
                     const Tiling& t) {
  const int64_t ps = crows * t.ld;  // between positions
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

// A block of output channels [o, o + mr), its U_p packed channel-major at `packed` within each
// position's O*C floats.
struct Block {
  int64_t o, mr, packed;
};

// U_p = (G g G^T)[p] for every (o, c), computed in double and rounded once, then packed per
// position for the register tile: blocks of at most max_mr channels, equal in size.
std::vector<float> transform_weights(std::vector<Block>& blocks, const float* w, int64_t O,
                                     int64_t C, int64_t max_mr) {
  std::vector<float> U((size_t)(16 * O * C));
  const int64_t nblocks = (O + max_mr - 1) / max_mr;
  for (int64_t bi = 0, at = 0; bi < nblocks; ++bi) {
    const int64_t o = bi * O / nblocks, mr = (bi + 1) * O / nblocks - o;
    blocks.push_back({o, mr, at});
    at += mr * C;
  }
  for (const Block& bl : blocks)
    for (int64_t i = 0; i < bl.mr; ++i)
      for (int64_t c = 0; c < C; ++c) {
        const float* g = w + ((bl.o + i) * C + c) * 9;
        double gg[4][3];  // G g
        for (int k = 0; k < 3; ++k) {
          const double g0 = g[k], g1 = g[3 + k], g2 = g[6 + k];
          gg[0][k] = g0, gg[1][k] = 0.5 * (g0 + g1 + g2), gg[2][k] = 0.5 * (g0 - g1 + g2);
          gg[3][k] = g2;
        }
        for (int r = 0; r < 4; ++r) {  // (G g) G^T
          const double a0 = gg[r][0], a1 = gg[r][1], a2 = gg[r][2];
          const double u[4] = {a0, 0.5 * (a0 + a1 + a2), 0.5 * (a0 - a1 + a2), a2};
          for (int s = 0; s < 4; ++s)
            U[(size_t)((r * 4 + s) * O * C + bl.packed + c * bl.mr + i)] = (float)u[s];
        }
      }
  return U;
}

// Within one vector of a block's tiles, a run of lanes [lane, lane + len) on one tile row: its two
// output rows start at y offset `at` (from the pass's first image, channel 0), `cols` outputs
// wide (2 * len, less one when the row's last tile sticks out of an odd width); `two` when the
// second row is inside the output.
struct Run {
  int lane, len;
  int64_t at, cols;
  bool two;
};

std::vector<std::vector<Run>> block_runs(int64_t t0, int64_t nt, const Tiling& t) {
  std::vector<std::vector<Run>> runs;
  for (int64_t v = 0; v < nt; v += W) {
    std::vector<Run> rv;
    for (int64_t l = 0; l < W && v + l < nt;) {
      const int64_t tt = t0 + v + l, im = tt / t.tiles(), th = (tt % t.tiles()) / t.TW;
      const int64_t tw = tt % t.TW;
      const int64_t len = std::min<int64_t>({W - l, nt - v - l, t.TW - tw});
      rv.push_back({(int)l, (int)len, im * t.O * t.OH * t.OW + 2 * th * t.OW + 2 * tw,
                    std::min(2 * len, t.OW - 2 * tw), 2 * th + 1 < t.OH});
      l += len;
    }
    runs.push_back(std::move(rv));
  }
  return runs;
}

// Writes lanes 0 .. W of a and b interleaved (a0 b0 a1 b1 ...) to out[0 .. 2W).
void interleave(float* out, V a, V b) {
#if LB_SIMD == 512
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  _mm512_storeu_ps(out, _mm512_permutex2var_ps(a, lo, b));
  _mm512_storeu_ps(out + W, _mm512_permutex2var_ps(a, hi, b));
#else
  alignas(32) float ta[W], tb[W];
  Simd::store(ta, a), Simd::store(tb, b);
  for (int l = 0; l < W; ++l) out[2 * l] = ta[l], out[2 * l + 1] = tb[l];
#endif
}

// dst[0 .. n) = src[0 .. n), n <= 2W: a few vector stores (a loop here became a memmove call).
void copy_floats(float* dst, const float* src, int64_t n) {
#if LB_SIMD == 512
  for (int64_t k = 0; k < n; k += W) {
    const int64_t c = std::min<int64_t>(W, n - k);
    const __mmask16 m = c == W ? (__mmask16)0xffff : (__mmask16)((1u << c) - 1);
    _mm512_mask_storeu_ps(dst + k, m, _mm512_maskz_loadu_ps(m, src + k));
  }
#else
  for (int64_t k = 0; k < n; ++k) dst[k] = src[k];
#endif
}

// y tiles of channel o = A^T M A + bias for the block's tiles.
void output_transform(float* y, const float* Mb, const std::vector<std::vector<Run>>& runs,
                      int64_t o, float bias, const Tiling& t) {
  const int64_t ps = t.O * t.ld;
  float* yo = y + o * t.OH * t.OW;
  const V vb = Simd::bcast(&bias);
  alignas(64) float row[2][2 * W];
  for (size_t vi = 0; vi < runs.size(); ++vi) {
    const float* m = Mb + o * t.ld + (int64_t)vi * W;
    V s[2][4];  // A^T M
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const V m0 = Simd::load(m + (0 * 4 + j) * ps), m1 = Simd::load(m + (1 * 4 + j) * ps);
      const V m2 = Simd::load(m + (2 * 4 + j) * ps), m3 = Simd::load(m + (3 * 4 + j) * ps);
      s[0][j] = Simd::add(Simd::add(m0, m1), m2);
      s[1][j] = Simd::sub(Simd::sub(m1, m2), m3);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; ++i)  // (A^T M) A, plus the bias: output row i of each tile
      interleave(row[i], Simd::add(Simd::add(Simd::add(s[i][0], s[i][1]), s[i][2]), vb),
                 Simd::add(Simd::sub(Simd::sub(s[i][1], s[i][2]), s[i][3]), vb));
    for (const Run& r : runs[vi]) {
      float* dst = yo + r.at;
      copy_floats(dst, row[0] + 2 * r.lane, r.cols);
      if (r.two) copy_floats(dst + t.OW, row[1] + 2 * r.lane, r.cols);
    }
  }
}

void winograd_conv(float* y, const float* x, const float* w, const float* b, const ConvGeom& g,
                   const ConvEpilogue<float>* ep, int force_nq) {
  LB_CHECK(force_nq >= 0 && force_nq <= conv_tiles::kMaxNQ, "conv2d winograd: tile of ", force_nq,
           " position vectors, this build has 1 to ", conv_tiles::kMaxNQ);
  const int64_t chunk_images = (g.N + conv_image_chunks(g.N) - 1) / conv_image_chunks(g.N);
  const Tiling t = make_tiling(g, chunk_images, force_nq);
  const int nq = (int)t.nq;
  const int64_t tile = nq * W, ohw = g.OH * g.OW;
  std::vector<Block> blocks;
  const std::vector<float> U = transform_weights(blocks, w, g.O, g.C, conv_tiles::max_mr(nq));
  std::vector<int64_t> koff((size_t)g.C);
  for (int64_t c = 0; c < g.C; ++c) koff[(size_t)c] = c * t.ld;
  const uint64_t layout = scratch_layout({1, g.C, g.H, g.W, g.ph, g.pw, t.m, t.run});
  conv_for_image_chunks(g.N, g.O * g.C * 16 * ohw / 4, [&](int64_t, int64_t n0, int64_t n1) {
    // The planes' borders must be zero (fill_planes writes only the interiors); V's lanes past a
    // block's last tile are multiplied too, into outputs that are thrown away, so V and M need
    // no clearing.
    float* P = thread_scratch(0, (size_t)(g.C * 4 * t.run), layout);
    float* Vb = thread_scratch(1, (size_t)(16 * g.C * t.ld));
    float* Mb = thread_scratch(2, (size_t)(16 * g.O * t.ld));
    for (int64_t n = n0; n < n1; n += t.m) {
      const int64_t images = std::min(t.m, n1 - n);
      for (int64_t im = 0; im < images; ++im) fill_planes(P, x + (n + im) * g.C * g.H * g.W, im, t);
      float* yn = y + n * g.O * ohw;
      const int64_t T = images * t.tiles();
      for (int64_t t0 = 0; t0 < T; t0 += t.Tb) {
        const int64_t nt = std::min(t.Tb, T - t0);
        input_transform(Vb, g.C, P, scan_block(t0, t0 + nt, t), t);
        for (int p = 0; p < 16; ++p) {
          const float* Vp = Vb + p * g.C * t.ld;
          float* Mp = Mb + p * g.O * t.ld;
          const float* Up = U.data() + p * g.O * g.C;
          for (int64_t j = 0; j < nt; j += tile)
            for (const Block& bl : blocks)
              conv_tiles::fwd_tile_fn(bl.mr, nq)(Mp + bl.o * t.ld + j, t.ld, Vp + j, koff.data(),
                                                 g.C, Up + bl.packed, false);
        }
        const auto runs = block_runs(t0, nt, t);
        for (int64_t o = 0; o < g.O; ++o)
          output_transform(yn, Mb, runs, o, b ? b[o] : 0.0f, t);
      }
      for (int64_t im = 0; ep && im < images; ++im)
        for (int64_t o = 0; o < g.O; ++o)
          conv_epilogue_plane(yn + (im * g.O + o) * ohw, ohw, ep, n + im, o, g.O);
    }
  });
}

// ---- weight gradient ----
// Per output tile the weight gradient is a correlation of the 4x4 input tile d with the 2x2 dy
// tile e, giving 3x3 taps: F(3x3, 2x2), the transpose of the forward's algorithm,
//   dW_tile = G^T [ (A e A^T) (.) (B^T d B) ] G,
// with the forward's B^T (so the input transform is the forward's), A = (A^T)^T (4x2) and G^T
// (3x4). Summed over tiles and images, the element-wise product becomes 16 products
// Mw_p[o][c] = sum_t E_p[o][t] * V_p[c][t] with a long sum over the tiles t: a dot product of two
// rows, vectorised along t (lanes hold partial sums) and reduced across the lanes once per pass.

constexpr int64_t kWgradPassBytes = 2 << 20;  // a pass's V and E: about this much

// Wgrad passes: as many tiles as kWgradPassBytes of V and E hold (at least one image), one block.
Tiling make_wgrad_tiling(const ConvGeom& g, int64_t chunk_images) {
  Tiling t = base_tiling(g);
  const int64_t per_tile = 16 * (round_up(g.C, 4) + round_up(g.O, 4)) * (int64_t)sizeof(float);
  const int64_t tiles = std::max<int64_t>(1, kWgradPassBytes / per_tile);
  set_pass(t, std::max<int64_t>(1, std::min<int64_t>(chunk_images, tiles / t.tiles())));
  t.Tb = round_up(t.m * t.tiles(), W);
  t.ld = t.Tb + W;
  return t;
}

// dy of image slot im (O, OH, OW) onto compact phase planes: Pe[(o*4 + i*2 + j) * ld + t] =
// dy[o][2th + i][2tw + j] for the slot's tiles t; outside dy stays zero (zeroed once).
void fill_dy_planes(float* Pe, const float* dy, int64_t im, const Tiling& t) {
  for (int64_t o = 0; o < t.O; ++o)
    for (int64_t h = 0; h < t.OH; ++h) {
      float* row = Pe + (o * 4 + (h & 1) * 2) * t.ld + im * t.tiles() + (h >> 1) * t.TW;
      split_row(row, row + t.ld, dy + (o * t.OH + h) * t.OW, t.OW, 0);
    }
}

// E[p][o][0 .. nt) = (A e A^T)[p] for the pass's tiles (rows of t.ld floats; channel rows padded
// to a multiple of 4 stay zero).
void dy_transform(float* Eb, int64_t orows, const float* Pe, int64_t nt, const Tiling& t) {
  const int64_t ps = orows * t.ld;
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

void winograd_wgrad(float* dw, const float* dy, const float* x, const ConvGeom& g) {
  const int64_t chunks = conv_image_chunks(g.N);
  const int64_t chunk_images = (g.N + chunks - 1) / chunks;
  const Tiling t = make_wgrad_tiling(g, chunk_images);
  const int64_t C4 = round_up(g.C, 4), O4 = round_up(g.O, 4);
  // Mw per chunk, [p][o/4][c/4][4][4]: a 4x4 tile's sums are 16 consecutive floats.
  const int64_t msize = 16 * O4 * C4;
  std::vector<float> partial((size_t)(chunks * msize), 0.0f);
  const uint64_t layout = scratch_layout({2, g.C, g.H, g.W, g.ph, g.pw, g.O, t.m, t.run, t.ld});
  conv_for_image_chunks(g.N, g.O * g.C * 16 * g.OH * g.OW / 4, [&](int64_t chunk, int64_t n0, int64_t n1) {
    float* acc = partial.data() + chunk * msize;
    // Zero where never written (thread_scratch's layouts): the planes' borders, dy's positions
    // outside an odd-sized dy, and V's and E's padding channel rows (so their products add
    // nothing).
    float* P = thread_scratch(3, (size_t)(g.C * 4 * t.run), layout);  // slots 0-2: the forward's
    float* Pe = thread_scratch(4, (size_t)(g.O * 4 * t.ld), layout);
    float* Vb = thread_scratch(5, (size_t)(16 * C4 * t.ld), layout);
    float* Eb = thread_scratch(6, (size_t)(16 * O4 * t.ld), layout);
    for (int64_t n = n0; n < n1; n += t.m) {
      const int64_t images = std::min(t.m, n1 - n), nt = images * t.tiles();
      for (int64_t im = 0; im < images; ++im) {
        fill_planes(P, x + (n + im) * g.C * g.H * g.W, im, t);
        fill_dy_planes(Pe, dy + (n + im) * g.O * g.OH * g.OW, im, t);
      }
      input_transform(Vb, C4, P, scan_block(0, nt, t), t);
      // The lanes past nt up to the vector end must add nothing: dy's planes there are zeroed
      // (they may hold an earlier pass's images), and so are V's (an earlier call's values,
      // perhaps not finite).
      const int64_t nv = round_up(nt, W);
      if (nv > nt) {
        for (int64_t r = 0; r < g.O * 4; ++r) std::fill(Pe + r * t.ld + nt, Pe + r * t.ld + nv, 0.0f);
        for (int64_t r = 0; r < 16 * C4; ++r) std::fill(Vb + r * t.ld + nt, Vb + r * t.ld + nv, 0.0f);
      }
      dy_transform(Eb, O4, Pe, nv, t);
      for (int p = 0; p < 16; ++p) {
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
    for (int64_t i = 0; i < msize; ++i) partial[(size_t)i] += partial[(size_t)(k * msize + i)];
  for (int64_t o = 0; o < g.O; ++o)
    for (int64_t c = 0; c < g.C; ++c) {
      double m[4][4];
      for (int p = 0; p < 16; ++p)
        m[p / 4][p % 4] = partial[(size_t)(p * O4 * C4 + (o / 4 * 4) * C4 + (c / 4) * 16 + (o % 4) * 4 + c % 4)];
      double z[3][4];  // G^T m
      for (int j = 0; j < 4; ++j) {
        z[0][j] = m[0][j] + 0.5 * (m[1][j] + m[2][j]);
        z[1][j] = 0.5 * (m[1][j] - m[2][j]);
        z[2][j] = 0.5 * (m[1][j] + m[2][j]) + m[3][j];
      }
      float* out = dw + (o * g.C + c) * 9;
      for (int r = 0; r < 3; ++r) {  // (G^T m) G
        out[r * 3 + 0] = (float)(z[r][0] + 0.5 * (z[r][1] + z[r][2]));
        out[r * 3 + 1] = (float)(0.5 * (z[r][1] - z[r][2]));
        out[r * 3 + 2] = (float)(0.5 * (z[r][1] + z[r][2]) + z[r][3]);
      }
    }
}

bool worth_it(const ConvGeom& g) {
  return g.OH >= 8 && g.OW >= 8 && g.C >= 8 && g.O >= 8;
}

}  // namespace

bool conv_winograd_supported(const ConvGeom& g) {
  return g.KH == 3 && g.KW == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 &&
         g.groups == 1 && g.ph >= 0 && g.ph <= 2 && g.pw >= 0 && g.pw <= 2 && g.OH > 0 &&
         g.OW > 0;
}

bool conv_winograd_preferred(const ConvGeom& g) {
  return conv_winograd_enabled() && conv_winograd_supported(g) && worth_it(g);
}

bool conv_winograd_data_preferred(const ConvGeom& g) {
  return conv_winograd_preferred(g) && conv_winograd_preferred(conv_data_grad_geom(g));
}

// Below 16x16 outputs a pass's tiles are few per image, so the dot products are short and their
// lane reductions weigh: measured slower than the direct weight gradient at 8x8 (64 and 256
// channels), faster from 16x16 up (bench-ops, docs/perf.md).
bool conv_winograd_weight_preferred(const ConvGeom& g) {
  return conv_winograd_preferred(g) && g.OH * g.OW >= 256;
}

void conv2d_forward_winograd(float* y, const float* x, const float* w, const float* b,
                             const ConvGeom& g, const ConvEpilogue<float>* ep, int tile_nq) {
  LB_CHECK(conv_winograd_supported(g), "conv2d_forward_winograd: not a 3x3 stride-1 convolution "
           "with one group and padding at most 2");
  winograd_conv(y, x, w, b, g, ep, tile_nq);
}

void conv2d_backward_data_winograd(float* dx, const float* dy, const float* w, const ConvGeom& g,
                                   int tile_nq) {
  LB_CHECK(conv_winograd_supported(g), "conv2d_backward_data_winograd: not a 3x3 stride-1 "
           "convolution with one group and padding at most 2");
  const std::vector<float> wt = conv_data_grad_weights(w, g);
  winograd_conv(dx, dy, wt.data(), nullptr, conv_data_grad_geom(g), nullptr, tile_nq);
}

void conv2d_backward_weight_winograd(float* dw, const float* dy, const float* x,
                                     const ConvGeom& g) {
  LB_CHECK(conv_winograd_supported(g), "conv2d_backward_weight_winograd: not a 3x3 stride-1 "
           "convolution with one group and padding at most 2");
  winograd_wgrad(dw, dy, x, g);
}

#endif  // LB_SIMD

}  // namespace lowbit
