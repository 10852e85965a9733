// Min-max fake quantization op, range and EMA helpers (quant/minmax.h):
// q = clamp(round(x/S) + Z, q_min, q_max), x̂ = S(q - Z); METHODS.md "Min-max fake quantization".
#include "quant/minmax.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/autograd.h"
#include "core/cuda/kernels.h"
#include "core/ops.h"
#include "core/parallel.h"

namespace lowbit {

template <class T>
void minmax_forward_cpu(T* y, const T* x, const T* scale, const T* zero, int64_t qmin, int64_t qmax,
                        int64_t channels, int64_t inner) {
  const T lo = (T)qmin, hi = (T)qmax;
  parallel_for(channels * inner, 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t c = i / inner;
      T q = round_half_even(x[i] / scale[c]) + zero[c];
      q = q < lo ? lo : (q > hi ? hi : q);
      y[i] = (q - zero[c]) * scale[c];
    }
  });
}

template <class T>
void minmax_backward_cpu(T* gx, const T* gy, const T* x, const T* scale, const T* zero, int64_t qmin,
                         int64_t qmax, bool clipped, int64_t channels, int64_t inner) {
  const T lo = (T)qmin, hi = (T)qmax;
  parallel_for(channels * inner, 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t c = i / inner;
      const T q = round_half_even(x[i] / scale[c]) + zero[c];
      gx[i] = (!clipped || (q >= lo && q <= hi)) ? gy[i] : (T)0;
    }
  });
}

template void minmax_forward_cpu<float>(float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t);
template void minmax_forward_cpu<double>(double*, const double*, const double*, const double*, int64_t, int64_t, int64_t, int64_t);
template void minmax_backward_cpu<float>(float*, const float*, const float*, const float*, const float*, int64_t, int64_t, bool, int64_t, int64_t);
template void minmax_backward_cpu<double>(double*, const double*, const double*, const double*, const double*, int64_t, int64_t, bool, int64_t, int64_t);

void minmax_scale_zero(double mn, double mx, int bits, bool symmetric, double* scale, double* zero) {
  mn = std::min(mn, 0.0), mx = std::max(mx, 0.0);  // widened to contain 0
  if (symmetric) {
    const double qp = (double)((int64_t(1) << (bits - 1)) - 1);
    *scale = std::max(std::fabs(mn), std::fabs(mx)) / qp;
    *zero = 0;
  } else {
    const double n = (double)((int64_t(1) << bits) - 1);
    *scale = (mx - mn) / n;
    *zero = *scale > 0 ? std::min(std::max(round_half_even(-mn / *scale), 0.0), n) : 0.0;
  }
  if (!(*scale > 0)) *scale = 1, *zero = 0;
}

std::pair<Tensor, Tensor> minmax_range(const Tensor& x, bool per_channel) {
  const char* op = "minmax_range";
  check_quant_input(x, op, "x", /*cuda_ok=*/true);  // read through to_vector: any device
  LB_CHECK(x.numel() > 0, op, ": input is empty");
  if (per_channel)
    LB_CHECK(x.dim() >= 2, op, ": per_channel needs an input with a channel axis (>= 2-d), got shape ",
             shape_str(x.shape()));
  const int64_t C = per_channel ? x.size(0) : 1, inner = x.numel() / C;
  std::vector<double> v = x.to_vector<double>(), mn((size_t)C), mx((size_t)C);
  for (int64_t c = 0; c < C; ++c) {
    auto [a, b] = std::minmax_element(v.begin() + c * inner, v.begin() + (c + 1) * inner);
    mn[(size_t)c] = *a, mx[(size_t)c] = *b;
  }
  Tensor tmn = Tensor::from_vector<double>({C}, mn).to(x.dtype());
  Tensor tmx = Tensor::from_vector<double>({C}, mx).to(x.dtype());
  if (x.device() != Device::cpu) return {tmn.to_device(x.device()), tmx.to_device(x.device())};
  return {tmn, tmx};
}

