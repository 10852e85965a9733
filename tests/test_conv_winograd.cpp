// Winograd F(2x2, 3x3) and F(4x4, 3x3) (core/cpu/conv_winograd.cpp, conv_winograd4.cpp) against
// float64 im2col + GEMM: odd and even outputs (edge tiles cut short), every padding 0..2 on each
// side, channel counts that split into unequal register blocks, batches that fill several passes
// and leave a partial one, every register tile width, 1 and 2 threads (the same bits for both);
// which tile a layer takes; the switch; bad geometries.
#include <doctest/doctest.h>

#include <vector>

#include "core/cpu/conv_direct.h"
#include "core/cpu/conv_winograd.h"
#include "core/error.h"
#include "core/parallel.h"
#include "tests/conv_operands.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {

ConvGeom geom(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t ph, int64_t pw) {
  ConvGeom g;
  g.N = N, g.C = C, g.H = H, g.W = W, g.O = O, g.KH = g.KW = 3, g.ph = ph, g.pw = pw;
  g.OH = conv_out_size(H, 3, 1, ph, 1), g.OW = conv_out_size(W, 3, 1, pw, 1);
  return g;
}

}  // namespace

TEST_CASE("conv2d winograd: forward, data and weight gradients match float64 im2col") {
  if (!conv_winograd_supported(geom(1, 8, 8, 8, 8, 1, 1))) {
    MESSAGE("this build has no vector kernels: Winograd is not compiled in");
    return;
  }
  const ConvGeom geos[] = {
      geom(3, 16, 32, 32, 16, 1, 1),  // a ResNet-20 layer: one image a pass, several blocks
      geom(5, 9, 9, 11, 13, 1, 1),    // odd outputs both ways: half tiles on two edges
      geom(4, 8, 8, 8, 30, 0, 2),     // no padding down, 2 across; 30 channels in two blocks
      geom(2, 12, 7, 10, 9, 2, 0),    // 9 rows out (odd), data gradient padding 0 and 2
      geom(37, 64, 8, 8, 64, 1, 1),   // many images a pass, the last pass partial
      geom(2, 3, 6, 5, 5, 1, 1),      // few channels: supported though not preferred
      geom(1, 40, 20, 12, 33, 1, 2),  // asymmetric padding, 33 channels
      geom(2, 8, 13, 40, 10, 1, 1),   // rows of 40: whole vectors of pairs and a remainder
      geom(3, 8, 6, 20, 8, 2, 1),     // rows of 20 (half vectors of pairs), padding 1 across
      geom(21, 96, 4, 4, 80, 1, 1),   // 4x4: 4 tiles an image, passes of many images
      geom(3, 16, 16, 16, 12, 1, 1),  // 16x16: two tile rows a vector, stored straight to y
      geom(2, 8, 15, 16, 8, 1, 1),    // 15 rows out: the last tile row has one output row
  };
  const int saved = num_threads();
  uint64_t seed = 3000;
  for (const ConvGeom& g : geos) {
    INFO("N ", g.N, " C ", g.C, " O ", g.O, " ", g.H, "x", g.W, " pad ", g.ph, ",", g.pw);
    REQUIRE(conv_winograd_supported(g));
    ConvOperands op(g, seed);
    seed += 4;
    op.reference(g);
    for (int tile : {2, 4}) {
    conv_winograd_tile() = tile;
    // F(2x2): the direct kernels' bound. Measured on such operands at 64 channels: Winograd 8e-6,
    // the direct kernels 1.2e-5 (their sums run over all 576 taps in a row, Winograd's over 64
    // channels per position). F(4x4), whose transforms multiply by up to 8 and divide by 24:
    // 4e-6 to 1.9e-4 on these geometries, the largest at 64 and 96 channels. A wrong tile or
    // transform is off by O(1).
    const double tol = tile == 2 ? 1e-5 : 5e-4;
    std::vector<float> y1, dx1;
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (int nq = 0; nq <= conv_direct_max_tile_nq(); ++nq) {
        INFO("F(", tile, "x", tile, ", 3x3), threads ", threads, ", tile of ", nq,
             " position vectors (0: the kernels' pick)");
        std::fill(op.y.begin(), op.y.end(), 7.0f);  // a skipped output would show
        std::fill(op.dx.begin(), op.dx.end(), 7.0f);
        conv2d_forward_winograd(op.y.data(), op.xf.data(), op.wf.data(), op.bf.data(), g, nullptr,
                                nq);
        conv2d_backward_data_winograd(op.dx.data(), op.dyf.data(), op.wf.data(), g, nq);
        CHECK(rel_err(op.y, op.yr) < tol);
        CHECK(rel_err(op.dx, op.dxr) < tol);
        // Added into a pending gradient as it stores (conv2d_backward_data_add_cpu): exactly
        // what it holds plus the gradient stored above, in every direct and buffered run.
        std::vector<float> acc(op.dx.size());
        for (size_t i = 0; i < acc.size(); ++i) acc[i] = op.xf[i] * 0.5f - 0.25f;
        const std::vector<float> held = acc;
        conv2d_backward_data_winograd(acc.data(), op.dyf.data(), op.wf.data(), g, nq, true);
        int64_t off = 0;
        for (size_t i = 0; i < acc.size(); ++i) off += acc[i] != held[i] + op.dx[i];
        CHECK(off == 0);
        if (nq == 0 && threads == 1) y1 = op.y, dx1 = op.dx;
        if (nq == 0) {
          std::fill(op.dw.begin(), op.dw.end(), 7.0f);
          conv2d_backward_weight_winograd(op.dw.data(), op.dyf.data(), op.xf.data(), g);
          // dw sums N*OH*OW products per weight in float32, a longer chain than y's or dx's.
          // F(3x3, 4x4) (the forced tile takes the weight gradient too): 1e-6 to 8.7e-5 on
          // these geometries, so the forward's F(4x4) bound.
          CHECK(rel_err(op.dw, op.dwr) < (tile == 2 ? 5e-5 : 5e-4));
          std::vector<float> dw2(op.dw.size());
          conv2d_backward_weight_winograd(dw2.data(), op.dyf.data(), op.xf.data(), g);
          CHECK(dw2 == op.dw);  // the same bits again
        }
        if (nq == 0 && threads == 2) {  // each output's sum is the same whatever the threads
          CHECK(op.y == y1);
          CHECK(op.dx == dx1);
        }
      }
    }
    }
  }
  conv_winograd_tile() = 0;
  set_num_threads(saved);
}

