// Cross-layer equalization: FP32 function preserved, equalized ranges, triplets, SE blocks, ReLU6 and hardswish
// policies, high-bias folding, a real model; and the figures on the text-orientation classifier (docs/ptq.md).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/ptq/add_bias.hpp>
#include <quantsim/ptq/batch_norm_fold.hpp>
#include <quantsim/ptq/bias_correction.hpp>
#include <quantsim/ptq/cross_layer_equalization.hpp>
#include <quantsim/sim/quantsim.hpp>

#include "ptq_test_util.hpp"

using namespace quantsim;
using ptq_test::max_abs;
using ptq_test::max_abs_diff;
using ptq_test::run1;
using ptq_test::uniform;

namespace {

constexpr double kCleTol = 1e-4;      // output change relative to the output magnitude (the bound)
constexpr double kRangeTol = 1e-5;    // relative mismatch of equalized per-channel ranges
constexpr double kHbfMeanTol = 2e-3;  // mean output change after high-bias folding, relative to the output magnitude

const tensor& weight_of(const graph& g, const std::string& node_name) {
    return g.params.at(g.nodes[static_cast<std::size_t>(g.find_node(node_name))].inputs[1]);
}
std::vector<double> out_range(const tensor& w) {
    std::vector<double> r(static_cast<std::size_t>(w.dim(0)), 0.0);
    const std::int64_t block = w.numel() / w.dim(0);
    for (std::int64_t o = 0; o < w.dim(0); ++o)
        for (std::int64_t e = 0; e < block; ++e)
            r[static_cast<std::size_t>(o)] = std::max(r[static_cast<std::size_t>(o)], double(std::fabs(w.f32()[o * block + e])));
    return r;
}
std::vector<double> in_range(const tensor& w) {
    const std::int64_t m = w.dim(0), c = w.dim(1), k = w.numel() / (m * c);
    std::vector<double> r(static_cast<std::size_t>(c), 0.0);
    for (std::int64_t o = 0; o < m; ++o)
        for (std::int64_t i = 0; i < c; ++i)
            for (std::int64_t e = 0; e < k; ++e)
                r[static_cast<std::size_t>(i)] = std::max(r[static_cast<std::size_t>(i)], double(std::fabs(w.f32()[(o * c + i) * k + e])));
    return r;
}
void expect_equal_ranges(const std::vector<double>& a, const std::vector<double>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], kRangeTol * std::max(a[i], b[i])) << "channel " << i;
}
tensor spread_weight(shape_t s, std::mt19937& rng, float spread) {
    tensor w = uniform(std::move(s), rng);
    ptq_test::spread_channels(w, rng, spread);
    return w;
}
void expect_unchanged(const graph& g0, const graph& g, const tensor& x) {
    const tensor y0 = run1(g0, x), y1 = run1(g, x);
    EXPECT_LE(max_abs_diff(y0, y1), kCleTol * max_abs(y0));
}

}  // namespace

