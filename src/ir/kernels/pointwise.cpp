#include <quantsim/ir/kernels/pointwise.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <quantsim/core/error.hpp>
#include <quantsim/ir/kernels/math.hpp>
#include <quantsim/ir/kernels/parallel.hpp>
#include <quantsim/quant/detail/kernels.hpp>

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

namespace quantsim {

bool pw_is_binary(pw_op op) noexcept {
    switch (op) {
        case pw_op::add:
        case pw_op::sub:
        case pw_op::mul:
        case pw_op::div:
        case pw_op::min:
        case pw_op::max:
        case pw_op::pow: return true;
        default: return false;
    }
}

const char* pw_name(pw_op op) noexcept {
    switch (op) {
        case pw_op::add: return "add";
        case pw_op::sub: return "sub";
        case pw_op::mul: return "mul";
        case pw_op::div: return "div";
        case pw_op::min: return "min";
        case pw_op::max: return "max";
        case pw_op::pow: return "pow";
        case pw_op::copy: return "copy";
        case pw_op::neg: return "neg";
        case pw_op::abs: return "abs";
        case pw_op::relu: return "relu";
        case pw_op::clip: return "clip";
        case pw_op::hard_sigmoid: return "hard_sigmoid";
        case pw_op::hard_swish: return "hard_swish";
        case pw_op::sigmoid: return "sigmoid";
        case pw_op::tanh: return "tanh";
        case pw_op::exp: return "exp";
        case pw_op::log: return "log";
        case pw_op::sqrt: return "sqrt";
        case pw_op::reciprocal: return "reciprocal";
        case pw_op::erf: return "erf";
        case pw_op::leaky_relu: return "leaky_relu";
        case pw_op::floor: return "floor";
        case pw_op::ceil: return "ceil";
        case pw_op::gelu: return "gelu";
        case pw_op::softplus: return "softplus";
        case pw_op::fake_quant: return "fake_quant";
    }
    return "?";
}

namespace {

// alpha * x + beta of hard_sigmoid / hard_swish, rounded once where the CPU has FMA, as the vector code's
// _mm512_fmadd_ps does. Written out because whether GCC contracts the plain expression depends on the optimization
// level (its FMA formation runs only with -fexpensive-optimizations, i.e. from -O2 on): at -O1 (the sanitizer build)
// the plain expression rounded twice and the reference differed from the vector path in the last bit.
inline float affine(float alpha, float x, float beta) noexcept {
#if defined(__FMA__)
    return std::fma(alpha, x, beta);
#else
    return alpha * x + beta;
#endif
}

}  // namespace

float pw_eval_ref(pw_op op, float a, float b, float alpha, float beta) {
    switch (op) {
        case pw_op::add: return a + b;
        case pw_op::sub: return a - b;
        case pw_op::mul: return a * b;
        case pw_op::div: return a / b;
        case pw_op::min: return std::fmin(a, b);
        case pw_op::max: return std::fmax(a, b);
        case pw_op::pow: return std::pow(a, b);
        case pw_op::copy: return a;
        case pw_op::neg: return -a;
        case pw_op::abs: return std::fabs(a);
        case pw_op::relu: return a > 0.0f ? a : 0.0f;
        case pw_op::clip: return std::min(std::max(a, alpha), beta);
        case pw_op::hard_sigmoid: return std::max(0.0f, std::min(1.0f, affine(alpha, a, beta)));
        case pw_op::hard_swish: return a * std::max(0.0f, std::min(1.0f, affine(alpha, a, beta)));
        case pw_op::sigmoid: return 1.0f / (1.0f + std::exp(-a));
        case pw_op::tanh: return std::tanh(a);
        case pw_op::exp: return std::exp(a);
        case pw_op::log: return std::log(a);
        case pw_op::sqrt: return std::sqrt(a);
        case pw_op::reciprocal: return 1.0f / a;
        case pw_op::erf: return std::erf(a);
        case pw_op::leaky_relu: return a >= 0.0f ? a : alpha * a;
        case pw_op::floor: return std::floor(a);
        case pw_op::ceil: return std::ceil(a);
        case pw_op::gelu: return 0.5f * a * (1.0f + std::erf(a * 0.70710678118654752f));
        case pw_op::softplus: return std::log1p(std::exp(a));
        case pw_op::fake_quant: return a;  // needs its grid: pw_fake_quant
    }
    return a;
}

namespace {

template <class F>
QUANTSIM_ALWAYS_INLINE void map1(const float* QUANTSIM_RESTRICT a, float* QUANTSIM_RESTRICT d, std::int64_t n,
                                 F f) {
    for (std::int64_t i = 0; i < n; ++i) d[i] = f(a[i]);
}
// In-place variants (a == d) must not use restrict; keep separate loops.
template <class F>
QUANTSIM_ALWAYS_INLINE void map1_any(const float* a, float* d, std::int64_t n, F f) {
    if (a != d)
        map1(a, d, n, f);
    else
        for (std::int64_t i = 0; i < n; ++i) d[i] = f(d[i]);
}

template <class F>
QUANTSIM_ALWAYS_INLINE void map2(const float* a, const float* b, float* d, std::int64_t n, F f) {
    for (std::int64_t i = 0; i < n; ++i) d[i] = f(a[i], b[i]);
}

}  // namespace

void pw_apply_unary(pw_op op, const float* a, float* d, std::int64_t n, float alpha, float beta) {
    switch (op) {
        case pw_op::copy:
            if (a != d) std::copy(a, a + n, d);
            return;
        case pw_op::neg: return map1_any(a, d, n, [](float x) { return -x; });
        case pw_op::abs: return map1_any(a, d, n, [](float x) { return std::fabs(x); });
        case pw_op::relu: return map1_any(a, d, n, [](float x) { return x > 0.0f ? x : 0.0f; });
        case pw_op::clip:
            return map1_any(a, d, n, [alpha, beta](float x) {
                x = x < alpha ? alpha : x;
                return x > beta ? beta : x;
            });
        case pw_op::hard_sigmoid:
            return map1_any(a, d, n, [alpha, beta](float x) {
                float y = affine(alpha, x, beta);
                y = y < 0.0f ? 0.0f : y;
                return y > 1.0f ? 1.0f : y;
            });
        case pw_op::hard_swish:
            return map1_any(a, d, n, [alpha, beta](float x) {
                float y = affine(alpha, x, beta);
                y = y < 0.0f ? 0.0f : y;
                y = y > 1.0f ? 1.0f : y;
                return x * y;
            });
        case pw_op::sigmoid: return map1_any(a, d, n, [](float x) { return detail::fast_sigmoid(x); });
        case pw_op::tanh: return map1_any(a, d, n, [](float x) { return detail::fast_tanh(x); });
        case pw_op::exp: return map1_any(a, d, n, [](float x) { return detail::fast_exp(x); });
        case pw_op::log:
            for (std::int64_t i = 0; i < n; ++i) d[i] = std::log(a[i]);
            return;
        case pw_op::sqrt: return map1_any(a, d, n, [](float x) { return std::sqrt(x); });
        case pw_op::reciprocal: return map1_any(a, d, n, [](float x) { return 1.0f / x; });
        case pw_op::erf: return map1_any(a, d, n, [](float x) { return detail::fast_erf(x); });
        case pw_op::leaky_relu: return map1_any(a, d, n, [alpha](float x) { return x >= 0.0f ? x : alpha * x; });
        case pw_op::floor: return map1_any(a, d, n, [](float x) { return std::floor(x); });
        case pw_op::ceil: return map1_any(a, d, n, [](float x) { return std::ceil(x); });
        case pw_op::gelu:
            return map1_any(a, d, n, [](float x) {
                return 0.5f * x * (1.0f + detail::fast_erf(x * 0.70710678118654752f));
            });
        case pw_op::softplus:
            for (std::int64_t i = 0; i < n; ++i) d[i] = std::log1p(std::exp(a[i]));
            return;
        default: break;
    }
    // A binary op applied as unary has no meaning: copy through (callers never do this).
    if (a != d) std::copy(a, a + n, d);
}

void pw_apply_binary(pw_op op, const float* a, const float* b, float s, float* d, std::int64_t n, bool rev) {
    if (b) {
        if (rev) std::swap(a, b);
        switch (op) {
            case pw_op::add: return map2(a, b, d, n, [](float x, float y) { return x + y; });
            case pw_op::sub: return map2(a, b, d, n, [](float x, float y) { return x - y; });
            case pw_op::mul: return map2(a, b, d, n, [](float x, float y) { return x * y; });
            case pw_op::div: return map2(a, b, d, n, [](float x, float y) { return x / y; });
            case pw_op::min: return map2(a, b, d, n, [](float x, float y) { return std::fmin(x, y); });
            case pw_op::max: return map2(a, b, d, n, [](float x, float y) { return std::fmax(x, y); });
            case pw_op::pow:
                for (std::int64_t i = 0; i < n; ++i) d[i] = std::pow(a[i], b[i]);
                return;
            default: return pw_apply_unary(op, a, d, n);
        }
    }
    switch (op) {
        case pw_op::add: return map1_any(a, d, n, [s](float x) { return x + s; });
        case pw_op::sub:
            if (rev) return map1_any(a, d, n, [s](float x) { return s - x; });
            return map1_any(a, d, n, [s](float x) { return x - s; });
        case pw_op::mul: return map1_any(a, d, n, [s](float x) { return x * s; });
        case pw_op::div:
            if (rev) return map1_any(a, d, n, [s](float x) { return s / x; });
            return map1_any(a, d, n, [s](float x) { return x / s; });
        case pw_op::min: return map1_any(a, d, n, [s](float x) { return std::fmin(x, s); });
        case pw_op::max: return map1_any(a, d, n, [s](float x) { return std::fmax(x, s); });
        case pw_op::pow:
            if (rev) {
                for (std::int64_t i = 0; i < n; ++i) d[i] = std::pow(s, a[i]);
                return;
            }
            if (s == 2.0f) return map1_any(a, d, n, [](float x) { return x * x; });
            if (s == 1.0f) return map1_any(a, d, n, [](float x) { return x; });
            if (s == 0.5f) return map1_any(a, d, n, [](float x) { return std::sqrt(x); });
            if (s == 3.0f) return map1_any(a, d, n, [](float x) { return x * x * x; });
            if (s == -1.0f) return map1_any(a, d, n, [](float x) { return 1.0f / x; });
            for (std::int64_t i = 0; i < n; ++i) d[i] = std::pow(a[i], s);
            return;
        default: return pw_apply_unary(op, a, d, n);
    }
}

namespace {
template <rounding_mode R, scale_arithmetic A>
void fake_quant_span(const float* a, float* y, std::int64_t n, const pw_quant& fq, std::uint64_t idx0) {
    // The same grid_value as fake_quant's run kernels, so results are bit-identical to fake_quant_ on the tensor.
    // Locals and restrict: a store through y must not look like it could change the grid (it blocks vectorizing).
    const float scale = fq.scale;
    const std::uint64_t key = fq.key;
    const detail::const_view<float> v{scale, fq.inv, fq.lo, fq.hi, 0, 0};
    if (a == y) {
        float* QUANTSIM_RESTRICT d = y;
        for (std::int64_t j = 0; j < n; ++j)
            d[j] = detail::grid_value<R, A, float>(d[j], v, j, key, idx0 + static_cast<std::uint64_t>(j)) * scale;
        return;
    }
    const float* QUANTSIM_RESTRICT s = a;
    float* QUANTSIM_RESTRICT d = y;
    for (std::int64_t j = 0; j < n; ++j)
        d[j] = detail::grid_value<R, A, float>(s[j], v, j, key, idx0 + static_cast<std::uint64_t>(j)) * scale;
}

// x / s costs a divide per element (the divider's throughput bounds fused fake-quant). For round-to-nearest the
// quotient only matters up to the rounding: v = x * (1/s) is within |v| * 2^-22 of the correctly rounded x / s
// (two roundings of 2^-24 each), so whenever v is farther than |v| * 2^-21 from a rounding boundary (k + 1/2) both
// round, after the clamp to the integer bounds, to the same integer. Blocks with an element inside that band (rare:
// about |v| * 2^-20 of random values) are recomputed with the division. Results are bit-identical either way.
template <rounding_mode R>
bool fake_quant_block_fast(const float* QUANTSIM_RESTRICT x, float* QUANTSIM_RESTRICT y, std::int64_t n,
                           float scale, float inv, float lo, float hi) {
    constexpr float magic = 0x1.8p23f;
    int near_boundary = 0;
    for (std::int64_t j = 0; j < n; ++j) {
        float v = x[j] * inv;
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        float r = (v + magic) - magic;
        if constexpr (R == rounding_mode::nearest_away) r = std::fabs(v - r) == 0.5f ? v + (v > 0.0f ? 0.5f : -0.5f) : r;
        near_boundary |= (0.5f - std::fabs(v - r)) <= std::fabs(v) * 0x1p-21f ? 1 : 0;
        y[j] = r * scale;
    }
    return near_boundary != 0;
}

template <rounding_mode R>
void fake_quant_divide_fast(const float* a, float* y, std::int64_t n, const pw_quant& fq, std::uint64_t idx0) {
    constexpr std::int64_t block = 64;
    alignas(64) float xb[block];
    for (std::int64_t b = 0; b < n; b += block) {
        const std::int64_t m = std::min(block, n - b);
        const float* x = a + b;
        if (a == y) {  // in place: keep the inputs for a recompute
            std::copy_n(x, m, xb);
            x = xb;
        }
        if (fake_quant_block_fast<R>(x, y + b, m, fq.scale, fq.inv, fq.lo, fq.hi))
            fake_quant_span<R, scale_arithmetic::divide>(x, y + b, m, fq, idx0 + static_cast<std::uint64_t>(b));
    }
}

template <rounding_mode R>
void fake_quant_span_r(const float* a, float* y, std::int64_t n, const pw_quant& fq, std::uint64_t idx0) {
    if (fq.arithmetic == scale_arithmetic::divide) {
        // The shortcut needs a normal scale with a finite reciprocal (x * inf would make 0 a NaN).
        if constexpr (R == rounding_mode::nearest_even || R == rounding_mode::nearest_away)
            if (std::isfinite(fq.inv) && fq.scale >= 0x1p-100f && fq.inv >= 0x1p-100f)
                return fake_quant_divide_fast<R>(a, y, n, fq, idx0);
        fake_quant_span<R, scale_arithmetic::divide>(a, y, n, fq, idx0);
    } else {
        fake_quant_span<R, scale_arithmetic::multiply_reciprocal>(a, y, n, fq, idx0);
    }
}
}  // namespace

void pw_fake_quant(const float* a, float* y, std::int64_t n, const pw_quant& fq, std::uint64_t idx0) {
    switch (fq.rounding) {
        case rounding_mode::nearest_even: return fake_quant_span_r<rounding_mode::nearest_even>(a, y, n, fq, idx0);
        case rounding_mode::nearest_away: return fake_quant_span_r<rounding_mode::nearest_away>(a, y, n, fq, idx0);
        case rounding_mode::floor: return fake_quant_span_r<rounding_mode::floor>(a, y, n, fq, idx0);
        case rounding_mode::ceil: return fake_quant_span_r<rounding_mode::ceil>(a, y, n, fq, idx0);
        case rounding_mode::stochastic: return fake_quant_span_r<rounding_mode::stochastic>(a, y, n, fq, idx0);
    }
    QUANTSIM_THROW(invalid_argument, "pw_fake_quant: unknown rounding mode ", static_cast<int>(fq.rounding));
}

int pw_program::add_constant(std::vector<float> values) {
    constants.push_back(std::move(values));
    return static_cast<int>(constants.size()) - 1;
}

namespace {

struct resolved {
    const float* ptr = nullptr;
    float value = 0.0f;
};

QUANTSIM_ALWAYS_INLINE resolved resolve(const pw_operand& o, const pw_program& prog, const float* out,
                                        const float* regs, const float* const* inputs, std::int64_t p,
                                        std::int64_t q, std::int64_t Q) {
    using K = pw_operand::kind;
    switch (o.k) {
        case K::output: return {out, 0.0f};
        case K::reg: return {regs + o.index * pw_program::chunk, 0.0f};
        case K::scalar: return {nullptr, o.value};
        case K::const_row:
            return {nullptr, prog.constants[static_cast<std::size_t>(o.index)][static_cast<std::size_t>(o.period > 0 ? p % o.period : p)]};
        case K::const_col: return {prog.constants[static_cast<std::size_t>(o.index)].data() + q, 0.0f};
        case K::input_full: return {inputs[o.index] + p * Q + q, 0.0f};
        case K::input_row: return {nullptr, inputs[o.index][o.period > 0 ? p % o.period : p]};
        case K::input_col: return {inputs[o.index] + q, 0.0f};
        case K::none: break;
    }
    return {nullptr, 0.0f};
}

}  // namespace

void pw_program::run_row_reference(float* out, const float* const* inputs, std::int64_t p, std::int64_t q0,
                         std::int64_t len, std::int64_t Q) const {
    alignas(64) float regs[max_registers * chunk];
    for (std::int64_t off = 0; off < len; off += chunk) {
        const std::int64_t n = std::min(chunk, len - off);
        float* o = out + off;
        const std::int64_t q = q0 + off;
        for (const pw_instr& ins : code) {
            float* dst = ins.dst < 0 ? o : regs + ins.dst * chunk;
            const resolved a = resolve(ins.a, *this, o, regs, inputs, p, q, Q);
            if (ins.op == pw_op::fake_quant) {
                const pw_quant& fq = quants[static_cast<std::size_t>(ins.b.index)];
                const std::uint64_t idx0 = static_cast<std::uint64_t>(p * Q + q);
                if (a.ptr) {
                    pw_fake_quant(a.ptr, dst, n, fq, idx0);
                } else {
                    std::fill_n(dst, n, a.value);
                    pw_fake_quant(dst, dst, n, fq, idx0);
                }
            } else if (pw_is_binary(ins.op)) {
                const resolved b = resolve(ins.b, *this, o, regs, inputs, p, q, Q);
                if (a.ptr)
                    pw_apply_binary(ins.op, a.ptr, b.ptr, b.value, dst, n, false);
                else if (b.ptr)
                    pw_apply_binary(ins.op, b.ptr, nullptr, a.value, dst, n, true);
                else
                    std::fill_n(dst, n, pw_eval_ref(ins.op, a.value, b.value, ins.alpha, ins.beta));
            } else if (a.ptr) {
                pw_apply_unary(ins.op, a.ptr, dst, n, ins.alpha, ins.beta);
            } else {
                float v = a.value;
                pw_apply_unary(ins.op, &a.value, &v, 1, ins.alpha, ins.beta);
                std::fill_n(dst, n, v);
            }
        }
    }
}


#if defined(__AVX512F__)
namespace {

// The vectorized evaluator: the same instruction sequence per chunk as run_row_reference, but the common ops run as
// inline 16-lane loops (a masked tail instead of a scalar remainder, no call per instruction), which matters for the
// short rows (36-144 elements) of late conv layers. Every lane computes exactly what the scalar code computes:
// comparisons and blends in the scalar expressions' order (NaN behaves the same), IEEE add/mul/div/sqrt, fused
// multiply-add where the scalar code calls affine() (std::fma). Ops without a vector form here (transcendentals,
// pow, stochastic rounding) go through the reference building blocks.
struct vsrc {
    const float* ptr = nullptr;  ///< element 0 of the chunk, or nullptr for a broadcast `value`
    bool bounded = false;        ///< memory that ends at the chunk's end (the tail needs a masked load)
    float value = 0.0f;
};

// Operands are copied into locals and lambdas capture by value: _mm512_storeu_ps may alias anything, so anything
// read through a reference would be reloaded after every store.
template <bool PA, bool PB, class F>
QUANTSIM_ALWAYS_INLINE void vloop_t(const vsrc a, const vsrc b, float* const dst, const bool dst_bounded,
                                    const std::int64_t n, const F f) {
    const float* const pa = a.ptr;
    const float* const pb = b.ptr;
    const __m512 ba = _mm512_set1_ps(a.value), bb = _mm512_set1_ps(b.value);
    std::int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = PA ? _mm512_loadu_ps(pa + i) : ba;
        const __m512 y = PB ? _mm512_loadu_ps(pb + i) : bb;
        _mm512_storeu_ps(dst + i, f(x, y));
    }
    if (i < n) {
        const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
        const __m512 x = PA ? (a.bounded ? _mm512_maskz_loadu_ps(m, pa + i) : _mm512_loadu_ps(pa + i)) : ba;
        const __m512 y = PB ? (b.bounded ? _mm512_maskz_loadu_ps(m, pb + i) : _mm512_loadu_ps(pb + i)) : bb;
        const __m512 r = f(x, y);
        if (dst_bounded)
            _mm512_mask_storeu_ps(dst + i, m, r);
        else
            _mm512_storeu_ps(dst + i, r);
    }
}

/// dst[i] = f(a[i], b[i]) for i < n; dst_bounded: dst is the output (masked tail store), else a padded register.
template <class F>
QUANTSIM_ALWAYS_INLINE void vloop(const vsrc& a, const vsrc& b, float* dst, bool dst_bounded, std::int64_t n, F f) {
    if (a.ptr && b.ptr) vloop_t<true, true>(a, b, dst, dst_bounded, n, f);
    else if (a.ptr) vloop_t<true, false>(a, b, dst, dst_bounded, n, f);
    else if (b.ptr) vloop_t<false, true>(a, b, dst, dst_bounded, n, f);
    else vloop_t<false, false>(a, b, dst, dst_bounded, n, f);
}
/// Unary: only a's two forms.
template <class F>
QUANTSIM_ALWAYS_INLINE void vloop1(const vsrc& a, float* dst, bool dst_bounded, std::int64_t n, F f) {
    if (a.ptr) vloop_t<true, false>(a, vsrc{}, dst, dst_bounded, n, f);
    else vloop_t<false, false>(a, vsrc{}, dst, dst_bounded, n, f);
}

QUANTSIM_ALWAYS_INLINE __m512 vsel(__mmask16 m, __m512 if_false, __m512 if_true) {
    return _mm512_mask_blend_ps(m, if_false, if_true);
}
// x < lo ? lo : x, then x > hi ? hi : x (NaN passes through, like the scalar code).
QUANTSIM_ALWAYS_INLINE __m512 vclamp(__m512 x, __m512 lo, __m512 hi) {
    x = vsel(_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), x, lo);
    return vsel(_mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), x, hi);
}
QUANTSIM_ALWAYS_INLINE __m512 vabs(__m512 x) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)));
}

