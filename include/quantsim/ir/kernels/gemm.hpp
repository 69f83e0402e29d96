// Single-precision matrix products (row-major). gemm_ref is the plain triple loop the tests trust; gemm and the
// detail:: building blocks are the packed, register-blocked version (AVX-512 micro-kernel when compiled for it,
// a portable blocked loop otherwise) that Conv, MatMul and Gemm share.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

namespace quantsim {

/// C = alpha * op(A) * op(B) + beta * C, row-major; op(A) is m x k, op(B) is k x n. With beta == 0, C is not read.
void gemm_ref(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
              const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
              std::int64_t ldc);

/// Same contract as gemm_ref; packed and multithreaded over kernel_threads().
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
          std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);

namespace detail {

/// Rows per micro-tile: A is packed in panels of this many rows.
inline constexpr std::int64_t gemm_mr = 8;
/// Columns per full micro-tile (three 16-float vectors).
inline constexpr std::int64_t gemm_nr = 48;

/// Floats needed to pack an m x k A.
inline std::int64_t packed_a_size(std::int64_t m, std::int64_t k) {
    return (m + gemm_mr - 1) / gemm_mr * gemm_mr * k;
}

/// Packs alpha * op(A) (m x k) into panels of gemm_mr rows: panel p holds, for each kk in [0, k), the gemm_mr
/// values A[p*mr + i][kk] (rows past m are zero).
void pack_a(bool trans, std::int64_t m, std::int64_t k, const float* a, std::int64_t lda, float alpha, float* out);

/// What happens to a micro-tile on its way to memory.
struct gemm_epilogue {
    const float* row_bias = nullptr;  ///< added per row (indexed from the block's first row), or nullptr
    float lo = -std::numeric_limits<float>::infinity();  ///< then clamped to [lo, hi] (ReLU, ReLU6, Clip)
    float hi = std::numeric_limits<float>::infinity();
    /// C + result instead of result: the bias and the clamp apply to the sum (so a K-split GEMM clamps once, at
    /// its last block).
    bool accumulate = false;
    /// Floats between consecutive gemm_mr-row panels of A (0: k * gemm_mr). A K-block of a packed A is the same
    /// panels offset by kb * gemm_mr with the full matrix's panel stride.
    std::int64_t a_panel_stride = 0;
};

/// C (m x n, row stride ldc) = packed A (m x k) * B (k x n, row stride ldb), then the epilogue.
void gemm_packed(std::int64_t m, std::int64_t n, std::int64_t k, const float* a_packed, const float* b,
                 std::int64_t ldb, float* c, std::int64_t ldc, const gemm_epilogue& ep);

/// Indirect B: row kk of B is b_rows[kk] + b_col0 (columns contiguous from there). Convolutions use it to read
/// shifted windows of a zero-padded input without building an im2col matrix.
void gemm_packed_indirect(std::int64_t m, std::int64_t n, std::int64_t k, const float* a_packed,
                          const float* const* b_rows, std::int64_t b_col0, float* c, std::int64_t ldc,
                          const gemm_epilogue& ep);

/// The portable version of gemm_packed (no intrinsics); gemm_packed uses it when AVX-512 is not compiled in.
void gemm_packed_generic(std::int64_t m, std::int64_t n, std::int64_t k, const float* a_packed, const float* b,
                         std::int64_t ldb, float* c, std::int64_t ldc, const gemm_epilogue& ep);

/// True when gemm_packed uses the AVX-512 micro-kernel.
bool gemm_has_avx512() noexcept;

/// Per-thread scratch buffer of at least n floats (contents undefined; reused across calls on the same thread).
float* scratch(std::int64_t n, int slot = 0);

}  // namespace detail
}  // namespace quantsim