TEST(CrossLayerEqualization, PairConvReluConvKeepsOutputsAndEqualizesRanges) {
    const std::uint32_t seed = 11;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    graph_builder b;
    auto x = b.input("x", {-1, 3, 8, 8});
    auto c1 = b.node("Conv", {x, b.param("w1", spread_weight({8, 3, 3, 3}, rng, 3.0f)), b.param("b1", uniform({8}, rng))},
                     {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "conv1");
    auto r = b.node("Relu", {c1}, {}, "relu");
    b.output(b.node("Conv", {r, b.param("w2", uniform({5, 8, 3, 3}, rng)), b.param("b2", uniform({5}, rng))}, {}, "conv2"));
    graph g0 = b.build();
    graph g = g0;
    auto rep = equalize_cross_layer(g);
    EXPECT_EQ(rep.pairs, 1u);
    EXPECT_EQ(rep.triplets, 0u);
    expect_equal_ranges(out_range(weight_of(g, "conv1")), in_range(weight_of(g, "conv2")));
    // The ranges moved: before, they were far apart.
    const auto before1 = out_range(weight_of(g0, "conv1"));
    const auto after1 = out_range(weight_of(g, "conv1"));
    double moved = 0;
    for (std::size_t i = 0; i < before1.size(); ++i) moved = std::max(moved, std::fabs(std::log(after1[i] / before1[i])));
    EXPECT_GT(moved, 0.5);
    expect_unchanged(g0, g, uniform({2, 3, 8, 8}, rng));
}

TEST(CrossLayerEqualization, TripletThroughDepthwiseEqualizesAllThreeByCubeRoots) {
    const std::uint32_t seed = 12;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    graph_builder b;
    auto x = b.input("x", {-1, 4, 9, 9});
    auto c1 = b.node("Conv", {x, b.param("w1", spread_weight({6, 4, 1, 1}, rng, 2.0f)), b.param("b1", uniform({6}, rng))}, {}, "conv1");
    auto r1 = b.node("Relu", {c1}, {}, "relu1");
    auto dw = b.node("Conv", {r1, b.param("w2", spread_weight({6, 1, 3, 3}, rng, 2.0f)), b.param("b2", uniform({6}, rng))},
                     {{"group", std::int64_t{6}}, {"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "dw");
    auto r2 = b.node("Relu", {dw}, {}, "relu2");
    b.output(b.node("Conv", {r2, b.param("w3", uniform({5, 6, 1, 1}, rng))}, {}, "conv3"));
    graph g0 = b.build();
    graph g = g0;
    auto rep = equalize_cross_layer(g);
    EXPECT_EQ(rep.triplets, 1u);
    EXPECT_EQ(rep.pairs, 0u);
    const auto a = out_range(weight_of(g, "conv1")), m = out_range(weight_of(g, "dw")), c = in_range(weight_of(g, "conv3"));
    expect_equal_ranges(a, m);
    expect_equal_ranges(m, c);
    expect_unchanged(g0, g, uniform({2, 4, 9, 9}, rng));
}

TEST(CrossLayerEqualization, SqueezeExcitationIsEqualizedThroughExactly) {
    const std::uint32_t seed = 13;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    auto build = [&](std::mt19937 r) {
        graph_builder b;
        auto x = b.input("x", {-1, 4, 6, 6});
        auto c1 = b.node("Conv", {x, b.param("w1", spread_weight({8, 4, 1, 1}, r, 2.0f)), b.param("b1", uniform({8}, r))}, {}, "conv1");
        auto a1 = b.node("Relu", {c1}, {}, "relu1");
        auto dw = b.node("Conv", {a1, b.param("w2", spread_weight({8, 1, 3, 3}, r, 2.0f))},
                         {{"group", std::int64_t{8}}, {"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "dw");
        auto a2 = b.node("Relu", {dw}, {}, "relu2");
        auto p = b.node("GlobalAveragePool", {a2}, {}, "se_pool");
        auto s1 = b.node("Conv", {p, b.param("ws1", uniform({2, 8, 1, 1}, r)), b.param("bs1", uniform({2}, r))}, {}, "se_conv1");
        auto s2 = b.node("Relu", {s1}, {}, "se_relu");
        auto s3 = b.node("Conv", {s2, b.param("ws2", uniform({8, 2, 1, 1}, r)), b.param("bs2", uniform({8}, r))}, {}, "se_conv2");
        auto s4 = b.node("HardSigmoid", {s3}, {{"alpha", 0.2f}, {"beta", 0.5f}}, "se_gate");
        auto m = b.node("Mul", {a2, s4}, {}, "se_mul");
        b.output(b.node("Conv", {m, b.param("w3", uniform({5, 8, 1, 1}, r))}, {}, "conv3"));
        return b.build();
    };
    graph g0 = build(rng);
    graph g = g0;
    auto rep = equalize_cross_layer(g);
    EXPECT_EQ(rep.triplets, 1u);
    EXPECT_GE(rep.pairs, 0u);
    expect_unchanged(g0, g, uniform({2, 4, 6, 6}, rng));
    // Switched off, the SE chain is skipped and says why.
    graph h = g0;
    cle_options o;
    o.through_squeeze_excitation = false;
    auto rep2 = equalize_cross_layer(h, o);
    EXPECT_EQ(rep2.triplets, 0u);
    bool logged = false;
    for (const auto& l : rep2.log) logged = logged || l.find("squeeze-excitation") != std::string::npos;
    EXPECT_TRUE(logged);
}

TEST(CrossLayerEqualization, Relu6BecomesReluOnlyInsideChainsAndHardswishFollowsThePolicy) {
    const std::uint32_t seed = 14;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    graph_builder b;
    auto x = b.input("x", {-1, 3, 5, 5});
    auto c1 = b.node("Conv", {x, b.param("w1", spread_weight({4, 3, 1, 1}, rng, 2.0f))}, {}, "conv1");
    auto r6 = b.node("Clip", {c1, b.constant_scalar(0.0f), b.constant_scalar(6.0f)}, {}, "relu6");
    auto c2 = b.node("Conv", {r6, b.param("w2", spread_weight({4, 4, 1, 1}, rng, 2.0f))}, {}, "conv2");
    // hardswish as the opset-9 classifier writes it: x * clip(x + 3, 0, 6) / 6
    auto h1 = b.node("Add", {c2, b.constant_scalar(3.0f)}, {}, "hs_add");
    auto h2 = b.node("Clip", {h1, b.constant_scalar(0.0f), b.constant_scalar(6.0f)}, {}, "hs_clip");
    auto h3 = b.node("Mul", {c2, h2}, {}, "hs_mul");
    auto h4 = b.node("Div", {h3, b.constant_scalar(6.0f)}, {}, "hs_div");
    b.output(b.node("Conv", {h4, b.param("w3", uniform({2, 4, 1, 1}, rng))}, {}, "conv3"));
    graph g0 = b.build();
    {
        graph g = g0;
        auto rep = equalize_cross_layer(g);
        EXPECT_EQ(rep.pairs, 1u);  // conv1-conv2; conv2-conv3 is behind hardswish
        EXPECT_EQ(rep.relu6_replaced, 1u);
        EXPECT_EQ(g.nodes[static_cast<std::size_t>(g.find_node("relu6"))].op_type, "Relu");
        EXPECT_EQ(g.nodes[static_cast<std::size_t>(g.find_node("hs_clip"))].op_type, "Clip");  // hardswish intact
        bool logged = false;
        for (const auto& l : rep.log) logged = logged || l.find("hardswish") != std::string::npos;
        EXPECT_TRUE(logged);
        // Inputs small enough that ReLU6 never clips: ReLU6 -> ReLU is exact there.
        expect_unchanged(g0, g, uniform({2, 3, 5, 5}, rng, -0.3f, 0.3f));
    }
    {
        graph g = g0;
        cle_options o;
        o.relu6_to_relu = false;
        o.hardswish = hardswish_policy::equalize;
        auto rep = equalize_cross_layer(g, o);
        EXPECT_EQ(rep.pairs, 1u);  // conv2-conv3 now; conv1-conv2 skipped (ReLU6 kept)
        EXPECT_EQ(rep.relu6_replaced, 0u);
        expect_equal_ranges(out_range(weight_of(g, "conv2")), in_range(weight_of(g, "conv3")));
    }
}

TEST(CrossLayerEqualization, HighBiasFoldingKeepsOutputsOnDataObeyingTheBnStats) {
    const std::uint32_t seed = 15;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    constexpr std::int64_t C = 6;
    // conv1 = diag(d): on N(0, 1) inputs its output channel c is N(0, d_c^2); the BN's statistics say exactly that,
    // so the BN output is N(beta, gamma^2) as high-bias folding assumes. Betas are large: much bias to absorb.
    tensor w1 = tensor::zeros({C, C, 1, 1}), gamma = uniform({C}, rng, 0.2f, 0.6f), beta = uniform({C}, rng, 2.0f, 5.0f),
           mean = tensor::zeros({C}), var = tensor::empty({C});
    for (std::int64_t c = 0; c < C; ++c) {
        const float d = std::exp(uniform({1}, rng, -1.5f, 1.5f).f32()[0]);
        w1.f32()[c * C + c] = d;
        var.f32()[c] = d * d - 1e-5f;
    }
    graph_builder b;
    auto x = b.input("x", {-1, C, 6, 6});
    auto c1 = b.node("Conv", {x, b.param("w1", w1)}, {}, "conv1");
    auto bn = b.node("BatchNormalization", {c1, b.param("g", gamma), b.param("be", beta), b.param("m", mean), b.param("v", var)},
                     {}, node_options("bn").outputs({"bn.out"}));
    auto r = b.node("Relu", {bn}, {}, "relu");
    b.output(b.node("Conv", {r, b.param("w2", uniform({4, C, 1, 1}, rng))}, {}, "conv2"));
    graph g0 = b.build();
    graph g = g0;
    auto folds = fold_batch_norms(g);
    ASSERT_EQ(folds.backward, 1u);
    auto stats = folds.stats;
    auto rep = equalize_cross_layer(g, {}, &stats);
    EXPECT_EQ(rep.pairs, 1u);
    EXPECT_EQ(rep.high_bias_folded, 1u);
    // conv1's bias lost c = beta - 3|gamma| (in equalized units); the stats follow.
    const auto& st = stats.at("bn.out");
    const tensor& b1 = g.params.at(g.nodes[static_cast<std::size_t>(g.producer("bn.out"))].inputs[2]);
    for (std::int64_t c = 0; c < C; ++c) {
        EXPECT_NEAR(st.mean[static_cast<std::size_t>(c)], b1.f32()[c], 1e-4);
        EXPECT_NEAR(st.mean[static_cast<std::size_t>(c)], 3.0f * st.stddev[static_cast<std::size_t>(c)], 1e-3);
    }
    const tensor in = ptq_test::normal({8, C, 6, 6}, rng);
    const tensor y0 = run1(g0, in), y1 = run1(g, in);
    double mean_diff = 0;
    for (std::int64_t i = 0; i < y0.numel(); ++i) mean_diff += std::fabs(y0.f32()[i] - y1.f32()[i]);
    mean_diff /= double(y0.numel());
    EXPECT_LE(mean_diff, kHbfMeanTol * max_abs(y0));
    // Without statistics nothing is folded.
    graph h = g0;
    fold_batch_norms(h);
    EXPECT_EQ(equalize_cross_layer(h).high_bias_folded, 0u);
}

TEST(CrossLayerEqualization, SharedWeightIsCopiedNotScaledInPlace) {
    std::mt19937 rng(16);
    const tensor w = spread_weight({4, 4, 1, 1}, rng, 2.0f), w_copy = w.clone();
    graph_builder b;
    auto x = b.input("x", {-1, 4, 3, 3});
    auto wr = b.param("shared", w);
    auto c1 = b.node("Conv", {x, wr}, {}, "conv1");
    auto r = b.node("Relu", {c1}, {}, "relu");
    auto c2 = b.node("Conv", {r, b.param("w2", uniform({4, 4, 1, 1}, rng))}, {}, "conv2");
    auto c3 = b.node("Conv", {x, wr}, {}, "conv3");
    b.output(b.node("Add", {c2, c3}, {}, "add"));
    graph g0 = b.build();
    graph g = g0;
    EXPECT_EQ(equalize_cross_layer(g).pairs, 1u);
    EXPECT_EQ(max_abs_diff(w, w_copy), 0.0);
    EXPECT_EQ(max_abs_diff(g.params.at("shared"), w_copy), 0.0);
    expect_unchanged(g0, g, uniform({2, 4, 3, 3}, rng));
}

TEST(CrossLayerEqualization, RejectsBadOptions) {
    graph g;
    cle_options o;
    o.iterations = 0;
    EXPECT_THROW(equalize_cross_layer(g, o), invalid_argument);
}

TEST(CrossLayerEqualization, TorchvisionMobileNetV2KeepsItsOutputs) {
    const std::filesystem::path path = std::filesystem::path(QUANTSIM_SOURCE_DIR) / ".data/models/mobilenet_v2.onnx";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not present";
    graph g0 = load_onnx(path);
    // ReLU6 -> ReLU is a deliberate change of the model; the reference has it too, so only the rescaling is compared.
    for (auto& n : g0.nodes)
        if (n.op_type == "Clip") {
            n.op_type = "Relu";
            n.inputs.resize(1);
        }
    g0.prune_unused_params();
    fold_batch_norms(g0);
    graph g = g0;
    cle_options o;
    o.high_bias_fold = false;
    o.iterations = 2;
    auto rep = equalize_cross_layer(g, o);
    EXPECT_GT(rep.pairs + rep.triplets, 10u);
    std::printf("mobilenet_v2: %zu pairs, %zu triplets\n", rep.pairs, rep.triplets);
    std::mt19937 rng(17);
    SCOPED_TRACE("seed 17");
    expect_unchanged(g0, g, uniform({1, 3, 224, 224}, rng));
}
