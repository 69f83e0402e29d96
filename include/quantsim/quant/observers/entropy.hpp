// Entropy range estimator (TensorRT-style KL calibration): the clipping window whose quantized histogram
// loses the least information, measured by KL(P || Q).
//
// For a window of m histogram bins (TensorRT's definition): P is the window with the clipped-off counts added to
// its edge bins; Q merges the window's own counts into nq groups (bin j goes to group floor(j * nq / m)) and
// spreads each group's count evenly over the group's non-empty bins; both are normalized. An edge bin that is
// empty inside the window but receives clipped counts gets Q = one count there (instead of TensorRT's smoothing
// of every bin), so clipping costs about clipped * log(clipped / edge count). Each KL costs O(nq) with prefix
// sums. KL compares shapes only (all data clipped into one edge bin looks lossless), so a window may clip at most
// max_clip_fraction of the values (default 5%).
//  - symmetric grids: the histogram of |x| (folding is exact: bins are aligned at 0); windows [0, i) for
//    i = nq .. all bins; clip magnitude t = i * bin width. nq = 2^(b-1) (128 for int8, TensorRT's choice), or
//    2^b - 1 on an unsigned symmetric grid.
//  - asymmetric grids: windows [l, r) that keep 0 inside, nq = 2^b - 1. Both edges are searched, snapped to
//    non-empty bins (a window narrower than nq is widened evenly): a pass over at most 48 candidates per side,
//    then every candidate around the best; O(48^2 * nq) plus the refinement. AIMET's greedy rule (drop the
//    edge bin holding fewer values) was not used: with empty tails it walks one edge into the bulk while the
//    other side still holds empty bins, giving lopsided windows for symmetric data.
// Ties keep the wider window. Bit widths: nq follows the grid, so 2..16 bits all work; when the grid has at least
// as many levels as the histogram has bins (>= 11-12 bits with 2048 bins) no window is considered and the
// observed range is returned. (AIMET computes KL only for 8 bits and returns the full range otherwise.) The
// histogram view is coarsened by powers of two when 0 lies far outside the data, so that the span from 0 to the
// data holds at most the histogram's bin limit.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <quantsim/quant/observers/detail/search.hpp>
#include <quantsim/quant/observers/histogram.hpp>

namespace quantsim {
namespace detail {

/// Counts over view bins with the prefix sums KL needs.
class kl_view {
public:
    explicit kl_view(std::vector<double> a) : a_(std::move(a)) {
        const std::size_t n = a_.size();
        s_.assign(n + 1, 0), nz_.assign(n + 1, 0), pl_.assign(n + 1, 0);
        for (std::size_t j = 0; j < n; ++j) {
            s_[j + 1] = s_[j] + a_[j];
            nz_[j + 1] = nz_[j] + (a_[j] > 0 ? 1 : 0);
            pl_[j + 1] = pl_[j] + xlogx(a_[j]);
        }
    }
    std::size_t size() const noexcept { return a_.size(); }
    double count(std::size_t j) const noexcept { return a_[j]; }

    double total() const noexcept { return s_.back(); }

    /// T * KL(P || Q) + const for the window [l, r) with `left` / `right` clipped counts folded into its edge
    /// bins; +inf when the window holds no values.
    double kl(std::size_t l, std::size_t r, double left, double right, std::int64_t nq) const noexcept {
        const double inside = s_[r] - s_[l], t = s_.back();
        if (!(inside > 0)) return std::numeric_limits<double>::infinity();
        const auto m = static_cast<std::int64_t>(r - l);
        double plogp = pl_[r] - pl_[l];
        if (left > 0) plogp += xlogx(a_[l] + left) - xlogx(a_[l]);
        if (right > 0) plogp += xlogx(a_[r - 1] + right) - xlogx(a_[r - 1]);
        double plogq = 0;
        for (std::int64_t g = 0; g < nq; ++g) {
            const std::size_t j0 = l + static_cast<std::size_t>(g * m / nq);
            const std::size_t j1 = l + static_cast<std::size_t>((g + 1) * m / nq);
            const double s = s_[j1] - s_[j0];
            if (!(s > 0)) continue;
            double mass = s;  // P's mass on the group's non-empty bins (Q = 1 count on an empty edge bin: log 1 = 0)
            if (j0 == l && a_[l] > 0) mass += left;
            if (j1 == r && a_[r - 1] > 0) mass += right;
            plogq += mass * std::log(s / (nz_[j1] - nz_[j0]));
        }
        return plogp - plogq + t * std::log(inside / t);
    }

private:
    static double xlogx(double v) noexcept { return v > 0 ? v * std::log(v) : 0.0; }
    std::vector<double> a_, s_, nz_, pl_;
};

}  // namespace detail

class entropy_estimator {
public:
    static constexpr double default_max_clip_fraction = 0.05;

