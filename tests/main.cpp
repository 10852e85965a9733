// doctest's main, after choosing the OpenBLAS kernel exactly as the lowbit command does.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "core/process.h"
#include "core/parallel.h"

int main(int argc, char** argv) {
  lowbit::init_process(argv);
  lowbit::set_num_threads(0);
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
