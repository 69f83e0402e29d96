// Observers chosen at run time: `observer` (per tensor) and `channel_observer` (per channel) hold any built-in
// observer in a std::variant, still mergeable, and are made from a method name such as the CLI's
// --range minmax|ema|percentile:P|mse|sqnr|entropy (QuantSim may pick one for weights, another for activations).
//
// Names (case-insensitive): minmax (alias tf), ema[:C] (alias moving_average[:C], C = averaging constant,
// default 0.01), percentile:P (P in (0, 100]), mse, sqnr (alias tf_enhanced), entropy (alias kl).
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include <quantsim/quant/observers/histogram_observer.hpp>
#include <quantsim/quant/observers/minmax.hpp>
#include <quantsim/quant/observers/moving_average.hpp>
#include <quantsim/quant/observers/observer.hpp>
#include <quantsim/quant/observers/per_channel_minmax.hpp>

namespace quantsim {

enum class range_method_kind : std::uint8_t { minmax, moving_average, percentile, mse, sqnr, entropy };

/// A parsed range-estimation method.
struct range_method {
    range_method_kind kind = range_method_kind::minmax;
    double percentile = 100;                                                          ///< percentile only
    double averaging_constant = moving_average_observer::default_averaging_constant;  ///< moving_average only

    /// Canonical name: "minmax", "ema:0.01", "percentile:99.99", "mse", "sqnr", "entropy".
    std::string to_string() const {
        char buf[64];
        switch (kind) {
            case range_method_kind::minmax:
                return "minmax";
            case range_method_kind::moving_average:
                std::snprintf(buf, sizeof buf, "ema:%.15g", averaging_constant);
                return buf;
            case range_method_kind::percentile:
                std::snprintf(buf, sizeof buf, "percentile:%.15g", percentile);
                return buf;
            case range_method_kind::mse:
                return "mse";
            case range_method_kind::sqnr:
                return "sqnr";
            case range_method_kind::entropy:
                return "entropy";
        }
        return "unknown";
    }
    bool operator==(const range_method&) const = default;
};

/// Parses a method name; throws invalid_argument naming the bad name or value and listing the valid ones.
inline range_method parse_range_method(std::string_view text) {
    constexpr const char* valid = "minmax, ema[:C], moving_average[:C], percentile:P, mse, sqnr, tf_enhanced, entropy";
    const auto colon = text.find(':');
    std::string name(text.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    const bool has_value = colon != std::string_view::npos;
    const std::string_view value = has_value ? text.substr(colon + 1) : std::string_view{};
    const auto number = [&](const char* what) {
        double v = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        if (value.empty() || ec != std::errc{} || end != value.data() + value.size())
            QUANTSIM_THROW(invalid_argument, "range method '", text, "': '", value, "' is not a number (", what, ")");
        return v;
    };
    const auto no_value = [&] {
        if (has_value) QUANTSIM_THROW(invalid_argument, "range method '", text, "': '", name, "' takes no value");
    };
    range_method m;
    if (name == "minmax" || name == "tf") {
        no_value();
        m.kind = range_method_kind::minmax;
    } else if (name == "ema" || name == "moving_average") {
        m.kind = range_method_kind::moving_average;
        if (has_value) m.averaging_constant = number("averaging constant");
        detail::check_averaging_constant(m.averaging_constant, "range method 'ema'");
    } else if (name == "percentile") {
        if (!has_value)
            QUANTSIM_THROW(invalid_argument, "range method '", text,
                           "': percentile needs a value, e.g. percentile:99.99");
        m.kind = range_method_kind::percentile;
        m.percentile = number("percentile");
        (void)percentile_estimator(m.percentile);  // range check with its message
    } else if (name == "mse") {
        no_value();
        m.kind = range_method_kind::mse;
    } else if (name == "sqnr" || name == "tf_enhanced") {
        no_value();
        m.kind = range_method_kind::sqnr;
    } else if (name == "entropy" || name == "kl") {
        no_value();
        m.kind = range_method_kind::entropy;
    } else {
        QUANTSIM_THROW(invalid_argument, "unknown range method '", text, "'; expected one of ", valid);
    }
    return m;
}

/// Settings that apply to the observers a factory makes.
struct observer_options {
    std::size_t bins = exact_histogram::default_bins;  ///< histogram observers
    std::string label;                                 ///< names the tensor in error messages
    /// Per-tensor histogram observers count one 16-value group in this many (1, 2, 4, 8, 16; min/max stay
    /// exact): exact_histogram, "Sampled counting".
    std::size_t histogram_sample = 1;
};

namespace detail {
template <class V>
std::string alternative_name(const V& v) {
    return std::visit([](const auto& o) { return o.name(); }, v);
}
template <class V>
void merge_same_alternative(V& a, const V& b, std::string_view who) {
    if (a.index() != b.index())
        QUANTSIM_THROW(invalid_argument, who, ": cannot merge a ", alternative_name(b), " observer into a ",
                       alternative_name(a), " observer");
    std::visit(
        [&](auto& x) {
            using T = std::decay_t<decltype(x)>;
            x.merge(std::get<T>(b));
        },
        a);
}
}  // namespace detail

/// Any per-tensor observer (a value type: copy it to get an independent observer).
class observer {
public:
    using variant_type = std::variant<minmax_observer, moving_average_observer, percentile_observer, mse_observer,
                                      sqnr_observer, entropy_observer>;

    observer() = default;  ///< a minmax observer
    template <class O>
    requires(!std::same_as<std::decay_t<O>, observer> && std::is_constructible_v<variant_type, O>) observer(O&& o)
        : v_(std::forward<O>(o)) {}  // NOLINT(google-explicit-constructor): value-like wrapper

    std::string name() const { return detail::alternative_name(v_); }
    const std::string& label() const {
        return std::visit([](const auto& o) -> const std::string& { return o.label(); }, v_);
    }
    void observe(std::span<const float> x) {
        std::visit([&](auto& o) { o.observe(x); }, v_);
    }
    void observe(const tensor& t) {
        std::visit([&](auto& o) { o.observe(t); }, v_);
    }
    /// Throws invalid_argument unless o holds the same kind of observer with the same configuration.
    void merge(const observer& o) { detail::merge_same_alternative(v_, o.v_, "observer merge"); }
    encoding compute(const quant_spec& spec) const {
        return std::visit([&](const auto& o) { return o.compute(spec); }, v_);
    }
    value_range compute_range(const quant_spec& spec) const {
        return std::visit([&](const auto& o) { return o.compute_range(spec); }, v_);
    }
    void reset() {
        std::visit([](auto& o) { o.reset(); }, v_);
    }
    bool empty() const {
        return std::visit([](const auto& o) -> bool { return o.empty(); }, v_);
    }

    variant_type& variant() noexcept { return v_; }
    const variant_type& variant() const noexcept { return v_; }
    template <class O>
    O* get_if() noexcept {
        return std::get_if<O>(&v_);
    }
    template <class O>
    const O* get_if() const noexcept {
        return std::get_if<O>(&v_);
    }
    bool operator==(const observer& o) const { return v_ == o.v_; }

private:
    variant_type v_;
};

/// Any per-channel observer.
class channel_observer {
public:
    using variant_type =
        std::variant<per_channel_minmax_observer, per_channel_moving_average_observer, per_channel_percentile_observer,
                     per_channel_mse_observer, per_channel_sqnr_observer, per_channel_entropy_observer>;

    channel_observer() = default;  ///< a per-channel minmax observer on axis 0
    template <class O>
    requires(!std::same_as<std::decay_t<O>, channel_observer> && std::is_constructible_v<variant_type, O>)
        channel_observer(O&& o)
        : v_(std::forward<O>(o)) {}  // NOLINT(google-explicit-constructor)

    std::string name() const { return detail::alternative_name(v_); }
    int axis() const {
        return std::visit([](const auto& o) { return o.axis(); }, v_);
    }
    void observe(const tensor& t) {
        std::visit([&](auto& o) { o.observe(t); }, v_);
    }
    void observe(std::span<const float> x, const shape_t& shape) {
        std::visit([&](auto& o) { o.observe(x, shape); }, v_);
    }
    void merge(const channel_observer& o) { detail::merge_same_alternative(v_, o.v_, "channel observer merge"); }
    quant_params compute(const quant_spec& spec) const {
        return std::visit([&](const auto& o) { return o.compute(spec); }, v_);
    }
    void reset() {
        std::visit([](auto& o) { o.reset(); }, v_);
    }
    bool empty() const {
        return std::visit([](const auto& o) -> bool { return o.empty(); }, v_);
    }

    variant_type& variant() noexcept { return v_; }
    const variant_type& variant() const noexcept { return v_; }
    template <class O>
    const O* get_if() const noexcept {
        return std::get_if<O>(&v_);
    }
    bool operator==(const channel_observer& o) const { return v_ == o.v_; }

private:
    variant_type v_;
};

inline observer make_observer(const range_method& m, const observer_options& opt = {}) {
    switch (m.kind) {
        case range_method_kind::minmax:
            return minmax_observer(opt.label);
        case range_method_kind::moving_average:
            return moving_average_observer(m.averaging_constant, opt.label);
        case range_method_kind::percentile:
            return percentile_observer(percentile_estimator(m.percentile), opt.bins, opt.label, opt.histogram_sample);
        case range_method_kind::mse:
            return mse_observer(mse_estimator{}, opt.bins, opt.label, opt.histogram_sample);
        case range_method_kind::sqnr:
            return sqnr_observer(sqnr_estimator{}, opt.bins, opt.label, opt.histogram_sample);
        case range_method_kind::entropy:
            return entropy_observer(entropy_estimator{}, opt.bins, opt.label, opt.histogram_sample);
    }
    QUANTSIM_THROW(invalid_argument, "make_observer: unknown range method");
}
/// make_observer("percentile:99.99"): parses the name (throws invalid_argument for unknown names).
inline observer make_observer(std::string_view method, const observer_options& opt = {}) {
    return make_observer(parse_range_method(method), opt);
}

inline channel_observer make_channel_observer(const range_method& m, int axis, const observer_options& opt = {}) {
    switch (m.kind) {
        case range_method_kind::minmax:
            return per_channel_minmax_observer(axis, opt.label);
        case range_method_kind::moving_average:
            return per_channel_moving_average_observer(axis, m.averaging_constant, opt.label);
        case range_method_kind::percentile:
            return per_channel_percentile_observer(percentile_estimator(m.percentile), axis, opt.bins, opt.label);
        case range_method_kind::mse:
            return per_channel_mse_observer(mse_estimator{}, axis, opt.bins, opt.label);
        case range_method_kind::sqnr:
            return per_channel_sqnr_observer(sqnr_estimator{}, axis, opt.bins, opt.label);
        case range_method_kind::entropy:
            return per_channel_entropy_observer(entropy_estimator{}, axis, opt.bins, opt.label);
    }
    QUANTSIM_THROW(invalid_argument, "make_channel_observer: unknown range method");
}
inline channel_observer make_channel_observer(std::string_view method, int axis, const observer_options& opt = {}) {
    return make_channel_observer(parse_range_method(method), axis, opt);
}

static_assert(range_observer<observer>);
static_assert(channel_range_observer<channel_observer>);

}  // namespace quantsim
