// Plain reference versions of the quantizer kernels: one element at a time, textbook order (divide, round with the
// standard library, add the zero point, clamp in the integer domain, subtract, multiply), the group of each element
// found by division. The optimized kernels must equal these bit for bit (tests/quant/kernels_test.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include <quantsim/quant/detail/dispatch.hpp>
#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/layout.hpp>
#include <quantsim/quant/quantize.hpp>
#include <quantsim/quant/rounding.hpp>

namespace quantsim {

namespace detail {
/// round(x / s) (or x * (1/s)) in compute type C, before the zero point and the clamp. NaN stays NaN.
template <class C>
C rounded_ratio_ref(float x, float s, const quant_options& o, std::uint64_t index) {
    const C v = o.arithmetic == scale_arithmetic::divide ? static_cast<C>(x) / static_cast<C>(s)
                                                         : static_cast<C>(x) * (C(1) / static_cast<C>(s));
    return round_ref<C>(v, o.rounding, o.seed, index);
}
template <class C>
float fake_quant_value_ref(float x, float s, std::int32_t zp, const int_range& r, const quant_options& o,
                           std::uint64_t index) {
    const C v = rounded_ratio_ref<C>(x, s, o, index);
    if (std::isnan(v)) return static_cast<float>(v);
    const double q = std::clamp(static_cast<double>(v) + zp, static_cast<double>(r.qmin), static_cast<double>(r.qmax));
    return static_cast<float>((q - zp) * static_cast<double>(s));
}
}  // namespace detail

/// One element: the fake-quantized value of x with scale s, zero point zp on grid r, computed in float for grids of
/// up to 16 bits and in double for 32-bit grids. `index` feeds stochastic rounding.
inline float fake_quant_value_ref(float x, float s, std::int32_t zp, int bitwidth, const int_range& r,
                                  const quant_options& o = {}, std::uint64_t index = 0) {
    return bitwidth <= max_bitwidth ? detail::fake_quant_value_ref<float>(x, s, zp, r, o, index)
                                    : detail::fake_quant_value_ref<double>(x, s, zp, r, o, index);
}

/// Reference fake_quant over a row-major tensor of `shape`.
inline void fake_quant_ref(std::span<const float> x, std::span<float> y, const shape_t& shape, const quant_params& p,
                           const quant_options& o = {}) {
    const resolved_granularity g = check_quant_params(p, shape, "fake_quant_ref");
    const std::int64_t n = detail::numel_of(shape, "fake_quant_ref");
    detail::check_span_sizes(x.size(), y.size(), n, shape, "fake_quant_ref");
    const int_range r = p.range();
    for (std::int64_t i = 0; i < n; ++i) {
        const auto k = static_cast<std::size_t>(group_index_ref(g, shape, i));
        y[static_cast<std::size_t>(i)] = fake_quant_value_ref(x[static_cast<std::size_t>(i)], p.scale[k],
                                                              p.zero_point[k], p.bitwidth, r, o,
                                                              static_cast<std::uint64_t>(i));
    }
}

/// Reference quantize; throws numeric_error on the first NaN.
template <class OutT>
void quantize_ref(std::span<const float> x, std::span<OutT> q, const shape_t& shape, const quant_params& p,
                  const quant_options& o = {}, dtype storage = dtype_of_v<OutT>) {
    const resolved_granularity g = check_quant_params(p, shape, "quantize_ref");
    detail::check_storage<OutT>(storage, p.range(), "quantize_ref");
    const std::int64_t n = detail::numel_of(shape, "quantize_ref");
    detail::check_span_sizes(x.size(), q.size(), n, shape, "quantize_ref");
    const int_range r = p.range();
    for (std::int64_t i = 0; i < n; ++i) {
        const auto k = static_cast<std::size_t>(group_index_ref(g, shape, i));
        const float xi = x[static_cast<std::size_t>(i)];
        const double v = p.bitwidth <= max_bitwidth
                             ? static_cast<double>(detail::rounded_ratio_ref<float>(xi, p.scale[k], o, static_cast<std::uint64_t>(i)))
                             : detail::rounded_ratio_ref<double>(xi, p.scale[k], o, static_cast<std::uint64_t>(i));
        if (std::isnan(v))
            QUANTSIM_THROW(numeric_error, "quantize_ref: element ", i, " (index ", index_string(shape, i), ") is NaN");
        const double qv = std::clamp(v + p.zero_point[k], static_cast<double>(r.qmin), static_cast<double>(r.qmax));
        q[static_cast<std::size_t>(i)] = static_cast<OutT>(static_cast<std::int64_t>(qv));
    }
}

/// Reference dequantize: (q - zp) * s computed in double, rounded to float.
template <class InT>
void dequantize_ref(std::span<const InT> q, std::span<float> y, const shape_t& shape, const quant_params& p) {
    const resolved_granularity g = check_quant_params(p, shape, "dequantize_ref");
    const std::int64_t n = detail::numel_of(shape, "dequantize_ref");
    detail::check_span_sizes(q.size(), y.size(), n, shape, "dequantize_ref");
    for (std::int64_t i = 0; i < n; ++i) {
        const auto k = static_cast<std::size_t>(group_index_ref(g, shape, i));
        const double d = static_cast<double>(static_cast<std::int64_t>(q[static_cast<std::size_t>(i)]) - p.zero_point[k]);
        y[static_cast<std::size_t>(i)] = static_cast<float>(d * static_cast<double>(p.scale[k]));
    }
}

}  // namespace quantsim
