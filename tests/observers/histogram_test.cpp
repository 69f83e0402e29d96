// exact_histogram: the state depends only on the multiset of values (batching, order and merge splits do not
// matter), re-binning on growth keeps every value, bad input is rejected with the right error.
#include <algorithm>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include <quantsim/quant/observers.hpp>

#include "observer_test_util.hpp"

namespace {

using namespace quantsim;

exact_histogram histogram_of(const std::vector<float>& x, std::size_t bins = 2048) {
    exact_histogram h(bins);
    h.add(x);
    return h;
}

// Splits x into random batches (random sizes, optionally shuffled) and adds them one by one.
exact_histogram batched(std::vector<float> x, std::uint32_t seed, bool shuffle, std::size_t bins = 2048) {
    std::mt19937 rng(seed);
    if (shuffle) std::shuffle(x.begin(), x.end(), rng);
    exact_histogram h(bins);
    std::size_t i = 0;
    while (i < x.size()) {
        const std::size_t n = std::min<std::size_t>(x.size() - i, 1 + rng() % 5000);
        h.add(std::span<const float>(x.data() + i, n));
        i += n;
    }
    return h;
}

// Data whose range keeps growing (so the histogram re-bins many times).
std::vector<float> growing(std::size_t n, std::uint32_t seed) {
    auto x = qtest::normal(n, seed);
    for (std::size_t i = 0; i < n; ++i) x[i] *= 1.0f + static_cast<float>(i) / 300.0f;
    return x;
}

TEST(ExactHistogram, CountsEveryValueAndCoversTheRange) {
    const auto x = qtest::normal(10000, qtest::default_seed);
    const auto h = histogram_of(x);
    EXPECT_EQ(h.total(), x.size());
    EXPECT_EQ(std::accumulate(h.counts().begin(), h.counts().end(), std::uint64_t{0}), x.size());
    EXPECT_LE(h.num_bins(), h.max_bins());
    EXPECT_EQ(h.min(), *std::min_element(x.begin(), x.end()));
    EXPECT_EQ(h.max(), *std::max_element(x.begin(), x.end()));
    EXPECT_LE(h.bin_lower(0), h.min());
    EXPECT_GT(h.bin_lower(h.num_bins()), h.max());
    // Each count is exactly the number of values in its bin.
    std::vector<std::uint64_t> expect(h.num_bins(), 0);
    for (float v : x) expect[static_cast<std::size_t>(std::floor(v / h.bin_width()) - h.first_bin())]++;
    EXPECT_EQ(std::vector<std::uint64_t>(h.counts().begin(), h.counts().end()), expect);
}

TEST(ExactHistogram, IndependentOfBatchingAndOrder) {
    for (std::uint32_t seed : {1u, 2u, 3u}) {
        SCOPED_TRACE(qtest::seed_trace(seed));
        const auto x = growing(40000, seed);
        const auto whole = histogram_of(x);
        EXPECT_EQ(batched(x, seed, false), whole);
        EXPECT_EQ(batched(x, seed + 100, true), whole);
        auto r = x;
        std::reverse(r.begin(), r.end());
        EXPECT_EQ(batched(r, seed + 200, false), whole);
    }
}

// Sampled counting: min/max from every value, counts from exactly the 16-value groups the pattern, rotated by the
// chunk's min/max hash, selects in each 16384-value chunk of an add of more than 4096 values; smaller adds count
// everything; splits at multiples of 16384 and merges give the same state. The pattern: 1024 / sample groups per
// chunk, nested across samples, and scattered (not every s-th group).
TEST(ExactHistogram, SampledCountsExactlyTheChosenBlocks) {
    for (std::size_t sample : {2u, 8u, 16u}) {
        SCOPED_TRACE("sample " + std::to_string(sample));
        // 100008 values (the range grows: re-binning between chunks; a last chunk of 1704 values, which may end
        // inside a counted group), an add of one partial chunk (5000) and a small add of 4096 (counted whole).
        for (std::size_t n : {std::size_t{100008}, std::size_t{5000}, std::size_t{4096}}) {
            SCOPED_TRACE("n " + std::to_string(n));
            const auto x = growing(n, qtest::default_seed);
            exact_histogram h(2048, sample);
            h.add(x);
            exact_histogram ref(2048);
            ref.extend(*std::min_element(x.begin(), x.end()), *std::max_element(x.begin(), x.end()));
            std::uint64_t counted = 0;
            for (std::size_t base = 0; base < x.size(); base += 16384) {
                const std::size_t m = std::min<std::size_t>(16384, x.size() - base);
                if (x.size() <= exact_histogram::sampled_min_add) {  // small adds: every value
                    ref.count_in_range(x.data(), x.size());
                    counted += x.size();
                    break;
                }
                const auto [mn, mx] = std::minmax_element(x.begin() + static_cast<std::ptrdiff_t>(base),
                                                          x.begin() + static_cast<std::ptrdiff_t>(base + m));
                const std::uint32_t rot = detail::sampled_rotation(*mn, *mx);
                for (std::uint32_t o : detail::sampled_group_offsets(sample)) {
                    const std::size_t b = (o + 16 * std::size_t{rot}) % 16384;
                    if (b >= m) continue;
                    const std::size_t len = std::min<std::size_t>(16, m - b);
                    ref.count_in_range(x.data() + base + b, len);
                    counted += len;
                }
            }
            EXPECT_EQ(h.total(), counted);
            EXPECT_EQ(h.min(), ref.min());
            EXPECT_EQ(h.max(), ref.max());
            EXPECT_EQ(h.level(), ref.level());
            EXPECT_EQ(h.first_bin(), ref.first_bin());
            EXPECT_TRUE(std::equal(h.counts().begin(), h.counts().end(), ref.counts().begin(), ref.counts().end()));
        }
        const auto x = growing(100000, qtest::default_seed);
        exact_histogram h(2048, sample);
        h.add(x);
        // Split at a chunk boundary and merged: the same state.
        exact_histogram a(2048, sample), b(2048, sample);
        a.add(std::span<const float>(x.data(), 49152));
        b.add(std::span<const float>(x.data() + 49152, x.size() - 49152));
        a.merge(b);
        EXPECT_EQ(a, h);
        // Sampled and exact histograms do not merge; the sample must be 1, 2, 4, 8 or 16.
        exact_histogram exact(2048);
        exact.add(x);
        EXPECT_THROW(exact.merge(h), invalid_argument);
    }
    // The pattern itself.
    for (std::size_t sample : {2u, 4u, 8u, 16u}) {
        const auto& o = detail::sampled_group_offsets(sample);
        EXPECT_EQ(o.size(), 1024 / sample);
        EXPECT_TRUE(std::is_sorted(o.begin(), o.end()));
        for (auto v : o) EXPECT_EQ(v % 16, 0u);
        if (sample < 16) {
            const auto& finer = detail::sampled_group_offsets(sample * 2);
            EXPECT_TRUE(std::includes(o.begin(), o.end(), finer.begin(), finer.end()));
        }
        // Scattered: over a structure of 72 groups (say channels of 1152 values), the counted groups fall in many
        // of its positions (a random pick of 1024 / s groups: about 72 (1 - exp(-1024 / (72 s))) of them), where
        // every s-th group would see only 72 / gcd(72, s) of them: 9 for s = 8 and 16.
        std::set<std::uint32_t> residues;
        for (auto v : o) residues.insert(v / 16 % 72);
        EXPECT_GE(residues.size(), std::min<std::size_t>(72, 1024 / sample) / 2) << "sample " << sample;
    }
    EXPECT_THROW(exact_histogram(2048, 3), invalid_argument);
    EXPECT_THROW(exact_histogram(2048, 32), invalid_argument);
    EXPECT_THROW(exact_histogram(2048, 0), invalid_argument);
}

TEST(ExactHistogram, MergeOfAnySplitEqualsWhole) {
    for (std::uint32_t seed : {4u, 5u, 6u}) {
        SCOPED_TRACE(qtest::seed_trace(seed));
        const auto x = growing(30000, seed);
        const auto whole = histogram_of(x, 512);
        std::mt19937 rng(seed);
        for (int trial = 0; trial < 5; ++trial) {
            // Random split into up to 4 parts, merged in random order and tree shapes.
            std::vector<std::vector<float>> parts(1 + rng() % 4);
            for (float v : x) parts[rng() % parts.size()].push_back(v);
            std::vector<exact_histogram> hs;
            for (auto& p : parts) hs.push_back(batched(p, seed + trial, true, 512));
            std::shuffle(hs.begin(), hs.end(), rng);
            while (hs.size() > 1) {
                const std::size_t i = rng() % (hs.size() - 1);
                hs[i].merge(hs[i + 1]);
                hs.erase(hs.begin() + static_cast<std::ptrdiff_t>(i) + 1);
            }
            EXPECT_EQ(hs[0], whole) << "trial " << trial;
        }
    }
}

TEST(ExactHistogram, MergeWithEmptyAndSelfCopies) {
    const auto x = qtest::normal(1000, 7);
    const auto whole = histogram_of(x);
    exact_histogram e;
    e.merge(whole);
    EXPECT_EQ(e, whole);
    auto w = whole;
    w.merge(exact_histogram{});
    EXPECT_EQ(w, whole);
    w.reset();
    EXPECT_TRUE(w.empty());
    EXPECT_EQ(w, exact_histogram{});
}

TEST(ExactHistogram, ExtremeRanges) {
    const float fmax = std::numeric_limits<float>::max();
    for (const std::vector<float>& x :
         {std::vector<float>{-fmax, fmax, 0.0f, 1.0f}, std::vector<float>{1e-45f, -1e-45f, 0.0f},
          std::vector<float>(100, 3.25f), std::vector<float>{1000.0f, 1000.0001f, 1000.0002f},
          std::vector<float>{-0.0f, 0.0f}}) {
        for (std::size_t bins : {2u, 7u, 2048u}) {
            const auto h = histogram_of(x, bins);
            EXPECT_EQ(h.total(), x.size());
            EXPECT_LE(h.num_bins(), bins);
            auto r = x;
            std::reverse(r.begin(), r.end());
            exact_histogram g(bins);
            for (float v : r) g.add(std::span<const float>(&v, 1));
            EXPECT_EQ(g, h);
        }
    }
    // Large inputs take the chunked path; with 2 bins over +-FLT_MAX the level is 128 (subnormal scale).
    for (std::size_t bins : {2u, 3u, 2048u}) {
        auto big = qtest::normal(40000, 77, 0, 1e30f);
        big[30000] = fmax;
        big[35000] = -fmax;
        exact_histogram chunked(bins), small(bins);
        chunked.add(big);
        for (std::size_t i = 0; i < big.size(); i += 100) small.add(std::span<const float>(big.data() + i, 100));
        EXPECT_EQ(chunked, small) << bins << " bins";
        EXPECT_EQ(chunked.total(), big.size());
    }
    // Clustered data far from 0: every distinct float keeps its own bin (the index-width floor).
    const auto h = histogram_of({1000.0f, 1000.0001f, 1000.0002f}, 2048);
    EXPECT_EQ(std::count_if(h.counts().begin(), h.counts().end(), [](auto c) { return c > 0; }), 3);
}

TEST(ExactHistogram, RejectsBadInputAndKeepsState) {
    EXPECT_THROW(exact_histogram(1), invalid_argument);
    EXPECT_THROW(exact_histogram(0), invalid_argument);
    auto x = qtest::normal(500, 8);
    auto h = histogram_of(x);
    const auto before = h;
    x[321] = std::numeric_limits<float>::quiet_NaN();
    try {
        h.add(x, "test histogram");
        FAIL() << "NaN accepted";
    } catch (const numeric_error& e) {
        EXPECT_NE(std::string(e.what()).find("element 321"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
    }
    EXPECT_EQ(h, before);
    // A large input is processed in chunks: a NaN in a late chunk must still leave the histogram unchanged.
    auto big = qtest::normal(200000, 9, 0, 3);
    for (std::size_t i = 150000; i < big.size(); ++i) big[i] *= 10;  // later chunks widen the range (re-binning)
    big[190001] = std::numeric_limits<float>::infinity();
    try {
        h.add(big, "test histogram");
        FAIL() << "Inf accepted";
    } catch (const numeric_error& e) {
        EXPECT_NE(std::string(e.what()).find("element 190001"), std::string::npos) << e.what();
    }
    EXPECT_EQ(h, before);
    // The same inside the range already covered (nothing re-bins, so no chunk changed the state), and the counts
    // of the failed add must not leak into the next one.
    {
        auto inside = qtest::normal(100000, 10, 0, 1);
        exact_histogram wide(2048), fresh(2048);
        const float lo = *std::min_element(inside.begin(), inside.end()) * 2, hi = *std::max_element(inside.begin(), inside.end()) * 2;
        wide.extend(lo, hi);
        fresh.extend(lo, hi);
        const auto start = wide;
        auto bad = inside;
        bad[99000] = std::numeric_limits<float>::quiet_NaN();
        EXPECT_THROW(wide.add(bad), numeric_error);
        EXPECT_EQ(wide, start);
        wide.add(std::span<const float>(inside.data(), 50000));
        fresh.add(std::span<const float>(inside.data(), 50000));
        EXPECT_EQ(wide, fresh);
    }
    big[190001] = 0.0f;
    auto chunked = h, one_by_one = h;
    chunked.add(big);
    for (std::size_t i = 0; i < big.size(); i += 1000) one_by_one.add(std::span<const float>(big.data() + i, 1000));
    EXPECT_EQ(chunked, one_by_one);
    exact_histogram other(1024);
    other.add(std::span<const float>(x.data(), 10));
    EXPECT_THROW(h.merge(other), invalid_argument);
}

}  // namespace
