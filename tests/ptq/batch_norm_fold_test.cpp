// Batch-norm folding: every fold kind against the unfolded graph, statistics, affine conversion, shared weights.
#include <gtest/gtest.h>

#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/ptq/add_bias.hpp>
#include <quantsim/ptq/batch_norm_fold.hpp>

#include "ptq_test_util.hpp"

using namespace quantsim;
using ptq_test::max_abs;
using ptq_test::max_abs_diff;
using ptq_test::random_bn;
using ptq_test::run1;
using ptq_test::uniform;

namespace {

constexpr double kFoldTol = 1e-5;  // relative to the output magnitude (float32 rounding of the folded weights)

value_ref add_bn(graph_builder& b, const value_ref& x, std::int64_t c, std::mt19937& rng, const std::string& name,
                 ptq_test::bn_params* keep = nullptr) {
    auto p = random_bn(c, rng);
    if (keep) *keep = p;
    return b.node("BatchNormalization",
                  {x, b.param(name + ".g", p.gamma), b.param(name + ".b", p.beta), b.param(name + ".m", p.mean),
                   b.param(name + ".v", p.var)},
                  {{"epsilon", 1e-3f}}, node_options(name).outputs({name + ".out"}));
}

std::size_t count_op(const graph& g, const std::string& op) {
    std::size_t n = 0;
    for (const auto& nd : g.nodes) n += nd.op_type == op;
    return n;
}

void expect_same(const graph& before, const graph& after, const tensor& x) {
    const tensor y0 = run1(before, x), y1 = run1(after, x);
    ASSERT_EQ(y0.shape(), y1.shape());
    EXPECT_LE(max_abs_diff(y0, y1), kFoldTol * std::max(1.0, max_abs(y0)));
}

}  // namespace

TEST(BatchNormFold, ConvBackwardWithAndWithoutBiasAndGroups) {
    for (std::int64_t group : {1, 2}) {
        for (bool bias : {false, true}) {
            const std::uint32_t seed = 100 + static_cast<std::uint32_t>(group * 2 + bias);
            SCOPED_TRACE("seed " + std::to_string(seed) + " group " + std::to_string(group) + " bias " + std::to_string(bias));
            std::mt19937 rng(seed);
            graph_builder b;
            auto x = b.input("x", {-1, 4, 7, 7});
            std::vector<value_ref> in{x, b.param("w", uniform({6, 4 / group, 3, 3}, rng))};
            if (bias) in.push_back(b.param("bias", uniform({6}, rng)));
            ptq_test::bn_params p;
            auto c = b.node("Conv", in, {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}, {"group", group}}, "conv");
            auto y = add_bn(b, c, 6, rng, "bn", &p);
            b.output(b.node("Relu", {y}, {}, "relu"));
            graph g0 = b.build();
            graph g = g0;
            auto r = fold_batch_norms(g);
            EXPECT_EQ(r.backward, 1u);
            EXPECT_EQ(r.forward + r.to_affine, 0u);
            EXPECT_EQ(count_op(g, "BatchNormalization"), 0u);
            // The folded Conv produces the BN's output name; stats are keyed by it.
            const auto conv = g.producer("bn.out");
            ASSERT_GE(conv, 0);
            EXPECT_EQ(g.nodes[static_cast<std::size_t>(conv)].op_type, "Conv");
            ASSERT_TRUE(r.stats.count("bn.out"));
            const auto& st = r.stats.at("bn.out");
            ASSERT_EQ(st.mean.size(), 6u);
            for (std::size_t k = 0; k < 6; ++k) {
                EXPECT_EQ(st.mean[k], p.beta.f32()[k]);
                EXPECT_EQ(st.stddev[k], std::fabs(p.gamma.f32()[k]));
            }
            EXPECT_EQ(r.log.size(), 1u);
            g.validate();
            expect_same(g0, g, uniform({2, 4, 7, 7}, rng));
        }
    }
}

TEST(BatchNormFold, ConvTransposeBackwardUsesTheOutputAxis) {
    for (std::int64_t group : {1, 2}) {
        const std::uint32_t seed = 200 + static_cast<std::uint32_t>(group);
        SCOPED_TRACE("seed " + std::to_string(seed));
        std::mt19937 rng(seed);
        graph_builder b;
        auto x = b.input("x", {-1, 4, 5, 5});
        // weight [C_in, M / group, k, k]: 4 inputs, 6 outputs
        auto c = b.node("ConvTranspose", {x, b.param("w", uniform({4, 6 / group, 3, 3}, rng)), b.param("bias", uniform({6}, rng))},
                        {{"strides", std::vector<std::int64_t>{2, 2}}, {"group", group}}, "deconv");
        b.output(add_bn(b, c, 6, rng, "bn"));
        graph g0 = b.build();
        graph g = g0;
        auto r = fold_batch_norms(g);
        EXPECT_EQ(r.backward, 1u);
        EXPECT_EQ(count_op(g, "BatchNormalization"), 0u);
        expect_same(g0, g, uniform({2, 4, 5, 5}, rng));
    }
}

