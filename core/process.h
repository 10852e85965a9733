// Process set-up shared by the lowbit command and the test runner: the OpenBLAS kernel (may
// re-execute the program once, see core/cpu/blas.h) and the allocator policy.
#pragma once

namespace lowbit {

// Every op allocates its output; with glibc's defaults, blocks of a few MB are mmap'ed and
// returned to the kernel on free, so each training step page-faults its activations in again
// (measured: about half the page faults of a ResNet-20 step). Keeping them in the heap avoids it.
void init_process(char** argv);

}  // namespace lowbit
