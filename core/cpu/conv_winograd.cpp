// Winograd F(2x2, 3x3) convolution, forward and data gradient (see conv_winograd.h for when and
// why; the weight gradient is conv_winograd_wgrad.cpp, the shared planes conv_winograd_planes.h).
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
#include "core/cpu/conv_winograd4.h"
#include "core/cpu/conv_winograd_planes.h"
#include "core/error.h"
#include "core/parallel.h"

namespace lowbit {

bool& conv_winograd_enabled() {
  static bool on = true;
  return on;
}

int& conv_winograd_tile() {
  static int tile = 0;
  return tile;
}

#ifndef LB_SIMD

bool conv_winograd_supported(const ConvGeom&) { return false; }
int conv_winograd_tile_for(const ConvGeom&) { return 0; }
bool conv_winograd_preferred(const ConvGeom&) { return false; }
bool conv_winograd_data_preferred(const ConvGeom&) { return false; }
bool conv_winograd_weight_preferred(const ConvGeom&) { return false; }
void conv2d_forward_winograd(float*, const float*, const float*, const float*, const ConvGeom&,
                             const ConvEpilogue<float>*, int) {
  LB_FAIL("conv2d_forward_winograd: this build has no AVX2/FMA or AVX-512 kernels");
}
void conv2d_backward_data_winograd(float*, const float*, const float*, const ConvGeom&, int) {
  LB_FAIL("conv2d_backward_data_winograd: this build has no AVX2/FMA or AVX-512 kernels");
}

#else

namespace {

using namespace winograd;

constexpr int64_t kBlockBytes = 384 << 10;  // a block's V and M (16 positions each): in L2
constexpr int64_t kPassBytes = 128 << 10;   // a pass's planes or its outputs, at most about
constexpr int64_t kMinTiles = 64;          // tiles a pass and a block, at least

// Forward: passes of about kPassBytes of planes (or outputs), blocks of V and M that fit L2.
Tiling make_tiling(const ConvGeom& g, int64_t chunk_images, int force_nq) {
  Tiling t = base_tiling(g);
  // At least kMinTiles tiles a pass and a block, whatever the bytes: with few tiles an image
  // (4 at 4x4) and many channels, one image a pass filled a quarter of the vector lanes, and a
  // short block streamed all 16 positions' weights for a handful of tiles.
  const int64_t per_image = 4 * std::max(g.C, g.O) * t.S * (int64_t)sizeof(float);
  const int64_t m = std::max(kPassBytes / per_image, (kMinTiles + t.tiles() - 1) / t.tiles());
  set_pass(t, std::max<int64_t>(1, std::min<int64_t>(chunk_images, m)));
  t.nq = conv_tiles::pick_nq(g.O, t.m * t.tiles(), force_nq);
  const int64_t tile = t.nq * W;
  const int64_t fit = kBlockBytes / (int64_t)sizeof(float) / (16 * (g.C + g.O));
  const int64_t want = std::max(fit, kMinTiles);
  t.Tb = std::min(std::max(tile, want / tile * tile), round_up(t.m * t.tiles(), tile));
  t.ld = t.Tb + W;
  return t;
}

// A block of output channels [o, o + mr), its U_p packed channel-major at `packed` within each
// position's O*C floats.
struct Block {
  int64_t o, mr, packed;
};

// U_p = (G g G^T)[p] for every (o, c), computed in double and rounded once, then packed per
// position for the register tile: blocks of at most max_mr channels, equal in size.
// U is 16*O*C floats from the calling thread's scratch (16 MB at 512 channels, which allocated
// and zeroed per call cost a sixth of the layer's time).
const float* transform_weights(std::vector<Block>& blocks, const float* w, int64_t O, int64_t C,
                               int64_t max_mr) {
  const int64_t us = odd_lines(O * C);  // between positions (conv_winograd_planes.h)
  float* U = thread_scratch(kScratchWinoWeights, (size_t)(16 * us));
  const int64_t nblocks = (O + max_mr - 1) / max_mr;
  for (int64_t bi = 0, at = 0; bi < nblocks; ++bi) {
    const int64_t o = bi * O / nblocks, mr = (bi + 1) * O / nblocks - o;
    blocks.push_back({o, mr, at});
    at += mr * C;
  }
  // Over the threads, a block at a time (each writes its own U entries): at 512 channels the
  // transform is 4M values in double, serial otherwise.
  parallel_for((int64_t)blocks.size(), max_mr * C * 64, [&](int64_t b0, int64_t b1) {
    for (int64_t bi = b0; bi < b1; ++bi) {
      const Block& bl = blocks[(size_t)bi];
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
              U[(size_t)((r * 4 + s) * us + bl.packed + c * bl.mr + i)] = (float)u[s];
          }
        }
    }
  });
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

// Writes lanes 0 .. W of a and b interleaved (a0 b0 a1 b1 ...): the first half of the lanes'
// 2W floats to lo[0 .. W), the second half's to hi[0 .. W).
void interleave(float* lo, float* hi, V a, V b) {
#if LB_SIMD == 512
  const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i ih = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  _mm512_storeu_ps(lo, _mm512_permutex2var_ps(a, il, b));
  _mm512_storeu_ps(hi, _mm512_permutex2var_ps(a, ih, b));
#else
  alignas(32) float ta[W], tb[W];
  Simd::store(ta, a), Simd::store(tb, b);
  for (int l = 0; l < W / 2; ++l) lo[2 * l] = ta[l], lo[2 * l + 1] = tb[l];
  for (int l = W / 2; l < W; ++l) hi[2 * l - W] = ta[l], hi[2 * l - W + 1] = tb[l];
#endif
}

// y tiles of channel o = A^T M A + bias for the block's tiles.
void output_transform(float* y, const float* Mb, int64_t ps,
                      const std::vector<std::vector<Run>>& runs, int64_t o, float bias,
                      const Tiling& t) {
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
    const std::vector<Run>& rv = runs[vi];
    // Where each half of the vector's tiles is one run of two whole output rows (rows of W or
    // W/2 tiles: 32x32 and 16x16 outputs with AVX-512), the interleaved rows go straight to y,
    // not through `row` and the per-run copies.
    const bool halves = (rv.size() == 1 && rv[0].len == W && rv[0].cols == 2 * W && rv[0].two) ||
                        (rv.size() == 2 && rv[0].len == W / 2 && rv[1].len == W / 2 &&
                         rv[0].cols == W && rv[1].cols == W && rv[0].two && rv[1].two);
    const int64_t at_hi = halves ? (rv.size() == 1 ? rv[0].at + W : rv[1].at) : 0;
#pragma GCC unroll 2
    for (int i = 0; i < 2; ++i)  // (A^T M) A, plus the bias: output row i of each tile
      interleave(halves ? yo + rv[0].at + i * t.OW : row[i],
                 halves ? yo + at_hi + i * t.OW : row[i] + W,
                 Simd::add(Simd::add(Simd::add(s[i][0], s[i][1]), s[i][2]), vb),
                 Simd::add(Simd::sub(Simd::sub(s[i][1], s[i][2]), s[i][3]), vb));
    if (halves) continue;
    for (const Run& r : rv) {
      float* dst = yo + r.at;
      copy_floats(dst, row[0] + 2 * r.lane, r.cols);
      if (r.two) copy_floats(dst + t.OW, row[1] + 2 * r.lane, r.cols);
    }
  }
}

