// Device checks shared by every op's dispatch (both builds): an op runs on cuda when any input
// lives there, and then every input must; the CUDA backend computes in float32.
#include "core/cuda/kernels.h"

namespace lowbit {

bool on_cuda(const char* op, std::initializer_list<const Tensor*> ts,
             std::initializer_list<const char*> names) {
  const Tensor* first_cuda = nullptr;
  const char* first_name = "?";
  auto name_it = names.begin();
  for (const Tensor* t : ts) {
    const char* nm = name_it != names.end() ? *name_it++ : "?";
    if (t && t->defined() && t->device() == Device::cuda && !first_cuda) first_cuda = t, first_name = nm;
  }
  if (!first_cuda) return false;
  name_it = names.begin();
  for (const Tensor* t : ts) {
    const char* nm = name_it != names.end() ? *name_it++ : "?";
    if (!t || !t->defined()) continue;
    LB_CHECK(t->device() == Device::cuda, op, ": input '", nm, "' is on the cpu but '", first_name,
             "' is on cuda; move both to one device first (Tensor::to_device)");
    check_cuda_f32(*t, op);
  }
  return true;
}

void check_cuda_f32(const Tensor& t, const char* op) {
  LB_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::i64, op,
           ": the CUDA backend computes in float32, got a ", dtype_name(t.dtype()),
           " tensor (float64 is for CPU gradient checks)");
}

}  // namespace lowbit
