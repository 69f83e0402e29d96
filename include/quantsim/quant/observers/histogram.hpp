// exact_histogram: a streaming histogram whose final state depends only on the multiset of values seen, never on
// batching, order, or how the data was split before merging.
//
// Bins have width 2^k and sit at integer multiples of 2^k: value x falls in bin floor(x / 2^k), computed exactly.
// The level k is the smallest one for which the observed [min, max] spans at most max_bins bins (never finer than
// 2^-31 of the largest magnitude, so indices fit 32 bits; at that resolution every float has its own bin anyway).
// When the range grows, k grows and bin j becomes bin floor(j / 2^dk): merging whole bins, which loses nothing
// that the new level could represent. So the state is a function of the data: k = level(min, max), the first bin
// is floor(min / 2^k), and each count is the number of values in its bin. Merging two histograms brings both to
// the level of the union's range and adds the counts, which gives exactly that state again.
//
// Sampled counting (sample = 2, 4, 8 or 16; 1 = every value, the default): min and max still see every value, but
// in an add() of more than 4096 values (sampled_min_add) only one 16-value group in `sample` of each 16384-value
// chunk is counted: a fixed scattered pattern (detail::sampled_group_offsets), rotated per chunk by a hash of the
// chunk's min and max, so the counted positions move with the data instead of meeting the same channels in every add
// of a same-shaped value. Smaller adds count every value (they cost little, and a sample of a few hundred values per
// image is noisy). Counting is most of a calibration's cost; the state then depends on where adds start: callers
// that split a tensor must split it at multiples of 16384 (quant_sim's calibration does) to get the same counts as
// one add().
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include <quantsim/core/error.hpp>
#include <quantsim/quant/observers/detail/histogram_kernel.hpp>
#include <quantsim/quant/observers/detail/minmax_kernel.hpp>
#include <quantsim/quant/observers/observer.hpp>

namespace quantsim {

class exact_histogram {
public:
    static constexpr std::size_t default_bins = 2048;
    static constexpr std::size_t max_allowed_bins = std::size_t{1} << 24;

    /// At most max_bins bins (>= 2; memory is 8 bytes per bin).
    static constexpr std::size_t max_sample = 16;

    explicit exact_histogram(std::size_t max_bins = default_bins, std::size_t sample = 1)
        : max_bins_(max_bins), sample_(sample) {
        if (max_bins < 2 || max_bins > max_allowed_bins)
            QUANTSIM_THROW(invalid_argument, "histogram: bins = ", max_bins, " is outside [2, ", max_allowed_bins, "]");
        if (sample < 1 || sample > max_sample || (sample & (sample - 1)) != 0)
            QUANTSIM_THROW(invalid_argument, "histogram: sample = ", sample, " must be 1, 2, 4, 8 or 16");
    }

    std::size_t max_bins() const noexcept { return max_bins_; }
    /// 1: every value is counted; n: one 16-value group in n (see the top of this file).
    std::size_t sample() const noexcept { return sample_; }
    bool empty() const noexcept { return total_ == 0; }
    /// Number of values counted.
    std::uint64_t total() const noexcept { return total_; }
    /// Smallest and largest value counted (+inf / -inf when empty).
    float min() const noexcept { return min_; }
    float max() const noexcept { return max_; }
    /// log2 of the bin width.
    int level() const noexcept { return level_; }
    double bin_width() const noexcept { return std::ldexp(1.0, level_); }
    /// Global index of counts()[0]: it covers [first_bin() * bin_width(), (first_bin() + 1) * bin_width()).
    std::int64_t first_bin() const noexcept { return first_; }
    std::size_t num_bins() const noexcept { return counts_.size(); }
    std::span<const std::uint64_t> counts() const noexcept { return counts_; }
    /// Lower edge of bin i (of counts()).
    double bin_lower(std::size_t i) const noexcept {
        return std::ldexp(static_cast<double>(first_ + static_cast<std::int64_t>(i)), level_);
    }

    /// Counts x. Throws numeric_error naming the first NaN/Inf (`who` starts the message); the histogram is then
    /// unchanged.
    void add(std::span<const float> x, std::string_view who = "histogram", const shape_t* shape = nullptr) {
        if (x.empty()) return;
        if (sample_ > 1 ? x.size() <= sampled_min_add : (x.size() <= fused_chunk || x.size() < 4 * max_bins_)) {
            detail::minmax_pair r;
            if (!detail::scan_minmax(x.data(), x.size(), r)) detail::throw_non_finite(who, x.data(), x.size(), shape);
            extend(r.min, r.max);
            count_in_range(x.data(), x.size());
            return;
        }
        add_fused(x, who, shape);
    }

