// add, sub, mul, div with NumPy broadcasting, scalar forms, neg, square; backward sums the output
// gradient over broadcast axes (sum_to_shape).
#include <cmath>

#include "core/autograd.h"
#include "core/cpu/elementwise_kernels.h"
#include "core/cuda/kernels.h"
#include "core/ops.h"

namespace lowbit {

std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& in, const std::vector<int64_t>& out) {
  std::vector<int64_t> s(out.size(), 0);
  int64_t stride = 1;
  for (int64_t i = (int64_t)in.size() - 1, o = (int64_t)out.size() - 1; i >= 0; --i, --o) {
    s[o] = in[i] == 1 ? 0 : stride;
    stride *= in[i];
  }
  return s;
}

Shape broadcast_shape(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    LB_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
             " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

enum class BinOp { add, sub, mul, div };
const char* bin_name(BinOp op) {
  switch (op) {
    case BinOp::add: return "add";
    case BinOp::sub: return "sub";
    case BinOp::mul: return "mul";
    case BinOp::div: return "div";
  }
  return "?";
}

Tensor binary_plain(const Tensor& a, const Tensor& b, BinOp op) {
  const char* name = bin_name(op);
  check_float(a, name, "a");
  check_float(b, name, "b");
  check_same_dtype(a, b, name);
  if (on_cuda(name, {&a, &b}, {"a", "b"})) {
    Shape out = broadcast_shape(a.shape(), b.shape(), name);
    Tensor y = Tensor::empty(out, a.dtype(), Device::cuda);
    cuda::binary_broadcast((cuda::Bin)op, y.data<float>(), a.data<float>(), b.data<float>(), out,
                           broadcast_strides(a.shape(), out), broadcast_strides(b.shape(), out));
    return y;
  }
  check_cpu(a, name);
  check_cpu(b, name);
  Shape out = broadcast_shape(a.shape(), b.shape(), name);
  Tensor y = Tensor::empty(out, a.dtype());
  auto sa = broadcast_strides(a.shape(), out), sb = broadcast_strides(b.shape(), out);
  LB_DISPATCH_FLOAT(a.dtype(), name, [&] {
    const scalar_t* pa = a.data<scalar_t>();
    const scalar_t* pb = b.data<scalar_t>();
    scalar_t* py = y.data<scalar_t>();
    switch (op) {
      case BinOp::add: binary_broadcast_cpu(py, pa, pb, out, sa, sb, [](scalar_t u, scalar_t v) { return u + v; }); break;
      case BinOp::sub: binary_broadcast_cpu(py, pa, pb, out, sa, sb, [](scalar_t u, scalar_t v) { return u - v; }); break;
      case BinOp::mul: binary_broadcast_cpu(py, pa, pb, out, sa, sb, [](scalar_t u, scalar_t v) { return u * v; }); break;
      case BinOp::div: binary_broadcast_cpu(py, pa, pb, out, sa, sb, [](scalar_t u, scalar_t v) { return u / v; }); break;
    }
  });
  return y;
}

Tensor binary(const Tensor& a, const Tensor& b, BinOp op) {
  Tensor y = binary_plain(a, b, op);
  Shape sa = a.shape(), sb = b.shape();
  // mul/div backward needs the inputs; add/sub do not, so they save nothing.
  Tensor sav_a = (op == BinOp::mul || op == BinOp::div) ? a.detach() : Tensor();
  Tensor sav_b = (op == BinOp::mul || op == BinOp::div) ? b.detach() : Tensor();
  return record(y, bin_name(op), {a, b}, {"a", "b"},
                [op, sa, sb, sav_a, sav_b](const Node& n, const Tensor& g) {
                  Tensor ga, gb;
                  switch (op) {
                    case BinOp::add:
                      if (n.needs_grad(0)) ga = sum_to_shape(g, sa);
                      if (n.needs_grad(1)) gb = sum_to_shape(g, sb);
                      break;
                    case BinOp::sub:
                      if (n.needs_grad(0)) ga = sum_to_shape(g, sa);
                      if (n.needs_grad(1)) gb = sum_to_shape(neg(g), sb);
                      break;
                    case BinOp::mul:
                      if (n.needs_grad(0)) ga = sum_to_shape(binary_plain(g, sav_b, BinOp::mul), sa);
                      if (n.needs_grad(1)) gb = sum_to_shape(binary_plain(g, sav_a, BinOp::mul), sb);
                      break;
                    case BinOp::div:
                      // d(a/b)/da = 1/b; d(a/b)/db = -a/b^2
                      if (n.needs_grad(0)) ga = sum_to_shape(binary_plain(g, sav_b, BinOp::div), sa);
                      if (n.needs_grad(1)) {
                        Tensor t = binary_plain(binary_plain(g, sav_a, BinOp::mul),
                                                binary_plain(sav_b, sav_b, BinOp::mul), BinOp::div);
                        gb = sum_to_shape(neg(t), sb);
                      }
                      break;
                  }
                  return std::vector<Tensor>{ga, gb};
                });
}

// The CUDA backend's unary ops take their operation by name (a lambda cannot cross into a kernel).
Tensor scalar_cuda(const Tensor& x, cuda::Scalar op, double s) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::cuda);
  cuda::scalar_op(op, y.data<float>(), x.data<float>(), (float)s, x.numel());
  return y;
}

