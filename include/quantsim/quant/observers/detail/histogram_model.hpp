// The quantization-error model behind the MSE and SQNR searches: each histogram bin's count is spread uniformly
// over the part of the bin inside the observed [min, max] (a bin whose part is a single point is a point mass).
// For an encoding with grid [a, b] and step s, values below a or above b cost (x - a)^2 or (x - b)^2 (clipping,
// AIMET's "saturation") and values inside cost (x - round-to-grid(x))^2 (rounding). Both are integrated exactly
// under the model:
//  - clipping with cumulative sums of the bins' 0th/1st/2nd moments: O(1) per candidate;
//  - rounding either per grid cell from the same cumulative moments (O(cells)), or per bin with the closed-form
//    integral of the squared sawtooth (O(bins)), whichever is fewer (cells only up to 1024).
// The cumulative sums start at the bin holding 0, not at the histogram's left end: every grid contains 0, so
// the per-cell differences never subtract sums that include the clipped far tails (which would cancel away the
// small rounding errors in double precision).
// Unlike a midpoint-per-bin model (AIMET's), this stays right when the grid step is finer than a bin.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/observers/histogram.hpp>

namespace quantsim::detail {

/// Integral of (t - round(t))^2 from -1/2 to y (the squared sawtooth: 1/12 per whole cell).
inline double sawtooth_sq_integral(double y) noexcept {
    const double m = std::floor(y + 0.5);
    const double r = y - m;
    return m / 12.0 + (r * r * r + 0.125) / 3.0;
}

/// Sums of squared error of one encoding over the histogram: clipping part and rounding part.
struct error_parts {
    double clip = 0;
    double round = 0;
    double total() const noexcept { return clip + round; }
};

class histogram_model {
public:
    /// Mass and first two moments (sums of 1, x, x^2) of a part of the distribution.
    struct moments {
        double m0 = 0, m1 = 0, m2 = 0;
        moments operator-(const moments& o) const noexcept { return {m0 - o.m0, m1 - o.m1, m2 - o.m2}; }
    };

    explicit histogram_model(const exact_histogram& h)
        : min_(h.min()), max_(h.max()), origin_(h.bin_lower(0)), width_(h.bin_width()) {
        const auto c = h.counts();
        const std::size_t n = c.size();
        lo_.resize(n), hi_.resize(n), count_.resize(n);
        std::vector<moments> bin(n);
        for (std::size_t b = 0; b < n; ++b) {
            const double u = std::max(h.bin_lower(b), min_);
            const double v = std::min(h.bin_lower(b + 1), max_);
            const double w = static_cast<double>(c[b]);
            lo_[b] = u, hi_[b] = v, count_[b] = w;
            bin[b] = {w, w * (u + v) / 2, w * (u * u + u * v + v * v) / 3};
        }
        // cum_[b] = moments of bins [pivot, b) for b >= pivot, minus those of [b, pivot) below it.
        const double fp = std::floor((0.0 - origin_) / width_);
        pivot_ = fp <= 0 ? 0 : std::min(static_cast<std::size_t>(fp), n);
        cum_.assign(n + 1, moments{});
        for (std::size_t b = pivot_; b < n; ++b)
            cum_[b + 1] = {cum_[b].m0 + bin[b].m0, cum_[b].m1 + bin[b].m1, cum_[b].m2 + bin[b].m2};
        for (std::size_t b = pivot_; b-- > 0;)
            cum_[b] = {cum_[b + 1].m0 - bin[b].m0, cum_[b + 1].m1 - bin[b].m1, cum_[b + 1].m2 - bin[b].m2};
        count_prefix_.assign(n + 1, 0.0);
        for (std::size_t b = 0; b < n; ++b) count_prefix_[b + 1] = count_prefix_[b] + count_[b];
    }

    std::size_t num_bins() const noexcept { return count_.size(); }
    double min() const noexcept { return min_; }
    double max() const noexcept { return max_; }
    moments total() const noexcept { return cum_.back() - cum_.front(); }
    /// The part strictly below x, and the part in [x, y) (point masses at x count in it).
    moments below(double x) const noexcept { return cum(x) - cum_.front(); }
    moments between(double x, double y) const noexcept { return cum(y) - cum(x); }

    /// Value below which a fraction q of the mass lies (piecewise-uniform inverse CDF); q in [0, 1].
    double quantile(double q) const noexcept {
        const double target = q * count_prefix_.back();
        if (target <= 0) return min_;
        if (target >= count_prefix_.back()) return max_;
        // First bin whose cumulative count reaches the target.
        const auto it = std::lower_bound(count_prefix_.begin() + 1, count_prefix_.end(), target);
        const std::size_t b = static_cast<std::size_t>(it - count_prefix_.begin()) - 1;
        const double u = lo_[b], v = hi_[b], c = count_[b];
        if (c == 0 || v <= u) return u;
        return std::clamp(u + (target - count_prefix_[b]) / c * (v - u), u, v);
    }

