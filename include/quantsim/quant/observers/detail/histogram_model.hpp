// The quantization-error model behind the MSE and SQNR searches: each histogram bin's count is spread uniformly
// over the part of the bin inside the observed [min, max] (a bin whose part is a single point is a point mass).
// For an encoding with grid [a, b] and step s, values below a or above b cost (x - a)^2 or (x - b)^2 (clipping,
// AIMET's "saturation") and values inside cost (x - round-to-grid(x))^2 (rounding). Both are integrated exactly
// under the model:
//  - clipping with prefix sums of the bins' 0th/1st/2nd moments: O(1) per candidate;
//  - rounding either per grid cell from the same prefix moments (O(cells)), or per bin with the closed-form
//    integral of the squared sawtooth (O(bins)), whichever is fewer. The per-cell form subtracts prefix sums
//    that include the far tails, so they are kept in x87 extended precision where long double has it (64-bit
//    mantissa); the form is used only up to 1024 cells.
// Unlike a midpoint-per-bin model (AIMET's), this stays right when the grid step is finer than a bin.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/observers/histogram.hpp>

namespace quantsim::detail {

/// Prefix-sum accumulator: x87 extended precision where available (not a slow software quad).
using moment_acc = std::conditional_t<std::numeric_limits<long double>::digits == 64, long double, double>;

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
    struct moments {
        moment_acc m0 = 0, m1 = 0, m2 = 0;
    };

    explicit histogram_model(const exact_histogram& h)
        : min_(h.min()), max_(h.max()), origin_(h.bin_lower(0)), width_(h.bin_width()) {
        const auto c = h.counts();
        const std::size_t n = c.size();
        lo_.resize(n), hi_.resize(n), count_.resize(n);
        p0_.assign(n + 1, 0.0), p1_.assign(n + 1, 0.0), p2_.assign(n + 1, 0.0);
        for (std::size_t b = 0; b < n; ++b) {
            const double u = std::max(h.bin_lower(b), min_);
            const double v = std::min(h.bin_lower(b + 1), max_);
            lo_[b] = u, hi_[b] = v, count_[b] = static_cast<double>(c[b]);
            const moment_acc w = count_[b], ul = u, vl = v;
            p0_[b + 1] = p0_[b] + w;
            p1_[b + 1] = p1_[b] + w * (ul + vl) / 2;
            p2_[b + 1] = p2_[b] + w * (ul * ul + ul * vl + vl * vl) / 3;
        }
    }

    std::size_t num_bins() const noexcept { return count_.size(); }
    double min() const noexcept { return min_; }
    double max() const noexcept { return max_; }
    moments total() const noexcept { return {p0_.back(), p1_.back(), p2_.back()}; }

    /// Mass and first two moments of the part of the distribution strictly below x.
    moments below(double x) const noexcept {
        if (!(x > min_)) return {};
        if (x > max_) return total();
        const std::size_t b = bin_of(x);
        moments m{p0_[b], p1_[b], p2_[b]};
        if (count_[b] == 0 || !(x > lo_[b])) return m;
        if (!(x < hi_[b]) || hi_[b] <= lo_[b]) return {p0_[b + 1], p1_[b + 1], p2_[b + 1]};  // whole bin
        const moment_acc u = lo_[b], v = hi_[b], xl = x;
        const moment_acc d = count_[b] / (v - u);
        m.m0 += d * (xl - u);
        m.m1 += d * (xl * xl - u * u) / 2;
        m.m2 += d * (xl * xl * xl - u * u * u) / 3;
        return m;
    }

    /// Value below which a fraction q of the mass lies (piecewise-uniform inverse CDF); q in [0, 1].
    double quantile(double q) const noexcept {
        const double target = q * static_cast<double>(p0_.back());
        if (target <= 0) return min_;
        if (target >= static_cast<double>(p0_.back())) return max_;
        // First bin whose cumulative count reaches the target.
        const auto it = std::lower_bound(p0_.begin() + 1, p0_.end(), target);
        const std::size_t b = static_cast<std::size_t>(it - p0_.begin()) - 1;
        const double u = lo_[b], v = hi_[b], c = count_[b];
        if (c == 0 || v <= u) return u;
        return std::clamp(u + (target - static_cast<double>(p0_[b])) / c * (v - u), u, v);
    }

    /// Squared-error sums of quantize-dequantize with e over the modelled distribution.
    error_parts error(const encoding& e) const noexcept {
        const double s = static_cast<double>(e.scale);
        const double a = e.min(), b = e.max();
        error_parts r;
        const moments lo = below(a);
        const moments hi = below(b);
        const moments t = total();
        const moment_acc al = a, bl = b;
        r.clip = std::max(0.0, static_cast<double>(lo.m2 - 2 * al * lo.m1 + al * al * lo.m0));
        r.clip += std::max(0.0, static_cast<double>((t.m2 - hi.m2) - 2 * bl * (t.m1 - hi.m1) + bl * bl * (t.m0 - hi.m0)));
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

    /// Rounding error summed per grid cell from prefix moments (public for tests).
    double round_by_cells(double s, double p, double q) const noexcept {
        double sum = 0;
        const double m_first = std::nearbyint(p / s), m_last = std::nearbyint(q / s);
        moments left = below(p);
        for (double m = m_first; m <= m_last; m += 1) {
            const double edge = std::min(q, (m + 0.5) * s);
            const moments right = m == m_last ? below_inclusive(q) : below(edge);
            const moment_acc g = m * s;
            const moment_acc m0 = right.m0 - left.m0, m1 = right.m1 - left.m1, m2 = right.m2 - left.m2;
            sum += std::max(0.0, static_cast<double>(m2 - 2 * g * m1 + g * g * m0));
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
    moments below_inclusive(double x) const noexcept {
        return x >= max_ ? total() : below(std::nextafter(x, max_ + 1.0));
    }

    double min_, max_, origin_, width_;
    std::vector<double> lo_, hi_, count_;
    std::vector<moment_acc> p0_, p1_, p2_;
};

}  // namespace quantsim::detail
