// Data sets and the loader: CIFAR binary decoding and its errors, image folders (files written
// here with stb_image_write), the synthetic set, and the loader's order, augmentation and threads.
#include <doctest/doctest.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

#include "core/parallel.h"
#include "datasets/augment.h"
#include "datasets/dataset.h"

using namespace lowbit;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/lowbit_datasets_XXXXXX";
    char* p = mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out.write((const char*)b.data(), (std::streamsize)b.size());
}

void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << s;
}

// Pixel (c, y, x) of the record-th test image: distinct across channels, rows, columns, records.
uint8_t pix(int64_t record, int c, int y, int x) { return (uint8_t)(record * 29 + c * 83 + y * 7 + x * 3 + 1); }

// CIFAR records: the label bytes, then 3072 bytes CHW.
void append_record(std::vector<uint8_t>& out, std::vector<uint8_t> labels, int64_t id) {
  out.insert(out.end(), labels.begin(), labels.end());
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) out.push_back(pix(id, c, y, x));
}

// A CIFAR-10 directory: data_batch_b holds records ids 2b-2, 2b-1 (labels id % 10); test 3 records.
void write_cifar10(const fs::path& dir) {
  for (int b = 1; b <= 5; ++b) {
    std::vector<uint8_t> f;
    for (int64_t id = 2 * b - 2; id < 2 * b; ++id) append_record(f, {(uint8_t)(id % 10)}, id);
    write_bytes(dir / ("data_batch_" + std::to_string(b) + ".bin"), f);
  }
  std::vector<uint8_t> t;
  for (int64_t id = 100; id < 103; ++id) append_record(t, {(uint8_t)(id % 10)}, id);
  write_bytes(dir / "test_batch.bin", t);
}

void check_hwc(const Dataset& d, int64_t i, int64_t id) {
  const uint8_t* p = d.images.data<uint8_t>() + i * 3072;
  int bad = 0;
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x)
      for (int c = 0; c < 3; ++c) bad += p[(y * 32 + x) * 3 + c] != pix(id, c, y, x);
  CHECK(bad == 0);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("cifar10 binary: labels and CHW->HWC pixels decoded exactly, layouts detected") {
  TempDir t;
  write_cifar10(t.path / "cifar-10-batches-bin");
  write_text(t.path / "cifar-10-batches-bin" / "batches.meta.txt",
             "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n");
  for (fs::path spec : {t.path, t.path / "cifar-10-batches-bin"}) {
    DataSplit s = load_data(spec.string());
    CHECK(s.layout == "cifar10-bin");
    REQUIRE(s.train.size() == 10);
    REQUIRE(s.test.size() == 3);
    CHECK(s.train.images.shape() == Shape{10, 32, 32, 3});
    CHECK(s.train.num_classes == 10);
    CHECK(s.train.class_names[9] == "truck");
    for (int64_t i = 0; i < 10; ++i) {
      CHECK(s.train.labels.data<int64_t>()[i] == i % 10);
      check_hwc(s.train, i, i);
    }
    for (int64_t i = 0; i < 3; ++i) {
      CHECK(s.test.labels.data<int64_t>()[i] == (100 + i) % 10);
      check_hwc(s.test, i, 100 + i);
    }
    CHECK(s.train.source.find("CIFAR-10 binary at") != std::string::npos);
  }
  fs::remove(t.path / "cifar-10-batches-bin" / "batches.meta.txt");
  DataOptions o;
  o.limit_train = 4;
  DataSplit s = load_data(t.path.string(), o);
  CHECK(s.train.class_names[3] == "3");
  REQUIRE(s.train.size() == 4);  // evenly spaced: records 0, 2, 5, 7
  CHECK(s.train.labels.to_vector<int64_t>() == std::vector<int64_t>{0, 2, 5, 7});
  check_hwc(s.train, 2, 5);
}