    /// Widens the covered range to include [mn, mx], re-binning exactly. Preconditions: finite, mn <= mx.
    void extend(float mn, float mx) {
        const float nmin = std::min(min_, mn), nmax = std::max(max_, mx);
        if (!counts_.empty() && nmin >= min_ && nmax <= max_) return;
        const int k = std::max(detail::histogram_level(nmin, nmax, max_bins_), counts_.empty() ? -1000 : level_);
        rebase(k, detail::bin_index_ref(nmin, k), detail::bin_index_ref(nmax, k));
        min_ = nmin;
        max_ = nmax;
    }

    /// Counts values that are known to be finite and inside [min(), max()] (after extend()).
    void count_in_range(const float* x, std::size_t n) {
        detail::histogram_count(x, n, level_, first_, counts_.size(), counts_.data());
        total_ += n;
    }

    /// Adds another histogram's values. Throws invalid_argument if the bin limits differ.
    void merge(const exact_histogram& o) {
        if (o.max_bins_ != max_bins_)
            QUANTSIM_THROW(invalid_argument, "histogram merge: bin limits differ (", max_bins_, " vs ", o.max_bins_,
                           ")");
        if (o.sample_ != sample_)
            QUANTSIM_THROW(invalid_argument, "histogram merge: sampling differs (1 in ", sample_, " vs 1 in ", o.sample_,
                           ")");
        if (o.empty()) return;
        if (empty()) {
            *this = o;
            return;
        }
        extend(o.min_, o.max_);
        // o's level is at most ours now (levels are monotone in the range), so its bins nest in ours.
        const int shift = std::min(level_ - o.level_, 63);
        for (std::size_t j = 0; j < o.counts_.size(); ++j) {
            if (!o.counts_[j]) continue;
            const std::int64_t g = (o.first_ + static_cast<std::int64_t>(j)) >> shift;
            counts_[static_cast<std::size_t>(g - first_)] += o.counts_[j];
        }
        total_ += o.total_;
    }

    void reset() noexcept {
        total_ = 0;
        min_ = std::numeric_limits<float>::infinity();
        max_ = -std::numeric_limits<float>::infinity();
        level_ = 0;
        first_ = 0;
        counts_.clear();
    }

    /// Same configuration and same counted values (bins, level, counts, range).
    bool operator==(const exact_histogram& o) const noexcept {
        return max_bins_ == o.max_bins_ && sample_ == o.sample_ && total_ == o.total_ && counts_ == o.counts_ &&
               (empty() || (min_ == o.min_ && max_ == o.max_ && level_ == o.level_ && first_ == o.first_));
    }

    /// Per-value counting for callers that interleave many histograms (per-channel observers with the channel
    /// axis innermost). Obtain after extend(); every value must be finite and inside [min(), max()]; call
    /// exact_histogram::commit(n) after adding n values.
    class value_counter {
    public:
        QUANTSIM_ALWAYS_INLINE void add(float x) noexcept {
            if (exact_)
                counts_[std::clamp(detail::bin_index_ref(x, level_) - first_, std::int64_t{0}, last_)]++;
            else
                counts_[detail::bin_offset(x, scale_, static_cast<std::int32_t>(first_),
                                           static_cast<std::int32_t>(last_))]++;
        }

    private:
        friend class exact_histogram;
        std::uint64_t* counts_ = nullptr;
        float scale_ = 1;
        int level_ = 0;
        bool exact_ = false;
        std::int64_t first_ = 0, last_ = 0;
    };
    value_counter counter() noexcept {
        value_counter c;
        c.counts_ = counts_.data();
        c.level_ = level_;
        c.exact_ = level_ > 126;
        c.scale_ = c.exact_ ? 1.0f : std::ldexp(1.0f, -level_);
        c.first_ = first_;
        c.last_ = static_cast<std::int64_t>(counts_.size()) - 1;
        return c;
    }
    void commit(std::uint64_t n) noexcept { total_ += n; }

private:
    /// Large inputs are processed in cache-sized chunks (bounds, then counts, per chunk): one read from memory
    /// instead of two. The result is the same: re-binning is exact whenever a chunk widens the range.
    static constexpr std::size_t fused_chunk = std::size_t{1} << 14;

public:
    /// Sampled histograms count every value of adds up to this size (see the top of this file).
    static constexpr std::size_t sampled_min_add = 4096;

private:

