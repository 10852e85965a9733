// Winograd F(4x4, 3x3) convolution, forward and data gradient: the larger-tile sibling of
// conv_winograd.cpp's F(2x2, 3x3), on the same phase planes, blocks and register tiles (read that
// file first; this one only says what differs).
//
// One 4x4 output tile Y from the 6x6 input tile d under it (rows 4*th - ph .. +5, columns
// 4*tw - pw .. +5) and the 3x3 kernel g, with the interpolation points 0, 1, -1, 2, -2, infinity:
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A
//   B^T = | 4  0 -5  0  1  0 |   G = |  1/4     0     0  |   A^T = | 1  1  1  1  1  0 |
//         | 0 -4 -4  1  1  0 |       | -1/6  -1/6  -1/6 |         | 0  1 -1  2 -2  0 |
//         | 0  4 -4 -1  1  0 |       | -1/6   1/6  -1/6 |         | 0  1  1  4  4  0 |
//         | 0 -2 -1  2  1  0 |       | 1/24  1/12   1/6 |         | 0  1 -1  8 -8  1 |
//         | 0  2 -1 -2  1  0 |       | 1/24 -1/12   1/6 |
//         | 0  4  0 -5  0  1 |       |  0     0      1  |
// 36 products per tile and channel pair for 16 outputs (2.25 an output, against F(2x2)'s 4 and the
// direct sum's 9), and 36 transformed values a tile instead of 16 for 4 outputs: 0.44x the
// transformed data per output. The coefficients up to 8 (and 1/24 in G) make its float32 rounding
// a few times F(2x2)'s; the tests bound it against float64.
//
// The planes are 4x4 phases: phase (a, b) holds padded pixel (4R + a, 4C + b) at (R, C), so element
// (i, j) of tile (th, tw) sits in phase (i % 4, j % 4) at (th + i/4, tw + j/4).
#include "core/cpu/conv_winograd4.h"

#include <algorithm>
#include <vector>

#include "core/cpu/conv_epilogue.h"
#include "core/cpu/conv_util.h"
#include "core/cpu/conv_winograd_planes.h"
#include "core/error.h"
#include "core/parallel.h"

