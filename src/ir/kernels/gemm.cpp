// Packed GEMM: A in gemm_mr-row panels, B read in place row by row, an 8 x 48 register tile.
#include <quantsim/ir/kernels/gemm.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>

#include <quantsim/ir/kernels/parallel.hpp>

#if defined(__AVX512F__)
#include <immintrin.h>
// GCC 12 warns about _mm512_undefined_ps() inside _mm512_max_ps/_mm512_min_ps (a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace quantsim {

void gemm_ref(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
              const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
              std::int64_t ldc) {
    for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
            double acc = 0;
            for (std::int64_t kk = 0; kk < k; ++kk) {
                const float av = trans_a ? a[kk * lda + i] : a[i * lda + kk];
                const float bv = trans_b ? b[j * ldb + kk] : b[kk * ldb + j];
                acc += static_cast<double>(av) * bv;
            }
            const float r = alpha * static_cast<float>(acc);
            c[i * ldc + j] = beta == 0.0f ? r : r + beta * c[i * ldc + j];
        }
}

namespace detail {

namespace {
struct aligned_free {
    void operator()(float* p) const noexcept { ::operator delete[](p, std::align_val_t{64}); }
};
struct scratch_buffer {
    std::unique_ptr<float[], aligned_free> data;
    std::int64_t size = 0;
};
}  // namespace

float* scratch(std::int64_t n, int slot) {
    thread_local scratch_buffer buffers[4];
    scratch_buffer& s = buffers[slot & 3];
    if (s.size < n) {
        const std::int64_t sz = std::max<std::int64_t>(n, s.size * 3 / 2);
        s.data.reset(static_cast<float*>(::operator new[](static_cast<std::size_t>(sz) * sizeof(float),
                                                          std::align_val_t{64})));
        s.size = sz;
    }
    return s.data.get();
}

void pack_a(bool trans, std::int64_t m, std::int64_t k, const float* a, std::int64_t lda, float alpha,
            float* out) {
    for (std::int64_t p = 0; p < m; p += gemm_mr) {
        const std::int64_t rows = std::min(gemm_mr, m - p);
        float* dst = out + p * k;
        if (!trans) {
            for (std::int64_t kk = 0; kk < k; ++kk) {
                for (std::int64_t i = 0; i < rows; ++i) dst[kk * gemm_mr + i] = alpha * a[(p + i) * lda + kk];
                for (std::int64_t i = rows; i < gemm_mr; ++i) dst[kk * gemm_mr + i] = 0.0f;
            }
        } else {
            for (std::int64_t kk = 0; kk < k; ++kk) {
                const float* src = a + kk * lda + p;
                for (std::int64_t i = 0; i < rows; ++i) dst[kk * gemm_mr + i] = alpha * src[i];
                for (std::int64_t i = rows; i < gemm_mr; ++i) dst[kk * gemm_mr + i] = 0.0f;
            }
        }
    }
}

// ---- portable micro-kernel ---------------------------------------------------------------------------------------
namespace {

// B rows: direct (b + kk * ldb) or indirect (rows[kk] + col0).
struct b_direct {
    const float* b;
    std::int64_t ldb;
    QUANTSIM_ALWAYS_INLINE const float* row(std::int64_t kk) const { return b + kk * ldb; }
    b_direct shifted(std::int64_t j) const { return {b + j, ldb}; }
};
struct b_indirect {
    const float* const* rows;
    std::int64_t col0;
    QUANTSIM_ALWAYS_INLINE const float* row(std::int64_t kk) const { return rows[kk] + col0; }
    b_indirect shifted(std::int64_t j) const { return {rows, col0 + j}; }
};

template <class B>
void tile_generic(std::int64_t k, const float* a, B b, float* c, std::int64_t ldc, std::int64_t mr, std::int64_t nr,
                  const gemm_epilogue& ep, std::int64_t row0) {
    float acc[gemm_mr][gemm_nr];
    for (auto& row : acc)
        for (float& v : row) v = 0.0f;
    for (std::int64_t kk = 0; kk < k; ++kk) {
        const float* brow = b.row(kk);
        const float* ak = a + kk * gemm_mr;
        for (std::int64_t i = 0; i < gemm_mr; ++i) {
            const float av = ak[i];
            for (std::int64_t j = 0; j < nr; ++j) acc[i][j] += av * brow[j];
        }
    }
    for (std::int64_t i = 0; i < mr; ++i) {
        const float bias = ep.row_bias ? ep.row_bias[row0 + i] : 0.0f;
        float* crow = c + i * ldc;
        for (std::int64_t j = 0; j < nr; ++j) {
            float v = (ep.accumulate ? acc[i][j] + crow[j] : acc[i][j]) + bias;
            v = v < ep.lo ? ep.lo : v;
            v = v > ep.hi ? ep.hi : v;
            crow[j] = v;
        }
    }
}

#if defined(__AVX512F__)
// 8 rows x NV*16 columns held in registers; the last vector is masked for column tails.
template <int NV, class B>
QUANTSIM_ALWAYS_INLINE void tile_avx512(std::int64_t k, const float* QUANTSIM_RESTRICT a, B bsrc, float* c,
                                        std::int64_t ldc, std::int64_t mr, __mmask16 tail,
                                        const gemm_epilogue& ep, std::int64_t row0) {
    __m512 acc[gemm_mr][NV];
#pragma GCC unroll 8
    for (int i = 0; i < gemm_mr; ++i)
#pragma GCC unroll 3
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (std::int64_t kk = 0; kk < k; ++kk) {
        const float* b = bsrc.row(kk);
        __m512 bv[NV];
#pragma GCC unroll 3
        for (int v = 0; v < NV; ++v)
            bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(tail, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 8
        for (int i = 0; i < gemm_mr; ++i) {
            const __m512 av = _mm512_set1_ps(a[i]);
#pragma GCC unroll 3
            for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
        }
        a += gemm_mr;
    }
    const __m512 lo = _mm512_set1_ps(ep.lo), hi = _mm512_set1_ps(ep.hi);
#pragma GCC unroll 8
    for (int i = 0; i < gemm_mr; ++i) {
        if (i >= mr) break;
        const __m512 bias = ep.row_bias ? _mm512_set1_ps(ep.row_bias[row0 + i]) : _mm512_setzero_ps();
        float* crow = c + i * ldc;
#pragma GCC unroll 3
        for (int v = 0; v < NV; ++v) {
            const __mmask16 mk = v == NV - 1 ? tail : __mmask16(0xFFFF);
            __m512 r = acc[i][v];
            if (ep.accumulate) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mk, crow + 16 * v));
            r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, bias), lo), hi);
            _mm512_mask_storeu_ps(crow + 16 * v, mk, r);
        }
    }
}
#endif

}  // namespace