// detail::round_fast for the deterministic modes, lane by lane.
template <rounding_mode R>
QUANTSIM_ALWAYS_INLINE __m512 vround(__m512 v) {
    const __m512 magic = _mm512_set1_ps(0x1.8p23f);
    const __m512 r = _mm512_sub_ps(_mm512_add_ps(v, magic), magic);
    const __m512 one = _mm512_set1_ps(1.0f);
    if constexpr (R == rounding_mode::nearest_even) {
        return r;
    } else if constexpr (R == rounding_mode::nearest_away) {
        const __mmask16 tie = _mm512_cmp_ps_mask(vabs(_mm512_sub_ps(v, r)), _mm512_set1_ps(0.5f), _CMP_EQ_OQ);
        const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
        const __m512 half = vsel(pos, _mm512_set1_ps(-0.5f), _mm512_set1_ps(0.5f));
        return vsel(tie, r, _mm512_add_ps(v, half));
    } else if constexpr (R == rounding_mode::floor) {
        return vsel(_mm512_cmp_ps_mask(r, v, _CMP_GT_OQ), r, _mm512_sub_ps(r, one));
    } else {
        static_assert(R == rounding_mode::ceil);
        return vsel(_mm512_cmp_ps_mask(r, v, _CMP_LT_OQ), r, _mm512_add_ps(r, one));
    }
}

