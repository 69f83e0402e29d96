// Histogram-based observers: an exact_histogram of everything observed plus an estimator that picks the clipping
// range from it (percentile, MSE, SQNR, entropy). Because the histogram is exact (histogram.hpp), merge() of
// observers that saw parts of the data yields bit-identical encodings to one observer that saw all of it, in any
// batching or order.
//
// An estimator E provides: value_range select(const exact_histogram&, const quant_spec&) const, name(), ==.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <quantsim/config.hpp>
#include <quantsim/quant/observers/detail/channels.hpp>
#include <quantsim/quant/observers/detail/histogram_kernel.hpp>
#include <quantsim/quant/observers/detail/minmax_kernel.hpp>
#include <quantsim/quant/observers/entropy.hpp>
#include <quantsim/quant/observers/histogram.hpp>
#include <quantsim/quant/observers/mse.hpp>
#include <quantsim/quant/observers/observer.hpp>
#include <quantsim/quant/observers/percentile.hpp>
#include <quantsim/quant/observers/sqnr.hpp>

namespace quantsim {

template <class E>
concept histogram_estimator = std::copyable<E> && std::equality_comparable<E> &&
    requires(const E e, const exact_histogram& h, const quant_spec& s) {
    { e.select(h, s) } -> std::same_as<value_range>;
    { e.name() } -> std::convertible_to<std::string>;
};

template <histogram_estimator E>
class histogram_observer {
public:
    /// sample: exact_histogram's sampled counting (1 = every value).
    explicit histogram_observer(E estimator, std::size_t bins = exact_histogram::default_bins, std::string label = {},
                                std::size_t sample = 1)
        : est_(std::move(estimator)), hist_(bins, sample), label_(std::move(label)) {}

    std::string name() const { return est_.name(); }
    const E& estimator() const noexcept { return est_; }
    const exact_histogram& histogram() const noexcept { return hist_; }
    std::size_t bins() const noexcept { return hist_.max_bins(); }
    const std::string& label() const noexcept { return label_; }
    void set_label(std::string label) { label_ = std::move(label); }

    /// Throws numeric_error naming the first NaN/Inf; the observer is then unchanged.
    void observe(std::span<const float> x) { hist_.add(x, where()); }
    void observe(const tensor& t) { hist_.add(detail::float_span(t, where()), where(), &t.shape()); }

    /// Throws invalid_argument when the estimators (e.g. percentiles) or bin limits differ.
    void merge(const histogram_observer& o) {
        if (!(o.est_ == est_))
            QUANTSIM_THROW(invalid_argument, where(), ": cannot merge with a ", o.est_.name(), " observer");
        if (o.bins() != bins())
            QUANTSIM_THROW(invalid_argument, where(), ": cannot merge observers of ", bins(), " and ", o.bins(),
                           " bins");
        if (o.hist_.sample() != hist_.sample())
            QUANTSIM_THROW(invalid_argument, where(), ": cannot merge observers counting 1 in ", hist_.sample(),
                           " and 1 in ", o.hist_.sample(), " values");
        hist_.merge(o.hist_);
    }

    bool empty() const noexcept { return hist_.empty(); }
    void reset() noexcept { hist_.reset(); }

    value_range observed_range() const {
        if (empty()) detail::throw_no_data(where());
        return {hist_.min(), hist_.max()};
    }
    /// The clipping range the estimator picks for spec; throws calibration_error if nothing was observed.
    value_range compute_range(const quant_spec& spec) const {
        if (empty()) detail::throw_no_data(where());
        check_bitwidth(spec.bitwidth, "quant_spec");
        return est_.select(hist_, spec);
    }
    encoding compute(const quant_spec& spec) const {
        const auto r = compute_range(spec);
        return encoding_from_range(r.min, r.max, spec);
    }

    bool operator==(const histogram_observer& o) const noexcept { return est_ == o.est_ && hist_ == o.hist_; }

private:
    std::string where() const { return detail::observer_where(name(), label_); }

    E est_;
    exact_histogram hist_;
    std::string label_;
};

/// One exact histogram per channel along an axis; compute() runs the estimator per channel (in parallel with
/// OpenMP; the result does not depend on the thread count).
template <histogram_estimator E>
class per_channel_histogram_observer {
public:
    explicit per_channel_histogram_observer(E estimator, int axis = 0, std::size_t bins = exact_histogram::default_bins,
                                            std::string label = {})
        : est_(std::move(estimator)), axis_(axis), bins_(bins), label_(std::move(label)) {
        (void)exact_histogram(bins);  // validates the bin limit now
    }

    std::string name() const { return est_.name(); }
    int axis() const noexcept { return axis_.axis(); }
    std::int64_t channels() const noexcept { return axis_.channels(); }
    std::size_t bins() const noexcept { return bins_; }
    const E& estimator() const noexcept { return est_; }
    const exact_histogram& histogram(std::int64_t c) const { return hist_.at(static_cast<std::size_t>(c)); }
    const std::string& label() const noexcept { return label_; }
    void set_label(std::string label) { label_ = std::move(label); }

