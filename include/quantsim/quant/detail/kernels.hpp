// The vectorizable run kernels behind fake_quant / quantize / dequantize. A "run" is a contiguous stretch of
// elements whose encodings are either one encoding (const_view) or one per element (array_view).
//
// Every kernel computes exactly what the plain reference (quant/reference.hpp) computes; the two tricks it relies
// on are exact:
//  * clamp before rounding: round(clamp(v, lo, hi)) == clamp(round(v), lo, hi) for integer lo, hi and any monotone
//    rounding that keeps integers (all five modes); lo = qmin - zp, hi = qmax - zp.
//  * magic-number rounding: for |v| < 2^22 (float) / 2^51 (double), (v + 1.5 * 2^23) - 1.5 * 2^23 is v rounded to
//    nearest-even in the default FP environment. The clamp guarantees the bound (|lo|, |hi| <= 2^17 for 16-bit
//    grids in float; 32-bit grids compute in double). Floor, ceil, half-away and stochastic follow from it with
//    compares, so every mode vectorizes (GCC does not vectorize std::floor without -fno-trapping-math), and no mode
//    yields -0 (results are (q - zp) * scale with integer q, as in the reference).
// NaN passes through the clamps (comparisons with NaN are false) and through the rounding, so fake-quant
// propagates it; +-Inf clamps to the grid ends.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <quantsim/config.hpp>
#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/rounding.hpp>

namespace quantsim::detail {

/// Per-group constants of a call, structure of arrays. C is the compute type: float for grids of up to 16 bits,
/// double for 32-bit grids.
template <class C>
struct group_table {
    std::vector<C> scale, inv, lo, hi;
    std::vector<std::int32_t> zp;
    std::vector<std::int32_t> gid;  ///< the group's own index (gradients accumulate by it)

