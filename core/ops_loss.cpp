// log_softmax, softmax, softmax_cross_entropy (PyTorch's label smoothing: q = (1-eps) onehot +
// eps/K) and the distillation kl_div = T^2 mean_batch KL(softmax(t/T) || softmax(x/T))
// (METHODS.md, Distillation). Kernels: core/cpu/loss_kernels.*.
#include <cmath>

#include "core/autograd.h"
#include "core/cpu/loss_kernels.h"
#include "core/cuda/kernels.h"
#include "core/ops.h"
#include "core/ops_cuda.h"

namespace lowbit {

namespace {

void check_logits(const Tensor& x, const char* op, const char* arg) {
  check_float(x, op, arg);
  check_cpu(x, op);
  LB_CHECK(x.dim() == 2, op, ": ", arg, " must be 2-d (N, K), got shape ", shape_str(x.shape()));
}

// The sum over rows of a per-row loss, in a fixed order (deterministic), as the batch mean.
double batch_mean(const std::vector<double>& rows) {
  double s = 0;
  for (double v : rows) s += v;
  return rows.empty() ? 0.0 : s / (double)rows.size();
}

}  // namespace

Tensor log_softmax(const Tensor& x) {
  check_logits(x, "log_softmax", "x");
  const int64_t rows = x.shape()[0], k = x.shape()[1];
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  LB_DISPATCH_FLOAT(x.dtype(), "log_softmax", [&] {
    log_softmax_cpu(y.data<scalar_t>(), x.data<scalar_t>(), rows, k, 1.0);
  });
  Tensor sy = y.detach();
  return record(y, "log_softmax", {x}, {"x"}, [sy, rows, k](const Node&, const Tensor& g) {
    Tensor gx = Tensor::empty(sy.shape(), sy.dtype());
    LB_DISPATCH_FLOAT(sy.dtype(), "log_softmax backward", [&] {
      log_softmax_backward_cpu(gx.data<scalar_t>(), g.data<scalar_t>(), sy.data<scalar_t>(), rows,
                               k);
    });
    return std::vector<Tensor>{gx};
  });
}

Tensor softmax(const Tensor& x) {
  check_logits(x, "softmax", "x");
  const int64_t rows = x.shape()[0], k = x.shape()[1];
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  LB_DISPATCH_FLOAT(x.dtype(), "softmax", [&] {
    softmax_cpu(y.data<scalar_t>(), x.data<scalar_t>(), rows, k, 1.0);
  });
  Tensor sy = y.detach();
  return record(y, "softmax", {x}, {"x"}, [sy, rows, k](const Node&, const Tensor& g) {
    Tensor gx = Tensor::empty(sy.shape(), sy.dtype());
    LB_DISPATCH_FLOAT(sy.dtype(), "softmax backward", [&] {
      softmax_backward_cpu(gx.data<scalar_t>(), g.data<scalar_t>(), sy.data<scalar_t>(), rows, k);
    });
    return std::vector<Tensor>{gx};
  });
}

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing) {
  const char* op = "softmax_cross_entropy";
  if (on_cuda(op, {&logits, &target}, {"logits", "target"}))
    return softmax_cross_entropy_cuda(logits, target, label_smoothing);
  check_logits(logits, op, "logits");
  check_defined(target, op, "target");
  check_cpu(target, op);
  LB_CHECK(target.dtype() == DType::i64, op, ": target must be int64 class indices, got ",
           dtype_name(target.dtype()));
  const int64_t rows = logits.shape()[0], k = logits.shape()[1];
  LB_CHECK(target.dim() == 1 && target.shape()[0] == rows, op, ": shape mismatch, logits ",
           shape_str(logits.shape()), " and target ", shape_str(target.shape()),
           " (expected target (", rows, ",))");
  LB_CHECK(rows > 0 && k > 0, op, ": empty logits of shape ", shape_str(logits.shape()));
  LB_CHECK(label_smoothing >= 0 && label_smoothing <= 1, op,
           ": label_smoothing must be in [0, 1], got ", label_smoothing);
  const int64_t* pt = target.data<int64_t>();
  for (int64_t i = 0; i < rows; ++i)
    LB_CHECK(pt[i] >= 0 && pt[i] < k, op, ": target[", i, "] = ", pt[i], " is out of range for ",
             k, " classes (logits ", shape_str(logits.shape()), ")");

  std::vector<double> loss_rows((size_t)rows);
  Tensor prob = Tensor::empty(logits.shape(), logits.dtype());
  LB_DISPATCH_FLOAT(logits.dtype(), op, [&] {
    cross_entropy_forward_cpu(loss_rows.data(), prob.data<scalar_t>(), logits.data<scalar_t>(),
                              pt, rows, k, label_smoothing);
  });
  Tensor y = Tensor::scalar(batch_mean(loss_rows), logits.dtype());
  // The target is copied: a caller reusing its label buffer must not change this backward.
  Tensor st = target.clone();
  const double eps = label_smoothing;
  return record(y, op, {logits}, {"logits"}, [prob, st, rows, k, eps](const Node&, const Tensor& g) {
    Tensor gx = Tensor::empty(prob.shape(), prob.dtype());
    const double scale = g.item<double>() / (double)rows;
    LB_DISPATCH_FLOAT(prob.dtype(), "softmax_cross_entropy backward", [&] {
      cross_entropy_backward_cpu(gx.data<scalar_t>(), prob.data<scalar_t>(), st.data<int64_t>(),
                                 rows, k, eps, scale);
    });
    return std::vector<Tensor>{gx};
  });
}

