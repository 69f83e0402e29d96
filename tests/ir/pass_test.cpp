// Passes: the pass manager, chain matching, rewiring helpers and the built-in passes (checked numerically with the
// test interpreter).
#include <gtest/gtest.h>

#include <random>

#include <quantsim/ir/builder.hpp>
#include <quantsim/ir/pass.hpp>
#include <quantsim/ir/passes.hpp>
#include <quantsim/ir/pattern.hpp>

#include "test_ops.hpp"

namespace quantsim {
namespace {

using test::make_test_registry;
using test::with;

chain_match_options overlap() {
    chain_match_options o;
    o.allow_overlap = true;
    return o;
}
chain_match_options any_input() {
    chain_match_options o;
    o.data_input_only = false;
    return o;
}

constexpr float fold_tolerance = 1e-4f;  // relative; BN folding is exact up to float rounding

tensor random_tensor(shape_t shape, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
    std::uniform_real_distribution<float> d(lo, hi);
    tensor t = tensor::empty(std::move(shape));
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

pass_manager_options pm_opts(const op_registry& reg) {
    pass_manager_options o;
    o.registry = &reg;
    return o;
}

// x -> Conv -> BN -> Relu -> Conv -> Clip -> y ; plus Add -> Relu branch
graph chain_graph(std::mt19937& rng) {
    graph_builder b("chains");
    auto x = b.input("x", {-1, 3, 6, 6});
    auto c1 = b.node("Conv", {x, b.param("w1", random_tensor({4, 3, 3, 3}, rng)), b.param("b1", random_tensor({4}, rng))},
                     {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "conv1");
    auto bn = b.node("BatchNormalization",
                     {c1, b.param("g", random_tensor({4}, rng, 0.5f, 1.5f)), b.param("be", random_tensor({4}, rng)),
                      b.param("m", random_tensor({4}, rng)), b.param("v", random_tensor({4}, rng, 0.1f, 2.f))},
                     {{"epsilon", 1e-3f}}, "bn1");
    auto r1 = b.node("Relu", {bn}, {}, "relu1");
    auto c2 = b.node("Conv", {r1, b.param("w2", random_tensor({4, 4, 1, 1}, rng))}, {}, "conv2");
    auto lo = b.constant_scalar(0.f);
    auto hi = b.constant_scalar(6.f);
    auto cl = b.node("Clip", {c2, lo, hi}, {}, "clip");
    auto add = b.node("Add", {cl, r1}, {}, "add");
    auto r2 = b.node("Relu", {add}, {}, node_options("relu2").outputs({"y"}));
    b.output(r2);
    return b.build();
}

TEST(match_chains, finds_single_consumer_chains) {
    std::mt19937 rng(1);
    const graph g = chain_graph(rng);
    auto m = match_chains(g, {"Conv", "BatchNormalization"});
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(g.nodes[m[0][0]].name, "conv1");
    EXPECT_EQ(g.nodes[m[0][1]].name, "bn1");
    // relu1's output has two readers (conv2 and add): BN -> Relu is a chain, Relu -> Conv is not.
    EXPECT_EQ(match_chains(g, {"BatchNormalization", "Relu"}).size(), 1u);
    EXPECT_TRUE(match_chains(g, {"Relu", "Conv"}).empty());
    m = match_chains(g, {"Conv", "Relu|Clip"});
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(g.nodes[m[0][0]].name, "conv2");
    EXPECT_EQ(g.nodes[m[0][1]].name, "clip");
    m = match_chains(g, {"Add", "Relu"});
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(g.nodes[m[0][1]].name, "relu2");
    EXPECT_EQ(match_chains(g, {"Conv", "BatchNormalization", "Relu"}).size(), 1u);
    // A predicate narrows the match.
    op_pattern one_by_one("Conv", [](const graph& gg, const node& n) {
        const auto* w = gg.info(n.inputs[1]);
        return w && w->shape.size() == 4 && w->shape[2] == 1;
    });
    m = match_chains(g, {one_by_one, "*"});
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(g.nodes[m[0][0]].name, "conv2");
}

TEST(match_chains, data_input_only_and_overlap) {
    graph_builder b;
    auto x = b.input("x", {2});
    auto a1 = b.node("Relu", {x}, {}, "r0");
    auto a2 = b.node("Relu", {a1}, {}, "r1");
    auto a3 = b.node("Relu", {a2}, {}, "r2");
    auto s = b.node("Add", {x, a3}, {}, "add");  // a3 is Add's SECOND input
    b.output(s);
    const graph g = b.build();
    EXPECT_EQ(match_chains(g, {"Relu", "Relu"}).size(), 1u);
    EXPECT_EQ(match_chains(g, {"Relu", "Relu"}, overlap()).size(), 2u);
    EXPECT_TRUE(match_chains(g, {"Relu", "Add"}).empty());
    EXPECT_EQ(match_chains(g, {"Relu", "Add"}, any_input()).size(), 1u);
}

TEST(bypass_node, rewires_readers_and_keeps_output_names) {
    graph_builder b;
    auto x = b.input("x", {2});
    auto r = b.node("Relu", {x}, {}, "relu");
    auto i1 = b.node("Identity", {r}, {}, "id1");
    auto y = b.node("Relu", {i1}, {}, "relu2");
    auto i2 = b.node("Identity", {y}, {}, node_options("id2").outputs({"out"}));
    b.output(i2);
    graph g = b.build();
    ASSERT_TRUE(bypass_node(g, 1));
    EXPECT_EQ(g.nodes[1].inputs[0], r.name);
    // id2 produces the graph output "out": relu2 is renamed to produce "out" directly.
    ASSERT_TRUE(bypass_node(g, static_cast<std::size_t>(g.find_node("id2"))));
    EXPECT_EQ(g.nodes.back().name, "relu2");
    EXPECT_EQ(g.nodes.back().outputs[0], "out");
    EXPECT_EQ(g.outputs[0].name, "out");
    const auto reg = make_test_registry();
    EXPECT_NO_THROW(g.validate(with(reg)));

    // An Identity straight from a model input to a graph output cannot be removed without renaming the input.
    graph_builder b2;
    auto x2 = b2.input("x", {2});
    b2.output(b2.node("Identity", {x2}, {}, node_options().outputs({"y"})));
    graph h = b2.build();
    EXPECT_FALSE(bypass_node(h, 0));
    EXPECT_EQ(h.nodes.size(), 1u);
}

TEST(replace_chain, swaps_nodes_and_checks_outside_readers) {
    std::mt19937 rng(2);
    graph g = chain_graph(rng);
    const auto m = match_chains(g, {"Conv", "Relu|Clip"});
    ASSERT_EQ(m.size(), 1u);
    node fused = g.nodes[m[0][0]];
    fused.op_type = "Conv";  // pretend: a conv with a fused clip (structure test only)
    fused.outputs.clear();
    const auto clip_out = g.nodes[m[0][1]].outputs[0];
    const auto idx = replace_chain(g, m[0], fused);
    EXPECT_EQ(g.nodes[idx].outputs[0], clip_out);
    EXPECT_EQ(g.find_node("clip"), -1);
    const auto reg = make_test_registry();
    EXPECT_NO_THROW(g.validate(with(reg)));
    EXPECT_EQ(g.params.size(), 7u) << "Clip's min/max parameters are pruned";

    // conv1's output is read by bn1 only, but relu1's is read outside {bn1, relu1}'s successor.
    graph h = chain_graph(rng);
    node repl;
    repl.op_type = "Relu";
    repl.inputs = {"x"};
    EXPECT_THROW(replace_chain(h, {static_cast<std::size_t>(h.find_node("relu1")), static_cast<std::size_t>(h.find_node("conv2"))}, repl),
                 invalid_argument);
}

TEST(pass_manager, runs_in_order_reports_and_validates) {
    std::mt19937 rng(3);
    graph g = chain_graph(rng);
    const auto reg = make_test_registry();
    std::vector<std::string> order;
    pass_manager pm(pm_opts(reg));
    pm.add("first", [&](graph&) {
        order.push_back("first");
        return false;
    });
    pm.emplace<fold_batch_norm_pass>();
    pm.add("third", [&](graph&) {
        order.push_back("third");
        return false;
    });
    EXPECT_TRUE(pm.run(g));
    EXPECT_EQ(order, (std::vector<std::string>{"first", "third"}));
    ASSERT_EQ(pm.records().size(), 3u);
    EXPECT_FALSE(pm.records()[0].changed);
    EXPECT_TRUE(pm.records()[1].changed);
    EXPECT_EQ(pm.records()[1].nodes_before, pm.records()[1].nodes_after + 1);
    EXPECT_NE(pm.report().find("fold_batch_norm"), std::string::npos);
    // value_infos are refreshed after a change.
    EXPECT_TRUE(g.info("y") && g.info("y")->shape_known);
}

TEST(pass_manager, errors_name_the_pass_and_the_node) {
    std::mt19937 rng(4);
    graph g = chain_graph(rng);
    const auto reg = make_test_registry();
    pass_manager pm(pm_opts(reg));
    pm.add("break_it", [](graph& gg) {
        gg.nodes[static_cast<std::size_t>(gg.find_node("relu1"))].inputs[0] = "nowhere";
        return true;
    });
    try {
        pm.run(g);
        FAIL() << "no error";
    } catch (const graph_error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("pass 'break_it'"), std::string::npos) << m;
        EXPECT_NE(m.find("node 'relu1' (Relu)"), std::string::npos) << m;
        EXPECT_EQ(m.rfind("[quantsim.graph] pass 'break_it': ", 0), 0u) << m;
    }
    // A pass that throws its own error: same type, prefixed.
    pass_manager pm2(pm_opts(reg));
    pm2.add("throws", [](graph&) -> bool { QUANTSIM_THROW(invalid_argument, "bad knob"); });
    try {
        pm2.run(g);
        FAIL() << "no error";
    } catch (const invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("pass 'throws': bad knob"), std::string::npos) << e.what();
    }
}

TEST(pass_manager, fixed_point_iterations) {
    graph_builder b;
    auto x = b.input("x", {2});
    value_ref v = x;
    for (int i = 0; i < 4; ++i) v = b.node("Identity", {v});
    b.output(b.node("Relu", {v}));
    graph g = b.build();
    const auto reg = make_test_registry();
    int calls = 0;
    pass_manager_options o = pm_opts(reg);
    o.max_iterations = 10;
    pass_manager pm(o);
    // Removes one Identity per call: needs 4 changing rounds plus one that changes nothing.
    pm.add("one_identity", [&](graph& gg) {
        ++calls;
        for (std::size_t i = 0; i < gg.nodes.size(); ++i)
            if (gg.nodes[i].op_type == "Identity") return bypass_node(gg, i);
        return false;
    });
    EXPECT_TRUE(pm.run(g));
    EXPECT_EQ(calls, 5);
    EXPECT_EQ(g.nodes.size(), 1u);
}

TEST(builtin_passes, remove_identity_and_dead_nodes) {
    graph_builder b;
    auto x = b.input("x", {2});
    auto i1 = b.node("Identity", {x});
    auto r = b.node("Relu", {i1});
    auto dead = b.node("Relu", {x});
    b.node("Relu", {dead});
    b.output(b.node("Identity", {r}, {}, node_options().outputs({"y"})));
    graph g = b.build();
    EXPECT_TRUE(remove_identity(g));
    EXPECT_EQ(std::count_if(g.nodes.begin(), g.nodes.end(), [](const node& n) { return n.op_type == "Identity"; }), 0);
    EXPECT_EQ(g.outputs[0].name, "y");
    EXPECT_TRUE(eliminate_dead_nodes(g));
    EXPECT_EQ(g.nodes.size(), 1u);
    EXPECT_FALSE(eliminate_dead_nodes(g));
    EXPECT_FALSE(remove_identity(g));
}

TEST(builtin_passes, fold_constants_replaces_shape_arithmetic_by_params) {
    graph_builder b;
    auto x = b.input("x", {2, 3, 4});
    auto s = b.node("Shape", {x});
    auto first = b.node("Gather", {s, b.constant_ints({0})});
    auto target = b.node("Concat", {first, b.constant_ints({-1})}, {{"axis", std::int64_t{0}}});
    auto r = b.node("Reshape", {x, target}, {}, "reshape");
    b.output(r);
    graph g = b.build();
    const auto reg = make_test_registry();
    ASSERT_TRUE(fold_constants(g, &reg));
    ASSERT_EQ(g.nodes.size(), 1u);
    EXPECT_EQ(g.nodes[0].name, "reshape");
    const tensor* t = param_value(g, g.nodes[0].inputs[1]);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(test::ints_of(*t), (std::vector<std::int64_t>{2, -1}));
    EXPECT_NO_THROW(g.validate(with(reg)));
}

TEST(builtin_passes, fold_batch_norm_matches_the_unfolded_graph) {
    const std::uint32_t seed = 1234;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const graph original = chain_graph(rng);
    graph folded = original;
    EXPECT_EQ(fold_batch_norm(folded), 1u);
    EXPECT_EQ(folded.find_node("bn1"), -1);
    EXPECT_GE(folded.find_node("conv1"), 0);
    // The original's weights are untouched (the folded graph shares no modified storage).
    EXPECT_EQ(original.params.at("w1").f32()[0], graph(original).params.at("w1").f32()[0]);
    const auto reg = make_test_registry();
    EXPECT_NO_THROW(folded.validate(with(reg)));
    const tensor x = random_tensor({2, 3, 6, 6}, rng);
    const auto a = test::run_graph(original, reg, {{"x", x}}).at("y");
    const auto b = test::run_graph(folded, reg, {{"x", x}}).at("y");
    ASSERT_EQ(a.shape(), b.shape());
    for (std::int64_t i = 0; i < a.numel(); ++i)
        EXPECT_NEAR(a.f32()[i], b.f32()[i], fold_tolerance * (1 + std::abs(a.f32()[i]))) << "element " << i;
}

TEST(builtin_passes, fold_batch_norm_skips_shared_outputs_and_runtime_weights) {
    std::mt19937 rng(5);
    graph_builder b;
    auto x = b.input("x", {1, 2, 4, 4});
    auto c = b.node("Conv", {x, b.param("w", random_tensor({2, 2, 1, 1}, rng))});
    auto bn = b.node("BatchNormalization", {c, b.param("g", tensor::full({2}, 1.f)), b.param("be", tensor::zeros({2})),
                                            b.param("m", tensor::zeros({2})), b.param("v", tensor::full({2}, 1.f))});
    b.output(bn);
    b.output(c);  // the conv output is also a graph output: folding would change it
    graph g = b.build();
    EXPECT_EQ(fold_batch_norm(g), 0u);
}

}  // namespace
}  // namespace quantsim