    void resize(std::size_t n) {
        scale.resize(n), inv.resize(n), lo.resize(n), hi.resize(n), zp.resize(n), gid.resize(n);
    }
    std::size_t size() const noexcept { return scale.size(); }
};

template <class C>
group_table<C> make_group_table(const quant_params& p) {
    if (p.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
        QUANTSIM_THROW(resource_error, "quant_params: ", p.size(), " encodings; at most 2^31 - 1 are supported");
    group_table<C> t;
    t.resize(p.size());
    const auto r = p.range();
    for (std::size_t i = 0; i < p.size(); ++i) {
        t.scale[i] = static_cast<C>(p.scale[i]);
        // PyTorch: inv_scale = 1.0f / scale in float; the double path (32-bit grids) uses 1.0 / scale in double.
        t.inv[i] = C(1) / static_cast<C>(p.scale[i]);
        t.lo[i] = static_cast<C>(r.qmin - p.zero_point[i]);
        t.hi[i] = static_cast<C>(r.qmax - p.zero_point[i]);
        t.zp[i] = p.zero_point[i];
        t.gid[i] = static_cast<std::int32_t>(i);
    }
    return t;
}

/// One encoding for the whole run.
template <class C>
struct const_view {
    C s_, inv_, lo_, hi_;
    std::int32_t zp_, gid_;
    QUANTSIM_ALWAYS_INLINE C s(std::int64_t) const { return s_; }
    QUANTSIM_ALWAYS_INLINE C inv(std::int64_t) const { return inv_; }
    QUANTSIM_ALWAYS_INLINE C lo(std::int64_t) const { return lo_; }
    QUANTSIM_ALWAYS_INLINE C hi(std::int64_t) const { return hi_; }
    QUANTSIM_ALWAYS_INLINE std::int32_t zp(std::int64_t) const { return zp_; }
    QUANTSIM_ALWAYS_INLINE std::int32_t gid(std::int64_t) const { return gid_; }
};
template <class C>
const_view<C> const_at(const group_table<C>& t, std::int64_t g) {
    const auto i = static_cast<std::size_t>(g);
    return {t.scale[i], t.inv[i], t.lo[i], t.hi[i], t.zp[i], t.gid[i]};
}

/// One encoding per element of the run (pointers already offset to the run's first element).
template <class C>
struct array_view {
    const C* s_;
    const C* inv_;
    const C* lo_;
    const C* hi_;
    const std::int32_t* zp_;
    const std::int32_t* gid_;
    QUANTSIM_ALWAYS_INLINE C s(std::int64_t j) const { return s_[j]; }
    QUANTSIM_ALWAYS_INLINE C inv(std::int64_t j) const { return inv_[j]; }
    QUANTSIM_ALWAYS_INLINE C lo(std::int64_t j) const { return lo_[j]; }
    QUANTSIM_ALWAYS_INLINE C hi(std::int64_t j) const { return hi_[j]; }
    QUANTSIM_ALWAYS_INLINE std::int32_t zp(std::int64_t j) const { return zp_[j]; }
    QUANTSIM_ALWAYS_INLINE std::int32_t gid(std::int64_t j) const { return gid_[j]; }
};
template <class C>
array_view<C> array_at(const group_table<C>& t, std::int64_t first) {
    const auto i = static_cast<std::size_t>(first);
    return {t.scale.data() + i, t.inv.data() + i, t.lo.data() + i, t.hi.data() + i, t.zp.data() + i, t.gid.data() + i};
}

template <class C>
QUANTSIM_ALWAYS_INLINE C round_nearest_even_fast(C v) {
    constexpr C magic = sizeof(C) == 4 ? C(0x1.8p23) : C(0x1.8p52);
    return (v + magic) - magic;
}

/// v rounded with mode R; v must already be clamped to the grid (see the header comment).
template <rounding_mode R, class C>
QUANTSIM_ALWAYS_INLINE C round_fast(C v, std::uint64_t key, std::uint64_t index) {
    const C r = round_nearest_even_fast(v);
    if constexpr (R == rounding_mode::nearest_even) {
        return r;
    } else if constexpr (R == rounding_mode::nearest_away) {
        // Exact ties have |v - r| == 0.5 exactly; v +- 0.5 is then exact too.
        return std::fabs(v - r) == C(0.5) ? v + (v > C(0) ? C(0.5) : C(-0.5)) : r;
    } else if constexpr (R == rounding_mode::floor) {
        return r > v ? r - C(1) : r;
    } else if constexpr (R == rounding_mode::ceil) {
        return r < v ? r + C(1) : r;
    } else {
        const C f = r > v ? r - C(1) : r;
        return stochastic_uniform_keyed<C>(key, index) < v - f ? f + C(1) : f;
    }
}

/// The grid value r = round(clamp(x / s, lo, hi)) of one element; fake-quant output is r * s, quantized r + zp.
template <rounding_mode R, scale_arithmetic A, class C, class P>
QUANTSIM_ALWAYS_INLINE C grid_value(C x, const P& p, std::int64_t j, std::uint64_t key, std::uint64_t index) {
    C v = A == scale_arithmetic::divide ? x / p.s(j) : x * p.inv(j);
    v = v < p.lo(j) ? p.lo(j) : v;
    v = v > p.hi(j) ? p.hi(j) : v;
    return round_fast<R, C>(v, key, index);
}

/// Fake-quant a run out of place. Element j has stochastic index idx0 + j * step.
template <rounding_mode R, scale_arithmetic A, class C, class P>
void fq_run(const float* QUANTSIM_RESTRICT x, float* QUANTSIM_RESTRICT y, std::int64_t n, const P& p,
            std::uint64_t key, std::uint64_t idx0, std::uint64_t step) {
    for (std::int64_t j = 0; j < n; ++j)
        y[j] = static_cast<float>(grid_value<R, A, C>(static_cast<C>(x[j]), p, j, key,
                                                      idx0 + static_cast<std::uint64_t>(j) * step) *
                                  p.s(j));
}

/// Fake-quant a run in place.
template <rounding_mode R, scale_arithmetic A, class C, class P>
void fq_run_inplace(float* y, std::int64_t n, const P& p, std::uint64_t key, std::uint64_t idx0, std::uint64_t step) {
    for (std::int64_t j = 0; j < n; ++j)
        y[j] = static_cast<float>(grid_value<R, A, C>(static_cast<C>(y[j]), p, j, key,
                                                      idx0 + static_cast<std::uint64_t>(j) * step) *
                                  p.s(j));
}

/// Quantize a run to integer storage. Returns true if an input was NaN (its output is then meaningless; the caller
/// reports the index).
template <rounding_mode R, scale_arithmetic A, class C, class OutT, class P>
bool quantize_run(const float* QUANTSIM_RESTRICT x, OutT* QUANTSIM_RESTRICT q, std::int64_t n, const P& p,
                  std::uint64_t key, std::uint64_t idx0, std::uint64_t step) {
    using wide = std::conditional_t<sizeof(C) == 4, std::int32_t, std::int64_t>;
    int bad = 0;
    for (std::int64_t j = 0; j < n; ++j) {
        const C xv = static_cast<C>(x[j]);
        bad |= xv != xv;
        C r = grid_value<R, A, C>(xv, p, j, key, idx0 + static_cast<std::uint64_t>(j) * step);
        r = r == r ? r : C(0);  // NaN -> int is undefined; the call throws anyway
        q[j] = static_cast<OutT>(static_cast<wide>(r) + p.zp(j));
    }
    return bad != 0;
}

/// Dequantize a run: (q - zp) * s, rounded once to float. Returns true if a stored value lies outside
/// [tmin, tmax] (used for int4/uint4 storage, whose bytes can hold values the type cannot).
template <class C, class InT, class P>
bool dequantize_run(const InT* QUANTSIM_RESTRICT q, float* QUANTSIM_RESTRICT y, std::int64_t n, const P& p,
                    std::int32_t tmin, std::int32_t tmax) {
    using wide = std::conditional_t<sizeof(C) == 4, std::int32_t, std::int64_t>;
    int bad = 0;
    for (std::int64_t j = 0; j < n; ++j) {
        const std::int32_t v = static_cast<std::int32_t>(q[j]);
        bad |= (v < tmin) | (v > tmax);
        y[j] = static_cast<float>(static_cast<C>(static_cast<wide>(v) - p.zp(j)) * p.s(j));
    }
    return bad != 0;
}

}  // namespace quantsim::detail
