// Full-precision backward ops (layers/fp_backward.h). The conv reuses conv2d's own hand-written
// backward: that backward reads x and the weight from the node it is given, so running it on a node
// whose inputs are the full-precision (x, w) is exactly "the conv backward at (x, w)" with no second
// copy of the kernels. The linear one is two GEMMs and a column sum.
#include "layers/fp_backward.h"

#include "core/autograd.h"
#include "core/cpu/blas.h"
#include "core/cuda/kernels.h"
#include "core/error.h"

namespace lowbit {

namespace {

void check_same_shapes(const Tensor& q, const Tensor& f, const char* op, const char* what) {
  LB_CHECK(q.shape() == f.shape() && q.dtype() == f.dtype(), op, ": quantized ", what, " ",
           shape_str(q.shape()), " and full-precision ", what, " ", shape_str(f.shape()),
           " must have the same shape and dtype");
}

}  // namespace

Tensor conv2d_fp_backward(const Tensor& xq, const Tensor& wq, const Tensor& x, const Tensor& w,
                          const Tensor& bias, const Conv2dOptions& o) {
  check_same_shapes(xq, x, "conv2d_fp_backward", "input");
  check_same_shapes(wq, w, "conv2d_fp_backward", "weight");
  if (!should_record({x, w, bias})) return conv2d(xq.detach(), wq.detach(), bias, o);
  // A conv node on detached leaves that ask for gradients: only its backward function is kept
  // (it captures the geometry, nothing of xq/wq); the node itself is dropped with `y`'s history.
  Tensor xl = xq.detach(), wl = wq.detach();
  xl.set_requires_grad(true);
  wl.set_requires_grad(true);
  Tensor y = conv2d(xl, wl, bias, o);
  BackwardFn conv_backward = y.node()->backward;
  return record(y.detach(), "conv2d_fp_backward", {x, w, bias}, {"x", "weight", "bias"},
                [conv_backward](const Node& n, const Tensor& g) { return conv_backward(n, g); });
}

Tensor linear_fp_backward(const Tensor& xq, const Tensor& wq, const Tensor& x, const Tensor& w,
                          const Tensor& bias) {
  check_same_shapes(xq, x, "linear_fp_backward", "input");
  check_same_shapes(wq, w, "linear_fp_backward", "weight");
  Tensor y;
  {
    NoGradGuard ng;
    y = linear(xq, wq, bias);
  }
  if (!should_record({x, w, bias})) return y;
  const int64_t N = x.size(0), in = x.size(1), out = w.size(0);
  Tensor sx = x.detach(), sw = w.detach();
  return record(y, "linear_fp_backward", {x, w, bias}, {"x", "weight", "bias"},
                [sx, sw, N, in, out](const Node& n, const Tensor& g) {
                  std::vector<Tensor> r(3);
                  if (g.device() == Device::cuda) {  // the same GEMMs through cuBLAS
                    const Device d = Device::cuda;
                    if (n.needs_grad(0)) {
                      r[0] = Tensor::zeros({N, in}, g.dtype(), d);
                      cuda::gemm(false, false, N, in, out, g.data<float>(), out, sw.data<float>(), in,
                                 r[0].data<float>());
                    }
                    if (n.needs_grad(1)) {
                      r[1] = Tensor::zeros({out, in}, g.dtype(), d);
                      cuda::gemm(true, false, out, in, N, g.data<float>(), out, sx.data<float>(), in,
                                 r[1].data<float>());
                    }
                    if (n.inputs[2].defined() && n.needs_grad(2)) {
                      r[2] = Tensor::empty({out}, g.dtype(), d);
                      cuda::sum_axes(r[2].data<float>(), g.data<float>(), {N, out}, {true, false});
                    }
                    return r;
                  }
                  LB_DISPATCH_FLOAT(g.dtype(), "linear_fp_backward", [&] {
                    const scalar_t* pg = g.data<scalar_t>();
                    if (n.needs_grad(0)) {  // (N, out) x (out, in)
                      r[0] = Tensor::zeros({N, in}, g.dtype());
                      gemm(false, false, N, in, out, (scalar_t)1, pg, out, sw.data<scalar_t>(), in,
                           (scalar_t)0, r[0].data<scalar_t>(), in);
                    }
                    if (n.needs_grad(1)) {  // (out, N) x (N, in)
                      r[1] = Tensor::zeros({out, in}, g.dtype());
                      gemm(true, false, out, in, N, (scalar_t)1, pg, out, sx.data<scalar_t>(), in,
                           (scalar_t)0, r[1].data<scalar_t>(), in);
                    }
                    if (n.inputs[2].defined() && n.needs_grad(2)) {
                      r[2] = Tensor::zeros({out}, g.dtype());
                      scalar_t* pb = r[2].data<scalar_t>();
                      for (int64_t c = 0; c < out; ++c) {
                        double s = 0;  // double, in a fixed order: independent of threads
                        for (int64_t i = 0; i < N; ++i) s += (double)pg[i * out + c];
                        pb[c] = (scalar_t)s;
                      }
                    }
                  });
                  return r;
                });
}

}  // namespace lowbit
