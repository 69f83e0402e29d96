// Percentile range estimator: clip the tails that hold (100 - P)% of the values.
//
// Asymmetric grids: [quantile((100 - P) / 100), quantile(P / 100)] (both tails, as AIMET and aimet_torch do).
// Symmetric grids: the clip magnitude t is the P-th percentile of |x|, so P% of all values lie in [-t, t]
// (ONNX Runtime's symmetric rule; a two-tailed rule would clip up to twice as much on a symmetric grid).
// Quantiles interpolate linearly inside a bin (the histogram's piecewise-uniform model), within [min, max].
// P = 100 gives exactly the observed range.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>

#include <quantsim/quant/observers/detail/histogram_model.hpp>
#include <quantsim/quant/observers/detail/search.hpp>
#include <quantsim/quant/observers/histogram.hpp>

namespace quantsim {

class percentile_estimator {
public:
    /// percentile in (0, 100]; throws invalid_argument otherwise.
    explicit percentile_estimator(double percentile) : p_(percentile) {
        if (!(percentile > 0 && percentile <= 100))
            QUANTSIM_THROW(invalid_argument, "percentile observer: percentile ", percentile, " is outside (0, 100]");
    }
    double percentile() const noexcept { return p_; }
    std::string name() const {
        char buf[64];
        std::snprintf(buf, sizeof buf, "percentile:%.15g", p_);
        return buf;
    }
    bool operator==(const percentile_estimator&) const = default;

    value_range select(const exact_histogram& h, const quant_spec& spec) const {
        const double mn = h.min(), mx = h.max();
        if (p_ >= 100) return {mn, mx};
        const detail::histogram_model m(h);
        const double q = p_ / 100;
        if (!detail::symmetric_search(spec)) {
            const double lo = m.quantile(1 - q), hi = m.quantile(q);
            return {std::min(lo, hi), std::max(lo, hi)};
        }
        // Bisection on t for mass(|x| < t) = q * total; mass(|x| < t) is continuous and monotone in t.
        const double target = q * m.total().m0;
        const auto b = detail::bounds_of(mn, mx);
        double lo = 0, hi = b.absmax;
        for (int it = 0; it < 200 && hi - lo > 0; ++it) {
            const double mid = lo + (hi - lo) / 2;
            if (mid <= lo || mid >= hi) break;
            const double inside = m.between(-mid, mid).m0;
            (inside >= target ? hi : lo) = mid;
        }
        return detail::symmetric_candidate(b, hi);
    }

private:
    double p_;
};

}  // namespace quantsim
