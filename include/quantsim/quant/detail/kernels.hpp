// The vectorizable run kernels behind fake_quant / quantize / dequantize. A "run" is a contiguous stretch of
// elements whose encodings are either one encoding (const_view) or one per element (array_view). The fq_run_nt*
// kernels (GCC/Clang on AVX) are the streaming-store variants for large outputs (see detail/stream_store.hpp).
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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <new>
#include <type_traits>
#include <vector>

#include <quantsim/config.hpp>
#include <quantsim/quant/detail/stream_store.hpp>
#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/rounding.hpp>

namespace quantsim::detail {

/// 64-byte aligned storage for per-element group arrays (vector loads never split cache lines).
template <class T>
struct aligned_allocator {
    using value_type = T;
    aligned_allocator() = default;
    template <class U>
    aligned_allocator(const aligned_allocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{64}); }
    template <class U>
    bool operator==(const aligned_allocator<U>&) const noexcept { return true; }
};
template <class T>
using aligned_vector = std::vector<T, aligned_allocator<T>>;

/// Per-group constants of a call, structure of arrays. C is the compute type: float for grids of up to 16 bits,
/// double for 32-bit grids. Layouts whose runs use one group at a time (per tensor, long per-channel rows, per-block)
/// do not need the arrays: a sparse table computes each group's constants when a run starts (make_group_table with
/// dense = false), which saves allocating and filling 24 bytes per group for per-block weights.
template <class C>
struct group_table {
    aligned_vector<C> scale, inv, lo, hi;
    aligned_vector<std::int32_t> zp;
    aligned_vector<std::int32_t> gid;  ///< the group's own index (gradients accumulate by it)
    const quant_params* params = nullptr;  ///< sparse tables read the groups from here
    std::int64_t qmin = 0, qmax = 0;
    bool dense = true;

    void resize(std::size_t n) {
        scale.resize(n), inv.resize(n), lo.resize(n), hi.resize(n), zp.resize(n), gid.resize(n);
    }
    std::size_t size() const noexcept { return scale.size(); }
};

