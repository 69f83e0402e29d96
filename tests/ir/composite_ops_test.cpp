// Decomposed hard-swish / hard-sigmoid recognition and fusion (ir/composite_ops.hpp).
#include <gtest/gtest.h>

#include <random>

#include <quantsim/ir/builder.hpp>
#include <quantsim/ir/composite_ops.hpp>
#include <quantsim/ir/executor.hpp>

namespace quantsim {
namespace {

constexpr float fused_tolerance = 1e-6f;  // HardSwish's kernel vs Add/Clip/Mul/Div: float rounding of one division

enum class form { mul_then_div, div_then_mul, mul_by_sixth, hard_sigmoid_op, add_clip_div };

// x -> Conv -> [decomposed activation] -> Relu -> y
graph with_activation(form f, float three = 3.f, float six = 6.f) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    tensor w = tensor::empty({4, 3, 1, 1});
    for (auto& v : w.span<float>()) v = 4 * d(rng);
    graph_builder b("act");
    auto x = b.input("x", {-1, 3, 5, 5});
    auto c = b.node("Conv", {x, b.param("w", w)}, {}, "conv");
    value_ref out;
    if (f == form::hard_sigmoid_op) {
        auto hs = b.node("HardSigmoid", {c}, {{"alpha", 1.f / 6.f}, {"beta", 0.5f}}, "hsig");
        out = b.node("Mul", {hs, c}, {}, node_options("mul").outputs({"act"}));
    } else {
        auto a = b.node("Add", {b.constant_scalar(three), c}, {}, "add");
        auto cl = b.node("Clip", {a, b.constant_scalar(0.f), b.constant_scalar(six)}, {}, "clip");
        if (f == form::mul_then_div) {
            auto m = b.node("Mul", {c, cl}, {}, "mul");
            out = b.node("Div", {m, b.constant_scalar(6.f)}, {}, node_options("div").outputs({"act"}));
        } else if (f == form::mul_by_sixth) {
            auto m = b.node("Mul", {cl, c}, {}, "mul");
            out = b.node("Mul", {b.constant_scalar(1.f / 6.f), m}, {}, node_options("sixth").outputs({"act"}));
        } else {
            auto dv = b.node("Div", {cl, b.constant_scalar(6.f)}, {}, node_options("div").outputs({"act_hs"}));
            out = f == form::div_then_mul ? b.node("Mul", {c, dv}, {}, node_options("mul").outputs({"act"})) : dv;
        }
    }
    b.output(b.node("Relu", {out}, {}, node_options("relu").outputs({"y"})));
    return b.build();
}

tensor random_input(std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> d(-2.f, 2.f);
    tensor t = tensor::empty({2, 3, 5, 5});
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

void expect_same_function(const graph& a, const graph& b) {
    const std::uint32_t seed = 11;
    const tensor x = random_input(seed);
    executor ea(a), eb(b);
    const tensor ya = ea.run({x}).at(0), yb = eb.run({x}).at(0);
    ASSERT_EQ(ya.numel(), yb.numel());
    for (std::int64_t i = 0; i < ya.numel(); ++i)
        ASSERT_NEAR(ya.f32()[i], yb.f32()[i], fused_tolerance * (1 + std::fabs(ya.f32()[i]))) << "seed " << seed << ", element " << i;
}

TEST(composite_ops, recognizes_each_hard_swish_form_and_fuses_it_to_the_same_function) {
    for (form f : {form::mul_then_div, form::div_then_mul, form::mul_by_sixth, form::hard_sigmoid_op}) {
        SCOPED_TRACE(static_cast<int>(f));
        const graph g = with_activation(f);
        const auto m = match_decomposed_activations(g);
        ASSERT_EQ(m.size(), 1u);
        EXPECT_EQ(m[0].op_type, "HardSwish");
        EXPECT_EQ(m[0].input, g.nodes[0].outputs.at(0));  // the Conv's output
        EXPECT_EQ(m[0].output, "act");
        EXPECT_EQ(m[0].nodes.size(), f == form::hard_sigmoid_op ? 2u : 4u);
        const graph fused = fuse_decomposed_activations(g);
        ASSERT_EQ(fused.nodes.size(), 3u);
        EXPECT_EQ(fused.nodes[1].op_type, "HardSwish");
        EXPECT_EQ(fused.nodes[1].outputs.at(0), "act");
        expect_same_function(g, fused);
    }
}

TEST(composite_ops, add_clip_div_alone_is_a_hard_sigmoid) {
    const graph g = with_activation(form::add_clip_div);
    const auto m = match_decomposed_activations(g);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(m[0].op_type, "HardSigmoid");
    EXPECT_EQ(m[0].output, "act_hs");
    const graph fused = fuse_decomposed_activations(g);
    EXPECT_EQ(fused.nodes[1].op_type, "HardSigmoid");
    expect_same_function(g, fused);
}

TEST(composite_ops, other_constants_or_shared_inner_values_are_not_matched) {
    EXPECT_TRUE(match_decomposed_activations(with_activation(form::mul_then_div, 2.f)).empty());
    EXPECT_TRUE(match_decomposed_activations(with_activation(form::mul_then_div, 3.f, 8.f)).empty());
    // An inner value with a second reader (the Clip output also feeds a graph output) is observable: no match.
    graph g = with_activation(form::mul_then_div);
    g.outputs.push_back(g.outputs[0]);
    for (const auto& n : g.nodes)
        if (n.op_type == "Clip") g.outputs.back().name = n.outputs.at(0);
    EXPECT_TRUE(match_decomposed_activations(g).empty());
    EXPECT_EQ(fuse_decomposed_activations(g).nodes.size(), g.nodes.size());
}

TEST(composite_ops, opset_9_clip_bounds_as_attributes_match) {
    graph g = with_activation(form::mul_then_div);
    for (auto& n : g.nodes)
        if (n.op_type == "Clip") {
            n.inputs.resize(1);
            n.attrs["min"] = 0.f;
            n.attrs["max"] = 6.f;
        }
    g.prune_unused_params();
    EXPECT_EQ(match_decomposed_activations(g).size(), 1u);
}

}  // namespace
}  // namespace quantsim
