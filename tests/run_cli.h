// Runs the lowbit binary that `make test` names in LOWBIT_BIN, for tests of the command line.
#pragma once
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

namespace lowbit::test {

// `bin args`, stdout and stderr together; status as pclose returns it.
inline std::string run_lowbit(const char* bin, const std::string& args, int& status) {
  std::string out;
  FILE* p = popen((std::string(bin) + " " + args + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  status = pclose(p);
  return out;
}

}  // namespace lowbit::test
