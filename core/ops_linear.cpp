// matmul (M, K) x (K, N) and linear y = x W^T + b, forward and backward as GEMMs through
// core/cpu/blas.h: dA = dC B^T, dB = A^T dC; for linear dx = dy W, dW = dy^T x, db = sum_rows dy.
#include "core/autograd.h"
#include "core/cpu/blas.h"
#include "core/cuda/kernels.h"
#include "core/ops.h"
#include "core/parallel.h"

namespace lowbit {

namespace {

// C (M, N) = op(A) op(B) with fresh zeroed storage (a K = 0 product is all zeros, and BLAS may not
// touch C at all then). lda/ldb are the stored row strides.
Tensor gemm_new(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const Tensor& A, int64_t lda,
                const Tensor& B, int64_t ldb) {
  Tensor C = Tensor::zeros({M, N}, A.dtype(), A.device());
  if (K == 0) return C;
  if (A.device() == Device::cuda) {
    cuda::gemm(ta, tb, M, N, K, A.data<float>(), lda, B.data<float>(), ldb, C.data<float>());
    return C;
  }
  LB_DISPATCH_FLOAT(A.dtype(), "gemm", [&] {
    gemm(ta, tb, M, N, K, (scalar_t)1, A.data<scalar_t>(), lda, B.data<scalar_t>(), ldb,
         (scalar_t)0, C.data<scalar_t>(), N);
  });
  return C;
}

// db (n_out) = sum over the rows of dy (rows, n_out); accumulated in double, one column per item
// so the result does not depend on the thread count.
Tensor sum_rows(const Tensor& dy) {
  const int64_t rows = dy.shape()[0], cols = dy.shape()[1];
  Tensor db = Tensor::empty({cols}, dy.dtype(), dy.device());
  if (dy.device() == Device::cuda) {
    cuda::sum_axes(db.data<float>(), dy.data<float>(), dy.shape(), {true, false});
    return db;
  }
  LB_DISPATCH_FLOAT(dy.dtype(), "linear backward", [&] {
    const scalar_t* pg = dy.data<scalar_t>();
    scalar_t* pb = db.data<scalar_t>();
    parallel_for(cols, rows, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double s = 0;
        for (int64_t r = 0; r < rows; ++r) s += (double)pg[r * cols + c];
        pb[c] = (scalar_t)s;
      }
    });
  });
  return db;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_float(a, "matmul", "a");
  check_float(b, "matmul", "b");
  check_same_dtype(a, b, "matmul");
  if (!on_cuda("matmul", {&a, &b}, {"a", "b"})) {
    check_cpu(a, "matmul");
    check_cpu(b, "matmul");
  }
  LB_CHECK(a.dim() == 2 && b.dim() == 2 && a.shape()[1] == b.shape()[0], "matmul: shapes ",
           shape_str(a.shape()), " and ", shape_str(b.shape()),
           " cannot be multiplied (expected (M, K) x (K, N))");
  const int64_t M = a.shape()[0], K = a.shape()[1], N = b.shape()[1];
  Tensor y = gemm_new(false, false, M, N, K, a, K, b, N);
  Tensor sa = a.detach(), sb = b.detach();
  return record(y, "matmul", {a, b}, {"a", "b"}, [sa, sb, M, N, K](const Node& n, const Tensor& g) {
    Tensor ga, gb;
    if (n.needs_grad(0)) ga = gemm_new(false, true, M, K, N, g, N, sb, N);  // dC B^T
    if (n.needs_grad(1)) gb = gemm_new(true, false, K, N, M, sa, K, g, N);  // A^T dC
    return std::vector<Tensor>{ga, gb};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_float(x, "linear", "x");
  check_float(weight, "linear", "weight");
  check_same_dtype(x, weight, "linear");
  const bool gpu = on_cuda("linear", {&x, &weight, &bias}, {"x", "weight", "bias"});
  if (!gpu) {
    check_cpu(x, "linear");
    check_cpu(weight, "linear");
  }
  LB_CHECK(x.dim() == 2 && weight.dim() == 2 && x.shape()[1] == weight.shape()[1], "linear: x ",
           shape_str(x.shape()), " and weight ", shape_str(weight.shape()),
           " do not match (expected x (N, in), weight (out, in))");
  const int64_t N = x.shape()[0], in = x.shape()[1], out = weight.shape()[0];
  if (bias.defined()) {
    check_float(bias, "linear", "bias");
    check_same_dtype(x, bias, "linear");
    if (!gpu) check_cpu(bias, "linear");
    LB_CHECK(bias.dim() == 1 && bias.shape()[0] == out, "linear: bias has shape ",
             shape_str(bias.shape()), ", expected (", out, ",) for weight ",
             shape_str(weight.shape()));
  }
  Tensor y = gemm_new(false, true, N, out, in, x, in, weight, in);  // x W^T
  if (bias.defined() && gpu) {  // y += bias, broadcast over the rows, in place
    cuda::binary_broadcast(cuda::Bin::add, y.data<float>(), y.data<float>(), bias.data<float>(),
                           y.shape(), {out, 1}, {0, 1});
  } else if (bias.defined()) {
    LB_DISPATCH_FLOAT(y.dtype(), "linear", [&] {
      scalar_t* py = y.data<scalar_t>();
      const scalar_t* pb = bias.data<scalar_t>();
      parallel_for(N, out, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t o = 0; o < out; ++o) py[r * out + o] += pb[o];
      });
    });
  }
  Tensor sx = x.detach(), sw = weight.detach();
  return record(y, "linear", {x, weight, bias}, {"x", "weight", "bias"},
                [sx, sw, N, in, out](const Node& n, const Tensor& g) {
                  Tensor gx, gw, gb;
                  if (n.needs_grad(0)) gx = gemm_new(false, false, N, in, out, g, out, sw, in);
                  if (n.needs_grad(1)) gw = gemm_new(true, false, out, in, N, g, out, sx, in);
                  // needs_grad throws on an undefined input, so ask only when there is a bias.
                  if (n.inputs[2].defined() && n.needs_grad(2)) gb = sum_rows(g);
                  return std::vector<Tensor>{gx, gw, gb};
                });
}

}  // namespace lowbit
