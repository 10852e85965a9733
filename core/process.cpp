// See process.h.
#include "core/process.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "core/cpu/blas.h"

namespace lowbit {

void init_process(char** argv) {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum: tensors below 32 MB come from the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);   // and freed memory stays there for the next step
  if (std::getenv("LOWBIT_REEXEC")) return;  // already re-executed once: never loop
  bool reexec = false;
  const std::string core = blas_core_override();
  if (!core.empty()) {
    setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
    reexec = true;
  }
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    reexec = true;
  }
  if (!std::getenv("OPENBLAS_THREAD_TIMEOUT")) {
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);  // 2^4 cycles: the shortest spin OpenBLAS allows
    reexec = true;
  }
  if (!reexec) return;
  setenv("LOWBIT_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  // execv returns only on failure: carry on with the libraries as loaded.
}

}  // namespace lowbit
