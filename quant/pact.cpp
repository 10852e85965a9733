// PACT op and kernels (quant/pact.h): y_q = round(clip(x,0,α)·(2^b-1)/α)·α/(2^b-1),
// ∂y_q/∂x = 1[0 <= x < α] (STE treats y_q as y), ∂y_q/∂α = 1[x >= α]. METHODS.md "PACT".
#include "quant/pact.h"

#include <vector>

#include "core/autograd.h"
#include "core/cuda/kernels.h"
#include "core/ops.h"
#include "quant/reduce_kernels.h"

namespace lowbit {

template <class T>
void pact_forward_cpu(T* y, const T* x, const T* alpha, int64_t levels, int64_t n) {
  const T a = alpha[0], m = (T)levels;
  parallel_for(n, 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T c = x[i] < 0 ? (T)0 : (x[i] > a ? a : x[i]);
      y[i] = round_half_even(c * m / a) * a / m;  // true divisions, in the paper's order
    }
  });
}

template <class T>
void pact_backward_cpu(T* gx, T* galpha, const T* gy, const T* x, const T* alpha, bool clipped,
                       int64_t n) {
  const T a = alpha[0];
  double sum = 0;
  channel_block_sums(&sum, 1, n, [&](int64_t i) -> double {
    if (gx) gx[i] = (!clipped || (x[i] >= 0 && x[i] < a)) ? gy[i] : (T)0;
    return x[i] >= a ? (double)gy[i] : 0.0;
  });
  if (galpha) galpha[0] = (T)sum;
}

template void pact_forward_cpu<float>(float*, const float*, const float*, int64_t, int64_t);
template void pact_forward_cpu<double>(double*, const double*, const double*, int64_t, int64_t);
template void pact_backward_cpu<float>(float*, float*, const float*, const float*, const float*, bool, int64_t);
template void pact_backward_cpu<double>(double*, double*, const double*, const double*, const double*, bool, int64_t);

Tensor pact_quantize(const Tensor& x, const Tensor& alpha, const PactOptions& o) {
  const char* op = "pact";
  check_bits(op, o.bits, 2, 16);
  check_quant_input(x, op, "x", /*cuda_ok=*/true);
  check_param_dtype(x, alpha, op, "alpha");
  check_param_shape(x, alpha, false, op, "alpha");
  check_positive(alpha, op, "alpha");
  const int64_t levels = (int64_t(1) << o.bits) - 1;
  const bool clipped = ste_clipped(o.ste, true);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device() == Device::cuda)
    cuda::pact_forward(y.data<float>(), x.data<float>(), alpha.data<float>(), levels, x.numel());
  else
  LB_DISPATCH_FLOAT(x.dtype(), op, [&] {
    pact_forward_cpu<scalar_t>(y.data<scalar_t>(), x.data<scalar_t>(), alpha.data<scalar_t>(), levels,
                               x.numel());
  });
  Tensor sx = x.detach(), sa = alpha.detach();
  Tensor out = record(y, op, {x, alpha}, {"x", "alpha"}, [sx, sa, clipped](const Node& n, const Tensor& gy) {
    const Device d = sx.device();
    Tensor gx = n.needs_grad(0) ? Tensor::empty(sx.shape(), sx.dtype(), d) : Tensor();
    Tensor ga = n.needs_grad(1) ? Tensor::empty(sa.shape(), sa.dtype(), d) : Tensor();
    if (d == Device::cuda)
      cuda::pact_backward(gx.defined() ? gx.data<float>() : nullptr,
                          ga.defined() ? ga.data<float>() : nullptr, gy.data<float>(),
                          sx.data<float>(), sa.data<float>(), clipped, sx.numel());
    else
    LB_DISPATCH_FLOAT(sx.dtype(), "pact backward", [&] {
      pact_backward_cpu<scalar_t>(gx.defined() ? gx.data<scalar_t>() : nullptr,
                                  ga.defined() ? ga.data<scalar_t>() : nullptr, gy.data<scalar_t>(),
                                  sx.data<scalar_t>(), sa.data<scalar_t>(), clipped, sx.numel());
    });
    return std::vector<Tensor>{gx, ga};
  });
  return set_node_attrs(out, {{"bits", o.bits}, {"ste_clipped", clipped}});  // for the audit
}

Tensor pact_penalty(const Tensor& alpha, double lambda) {
  check_float(alpha, "pact_penalty", "alpha");
  LB_CHECK(lambda >= 0, "pact_penalty: lambda must be >= 0, got ", lambda);
  return mul_scalar(sum(square(alpha)), lambda);
}

}  // namespace lowbit
