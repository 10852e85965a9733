// Direct float32 convolution on padded planes (see conv_direct.h for the idea; the register tiles
// are conv_direct_tiles.h, written against core/cpu/simd.h, so they run at the build's full vector
// width: AVX-512 or AVX2).
//
// Forward: per image, tiles of output channels x grid positions, cache-blocked over channel groups
// and tap ranges. Weight gradient: dy transposed position-major (a position's output channels in
// the vector lanes), each tile of taps x channels summed over the positions of a batch of images.
// Both sum in a fixed order.
#include "core/cpu/conv_direct.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "core/cpu/conv_util.h"
#include "core/cpu/split_row.h"
#include "core/cpu/transpose.h"
#include "core/error.h"
#include "core/cpu/simd.h"

#ifdef LB_SIMD
#include "core/cpu/conv_direct_tiles.h"
#define LB_CONV_DIRECT 1
#endif

namespace lowbit {

ConvGeom conv_data_grad_geom(const ConvGeom& g) {
  ConvGeom t = g;
  t.C = g.O, t.H = g.OH, t.W = g.OW;
  t.O = g.C, t.OH = g.H, t.OW = g.W;
  t.ph = g.dh * (g.KH - 1) - g.ph, t.pw = g.dw * (g.KW - 1) - g.pw;
  return t;
}

std::vector<float> conv_data_grad_weights(const float* w, const ConvGeom& g) {
  const int64_t og = g.O / g.groups, cg = g.C / g.groups;
  std::vector<float> wt((size_t)(g.C * og * g.KH * g.KW));
  for (int64_t gi = 0; gi < g.groups; ++gi)
    for (int64_t o = 0; o < og; ++o)
      for (int64_t c = 0; c < cg; ++c)
        for (int64_t kh = 0; kh < g.KH; ++kh)
          for (int64_t kw = 0; kw < g.KW; ++kw)
            wt[(size_t)((((gi * cg + c) * og + o) * g.KH + kh) * g.KW + kw)] =
                w[(((gi * og + o) * cg + c) * g.KH + (g.KH - 1 - kh)) * g.KW + (g.KW - 1 - kw)];
  return wt;
}

#ifndef LB_CONV_DIRECT

bool conv_direct_supported(const ConvGeom&) { return false; }
bool conv_direct_data_supported(const ConvGeom&) { return false; }
bool conv_direct_preferred(const ConvGeom&) { return false; }
bool conv_direct_data_preferred(const ConvGeom&) { return false; }
bool conv_direct_prefers_1x1() { return false; }
int conv_direct_max_tile_nq() { return 0; }
void conv2d_forward_direct(float*, const float*, const float*, const float*, const ConvGeom&, int,
                           const ConvEpilogue<float>*) {
  LB_FAIL("conv2d_forward_direct: this build has no AVX2/FMA or AVX-512 kernels");
}
void conv2d_backward_data_direct(float*, const float*, const float*, const ConvGeom&, int) {
  LB_FAIL("conv2d_backward_data_direct: this build has no AVX2/FMA or AVX-512 kernels");
}
void conv2d_backward_weight_direct(float*, const float*, const float*, const ConvGeom&) {
  LB_FAIL("conv2d_backward_weight_direct: this build has no AVX2/FMA or AVX-512 kernels");
}
struct DirectPlan {};
void DirectPlanDeleter::operator()(DirectPlan* p) const { delete p; }
DirectPlanPtr plan_direct(const float*, const ConvGeom&, int) {
  LB_FAIL("plan_direct: this build has no AVX2/FMA or AVX-512 kernels");
}
DirectImageBuffers::DirectImageBuffers(const DirectPlan&) {}
void direct_image(const DirectPlan&, float*, const float*, const float*, int64_t,
                  const ConvEpilogue<float>*, DirectImageBuffers&) {
  LB_FAIL("direct_image: this build has no AVX2/FMA or AVX-512 kernels");
}

#else

namespace {

using conv_tiles::W;
constexpr int64_t kWgradImages = 8;        // weight gradient: images per pass, at most,
constexpr int64_t kWgradPassBytes = 1 << 20;  // and their planes and dT about this much (L2)
constexpr int64_t kPassO = 96;             // forward: output channels per pass
constexpr int64_t kPassBytes = 160 << 10;  // forward: packed weights per pass (fits L2)

using conv_tiles::round_up;

// The zero-padded planes of one image and the output grid laid over them.
struct Grid {
  int64_t C = 0, H = 0, W = 0, ph = 0, pw = 0, sh = 1, sw = 1;
  int64_t Hp = 0, Wp = 0;  // size of one phase plane; Wp is also the grid's row width
  int64_t plane = 0;       // floats per phase plane, with zeroed slack for the last tile's reads
  int64_t cstride = 0;     // floats per channel: its sh*sw phase planes
  int64_t OH = 0, OW = 0;  // the true output size
  int64_t Q = 0, Qr = 0;   // grid positions OH * Wp, and that rounded up to the tile width
  // Strides over 2 across: where input column w lands within the phase row of its phase (a
  // division per pixel in fill_planes cost more than the copy itself).
  std::vector<int64_t> col_at;
};

// Grid positions of a geometry's output: OH rows of the (phase) plane width.
int64_t grid_positions(const ConvGeom& g) { return g.OH * ((g.W + 2 * g.pw + g.sw - 1) / g.sw); }

// Stride s > 1 splits the zero-padded image into s x s phase planes, phase (a, b) holding the
// padded pixels (s*i + a, s*j + b) at (i, j). Output (oh, ow) then reads tap (kh, kw) from phase
// ((kh*dh) % sh, (kw*dw) % sw) at (oh + (kh*dh)/sh, ow + (kw*dw)/sw): on the phase planes every
// tap is again a constant offset from the output position, as at stride 1 (one phase).
// Positions are computed in tiles of `tile` (a multiple of the vector width).
Grid make_grid(const ConvGeom& g, int64_t tile) {
  Grid r;
  r.C = g.C, r.H = g.H, r.W = g.W, r.ph = g.ph, r.pw = g.pw, r.sh = g.sh, r.sw = g.sw;
  r.Hp = (g.H + 2 * g.ph + g.sh - 1) / g.sh, r.Wp = (g.W + 2 * g.pw + g.sw - 1) / g.sw;
  r.OH = g.OH, r.OW = g.OW;
  const int64_t reach_h = g.dh * (g.KH - 1) / g.sh, reach_w = g.dw * (g.KW - 1) / g.sw;
  LB_CHECK(r.OH + reach_h <= r.Hp && r.OW + reach_w <= r.Wp, "conv2d direct: output ", r.OH, "x",
           r.OW, " does not fit phase planes of ", r.Hp, "x", r.Wp);
  r.Q = r.OH * r.Wp;
  r.Qr = round_up(r.Q, tile);
  // The last tile reads up to index (Qr - 1) + reach_h*Wp + reach_w, and (OH + reach_h)*Wp <=
  // Hp*Wp: so a plane needs Hp*Wp + (Qr - Q) + reach_w floats.
  r.plane = round_up(r.Hp * r.Wp + (r.Qr - r.Q) + reach_w, W);
  r.cstride = g.sh * g.sw * r.plane;
  if (g.sw > 2)
    for (int64_t w = 0; w < g.W; ++w) {
      const int64_t col = w + g.pw;
      r.col_at.push_back((col % g.sw) * r.plane + col / g.sw);
    }
  return r;
}

// Copies image x (C, H, W) into the interiors of the phase planes, whose borders and slack are
// zero already (zeroed once per buffer and never written).
void fill_planes(float* xp, const float* x, const Grid& gr) {
  if (gr.sh == 1 && gr.sw == 1) {  // no division a row: at 16 floats a row it would cost as much
    for (int64_t c = 0; c < gr.C; ++c)  // as the copy
      for (int64_t h = 0; h < gr.H; ++h)
        std::memcpy(xp + c * gr.cstride + (h + gr.ph) * gr.Wp + gr.pw, x + (c * gr.H + h) * gr.W,
                    (size_t)gr.W * sizeof(float));
    return;
  }
  for (int64_t c = 0; c < gr.C; ++c)
    for (int64_t h = 0; h < gr.H; ++h) {
      const int64_t r = h + gr.ph;
      float* row = xp + c * gr.cstride + (r % gr.sh) * gr.sw * gr.plane + (r / gr.sh) * gr.Wp;
      const float* src = x + (c * gr.H + h) * gr.W;
      if (gr.sw == 1) {
        std::memcpy(row + gr.pw, src, (size_t)gr.W * sizeof(float));
      } else if (gr.sw == 2) {
        // A vector deinterleave onto the two phases. (The scalar scatter below, a table load
        // and a store a pixel, held 14-21% of a bench-ops run of ResNet-20's 16->32 stride-2
        // layer, and its speed changed by 10% between two builds that did not touch it.)
        split_row(row, row + gr.plane, src, gr.W, gr.pw);
      } else {
        for (int64_t w = 0; w < gr.W; ++w) row[gr.col_at[(size_t)w]] = src[w];
      }
    }
}

// Offset of tap (c, kh, kw) from an output position, in the (c, kh, kw) order of a weight row.
std::vector<int64_t> tap_offsets(int64_t cg, const ConvGeom& g, const Grid& gr) {
  std::vector<int64_t> off;
  off.reserve((size_t)(cg * g.KH * g.KW));
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t rh = kh * g.dh, rw = kw * g.dw;
        const int64_t phase = (rh % g.sh) * g.sw + rw % g.sw;
        off.push_back(c * gr.cstride + phase * gr.plane + (rh / g.sh) * gr.Wp + rw / g.sw);
      }
  return off;
}

// A block of output channels [o, o + mr) of one group, its weights packed tap-major at `packed`.
struct Block {
  int64_t group, o, mr, packed;
};

// Cuts each group's output channels into equal blocks of at most max_mr (16 channels into two of
// 8 rather than 12 + 4: a thin last block wastes its loads) and packs w (O, K) so that a block's
// weights for one tap are mr consecutive floats.
std::vector<Block> pack_weights(std::vector<float>& packed, const float* w, int64_t O,
                                int64_t groups, int64_t K, int64_t max_mr) {
  std::vector<Block> blocks;
  packed.resize((size_t)(O * K));
  const int64_t og = O / groups, nblocks = (og + max_mr - 1) / max_mr;
  int64_t at = 0;
  for (int64_t gi = 0; gi < groups; ++gi)
    for (int64_t bi = 0; bi < nblocks; ++bi) {
      const int64_t o = gi * og + bi * og / nblocks, mr = gi * og + (bi + 1) * og / nblocks - o;
      blocks.push_back({gi, o, mr, at});
      for (int64_t k = 0; k < K; ++k)
        for (int64_t i = 0; i < mr; ++i) packed[(size_t)(at + k * mr + i)] = w[(o + i) * K + k];
      at += mr * K;
    }
  return blocks;
}

bool is_plain_1x1(const ConvGeom& g) {
  return g.KH == 1 && g.KW == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

// Whether the grid of g is its image: a plain 1x1 layer (stride 1, no padding, so Wp = W and no
// tap reaches past a position) whose positions fill whole tiles and need no read slack, so that
// x's planes and y's are the grid's (conv_on_grid, conv2d_backward_weight_direct).
bool grid_is_image(const ConvGeom& g, const Grid& gr) {
  return is_plain_1x1(g) && gr.Qr == gr.Q && gr.plane == g.H * g.W;
}

// Images per weight-gradient pass, each per_image floats of planes and transposed dy: every tile
// streams the whole pass, once per (taps, channel vectors) block, so the pass should stay in L2.
// (ShuffleNetV2's 116->116 16x16, timed with the size as a temporary switch: 4.4 ms a call with 4
// images, 5.2-5.4 with 8. Half a MB was a little faster still, 4.1 ms, but would regroup
// ResNet-20's stride-2 sums and change its bits.)
int64_t wgrad_images(int64_t per_image) {
  const int64_t fit = kWgradPassBytes / (per_image * (int64_t)sizeof(float));
  return std::max<int64_t>(1, std::min<int64_t>(kWgradImages, fit));
}

// Position vectors per forward tile for a layer (conv_tiles::pick_nq over its grid).
int pick_tile_nq(const ConvGeom& g, int force_nq) {
  return conv_tiles::pick_nq(g.O / g.groups, grid_positions(g), force_nq);
}

}  // namespace

// What conv_on_grid computes once per call: the grid, the taps' offsets and the packed weights.
struct DirectPlan {
  ConvGeom g;
  int nq = 0;  // position vectors per tile
  Grid gr;
  std::vector<int64_t> koff;
  std::vector<float> packed;
  std::vector<Block> blocks;
  bool in_place = false;  // the grid is the image itself (grid_is_image)
};

void DirectPlanDeleter::operator()(DirectPlan* p) const { delete p; }

DirectPlanPtr plan_direct(const float* w, const ConvGeom& g, int force_nq) {
  LB_CHECK(force_nq >= 0 && force_nq <= conv_tiles::kMaxNQ, "conv2d direct: tile of ", force_nq,
           " position vectors, this build has 1 to ", conv_tiles::kMaxNQ);
  DirectPlanPtr p(new DirectPlan);
  p->g = g;
  p->nq = pick_tile_nq(g, force_nq);
  p->gr = make_grid(g, p->nq * W);
  const int64_t cg = g.C / g.groups;
  p->koff = tap_offsets(cg, g, p->gr);
  p->blocks = pack_weights(p->packed, w, g.O, g.groups, cg * g.KH * g.KW,
                           conv_tiles::max_mr(p->nq));
  // A plain 1x1 layer whose positions fill whole tiles: its grid is the image itself (no
  // padding, no thrown-away columns, no slack), so the tiles read x and write y where they lie,
  // skipping the copies in and out (ShuffleNetV2's 116->116 8x8 forward 0.85-0.89 -> 0.74-0.81
  // ms, docs/perf.md). The same sums in the same order: the same bits.
  p->in_place = grid_is_image(g, p->gr);
  return p;
}

DirectImageBuffers::DirectImageBuffers(const DirectPlan& p) {
  if (!p.in_place)
    x.assign((size_t)(p.g.C * p.gr.cstride), 0.0f), y.resize((size_t)(p.g.O * p.gr.Qr));
}

void direct_image(const DirectPlan& p, float* yn, const float* xn, const float* b, int64_t n,
                  const ConvEpilogue<float>* ep, DirectImageBuffers& buf) {
  const ConvGeom& g = p.g;
  const Grid& gr = p.gr;
  const int64_t cg = g.C / g.groups, K = cg * g.KH * g.KW, ohw = g.OH * g.OW;
  const float* xp = p.in_place ? xn : buf.x.data();
  float* yg = p.in_place ? yn : buf.y.data();
  if (!p.in_place) fill_planes(buf.x.data(), xn, gr);
  // Cache blocking: a pass takes a group of channel blocks (at most kPassO channels) and a
  // range of taps whose packed weights fit in kPassBytes (L2); inside it positions run
  // outer and channel blocks inner, so the taps x tile input window is read from L1 by every
  // block. Later tap ranges add onto the earlier ones: a fixed order of summation.
  const std::vector<Block>& blocks = p.blocks;
  for (size_t b0 = 0, b1; b0 < blocks.size(); b0 = b1) {
    int64_t chans = 0;
    for (b1 = b0; b1 < blocks.size() && (b1 == b0 || chans + blocks[b1].mr <= kPassO); ++b1)
      chans += blocks[b1].mr;
    const int64_t kpass = std::max<int64_t>(8, kPassBytes / (int64_t)sizeof(float) / chans);
    for (int64_t k0 = 0; k0 < K; k0 += kpass) {
      const int64_t kn = std::min(kpass, K - k0);
      for (int64_t q = 0; q < gr.Qr; q += p.nq * W)
        for (size_t bi = b0; bi < b1; ++bi) {
          const Block& bl = blocks[bi];
          conv_tiles::fwd_tile_fn(bl.mr, p.nq)(
              yg + bl.o * gr.Qr + q, gr.Qr, xp + bl.group * cg * gr.cstride + q,
              p.koff.data() + k0, kn, p.packed.data() + bl.packed + k0 * bl.mr, k0 > 0);
        }
    }
  }
  for (int64_t o = 0; o < g.O; ++o) {
    // + bias even when there is none (+ 0.0f turns a -0 sum into +0, as it always has).
    const float bias = b ? b[o] : 0.0f;
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const float* src = yg + o * gr.Qr + oh * gr.Wp;
      float* dst = yn + (o * g.OH + oh) * g.OW;
      for (int64_t ow = 0; ow < g.OW; ++ow) dst[ow] = src[ow] + bias;
    }
    conv_epilogue_plane(yn + o * ohw, ohw, ep, n, o, g.O);
  }
}

