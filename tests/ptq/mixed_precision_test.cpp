// Accuracy-driven mixed precision (AMP-style): groups, costs, the three phases and their guarantees, on a small net
// whose "accuracy" is the negative output error against FP32 on fixed data.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <quantsim/core/error.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/ptq/mixed_precision.hpp>

#include "ptq_test_util.hpp"

namespace {

using namespace quantsim;
using namespace ptq_test;

// x -> c1 -> Relu -> {c2a, c2b} -> Add -> GAP -> Flatten -> fc. c2a and c2b read the same quantized value, so they
// form one group.
graph branchy(std::mt19937& rng) {
    graph_builder b;
    auto x = b.input("x", {-1, 3, 8, 8});
    auto pads = std::vector<std::int64_t>{1, 1, 1, 1};
    auto c1 = b.node("Conv", {x, b.param("w1", normal({8, 3, 3, 3}, rng, 0.0f, 0.3f))}, {{"pads", pads}}, "c1");
    auto r1 = b.node("Relu", {c1}, {}, "r1");
    tensor w2a = normal({8, 8, 3, 3}, rng, 0.0f, 0.2f);
    w2a.f32()[5] = 3.0f;  // an outlier: this group suffers most at 4 bits
    auto c2a = b.node("Conv", {r1, b.param("w2a", w2a)}, {{"pads", pads}}, "c2a");
    auto c2b = b.node("Conv", {r1, b.param("w2b", normal({8, 8, 1, 1}, rng, 0.0f, 0.2f))}, {}, "c2b");
    auto add = b.node("Add", {c2a, c2b}, {}, "add");
    auto gap = b.node("GlobalAveragePool", {add}, {}, "gap");
    auto flat = b.node("Flatten", {gap}, {}, "flat");
    b.output(b.node("Gemm", {flat, b.param("wf", normal({5, 8}, rng, 0.0f, 0.5f))}, {{"transB", std::int64_t{1}}}, "fc"));
    return b.build();
}

struct fixture {
    std::mt19937 rng;
    graph g;
    std::vector<std::vector<tensor>> calib;
    tensor eval_x;
    tensor fp32_out;
    explicit fixture(unsigned seed) : rng(seed), g(branchy(rng)) {
        for (int i = 0; i < 3; ++i) calib.push_back({uniform({4, 3, 8, 8}, rng)});
        eval_x = uniform({8, 3, 8, 8}, rng);
        fp32_out = run1(g, eval_x);
    }
    // Higher is better: minus the mean squared output error against FP32.
    mp_eval_fn metric() {
        return [this](quant_sim& sim) {
            const tensor y = sim.forward(eval_x);
            double s = 0;
            for (std::int64_t i = 0; i < y.numel(); ++i) {
                const double d = static_cast<double>(y.f32()[i]) - fp32_out.f32()[i];
                s += d * d;
            }
            return -s / static_cast<double>(y.numel());
        };
    }
};

TEST(mixed_precision, parses_candidates) {
    EXPECT_EQ(parse_mp_candidate("a8w4"), (mp_candidate{8, 4}));
    EXPECT_EQ(parse_mp_candidate("W4A16"), (mp_candidate{16, 4}));
    EXPECT_EQ(parse_mp_candidates("a8w8, a8w4,a16w8").size(), 3u);
    EXPECT_EQ(to_string(mp_candidate{16, 2}), "a16w2");
    for (const char* bad : {"", "a8", "w4", "a8w4x", "a1w4", "a8w17", "b8w4", "a8w4,"})
        EXPECT_THROW(parse_mp_candidates(bad), invalid_argument) << bad;
}

TEST(mixed_precision, counts_macs_per_sample) {
    std::mt19937 rng(1);
    quant_sim sim(branchy(rng));
    const graph& g = sim.model();
    EXPECT_EQ(layer_macs(g, g.nodes[static_cast<std::size_t>(g.find_node("c1"))]), 8 * 8 * 8 * 3 * 3 * 3);
    EXPECT_EQ(layer_macs(g, g.nodes[static_cast<std::size_t>(g.find_node("c2b"))]), 8 * 8 * 8 * 8);
    EXPECT_EQ(layer_macs(g, g.nodes[static_cast<std::size_t>(g.find_node("fc"))]), 5 * 8);
}

TEST(mixed_precision, walks_from_the_least_sensitive_group_and_picks_the_cheapest_point_at_the_target) {
    const unsigned seed = 21;
    SCOPED_TRACE("seed=" + std::to_string(seed));
    fixture f(seed);
    quant_sim sim(f.g);
    mp_search_options o;
    o.candidates = {{8, 8}, {8, 4}, {8, 2}};
    std::size_t progress_calls = 0;
    o.progress = [&](const std::string&, std::size_t, std::size_t) { ++progress_calls; };
    // Allow a fifth of the distance between the baseline and the all-2-bit error.
    quant_sim probe(f.g);
    for (const auto& q : probe.quantizers())
        if (q.kind == quantizer_kind::param && q.param_kind == "weight") probe.set_bitwidth(q.name, 2);
    probe.compute_encodings(f.calib);
    const double worst = f.metric()(probe);
    quant_sim base(f.g);
    base.compute_encodings(f.calib);
    const double best = f.metric()(base);
    ASSERT_LT(worst, best);
    o.allowed_drop = (best - worst) / 5;

    const mp_search_result r = mixed_precision_search(sim, f.calib, f.metric(), o);
    ASSERT_EQ(r.groups.size(), 3u);  // c1, {c2a, c2b}, fc
    EXPECT_EQ(r.groups[1].layers, (std::vector<std::string>{"c2a", "c2b"}));
    EXPECT_EQ(r.base_candidate, 0u);
    EXPECT_DOUBLE_EQ(r.baseline_accuracy, best);
    EXPECT_DOUBLE_EQ(r.reference_accuracy, best);
    EXPECT_EQ(r.evaluations, 1 + 3 * 2 + (r.curve.size() - 1));
    EXPECT_GT(progress_calls, 0u);
    // The walk lowers one group one step at a time: 3 groups x 2 cheaper candidates.
    ASSERT_EQ(r.curve.size(), 7u);
    for (std::size_t i = 1; i < r.curve.size(); ++i) EXPECT_LT(r.curve[i].bitops, r.curve[i - 1].bitops);
    EXPECT_TRUE(r.met_target);
    EXPECT_GE(r.curve[r.chosen].accuracy, r.target_accuracy);
    for (std::size_t i = 0; i < r.curve.size(); ++i)
        if (r.curve[i].accuracy >= r.target_accuracy) {
            EXPECT_GE(r.curve[i].bitops, r.curve[r.chosen].bitops);
        }
    // The sim is left at the chosen point and reproduces its accuracy.
    for (std::size_t gi = 0; gi < r.groups.size(); ++gi)
        for (const auto& w : r.groups[gi].weights)
            EXPECT_EQ(sim.effective_params(w)->bitwidth, r.candidates[r.curve[r.chosen].choice[gi]].param_bitwidth);
    EXPECT_DOUBLE_EQ(f.metric()(sim), r.curve[r.chosen].accuracy);
    // The outlier group is the most sensitive at 2 bits.
    EXPECT_LT(r.sensitivity[1][2], r.sensitivity[0][2]);
    const auto front = r.pareto_front();
    ASSERT_FALSE(front.empty());
    for (std::size_t i = 1; i < front.size(); ++i) {
        EXPECT_GT(front[i].bitops, front[i - 1].bitops);
        EXPECT_GT(front[i].accuracy, front[i - 1].accuracy);
    }
    EXPECT_NE(r.table().find("phase 2"), std::string::npos);
}

TEST(mixed_precision, a_generous_drop_takes_everything_to_the_cheapest_candidate) {
    fixture f(3);
    quant_sim sim(f.g);
    mp_search_options o;
    o.allowed_drop = 1e9;
    const auto r = mixed_precision_search(sim, f.calib, f.metric(), o);
    EXPECT_EQ(r.chosen, r.curve.size() - 1);
    for (std::size_t c : r.curve[r.chosen].choice) EXPECT_EQ(r.candidates[c], (mp_candidate{8, 4}));
}

TEST(mixed_precision, binary_search_meets_the_target_with_fewer_evaluations) {
    fixture f(4);
    quant_sim full_sim(f.g), bin_sim(f.g);
    mp_search_options o;
    o.candidates = {{8, 8}, {8, 4}, {8, 2}};
    o.allowed_drop = 0;
    o.reference_accuracy = -1e-3;
    const auto full = mixed_precision_search(full_sim, f.calib, f.metric(), o);
    o.full_curve = false;
    const auto bin = mixed_precision_search(bin_sim, f.calib, f.metric(), o);
    EXPECT_LT(bin.evaluations, full.evaluations);
    EXPECT_EQ(bin.met_target, full.met_target);
    if (bin.met_target) {
        EXPECT_GE(bin.curve[bin.chosen].accuracy, bin.target_accuracy);
    }
}

TEST(mixed_precision, activation_candidates_recalibrate_and_uncalibrated_reuse_is_an_error) {
    fixture f(8);
    quant_sim sim(f.g);
    mp_search_options o;
    o.candidates = {{16, 8}, {8, 8}, {8, 4}};
    o.allowed_drop = 1e9;
    const auto r = mixed_precision_search(sim, f.calib, f.metric(), o);
    EXPECT_EQ(r.candidates[r.base_candidate], (mp_candidate{16, 8}));
    // Every group ends at a8w4; its input activation quantizer carries 8 bits.
    for (std::size_t gi = 0; gi < r.groups.size(); ++gi)
        if (!r.groups[gi].activation.empty()) {
            EXPECT_EQ(sim.effective_params(r.groups[gi].activation)->bitwidth, 8);
        }
    quant_sim fresh(f.g);
    EXPECT_THROW(mixed_precision_search(fresh, {}, f.metric(), o), calibration_error);
}

TEST(mixed_precision, rejects_bad_options) {
    fixture f(9);
    quant_sim sim(f.g);
    mp_search_options o;
    o.candidates = {{8, 8}};
    EXPECT_THROW(mixed_precision_search(sim, f.calib, f.metric(), o), invalid_argument);
    o.candidates = {{8, 8}, {8, 8}};
    EXPECT_THROW(mixed_precision_search(sim, f.calib, f.metric(), o), invalid_argument);
    o.candidates = {{8, 8}, {8, 4}};
    o.allowed_drop = -1;
    EXPECT_THROW(mixed_precision_search(sim, f.calib, f.metric(), o), invalid_argument);
    o.allowed_drop = 0.01;
    EXPECT_THROW(mixed_precision_search(sim, f.calib, mp_eval_fn{}, o), invalid_argument);
    EXPECT_THROW(mixed_precision_search(sim, f.calib, [](quant_sim&) { return std::nan(""); }, o), numeric_error);
}

}  // namespace
