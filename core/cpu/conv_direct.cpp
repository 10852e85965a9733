// Direct stride-1 float32 convolution on padded planes (see conv_direct.h for the idea).
//
// Forward tile: MR output channels x 16 grid positions, summed over every (channel, kh, kw) tap
// in registers: per tap two vector loads of the shifted plane, MR broadcasts of packed weights and
// 2*MR fused multiply-adds. Weight-gradient tile: up to 6 taps x 16 output channels, summed over
// the image's positions: per position two vector loads of dy (stored position-major) and one
// broadcast of the shifted plane per tap. Both sum in a fixed order.
#include "core/cpu/conv_direct.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "core/cpu/conv_util.h"
#include "core/error.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LB_CONV_DIRECT 1
#endif

namespace lowbit {

#ifndef LB_CONV_DIRECT

bool conv_direct_supported(const ConvGeom&) { return false; }
bool conv_direct_data_supported(const ConvGeom&) { return false; }
bool conv_direct_preferred(const ConvGeom&) { return false; }
bool conv_direct_data_preferred(const ConvGeom&) { return false; }
void conv2d_forward_direct(float*, const float*, const float*, const float*, const ConvGeom&) {
  LB_FAIL("conv2d_forward_direct: this build has no AVX2/FMA kernels");
}
void conv2d_backward_data_direct(float*, const float*, const float*, const ConvGeom&) {
  LB_FAIL("conv2d_backward_data_direct: this build has no AVX2/FMA kernels");
}
void conv2d_backward_weight_direct(float*, const float*, const float*, const ConvGeom&) {
  LB_FAIL("conv2d_backward_weight_direct: this build has no AVX2/FMA kernels");
}

#else

namespace {

constexpr int64_t kTileQ = 16;  // grid positions per forward tile: two 8-float vectors
constexpr int kMaxMR = 6;       // 12 accumulators + 2 inputs + 1 broadcast = 15 of 16 registers
constexpr int64_t kWgradImages = 8;       // weight gradient: images per pass
constexpr int64_t kPassO = 96;            // forward: output channels per pass
constexpr int64_t kPassBytes = 160 << 10;  // forward: packed weights per pass (of a 512 KB L2)

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The zero-padded planes of one image and the output grid laid over them.
struct Grid {
  int64_t C = 0, H = 0, W = 0, ph = 0, pw = 0, sh = 1, sw = 1;
  int64_t Hp = 0, Wp = 0;  // size of one phase plane; Wp is also the grid's row width
  int64_t plane = 0;       // floats per phase plane, with zeroed slack for the last tile's reads
  int64_t cstride = 0;     // floats per channel: its sh*sw phase planes
  int64_t OH = 0, OW = 0;  // the true output size
  int64_t Q = 0, Qr = 0;   // grid positions OH * Wp, and that rounded up to the tile width
};

// Stride s > 1 splits the zero-padded image into s x s phase planes, phase (a, b) holding the
// padded pixels (s*i + a, s*j + b) at (i, j). Output (oh, ow) then reads tap (kh, kw) from phase
// ((kh*dh) % sh, (kw*dw) % sw) at (oh + (kh*dh)/sh, ow + (kw*dw)/sw): on the phase planes every
// tap is again a constant offset from the output position, as at stride 1 (one phase).
Grid make_grid(const ConvGeom& g) {
  Grid r;
  r.C = g.C, r.H = g.H, r.W = g.W, r.ph = g.ph, r.pw = g.pw, r.sh = g.sh, r.sw = g.sw;
  r.Hp = (g.H + 2 * g.ph + g.sh - 1) / g.sh, r.Wp = (g.W + 2 * g.pw + g.sw - 1) / g.sw;
  r.OH = g.OH, r.OW = g.OW;
  const int64_t reach_h = g.dh * (g.KH - 1) / g.sh, reach_w = g.dw * (g.KW - 1) / g.sw;
  LB_CHECK(r.OH + reach_h <= r.Hp && r.OW + reach_w <= r.Wp, "conv2d direct: output ", r.OH, "x",
           r.OW, " does not fit phase planes of ", r.Hp, "x", r.Wp);
  r.Q = r.OH * r.Wp;
  r.Qr = round_up(r.Q, kTileQ);
  // The last tile reads up to index (Qr - 1) + reach_h*Wp + reach_w, and (OH + reach_h)*Wp <=
  // Hp*Wp: so a plane needs Hp*Wp + (Qr - Q) + reach_w floats.
  r.plane = round_up(r.Hp * r.Wp + (r.Qr - r.Q) + reach_w, 8);
  r.cstride = g.sh * g.sw * r.plane;
  return r;
}

// Copies image x (C, H, W) into the interiors of the phase planes, whose borders and slack are
// zero already (zeroed once per buffer and never written).
void fill_planes(float* xp, const float* x, const Grid& gr) {
  if (gr.sh == 1 && gr.sw == 1) {
    for (int64_t c = 0; c < gr.C; ++c)
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
      for (int64_t w = 0; w < gr.W; ++w) {
        const int64_t col = w + gr.pw;
        row[(col % gr.sw) * gr.plane + col / gr.sw] = src[w];
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

// Cuts each group's output channels into blocks of up to kMaxMR and packs w (O, K) so that a
// block's weights for one tap are mr consecutive floats.
std::vector<Block> pack_weights(std::vector<float>& packed, const float* w, int64_t O,
                                int64_t groups, int64_t K) {
  std::vector<Block> blocks;
  packed.resize((size_t)(O * K));
  const int64_t og = O / groups;
  int64_t at = 0;
  for (int64_t gi = 0; gi < groups; ++gi)
    for (int64_t o = gi * og; o < (gi + 1) * og; o += kMaxMR) {
      const int64_t mr = std::min<int64_t>(kMaxMR, (gi + 1) * og - o);
      blocks.push_back({gi, o, mr, at});
      for (int64_t k = 0; k < K; ++k)
        for (int64_t i = 0; i < mr; ++i) packed[(size_t)(at + k * mr + i)] = w[(o + i) * K + k];
      at += mr * K;
    }
  return blocks;
}

// out[i][0..16) (+)= sum over taps k of wp[k][i] * xp[koff[k] + 0..16), i < MR; with accumulate
// the sum starts from out's current values (the previous block of taps).
template <int MR>
void fwd_tile(float* out, int64_t ldo, const float* xp, const int64_t* koff, int64_t K,
              const float* wp, bool accumulate) {
  __m256 acc0[MR], acc1[MR];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    acc0[i] = accumulate ? _mm256_loadu_ps(out + i * ldo) : _mm256_setzero_ps();
    acc1[i] = accumulate ? _mm256_loadu_ps(out + i * ldo + 8) : _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    const float* p = xp + koff[k];
    const __m256 b0 = _mm256_loadu_ps(p), b1 = _mm256_loadu_ps(p + 8);
    const float* a = wp + k * MR;
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    _mm256_storeu_ps(out + i * ldo, acc0[i]);
    _mm256_storeu_ps(out + i * ldo + 8, acc1[i]);
  }
}

void fwd_tile_any(int64_t mr, float* out, int64_t ldo, const float* xp, const int64_t* koff,
                  int64_t K, const float* wp, bool acc) {
  switch (mr) {
    case 1: return fwd_tile<1>(out, ldo, xp, koff, K, wp, acc);
    case 2: return fwd_tile<2>(out, ldo, xp, koff, K, wp, acc);
    case 3: return fwd_tile<3>(out, ldo, xp, koff, K, wp, acc);
    case 4: return fwd_tile<4>(out, ldo, xp, koff, K, wp, acc);
    case 5: return fwd_tile<5>(out, ldo, xp, koff, K, wp, acc);
    default: return fwd_tile<6>(out, ldo, xp, koff, K, wp, acc);
  }
}

// y (N, O, OH, OW) = conv(x, w) (+ b) for stride 1: the forward pass, and the data gradient
// through the flipped-and-transposed geometry.
void conv_on_grid(float* y, const float* x, const float* w, const float* b, const ConvGeom& g) {
  const Grid gr = make_grid(g);
  const int64_t cg = g.C / g.groups, K = cg * g.KH * g.KW, ohw = g.OH * g.OW;
  const std::vector<int64_t> koff = tap_offsets(cg, g, gr);
  std::vector<float> packed;
  const std::vector<Block> blocks = pack_weights(packed, w, g.O, g.groups, K);
  conv_for_image_chunks(g.N, g.O * K * ohw, [&](int64_t, int64_t n0, int64_t n1) {
    std::vector<float> xp((size_t)(g.C * gr.cstride), 0.0f), yg((size_t)(g.O * gr.Qr));
    for (int64_t n = n0; n < n1; ++n) {
      fill_planes(xp.data(), x + n * g.C * g.H * g.W, gr);
      // Cache blocking: a pass takes a group of channel blocks (at most kPassO channels) and a
      // range of taps whose packed weights fit in kPassBytes (L2); inside it positions run
      // outer and channel blocks inner, so the taps x 16 input window is read from L1 by every
      // block. Later tap ranges add onto the earlier ones: a fixed order of summation.
      for (size_t b0 = 0, b1; b0 < blocks.size(); b0 = b1) {
        int64_t chans = 0;
        for (b1 = b0; b1 < blocks.size() && chans + blocks[b1].mr <= kPassO; ++b1) chans += blocks[b1].mr;
        const int64_t kpass = std::max<int64_t>(kMaxMR, kPassBytes / (int64_t)sizeof(float) / chans);
        for (int64_t k0 = 0; k0 < K; k0 += kpass) {
          const int64_t kn = std::min(kpass, K - k0);
          for (int64_t q = 0; q < gr.Qr; q += kTileQ)
            for (size_t bi = b0; bi < b1; ++bi) {
              const Block& bl = blocks[bi];
              fwd_tile_any(bl.mr, yg.data() + bl.o * gr.Qr + q, gr.Qr,
                           xp.data() + bl.group * cg * gr.cstride + q, koff.data() + k0, kn,
                           packed.data() + bl.packed + k0 * bl.mr, k0 > 0);
            }
        }
      }
      float* yn = y + n * g.O * ohw;
      for (int64_t o = 0; o < g.O; ++o) {
        const float bias = b ? b[o] : 0.0f;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const float* src = yg.data() + o * gr.Qr + oh * gr.Wp;
          float* dst = yn + (o * g.OH + oh) * g.OW;
          for (int64_t ow = 0; ow < g.OW; ++ow) dst[ow] = src[ow] + bias;
        }
      }
    }
  });
}

// Weight-gradient tile, transposed: out[i][0 .. 8*NV) += sum over grid rows oh and columns
// ow < OW of xp[koff[i] + oh*Wp + ow] * dT[oh*OW + ow][0 .. 8*NV), i < MK. dT holds dy with
// positions as rows and (a block of) output channels as columns, so a position's channels are
// one or two vectors and each tap's input is a broadcast: the same shape as the forward tile.
// A batch of images for the weight gradient: their padded planes every xstride floats, their
// position-major dy every dstride floats.
struct Images {
  int64_t n, xstride, dstride;
};

template <int MK, int NV>
void wgrad_tile(float* out, int64_t ldo, const float* xp, const int64_t* koff, const float* dT,
                int64_t ldt, const Grid& gr, const Images& ims) {
  static_assert(NV == 1 || NV == 2, "one or two vectors of output channels");
  // Separate accumulator arrays (not acc[MK][NV]) so that GCC keeps them all in registers.
  __m256 acc0[MK], acc1[MK];
  int64_t ko[MK];
#pragma GCC unroll 6
  for (int i = 0; i < MK; ++i) {
    ko[i] = koff[i];
    acc0[i] = acc1[i] = _mm256_setzero_ps();
  }
  // One loop over the images' positions (nested loops made GCC keep the accumulators in
  // memory); xq walks the padded plane, skipping the Wp - OW columns at the end of each row and
  // jumping to the next image's planes at the end of an image.
  const float* xq = xp;
  const float* d = dT;
  const int64_t total = ims.n * gr.OH * gr.OW;
  for (int64_t p = 0, ow = 0, oh = 0, im = 0; p < total; ++p) {
    const __m256 d0 = _mm256_loadu_ps(d);
    const __m256 d1 = NV == 2 ? _mm256_loadu_ps(d + 8) : _mm256_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < MK; ++i) {
      const __m256 a = _mm256_broadcast_ss(xq + ko[i]);
      acc0[i] = _mm256_fmadd_ps(a, d0, acc0[i]);
      if (NV == 2) acc1[i] = _mm256_fmadd_ps(a, d1, acc1[i]);
    }
    ++xq;
    d += ldt;
    if (++ow == gr.OW) {
      ow = 0;
      xq += gr.Wp - gr.OW;
      if (++oh == gr.OH) {
        oh = 0;
        ++im;
        xq = xp + im * ims.xstride;
        d = dT + im * ims.dstride;
      }
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MK; ++i) {
    float* o = out + i * ldo;
    _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), acc0[i]));
    if (NV == 2) _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), acc1[i]));
  }
}

