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
#include "core/cpu/conv_winograd_driver.h"
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
int conv_winograd_wgrad_tile_for(const ConvGeom&) { return 0; }
bool conv_winograd_preferred(const ConvGeom&) { return false; }
bool conv_winograd_data_preferred(const ConvGeom&) { return false; }
bool conv_winograd_weight_preferred(const ConvGeom&) { return false; }
void conv2d_forward_winograd(float*, const float*, const float*, const float*, const ConvGeom&,
                             const ConvEpilogue<float>*, int) {
  LB_FAIL("conv2d_forward_winograd: this build has no AVX2/FMA or AVX-512 kernels");
}
void conv2d_backward_data_winograd(float*, const float*, const float*, const ConvGeom&, int, bool) {
  LB_FAIL("conv2d_backward_data_winograd: this build has no AVX2/FMA or AVX-512 kernels");
}

#else

namespace {

using namespace winograd;

// F(2x2, 3x3): the transforms for the driver (conv_winograd_driver.h).
struct F2 {
  static constexpr int R = 2;
  static void gvec(double g0, double g1, double g2, double* u) {  // G times a 3-vector
    u[0] = g0, u[1] = 0.5 * (g0 + g1 + g2), u[2] = 0.5 * (g0 - g1 + g2), u[3] = g2;
  }
  static void fill_planes(float* P, const float* x, int64_t im, const Tiling& t) {
    winograd::fill_planes(P, x, im, t);
  }
  static void input_transform(float* Vb, int64_t ps, const float* P, const BlockScan& scan,
                              const Tiling& t) {
    winograd::input_transform(Vb, ps, P, scan, t);
  }
  // y tiles of channel o = A^T M A + bias for the block's tiles.
  template <bool Acc>
  static void output_transform(float* y, const float* Mb, int64_t ps, const RunsOfBlock& runs,
                               int64_t o, float bias, const Tiling& t, float* row) {
    float* yo = y + o * t.OH * t.OW;
    const V vb = Simd::bcast(&bias);
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
      for (int i = 0; i < 2; ++i) {  // (A^T M) A, plus the bias: output row i of each tile
        V out[2];
        interleave2(out, Simd::add(Simd::add(Simd::add(s[i][0], s[i][1]), s[i][2]), vb),
                    Simd::add(Simd::sub(Simd::sub(s[i][1], s[i][2]), s[i][3]), vb));
        store_row<2, Acc>(yo, i, out, runs[vi], t.OW, row);
      }
    }
  }
};

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

// From 32x32 outputs (ResNet-20's 16-channel and ResNet-18's 64-channel stage: 0.6-0.85x
// F(2x2)'s time). At 16x16 F(3x3, 4x4) measured slower (ResNet-20's 32-channel stage 1.2x): a row
// of 4 tiles does not fill a vector, so its passes run on masked stores and thrown-away lanes.
int conv_winograd_wgrad_tile_for(const ConvGeom& g) {
  if (conv_winograd_tile()) return conv_winograd_tile_for(g);
  return g.OH * g.OW >= 1024 ? 4 : 2;
}

namespace {
// The forward kernel of the tile size g takes (the forward and the data gradient alike).
void forward_by_tile(float* y, const float* x, const float* w, const float* b, const ConvGeom& g,
                     const ConvEpilogue<float>* ep, int tile_nq, bool accumulate = false) {
  if (conv_winograd_tile_for(g) == 4) return winograd4_conv(y, x, w, b, g, ep, tile_nq, accumulate);
  winograd::forward<F2>(y, x, w, b, g, ep, tile_nq, accumulate);
}
}  // namespace

void conv2d_forward_winograd(float* y, const float* x, const float* w, const float* b,
                             const ConvGeom& g, const ConvEpilogue<float>* ep, int tile_nq) {
  LB_CHECK(conv_winograd_supported(g), "conv2d_forward_winograd: not a 3x3 stride-1 convolution "
           "with one group and padding at most 2");
  forward_by_tile(y, x, w, b, g, ep, tile_nq);
}

void conv2d_backward_data_winograd(float* dx, const float* dy, const float* w, const ConvGeom& g,
                                   int tile_nq, bool accumulate) {
  LB_CHECK(conv_winograd_supported(g), "conv2d_backward_data_winograd: not a 3x3 stride-1 "
           "convolution with one group and padding at most 2");
  const std::vector<float> wt = conv_data_grad_weights(w, g);
  forward_by_tile(dx, dy, wt.data(), nullptr, conv_data_grad_geom(g), nullptr, tile_nq, accumulate);
}

#endif  // LB_SIMD

}  // namespace lowbit