TEST_CASE("cifar100 binary: fine and coarse labels, names, layout detection") {
  TempDir t;
  const fs::path dir = t.path / "cifar-100-binary";
  std::vector<uint8_t> tr, te;
  for (int64_t id = 0; id < 4; ++id) append_record(tr, {(uint8_t)(id + 3), (uint8_t)(id * 30 + 1)}, id);
  append_record(te, {19, 99}, 50);
  write_bytes(dir / "train.bin", tr);
  write_bytes(dir / "test.bin", te);
  std::string names;
  for (int i = 0; i < 100; ++i) names += "fine" + std::to_string(i) + "\n";
  write_text(dir / "fine_label_names.txt", names);
  DataSplit s = load_data(t.path.string());
  CHECK(s.layout == "cifar100-bin");
  CHECK(s.train.num_classes == 100);
  CHECK(s.train.class_names[91] == "fine91");
  CHECK(s.train.labels.to_vector<int64_t>() == std::vector<int64_t>{1, 31, 61, 91});
  CHECK(s.test.labels.to_vector<int64_t>() == std::vector<int64_t>{99});
  for (int64_t i = 0; i < 4; ++i) check_hwc(s.train, i, i);
  check_hwc(s.test, 0, 50);
  DataOptions o;
  o.cifar100_coarse = true;
  DataSplit c = load_data(dir.string(), o);  // the directory itself holding train.bin
  CHECK(c.train.num_classes == 20);
  CHECK(c.train.class_names[19] == "19");  // no coarse_label_names.txt: numbered
  CHECK(c.train.labels.to_vector<int64_t>() == std::vector<int64_t>{3, 4, 5, 6});
  CHECK(c.test.labels.to_vector<int64_t>() == std::vector<int64_t>{19});
}

TEST_CASE("cifar binary: malformed files give errors naming the file and the reason") {
  TempDir t;
  write_cifar10(t.path);
  const fs::path b3 = t.path / "data_batch_3.bin";
  std::vector<uint8_t> good;
  append_record(good, {1}, 0);
  append_record(good, {2}, 1);

  std::vector<uint8_t> bad(good.begin(), good.end() - 1);  // truncated
  write_bytes(b3, bad);
  std::string e = error_of([&] { load_data(t.path.string()); });
  CHECK(e.find(b3.string()) != std::string::npos);
  CHECK(e.find("6145 bytes") != std::string::npos);
  CHECK(e.find("3073-byte record") != std::string::npos);
  CHECK(e.find("truncated or oversized") != std::string::npos);

  bad = good;
  bad.push_back(0);  // oversized
  write_bytes(b3, bad);
  e = error_of([&] { load_data(t.path.string()); });
  CHECK(e.find("data_batch_3.bin is 6147 bytes") != std::string::npos);

  bad = good;
  bad[3073] = 10;  // record 1's label
  write_bytes(b3, bad);
  e = error_of([&] { load_data(t.path.string()); });
  CHECK(e.find("data_batch_3.bin record 1 (byte offset 3073): label 10 out of range [0, 10)") !=
        std::string::npos);

  write_bytes(b3, good);
  CHECK_NOTHROW(load_data(t.path.string()));
  fs::remove(t.path / "test_batch.bin");
  e = error_of([&] { load_data(t.path.string()); });
  CHECK(e.find("missing file " + (t.path / "test_batch.bin").string()) != std::string::npos);

  // CIFAR-100: the fine byte is checked at its own offset.
  TempDir u;
  std::vector<uint8_t> tr;
  append_record(tr, {0, 5}, 0);
  append_record(tr, {0, 100}, 1);
  write_bytes(u.path / "train.bin", tr);
  write_bytes(u.path / "test.bin", good);  // 3073-byte records: not a multiple of 3074
  e = error_of([&] { load_data(u.path.string()); });
  CHECK(e.find("train.bin record 1 (byte offset 3075): label 100 out of range [0, 100)") != std::string::npos);
  tr.resize(3074);
  write_bytes(u.path / "train.bin", tr);
  e = error_of([&] { load_data(u.path.string()); });
  CHECK(e.find((u.path / "test.bin").string() + " is 6146 bytes") != std::string::npos);

  // Missing and unrecognisable directories.
  e = error_of([&] { load_data((t.path / "nope").string()); });
  CHECK(e.find((t.path / "nope").string() + " does not exist") != std::string::npos);
  e = error_of([&] { load_cifar10_binary((t.path / "nope").string()); });
  CHECK(e.find("directory " + (t.path / "nope").string() + " does not exist") != std::string::npos);
  fs::create_directories(t.path / "empty");
  e = error_of([&] { load_data((t.path / "empty").string()); });
  CHECK(e.find("cannot tell the layout of " + (t.path / "empty").string()) != std::string::npos);
}

