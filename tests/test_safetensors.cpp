// safetensors I/O: round trips of every dtype, the exact byte layout, hand-built corrupt files
// (each must throw an Error naming the file and the reason), and the atomic write under failure:
// an exception mid-write, a write that hits RLIMIT_FSIZE, and a writer killed with SIGKILL.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <thread>

#include "core/safetensors.h"

using namespace lowbit;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test, removed afterwards (mkdtemp: no clash with parallel runs).
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "lowbit_st_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), (std::streamsize)bytes.size());
  REQUIRE(out.good());
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string u64_le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = (char)(unsigned char)(n >> (8 * i));
  return s;
}

// A file exactly as given: length field, header text, data bytes.
std::string raw_file(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error thrown)";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

bool same_tensor(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;  // bitwise: NaN and -0.0 included
}

}  // namespace

TEST_CASE("safetensors: round trip of every dtype, 0-d and empty tensors, in the saved order") {
  TempDir dir;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  Tensor base = Tensor::from_vector<float>({5}, {10, 11, 12, 13, 14});
  Tensor offset_view = base.view({5});  // a view starting at element 2: saving must honour offset
  offset_view.impl().offset = 2;
  offset_view.impl().shape = {3};
  NamedTensors in = {
      {"z.weight", Tensor::from_vector<float>({2, 3}, {1.5f, -2, 0, -0.0f, nan, -inf})},
      {"a.f64", Tensor::from_vector<double>({4}, {1e-300, -1e300, 3.141592653589793, 0.1})},
      {"m.i64", Tensor::from_vector<int64_t>({2, 2}, {std::numeric_limits<int64_t>::min(),
                                                      std::numeric_limits<int64_t>::max(), 0, -1})},
      {"i32", Tensor::from_vector<int32_t>({3}, {-2147483647 - 1, 2147483647, 42})},
      {"i8", Tensor::from_vector<int8_t>({1, 1, 3}, {-128, 127, 0})},
      {"u8", Tensor::from_vector<uint8_t>({2}, {255, 0})},
      {"scalar", Tensor::scalar(7.25, DType::f64)},
      {"empty", Tensor::empty({0}, DType::f32)},
      {"empty3", Tensor::empty({3, 0, 2}, DType::i64)},
      {"view", offset_view},
      {"", Tensor::scalar(1, DType::u8)},  // the empty string is a legal name
  };
  const std::string path = dir.file("all.safetensors");
  save_safetensors(path, in);
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata.empty());
  REQUIRE(f.tensors.size() == in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    CAPTURE(in[i].first);
    CHECK(f.tensors[i].first == in[i].first);
    CHECK(f.tensors[i].second.name() == in[i].first);
    CHECK(same_tensor(f.tensors[i].second, in[i].second));
  }
  CHECK(f.tensors[0].second.dim() == 2);
  CHECK(f.tensors[6].second.dim() == 0);
  CHECK(f.tensors[9].second.to_vector<float>() == std::vector<float>{12, 13, 14});
  CHECK(dir.listing() == std::vector<std::string>{"all.safetensors"});
}

TEST_CASE("safetensors: metadata round trip, and a file with no tensors") {
  TempDir dir;
  std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"empty", ""}, {"quote\"and\\slash", "line\nbreak\ttab"},
      {"unicode", "\xce\xbb=0.5 \xe2\x9c\x93"}, {"config", R"({"lr": 0.1, "bits": [2, 4]})"}};
  const std::string path = dir.file("meta.safetensors");
  save_safetensors(path, {{"w", Tensor::ones({2})}}, meta);
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata == meta);
  REQUIRE(f.tensors.size() == 1);

  save_safetensors(path, {}, {{"only", "metadata"}});
  f = load_safetensors(path);
  CHECK(f.tensors.empty());
  CHECK(f.metadata == std::map<std::string, std::string>{{"only", "metadata"}});
}