// The grid value r = round(clamp(x / s, lo, hi)) of 16 lanes, bit-identical to the reference's (deterministic
// rounding modes); fake_quant is r * s.
template <rounding_mode R, scale_arithmetic A, bool Shortcut>
QUANTSIM_ALWAYS_INLINE __m512 vgrid(__m512 x, __m512 s, __m512 inv, __m512 lo, __m512 hi) {
    if constexpr (A == scale_arithmetic::multiply_reciprocal) {
        return vround<R>(vclamp(_mm512_mul_ps(x, inv), lo, hi));
    } else if constexpr (Shortcut) {
        // The divide-free shortcut of fake_quant_block_fast: lanes near a rounding boundary take the division.
        const __m512 v = vclamp(_mm512_mul_ps(x, inv), lo, hi);
        const __m512 r = vround<rounding_mode::nearest_even>(v);
        const __m512 dist = _mm512_sub_ps(_mm512_set1_ps(0.5f), vabs(_mm512_sub_ps(v, r)));
        const __mmask16 near = _mm512_cmp_ps_mask(dist, _mm512_mul_ps(vabs(v), _mm512_set1_ps(0x1p-21f)), _CMP_LE_OQ);
        if (near) [[unlikely]]
            return vround<R>(vclamp(_mm512_div_ps(x, s), lo, hi));
        return R == rounding_mode::nearest_even ? r : vround<R>(v);
    } else {
        return vround<R>(vclamp(_mm512_div_ps(x, s), lo, hi));
    }
}

