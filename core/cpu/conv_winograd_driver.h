// The Winograd forward driver that F(2x2, 3x3) (conv_winograd.cpp) and F(4x4, 3x3)
// (conv_winograd4.cpp) share: passes of images on phase planes, blocks of tiles, the products on
// the direct kernels' register tiles, the outputs stored run by run. Each algorithm supplies its
// transforms as a policy class:
//   struct Alg {
//     static constexpr int R;      // output tile R x R (input tile R + 2), phases R x R
//     static void gvec(double g0, double g1, double g2, double* u);  // u = G g, R + 2 values
//     static void fill_planes(float* P, const float* x, int64_t im, const Tiling& t);
//     static void input_transform(float* Vb, int64_t ps, const float* P, const BlockScan& s,
//                                 const Tiling& t);
//     template <bool Acc>  // Acc: add into y (store_row)
//     static void output_transform(float* y, const float* Mb, int64_t ps, const RunsOfBlock& runs,
//                                  int64_t o, float bias, const Tiling& t, float* row);
//   };
// Private to the Winograd files; the algorithm and the layout are described at the top of
// conv_winograd.cpp.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/cpu/conv_epilogue.h"
#include "core/cpu/conv_util.h"
#include "core/cpu/conv_winograd_planes.h"
#include "core/error.h"
#include "core/parallel.h"

#ifdef LB_SIMD

