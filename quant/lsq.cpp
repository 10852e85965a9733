// LSQ and LSQ+ ops: checks, allocation, node recording and the init helpers (quant/lsq.h).
// x̂ = round(clip((x-β)/s, -Q_N, Q_P))·s + β; METHODS.md "LSQ", "LSQ+". Kernels: quant/lsq_kernels.h.
#include "quant/lsq.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/autograd.h"
#include "core/cuda/kernels.h"
#include "quant/lsq_kernels.h"

namespace lowbit {

namespace {

struct LsqSetup {
  QuantRange r;
  int64_t channels = 1, inner = 0;
  double g = 1, g_beta = 1;
  bool clipped = true;
};

LsqSetup lsq_setup(const Tensor& x, const Tensor& s, const Tensor* beta, const LsqOptions& o,
                   const char* op) {
  check_bits(op, o.bits, 2, 16);
  check_quant_input(x, op, "x", /*cuda_ok=*/true);
  check_param_dtype(x, s, op, "s");
  LsqSetup st;
  st.channels = check_param_shape(x, s, o.per_channel, op, "s");
  check_positive(s, op, "s");
  if (beta) {
    check_param_dtype(x, *beta, op, "beta");
    LB_CHECK(beta->shape() == s.shape(), op, ": 'beta' must have the shape of 's' ",
             shape_str(s.shape()), ", got ", shape_str(beta->shape()));
  }
  LB_CHECK(o.grad_scale_n >= 0, op, ": grad_scale_n must be >= 0, got ", o.grad_scale_n);
  LB_CHECK(std::isfinite(o.grad_scale), op, ": grad_scale must be finite, got ", o.grad_scale);
  st.r = quant_range(o.bits, o.is_signed);
  st.inner = st.channels ? x.numel() / st.channels : 0;
  st.g = lsq_grad_scale(x, o);
  st.g_beta = o.scale_offset_grad ? st.g : 1.0;
  st.clipped = ste_clipped(o.ste, true);
  return st;
}

Tensor lsq_common(const Tensor& x, const Tensor& s, const Tensor* beta, const LsqOptions& o,
                  const char* op) {
  LsqSetup st = lsq_setup(x, s, beta, o, op);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor bt = beta ? beta->detach() : Tensor();
  if (x.device() == Device::cuda)
    cuda::lsq_forward(y.data<float>(), x.data<float>(), s.data<float>(),
                      beta ? bt.data<float>() : nullptr, st.r.qn, st.r.qp, st.channels, st.inner);
  else
  LB_DISPATCH_FLOAT(x.dtype(), op, [&] {
    lsq_forward_cpu<scalar_t>(y.data<scalar_t>(), x.data<scalar_t>(), s.data<scalar_t>(),
                              beta ? bt.data<scalar_t>() : nullptr, st.r.qn, st.r.qp, st.channels,
                              st.inner);
  });
  Tensor sx = x.detach(), ss = s.detach();
  const std::string opname = op;
  BackwardFn bw = [sx, ss, bt, st, opname](const Node& n, const Tensor& gy) {
    const Device d = sx.device();
    // On the CPU, x's gradient overwrites gy where nothing else reads gy (the kernel reads each
    // gy[i] before it writes gx[i]).
    Tensor gx;
    if (n.needs_grad(0))
      gx = d == Device::cpu && grad_reusable(n, gy) ? gy : Tensor::empty(sx.shape(), sx.dtype(), d);
    Tensor gs = n.needs_grad(1) ? Tensor::empty(ss.shape(), ss.dtype(), d) : Tensor();
    Tensor gb = bt.defined() && n.needs_grad(2) ? Tensor::empty(bt.shape(), bt.dtype(), d) : Tensor();
    if (d == Device::cuda)
      cuda::lsq_backward(gx.defined() ? gx.data<float>() : nullptr,
                         gs.defined() ? gs.data<float>() : nullptr,
                         gb.defined() ? gb.data<float>() : nullptr, gy.data<float>(),
                         sx.data<float>(), ss.data<float>(), bt.defined() ? bt.data<float>() : nullptr,
                         st.r.qn, st.r.qp, st.g, st.g_beta, st.clipped, st.channels, st.inner);
    else
    LB_DISPATCH_FLOAT(sx.dtype(), opname.c_str(), [&] {
      lsq_backward_cpu<scalar_t>(gx.defined() ? gx.data<scalar_t>() : nullptr,
                                 gs.defined() ? gs.data<scalar_t>() : nullptr,
                                 gb.defined() ? gb.data<scalar_t>() : nullptr, gy.data<scalar_t>(),
                                 sx.data<scalar_t>(), ss.data<scalar_t>(),
                                 bt.defined() ? bt.data<scalar_t>() : nullptr, st.r.qn, st.r.qp, st.g,
                                 st.g_beta, st.clipped, st.channels, st.inner);
    });
    std::vector<Tensor> out{gx, gs};
    if (bt.defined()) out.push_back(gb);
    return out;
  };
  Tensor out = beta ? record(y, op, {x, s, *beta}, {"x", "s", "beta"}, bw)
                    : record(y, op, {x, s}, {"x", "s"}, bw);
  // Options for the audit (quant/quant_stats.h) and graph dumps.
  return set_node_attrs(out, {{"bits", o.bits}, {"signed", o.is_signed}, {"per_channel", o.per_channel},
                              {"grad_scale", st.g}, {"ste_clipped", st.clipped}});
}

// (C, inner) view of x's values in double, C = x.size(0) per-channel, else 1.
std::vector<std::vector<double>> channel_values(const Tensor& x, bool per_channel, const char* op) {
  check_quant_input(x, op, "x", /*cuda_ok=*/true);  // read through to_vector: any device
  LB_CHECK(x.numel() > 0, op, ": input is empty");
  if (per_channel)
    LB_CHECK(x.dim() >= 2, op, ": per_channel needs an input with a channel axis (>= 2-d), got shape ",
             shape_str(x.shape()));
  const int64_t c = per_channel ? x.size(0) : 1, inner = x.numel() / c;
  std::vector<double> v = x.to_vector<double>();
  std::vector<std::vector<double>> out((size_t)c);
  for (int64_t k = 0; k < c; ++k) out[(size_t)k].assign(v.begin() + k * inner, v.begin() + (k + 1) * inner);
  return out;
}

Tensor param_tensor(const std::vector<double>& v, DType dt) {
  return Tensor::from_vector<double>({(int64_t)v.size()}, v).to(dt);
}

}  // namespace

double lsq_grad_scale(const Tensor& x, const LsqOptions& o) {
  if (o.grad_scale >= 0) return o.grad_scale;
  const QuantRange r = quant_range(o.bits, o.is_signed);
  int64_t n = o.grad_scale_n;
  if (n <= 0) n = o.per_channel && x.dim() >= 1 && x.size(0) > 0 ? x.numel() / x.size(0) : x.numel();
  return 1.0 / std::sqrt((double)std::max<int64_t>(n, 1) * (double)r.qp);
}

Tensor lsq_quantize(const Tensor& x, const Tensor& s, const LsqOptions& o) {
  return lsq_common(x, s, nullptr, o, "lsq");
}

Tensor lsqplus_quantize(const Tensor& x, const Tensor& s, const Tensor& beta, const LsqOptions& o) {
  check_defined(beta, "lsqplus", "beta");
  return lsq_common(x, s, &beta, o, "lsqplus");
}

Tensor lsq_init_step(const Tensor& x, int bits, bool is_signed, bool per_channel) {
  check_bits("lsq_init_step", bits, 2, 16);
  const QuantRange r = quant_range(bits, is_signed);
  std::vector<double> s;
  for (const auto& ch : channel_values(x, per_channel, "lsq_init_step")) {
    double acc = 0;
    for (double v : ch) acc += std::fabs(v);
    double st = 2.0 * (acc / (double)ch.size()) / std::sqrt((double)r.qp);
    LB_CHECK(st > 0, "lsq_init_step: mean |x| is 0, the step would be 0 (all-zero input)");
    s.push_back(st);
  }
  return param_tensor(s, x.dtype());
}

std::pair<Tensor, Tensor> lsqplus_init_minmax(const Tensor& x, int bits, bool is_signed,
                                              bool per_channel) {
  check_bits("lsqplus_init_minmax", bits, 2, 16);
  const QuantRange r = quant_range(bits, is_signed);
  std::vector<double> s, b;
  for (const auto& ch : channel_values(x, per_channel, "lsqplus_init_minmax")) {
    auto [mn, mx] = std::minmax_element(ch.begin(), ch.end());
    double st = (*mx - *mn) / (double)(r.qp + r.qn);
    LB_CHECK(st > 0, "lsqplus_init_minmax: max == min == ", *mn, ", the step would be 0");
    s.push_back(st);
    b.push_back(*mn + (double)r.qn * st);
  }
  return {param_tensor(s, x.dtype()), param_tensor(b, x.dtype())};
}

std::pair<Tensor, Tensor> lsqplus_init_mse(const Tensor& x, int bits, bool is_signed) {
  check_bits("lsqplus_init_mse", bits, 2, 16);
  const QuantRange r = quant_range(bits, is_signed);
  const std::vector<double> v = channel_values(x, false, "lsqplus_init_mse")[0];
  auto [mn_it, mx_it] = std::minmax_element(v.begin(), v.end());
  const double mn = *mn_it, mx = *mx_it;
  LB_CHECK(mx > mn, "lsqplus_init_mse: max == min == ", mn, ", the step would be 0");
  auto mse = [&](double lo, double hi) {
    const double st = (hi - lo) / (double)(r.qp + r.qn), be = lo + (double)r.qn * st;
    double err = 0;
    for (double e : v) {
      double q = std::min(std::max((e - be) / st, (double)-r.qn), (double)r.qp);
      double d = e - (round_half_even(q) * st + be);
      err += d * d;
    }
    return err;
  };
  // Coordinate search: the upper end over [min, max] shrunk by 1, 0.99, ..., 0.01 of the span
  // with the lower end at min, then the lower end likewise. Ties keep the wider range.
  double lo = mn, hi = mx, best = mse(lo, hi);
  for (int k = 99; k >= 1; --k) {
    const double h = lo + (k / 100.0) * (mx - lo), e = mse(lo, h);
    if (e < best) best = e, hi = h;
  }
  const double hi_fixed = hi;
  for (int k = 99; k >= 1; --k) {
    const double l = hi_fixed - (k / 100.0) * (hi_fixed - mn), e = mse(l, hi_fixed);
    if (e < best) best = e, lo = l;
  }
  const double best_s = (hi - lo) / (double)(r.qp + r.qn), best_b = lo + (double)r.qn * best_s;
  return {param_tensor({best_s}, x.dtype()), param_tensor({best_b}, x.dtype())};
}

}  // namespace lowbit