template <rounding_mode R, scale_arithmetic A, bool Shortcut>
QUANTSIM_ALWAYS_INLINE __m512 vfake_quant(__m512 x, __m512 s, __m512 inv, __m512 lo, __m512 hi) {
    return _mm512_mul_ps(vgrid<R, A, Shortcut>(x, s, inv, lo, hi), s);
}

template <rounding_mode R, scale_arithmetic A, bool Shortcut>
void vfake_quant_loop(const vsrc& a, float* dst, bool dst_bounded, std::int64_t n, const pw_quant& fq) {
    const __m512 s = _mm512_set1_ps(fq.scale), inv = _mm512_set1_ps(fq.inv), lo = _mm512_set1_ps(fq.lo),
                 hi = _mm512_set1_ps(fq.hi);
    vloop1(a, dst, dst_bounded, n, [=](__m512 x, __m512) { return vfake_quant<R, A, Shortcut>(x, s, inv, lo, hi); });
}

/// Calls fn.template operator()<R, A, Shortcut>() for the grid's deterministic kind; false for stochastic rounding.
template <class Fn>
bool with_grid_kind(const pw_quant& fq, Fn&& fn) {
    using RM = rounding_mode;
    using SA = scale_arithmetic;
    const bool divide = fq.arithmetic == SA::divide;
    const bool shortcut = divide && std::isfinite(fq.inv) && fq.scale >= 0x1p-100f && fq.inv >= 0x1p-100f;
    switch (fq.rounding) {
        case RM::nearest_even:
            if (!divide) fn.template operator()<RM::nearest_even, SA::multiply_reciprocal, false>();
            else if (shortcut) fn.template operator()<RM::nearest_even, SA::divide, true>();
            else fn.template operator()<RM::nearest_even, SA::divide, false>();
            return true;
        case RM::nearest_away:
            if (!divide) fn.template operator()<RM::nearest_away, SA::multiply_reciprocal, false>();
            else if (shortcut) fn.template operator()<RM::nearest_away, SA::divide, true>();
            else fn.template operator()<RM::nearest_away, SA::divide, false>();
            return true;
        case RM::floor:
            if (divide) fn.template operator()<RM::floor, SA::divide, false>();
            else fn.template operator()<RM::floor, SA::multiply_reciprocal, false>();
            return true;
        case RM::ceil:
            if (divide) fn.template operator()<RM::ceil, SA::divide, false>();
            else fn.template operator()<RM::ceil, SA::multiply_reciprocal, false>();
            return true;
        case RM::stochastic: return false;
    }
    return false;
}

/// False when the grid needs the reference path (stochastic rounding).
bool vfake_quant_dispatch(const vsrc& a, float* dst, bool dst_bounded, std::int64_t n, const pw_quant& fq) {
    return with_grid_kind(fq, [&]<rounding_mode R, scale_arithmetic A, bool Shortcut>() {
        vfake_quant_loop<R, A, Shortcut>(a, dst, dst_bounded, n, fq);
    });
}

/// Grid inputs of a table: r * scale for r = lo .. hi (the fake_quant's own product), then NaN.
void fill_grid(const pw_quant& fq, float* t, std::int64_t G) {
    for (std::int64_t i = 0; i < G; ++i) t[i] = (fq.lo + static_cast<float>(i)) * fq.scale;
    t[G] = std::numeric_limits<float>::quiet_NaN();
}

/// A table of up to 32 * Pairs grid entries held in zmm registers, looked up with vpermt2ps over 32-entry pairs and
/// blends on index bits 5-7. Why not vgatherdps: with current microcode (gather data sampling mitigation) a 16-lane
/// gather takes ~25 cycles on the AVX-512 Xeons; the 8-bit lookup here takes ~10 (0.23 vs 0.56 ns per element).
template <int Pairs>
struct vreg_table {
    static_assert(Pairs == 1 || Pairs == 2 || Pairs == 4 || Pairs == 8);
    static constexpr std::int64_t capacity = 32 * Pairs;
    __m512 t[2 * Pairs];
    __m512 nan_value;

    /// Entries table[0, G) (G <= capacity; the rest zero, never selected) and the NaN entry table[G].
    QUANTSIM_ALWAYS_INLINE void load(const float* table, std::int64_t G) {
        for (int k = 0; k < 2 * Pairs; ++k) {
            const std::int64_t left = std::clamp<std::int64_t>(G - 16 * k, 0, 16);
            const auto m = static_cast<__mmask16>((1u << left) - 1u);
            t[k] = _mm512_maskz_loadu_ps(m, table + 16 * k);
        }
        nan_value = _mm512_set1_ps(table[G]);
    }
    /// table[idx] per lane (idx in [0, G)); lanes in `nan` get the NaN entry.
    QUANTSIM_ALWAYS_INLINE __m512 lookup(__m512i idx, __mmask16 nan) const {
        __m512 v[Pairs];
        for (int k = 0; k < Pairs; ++k) v[k] = _mm512_permutex2var_ps(t[2 * k], idx, t[2 * k + 1]);
        if constexpr (Pairs >= 2) {
            const __mmask16 b5 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
            for (int k = 0; k < Pairs; k += 2) v[k] = _mm512_mask_mov_ps(v[k], b5, v[k + 1]);
        }
        if constexpr (Pairs >= 4) {
            const __mmask16 b6 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(64));
            for (int k = 0; k < Pairs; k += 4) v[k] = _mm512_mask_mov_ps(v[k], b6, v[k + 2]);
        }
        if constexpr (Pairs >= 8) {
            const __mmask16 b7 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(128));
            v[0] = _mm512_mask_mov_ps(v[0], b7, v[4]);
        }
        return _mm512_mask_mov_ps(v[0], nan, nan_value);
    }
};

/// Calls fn.template operator()<Pairs>() with the smallest register table for a grid of G entries; false when G is
/// too large for registers (the caller gathers).
template <class Fn>
bool with_reg_table(std::int64_t G, Fn&& fn) {
    if (G <= 32) fn.template operator()<1>();
    else if (G <= 64) fn.template operator()<2>();
    else if (G <= 128) fn.template operator()<4>();
    else if (G <= 256) fn.template operator()<8>();
    else return false;
    return true;
}

/// Grid codes (bytes) of a table of up to 64 * Regs entries held in zmm registers: one or two byte permutes
/// (vpermb / vpermi2b) and a blend on index bit 7 give the code, then (code + lo) * scale is the entry.
template <int Regs>
struct vbyte_table {
    static_assert(Regs == 1 || Regs == 2 || Regs == 4);
    __m512i t[Regs];
    __m512 nan_value, scale, lo;