template <int NV>
void wgrad_tile_any(int64_t mk, float* out, int64_t ldo, const float* xp, const int64_t* koff,
                    const float* dT, int64_t ldt, const Grid& gr, const Images& ims) {
  switch (mk) {
    case 1: return wgrad_tile<1, NV>(out, ldo, xp, koff, dT, ldt, gr, ims);
    case 2: return wgrad_tile<2, NV>(out, ldo, xp, koff, dT, ldt, gr, ims);
    case 3: return wgrad_tile<3, NV>(out, ldo, xp, koff, dT, ldt, gr, ims);
    case 4: return wgrad_tile<4, NV>(out, ldo, xp, koff, dT, ldt, gr, ims);
    case 5: return wgrad_tile<5, NV>(out, ldo, xp, koff, dT, ldt, gr, ims);
    default: return wgrad_tile<6, NV>(out, ldo, xp, koff, dT, ldt, gr, ims);
  }
}

// A batch of images' contribution to the transposed gradient acc (groups, K, opad): tiles of up
// to 6 taps x 16 output channels (8 for a last block), each summed over all the batch's positions.
// xp: the images' planes, C*plane floats apart; dT: their dy, (groups, OH*OW, opad) per image.
void wgrad_images(float* acc, const float* dT, const float* xp, const std::vector<int64_t>& koff,
                  const ConvGeom& g, const Grid& gr, int64_t K, int64_t opad, int64_t nimg) {
  const int64_t cg = g.C / g.groups, ohw = g.OH * g.OW;
  const Images ims{nimg, g.C * gr.cstride, g.groups * ohw * opad};
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    const float* xg = xp + gi * cg * gr.cstride;
    const float* dg = dT + gi * ohw * opad;
    float* ag = acc + gi * K * opad;
    for (int64_t o = 0; o < opad;) {
      const int64_t nv = opad - o >= 16 ? 2 : 1;
      for (int64_t k = 0; k < K; k += kMaxMR) {
        const int64_t mk = std::min<int64_t>(kMaxMR, K - k);
        if (nv == 2)
          wgrad_tile_any<2>(mk, ag + k * opad + o, opad, xg, koff.data() + k, dg + o, opad, gr, ims);
        else
          wgrad_tile_any<1>(mk, ag + k * opad + o, opad, xg, koff.data() + k, dg + o, opad, gr, ims);
      }
      o += 8 * nv;
    }
  }
}

}  // namespace

