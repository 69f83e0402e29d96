// PyTorch parity: our min-max observers + encoding_from_range(range_convention::pytorch) must reproduce torch's
// MinMaxObserver / PerChannelMinMaxObserver / MovingAverage(PerChannel)MinMaxObserver qparams bit for bit.
// Vectors: tests/golden/observer_golden.json from tests/golden/make_observer_golden.py (torch 1.13).
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <quantsim/quant/observers.hpp>

#include "observer_test_util.hpp"

namespace {

using namespace quantsim;
using nlohmann::json;

json load_golden() {
    const std::string path = std::string(QUANTSIM_SOURCE_DIR) + "/tests/golden/observer_golden.json";
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot open " + path);
    return json::parse(f);
}

const json& golden() {
    static const json j = load_golden();
    return j;
}

std::vector<float> floats(const json& a) {
    std::vector<float> v;
    for (const auto& x : a) v.push_back(static_cast<float>(x.get<double>()));
    return v;
}

/// torch dtype + qscheme -> our spec. torch quint8 symmetric is our signed symmetric grid shifted by 128.
struct torch_case {
    quant_spec spec;
    std::int32_t zp_shift = 0;
};
torch_case case_of(const json& c) {
    torch_case t;
    t.spec.bitwidth = 8;
    t.spec.convention = range_convention::pytorch;
    const bool sym = c.at("qscheme") == "symmetric";
    const bool quint8 = c.at("dtype") == "quint8";
    t.spec.scheme = sym ? qscheme::symmetric : qscheme::asymmetric;
    t.spec.is_signed = !quint8;
    if (sym && quint8) t.zp_shift = 128;
    return t;
}

TEST(ObserverGolden, MinMaxMatchesTorch) {
    ASSERT_FALSE(golden().at("per_tensor").empty());
    for (const auto& entry : golden().at("per_tensor")) {
        const auto x = floats(entry.at("data"));
        minmax_observer o;
        o.observe(x);
        for (const auto& c : entry.at("cases")) {
            SCOPED_TRACE(entry.at("name").get<std::string>() + " " + c.at("dtype").get<std::string>() + " " +
                         c.at("qscheme").get<std::string>());
            EXPECT_EQ(o.observed_range().min, static_cast<float>(c.at("min").get<double>()));
            EXPECT_EQ(o.observed_range().max, static_cast<float>(c.at("max").get<double>()));
            const auto tc = case_of(c);
            const encoding e = o.compute(tc.spec);
            EXPECT_EQ(e.scale, static_cast<float>(c.at("scale").get<double>()));
            EXPECT_EQ(e.zero_point + tc.zp_shift, c.at("zero_point").get<int>());
        }
    }
}

TEST(ObserverGolden, PerChannelMinMaxMatchesTorch) {
    ASSERT_FALSE(golden().at("per_channel").empty());
    for (const auto& entry : golden().at("per_channel")) {
        const auto x = floats(entry.at("data"));
        const auto shape = entry.at("shape").get<shape_t>();
        const int axis = entry.at("axis").get<int>();
        per_channel_minmax_observer o(axis);
        o.observe(tensor::from(x, shape));
        for (const auto& c : entry.at("cases")) {
            SCOPED_TRACE(entry.at("name").get<std::string>() + " " + c.at("dtype").get<std::string>() + " " +
                         c.at("qscheme").get<std::string>());
            const auto tc = case_of(c);
            const quant_params p = o.compute(tc.spec);
            const auto scales = floats(c.at("scale"));
            const auto zps = c.at("zero_point").get<std::vector<int>>();
            ASSERT_EQ(p.size(), scales.size());
            EXPECT_EQ(p.gran.kind, granularity_kind::per_channel);
            EXPECT_EQ(p.gran.axis, axis);
            for (std::size_t i = 0; i < scales.size(); ++i) {
                EXPECT_EQ(p.scale[i], scales[i]) << "channel " << i;
                EXPECT_EQ(p.zero_point[i] + tc.zp_shift, zps[i]) << "channel " << i;
            }
        }
    }
}

TEST(ObserverGolden, MovingAverageMatchesTorch) {
    ASSERT_FALSE(golden().at("moving_average").empty());
    for (const auto& entry : golden().at("moving_average")) {
        moving_average_observer o(entry.at("averaging_constant").get<double>());
        for (const auto& b : entry.at("batches")) o.observe(floats(b));
        for (const auto& c : entry.at("cases")) {
            SCOPED_TRACE(entry.at("name").get<std::string>() + " " + c.at("dtype").get<std::string>() + " " +
                         c.at("qscheme").get<std::string>());
            EXPECT_EQ(static_cast<float>(o.observed_range().min), static_cast<float>(c.at("min").get<double>()));
            EXPECT_EQ(static_cast<float>(o.observed_range().max), static_cast<float>(c.at("max").get<double>()));
            const auto tc = case_of(c);
            const encoding e = o.compute(tc.spec);
            EXPECT_EQ(e.scale, static_cast<float>(c.at("scale").get<double>()));
            EXPECT_EQ(e.zero_point + tc.zp_shift, c.at("zero_point").get<int>());
        }
    }
}

TEST(ObserverGolden, PerChannelMovingAverageMatchesTorch) {
    ASSERT_FALSE(golden().at("moving_average_per_channel").empty());
    for (const auto& entry : golden().at("moving_average_per_channel")) {
        const auto shape = entry.at("shape").get<shape_t>();
        per_channel_moving_average_observer o(entry.at("axis").get<int>(),
                                              entry.at("averaging_constant").get<double>());
        for (const auto& b : entry.at("batches")) o.observe(tensor::from(floats(b), shape));
        for (const auto& c : entry.at("cases")) {
            SCOPED_TRACE(entry.at("name").get<std::string>() + " " + c.at("dtype").get<std::string>() + " " +
                         c.at("qscheme").get<std::string>());
            const auto tc = case_of(c);
            const quant_params p = o.compute(tc.spec);
            const auto scales = floats(c.at("scale"));
            const auto zps = c.at("zero_point").get<std::vector<int>>();
            ASSERT_EQ(p.size(), scales.size());
            for (std::size_t i = 0; i < scales.size(); ++i) {
                EXPECT_EQ(p.scale[i], scales[i]) << "channel " << i;
                EXPECT_EQ(p.zero_point[i] + tc.zp_shift, zps[i]) << "channel " << i;
            }
        }
    }
}

}  // namespace
