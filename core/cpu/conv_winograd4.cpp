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
// tens of times F(2x2)'s (up to 1.9e-4 relative against 2.5e-6 in the tests, at 96 and 64
// channels); the tests bound it against float64 at 5e-4.
//
// The planes are 4x4 phases: phase (a, b) holds padded pixel (4R + a, 4C + b) at (R, C), so element
// (i, j) of tile (th, tw) sits in phase (i % 4, j % 4) at (th + i/4, tw + j/4).
#include "core/cpu/conv_winograd4.h"

#include "core/cpu/conv_winograd_driver.h"
#include "core/cpu/conv_winograd4_planes.h"

namespace lowbit {

#ifdef LB_SIMD

namespace {

using namespace winograd;

// out[4l + k] = y_k[l] for the W lanes: 4W floats, as 4 vectors.
void interleave4(V* out, V y0, V y1, V y2, V y3) {
#if LB_SIMD == 512
  V p[2], q[2];  // pairs (y0, y1) and (y2, y3) interleaved, then the pairs as 64-bit elements
  interleave2(p, y0, y1);
  interleave2(q, y2, y3);
  const __m512d p0 = _mm512_castps_pd(p[0]), p1 = _mm512_castps_pd(p[1]);
  const __m512d q0 = _mm512_castps_pd(q[0]), q1 = _mm512_castps_pd(q[1]);
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

// F(4x4, 3x3): the transforms for the driver (conv_winograd_driver.h).
struct F4 {
  static constexpr int R = 4;
  // G times a 3-vector; products by the reciprocals, not divisions (54 divisions a weight made the
  // transform of a 64-channel layer cost as much as its input transforms).
  static void gvec(double g0, double g1, double g2, double* u) {
    constexpr double k6 = 1.0 / 6, k12 = 1.0 / 12, k24 = 1.0 / 24;
    u[0] = 0.25 * g0;
    u[1] = -k6 * (g0 + g1 + g2);
    u[2] = -k6 * (g0 - g1 + g2);
    u[3] = k24 * g0 + k12 * g1 + k6 * g2;
    u[4] = k24 * g0 - k12 * g1 + k6 * g2;
    u[5] = g2;
  }
  static void fill_planes(float* P, const float* x, int64_t im, const Tiling& t) {
    fill_planes4(P, x, im, t);
  }
  static void input_transform(float* Vb, int64_t ps, const float* P, const BlockScan& scan,
                              const Tiling& t) {
    input_transform4(Vb, ps, P, scan, t);
  }
  // y tiles of channel o = A^T M A + bias for the block's tiles.
  template <bool Acc>
  static void output_transform(float* y, const float* Mb, int64_t ps, const RunsOfBlock& runs,
                               int64_t o, float bias, const Tiling& t, float* row) {
    float* yo = y + o * t.OH * t.OW;
    const float c2 = 2, c4 = 4, c8 = 8;
    const V vb = Simd::bcast(&bias), two = Simd::bcast(&c2), four = Simd::bcast(&c4);
    const V eight = Simd::bcast(&c8);
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
      for (int i = 0; i < 4; ++i) {  // (A^T M) A, plus the bias: output row i of each tile
        V r[4], out[4];
        output_rows(r, s[i], two, four, eight);
        interleave4(out, Simd::add(r[0], vb), Simd::add(r[1], vb), Simd::add(r[2], vb),
                    Simd::add(r[3], vb));
        store_row<4, Acc>(yo, i, out, runs[vi], t.OW, row);
      }
    }
  }
};

}  // namespace

void winograd4_conv(float* y, const float* x, const float* w, const float* b, const ConvGeom& g,
                    const ConvEpilogue<float>* ep, int force_nq, bool accumulate) {
  winograd::forward<F4>(y, x, w, b, g, ep, force_nq, accumulate);
}

#endif  // LB_SIMD

}  // namespace lowbit
