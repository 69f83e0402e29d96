// Min/max scans with a non-finite check: the hot loop of the min-max family and the first pass of every
// histogram observer. One read of the data computes both bounds and detects NaN/Inf; each kernel has a plain
// *_ref twin that the tests compare against.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include <quantsim/config.hpp>

namespace quantsim::detail {

/// A running [min, max]; (+inf, -inf) before anything was seen.
struct minmax_pair {
    float min = std::numeric_limits<float>::infinity();
    float max = -std::numeric_limits<float>::infinity();
    void fold(float v) noexcept {
        if (v < min) min = v;
        if (v > max) max = v;
    }
};

/// Reference: folds x[0, n) into r. Returns false (r then unspecified) when an element is NaN or infinite.
inline bool scan_minmax_ref(const float* x, std::size_t n, minmax_pair& r) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(x[i])) return false;
        r.fold(x[i]);
    }
    return true;
}

#if defined(__AVX512F__)
// Masked forms with an explicit source: GCC 12's unmasked ones pass an "undefined" vector that trips
// -Wmaybe-uninitialized in every file that includes this header.
QUANTSIM_ALWAYS_INLINE __m512 vmin(__m512 a, __m512 b) noexcept {
    return _mm512_mask_min_ps(a, 0xFFFF, a, b);
}
QUANTSIM_ALWAYS_INLINE __m512 vmax(__m512 a, __m512 b) noexcept {
    return _mm512_mask_max_ps(a, 0xFFFF, a, b);
}
QUANTSIM_ALWAYS_INLINE float hmin(__m512 a) noexcept {
    alignas(64) float v[16];
    _mm512_store_ps(v, a);
    float m = v[0];
    for (int i = 1; i < 16; ++i) m = v[i] < m ? v[i] : m;
    return m;
}
QUANTSIM_ALWAYS_INLINE float hmax(__m512 a) noexcept {
    alignas(64) float v[16];
    _mm512_store_ps(v, a);
    float m = v[0];
    for (int i = 1; i < 16; ++i) m = v[i] > m ? v[i] : m;
    return m;
}

inline bool scan_minmax_avx512(const float* QUANTSIM_RESTRICT x, std::size_t n, minmax_pair& r) noexcept {
    const __m512 pinf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
    const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    __m512 mn0 = pinf, mn1 = pinf, mn2 = pinf, mn3 = pinf;
    __m512 mx0 = ninf, mx1 = ninf, mx2 = ninf, mx3 = ninf;
    __mmask16 nan = 0;  // Inf shows up in the bounds themselves; NaN is dropped by vminps, so test it apart
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        const __m512 c = _mm512_loadu_ps(x + i + 32), d = _mm512_loadu_ps(x + i + 48);
        nan |= _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(c, d, _CMP_UNORD_Q);
        mn0 = vmin(mn0, a), mx0 = vmax(mx0, a);
        mn1 = vmin(mn1, b), mx1 = vmax(mx1, b);
        mn2 = vmin(mn2, c), mx2 = vmax(mx2, c);
        mn3 = vmin(mn3, d), mx3 = vmax(mx3, d);
    }
    for (; i + 16 <= n; i += 16) {
        const __m512 a = _mm512_loadu_ps(x + i);
        nan |= _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
        mn0 = vmin(mn0, a), mx0 = vmax(mx0, a);
    }
    if (i < n) {
        const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
        const __m512 a = _mm512_maskz_loadu_ps(m, x + i);
        nan |= _mm512_mask_cmp_ps_mask(m, a, a, _CMP_UNORD_Q);
        mn1 = _mm512_mask_min_ps(mn1, m, mn1, a), mx1 = _mm512_mask_max_ps(mx1, m, mx1, a);
    }
    const float bmin = hmin(vmin(vmin(mn0, mn1), vmin(mn2, mn3)));
    const float bmax = hmax(vmax(vmax(mx0, mx1), vmax(mx2, mx3)));
    if (nan || std::isinf(bmin) || std::isinf(bmax)) return n == 0;
    r.fold(bmin);
    r.fold(bmax);
    return true;
}
#endif