TEST_CASE("conv2d winograd: which layers take it, the switch, bad geometries") {
  if (!conv_winograd_supported(geom(1, 8, 8, 8, 8, 1, 1))) {
    MESSAGE("this build has no vector kernels: Winograd is not compiled in");
    return;
  }
  CHECK(conv_winograd_preferred(geom(2, 16, 32, 32, 16, 1, 1)));
  CHECK(conv_winograd_data_preferred(geom(2, 16, 32, 32, 16, 1, 1)));
  CHECK(conv_winograd_weight_preferred(geom(2, 16, 32, 32, 16, 1, 1)));
  CHECK(conv_winograd_preferred(geom(2, 64, 8, 8, 64, 1, 1)));
  CHECK_FALSE(conv_winograd_weight_preferred(geom(2, 64, 8, 8, 64, 1, 1)));  // 8x8: direct
  CHECK_FALSE(conv_winograd_preferred(geom(2, 3, 32, 32, 16, 1, 1)));  // the RGB stem
  CHECK(conv_winograd_preferred(geom(2, 64, 4, 4, 64, 1, 1)));         // 4x4 outputs
  CHECK_FALSE(conv_winograd_preferred(geom(2, 64, 2, 2, 64, 1, 1)));   // 2x2 outputs
  ConvGeom s2 = geom(2, 16, 32, 32, 32, 1, 1);
  s2.sh = s2.sw = 2, s2.OH = s2.OW = 16;
  CHECK_FALSE(conv_winograd_supported(s2));
  ConvGeom grouped = geom(2, 16, 16, 16, 16, 1, 1);
  grouped.groups = 2;
  CHECK_FALSE(conv_winograd_supported(grouped));
  CHECK_FALSE(conv_winograd_supported(geom(2, 16, 16, 16, 16, 3, 3)));  // padding past 2
  ConvGeom k5 = geom(2, 16, 16, 16, 16, 2, 2);
  k5.KH = k5.KW = 5;
  CHECK_FALSE(conv_winograd_supported(k5));

  // The tile: 4x4 from 8x8 outputs up (measured faster there), 2x2 below; forced either way.
  CHECK(conv_winograd_tile_for(geom(2, 16, 32, 32, 16, 1, 1)) == 4);
  CHECK(conv_winograd_tile_for(geom(2, 64, 8, 8, 64, 1, 1)) == 4);
  CHECK(conv_winograd_tile_for(geom(2, 64, 4, 4, 64, 1, 1)) == 2);
  CHECK(conv_winograd_tile_for(geom(2, 64, 8, 4, 64, 1, 1)) == 2);
  // The weight gradient's dy tile: 4x4 from 32x32 outputs, 2x2 below; a forced tile takes it too.
  CHECK(conv_winograd_wgrad_tile_for(geom(2, 16, 32, 32, 16, 1, 1)) == 4);
  CHECK(conv_winograd_wgrad_tile_for(geom(2, 32, 16, 16, 32, 1, 1)) == 2);
  conv_winograd_tile() = 2;
  CHECK(conv_winograd_tile_for(geom(2, 16, 32, 32, 16, 1, 1)) == 2);
  CHECK(conv_winograd_wgrad_tile_for(geom(2, 16, 32, 32, 16, 1, 1)) == 2);
  conv_winograd_tile() = 4;
  CHECK(conv_winograd_tile_for(geom(2, 64, 4, 4, 64, 1, 1)) == 4);
  CHECK(conv_winograd_wgrad_tile_for(geom(2, 32, 16, 16, 32, 1, 1)) == 4);
  conv_winograd_tile() = 3;
  CHECK_THROWS_WITH_AS(conv_winograd_tile_for(geom(2, 16, 32, 32, 16, 1, 1)),
                       doctest::Contains("output tiles of 2 or 4"), Error);
  conv_winograd_tile() = 0;

  const ConvGeom g = geom(4, 16, 16, 16, 24, 1, 1);
  ConvOperands op(g, 77);
  std::vector<float> wino(op.y.size()), direct(op.y.size());
  conv2d_forward_winograd(wino.data(), op.xf.data(), op.wf.data(), op.bf.data(), g);
  conv2d_forward_direct(direct.data(), op.xf.data(), op.wf.data(), op.bf.data(), g);
  REQUIRE(wino != direct);  // the two sum differently, so the switch below can be seen
  conv2d_forward_cpu(op.y.data(), op.xf.data(), op.wf.data(), op.bf.data(), g);
  CHECK(op.y == wino);
  conv_winograd_enabled() = false;
  conv2d_forward_cpu(op.y.data(), op.xf.data(), op.wf.data(), op.bf.data(), g);
  conv_winograd_enabled() = true;
  CHECK(op.y == direct);

  CHECK_THROWS_WITH_AS(conv2d_forward_winograd(op.y.data(), op.xf.data(), op.wf.data(), nullptr, s2),
                       doctest::Contains("not a 3x3 stride-1"), Error);
  CHECK_THROWS_WITH_AS(conv2d_backward_data_winograd(op.dx.data(), op.dyf.data(), op.wf.data(), k5),
                       doctest::Contains("not a 3x3 stride-1"), Error);
}
