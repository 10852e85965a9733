// Process set-up shared by the lowbit command and the test runner, done first in main.
#pragma once

namespace lowbit {

// 1. OpenBLAS kernel: Debian's OpenBLAS may load an old core's kernel (core/cpu/blas.h).
// 2. OpenMP wait policy: libgomp's default spins idle threads; when the machine has any other
//    load (a second job, a compiler), a spinning 2-thread step waits on a preempted partner and
//    runs 2-3x slower than with passive waiting (measured: smallcnn train 171 vs 407 img/s at
//    load 8); on an idle machine the two policies time the same within noise.
// Both are read by the libraries when they load, before main, so when either needs setting (and
// the user set neither variable) this sets them and re-executes the program once.
// 3. Allocator: every op allocates its output; with glibc's defaults, blocks of a few MB are
//    mmap'ed and returned to the kernel on free, so each step page-faults its activations in
//    again (measured: half the page faults of a ResNet-20 step). They stay in the heap instead.
void init_process(char** argv);

}  // namespace lowbit