namespace {

// Pixel of image `id` at (y, x, c), never 0 so zero padding is recognisable.
uint8_t ipix(int id, int y, int x, int c) { return (uint8_t)(1 + (id * 41 + y * 13 + x * 5 + c * 71) % 255); }

std::vector<uint8_t> rgb_image(int id, int w = 32, int h = 32) {
  std::vector<uint8_t> p((size_t)(w * h * 3));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) p[(size_t)((y * w + x) * 3 + c)] = ipix(id, y % 32, x % 32, c);
  return p;
}

void write_png(const fs::path& p, int id, int w = 32, int h = 32) {
  fs::create_directories(p.parent_path());
  auto px = rgb_image(id, w, h);
  REQUIRE(stbi_write_png(p.string().c_str(), w, h, 3, px.data(), w * 3) != 0);
}

// Three classes created out of order, four formats: RGB PNG, BMP, grey PNG, RGBA PNG.
void write_folder(const fs::path& root) {
  for (const char* split : {"train", "test"}) {
    const fs::path d = root / split;
    write_png(d / "zebra" / "b.png", 1);
    fs::create_directories(d / "apple");
    auto px = rgb_image(2);
    REQUIRE(stbi_write_bmp((d / "zebra" / "a.bmp").string().c_str(), 32, 32, 3, px.data()) != 0);
    std::vector<uint8_t> grey(32 * 32), rgba(32 * 32 * 4);
    for (int i = 0; i < 1024; ++i) {
      grey[i] = (uint8_t)(i % 251);
      for (int c = 0; c < 4; ++c) rgba[i * 4 + c] = (uint8_t)(c == 3 ? 7 : ipix(3, i / 32, i % 32, c));
    }
    REQUIRE(stbi_write_png((d / "apple" / "g.png").string().c_str(), 32, 32, 1, grey.data(), 32) != 0);
    fs::create_directories(d / "mango");
    REQUIRE(stbi_write_png((d / "mango" / "x.PNG").string().c_str(), 32, 32, 4, rgba.data(), 128) != 0);
    write_text(d / "mango" / "notes.txt", "not an image, skipped by extension");
  }
}

}  // namespace

TEST_CASE("image folder: sorted classes and files, exact pixels, grey and RGBA to RGB") {
  TempDir t;
  write_folder(t.path);
  DataSplit s = load_data(t.path.string());
  CHECK(s.layout == "image-folder");
  CHECK(s.train.class_names == std::vector<std::string>{"apple", "mango", "zebra"});
  REQUIRE(s.train.size() == 4);
  CHECK(s.train.labels.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 2});
  CHECK(s.test.size() == 4);
  const uint8_t* p = s.train.images.data<uint8_t>();
  int bad_grey = 0, bad_rgba = 0, bad_bmp = 0, bad_png = 0;
  for (int i = 0; i < 1024; ++i)
    for (int c = 0; c < 3; ++c) {
      bad_grey += p[0 * 3072 + i * 3 + c] != (uint8_t)(i % 251);
      bad_rgba += p[1 * 3072 + i * 3 + c] != ipix(3, i / 32, i % 32, c);
      bad_bmp += p[2 * 3072 + i * 3 + c] != ipix(2, i / 32, i % 32, c);  // a.bmp sorts before b.png
      bad_png += p[3 * 3072 + i * 3 + c] != ipix(1, i / 32, i % 32, c);
    }
  CHECK(bad_grey == 0);
  CHECK(bad_rgba == 0);
  CHECK(bad_bmp == 0);
  CHECK(bad_png == 0);
  // Computed normalisation for an image folder equals the statistics of its train set.
  Normalization n = cifar_normalization(s);
  Normalization m = compute_normalization(s.train);
  CHECK(n.mean[1] == m.mean[1]);
  CHECK(n.std[2] == m.std[2]);
}

