// DoReFa ops and kernels (quant/dorefa.h). Weights: w_q = 2·quantize_k(tanh(w)/max|tanh w|·½ + ½) - 1,
// activations: quantize_k(clip(x, 0, 1)); METHODS.md "DoReFa". The arithmetic follows the authors'
// expression order (x / max * 0.5 + 0.5) so results compare with their code.
#include "quant/dorefa.h"

#include <cmath>
#include <vector>

#include "core/autograd.h"
#include "core/cuda/kernels.h"
#include "quant/reduce_kernels.h"

namespace lowbit {

namespace {
template <class T>
T quantize_k(T r, T levels) {
  return round_half_even(r * levels) / levels;
}
}  // namespace

template <class T>
void dorefa_w_forward_cpu(T* y, T* m, const T* w, int64_t levels, int64_t n) {
  T mx = 0;  // a max is exact in any order, so a serial pass is deterministic
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, (T)std::fabs(std::tanh(w[i])));
  m[0] = mx;
  const T lv = (T)levels;
  parallel_for(n, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T r = mx > 0 ? std::tanh(w[i]) / mx * (T)0.5 + (T)0.5 : (T)0.5;
      y[i] = (T)2 * quantize_k(r, lv) - (T)1;
    }
  });
}

template <class T>
void dorefa_w_backward_cpu(T* gw, const T* gy, const T* w, const T* m, int64_t n) {
  const T mx = m[0];
  if (!(mx > 0)) {
    for (int64_t i = 0; i < n; ++i) gw[i] = 0;
    return;
  }
  // g_m = Σ_j ∂L/∂r_j · ∂r_j/∂m = Σ_j 2·gy_j · (-½·t_j/m²); ties at the max share it equally.
  double gm = 0;
  channel_block_sums(&gm, 1, n, [&](int64_t i) -> double {
    return -(double)gy[i] * (double)std::tanh(w[i]) / ((double)mx * (double)mx);
  });
  int64_t ties = 0;
  for (int64_t i = 0; i < n; ++i) ties += std::fabs(std::tanh(w[i])) == mx;
  const T share = (T)(gm / (double)ties);
  parallel_for(n, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T t = std::tanh(w[i]);
      T gt = gy[i] / mx;  // 2·gy · ½/m
      if (std::fabs(t) == mx) gt += t > 0 ? share : -share;
      gw[i] = gt * ((T)1 - t * t);
    }
  });
}

template <class T>
void dorefa_a_forward_cpu(T* y, const T* x, int64_t levels, int64_t n) {
  const T lv = (T)levels;
  parallel_for(n, 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = quantize_k(x[i] < 0 ? (T)0 : (x[i] > 1 ? (T)1 : x[i]), lv);
  });
}

template <class T>
void dorefa_a_backward_cpu(T* gx, const T* gy, const T* x, bool clipped, int64_t n) {
  parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) gx[i] = (!clipped || (x[i] >= 0 && x[i] <= 1)) ? gy[i] : (T)0;
  });
}

#define LB_DOREFA_INST(T)                                                                  \
  template void dorefa_w_forward_cpu<T>(T*, T*, const T*, int64_t, int64_t);               \
  template void dorefa_w_backward_cpu<T>(T*, const T*, const T*, const T*, int64_t);       \
  template void dorefa_a_forward_cpu<T>(T*, const T*, int64_t, int64_t);                   \
  template void dorefa_a_backward_cpu<T>(T*, const T*, const T*, bool, int64_t);
LB_DOREFA_INST(float)
LB_DOREFA_INST(double)
#undef LB_DOREFA_INST

Tensor dorefa_quantize_weight(const Tensor& w, const DorefaOptions& o) {
  const char* op = "dorefa_w";
  check_bits(op, o.bits, 2, 16);
  check_quant_input(w, op, "w", /*cuda_ok=*/true);
  LB_CHECK(o.ste == Ste::method_default, op,
           ": ste cannot be chosen for DoReFa weights (no clipping: tanh is differentiated)");
  const int64_t levels = (int64_t(1) << o.bits) - 1;
  Tensor y = Tensor::empty(w.shape(), w.dtype(), w.device());
  Tensor m = Tensor::empty({1}, w.dtype(), w.device());
  if (w.device() == Device::cuda)
    cuda::dorefa_w_forward(y.data<float>(), m.data<float>(), w.data<float>(), levels, w.numel());
  else
  LB_DISPATCH_FLOAT(w.dtype(), op, [&] {
    dorefa_w_forward_cpu<scalar_t>(y.data<scalar_t>(), m.data<scalar_t>(), w.data<scalar_t>(), levels,
                                   w.numel());
  });
  Tensor sw = w.detach();
  Tensor out = record(y, op, {w}, {"w"}, [sw, m](const Node&, const Tensor& gy) {
    Tensor gw = Tensor::empty(sw.shape(), sw.dtype(), sw.device());
    if (sw.device() == Device::cuda)
      cuda::dorefa_w_backward(gw.data<float>(), gy.data<float>(), sw.data<float>(), m.data<float>(),
                              sw.numel());
    else
    LB_DISPATCH_FLOAT(sw.dtype(), "dorefa_w backward", [&] {
      dorefa_w_backward_cpu<scalar_t>(gw.data<scalar_t>(), gy.data<scalar_t>(), sw.data<scalar_t>(),
                                      m.data<scalar_t>(), sw.numel());
    });
    return std::vector<Tensor>{gw};
  });
  return set_node_attrs(out, {{"bits", o.bits}});  // for the audit
}

Tensor dorefa_quantize_activation(const Tensor& x, const DorefaOptions& o) {
  const char* op = "dorefa_a";
  check_bits(op, o.bits, 2, 16);
  check_quant_input(x, op, "x", /*cuda_ok=*/true);
  const int64_t levels = (int64_t(1) << o.bits) - 1;
  const bool clipped = ste_clipped(o.ste, true);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device() == Device::cuda)
    cuda::dorefa_a_forward(y.data<float>(), x.data<float>(), levels, x.numel());
  else
  LB_DISPATCH_FLOAT(x.dtype(), op, [&] {
    dorefa_a_forward_cpu<scalar_t>(y.data<scalar_t>(), x.data<scalar_t>(), levels, x.numel());
  });
  Tensor sx = x.detach();
  Tensor out = record(y, op, {x}, {"x"}, [sx, clipped](const Node&, const Tensor& gy) {
    Tensor gx = Tensor::empty(sx.shape(), sx.dtype(), sx.device());
    if (sx.device() == Device::cuda)
      cuda::dorefa_a_backward(gx.data<float>(), gy.data<float>(), sx.data<float>(), clipped, sx.numel());
    else
    LB_DISPATCH_FLOAT(sx.dtype(), "dorefa_a backward", [&] {
      dorefa_a_backward_cpu<scalar_t>(gx.data<scalar_t>(), gy.data<scalar_t>(), sx.data<scalar_t>(),
                                      clipped, sx.numel());
    });
    return std::vector<Tensor>{gx};
  });
  return set_node_attrs(out, {{"bits", o.bits}, {"ste_clipped", clipped}});
}

}  // namespace lowbit