    void observe(const tensor& t) { observe(detail::float_span(t, where()), t.shape()); }
    /// Data laid out row-major with `shape`. Throws numeric_error (NaN/Inf), shape_error or invalid_argument;
    /// the observer is then unchanged.
    void observe(std::span<const float> x, const shape_t& shape) {
        const auto l = axis_.layout(shape, x.size(), where());
        if (x.empty()) return;
        std::vector<detail::minmax_pair> r(static_cast<std::size_t>(l.channels));
        if (!detail::scan_channel_minmax(x.data(), l.outer, l.channels, l.inner, r.data()))
            detail::throw_non_finite(where(), x.data(), x.size(), &shape);
        if (hist_.empty()) hist_.assign(static_cast<std::size_t>(l.channels), exact_histogram(bins_));
        for (std::size_t c = 0; c < hist_.size(); ++c) hist_[c].extend(r[c].min, r[c].max);
        const float* p = x.data();
        if (l.inner >= 16) {
            for (std::int64_t o = 0; o < l.outer; ++o)
                for (std::int64_t c = 0; c < l.channels; ++c, p += l.inner)
                    hist_[static_cast<std::size_t>(c)].count_in_range(p, static_cast<std::size_t>(l.inner));
        } else {  // channel axis innermost (or nearly): per-value counting, channel by channel within a row
            std::vector<exact_histogram::value_counter> counters;
            counters.reserve(hist_.size());
            for (auto& h : hist_) counters.push_back(h.counter());
            for (std::int64_t o = 0; o < l.outer; ++o)
                for (std::size_t c = 0; c < counters.size(); ++c)
                    for (std::int64_t i = 0; i < l.inner; ++i) counters[c].add(*p++);
            for (auto& h : hist_) h.commit(static_cast<std::uint64_t>(l.outer * l.inner));
        }
        axis_.commit(shape, l.channels);
    }

    void merge(const per_channel_histogram_observer& o) {
        axis_.check_mergeable(o.axis_, where());
        if (!(o.est_ == est_))
            QUANTSIM_THROW(invalid_argument, where(), ": cannot merge with a ", o.est_.name(), " observer");
        if (o.bins_ != bins_)
            QUANTSIM_THROW(invalid_argument, where(), ": cannot merge observers of ", bins_, " and ", o.bins_, " bins");
        if (o.empty()) return;
        if (empty()) {
            hist_ = o.hist_, axis_ = o.axis_;
            return;
        }
        for (std::size_t c = 0; c < hist_.size(); ++c) hist_[c].merge(o.hist_[c]);
    }

    bool empty() const noexcept { return hist_.empty(); }
    void reset() noexcept { hist_.clear(), axis_.reset(); }

    /// Per-channel clipping ranges for spec.
    std::vector<value_range> compute_ranges(const quant_spec& spec) const {
        if (empty()) detail::throw_no_data(where());
        check_bitwidth(spec.bitwidth, "quant_spec");
        std::vector<value_range> out(hist_.size());
        const auto n = static_cast<std::int64_t>(hist_.size());
        std::vector<std::exception_ptr> errors(hist_.size());  // exceptions must not leave an OpenMP region
#if QUANTSIM_HAS_OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
#endif
        for (std::int64_t c = 0; c < n; ++c) {
            const auto i = static_cast<std::size_t>(c);
            try {
                out[i] = est_.select(hist_[i], spec);
            } catch (...) {
                errors[i] = std::current_exception();
            }
        }
        for (const auto& e : errors)
            if (e) std::rethrow_exception(e);
        return out;
    }
    quant_params compute(const quant_spec& spec) const {
        if (empty()) detail::throw_no_data(where());
        std::vector<double> mins;
        for (const auto& h : hist_) mins.push_back(h.min());
        quant_spec s = spec;
        for (double m : mins)
            if (m < 0) s.unsigned_symmetric = false;
        const auto ranges = compute_ranges(s);
        return detail::per_channel_params(
            channels(), axis_.resolved_axis(), s, mins,
            [&](std::int64_t c, const quant_spec&) { return ranges[static_cast<std::size_t>(c)]; });
    }

    bool operator==(const per_channel_histogram_observer& o) const noexcept {
        return est_ == o.est_ && axis_ == o.axis_ && bins_ == o.bins_ && hist_ == o.hist_;
    }

private:
    std::string where() const {
        return detail::observer_where("per-channel " + est_.name(), label_);
    }

    E est_;
    detail::channel_axis axis_;
    std::size_t bins_;
    std::vector<exact_histogram> hist_;
    std::string label_;
};

using percentile_observer = histogram_observer<percentile_estimator>;
using mse_observer = histogram_observer<mse_estimator>;
using sqnr_observer = histogram_observer<sqnr_estimator>;
using entropy_observer = histogram_observer<entropy_estimator>;
using per_channel_percentile_observer = per_channel_histogram_observer<percentile_estimator>;
using per_channel_mse_observer = per_channel_histogram_observer<mse_estimator>;
using per_channel_sqnr_observer = per_channel_histogram_observer<sqnr_estimator>;
using per_channel_entropy_observer = per_channel_histogram_observer<entropy_estimator>;

}  // namespace quantsim
