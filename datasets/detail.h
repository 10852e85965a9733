// Helpers shared by the data set loaders (not part of the public interface).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "datasets/dataset.h"

namespace lowbit {
namespace detail {

// limit <= 0 or >= n: 0..n-1; else `limit` indices evenly spaced through [0, n), increasing.
std::vector<int64_t> evenly_spaced(int64_t n, int64_t limit);
// The samples at `idx`, in that order (images, labels; names and source are kept).
Dataset take(const Dataset& d, const std::vector<int64_t>& idx);
// Non-empty, whitespace-trimmed lines of a text file (class names files); error naming the file
// when it cannot be read.
std::vector<std::string> read_name_lines(const std::string& path);
// "0", "1", ..., "k-1".
std::vector<std::string> numbered_names(int64_t k);

}  // namespace detail
}  // namespace lowbit
