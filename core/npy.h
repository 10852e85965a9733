// NumPy .npy files (format 1.0/2.0/3.0 on read, 1.0 on write): little-endian, C-order arrays of
// float32, float64, int32, int64, int8 and uint8. A 0-d array is a 0-d tensor (shape ()).
// Every malformed or hostile file is an Error naming the file and what is wrong; sizes are
// checked against the file size before anything is allocated.
#pragma once
#include <string>

#include "core/tensor.h"

namespace lowbit {

// Reads a .npy file into a new cpu tensor.
Tensor read_npy(const std::string& path);

// Writes a cpu tensor as .npy (format 1.0). Atomic: the bytes go to a temporary file in the same
// directory, which is fsynced and renamed over `path`, so a reader never sees a partial file.
void write_npy(const std::string& path, const Tensor& t);

}  // namespace lowbit
