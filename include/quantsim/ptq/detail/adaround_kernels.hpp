// The per-iteration loops of AdaRound, written to vectorize: the soft weights h(V) -> W~ and the gradient + Adam
// step over all weights of a row block (branch-free, with an exp/log that the compiler can vectorize, where
// std::exp / std::pow are scalar library calls: ~50 ns per weight per iteration, a minute over the classifier),
// and the dot-product GEMM of the backward pass. adaround_math.hpp keeps the scalar reference versions that the
// tests compare against.
#pragma once

#include <bit>
#include <cstdint>

#include <quantsim/config.hpp>
#include <quantsim/ptq/detail/adaround_math.hpp>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace quantsim::detail {

/// exp(x) for float, branch-free (vectorizes): 2^n * e^r with |r| <= ln2/2 and a degree-7 Taylor polynomial
/// (truncation error < 1e-8 relative, i.e. within ~2 ulp of std::exp). x is clamped to [-87, 88]: the results
/// stay normal and finite, which is all the sigmoid below needs.
inline float adaround_exp(float x) noexcept {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    // Round to nearest by adding and subtracting 1.5 * 2^23 (no rounding call, so the loops vectorize).
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    // r = x - n ln2 with ln2 split in a high part exact in float and the rest.
    const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const std::int32_t e = (static_cast<std::int32_t>(n) + 127) << 23;
    return p * std::bit_cast<float>(e);
}

/// log(x) for finite x > 0 (normal numbers), branch-free: x = m 2^e with m in [sqrt(1/2), sqrt(2)),
/// log m = 2 atanh(u), u = (m - 1) / (m + 1), |u| <= 0.172, series to u^9 (error < 1e-9).
inline float adaround_log(float x) noexcept {
    const std::int32_t bits = std::bit_cast<std::int32_t>(x);
    // Exponent relative to sqrt(1/2): subtracting the bits of 0.70710677 puts m's top bits in the carry.
    const std::int32_t off = bits - 0x3f3504f3;
    const std::int32_t e = off >> 23;
    const float m = std::bit_cast<float>(bits - (e << 23));
    const float u = (m - 1.0f) / (m + 1.0f);
    const float u2 = u * u;
    float s = 1.0f / 9;
    s = s * u2 + 1.0f / 7;
    s = s * u2 + 1.0f / 5;
    s = s * u2 + 1.0f / 3;
    s = s * u2 + 1.0f;
    return 2.0f * u * s + static_cast<float>(e) * 0.693147180559945309f;
}

#if defined(__AVX512F__)
// GCC 12 reports the deliberately undefined pass-through operand inside the unmasked AVX-512 intrinsics
// (_mm512_undefined_ps) as maybe-uninitialized once they are inlined; it says nothing about this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
inline __m512 adaround_max16(__m512 a, __m512 b) noexcept { return _mm512_max_ps(a, b); }
inline __m512 adaround_min16(__m512 a, __m512 b) noexcept { return _mm512_min_ps(a, b); }

// 16-lane versions of adaround_exp and adaround_log (same method; scalef / getexp / getmant do the 2^n parts).
inline __m512 adaround_exp16(__m512 x) noexcept {
    x = adaround_min16(adaround_max16(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    for (const float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f})
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    return _mm512_scalef_ps(p, n);
}
inline __m512 adaround_log16(__m512 x) noexcept {
    __m512 e = _mm512_getexp_ps(x);
    __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
    const __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356237309505f), _CMP_GT_OQ);
    m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
    e = _mm512_mask_add_ps(e, big, e, _mm512_set1_ps(1.0f));
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 u = _mm512_div_ps(_mm512_sub_ps(m, one), _mm512_add_ps(m, one));
    const __m512 u2 = _mm512_mul_ps(u, u);
    __m512 sr = _mm512_set1_ps(1.0f / 9);
    for (const float c : {1.0f / 7, 1.0f / 5, 1.0f / 3, 1.0f}) sr = _mm512_fmadd_ps(sr, u2, _mm512_set1_ps(c));
    return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693147180559945309f), _mm512_mul_ps(_mm512_add_ps(u, u), sr));
}
inline __mmask16 adaround_lanes(std::int64_t left) noexcept {
    return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}