// The blocks of a pass of `images` images, each with its plane positions and output runs: the
// same for every full pass of a call, so computed once (and again only for a short last pass).
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

void winograd_conv(float* y, const float* x, const float* w, const float* b, const ConvGeom& g,
                   const ConvEpilogue<float>* ep, int force_nq) {
  LB_CHECK(force_nq >= 0 && force_nq <= conv_tiles::kMaxNQ, "conv2d winograd: tile of ", force_nq,
           " position vectors, this build has 1 to ", conv_tiles::kMaxNQ);
  const int64_t chunk_images = (g.N + conv_image_chunks(g.N) - 1) / conv_image_chunks(g.N);
  const Tiling t = make_tiling(g, chunk_images, force_nq);
  const int nq = (int)t.nq;
  const int64_t tile = nq * W, ohw = g.OH * g.OW;
  std::vector<Block> blocks;
  const float* U = transform_weights(blocks, w, g.O, g.C, conv_tiles::max_mr(nq));
  std::vector<int64_t> koff((size_t)g.C);
  for (int64_t c = 0; c < g.C; ++c) koff[(size_t)c] = c * t.ld;
  const uint64_t layout = scratch_layout({1, g.C, g.H, g.W, g.ph, g.pw, t.m, t.run});
  const std::vector<BlockPlan> full_pass = plan_blocks(t.m, t);
  const int64_t vs = slab(g.C, t), ms = slab(g.O, t), us = odd_lines(g.O * g.C);
  conv_for_image_chunks(g.N, g.O * g.C * 16 * ohw / 4, [&](int64_t, int64_t n0, int64_t n1) {
    // The planes' borders must be zero (fill_planes writes only the interiors); V's lanes past a
    // block's last tile are multiplied too, into outputs that are thrown away, so V and M need
    // no clearing.
    float* P = thread_scratch(kScratchWinoPlanes, (size_t)(g.C * 4 * t.run), layout);
    float* Vb = thread_scratch(kScratchWinoV, (size_t)(16 * vs));
    float* Mb = thread_scratch(kScratchWinoM, (size_t)(16 * ms));
    for (int64_t n = n0; n < n1; n += t.m) {
      const int64_t images = std::min(t.m, n1 - n);
      for (int64_t im = 0; im < images; ++im) fill_planes(P, x + (n + im) * g.C * g.H * g.W, im, t);
      float* yn = y + n * g.O * ohw;
      std::vector<BlockPlan> short_pass;
      if (images < t.m) short_pass = plan_blocks(images, t);
      for (const BlockPlan& bp : images < t.m ? short_pass : full_pass) {
        const int64_t nt = bp.nt;
        input_transform(Vb, vs, P, bp.scan, t);
        for (int p = 0; p < 16; ++p) {
          const float* Vp = Vb + p * vs;
          float* Mp = Mb + p * ms;
          const float* Up = U + p * us;
          for (int64_t j = 0; j < nt; j += tile)
            for (const Block& bl : blocks)
              conv_tiles::fwd_tile_fn(bl.mr, nq)(Mp + bl.o * t.ld + j, t.ld, Vp + j, koff.data(),
                                                 g.C, Up + bl.packed, false);
        }
        for (int64_t o = 0; o < g.O; ++o)
          output_transform(yn, Mb, ms, bp.runs, o, b ? b[o] : 0.0f, t);
      }
      for (int64_t im = 0; ep && im < images; ++im)
        for (int64_t o = 0; o < g.O; ++o)
          conv_epilogue_plane(yn + (im * g.O + o) * ohw, ohw, ep, n + im, o, g.O);
    }
  });
}

