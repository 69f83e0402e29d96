// SQNR range estimator (AIMET's "TF-enhanced"): minimizes GAMMA * clipping error + rounding error over AIMET's
// candidate grid, GAMMA = 3 (clipping is penalized three times as much as rounding: outliers matter more than
// their count suggests).
//
// Candidates (AIMET TfEnhancedEncodingAnalyzer, aimet.md 3.3), num_steps = qmax - qmin:
//  - asymmetric: 17 step sizes f * delta_max, f = 1/16 .. 17/16, delta_max = (max0 - min0) / num_steps, times
//    21 offsets o = -num_steps + round(num_steps * i / 20), i = 0..20; each grid [delta * o, delta * (o +
//    num_steps)] is clipped to the observed range (with 0); degenerate ones are dropped; plus the observed range.
//  - symmetric: 101 clip magnitudes t = f * absmax, f = 0.01 .. 1.01 (unsigned symmetric: t = f * max).
// Differences from AIMET, on purpose: the histogram is the exact re-binning one (AIMET fixes its 512 buckets
// from the first batch and drops later outliers) and each candidate's error is integrated exactly under the
// piecewise-uniform model instead of evaluating bucket midpoints (which misjudges grids finer than a bucket).
#pragma once

#include <cmath>
#include <limits>
#include <string>

#include <quantsim/quant/observers/detail/histogram_model.hpp>
#include <quantsim/quant/observers/detail/search.hpp>
#include <quantsim/quant/observers/histogram.hpp>

namespace quantsim {

class sqnr_estimator {
public:
    static constexpr double default_gamma = 3.0;
    static constexpr int asymmetric_deltas = 17;
    static constexpr int offsets = 21;
    static constexpr int symmetric_deltas = 101;

    explicit sqnr_estimator(double gamma = default_gamma) : gamma_(gamma) {
        if (!(gamma >= 0 && std::isfinite(gamma)))
            QUANTSIM_THROW(invalid_argument, "sqnr observer: gamma ", gamma, " must be finite and >= 0");
    }
    double gamma() const noexcept { return gamma_; }
    std::string name() const { return "sqnr"; }
    bool operator==(const sqnr_estimator& o) const noexcept { return gamma_ == o.gamma_; }

    /// The exhaustive search without skipping hopeless candidates (the plain version tests compare against; the
    /// choice is the same).
    sqnr_estimator exhaustive() const {
        sqnr_estimator e = *this;
        e.prune_ = false;
        return e;
    }

    value_range select(const exact_histogram& h, const quant_spec& spec) const {
        const auto b = detail::bounds_of(h.min(), h.max());
        if (h.num_bins() < 2 || b.absmax == 0) return {b.obs_min, b.obs_max};
        const detail::histogram_model m(h);
        value_range best{b.obs_min, b.obs_max};
        double best_cost = std::numeric_limits<double>::infinity();
        const auto consider = [&](value_range r) {
            const encoding enc = encoding_from_range(r.min, r.max, spec);
            // The cost is gamma * clip + round with round >= 0, so a candidate whose clipping term alone reaches
            // the best cost cannot win (float addition of a non-negative term never decreases the sum): skipping
            // its O(cells) rounding integral leaves the choice exactly as the full search makes it.
            if (prune_ && !(gamma_ * m.clip_error(enc) < best_cost)) return;
            const auto e = m.error(enc);
            const double c = gamma_ * e.clip + e.round;
            if (c < best_cost) best_cost = c, best = r;
        };
        if (detail::symmetric_search(spec)) {
            for (int i = symmetric_deltas; i >= 1; --i) consider(detail::symmetric_candidate(b, b.absmax * i / 100.0));
            return best;
        }
        consider({b.obs_min, b.obs_max});
        const auto rg = grid_range(spec.bitwidth, spec.is_signed, qscheme::asymmetric);
        const double steps = static_cast<double>(rg.qmax - rg.qmin);
        const double delta_max = (b.max0 - b.min0) / steps;
        for (int i = asymmetric_deltas; i >= 1; --i) {
            const double delta = delta_max * i / 16.0;
            for (int j = 0; j < offsets; ++j) {
                const double o = -steps + std::nearbyint(steps * j / (offsets - 1));
                const double lo = std::max(delta * o, b.min0), hi = std::min(delta * (o + steps), b.max0);
                if (!(hi > lo) || (lo <= b.min0 && hi >= b.max0)) continue;
                consider({lo, hi});
            }
        }
        return best;
    }

private:
    double gamma_;
    bool prune_ = true;
};

}  // namespace quantsim
