// safetensors read/write: u64 LE header length N, N bytes of JSON (padded with spaces to a multiple
// of 8 so the data starts aligned), then the tensors' raw bytes, contiguous, in the saved order.
// The reader trusts nothing: every size is checked against the file before anything is allocated.
#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors I/O copies tensor bytes as they are: a little-endian host is assumed"
#endif

namespace lowbit {

namespace {

using ojson = nlohmann::ordered_json;  // keeps key order: the header lists tensors in saved order

// The reference implementation refuses larger headers too; it bounds what a hostile file can make
// the JSON parser allocate.
constexpr uint64_t kMaxHeaderBytes = 100u * 1000 * 1000;

const char* dtype_code(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i64: return "I64";
    case DType::i32: return "I32";
    case DType::i8: return "I8";
    case DType::u8: return "U8";
  }
  return "?";
}

bool dtype_from_code(const std::string& code, DType& out) {
  for (DType t : {DType::f32, DType::f64, DType::i64, DType::i32, DType::i8, DType::u8}) {
    if (code == dtype_code(t)) {
      out = t;
      return true;
    }
  }
  return false;
}

std::string errno_str() { return std::strerror(errno); }

// "dir/name" -> ("dir", "name"); "name" -> (".", "name"); "/name" -> ("/", "name").
std::pair<std::string, std::string> split_path(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

// Writes all of `n` bytes, retrying short writes and EINTR.
void write_all(int fd, const void* p, size_t n, const std::string& tmp, const std::string& target) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, std::min<size_t>(n, size_t(1) << 30));
    if (w < 0 && errno == EINTR) continue;
    LB_CHECK(w > 0, "write_file_atomic: ", target, ": writing the temp file ", tmp,
             " failed: ", w < 0 ? errno_str() : std::string("wrote 0 bytes"));
    c += w;
    n -= (size_t)w;
  }
}

// Unlinks the temp file unless the rename went through, so a failure mid-write (disk full, an
// exception from the caller's writer) leaves neither a half file nor litter behind.
struct TempFile {
  std::string path;
  int fd = -1;
  bool committed = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!committed && !path.empty()) ::unlink(path.c_str());
  }
};

// The atomic replace: the target is either the old file or the complete new one, never a mix,
// because rename(2) within one directory is atomic and the data is on disk before the rename.
void atomic_replace(const std::string& path,
                    const std::function<void(const std::function<void(const void*, size_t)>&)>& fill) {
  auto [dir, base] = split_path(path);
  LB_CHECK(!base.empty(), "write_file_atomic: ", path, ": path names a directory, not a file");
  static std::atomic<unsigned> counter{0};
  TempFile tmp;
  // O_EXCL with mode 0666 (not mkstemp's 0600) so the result honours the umask like a plain write.
  for (int attempt = 0; attempt < 100 && tmp.fd < 0; ++attempt) {
    const auto tick = std::chrono::steady_clock::now().time_since_epoch().count();
    std::string name = str_cat(dir, "/.", base, ".tmp.", ::getpid(), ".", counter++, ".",
                               (unsigned long long)tick % 1000000007ull);
    const int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      tmp.path = name;
      tmp.fd = fd;
    } else {
      LB_CHECK(errno == EEXIST, "write_file_atomic: ", path, ": cannot create a temp file in ",
               dir, ": ", errno_str());
    }
  }
  LB_CHECK(tmp.fd >= 0, "write_file_atomic: ", path, ": no free temp file name in ", dir);

  fill([&](const void* p, size_t n) { write_all(tmp.fd, p, n, tmp.path, path); });

  LB_CHECK(::fsync(tmp.fd) == 0, "write_file_atomic: ", path, ": fsync of ", tmp.path,
           " failed: ", errno_str());
  const int fd = tmp.fd;
  tmp.fd = -1;
  // close() can report a deferred write error (NFS, quota): the data is not safe if it fails.
  LB_CHECK(::close(fd) == 0, "write_file_atomic: ", path, ": close of ", tmp.path,
           " failed: ", errno_str());
  LB_CHECK(::rename(tmp.path.c_str(), path.c_str()) == 0, "write_file_atomic: ", path,
           ": rename from ", tmp.path, " failed: ", errno_str());
  tmp.committed = true;
  // The rename itself is durable only once the directory entry is on disk.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  LB_CHECK(dfd >= 0, "write_file_atomic: ", path, ": cannot open directory ", dir,
           " to fsync it: ", errno_str());
  const int r = ::fsync(dfd);
  const int fsync_errno = errno;
  ::close(dfd);
  // EINVAL: the filesystem does not support fsync on directories; nothing more can be done there.
  LB_CHECK(r == 0 || fsync_errno == EINVAL, "write_file_atomic: ", path, ": fsync of directory ",
           dir, " failed: ", std::strerror(fsync_errno));
}

