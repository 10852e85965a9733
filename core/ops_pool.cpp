// Pooling ops: max_pool2d, avg_pool2d, global_avg_pool2d, adaptive_avg_pool2d. Checks (errors
// name the op and the shapes), allocation, the kernels of core/cpu/pool_kernels.h, and a node
// per op whose backward routes dy to the max's winner or spreads it over the averaging window.
#include <limits>

#include "core/autograd.h"
#include "core/cpu/pool_kernels.h"
#include "core/cuda/kernels.h"
#include "core/ops.h"
#include "core/ops_cuda.h"

namespace lowbit {

namespace {

void check_pool_input(const Tensor& x, const char* op) {
  check_float(x, op, "x");
  check_cpu(x, op);
  LB_CHECK(x.dim() == 4, op, ": input x must be 4-d (N, C, H, W), got shape ", shape_str(x.shape()));
  LB_CHECK(x.size(2) * x.size(3) <= std::numeric_limits<int32_t>::max(), op, ": plane of x ",
           shape_str(x.shape()), " is too large");
}

PoolGeom pool_geom(const Tensor& x, const Pool2dOptions& o, const char* op) {
  check_pool_input(x, op);
  PoolGeom g;
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  for (int i = 0; i < 2; ++i) {
    LB_CHECK(o.kernel[i] >= 1, op, ": kernel size must be >= 1, got ", o.kernel[0], "x", o.kernel[1]);
    LB_CHECK(o.stride[i] >= 1, op, ": stride must be >= 1, got ", o.stride[0], "x", o.stride[1]);
    // PyTorch's rule: a window must never lie entirely in the padding.
    LB_CHECK(o.padding[i] >= 0 && o.padding[i] <= o.kernel[i] / 2, op, ": padding ", o.padding[0],
             "x", o.padding[1], " must be >= 0 and at most half the kernel ", o.kernel[0], "x",
             o.kernel[1]);
  }
  g.KH = o.kernel[0], g.KW = o.kernel[1], g.sh = o.stride[0], g.sw = o.stride[1];
  g.ph = o.padding[0], g.pw = o.padding[1];
  g.OH = pool_out_size(g.H, g.KH, g.sh, g.ph);
  g.OW = pool_out_size(g.W, g.KW, g.sw, g.pw);
  LB_CHECK(g.OH >= 1 && g.OW >= 1, op, ": output size ", g.OH, "x", g.OW, " is too small for x ",
           shape_str(x.shape()), " with kernel ", g.KH, "x", g.KW, ", stride ", g.sh, "x", g.sw,
           ", padding ", g.ph, "x", g.pw);
  return g;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& o) {
  if (on_cuda("max_pool2d", {&x}, {"x"})) return pool2d_cuda(x, o, true, "max_pool2d");
  const PoolGeom g = pool_geom(x, o, "max_pool2d");
  Tensor y = Tensor::empty({g.N, g.C, g.OH, g.OW}, x.dtype());
  Tensor idx = Tensor::empty({g.N, g.C, g.OH, g.OW}, DType::i32);
  LB_DISPATCH_FLOAT(x.dtype(), "max_pool2d", [&] {
    max_pool2d_forward_cpu(y.data<scalar_t>(), idx.data<int32_t>(), x.data<scalar_t>(), g);
  });
  const Shape xshape = x.shape();
  return record(y, "max_pool2d", {x}, {"x"}, [g, idx, xshape](const Node&, const Tensor& gy) {
    Tensor gx = Tensor::empty(xshape, gy.dtype());
    LB_DISPATCH_FLOAT(gy.dtype(), "max_pool2d backward", [&] {
      max_pool2d_backward_cpu(gx.data<scalar_t>(), gy.data<scalar_t>(), idx.data<int32_t>(), g);
    });
    return std::vector<Tensor>{gx};
  });
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& o) {
  if (on_cuda("avg_pool2d", {&x}, {"x"})) return pool2d_cuda(x, o, false, "avg_pool2d");
  const PoolGeom g = pool_geom(x, o, "avg_pool2d");
  const bool inc = o.count_include_pad;
  Tensor y = Tensor::empty({g.N, g.C, g.OH, g.OW}, x.dtype());
  LB_DISPATCH_FLOAT(x.dtype(), "avg_pool2d", [&] {
    avg_pool2d_forward_cpu(y.data<scalar_t>(), x.data<scalar_t>(), g, inc);
  });
  const Shape xshape = x.shape();
  return record(y, "avg_pool2d", {x}, {"x"}, [g, inc, xshape](const Node&, const Tensor& gy) {
    Tensor gx = Tensor::empty(xshape, gy.dtype());
    LB_DISPATCH_FLOAT(gy.dtype(), "avg_pool2d backward", [&] {
      avg_pool2d_backward_cpu(gx.data<scalar_t>(), gy.data<scalar_t>(), g, inc);
    });
    return std::vector<Tensor>{gx};
  });
}

namespace {
// Shared by adaptive and global average pooling (global = one bin per plane).
Tensor adaptive_avg(const Tensor& x, int64_t oh, int64_t ow, const char* op, const Shape& out_shape) {
  PoolGeom g;
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3), g.OH = oh, g.OW = ow;
  Tensor y = Tensor::empty(out_shape, x.dtype());
  LB_DISPATCH_FLOAT(x.dtype(), op, [&] {
    adaptive_avg_pool2d_forward_cpu(y.data<scalar_t>(), x.data<scalar_t>(), g);
  });
  const Shape xshape = x.shape();
  return record(y, op, {x}, {"x"}, [g, xshape, op](const Node&, const Tensor& gy) {
    Tensor gx = Tensor::empty(xshape, gy.dtype());
    LB_DISPATCH_FLOAT(gy.dtype(), op, [&] {
      adaptive_avg_pool2d_backward_cpu(gx.data<scalar_t>(), gy.data<scalar_t>(), g);
    });
    return std::vector<Tensor>{gx};
  });
}
}  // namespace

Tensor global_avg_pool2d(const Tensor& x) {
  if (on_cuda("global_avg_pool2d", {&x}, {"x"})) {  // one window over the plane, then (N, C)
    LB_CHECK(x.dim() == 4, "global_avg_pool2d: x must be 4-d, got ", shape_str(x.shape()));
    Pool2dOptions o;
    o.kernel[0] = o.stride[0] = x.size(2);
    o.kernel[1] = o.stride[1] = x.size(3);
    return reshape(pool2d_cuda(x, o, false, "global_avg_pool2d"), {x.size(0), x.size(1)});
  }
  check_pool_input(x, "global_avg_pool2d");
  LB_CHECK(x.size(2) >= 1 && x.size(3) >= 1, "global_avg_pool2d: empty plane in x ",
           shape_str(x.shape()));
  return adaptive_avg(x, 1, 1, "global_avg_pool2d", {x.size(0), x.size(1)});
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  if (on_cuda("adaptive_avg_pool2d", {&x}, {"x"})) {  // evenly dividing bins are a plain avg pool
    LB_CHECK(x.dim() == 4 && out_h >= 1 && out_w >= 1 && x.size(2) % out_h == 0 && x.size(3) % out_w == 0,
             "adaptive_avg_pool2d: on cuda the output ", out_h, "x", out_w,
             " must divide the plane of x ", shape_str(x.shape()));
    Pool2dOptions o;
    o.kernel[0] = o.stride[0] = x.size(2) / out_h;
    o.kernel[1] = o.stride[1] = x.size(3) / out_w;
    return pool2d_cuda(x, o, false, "adaptive_avg_pool2d");
  }
  check_pool_input(x, "adaptive_avg_pool2d");
  LB_CHECK(out_h >= 1 && out_w >= 1, "adaptive_avg_pool2d: output size ", out_h, "x", out_w,
           " must be >= 1 (x ", shape_str(x.shape()), ")");
  LB_CHECK(x.size(2) >= 1 && x.size(3) >= 1, "adaptive_avg_pool2d: empty plane in x ",
           shape_str(x.shape()));
  return adaptive_avg(x, out_h, out_w, "adaptive_avg_pool2d", {x.size(0), x.size(1), out_h, out_w});
}

}  // namespace lowbit