    QUANTSIM_ALWAYS_INLINE void load(const std::uint8_t* codes, float nan_entry, float code_scale, float code_lo) {
        for (int k = 0; k < Regs; ++k) t[k] = _mm512_loadu_si512(codes + 64 * k);
        nan_value = _mm512_set1_ps(nan_entry);
        scale = _mm512_set1_ps(code_scale);
        lo = _mm512_set1_ps(code_lo);
    }
    /// The entry of idx per lane (idx in [0, 64 * Regs)); lanes in `nan` get the NaN entry.
    QUANTSIM_ALWAYS_INLINE __m512 lookup(__m512i idx, __mmask16 nan) const {
        // Byte 0 of each dword holds the index (the others are 0 and give junk bytes, masked off below).
        __m512i j;
        if constexpr (Regs == 1) {
            // Masked forms with an explicit source (GCC 12's unmasked ones trip -Wmaybe-uninitialized).
            j = _mm512_mask_permutexvar_epi8(idx, ~__mmask64{0}, idx, t[0]);
        } else if constexpr (Regs == 2) {
            j = _mm512_permutex2var_epi8(t[0], idx, t[1]);
        } else {
            const __m512i a = _mm512_permutex2var_epi8(t[0], idx, t[1]);
            const __m512i b = _mm512_permutex2var_epi8(t[2], idx, t[3]);
            j = _mm512_mask_mov_epi32(a, _mm512_test_epi32_mask(idx, _mm512_set1_epi32(128)), b);
        }
        j = _mm512_and_si512(j, _mm512_set1_epi32(0xFF));
        const __m512 v = _mm512_mul_ps(_mm512_add_ps(_mm512_mask_cvtepi32_ps(lo, 0xFFFF, j), lo), scale);
        return _mm512_mask_mov_ps(v, nan, nan_value);
    }
};

template <class Fn>
bool with_byte_table(std::int64_t G, Fn&& fn) {
#if defined(__AVX512VBMI__)
    if (G <= 64) fn.template operator()<1>();
    else if (G <= 128) fn.template operator()<2>();
    else if (G <= 256) fn.template operator()<4>();
    else return false;
    return true;
#else
    (void)G, (void)fn;
    return false;
#endif
}

/// Byte codes of t[0, G) for the output grid fq (see lut_state::codes); false when an entry is not
/// (fq.lo + j) * fq.scale bit for bit with j in [0, 255].
bool encode_grid(const float* t, std::int64_t G, const pw_quant& fq, std::uint8_t* codes) {
    for (std::int64_t i = 0; i < G; ++i) {
        const float e = t[i];
        if (!std::isfinite(e) || !(fq.scale > 0.0f)) return false;
        const float j = std::nearbyint(e / fq.scale - fq.lo);
        if (!(j >= 0.0f && j <= 255.0f)) return false;
        if (std::bit_cast<std::uint32_t>((fq.lo + j) * fq.scale) != std::bit_cast<std::uint32_t>(e)) return false;
        codes[i] = static_cast<std::uint8_t>(j);
    }
    return true;
}

/// The same over the rows of a span, each row with its table (row_tables + key * (G + 1)), the grid kind
/// dispatched once: short rows make the per-call setup matter.
void vlut_rows(const vsrc& a, float* dst, std::int64_t n, const pw_quant& fq, std::int64_t f, std::int64_t Q,
               const float* row_tables, std::int64_t period, std::int64_t rows, std::int64_t G,
               const std::uint8_t* row_codes, float code_scale, float code_lo) {
    with_grid_kind(fq, [&]<rounding_mode R, scale_arithmetic A, bool Shortcut>() {
        const __m512 s = _mm512_set1_ps(fq.scale), inv = _mm512_set1_ps(fq.inv), lo = _mm512_set1_ps(fq.lo),
                     hi = _mm512_set1_ps(fq.hi);
        if (row_codes && with_byte_table(G, [&]<int Regs>() {
                for (std::int64_t e = 0; e < n;) {
                    const std::int64_t pe = (f + e) / Q, m = std::min(n - e, Q - (f + e) % Q);
                    const std::int64_t key = period > 0 ? pe % period : pe;
                    if (key < rows) {
                        vbyte_table<Regs> tab;
                        tab.load(row_codes + key * 256, row_tables[key * (G + 1) + G], code_scale, code_lo);
                        const vsrc ae = a.ptr ? vsrc{a.ptr + e, a.bounded, 0.0f} : a;
                        vloop1(ae, dst + e, true, m, [=](__m512 x, __m512) {
                            const __m512 r = vgrid<R, A, Shortcut>(x, s, inv, lo, hi);
                            const __m512i idx = _mm512_maskz_cvttps_epi32(0xFFFF, _mm512_sub_ps(r, lo));
                            return tab.lookup(idx, _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q));
                        });
                    }
                    e += m;
                }
            }))
            return;
        const bool in_regs = with_reg_table(G, [&]<int Pairs>() {
            for (std::int64_t e = 0; e < n;) {
                const std::int64_t pe = (f + e) / Q, m = std::min(n - e, Q - (f + e) % Q);
                const std::int64_t key = period > 0 ? pe % period : pe;
                if (key < rows) {
                    vreg_table<Pairs> tab;
                    tab.load(row_tables + key * (G + 1), G);
                    const vsrc ae = a.ptr ? vsrc{a.ptr + e, a.bounded, 0.0f} : a;
                    vloop1(ae, dst + e, true, m, [=](__m512 x, __m512) {
                        const __m512 r = vgrid<R, A, Shortcut>(x, s, inv, lo, hi);
                        const __m512i idx = _mm512_maskz_cvttps_epi32(0xFFFF, _mm512_sub_ps(r, lo));
                        return tab.lookup(idx, _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q));
                    });
                }
                e += m;
            }
        });
        if (in_regs) return;
        const __m512i nan_idx = _mm512_set1_epi32(static_cast<std::int32_t>(G));
        for (std::int64_t e = 0; e < n;) {
            const std::int64_t pe = (f + e) / Q, m = std::min(n - e, Q - (f + e) % Q);
            const std::int64_t key = period > 0 ? pe % period : pe;
            // Rows past the constants cannot occur in a valid program (the reference would read past them too).
            if (key < rows) {
                const float* table = row_tables + key * (G + 1);
                const vsrc ae = a.ptr ? vsrc{a.ptr + e, a.bounded, 0.0f} : a;
                vloop1(ae, dst + e, true, m, [=](__m512 x, __m512) {
                    const __m512 r = vgrid<R, A, Shortcut>(x, s, inv, lo, hi);
                    __m512i idx = _mm512_maskz_cvttps_epi32(0xFFFF, _mm512_sub_ps(r, lo));
                    idx = _mm512_mask_mov_epi32(idx, _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q), nan_idx);
                    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFFFF, idx, table, 4);
                });
            }
            e += m;
        }
    });
}

