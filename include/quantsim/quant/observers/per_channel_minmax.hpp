// Per-channel min-max observers (PyTorch PerChannelMinMaxObserver / MovingAveragePerChannelMinMaxObserver): one
// [min, max] per index along a channel axis (any axis, negative counts from the end), for per-channel encodings.
// compute() returns quant_params with granularity::per_channel(axis). With quant_spec::unsigned_symmetric the
// grid is unsigned only if every channel is non-negative (one grid per quantizer).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <quantsim/quant/observers/detail/channels.hpp>
#include <quantsim/quant/observers/detail/minmax_kernel.hpp>
#include <quantsim/quant/observers/moving_average.hpp>
#include <quantsim/quant/observers/observer.hpp>

namespace quantsim {

class per_channel_minmax_observer {
public:
    explicit per_channel_minmax_observer(int axis = 0, std::string label = {})
        : axis_(axis), label_(std::move(label)) {}

    std::string name() const { return "minmax"; }
    int axis() const noexcept { return axis_.axis(); }
    std::int64_t channels() const noexcept { return axis_.channels(); }
    const std::string& label() const noexcept { return label_; }
    void set_label(std::string label) { label_ = std::move(label); }

    void observe(const tensor& t) { observe(detail::float_span(t, where()), t.shape()); }
    /// Data laid out row-major with `shape`. Throws numeric_error (NaN/Inf, naming the element), shape_error or
    /// invalid_argument (bad axis); the observer is then unchanged.
    void observe(std::span<const float> x, const shape_t& shape) {
        const auto l = axis_.layout(shape, x.size(), where());
        if (x.empty()) return;
        std::vector<detail::minmax_pair> r(static_cast<std::size_t>(l.channels));
        if (!detail::scan_channel_minmax(x.data(), l.outer, l.channels, l.inner, r.data()))
            detail::throw_non_finite(where(), x.data(), x.size(), &shape);
        if (r_.empty()) {
            r_ = std::move(r);
        } else {
            for (std::size_t c = 0; c < r_.size(); ++c) r_[c].fold(r[c].min), r_[c].fold(r[c].max);
        }
        axis_.commit(shape, l.channels);
    }

    void merge(const per_channel_minmax_observer& o) {
        axis_.check_mergeable(o.axis_, where());
        if (o.empty()) return;
        if (empty()) {
            r_ = o.r_, axis_ = o.axis_;
            return;
        }
        for (std::size_t c = 0; c < r_.size(); ++c) r_[c].fold(o.r_[c].min), r_[c].fold(o.r_[c].max);
    }

    bool empty() const noexcept { return r_.empty(); }
    void reset() noexcept { r_.clear(), axis_.reset(); }

    /// Per-channel observed ranges; throws calibration_error if nothing was observed.
    std::vector<value_range> observed_ranges() const {
        if (empty()) detail::throw_no_data(where());
        std::vector<value_range> v;
        for (const auto& p : r_) v.push_back({p.min, p.max});
        return v;
    }
    quant_params compute(const quant_spec& spec) const {
        if (empty()) detail::throw_no_data(where());
        std::vector<double> mins;
        for (const auto& p : r_) mins.push_back(p.min);
        return detail::per_channel_params(
            channels(), axis_.resolved_axis(), spec, mins, [&](std::int64_t c, const quant_spec&) {
                return value_range{r_[static_cast<std::size_t>(c)].min, r_[static_cast<std::size_t>(c)].max};
            });
    }

    bool operator==(const per_channel_minmax_observer& o) const noexcept {
        if (!(axis_ == o.axis_) || r_.size() != o.r_.size()) return false;
        for (std::size_t c = 0; c < r_.size(); ++c)
            if (r_[c].min != o.r_[c].min || r_[c].max != o.r_[c].max) return false;
        return true;
    }

private:
    std::string where() const { return detail::observer_where("per-channel minmax", label_); }

    detail::channel_axis axis_;
    std::vector<detail::minmax_pair> r_;
    std::string label_;
};

/// Per-channel moving-average min-max: each channel's bounds are an EMA over batches (see moving_average.hpp,
/// including what merge() means).
class per_channel_moving_average_observer {
public:
    explicit per_channel_moving_average_observer(
        int axis = 0, double averaging_constant = moving_average_observer::default_averaging_constant,
        std::string label = {})
        : axis_(axis), c_(static_cast<float>(averaging_constant)), label_(std::move(label)) {
        detail::check_averaging_constant(averaging_constant, "per-channel moving-average observer");
    }