TEST_CASE("safetensors: exact byte layout of a tiny file") {
  TempDir dir;
  const std::string path = dir.file("tiny.safetensors");
  save_safetensors(path,
                   {{"b", Tensor::from_vector<uint8_t>({3}, {1, 2, 3})},
                    {"a", Tensor::from_vector<int32_t>({}, {0x01020304})}},
                   {{"k", "v"}});
  const std::string json =
      R"({"__metadata__":{"k":"v"},)"
      R"("b":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
      R"("a":{"dtype":"I32","shape":[],"data_offsets":[3,7]}})";
  std::string header = json + std::string((8 - json.size() % 8) % 8, ' ');
  REQUIRE(header.size() % 8 == 0);
  CHECK(header.size() > json.size());  // this header does need padding (115 bytes of JSON)
  const std::string expected = u64_le(header.size()) + header + std::string("\x01\x02\x03", 3) +
                               std::string("\x04\x03\x02\x01", 4);  // little-endian int32
  const std::string got = read_bytes(path);
  CHECK(got.size() == expected.size());
  CHECK(got == expected);
  // The length field alone, read as the format says.
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= (uint64_t)(unsigned char)got[i] << (8 * i);
  CHECK(n == header.size());
  CHECK((8 + n) % 8 == 0);

  // No metadata: no "__metadata__" key at all, as the reference writer does.
  save_safetensors(path, {{"x", Tensor::from_vector<int8_t>({1}, {-1})}});
  const std::string got2 = read_bytes(path);
  CHECK(got2.substr(8, 2) == "{\"");
  CHECK(!contains(got2, "__metadata__"));
  CHECK(got2.back() == '\xff');
}

TEST_CASE("safetensors: reads the file PyTorch wrote (bench/torch_interop.py --roundtrip)") {
  // Relative to this source file, as the tests are built and run from the repository root.
  const std::string src = __FILE__;
  const std::string path = src.substr(0, src.rfind('/') + 1) + "fixtures/torch_roundtrip.safetensors";
  REQUIRE_MESSAGE(fs::exists(path), "fixture missing (run the tests from the repository root): ", path);
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata == std::map<std::string, std::string>{{"format", "pt"},
                                                         {"producer", "bench/torch_interop.py"}});
  std::vector<std::string> names;
  for (const auto& nt : f.tensors) names.push_back(nt.first);
  REQUIRE(names == std::vector<std::string>{"conv.weight", "bn.running_var", "bn.num_batches_tracked",
                                            "labels", "codes", "pixels", "empty"});
  std::vector<float> conv(24);
  for (int i = 0; i < 24; ++i) conv[i] = i / 4.0f - 3;  // torch.arange(24) / 4 - 3
  CHECK(same_tensor(f.tensors[0].second, Tensor::from_vector<float>({2, 3, 2, 2}, conv)));
  CHECK(same_tensor(f.tensors[1].second, Tensor::from_vector<double>({3}, {0.5, 1.5, 2.5})));
  CHECK(same_tensor(f.tensors[2].second, Tensor::from_vector<int64_t>({}, {12345678901})));
  CHECK(same_tensor(f.tensors[3].second, Tensor::from_vector<int32_t>({3}, {-5, 0, 7})));
  CHECK(same_tensor(f.tensors[4].second, Tensor::from_vector<int8_t>({4}, {-128, -1, 0, 127})));
  CHECK(same_tensor(f.tensors[5].second, Tensor::from_vector<uint8_t>({2, 2}, {0, 255, 16, 32})));
  CHECK(same_tensor(f.tensors[6].second, Tensor::empty({0, 4}, DType::f32)));
  // Written back by lowbit, the file is byte for byte what PyTorch wrote: same JSON, padding, data.
  TempDir dir;
  save_safetensors(dir.file("again.safetensors"), f.tensors, f.metadata);
  CHECK(read_bytes(dir.file("again.safetensors")) == read_bytes(path));
}

