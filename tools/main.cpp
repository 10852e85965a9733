// The `lowbit` command: picks the OpenBLAS kernel for this CPU, then dispatches to a subcommand.
#include <cstdio>
#include <exception>

#include "core/process.h"
#include "core/error.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  lowbit::init_process(argv);
  try {
    return lowbit::run_command(argc, argv);
  } catch (const lowbit::Error& e) {
    std::fprintf(stderr, "lowbit: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lowbit: error: %s\n", e.what());
    return 1;
  }
}
