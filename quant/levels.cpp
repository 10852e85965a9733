// Checks and small helpers shared by the quantizer ops (quant/levels.h).
#include "quant/levels.h"

#include <cmath>

#include "core/cuda/kernels.h"

namespace lowbit {

Ste parse_ste(const std::string& s, const char* op) {
  if (s.empty() || s == "default") return Ste::method_default;
  if (s == "clipped") return Ste::clipped;
  if (s == "identity") return Ste::identity;
  LB_FAIL(op, ": ste must be 'identity' or 'clipped', got '", s, "'");
}

const char* ste_name(Ste s) {
  switch (s) {
    case Ste::method_default: return "default";
    case Ste::clipped: return "clipped";
    case Ste::identity: return "identity";
  }
  return "?";
}

void check_bits(const char* op, int bits, int lo, int hi) {
  LB_CHECK(bits >= lo && bits <= hi, op, ": bits must be in [", lo, ", ", hi, "], got ", bits);
}

void check_quant_input(const Tensor& x, const char* op, const char* arg, bool cuda_ok) {
  check_float(x, op, arg);
  if (cuda_ok && x.device() == Device::cuda) {
    LB_CHECK(x.dtype() == DType::f32, op, ": the CUDA backend computes in float32, got ",
             dtype_name(x.dtype()));
    return;
  }
  check_cpu(x, op);
}

void check_param_dtype(const Tensor& x, const Tensor& p, const char* op, const char* arg) {
  check_float(p, op, arg);
  LB_CHECK(p.dtype() == x.dtype(), op, ": dtype mismatch, input is ", dtype_name(x.dtype()), ", '",
           arg, "' is ", dtype_name(p.dtype()));
  LB_CHECK(p.device() == x.device(), op, ": '", arg, "' is on ", device_name(p.device()),
           " but the input is on ", device_name(x.device()), "; move both to one device first");
}

int64_t check_param_shape(const Tensor& x, const Tensor& p, bool per_channel, const char* op,
                          const char* arg) {
  if (!per_channel) {
    LB_CHECK(p.numel() == 1 && p.dim() <= 1, op, ": per-tensor '", arg,
             "' must have shape () or (1,), got ", shape_str(p.shape()));
    return 1;
  }
  LB_CHECK(x.dim() >= 2, op, ": per_channel needs an input with a channel axis (>= 2-d), got shape ",
           shape_str(x.shape()));
  const int64_t c = x.size(0);
  LB_CHECK(p.dim() == 1 && p.size(0) == c, op, ": per-channel '", arg, "' must have shape (", c,
           ",) for input ", shape_str(x.shape()), ", got ", shape_str(p.shape()));
  return c;
}

void check_positive(const Tensor& p, const char* op, const char* arg) {
  // On the GPU a kernel checks and the error comes at the next host read (core/cuda/checks.cu).
  if (p.device() == Device::cuda) {
    check_cuda_f32(p, op);
    cuda_check_positive(p.data<float>(), p.numel(), str_cat(op, ": '", arg, "'"));
    return;
  }
  std::vector<double> v = p.to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i)
    LB_CHECK(v[i] > 0 && std::isfinite(v[i]), op, ": '", arg, "' must be > 0, got ", v[i],
             v.size() > 1 ? str_cat(" at channel ", i) : std::string());
}

}  // namespace lowbit