namespace {

template <class B>
void packed_generic(std::int64_t m, std::int64_t n, std::int64_t k, const float* a_packed, B b, float* c,
                    std::int64_t ldc, const gemm_epilogue& ep) {
    const std::int64_t ps = ep.a_panel_stride > 0 ? ep.a_panel_stride : k * gemm_mr;
    for (std::int64_t i = 0; i < m; i += gemm_mr) {
        const float* ap = a_packed + (i / gemm_mr) * ps;
        const std::int64_t mr = std::min(gemm_mr, m - i);
        for (std::int64_t j = 0; j < n; j += gemm_nr)
            tile_generic(k, ap, b.shifted(j), c + i * ldc + j, ldc, mr, std::min(gemm_nr, n - j), ep, i);
    }
}

template <class B>
void packed_dispatch(std::int64_t m, std::int64_t n, std::int64_t k, const float* a_packed, B b, float* c,
                     std::int64_t ldc, const gemm_epilogue& ep) {
#if defined(__AVX512F__)
    const std::int64_t nfull = n / gemm_nr * gemm_nr;
    const std::int64_t rem = n - nfull;
    const int rem_vecs = static_cast<int>((rem + 15) / 16);
    const __mmask16 rem_mask =
        rem == 0 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (rem - (rem_vecs - 1) * 16)) - 1u);
    const std::int64_t ps = ep.a_panel_stride > 0 ? ep.a_panel_stride : k * gemm_mr;
    for (std::int64_t i = 0; i < m; i += gemm_mr) {
        const float* ap = a_packed + (i / gemm_mr) * ps;
        const std::int64_t mr = std::min(gemm_mr, m - i);
        float* crow = c + i * ldc;
        for (std::int64_t j = 0; j < nfull; j += gemm_nr)
            tile_avx512<3>(k, ap, b.shifted(j), crow + j, ldc, mr, 0xFFFF, ep, i);
        if (rem_vecs == 3)
            tile_avx512<3>(k, ap, b.shifted(nfull), crow + nfull, ldc, mr, rem_mask, ep, i);
        else if (rem_vecs == 2)
            tile_avx512<2>(k, ap, b.shifted(nfull), crow + nfull, ldc, mr, rem_mask, ep, i);
        else if (rem_vecs == 1)
            tile_avx512<1>(k, ap, b.shifted(nfull), crow + nfull, ldc, mr, rem_mask, ep, i);
    }