/// dst[i] = table[grid index of a[i]] (NaN: the last entry): a fake_quant and the program suffix after it at once.
bool vlut_dispatch(const vsrc& a, float* dst, bool dst_bounded, std::int64_t n, const pw_quant& fq,
                   const float* table, std::int32_t nan_index, const std::uint8_t* codes = nullptr,
                   float code_scale = 1.0f, float code_lo = 0.0f) {
    return with_grid_kind(fq, [&]<rounding_mode R, scale_arithmetic A, bool Shortcut>() {
        const __m512 s = _mm512_set1_ps(fq.scale), inv = _mm512_set1_ps(fq.inv), lo = _mm512_set1_ps(fq.lo),
                     hi = _mm512_set1_ps(fq.hi);
        if (codes && with_byte_table(nan_index, [&]<int Regs>() {
                vbyte_table<Regs> tab;
                tab.load(codes, table[nan_index], code_scale, code_lo);
                vloop1(a, dst, dst_bounded, n, [=](__m512 x, __m512) {
                    const __m512 r = vgrid<R, A, Shortcut>(x, s, inv, lo, hi);
                    const __m512i idx = _mm512_maskz_cvttps_epi32(0xFFFF, _mm512_sub_ps(r, lo));
                    return tab.lookup(idx, _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q));
                });
            }))
            return;
        // Register tables repay their loads from a few vectors on.
        if (n >= 64 && with_reg_table(nan_index, [&]<int Pairs>() {
                vreg_table<Pairs> tab;
                tab.load(table, nan_index);
                vloop1(a, dst, dst_bounded, n, [=](__m512 x, __m512) {
                    const __m512 r = vgrid<R, A, Shortcut>(x, s, inv, lo, hi);
                    const __m512i idx = _mm512_maskz_cvttps_epi32(0xFFFF, _mm512_sub_ps(r, lo));
                    return tab.lookup(idx, _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q));
                });
            }))
            return;
        const __m512i nan_idx = _mm512_set1_epi32(nan_index);
        vloop1(a, dst, dst_bounded, n, [=](__m512 x, __m512) {
            const __m512 r = vgrid<R, A, Shortcut>(x, s, inv, lo, hi);
            __m512i idx = _mm512_maskz_cvttps_epi32(0xFFFF, _mm512_sub_ps(r, lo));
            idx = _mm512_mask_mov_epi32(idx, _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q), nan_idx);
            return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFFFF, idx, table, 4);
        });
    });
}

/// One instruction in vector form; false when the op has none (the caller uses the reference building blocks).
bool vapply(const pw_instr& ins, const vsrc& a, const vsrc& b, float* dst, bool dst_bounded, std::int64_t n) {
    const __m512 alpha = _mm512_set1_ps(ins.alpha), beta = _mm512_set1_ps(ins.beta);
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    switch (ins.op) {
        case pw_op::add: vloop(a, b, dst, dst_bounded, n, [](__m512 x, __m512 y) { return _mm512_add_ps(x, y); }); return true;
        case pw_op::sub: vloop(a, b, dst, dst_bounded, n, [](__m512 x, __m512 y) { return _mm512_sub_ps(x, y); }); return true;
        case pw_op::mul: vloop(a, b, dst, dst_bounded, n, [](__m512 x, __m512 y) { return _mm512_mul_ps(x, y); }); return true;
        case pw_op::div: vloop(a, b, dst, dst_bounded, n, [](__m512 x, __m512 y) { return _mm512_div_ps(x, y); }); return true;
        // min / max stay on std::fmin / std::fmax (their signed-zero order is the library's).
        case pw_op::copy: vloop1(a, dst, dst_bounded, n, [](__m512 x, __m512) { return x; }); return true;
        case pw_op::neg:
            vloop1(a, dst, dst_bounded, n, [](__m512 x, __m512) {
                return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN)));
            });
            return true;
        case pw_op::abs: vloop1(a, dst, dst_bounded, n, [](__m512 x, __m512) { return vabs(x); }); return true;
        case pw_op::relu:
            vloop1(a, dst, dst_bounded, n, [=](__m512 x, __m512) {
                return vsel(_mm512_cmp_ps_mask(x, zero, _CMP_GT_OQ), zero, x);
            });
            return true;
        case pw_op::clip:
            vloop1(a, dst, dst_bounded, n, [=](__m512 x, __m512) { return vclamp(x, alpha, beta); });
            return true;
        case pw_op::hard_sigmoid:
            vloop1(a, dst, dst_bounded, n, [=](__m512 x, __m512) {
                __m512 y = _mm512_fmadd_ps(alpha, x, beta);
                y = vsel(_mm512_cmp_ps_mask(y, zero, _CMP_LT_OQ), y, zero);
                return vsel(_mm512_cmp_ps_mask(y, one, _CMP_GT_OQ), y, one);
            });
            return true;
        case pw_op::hard_swish:
            vloop1(a, dst, dst_bounded, n, [=](__m512 x, __m512) {
                __m512 y = _mm512_fmadd_ps(alpha, x, beta);
                y = vsel(_mm512_cmp_ps_mask(y, zero, _CMP_LT_OQ), y, zero);
                y = vsel(_mm512_cmp_ps_mask(y, one, _CMP_GT_OQ), y, one);
                return _mm512_mul_ps(x, y);
            });
            return true;
        case pw_op::leaky_relu:
            vloop1(a, dst, dst_bounded, n, [=](__m512 x, __m512) {
                return vsel(_mm512_cmp_ps_mask(x, zero, _CMP_GE_OQ), _mm512_mul_ps(alpha, x), x);
            });
            return true;
        case pw_op::reciprocal:
            vloop1(a, dst, dst_bounded, n, [=](__m512 x, __m512) { return _mm512_div_ps(one, x); });
            return true;
        case pw_op::sqrt: vloop1(a, dst, dst_bounded, n, [](__m512 x, __m512) { return _mm512_maskz_sqrt_ps(0xFFFF, x); }); return true;
        case pw_op::floor:
            vloop1(a, dst, dst_bounded, n, [](__m512 x, __m512) {
                return _mm512_maskz_roundscale_ps(0xFFFF, x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
            });
            return true;
        case pw_op::ceil:
            vloop1(a, dst, dst_bounded, n, [](__m512 x, __m512) {
                return _mm512_maskz_roundscale_ps(0xFFFF, x, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
            });
            return true;
        default: return false;
    }
}

}  // namespace
#endif

void pw_program::run_row(float* out, const float* const* inputs, std::int64_t p, std::int64_t q0,
                         std::int64_t len, std::int64_t Q) const {
#if defined(__AVX512F__)
    run_span(out, inputs, p * Q + q0, len, Q);
#else
    run_row_reference(out, inputs, p, q0, len, Q);
#endif
}

