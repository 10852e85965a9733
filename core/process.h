// Process set-up shared by the lowbit command and the test runner, done first in main.
#pragma once

namespace lowbit {

// 1. OpenBLAS kernel: Debian's OpenBLAS may load an old core's kernel (core/cpu/blas.h).
// 2. OpenMP wait policy: libgomp's default spins idle threads; when the machine has any other
//    load (a second job, a compiler), a spinning 2-thread step waits on a preempted partner and
//    runs 2-3x slower than with passive waiting (measured: smallcnn train 171 vs 407 img/s at
//    load 8); on an idle machine the two policies time the same within noise.
// 3. OpenBLAS's idle threads: after a threaded GEMM its workers spin on sched_yield for 2^28
//    cycles before they sleep, beside the OpenMP threads of the next op on the same cores
//    (ShuffleNetV2, whose large 1x1 gradients run on OpenBLAS: 1.6% of the samples in
//    sched_yield; training 331-405 -> 334-419 img/s in six alternated pairs with
//    OPENBLAS_THREAD_TIMEOUT=4, docs/perf.md). So they sleep at once unless the user chose.
// All three are read by the libraries when they load, before main, so when one needs setting
// (and the user did not set that variable) this sets them and re-executes the program once.
// 4. Allocator: every op allocates its output; with glibc's defaults, blocks of a few MB are
//    mmap'ed and returned to the kernel on free, so each step page-faults its activations in
//    again (measured: half the page faults of a ResNet-20 step). They stay in the heap instead.
void init_process(char** argv);

}  // namespace lowbit