namespace lowbit {
namespace winograd {

constexpr int64_t kBlockBytes = 384 << 10;  // a block's V and M (all positions): in L2
constexpr int64_t kPassBytes = 128 << 10;   // a pass's planes or its outputs, at most about
constexpr int64_t kMinTiles = 64;           // tiles a pass and a block, at least

// Passes of about kPassBytes of planes (or outputs), blocks of V and M that fit L2, for R x R
// output tiles ((R + 2)^2 positions, R x R phase planes).
inline Tiling make_tiling(const ConvGeom& g, int R, int64_t chunk_images, int force_nq) {
  Tiling t = base_tiling(g, R);
  const int64_t positions = (R + 2) * (R + 2);
  // At least kMinTiles tiles a pass and a block, whatever the bytes: with few tiles an image
  // (4 at 4x4) and many channels, one image a pass filled a quarter of the vector lanes, and a
  // short block streamed all positions' weights for a handful of tiles.
  const int64_t per_image = R * R * std::max(g.C, g.O) * t.S * (int64_t)sizeof(float);
  const int64_t m = std::max(kPassBytes / per_image, (kMinTiles + t.tiles() - 1) / t.tiles());
  set_pass(t, std::max<int64_t>(1, std::min<int64_t>(chunk_images, m)));
  t.nq = conv_tiles::pick_nq(g.O, t.m * t.tiles(), force_nq);
  const int64_t tile = t.nq * W;
  const int64_t fit = kBlockBytes / (int64_t)sizeof(float) / (positions * (g.C + g.O));
  const int64_t want = std::max(fit, kMinTiles);
  t.Tb = std::min(std::max(tile, want / tile * tile), round_up(t.m * t.tiles(), tile));
  t.ld = t.Tb + W;
  return t;
}

// A block of output channels [o, o + mr), its U_p packed channel-major at `packed` within each
// position's slab.
struct Block {
  int64_t o, mr, packed;
};

// U_p = (G g G^T)[p] for every (o, c), computed in double and rounded once, then packed per
// position for the register tile: blocks of at most max_mr channels, equal in size; positions us
// floats apart (odd_lines(O * C)). U comes from the calling thread's scratch (16 MB at 512
// channels, which allocated and zeroed per call cost a sixth of the layer's time).
template <class Alg>
const float* transform_weights(std::vector<Block>& blocks, const float* w, int64_t O, int64_t C,
                               int64_t max_mr, int64_t us) {
  constexpr int A = Alg::R + 2;
  float* U = thread_scratch(kScratchWinoWeights, (size_t)(A * A * us));
  const int64_t nblocks = (O + max_mr - 1) / max_mr;
  for (int64_t bi = 0, at = 0; bi < nblocks; ++bi) {
    const int64_t o = bi * O / nblocks, mr = (bi + 1) * O / nblocks - o;
    blocks.push_back({o, mr, at});
    at += mr * C;
  }
  // Over the threads, a block at a time (each writes its own U entries): at 512 channels the
  // transform is millions of values in double, serial otherwise.
  parallel_for((int64_t)blocks.size(), max_mr * C * 16 * A, [&](int64_t b0, int64_t b1) {
    for (int64_t bi = b0; bi < b1; ++bi) {
      const Block& bl = blocks[(size_t)bi];
      for (int64_t c = 0; c < C; ++c)  // i innermost: each position's stores run consecutively
        for (int64_t i = 0; i < bl.mr; ++i) {
          const float* g = w + ((bl.o + i) * C + c) * 9;
          double gg[A][3];  // G g, column by column
          for (int k = 0; k < 3; ++k) {
            double col[A];
            Alg::gvec(g[k], g[3 + k], g[6 + k], col);
            for (int r = 0; r < A; ++r) gg[r][k] = col[r];
          }
          for (int r = 0; r < A; ++r) {  // (G g) G^T
            double u[A];
            Alg::gvec(gg[r][0], gg[r][1], gg[r][2], u);
            for (int s = 0; s < A; ++s)
              U[(size_t)((r * A + s) * us + bl.packed + c * bl.mr + i)] = (float)u[s];
          }
        }
    }
  });
  return U;
}

// Within one vector of a block's tiles, a run of lanes [lane, lane + len) on one tile row: its
// output rows start at y offset `at` (from the pass's first image, channel 0), `cols` outputs wide
// (R * len, less where the row's last tile sticks out), `rows` of them (R, less at the bottom);
// `direct` when its outputs are whole vectors of the interleaved rows, stored straight to y;
// `halves` when they are whole half vectors (AVX-512: 8-float rows, such as F(4x4)'s two tiles
// of an 8x8 output), stored straight to y half by half.
struct Run {
  int lane, len;
  int64_t at, cols;
  int rows;
  bool direct, halves;
};
using RunsOfBlock = std::vector<std::vector<Run>>;  // per vector of the block's tiles

inline RunsOfBlock block_runs(int64_t t0, int64_t nt, int R, const Tiling& t) {
  RunsOfBlock runs;
  for (int64_t v = 0; v < nt; v += W) {
    std::vector<Run> rv;
    for (int64_t l = 0; l < W && v + l < nt;) {
      const int64_t tt = t0 + v + l, im = tt / t.tiles(), th = (tt % t.tiles()) / t.TW;
      const int64_t tw = tt % t.TW;
      const int64_t len = std::min<int64_t>({W - l, nt - v - l, t.TW - tw});
      const int64_t cols = std::min(R * len, t.OW - R * tw);
      const bool whole = cols == R * len;
      const bool direct = whole && (R * l) % W == 0 && (R * len) % W == 0;
      const bool halves =
          LB_SIMD == 512 && whole && !direct && (R * l) % 8 == 0 && (R * len) % 8 == 0;
      rv.push_back({(int)l, (int)len, im * t.O * t.OH * t.OW + R * th * t.OW + R * tw, cols,
                    (int)std::min<int64_t>(R, t.OH - R * th), direct, halves});
      l += len;
    }
    runs.push_back(std::move(rv));
  }
  return runs;
}

// out[0] = lanes 0 .. W/2 of a and b interleaved (a0 b0 a1 b1 ...), out[1] = lanes W/2 .. W.
inline void interleave2(V* out, V a, V b) {
#if LB_SIMD == 512
  const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i ih = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  out[0] = _mm512_permutex2var_ps(a, il, b);
  out[1] = _mm512_permutex2var_ps(a, ih, b);
#else
  alignas(32) float ta[W], tb[W], o[2 * W];
  Simd::store(ta, a), Simd::store(tb, b);
  for (int l = 0; l < W; ++l) o[2 * l] = ta[l], o[2 * l + 1] = tb[l];
  out[0] = Simd::load(o), out[1] = Simd::load(o + W);
#endif
}

// Stores output row i of one vector's tiles into channel plane yo: out holds R vectors, tile lane
// l's R outputs at floats [R*l, R*l + R). Direct runs go straight to y (a buffer and a copy per
// run made the output transform of 32x32 layers 5% slower), and so do runs of half vectors (8x8
// outputs on F(4x4): through the buffer, their masked copies took about a tenth of the Winograd
// forward's own samples in a ResNet-20 training step); the others through `row` (R * W floats).
// With Acc the outputs are added into what y holds (y + output, the engine's order when it adds a
// gradient into a pending one), instead of stored over it.
template <int R, bool Acc = false>
inline void store_row(float* yo, int i, const V* out, const std::vector<Run>& runs, int64_t OW,
                      float* row) {
  bool buffered = false;
  for (const Run& r : runs) {
    if (i >= r.rows) continue;
    float* dst = yo + r.at + i * OW;
    if (r.direct) {
      for (int k = R * r.lane / W; k < R * (r.lane + r.len) / W; ++k) {
        float* d = dst + k * W - R * r.lane;
        Simd::store(d, Acc ? Simd::add(Simd::load(d), out[k]) : out[k]);
      }
      continue;
    }
#if LB_SIMD == 512
    if (r.halves) {  // half h of out[h / 2] to d: lanes 0-7 stored at d, or lanes 8-15 at d - 8 + 8
      for (int h = R * r.lane / 8; h < R * (r.lane + r.len) / 8; ++h) {
        float* d = dst + h * 8 - R * r.lane - (h & 1) * 8;
        const __mmask16 m = h & 1 ? 0xFF00 : 0x00FF;
        const V v = out[h / 2];
        _mm512_mask_storeu_ps(d, m, Acc ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), v) : v);
      }
      continue;
    }
#endif
    if (!buffered) {
      for (int k = 0; k < R; ++k) Simd::store(row + k * W, out[k]);
      buffered = true;
    }
    copy_floats<Acc>(dst, row + R * r.lane, r.cols);
  }
}

