// The one place lowbit calls OpenBLAS. Row-major GEMM: C = alpha * op(A) op(B) + beta * C with
// op(A) (M, K), op(B) (K, N), C (M, N); lda/ldb/ldc are the row strides of A, B, C as stored.
#pragma once
#include <cstdint>
#include <string>

namespace lowbit {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
          const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
          int64_t ldc);

void blas_set_num_threads(int n);
std::string blas_core_name();  // openblas_get_corename()

// OpenBLAS reads OPENBLAS_CORETYPE once, when the library is loaded (before main). Debian's
// 0.3.21 takes recent AVX-512 Xeons for an old core and runs SGEMM 4-5x slower. Returns the core
// type to set when the user did not set the variable and the loaded kernel is not the best one
// this CPU can run (checked with cpuid, never a core the CPU lacks); "" when nothing needs doing.
// init_process (core/process.h) sets it and re-executes the program once.
std::string blas_core_override();
// The core type blas_core_override would pick for this CPU ("SKYLAKEX", "ZEN", "HASWELL", or "").
std::string preferred_blas_core();

}  // namespace lowbit
