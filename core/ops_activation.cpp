// relu, relu6, add_relu and dropout. relu's gradient at exactly 0 is 0 (PyTorch's convention);
// relu6 passes the gradient on the open interval (0, 6).
#include "core/autograd.h"
#include "core/cpu/elementwise_kernels.h"
#include "core/cuda/kernels.h"
#include "core/ops.h"
#include "core/ops_cuda.h"
#include "core/rng.h"

namespace lowbit {

namespace {

// y = clamp(x, 0, hi) (hi < 0: no upper bound); gradient passes where 0 < x < hi.
Tensor clamp_relu(const Tensor& x, double hi, const char* op) {
  if (on_cuda(op, {&x}, {"x"})) return clamp_relu_cuda(x, hi, op);
  check_float(x, op, "x");
  check_cpu(x, op);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  LB_DISPATCH_FLOAT(x.dtype(), op, [&] {
    const scalar_t h = (scalar_t)hi;
    if (hi < 0)
      unary_cpu(y.data<scalar_t>(), x.data<scalar_t>(), x.numel(),
                [](scalar_t v) { return v > 0 ? v : (scalar_t)0; });
    else
      unary_cpu(y.data<scalar_t>(), x.data<scalar_t>(), x.numel(),
                [h](scalar_t v) { return v > 0 ? (v < h ? v : h) : (scalar_t)0; });
  });
  Tensor sx = x.detach();
  return record(y, op, {x}, {"x"}, [sx, hi](const Node&, const Tensor& g) {
    Tensor gx = Tensor::empty(g.shape(), g.dtype());
    LB_DISPATCH_FLOAT(g.dtype(), "relu backward", [&] {
      const scalar_t* px = sx.data<scalar_t>();
      const scalar_t* pg = g.data<scalar_t>();
      scalar_t* po = gx.data<scalar_t>();
      const scalar_t h = (scalar_t)hi;
      // Two loops without the loop-invariant test inside, so each compiles to a vector select.
      if (hi < 0)
        binary_cpu(po, px, pg, g.numel(),
                   [](scalar_t xv, scalar_t gv) { return xv > 0 ? gv : (scalar_t)0; });
      else
        binary_cpu(po, px, pg, g.numel(), [h](scalar_t xv, scalar_t gv) {
          return (xv > 0 && xv < h) ? gv : (scalar_t)0;
        });
    });
    return std::vector<Tensor>{gx};
  });
}

}  // namespace

Tensor relu(const Tensor& x) { return clamp_relu(x, -1.0, "relu"); }
Tensor relu6(const Tensor& x) { return clamp_relu(x, 6.0, "relu6"); }

Tensor add_relu(const Tensor& a, const Tensor& b) {
  const char* op = "add+relu";
  check_float(a, op, "a");
  check_float(b, op, "b");
  if (on_cuda(op, {&a, &b}, {"a", "b"})) return relu(add(a, b));  // two nodes on the GPU
  check_cpu(a, op);
  check_cpu(b, op);
  LB_CHECK(a.dtype() == b.dtype(), op, ": a is ", dtype_name(a.dtype()), ", b is ",
           dtype_name(b.dtype()));
  LB_CHECK(a.shape() == b.shape(), op, ": a and b must have the same shape (no broadcasting), got ",
           shape_str(a.shape()), " and ", shape_str(b.shape()));
  Tensor y = Tensor::empty(a.shape(), a.dtype());
  LB_DISPATCH_FLOAT(a.dtype(), op, [&] {
    binary_cpu(y.data<scalar_t>(), a.data<scalar_t>(), b.data<scalar_t>(), a.numel(),
               [](scalar_t u, scalar_t v) {
                 const scalar_t s = u + v;
                 return s > 0 ? s : (scalar_t)0;
               });
  });
  // relu's mask from the output (0 < y iff 0 < a + b); add hands the same gradient to both.
  Tensor sy = y.detach();
  return record(y, op, {a, b}, {"a", "b"}, [sy](const Node& node, const Tensor& g) {
    Tensor gm = Tensor::empty(g.shape(), g.dtype());
    LB_DISPATCH_FLOAT(g.dtype(), "add+relu backward", [&] {
      binary_cpu(gm.data<scalar_t>(), sy.data<scalar_t>(), g.data<scalar_t>(), g.numel(),
                 [](scalar_t yv, scalar_t gv) { return yv > 0 ? gv : (scalar_t)0; });
    });
    return std::vector<Tensor>{node.needs_grad(0) ? gm : Tensor(), node.needs_grad(1) ? gm : Tensor()};
  });
}

Tensor dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t stream) {
  check_float(x, "dropout", "x");
  LB_CHECK(p >= 0 && p < 1, "dropout: p must be in [0, 1), got ", p);
  if (!training || p == 0) return x;
  if (on_cuda("dropout", {&x}, {"x"})) return dropout_cuda(x, p, seed, stream);
  check_cpu(x, "dropout");
  Tensor mask = Tensor::empty(x.shape(), x.dtype());
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  LB_DISPATCH_FLOAT(x.dtype(), "dropout", [&] {
    scalar_t* pm = mask.data<scalar_t>();
    scalar_t* py = y.data<scalar_t>();
    const scalar_t* px = x.data<scalar_t>();
    const scalar_t keep_scale = (scalar_t)(1.0 / (1.0 - p));
    parallel_for(x.numel(), 8, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) {
        pm[i] = rng_uniform_f(seed, stream, (uint64_t)i) >= (float)p ? keep_scale : (scalar_t)0;
        py[i] = px[i] * pm[i];
      }
    });
  });
  return record(y, "dropout", {x}, {"x"}, [mask](const Node&, const Tensor& g) {
    NoGradGuard ng;
    return std::vector<Tensor>{mul(g, mask)};
  });
}

}  // namespace lowbit
