// Gradients of fake quantization for QAT: the straight-through estimator for the input, LSQ gradients for scale and
// zero point (optionally scaled by 1/sqrt(N * Qp)), and AIMET's range-learning gradients for (min, max).
//
// All treat round() as the identity for differentiation (STE) and keep its value. With v = x / s, r = round(v),
// lo = qmin - zp, hi = qmax - zp, an element is inside when lo <= r <= hi (the rounded value, as PyTorch and AIMET).
//   d fq / d x  = inside                                    (STE)
//   d fq / d s  = r - v inside, lo below, hi above          (LSQ; AIMET's grad_scale)
//   d fq / d zp = 0 inside, -s outside                      (LSQ+; AIMET's grad_offset = -this, offset = -zp)
// Range learning (AIMET v1 LearnedGrid): asymmetric s = (max - min) / n, zp = round(-min / s) clamped to [0, n];
//   dL/dmin = -G_s / n + max * n / (max - min)^2 * G_o,  dL/dmax = G_s / n - min * n / (max - min)^2 * G_o
// with G_s = sum g * dfq/ds, G_o = sum g * s * outside; symmetric: s = max / floor(n / 2), dL/dmax = G_s / floor(n/2),
// dL/dmin = -dL/dmax (min is tied to -max). Sums run over each group's elements (per tensor or per channel) in a
// fixed order, so results do not depend on the thread count. docs/quantization.md has the derivations.
#pragma once

#include <algorithm>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/quant/detail/dispatch.hpp>
#include <quantsim/quant/detail/kernels.hpp>
#include <quantsim/quant/detail/run_layout.hpp>
#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/layout.hpp>
#include <quantsim/quant/rounding.hpp>

