// Nearest, stochastic and mid-rise rounding ops and kernels (quant/rounding.h; seed 001).
// Stochastic: floor(v) + 1[u < v - floor(v)], u uniform in [0, 1) from the counter-based RNG.
#include "quant/rounding.h"

#include <cmath>
#include <vector>

#include "core/autograd.h"
#include "core/cuda/kernels.h"
#include "core/parallel.h"
#include "core/rng.h"

namespace lowbit {

template <class T>
void rounding_forward_cpu(T* y, const T* x, const T* s, RoundingKind kind, int64_t lo, int64_t hi,
                          uint64_t seed, uint64_t stream, int64_t channels, int64_t inner) {
  const T l = (T)lo, h = (T)hi;
  parallel_for(channels * inner, 8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t c = i / inner;
      T v = x[i] / s[c];
      switch (kind) {
        case RoundingKind::nearest:
          v = v < l ? l : (v > h ? h : v);
          y[i] = round_half_even(v) * s[c];
          break;
        case RoundingKind::stochastic: {
          v = v < l ? l : (v > h ? h : v);  // the ends are integers: clipping first keeps them exact
          const T f = std::floor(v);
          const double u = rng_uniform(seed, stream, (uint64_t)i);
          y[i] = (u < (double)(v - f) ? f + (T)1 : f) * s[c];
          break;
        }
        case RoundingKind::midrise: {
          T f = std::floor(v);
          f = f < l ? l : (f > h - (T)1 ? h - (T)1 : f);  // bins [k, k+1) for k in [lo, hi-1]
          y[i] = (f + (T)0.5) * s[c];
          break;
        }
      }
    }
  });
}

template <class T>
void rounding_backward_cpu(T* gx, const T* gy, const T* x, const T* s, int64_t lo, int64_t hi,
                           bool clipped, int64_t channels, int64_t inner) {
  const T l = (T)lo, h = (T)hi;
  parallel_for(channels * inner, 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T v = x[i] / s[i / inner];
      gx[i] = (!clipped || (v > l && v < h)) ? gy[i] : (T)0;
    }
  });
}

template void rounding_forward_cpu<float>(float*, const float*, const float*, RoundingKind, int64_t, int64_t, uint64_t, uint64_t, int64_t, int64_t);
template void rounding_forward_cpu<double>(double*, const double*, const double*, RoundingKind, int64_t, int64_t, uint64_t, uint64_t, int64_t, int64_t);
template void rounding_backward_cpu<float>(float*, const float*, const float*, const float*, int64_t, int64_t, bool, int64_t, int64_t);
template void rounding_backward_cpu<double>(double*, const double*, const double*, const double*, int64_t, int64_t, bool, int64_t, int64_t);

namespace {

Tensor rounding_op(const Tensor& x, const Tensor& s, const RoundingOptions& o, RoundingKind kind,
                   const char* op) {
  check_bits(op, o.bits, 2, 16);
  check_quant_input(x, op, "x", /*cuda_ok=*/true);
  check_param_dtype(x, s, op, "s");
  const int64_t C = check_param_shape(x, s, o.per_channel, op, "s");
  check_positive(s, op, "s");
  int64_t lo, hi;
  if (kind == RoundingKind::midrise) {
    LB_CHECK(o.is_signed, op, ": mid-rise levels ±(k+½)s are signed; is_signed must be true");
    hi = int64_t(1) << (o.bits - 1), lo = -hi;
  } else {
    const QuantRange r = quant_range(o.bits, o.is_signed);
    lo = -r.qn, hi = r.qp;
  }
  const int64_t inner = C ? x.numel() / C : 0;
  const bool clipped = ste_clipped(o.ste, true);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device() == Device::cuda)
    cuda::rounding_forward(y.data<float>(), x.data<float>(), s.data<float>(), (int)kind, lo, hi,
                           o.seed, o.stream, C, inner);
  else
  LB_DISPATCH_FLOAT(x.dtype(), op, [&] {
    rounding_forward_cpu<scalar_t>(y.data<scalar_t>(), x.data<scalar_t>(), s.data<scalar_t>(), kind, lo,
                                   hi, o.seed, o.stream, C, inner);
  });
  Tensor sx = x.detach(), ss = s.detach();
  Tensor out = record(y, op, {x}, {"x"}, [=](const Node&, const Tensor& gy) {
    Tensor gx = Tensor::empty(sx.shape(), sx.dtype(), sx.device());
    if (sx.device() == Device::cuda) {
      cuda::rounding_backward(gx.data<float>(), gy.data<float>(), sx.data<float>(), ss.data<float>(),
                              lo, hi, clipped, C, inner);
      return std::vector<Tensor>{gx};
    }
    LB_DISPATCH_FLOAT(sx.dtype(), "rounding backward", [&] {
      rounding_backward_cpu<scalar_t>(gx.data<scalar_t>(), gy.data<scalar_t>(), sx.data<scalar_t>(),
                                      ss.data<scalar_t>(), lo, hi, clipped, C, inner);
    });
    return std::vector<Tensor>{gx};
  });
  // For the audit: v = x/s clips to [lo, hi]; the fixed step is no input, so per-tensor it is here.
  std::vector<std::pair<std::string, double>> attrs = {
      {"bits", o.bits}, {"signed", o.is_signed}, {"per_channel", o.per_channel},
      {"ste_clipped", clipped}, {"lo", (double)lo}, {"hi", (double)hi}};
  if (!o.per_channel) attrs.push_back({"step", s.to_vector<double>()[0]});
  if (kind == RoundingKind::stochastic)
    attrs.insert(attrs.end(), {{"seed", (double)o.seed}, {"stream", (double)o.stream}});
  return set_node_attrs(out, attrs);
}

}  // namespace

Tensor nearest_round(const Tensor& x, const Tensor& s, const RoundingOptions& o) {
  return rounding_op(x, s, o, RoundingKind::nearest, "nearest_round");
}
Tensor stochastic_round(const Tensor& x, const Tensor& s, const RoundingOptions& o) {
  return rounding_op(x, s, o, RoundingKind::stochastic, "stochastic_round");
}
Tensor midrise_quantize(const Tensor& x, const Tensor& s, const RoundingOptions& o) {
  return rounding_op(x, s, o, RoundingKind::midrise, "midrise");
}

}  // namespace lowbit