template <class C>
group_table<C> make_group_table(const quant_params& p, bool dense = true) {
    if (p.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
        QUANTSIM_THROW(resource_error, "quant_params: ", p.size(), " encodings; at most 2^31 - 1 are supported");
    group_table<C> t;
    const auto r = p.range();
    t.params = &p;
    t.qmin = r.qmin;
    t.qmax = r.qmax;
    t.dense = dense;
    if (!dense) return t;
    t.resize(p.size());
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
    const_view advanced(std::int64_t) const { return *this; }
};
template <class C>
const_view<C> const_at(const group_table<C>& t, std::int64_t g) {
    const auto i = static_cast<std::size_t>(g);
    if (t.dense) return {t.scale[i], t.inv[i], t.lo[i], t.hi[i], t.zp[i], t.gid[i]};
    const C s = static_cast<C>(t.params->scale[i]);
    const std::int32_t zp = t.params->zero_point[i];
    return {s, C(1) / s, static_cast<C>(t.qmin - zp), static_cast<C>(t.qmax - zp), zp, static_cast<std::int32_t>(g)};
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
    array_view advanced(std::int64_t k) const { return {s_ + k, inv_ + k, lo_ + k, hi_ + k, zp_ + k, gid_ + k}; }
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

/// Fake-quant a run in place. Blocks of 512 with a software prefetch ahead keep DRAM busy on long runs.
template <rounding_mode R, scale_arithmetic A, class C, class P>
void fq_run_inplace(float* y, std::int64_t n, const P& p, std::uint64_t key, std::uint64_t idx0, std::uint64_t step) {
    constexpr std::int64_t block = 512;
    for (std::int64_t b = 0; b < n; b += block) {
        const std::int64_t m = std::min(block, n - b);
        if (b + 2 * prefetch_distance + block <= n)
            for (std::int64_t l = 0; l < block; l += 16) QUANTSIM_PREFETCH(y + b + 2 * prefetch_distance + l, 1);
        float* yb = y + b;
        const auto pb = p.advanced(b);
        const std::uint64_t i0 = idx0 + static_cast<std::uint64_t>(b) * step;
        for (std::int64_t j = 0; j < m; ++j)
            yb[j] = static_cast<float>(grid_value<R, A, C>(static_cast<C>(yb[j]), pb, j, key,
                                                           i0 + static_cast<std::uint64_t>(j) * step) *
                                       pb.s(j));
    }
}

#if QUANTSIM_VECTOR_NT
// Explicit 8-lane vectors (GCC/Clang vector extensions) so the kernel can store with vmovntps; the same operations
// in the same order as grid_value, so results are identical to the scalar/auto-vectorized path.
using vf8 = float __attribute__((vector_size(32)));
using vi8 = std::int32_t __attribute__((vector_size(32)));
using vu8 = std::uint64_t __attribute__((vector_size(64)));

QUANTSIM_ALWAYS_INLINE vf8 splat(float a) { return vf8{} + a; }
QUANTSIM_ALWAYS_INLINE vf8 load8(const float* p) {
    vf8 v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
struct vec_const {
    vf8 s, inv, lo, hi;
    explicit vec_const(const const_view<float>& p) : s(splat(p.s_)), inv(splat(p.inv_)), lo(splat(p.lo_)), hi(splat(p.hi_)) {}
    QUANTSIM_ALWAYS_INLINE vf8 vs(std::int64_t) const { return s; }
    QUANTSIM_ALWAYS_INLINE vf8 vinv(std::int64_t) const { return inv; }
    QUANTSIM_ALWAYS_INLINE vf8 vlo(std::int64_t) const { return lo; }
    QUANTSIM_ALWAYS_INLINE vf8 vhi(std::int64_t) const { return hi; }
};
struct vec_array {
    array_view<float> p;
    explicit vec_array(const array_view<float>& v) : p(v) {}
    QUANTSIM_ALWAYS_INLINE vf8 vs(std::int64_t j) const { return load8(p.s_ + j); }
    QUANTSIM_ALWAYS_INLINE vf8 vinv(std::int64_t j) const { return load8(p.inv_ + j); }
    QUANTSIM_ALWAYS_INLINE vf8 vlo(std::int64_t j) const { return load8(p.lo_ + j); }
    QUANTSIM_ALWAYS_INLINE vf8 vhi(std::int64_t j) const { return load8(p.hi_ + j); }
};
inline vec_const vec_of(const const_view<float>& p) { return vec_const(p); }
inline vec_array vec_of(const array_view<float>& p) { return vec_array(p); }

QUANTSIM_ALWAYS_INLINE vu8 mix64_vec(vu8 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// Eight results of fake-quant (r * s) of run elements j..j+7, whose groups are at pj..pj+7 of the view.
template <rounding_mode R, scale_arithmetic A, class V>
QUANTSIM_ALWAYS_INLINE vf8 fq_vec8(vf8 x, const V& p, std::int64_t pj, std::int64_t j, std::uint64_t key,
                                   std::uint64_t idx0, std::uint64_t step) {
    const vf8 s = p.vs(pj);
    vf8 v = A == scale_arithmetic::divide ? x / s : x * p.vinv(pj);
    const vf8 lo = p.vlo(pj), hi = p.vhi(pj);
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    const vf8 magic = splat(0x1.8p23f), one = splat(1.0f);
    vf8 r = (v + magic) - magic;
    if constexpr (R == rounding_mode::nearest_away) {
        const vf8 d = v - r;
        const vf8 ad = d < splat(0.0f) ? -d : d;
        r = ad == splat(0.5f) ? v + (v > splat(0.0f) ? splat(0.5f) : splat(-0.5f)) : r;
    } else if constexpr (R == rounding_mode::floor) {
        r = r > v ? r - one : r;
    } else if constexpr (R == rounding_mode::ceil) {
        r = r < v ? r + one : r;
    } else if constexpr (R == rounding_mode::stochastic) {
        const vf8 f = r > v ? r - one : r;
        const vu8 lane{0, 1, 2, 3, 4, 5, 6, 7};
        const vu8 index = (lane + static_cast<std::uint64_t>(j)) * step + idx0;
        const vu8 h = mix64_vec(key + index * golden_gamma);
        const vf8 u = __builtin_convertvector(__builtin_convertvector(h >> 40, vi8), vf8) * splat(0x1p-24f);
        r = u < v - f ? f + one : f;
    }
    return r * s;
}

/// Fake-quant a run out of place with non-temporal stores (float compute path). y + 0 should be 32-byte aligned
/// (a scalar head handles the rest). x is prefetched ahead within its first `readable` elements.
template <rounding_mode R, scale_arithmetic A, class P>
void fq_run_nt(const float* QUANTSIM_RESTRICT x, float* QUANTSIM_RESTRICT y, std::int64_t n, const P& p,
               std::uint64_t key, std::uint64_t idx0, std::uint64_t step, std::int64_t readable) {
    std::int64_t j = 0;
    const auto scalar = [&](std::int64_t k) {
        y[k] = grid_value<R, A, float>(x[k], p, k, key, idx0 + static_cast<std::uint64_t>(k) * step) * p.s(k);
    };
    for (; j < n && (reinterpret_cast<std::uintptr_t>(y + j) & 31) != 0; ++j) scalar(j);
    const auto v = vec_of(p);
    for (; j + 16 <= n; j += 16) {
        if (j + prefetch_distance < readable) QUANTSIM_PREFETCH(x + j + prefetch_distance, 0);
        _mm256_stream_ps(y + j, (__m256)fq_vec8<R, A>(load8(x + j), v, j, j, key, idx0, step));
        _mm256_stream_ps(y + j + 8, (__m256)fq_vec8<R, A>(load8(x + j + 8), v, j + 8, j + 8, key, idx0, step));
    }
    for (; j < n; ++j) scalar(j);
}

/// fq_run_nt over a periodic layout: element j of the run uses the groups at row position (pos + j) mod row of the
/// arrays in p (one row of groups). Needs row and pos multiples of 8 and y + 0 32-byte aligned.
template <rounding_mode R, scale_arithmetic A>
void fq_run_nt_periodic(const float* QUANTSIM_RESTRICT x, float* QUANTSIM_RESTRICT y, std::int64_t n,
                        const array_view<float>& p, std::int64_t row, std::int64_t pos, std::uint64_t key,
                        std::uint64_t idx0, std::int64_t readable) {
    std::int64_t j = 0, q = pos;
    const vec_array v(p);
    if (row % 16 == 0 && pos % 16 == 0) {  // two vectors per step: one prefetch and one wrap check per cache line
        for (; j + 16 <= n; j += 16) {
            if (j + prefetch_distance < readable) QUANTSIM_PREFETCH(x + j + prefetch_distance, 0);
            _mm256_stream_ps(y + j, (__m256)fq_vec8<R, A>(load8(x + j), v, q, j, key, idx0, 1));
            _mm256_stream_ps(y + j + 8, (__m256)fq_vec8<R, A>(load8(x + j + 8), v, q + 8, j + 8, key, idx0, 1));
            q += 16;
            if (q == row) q = 0;
        }
    }
    for (; j + 8 <= n; j += 8) {
        if ((j & 15) == 0 && j + prefetch_distance < readable) QUANTSIM_PREFETCH(x + j + prefetch_distance, 0);
        _mm256_stream_ps(y + j, (__m256)fq_vec8<R, A>(load8(x + j), v, q, j, key, idx0, 1));
        q += 8;
        if (q >= row) q -= row;
    }
    for (; j < n; ++j) {
        const auto pj = p.advanced(q);
        y[j] = grid_value<R, A, float>(x[j], pj, 0, key, idx0 + static_cast<std::uint64_t>(j)) * pj.s(0);
        if (++q == row) q = 0;
    }
}

/// fq_run_nt over a blocked run: consecutive groups g0, g0 + 1, ... each cover `block` elements, the first one
/// starting `offset` elements into its block. Needs block and offset multiples of 8 and y + 0 32-byte aligned.
template <rounding_mode R, scale_arithmetic A>
void fq_run_nt_blocked(const float* QUANTSIM_RESTRICT x, float* QUANTSIM_RESTRICT y, std::int64_t n,
                       const group_table<float>& G, std::int64_t g0, std::int64_t offset, std::int64_t block,
                       std::uint64_t key, std::uint64_t idx0, std::int64_t readable) {
    std::int64_t j = 0, g = g0, len = block - offset;
    while (j < n) {
        len = std::min(len, n - j);
        const const_view<float> p = const_at(G, g);
        const vec_const v(p);
        std::int64_t k = 0;
        for (; k + 8 <= len; k += 8) {
            if (((j + k) & 15) == 0 && j + k + prefetch_distance < readable) QUANTSIM_PREFETCH(x + j + k + prefetch_distance, 0);
            _mm256_stream_ps(y + j + k, (__m256)fq_vec8<R, A>(load8(x + j + k), v, 0, j + k, key, idx0, 1));
        }
        for (; k < len; ++k)
            y[j + k] = grid_value<R, A, float>(x[j + k], p, 0, key, idx0 + static_cast<std::uint64_t>(j + k)) * p.s(0);
        j += len;
        ++g;
        len = block;
    }
}
#endif

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