TEST(BatchNormFold, GemmAndMatMulBackward) {
    const std::uint32_t seed = 300;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    {
        graph_builder b;
        auto x = b.input("x", {-1, 5});
        auto y = b.node("Gemm", {x, b.param("w", uniform({3, 5}, rng)), b.param("c", uniform({1, 3}, rng))},
                        {{"transB", std::int64_t{1}}, {"alpha", 2.0f}, {"beta", 0.5f}}, "fc");
        b.output(add_bn(b, y, 3, rng, "bn"));
        graph g0 = b.build();
        graph g = g0;
        auto r = fold_batch_norms(g);
        EXPECT_EQ(r.backward, 1u);
        EXPECT_TRUE(r.stats.count("bn.out"));
        expect_same(g0, g, uniform({4, 5}, rng));
    }
    {
        graph_builder b;
        auto x = b.input("x", {-1, 5});
        auto y = b.node("MatMul", {x, b.param("w", uniform({5, 3}, rng))}, {}, "mm");
        b.output(add_bn(b, y, 3, rng, "bn"));
        graph g0 = b.build();
        graph g = g0;
        auto r = fold_batch_norms(g);
        EXPECT_EQ(r.backward, 1u);
        EXPECT_EQ(g.nodes[static_cast<std::size_t>(g.producer("bn.out"))].op_type, "Gemm");
        expect_same(g0, g, uniform({4, 5}, rng));
    }
    {
        // [N, T, K] x [K, N']: BN's channel axis is T, not the MatMul's columns: no backward fold, affine instead.
        graph_builder b;
        auto x = b.input("x", {2, 3, 5});
        auto y = b.node("MatMul", {x, b.param("w", uniform({5, 4}, rng))}, {}, "mm");
        b.output(add_bn(b, y, 3, rng, "bn"));
        graph g0 = b.build();
        graph g = g0;
        auto r = fold_batch_norms(g);
        EXPECT_EQ(r.backward, 0u);
        EXPECT_EQ(r.to_affine, 1u);
        expect_same(g0, g, uniform({2, 3, 5}, rng));
    }
}

TEST(BatchNormFold, ForwardIntoUnpaddedConvOnly) {
    const std::uint32_t seed = 400;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    for (bool padded : {false, true}) {
        graph_builder b;
        auto x = b.input("x", {-1, 4, 6, 6});
        auto r0 = b.node("Relu", {x}, {}, "relu");  // no layer before the BN: backward folding is impossible
        auto y = add_bn(b, r0, 4, rng, "bn");
        attribute_map a;
        if (padded) a["pads"] = std::vector<std::int64_t>{1, 1, 1, 1};
        b.output(b.node("Conv", {y, b.param("w", uniform({5, 4, 3, 3}, rng))}, a, "conv"));
        graph g0 = b.build();
        graph g = g0;
        auto r = fold_batch_norms(g);
        EXPECT_EQ(count_op(g, "BatchNormalization"), 0u);
        if (!padded) {
            EXPECT_EQ(r.forward, 1u);
            EXPECT_EQ(g.nodes.size(), 2u);
            EXPECT_TRUE(r.stats.empty());  // forward folds describe no layer output
        } else {
            EXPECT_EQ(r.forward, 0u);
            EXPECT_EQ(r.to_affine, 1u);
            EXPECT_EQ(count_op(g, "Mul"), 1u);
            EXPECT_EQ(count_op(g, "Add"), 1u);
            EXPECT_TRUE(r.stats.count("bn.out"));
            bool logged = false;
            for (const auto& l : r.log) logged = logged || l.find("pads") != std::string::npos;
            EXPECT_TRUE(logged);
        }
        g.validate();
        expect_same(g0, g, uniform({2, 4, 6, 6}, rng));
    }
}

