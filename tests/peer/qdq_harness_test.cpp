// The harness runs QDQ models (QuantizeLinear/DequantizeLinear) in ONNX Runtime at every graph optimization level:
// a graph built with quantsim's builder, exported with save_onnx, run by ort_run.js, against the ONNX formula
// y = (saturate(round_half_even(x / scale) + zp) - zp) * scale computed here. Later QDQ peer tests build on this.
#include <cfenv>
#include <cmath>

#include <quantsim/ir/builder.hpp>

#include "peer_harness.hpp"

namespace qp = quantsim::peer;
using quantsim::tensor;

namespace {

// Exact: x / scale is one IEEE division on both sides and the chosen ties are exactly representable.
constexpr double qdq_rel_tol = 0.0;

float qdq_ref(float x, float scale, int zp, int qmin, int qmax) {
    const float q = std::nearbyint(x / scale) + static_cast<float>(zp);  // default rounding: half to even
    return (std::clamp(q, static_cast<float>(qmin), static_cast<float>(qmax)) - static_cast<float>(zp)) * scale;
}

TEST(peer_qdq, per_tensor_uint8_in_ort_matches_onnx_formula) {
    QUANTSIM_REQUIRE_PEER_NODE();
    ASSERT_EQ(std::fegetround(), FE_TONEAREST);
    constexpr float scale = 0.5f;
    constexpr int zp = 10;
    quantsim::graph_builder b("qdq_per_tensor");
    auto x = b.input("x", {-1, 8});
    auto s = b.param("scale", tensor::scalar(scale));
    auto z = b.param("zp", tensor::from(std::vector<std::uint8_t>{zp}, {}));
    auto q = b.node("QuantizeLinear", {x, s, z});
    b.output(b.node("DequantizeLinear", {q, s, z}));
    const quantsim::graph g = b.build();
    // Ties (0.25, 0.75, 1.25 -> 0.5, 1.5, 2.5 steps), negatives, and values past both ends of [0, 255].
    const std::vector<float> xs{0.25f, 0.75f, 1.25f, -0.25f, -5.1f, -7.0f, 200.0f, 3.3f,
                                0.0f,  1.0f,  -4.75f, 122.5f, 127.26f, -1e6f, 1e6f, 0.2499f};
    const tensor input = tensor::from(xs, {2, 8});
    tensor expected = tensor::empty({2, 8});
    for (std::size_t i = 0; i < xs.size(); ++i) expected.f32()[i] = qdq_ref(xs[i], scale, zp, 0, 255);
    for (const char* level : {"disabled", "basic", "all"}) {
        SCOPED_TRACE(std::string("graphOptimizationLevel ") + level);
        qp::ort_options opt;
        opt.opt_level = level;
        const auto res = qp::run_ort_on_graph(g, {{"x", input}}, opt);
        EXPECT_TRUE(qp::outputs_match(res.outputs.at(0), expected, qdq_rel_tol));
        EXPECT_EQ(res.report.at("opt_level").get<std::string>(), level);
    }
}

TEST(peer_qdq, per_channel_int8_in_ort_matches_onnx_formula) {
    QUANTSIM_REQUIRE_PEER_NODE();
    const std::vector<float> scales{0.1f, 0.25f, 2.0f};
    const std::vector<std::int8_t> zps{0, -3, 5};
    quantsim::graph_builder b("qdq_per_channel");
    auto x = b.input("x", {-1, 3, 2, 2});
    auto s = b.param("scale", tensor::from(scales, {3}));
    auto z = b.param("zp", tensor::from(zps, {3}));
    auto q = b.node("QuantizeLinear", {x, s, z}, {{"axis", std::int64_t{1}}});
    b.output(b.node("DequantizeLinear", {q, s, z}, {{"axis", std::int64_t{1}}}));
    const quantsim::graph g = b.build();
    std::mt19937 rng(12345);
    SCOPED_TRACE("seed 12345");
    std::normal_distribution<float> dist(0.0f, 30.0f);
    tensor input = tensor::empty({4, 3, 2, 2});
    tensor expected = tensor::empty({4, 3, 2, 2});
    for (std::int64_t i = 0; i < input.numel(); ++i) {
        const std::int64_t c = (i / 4) % 3;
        input.f32()[i] = dist(rng);
        expected.f32()[i] = qdq_ref(input.f32()[i], scales[c], zps[c], -128, 127);
    }
    const auto res = qp::run_ort_on_graph(g, {{"x", input}});
    EXPECT_TRUE(qp::outputs_match(res.outputs.at(0), expected, qdq_rel_tol));
}

}  // namespace
