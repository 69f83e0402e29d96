// Min-max observer (AIMET "TF", PyTorch MinMaxObserver): the running minimum and maximum of everything observed.
// merge() is exact (min of mins, max of maxes), so split calibration gives identical encodings.
#pragma once

#include <span>
#include <string>
#include <utility>

#include <quantsim/quant/observers/detail/minmax_kernel.hpp>
#include <quantsim/quant/observers/observer.hpp>

namespace quantsim {

class minmax_observer {
public:
    minmax_observer() = default;
    explicit minmax_observer(std::string label) : label_(std::move(label)) {}

    std::string name() const { return "minmax"; }
    const std::string& label() const noexcept { return label_; }
    void set_label(std::string label) { label_ = std::move(label); }

    /// Throws numeric_error naming the first NaN/Inf; the observer is then unchanged.
    void observe(std::span<const float> x) { observe_impl(x, nullptr); }
    void observe(const tensor& t) { observe_impl(detail::float_span(t, where()), &t.shape()); }
    /// Folds a precomputed range (e.g. from a parallel reduction). Throws on NaN/Inf or mn > mx.
    void observe_range(float mn, float mx) {
        if (!std::isfinite(mn) || !std::isfinite(mx))
            QUANTSIM_THROW(numeric_error, where(), ": observed range [", mn, ", ", mx, "] is not finite");
        if (mn > mx) QUANTSIM_THROW(invalid_argument, where(), ": observed range min ", mn, " > max ", mx);
        r_.fold(mn);
        r_.fold(mx);
    }

    void merge(const minmax_observer& o) {
        if (o.empty()) return;
        r_.fold(o.r_.min);
        r_.fold(o.r_.max);
    }

    bool empty() const noexcept { return r_.min > r_.max; }
    void reset() noexcept { r_ = {}; }

    /// The observed [min, max]; throws calibration_error if nothing was observed.
    value_range observed_range() const {
        if (empty()) detail::throw_no_data(where());
        return {r_.min, r_.max};
    }
    value_range compute_range(const quant_spec&) const { return observed_range(); }
    encoding compute(const quant_spec& spec) const {
        const auto r = observed_range();
        return encoding_from_range(r.min, r.max, spec);
    }

    /// Same observed state (labels are not compared).
    bool operator==(const minmax_observer& o) const noexcept {
        return empty() ? o.empty() : (r_.min == o.r_.min && r_.max == o.r_.max);
    }

private:
    std::string where() const { return detail::observer_where(name(), label_); }
    void observe_impl(std::span<const float> x, const shape_t* shape) {
        if (!detail::scan_minmax(x.data(), x.size(), r_)) detail::throw_non_finite(where(), x.data(), x.size(), shape);
    }

    detail::minmax_pair r_;
    std::string label_;
};

}  // namespace quantsim
