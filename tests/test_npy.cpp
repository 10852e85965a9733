// .npy I/O: round trips of every dtype and rank, the exact bytes written, and hand-built
// malformed files, each of which must be an Error naming the file and what is wrong.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>

#include "core/npy.h"
#include "tests/temp_dir.h"

using namespace lowbit;
using namespace lowbit::test;

namespace {

// A .npy file from a header dict and data bytes; header length and padding computed as NumPy does.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  const size_t len_bytes = major == 1 ? 2 : 4;
  std::string h = dict;
  const size_t total = 8 + len_bytes + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h += '\n';
  std::string r("\x93NUMPY", 6);
  r += (char)major;
  r += '\0';
  for (size_t i = 0; i < len_bytes; ++i) r += (char)((h.size() >> (8 * i)) & 0xff);
  return r + h + data;
}

std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// Writes `bytes` as NAME in dir, reads it back and returns the error message ("" if none).
std::string read_error(const TempDir& dir, const std::string& name, const std::string& bytes) {
  write_bytes(dir.file(name), bytes);
  try {
    read_npy(dir.file(name));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

template <class T>
void check_round_trip(const TempDir& dir, const Shape& shape, const std::vector<T>& values) {
  Tensor t = Tensor::from_vector<T>(shape, values);
  const std::string path = dir.file("rt.npy");
  write_npy(path, t);
  Tensor r = read_npy(path);
  CHECK(r.shape() == shape);
  CHECK(r.dtype() == t.dtype());
  CHECK(r.to_vector<T>() == values);
}

}  // namespace

TEST_CASE("npy: round trip of every dtype and of 0-d, 1-d, 4-d and empty shapes") {
  TempDir dir;
  check_round_trip<float>(dir, {2, 3}, {1.5f, -2, 3e-8f, 4e30f, 0, -0.25f});
  check_round_trip<double>(dir, {3}, {1e-300, -2.5, 3.141592653589793});
  check_round_trip<int32_t>(dir, {2, 2}, {INT32_MIN, -1, 0, INT32_MAX});
  check_round_trip<int64_t>(dir, {2}, {INT64_MIN, INT64_MAX});
  check_round_trip<int8_t>(dir, {3}, {-128, 0, 127});
  check_round_trip<uint8_t>(dir, {1, 3}, {0, 128, 255});
  check_round_trip<double>(dir, {}, {42.5});  // 0-d
  std::vector<float> v(2 * 3 * 4 * 5);
  for (size_t i = 0; i < v.size(); ++i) v[i] = (float)i * 0.5f - 7;
  check_round_trip<float>(dir, {2, 3, 4, 5}, v);
  check_round_trip<float>(dir, {0, 3}, {});
}

TEST_CASE("npy: written bytes are format 1.0 with a 64-byte aligned, NumPy-style header") {
  TempDir dir;
  write_npy(dir.file("a.npy"), Tensor::from_vector<float>({2, 3}, {1, 2, 3, 4, 5, 6}));
  std::ifstream f(dir.file("a.npy"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() > 10);
  CHECK(bytes.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  const size_t hl = (unsigned char)bytes[8] | (size_t)(unsigned char)bytes[9] << 8;
  CHECK((10 + hl) % 64 == 0);
  CHECK(bytes.size() == 10 + hl + 24);
  const std::string header = bytes.substr(10, hl);
  CHECK(header.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0) == 0);
  CHECK(header.back() == '\n');
  CHECK(bytes.substr(10 + hl) == f32_bytes({1, 2, 3, 4, 5, 6}));
  // Scalars and 1-d shapes use Python's tuple spelling.
  write_npy(dir.file("s.npy"), Tensor::scalar(1.0, DType::u8));
  write_npy(dir.file("v.npy"), Tensor::zeros({7}, DType::i64));
  std::ifstream fs(dir.file("s.npy"), std::ios::binary), fv(dir.file("v.npy"), std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(fs)), {}),
      vv((std::istreambuf_iterator<char>(fv)), {});
  CHECK(s.find("'descr': '|u1'") != std::string::npos);
  CHECK(s.find("'shape': ()") != std::string::npos);
  CHECK(vv.find("'descr': '<i8'") != std::string::npos);
  CHECK(vv.find("'shape': (7,)") != std::string::npos);
}

TEST_CASE("npy: reads format 2.0 and hand-written headers with odd spacing") {
  TempDir dir;
  write_bytes(dir.file("v2.npy"),
              npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
                        f32_bytes({1, -1}), 2));
  Tensor t = read_npy(dir.file("v2.npy"));
  CHECK(t.shape() == Shape{2});
  CHECK(t.to_vector<float>() == std::vector<float>{1, -1});
  write_bytes(
      dir.file("sp.npy"),
      npy_bytes("{ \"shape\":(1 ,2) ,'fortran_order':False,'descr':'<f4'}", f32_bytes({3, 4})));
  t = read_npy(dir.file("sp.npy"));
  CHECK(t.shape() == Shape{1, 2});
  CHECK(t.to_vector<float>() == std::vector<float>{3, 4});
}