    std::string name() const { return "ema"; }
    int axis() const noexcept { return axis_.axis(); }
    std::int64_t channels() const noexcept { return axis_.channels(); }
    float averaging_constant() const noexcept { return c_; }
    std::uint64_t batches() const noexcept { return n_; }
    const std::string& label() const noexcept { return label_; }
    void set_label(std::string label) { label_ = std::move(label); }

    void observe(const tensor& t) { observe(detail::float_span(t, where()), t.shape()); }
    void observe(std::span<const float> x, const shape_t& shape) {
        const auto l = axis_.layout(shape, x.size(), where());
        if (x.empty()) return;
        std::vector<detail::minmax_pair> r(static_cast<std::size_t>(l.channels));
        if (!detail::scan_channel_minmax(x.data(), l.outer, l.channels, l.inner, r.data()))
            detail::throw_non_finite(where(), x.data(), x.size(), &shape);
        if (n_ == 0) {
            lo_.resize(r.size()), hi_.resize(r.size());
            for (std::size_t c = 0; c < r.size(); ++c) lo_[c].start(r[c].min), hi_[c].start(r[c].max);
        } else {
            for (std::size_t c = 0; c < r.size(); ++c) {
                lo_[c].value = detail::ema_step(lo_[c].value, r[c].min, c_);
                hi_[c].value = detail::ema_step(hi_[c].value, r[c].max, c_);
            }
        }
        ++n_;
        axis_.commit(shape, l.channels);
    }

    /// Concatenation (o's batches after this observer's).
    void merge(const per_channel_moving_average_observer& o) {
        axis_.check_mergeable(o.axis_, where());
        if (o.c_ != c_)
            QUANTSIM_THROW(invalid_argument, where(), ": cannot merge observers with averaging constants ", c_, " and ",
                           o.c_);
        if (o.n_ == 0) return;
        if (n_ == 0) {
            lo_ = o.lo_, hi_ = o.hi_, n_ = o.n_, axis_ = o.axis_;
            return;
        }
        const double decay = std::pow(1.0 - static_cast<double>(c_), static_cast<double>(o.n_));
        for (std::size_t c = 0; c < lo_.size(); ++c) lo_[c].concat(o.lo_[c], decay), hi_[c].concat(o.hi_[c], decay);
        n_ += o.n_;
    }

    bool empty() const noexcept { return n_ == 0; }
    void reset() noexcept { n_ = 0, lo_.clear(), hi_.clear(), axis_.reset(); }

    std::vector<value_range> observed_ranges() const {
        if (empty()) detail::throw_no_data(where());
        std::vector<value_range> v;
        for (std::size_t c = 0; c < lo_.size(); ++c) v.push_back({lo_[c].value, hi_[c].value});
        return v;
    }
    quant_params compute(const quant_spec& spec) const {
        if (empty()) detail::throw_no_data(where());
        std::vector<double> mins;
        for (const auto& p : lo_) mins.push_back(p.value);
        return detail::per_channel_params(
            channels(), axis_.resolved_axis(), spec, mins, [&](std::int64_t c, const quant_spec&) {
                return value_range{lo_[static_cast<std::size_t>(c)].value, hi_[static_cast<std::size_t>(c)].value};
            });
    }

    bool operator==(const per_channel_moving_average_observer& o) const noexcept {
        if (!(axis_ == o.axis_) || c_ != o.c_ || n_ != o.n_ || lo_.size() != o.lo_.size()) return false;
        for (std::size_t c = 0; c < lo_.size(); ++c)
            if (lo_[c].value != o.lo_[c].value || hi_[c].value != o.hi_[c].value) return false;
        return true;
    }

private:
    std::string where() const { return detail::observer_where("per-channel ema", label_); }

    detail::channel_axis axis_;
    float c_;
    std::uint64_t n_ = 0;
    std::vector<detail::ema_state> lo_, hi_;
    std::string label_;
};

}  // namespace quantsim
