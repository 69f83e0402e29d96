// merge(): observers of two halves (or any split) of the data give exactly the encoding of observing all of it,
// for every observer except the moving average (whose merge is concatenation, tested in minmax_test.cpp).
// Also: per-channel histogram observers against a per-channel loop, configuration checks, observe_parallel.
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include <quantsim/quant/observers.hpp>

#include "observer_test_util.hpp"

namespace {

using namespace quantsim;

// (Aggregate initialization that skips members warns under GCC 12's -Wextra, even when designated.)
observer_options bins(std::size_t n, std::string label = {}) {
    observer_options o;
    o.bins = n;
    o.label = std::move(label);
    return o;
}

// Every concrete observer satisfies its concept (a compile-time check).
static_assert(range_observer<minmax_observer> && range_observer<moving_average_observer> &&
              range_observer<percentile_observer> && range_observer<mse_observer> && range_observer<sqnr_observer> &&
              range_observer<entropy_observer> && range_observer<observer>);
static_assert(channel_range_observer<per_channel_minmax_observer> &&
              channel_range_observer<per_channel_moving_average_observer> &&
              channel_range_observer<per_channel_percentile_observer> &&
              channel_range_observer<per_channel_mse_observer> && channel_range_observer<per_channel_sqnr_observer> &&
              channel_range_observer<per_channel_entropy_observer> && channel_range_observer<channel_observer>);
static_assert(!range_observer<per_channel_minmax_observer> && !channel_range_observer<minmax_observer>);
static_assert(histogram_estimator<percentile_estimator> && histogram_estimator<mse_estimator> &&
              histogram_estimator<sqnr_estimator> && histogram_estimator<entropy_estimator>);

class MergeExact : public ::testing::TestWithParam<const char*> {};

TEST_P(MergeExact, HalvesAndRandomSplitsGiveTheWholeEncoding) {
    const std::string method = GetParam();
    for (std::uint32_t seed : {qtest::default_seed + 30, qtest::default_seed + 31}) {
        SCOPED_TRACE(qtest::seed_trace(seed) + " " + method);
        // Growing range: later data forces re-binning in the histogram observers.
        auto x = qtest::laplace_with_outliers(60000, seed);
        for (std::size_t i = 0; i < x.size(); ++i) x[i] *= 1.0f + static_cast<float>(i) / 20000.0f;
        auto whole = make_observer(method);
        for (std::size_t i = 0; i < x.size(); i += 7000)
            whole.observe(std::span<const float>(x.data() + i, std::min<std::size_t>(7000, x.size() - i)));
        std::mt19937 rng(seed);
        for (int trial = 0; trial < 3; ++trial) {
            // Random contiguous splits into 2..4 parts, merged in arbitrary order.
            std::vector<std::size_t> cuts = {0, x.size()};
            for (int c = 0; c < 1 + trial; ++c) cuts.push_back(rng() % x.size());
            std::sort(cuts.begin(), cuts.end());
            std::vector<observer> parts;
            for (std::size_t c = 0; c + 1 < cuts.size(); ++c) {
                auto o = make_observer(method);
                o.observe(std::span<const float>(x.data() + cuts[c], cuts[c + 1] - cuts[c]));
                parts.push_back(o);
            }
            std::shuffle(parts.begin(), parts.end(), rng);
            observer merged = make_observer(method);
            for (const auto& p : parts) merged.merge(p);
            EXPECT_EQ(merged, whole) << "trial " << trial;
            for (int bits : {4, 8}) {
                for (const auto& s : qtest::all_specs(bits)) {
                    SCOPED_TRACE(qtest::describe(s));
                    qtest::expect_same_encoding(merged.compute(s), whole.compute(s));
                    EXPECT_EQ(merged.compute_range(s), whole.compute_range(s));
                }
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllExactObservers, MergeExact,
                         ::testing::Values("minmax", "percentile:99.9", "mse", "sqnr", "entropy"));

class PerChannelHistogram : public ::testing::TestWithParam<const char*> {};

TEST_P(PerChannelHistogram, MatchesPerChannelLoopAndMergesExactly) {
    const std::string method = GetParam();
    const std::uint32_t seed = qtest::default_seed + 32;
    SCOPED_TRACE(qtest::seed_trace(seed) + " " + method);
    const shape_t shape{6, 3, 40};
    const auto x = qtest::laplace_with_outliers(720, seed, 1.0f, 3, 20.0f);
    const auto y = qtest::normal(720, seed + 1, 0.5f, 2.0f);
    for (int axis : {0, 1, 2}) {
        SCOPED_TRACE("axis " + std::to_string(axis));
        auto all = make_channel_observer(method, axis);
        all.observe(tensor::from(x, shape));
        all.observe(tensor::from(y, shape));
        // Split, merge: identical state.
        auto a = make_channel_observer(method, axis), b = make_channel_observer(method, axis);
        a.observe(tensor::from(x, shape));
        b.observe(tensor::from(y, shape));
        b.merge(a);
        EXPECT_EQ(b, all);
        const auto l = detail::layout_around(shape, axis);
        for (const auto& s : {qtest::spec(8, qscheme::symmetric), qtest::spec(4, qscheme::asymmetric)}) {
            SCOPED_TRACE(qtest::describe(s));
            const quant_params p = all.compute(s);
            ASSERT_EQ(static_cast<std::int64_t>(p.size()), l.channels);
            EXPECT_EQ(p.gran.kind, granularity_kind::per_channel);
            qtest::expect_same_encoding(b.compute(s).at(0), p.at(0));
            for (std::int64_t c = 0; c < l.channels; ++c) {
                auto ref = make_observer(method);
                for (const auto* data : {&x, &y}) {
                    std::vector<float> v;
                    for (std::int64_t o = 0; o < l.outer; ++o)
                        for (std::int64_t i = 0; i < l.inner; ++i)
                            v.push_back((*data)[static_cast<std::size_t>((o * l.channels + c) * l.inner + i)]);
                    ref.observe(v);
                }
                qtest::expect_same_encoding(p.at(static_cast<std::size_t>(c)), ref.compute(s));
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllHistogramMethods, PerChannelHistogram,
                         ::testing::Values("percentile:99", "mse", "sqnr", "entropy"));

TEST(ObserverMerge, RejectsDifferentConfigurations) {
    auto mm = make_observer("minmax"), mse = make_observer("mse");
    EXPECT_THROW(mm.merge(mse), invalid_argument);
    auto p1 = make_observer("percentile:99"), p2 = make_observer("percentile:99.9");
    EXPECT_THROW(p1.merge(p2), invalid_argument);
    auto b1 = make_observer("sqnr", bins(1024)), b2 = make_observer("sqnr", bins(2048));
    EXPECT_THROW(b1.merge(b2), invalid_argument);
    auto e1 = make_observer("ema:0.1"), e2 = make_observer("ema:0.2");
    EXPECT_THROW(e1.merge(e2), invalid_argument);
    auto c1 = make_channel_observer("mse", 0), c2 = make_channel_observer("mse", 1);
    EXPECT_THROW(c1.merge(c2), invalid_argument);
    auto c3 = make_channel_observer("entropy", 0), c4 = make_channel_observer("entropy", 0);
    c3.observe(tensor::zeros({3, 4}));
    c4.observe(tensor::zeros({5, 4}));
    EXPECT_THROW(c3.merge(c4), invalid_argument);
    auto c5 = make_channel_observer("percentile:90", 0, bins(512)),
         c6 = make_channel_observer("percentile:90", 0, bins(256));
    EXPECT_THROW(c5.merge(c6), invalid_argument);
}

TEST(ObserverFactory, ParsesNamesAndRejectsBadOnes) {
    EXPECT_EQ(parse_range_method("minmax").kind, range_method_kind::minmax);
    EXPECT_EQ(parse_range_method("TF").kind, range_method_kind::minmax);
    EXPECT_EQ(parse_range_method("ema").kind, range_method_kind::moving_average);
    EXPECT_EQ(parse_range_method("moving_average:0.05").averaging_constant, 0.05);
    EXPECT_EQ(parse_range_method("percentile:99.99").percentile, 99.99);
    EXPECT_EQ(parse_range_method("percentile:99.99").to_string(), "percentile:99.99");
    EXPECT_EQ(parse_range_method("Mse").kind, range_method_kind::mse);
    EXPECT_EQ(parse_range_method("tf_enhanced").kind, range_method_kind::sqnr);
    EXPECT_EQ(parse_range_method("sqnr").to_string(), "sqnr");
    EXPECT_EQ(parse_range_method("kl").kind, range_method_kind::entropy);
    for (const char* bad : {"", "minmaxx", "percentile", "percentile:", "percentile:abc", "percentile:0",
                            "percentile:100.01", "percentile:99x", "ema:0", "ema:2", "mse:3", "sqnr:1"}) {
        EXPECT_THROW(parse_range_method(bad), invalid_argument) << bad;
    }
    try {
        parse_range_method("histogram");
        FAIL();
    } catch (const invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("'histogram'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("percentile:P"), std::string::npos) << e.what();
    }
    EXPECT_THROW(make_observer("mse", bins(1)), invalid_argument);  // bins < 2
    auto o = make_observer("percentile:99.9", bins(512, "layer3.relu"));
    EXPECT_EQ(o.name(), "percentile:99.9");
    EXPECT_EQ(o.label(), "layer3.relu");
    ASSERT_NE(o.get_if<percentile_observer>(), nullptr);
    EXPECT_EQ(o.get_if<percentile_observer>()->bins(), 512u);
    EXPECT_EQ(make_channel_observer("sqnr", -1).axis(), -1);
}

TEST(ObserveParallel, EqualsSerialObservation) {
    const std::uint32_t seed = qtest::default_seed + 33;
    SCOPED_TRACE(qtest::seed_trace(seed));
    const auto x = qtest::laplace_with_outliers(1 << 19, seed);
    for (const char* m : {"minmax", "ema", "percentile:99.9", "sqnr"}) {
        for (int threads : {1, 2, 3}) {
            auto serial = make_observer(m), par = make_observer(m);
            serial.observe(x);
            observe_parallel(par, x, threads);
            EXPECT_EQ(par, serial) << m << " threads " << threads;
        }
    }
    // Errors report the global index of the first bad element and leave the observer unchanged.
    auto y = x;
    y[y.size() - 5] = std::numeric_limits<float>::quiet_NaN();
    auto o = make_observer("mse");
    o.observe(x);
    const auto before = o;
    try {
        observe_parallel(o, y, 2);
        FAIL();
    } catch (const numeric_error& e) {
        EXPECT_NE(std::string(e.what()).find("element " + std::to_string(y.size() - 5)), std::string::npos) << e.what();
    }
    EXPECT_EQ(o, before);
}

}  // namespace
