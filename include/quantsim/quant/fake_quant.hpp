// Fake quantization (quantize-dequantize): y = (clamp(round(x / s) + zp, qmin, qmax) - zp) * s, per tensor, per
// channel or per block, on float32 spans (with a shape) and tensors, in place or out of place. Multithreaded with
// OpenMP; results do not depend on the thread count. Eigen overloads: quant/eigen.hpp. Reference: quant/reference.hpp.
#pragma once

#include <cstdint>
#include <span>

#include <quantsim/core/tensor.hpp>
#include <quantsim/quant/detail/dispatch.hpp>
#include <quantsim/quant/detail/kernels.hpp>
#include <quantsim/quant/detail/parallel.hpp>
#include <quantsim/quant/detail/run_layout.hpp>
#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/layout.hpp>
#include <quantsim/quant/rounding.hpp>

namespace quantsim {

namespace detail {

template <class C>
void fake_quant_contiguous(const float* x, float* y, std::int64_t n, const shape_t& shape,
                           const resolved_granularity& g, const quant_params& p, const quant_options& o) {
    const run_layout L = make_run_layout(g, shape);
    const group_table<C> G = make_group_table<C>(p, needs_group_arrays(L));
    const std::uint64_t key = stochastic_key(o.seed);
    // Large out-of-place outputs bypass the cache (see detail/stream_store.hpp).
    const bool stream = x != y && n * static_cast<std::int64_t>(sizeof(float)) >= stream_threshold_bytes();
    with_modes(o, "fake_quant", [&](auto tag) {
        using T = decltype(tag);
        parallel_ranges(n, o.num_threads, [&](std::int64_t begin, std::int64_t end) {
            if (stream) {
                fq_range_streamed<T::rounding, T::arithmetic, C>(x, y, L, G, begin, end, key);
                return;
            }
            for_each_run<C>(L, G, begin, end, [&](std::int64_t i, std::int64_t count, const auto& view) {
                const auto first = static_cast<std::uint64_t>(i);
                if (x == y)
                    fq_run_inplace<T::rounding, T::arithmetic, C>(y + i, count, view, key, first, 1);
                else
                    fq_run<T::rounding, T::arithmetic, C>(x + i, y + i, count, view, key, first, 1);
            });
        });
    });
}

}  // namespace detail

/// Fake-quantizes x (row-major, `shape`) into y. y may be x itself (in place) but may not partially overlap it.
/// Stochastic rounding uses each element's flat index. Empty tensors are fine (nothing to do).
inline void fake_quant(std::span<const float> x, std::span<float> y, const shape_t& shape, const quant_params& p,
                       const quant_options& o = {}) {
    constexpr const char* where = "fake_quant";
    const resolved_granularity g = check_quant_params(p, shape, where);
    const std::int64_t n = detail::numel_of(shape, where);
    detail::check_span_sizes(x.size(), y.size(), n, shape, where);
    detail::check_no_partial_overlap(x.data(), x.size_bytes(), y.data(), y.size_bytes(), where);
    if (n == 0) return;
    if (p.bitwidth <= max_bitwidth)
        detail::fake_quant_contiguous<float>(x.data(), y.data(), n, shape, g, p, o);
    else
        detail::fake_quant_contiguous<double>(x.data(), y.data(), n, shape, g, p, o);
}

/// In place.
inline void fake_quant_(std::span<float> x, const shape_t& shape, const quant_params& p, const quant_options& o = {}) {
    fake_quant(std::span<const float>(x), x, shape, p, o);
}

/// Per-tensor on a flat span.
inline void fake_quant(std::span<const float> x, std::span<float> y, const encoding& e, const quant_options& o = {}) {
    fake_quant(x, y, shape_t{static_cast<std::int64_t>(x.size())}, quant_params::per_tensor(e), o);
}
inline void fake_quant_(std::span<float> x, const encoding& e, const quant_options& o = {}) {
    fake_quant_(x, shape_t{static_cast<std::int64_t>(x.size())}, quant_params::per_tensor(e), o);
}

/// Out of place on a float32 tensor: a new tensor of the same shape.
inline tensor fake_quant(const tensor& x, const quant_params& p, const quant_options& o = {}) {
    detail::require_float32(x, "fake_quant");
    tensor y = tensor::empty(x.shape());
    fake_quant(x.span<float>(), y.span<float>(), x.shape(), p, o);
    return y;
}
inline tensor fake_quant(const tensor& x, const encoding& e, const quant_options& o = {}) {
    return fake_quant(x, quant_params::per_tensor(e), o);
}

/// In place on a float32 tensor (views such as slices write through to their storage).
inline void fake_quant_(tensor& x, const quant_params& p, const quant_options& o = {}) {
    detail::require_float32(x, "fake_quant_");
    fake_quant_(x.span<float>(), x.shape(), p, o);
}
inline void fake_quant_(tensor& x, const encoding& e, const quant_options& o = {}) {
    fake_quant_(x, quant_params::per_tensor(e), o);
}

}  // namespace quantsim