#endif

/// Soft weights of n consecutive weights: sig = sigmoid(V), h = h(V), W~ = s * clamp(b0 + h, lo, hi).
inline void adaround_soft_weights(std::int64_t n, const float* QUANTSIM_RESTRICT v, const float* QUANTSIM_RESTRICT s,
                                  const float* QUANTSIM_RESTRICT b0, const float* QUANTSIM_RESTRICT lo,
                                  const float* QUANTSIM_RESTRICT hi, float* QUANTSIM_RESTRICT wt,
                                  float* QUANTSIM_RESTRICT h, float* QUANTSIM_RESTRICT sig) noexcept {
    std::int64_t i = 0;
#if defined(__AVX512F__)
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    for (; i < n; i += 16) {
        const __mmask16 k = adaround_lanes(n - i);
        const __m512 vv = _mm512_maskz_loadu_ps(k, v + i);
        const __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, adaround_exp16(_mm512_sub_ps(zero, vv))));
        __m512 r = _mm512_fmadd_ps(sg, _mm512_set1_ps(adaround_zeta - adaround_gamma), _mm512_set1_ps(adaround_gamma));
        r = adaround_min16(adaround_max16(r, zero), one);
        __m512 q = _mm512_add_ps(_mm512_maskz_loadu_ps(k, b0 + i), r);
        q = adaround_min16(adaround_max16(q, _mm512_maskz_loadu_ps(k, lo + i)), _mm512_maskz_loadu_ps(k, hi + i));
        _mm512_mask_storeu_ps(sig + i, k, sg);
        _mm512_mask_storeu_ps(h + i, k, r);
        _mm512_mask_storeu_ps(wt + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + i), q));
    }
#endif
    for (; i < n; ++i) {
        const float sg = 1.0f / (1.0f + adaround_exp(-v[i]));
        float r = sg * (adaround_zeta - adaround_gamma) + adaround_gamma;
        r = r < 0.0f ? 0.0f : (r > 1.0f ? 1.0f : r);
        float q = b0[i] + r;
        q = q < lo[i] ? lo[i] : (q > hi[i] ? hi[i] : q);
        sig[i] = sg;
        h[i] = r;
        wt[i] = s[i] * q;
    }
}

