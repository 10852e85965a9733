// CIFAR-10 and CIFAR-100 in their binary distribution: fixed-size records of label byte(s)
// followed by 3072 pixel bytes stored CHW (1024 R, 1024 G, 1024 B, rows of 32), turned into HWC.
// Every size and label is checked before use, so a hostile file gives an Error, never a crash.
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "datasets/dataset.h"
#include "datasets/detail.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kPixels = 32 * 32 * 3;

struct Format {
  const char* what;                 // "CIFAR-10" or "CIFAR-100", for messages
  std::vector<int64_t> label_max;   // one range per label byte of a record: value < label_max[i]
  int use_label;                    // which label byte becomes the label
  int64_t record() const { return (int64_t)label_max.size() + kPixels; }
};

void check_dir(const fs::path& dir, const char* what, const char* expected) {
  LB_CHECK(fs::is_directory(dir), what, ": directory ", dir.string(), " does not exist (expected ",
           expected, ")");
}

// All records of `files`, concatenated in order. Sizes are checked before anything is allocated.
Dataset read_records(const std::vector<fs::path>& files, const Format& f, const char* expected) {
  const int64_t rec = f.record();
  int64_t total = 0;
  for (const fs::path& p : files) {
    LB_CHECK(fs::is_regular_file(p), f.what, ": missing file ", p.string(), " (expected ", expected,
             ")");
    const int64_t size = (int64_t)fs::file_size(p);
    LB_CHECK(size % rec == 0, f.what, ": ", p.string(), " is ", size, " bytes, not a multiple of the ",
             rec, "-byte record: truncated or oversized");
    LB_CHECK(size > 0, f.what, ": ", p.string(), " is empty (0 records)");
    total += size / rec;
  }
  Dataset d;
  d.images = Tensor::empty({total, 32, 32, 3}, DType::u8);
  d.labels = Tensor::empty({total}, DType::i64);
  uint8_t* img = d.images.data<uint8_t>();
  int64_t* lab = d.labels.data<int64_t>();
  const int64_t chunk = 1024;  // records per read: a few MB of buffer whatever the file size
  std::vector<uint8_t> buf((size_t)(chunk * rec));
  int64_t n = 0;
  for (const fs::path& p : files) {
    std::ifstream in(p, std::ios::binary);
    LB_CHECK(in.good(), f.what, ": cannot open ", p.string());
    const int64_t records = (int64_t)fs::file_size(p) / rec;
    for (int64_t r0 = 0; r0 < records; r0 += chunk) {
      const int64_t m = std::min(chunk, records - r0);
      in.read((char*)buf.data(), (std::streamsize)(m * rec));
      LB_CHECK(in.gcount() == (std::streamsize)(m * rec), f.what, ": ", p.string(),
               ": short read at byte offset ", r0 * rec, " (file changed while reading?)");
      for (int64_t r = 0; r < m; ++r, ++n) {
        const uint8_t* src = buf.data() + r * rec;
        for (size_t b = 0; b < f.label_max.size(); ++b)
          LB_CHECK(src[b] < f.label_max[b], f.what, ": ", p.string(), " record ", r0 + r,
                   " (byte offset ", (r0 + r) * rec + (int64_t)b, "): label ", (int)src[b],
                   " out of range [0, ", f.label_max[b], ")");
        lab[n] = src[f.use_label];
        const uint8_t* px = src + f.label_max.size();
        uint8_t* dst = img + n * kPixels;
        for (int64_t i = 0; i < 1024; ++i)  // CHW planes -> interleaved HWC
          for (int64_t c = 0; c < 3; ++c) dst[i * 3 + c] = px[c * 1024 + i];
      }
    }
  }
  return d;
}

std::vector<std::string> class_names(const fs::path& file, int64_t k) {
  if (!fs::exists(file)) return detail::numbered_names(k);
  std::vector<std::string> names = detail::read_name_lines(file.string());
  LB_CHECK((int64_t)names.size() == k, "class names file ", file.string(), " has ", names.size(),
           " names, expected ", k);
  return names;
}

void finish(Dataset& d, int64_t k, const std::vector<std::string>& names, const std::string& source,
            int64_t limit) {
  d.num_classes = k;
  d.class_names = names;
  d.source = source;
  if (limit > 0 && limit < d.size()) d = detail::take(d, detail::evenly_spaced(d.size(), limit));
}

}  // namespace

DataSplit load_cifar10_binary(const std::string& dir_s, const DataOptions& opt) {
  const fs::path dir(dir_s);
  const char* expected = "data_batch_1.bin ... data_batch_5.bin and test_batch.bin";
  check_dir(dir, "CIFAR-10", expected);
  const Format f{"CIFAR-10", {10}, 0};
  std::vector<fs::path> train;
  for (int i = 1; i <= 5; ++i) train.push_back(dir / ("data_batch_" + std::to_string(i) + ".bin"));
  DataSplit s;
  s.layout = "cifar10-bin";
  s.train = read_records(train, f, expected);
  s.test = read_records({dir / "test_batch.bin"}, f, expected);
  const auto names = class_names(dir / "batches.meta.txt", 10);
  finish(s.train, 10, names, "CIFAR-10 binary at " + dir.string(), opt.limit_train);
  finish(s.test, 10, names, "CIFAR-10 binary at " + dir.string(), opt.limit_test);
  return s;
}

DataSplit load_cifar100_binary(const std::string& dir_s, const DataOptions& opt) {
  const fs::path dir(dir_s);
  const char* expected = "train.bin and test.bin";
  check_dir(dir, "CIFAR-100", expected);
  const bool coarse = opt.cifar100_coarse;
  const Format f{"CIFAR-100", {20, 100}, coarse ? 0 : 1};
  const int64_t k = coarse ? 20 : 100;
  DataSplit s;
  s.layout = "cifar100-bin";
  s.train = read_records({dir / "train.bin"}, f, expected);
  s.test = read_records({dir / "test.bin"}, f, expected);
  const auto names = class_names(dir / (coarse ? "coarse_label_names.txt" : "fine_label_names.txt"), k);
  const std::string src =
      "CIFAR-100 binary at " + dir.string() + (coarse ? " (20 coarse labels)" : " (100 fine labels)");
  finish(s.train, k, names, src, opt.limit_train);
  finish(s.test, k, names, src, opt.limit_test);
  return s;
}

}  // namespace lowbit
