// load_data: detects the layout behind a spec ("synthetic" or a path) and dispatches to the
// loader; normalisation constants; helpers shared by the loaders (limits, name files).
#include "datasets/dataset.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "datasets/detail.h"

namespace lowbit {

namespace fs = std::filesystem;

namespace detail {

std::vector<int64_t> evenly_spaced(int64_t n, int64_t limit) {
  if (limit <= 0 || limit > n) limit = n;
  std::vector<int64_t> idx((size_t)limit);
  // i*n/limit is strictly increasing for limit <= n, so the indices are distinct.
  for (int64_t i = 0; i < limit; ++i) idx[(size_t)i] = i * n / limit;
  return idx;
}

Dataset take(const Dataset& d, const std::vector<int64_t>& idx) {
  Dataset r;
  r.num_classes = d.num_classes;
  r.class_names = d.class_names;
  r.source = d.source;
  const int64_t n = (int64_t)idx.size(), per = d.images.numel() / std::max<int64_t>(d.size(), 1);
  Shape shape = d.images.shape();
  shape[0] = n;
  r.images = Tensor::empty(shape, DType::u8);
  r.labels = Tensor::empty({n}, DType::i64);
  const uint8_t* src = d.images.data<uint8_t>();
  const int64_t* lab = d.labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    LB_CHECK(idx[i] >= 0 && idx[i] < d.size(), "take: index ", idx[i], " out of range");
    std::memcpy(r.images.data<uint8_t>() + i * per, src + idx[i] * per, (size_t)per);
    r.labels.data<int64_t>()[i] = lab[idx[i]];
  }
  return r;
}

std::vector<std::string> read_name_lines(const std::string& path) {
  std::ifstream in(path);
  LB_CHECK(in.good(), "cannot read ", path);
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    const char* ws = " \t\r\n";
    size_t b = line.find_first_not_of(ws);
    if (b == std::string::npos) continue;
    names.push_back(line.substr(b, line.find_last_not_of(ws) - b + 1));
  }
  return names;
}

std::vector<std::string> numbered_names(int64_t k) {
  std::vector<std::string> r;
  for (int64_t i = 0; i < k; ++i) r.push_back(std::to_string(i));
  return r;
}

}  // namespace detail

DataSplit load_data(const std::string& spec, const DataOptions& opt) {
  if (spec == "synthetic") return make_synthetic(opt);
  const char* expected =
      "'synthetic', a directory holding cifar-10-batches-bin/ or data_batch_1.bin..., "
      "cifar-100-binary/ or train.bin and test.bin, or train/<class>/ and test/<class>/ image folders";
  const fs::path p(spec);
  LB_CHECK(!spec.empty() && fs::exists(p), "load_data: ", spec.empty() ? "(empty path)" : spec,
           " does not exist (expected ", expected, ")");
  LB_CHECK(fs::is_directory(p), "load_data: ", spec, " is not a directory (expected ", expected, ")");
  if (fs::is_directory(p / "cifar-10-batches-bin"))
    return load_cifar10_binary((p / "cifar-10-batches-bin").string(), opt);
  if (fs::exists(p / "data_batch_1.bin")) return load_cifar10_binary(spec, opt);
  if (fs::is_directory(p / "cifar-100-binary"))
    return load_cifar100_binary((p / "cifar-100-binary").string(), opt);
  if (fs::exists(p / "train.bin") || fs::exists(p / "test.bin")) return load_cifar100_binary(spec, opt);
  if (fs::is_directory(p / "train")) return load_image_folder(spec, opt);
  LB_FAIL("load_data: cannot tell the layout of ", spec, " (expected ", expected, ")");
}

Normalization compute_normalization(const Dataset& d) {
  LB_CHECK(d.images.defined() && d.images.dim() == 4 && d.images.size(3) == 3 && d.size() > 0,
           "compute_normalization: need a non-empty (N, H, W, 3) image set (", d.source, ")");
  // Exact integer sums (a uint64 holds 2^64/65025 pixels' squares), so the result does not
  // depend on summation order.
  uint64_t s[3] = {0, 0, 0}, q[3] = {0, 0, 0};
  const uint8_t* p = d.images.data<uint8_t>();
  const int64_t pixels = d.images.numel() / 3;
  for (int64_t i = 0; i < pixels; ++i)
    for (int c = 0; c < 3; ++c) {
      uint64_t v = p[i * 3 + c];
      s[c] += v;
      q[c] += v * v;
    }
  Normalization n;
  for (int c = 0; c < 3; ++c) {
    double mean = (double)s[c] / pixels, var = (double)q[c] / pixels - mean * mean;
    n.mean[c] = (float)(mean / 255.0);
    n.std[c] = (float)(std::sqrt(std::max(var, 1e-6)) / 255.0);
  }
  return n;
}

Normalization cifar_normalization(const DataSplit& d) {
  if (d.layout == "cifar10-bin") return {{0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}};
  if (d.layout == "cifar100-bin") return {{0.5071f, 0.4865f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f}};
  return compute_normalization(d.train);
}

}  // namespace lowbit