TEST_CASE("safetensors: every corruption is refused with the file name and the reason") {
  TempDir dir;
  const std::string f4(4, '\0');  // one float32's worth of data
  struct Case {
    std::string file;
    std::string bytes;
    std::vector<std::string> reasons;
  };
  const std::string ok_entry = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  std::vector<Case> cases = {
      {"short", std::string("\x01\x02\x03", 3), {"too short"}},
      {"empty_file", "", {"too short"}},
      {"header_past_eof", u64_le(1000) + "{}", {"header length 1000", "truncated"}},
      {"header_len_huge", u64_le(~0ull) + "{}", {"header length 18446744073709551615"}},
      {"empty_header", raw_file("", ""), {"invalid JSON", "parse error"}},
      {"bad_json", raw_file(R"({"a": )", ""), {"invalid JSON", "parse error"}},
      {"json_trailing_garbage", raw_file("{} x", ""), {"invalid JSON"}},
      {"top_array", raw_file("[1, 2]", ""), {"not a JSON object", "array"}},
      {"top_string", raw_file(R"("hi")", ""), {"not a JSON object"}},
      {"entry_number", raw_file(R"({"a": 5})", ""), {"tensor 'a'", "not a JSON object"}},
      {"no_dtype", raw_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", f4),
       {"tensor 'a'", "missing field \"dtype\""}},
      {"no_shape", raw_file(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", f4),
       {"tensor 'a'", "missing field \"shape\""}},
      {"no_offsets", raw_file(R"({"a":{"dtype":"F32","shape":[1]}})", f4),
       {"tensor 'a'", "missing field \"data_offsets\""}},
      {"extra_field", raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", f4),
       {"tensor 'a'", "unexpected field \"x\""}},
      {"unknown_dtype", raw_file(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", f4),
       {"tensor 'w'", "unsupported dtype \"F16\""}},
      {"dtype_not_string", raw_file(R"({"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", f4),
       {"tensor 'w'", "dtype is not a string"}},
      {"shape_not_list", raw_file(R"({"w":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})", f4),
       {"tensor 'w'", "shape is not a list"}},
      {"negative_dim", raw_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", f4),
       {"tensor 'w'", "negative dimension"}},
      {"float_dim", raw_file(R"({"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", f4),
       {"tensor 'w'", "not an integer"}},
      {"dim_too_big",
       raw_file(R"({"w":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,4]}})", f4),
       {"tensor 'w'", "too large for int64"}},
      {"numel_overflow",
       raw_file(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", ""),
       {"tensor 'w'", "overflows"}},
      {"bytes_overflow",
       raw_file(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}})", ""),
       {"tensor 'w'", "overflows"}},
      {"offsets_one", raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", f4),
       {"tensor 'w'", "two non-negative integers"}},
      {"offsets_negative", raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", f4),
       {"tensor 'w'", "negative offset"}},
      {"offsets_float", raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}})", f4),
       {"tensor 'w'", "two non-negative integers"}},
      {"offsets_string", raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":"0:4"}})", f4),
       {"tensor 'w'", "two non-negative integers"}},
      {"begin_after_end", raw_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", f4),
       {"tensor 'w'", "begin > end"}},
      {"size_mismatch", raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", f4),
       {"tensor 'w'", "span 4 bytes", "needs 8 bytes"}},
      {"beyond_data", raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f4),
       {"tensor 'w'", "beyond the data section of 4 bytes"}},
      {"overlap",
       raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f4 + f4),
       {"tensor 'b'", "overlaps tensor 'a'"}},
      {"same_bytes_twice",
       raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})", f4),
       {"overlaps tensor"}},
      {"gap",
       raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", f4 + f4 + f4),
       {"tensor 'b'", "gap of 4 unused bytes"}},
      {"gap_at_start", raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f4 + f4),
       {"tensor 'a'", "gap of 4"}},
      {"trailing_bytes", raw_file(R"({"a":)" + ok_entry + "}", f4 + "xy"),
       {"2 unused bytes at the end"}},
      {"meta_not_object", raw_file(R"({"__metadata__":["a"]})", ""), {"__metadata__ is not an object"}},
      {"meta_not_string", raw_file(R"({"__metadata__":{"epoch":3}})", ""),
       {"__metadata__ value for key 'epoch' is not a string"}},
      {"duplicate_tensor", raw_file(R"({"a":)" + ok_entry + R"(,"a":)" + ok_entry + "}", f4),
       {"tensor 'a'", "duplicate name"}},
      {"duplicate_field",
       raw_file(R"({"a":{"dtype":"F32","dtype":"F64","shape":[1],"data_offsets":[0,4]}})", f4),
       {"duplicate key \"dtype\""}},
      {"nested_shape", raw_file(R"({"a":{"dtype":"F32","shape":[[1]],"data_offsets":[0,4]}})", f4),
       {"nested deeper"}},
      {"nesting_bomb", raw_file(std::string(100000, '[') + std::string(100000, ']'), ""),
       {"nested deeper"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.file);
    const std::string path = dir.file(c.file + ".safetensors");
    write_bytes(path, c.bytes);
    const std::string msg = error_of([&] { load_safetensors(path); });
    CAPTURE(msg);
    CHECK(contains(msg, path));
    for (const std::string& r : c.reasons) CHECK(contains(msg, r));
  }

  // The files differ from a valid one only by the doctored part: the valid one loads.
  const std::string good = dir.file("good.safetensors");
  write_bytes(good, raw_file(R"({"a":)" + ok_entry + "}", f4));
  CHECK(load_safetensors(good).tensors.size() == 1);

  // Not a file at all.
  CHECK(contains(error_of([&] { load_safetensors(dir.file("missing")); }), "cannot open"));
  CHECK(contains(error_of([&] { load_safetensors(dir.path); }), "not a regular file"));
}