#if defined(__AVX2__)
inline bool scan_minmax_avx2(const float* QUANTSIM_RESTRICT x, std::size_t n, minmax_pair& r) noexcept {
    const __m256 pinf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
    const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    __m256 mn0 = pinf, mn1 = pinf, mx0 = ninf, mx1 = ninf, nan = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
        mn0 = _mm256_min_ps(mn0, a), mx0 = _mm256_max_ps(mx0, a);
        mn1 = _mm256_min_ps(mn1, b), mx1 = _mm256_max_ps(mx1, b);
    }
    alignas(32) float lo[8], hi[8];
    _mm256_store_ps(lo, _mm256_min_ps(mn0, mn1));
    _mm256_store_ps(hi, _mm256_max_ps(mx0, mx1));
    if (_mm256_movemask_ps(nan)) return false;
    minmax_pair b;
    if (i > 0)
        for (int j = 0; j < 8; ++j) b.fold(lo[j]), b.fold(hi[j]);
    if (!scan_minmax_ref(x + i, n - i, b)) return false;
    if (n == 0) return true;
    if (std::isinf(b.min) || std::isinf(b.max)) return false;
    r.fold(b.min), r.fold(b.max);
    return true;
}
#endif

/// Folds x[0, n) into r; false when an element is NaN or infinite (r is then left unchanged).
inline bool scan_minmax(const float* x, std::size_t n, minmax_pair& r) noexcept {
#if defined(__AVX512F__)
    return scan_minmax_avx512(x, n, r);
#elif defined(__AVX2__)
    return scan_minmax_avx2(x, n, r);
#else
    minmax_pair b;
    if (!scan_minmax_ref(x, n, b)) return false;
    if (n) r.fold(b.min), r.fold(b.max);
    return true;
#endif
}

/// Per-channel bounds of x viewed as [outer, channels, inner]: folds channel c into r[c]. False on NaN/Inf
/// (r then partially updated; callers pass scratch bounds and commit them only on success).
inline bool scan_channel_minmax_ref(const float* x, std::int64_t outer, std::int64_t channels, std::int64_t inner,
                                    minmax_pair* r) noexcept {
    for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t c = 0; c < channels; ++c)
            if (!scan_minmax_ref(x + (o * channels + c) * inner, static_cast<std::size_t>(inner), r[c])) return false;
    return true;
}

inline bool scan_channel_minmax(const float* x, std::int64_t outer, std::int64_t channels, std::int64_t inner,
                                minmax_pair* r) {
    if (inner >= 16 || outer == 1) {
        // Long contiguous runs per channel: the vector scan per run.
        for (std::int64_t o = 0; o < outer; ++o)
            for (std::int64_t c = 0; c < channels; ++c)
                if (!scan_minmax(x + (o * channels + c) * inner, static_cast<std::size_t>(inner), r[c])) return false;
        return true;
    }
    // Short runs (channel axis last or nearly): element-wise bounds over rows of channels*inner, which the
    // compiler vectorizes, then fold each channel's inner positions.
    const std::size_t len = static_cast<std::size_t>(channels * inner);
    std::vector<float> lo(len, std::numeric_limits<float>::infinity());
    std::vector<float> hi(len, -std::numeric_limits<float>::infinity());
    std::vector<float> bad(len, 0.0f);  // x * 0 is 0 for finite x and NaN for NaN/Inf
    float* QUANTSIM_RESTRICT plo = lo.data();
    float* QUANTSIM_RESTRICT phi = hi.data();
    float* QUANTSIM_RESTRICT pbad = bad.data();
    for (std::int64_t o = 0; o < outer; ++o) {
        const float* QUANTSIM_RESTRICT row = x + static_cast<std::size_t>(o) * len;
        for (std::size_t j = 0; j < len; ++j) {
            const float v = row[j];
            plo[j] = v < plo[j] ? v : plo[j];
            phi[j] = v > phi[j] ? v : phi[j];
            pbad[j] += v * 0.0f;
        }
    }
    for (std::size_t j = 0; j < len; ++j)
        if (!(pbad[j] == 0.0f) || std::isinf(plo[j]) || std::isinf(phi[j])) return false;
    for (std::int64_t c = 0; c < channels; ++c)
        for (std::int64_t i = 0; i < inner; ++i) {
            r[c].fold(lo[static_cast<std::size_t>(c * inner + i)]);
            r[c].fold(hi[static_cast<std::size_t>(c * inner + i)]);
        }
    return true;
}

}  // namespace quantsim::detail
