// Runtime options -> compile-time kernel variants, and the shared argument checks of the public entry points.
#pragma once

#include <cstdint>
#include <span>
#include <type_traits>

#include <quantsim/core/tensor.hpp>
#include <quantsim/quant/rounding.hpp>

namespace quantsim::detail {

template <rounding_mode R, scale_arithmetic A>
struct mode_tag {
    static constexpr rounding_mode rounding = R;
    static constexpr scale_arithmetic arithmetic = A;
};

/// Calls f(mode_tag<R, A>{}) for the options' rounding mode and arithmetic.
template <class F>
void with_modes(const quant_options& o, const char* where, F&& f) {
    const auto with_arith = [&](auto rtag) {
        constexpr rounding_mode R = decltype(rtag)::value;
        switch (o.arithmetic) {
            case scale_arithmetic::divide: f(mode_tag<R, scale_arithmetic::divide>{}); return;
            case scale_arithmetic::multiply_reciprocal: f(mode_tag<R, scale_arithmetic::multiply_reciprocal>{}); return;
        }
        QUANTSIM_THROW(invalid_argument, where, ": unknown scale arithmetic ", static_cast<int>(o.arithmetic));
    };
    switch (o.rounding) {
        case rounding_mode::nearest_even:
            with_arith(std::integral_constant<rounding_mode, rounding_mode::nearest_even>{});
            return;
        case rounding_mode::nearest_away:
            with_arith(std::integral_constant<rounding_mode, rounding_mode::nearest_away>{});
            return;
        case rounding_mode::floor: with_arith(std::integral_constant<rounding_mode, rounding_mode::floor>{}); return;
        case rounding_mode::ceil: with_arith(std::integral_constant<rounding_mode, rounding_mode::ceil>{}); return;
        case rounding_mode::stochastic:
            with_arith(std::integral_constant<rounding_mode, rounding_mode::stochastic>{});
            return;
    }
    QUANTSIM_THROW(invalid_argument, where, ": unknown rounding mode ", static_cast<int>(o.rounding));
}

/// Number of elements of `shape` (no byte limit: the caller owns the memory).
inline std::int64_t numel_of(const shape_t& shape, const char* where) { return checked_numel(shape, 0, where); }

/// Input and output spans must both hold numel elements.
inline void check_span_sizes(std::size_t in, std::size_t out, std::int64_t numel, const shape_t& shape,
                             const char* where) {
    if (static_cast<std::int64_t>(in) != numel || static_cast<std::int64_t>(out) != numel)
        QUANTSIM_THROW(shape_error, where, ": shape ", to_string(shape), " has ", numel, " elements but the input has ",
                       in, " and the output ", out);
}

/// Out-of-place calls may not partially overlap (exact aliasing = in place is fine where allowed).
inline void check_no_partial_overlap(const void* in, std::size_t in_bytes, const void* out, std::size_t out_bytes,
                                     const char* where) {
    const auto a = reinterpret_cast<std::uintptr_t>(in), b = reinterpret_cast<std::uintptr_t>(out);
    if (a == b || in_bytes == 0 || out_bytes == 0) return;
    if (a < b + out_bytes && b < a + in_bytes)
        QUANTSIM_THROW(invalid_argument, where, ": input and output overlap partially; use the in-place form or "
                                                "separate buffers");
}

inline void require_float32(const tensor& t, const char* where) {
    if (!t.defined()) QUANTSIM_THROW(invalid_argument, where, ": the tensor is undefined (default-constructed)");
    if (t.type() != dtype::float32)
        QUANTSIM_THROW(unsupported_error, where, ": input has dtype ", name_of(t.type()),
                       "; quantsim's quantizers take float32");
}

}  // namespace quantsim::detail
