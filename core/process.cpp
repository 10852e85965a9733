// See process.h.
#include "core/process.h"

#include <malloc.h>

#include "core/cpu/blas.h"

namespace lowbit {

void init_process(char** argv) {
  ensure_blas_core(argv);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum: tensors below 32 MB come from the heap
  mallopt(M_TRIM_THRESHOLD, 1 << 30);   // and freed memory stays there for the next step
}

}  // namespace lowbit