namespace {

// y (N, O, OH, OW) = conv(x, w) (+ b), then ep on each plane: the forward pass, and the data
// gradient through the flipped-and-transposed geometry.
void conv_on_grid(float* y, const float* x, const float* w, const float* b, const ConvGeom& g,
                  int force_nq, const ConvEpilogue<float>* ep) {
  const DirectPlanPtr p = plan_direct(w, g, force_nq);
  const int64_t K = g.C / g.groups * g.KH * g.KW, ohw = g.OH * g.OW;
  conv_for_image_chunks(g.N, g.O * K * ohw, [&](int64_t, int64_t n0, int64_t n1) {
    DirectImageBuffers buf(*p);
    for (int64_t n = n0; n < n1; ++n)
      direct_image(*p, y + n * g.O * ohw, x + n * g.C * g.H * g.W, b, n, ep, buf);
  });
}

}  // namespace

bool conv_direct_supported(const ConvGeom& g) { return !conv_is_depthwise(g); }

bool conv_direct_data_supported(const ConvGeom& g) {
  return conv_direct_supported(g) && g.sh == 1 && g.sw == 1 && g.ph <= g.dh * (g.KH - 1) &&
         g.pw <= g.dw * (g.KW - 1);
}

namespace {
// Below 8x8 outputs the grid's thrown-away columns and rounding cost more than im2col saves.
bool big_enough(const ConvGeom& g) { return g.OH * g.OW >= 64; }
}  // namespace