TEST(BatchNormFold, LeftoverBnBecomesAffineThatExportsAndRuns) {
    const std::uint32_t seed = 500;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    graph_builder b;
    auto x = b.input("x", {-1, 3, 4, 4});
    // BN on a model input, read by two nodes: no fold applies.
    auto y = add_bn(b, x, 3, rng, "bn");
    auto s = b.node("Sigmoid", {y}, {}, "sig");
    b.output(b.node("Add", {y, s}, {}, "add"));
    graph g0 = b.build();
    graph g = g0;
    auto r = fold_batch_norms(g);
    EXPECT_EQ(r.to_affine, 1u);
    EXPECT_EQ(count_op(g, "BatchNormalization"), 0u);
    const tensor in = uniform({2, 3, 4, 4}, rng);
    expect_same(g0, g, in);
    // Round trip through ONNX: the affine form is plain Mul/Add with broadcastable constants.
    graph back = load_onnx_from_memory(save_onnx_to_string(g));
    expect_same(g0, back, in);
}

TEST(BatchNormFold, SharedWeightsAreNotCorrupted) {
    const std::uint32_t seed = 600;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const tensor w = uniform({4, 4, 1, 1}, rng);
    const tensor w_copy = w.clone();
    graph_builder b;
    auto x = b.input("x", {-1, 4, 3, 3});
    auto wr = b.param("shared_w", w);
    auto c1 = b.node("Conv", {x, wr}, {}, "conv1");
    auto y1 = add_bn(b, c1, 4, rng, "bn1");
    auto c2 = b.node("Conv", {x, wr}, {}, "conv2");  // same weight, no BN
    b.output(b.node("Add", {y1, c2}, {}, "add"));
    graph g0 = b.build();
    graph g = g0;
    auto r = fold_batch_norms(g);
    EXPECT_EQ(r.backward, 1u);
    // The user's tensor and the other reader's weight are untouched.
    EXPECT_EQ(max_abs_diff(w, w_copy), 0.0);
    const auto c2i = static_cast<std::size_t>(g.find_node("conv2"));
    EXPECT_EQ(g.nodes[c2i].inputs[1], "shared_w");
    EXPECT_EQ(max_abs_diff(g.params.at("shared_w"), w_copy), 0.0);
    expect_same(g0, g, uniform({2, 4, 3, 3}, rng));
}

TEST(BatchNormFold, NonConstantStatisticsAreLeftAloneAndLogged) {
    std::mt19937 rng(700);
    graph_builder b;
    auto x = b.input("x", {-1, 2, 3, 3});
    auto m = b.input("mean", {2});
    auto c = b.node("Conv", {x, b.param("w", uniform({2, 2, 1, 1}, rng))}, {}, "conv");
    b.output(b.node("BatchNormalization",
                    {c, b.param("g", uniform({2}, rng)), b.param("b", uniform({2}, rng)), m,
                     b.param("v", uniform({2}, rng, 0.5f, 1.0f))},
                    {}, "bn"));
    graph g = b.build();
    auto r = fold_batch_norms(g);
    EXPECT_EQ(r.backward + r.forward + r.to_affine, 0u);
    EXPECT_EQ(count_op(g, "BatchNormalization"), 1u);
    bool logged = false;
    for (const auto& l : r.log) logged = logged || (l.find("'bn'") != std::string::npos && l.find("left unchanged") != std::string::npos);
    EXPECT_TRUE(logged);
}

TEST(AddZeroBiases, ConvConvTransposeGemmGetZeroBiases) {
    std::mt19937 rng(800);
    graph_builder b;
    auto x = b.input("x", {-1, 2, 4, 4});
    auto c = b.node("Conv", {x, b.param("w", uniform({3, 2, 1, 1}, rng))}, {}, "conv");
    auto d = b.node("ConvTranspose", {c, b.param("wt", uniform({3, 2, 2, 2}, rng))},
                    {{"strides", std::vector<std::int64_t>{2, 2}}}, "deconv");
    auto f = b.node("Flatten", {d}, {}, "flat");
    auto y = b.node("Gemm", {f, b.param("wf", uniform({5, 2 * 8 * 8}, rng))}, {{"transB", std::int64_t{1}}}, "fc");
    b.output(y);
    graph g0 = b.build();
    graph g = g0;
    EXPECT_EQ(add_zero_biases(g), 3u);
    EXPECT_EQ(add_zero_biases(g), 0u);
    EXPECT_EQ(g.params.at(g.nodes[static_cast<std::size_t>(g.find_node("deconv"))].inputs[2]).numel(), 2);
    EXPECT_EQ(g.params.at(g.nodes[static_cast<std::size_t>(g.find_node("fc"))].inputs[2]).numel(), 5);
    g.validate();
    expect_same(g0, g, uniform({1, 2, 4, 4}, rng));
}