/// dLoss/dV from dLoss/dW~ (gw), the regularizer reg * d/dh (1 - |2h - 1|^beta) (reg = 0: none) and the
/// rectified sigmoid, then one Adam step on V (m, a2: first and second moments). Same math as adaround_dh,
/// adaround_dreg and adam_update; |t|^(beta-1) as exp((beta-1) log|t|).
inline void adaround_grad_adam(std::int64_t n, const float* QUANTSIM_RESTRICT gw, const float* QUANTSIM_RESTRICT h,
                               const float* QUANTSIM_RESTRICT sig, const float* QUANTSIM_RESTRICT s,
                               const float* QUANTSIM_RESTRICT b0, const float* QUANTSIM_RESTRICT lo,
                               const float* QUANTSIM_RESTRICT hi, float reg, float beta, const adam_coefficients& c,
                               float* QUANTSIM_RESTRICT v, float* QUANTSIM_RESTRICT m,
                               float* QUANTSIM_RESTRICT a2) noexcept {
    const float bm1 = beta - 1.0f, coef = -2.0f * beta * reg;
    constexpr float tiny = 1e-30f;  // keeps log's argument normal; tiny^(beta-1) is 0 for the betas used (>= 1)
    std::int64_t i = 0;
#if defined(__AVX512F__)
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    const __m512 zg = _mm512_set1_ps(adaround_zeta - adaround_gamma);
    for (; i < n; i += 16) {
        const __mmask16 k = adaround_lanes(n - i);
        const __m512 hv = _mm512_maskz_loadu_ps(k, h + i);
        const __m512 qs = _mm512_add_ps(_mm512_maskz_loadu_ps(k, b0 + i), hv);
        const __mmask16 inside = _mm512_cmp_ps_mask(qs, _mm512_maskz_loadu_ps(k, lo + i), _CMP_GT_OQ) &
                                 _mm512_cmp_ps_mask(qs, _mm512_maskz_loadu_ps(k, hi + i), _CMP_LT_OQ);
        __m512 g = _mm512_maskz_mul_ps(inside, _mm512_maskz_loadu_ps(k, gw + i), _mm512_maskz_loadu_ps(k, s + i));
        if (reg != 0.0f) {
            const __m512 t = _mm512_fmsub_ps(_mm512_set1_ps(2.0f), hv, one);
            const __m512 at = adaround_max16(_mm512_abs_ps(t), _mm512_set1_ps(tiny));
            const __m512 pw = adaround_exp16(_mm512_mul_ps(_mm512_set1_ps(bm1), adaround_log16(at)));
            const __mmask16 pos = _mm512_cmp_ps_mask(t, zero, _CMP_GT_OQ), neg = _mm512_cmp_ps_mask(t, zero, _CMP_LT_OQ);
            __m512 dr = _mm512_maskz_mul_ps(pos, pw, _mm512_set1_ps(coef));
            dr = _mm512_mask_mul_ps(dr, neg, pw, _mm512_set1_ps(-coef));
            g = _mm512_add_ps(g, dr);
        }
        const __m512 sg = _mm512_maskz_loadu_ps(k, sig + i);
        const __m512 r = _mm512_fmadd_ps(sg, zg, _mm512_set1_ps(adaround_gamma));
        const __mmask16 open = _mm512_cmp_ps_mask(r, zero, _CMP_GT_OQ) & _mm512_cmp_ps_mask(r, one, _CMP_LT_OQ);
        const __m512 dh = _mm512_maskz_mul_ps(open, _mm512_mul_ps(zg, sg), _mm512_sub_ps(one, sg));
        g = _mm512_mul_ps(g, dh);
        const __m512 mi = _mm512_fmadd_ps(_mm512_set1_ps(0.9f), _mm512_maskz_loadu_ps(k, m + i), _mm512_mul_ps(_mm512_set1_ps(0.1f), g));
        const __m512 ai = _mm512_fmadd_ps(_mm512_set1_ps(0.999f), _mm512_maskz_loadu_ps(k, a2 + i),
                                          _mm512_mul_ps(_mm512_set1_ps(0.001f), _mm512_mul_ps(g, g)));
        const __m512 den = _mm512_fmadd_ps(_mm512_sqrt_ps(ai), _mm512_set1_ps(c.inv_sqrt_bc2), _mm512_set1_ps(1e-8f));
        const __m512 vn = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, v + i),
                                        _mm512_div_ps(_mm512_mul_ps(_mm512_set1_ps(c.lr_corrected), mi), den));
        _mm512_mask_storeu_ps(m + i, k, mi);
        _mm512_mask_storeu_ps(a2 + i, k, ai);
        _mm512_mask_storeu_ps(v + i, k, vn);
    }
#endif
    for (; i < n; ++i) {
        const float hv = h[i];
        const float qs = b0[i] + hv;
        float g = (qs > lo[i] && qs < hi[i]) ? gw[i] * s[i] : 0.0f;
        if (reg != 0.0f) {
            const float t = 2.0f * hv - 1.0f;
            const float at = t < 0.0f ? -t : t;
            const float pw = adaround_exp(bm1 * adaround_log(at > tiny ? at : tiny));
            g += t == 0.0f ? 0.0f : (t > 0.0f ? coef * pw : -coef * pw);
        }
        const float sg = sig[i];
        const float r = sg * (adaround_zeta - adaround_gamma) + adaround_gamma;
        g *= (r > 0.0f && r < 1.0f) ? (adaround_zeta - adaround_gamma) * sg * (1.0f - sg) : 0.0f;
        adam_update(v[i], m[i], a2[i], g, c);
    }
}