// An unpadded 1x1 convolution is a GEMM on x itself (no im2col). With AVX-512 tiles the direct
// kernels still beat OpenBLAS there (ShuffleNetV2 training +5-17%, evaluation +12-20%, MobileNetV2
// level, on a Zen 5 whose OpenBLAS runs its AVX2 kernels); with AVX2 tiles they did not.
bool conv_direct_prefers_1x1() { return conv_tiles::W == 16; }

bool conv_direct_preferred(const ConvGeom& g) {
  if (!conv_direct_supported(g) || !big_enough(g)) return false;
  return !is_plain_1x1(g) || conv_direct_prefers_1x1();
}

bool conv_direct_data_preferred(const ConvGeom& g) {
  return conv_direct_preferred(g) && conv_direct_data_supported(g);
}

int conv_direct_max_tile_nq() { return conv_tiles::kMaxNQ; }

void conv2d_forward_direct(float* y, const float* x, const float* w, const float* b,
                           const ConvGeom& g, int tile_nq, const ConvEpilogue<float>* ep) {
  conv_on_grid(y, x, w, b, g, tile_nq, ep);
}

void conv2d_backward_data_direct(float* dx, const float* dy, const float* w, const ConvGeom& g,
                                 int tile_nq) {
  const std::vector<float> wt = conv_data_grad_weights(w, g);
  conv_on_grid(dx, dy, wt.data(), nullptr, conv_data_grad_geom(g), tile_nq, nullptr);
}

