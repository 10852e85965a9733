// sum and mean over axes, and broadcast_to (their backward is each other's). Accumulates in
// double so that float32 sums over a whole batch keep their precision.
#include <algorithm>

#include "core/autograd.h"
#include "core/cpu/elementwise_kernels.h"
#include "core/cuda/kernels.h"
#include "core/ops.h"

namespace lowbit {

namespace {

std::vector<bool> reduced_axes(const Tensor& x, const std::vector<int64_t>& axes, const char* op) {
  const int64_t nd = x.dim();
  std::vector<bool> red(nd, axes.empty());
  for (int64_t a : axes) {
    int64_t k = a < 0 ? a + nd : a;
    LB_CHECK(k >= 0 && k < nd, op, ": axis ", a, " out of range for shape ", shape_str(x.shape()));
    LB_CHECK(!red[k], op, ": axis ", a, " given twice");
    red[k] = true;
  }
  return red;
}

Tensor sum_plain(const Tensor& x, const std::vector<bool>& red, bool keepdim, const char* op) {
  check_float(x, op, "x");
  if (on_cuda(op, {&x}, {"x"})) {
    Shape out;
    for (int64_t i = 0; i < x.dim(); ++i)
      if (!red[i] || keepdim) out.push_back(red[i] ? 1 : x.shape()[i]);
    Tensor y = Tensor::empty(out, x.dtype(), Device::cuda);
    cuda::sum_axes(y.data<float>(), x.data<float>(), x.shape(), red);
    return y;
  }
  check_cpu(x, op);
  const Shape& in = x.shape();
  const int64_t nd = x.dim();
  Shape keep(nd), out;
  for (int64_t i = 0; i < nd; ++i) {
    keep[i] = red[i] ? 1 : in[i];
    if (!red[i] || keepdim) out.push_back(keep[i]);
  }
  Tensor y = Tensor::empty(out, x.dtype());
  const int64_t n_out = shape_numel(keep);
  // Output element strides per input axis (0 on reduced axes).
  std::vector<int64_t> ostr(nd, 0);
  for (int64_t i = nd - 1, s = 1; i >= 0; --i) {
    ostr[i] = red[i] ? 0 : s;
    s *= keep[i];
  }
  std::vector<double> acc((size_t)n_out, 0.0);
  LB_DISPATCH_FLOAT(x.dtype(), op, [&] {
    const scalar_t* px = x.data<scalar_t>();
    const int64_t n = x.numel();
    const int64_t inner = nd ? in[nd - 1] : 1;
    const bool inner_red = nd ? red[nd - 1] : true;
    std::vector<int64_t> idx(nd, 0);
    for (int64_t base = 0; base < n; base += inner) {
      int64_t o = 0;
      for (int64_t d = 0; d < nd - 1; ++d) o += idx[d] * ostr[d];
      if (inner_red) {
        double s = 0;
        for (int64_t j = 0; j < inner; ++j) s += (double)px[base + j];
        acc[o] += s;
      } else {
        for (int64_t j = 0; j < inner; ++j) acc[o + j] += (double)px[base + j];
      }
      for (int64_t d = nd - 2; d >= 0; --d) {  // advance the multi-index over the outer axes
        if (++idx[d] < in[d]) break;
        idx[d] = 0;
      }
    }
    scalar_t* py = y.data<scalar_t>();
    for (int64_t i = 0; i < n_out; ++i) py[i] = (scalar_t)acc[i];
  });
  return y;
}

Tensor broadcast_plain(const Tensor& x, const Shape& shape) {
  Shape check = broadcast_shape(x.shape(), shape, "broadcast_to");
  LB_CHECK(check == shape, "broadcast_to: cannot broadcast ", shape_str(x.shape()), " to ",
           shape_str(shape));
  Tensor y = Tensor::empty(shape, x.dtype(), x.device());
  auto sx = broadcast_strides(x.shape(), shape);
  std::vector<int64_t> zero(shape.size(), 0);
  if (x.device() == Device::cuda) {
    cuda::binary_broadcast(cuda::Bin::first, y.data<float>(), x.data<float>(), x.data<float>(),
                           shape, sx, zero);
    return y;
  }
  LB_DISPATCH_FLOAT(x.dtype(), "broadcast_to", [&] {
    const scalar_t* px = x.data<scalar_t>();
    binary_broadcast_cpu(y.data<scalar_t>(), px, px, shape, sx, zero,
                         [](scalar_t u, scalar_t) { return u; });
  });
  return y;
}

Tensor reduce(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim, bool is_mean) {
  const char* op = is_mean ? "mean" : "sum";
  check_defined(x, op, "x");
  std::vector<bool> red = reduced_axes(x, axes, op);
  Tensor y = sum_plain(x, red, keepdim, op);
  int64_t count = 1;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (red[i]) count *= x.shape()[i];
  if (is_mean && count > 0) {
    NoGradGuard ng;
    y = mul_scalar(y, 1.0 / (double)count);
  }
  Shape in = x.shape(), keep = in;
  for (size_t i = 0; i < red.size(); ++i)
    if (red[i]) keep[i] = 1;
  double scale = is_mean && count > 0 ? 1.0 / (double)count : 1.0;
  return record(y, op, {x}, {"x"}, [in, keep, scale](const Node&, const Tensor& g) {
    Tensor gk = g.view(keep);
    Tensor gx = broadcast_plain(gk, in);
    if (scale != 1.0) gx = mul_scalar(gx, scale);
    return std::vector<Tensor>{gx};
  });
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  return reduce(x, axes, keepdim, false);
}
Tensor mean(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  return reduce(x, axes, keepdim, true);
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  check_float(x, "broadcast_to", "x");
  if (!on_cuda("broadcast_to", {&x}, {"x"})) check_cpu(x, "broadcast_to");
  Tensor y = broadcast_plain(x, shape);
  Shape in = x.shape();
  return record(y, "broadcast_to", {x}, {"x"}, [in](const Node&, const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(g, in)};
  });
}

}  // namespace lowbit
