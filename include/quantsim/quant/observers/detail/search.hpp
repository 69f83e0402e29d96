// Helpers shared by the histogram range searches: which family of candidates a quant_spec allows, and a
// coarse-to-fine grid search over clipping fractions.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/observers/observer.hpp>

namespace quantsim::detail {

/// The observed range with 0 included, which is what encoding_from_range quantizes.
struct search_bounds {
    double min0 = 0;    ///< min(observed min, 0)
    double max0 = 0;    ///< max(observed max, 0)
    double absmax = 0;  ///< max(-min0, max0)
    double obs_min = 0;
    double obs_max = 0;
};
inline search_bounds bounds_of(double mn, double mx) {
    search_bounds b;
    b.obs_min = mn, b.obs_max = mx;
    b.min0 = std::min(mn, 0.0), b.max0 = std::max(mx, 0.0);
    b.absmax = std::max(-b.min0, b.max0);
    return b;
}

/// Symmetric grids have one free parameter (the clip magnitude t); asymmetric grids two (both ends).
inline bool symmetric_search(const quant_spec& spec) {
    return spec.scheme != qscheme::asymmetric;
}

/// The range handed to encoding_from_range for a symmetric clip magnitude t: the observed range clipped to
/// [-t, t]; above the data's magnitude (t > absmax) the grid itself is widened to t.
inline value_range symmetric_candidate(const search_bounds& b, double t) {
    return {std::clamp(b.obs_min, -t, t), t > b.absmax ? t : std::clamp(b.obs_max, -t, t)};
}

/// Clipping fractions in (0, 1], ascending: `linear` evenly spaced ones plus a geometric tail below 1/linear
/// (heavy-tailed data can need clipping to a few percent of the range).
inline std::vector<double> clip_fractions(int linear, int geometric) {
    std::vector<double> g;
    for (int j = geometric; j >= 1; --j) g.push_back(std::ldexp(1.0 / linear, -j) * std::sqrt(2.0));
    for (int i = 1; i <= linear; ++i) g.push_back(static_cast<double>(i) / linear);
    std::sort(g.begin(), g.end());
    return g;
}

/// Neighbours of grid[i] (for refinement): the bracket [grid[i-1], grid[i+1]], clamped to (0, 1].
inline std::pair<double, double> bracket(const std::vector<double>& grid, std::size_t i) {
    const double lo = i > 0 ? grid[i - 1] : grid[i] / 2;
    const double hi = i + 1 < grid.size() ? grid[i + 1] : grid[i];
    return {lo, hi};
}

/// Minimizes cost(f) over f in (0, 1]: coarse grid, then `rounds` refinements of `points` around the best.
/// Iterates from f = 1 down so that ties keep the wider range.
template <class Cost>
double minimize_1d(Cost&& cost, const std::vector<double>& grid, int rounds, int points) {
    double best_f = 1, best = std::numeric_limits<double>::infinity();
    std::size_t best_i = grid.size() - 1;
    for (std::size_t i = grid.size(); i-- > 0;) {
        const double c = cost(grid[i]);
        if (c < best) best = c, best_f = grid[i], best_i = i;
    }
    auto [lo, hi] = bracket(grid, best_i);
    for (int r = 0; r < rounds; ++r) {
        const double step = (hi - lo) / (points + 1);
        for (int j = points; j >= 1; --j) {
            const double f = lo + step * j;
            const double c = cost(f);
            if (c < best) best = c, best_f = f;
        }
        lo = std::max(best_f - step, 0.0), hi = std::min(best_f + step, 1.0);
    }
    return best_f;
}

/// Two-parameter version (both ends of an asymmetric grid). Returns (f_min, f_max).
template <class Cost>
std::pair<double, double> minimize_2d(Cost&& cost, const std::vector<double>& grid, int rounds, int points) {
    double best = std::numeric_limits<double>::infinity();
    double bf = 1, bg = 1;
    std::size_t bi = grid.size() - 1, bj = grid.size() - 1;
    for (std::size_t i = grid.size(); i-- > 0;)
        for (std::size_t j = grid.size(); j-- > 0;) {
            const double c = cost(grid[i], grid[j]);
            if (c < best) best = c, bf = grid[i], bg = grid[j], bi = i, bj = j;
        }
    auto [flo, fhi] = bracket(grid, bi);
    auto [glo, ghi] = bracket(grid, bj);
    for (int r = 0; r < rounds; ++r) {
        const double fs = (fhi - flo) / (points + 1), gs = (ghi - glo) / (points + 1);
        for (int a = points; a >= 1; --a)
            for (int b = points; b >= 1; --b) {
                const double f = flo + fs * a, g = glo + gs * b;
                const double c = cost(f, g);
                if (c < best) best = c, bf = f, bg = g;
            }
        flo = std::max(bf - fs, 0.0), fhi = std::min(bf + fs, 1.0);
        glo = std::max(bg - gs, 0.0), ghi = std::min(bg + gs, 1.0);
    }
    return {bf, bg};
}

}  // namespace quantsim::detail
