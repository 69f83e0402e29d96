// AVX-512 versions of the TFLite fixed-point arithmetic in sim/integer_arith.hpp (tflite_multiply): 16 int32 lanes,
// bit-identical to the scalar functions, which the tests compare them against. Only included by the integer
// executor's sources, inside their AVX-512 sections.
#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>
// GCC 12 warns about _mm512_undefined_*() inside the intrinsics once they are inlined (a known false positive);
// like the integer sources, the files that include this header silence it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cstdint>

#include <quantsim/sim/integer_arith.hpp>

namespace quantsim::detail {

/// saturating_rounding_doubling_high_mul(a, m) on 8 lanes of int64 holding int32 values (m is not INT32_MIN, so the
/// saturating case never arises): (a * m + nudge) / 2^31 truncated toward zero, nudge = 2^30 or 1 - 2^30 by sign.
inline __m512i srdhm_epi64(__m512i a, __m512i m) noexcept {
    const __m512i ab = _mm512_mul_epi32(a, m);  // signed 32 x 32 -> 64 of the low halves
    const __mmask8 neg = _mm512_cmplt_epi64_mask(ab, _mm512_setzero_si512());
    const __m512i q = _mm512_add_epi64(
        ab, _mm512_mask_blend_epi64(neg, _mm512_set1_epi64(std::int64_t{1} << 30), _mm512_set1_epi64(1 - (std::int64_t{1} << 30))));
    // Division truncating toward zero: add 2^31 - 1 to negative values before the arithmetic shift.
    const __m512i biased = _mm512_mask_add_epi64(q, _mm512_cmplt_epi64_mask(q, _mm512_setzero_si512()), q,
                                                 _mm512_set1_epi64((std::int64_t{1} << 31) - 1));
    return _mm512_srai_epi64(biased, 31);
}

/// tflite_multiply(x, m) on 16 int32 lanes. Callers check m.multiplier != INT32_MIN.
inline __m512i tflite_multiply_epi32(__m512i x, const fixed_multiplier& m) noexcept {
    const int left = m.shift > 0 ? m.shift : 0;
    const int right = m.shift > 0 ? 0 : -m.shift;
    const __m512i shifted = _mm512_sllv_epi32(x, _mm512_set1_epi32(left));  // wraps like the int64 -> int32 cast
    const __m512i vm = _mm512_set1_epi64(m.multiplier);
    const __m512i lo = srdhm_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(shifted)), vm);
    const __m512i hi = srdhm_epi64(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(shifted, 1)), vm);
    const __m512i h = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(lo)), _mm512_cvtepi64_epi32(hi), 1);
    // rounding_divide_by_pot(h, right): ties away from zero.
    const std::int32_t mask = static_cast<std::int32_t>((std::int64_t{1} << right) - 1);
    const __m512i vmask = _mm512_set1_epi32(mask);
    const __m512i rem = _mm512_and_si512(h, vmask);
    const __m512i threshold = _mm512_mask_add_epi32(_mm512_set1_epi32(mask >> 1),
                                                    _mm512_cmplt_epi32_mask(h, _mm512_setzero_si512()),
                                                    _mm512_set1_epi32(mask >> 1), _mm512_set1_epi32(1));
    const __m512i shifted_down = _mm512_srav_epi32(h, _mm512_set1_epi32(right));
    return _mm512_mask_add_epi32(shifted_down, _mm512_cmpgt_epi32_mask(rem, threshold), shifted_down,
                                 _mm512_set1_epi32(1));
}

}  // namespace quantsim::detail

#endif