Tensor minmax_quantize(const Tensor& x, const Tensor& range_min, const Tensor& range_max,
                       const MinMaxOptions& o) {
  const char* op = "minmax";
  check_bits(op, o.bits, 2, 16);
  check_quant_input(x, op, "x", /*cuda_ok=*/true);
  check_param_dtype(x, range_min, op, "range_min");
  check_param_dtype(x, range_max, op, "range_max");
  const int64_t C = check_param_shape(x, range_min, o.per_channel, op, "range_min");
  check_param_shape(x, range_max, o.per_channel, op, "range_max");
  const std::vector<double> mn = range_min.to_vector<double>(), mx = range_max.to_vector<double>();
  std::vector<double> sv((size_t)C), zv((size_t)C);
  for (int64_t c = 0; c < C; ++c) {
    LB_CHECK(std::isfinite(mn[c]) && std::isfinite(mx[c]) && mn[c] <= mx[c], op,
             ": range must be finite with min <= max, got [", mn[c], ", ", mx[c], "]",
             C > 1 ? str_cat(" at channel ", c) : std::string());
    minmax_scale_zero(mn[c], mx[c], o.bits, o.symmetric, &sv[c], &zv[c]);
  }
  Tensor scale = Tensor::from_vector<double>({C}, sv).to(x.dtype());
  Tensor zero = Tensor::from_vector<double>({C}, zv).to(x.dtype());
  const bool gpu = x.device() == Device::cuda;
  if (gpu) {  // scale and zero are computed on the host (C values) and moved once
    scale = scale.to_device(Device::cuda);
    zero = zero.to_device(Device::cuda);
  }
  const int64_t qmax = o.symmetric ? (int64_t(1) << (o.bits - 1)) - 1 : (int64_t(1) << o.bits) - 1;
  const int64_t qmin = o.symmetric ? -qmax : 0;
  const int64_t inner = C ? x.numel() / C : 0;
  const bool clipped = ste_clipped(o.ste, true);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (gpu)
    cuda::minmax_forward(y.data<float>(), x.data<float>(), scale.data<float>(), zero.data<float>(),
                         qmin, qmax, C, inner);
  else
  LB_DISPATCH_FLOAT(x.dtype(), op, [&] {
    minmax_forward_cpu<scalar_t>(y.data<scalar_t>(), x.data<scalar_t>(), scale.data<scalar_t>(),
                                 zero.data<scalar_t>(), qmin, qmax, C, inner);
  });
  Tensor sx = x.detach();
  Tensor out = record(y, op, {x}, {"x"}, [=](const Node&, const Tensor& gy) {
    Tensor gx = Tensor::empty(sx.shape(), sx.dtype(), sx.device());
    if (sx.device() == Device::cuda) {
      cuda::minmax_backward(gx.data<float>(), gy.data<float>(), sx.data<float>(), scale.data<float>(),
                            zero.data<float>(), qmin, qmax, clipped, C, inner);
      return std::vector<Tensor>{gx};
    }
    LB_DISPATCH_FLOAT(sx.dtype(), "minmax backward", [&] {
      minmax_backward_cpu<scalar_t>(gx.data<scalar_t>(), gy.data<scalar_t>(), sx.data<scalar_t>(),
                                    scale.data<scalar_t>(), zero.data<scalar_t>(), qmin, qmax, clipped,
                                    C, inner);
    });
    return std::vector<Tensor>{gx};
  });
  // For the audit: the codes clamp to [qmin, qmax]; per-tensor, the range and its S and Z too.
  std::vector<std::pair<std::string, double>> attrs = {
      {"bits", o.bits}, {"symmetric", o.symmetric}, {"per_channel", o.per_channel},
      {"ste_clipped", clipped}, {"qmin", (double)qmin}, {"qmax", (double)qmax}};
  if (!o.per_channel)
    attrs.insert(attrs.end(), {{"scale", sv[0]}, {"zero", zv[0]}, {"range_min", mn[0]}, {"range_max", mx[0]}});
  return set_node_attrs(out, attrs);
}

Tensor minmax_quantize(const Tensor& x, const MinMaxOptions& o) {
  check_bits("minmax", o.bits, 2, 16);
  check_quant_input(x, "minmax", "x", /*cuda_ok=*/true);
  if (o.per_channel)
    LB_CHECK(x.dim() >= 2, "minmax: per_channel needs an input with a channel axis (>= 2-d), got shape ",
             shape_str(x.shape()));
  auto [mn, mx] = minmax_range(x, o.per_channel);
  return set_node_attrs(minmax_quantize(x, mn, mx, o), {{"range_from_x", 1}});
}

void minmax_ema_update(Tensor& running_min, Tensor& running_max, bool& initialized, const Tensor& x,
                       bool per_channel, double decay) {
  const char* op = "minmax_ema_update";
  LB_CHECK(decay >= 0 && decay < 1, op, ": decay must be in [0, 1), got ", decay);
  auto [mn, mx] = minmax_range(x, per_channel);
  LB_CHECK(running_min.shape() == mn.shape() && running_max.shape() == mx.shape() &&
               running_min.dtype() == x.dtype() && running_max.dtype() == x.dtype(),
           op, ": running range must have shape ", shape_str(mn.shape()), " and dtype ",
           dtype_name(x.dtype()), ", got ", shape_str(running_min.shape()), " ",
           dtype_name(running_min.dtype()));
  if (!initialized) {
    running_min.copy_from(mn);
    running_max.copy_from(mx);
    initialized = true;
    return;
  }
  NoGradGuard ng;
  Tensor nmin = add(mul_scalar(running_min.detach(), decay), mul_scalar(mn, 1 - decay));
  Tensor nmax = add(mul_scalar(running_max.detach(), decay), mul_scalar(mx, 1 - decay));
  running_min.copy_from(nmin);
  running_max.copy_from(nmax);
}

}  // namespace lowbit
