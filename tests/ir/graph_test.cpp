// graph: builder, queries, edits, topological order, validation errors, summary.
#include <gtest/gtest.h>

#include <quantsim/ir/builder.hpp>
#include <quantsim/ir/graph.hpp>

#include "test_ops.hpp"

namespace quantsim {
namespace {

using test::make_test_registry;

// x -> Conv(w, b) -> Relu -> Add(x') -> y
graph small_conv_graph() {
    graph_builder b("small");
    auto x = b.input("x", {-1, 3, 8, 8});
    auto w = b.param("w", tensor::full({4, 3, 3, 3}, 0.1f));
    auto bias = b.param("b", tensor::full({4}, 0.5f));
    auto c = b.node("Conv", {x, w, bias}, {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "conv");
    auto r = b.node("Relu", {c}, {}, "relu");
    auto y = b.node("Add", {r, r}, {}, node_options("add").outputs({"y"}));
    b.output(y);
    return b.build();
}

using test::infer_with;
using test::with;

summary_options brief_options() {
    summary_options o;
    o.list_params = false;
    o.list_nodes = false;
    return o;
}

TEST(graph_builder, builds_a_valid_graph_with_symbolic_batch) {
    const graph g = small_conv_graph();
    ASSERT_EQ(g.nodes.size(), 3u);
    ASSERT_EQ(g.inputs.size(), 1u);
    EXPECT_EQ(g.inputs[0].shape, (shape_t{-1, 3, 8, 8}));
    EXPECT_EQ(g.inputs[0].dim_param(0), "N");
    EXPECT_EQ(g.outputs.at(0).name, "y");
    EXPECT_EQ(g.params.size(), 2u);
    EXPECT_EQ(g.nodes[0].attr_ints("pads"), (std::vector<std::int64_t>{1, 1, 1, 1}));
    const auto reg = make_test_registry();
    EXPECT_NO_THROW(g.validate(with(reg)));
}

TEST(graph_builder, rejects_undefined_inputs_and_duplicate_names) {
    graph_builder b;
    auto x = b.input("x", {1, 4});
    EXPECT_THROW(b.node("Relu", {"nope"}), graph_error);
    EXPECT_THROW(b.input("x", {1}), invalid_argument);
    EXPECT_THROW(b.param("x", tensor::scalar(1)), invalid_argument);
    b.node("Relu", {x}, {}, "r");
    EXPECT_THROW(b.node("Relu", {x}, {}, "r"), invalid_argument);
    EXPECT_THROW(b.output("missing"), graph_error);
}

TEST(graph, queries) {
    const graph g = small_conv_graph();
    const std::string conv_out = g.nodes[0].outputs[0];
    EXPECT_EQ(g.producer(conv_out), 0);
    EXPECT_EQ(g.producer("x"), -1);
    EXPECT_EQ(g.producer("w"), -1);
    EXPECT_EQ(g.consumers("x"), (std::vector<std::size_t>{0}));
    EXPECT_EQ(g.consumers(g.nodes[1].outputs[0]), (std::vector<std::size_t>{2}));  // read twice, listed once
    EXPECT_EQ(g.find_node("relu"), 1);
    EXPECT_EQ(g.find_node("nope"), -1);
    EXPECT_TRUE(g.is_param("w"));
    EXPECT_TRUE(g.is_input("x"));
    EXPECT_TRUE(g.is_output("y"));
    EXPECT_EQ(g.num_param_elements(), 4 * 3 * 3 * 3 + 4);
    const value_info* wi = g.info("w");
    ASSERT_NE(wi, nullptr);
    EXPECT_EQ(wi->shape, (shape_t{4, 3, 3, 3}));
    EXPECT_EQ(g.info("nothing"), nullptr);
    const graph_index idx(g);
    EXPECT_EQ(idx.producer("y"), 2);
    EXPECT_EQ(idx.use_count("y"), 1u);  // the graph output
    EXPECT_EQ(idx.consumers("x").size(), 1u);
}

TEST(graph, param_info_follows_a_replaced_tensor) {
    graph g = small_conv_graph();
    EXPECT_EQ(g.info("b")->shape, (shape_t{4}));
    g.params["b"] = tensor::zeros({2, 2});
    EXPECT_EQ(g.info("b")->shape, (shape_t{2, 2}));
    const graph copy = g;  // copies get their own cache
    EXPECT_EQ(copy.info("b")->shape, (shape_t{2, 2}));
}

TEST(graph, unique_names_and_add_node) {
    graph g = small_conv_graph();
    EXPECT_EQ(g.unique_name("fresh"), "fresh");
    EXPECT_NE(g.unique_name("x"), "x");
    EXPECT_NE(g.unique_name("relu"), "relu");
    node n;
    n.op_type = "Relu";
    n.name = "relu";  // taken: made unique
    n.inputs = {"y"};
    n.outputs = {"z"};
    node& added = g.add_node(n);
    EXPECT_NE(added.name, "relu");
    EXPECT_EQ(g.nodes.back().outputs[0], "z");
    const std::string p = g.add_param("w", tensor::scalar(2));
    EXPECT_NE(p, "w");
    EXPECT_TRUE(g.is_param(p));
}

TEST(graph, replace_uses_rewires_nodes_and_outputs) {
    graph g = small_conv_graph();
    g.replace_uses("y", "x");
    EXPECT_EQ(g.outputs[0].name, "x");
    const std::string relu_out = g.nodes[1].outputs[0];
    g.replace_uses(relu_out, g.nodes[0].outputs[0]);
    EXPECT_EQ(g.nodes[2].inputs, (std::vector<std::string>{g.nodes[0].outputs[0], g.nodes[0].outputs[0]}));
}

TEST(graph, remove_dead_nodes_and_prune_params) {
    graph g = small_conv_graph();
    g.outputs[0].name = g.nodes[0].outputs[0];  // only the conv output is used now
    EXPECT_EQ(g.remove_dead_nodes(), 2u);
    EXPECT_EQ(g.nodes.size(), 1u);
    g.params["unused"] = tensor::scalar(1);
    EXPECT_EQ(g.prune_unused_params(), 1u);
    EXPECT_FALSE(g.is_param("unused"));
    EXPECT_TRUE(g.is_param("w"));
}

TEST(graph, rename_value_everywhere) {
    graph g = small_conv_graph();
    g.rename_value("y", "out");
    EXPECT_EQ(g.nodes[2].outputs[0], "out");
    EXPECT_EQ(g.outputs[0].name, "out");
    g.rename_value("w", "weight");
    EXPECT_TRUE(g.is_param("weight"));
    EXPECT_EQ(g.nodes[0].inputs[1], "weight");
    EXPECT_THROW(g.rename_value("weight", "x"), invalid_argument);
}

TEST(graph, topological_sort_restores_order_stably) {
    graph g = small_conv_graph();
    std::reverse(g.nodes.begin(), g.nodes.end());
    const auto reg = make_test_registry();
    EXPECT_THROW(g.validate(with(reg)), graph_error);
    g.topological_sort();
    EXPECT_EQ(g.nodes[0].name, "conv");
    EXPECT_EQ(g.nodes[1].name, "relu");
    EXPECT_EQ(g.nodes[2].name, "add");
    EXPECT_NO_THROW(g.validate(with(reg)));

    // Independent nodes keep their relative order.
    graph_builder b;
    auto x = b.input("x", {2});
    auto a1 = b.node("Relu", {x}, {}, "a");
    auto a2 = b.node("Relu", {x}, {}, "b");
    auto s = b.node("Add", {a1, a2}, {}, "c");
    b.output(s);
    graph h = b.build();
    h.topological_sort();
    EXPECT_EQ(h.nodes[0].name, "a");
    EXPECT_EQ(h.nodes[1].name, "b");
}

TEST(graph, cycles_are_reported_with_the_nodes_on_them) {
    graph g;
    g.inputs.push_back(test::make_info(dtype::float32, {2}));
    g.inputs[0].name = "x";
    node a{"a", "Add", "", {"x", "v2"}, {"v1"}, {}};
    node b{"b", "Relu", "", {"v1"}, {"v2"}, {}};
    g.nodes = {a, b};
    g.outputs.push_back(test::make_info(dtype::float32, {2}));
    g.outputs[0].name = "v2";
    try {
        g.topological_sort();
        FAIL() << "no error";
    } catch (const graph_error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("cycle"), std::string::npos) << m;
        EXPECT_NE(m.find("node 'a' (Add)"), std::string::npos) << m;
        EXPECT_NE(m.find("node 'b' (Relu)"), std::string::npos) << m;
    }
    validate_options vo;
    vo.check_ops = vo.check_shapes = false;
    EXPECT_THROW(g.validate(vo), graph_error);

    node self{"s", "Relu", "", {"s_out"}, {"s_out"}, {}};
    g.nodes = {self};
    EXPECT_THROW(g.topological_sort(), graph_error);
}

// Expects validate() to throw graph_error (or `E`) whose message contains every piece.
template <class E = graph_error>
void expect_invalid(const graph& g, const op_registry& reg, std::vector<std::string> pieces) {
    try {
        g.validate(with(reg));
        FAIL() << "validate() accepted the graph";
    } catch (const E& e) {
        const std::string m = e.what();
        for (const auto& p : pieces) EXPECT_NE(m.find(p), std::string::npos) << "missing '" << p << "' in: " << m;
    }
}

TEST(graph_validate, names_the_node_and_the_problem) {
    const auto reg = make_test_registry();
    {
        graph g = small_conv_graph();
        g.nodes[1].inputs[0] = "ghost";
        expect_invalid(g, reg, {"node 'relu' (Relu)", "ghost", "dangling"});
    }
    {
        graph g = small_conv_graph();
        g.nodes[2].outputs[0] = g.nodes[1].outputs[0];
        expect_invalid(g, reg, {"node 'add' (Add)", "produced by two nodes"});
    }
    {
        graph g = small_conv_graph();
        g.nodes[1].name = "conv";
        expect_invalid(g, reg, {"used by two nodes"});
    }
    {
        graph g = small_conv_graph();
        g.outputs[0].name = "nowhere";
        expect_invalid(g, reg, {"model output 'nowhere'"});
    }
    {
        graph g = small_conv_graph();
        g.nodes[0].outputs[0] = "x";
        expect_invalid(g, reg, {"node 'conv' (Conv)", "also a model input"});
    }
    {
        graph g = small_conv_graph();
        g.nodes[1].op_type = "Frobnicate";
        expect_invalid<unsupported_error>(g, reg, {"node 'relu' (Frobnicate)", "no registered schema"});
    }
    {
        graph g = small_conv_graph();
        g.nodes[1].inputs.push_back("x");  // Relu takes one input
        expect_invalid(g, reg, {"node 'relu' (Relu)", "has 2 inputs"});
    }
    {
        // A weight whose shape no longer fits the input channels: shape_error from inference, naming the node.
        graph g = small_conv_graph();
        g.params["w"] = tensor::full({4, 5, 3, 3}, 0.1f);
        expect_invalid<shape_error>(g, reg, {"node 'conv' (Conv)", "channels"});
    }
    {
        // Recorded shapes that disagree with re-inferred ones (a pass that changed a weight without fixing users).
        graph g = small_conv_graph();
        g.infer_shapes(infer_with(reg));
        g.params["w"] = tensor::full({6, 3, 3, 3}, 0.1f);
        g.params["b"] = tensor::full({6}, 0.1f);
        expect_invalid(g, reg, {"node 'conv' (Conv)", "recorded as", "[N, 4, 8, 8]", "[N, 6, 8, 8]"});
    }
}

TEST(graph, summary_lists_inputs_outputs_ops_params_and_nodes) {
    graph g = small_conv_graph();
    const auto reg = make_test_registry();
    g.infer_shapes(infer_with(reg));
    const std::string s = g.summary();
    EXPECT_NE(s.find("graph 'small'"), std::string::npos) << s;
    EXPECT_NE(s.find("x: float32 [N, 3, 8, 8]"), std::string::npos) << s;
    EXPECT_NE(s.find("y: float32 [N, 4, 8, 8]"), std::string::npos) << s;
    EXPECT_NE(s.find("Conv"), std::string::npos) << s;
    EXPECT_NE(s.find("w: float32 [4, 3, 3, 3]"), std::string::npos) << s;
    EXPECT_NE(s.find("conv: Conv(x, w, b)"), std::string::npos) << s;
    EXPECT_NE(s.find("pads=[1, 1, 1, 1]"), std::string::npos) << s;
    EXPECT_NE(s.find("3 nodes, 2 parameters (112 elements"), std::string::npos) << s;
    const std::string brief = g.summary(brief_options());
    EXPECT_EQ(brief.find("conv: Conv"), std::string::npos);
}

}  // namespace
}  // namespace quantsim