Tensor kl_div(const Tensor& x, const Tensor& target, double temperature) {
  const char* op = "kl_div";
  check_logits(x, op, "x");
  check_logits(target, op, "target");
  check_same_dtype(x, target, op);
  LB_CHECK(x.shape() == target.shape(), op, ": shape mismatch, x ", shape_str(x.shape()),
           " and target ", shape_str(target.shape()));
  LB_CHECK(x.shape()[0] > 0 && x.shape()[1] > 0, op, ": empty logits of shape ",
           shape_str(x.shape()));
  LB_CHECK(temperature > 0 && std::isfinite(temperature), op,
           ": temperature must be positive, got ", temperature);
  const int64_t rows = x.shape()[0], k = x.shape()[1];
  std::vector<double> loss_rows((size_t)rows);
  Tensor ps = Tensor::empty(x.shape(), x.dtype()), pt = Tensor::empty(x.shape(), x.dtype());
  LB_DISPATCH_FLOAT(x.dtype(), op, [&] {
    kl_div_forward_cpu(loss_rows.data(), ps.data<scalar_t>(), pt.data<scalar_t>(),
                       x.data<scalar_t>(), target.data<scalar_t>(), rows, k, temperature);
  });
  const double t2 = temperature * temperature;
  Tensor y = Tensor::scalar(t2 * batch_mean(loss_rows), x.dtype());
  // Only x is an input: the teacher's logits are a constant here (no gradient flows to target).
  return record(y, op, {x}, {"x"}, [ps, pt, rows, temperature](const Node&, const Tensor& g) {
    // d/dx [T^2 KL] = T^2 * (ps - pt) / T, averaged over the batch.
    Tensor gx = Tensor::empty(ps.shape(), ps.dtype());
    const double scale = g.item<double>() * temperature / (double)rows;
    LB_DISPATCH_FLOAT(ps.dtype(), "kl_div backward", [&] {
      const scalar_t* a = ps.data<scalar_t>();
      const scalar_t* b = pt.data<scalar_t>();
      scalar_t* o = gx.data<scalar_t>();
      for (int64_t i = 0; i < ps.numel(); ++i) o[i] = (scalar_t)(scale * ((double)a[i] - (double)b[i]));
    });
    return std::vector<Tensor>{gx};
  });
}

}  // namespace lowbit
