// --device and --deterministic (tools/device_option.h).
#include "tools/device_option.h"

#include "core/cuda/kernels.h"
#include "core/device_memory.h"
#include "layers/module.h"

namespace lowbit {

Device select_device(const std::string& name, bool deterministic) {
  LB_CHECK(name == "cpu" || name == "cuda", "--device: expected cpu or cuda, got '", name, "'");
  cuda_set_deterministic(deterministic);
  if (name == "cpu") return Device::cpu;
  // A CPU build: cuda_alloc is the stub, whose error says the build has no CUDA. A GPU build
  // without a device: say so before any work.
  if (!cuda_available()) {
    cuda_free(cuda_alloc(1), 1);  // throws the stub's "built without CUDA" in a CPU build
    LB_FAIL("--device cuda: ", cuda_describe());
  }
  return Device::cuda;
}

Device module_device(const Module& m) {
  for (const auto& p : m.named_parameters()) return p.second.device();
  return Device::cpu;
}

Tensor to_device_if(const Tensor& t, Device d) { return t.device() == d ? t : t.to_device(d); }

}  // namespace lowbit
