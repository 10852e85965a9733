// The register tiles of the direct convolution (conv_direct.cpp), written once against Simd
// (core/cpu/simd.h: AVX-512 or AVX2). Used by conv_direct.cpp, conv_1x1_packed.cpp and
// conv_winograd.cpp (whose per-position products are the forward tile with channels as taps).
//
// Forward tile: MR output channels x NQ vectors of grid positions. Per tap: NQ vector loads of the
// shifted plane, MR broadcasts of packed weights, MR*NQ fused multiply-adds; the sums stay in
// registers over all the tile's taps.
// Weight-gradient tile: MK taps x NV vectors of output channels, summed over a batch of images'
// positions: per position NV loads of dy (transposed position-major: a position's channels are
// the lanes), MK broadcasts of the shifted planes, MK*NV fused multiply-adds. (Vectors along the
// positions instead, dy copied onto the grid, were tried and dropped as slower: MK shifted
// unaligned loads per position vector, and a lane reduction per tile.)
#pragma once
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/cpu/simd.h"

namespace lowbit {
namespace conv_tiles {

using V = Simd::V;
constexpr int64_t W = Simd::kWidth;
// Forward tiles: MR*NQ accumulators, NQ plane vectors and a broadcast in the vector registers.
// Per tap they load NQ + MR values for MR*NQ multiply-adds, so the squarer the better: with
// AVX-512, 8 x 3 (11 loads for 24 FMAs) beats 12 x 2 (14 for 24).
constexpr int kMaxNQ = Simd::kRegs == 32 ? 4 : 2;
constexpr int kMaxAcc = Simd::kRegs == 32 ? 28 : 12;
constexpr int max_mr(int nq) { return kMaxAcc / nq; }

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Position vectors per forward tile (its channel blocks then take up to max_mr(nq)) for og output
// channels over q positions: the fewest multiply-adds wasted on rounding the channels up to equal
// blocks and the positions up to whole tiles, weighed with the loads per multiply-add. force_nq
// > 0 takes that one.
inline int pick_nq(int64_t og, int64_t q, int force_nq) {
  int best = 1;
  double best_cost = 1e300;
  for (int nq = 1; nq <= kMaxNQ; ++nq) {
    if (force_nq > 0 && nq != force_nq) continue;
    const int64_t mmr = max_mr(nq), nblocks = (og + mmr - 1) / mmr;
    const int64_t mr = (og + nblocks - 1) / nblocks;  // the largest block
    const double loads_per_fma = (double)(nq + mr) / (double)(nq * mr);
    const double fma_waste = (double)(nblocks * mr) / og * (double)round_up(q, nq * W) / q;
    // Measured on ResNet-20's layers (bench-ops): the multiply-adds alone do not predict the
    // speed, the loads per multiply-add count too, so the cost weighs both.
    const double cost = fma_waste * (0.5 + 0.25 * loads_per_fma);
    if (cost < best_cost) best_cost = cost, best = nq;
  }
  return best;
}

// out[i][0 .. NQ*W) (+)= sum over taps k of wp[k][i] * xp[koff[k] + 0 .. NQ*W), i < MR; with
// accumulate the sums start from out's current values (an earlier range of taps).
template <int MR, int NQ>
void fwd_tile(float* out, int64_t ldo, const float* xp, const int64_t* koff, int64_t K,
              const float* wp, bool accumulate) {
  V acc[NQ][MR];  // fully unrolled below, so GCC keeps every accumulator in a register
#pragma GCC unroll 4
  for (int v = 0; v < NQ; ++v)
#pragma GCC unroll 28
    for (int i = 0; i < MR; ++i)
      acc[v][i] = accumulate ? Simd::load(out + i * ldo + v * W) : Simd::zero();
  for (int64_t k = 0; k < K; ++k) {
    const float* p = xp + koff[k];
    V b[NQ];
#pragma GCC unroll 4
    for (int v = 0; v < NQ; ++v) b[v] = Simd::load(p + v * W);
    const float* a = wp + k * MR;
#pragma GCC unroll 28
    for (int i = 0; i < MR; ++i) {
      const V ai = Simd::bcast(a + i);
#pragma GCC unroll 4
      for (int v = 0; v < NQ; ++v) acc[v][i] = Simd::fma(ai, b[v], acc[v][i]);
    }
  }
#pragma GCC unroll 4
  for (int v = 0; v < NQ; ++v)
#pragma GCC unroll 28
    for (int i = 0; i < MR; ++i) Simd::store(out + i * ldo + v * W, acc[v][i]);
}

using FwdTileFn = void (*)(float*, int64_t, const float*, const int64_t*, int64_t, const float*, bool);

template <int NQ, int... I>
constexpr auto fwd_table(std::integer_sequence<int, I...>) {
  return std::array<FwdTileFn, sizeof...(I)>{&fwd_tile<I + 1, NQ>...};
}

template <int... Q>
auto fwd_tables(std::integer_sequence<int, Q...>) {
  return std::array<std::vector<FwdTileFn>, sizeof...(Q)>{[] {
    const auto t = fwd_table<Q + 1>(std::make_integer_sequence<int, max_mr(Q + 1)>());
    return std::vector<FwdTileFn>(t.begin(), t.end());
  }()...};
}

// fwd_tile<mr, nq> for run-time nq in [1, kMaxNQ] and mr in [1, max_mr(nq)].
inline FwdTileFn fwd_tile_fn(int64_t mr, int nq) {
  static const auto t = fwd_tables(std::make_integer_sequence<int, kMaxNQ>());
  return t[(size_t)nq - 1][(size_t)mr - 1];
}

// out[i][0 .. NV*W) += sum over the images' positions p of xp[koff[i] + p] * dT[p][0 .. NV*W),
// i < MK, for a batch of images.
struct WgradPositions {
  int64_t n, xstride, dstride;  // images, floats between their planes and between their dT
  int64_t OH, OW, Wp;           // output rows and columns; plane row width
};

template <int MK, int NV>
void wgrad_tile(float* out, int64_t ldo, const float* xp, const int64_t* koff, const float* dT,
                int64_t ldt, const WgradPositions& ps) {
  static_assert(NV == 1 || NV == 2, "one or two vectors of output channels");
  V acc0[MK], acc1[MK];
  int64_t ko[MK];
#pragma GCC unroll 8
  for (int i = 0; i < MK; ++i) {
    ko[i] = koff[i];
    acc0[i] = acc1[i] = Simd::zero();
  }
  // One loop over all positions (nested loops made GCC keep the accumulators in memory): xq walks
  // the plane, skipping the Wp - OW columns at the end of each row and jumping to the next
  // image's planes at the end of an image.
  const float* xq = xp;
  const float* d = dT;
  const int64_t total = ps.n * ps.OH * ps.OW;
  for (int64_t p = 0, ow = 0, oh = 0, im = 0; p < total; ++p) {
    const V d0 = Simd::load(d);
    const V d1 = NV == 2 ? Simd::load(d + W) : Simd::zero();
#pragma GCC unroll 8
    for (int i = 0; i < MK; ++i) {
      const V a = Simd::bcast(xq + ko[i]);
      acc0[i] = Simd::fma(a, d0, acc0[i]);
      if (NV == 2) acc1[i] = Simd::fma(a, d1, acc1[i]);
    }
    ++xq;
    d += ldt;
    if (++ow == ps.OW) {
      ow = 0;
      xq += ps.Wp - ps.OW;
      if (++oh == ps.OH) {
        oh = 0;
        ++im;
        xq = xp + im * ps.xstride;
        d = dT + im * ps.dstride;
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MK; ++i) {
    float* o = out + i * ldo;
    Simd::store(o, Simd::add(Simd::load(o), acc0[i]));
    if (NV == 2) Simd::store(o + W, Simd::add(Simd::load(o + W), acc1[i]));
  }
}

constexpr int kMaxMK = 8;  // taps per gradient tile: 8 offsets stay in general registers

using WgradTileFn = void (*)(float*, int64_t, const float*, const int64_t*, const float*, int64_t,
                              const WgradPositions&);

template <int NV, int... K>
constexpr auto wgrad_table(std::integer_sequence<int, K...>) {
  return std::array<WgradTileFn, sizeof...(K)>{&wgrad_tile<K + 1, NV>...};
}

inline WgradTileFn wgrad_tile_fn(int64_t mk, int nv) {
  static const auto t1 = wgrad_table<1>(std::make_integer_sequence<int, kMaxMK>());
  static const auto t2 = wgrad_table<2>(std::make_integer_sequence<int, kMaxMK>());
  return nv == 1 ? t1[(size_t)mk - 1] : t2[(size_t)mk - 1];
}

}  // namespace conv_tiles
}  // namespace lowbit