    /// max_clip_fraction in [0, 1): the largest fraction of the values a window may clip.
    explicit entropy_estimator(double max_clip_fraction = default_max_clip_fraction) : max_clip_(max_clip_fraction) {
        if (!(max_clip_fraction >= 0 && max_clip_fraction < 1))
            QUANTSIM_THROW(invalid_argument, "entropy observer: max_clip_fraction ", max_clip_fraction,
                           " is outside [0, 1)");
    }
    double max_clip_fraction() const noexcept { return max_clip_; }
    std::string name() const { return "entropy"; }
    bool operator==(const entropy_estimator&) const = default;

    value_range select(const exact_histogram& h, const quant_spec& spec) const {
        const auto b = detail::bounds_of(h.min(), h.max());
        if (h.num_bins() < 2 || b.absmax == 0) return {b.obs_min, b.obs_max};
        const std::int64_t first = h.first_bin();
        const std::int64_t last = first + static_cast<std::int64_t>(h.num_bins()) - 1;
        const auto counts = h.counts();
        const auto limit = static_cast<std::int64_t>(h.max_bins());
        if (detail::symmetric_search(spec)) {
            const bool unsigned_grid =
                spec.unsigned_symmetric && b.obs_min >= 0 && spec.convention == range_convention::aimet;
            const std::int64_t nq =
                unsigned_grid ? (std::int64_t{1} << spec.bitwidth) - 1 : std::int64_t{1} << (spec.bitwidth - 1);
            // |x| bins: global bin g >= 0 is |x| bin g, g < 0 is |x| bin -g-1 (bins are aligned at 0).
            const std::int64_t span = std::max(last + 1, -first);
            int r = 0;
            while (((span - 1) >> r) + 1 > limit) ++r;
            std::vector<double> a(static_cast<std::size_t>(((span - 1) >> r) + 1), 0.0);
            for (std::size_t j = 0; j < counts.size(); ++j) {
                const std::int64_t g = first + static_cast<std::int64_t>(j);
                a[static_cast<std::size_t>((g >= 0 ? g : -g - 1) >> r)] += static_cast<double>(counts[j]);
            }
            const std::int64_t n = static_cast<std::int64_t>(a.size());
            if (n <= nq) return {b.obs_min, b.obs_max};
            const detail::kl_view v(std::move(a));
            double best = std::numeric_limits<double>::infinity(), right = 0;
            std::int64_t best_i = n;
            const double budget = max_clip_ * v.total();
            for (std::int64_t i = n; i >= nq && right <= budget; --i) {
                const double kl = v.kl(0, static_cast<std::size_t>(i), 0, right, nq);
                if (kl < best) best = kl, best_i = i;
                right += v.count(static_cast<std::size_t>(i - 1));
            }
            if (best_i == n) return {b.obs_min, b.obs_max};
            const double t = std::ldexp(static_cast<double>(best_i), h.level() + r);
            return detail::symmetric_candidate(b, std::min(t, b.absmax));
        }
        const auto rg = grid_range(spec.bitwidth, spec.is_signed, qscheme::asymmetric);
        const std::int64_t nq = rg.qmax - rg.qmin;
        // View over global bins [min(first, 0), max(last + 1, 0)), coarsened until it fits the bin limit.
        int shift = 0;
        const auto lo_of = [&](int s) { return std::min(first >> s, std::int64_t{0}); };
        const auto hi_of = [&](int s) { return std::max((last >> s) + 1, std::int64_t{0}); };
        while (hi_of(shift) - lo_of(shift) > limit) ++shift;
        const std::int64_t v0 = lo_of(shift), v1 = hi_of(shift);
        std::vector<double> a(static_cast<std::size_t>(v1 - v0), 0.0);
        for (std::size_t j = 0; j < counts.size(); ++j)
            a[static_cast<std::size_t>(((first + static_cast<std::int64_t>(j)) >> shift) - v0)] +=
                static_cast<double>(counts[j]);
        if (v1 - v0 <= nq) return {b.obs_min, b.obs_max};
        const detail::kl_view v(std::move(a));
        // Windows [l, r) of view bins with l <= zero <= r (0 stays inside) and r - l >= nq. KL cannot tell where
        // empty bins sit in a window (a window of exactly nq bins reproduces its inside exactly wherever it is),
        // so windows are snapped to data: each edge is a non-empty bin (or 0), and a window narrower than nq is
        // widened evenly on both sides. Edges are searched on a coarse pass over at most 48 candidates per
        // side, then every candidate around the best. Near-ties (1e-9 relative) keep the wider window.
        const auto n = static_cast<std::int64_t>(v.size());
        const std::int64_t zero = -v0;  // view index of global bin 0 (the boundary at 0)
        const double budget = max_clip_ * v.total();
        std::vector<double> prefix(static_cast<std::size_t>(n + 1), 0.0);
        std::vector<std::int64_t> lefts, rights;  // candidate l (ascending) and r (ascending)
        for (std::int64_t j = 0; j < n; ++j) {
            const double c = v.count(static_cast<std::size_t>(j));
            prefix[static_cast<std::size_t>(j + 1)] = prefix[static_cast<std::size_t>(j)] + c;
            if (c > 0 && j < zero) lefts.push_back(j);
            if (c > 0 && j + 1 > zero) rights.push_back(j + 1);
        }
        lefts.push_back(zero);
        rights.insert(rights.begin(), zero);
        double best = std::numeric_limits<double>::infinity();
        std::int64_t best_l = 0, best_r = n;
        std::size_t best_li = 0, best_ri = rights.size() - 1;
        const auto consider = [&](std::size_t li, std::size_t ri) {
            std::int64_t l = lefts[li], r = rights[ri];
            if (r - l < nq) {  // widen evenly, staying inside the view
                const std::int64_t d = nq - (r - l);
                l -= d / 2, r += d - d / 2;
                if (l < 0) r -= l, l = 0;
                if (r > n) l -= r - n, r = n;
            }
            const double left = prefix[static_cast<std::size_t>(l)];
            const double right = prefix[static_cast<std::size_t>(n)] - prefix[static_cast<std::size_t>(r)];
            if (left + right > budget) return;
            const double kl = v.kl(static_cast<std::size_t>(l), static_cast<std::size_t>(r), left, right, nq);
            const double tol = std::isfinite(best) ? 1e-9 * std::max(std::fabs(best), v.total()) : 0.0;
            if (kl < best - tol || (kl <= best + tol && r - l > best_r - best_l))
                best = std::min(best, kl), best_l = l, best_r = r, best_li = li, best_ri = ri;
        };
        const std::size_t ls = std::max<std::size_t>(1, (lefts.size() + 47) / 48);
        const std::size_t rs = std::max<std::size_t>(1, (rights.size() + 47) / 48);
        consider(0, rights.size() - 1);
        for (std::size_t li = 0; li < lefts.size(); li += ls)
            for (std::size_t ri = rights.size(); ri-- > 0;)
                if ((rights.size() - 1 - ri) % rs == 0 || ri == 0) consider(li, ri);
        if (ls > 1 || rs > 1) {
            const std::size_t cl = best_li, cr = best_ri;
            for (std::size_t li = cl > ls ? cl - ls : 0; li < std::min(lefts.size(), cl + ls); ++li)
                for (std::size_t ri = std::min(rights.size(), cr + rs); ri-- > (cr > rs ? cr - rs : 0);)
                    consider(li, ri);
        }
        const double w = std::ldexp(1.0, h.level() + shift);
        const double lo = (static_cast<double>(best_l) + static_cast<double>(v0)) * w;
        const double hi = (static_cast<double>(best_r) + static_cast<double>(v0)) * w;
        return {lo <= b.obs_min ? b.obs_min : std::max(lo, b.min0), hi >= b.obs_max ? b.obs_max : std::min(hi, b.max0)};
    }

private:
    double max_clip_;
};

}  // namespace quantsim
