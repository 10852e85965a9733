// APoT and PoT ops (quant/apot.h): level sets, weight normalisation statistics, node recording.
// x̂ = α·q(clip(x/α)) with the gradients of seed 004 eq. 2.14; METHODS.md "Non-uniform quantizers".
#include "quant/apot.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/autograd.h"
#include "core/cuda/kernels.h"
#include "quant/apot_kernels.h"

namespace lowbit {

namespace {

// All sums a + b + c over the base sets, distinct, ascending, divided by the largest. The base
// values are powers of two, so the sums are exact and the division is correctly rounded.
std::vector<double> sum_levels(const std::vector<double>& A, const std::vector<double>& B,
                               const std::vector<double>& C) {
  std::set<double> s;
  for (double a : A)
    for (double b : B)
      for (double c : C) s.insert(a + b + c);
  const double mx = *s.rbegin();
  std::vector<double> out;
  for (double v : s) out.push_back(v / mx);
  return out;
}

enum class Family { apot, pot };

std::vector<double> levels_for(Family f, int B) {
  return f == Family::apot ? apot_levels(B) : pot_levels(B);
}

Tensor levels_tensor(Family f, int B, DType dt) {
  std::vector<double> l = levels_for(f, B);
  return Tensor::from_vector<double>({(int64_t)l.size()}, l).to(dt);
}

void check_alpha(const Tensor& x, const Tensor& alpha, const char* op) {
  check_param_dtype(x, alpha, op, "alpha");
  check_param_shape(x, alpha, false, op, "alpha");
  check_positive(alpha, op, "alpha");
}

Tensor weight_op(const Tensor& w, const Tensor& alpha, const ApotOptions& o, Family f, const char* op) {
  check_bits(op, o.bits, 2, f == Family::apot ? 5 : 8);
  check_quant_input(w, op, "w", /*cuda_ok=*/true);
  check_alpha(w, alpha, op);
  LB_CHECK(w.numel() >= 2, op, ": needs at least 2 weights for the unbiased std, got shape ",
           shape_str(w.shape()));
  const bool clipped = ste_clipped(o.ste, false);
  Tensor lv = levels_tensor(f, o.bits - 1, w.dtype());
  // Mean and unbiased std in double, deterministic (fixed blocks); constants for the backward.
  const int64_t n = w.numel();
  double sum = 0, ss = 0;
  const bool gpu = w.device() == Device::cuda;
  Tensor stats_dev;
  double ms[2] = {0, 1};
  if (gpu) {  // on the device (fixed tree); mean and std come back for the node's attributes
    lv = lv.to_device(Device::cuda);
    stats_dev = Tensor::empty({2}, w.dtype(), Device::cuda);
    cuda::apot_w_stats(stats_dev.data<float>(), ms, w.data<float>(), n);
    sum = ms[0] * (double)n;
  } else
  LB_DISPATCH_FLOAT(w.dtype(), op, [&] {
    const scalar_t* p = w.data<scalar_t>();
    channel_block_sums(&sum, 1, n, [&](int64_t i) { return (double)p[i]; });
    const double mean = sum / (double)n;
    channel_block_sums(&ss, 1, n, [&](int64_t i) { return ((double)p[i] - mean) * ((double)p[i] - mean); });
  });
  const double mean = gpu ? ms[0] : sum / (double)n, sd = gpu ? ms[1] : std::sqrt(ss / (double)(n - 1));
  Tensor stats = gpu ? stats_dev : Tensor::from_vector<double>({2}, {mean, sd > 0 ? sd : 1.0}).to(w.dtype());
  Tensor y = Tensor::empty(w.shape(), w.dtype(), w.device());
  if (gpu)
    cuda::apot_w_forward(y.data<float>(), w.data<float>(), alpha.data<float>(), stats.data<float>(),
                         lv.data<float>(), lv.numel(), n);
  else
  LB_DISPATCH_FLOAT(w.dtype(), op, [&] {
    apot_w_forward_cpu<scalar_t>(y.data<scalar_t>(), w.data<scalar_t>(), alpha.data<scalar_t>(),
                                 stats.data<scalar_t>(), lv.data<scalar_t>(), lv.numel(), n);
  });
  Tensor sw = w.detach(), sa = alpha.detach();
  Tensor out = record(y, op, {w, alpha}, {"w", "alpha"},
                [sw, sa, stats, lv, clipped](const Node& nd, const Tensor& gy) {
                  const Device d = sw.device();
                  Tensor gw = nd.needs_grad(0) ? Tensor::empty(sw.shape(), sw.dtype(), d) : Tensor();
                  Tensor ga = nd.needs_grad(1) ? Tensor::empty(sa.shape(), sa.dtype(), d) : Tensor();
                  if (d == Device::cuda)
                    cuda::apot_w_backward(gw.defined() ? gw.data<float>() : nullptr,
                                          ga.defined() ? ga.data<float>() : nullptr, gy.data<float>(),
                                          sw.data<float>(), sa.data<float>(), stats.data<float>(),
                                          lv.data<float>(), lv.numel(), clipped, sw.numel());
                  else
                  LB_DISPATCH_FLOAT(sw.dtype(), "apot backward", [&] {
                    apot_w_backward_cpu<scalar_t>(gw.defined() ? gw.data<scalar_t>() : nullptr,
                                                  ga.defined() ? ga.data<scalar_t>() : nullptr,
                                                  gy.data<scalar_t>(), sw.data<scalar_t>(),
                                                  sa.data<scalar_t>(), stats.data<scalar_t>(),
                                                  lv.data<scalar_t>(), lv.numel(), clipped, sw.numel());
                  });
                  return std::vector<Tensor>{gw, ga};
                });
  // The normalisation statistics too: the audit computes u = (w - mean)/std/α as the op did.
  return set_node_attrs(out, {{"bits", o.bits}, {"mean", mean}, {"std", sd > 0 ? sd : 1.0},
                              {"ste_clipped", clipped}});
}

Tensor activation_op(const Tensor& x, const Tensor& alpha, const ApotOptions& o, Family f,
                     const char* op) {
  check_bits(op, o.bits, 2, f == Family::apot ? 5 : 8);
  check_quant_input(x, op, "x", /*cuda_ok=*/true);
  check_alpha(x, alpha, op);
  const bool clipped = ste_clipped(o.ste, true);
  Tensor lv = levels_tensor(f, o.bits, x.dtype());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device() == Device::cuda) {
    lv = lv.to_device(Device::cuda);
    cuda::apot_a_forward(y.data<float>(), x.data<float>(), alpha.data<float>(), lv.data<float>(),
                         lv.numel(), x.numel());
  } else
  LB_DISPATCH_FLOAT(x.dtype(), op, [&] {
    apot_a_forward_cpu<scalar_t>(y.data<scalar_t>(), x.data<scalar_t>(), alpha.data<scalar_t>(),
                                 lv.data<scalar_t>(), lv.numel(), x.numel());
  });
  Tensor sx = x.detach(), sa = alpha.detach();
  Tensor out = record(y, op, {x, alpha}, {"x", "alpha"}, [sx, sa, lv, clipped](const Node& nd, const Tensor& gy) {
    const Device d = sx.device();
    Tensor gx = nd.needs_grad(0) ? Tensor::empty(sx.shape(), sx.dtype(), d) : Tensor();
    Tensor ga = nd.needs_grad(1) ? Tensor::empty(sa.shape(), sa.dtype(), d) : Tensor();
    if (d == Device::cuda)
      cuda::apot_a_backward(gx.defined() ? gx.data<float>() : nullptr,
                            ga.defined() ? ga.data<float>() : nullptr, gy.data<float>(),
                            sx.data<float>(), sa.data<float>(), lv.data<float>(), lv.numel(), clipped,
                            sx.numel());
    else
    LB_DISPATCH_FLOAT(sx.dtype(), "apot backward", [&] {
      apot_a_backward_cpu<scalar_t>(gx.defined() ? gx.data<scalar_t>() : nullptr,
                                    ga.defined() ? ga.data<scalar_t>() : nullptr, gy.data<scalar_t>(),
                                    sx.data<scalar_t>(), sa.data<scalar_t>(), lv.data<scalar_t>(),
                                    lv.numel(), clipped, sx.numel());
    });
    return std::vector<Tensor>{gx, ga};
  });
  return set_node_attrs(out, {{"bits", o.bits}, {"ste_clipped", clipped}});
}

}  // namespace

