// .npy reader and writer. The format (numpy/lib/format.py, NEP 1): the magic "\x93NUMPY", a major
// and minor version byte, a little-endian header length (2 bytes in 1.0, 4 in 2.0/3.0), then a
// Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
// spaces to a multiple of 64 bytes and ended by '\n', then the raw elements.
#include "core/npy.h"

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lowbit {

// Elements are copied byte for byte between the file and memory, which is only right when the
// host is little-endian like the files we accept and write.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy I/O assumes a little-endian host");

namespace {

constexpr char kMagic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};
// NumPy itself refuses headers over 10000 bytes by default; a real header is under 200 bytes, so
// a larger one is a hostile or corrupt file, and this bound keeps us from allocating for it.
constexpr uint64_t kMaxHeaderLen = 1 << 16;

// Header text for an error message, escaped and cut short: a corrupt header may hold any bytes,
// and the message goes to a terminal or a log.
std::string printable(const std::string& s, size_t max = 120) {
  std::string r;
  for (unsigned char c : s.substr(0, max))
    r += std::isprint(c) ? std::string(1, (char)c)
                         : str_cat("\\x", "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]);
  return s.size() > max ? r + "..." : r;
}

struct HeaderValue {
  enum Kind { string, boolean, int_tuple, other } kind = other;
  std::string str;
  bool flag = false;
  std::vector<int64_t> ints;
};

// A parser for the one kind of dict literal NumPy writes: string keys; values that are strings,
// True/False or tuples of ints. Anything else nested (a structured dtype's list) is skipped and
// reported as an unsupported value by the caller, not as a syntax error.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  std::map<std::string, HeaderValue> parse_dict() {
    std::map<std::string, HeaderValue> out;
    skip_ws();
    expect('{');
    skip_ws();
    while (!eat('}')) {
      if (peek() != '\'' && peek() != '"') fail("expected a quoted key");
      std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (out.count(key)) fail("duplicate key '" + printable(key) + "'");
      out[key] = parse_value();
      skip_ws();
      if (eat('}')) break;
      expect(',');
      skip_ws();
    }
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected text after the closing brace");
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    LB_FAIL("read_npy: '", path_, "': header is not a valid dict: ", what, " at offset ", pos_,
            " in \"", printable(s_), "\"");
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool eat(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t')) ++pos_;
  }
  std::string parse_string() {
    const char quote = s_[pos_++];
    std::string r;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      if (s_[pos_] == '\\' && pos_ + 1 < s_.size()) ++pos_;
      r += s_[pos_++];
    }
    if (pos_ >= s_.size()) fail("unterminated string");
    ++pos_;
    return r;
  }
  bool is_ident(char c) const { return std::isalnum((unsigned char)c) || c == '_'; }
  // An int literal (Python 2 headers may carry an 'L' suffix). Overflow is an error here because
  // the value cannot be represented at all, which is different from a merely implausible size.
  int64_t parse_int() {
    bool neg = eat('-');
    if (!std::isdigit((unsigned char)peek())) fail("expected an integer");
    uint64_t v = 0;
    while (std::isdigit((unsigned char)peek())) {
      uint64_t d = (uint64_t)(s_[pos_++] - '0');
      if (v > (uint64_t)(INT64_MAX - d) / 10)
        LB_FAIL("read_npy: '", path_, "': shape dimension overflows int64 at offset ", pos_);
      v = v * 10 + d;
    }
    eat('L');
    return neg ? -(int64_t)v : (int64_t)v;
  }
  // Skips a bracketed value whatever it holds (strings included), so that a structured dtype's
  // list can be reported for what it is.
  void skip_balanced() {
    int depth = 0;
    do {
      char c = peek();
      if (c == '\0') fail("unbalanced brackets");
      if (c == '\'' || c == '"') {
        parse_string();
        continue;
      }
      if (c == '(' || c == '[' || c == '{') ++depth;
      if (c == ')' || c == ']' || c == '}') --depth;
      ++pos_;
    } while (depth > 0);
  }
  HeaderValue parse_value() {
    HeaderValue v;
    char c = peek();
    if (c == '\'' || c == '"') {
      v.kind = HeaderValue::string;
      v.str = parse_string();
    } else if (c == '(' || c == '[') {
      const size_t start = pos_;
      const char close = c == '(' ? ')' : ']';
      ++pos_;
      skip_ws();
      v.kind = HeaderValue::int_tuple;
      while (!eat(close)) {
        if (peek() != '-' && !std::isdigit((unsigned char)peek())) {  // not a tuple of ints
          pos_ = start;
          skip_balanced();
          v.kind = HeaderValue::other;
          return v;
        }
        v.ints.push_back(parse_int());
        skip_ws();
        if (eat(close)) break;
        expect(',');
        skip_ws();
      }
    } else if (is_ident(c)) {
      std::string word;
      while (is_ident(peek())) word += s_[pos_++];
      if (word == "True" || word == "False") {
        v.kind = HeaderValue::boolean;
        v.flag = word == "True";
      } else if (std::isdigit((unsigned char)word[0])) {
        fail("unexpected number");
      }
    } else {
      fail("unexpected character");
    }
    return v;
  }

  const std::string& s_;
  const std::string& path_;
  size_t pos_ = 0;
};