template <class F>
Tensor unary_plain(const Tensor& x, const char* name, F f, cuda::Scalar cop, double s) {
  check_float(x, name, "x");
  if (on_cuda(name, {&x}, {"x"})) return scalar_cuda(x, cop, s);
  check_cpu(x, name);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  LB_DISPATCH_FLOAT(x.dtype(), name, [&] {
    unary_cpu(y.data<scalar_t>(), x.data<scalar_t>(), x.numel(),
              [&](scalar_t v) { return (scalar_t)f((double)v, v); });
  });
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, BinOp::add); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(a, b, BinOp::sub); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, BinOp::mul); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(a, b, BinOp::div); }

void add_into(const Tensor& acc, const Tensor& b) {
  check_float(acc, "add_into", "acc");
  check_float(b, "add_into", "b");
  check_same_dtype(acc, b, "add_into");
  LB_CHECK(acc.shape() == b.shape(), "add_into: shapes ", shape_str(acc.shape()), " and ",
           shape_str(b.shape()), " differ (no broadcasting in place)");
  if (on_cuda("add_into", {&acc, &b}, {"acc", "b"})) {  // elementwise: y may alias a
    float* pa = acc.data<float>();
    cuda::binary_broadcast(cuda::Bin::add, pa, pa, b.data<float>(), acc.shape(),
                           broadcast_strides(acc.shape(), acc.shape()),
                           broadcast_strides(b.shape(), b.shape()));
    return;
  }
  check_cpu(acc, "add_into");
  check_cpu(b, "add_into");
  LB_DISPATCH_FLOAT(acc.dtype(), "add_into", [&] {
    add_into_cpu(acc.data<scalar_t>(), b.data<scalar_t>(), acc.numel());
  });
}

Tensor add_scalar(const Tensor& a, double s) {
  Tensor y = unary_plain(a, "add_scalar", [s](double, auto v) { return v + (decltype(v))s; }, cuda::Scalar::add, s);
  return record(y, "add_scalar", {a}, {"x"},
                [](const Node&, const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor mul_scalar(const Tensor& a, double s) {
  Tensor y = unary_plain(a, "mul_scalar", [s](double, auto v) { return v * (decltype(v))s; }, cuda::Scalar::mul, s);
  return record(y, "mul_scalar", {a}, {"x"}, [s](const Node&, const Tensor& g) {
    return std::vector<Tensor>{mul_scalar(g, s)};
  });
}

Tensor neg(const Tensor& a) { return mul_scalar(a, -1.0); }

Tensor square(const Tensor& a) {
  Tensor y = unary_plain(a, "square", [](double, auto v) { return v * v; }, cuda::Scalar::square, 0.0);
  Tensor sav = a.detach();
  return record(y, "square", {a}, {"x"}, [sav](const Node&, const Tensor& g) {
    return std::vector<Tensor>{mul(g, mul_scalar(sav, 2.0))};
  });
}

}  // namespace lowbit