TEST_CASE("image folder: bad images and folders give errors naming them") {
  TempDir t;
  write_folder(t.path);
  const fs::path junk = t.path / "train" / "apple" / "junk.png";
  write_text(junk, "definitely not a PNG");
  std::string e = error_of([&] { load_data(t.path.string()); });
  CHECK(e.find("cannot decode " + junk.string() + ": ") != std::string::npos);
  CHECK(e.size() > e.find(junk.string() + ": ") + junk.string().size() + 2);  // stb's reason follows
  fs::remove(junk);

  // A hostile header claiming 10000x10000 pixels (300 MB) is rejected before stb allocates.
  std::vector<uint8_t> huge = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                               0, 0, 0x27, 0x10, 0, 0, 0x27, 0x10, 8, 2, 0, 0, 0, 0, 0, 0, 0};
  write_bytes(junk, huge);
  e = error_of([&] { load_data(t.path.string()); });
  CHECK(e.find(junk.string() + " is 10000x10000, expected 32x32") != std::string::npos);
  // A PNG cut in half: the header is fine, the pixel data is not.
  write_png(junk, 5);
  fs::resize_file(junk, fs::file_size(junk) / 2);
  e = error_of([&] { load_data(t.path.string()); });
  CHECK(e.find("cannot decode " + junk.string() + ": ") != std::string::npos);
  fs::remove(junk);

  const fs::path wide = t.path / "test" / "mango" / "wide.png";
  write_png(wide, 4, 48, 32);
  e = error_of([&] { load_data(t.path.string()); });
  CHECK(e.find(wide.string() + " is 48x32, expected 32x32") != std::string::npos);
  fs::remove(wide);

  fs::create_directories(t.path / "train" / "kiwi");
  fs::create_directories(t.path / "test" / "kiwi");
  write_text(t.path / "train" / "kiwi" / "readme.txt", "no images here");
  e = error_of([&] { load_data(t.path.string()); });
  CHECK(e.find("class folder " + (t.path / "train" / "kiwi").string() + " holds no images") != std::string::npos);
  fs::remove_all(t.path / "test" / "kiwi");
  e = error_of([&] { load_data(t.path.string()); });
  CHECK(e.find("class 'kiwi'") != std::string::npos);
  CHECK(e.find("missing from " + (t.path / "test").string()) != std::string::npos);
  fs::remove_all(t.path / "train" / "kiwi");
  CHECK_NOTHROW(load_data(t.path.string()));

  fs::remove_all(t.path / "test");
  e = error_of([&] { load_data(t.path.string()); });
  CHECK(e.find("directory " + (t.path / "test").string() + " does not exist") != std::string::npos);
}