namespace quantsim {

namespace detail {

/// Per-group sums of the backward pass: sum g * dfq/ds and sum g * s * outside.
struct backward_sums {
    std::vector<double> scale;
    std::vector<double> offset;
};

/// The loop body of fq_backward_impl for elements [i0, i0 + count) of one run: the plain reference.
template <class C, class View>
void fq_backward_run_ref(const float* x, const float* g, float* dx, std::int64_t i0, std::int64_t count,
                         const View& view, const quant_options& o, double* ps) {
    for (std::int64_t j = 0; j < count; ++j) {
        const std::int64_t i = i0 + j;
        const C s = view.s(j);
        const C v = o.arithmetic == scale_arithmetic::divide ? static_cast<C>(x[i]) / s : static_cast<C>(x[i]) * view.inv(j);
        const C r = round_ref<C>(v, o.rounding, o.seed, static_cast<std::uint64_t>(i));
        const double gi = g[i];
        if (std::isnan(v)) {
            if (dx) dx[i] = std::numeric_limits<float>::quiet_NaN();
            if (ps) ps[2 * static_cast<std::size_t>(view.gid(j))] += std::numeric_limits<double>::quiet_NaN();
            continue;
        }
        const bool below = r < view.lo(j), above = r > view.hi(j), inside = !below && !above;
        if (dx) dx[i] = inside ? g[i] : 0.0f;
        if (ps) {
            const auto k = 2 * static_cast<std::size_t>(view.gid(j));
            const double ds = inside ? static_cast<double>(r) - static_cast<double>(v)
                                     : static_cast<double>(below ? view.lo(j) : view.hi(j));
            ps[k] += gi * ds;
            if (!inside) ps[k + 1] += gi * static_cast<double>(s);
        }
    }
}

/// Vector path for a float run with one group and round-to-nearest-even (QAT's common case: per-tensor activations,
/// per-channel weight rows). Same values as the reference: |v| < 2^22 rounds by adding and subtracting 1.5 * 2^23
/// (exact nearest-even in the default FP mode); larger |v| lie outside every grid, where only the comparison with
/// lo/hi matters. r - v is exact in float and each g * ds is exact in double, so the input gradient is the same bit
/// for bit and the per-group sums differ only in summation order (16 lanes, then in lane order; the AVX-512 loop
/// also sums g outside the grid and multiplies by s once). Returns false, having added nothing to the sums, when the
/// run holds a NaN: the reference then handles it.
// GCC 12 reports the deliberately undefined pass-through operand inside unmasked AVX-512 intrinsics as
// maybe-uninitialized once they are inlined; it says nothing about this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
template <bool Divide, bool WantDx>
bool fq_backward_run_nearest(const float* x, const float* g, float* dx, std::int64_t count,
                             const const_view<float>& view, double* ps) {
    constexpr int lanes = 16;
    const float s = view.s(0), inv = view.inv(0), lo = view.lo(0), hi = view.hi(0);
    double acc_s[lanes] = {}, acc_o[lanes] = {};
    int nan = 0;
    const auto element = [&](std::int64_t j, int k) __attribute__((always_inline)) {
        const float v = Divide ? x[j] / s : x[j] * inv;
        const float r = std::fabs(v) < 0x1p22f ? (v + 0x1.8p23f) - 0x1.8p23f : v;
        const bool below = r < lo, above = r > hi, inside = !below && !above;
        nan |= v != v;
        const float gk = g[j];
        if constexpr (WantDx) dx[j] = inside ? gk : 0.0f;
        const float ds = inside ? r - v : (below ? lo : hi);
        acc_s[k] += static_cast<double>(gk) * static_cast<double>(ds);
        acc_o[k] += inside ? 0.0 : static_cast<double>(gk) * static_cast<double>(s);
    };
    std::int64_t j = 0;
    double vs = 0, vo = 0;  // the AVX-512 loop's sums (its offset sum is s * sum g, rounded once)
#if defined(__AVX512F__)
    {
        // GCC does not vectorize element() (float compares feeding double accumulators): the same steps, 16 lanes.
        const __m512 s16 = _mm512_set1_ps(s), inv16 = _mm512_set1_ps(inv), lo16 = _mm512_set1_ps(lo),
                     hi16 = _mm512_set1_ps(hi), magic = _mm512_set1_ps(0x1.8p23f), big = _mm512_set1_ps(0x1p22f);
        __m512d as0 = _mm512_setzero_pd(), as1 = as0, ao0 = as0, ao1 = as0;
        __mmask16 nan16 = 0;
        for (; j + lanes <= count; j += lanes) {
            const __m512 xv = _mm512_loadu_ps(x + j);
            const __m512 v = Divide ? _mm512_div_ps(xv, s16) : _mm512_mul_ps(xv, inv16);
            const __m512 rounded = _mm512_sub_ps(_mm512_add_ps(v, magic), magic);
            const __m512 r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(_mm512_abs_ps(v), big, _CMP_LT_OQ), v, rounded);
            const __mmask16 below = _mm512_cmp_ps_mask(r, lo16, _CMP_LT_OQ);
            const __mmask16 above = _mm512_cmp_ps_mask(r, hi16, _CMP_GT_OQ);
            const __mmask16 outside = below | above;
            nan16 |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
            const __m512 gv = _mm512_loadu_ps(g + j);
            if constexpr (WantDx) _mm512_storeu_ps(dx + j, _mm512_maskz_mov_ps(static_cast<__mmask16>(~outside), gv));
            const __m512 ds = _mm512_mask_blend_ps(outside, _mm512_sub_ps(r, v), _mm512_mask_blend_ps(below, hi16, lo16));
            // Halves by extract (GCC 12's _mm512_castps512_ps256 trips -Wmaybe-uninitialized).
            const auto half = [](__m512 a, auto k) {
                return _mm512_cvtps_pd(_mm256_castsi256_ps(_mm512_extracti64x4_epi64(_mm512_castps_si512(a), k.value)));
            };
            const __m512d g0 = half(gv, std::integral_constant<int, 0>{}), g1 = half(gv, std::integral_constant<int, 1>{});
            const __m512d d0 = half(ds, std::integral_constant<int, 0>{}), d1 = half(ds, std::integral_constant<int, 1>{});
            as0 = _mm512_fmadd_pd(g0, d0, as0);
            as1 = _mm512_fmadd_pd(g1, d1, as1);
            ao0 = _mm512_mask_add_pd(ao0, static_cast<__mmask8>(outside), ao0, g0);
            ao1 = _mm512_mask_add_pd(ao1, static_cast<__mmask8>(outside >> 8), ao1, g1);
        }
        nan |= nan16 != 0;
        vs = _mm512_reduce_add_pd(_mm512_add_pd(as0, as1));
        vo = _mm512_reduce_add_pd(_mm512_add_pd(ao0, ao1)) * static_cast<double>(s);
    }
#endif
    for (; j + lanes <= count; j += lanes)
        for (int k = 0; k < lanes; ++k) element(j + k, k);
    for (; j < count; ++j) element(j, 0);
    if (nan) return false;
    if (ps) {
        double ts = vs, to = vo;
        for (int k = 0; k < lanes; ++k) ts += acc_s[k], to += acc_o[k];
        const auto k = 2 * static_cast<std::size_t>(view.gid(0));
        ps[k] += ts;
        ps[k + 1] += to;
    }
    return true;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/// Vector = false runs only the reference loop (tests compare the two).
template <class C, bool Vector = true>
void fq_backward_impl(const float* x, const float* g, float* dx, std::int64_t n, const shape_t& shape,
                      const resolved_granularity& rg, const quant_params& p, const quant_options& o,
                      backward_sums* sums) {
    const run_layout L = make_run_layout(rg, shape);
    const group_table<C> G = make_group_table<C>(p, needs_group_arrays(L));
    const std::size_t groups = p.size();
    // Fixed chunks (independent of the thread count) with their own partial sums, reduced in order afterwards.
    const std::int64_t chunk = std::max<std::int64_t>(8192, 8 * static_cast<std::int64_t>(groups));
    const std::int64_t chunks = (n + chunk - 1) / chunk;
    std::vector<double> partial(sums ? static_cast<std::size_t>(chunks) * groups * 2 : 0, 0.0);
    const int threads = resolve_threads(o.num_threads, n);
    const auto body = [&](std::int64_t c) {
        double* ps = sums ? partial.data() + static_cast<std::size_t>(c) * groups * 2 : nullptr;
        const std::int64_t begin = c * chunk, end = std::min(n, begin + chunk);
        for_each_run<C>(L, G, begin, end, [&](std::int64_t i0, std::int64_t count, const auto& view) {
            if constexpr (Vector && std::is_same_v<C, float> &&
                          std::is_same_v<std::decay_t<decltype(view)>, const_view<float>>) {
                if (o.rounding == rounding_mode::nearest_even) {
                    const bool divide = o.arithmetic == scale_arithmetic::divide;
                    float* d = dx ? dx + i0 : nullptr;
                    const bool done =
                        divide ? (dx ? fq_backward_run_nearest<true, true>(x + i0, g + i0, d, count, view, ps)
                                     : fq_backward_run_nearest<true, false>(x + i0, g + i0, d, count, view, ps))
                               : (dx ? fq_backward_run_nearest<false, true>(x + i0, g + i0, d, count, view, ps)
                                     : fq_backward_run_nearest<false, false>(x + i0, g + i0, d, count, view, ps));
                    if (done) return;
                }
            }
            fq_backward_run_ref<C>(x, g, dx, i0, count, view, o, ps);
        });
    };
#if QUANTSIM_HAS_OPENMP
    if (threads > 1) {
#pragma omp parallel for schedule(static) num_threads(threads)
        for (std::int64_t c = 0; c < chunks; ++c) body(c);
    } else
#endif
    {
        (void)threads;
        for (std::int64_t c = 0; c < chunks; ++c) body(c);
    }
    if (sums) {
        sums->scale.assign(groups, 0.0);
        sums->offset.assign(groups, 0.0);
        for (std::int64_t c = 0; c < chunks; ++c)
            for (std::size_t k = 0; k < groups; ++k) {
                sums->scale[k] += partial[(static_cast<std::size_t>(c) * groups + k) * 2];
                sums->offset[k] += partial[(static_cast<std::size_t>(c) * groups + k) * 2 + 1];
            }
    }
}

/// Checks and runs the backward pass. dx may be empty (not wanted); sums may be null.
inline void fq_backward(std::span<const float> x, std::span<const float> g, std::span<float> dx, const shape_t& shape,
                        const quant_params& p, const quant_options& o, backward_sums* sums, const char* where) {
    const resolved_granularity rg = check_quant_params(p, shape, where);
    const std::int64_t n = numel_of(shape, where);
    check_span_sizes(x.size(), g.size(), n, shape, where);
    if (!dx.empty()) check_span_sizes(x.size(), dx.size(), n, shape, where);
    // Validate the options once, outside the loops.
    with_modes(o, where, [](auto) {});
    if (p.bitwidth <= max_bitwidth)
        fq_backward_impl<float>(x.data(), g.data(), dx.empty() ? nullptr : dx.data(), n, shape, rg, p, o, sums);
    else
        fq_backward_impl<double>(x.data(), g.data(), dx.empty() ? nullptr : dx.data(), n, shape, rg, p, o, sums);
}

inline void require_same_shape(const tensor& a, const tensor& b, const char* where) {
    require_float32(a, where);
    require_float32(b, where);
    if (a.shape() != b.shape())
        QUANTSIM_THROW(shape_error, where, ": input shape ", to_string(a.shape()), " but gradient shape ",
                       to_string(b.shape()));
}

}  // namespace detail

/// STE: grad_in = grad_out where the element lies on the grid after rounding, 0 elsewhere.
inline void ste_grad(std::span<const float> x, std::span<const float> grad_out, std::span<float> grad_in,
                     const shape_t& shape, const quant_params& p, const quant_options& o = {}) {
    if (grad_in.size() != x.size())
        QUANTSIM_THROW(shape_error, "ste_grad: grad_in has ", grad_in.size(), " elements, x has ", x.size());
    detail::fq_backward(x, grad_out, grad_in, shape, p, o, nullptr, "ste_grad");
}
inline tensor ste_grad(const tensor& x, const tensor& grad_out, const quant_params& p, const quant_options& o = {}) {
    detail::require_same_shape(x, grad_out, "ste_grad");
    tensor dx = tensor::empty(x.shape());
    ste_grad(x.span<float>(), grad_out.span<float>(), dx.span<float>(), x.shape(), p, o);
    return dx;
}

struct lsq_options {
    /// Multiply the scale and zero-point gradients by LSQ's g = 1 / sqrt(N * Qp): N elements per group, Qp = qmax
    /// (PyTorch's _LearnableFakeQuantize uses the same N and quant_max).
    bool grad_scaling = false;
};

struct lsq_gradients {
    tensor grad_input;                  ///< STE gradient of the input
    std::vector<float> grad_scale;      ///< one per group
    std::vector<float> grad_zero_point; ///< one per group (zero point treated as continuous, LSQ+)
    double grad_factor = 1.0;           ///< the factor applied (1 without grad_scaling)
};

/// LSQ / LSQ+ gradients of sum(grad_out * fake_quant(x)) for scale and zero point, and the STE input gradient.
inline lsq_gradients lsq_grad(const tensor& x, const tensor& grad_out, const quant_params& p,
                              const lsq_options& lo = {}, const quant_options& o = {}) {
    detail::require_same_shape(x, grad_out, "lsq_grad");
    lsq_gradients r;
    r.grad_input = tensor::empty(x.shape());
    detail::backward_sums sums;
    detail::fq_backward(x.span<float>(), grad_out.span<float>(), r.grad_input.span<float>(), x.shape(), p, o, &sums,
                        "lsq_grad");
    if (lo.grad_scaling) {
        const double per_group = static_cast<double>(x.numel()) / static_cast<double>(p.size());
        const double qp = static_cast<double>(std::max<std::int64_t>(1, p.range().qmax));
        r.grad_factor = per_group > 0 ? 1.0 / std::sqrt(per_group * qp) : 1.0;
    }
    r.grad_scale.resize(p.size());
    r.grad_zero_point.resize(p.size());
    for (std::size_t k = 0; k < p.size(); ++k) {
        r.grad_scale[k] = static_cast<float>(sums.scale[k] * r.grad_factor);
        r.grad_zero_point[k] = static_cast<float>(-sums.offset[k] * r.grad_factor);
    }
    return r;
}

/// Learnable (min, max) per tensor or per channel, AIMET's range-learning quantizer (LearnedGridTensorQuantizer).
struct learned_range {
    std::vector<float> min{0.0f};
    std::vector<float> max{1.0f};
    int bitwidth = 8;
    qscheme scheme = qscheme::asymmetric;  ///< asymmetric (unsigned grid), symmetric or strict_symmetric (signed)
    granularity gran;                      ///< per_tensor or per_channel

