// MixQuant: the per-layer weight bit-width rule (smallest candidate whose weight SQNR reaches the threshold) and its
// properties: monotone in the threshold, never above the largest candidate, the sim left unchanged by the search.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <quantsim/core/error.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/ptq/mixquant.hpp>

#include "ptq_test_util.hpp"

namespace {

using namespace quantsim;
using namespace ptq_test;

// Three convolutions with differently distributed weights: Gaussian, uniform, and Gaussian with a few large
// outliers (what makes low-bit per-tensor quantization fail).
graph three_layers(std::mt19937& rng) {
    graph_builder b;
    auto x = b.input("x", {-1, 4, 6, 6});
    tensor w_out = normal({8, 8, 3, 3}, rng, 0.0f, 0.1f);
    for (int i = 0; i < 4; ++i) w_out.f32()[i * 97] = 2.5f;
    auto c1 = b.node("Conv", {x, b.param("w_gauss", normal({8, 4, 3, 3}, rng, 0.0f, 0.1f))},
                     {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "c1");
    auto c2 = b.node("Conv", {c1, b.param("w_uniform", uniform({8, 8, 3, 3}, rng))},
                     {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "c2");
    b.output(b.node("Conv", {c2, b.param("w_outlier", w_out)}, {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "c3"));
    return b.build();
}

// 6.02 dB per bit for uniform data; averaged over 4..8 bits (below, the grid is too coarse for the uniform-error
// model; single steps of 576 weights are noisy).
constexpr double db_per_bit_tolerance = 0.4;

TEST(mixquant, chooses_the_smallest_bitwidth_reaching_the_threshold) {
    const unsigned seed = 7;
    SCOPED_TRACE("seed=" + std::to_string(seed));
    std::mt19937 rng(seed);
    quant_sim sim(three_layers(rng));
    mixquant_options o;
    o.min_sqnr_db = 25;
    const mixquant_result r = mixquant_search(sim, o);
    ASSERT_EQ(r.layers.size(), 3u);
    EXPECT_EQ(r.bitwidths, (std::vector<int>{2, 3, 4, 5, 6, 7, 8}));
    for (const auto& l : r.layers) {
        SCOPED_TRACE(l.weight);
        ASSERT_EQ(l.sqnr_db.size(), r.bitwidths.size());
        std::size_t k = 0;
        while (r.bitwidths[k] != l.bitwidth) ++k;
        if (l.bitwidth != r.bitwidths.back()) {
            EXPECT_GE(l.sqnr_db[k], o.min_sqnr_db);
        }
        for (std::size_t j = 0; j < k; ++j) EXPECT_LT(l.sqnr_db[j], o.min_sqnr_db);
    }
    // The outlier layer needs more bits than the Gaussian one at the same threshold.
    EXPECT_GT(r.layers[2].bitwidth, r.layers[0].bitwidth);
    // Uniform weights: about 6 dB per bit.
    const auto& u = r.layers[1];
    EXPECT_NEAR((u.sqnr_db[6] - u.sqnr_db[2]) / 4.0, 6.02, db_per_bit_tolerance);
    EXPECT_EQ(r.weight_bits(), 288 * r.layers[0].bitwidth + 576 * r.layers[1].bitwidth + 576 * r.layers[2].bitwidth);
    EXPECT_NE(r.table().find("w_outlier"), std::string::npos);
}

TEST(mixquant, monotone_in_the_threshold_and_never_above_the_largest_candidate) {
    for (unsigned seed : {1u, 2u, 3u}) {
        SCOPED_TRACE("seed=" + std::to_string(seed));
        std::mt19937 rng(seed);
        quant_sim sim(three_layers(rng));
        mixquant_options o;
        o.bitwidths = {8, 3, 4, 6, 4};  // unsorted, duplicated: the search sorts and deduplicates
        std::vector<int> previous(3, 0);
        for (double t = -10; t <= 80; t += 2.5) {
            o.min_sqnr_db = t;
            const auto r = mixquant_search(sim, o);
            ASSERT_EQ(r.bitwidths, (std::vector<int>{3, 4, 6, 8}));
            for (std::size_t i = 0; i < 3; ++i) {
                EXPECT_GE(r.layers[i].bitwidth, previous[i]) << "threshold " << t;
                EXPECT_LE(r.layers[i].bitwidth, 8);
                previous[i] = r.layers[i].bitwidth;
            }
        }
        EXPECT_EQ(previous, (std::vector<int>{8, 8, 8}));  // 80 dB is out of reach at 8 bits
    }
}

TEST(mixquant, leaves_the_sim_unchanged_and_apply_sets_the_bitwidths) {
    std::mt19937 rng(11);
    quant_sim sim(three_layers(rng));
    sim.compute_param_encodings();
    const auto before = sim.encodings();
    const auto bits_before = sim.at("w_gauss").spec.bitwidth;
    const auto r = mixquant_search(sim, {});
    EXPECT_EQ(sim.at("w_gauss").spec.bitwidth, bits_before);
    EXPECT_EQ(write_encodings(sim.encodings(), encodings_version::v1_0_0), write_encodings(before, encodings_version::v1_0_0));
    apply_mixquant(sim, r);
    const encodings_file exported = sim.encodings();
    for (const auto& l : r.layers) {
        auto p = sim.effective_params(l.weight);
        ASSERT_TRUE(p.has_value()) << l.weight;
        EXPECT_EQ(p->bitwidth, l.bitwidth) << l.weight;
        // The exported encodings carry the per-layer bit width.
        const tensor_encoding* e = exported.find(l.weight);
        ASSERT_NE(e, nullptr) << l.weight;
        EXPECT_EQ(e->params.bitwidth, l.bitwidth) << l.weight;
    }
    // The QDQ export holds each weight at its own width (int4 storage from opset 21 for <= 4 bits).
    const graph qdq = sim.qdq_model(21);
    EXPECT_FALSE(qdq.nodes.empty());
}

TEST(mixquant, skips_frozen_and_disabled_weights) {
    std::mt19937 rng(5);
    quant_sim sim(three_layers(rng));
    sim.compute_param_encodings();
    sim.set_encoding("w_gauss", *sim.effective_params("w_gauss"), /*freeze=*/true);
    sim.set_enabled("w_uniform", false);
    const auto r = mixquant_search(sim, {});
    ASSERT_EQ(r.layers.size(), 1u);
    EXPECT_EQ(r.layers[0].weight, "w_outlier");
}

TEST(mixquant, rejects_bad_options) {
    std::mt19937 rng(5);
    quant_sim sim(three_layers(rng));
    mixquant_options o;
    o.bitwidths = {};
    EXPECT_THROW(mixquant_search(sim, o), invalid_argument);
    o.bitwidths = {4, 17};
    EXPECT_THROW(mixquant_search(sim, o), invalid_argument);
    o.bitwidths = {1, 4};
    EXPECT_THROW(mixquant_search(sim, o), invalid_argument);
    o.bitwidths = {4, 8};
    o.min_sqnr_db = std::nan("");
    EXPECT_THROW(mixquant_search(sim, o), invalid_argument);
    mixquant_result bogus;
    bogus.layers.push_back({"no_such_weight", "Conv", 1, 8, 4, {}});
    EXPECT_THROW(apply_mixquant(sim, bogus), invalid_argument);
}

}  // namespace