namespace lowbit {

#ifdef LB_SIMD

namespace {

using namespace winograd;

constexpr int kPos = 36;                    // positions of the 6x6 Winograd domain
constexpr int64_t kBlockBytes = 384 << 10;  // a block's V and M (36 positions each): in L2
constexpr int64_t kPassBytes = 128 << 10;   // a pass's planes or its outputs, at most about
constexpr int64_t kMinTiles = 64;           // tiles a pass and a block, at least

Tiling make_tiling(const ConvGeom& g, int64_t chunk_images, int force_nq) {
  Tiling t = base_tiling(g, 4);
  const int64_t per_image = 16 * std::max(g.C, g.O) * t.S * (int64_t)sizeof(float);
  const int64_t m = std::max(kPassBytes / per_image, (kMinTiles + t.tiles() - 1) / t.tiles());
  set_pass(t, std::max<int64_t>(1, std::min<int64_t>(chunk_images, m)));
  t.nq = conv_tiles::pick_nq(g.O, t.m * t.tiles(), force_nq);
  const int64_t tile = t.nq * W;
  const int64_t fit = kBlockBytes / (int64_t)sizeof(float) / (kPos * (g.C + g.O));
  const int64_t want = std::max(fit, kMinTiles);
  t.Tb = std::min(std::max(tile, want / tile * tile), round_up(t.m * t.tiles(), tile));
  t.ld = t.Tb + W;
  return t;
}

// Scatters one image row: padded column col = w + pw goes to phase col % 4 at col / 4, so the
// elements w = 4i + k (one residue k) all land in one phase, consecutively: a deinterleave by 4.
void split_row4(float* const ph[4], const float* src, int64_t n, int64_t pw) {
  float* dst[4];
  for (int k = 0; k < 4; ++k) dst[k] = ph[(k + pw) % 4] + (k + pw) / 4;
#if LB_SIMD == 512
  // 32 floats at a time (a last, shorter chunk masked): residue k's elements are lanes k, k+4,
  // ... of the two vectors, gathered into the low lanes by one permute.
  int64_t at = 0;
  for (; at + 32 <= n; at += 32) {
    const __m512 a = _mm512_loadu_ps(src + at), b = _mm512_loadu_ps(src + at + 16);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512i idx = _mm512_setr_epi32(k, 4 + k, 8 + k, 12 + k, 16 + k, 20 + k, 24 + k, 28 + k,
                                            0, 0, 0, 0, 0, 0, 0, 0);
      _mm512_mask_storeu_ps(dst[k] + at / 4, 0x00FF, _mm512_permutex2var_ps(a, idx, b));
    }
  }
  if (at + 16 <= n) {  // 16 floats (rows of 16, or the rest of a longer row)
    const __m512 a = _mm512_loadu_ps(src + at);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512i idx = _mm512_setr_epi32(k, 4 + k, 8 + k, 12 + k, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
      _mm512_mask_storeu_ps(dst[k] + at / 4, 0x000F, _mm512_permutex2var_ps(a, idx, a));
    }
    at += 16;
  }
  if (at + 8 <= n) {  // 8 floats (rows of 8)
    const __m256 a = _mm256_loadu_ps(src + at);
    // lanes k and k + 4 of a to dst[k]: the two 128-bit halves transposed as 4x2
    const __m256 lo = _mm256_permute2f128_ps(a, a, 0x00), hi = _mm256_permute2f128_ps(a, a, 0x11);
    const __m128 l = _mm256_castps256_ps128(lo), h = _mm256_castps256_ps128(hi);
    const __m128 e01 = _mm_unpacklo_ps(l, h), e23 = _mm_unpackhi_ps(l, h);  // l0 h0 l1 h1 | l2 h2 l3 h3
    _mm_storel_pi((__m64*)(dst[0] + at / 4), e01);
    _mm_storeh_pi((__m64*)(dst[1] + at / 4), e01);
    _mm_storel_pi((__m64*)(dst[2] + at / 4), e23);
    _mm_storeh_pi((__m64*)(dst[3] + at / 4), e23);
    at += 8;
  }
  for (; at < n; ++at) dst[at % 4][at / 4] = src[at];
#else
  for (int64_t i = 0; 4 * i < n; ++i)
    for (int k = 0; k < 4 && 4 * i + k < n; ++k) dst[k][i] = src[4 * i + k];
#endif
}

// Copies image x (C, H, W) into slot im of the pass's phase planes P (channel c, phase a*4 + b at
// P + (c*16 + a*4 + b) * run); the borders stay zero (zeroed once, never written).
void fill_planes4(float* P, const float* x, int64_t im, const Tiling& t) {
  for (int64_t c = 0; c < t.C; ++c)
    for (int64_t h = 0; h < t.H; ++h) {
      const int64_t r = h + t.ph;
      float* row = P + (c * 16 + (r & 3) * 4) * t.run + im * t.S + (r >> 2) * t.Wq;
      float* const ph[4] = {row, row + t.run, row + 2 * t.run, row + 3 * t.run};
      split_row4(ph, x + (c * t.H + h) * t.Wd, t.Wd, t.pw);
    }
}

// B^T applied to one column (or row) of six tile vectors.
struct InputTransform {
  V four = splat(4.f), m4 = splat(-4.f), m5 = splat(-5.f);
  static V splat(float v) { return Simd::bcast(&v); }
  void operator()(V* t, const V* d) const {
    const V a = Simd::fma(m4, d[2], d[4]);  // d4 - 4 d2
    const V b = Simd::fma(m4, d[1], d[3]);  // d3 - 4 d1
    const V c = Simd::sub(d[4], d[2]);
    const V h = Simd::sub(d[3], d[1]);
    const V e = Simd::add(h, h);            // 2 (d3 - d1)
    t[0] = Simd::fma(four, d[0], Simd::fma(m5, d[2], d[4]));
    t[1] = Simd::add(a, b);
    t[2] = Simd::sub(a, b);
    t[3] = Simd::add(c, e);
    t[4] = Simd::sub(c, e);
    t[5] = Simd::fma(four, d[1], Simd::fma(m5, d[3], d[5]));
  }
};

// V[p][c][0 .. nt) = (B^T d B)[p] for the block's nt tiles, rows of t.ld floats, position slabs
// ps floats apart.
void input_transform4(float* Vb, int64_t ps, const float* P, const BlockScan& scan,
                      const Tiling& t) {
  const InputTransform bt;
  for (int64_t c = 0; c < t.C; ++c) {
    const float* ph[16];
    for (int a = 0; a < 16; ++a) ph[a] = P + (c * 16 + a) * t.run;
    float* out = Vb + c * t.ld;
    int64_t n = 0;
    for (size_t vi = 0; vi < scan.q.size(); ++vi) {
      const int64_t q = scan.q[vi];
      V tt[6][6];  // B^T d, column by column
#pragma GCC unroll 6
      for (int j = 0; j < 6; ++j) {
        V d[6], col[6];
#pragma GCC unroll 6
        for (int i = 0; i < 6; ++i)
          d[i] = Simd::load(ph[(i & 3) * 4 + (j & 3)] + (i >> 2) * t.Wq + (j >> 2) + q);
        bt(col, d);
#pragma GCC unroll 6
        for (int i = 0; i < 6; ++i) tt[i][j] = col[i];
      }
      const unsigned mask = scan.masks[vi];
      int cnt = W;
#pragma GCC unroll 6
      for (int i = 0; i < 6; ++i) {  // (B^T d) B, row by row
        V u[6];
        bt(u, tt[i]);
        if (mask == kAllLanes) {
#pragma GCC unroll 6
          for (int k = 0; k < 6; ++k) Simd::store(out + (i * 6 + k) * ps + n, u[k]);
        } else {
#pragma GCC unroll 6
          for (int k = 0; k < 6; ++k) cnt = store_packed(out + (i * 6 + k) * ps + n, u[k], mask);
        }
      }
      n += cnt;
    }
  }
}

// U_p = (G g G^T)[p] for every (o, c), in double and rounded once, packed per position for the
// register tile in blocks of at most max_mr channels (as conv_winograd.cpp's transform_weights).
struct Block {
  int64_t o, mr, packed;
};

const float* transform_weights4(std::vector<Block>& blocks, const float* w, int64_t O, int64_t C,
                                int64_t max_mr) {
  const int64_t us = odd_lines(O * C);
  float* U = thread_scratch(kScratchWinoWeights, (size_t)(kPos * us));
  const int64_t nblocks = (O + max_mr - 1) / max_mr;
  for (int64_t bi = 0, at = 0; bi < nblocks; ++bi) {
    const int64_t o = bi * O / nblocks, mr = (bi + 1) * O / nblocks - o;
    blocks.push_back({o, mr, at});
    at += mr * C;
  }
  // G times a 3-vector; products by the reciprocals, not divisions (54 divisions a weight made the
  // transform of a 64-channel layer cost as much as its input transforms).
  auto gvec = [](double g0, double g1, double g2, double* u) {
    constexpr double k6 = 1.0 / 6, k12 = 1.0 / 12, k24 = 1.0 / 24;
    u[0] = 0.25 * g0;
    u[1] = -k6 * (g0 + g1 + g2);
    u[2] = -k6 * (g0 - g1 + g2);
    u[3] = k24 * g0 + k12 * g1 + k6 * g2;
    u[4] = k24 * g0 - k12 * g1 + k6 * g2;
    u[5] = g2;
  };
  parallel_for((int64_t)blocks.size(), max_mr * C * 128, [&](int64_t b0, int64_t b1) {
    for (int64_t bi = b0; bi < b1; ++bi) {
      const Block& bl = blocks[(size_t)bi];
      for (int64_t c = 0; c < C; ++c)  // i innermost: each position's stores run consecutively
        for (int64_t i = 0; i < bl.mr; ++i) {
          const float* g = w + ((bl.o + i) * C + c) * 9;
          double gg[6][3];  // G g, column by column
          for (int k = 0; k < 3; ++k) {
            double col[6];
            gvec(g[k], g[3 + k], g[6 + k], col);
            for (int r = 0; r < 6; ++r) gg[r][k] = col[r];
          }
          for (int r = 0; r < 6; ++r) {  // (G g) G^T
            double u[6];
            gvec(gg[r][0], gg[r][1], gg[r][2], u);
            for (int s = 0; s < 6; ++s)
              U[(size_t)((r * 6 + s) * us + bl.packed + c * bl.mr + i)] = (float)u[s];
          }
        }
    }
  });
  return U;
}

// Within one vector of a block's tiles, a run of lanes [lane, lane + len) on one tile row: its
// output rows start at y offset `at` (from the pass's first image, channel 0), `cols` outputs wide
// (4 * len, less where the row's last tile sticks out), `rows` of them (4, less at the bottom).
struct Run {
  int lane, len;
  int64_t at, cols;
  int rows;
  bool direct;  // whole vectors of the interleaved rows: stored straight to y
};

std::vector<std::vector<Run>> block_runs(int64_t t0, int64_t nt, const Tiling& t) {
  std::vector<std::vector<Run>> runs;
  for (int64_t v = 0; v < nt; v += W) {
    std::vector<Run> rv;
    for (int64_t l = 0; l < W && v + l < nt;) {
      const int64_t tt = t0 + v + l, im = tt / t.tiles(), th = (tt % t.tiles()) / t.TW;
      const int64_t tw = tt % t.TW;
      const int64_t len = std::min<int64_t>({W - l, nt - v - l, t.TW - tw});
      const int64_t cols = std::min(4 * len, t.OW - 4 * tw);
      const bool direct = (4 * l) % W == 0 && (4 * len) % W == 0 && cols == 4 * len;
      rv.push_back({(int)l, (int)len, im * t.O * t.OH * t.OW + 4 * th * t.OW + 4 * tw, cols,
                    (int)std::min<int64_t>(4, t.OH - 4 * th), direct});
      l += len;
    }
    runs.push_back(std::move(rv));
  }
  return runs;
}

// out[4l + k] = y_k[l] for the W lanes: 4W floats, as 4 vectors.
void interleave4(V* out, V y0, V y1, V y2, V y3) {
#if LB_SIMD == 512
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512d p0 = _mm512_castps_pd(_mm512_permutex2var_ps(y0, lo, y1));
  const __m512d p1 = _mm512_castps_pd(_mm512_permutex2var_ps(y0, hi, y1));
  const __m512d q0 = _mm512_castps_pd(_mm512_permutex2var_ps(y2, lo, y3));
  const __m512d q1 = _mm512_castps_pd(_mm512_permutex2var_ps(y2, hi, y3));
  const __m512i dlo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
  const __m512i dhi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
  out[0] = _mm512_castpd_ps(_mm512_permutex2var_pd(p0, dlo, q0));
  out[1] = _mm512_castpd_ps(_mm512_permutex2var_pd(p0, dhi, q0));
  out[2] = _mm512_castpd_ps(_mm512_permutex2var_pd(p1, dlo, q1));
  out[3] = _mm512_castpd_ps(_mm512_permutex2var_pd(p1, dhi, q1));
#else
  alignas(32) float y[4][W], o[4 * W];
  Simd::store(y[0], y0), Simd::store(y[1], y1), Simd::store(y[2], y2), Simd::store(y[3], y3);
  for (int l = 0; l < W; ++l)
    for (int k = 0; k < 4; ++k) o[4 * l + k] = y[k][l];
  for (int k = 0; k < 4; ++k) out[k] = Simd::load(o + k * W);
#endif
}

// A^T applied to six vectors: the four outputs.
inline void output_rows(V* y, const V* m, V two, V four, V eight) {
  const V s12 = Simd::add(m[1], m[2]), d12 = Simd::sub(m[1], m[2]);
  const V s34 = Simd::add(m[3], m[4]), d34 = Simd::sub(m[3], m[4]);
  y[0] = Simd::add(Simd::add(m[0], s12), s34);
  y[1] = Simd::fma(two, d34, d12);
  y[2] = Simd::fma(four, s34, s12);
  y[3] = Simd::add(Simd::fma(eight, d34, d12), m[5]);
}

// y tiles of channel o = A^T M A + bias for the block's tiles.
void output_transform4(float* y, const float* Mb, int64_t ps,
                       const std::vector<std::vector<Run>>& runs, int64_t o, float bias,
                       const Tiling& t) {
  float* yo = y + o * t.OH * t.OW;
  const float c2 = 2, c4 = 4, c8 = 8;
  const V vb = Simd::bcast(&bias), two = Simd::bcast(&c2), four = Simd::bcast(&c4);
  const V eight = Simd::bcast(&c8);
  alignas(64) float row[4 * W];
  for (size_t vi = 0; vi < runs.size(); ++vi) {
    const float* m = Mb + o * t.ld + (int64_t)vi * W;
    V s[4][6];  // A^T M
#pragma GCC unroll 6
    for (int j = 0; j < 6; ++j) {
      V col[6], r[4];
#pragma GCC unroll 6
      for (int i = 0; i < 6; ++i) col[i] = Simd::load(m + (i * 6 + j) * ps);
      output_rows(r, col, two, four, eight);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) s[i][j] = r[i];
    }
    const std::vector<Run>& rv = runs[vi];
    for (int i = 0; i < 4; ++i) {  // (A^T M) A, plus the bias: output row i of each tile
      V r[4], out[4];
      output_rows(r, s[i], two, four, eight);
      interleave4(out, Simd::add(r[0], vb), Simd::add(r[1], vb), Simd::add(r[2], vb),
                  Simd::add(r[3], vb));
      bool stored = false;
      for (const Run& run : rv) {
        if (i >= run.rows) continue;
        float* dst = yo + run.at + i * t.OW;
        if (run.direct) {
          for (int k = 4 * run.lane / W; k < 4 * (run.lane + run.len) / W; ++k)
            Simd::store(dst + k * W - 4 * run.lane, out[k]);
          continue;
        }
        if (!stored) {
          for (int k = 0; k < 4; ++k) Simd::store(row + k * W, out[k]);
          stored = true;
        }
        copy_floats(dst, row + 4 * run.lane, run.cols);
      }
    }
  }
}