    /// The encodings the range defines (validated: min < max, symmetric needs max > 0).
    quant_params params() const {
        check_bitwidth(bitwidth, "learned_range");
        if (gran.kind == granularity_kind::per_block)
            QUANTSIM_THROW(unsupported_error, "learned_range: per-block range learning is not supported");
        if (min.size() != max.size() || min.empty())
            QUANTSIM_THROW(invalid_argument, "learned_range: ", min.size(), " minimums and ", max.size(), " maximums");
        if (scheme == qscheme::symmetric_unsigned)
            QUANTSIM_THROW(unsupported_error, "learned_range: symmetric_unsigned range learning is not supported");
        const bool sym = scheme != qscheme::asymmetric;
        const std::int64_t levels = std::int64_t{1} << bitwidth;
        const std::int64_t steps = levels - 1 - (scheme == qscheme::strict_symmetric ? 1 : 0);
        quant_params p;
        p.scale.clear(), p.zero_point.clear();
        p.bitwidth = bitwidth;
        p.is_signed = sym;
        p.scheme = scheme;
        p.gran = gran;
        for (std::size_t k = 0; k < min.size(); ++k) {
            const double mn = min[k], mx = max[k];
            if (!(std::isfinite(mn) && std::isfinite(mx)))
                QUANTSIM_THROW(numeric_error, "learned_range: group ", k, " has a non-finite range [", mn, ", ", mx, "]");
            if (sym) {
                if (!(mx > 0))
                    QUANTSIM_THROW(invalid_argument, "learned_range: symmetric group ", k, " needs max > 0, got ", mx);
                p.scale.push_back(static_cast<float>(mx / static_cast<double>(steps / 2)));
                p.zero_point.push_back(0);
            } else {
                if (!(mx > mn))
                    QUANTSIM_THROW(invalid_argument, "learned_range: group ", k, " needs min < max, got [", mn, ", ",
                                   mx, "]");
                const double s = (mx - mn) / static_cast<double>(steps);
                p.scale.push_back(static_cast<float>(s));
                const double zp = std::clamp(std::nearbyint(-mn / static_cast<double>(static_cast<float>(s))), 0.0,
                                             static_cast<double>(steps));
                p.zero_point.push_back(static_cast<std::int32_t>(zp));
            }
        }
        p.validate("learned_range");
        return p;
    }
};

struct range_gradients {
    tensor grad_input;
    std::vector<float> grad_min;
    std::vector<float> grad_max;
};

/// AIMET's range-learning gradients of sum(grad_out * fake_quant(x; range)) for min and max, and the STE input
/// gradient. The forward is fake_quant(x, range.params(), o).
inline range_gradients range_learning_grad(const tensor& x, const tensor& grad_out, const learned_range& range,
                                           const quant_options& o = {}) {
    detail::require_same_shape(x, grad_out, "range_learning_grad");
    const quant_params p = range.params();
    range_gradients r;
    r.grad_input = tensor::empty(x.shape());
    detail::backward_sums sums;
    detail::fq_backward(x.span<float>(), grad_out.span<float>(), r.grad_input.span<float>(), x.shape(), p, o, &sums,
                        "range_learning_grad");
    const bool sym = range.scheme != qscheme::asymmetric;
    const std::int64_t steps = (std::int64_t{1} << range.bitwidth) - 1 - (range.scheme == qscheme::strict_symmetric);
    r.grad_min.resize(p.size());
    r.grad_max.resize(p.size());
    for (std::size_t k = 0; k < p.size(); ++k) {
        const double n = static_cast<double>(steps);
        if (sym) {
            const double dmax = sums.scale[k] / static_cast<double>(steps / 2);
            r.grad_max[k] = static_cast<float>(dmax);
            r.grad_min[k] = static_cast<float>(-dmax);
        } else {
            const double mn = range.min[k], mx = range.max[k];
            const double w = n / ((mx - mn) * (mx - mn));
            r.grad_min[k] = static_cast<float>(-sums.scale[k] / n + mx * w * sums.offset[k]);
            r.grad_max[k] = static_cast<float>(sums.scale[k] / n - mn * w * sums.offset[k]);
        }
    }
    return r;
}

}  // namespace quantsim
