// Max-abs symmetric quantizer (quant/maxabs.h): the scale from max|x| in double, then the nearest
// rounding op of quant/rounding.h on that fixed step with the identity STE.
#include "quant/maxabs.h"

#include <cmath>

#include "core/autograd.h"
#include "core/cuda/kernels.h"
#include "quant/levels.h"
#include "quant/rounding.h"

namespace lowbit {

Tensor maxabs_scale(const Tensor& x, int bits) {
  check_quant_input(x, "maxabs_quantize", "x", /*cuda_ok=*/true);
  check_bits("maxabs_quantize", bits, 2, 16);
  if (x.device() == Device::cuda) {  // the scale stays on the device: no host round trip
    Tensor s = Tensor::empty({1}, x.dtype(), Device::cuda);
    cuda::maxabs_scale(s.data<float>(), x.data<float>(), (double)quant_range(bits, true).qp, x.numel());
    return s;
  }
  double m = 0;
  LB_DISPATCH_FLOAT(x.dtype(), "maxabs_quantize", [&] {
    const scalar_t* p = x.data<scalar_t>();
    for (int64_t i = 0; i < x.numel(); ++i) m = std::max(m, std::fabs((double)p[i]));
  });
  const double qp = (double)quant_range(bits, true).qp;
  return Tensor::full({1}, m > 0 ? m / qp : 1.0, x.dtype());
}

Tensor maxabs_quantize(const Tensor& x, const MaxAbsOptions& o) {
  Tensor s = maxabs_scale(x, o.bits);
  RoundingOptions r;
  r.bits = o.bits;
  r.is_signed = true;
  r.ste = Ste::identity;
  return nearest_round(x, s, r);
}

}  // namespace lowbit