void pw_program::run_span(float* out, const float* const* inputs, std::int64_t first, std::int64_t count,
                          std::int64_t Q) const {
#if defined(__AVX512F__)
    // Registers carry 16 floats of padding so full-width tail stores into them stay in bounds.
    constexpr std::int64_t stride = chunk + 16;
    // A chunk that crosses rows gets its per-row / per-column operands spelled out per element (a fill per row
    // segment) so short rows share one pass of the program instead of paying its dispatch once per row.
    constexpr int max_expanded = 8;
    alignas(64) float regs[max_registers * stride];
    alignas(64) float expanded[max_expanded * stride];
    const lut_state* lut = lut_valid() ? lut_.get() : nullptr;
    const std::size_t lut_at = lut ? lut->at : code.size();
    // Per-row table: for rows whose part in this span is long enough to repay building it.
    const std::size_t row_at = lut ? lut->row_at : code.size();
    alignas(64) float row_table[max_table_grid + 1];
    std::int64_t row_table_p = -1, row_grid = 0;
    if (row_at < code.size()) {
        const pw_quant& fq = quants[static_cast<std::size_t>(code[row_at].b.index)];
        row_grid = static_cast<std::int64_t>(fq.hi - fq.lo) + 1;
    }
    using K = pw_operand::kind;
    for (std::int64_t off = 0; off < count; off += chunk) {
        const std::int64_t n = std::min(chunk, count - off);
        float* o = out + off;
        const std::int64_t f = first + off;  // flat index of the chunk's first element
        const std::int64_t p = f / Q, q = f % Q;
        if (q + n > Q) {
            int needed = 0;
            for (const pw_instr& ins : code)
                for (const pw_operand* op : {&ins.a, &ins.b})
                    needed += op->k == K::const_row || op->k == K::const_col || op->k == K::input_row ||
                              op->k == K::input_col;
            if (needed > max_expanded) {  // rare: one row segment at a time
                for (std::int64_t e = 0; e < n;) {
                    const std::int64_t fe = f + e, m = std::min(n - e, Q - fe % Q);
                    run_span(o + e, inputs, fe, m, Q);
                    e += m;
                }
                continue;
            }
        }
        int used = 0;
        auto expand = [&](auto value_at_row, const float* col) -> vsrc {
            float* buf = expanded + (used++) * stride;
            for (std::int64_t e = 0; e < n;) {
                const std::int64_t fe = f + e, pe = fe / Q, qe = fe % Q, m = std::min(n - e, Q - qe);
                if (col)
                    std::copy_n(col + qe, m, buf + e);
                else
                    std::fill_n(buf + e, m, value_at_row(pe));
                e += m;
            }
            return {buf, false, 0.0f};
        };
        const bool one_row = q + n <= Q;
        auto src = [&](const pw_operand& op) -> vsrc {
            const auto row_of = [&op](std::int64_t r) { return static_cast<std::size_t>(op.period > 0 ? r % op.period : r); };
            switch (op.k) {
                case K::output: return {o, true, 0.0f};
                case K::reg: return {regs + op.index * stride, false, 0.0f};
                case K::scalar: return {nullptr, false, op.value};
                case K::const_row: {
                    const std::vector<float>& c = constants[static_cast<std::size_t>(op.index)];
                    if (one_row) return {nullptr, false, c[row_of(p)]};
                    return expand([&](std::int64_t r) { return c[row_of(r)]; }, nullptr);
                }
                case K::const_col: {
                    const float* c = constants[static_cast<std::size_t>(op.index)].data();
                    return one_row ? vsrc{c + q, true, 0.0f} : expand([](std::int64_t) { return 0.0f; }, c);
                }
                case K::input_full: return {inputs[op.index] + f, true, 0.0f};
                case K::input_row: {
                    const float* c = inputs[op.index];
                    if (one_row) return {nullptr, false, c[row_of(p)]};
                    return expand([&](std::int64_t r) { return c[row_of(r)]; }, nullptr);
                }
                case K::input_col: {
                    const float* c = inputs[op.index];
                    return one_row ? vsrc{c + q, true, 0.0f} : expand([](std::int64_t) { return 0.0f; }, c);
                }
                case K::none: break;
            }
            return {nullptr, false, 0.0f};
        };
        std::size_t row_here = code.size();
        const bool all_rows = lut && !lut->row_tables.empty();
        if (all_rows) {
            row_here = row_at;
        } else if (row_at < code.size() && one_row) {
            const std::int64_t b0 = std::max(first, p * Q), e0 = std::min(first + count, (p + 1) * Q);
            if (3 * (e0 - b0) >= 4 * (row_grid + 1)) row_here = row_at;  // ~3 passes saved per element, ~4 per entry
        }
        for (std::size_t k = 0; k < code.size(); ++k) {
            const pw_instr& ins = code[k];
            const bool to_out = ins.dst < 0;
            float* dst = to_out ? o : regs + ins.dst * stride;
            const vsrc a = src(ins.a);
            if (k == row_here && all_rows) {  // lookups in the precomputed tables, row segment by row segment
                vlut_rows(a, o, n, quants[static_cast<std::size_t>(ins.b.index)], f, Q, lut->row_tables.data(),
                          lut->row_period, lut->row_count, row_grid,
                          lut->row_codes.empty() ? nullptr : lut->row_codes.data(), lut->code_scale, lut->code_lo);
                break;
            }
            if (k == row_here) {  // this fake_quant and the rest: a lookup in the row's table
                const pw_quant& fq = quants[static_cast<std::size_t>(ins.b.index)];
                if (row_table_p != p) {
                    fill_grid(fq, row_table, row_grid);
                    lut->row_sub->run_row(row_table, inputs, p, 0, row_grid + 1, row_grid + 1);
                    row_table_p = p;
                }
                vlut_dispatch(a, o, true, n, fq, row_table, static_cast<std::int32_t>(row_grid));
                break;
            }
            if (k == lut_at) {  // this fake_quant and everything after it: one table lookup into the output
                vlut_dispatch(a, o, true, n, quants[static_cast<std::size_t>(ins.b.index)], lut->table.data(),
                              static_cast<std::int32_t>(lut->table.size() - 1),
                              lut->codes.empty() ? nullptr : lut->codes.data(), lut->code_scale, lut->code_lo);
                break;
            }
            if (ins.op == pw_op::fake_quant) {
                const pw_quant& fq = quants[static_cast<std::size_t>(ins.b.index)];
                if (vfake_quant_dispatch(a, dst, to_out, n, fq)) continue;
                const std::uint64_t idx0 = static_cast<std::uint64_t>(f);
                if (a.ptr) {
                    pw_fake_quant(a.ptr, dst, n, fq, idx0);
                } else {
                    std::fill_n(dst, n, a.value);
                    pw_fake_quant(dst, dst, n, fq, idx0);
                }
                continue;
            }
            const bool binary = pw_is_binary(ins.op);
            const vsrc b = binary ? src(ins.b) : a;
            if (!a.ptr && !b.ptr) {  // a row-uniform result: computed once, as the reference does
                float v = a.value;
                if (binary)
                    v = pw_eval_ref(ins.op, a.value, b.value, ins.alpha, ins.beta);
                else
                    pw_apply_unary(ins.op, &a.value, &v, 1, ins.alpha, ins.beta);
                std::fill_n(dst, n, v);
                continue;
            }
            if (vapply(ins, a, b, dst, to_out, n)) continue;
            // The reference building blocks, row segment by row segment with per-row operands as scalars (an
            // expanded array would take their array form: other special cases for pow, fmin's operand order).
            const auto is_row = [](const pw_operand& op) { return op.k == K::const_row || op.k == K::input_row; };
            for (std::int64_t e = 0; e < n;) {
                const std::int64_t pe = (f + e) / Q, m = one_row ? n : std::min(n - e, Q - (f + e) % Q);
                const auto seg = [&](const pw_operand& op, const vsrc& v) -> vsrc {
                    if (!is_row(op) || one_row) return v.ptr ? vsrc{v.ptr + e, v.bounded, 0.0f} : v;
                    const std::size_t r = static_cast<std::size_t>(op.period > 0 ? pe % op.period : pe);
                    return {nullptr, false, op.k == K::const_row ? constants[static_cast<std::size_t>(op.index)][r]
                                                                 : inputs[op.index][r]};
                };
                const vsrc sa = seg(ins.a, a), sb = binary ? seg(ins.b, b) : sa;
                float* d = dst + e;
                if (!sa.ptr && !sb.ptr) {
                    float v = sa.value;
                    if (binary)
                        v = pw_eval_ref(ins.op, sa.value, sb.value, ins.alpha, ins.beta);
                    else
                        pw_apply_unary(ins.op, &sa.value, &v, 1, ins.alpha, ins.beta);
                    std::fill_n(d, m, v);
                } else if (!binary) {
                    pw_apply_unary(ins.op, sa.ptr, d, m, ins.alpha, ins.beta);
                } else if (sa.ptr) {
                    pw_apply_binary(ins.op, sa.ptr, sb.ptr, sb.value, d, m, false);
                } else {
                    pw_apply_binary(ins.op, sb.ptr, nullptr, sa.value, d, m, true);
                }
                e += m;
            }
        }
    }
#else
    for (std::int64_t e = 0; e < count;) {
        const std::int64_t fe = first + e, m = std::min(count - e, Q - fe % Q);
        run_row_reference(out + e, inputs, fe / Q, fe % Q, m, Q);
        e += m;
    }
#endif
}

void pw_program::run(float* out, const float* const* inputs, std::int64_t P, std::int64_t Q) const {
    if (P <= 0 || Q <= 0) return;
    // Split long rows so that few, long rows still spread over the threads.
    const std::int64_t parts = Q >= 4 * chunk ? std::max<std::int64_t>(1, Q / (4 * chunk)) : 1;
    const std::int64_t seg = (Q + parts - 1) / parts;
    if (Q < chunk && P > 1) {
        // Short rows: blocks of rows as one span (one pass of the program per chunk, not per row).
        detail::parallel_range(P, std::max<std::int64_t>(1, 4 * chunk / Q), [&](std::int64_t b, std::int64_t e) {
            run_span(out + b * Q, inputs, b * Q, (e - b) * Q, Q);
        });
        return;
    }
    detail::parallel_for(P * parts, [&](std::int64_t t) {
        const std::int64_t p = t / parts, s = t % parts;
        const std::int64_t q0 = s * seg, q1 = std::min(Q, q0 + seg);
        if (q0 < q1) run_row(out + p * Q + q0, inputs, p, q0, q1 - q0, Q);
    });
}

