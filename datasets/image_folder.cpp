// Image folders: DIR/train/<class>/*.png|jpg|... and DIR/test/<class>/..., classes in sorted
// folder-name order, files in sorted name order, each 32x32 decoded to RGB by stb_image in parallel.
#include <stb/stb_image.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/parallel.h"
#include "datasets/dataset.h"
#include "datasets/detail.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
constexpr long kMaxFileBytes = 16 << 20;
const char* kExts = ".png, .jpg, .jpeg, .bmp, .gif, .tga, .ppm, .pgm, .psd";

bool is_image_name(const fs::path& p) {
  std::string e = p.extension().string();
  for (char& ch : e) ch = (char)std::tolower((unsigned char)ch);
  static const char* exts[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".ppm", ".pgm", ".psd"};
  for (const char* x : exts)
    if (e == x) return true;
  return false;
}

bool hidden(const fs::path& p) { return p.filename().string().rfind('.', 0) == 0; }

std::vector<std::string> class_folders(const fs::path& split) {
  LB_CHECK(fs::is_directory(split), "image folder: directory ", split.string(),
           " does not exist (expected one subfolder of images per class)");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(split))
    if (e.is_directory() && !hidden(e.path())) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  LB_CHECK(!names.empty(), "image folder: ", split.string(), " has no class subfolders");
  return names;
}

struct Item {
  fs::path file;
  int64_t label;
};

std::vector<Item> list_items(const fs::path& split, const std::vector<std::string>& classes) {
  std::vector<Item> items;
  for (size_t k = 0; k < classes.size(); ++k) {
    const fs::path dir = split / classes[k];
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && !hidden(e.path()) && is_image_name(e.path())) files.push_back(e.path());
    LB_CHECK(!files.empty(), "image folder: class folder ", dir.string(), " holds no images (",
             kExts, ")");
    std::sort(files.begin(), files.end());
    for (auto& f : files) items.push_back({std::move(f), (int64_t)k});
  }
  return items;
}

// Decodes one file into dst (32*32*3 bytes). The file is read once into memory (half the system
// calls of stbi_info + stbi_load on a path) and its header checked before stb decodes, so a
// hostile file that claims a huge size is rejected before stb allocates for it.
void decode_into(const fs::path& file, uint8_t* dst, std::vector<uint8_t>& buf) {
  const std::string name = file.string();
  std::FILE* f = std::fopen(name.c_str(), "rb");
  LB_CHECK(f != nullptr, "image folder: cannot open ", name);
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  if (size < 0 || size > kMaxFileBytes) std::fclose(f);
  LB_CHECK(size >= 0 && size <= kMaxFileBytes, "image folder: ", name, " is ", size,
           " bytes, more than the ", kMaxFileBytes, " a 32x32 image can need");
  buf.resize((size_t)size);
  const size_t got = std::fread(buf.data(), 1, (size_t)size, f);
  std::fclose(f);
  LB_CHECK(got == (size_t)size, "image folder: short read of ", name);
  int w = 0, h = 0, comp = 0;
  LB_CHECK(stbi_info_from_memory(buf.data(), (int)size, &w, &h, &comp), "image folder: cannot decode ",
           name, ": ", stbi_failure_reason());
  LB_CHECK(w == 32 && h == 32, "image folder: ", name, " is ", w, "x", h, ", expected 32x32");
  // req_comp = 3: grey, grey+alpha and RGBA are converted to RGB by stb.
  uint8_t* px = stbi_load_from_memory(buf.data(), (int)size, &w, &h, &comp, 3);
  LB_CHECK(px != nullptr, "image folder: cannot decode ", name, ": ", stbi_failure_reason());
  const bool ok = w == 32 && h == 32;
  if (ok) std::memcpy(dst, px, 32 * 32 * 3);
  stbi_image_free(px);
  LB_CHECK(ok, "image folder: ", name, " is ", w, "x", h, ", expected 32x32");
}

Dataset decode_split(const fs::path& split, const std::vector<std::string>& classes, int64_t limit) {
  const std::vector<Item> all = list_items(split, classes);
  const std::vector<int64_t> idx = detail::evenly_spaced((int64_t)all.size(), limit);
  const int64_t n = (int64_t)idx.size();
  Dataset d;
  d.images = Tensor::empty({n, 32, 32, 3}, DType::u8);
  d.labels = Tensor::empty({n}, DType::i64);
  uint8_t* img = d.images.data<uint8_t>();
  int64_t* lab = d.labels.data<int64_t>();
  // An exception must not leave an OpenMP region: each file's error is kept, and the first one in
  // file order is thrown afterwards, so the message does not depend on the thread count.
  std::vector<std::string> errors((size_t)n);
  parallel_for(n, 20000, [&](int64_t b, int64_t e) {
    std::vector<uint8_t> buf;  // one file's bytes, reused across this thread's files
    for (int64_t i = b; i < e; ++i) {
      try {
        const Item& it = all[(size_t)idx[(size_t)i]];
        decode_into(it.file, img + i * 32 * 32 * 3, buf);
        lab[i] = it.label;
      } catch (const std::exception& ex) {
        errors[(size_t)i] = ex.what();
      }
    }
  });
  for (const std::string& e : errors)
    if (!e.empty()) throw Error(e);
  d.num_classes = (int64_t)classes.size();
  d.class_names = classes;
  return d;
}

}  // namespace

DataSplit load_image_folder(const std::string& dir_s, const DataOptions& opt) {
  const fs::path dir(dir_s);
  LB_CHECK(fs::is_directory(dir), "image folder: directory ", dir_s,
           " does not exist (expected train/<class>/ and test/<class>/ image folders)");
  const std::vector<std::string> classes = class_folders(dir / "train");
  const std::vector<std::string> test_classes = class_folders(dir / "test");
  for (const std::string& c : classes)
    LB_CHECK(std::binary_search(test_classes.begin(), test_classes.end(), c), "image folder: class '",
             c, "' of ", (dir / "train").string(), " is missing from ", (dir / "test").string());
  for (const std::string& c : test_classes)
    LB_CHECK(std::binary_search(classes.begin(), classes.end(), c), "image folder: class '", c,
             "' of ", (dir / "test").string(), " is not a class of ", (dir / "train").string());
  DataSplit s;
  s.layout = "image-folder";
  s.train = decode_split(dir / "train", classes, opt.limit_train);
  s.test = decode_split(dir / "test", classes, opt.limit_test);
  s.train.source = "image folder " + (dir / "train").string();
  s.test.source = "image folder " + (dir / "test").string();
  return s;
}

}  // namespace lowbit