std::vector<double> apot_levels(int B) {
  LB_CHECK(B >= 1 && B <= 5, "apot_levels: B must be in [1, 5], got ", B);
  const std::vector<double> zero{0.0};
  auto p = [](int e) { return std::ldexp(1.0, -e); };
  switch (B) {
    case 1: return {0.0, 1.0};
    case 2: return sum_levels({0, p(1), p(2), p(3)}, zero, zero);
    case 3: return sum_levels({0, p(1), p(2), p(4)}, {0, p(3)}, zero);
    case 4: return sum_levels({0, p(1), p(3), p(5)}, {0, p(2), p(4), p(6)}, zero);
    default: return sum_levels({0, p(1), p(3), p(6)}, {0, p(2), p(4), p(7)}, {0, p(5)});
  }
}

std::vector<double> pot_levels(int B) {
  LB_CHECK(B >= 1 && B <= 8, "pot_levels: B must be in [1, 8], got ", B);
  std::vector<double> out{0.0};
  const int k = (1 << B) - 2;  // smallest nonzero level 2^-(2^B - 2)
  for (int e = k; e >= 0; --e) out.push_back(std::ldexp(1.0, -e));
  return out;
}

Tensor apot_quantize_weight(const Tensor& w, const Tensor& alpha, const ApotOptions& o) {
  return weight_op(w, alpha, o, Family::apot, "apot_w");
}
Tensor pot_quantize_weight(const Tensor& w, const Tensor& alpha, const ApotOptions& o) {
  return weight_op(w, alpha, o, Family::pot, "pot_w");
}
Tensor apot_quantize_activation(const Tensor& x, const Tensor& alpha, const ApotOptions& o) {
  return activation_op(x, alpha, o, Family::apot, "apot_a");
}
Tensor pot_quantize_activation(const Tensor& x, const Tensor& alpha, const ApotOptions& o) {
  return activation_op(x, alpha, o, Family::pot, "pot_a");
}

}  // namespace lowbit