// The blocks of a pass of `images` images, each with its plane positions and output runs: the
// same for every full pass of a call, so computed once (and again only for a short last pass).
struct BlockPlan {
  int64_t t0, nt;
  BlockScan scan;
  RunsOfBlock runs;
};

inline std::vector<BlockPlan> plan_blocks(int64_t images, int R, const Tiling& t) {
  std::vector<BlockPlan> plans;
  const int64_t T = images * t.tiles();
  for (int64_t t0 = 0; t0 < T; t0 += t.Tb) {
    const int64_t nt = std::min(t.Tb, T - t0);
    plans.push_back({t0, nt, scan_block(t0, t0 + nt, t), block_runs(t0, nt, R, t)});
  }
  return plans;
}

// y = conv(x, w) + b (b may be null), then the epilogue (the contract of conv2d_forward_cpu);
// with accumulate, y += conv(x, w) + b instead (no epilogue).
template <class Alg>
void forward(float* y, const float* x, const float* w, const float* b, const ConvGeom& g,
             const ConvEpilogue<float>* ep, int force_nq, bool accumulate = false) {
  constexpr int R = Alg::R, kPos = (R + 2) * (R + 2);
  LB_CHECK(!(accumulate && ep), "conv2d winograd: an epilogue on outputs added into y");
  LB_CHECK(force_nq >= 0 && force_nq <= conv_tiles::kMaxNQ, "conv2d winograd: tile of ", force_nq,
           " position vectors, this build has 1 to ", conv_tiles::kMaxNQ);
  const int64_t chunk_images = (g.N + conv_image_chunks(g.N) - 1) / conv_image_chunks(g.N);
  const Tiling t = make_tiling(g, R, chunk_images, force_nq);
  const int nq = (int)t.nq;
  const int64_t tile = nq * W, ohw = g.OH * g.OW;
  const int64_t vs = slab(g.C, t), ms = slab(g.O, t), us = odd_lines(g.O * g.C);
  std::vector<Block> blocks;
  const float* U = transform_weights<Alg>(blocks, w, g.O, g.C, conv_tiles::max_mr(nq), us);
  std::vector<int64_t> koff((size_t)g.C);
  for (int64_t c = 0; c < g.C; ++c) koff[(size_t)c] = c * t.ld;
  // R tells the two tile sizes' plane layouts apart (their zero borders differ).
  const uint64_t layout = scratch_layout({R, g.C, g.H, g.W, g.ph, g.pw, t.m, t.run});
  const std::vector<BlockPlan> full_pass = plan_blocks(t.m, R, t);
  conv_for_image_chunks(g.N, g.O * g.C * kPos * ohw / (R * R), [&](int64_t, int64_t n0, int64_t n1) {
    // The planes' borders must be zero (fill_planes writes only the interiors); V's lanes past a
    // block's last tile are multiplied too, into outputs that are thrown away, so V and M need
    // no clearing.
    float* P = thread_scratch(kScratchWinoPlanes, (size_t)(g.C * R * R * t.run), layout);
    float* Vb = thread_scratch(kScratchWinoV, (size_t)(kPos * vs));
    float* Mb = thread_scratch(kScratchWinoM, (size_t)(kPos * ms));
    alignas(64) float row[R * W];
    for (int64_t n = n0; n < n1; n += t.m) {
      const int64_t images = std::min(t.m, n1 - n);
      for (int64_t im = 0; im < images; ++im)
        Alg::fill_planes(P, x + (n + im) * g.C * g.H * g.W, im, t);
      float* yn = y + n * g.O * ohw;
      std::vector<BlockPlan> short_pass;
      if (images < t.m) short_pass = plan_blocks(images, R, t);
      for (const BlockPlan& bp : images < t.m ? short_pass : full_pass) {
        const int64_t nt = bp.nt;
        Alg::input_transform(Vb, vs, P, bp.scan, t);
        for (int p = 0; p < kPos; ++p) {
          const float* Vp = Vb + p * vs;
          float* Mp = Mb + p * ms;
          const float* Up = U + p * us;
          for (int64_t j = 0; j < nt; j += tile)
            for (const Block& bl : blocks)
              conv_tiles::fwd_tile_fn(bl.mr, nq)(Mp + bl.o * t.ld + j, t.ld, Vp + j, koff.data(),
                                                 g.C, Up + bl.packed, false);
        }
        for (int64_t o = 0; o < g.O; ++o) {
          if (accumulate)
            Alg::template output_transform<true>(yn, Mb, ms, bp.runs, o, b ? b[o] : 0.0f, t, row);
          else
            Alg::template output_transform<false>(yn, Mb, ms, bp.runs, o, b ? b[o] : 0.0f, t, row);
        }
      }
      for (int64_t im = 0; ep && im < images; ++im)
        for (int64_t o = 0; o < g.O; ++o)
          conv_epilogue_plane(yn + (im * g.O + o) * ohw, ohw, ep, n + im, o, g.O);
    }
  });
}

}  // namespace winograd
}  // namespace lowbit

#endif  // LB_SIMD