// Measured with bench-ops (docs/perf.md): from 4x4 outputs up (ResNet-18's 512-channel stage
// too, once a pass held enough images to fill the vectors), and not for the RGB stem.
bool worth_it(const ConvGeom& g) {
  return g.OH >= 4 && g.OW >= 4 && g.C >= 8 && g.O >= 8;
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

int conv_winograd_tile_for(const ConvGeom& g) {
  const int forced = conv_winograd_tile();
  LB_CHECK(forced == 0 || forced == 2 || forced == 4, "conv2d winograd: output tiles of 2 or 4 "
           "(0: by geometry), got ", forced);
  if (forced) return forced;
  return g.OH >= 8 && g.OW >= 8 ? 4 : 2;
}

void conv2d_forward_winograd(float* y, const float* x, const float* w, const float* b,
                             const ConvGeom& g, const ConvEpilogue<float>* ep, int tile_nq) {
  LB_CHECK(conv_winograd_supported(g), "conv2d_forward_winograd: not a 3x3 stride-1 convolution "
           "with one group and padding at most 2");
  if (conv_winograd_tile_for(g) == 4) return winograd4_conv(y, x, w, b, g, ep, tile_nq);
  winograd_conv(y, x, w, b, g, ep, tile_nq);
}

void conv2d_backward_data_winograd(float* dx, const float* dy, const float* w, const ConvGeom& g,
                                   int tile_nq) {
  LB_CHECK(conv_winograd_supported(g), "conv2d_backward_data_winograd: not a 3x3 stride-1 "
           "convolution with one group and padding at most 2");
  const std::vector<float> wt = conv_data_grad_weights(w, g);
  const ConvGeom gt = conv_data_grad_geom(g);
  if (conv_winograd_tile_for(gt) == 4) return winograd4_conv(dx, dy, wt.data(), nullptr, gt, nullptr, tile_nq);
  winograd_conv(dx, dy, wt.data(), nullptr, gt, nullptr, tile_nq);
}

#endif  // LB_SIMD

}  // namespace lowbit
