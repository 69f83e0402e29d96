// Shape inference: symbolic batch, constant folding, partially known shape values (Shape->Gather->Concat->Reshape).
#include <gtest/gtest.h>

#include <quantsim/ir/builder.hpp>
#include <quantsim/ir/shape_inference.hpp>

#include "test_ops.hpp"

namespace quantsim {
namespace {

using test::make_test_registry;

shape_inference_options opts(const op_registry& reg) {
    shape_inference_options o;
    o.registry = &reg;
    return o;
}

TEST(shape_inference, keeps_the_batch_symbolic_through_conv_and_flatten) {
    graph_builder b;
    auto x = b.input("x", {-1, 3, 16, 16});
    auto w = b.param("w", tensor::full({8, 3, 3, 3}, 1.f));
    auto c = b.node("Conv", {x, w}, {{"strides", std::vector<std::int64_t>{2, 2}}, {"pads", std::vector<std::int64_t>{1, 1, 1, 1}}});
    auto f = b.node("Flatten", {c}, {{"axis", std::int64_t{1}}});
    b.output(f);
    graph g = b.build();
    const auto reg = make_test_registry();
    g.infer_shapes(opts(reg));
    const value_info* ci = g.info(c);
    ASSERT_TRUE(ci && ci->shape_known);
    EXPECT_EQ(ci->shape, (shape_t{-1, 8, 8, 8}));
    EXPECT_EQ(ci->dim_param(0), "N");
    EXPECT_EQ(g.outputs[0].shape, (shape_t{-1, 512}));
    EXPECT_EQ(g.outputs[0].dim_param(0), "N");
    EXPECT_EQ(to_string(g.outputs[0]), "float32 [N, 512]");
}

// The PaddleOCR pattern: Reshape(x, Concat(Slice/Gather(Shape(x)), [-1])) with a symbolic batch.
TEST(shape_inference, resolves_shape_gather_concat_reshape_with_symbolic_batch) {
    graph_builder b;
    auto x = b.input("x", {-1, 6, 4, 5});
    auto s = b.node("Shape", {x});
    auto n = b.node("Gather", {s, b.constant_ints({0})});                      // [N]
    auto c = b.node("Gather", {s, b.constant_ints({1})});                      // [6]
    auto target = b.node("Concat", {n, c, b.constant_ints({-1})}, {{"axis", std::int64_t{0}}});
    auto r = b.node("Reshape", {x, target});
    b.output(r);
    graph g = b.build();
    const auto reg = make_test_registry();
    const auto res = run_shape_inference(g, opts(reg));
    ASSERT_TRUE(res.shape_values.count(target));
    const auto& sv = res.shape_values.at(target);
    ASSERT_EQ(sv.elems.size(), 3u);
    EXPECT_TRUE(sv.elems[0].is_symbolic());
    EXPECT_EQ(sv.elems[0].symbol, "N");
    EXPECT_TRUE(sv.elems[1].known);
    EXPECT_EQ(sv.elems[1].value, 6);
    EXPECT_EQ(sv.elems[2].value, -1);
    EXPECT_EQ(g.outputs[0].shape, (shape_t{-1, 6, 20}));
    EXPECT_EQ(g.outputs[0].dim_param(0), "N");
}

TEST(shape_inference, folds_constant_subgraphs_and_fully_known_shapes) {
    graph_builder b;
    auto x = b.input("x", {2, 3, 4});
    auto s = b.node("Shape", {x});                                  // known: [2, 3, 4]
    auto prod = b.node("Mul", {s, b.constant_ints({1, 1, 1})});     // folded by running the kernel
    auto cast = b.node("Cast", {prod}, {{"to", std::int64_t{1}}});  // float, folded
    auto r = b.node("Reshape", {x, b.constant_ints({0, -1})});
    b.output(r);
    b.output(cast);
    graph g = b.build();
    const auto reg = make_test_registry();
    const auto res = run_shape_inference(g, opts(reg));
    ASSERT_TRUE(res.constants.count(s));
    ASSERT_TRUE(res.constants.count(prod));
    ASSERT_TRUE(res.constants.count(cast));
    EXPECT_EQ(test::ints_of(res.constants.at(prod)), (std::vector<std::int64_t>{2, 3, 4}));
    EXPECT_EQ(res.constants.at(cast).type(), dtype::float32);
    EXPECT_EQ(res.constants.at(cast).f32()[2], 4.0f);
    EXPECT_EQ(g.info(r)->shape, (shape_t{2, 12}));
}

TEST(shape_inference, folding_respects_the_size_limit) {
    graph_builder b;
    auto big = b.param("big", tensor::full({100, 100}, 1.f));
    auto y = b.node("Relu", {big});
    b.output(y);
    graph g = b.build();
    const auto reg = make_test_registry();
    auto o = opts(reg);
    o.max_folded_elements = 1000;
    EXPECT_TRUE(run_shape_inference(g, o).constants.empty());
    o.max_folded_elements = 10000;
    EXPECT_EQ(run_shape_inference(g, o).constants.size(), 1u);
}

TEST(shape_inference, symbolic_arithmetic_on_shape_values) {
    graph_builder b;
    auto x = b.input("x", {-1, 4, 6});
    auto s = b.node("Shape", {x});
    auto doubled = b.node("Mul", {s, b.constant_ints({1, 2, 1})});   // [N, 8, 6]
    auto half = b.node("Div", {doubled, b.constant_ints({1, 1, 2})}); // [N, 8, 3]
    b.output(half);
    graph g = b.build();
    const auto reg = make_test_registry();
    const auto res = run_shape_inference(g, opts(reg));
    const auto& sv = res.shape_values.at(half);
    ASSERT_EQ(sv.elems.size(), 3u);
    EXPECT_EQ(sv.elems[0].symbol, "N");
    EXPECT_EQ(sv.elems[1].value, 8);
    EXPECT_EQ(sv.elems[2].value, 3);
}

TEST(shape_inference, unknown_ops_are_errors_in_strict_mode_only) {
    graph_builder b;
    auto x = b.input("x", {-1, 3});
    auto y = b.node("Mystery", {x}, {}, "m");
    auto z = b.node("Relu", {y});
    b.output(z);
    graph g = b.build();
    const auto reg = make_test_registry();
    try {
        g.infer_shapes(opts(reg));
        FAIL() << "no error";
    } catch (const unsupported_error& e) {
        EXPECT_NE(std::string(e.what()).find("node 'm' (Mystery)"), std::string::npos) << e.what();
    }
    auto o = opts(reg);
    o.strict = false;
    const auto res = run_shape_inference(g, o);
    EXPECT_EQ(res.unknown_ops, (std::vector<std::string>{"Mystery"}));
    EXPECT_FALSE(g.info(z) && g.info(z)->shape_known);
}

TEST(shape_inference, shape_errors_name_the_node) {
    graph_builder b;
    auto x = b.input("x", {1, 3});
    auto y = b.node("Add", {x, b.param("p", tensor::zeros({4}))}, {}, "bad_add");
    b.output(y);
    graph g = b.build();
    const auto reg = make_test_registry();
    try {
        g.infer_shapes(opts(reg));
        FAIL() << "no error";
    } catch (const shape_error& e) {
        EXPECT_NE(std::string(e.what()).find("node 'bad_add' (Add)"), std::string::npos) << e.what();
    }
}

value_info vi(shape_t s, std::vector<std::string> p = {}) { return test::make_info(dtype::float32, std::move(s), std::move(p)); }
shape_value sv(std::initializer_list<sym_int> e) { return shape_value{std::vector<sym_int>(e), false}; }
sym_int num(std::int64_t v) { return sym_int::number(v); }
sym_int sym(const char* s) { return sym_int::symbolic(s); }

TEST(reshape_symbolic, infers_minus_one_with_symbols) {
    // [N, 6, 4] -> [N, -1]: -1 = 24
    auto r = reshape_symbolic(vi({-1, 6, 4}, {"N", "", ""}), sv({sym("N"), num(-1)}), false, "t");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->shape, (shape_t{-1, 24}));
    EXPECT_EQ(r->dim_param(0), "N");
    // [N, 6, 4] -> [-1, 24]: -1 = N
    r = reshape_symbolic(vi({-1, 6, 4}, {"N", "", ""}), sv({num(-1), num(24)}), false, "t");
    EXPECT_EQ(r->shape, (shape_t{-1, 24}));
    EXPECT_EQ(r->dim_param(0), "N");
    // 0 copies the input dim (with its symbol)
    r = reshape_symbolic(vi({-1, 6, 4}, {"N", "", ""}), sv({num(0), num(3), num(-1)}), false, "t");
    EXPECT_EQ(r->shape, (shape_t{-1, 3, 8}));
    EXPECT_EQ(r->dim_param(0), "N");
    // allowzero keeps a literal 0
    r = reshape_symbolic(vi({0, 4}), sv({num(0), num(4)}), true, "t");
    EXPECT_EQ(r->shape, (shape_t{0, 4}));
    // unknown input dim: -1 stays unknown
    r = reshape_symbolic(vi({-1, 4}), sv({num(-1), num(2)}), false, "t");
    EXPECT_EQ(r->shape, (shape_t{-1, 2}));
    EXPECT_EQ(r->dim_param(0), "");
}

TEST(reshape_symbolic, rejects_impossible_targets) {
    EXPECT_THROW(reshape_symbolic(vi({2, 3}), sv({num(-1), num(4)}), false, "t"), shape_error);
    EXPECT_THROW(reshape_symbolic(vi({2, 3}), sv({num(5)}), false, "t"), shape_error);
    EXPECT_THROW(reshape_symbolic(vi({2, 3}), sv({num(-1), num(-1)}), false, "t"), shape_error);
    EXPECT_THROW(reshape_symbolic(vi({2, 3}), sv({num(-2), num(3)}), false, "t"), shape_error);
    EXPECT_THROW(reshape_symbolic(vi({2, 3}), sv({num(0), num(0), num(0)}), false, "t"), shape_error);
}

}  // namespace
}  // namespace quantsim
