// What an inference convolution does to its output before storing it for good (the fused op
// conv2d_bn_act, core/ops.h): eval-mode batch norm, a residual added, an activation,
//   y = act((v - mu) * scale + shift + residual),   v = the convolution's value (with its bias).
// Applied to one output plane (image n, channel o) right after the kernel finished it, while the
// plane is still in cache, instead of three later passes over the whole tensor (batch norm, add,
// ReLU). Each step is the same float expression as the op it replaces (batch_norm_forward_cpu,
// add_relu, relu), with FMA contraction off, so the values are those ops' bit for bit.
#pragma once
#include <cstdint>

#include "core/activation.h"

namespace lowbit {

template <class T>
struct ConvEpilogue {
  const T* mu = nullptr;        // batch norm per output channel (batch_norm_affine); null: none
  const T* scale = nullptr;
  const T* shift = nullptr;
  const T* residual = nullptr;  // (N, O, OH, OW), added after the batch norm; null: none
  FusedAct act = FusedAct::none;
};

namespace conv_epilogue_detail {

template <bool BN, bool Res, FusedAct Act, class T>
void plane(T* __restrict y, const T* __restrict r, int64_t len, T mu, T sc, T sh) {
  for (int64_t i = 0; i < len; ++i) {
    T v = y[i];
    if constexpr (BN) v = (v - mu) * sc + sh;
    if constexpr (Res) v = v + r[i];
    y[i] = act_fwd<Act>(v);
  }
}

template <bool BN, bool Res, class T>
void plane_act(T* y, const T* r, int64_t len, T mu, T sc, T sh, FusedAct act) {
  switch (act) {
    case FusedAct::none: return plane<BN, Res, FusedAct::none>(y, r, len, mu, sc, sh);
    case FusedAct::relu: return plane<BN, Res, FusedAct::relu>(y, r, len, mu, sc, sh);
    case FusedAct::relu6: return plane<BN, Res, FusedAct::relu6>(y, r, len, mu, sc, sh);
  }
}

}  // namespace conv_epilogue_detail

// Applies e in place to y, the len = OH*OW values of image n, output channel o of O. e may be
// null (nothing to do).
template <class T>
void conv_epilogue_plane(T* y, int64_t len, const ConvEpilogue<T>* e, int64_t n, int64_t o,
                         int64_t O) {
  using namespace conv_epilogue_detail;
  if (!e) return;
  const bool bn = e->mu != nullptr;
  const T mu = bn ? e->mu[o] : T(0), sc = bn ? e->scale[o] : T(1), sh = bn ? e->shift[o] : T(0);
  const T* r = e->residual ? e->residual + (n * O + o) * len : nullptr;
  if (bn && r) return plane_act<true, true>(y, r, len, mu, sc, sh, e->act);
  if (bn) return plane_act<true, false>(y, r, len, mu, sc, sh, e->act);
  if (r) return plane_act<false, true>(y, r, len, mu, sc, sh, e->act);
  plane_act<false, false>(y, r, len, mu, sc, sh, e->act);
}

}  // namespace lowbit