#else
    packed_generic(m, n, k, a_packed, b, c, ldc, ep);
#endif
}

}  // namespace

void gemm_packed_generic(std::int64_t m, std::int64_t n, std::int64_t k, const float* a_packed, const float* b,
                         std::int64_t ldb, float* c, std::int64_t ldc, const gemm_epilogue& ep) {
    packed_generic(m, n, k, a_packed, b_direct{b, ldb}, c, ldc, ep);
}

bool gemm_has_avx512() noexcept {
#if defined(__AVX512F__)
    return true;
#else
    return false;
#endif
}

void gemm_packed(std::int64_t m, std::int64_t n, std::int64_t k, const float* a_packed, const float* b,
                 std::int64_t ldb, float* c, std::int64_t ldc, const gemm_epilogue& ep) {
    packed_dispatch(m, n, k, a_packed, b_direct{b, ldb}, c, ldc, ep);
}

void gemm_packed_indirect(std::int64_t m, std::int64_t n, std::int64_t k, const float* a_packed,
                          const float* const* b_rows, std::int64_t b_col0, float* c, std::int64_t ldc,
                          const gemm_epilogue& ep) {
    packed_dispatch(m, n, k, a_packed, b_indirect{b_rows, b_col0}, c, ldc, ep);
}

}  // namespace detail

void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
          std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        for (std::int64_t i = 0; i < m; ++i)
            for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    // Pack all of A once (shared by every task), and B^T into row-major when B is transposed.
    std::vector<float> ap(static_cast<std::size_t>(detail::packed_a_size(m, k)));
    detail::pack_a(trans_a, m, k, a, lda, alpha, ap.data());
    std::vector<float> bt;
    const float* bp = b;
    std::int64_t ldbp = ldb;
    if (trans_b) {
        bt.resize(static_cast<std::size_t>(k * n));
        for (std::int64_t j = 0; j < n; ++j)
            for (std::int64_t kk = 0; kk < k; ++kk) bt[static_cast<std::size_t>(kk * n + j)] = b[j * ldb + kk];
        bp = bt.data();
        ldbp = n;
    }
    if (beta != 0.0f && beta != 1.0f)
        for (std::int64_t i = 0; i < m; ++i)
            for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] *= beta;
    detail::gemm_epilogue ep;
    ep.accumulate = beta != 0.0f;
    // Tasks: row blocks x column tiles; a column tile of B stays in L2 while the row blocks stream past it.
    const std::int64_t nt = std::max<std::int64_t>(detail::gemm_nr, std::min<std::int64_t>(384, (65536 / std::max<std::int64_t>(k, 1)) / 16 * 16));
    const std::int64_t ncols = (n + nt - 1) / nt;
    const std::int64_t mb = 64;
    const std::int64_t nrows = (m + mb - 1) / mb;
    detail::parallel_for(ncols * nrows, [&](std::int64_t t) {
        const std::int64_t r = t % nrows, cidx = t / nrows;
        const std::int64_t i0 = r * mb, j0 = cidx * nt;
        detail::gemm_packed(std::min(mb, m - i0), std::min(nt, n - j0), k, ap.data() + i0 * k, bp + j0, ldbp,
                            c + i0 * ldc + j0, ldc, ep);
    });
}

}  // namespace quantsim