    /// The clipping part of error(e) alone, O(1) (the same value error(e).clip holds). Searches use it to skip
    /// candidates whose clipping cost alone already exceeds the best total (the rounding part is never negative).
    double clip_error(const encoding& e) const noexcept {
        const double a = e.min(), b = e.max();
        const moments lo = below(a);
        const moments hi = cum_.back() - cum(b);
        return std::max(0.0, lo.m2 - 2 * a * lo.m1 + a * a * lo.m0) +
               std::max(0.0, hi.m2 - 2 * b * hi.m1 + b * b * hi.m0);
    }

    /// Squared-error sums of quantize-dequantize with e over the modelled distribution.
    error_parts error(const encoding& e) const noexcept {
        const double s = static_cast<double>(e.scale);
        const double a = e.min(), b = e.max();
        error_parts r;
        r.clip = clip_error(e);
        const double p = std::max(a, min_), q = std::min(b, max_);
        if (!(p <= q)) return r;
        const double cells = std::nearbyint(q / s) - std::nearbyint(p / s) + 1;
        const double bins = static_cast<double>(bin_of(q) - bin_of(p) + 1);
        r.round = (cells <= 1024 && cells * 2 < bins) ? round_by_cells(s, p, q) : round_by_bins(s, p, q);
        return r;
    }

    /// Rounding error summed per bin with the sawtooth integral (public for tests).
    double round_by_bins(double s, double p, double q) const noexcept {
        double sum = 0;
        for (std::size_t bb = bin_of(p), be = bin_of(q); bb <= be; ++bb) {
            const double c = count_[bb];
            if (c == 0) continue;
            const double u = lo_[bb], v = hi_[bb];
            if (v <= u) {  // point mass
                if (u >= p && u <= q) {
                    const double d = u - std::nearbyint(u / s) * s;
                    sum += c * d * d;
                }
                continue;
            }
            const double x0 = std::max(u, p), x1 = std::min(v, q);
            if (!(x1 > x0)) continue;
            sum += c / (v - u) * s * s * s * (sawtooth_sq_integral(x1 / s) - sawtooth_sq_integral(x0 / s));
        }
        return sum;
    }

    /// Rounding error summed per grid cell from the cumulative moments (public for tests).
    double round_by_cells(double s, double p, double q) const noexcept {
        double sum = 0;
        const double m_first = std::nearbyint(p / s), m_last = std::nearbyint(q / s);
        moments left = cum(p);
        for (double m = m_first; m <= m_last; m += 1) {
            const moments right = m == m_last ? cum_inclusive(q) : cum(std::min(q, (m + 0.5) * s));
            const moments d = right - left;
            const double g = m * s;
            sum += std::max(0.0, d.m2 - 2 * g * d.m1 + g * g * d.m0);
            left = right;
        }
        return sum;
    }

    /// Numeric reference for tests: each bin sampled at `samples` midpoints, each sample quantized with e.
    error_parts error_ref(const encoding& e, int samples) const {
        error_parts r;
        const auto rg = e.range();
        const double s = e.scale;
        for (std::size_t bb = 0; bb < count_.size(); ++bb) {
            if (count_[bb] == 0) continue;
            const double u = lo_[bb], v = hi_[bb];
            const int k = v > u ? samples : 1;
            for (int i = 0; i < k; ++i) {
                const double x = v > u ? u + (v - u) * (i + 0.5) / k : u;
                const double qv = std::clamp(std::nearbyint(x / s) + e.zero_point, static_cast<double>(rg.qmin),
                                             static_cast<double>(rg.qmax));
                const double d = x - (qv - e.zero_point) * s;
                const bool clipped = x < e.min() || x > e.max();
                (clipped ? r.clip : r.round) += count_[bb] / k * d * d;
            }
        }
        return r;
    }

private:
    std::size_t bin_of(double x) const noexcept {
        const double f = std::floor((x - origin_) / width_);
        if (!(f > 0)) return 0;
        return std::min(static_cast<std::size_t>(f), count_.size() - 1);
    }
    /// Pivot-relative cumulative moments of the part strictly below x.
    moments cum(double x) const noexcept {
        if (!(x > min_)) return cum_.front();
        if (x > max_) return cum_.back();
        const std::size_t b = bin_of(x);
        const double u = lo_[b], v = hi_[b], c = count_[b];
        if (c == 0 || !(x > u)) return cum_[b];
        if (!(x < v) || v <= u) return cum_[b + 1];  // the whole bin (a point mass at u counts once x > u)
        const double d = c / (v - u);
        const moments& m = cum_[b];
        return {m.m0 + d * (x - u), m.m1 + d * (x * x - u * u) / 2, m.m2 + d * (x * x * x - u * u * u) / 3};
    }
    moments cum_inclusive(double x) const noexcept {
        return x >= max_ ? cum_.back() : cum(std::nextafter(x, max_ + 1.0));
    }

    double min_, max_, origin_, width_;
    std::vector<double> lo_, hi_, count_, count_prefix_;
    std::size_t pivot_ = 0;
    std::vector<moments> cum_;
};

}  // namespace quantsim::detail