bool pw_program::lut_valid() const noexcept {
    // Byte-wise against the copies compile() kept (vector copies of trivially copyable structs copy every byte): any
    // change of code or grids shows. Equal values with other padding bytes or another NaN/zero sign only drop the
    // tables (the plain path runs), never give a wrong result. Checked on every run_span, so it must be cheap.
    static_assert(std::is_trivially_copyable_v<pw_instr> && std::is_trivially_copyable_v<pw_quant>);
    if (!lut_ || lut_->code.size() != code.size() || lut_->quants.size() != quants.size()) return false;
    return (code.empty() || std::memcmp(code.data(), lut_->code.data(), code.size() * sizeof(pw_instr)) == 0) &&
           (quants.empty() || std::memcmp(quants.data(), lut_->quants.data(), quants.size() * sizeof(pw_quant)) == 0);
}

std::size_t pw_program::table_at() const noexcept { return lut_valid() ? lut_->at : code.size(); }

std::size_t pw_program::row_table_at() const noexcept { return lut_valid() ? lut_->row_at : code.size(); }

#if defined(__AVX512F__)
namespace {

/// Index of the first fake_quant from which the rest of the program reads only that grid value, registers it
/// wrote itself, scalars and (when row_operands) per-row values; code.size() when there is none.
std::size_t table_start(const pw_program& prog, bool row_operands) {
    using K = pw_operand::kind;
    const auto& code = prog.code;
    for (std::size_t j = 0; j + 1 < code.size(); ++j) {
        const pw_instr& q = code[j];
        if (q.op != pw_op::fake_quant || q.dst < 0) continue;
        const pw_quant& fq = prog.quants[static_cast<std::size_t>(q.b.index)];
        if (fq.rounding == rounding_mode::stochastic || !(fq.lo <= fq.hi) || fq.lo != std::floor(fq.lo) ||
            fq.hi != std::floor(fq.hi) || fq.hi - fq.lo + 1 > static_cast<float>(pw_program::max_table_grid))
            continue;
        bool ok = true, d_original = true;
        std::vector<char> written(pw_program::max_registers, 0);
        for (std::size_t k = j + 1; k < code.size() && ok; ++k) {
            const pw_instr& ins = code[k];
            const bool binary = pw_is_binary(ins.op);
            for (const pw_operand* op : {&ins.a, &ins.b}) {
                if (op == &ins.b && !binary) continue;
                if (op->k == K::scalar) continue;
                if (row_operands && (op->k == K::const_row || op->k == K::input_row)) continue;
                if (op->k == K::reg && ((op->index == q.dst && d_original) || written[static_cast<std::size_t>(op->index)]))
                    continue;
                ok = false;
            }
            if (ins.op == pw_op::fake_quant &&
                prog.quants[static_cast<std::size_t>(ins.b.index)].rounding == rounding_mode::stochastic)
                ok = false;
            if (ins.dst >= 0) {
                if (ins.dst == q.dst) d_original = false;
                written[static_cast<std::size_t>(ins.dst)] = 1;
            }
        }
        if (ok) return j;
    }
    return code.size();
}

/// The program from fake_quant `j` on, with that fake_quant replaced by a copy of the output: run on the grid's
/// possible results r * scale it gives the values the full program produces from them.
pw_program suffix_program(const pw_program& prog, std::size_t j) {
    pw_program sub;
    sub.quants = prog.quants;
    sub.constants = prog.constants;
    sub.num_registers = prog.num_registers;
    sub.code.assign(prog.code.begin() + static_cast<std::ptrdiff_t>(j), prog.code.end());
    sub.code.front() = {pw_op::copy, prog.code[j].dst, pw_operand::output(), {}, 0.0f, 0.0f};
    return sub;
}

}  // namespace
#endif

void pw_program::compile() {
    lut_.reset();
#if defined(__AVX512F__)
    auto st = std::make_shared<lut_state>();
    st->code = code;
    st->quants = quants;
    // Whole-program table: the suffix reads nothing per element or per row.
    st->at = table_start(*this, false);
    if (st->at < code.size()) {
        const pw_quant& fq = quants[static_cast<std::size_t>(code[st->at].b.index)];
        const std::int64_t G = static_cast<std::int64_t>(fq.hi - fq.lo) + 1;
        st->table.resize(static_cast<std::size_t>(G + 1));
        fill_grid(fq, st->table.data(), G);
        suffix_program(*this, st->at).run_span(st->table.data(), nullptr, 0, G + 1, G + 1);
    }
    // Per-row tables (built per long row at run time): the suffix may read per-row constants too.
    st->row_at = table_start(*this, true);
    if (st->row_at < st->at) {
        auto sub = std::make_shared<pw_program>(suffix_program(*this, st->row_at));
        sub->compile();  // its own whole-program table (e.g. the hard-swish after BatchNormalization)
        // When the per-row values are program constants with one common period, all row tables are computed
        // now (one per constant row: a channel), so short rows get them too.
        std::int64_t period = 0, rows = -1;
        bool constant_rows = true;
        for (std::size_t k = st->row_at + 1; k < code.size(); ++k)
            for (const pw_operand* op : {&code[k].a, &code[k].b}) {
                if (op == &code[k].b && !pw_is_binary(code[k].op)) continue;
                if (op->k == pw_operand::kind::input_row) constant_rows = false;
                if (op->k != pw_operand::kind::const_row) continue;
                const std::int64_t len = static_cast<std::int64_t>(constants[static_cast<std::size_t>(op->index)].size());
                const std::int64_t r = op->period > 0 ? op->period : len;
                if (rows >= 0 && (r != rows || (op->period > 0) != (period > 0))) constant_rows = false;
                if (op->period > 0 && len < op->period) constant_rows = false;
                rows = std::min(rows < 0 ? r : rows, r);
                period = op->period > 0 ? op->period : 0;
            }
        const pw_quant& fq = quants[static_cast<std::size_t>(code[st->row_at].b.index)];
        const std::int64_t G = static_cast<std::int64_t>(fq.hi - fq.lo) + 1;
        if (constant_rows && rows > 0 && rows * (G + 1) <= max_row_tables) {
            st->row_period = period;
            st->row_count = rows;
            st->row_tables.resize(static_cast<std::size_t>(rows * (G + 1)));
            for (std::int64_t r = 0; r < rows; ++r) {
                float* t = st->row_tables.data() + r * (G + 1);
                fill_grid(fq, t, G);
                sub->run_row(t, nullptr, r, 0, G + 1, G + 1);
            }
        }
        st->row_sub = std::move(sub);
    } else {
        st->row_at = code.size();
    }
    // Byte codes of the tables when the program's result is a fake_quant's grid value.
    if (!code.empty() && code.back().op == pw_op::fake_quant && code.back().dst < 0) {
        const pw_quant& out = quants[static_cast<std::size_t>(code.back().b.index)];
        st->code_scale = out.scale;
        st->code_lo = out.lo;
        if (!st->table.empty() && st->table.size() <= 257) {
            st->codes.assign(256, 0);
            if (!encode_grid(st->table.data(), static_cast<std::int64_t>(st->table.size()) - 1, out, st->codes.data()))
                st->codes.clear();
        }
        const std::int64_t G = st->row_count > 0 ? static_cast<std::int64_t>(st->row_tables.size()) / st->row_count - 1 : 0;
        if (!st->row_tables.empty() && G <= 256) {
            st->row_codes.assign(static_cast<std::size_t>(st->row_count * 256), 0);
            for (std::int64_t r = 0; r < st->row_count && !st->row_codes.empty(); ++r)
                if (!encode_grid(st->row_tables.data() + r * (G + 1), G, out, st->row_codes.data() + r * 256))
                    st->row_codes.clear();
        }
    }
    if (st->at < code.size() || st->row_at < code.size()) lut_ = std::move(st);
#endif
}

std::string pw_program::describe() const {
    std::ostringstream os;
    for (std::size_t i = 0; i < code.size(); ++i) os << (i ? "," : "") << pw_name(code[i].op);
    return os.str();
}

}  // namespace quantsim