// The weight gradient with output channels in the vector lanes (conv_tiles::wgrad_tile): dy is
// transposed position-major per image, channels padded to whole vectors; the sums are transposed
// into dw at the end.
void conv2d_backward_weight_direct(float* dw, const float* dy, const float* x, const ConvGeom& g) {
  const Grid gr = make_grid(g, W);
  const int64_t cg = g.C / g.groups, og = g.O / g.groups, K = cg * g.KH * g.KW, ohw = g.OH * g.OW;
  const int64_t opad = round_up(og, W);
  const int64_t asize = g.groups * K * opad;
  const std::vector<int64_t> koff = tap_offsets(cg, g, gr);
  const int64_t chunks = conv_image_chunks(g.N);
  const bool in_place = grid_is_image(g, gr);
  // Each chunk sums its images into its own transposed buffer; the buffers are added in chunk
  // order at the end, so the bits depend on the thread count only.
  std::unique_ptr<float[]> partial(new float[(size_t)(chunks * asize)]);  // each chunk zeroes its own
  conv_for_image_chunks(g.N, g.O * K * ohw, [&](int64_t chunk, int64_t n0, int64_t n1) {
    float* acc = partial.get() + chunk * asize;
    std::fill(acc, acc + asize, 0.0f);
    // Up to kWgradImages images per pass (wgrad_images): a tile's sums run over all their
    // positions before they are added to acc (small images would otherwise pay that addition per
    // image).
    // The padding channels of dT stay zero, so their (discarded) sums stay zero too.
    const int64_t xs = g.C * gr.cstride, ds = g.groups * ohw * opad;
    const int64_t nb = std::min<int64_t>(wgrad_images(xs + ds), n1 - n0);
    // x's images are their own planes where the grid is the image (then xs = C*H*W).
    std::vector<float> xbuf(in_place ? 0 : (size_t)(nb * xs), 0.0f), dT((size_t)(nb * ds), 0.0f);
    for (int64_t n = n0; n < n1; n += nb) {
      const int64_t m = std::min(nb, n1 - n);
      const float* xp = in_place ? x + n * xs : xbuf.data();
      for (int64_t im = 0; im < m; ++im) {
        if (!in_place) fill_planes(xbuf.data() + im * xs, x + (n + im) * g.C * g.H * g.W, gr);
        const float* dyn = dy + (n + im) * g.O * ohw;
        for (int64_t gi = 0; gi < g.groups; ++gi)
          transpose(dT.data() + im * ds + gi * ohw * opad, opad, dyn + gi * og * ohw, ohw, og, ohw);
      }
      const conv_tiles::WgradPositions ps{m, xs, ds, g.OH, g.OW, gr.Wp};
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        const float* xg = xp + gi * cg * gr.cstride;
        const float* dg = dT.data() + gi * ohw * opad;
        float* ag = acc + gi * K * opad;
        for (int64_t o = 0; o < opad;) {
          const int nv = opad - o >= 2 * W ? 2 : 1;
          for (int64_t k = 0; k < K; k += conv_tiles::kMaxMK) {
            const int64_t mk = std::min<int64_t>(conv_tiles::kMaxMK, K - k);
            conv_tiles::wgrad_tile_fn(mk, nv)(ag + k * opad + o, opad, xg, koff.data() + k, dg + o,
                                                opad, ps);
          }
          o += nv * W;
        }
      }
    }
  });
  float* total = partial.get();
  for (int64_t c = 1; c < chunks; ++c) {
    const float* __restrict p = partial.get() + c * asize;
    float* __restrict t = total;
    for (int64_t i = 0; i < asize; ++i) t[i] += p[i];
  }
  for (int64_t gi = 0; gi < g.groups; ++gi)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t o = 0; o < og; ++o) dw[(gi * og + o) * K + k] = total[(gi * K + k) * opad + o];
}

#endif  // LB_CONV_DIRECT

}  // namespace lowbit
