// Quantize float32 to integer storage (int8, uint8, int16, uint16, int32; int4/uint4 one value per byte) and
// dequantize back: q = clamp(round(x / s) + zp, qmin, qmax), x' = (q - zp) * s. Same options, granularities and
// threading as fake_quant; fake_quant(x) == dequantize(quantize(x)) bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>

#include <quantsim/core/tensor.hpp>
#include <quantsim/quant/detail/dispatch.hpp>
#include <quantsim/quant/detail/kernels.hpp>
#include <quantsim/quant/detail/parallel.hpp>
#include <quantsim/quant/detail/run_layout.hpp>
#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/layout.hpp>
#include <quantsim/quant/rounding.hpp>

namespace quantsim {

/// The integer range a storage dtype can hold (int4/uint4: one value per byte). Throws unsupported_error for
/// float and bool dtypes, and for int64 (quantsim never stores grids in it).
inline int_range storage_range(dtype t, const char* where = "storage") {
    switch (t) {
        case dtype::int4: return {-8, 7};
        case dtype::uint4: return {0, 15};
        case dtype::int8: return {-128, 127};
        case dtype::uint8: return {0, 255};
        case dtype::int16: return {-32768, 32767};
        case dtype::uint16: return {0, 65535};
        case dtype::int32: return {-2147483648LL, 2147483647LL};
        default: break;
    }
    QUANTSIM_THROW(unsupported_error, where, ": dtype ", name_of(t),
                   " is not an integer storage type (int4, uint4, int8, uint8, int16, uint16, int32)");
}

/// The smallest storage dtype that holds every value of the grid.
inline dtype storage_dtype(const int_range& r, const char* where = "storage_dtype") {
    for (dtype t : {dtype::int4, dtype::uint4, dtype::int8, dtype::uint8, dtype::int16, dtype::uint16, dtype::int32}) {
        const int_range s = storage_range(t);
        if (r.qmin >= s.qmin && r.qmax <= s.qmax) return t;
    }
    QUANTSIM_THROW(unsupported_error, where, ": no integer storage holds the grid [", r.qmin, ", ", r.qmax,
                   "] (unsigned 32-bit grids: use the signed grid, zero point - 2^31)");
}
inline dtype storage_dtype(const quant_params& p) { return storage_dtype(p.range()); }
inline dtype storage_dtype(const encoding& e) { return storage_dtype(e.range()); }

namespace detail {

/// The grid must fit the storage type; T must be the C++ type of the storage dtype.
template <class T>
void check_storage(dtype storage, const int_range& grid, const char* where) {
    const int_range s = storage_range(storage, where);
    if (!stores<T>(storage))
        QUANTSIM_THROW(invalid_argument, where, ": ", name_of(storage), " storage is not held in this element type");
    if (grid.qmin < s.qmin || grid.qmax > s.qmax)
        QUANTSIM_THROW(invalid_argument, where, ": the grid [", grid.qmin, ", ", grid.qmax, "] does not fit ",
                       name_of(storage), " storage [", s.qmin, ", ", s.qmax, "]");
}

template <class C, class OutT>
void quantize_contiguous(const float* x, OutT* q, std::int64_t n, const shape_t& shape, const resolved_granularity& g,
                         const quant_params& p, const quant_options& o) {
    const run_layout L = make_run_layout(g, shape);
    const group_table<C> G = make_group_table<C>(p, needs_group_arrays(L));
    const std::uint64_t key = stochastic_key(o.seed);
    bool any_nan = false;
    with_modes(o, "quantize", [&](auto tag) {
        using T = decltype(tag);
        parallel_ranges(n, o.num_threads, [&](std::int64_t begin, std::int64_t end) {
            bool bad = false;
            for_each_run<C>(L, G, begin, end, [&](std::int64_t i, std::int64_t count, const auto& view) {
                bad |= quantize_run<T::rounding, T::arithmetic, C>(x + i, q + i, count, view, key,
                                                                   static_cast<std::uint64_t>(i), 1);
            });
            if (bad) {
#if QUANTSIM_HAS_OPENMP
#pragma omp atomic write
#endif
                any_nan = true;
            }
        });
    });
    if (any_nan)
        for (std::int64_t i = 0; i < n; ++i)
            if (std::isnan(x[i]))
                QUANTSIM_THROW(numeric_error, "quantize: element ", i, " (index ", index_string(shape, i),
                               ") is NaN, which has no integer representation");
}

template <class C, class InT>
void dequantize_contiguous(const InT* q, float* y, std::int64_t n, const shape_t& shape, const resolved_granularity& g,
                           const quant_params& p, dtype storage, int threads) {
    const run_layout L = make_run_layout(g, shape);
    const group_table<C> G = make_group_table<C>(p, needs_group_arrays(L));
    const int_range s = storage_range(storage);
    const auto tmin = static_cast<std::int32_t>(s.qmin), tmax = static_cast<std::int32_t>(s.qmax);
    bool any_bad = false;
    parallel_ranges(n, threads, [&](std::int64_t begin, std::int64_t end) {
        bool bad = false;
        for_each_run<C>(L, G, begin, end, [&](std::int64_t i, std::int64_t count, const auto& view) {
            bad |= dequantize_run<C>(q + i, y + i, count, view, tmin, tmax);
        });
        if (bad) {
#if QUANTSIM_HAS_OPENMP
#pragma omp atomic write
#endif
            any_bad = true;
        }
    });
    if (any_bad)
        for (std::int64_t i = 0; i < n; ++i)
            if (q[i] < tmin || q[i] > tmax)
                QUANTSIM_THROW(invalid_argument, "dequantize: element ", i, " (index ", index_string(shape, i),
                               ") holds ", static_cast<std::int64_t>(q[i]), ", outside ", name_of(storage), " [",
                               tmin, ", ", tmax, "]");
}

}  // namespace detail

/// Quantizes x (row-major, `shape`) into q. OutT is the C++ type of `storage` (std::int8_t for int8 and int4,
/// std::uint8_t for uint8 and uint4, ...); the grid must fit the storage. NaN inputs throw numeric_error naming
/// the first NaN element; +-Inf saturate to the grid ends.
template <class OutT>
void quantize(std::span<const float> x, std::span<OutT> q, const shape_t& shape, const quant_params& p,
              const quant_options& o = {}, dtype storage = dtype_of_v<OutT>) {
    static_assert(std::is_integral_v<OutT> && !std::is_same_v<OutT, bool> && sizeof(OutT) <= 4,
                  "quantize: OutT must be int8_t, uint8_t, int16_t, uint16_t or int32_t");
    constexpr const char* where = "quantize";
    const resolved_granularity g = check_quant_params(p, shape, where);
    detail::check_storage<OutT>(storage, p.range(), where);
    const std::int64_t n = detail::numel_of(shape, where);
    detail::check_span_sizes(x.size(), q.size(), n, shape, where);
    detail::check_no_partial_overlap(x.data(), x.size_bytes(), q.data(), q.size_bytes(), where);
    if (n == 0) return;
    if constexpr (sizeof(OutT) == 4) {
        if (p.bitwidth > max_bitwidth) {
            detail::quantize_contiguous<double>(x.data(), q.data(), n, shape, g, p, o);
            return;
        }
    }
    detail::quantize_contiguous<float>(x.data(), q.data(), n, shape, g, p, o);
}

/// Dequantizes q (row-major, `shape`) into y. Values are not checked against the grid (as ONNX DequantizeLinear),
/// but int4/uint4 bytes must hold int4/uint4 values (invalid_argument naming the element otherwise). Of the options
/// only num_threads matters.
template <class InT>
void dequantize(std::span<const InT> q, std::span<float> y, const shape_t& shape, const quant_params& p,
                dtype storage = dtype_of_v<InT>, const quant_options& o = {}) {
    static_assert(std::is_integral_v<InT> && !std::is_same_v<InT, bool> && sizeof(InT) <= 4,
                  "dequantize: InT must be int8_t, uint8_t, int16_t, uint16_t or int32_t");
    constexpr const char* where = "dequantize";
    const resolved_granularity g = check_quant_params(p, shape, where);
    storage_range(storage, where);
    if (!stores<InT>(storage))
        QUANTSIM_THROW(invalid_argument, where, ": ", name_of(storage), " storage is not held in this element type");
    const std::int64_t n = detail::numel_of(shape, where);
    detail::check_span_sizes(q.size(), y.size(), n, shape, where);
    detail::check_no_partial_overlap(q.data(), q.size_bytes(), y.data(), y.size_bytes(), where);
    if (n == 0) return;
    // 32-bit values (or 32-bit grids) do not fit float exactly: compute in double, round once... twice at most.
    if (sizeof(InT) == 4 || p.bitwidth > max_bitwidth)
        detail::dequantize_contiguous<double>(q.data(), y.data(), n, shape, g, p, storage, o.num_threads);
    else
        detail::dequantize_contiguous<float>(q.data(), y.data(), n, shape, g, p, storage, o.num_threads);
}

/// Quantizes a float32 tensor to a new tensor of dtype `storage`.
inline tensor quantize(const tensor& x, const quant_params& p, dtype storage, const quant_options& o = {}) {
    detail::require_float32(x, "quantize");
    storage_range(storage, "quantize");
    tensor q = tensor::empty(x.shape(), storage);
    switch (storage) {
        case dtype::int4:
        case dtype::int8: quantize<std::int8_t>(x.span<float>(), q.span<std::int8_t>(), x.shape(), p, o, storage); break;
        case dtype::uint4:
        case dtype::uint8: quantize<std::uint8_t>(x.span<float>(), q.span<std::uint8_t>(), x.shape(), p, o, storage); break;
        case dtype::int16: quantize<std::int16_t>(x.span<float>(), q.span<std::int16_t>(), x.shape(), p, o, storage); break;
        case dtype::uint16:
            quantize<std::uint16_t>(x.span<float>(), q.span<std::uint16_t>(), x.shape(), p, o, storage);
            break;
        case dtype::int32: quantize<std::int32_t>(x.span<float>(), q.span<std::int32_t>(), x.shape(), p, o, storage); break;
        default: storage_range(storage, "quantize");
    }
    return q;
}
/// Quantizes to the smallest storage that holds the grid (storage_dtype(p)).
inline tensor quantize(const tensor& x, const quant_params& p, const quant_options& o = {}) {
    return quantize(x, p, storage_dtype(p), o);
}
inline tensor quantize(const tensor& x, const encoding& e, const quant_options& o = {}) {
    return quantize(x, quant_params::per_tensor(e), o);
}

/// Dequantizes an integer tensor (its dtype is the storage) to a new float32 tensor.
inline tensor dequantize(const tensor& q, const quant_params& p, const quant_options& o = {}) {
    if (!q.defined()) QUANTSIM_THROW(invalid_argument, "dequantize: the tensor is undefined (default-constructed)");
    tensor y = tensor::empty(q.shape());
    switch (q.type()) {
        case dtype::int4:
        case dtype::int8: dequantize<std::int8_t>(q.span<std::int8_t>(), y.span<float>(), q.shape(), p, q.type(), o); break;
        case dtype::uint4:
        case dtype::uint8: dequantize<std::uint8_t>(q.span<std::uint8_t>(), y.span<float>(), q.shape(), p, q.type(), o); break;
        case dtype::int16: dequantize<std::int16_t>(q.span<std::int16_t>(), y.span<float>(), q.shape(), p, q.type(), o); break;
        case dtype::uint16:
            dequantize<std::uint16_t>(q.span<std::uint16_t>(), y.span<float>(), q.shape(), p, q.type(), o);
            break;
        case dtype::int32: dequantize<std::int32_t>(q.span<std::int32_t>(), y.span<float>(), q.shape(), p, q.type(), o); break;
        default: storage_range(q.type(), "dequantize");
    }
    return y;
}
inline tensor dequantize(const tensor& q, const encoding& e, const quant_options& o = {}) {
    return dequantize(q, quant_params::per_tensor(e), o);
}

}  // namespace quantsim
