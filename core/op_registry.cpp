// The table of ops runnable by name (`lowbit grad`), and OpOptions: string options parsed into
// typed values, with errors naming the op, the option and the bad value.
#include "core/op_registry.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace lowbit {

namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace((unsigned char)s[b])) ++b;
  while (e > b && std::isspace((unsigned char)s[e - 1])) --e;
  return s.substr(b, e - b);
}

// strtoll with the whole string consumed and no overflow; false otherwise.
bool parse_int64(const std::string& raw, int64_t& out) {
  std::string s = trim(raw);
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno == ERANGE || end != s.c_str() + s.size()) return false;
  out = (int64_t)v;
  return true;
}

}  // namespace

const std::string* OpOptions::find(const std::string& key) const {
  used_.insert(key);
  auto it = values_.find(key);
  return it == values_.end() ? nullptr : &it->second;
}

double OpOptions::get_double(const std::string& key, double def) const {
  const std::string* v = find(key);
  if (!v) return def;
  std::string s = trim(*v);
  errno = 0;
  char* end = nullptr;
  double d = s.empty() ? 0 : std::strtod(s.c_str(), &end);
  LB_CHECK(!s.empty() && end == s.c_str() + s.size() && errno != ERANGE && std::isfinite(d), op_,
           ": option '", key, "': expected a finite number, got '", *v, "'");
  return d;
}

int64_t OpOptions::get_int(const std::string& key, int64_t def) const {
  const std::string* v = find(key);
  if (!v) return def;
  int64_t r = 0;
  LB_CHECK(parse_int64(*v, r), op_, ": option '", key, "': expected an integer, got '", *v, "'");
  return r;
}

bool OpOptions::get_bool(const std::string& key, bool def) const {
  const std::string* v = find(key);
  if (!v) return def;
  std::string s = trim(*v);
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return (char)std::tolower(c); });
  if (s == "true" || s == "1") return true;
  if (s == "false" || s == "0") return false;
  LB_FAIL(op_, ": option '", key, "': expected true/false/1/0, got '", *v, "'");
}

std::string OpOptions::get_string(const std::string& key, const std::string& def) const {
  const std::string* v = find(key);
  return v ? *v : def;
}

std::vector<int64_t> OpOptions::get_pair(const std::string& key, int64_t def) const {
  const std::string* v = find(key);
  if (!v) return {def, def};
  const size_t comma = v->find(',');
  int64_t a = 0, b = 0;
  bool ok = comma == std::string::npos
                ? parse_int64(*v, a) && (b = a, true)
                : parse_int64(v->substr(0, comma), a) && parse_int64(v->substr(comma + 1), b);
  LB_CHECK(ok, op_, ": option '", key, "': expected an integer or a pair such as 2,1, got '", *v,
           "'");
  return {a, b};
}

void OpOptions::check_all_used() const {
  std::string unknown;
  for (const auto& kv : values_)
    if (!used_.count(kv.first)) unknown += (unknown.empty() ? "'" : ", '") + kv.first + "'";
  if (unknown.empty()) return;
  std::string known;
  for (const std::string& k : used_) known += (known.empty() ? "" : ", ") + k;
  LB_FAIL(op_, ": unknown option ", unknown, " (options: ", known.empty() ? "none" : known, ")");
}

const std::vector<RegisteredOp>& registered_ops() {
  // Built once, on first use (thread-safe static init); the table never changes afterwards.
  static const std::vector<RegisteredOp> table = [] {
    std::vector<RegisteredOp> t;
    add_core_grad_ops(t);
    add_quant_grad_ops(t);
    std::sort(t.begin(), t.end(),
              [](const RegisteredOp& a, const RegisteredOp& b) { return a.name < b.name; });
    for (size_t i = 1; i < t.size(); ++i)
      LB_CHECK(t[i].name != t[i - 1].name, "op registry: op '", t[i].name, "' registered twice");
    return t;
  }();
  return table;
}

const RegisteredOp& find_registered_op(const std::string& name) {
  const auto& ops = registered_ops();
  for (const RegisteredOp& op : ops)
    if (op.name == name) return op;
  std::string known;
  for (const RegisteredOp& op : ops) known += (known.empty() ? "" : ", ") + op.name;
  LB_FAIL("unknown op '", name, "' (known ops: ", known, ")");
}

}  // namespace lowbit