const char* kSupported = "float32 '<f4', float64 '<f8', int32 '<i4', int64 '<i8', int8 '|i1', "
                         "uint8 '|u1'";

DType dtype_from_descr(const std::string& descr, const std::string& path) {
  LB_CHECK(!descr.empty(), "read_npy: '", path, "': empty dtype descr");
  char order = descr[0];
  std::string code = descr;
  if (order == '<' || order == '>' || order == '|' || order == '=')
    code = descr.substr(1);
  else
    order = '=';
  LB_CHECK(code.empty() || code[0] != 'O', "read_npy: '", path, "': object arrays ('",
           printable(descr), "') are not supported: they hold Python objects, not numbers");
  DType dt;
  if (code == "f4") dt = DType::f32;
  else if (code == "f8") dt = DType::f64;
  else if (code == "i4") dt = DType::i32;
  else if (code == "i8") dt = DType::i64;
  else if (code == "i1") dt = DType::i8;
  else if (code == "u1") dt = DType::u8;
  else
    LB_FAIL("read_npy: '", path, "': unsupported dtype '", printable(descr),
            "' (supported: ", kSupported, ")");
  LB_CHECK(order != '>' || dtype_size(dt) == 1, "read_npy: '", path, "': big-endian data ('",
           descr, "') is not supported; save arr.astype('<", code, "') instead");
  return dt;
}