bool conv_direct_supported(const ConvGeom& g) { return !conv_is_depthwise(g); }

bool conv_direct_data_supported(const ConvGeom& g) {
  return conv_direct_supported(g) && g.sh == 1 && g.sw == 1 && g.ph <= g.dh * (g.KH - 1) &&
         g.pw <= g.dw * (g.KW - 1);
}

bool conv_direct_preferred(const ConvGeom& g) {
  if (!conv_direct_supported(g)) return false;
  if (g.KH == 1 && g.KW == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0)
    return false;  // GEMM on x itself
  // Below 8x8 outputs the grid's thrown-away columns and rounding cost more than im2col saves.
  return g.OH * g.OW >= 64;
}

bool conv_direct_data_preferred(const ConvGeom& g) {
  return conv_direct_preferred(g) && conv_direct_data_supported(g);
}

void conv2d_forward_direct(float* y, const float* x, const float* w, const float* b, const ConvGeom& g) {
  conv_on_grid(y, x, w, b, g);
}

void conv2d_backward_data_direct(float* dx, const float* dy, const float* w, const ConvGeom& g) {
  // dx = conv(dy, w'), stride 1, padding d*(k-1) - p, with w'[c][o][kh][kw] =
  // w[o][c][KH-1-kh][KW-1-kw] inside each group.
  const int64_t og = g.O / g.groups, cg = g.C / g.groups;
  std::vector<float> wt((size_t)(g.C * og * g.KH * g.KW));
  for (int64_t gi = 0; gi < g.groups; ++gi)
    for (int64_t o = 0; o < og; ++o)
      for (int64_t c = 0; c < cg; ++c)
        for (int64_t kh = 0; kh < g.KH; ++kh)
          for (int64_t kw = 0; kw < g.KW; ++kw)
            wt[(size_t)((((gi * cg + c) * og + o) * g.KH + kh) * g.KW + kw)] =
                w[(((gi * og + o) * cg + c) * g.KH + (g.KH - 1 - kh)) * g.KW + (g.KW - 1 - kw)];
  ConvGeom t = g;
  t.C = g.O, t.H = g.OH, t.W = g.OW;
  t.O = g.C, t.OH = g.H, t.OW = g.W;
  t.ph = g.dh * (g.KH - 1) - g.ph, t.pw = g.dw * (g.KW - 1) - g.pw;
  conv_on_grid(dx, dy, wt.data(), nullptr, t);
}

