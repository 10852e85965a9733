// Thread count for OpenMP loops and OpenBLAS together.
#include "core/parallel.h"

#include <omp.h>

#include "core/cpu/blas.h"

namespace lowbit {

namespace {
int g_threads = 0;  // set once at start-up from --threads; read by every parallel loop
}

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  g_threads = n;
  omp_set_num_threads(n);
  blas_set_num_threads(n);
}

int num_threads() {
  if (g_threads == 0) set_num_threads(0);
  return g_threads;
}

int omp_threads_in_region() { return omp_get_num_threads(); }
int omp_thread_index() { return omp_get_thread_num(); }

}  // namespace lowbit