const char* descr_of(DType dt) {
  switch (dt) {
    case DType::f32: return "<f4";
    case DType::f64: return "<f8";
    case DType::i32: return "<i4";
    case DType::i64: return "<i8";
    case DType::i8: return "|i1";
    case DType::u8: return "|u1";
  }
  return "?";
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

Tensor read_npy(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  LB_CHECK(f != nullptr, "read_npy: cannot open '", path, "': ", std::strerror(errno));
  struct stat st;
  LB_CHECK(fstat(fileno(f.get()), &st) == 0, "read_npy: cannot stat '", path,
           "': ", std::strerror(errno));
  LB_CHECK(S_ISREG(st.st_mode), "read_npy: '", path, "' is not a regular file");
  const uint64_t file_size = (uint64_t)st.st_size;

  auto read_exact = [&](void* dst, size_t n, const char* what) {
    LB_CHECK(std::fread(dst, 1, n, f.get()) == n, "read_npy: '", path, "': truncated ", what,
             " (file is ", file_size, " bytes)");
  };
  unsigned char prefix[8];
  LB_CHECK(file_size >= 8, "read_npy: '", path, "': bad magic: not a .npy file (only ", file_size,
           " bytes)");
  read_exact(prefix, 8, "magic");
  LB_CHECK(std::memcmp(prefix, kMagic, 6) == 0, "read_npy: '", path,
           "': bad magic: not a .npy file (expected \\x93NUMPY)");
  const int major = prefix[6], minor = prefix[7];
  LB_CHECK((major >= 1 && major <= 3) && minor == 0, "read_npy: '", path,
           "': unsupported .npy format version ", major, ".", minor, " (supported: 1.0, 2.0, 3.0)");
  // 1.0 stores the header length in 2 bytes, 2.0 and 3.0 (UTF-8 header) in 4.
  const size_t len_bytes = major == 1 ? 2 : 4;
  unsigned char lb[4] = {0, 0, 0, 0};
  LB_CHECK(file_size >= 8 + len_bytes, "read_npy: '", path, "': truncated header length");
  read_exact(lb, len_bytes, "header length");
  const uint64_t header_len = (uint64_t)lb[0] | (uint64_t)lb[1] << 8 | (uint64_t)lb[2] << 16 |
                              (uint64_t)lb[3] << 24;
  const uint64_t data_offset = 8 + len_bytes + header_len;
  LB_CHECK(header_len <= kMaxHeaderLen, "read_npy: '", path, "': header length ", header_len,
           " exceeds the limit of ", kMaxHeaderLen, " bytes");
  LB_CHECK(data_offset <= file_size, "read_npy: '", path, "': truncated header: it claims ",
           header_len, " bytes but the file has ", file_size - 8 - len_bytes, " after the prefix");
  std::string header(header_len, '\0');
  read_exact(&header[0], header_len, "header");

  auto dict = HeaderParser(header, path).parse_dict();
  for (const char* key : {"descr", "fortran_order", "shape"})
    LB_CHECK(dict.count(key), "read_npy: '", path, "': header is not a valid dict: missing key '",
             key, "'");
  LB_CHECK(dict.size() == 3, "read_npy: '", path, "': header is not a valid dict: ", dict.size(),
           " keys, expected exactly descr, fortran_order and shape");
  const HeaderValue& descr = dict["descr"];
  LB_CHECK(descr.kind == HeaderValue::string, "read_npy: '", path,
           "': unsupported dtype: structured or non-string descr (supported: ", kSupported, ")");
  const DType dt = dtype_from_descr(descr.str, path);
  LB_CHECK(dict["fortran_order"].kind == HeaderValue::boolean, "read_npy: '", path,
           "': header is not a valid dict: fortran_order must be True or False");
  LB_CHECK(!dict["fortran_order"].flag, "read_npy: '", path, "': fortran_order: True is not "
           "supported; save np.ascontiguousarray(arr) instead");
  LB_CHECK(dict["shape"].kind == HeaderValue::int_tuple, "read_npy: '", path,
           "': header is not a valid dict: shape must be a tuple of ints");
  const Shape shape = dict["shape"].ints;

  // Size of the data from the shape, with every product checked, before any allocation.
  uint64_t numel = 1;
  for (int64_t d : shape) {
    LB_CHECK(d >= 0, "read_npy: '", path, "': negative dimension in shape ", shape_str(shape));
    LB_CHECK(d == 0 || numel <= (uint64_t)INT64_MAX / (uint64_t)d, "read_npy: '", path,
             "': shape ", shape_str(shape), " overflows the element count");
    numel *= (uint64_t)d;
  }
  LB_CHECK(numel <= (uint64_t)INT64_MAX / dtype_size(dt), "read_npy: '", path, "': shape ",
           shape_str(shape), " overflows the byte count");
  const uint64_t need = numel * dtype_size(dt), have = file_size - data_offset;
  LB_CHECK(need <= have, "read_npy: '", path, "': truncated data: the header promises ", need,
           " bytes (shape ", shape_str(shape), ", ", dtype_name(dt), ") but the file has ", have);
  LB_CHECK(need == have, "read_npy: '", path, "': ", have - need, " trailing bytes after the ",
           need, " bytes of data (shape ", shape_str(shape), ", ", dtype_name(dt), ")");

  Tensor t = Tensor::empty(shape, dt);
  if (need > 0) read_exact(t.raw(), (size_t)need, "data");
  return t;
}

void write_npy(const std::string& path, const Tensor& t) {
  check_defined(t, "write_npy", "tensor");
  check_cpu(t, "write_npy");
  std::string header = str_cat("{'descr': '", descr_of(t.dtype()),
                               "', 'fortran_order': False, 'shape': ", shape_str(t.shape()), ", }");
  // Pad so that the data starts on a 64-byte boundary (what NumPy does, for aligned mmap).
  const size_t prefix = 10;
  size_t total = prefix + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  LB_CHECK(header.size() <= 65535, "write_npy: '", path, "': shape ", shape_str(t.shape()),
           " makes a header too long for format 1.0");
  std::string head(kMagic, 6);
  head += '\x01';
  head += '\x00';
  head += (char)(header.size() & 0xff);
  head += (char)(header.size() >> 8);
  head += header;

  std::string tmp = path + ".tmpXXXXXX";
  int fd = mkstemp(&tmp[0]);
  LB_CHECK(fd >= 0, "write_npy: cannot create a temporary file for '", path,
           "': ", std::strerror(errno));
  auto fail = [&](const char* what) {
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp.c_str());
    LB_FAIL("write_npy: '", path, "': ", what, ": ", std::strerror(e));
  };
  auto write_all = [&](const char* p, size_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("write failed");
      p += w;
      n -= (size_t)w;
    }
  };
  // mkstemp creates mode 0600; a data file is normally readable by others like any NumPy output.
  if (fchmod(fd, 0644) != 0) fail("chmod failed");
  write_all(head.data(), head.size());
  write_all(static_cast<const char*>(t.raw()), t.nbytes());
  if (fsync(fd) != 0) fail("fsync failed");
  if (close(fd) != 0) {
    fd = -1;
    fail("close failed");
  }
  fd = -1;
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("rename failed");
  // Make the rename itself durable; a failure here loses nothing already visible, so it is ignored.
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/') + 1);
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
}

}  // namespace lowbit
