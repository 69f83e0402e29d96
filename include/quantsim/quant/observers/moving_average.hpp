// Moving-average min-max observer (PyTorch MovingAverageMinMaxObserver semantics): the first batch sets
// (min, max); each later batch moves them by averaging_constant c towards the batch's own bounds:
//     min = min + c * (batch_min - min)        (float32 arithmetic, rounded like torch, no fused multiply-add)
//
// merge() means CONCATENATION: a.merge(b) gives the state of one observer that saw a's batches and then b's.
// This is exact in real arithmetic because an EMA is linear in its batches:
//     ema(a ++ b) = ema(b) + (1 - c)^n_b * (ema(a) - first(b))
// (first(b) = b's first batch bounds, kept for this). In float32 the merged state matches sequential observation
// to rounding (a few ulps), not bit for bit, and merge is not commutative: batch order matters for an EMA.
// Split calibration therefore merges workers in batch order (worker 0 first). For one batch split across
// threads, observe the parts with min-max observers and pass the merged bounds to observe_range() so the batch
// counts once (observe_parallel does this).
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include <quantsim/quant/observers/detail/minmax_kernel.hpp>
#include <quantsim/quant/observers/observer.hpp>

namespace quantsim {
namespace detail {

/// EMA of one bound in float32 with torch's rounding: d = x - m; p = round(c * d); m = round(m + p).
inline float ema_step(float m, float x, float c) noexcept {
    const float d = x - m;
    // torch rounds after each op; the volatile keeps the compiler from fusing the multiply and the add into an
    // FMA (GCC contracts across statements under its default -ffp-contract=fast).
    const volatile float p = c * d;
    return m + p;
}

/// State of a per-bound EMA that supports concatenation.
struct ema_state {
    float value = 0;
    float first = 0;  ///< the first batch's bound
    void start(float v) noexcept { value = first = v; }
    /// This state followed by `later` (which saw n_later batches), with decay^n_later precomputed.
    void concat(const ema_state& later, double decay_n) noexcept {
        value = static_cast<float>(static_cast<double>(later.value) +
                                   decay_n * (static_cast<double>(value) - static_cast<double>(later.first)));
    }
};

inline void check_averaging_constant(double c, const char* who) {
    if (!(c > 0 && c <= 1)) QUANTSIM_THROW(invalid_argument, who, ": averaging constant ", c, " is outside (0, 1]");
}

}  // namespace detail

class moving_average_observer {
public:
    static constexpr double default_averaging_constant = 0.01;

    explicit moving_average_observer(double averaging_constant = default_averaging_constant, std::string label = {})
        : c_(static_cast<float>(averaging_constant)), label_(std::move(label)) {
        detail::check_averaging_constant(averaging_constant, "moving-average observer");
    }

    std::string name() const { return "ema"; }
    float averaging_constant() const noexcept { return c_; }
    const std::string& label() const noexcept { return label_; }
    void set_label(std::string label) { label_ = std::move(label); }
    /// Number of batches averaged.
    std::uint64_t batches() const noexcept { return n_; }

    /// One batch. Throws numeric_error naming the first NaN/Inf (state unchanged). An empty batch is ignored.
    void observe(std::span<const float> x) { observe_impl(x, nullptr); }
    void observe(const tensor& t) { observe_impl(detail::float_span(t, where()), &t.shape()); }
    /// One batch given by its bounds.
    void observe_range(float mn, float mx) {
        if (!std::isfinite(mn) || !std::isfinite(mx))
            QUANTSIM_THROW(numeric_error, where(), ": batch range [", mn, ", ", mx, "] is not finite");
        if (mn > mx) QUANTSIM_THROW(invalid_argument, where(), ": batch range min ", mn, " > max ", mx);
        if (n_ == 0) {
            lo_.start(mn), hi_.start(mx);
        } else {
            lo_.value = detail::ema_step(lo_.value, mn, c_);
            hi_.value = detail::ema_step(hi_.value, mx, c_);
        }
        ++n_;
    }

    /// Concatenation: as if o's batches were observed after this observer's. Throws invalid_argument when the
    /// averaging constants differ.
    void merge(const moving_average_observer& o) {
        if (o.c_ != c_)
            QUANTSIM_THROW(invalid_argument, where(), ": cannot merge observers with averaging constants ", c_, " and ",
                           o.c_);
        if (o.n_ == 0) return;
        if (n_ == 0) {
            lo_ = o.lo_, hi_ = o.hi_, n_ = o.n_;
            return;
        }
        const double decay = std::pow(1.0 - static_cast<double>(c_), static_cast<double>(o.n_));
        lo_.concat(o.lo_, decay);
        hi_.concat(o.hi_, decay);
        n_ += o.n_;
    }

    bool empty() const noexcept { return n_ == 0; }
    void reset() noexcept { n_ = 0, lo_ = {}, hi_ = {}; }

    value_range observed_range() const {
        if (empty()) detail::throw_no_data(where());
        return {lo_.value, hi_.value};
    }
    value_range compute_range(const quant_spec&) const { return observed_range(); }
    encoding compute(const quant_spec& spec) const {
        const auto r = observed_range();
        return encoding_from_range(r.min, r.max, spec);
    }

    bool operator==(const moving_average_observer& o) const noexcept {
        return c_ == o.c_ && n_ == o.n_ &&
               (n_ == 0 || (lo_.value == o.lo_.value && hi_.value == o.hi_.value && lo_.first == o.lo_.first &&
                            hi_.first == o.hi_.first));
    }

private:
    std::string where() const { return detail::observer_where(name(), label_); }
    void observe_impl(std::span<const float> x, const shape_t* shape) {
        if (x.empty()) return;
        detail::minmax_pair r;
        if (!detail::scan_minmax(x.data(), x.size(), r)) detail::throw_non_finite(where(), x.data(), x.size(), shape);
        observe_range(r.min, r.max);
    }

    float c_;
    std::uint64_t n_ = 0;
    detail::ema_state lo_, hi_;
    std::string label_;
};

using ema_observer = moving_average_observer;

}  // namespace quantsim
