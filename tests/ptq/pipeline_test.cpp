// The PTQ pipeline: step order, what each step reports, the options that conflict, and that the result is a
// calibrated simulation of the transformed model.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include <quantsim/core/error.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/ptq/pipeline.hpp>

#include "ptq_test_util.hpp"

namespace {

using namespace quantsim;
using namespace ptq_test;

// x -> Conv -> BN -> Relu -> Conv (no bias) -> BN -> Relu -> GAP -> Flatten -> Gemm: every pass has work to do.
graph small_cnn(std::mt19937& rng) {
    graph_builder b;
    auto x = b.input("x", {-1, 3, 8, 8});
    auto bn = [&](const value_ref& v, std::int64_t c, const std::string& n) {
        const bn_params p = random_bn(c, rng);
        return b.node("BatchNormalization",
                      {v, b.param(n + ".g", p.gamma), b.param(n + ".b", p.beta), b.param(n + ".m", p.mean),
                       b.param(n + ".v", p.var)},
                      {}, n);
    };
    tensor w1 = uniform({8, 3, 3, 3}, rng);
    spread_channels(w1, rng, 2.0f);
    auto c1 = b.node("Conv", {x, b.param("w1", w1), b.param("b1", uniform({8}, rng))},
                     {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "conv1");
    auto r1 = b.node("Relu", {bn(c1, 8, "bn1")}, {}, "relu1");
    auto c2 = b.node("Conv", {r1, b.param("w2", uniform({8, 8, 3, 3}, rng))},
                     {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "conv2");
    auto r2 = b.node("Relu", {bn(c2, 8, "bn2")}, {}, "relu2");
    auto gap = b.node("GlobalAveragePool", {r2}, {}, "gap");
    auto flat = b.node("Flatten", {gap}, {}, "flatten");
    b.output(b.node("Gemm", {flat, b.param("wf", uniform({4, 8}, rng)), b.param("bf", uniform({4}, rng))},
                    {{"transB", std::int64_t{1}}}, "fc"));
    return b.build();
}

std::vector<std::vector<tensor>> batches(std::mt19937& rng, int n) {
    std::vector<std::vector<tensor>> out;
    for (int i = 0; i < n; ++i) out.push_back({uniform({4, 3, 8, 8}, rng)});
    return out;
}

std::size_t count_ops(const graph& g, const std::string& op) {
    std::size_t n = 0;
    for (const auto& nd : g.nodes) n += nd.op_type == op;
    return n;
}

TEST(ptq_pipeline, runs_the_steps_in_the_standard_order) {
    const unsigned seed = 1234;
    SCOPED_TRACE("seed=" + std::to_string(seed));
    std::mt19937 rng(seed);
    const graph g = small_cnn(rng);
    const auto calib = batches(rng, 4);
    ptq_options o;
    o.fold_bn = true;
    o.cle = true;
    o.bias_correction = bias_correction_method::empirical;
    std::vector<std::string> seen;
    std::vector<bool> had_sim;
    ptq_result r = run_ptq(g, calib, o, [&](const ptq_step& s, const graph& m, quant_sim* sim) {
        seen.push_back(s.name);
        had_sim.push_back(sim != nullptr);
        if (s.name == "fold_bn") {
            EXPECT_EQ(count_ops(m, "BatchNormalization"), 0u);
        }
    });
    EXPECT_EQ(seen, (std::vector<std::string>{"fold_bn", "cle", "range_setting", "bias_correction"}));
    EXPECT_EQ(had_sim, (std::vector<bool>{false, false, true, true}));
    ASSERT_EQ(r.steps.size(), 4u);
    EXPECT_TRUE(r.steps[0].changes_fp32);
    EXPECT_FALSE(r.steps[2].changes_fp32);
    EXPECT_EQ(r.bn_stats.size(), 2u);  // both BNs folded backward, their statistics kept
    // The result is a calibrated simulation of the folded model: every enabled quantizer has an encoding and the
    // model has no BatchNormalization left; conv2 got a (corrected) bias.
    EXPECT_EQ(count_ops(r.sim.model(), "BatchNormalization"), 0u);
    for (const auto& q : r.sim.quantizers())
        if (q.enabled) {
            EXPECT_TRUE(r.sim.effective_params(q.name).has_value()) << q.name;
        }
    for (const auto& n : r.sim.model().nodes)
        if (n.op_type == "Conv") {
            EXPECT_TRUE(n.has_input(2)) << n.name;
        }
    const tensor y = r.sim.forward(calib[0][0]);
    EXPECT_EQ(y.shape(), (shape_t{4, 4}));
}

TEST(ptq_pipeline, quantized_output_tracks_fp32_after_the_passes) {
    const unsigned seed = 99;
    SCOPED_TRACE("seed=" + std::to_string(seed));
    std::mt19937 rng(seed);
    const graph g = small_cnn(rng);
    const auto calib = batches(rng, 4);
    const tensor x = uniform({4, 3, 8, 8}, rng);
    const tensor ref = run1(g, x);
    ptq_options o;
    o.fold_bn = true;
    o.cle = true;
    o.bias_correction = bias_correction_method::empirical;
    ptq_result r = run_ptq(g, calib, o);
    const tensor y = r.sim.forward(x);
    // 8-bit weights and activations on a 3-layer net: the simulated output is close to FP32 (a few output steps).
    constexpr double rel_tol = 0.05;
    EXPECT_LE(max_abs_diff(y, ref), rel_tol * max_abs(ref));
}

TEST(ptq_pipeline, analytical_bias_correction_folds_for_the_statistics) {
    std::mt19937 rng(7);
    const graph g = small_cnn(rng);
    ptq_options o;
    o.bias_correction = bias_correction_method::analytical;  // fold_bn left false
    std::vector<std::string> seen;
    ptq_result r = run_ptq(g, batches(rng, 2), o, [&](const ptq_step& s, const graph&, quant_sim*) {
        seen.push_back(s.name);
    });
    EXPECT_EQ(seen, (std::vector<std::string>{"fold_bn", "range_setting", "bias_correction"}));
    EXPECT_FALSE(r.bn_stats.empty());
}

TEST(ptq_pipeline, adaround_freezes_weight_encodings) {
    std::mt19937 rng(11);
    const graph g = small_cnn(rng);
    ptq_options o;
    o.fold_bn = true;
    o.adaround = true;
    o.adaround_opts.iterations = 50;  // correctness only; the default schedule is measured in docs/adaround.md
    o.sim.param_bitwidth = 4;
    ptq_result r = run_ptq(g, batches(rng, 2), o);
    ASSERT_EQ(r.steps.back().name, "adaround");
    std::size_t frozen = 0;
    for (const auto& q : r.sim.quantizers())
        if (q.kind == quantizer_kind::param && q.param_kind == "weight" && q.enabled) {
            EXPECT_TRUE(q.frozen) << q.name;
            frozen += q.frozen;
        }
    EXPECT_EQ(frozen, 3u);  // conv1, conv2, fc
}

TEST(ptq_pipeline, conflicting_or_empty_input_is_an_error) {
    std::mt19937 rng(3);
    const graph g = small_cnn(rng);
    ptq_options o;
    o.adaround = true;
    o.bias_correction = bias_correction_method::empirical;
    EXPECT_THROW(run_ptq(g, batches(rng, 1), o), invalid_argument);
    EXPECT_THROW(run_ptq(g, {}, ptq_options{}), calibration_error);
    EXPECT_THROW(parse_bias_correction_method("magic"), invalid_argument);
    EXPECT_EQ(parse_bias_correction_method("analytical"), bias_correction_method::analytical);
}

}  // namespace
