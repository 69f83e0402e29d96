// MSE range estimator: the clipping range whose encoding minimizes the expected squared quantization error
// (clipping + rounding) of the observed distribution.
//
// The error of each candidate is integrated exactly under the histogram's piecewise-uniform model
// (detail/histogram_model.hpp) for the actual encoding encoding_from_range would produce (so zero-point
// rounding, strict/unsigned symmetric grids and every bit width are accounted for).
// Candidates respect the scheme: symmetric grids search the clip magnitude t in (0, absmax] (1-D), asymmetric
// grids search both ends [f * min, g * max] (2-D). The search is a coarse grid of fractions (linear, plus a
// geometric tail down to ~1e-3 of the range for heavy tails) refined around the best. Cost: O(candidates
// x min(grid cells, bins)); about 110 candidates (symmetric) or 1900 (asymmetric). AIMET's MSE analyzer
// instead tries every pair of bin edges (O(bins^2) candidates, each O(bins)).
#pragma once

#include <string>

#include <quantsim/quant/observers/detail/histogram_model.hpp>
#include <quantsim/quant/observers/detail/search.hpp>
#include <quantsim/quant/observers/histogram.hpp>

namespace quantsim {

class mse_estimator {
public:
    std::string name() const { return "mse"; }
    bool operator==(const mse_estimator&) const = default;

    value_range select(const exact_histogram& h, const quant_spec& spec) const {
        const auto b = detail::bounds_of(h.min(), h.max());
        if (h.num_bins() < 2 || b.absmax == 0) return {b.obs_min, b.obs_max};
        const detail::histogram_model m(h);
        const auto cost = [&](double lo, double hi) { return m.error(encoding_from_range(lo, hi, spec)).total(); };
        if (detail::symmetric_search(spec)) {
            static const auto grid = detail::clip_fractions(64, 20);
            const double f = detail::minimize_1d(
                [&](double t) {
                    const auto r = detail::symmetric_candidate(b, t * b.absmax);
                    return cost(r.min, r.max);
                },
                grid, 3, 8);
            return detail::symmetric_candidate(b, f * b.absmax);
        }
        if (b.min0 == 0 || b.max0 == 0) {  // one-sided data: only the far end can be clipped
            static const auto grid = detail::clip_fractions(64, 20);
            const bool pos = b.min0 == 0;
            // The kept end stays at the observed value (the grid includes 0 anyway).
            const auto range = [&](double t) {
                return pos ? value_range{std::min(b.obs_min, t * b.max0), t * b.max0}
                           : value_range{t * b.min0, std::max(b.obs_max, t * b.min0)};
            };
            const double f = detail::minimize_1d(
                [&](double t) {
                    const auto r = range(t);
                    return cost(r.min, r.max);
                },
                grid, 3, 8);
            return range(f);
        }
        static const auto grid = detail::clip_fractions(32, 10);
        const auto [f, g] =
            detail::minimize_2d([&](double a, double c) { return cost(a * b.min0, c * b.max0); }, grid, 2, 8);
        return {f * b.min0, g * b.max0};
    }
};

}  // namespace quantsim