TEST_CASE("synthetic: deterministic from the seed, independent of threads, all classes") {
  DataOptions o;
  o.synthetic_train = 200;
  o.synthetic_test = 30;
  DataSplit a = load_data("synthetic", o);
  CHECK(a.layout == "synthetic");
  CHECK(a.train.images.shape() == Shape{200, 32, 32, 3});
  CHECK(a.test.size() == 30);
  set_num_threads(1);
  DataSplit b = load_data("synthetic", o);
  set_num_threads(0);
  CHECK(std::memcmp(a.train.images.raw(), b.train.images.raw(), a.train.images.nbytes()) == 0);
  CHECK(a.train.labels.to_vector<int64_t>() == b.train.labels.to_vector<int64_t>());
  o.seed = 2;
  DataSplit c = load_data("synthetic", o);
  CHECK(std::memcmp(a.train.images.raw(), c.train.images.raw(), a.train.images.nbytes()) != 0);
  // Train and test are different draws.
  CHECK(std::memcmp(a.train.images.raw(), a.test.images.raw(), a.test.images.nbytes()) != 0);
  std::vector<int> count(10, 0);
  for (int64_t l : a.train.labels.to_vector<int64_t>()) {
    REQUIRE(l >= 0);
    REQUIRE(l < 10);
    count[(size_t)l]++;
  }
  for (int k = 0; k < 10; ++k) CHECK(count[(size_t)k] == 20);
  CHECK(a.train.class_names.size() == 10);
  // Images are neither blank nor saturated noise.
  Normalization n = cifar_normalization(a);
  for (int ch = 0; ch < 3; ++ch) {
    CHECK(n.mean[ch] > 0.2f);
    CHECK(n.mean[ch] < 0.8f);
    CHECK(n.std[ch] > 0.1f);
    CHECK(n.std[ch] < 0.45f);
  }
  // The class signal is spatial: the mean image of "horizontal bars" varies more along y than
  // along x, and "vertical bars" the other way, averaged over many samples' squared derivatives.
  auto grad_ratio = [&](int cls) {
    double gx = 0, gy = 0;
    const uint8_t* p = a.train.images.data<uint8_t>();
    for (int64_t i = cls; i < 200; i += 10)
      for (int y = 0; y < 31; ++y)
        for (int x = 0; x < 31; ++x)
          for (int ch = 0; ch < 3; ++ch) {
            const uint8_t* q = p + i * 3072;
            double v = q[(y * 32 + x) * 3 + ch];
            gx += std::abs(q[(y * 32 + x + 1) * 3 + ch] - v);
            gy += std::abs(q[((y + 1) * 32 + x) * 3 + ch] - v);
          }
    return gy / gx;
  };
  CHECK(grad_ratio(4) > 1.1);
  CHECK(grad_ratio(5) < 1 / 1.1);
}

TEST_CASE("normalisation constants by layout") {
  DataSplit s;
  s.layout = "cifar10-bin";
  Normalization n = cifar_normalization(s);
  CHECK(n.mean[0] == 0.4914f);
  CHECK(n.std[2] == 0.2616f);
  s.layout = "cifar100-bin";
  n = cifar_normalization(s);
  CHECK(n.mean[1] == 0.4865f);
  CHECK(n.std[0] == 0.2673f);
}

namespace {

// n images of ipix(i, ...), label i (so a batch row tells which sample it is).
Dataset tiny_set(int64_t n) {
  Dataset d;
  d.images = Tensor::empty({n, 32, 32, 3}, DType::u8);
  d.labels = Tensor::empty({n}, DType::i64);
  for (int64_t i = 0; i < n; ++i) {
    auto px = rgb_image((int)i);
    std::memcpy(d.images.data<uint8_t>() + i * 3072, px.data(), 3072);
    d.labels.data<int64_t>()[i] = i;
  }
  d.num_classes = n;
  d.source = "tiny";
  return d;
}

std::vector<Batch> epoch_batches(Loader& l, int64_t epoch, int64_t skip = 0) {
  l.start_epoch(epoch);
  if (skip) l.skip(skip);
  std::vector<Batch> out;
  Batch b;
  while (l.next(b)) out.push_back(b);
  return out;
}

bool same_batch(const Batch& a, const Batch& b) {
  return a.index == b.index && a.x.shape() == b.x.shape() &&
         std::memcmp(a.x.raw(), b.x.raw(), a.x.nbytes()) == 0 &&
         a.y.to_vector<int64_t>() == b.y.to_vector<int64_t>();
}

}  // namespace

