// safetensors checkpoints (the Hugging Face format, readable by PyTorch without pickle):
// u64 little-endian header length N, N bytes of JSON {"__metadata__": {str: str},
// name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}, then the raw little-endian data.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace lowbit {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct SafetensorsFile {
  NamedTensors tensors;  // in data order, which is the order they were saved in
  std::map<std::string, std::string> metadata;
};

// Writes atomically: temp file in the same directory, written, fsync'd, renamed over the target,
// then the directory fsync'd; a crash at any moment leaves the previous file intact.
// Tensors must be defined, on the cpu, with unique names; data is written in the given order.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Validates the whole file before trusting any of it (sizes, dtypes, offsets, overlaps, gaps);
// a hostile file throws lowbit::Error naming the file, the tensor and the reason.
SafetensorsFile load_safetensors(const std::string& path);

// The same atomic replace for any small file (JSON side files, logs of record).
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace lowbit