void conv2d_backward_weight_direct(float* dw, const float* dy, const float* x, const ConvGeom& g) {
  const Grid gr = make_grid(g);
  const int64_t cg = g.C / g.groups, og = g.O / g.groups, K = cg * g.KH * g.KW, ohw = g.OH * g.OW;
  const int64_t opad = round_up(og, 8);  // a group's output channels padded to whole vectors
  const int64_t asize = g.groups * K * opad;
  const std::vector<int64_t> koff = tap_offsets(cg, g, gr);
  const int64_t chunks = conv_image_chunks(g.N);
  // Each chunk sums its images into its own transposed buffer; the buffers are added in chunk
  // order at the end, so the bits depend on the thread count only.
  std::unique_ptr<float[]> partial(new float[(size_t)(chunks * asize)]);  // each chunk zeroes its own
  conv_for_image_chunks(g.N, g.O * K * ohw, [&](int64_t chunk, int64_t n0, int64_t n1) {
    float* acc = partial.get() + chunk * asize;
    std::fill(acc, acc + asize, 0.0f);
    // Up to kWgradImages images per pass: a tile's sums run over all their positions before
    // they are added to acc (small images would otherwise pay that addition per image).
    // The padding channels of dT stay zero, so their (discarded) sums stay zero too.
    const int64_t xs = g.C * gr.cstride, ds = g.groups * ohw * opad;
    const int64_t nb = std::min<int64_t>(kWgradImages, n1 - n0);
    std::vector<float> xp((size_t)(nb * xs), 0.0f), dT((size_t)(nb * ds), 0.0f);
    for (int64_t n = n0; n < n1; n += nb) {
      const int64_t m = std::min(nb, n1 - n);
      for (int64_t im = 0; im < m; ++im) {
        fill_planes(xp.data() + im * xs, x + (n + im) * g.C * g.H * g.W, gr);
        const float* dyn = dy + (n + im) * g.O * ohw;
        for (int64_t gi = 0; gi < g.groups; ++gi)
          for (int64_t o = 0; o < og; ++o) {
            const float* src = dyn + (gi * og + o) * ohw;
            float* dst = dT.data() + im * ds + gi * ohw * opad + o;
            for (int64_t p = 0; p < ohw; ++p) dst[p * opad] = src[p];
          }
      }
      wgrad_images(acc, dT.data(), xp.data(), koff, g, gr, K, opad, m);
    }
  });
  // Chunk sums added in chunk order (a linear pass the compiler vectorises), then transposed.
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