    void add_fused(std::span<const float> x, std::string_view who, const shape_t* shape) {
        // Strong guarantee: a NaN in a later chunk undoes earlier ones. The state changes only when a chunk widens
        // the range (flush and re-bin) or counts straight into counts_, so the copy is taken then, not per add
        // (calibration adds thousands of small values, and copying 2048 counts each time showed in profiles).
        std::optional<exact_histogram> backup;
        const auto before_change = [&] {
            if (!backup) backup.emplace(*this);
        };
        const std::size_t stride = detail::histogram_sub_stride(max_bins_);
        auto& sub = detail::histogram_scratch(detail::histogram_lanes * stride);
        std::size_t pending = 0, counted = 0;
        // Bins [lo, hi) of the sub-histograms hold counts not flushed yet: the bins of the chunks' ranges.
        std::size_t lo = SIZE_MAX, hi = 0;
        const auto flush = [&] {
            if (lo < hi) detail::histogram_flush_sub(lo, hi, stride, sub.data(), counts_.data());
            pending = 0;
            lo = SIZE_MAX;
            hi = 0;
        };
        for (std::size_t base = 0; base < x.size(); base += fused_chunk) {
            const std::size_t m = std::min(fused_chunk, x.size() - base);
            const float* p = x.data() + base;
            detail::minmax_pair r;
            if (!detail::scan_minmax(p, m, r)) {
                for (std::size_t l = 0; l < detail::histogram_lanes && lo < hi; ++l)  // the scratch stays all zeros
                    std::fill(sub.begin() + static_cast<std::ptrdiff_t>(l * stride + lo),
                              sub.begin() + static_cast<std::ptrdiff_t>(l * stride + hi), 0u);
                if (backup) *this = std::move(*backup);  // else only the scratch sub-histograms saw this add
                detail::throw_non_finite(who, x.data(), x.size(), shape);
            }
            if (counts_.empty() || r.min < min_ || r.max > max_) {
                before_change();
                if (pending) flush();
                extend(r.min, r.max);
            }
            const std::uint32_t rot = sample_ > 1 ? detail::sampled_rotation(r.min, r.max) : 0;
            if (level_ > 126) {  // subnormal scale: exact double path, straight into the counts
                before_change();
                detail::for_each_sampled_group(m, sample_, rot, [&](std::size_t b, std::size_t len) {
                    detail::histogram_count_ref(p + b, len, level_, first_, counts_.size(), counts_.data());
                });
            } else {
                const std::size_t next = std::min(fused_chunk, x.size() - base - m);
                lo = std::min(lo, static_cast<std::size_t>(detail::bin_index_ref(r.min, level_) - first_));
                hi = std::max(hi, static_cast<std::size_t>(detail::bin_index_ref(r.max, level_) - first_) + 1);
                detail::histogram_count_sub(p, m, level_, first_, counts_.size(), stride, sub.data(), sample_, rot,
                                            p + m, next);
                pending += m;
                if (pending >= (std::size_t{1} << 31)) {
                    before_change();
                    flush();
                }
            }
            counted += detail::sampled_size(m, sample_, rot);
        }
        if (pending) flush();
        total_ += counted;
    }

    // Moves the counts to level k covering global bins [first, last] (k >= level_, the new range contains the old).
    void rebase(int k, std::int64_t first, std::int64_t last) {
        std::vector<std::uint64_t> c(static_cast<std::size_t>(last - first + 1), 0);
        if (!counts_.empty()) {
            const int shift = std::min(k - level_, 63);
            for (std::size_t j = 0; j < counts_.size(); ++j)
                if (counts_[j])
                    c[static_cast<std::size_t>(((first_ + static_cast<std::int64_t>(j)) >> shift) - first)] +=
                        counts_[j];
        }
        counts_ = std::move(c);
        level_ = k;
        first_ = first;
    }

    std::size_t max_bins_;
    std::size_t sample_ = 1;
    std::uint64_t total_ = 0;
    float min_ = std::numeric_limits<float>::infinity();
    float max_ = -std::numeric_limits<float>::infinity();
    int level_ = 0;
    std::int64_t first_ = 0;
    std::vector<std::uint64_t> counts_;
};

}  // namespace quantsim
