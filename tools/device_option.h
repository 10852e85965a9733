// `--device cpu|cuda` and `--deterministic` of the lowbit commands: one parser, one error text.
#pragma once
#include <string>

#include "core/tensor.h"

namespace lowbit {

// "cpu" or "cuda". cuda needs a GPU build and a device; otherwise the error says which is missing
// (a CPU build: the stub's "built without CUDA"). deterministic: only deterministic cuDNN
// algorithms (a CPU run is deterministic anyway).
Device select_device(const std::string& name, bool deterministic);

// The device of a module's first parameter (cpu for a module without parameters).
class Module;
Device module_device(const Module& m);

// t itself when it is on d already, else a copy there (batches are made on the host).
Tensor to_device_if(const Tensor& t, Device d);

}  // namespace lowbit