// A JSON integer that must be non-negative; nlohmann stores those as number_unsigned.
// Returns false for anything else; `negative` tells a negative integer from a non-integer.
bool json_u64(const ojson& v, uint64_t& out, bool& negative) {
  negative = v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() < 0;
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && !negative) {  // "-0"
    out = 0;
    return true;
  }
  return false;
}

struct Entry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

Entry parse_entry(const std::string& tw, const std::string& name, const ojson& val) {
  LB_CHECK(val.is_object(), tw, ": entry is not a JSON object (got ", val.type_name(), ")");
  for (const auto& item : val.items()) {
    const std::string& k = item.key();
    LB_CHECK(k == "dtype" || k == "shape" || k == "data_offsets", tw, ": unexpected field \"", k,
             "\" (expected dtype, shape, data_offsets)");
  }
  for (const char* k : {"dtype", "shape", "data_offsets"})
    LB_CHECK(val.contains(k), tw, ": missing field \"", k, "\"");

  Entry e;
  e.name = name;
  const ojson& dt = val["dtype"];
  LB_CHECK(dt.is_string(), tw, ": dtype is not a string (got ", dt.type_name(), ")");
  const std::string code = dt.get<std::string>();
  LB_CHECK(dtype_from_code(code, e.dtype), tw, ": unsupported dtype \"", code,
           "\" (lowbit reads F32, F64, I64, I32, I8, U8)");

  const ojson& sh = val["shape"];
  LB_CHECK(sh.is_array(), tw, ": shape is not a list (got ", sh.type_name(), ")");
  uint64_t numel = 1;
  bool numel_overflow = false;
  for (const ojson& d : sh) {
    uint64_t v = 0;
    bool negative = false;
    LB_CHECK(json_u64(d, v, negative), tw, ": shape ", sh.dump(), " has ",
             negative ? "a negative dimension" : "a dimension that is not an integer");
    LB_CHECK(v <= (uint64_t)std::numeric_limits<int64_t>::max(), tw, ": shape ", sh.dump(),
             " has a dimension too large for int64");
    e.shape.push_back((int64_t)v);
    // A later zero dimension would make the product 0 again, but Tensor computes numel in int64,
    // so an intermediate overflow is refused outright.
    numel_overflow |= __builtin_mul_overflow(numel, v, &numel);
  }
  const uint64_t dsize = dtype_size(e.dtype);
  uint64_t nbytes = 0;
  LB_CHECK(!numel_overflow && numel <= (uint64_t)std::numeric_limits<int64_t>::max() &&
               !__builtin_mul_overflow(numel, dsize, &nbytes),
           tw, ": shape ", sh.dump(), " has an element count that overflows");

  const ojson& off = val["data_offsets"];
  bool ok = off.is_array() && off.size() == 2;
  bool negative = false;
  if (ok) {
    bool neg_b = false, neg_e = false;
    ok = json_u64(off[0], e.begin, neg_b) && json_u64(off[1], e.end, neg_e);
    negative = neg_b || neg_e;
  }
  LB_CHECK(ok, tw, ": data_offsets ", off.dump(), " must be two non-negative integers",
           negative ? " (negative offset)" : "");
  LB_CHECK(e.begin <= e.end, tw, ": data_offsets ", off.dump(), " has begin > end");
  LB_CHECK(e.end - e.begin == nbytes, tw, ": data_offsets ", off.dump(), " span ",
           e.end - e.begin, " bytes but dtype ", code, " shape ", sh.dump(), " needs ", nbytes,
           " bytes (size mismatch)");
  return e;
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  atomic_replace(path, [&](const auto& write) { write(bytes.data(), bytes.size()); });
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string where = "save_safetensors: " + path;
  // Everything is checked before the temp file exists, so a refused save touches nothing.
  std::set<std::string> seen;
  ojson header = ojson::object();
  if (!metadata.empty()) {
    ojson meta = ojson::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    LB_CHECK(name != "__metadata__", where, ": \"__metadata__\" is reserved, not a tensor name");
    LB_CHECK(seen.insert(name).second, where, ": duplicate tensor name '", name, "'");
    LB_CHECK(t.defined(), where, ": tensor '", name, "' is undefined");
    LB_CHECK(t.device() == Device::cpu, where, ": tensor '", name, "' is on ",
             device_name(t.device()), "; copy it to the cpu before saving");
    ojson shape = ojson::array();
    for (int64_t d : t.shape()) shape.push_back(d);
    const uint64_t n = t.nbytes();
    header[name] = ojson{{"dtype", dtype_code(t.dtype())},
                         {"shape", std::move(shape)},
                         {"data_offsets", ojson::array({offset, offset + n})}};
    offset += n;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& ex) {  // e.g. a name that is not valid UTF-8
    LB_FAIL(where, ": cannot encode the header: ", ex.what());
  }
  // Spaces are JSON whitespace: padding keeps the data section 8-byte aligned for mmap readers.
  text.append((8 - text.size() % 8) % 8, ' ');

  atomic_replace(path, [&](const auto& write) {
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = (unsigned char)((uint64_t)text.size() >> (8 * i));
    write(len, 8);
    write(text.data(), text.size());
    for (const auto& nt : tensors) write(nt.second.raw(), nt.second.nbytes());
  });
}

