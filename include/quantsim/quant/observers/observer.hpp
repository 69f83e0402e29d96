// What every range observer (calibration statistic) provides, as C++20 concepts, plus the pieces they share:
// the clipping range type and the messages for bad input.
//
// An observer sees calibration data batch by batch (observe), can absorb another observer of the same kind and
// configuration (merge: calibration split across threads, processes or machines), and turns what it saw into an
// encoding for a quant_spec (compute). docs/observers.md describes each estimator and the exactness guarantees.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <string_view>

#include <quantsim/core/error.hpp>
#include <quantsim/core/tensor.hpp>
#include <quantsim/quant/encoding.hpp>

namespace quantsim {

/// A clipping range [min, max] chosen by an observer; encoding_from_range(min, max, spec) turns it into the grid.
struct value_range {
    double min = 0;
    double max = 0;
    bool operator==(const value_range&) const = default;
};
inline std::ostream& operator<<(std::ostream& os, const value_range& r) {
    return os << "[" << r.min << ", " << r.max << "]";
}

/// A per-tensor observer: one encoding for everything it saw.
template <class O>
concept range_observer = std::copyable<O> &&
    requires(O& o, const O& co, std::span<const float> s, const tensor& t, const quant_spec& spec) {
    o.observe(s);
    o.observe(t);
    o.merge(co);
    { co.compute(spec) } -> std::same_as<encoding>;
    { co.compute_range(spec) } -> std::same_as<value_range>;
    o.reset();
    { co.empty() } -> std::convertible_to<bool>;
    { co.name() } -> std::convertible_to<std::string>;
};

/// A per-channel observer: one encoding per index along an axis (weights' output channels, usually).
template <class O>
concept channel_range_observer = std::copyable<O> &&
    requires(O& o, const O& co, std::span<const float> s, const tensor& t, const shape_t& shape,
             const quant_spec& spec) {
    o.observe(t);
    o.observe(s, shape);
    o.merge(co);
    { co.compute(spec) } -> std::same_as<quant_params>;
    o.reset();
    { co.empty() } -> std::convertible_to<bool>;
    { co.axis() } -> std::convertible_to<int>;
    { co.name() } -> std::convertible_to<std::string>;
};

namespace detail {

/// "minmax observer 'conv1.output'" (the label is optional; it names the tensor being calibrated).
inline std::string observer_where(std::string_view kind, std::string_view label) {
    std::string s(kind);
    s += " observer";
    if (!label.empty()) {
        s += " '";
        s += label;
        s += "'";
    }
    return s;
}

/// Throws numeric_error naming the first non-finite element of x[0, n). `channel` >= 0 adds the channel.
/// Policy (docs/observers.md): calibration data must be finite; a NaN or Inf is never skipped, because a range
/// computed while ignoring it would silently describe different data than the model produces.
[[noreturn]] inline void throw_non_finite(std::string_view who, const float* x, std::size_t n,
                                          const shape_t* shape = nullptr) {
    std::size_t i = 0;
    while (i < n && std::isfinite(x[i])) ++i;
    const float v = i < n ? x[i] : 0.0f;
    const char* what = std::isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf");
    std::string where_shape = shape ? " of tensor " + to_string(*shape) : std::string(" of the observed data");
    QUANTSIM_THROW(numeric_error, who, ": element ", i, where_shape, " is ", what,
                   "; calibration data must be finite (observers never skip non-finite values)");
}

[[noreturn]] inline void throw_no_data(std::string_view who) {
    QUANTSIM_THROW(calibration_error, who, ": compute() called before any data was observed");
}

inline std::span<const float> float_span(const tensor& t, std::string_view who) {
    if (!t.defined()) QUANTSIM_THROW(invalid_argument, who, ": observe() got an undefined tensor");
    if (t.type() != dtype::float32)
        QUANTSIM_THROW(invalid_argument, who, ": observe() needs a float32 tensor, got ", name_of(t.type()),
                       " of shape ", to_string(t.shape()));
    return t.span<float>();
}

/// outer x channels x inner view of a shape around an axis.
struct channel_layout {
    std::int64_t outer = 1;
    std::int64_t channels = 1;
    std::int64_t inner = 1;
};
inline channel_layout layout_around(const shape_t& shape, int axis) {
    channel_layout l;
    for (int d = 0; d < static_cast<int>(shape.size()); ++d) {
        if (d < axis)
            l.outer *= shape[d];
        else if (d == axis)
            l.channels = shape[d];
        else
            l.inner *= shape[d];
    }
    return l;
}

}  // namespace detail
}  // namespace quantsim