TEST_CASE("safetensors: a header length over 100 MB is refused without reading it") {
  // A sparse file: the length field claims 100 MB + 1 and the file really is that long, so only
  // the size limit can refuse it (and the test writes no real data).
  TempDir dir;
  const std::string path = dir.file("huge_header.safetensors");
  const uint64_t n = 100u * 1000 * 1000 + 1;
  write_bytes(path, u64_le(n) + "{");
  fs::resize_file(path, 8 + n);
  const std::string msg = error_of([&] { load_safetensors(path); });
  CHECK(contains(msg, path));
  CHECK(contains(msg, "exceeds the limit of 100000000 bytes"));
}

TEST_CASE("safetensors: the writer refuses bad input and leaves the old file untouched") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"w", Tensor::ones({3})}});
  const std::string before = read_bytes(path);

  Tensor on_gpu = Tensor::zeros({2});
  on_gpu.impl().storage->device = Device::cuda;  // a tag only: the writer must refuse before reading
  std::string gpu_msg = error_of([&] { save_safetensors(path, {{"a", Tensor::ones({1})}, {"dev.w", on_gpu}}); });
  on_gpu.impl().storage->device = Device::cpu;  // so the storage is freed as host memory
  CHECK(contains(gpu_msg, path));
  CHECK(contains(gpu_msg, "tensor 'dev.w' is on cuda"));

  std::string dup = error_of([&] { save_safetensors(path, {{"w", Tensor::ones({1})}, {"w", Tensor::ones({1})}}); });
  CHECK(contains(dup, path));
  CHECK(contains(dup, "duplicate tensor name 'w'"));
  CHECK(contains(error_of([&] { save_safetensors(path, {{"u", Tensor()}}); }), "tensor 'u' is undefined"));
  CHECK(contains(error_of([&] { save_safetensors(path, {{"__metadata__", Tensor::ones({1})}}); }),
                 "reserved"));
  CHECK(contains(error_of([&] { save_safetensors(path, {{"bad\xff", Tensor::ones({1})}}); }),
                 "cannot encode the header"));

  CHECK(read_bytes(path) == before);
  CHECK(dir.listing() == std::vector<std::string>{"ckpt.safetensors"});
}

TEST_CASE("write_file_atomic: replaces the file, leaves no temp files, fails cleanly") {
  TempDir dir;
  const std::string path = dir.file("run.json");
  write_file_atomic(path, "{\"epoch\": 1}");
  write_file_atomic(path, "{\"epoch\": 2}\n");
  CHECK(read_bytes(path) == "{\"epoch\": 2}\n");
  write_file_atomic(path, "");
  CHECK(read_bytes(path).empty());
  CHECK(dir.listing() == std::vector<std::string>{"run.json"});

  // A checkpoint overwritten by a new version: the new one loads, nothing else is left.
  const std::string ckpt = dir.file("model.safetensors");
  save_safetensors(ckpt, {{"w", Tensor::full({4}, 1)}}, {{"v", "1"}});
  save_safetensors(ckpt, {{"w", Tensor::full({4}, 2)}, {"b", Tensor::zeros({1})}}, {{"v", "2"}});
  SafetensorsFile f = load_safetensors(ckpt);
  CHECK(f.metadata.at("v") == "2");
  CHECK(f.tensors.size() == 2);
  CHECK(f.tensors[0].second.to_vector<float>() == std::vector<float>{2, 2, 2, 2});
  CHECK(dir.listing() == std::vector<std::string>{"model.safetensors", "run.json"});

  // The write fails (no such directory): an error naming the path, the existing file untouched.
  const std::string bad = dir.file("no/such/dir/model.safetensors");
  std::string msg = error_of([&] { write_file_atomic(bad, "x"); });
  CHECK(contains(msg, bad));
  CHECK(contains(msg, "cannot create a temp file"));
  msg = error_of([&] { save_safetensors(bad, {{"w", Tensor::ones({1})}}); });
  CHECK(contains(msg, "No such file or directory"));
  CHECK(load_safetensors(ckpt).metadata.at("v") == "2");
  CHECK(contains(error_of([&] { write_file_atomic(dir.path + "/", "x"); }), "names a directory"));
  CHECK(dir.listing() == std::vector<std::string>{"model.safetensors", "run.json"});
}