TEST_CASE("loader: same seed and epoch give identical batches; epochs differ; skip is the tail") {
  Dataset d = tiny_set(50);
  LoaderOptions o;
  o.batch = 8;
  Loader l1(d, o), l2(d, o);
  CHECK(l1.num_batches() == 7);
  auto a = epoch_batches(l1, 3), b = epoch_batches(l2, 3), a2 = epoch_batches(l1, 3);
  REQUIRE(a.size() == 7);
  REQUIRE(b.size() == 7);
  std::set<int64_t> seen;
  for (size_t k = 0; k < a.size(); ++k) {
    CHECK(same_batch(a[k], b[k]));
    CHECK(same_batch(a[k], a2[k]));
    CHECK(a[k].index == (int64_t)k);
    for (int64_t y : a[k].y.to_vector<int64_t>()) seen.insert(y);
  }
  CHECK(seen.size() == 50);  // a permutation
  CHECK(a.back().x.shape() == Shape{2, 3, 32, 32});
  auto c = epoch_batches(l1, 4);
  CHECK(c[0].y.to_vector<int64_t>() != a[0].y.to_vector<int64_t>());
  o.seed = 9;
  Loader l3(d, o);
  CHECK(epoch_batches(l3, 3)[0].y.to_vector<int64_t>() != a[0].y.to_vector<int64_t>());

  auto tail = epoch_batches(l2, 3, 4);
  REQUIRE(tail.size() == 3);
  for (size_t k = 0; k < 3; ++k) CHECK(same_batch(tail[k], a[k + 4]));
  // skip mid-epoch counts from the current position.
  l2.start_epoch(3);
  Batch x;
  REQUIRE(l2.next(x));
  l2.skip(2);
  REQUIRE(l2.next(x));
  CHECK(same_batch(x, a[3]));
  l2.skip(100);
  CHECK_FALSE(l2.next(x));
}

TEST_CASE("loader: every augmented sample is a shifted, zero-padded, maybe flipped copy") {
  Dataset d = tiny_set(6);
  LoaderOptions o;
  o.batch = 4;  // mean 0, std 1: outputs are v / 255
  Loader l(d, o);
  std::set<std::pair<int, int>> offsets;
  std::set<bool> flips;
  int unmatched = 0;
  for (int64_t epoch = 0; epoch < 8; ++epoch)
    for (const Batch& b : epoch_batches(l, epoch)) {
      const float* x = b.x.data<float>();
      for (int64_t i = 0; i < b.y.numel(); ++i) {
        const int id = (int)b.y.data<int64_t>()[i];
        const float* s = x + i * 3072;
        int matches = 0;
        for (int dy = -4; dy <= 4; ++dy)
          for (int dx = -4; dx <= 4; ++dx)
            for (int f = 0; f < 2; ++f) {
              bool ok = true;
              for (int y = 0; y < 32 && ok; ++y)
                for (int xx = 0; xx < 32 && ok; ++xx) {
                  int sx = (f ? 31 - xx : xx) + dx, sy = y + dy;
                  for (int c = 0; c < 3 && ok; ++c) {
                    int v = (sx >= 0 && sx < 32 && sy >= 0 && sy < 32) ? ipix(id, sy, sx, c) : 0;
                    ok = s[c * 1024 + y * 32 + xx] == (float)v / 255.0f;
                  }
                }
              if (ok) {
                ++matches;
                offsets.insert({dx, dy});
                flips.insert(f != 0);
              }
            }
        unmatched += matches != 1;
      }
    }
  CHECK(unmatched == 0);
  CHECK(flips.size() == 2);
  CHECK(offsets.size() > 10);  // 48 draws over 81 offsets

  // augment off, shuffle off: the images themselves, in order.
  o.augment = o.shuffle = false;
  Loader plain(d, o);
  auto bs = epoch_batches(plain, 5);
  REQUIRE(bs.size() == 2);
  CHECK(bs[1].y.to_vector<int64_t>() == std::vector<int64_t>{4, 5});
  int bad = 0;
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p)
        bad += bs[1].x.data<float>()[i * 3072 + c * 1024 + p] != (float)ipix(4 + i, p / 32, p % 32, c) / 255.0f;
  CHECK(bad == 0);
}

