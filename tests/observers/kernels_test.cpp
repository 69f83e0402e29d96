// The vectorized kernels against their *_ref twins: min/max scans (all tail lengths, NaN/Inf anywhere) and the
// histogram counting kernel (bin indices exact, including values that underflow and extreme levels).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

#include <quantsim/quant/observers.hpp>

#include "observer_test_util.hpp"

namespace {

using namespace quantsim;
using detail::minmax_pair;

constexpr float inf = std::numeric_limits<float>::infinity();
constexpr float nan = std::numeric_limits<float>::quiet_NaN();

TEST(ObserverKernels, ScanMinMaxMatchesReferenceForEveryLength) {
    const std::uint32_t seed = qtest::default_seed;
    SCOPED_TRACE(qtest::seed_trace(seed));
    const auto data = qtest::normal(300, seed, 0.5f, 3.0f);
    for (std::size_t n = 0; n <= data.size(); ++n) {
        for (std::size_t offset : {0, 1, 3}) {  // unaligned starts
            if (offset + n > data.size()) continue;
            minmax_pair a, b;
            ASSERT_TRUE(detail::scan_minmax(data.data() + offset, n, a));
            ASSERT_TRUE(detail::scan_minmax_ref(data.data() + offset, n, b));
            EXPECT_EQ(a.min, b.min) << "n = " << n;
            EXPECT_EQ(a.max, b.max) << "n = " << n;
        }
    }
}

TEST(ObserverKernels, ScanMinMaxDetectsNonFiniteAnywhere) {
    const auto base = qtest::normal(131, qtest::default_seed);
    for (float bad : {nan, inf, -inf}) {
        for (std::size_t pos = 0; pos < base.size(); ++pos) {
            auto x = base;
            x[pos] = bad;
            minmax_pair r;
            r.fold(0.25f);
            EXPECT_FALSE(detail::scan_minmax(x.data(), x.size(), r)) << "position " << pos << " value " << bad;
            EXPECT_EQ(r.min, 0.25f) << "bounds must be untouched on failure";
            EXPECT_EQ(r.max, 0.25f);
        }
    }
}

TEST(ObserverKernels, ChannelScanMatchesPerChannelLoop) {
    const std::uint32_t seed = qtest::default_seed + 1;
    SCOPED_TRACE(qtest::seed_trace(seed));
    for (auto [outer, channels, inner] :
         {std::array<std::int64_t, 3>{7, 5, 1}, {3, 4, 3}, {2, 3, 17}, {1, 6, 5}, {5, 1, 40}, {9, 33, 2}}) {
        const auto x = qtest::normal(static_cast<std::size_t>(outer * channels * inner), seed);
        std::vector<minmax_pair> fast(static_cast<std::size_t>(channels)), ref(static_cast<std::size_t>(channels));
        ASSERT_TRUE(detail::scan_channel_minmax(x.data(), outer, channels, inner, fast.data()));
        ASSERT_TRUE(detail::scan_channel_minmax_ref(x.data(), outer, channels, inner, ref.data()));
        for (std::int64_t c = 0; c < channels; ++c) {
            EXPECT_EQ(fast[c].min, ref[c].min);
            EXPECT_EQ(fast[c].max, ref[c].max);
        }
        auto y = x;
        y[y.size() / 2] = nan;
        std::vector<minmax_pair> r(static_cast<std::size_t>(channels));
        EXPECT_FALSE(detail::scan_channel_minmax(y.data(), outer, channels, inner, r.data()));
    }
}

// Checks the counting kernel against the reference on data spanning the level's full window.
void check_counts(const std::vector<float>& x, std::size_t max_bins) {
    float mn = x[0], mx = x[0];
    for (float v : x) mn = std::min(mn, v), mx = std::max(mx, v);
    const int k = detail::histogram_level(mn, mx, max_bins);
    const std::int64_t first = detail::bin_index_ref(mn, k);
    const std::int64_t last = detail::bin_index_ref(mx, k);
    ASSERT_LE(last - first + 1, static_cast<std::int64_t>(max_bins));
    const auto nbins = static_cast<std::size_t>(last - first + 1);
    std::vector<std::uint64_t> fast(nbins, 0), ref(nbins, 0);
    detail::histogram_count(x.data(), x.size(), k, first, nbins, fast.data());
    detail::histogram_count_ref(x.data(), x.size(), k, first, nbins, ref.data());
    EXPECT_EQ(fast, ref) << "level " << k;
    EXPECT_EQ(std::accumulate(fast.begin(), fast.end(), std::uint64_t{0}), x.size());
}

TEST(ObserverKernels, HistogramCountMatchesReference) {
    const std::uint32_t seed = qtest::default_seed + 2;
    SCOPED_TRACE(qtest::seed_trace(seed));
    check_counts(qtest::normal(100000, seed), 2048);              // sub-histogram path
    check_counts(qtest::normal(37, seed), 2048);                  // direct path
    check_counts(qtest::uniform(50000, seed, 3.0f, 3.001f), 64);  // narrow range far from 0 (index floor)
    check_counts(qtest::normal(20000, seed, 0, 1e-30f), 512);     // tiny values
    check_counts(qtest::normal(20000, seed, 0, 1e30f), 512);      // huge values
    check_counts({-std::numeric_limits<float>::max(), std::numeric_limits<float>::max(), 0.0f, -0.0f, 1.0f, -1e-45f},
                 2);  // level 128: subnormal scale, double path
    // Values so small next to the bin width that x * 2^-k underflows: negatives must still land in bin -1.
    std::vector<float> tiny(9000);
    for (std::size_t i = 0; i < tiny.size(); ++i) tiny[i] = (i % 3 == 0 ? -1e-44f : (i % 3 == 1 ? 1e-44f : -0.0f));
    tiny.push_back(3e37f);
    tiny.push_back(-3e37f);
    check_counts(tiny, 2048);
}

// Runs of one bin (activations after Relu/Clip are often exactly 0) and sorted data count right through the
// padded sub-histograms too.
TEST(ObserverKernels, HistogramCountRunsOfOneBin) {
    const std::uint32_t seed = qtest::default_seed + 3;
    SCOPED_TRACE(qtest::seed_trace(seed));
    auto x = qtest::normal(50000, seed);
    std::vector<float> runs(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) runs[i] = (i / 1000) % 2 ? 0.0f : x[i];
    check_counts(runs, 2048);
    std::sort(x.begin(), x.end());
    check_counts(x, 2048);
    check_counts(x, 100);  // a bin count that is not a multiple of 16
    EXPECT_EQ(detail::histogram_sub_stride(2048) % 1024, 16u) << "lanes must not be 4 KiB apart";
}

// Data where most values sit in the bin of 0 or in the top bin (Relu, Clip, hard-swish outputs): the counting
// kernel counts those lanes by popcount and increments only the others; counts must not change.
TEST(ObserverKernels, HistogramCountFrequentZeroAndTopBins) {
    const std::uint32_t seed = qtest::default_seed + 4;
    SCOPED_TRACE(qtest::seed_trace(seed));
    const auto x = qtest::normal(40001, seed);
    std::vector<float> relu(x.size()), clip(x.size()), neg(x.size()), top(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        relu[i] = std::max(x[i], 0.0f);
        clip[i] = std::clamp(3.0f * x[i] + 3.0f, 0.0f, 6.0f);
        neg[i] = std::min(x[i], 0.0f);  // 0 is the top bin: counted once
        top[i] = std::min(3.0f + x[i] * 1e-3f, 3.0f);  // 0 outside the range: only the top bin is frequent
    }
    check_counts(relu, 2048);
    check_counts(clip, 2048);
    check_counts(clip, 7);
    check_counts(neg, 512);
    check_counts(top, 2048);
    std::vector<float> zeros(5000, 0.0f);
    zeros.back() = 1.0f;
    check_counts(zeros, 2048);
}

TEST(ObserverKernels, HistogramLevelIsSmallestFittingAndMonotone) {
    const auto x = qtest::normal(64, qtest::default_seed + 3, 0, 10);
    for (std::size_t bins : {2u, 3u, 16u, 2048u}) {
        for (std::size_t i = 0; i + 1 < x.size(); i += 2) {
            const float mn = std::min(x[i], x[i + 1]), mx = std::max(x[i], x[i + 1]);
            const int k = detail::histogram_level(mn, mx, bins);
            const auto span = [&](int kk) { return detail::bin_index_ref(mx, kk) - detail::bin_index_ref(mn, kk) + 1; };
            EXPECT_LE(span(k), static_cast<std::int64_t>(bins));
            int e = 0;
            std::frexp(std::max(std::fabs(mn), std::fabs(mx)), &e);
            if (k > std::max(e - detail::histogram_index_bits, detail::histogram_min_level)) {
                EXPECT_GT(span(k - 1), static_cast<std::int64_t>(bins)) << "not the smallest level";
            }
            // A wider range never gets a finer level.
            EXPECT_GE(detail::histogram_level(mn - 1.0f, mx, bins), k);
            EXPECT_GE(detail::histogram_level(mn, mx + std::fabs(mx) + 1, bins), k);
        }
    }
}

}  // namespace