SafetensorsFile load_safetensors(const std::string& path) {
  const std::string where = "load_safetensors: " + path;
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  LB_CHECK(file != nullptr, where, ": cannot open: ", errno_str());
  FILE* f = file.get();
  struct stat st;
  LB_CHECK(::fstat(::fileno(f), &st) == 0, where, ": cannot stat: ", errno_str());
  LB_CHECK(S_ISREG(st.st_mode), where, ": not a regular file");
  const uint64_t file_size = (uint64_t)st.st_size;
  LB_CHECK(file_size >= 8, where, ": file is ", file_size,
           " bytes, too short for the 8-byte header length");

  unsigned char len[8];
  LB_CHECK(std::fread(len, 1, 8, f) == 8, where, ": cannot read the header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= (uint64_t)len[i] << (8 * i);
  LB_CHECK(n <= file_size - 8, where, ": header length ", n, " exceeds the ", file_size - 8,
           " bytes that follow it (truncated or corrupt file)");
  LB_CHECK(n <= kMaxHeaderBytes, where, ": header length ", n, " exceeds the limit of ",
           kMaxHeaderBytes, " bytes");
  std::string text(n, '\0');
  LB_CHECK(std::fread(text.data(), 1, n, f) == n, where, ": cannot read the ", n,
           "-byte header");
  const uint64_t data_size = file_size - 8 - n;

  // The callback refuses duplicate keys (JSON allows them, and which one wins is up to the parser)
  // and nesting deeper than the format has, before the parser builds anything for it.
  std::set<std::string> top_keys, entry_keys;
  auto on_event = [&](int depth, ojson::parse_event_t ev, ojson& parsed) {
    using E = ojson::parse_event_t;
    if ((ev == E::object_start || ev == E::array_start) && depth > 2)
      LB_FAIL(where, ": invalid header: JSON nested deeper than the format allows");
    if (ev == E::object_start && depth == 1) entry_keys.clear();
    if (ev == E::key && depth == 1) {
      const std::string key = parsed.get<std::string>();
      LB_CHECK(top_keys.insert(key).second, where, ": tensor '", key,
               "': duplicate name in the header");
    }
    if (ev == E::key && depth == 2) {
      const std::string key = parsed.get<std::string>();
      LB_CHECK(entry_keys.insert(key).second, where, ": duplicate key \"", key,
               "\" inside an entry of the header");
    }
    return true;
  };
  ojson j;
  try {
    j = ojson::parse(text, on_event);
  } catch (const nlohmann::json::exception& ex) {
    LB_FAIL(where, ": invalid JSON in the header: ", ex.what());
  }
  LB_CHECK(j.is_object(), where, ": header is not a JSON object (got ", j.type_name(), ")");

  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const auto& item : j.items()) {
    const std::string& key = item.key();
    const ojson& val = item.value();
    if (key == "__metadata__") {
      LB_CHECK(val.is_object(), where, ": __metadata__ is not an object of strings (got ",
               val.type_name(), ")");
      for (const auto& m : val.items()) {
        LB_CHECK(m.value().is_string(), where, ": __metadata__ value for key '", m.key(),
                 "' is not a string (got ", m.value().type_name(), ")");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tw = where + ": tensor '" + key + "'";
    entries.push_back(parse_entry(tw, key, val));
    LB_CHECK(entries.back().end <= data_size, tw, ": data_offsets end ", entries.back().end,
             " is beyond the data section of ", data_size, " bytes");
  }

  // The data section must be exactly the tensors, back to back: no overlap (two tensors aliasing
  // the same bytes) and no gap (bytes no tensor owns, a sign of a corrupt or doctored file).
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    LB_CHECK(e.begin >= pos, where, ": tensor '", e.name, "' at bytes [", e.begin, ", ", e.end,
             ") overlaps tensor '", prev ? prev->name : std::string("?"), "' ending at ", pos);
    LB_CHECK(e.begin == pos, where, ": tensor '", e.name, "': gap of ", e.begin - pos,
             " unused bytes before it in the data section (at offset ", pos, ")");
    pos = e.end;
    prev = &e;
  }
  LB_CHECK(pos == data_size, where, ": ", data_size - pos,
           " unused bytes at the end of the data section (gap after the last tensor)");

  // Sizes are now known to add up to the file, so these allocations are bounded by its size.
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    t.set_name(e.name);
    const size_t nbytes = (size_t)(e.end - e.begin);
    LB_CHECK(nbytes == 0 || std::fread(t.raw(), 1, nbytes, f) == nbytes, where, ": tensor '",
             e.name, "': short read of its ", nbytes, " bytes (file changed while reading?)");
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

}  // namespace lowbit
