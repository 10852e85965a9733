// Errors: every check on user input goes through LB_CHECK, which throws lowbit::Error with a
// message that names the op (or file) and the offending value. No assert on user input.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace lowbit {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

}  // namespace lowbit

// LB_CHECK(cond, "conv2d: ", "weight must be 4-d, got ", shape_str(w.shape()));
// The message parts are evaluated only when the check fails.
#define LB_CHECK(cond, ...)                                      \
  do {                                                           \
    if (!(cond)) throw ::lowbit::Error(::lowbit::str_cat(__VA_ARGS__)); \
  } while (0)

#define LB_FAIL(...) throw ::lowbit::Error(::lowbit::str_cat(__VA_ARGS__))