struct BlockPlan {
  int64_t t0, nt;
  BlockScan scan;
  std::vector<std::vector<Run>> runs;
};

std::vector<BlockPlan> plan_blocks(int64_t images, const Tiling& t) {
  std::vector<BlockPlan> plans;
  const int64_t T = images * t.tiles();
  for (int64_t t0 = 0; t0 < T; t0 += t.Tb) {
    const int64_t nt = std::min(t.Tb, T - t0);
    plans.push_back({t0, nt, scan_block(t0, t0 + nt, t), block_runs(t0, nt, t)});
  }
  return plans;
}

}  // namespace

void winograd4_conv(float* y, const float* x, const float* w, const float* b, const ConvGeom& g,
                    const ConvEpilogue<float>* ep, int force_nq) {
  LB_CHECK(force_nq >= 0 && force_nq <= conv_tiles::kMaxNQ, "conv2d winograd: tile of ", force_nq,
           " position vectors, this build has 1 to ", conv_tiles::kMaxNQ);
  const int64_t chunk_images = (g.N + conv_image_chunks(g.N) - 1) / conv_image_chunks(g.N);
  const Tiling t = make_tiling(g, chunk_images, force_nq);
  const int nq = (int)t.nq;
  const int64_t tile = nq * W, ohw = g.OH * g.OW;
  std::vector<Block> blocks;
  const float* U = transform_weights4(blocks, w, g.O, g.C, conv_tiles::max_mr(nq));
  std::vector<int64_t> koff((size_t)g.C);
  for (int64_t c = 0; c < g.C; ++c) koff[(size_t)c] = c * t.ld;
  const uint64_t layout = scratch_layout({4, g.C, g.H, g.W, g.ph, g.pw, t.m, t.run});
  const std::vector<BlockPlan> full_pass = plan_blocks(t.m, t);
  const int64_t vs = slab(g.C, t), ms = slab(g.O, t);
  conv_for_image_chunks(g.N, g.O * g.C * 36 * ohw / 16, [&](int64_t, int64_t n0, int64_t n1) {
    float* P = thread_scratch(kScratchWinoPlanes, (size_t)(g.C * 16 * t.run), layout);
    float* Vb = thread_scratch(kScratchWinoV, (size_t)(kPos * vs));
    float* Mb = thread_scratch(kScratchWinoM, (size_t)(kPos * ms));
    for (int64_t n = n0; n < n1; n += t.m) {
      const int64_t images = std::min(t.m, n1 - n);
      for (int64_t im = 0; im < images; ++im) fill_planes4(P, x + (n + im) * g.C * g.H * g.W, im, t);
      float* yn = y + n * g.O * ohw;
      std::vector<BlockPlan> short_pass;
      if (images < t.m) short_pass = plan_blocks(images, t);
      for (const BlockPlan& bp : images < t.m ? short_pass : full_pass) {
        const int64_t nt = bp.nt;
        input_transform4(Vb, vs, P, bp.scan, t);
        for (int p = 0; p < kPos; ++p) {
          const float* Vp = Vb + p * vs;
          float* Mp = Mb + p * ms;
          const float* Up = U + p * odd_lines(g.O * g.C);
          for (int64_t j = 0; j < nt; j += tile)
            for (const Block& bl : blocks)
              conv_tiles::fwd_tile_fn(bl.mr, nq)(Mp + bl.o * t.ld + j, t.ld, Vp + j, koff.data(),
                                                 g.C, Up + bl.packed, false);
        }
        for (int64_t o = 0; o < g.O; ++o)
          output_transform4(yn, Mb, ms, bp.runs, o, b ? b[o] : 0.0f, t);
      }
      for (int64_t im = 0; ep && im < images; ++im)
        for (int64_t o = 0; o < g.O; ++o)
          conv_epilogue_plane(yn + (im * g.O + o) * ohw, ohw, ep, n + im, o, g.O);
    }
  });
}

#endif  // LB_SIMD

}  // namespace lowbit