TEST_CASE("loader: normalisation values, drop_last and batch counts") {
  Dataset d = tiny_set(10);
  LoaderOptions o;
  o.batch = 4;
  o.augment = o.shuffle = false;
  o.norm = {{0.5f, 0.25f, 0.1f}, {0.2f, 0.5f, 0.3f}};
  Loader l(d, o);
  CHECK(l.num_batches() == 3);
  auto bs = epoch_batches(l, 0);
  REQUIRE(bs.size() == 3);
  CHECK(bs[2].x.shape() == Shape{2, 3, 32, 32});
  const float* x = bs[0].x.data<float>();
  double worst = 0;
  for (int c = 0; c < 3; ++c)
    for (int p = 0; p < 1024; ++p) {
      double want = ((double)ipix(0, p / 32, p % 32, c) / 255.0 - o.norm.mean[c]) / o.norm.std[c];
      worst = std::max(worst, std::abs(x[c * 1024 + p] - want));
    }
  CHECK(worst < 1e-5);
  o.drop_last = true;
  Loader ld(d, o);
  CHECK(ld.num_batches() == 2);
  auto bd = epoch_batches(ld, 0);
  REQUIRE(bd.size() == 2);
  CHECK(bd[1].x.shape() == Shape{4, 3, 32, 32});
  Dataset e = tiny_set(8);
  Loader le(e, o);
  CHECK(le.num_batches() == 2);
  o.drop_last = false;
  Loader le2(e, o);
  CHECK(le2.num_batches() == 2);
  o.norm.std[1] = 0;
  CHECK_THROWS_WITH_AS(Loader(d, o), doctest::Contains("std of channel 1"), Error);
}

TEST_CASE("loader: producer errors reach next(); destruction mid-epoch is clean") {
  Dataset d = tiny_set(20);
  LoaderOptions o;
  o.batch = 4;
  o.on_batch = [](Batch& b) {
    if (b.index == 2) throw Error("hook failed on batch 2");
  };
  {
    Loader l(d, o);
    l.start_epoch(0);
    Batch b;
    REQUIRE(l.next(b));
    REQUIRE(l.next(b));
    CHECK(b.index == 1);
    CHECK_THROWS_WITH_AS(l.next(b), doctest::Contains("hook failed on batch 2"), Error);
    CHECK_THROWS_AS(l.next(b), Error);  // retried, fails again
    l.skip(1);
    REQUIRE(l.next(b));
    CHECK(b.index == 3);
  }  // destroyed with batch 4 in flight
  o.on_batch = nullptr;
  for (int i = 0; i < 20; ++i) {
    Loader l(d, o);
    l.start_epoch(i);
    Batch b;
    if (i % 2) l.next(b);
  }
  Loader l(d, o);
  Batch b;
  CHECK_THROWS_WITH_AS(l.next(b), doctest::Contains("start_epoch"), Error);
}

// Skipped (and counted as skipped, not passed) unless LOWBIT_DATA names a data set directory.
TEST_CASE("real data from $LOWBIT_DATA" * doctest::skip(std::getenv("LOWBIT_DATA") == nullptr)) {
  const char* dir = std::getenv("LOWBIT_DATA");
  if (!dir) {
    MESSAGE("LOWBIT_DATA is not set: the real-data test checks nothing");
    return;
  }
  DataOptions o;
  o.limit_train = 500;
  o.limit_test = 100;
  DataSplit s = load_data(dir, o);
  CHECK(s.train.size() == 500);
  CHECK(s.test.size() == 100);
  CHECK(s.train.num_classes >= 2);
  std::set<int64_t> classes;
  for (int64_t l : s.train.labels.to_vector<int64_t>()) classes.insert(l);
  CHECK((int64_t)classes.size() == s.train.num_classes);  // evenly spaced keeps every class
  LoaderOptions lo;
  lo.norm = cifar_normalization(s);
  Loader l(s.train, lo);
  auto bs = epoch_batches(l, 0);
  CHECK(bs.size() == 4);
}
