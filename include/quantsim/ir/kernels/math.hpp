// Branch-free float math for kernel loops. std::exp and friends do not vectorize without -ffast-math (errno), and
// a scalar expf per element costs more than the memory traffic of a softmax; these inline versions vectorize with
// the loop around them. Accuracy: exp within 2 ulp on [-87, 88], erf within 1.5e-7 absolute (tests check both
// against std::).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// Loops in kernels marked QUANTSIM_WIDE_VECTORS auto-vectorize with 512-bit vectors when the target has AVX-512
// (GCC defaults to 256-bit on Ice Lake and later).
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#define QUANTSIM_WIDE_VECTORS __attribute__((target("prefer-vector-width=512")))
#else
#define QUANTSIM_WIDE_VECTORS
#endif

namespace quantsim::detail {

/// e^x for finite x; 0 below -87.3, saturates at ~2.4e38 above 88.38. NaN in gives NaN out.
inline float fast_exp(float x) noexcept {
    constexpr float log2e = 1.44269504088896341f;
    constexpr float ln2_hi = 0.693359375f;
    constexpr float ln2_lo = -2.12194440e-4f;
    const bool nan = x != x;
    const float in = x;
    x = nan ? 0.0f : x;
    x = x < -87.3365447f ? -87.3365447f : x;
    x = x > 88.3762626647949f ? 88.3762626647949f : x;
    // Round to nearest with the 1.5 * 2^23 trick: vectorizes where std::floor/nearbyint do not (no -ffast-math).
    const float n = (x * log2e + 12582912.0f) - 12582912.0f;
    const float r = x - n * ln2_hi - n * ln2_lo;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * r * r + r + 1.0f;
    // 2^n in two halves so that n = 128 (x near the top of the range) does not overflow the exponent field.
    const std::int32_t ni = static_cast<std::int32_t>(n);
    const std::int32_t h = ni >> 1;
    const float s1 = std::bit_cast<float>((h + 127) << 23);
    const float s2 = std::bit_cast<float>((ni - h + 127) << 23);
    const float out = y * s1 * s2;
    return nan ? in : (in < -87.3365447f ? 0.0f : out);
}

inline float fast_sigmoid(float x) noexcept { return 1.0f / (1.0f + fast_exp(-x)); }

/// tanh via exp; near zero the odd Taylor series keeps the relative error small.
inline float fast_tanh(float x) noexcept {
    const float ax = std::fabs(x);
    const float e = fast_exp(-2.0f * ax);
    float t = (1.0f - e) / (1.0f + e);
    const float x2 = x * x;
    const float small = ax * (1.0f + x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f))));
    t = ax < 0.0625f ? small : t;
    return std::copysign(t, x);
}

/// erf with the Abramowitz-Stegun 7.1.26 rational approximation (|error| < 1.5e-7).
inline float fast_erf(float x) noexcept {
    const float ax = std::fabs(x);
    const float t = 1.0f / (1.0f + 0.3275911f * ax);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    const float y = 1.0f - p * t * fast_exp(-ax * ax);
    return std::copysign(y, x);
}

/// Sum and maximum of a contiguous array (NaN propagates through max_of). Horizontal reductions of float loops do
/// not vectorize without -ffast-math, so these spell the vector code out.
#if defined(__AVX512F__)
// Horizontal sum and max of 16 lanes, pairwise in halves (the order of _mm512_reduce_add_ps). Written out because
// GCC 12's reduce intrinsics start from _mm512_undefined and trip -Wmaybe-uninitialized in every caller.
inline float hsum16(__m512 v) noexcept {
    alignas(64) float t[16];
    _mm512_store_ps(t, v);
    for (int w = 8; w >= 1; w /= 2)
        for (int i = 0; i < w; ++i) t[i] += t[i + w];
    return t[0];
}
inline float hmax16(__m512 v) noexcept {
    alignas(64) float t[16];
    _mm512_store_ps(t, v);
    for (int w = 8; w >= 1; w /= 2)
        for (int i = 0; i < w; ++i) t[i] = t[i] > t[i + w] ? t[i] : t[i + w];
    return t[0];
}
#endif

inline float sum_of(const float* x, std::int64_t n) noexcept {
    std::int64_t i = 0;
    float s = 0.0f;
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
    }
    if (i + 16 <= n) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
        i += 16;
    }
    s = detail::hsum16(_mm512_add_ps(a0, a1));
#endif
    for (; i < n; ++i) s += x[i];
    return s;
}

inline float max_of(const float* x, std::int64_t n) noexcept {
    std::int64_t i = 0;
    float m = -std::numeric_limits<float>::infinity();
    bool nan = false;
#if defined(__AVX512F__)
    __m512 a = _mm512_set1_ps(m);
    __mmask16 bad = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        a = _mm512_mask_max_ps(a, __mmask16(0xFFFF), a, v);  // masked form: the plain one trips GCC 12 -Wmaybe-uninitialized
    }
    m = detail::hmax16(a);
    nan = bad != 0;
#endif
    for (; i < n; ++i) {
        nan = nan || x[i] != x[i];
        m = x[i] > m ? x[i] : m;
    }
    return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

}  // namespace quantsim::detail