/// G (R x K, row stride ldg) = D (R x P, row stride ldd) * X^T, X K x P (row stride ldx): every output is a dot
/// product of two contiguous rows. The plain version (reference for the tests).
inline void adaround_gemm_nt_ref(std::int64_t rows, std::int64_t k, std::int64_t p, const float* d, std::int64_t ldd,
                                 const float* x, std::int64_t ldx, float* g, std::int64_t ldg) noexcept {
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t kk = 0; kk < k; ++kk) {
            double acc = 0;
            for (std::int64_t j = 0; j < p; ++j) acc += static_cast<double>(d[r * ldd + j]) * x[kk * ldx + j];
            g[r * ldg + kk] = static_cast<float>(acc);
        }
}

/// Same as adaround_gemm_nt_ref: 4 x 4 blocks of dot products with 16-lane accumulators (AVX-512 when compiled
/// for it). The packed GEMM would first transpose X for every row block, every iteration.
inline void adaround_gemm_nt(std::int64_t rows, std::int64_t k, std::int64_t p, const float* d, std::int64_t ldd,
                             const float* x, std::int64_t ldx, float* g, std::int64_t ldg) noexcept {
#if defined(__AVX512F__)
    const std::int64_t pv = p / 16 * 16;
    const __mmask16 tail = static_cast<__mmask16>((1u << (p - pv)) - 1u);
    std::int64_t r = 0;
    for (; r < rows; r += 4) {
        const std::int64_t nr = rows - r < 4 ? rows - r : 4;
        for (std::int64_t kk = 0; kk < k; kk += 4) {
            const std::int64_t nk = k - kk < 4 ? k - kk : 4;
            __m512 acc[4][4];
            for (auto& row : acc)
                for (auto& a : row) a = _mm512_setzero_ps();
            const float* dr[4];
            const float* xr[4];
            for (int i = 0; i < 4; ++i) dr[i] = d + (r + (i < nr ? i : 0)) * ldd;
            for (int i = 0; i < 4; ++i) xr[i] = x + (kk + (i < nk ? i : 0)) * ldx;
            for (std::int64_t j = 0; j <= p - 16; j += 16) {
                const __m512 x0 = _mm512_loadu_ps(xr[0] + j), x1 = _mm512_loadu_ps(xr[1] + j);
                const __m512 x2 = _mm512_loadu_ps(xr[2] + j), x3 = _mm512_loadu_ps(xr[3] + j);
                for (int i = 0; i < 4; ++i) {
                    const __m512 dv = _mm512_loadu_ps(dr[i] + j);
                    acc[i][0] = _mm512_fmadd_ps(dv, x0, acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(dv, x1, acc[i][1]);
                    acc[i][2] = _mm512_fmadd_ps(dv, x2, acc[i][2]);
                    acc[i][3] = _mm512_fmadd_ps(dv, x3, acc[i][3]);
                }
            }
            if (pv < p) {
                __m512 xt[4];
                for (int q = 0; q < 4; ++q) xt[q] = _mm512_maskz_loadu_ps(tail, xr[q] + pv);
                for (int i = 0; i < 4; ++i) {
                    const __m512 dv = _mm512_maskz_loadu_ps(tail, dr[i] + pv);
                    for (int q = 0; q < 4; ++q) acc[i][q] = _mm512_fmadd_ps(dv, xt[q], acc[i][q]);
                }
            }
            for (std::int64_t i = 0; i < nr; ++i)
                for (std::int64_t q = 0; q < nk; ++q) g[(r + i) * ldg + kk + q] = _mm512_reduce_add_ps(acc[i][q]);
        }
    }
#else
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t kk = 0; kk < k; ++kk) {
            float lanes[16] = {};
            const float* dr = d + r * ldd;
            const float* xr = x + kk * ldx;
            std::int64_t j = 0;
            for (; j + 16 <= p; j += 16)
                for (int l = 0; l < 16; ++l) lanes[l] += dr[j + l] * xr[j + l];
            for (; j < p; ++j) lanes[0] += dr[j] * xr[j];
            float s = 0;
            for (float l : lanes) s += l;
            g[r * ldg + kk] = s;
        }
#endif
}

#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace quantsim::detail