TEST_CASE("npy: writes are atomic and replace an existing file; errors name the file") {
  TempDir dir;
  write_npy(dir.file("a.npy"), Tensor::zeros({100}, DType::f64));
  write_npy(dir.file("a.npy"), Tensor::ones({2}, DType::f32));
  CHECK(read_npy(dir.file("a.npy")).to_vector<float>() == std::vector<float>{1, 1});
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path()))
    files += (bool)e.is_regular_file();
  CHECK(files == 1);  // no temporary left behind
  const std::string bad = dir.file("no/such/dir/a.npy");
  CHECK_THROWS_WITH_AS(write_npy(bad, Tensor::ones({2})), doctest::Contains(bad.c_str()), Error);
}

TEST_CASE("npy: malformed and hostile files are errors naming the file and the reason") {
  TempDir dir;
  const std::string ok_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string two = f32_bytes({1, 2});
  struct Case {
    const char* name;
    std::string bytes;
    const char* reason;
  };
  std::string long_len = npy_bytes(ok_dict, two);
  long_len[8] = '\xff';  // header length 0x??ff: past the end of the file
  long_len[9] = '\x7f';
  const std::vector<Case> cases = {
      {"magic.npy", "PK\x03\x04 this is a zip file, not an array", "bad magic"},
      {"tiny.npy", "\x93NUM", "bad magic"},
      {"version.npy",
       [&] {
         auto b = npy_bytes(ok_dict, two);
         b[6] = 4;
         return b;
       }(),
       "unsupported .npy format version 4.0"},
      {"hdrlen.npy", long_len, "truncated header"},
      {"notdict.npy", npy_bytes("hello world", two), "header is not a valid dict"},
      {"unterminated.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,", two),
       "header is not a valid dict"},
      {"missingkey.npy", npy_bytes("{'descr': '<f4', 'shape': (2,), }", two),
       "missing key 'fortran_order'"},
      {"extrakey.npy",
       npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", two),
       "header is not a valid dict"},
      {"fortran.npy", npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", two),
       "fortran_order: True is not supported"},
      {"object.npy", npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", two),
       "object arrays"},
      {"struct.npy",
       npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", two),
       "unsupported dtype"},
      {"half.npy", npy_bytes("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", two),
       "unsupported dtype '<f2'"},
      {"bigendian.npy", npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", two),
       "big-endian"},
      {"negative.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", two),
       "negative dimension"},
      {"overflow.npy",
       npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
                 two),
       "overflows"},
      {"bignum.npy",
       npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }",
                 two),
       "overflows int64"},
      {"huge.npy",
       npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }", two),
       "truncated data"},
      {"truncated.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", two),
       "truncated data: the header promises 12 bytes"},
      {"trailing.npy", npy_bytes(ok_dict, two + "xyz"), "3 trailing bytes"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string msg = read_error(dir, c.name, c.bytes);
    CHECK(msg.find(dir.file(c.name)) != std::string::npos);
    CHECK_MESSAGE(msg.find(c.reason) != std::string::npos, msg);
  }
  const std::string missing = dir.file("missing.npy");
  CHECK_THROWS_WITH_AS(read_npy(missing), doctest::Contains((missing + "': No such file").c_str()),
                       Error);
  CHECK_THROWS_WITH_AS(read_npy(dir.path()), doctest::Contains("not a regular file"), Error);
  // The same file without defects reads fine, so the cases above fail for their stated reason.
  write_bytes(dir.file("good.npy"), npy_bytes(ok_dict, two));
  CHECK(read_npy(dir.file("good.npy")).to_vector<float>() == std::vector<float>{1, 2});
}