namespace {

// Version v of a "large" checkpoint (4 MB): a pattern that depends on v / 1000 (slow to build, so
// built once per writer), stamped with v at both ends of `w` and in `step`, so that a torn file or
// one mixing two versions cannot pass for a complete version.
void stamp_version(NamedTensors& ts, int v) {
  float* p = ts[0].second.data<float>();
  const int64_t n = ts[0].second.numel();
  for (int64_t i = 0; i < 1024; ++i) p[i] = p[n - 1 - i] = (float)v;
  ts[1].second.fill(v);
}

NamedTensors version_tensors(int v) {
  Tensor w = Tensor::empty({1024, 1024});
  float* p = w.data<float>();
  for (int64_t i = 0; i < w.numel(); ++i) p[i] = (float)((i * 31 + v / 1000) & 0xffff);
  NamedTensors ts = {{"w", w}, {"step", Tensor::scalar(0, DType::i64)}};
  stamp_version(ts, v);
  return ts;
}

bool is_complete_version(const SafetensorsFile& f, int v) {
  NamedTensors want = version_tensors(v);
  if (f.tensors.size() != want.size() || f.metadata.at("version") != std::to_string(v)) return false;
  for (size_t i = 0; i < want.size(); ++i)
    if (f.tensors[i].first != want[i].first || !same_tensor(f.tensors[i].second, want[i].second))
      return false;
  return true;
}

}  // namespace

TEST_CASE("write_file_atomic: a write that fails midway (file size limit) keeps the old file") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, version_tensors(1), {{"version", "1"}});
  const std::string before = read_bytes(path);
  // In a child, so the limit does not outlive the test: writes past 1 MB fail with EFBIG after
  // the temp file already holds 1 MB of the new version.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    struct rlimit lim = {1 << 20, 1 << 20};
    ::signal(SIGXFSZ, SIG_IGN);
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(4);
    std::string msg = error_of([&] { save_safetensors(path, version_tensors(2), {{"version", "2"}}); });
    ::_exit(contains(msg, "File too large") && contains(msg, path) ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);  // the child saw the EFBIG error, reported with the path
  CHECK(read_bytes(path) == before);
  CHECK(is_complete_version(load_safetensors(path), 1));
  CHECK(dir.listing() == std::vector<std::string>{"ckpt.safetensors"});  // temp file removed
}

TEST_CASE("save_safetensors: a writer killed with SIGKILL at a random moment never tears the file") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, version_tensors(0), {{"version", "0"}});
  std::random_device rd;
  const unsigned seed = rd();
  CAPTURE(seed);
  std::mt19937 rng(seed);
  const auto t0 = std::chrono::steady_clock::now();
  size_t files_before = 1;
  int killed_in_save = 0;
  for (int round = 1; round <= 5; ++round) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {  // the writer: new versions back to back, reporting each completed one
      ::close(fds[0]);
      NamedTensors ts = version_tensors(round * 1000);
      for (int v = round * 1000;; ++v) {
        try {
          stamp_version(ts, v);
          save_safetensors(path, ts, {{"version", std::to_string(v)}});
        } catch (...) {
          ::_exit(3);
        }
        if (::write(fds[1], &v, sizeof v) != (ssize_t)sizeof v) ::_exit(5);
      }
    }
    ::close(fds[1]);
    // Wait for one completed save, so the file has been replaced during this round, then kill
    // the writer somewhere inside a later save (or between two).
    struct pollfd pfd = {fds[0], POLLIN, 0};
    const int ready = ::poll(&pfd, 1, 3000);
    if (ready == 1) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 60000));
    ::kill(pid, SIGKILL);  // before any REQUIRE, so a failing test never leaves the writer running
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(ready == 1);
    CHECK(WIFSIGNALED(status));  // it was still writing, not dead of an error
    int last = -1, v = 0;
    while (::read(fds[0], &v, sizeof v) == (ssize_t)sizeof v) last = v;
    ::close(fds[0]);
    REQUIRE(last >= round * 1000);

    SafetensorsFile f = load_safetensors(path);
    const int got = std::stoi(f.metadata.at("version"));
    CAPTURE(round);
    CAPTURE(last);
    CAPTURE(got);
    // The last reported version, or the next one if the kill fell between rename and report.
    CHECK((got == last || got == last + 1));
    CHECK(is_complete_version(f, got));
    // A killed writer can leave its temp file behind (nothing runs after SIGKILL), never any
    // other file; the target itself is never a temp.
    const std::vector<std::string> names = dir.listing();
    for (const std::string& name : names)
      CHECK((name == "ckpt.safetensors" || name.rfind(".ckpt.safetensors.tmp.", 0) == 0));
    // Killed inside a save: while writing (its temp file is left) or after the rename (the file
    // already holds the version it had not reported yet).
    if (names.size() > files_before || got == last + 1) ++killed_in_save;
    files_before = names.size();
  }
  // The writer spends nearly all its time inside save_safetensors, so some kill must land there:
  // otherwise this test did not exercise an interrupted save at all.
  CHECK(killed_in_save >= 1);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
}
