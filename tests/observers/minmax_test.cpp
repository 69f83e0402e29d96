// Min-max family: running bounds, moving average (torch semantics; merge = concatenation), per-channel along any
// axis (checked against a per-channel loop), and error behaviour.
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include <quantsim/quant/observers.hpp>

#include "observer_test_util.hpp"

namespace {

using namespace quantsim;

/// Merged EMA vs sequential EMA: equal in real arithmetic, float rounding apart (relative).
constexpr double ema_merge_tolerance = 1e-5;

TEST(MinMaxObserver, TracksBoundsAcrossBatches) {
    minmax_observer o;
    EXPECT_TRUE(o.empty());
    o.observe(std::vector<float>{1.0f, 2.0f});
    o.observe(std::vector<float>{-3.0f, 0.5f});
    o.observe(std::vector<float>{});
    EXPECT_FALSE(o.empty());
    EXPECT_EQ(o.observed_range(), (value_range{-3.0, 2.0}));
    const auto e = o.compute(qtest::spec(8, qscheme::asymmetric));
    qtest::expect_same_encoding(e, encoding_from_range(-3.0, 2.0, qtest::spec(8, qscheme::asymmetric)));
    o.reset();
    EXPECT_TRUE(o.empty());
}

TEST(MinMaxObserver, ErrorsNameTheProblem) {
    minmax_observer o("conv1.output");
    try {
        (void)o.compute({});
        FAIL();
    } catch (const calibration_error& e) {
        EXPECT_NE(std::string(e.what()).find("conv1.output"), std::string::npos) << e.what();
    }
    std::vector<float> x(100, 1.0f);
    x[37] = -std::numeric_limits<float>::infinity();
    o.observe(std::vector<float>{0.5f});
    try {
        o.observe(x);
        FAIL();
    } catch (const numeric_error& e) {
        EXPECT_NE(std::string(e.what()).find("element 37"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("-Inf"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("conv1.output"), std::string::npos) << e.what();
    }
    EXPECT_EQ(o.observed_range(), (value_range{0.5, 0.5}));  // unchanged
    const auto t = tensor::from(std::vector<float>{1, 2, std::nanf(""), 4}, {2, 2});
    try {
        o.observe(t);
        FAIL();
    } catch (const numeric_error& e) {
        EXPECT_NE(std::string(e.what()).find("element 2 of tensor [2, 2]"), std::string::npos) << e.what();
    }
    EXPECT_THROW(o.observe(tensor::zeros({3}, dtype::int32)), invalid_argument);
    EXPECT_THROW(o.observe_range(2.0f, 1.0f), invalid_argument);
    EXPECT_THROW(o.observe_range(0.0f, std::numeric_limits<float>::infinity()), numeric_error);
}

TEST(MinMaxObserver, MergeIsExact) {
    const std::uint32_t seed = qtest::default_seed + 10;
    SCOPED_TRACE(qtest::seed_trace(seed));
    const auto x = qtest::normal(5000, seed, 1, 4);
    minmax_observer all, a, b;
    all.observe(x);
    a.observe(std::span<const float>(x.data(), 1234));
    b.observe(std::span<const float>(x.data() + 1234, x.size() - 1234));
    a.merge(b);
    EXPECT_EQ(a, all);
    for (const auto& s : qtest::all_specs(8)) qtest::expect_same_encoding(a.compute(s), all.compute(s));
}

std::vector<std::vector<float>> drifting_batches(std::size_t count, std::uint32_t seed) {
    std::vector<std::vector<float>> v;
    for (std::size_t i = 0; i < count; ++i)
        v.push_back(qtest::normal(64, seed + static_cast<std::uint32_t>(i), 0.1f * i, 1.0f + 0.2f * i));
    return v;
}

TEST(MovingAverageObserver, FollowsTorchRecurrence) {
    moving_average_observer o(0.25);
    o.observe(std::vector<float>{-1.0f, 3.0f});
    EXPECT_EQ(o.observed_range(), (value_range{-1.0, 3.0}));
    o.observe(std::vector<float>{-5.0f, 7.0f});
    EXPECT_EQ(o.observed_range(), (value_range{-2.0, 4.0}));
    EXPECT_EQ(o.batches(), 2u);
    EXPECT_THROW(moving_average_observer(0.0), invalid_argument);
    EXPECT_THROW(moving_average_observer(1.5), invalid_argument);
}

TEST(MovingAverageObserver, MergeIsConcatenation) {
    const std::uint32_t seed = qtest::default_seed + 11;
    SCOPED_TRACE(qtest::seed_trace(seed));
    const auto batches = drifting_batches(23, seed);
    for (double c : {0.01, 0.1, 0.5, 1.0}) {
        moving_average_observer all(c);
        for (const auto& b : batches) all.observe(b);
        for (std::size_t split : {1u, 7u, 22u}) {
            moving_average_observer a(c), b(c);
            for (std::size_t i = 0; i < split; ++i) a.observe(batches[i]);
            for (std::size_t i = split; i < batches.size(); ++i) b.observe(batches[i]);
            a.merge(b);
            EXPECT_EQ(a.batches(), all.batches());
            const auto ra = a.observed_range(), rall = all.observed_range();
            EXPECT_NEAR(ra.min, rall.min, ema_merge_tolerance * std::fabs(rall.min)) << "c " << c << " split " << split;
            EXPECT_NEAR(ra.max, rall.max, ema_merge_tolerance * std::fabs(rall.max)) << "c " << c << " split " << split;
        }
        // Three-way, associative: (a b) c == a (b c) up to rounding.
        moving_average_observer p(c), q(c), r(c);
        for (std::size_t i = 0; i < 5; ++i) p.observe(batches[i]);
        for (std::size_t i = 5; i < 12; ++i) q.observe(batches[i]);
        for (std::size_t i = 12; i < batches.size(); ++i) r.observe(batches[i]);
        auto left = p;
        left.merge(q);
        left.merge(r);
        auto qr = q;
        qr.merge(r);
        auto right = p;
        right.merge(qr);
        EXPECT_NEAR(left.observed_range().max, all.observed_range().max,
                    ema_merge_tolerance * std::fabs(all.observed_range().max));
        EXPECT_NEAR(right.observed_range().max, all.observed_range().max,
                    ema_merge_tolerance * std::fabs(all.observed_range().max));
        EXPECT_NEAR(right.observed_range().min, all.observed_range().min,
                    ema_merge_tolerance * std::fabs(all.observed_range().min));
    }
    // Merging with an empty observer is the identity; different constants do not merge.
    moving_average_observer a(0.1), e(0.1);
    a.observe(batches[0]);
    auto copy = a;
    a.merge(e);
    EXPECT_EQ(a, copy);
    e.merge(a);
    EXPECT_EQ(e, copy);
    moving_average_observer other(0.2);
    EXPECT_THROW(a.merge(other), invalid_argument);
}

// Per-channel observers against per-tensor observers run on each channel's extracted values.
std::vector<float> channel_values(const std::vector<float>& x, const shape_t& shape, int axis, std::int64_t c) {
    const auto l = detail::layout_around(shape, axis);
    std::vector<float> v;
    for (std::int64_t o = 0; o < l.outer; ++o)
        for (std::int64_t i = 0; i < l.inner; ++i)
            v.push_back(x[static_cast<std::size_t>((o * l.channels + c) * l.inner + i)]);
    return v;
}

TEST(PerChannelMinMaxObserver, MatchesPerChannelLoopOnAnyAxis) {
    const std::uint32_t seed = qtest::default_seed + 12;
    SCOPED_TRACE(qtest::seed_trace(seed));
    for (const shape_t& shape : {shape_t{6, 5}, shape_t{4, 3, 5}, shape_t{2, 3, 4, 20}, shape_t{7}}) {
        const auto x = qtest::normal(static_cast<std::size_t>(checked_numel(shape)), seed, 0, 3);
        for (int axis = -static_cast<int>(shape.size()); axis < static_cast<int>(shape.size()); ++axis) {
            const int a = axis < 0 ? axis + static_cast<int>(shape.size()) : axis;
            SCOPED_TRACE("shape " + to_string(shape) + " axis " + std::to_string(axis));
            per_channel_minmax_observer o(axis);
            o.observe(tensor::from(x, shape));
            o.observe(tensor::from(x, shape));  // again: same bounds
            const auto spec = qtest::spec(8, qscheme::symmetric);
            const quant_params p = o.compute(spec);
            ASSERT_EQ(static_cast<std::int64_t>(p.size()), shape[static_cast<std::size_t>(a)]);
            EXPECT_EQ(p.gran.axis, a);
            for (std::int64_t c = 0; c < shape[static_cast<std::size_t>(a)]; ++c) {
                minmax_observer ref;
                ref.observe(channel_values(x, shape, a, c));
                const auto e = ref.compute(spec);
                EXPECT_EQ(p.scale[static_cast<std::size_t>(c)], e.scale) << "channel " << c;
                EXPECT_EQ(p.zero_point[static_cast<std::size_t>(c)], e.zero_point) << "channel " << c;
            }
        }
    }
}

TEST(PerChannelMinMaxObserver, MergeAndErrors) {
    const auto x = qtest::normal(60, 13);
    const auto y = qtest::normal(60, 14, 1, 5);
    per_channel_minmax_observer all(1), a(1), b(1);
    all.observe(x, {4, 15});
    all.observe(y, {4, 15});
    a.observe(x, {4, 15});
    b.observe(y, {4, 15});
    a.merge(b);
    EXPECT_EQ(a, all);
    EXPECT_THROW(a.observe(x, {15, 4}), shape_error);                                    // 4 channels now
    EXPECT_THROW(a.observe(x, {4, 16}), shape_error);                                    // size mismatch
    EXPECT_THROW(per_channel_minmax_observer(2).observe(x, {4, 15}), invalid_argument);  // bad axis
    per_channel_minmax_observer c(0);
    EXPECT_THROW(a.merge(c), invalid_argument);  // axis differs
    per_channel_minmax_observer d(1);
    d.observe(x, {6, 10});
    EXPECT_THROW(a.merge(d), invalid_argument);  // channel count differs
    EXPECT_THROW((void)per_channel_minmax_observer(0).compute({}), calibration_error);
    // Unsigned symmetric: one grid for all channels, unsigned only if every channel is non-negative.
    per_channel_minmax_observer pos(0), mixed(0);
    pos.observe(std::vector<float>{0, 1, 2, 3}, {2, 2});
    mixed.observe(std::vector<float>{0, 1, -2, 3}, {2, 2});
    const auto us = qtest::spec(8, qscheme::symmetric, false, true);
    EXPECT_EQ(pos.compute(us).scheme, qscheme::symmetric_unsigned);
    EXPECT_EQ(mixed.compute(us).scheme, qscheme::symmetric);
}

TEST(PerChannelMovingAverageObserver, MatchesPerChannelLoopAndMerges) {
    const std::uint32_t seed = qtest::default_seed + 15;
    SCOPED_TRACE(qtest::seed_trace(seed));
    const shape_t shape{3, 4, 5};
    std::vector<std::vector<float>> batches;
    for (std::uint32_t i = 0; i < 9; ++i) batches.push_back(qtest::normal(60, seed + i, 0.1f * i, 1 + 0.3f * i));
    per_channel_moving_average_observer o(1, 0.1);
    for (const auto& b : batches) o.observe(b, shape);
    const auto ranges = o.observed_ranges();
    for (std::int64_t c = 0; c < 4; ++c) {
        moving_average_observer ref(0.1);
        for (const auto& b : batches) ref.observe(channel_values(b, shape, 1, c));
        EXPECT_EQ(ranges[static_cast<std::size_t>(c)], ref.observed_range()) << "channel " << c;
    }
    per_channel_moving_average_observer a(1, 0.1), b(1, 0.1);
    for (std::size_t i = 0; i < 4; ++i) a.observe(batches[i], shape);
    for (std::size_t i = 4; i < batches.size(); ++i) b.observe(batches[i], shape);
    a.merge(b);
    const auto merged = a.observed_ranges();
    for (std::size_t c = 0; c < 4; ++c) {
        EXPECT_NEAR(merged[c].min, ranges[c].min, ema_merge_tolerance * std::fabs(ranges[c].min));
        EXPECT_NEAR(merged[c].max, ranges[c].max, ema_merge_tolerance * std::fabs(ranges[c].max));
    }
}

}  // namespace
