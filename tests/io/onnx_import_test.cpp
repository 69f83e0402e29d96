// ONNX import: structure, canonical op forms per opset, and errors for malformed models (hand-made ModelProtos,
// truncated files, byte-flip fuzzing, external data).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include <quantsim/io/file.hpp>
#include <quantsim/io/onnx.hpp>

#include "io/onnx_model_maker.hpp"
#include "ir/test_ops.hpp"

namespace quantsim {
namespace {

namespace fs = std::filesystem;
using test::onnx_model_maker;

const op_registry& test_registry() {
    static const op_registry r = test::make_test_registry();
    return r;
}

onnx_load_options opts(bool check_ops = true) {
    onnx_load_options o;
    o.registry = &test_registry();
    o.check_ops = check_ops;
    o.infer_shapes = check_ops;
    return o;
}

graph load(const onnx_model_maker& m, bool check_ops = true) { return load_onnx_from_memory(m.bytes(), opts(check_ops), "test.onnx"); }

// Expects loading to throw E with every piece in the message.
template <class E>
void expect_load_error(const onnx_model_maker& m, std::vector<std::string> pieces, bool check_ops = false) {
    try {
        load(m, check_ops);
        FAIL() << "the model loaded";
    } catch (const E& e) {
        const std::string msg = e.what();
        for (const auto& p : pieces) EXPECT_NE(msg.find(p), std::string::npos) << "missing '" << p << "' in: " << msg;
    } catch (const error& e) {
        FAIL() << "wrong error type: " << e.what();
    }
}

// x [N,3,4,4] -> Conv(w from an initializer, b from a Constant node) -> Relu -> y
onnx_model_maker conv_model() {
    onnx_model_maker m(13);
    m.input("x", {-1, 3, 4, 4}, {"batch"});
    std::vector<float> w(2 * 3 * 3 * 3);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.01f * static_cast<float>(i);
    m.init("w", {2, 3, 3, 3}, w);
    m.constant("b", {2}, {0.5f, -0.5f});
    auto* c = m.node("Conv", {"x", "w", "b"}, {"c"}, "conv");
    onnx_model_maker::attr_ints(c, "pads", {1, 1, 1, 1});
    onnx_model_maker::attr_ints(c, "kernel_shape", {3, 3});
    m.node("Relu", {"c"}, {"y"}, "relu");
    m.output("y");
    return m;
}

TEST(onnx_import, conv_model_structure_params_and_shapes) {
    const graph g = load(conv_model());
    EXPECT_EQ(g.opset, 13);
    ASSERT_EQ(g.inputs.size(), 1u);
    EXPECT_EQ(g.inputs[0].name, "x");
    EXPECT_EQ(g.inputs[0].dim_param(0), "batch");
    ASSERT_EQ(g.nodes.size(), 2u) << "the Constant node became a parameter";
    EXPECT_EQ(g.nodes[0].name, "conv");
    EXPECT_EQ(g.nodes[0].inputs, (std::vector<std::string>{"x", "w", "b"}));
    ASSERT_TRUE(g.is_param("w"));
    ASSERT_TRUE(g.is_param("b"));
    EXPECT_EQ(g.params.at("w").shape(), (shape_t{2, 3, 3, 3}));
    EXPECT_FLOAT_EQ(g.params.at("w").f32()[7], 0.07f);
    EXPECT_FLOAT_EQ(g.params.at("b").f32()[1], -0.5f);
    EXPECT_EQ(g.outputs[0].shape, (shape_t{-1, 2, 4, 4}));
    EXPECT_EQ(g.outputs[0].dim_param(0), "batch");
}

TEST(onnx_import, unnamed_and_duplicate_node_names_are_made_unique) {
    onnx_model_maker m(13);
    m.input("x", {2});
    m.node("Relu", {"x"}, {"a"}, "");
    m.node("Relu", {"a"}, {"b"}, "dup");
    m.node("Relu", {"b"}, {"c"}, "dup");
    m.output("c");
    const graph g = load(m);
    EXPECT_EQ(g.nodes[0].name, "Relu_0");
    EXPECT_EQ(g.nodes[1].name, "dup");
    EXPECT_NE(g.nodes[2].name, "dup");
}

TEST(onnx_import, inputs_that_are_initializers_are_params) {
    onnx_model_maker m(13);
    m.input("x", {2});
    m.input("bias", {2});
    m.init("bias", {2}, {1.f, 2.f});
    m.node("Add", {"x", "bias"}, {"y"});
    m.output("y");
    const graph g = load(m);
    ASSERT_EQ(g.inputs.size(), 1u);
    EXPECT_TRUE(g.is_param("bias"));
}

TEST(onnx_import, typed_data_fields_and_dtypes) {
    onnx_model_maker m(13);
    m.input("x", {3});
    auto* t = m.g->add_initializer();
    t->set_name("i8");
    t->set_data_type(3);
    t->add_dims(3);
    for (int v : {-128, 0, 127}) t->add_int32_data(v);
    auto* d = m.g->add_initializer();
    d->set_name("f64");
    d->set_data_type(11);
    d->add_dims(2);
    d->add_double_data(1.5);
    d->add_double_data(-2.25);
    auto* bt = m.g->add_initializer();
    bt->set_name("flags");
    bt->set_data_type(9);
    bt->add_dims(2);
    bt->set_raw_data(std::string("\x01\x00", 2));
    auto* n = m.node("Identity", {"x"}, {"y"});
    (void)n;
    m.node("Identity", {"i8"}, {"o1"});
    m.node("Identity", {"f64"}, {"o2"});
    m.node("Identity", {"flags"}, {"o3"});
    m.output("y");
    m.output("o1", 3);
    m.output("o2", 11);
    m.output("o3", 9);
    const graph g = load(m, false);
    EXPECT_EQ(g.params.at("i8").type(), dtype::int8);
    EXPECT_EQ(g.params.at("i8").data<std::int8_t>()[0], -128);
    EXPECT_EQ(g.params.at("i8").data<std::int8_t>()[2], 127);
    EXPECT_EQ(g.params.at("f64").data<double>()[1], -2.25);
    EXPECT_EQ(g.params.at("flags").data<bool>()[0], true);
    EXPECT_EQ(g.params.at("flags").data<bool>()[1], false);
}

TEST(onnx_import, int4_initializers_unpack_with_sign) {
    onnx_model_maker m(21);
    m.input("x", {3});
    auto* t = m.g->add_initializer();
    t->set_name("q");
    t->set_data_type(22);  // INT4
    t->add_dims(3);
    // values -8, 7, -1 -> nibbles 0x8, 0x7, 0xF; packed low nibble first: 0x78, 0x0F
    t->set_raw_data(std::string("\x78\x0F", 2));
    auto* u = m.g->add_initializer();
    u->set_name("uq");
    u->set_data_type(21);  // UINT4
    u->add_dims(2);
    u->set_raw_data(std::string("\xF3", 1));
    m.node("Identity", {"x"}, {"y"});
    m.node("Identity", {"q"}, {"o"});
    m.node("Identity", {"uq"}, {"o2"});
    m.output("y");
    m.output("o", 22);
    m.output("o2", 21);
    const graph g = load(m, false);
    const tensor& q = g.params.at("q");
    EXPECT_EQ(q.type(), dtype::int4);
    EXPECT_EQ(q.data<std::int8_t>()[0], -8);
    EXPECT_EQ(q.data<std::int8_t>()[1], 7);
    EXPECT_EQ(q.data<std::int8_t>()[2], -1);
    EXPECT_EQ(g.params.at("uq").data<std::uint8_t>()[0], 3);
    EXPECT_EQ(g.params.at("uq").data<std::uint8_t>()[1], 15);
}

// ---- canonical forms ----------------------------------------------------------------------------------------------

const node& only_node(const graph& g, const std::string& op) {
    for (const auto& n : g.nodes)
        if (n.op_type == op) return n;
    throw std::runtime_error("no " + op + " node");
}

std::vector<std::int64_t> int_input(const graph& g, const node& n, std::size_t i) {
    EXPECT_TRUE(n.has_input(i)) << n.describe() << " input " << i;
    if (!n.has_input(i)) return {};
    return test::ints_of(g.params.at(n.inputs[i]));
}

TEST(onnx_canonical, clip_attributes_become_scalar_inputs) {
    onnx_model_maker m(9);
    m.input("x", {2});
    auto* c = m.node("Clip", {"x"}, {"y"}, "clip");
    onnx_model_maker::attr_f(c, "min", 0.f);
    onnx_model_maker::attr_f(c, "max", 6.f);
    auto* c2 = m.node("Clip", {"y"}, {"z"}, "clip_max_only");
    onnx_model_maker::attr_f(c2, "max", 1.f);
    m.output("z");
    const graph g = load(m, false);
    const node& n = g.nodes[0];
    ASSERT_EQ(n.inputs.size(), 3u);
    EXPECT_TRUE(n.attrs.empty());
    EXPECT_EQ(g.params.at(n.inputs[1]).shape(), shape_t{});
    EXPECT_EQ(g.params.at(n.inputs[1]).f32()[0], 0.f);
    EXPECT_EQ(g.params.at(n.inputs[2]).f32()[0], 6.f);
    const node& n2 = g.nodes[1];
    ASSERT_EQ(n2.inputs.size(), 3u);
    EXPECT_TRUE(n2.inputs[1].empty()) << "absent min is an omitted input";
    EXPECT_EQ(g.params.at(n2.inputs[2]).f32()[0], 1.f);
}

TEST(onnx_canonical, squeeze_unsqueeze_reduce_slice_split_pad_topk_axes_become_inputs) {
    onnx_model_maker m(9);
    m.input("x", {1, 4, 6});
    onnx_model_maker::attr_ints(m.node("Squeeze", {"x"}, {"s"}, "sq"), "axes", {0});
    onnx_model_maker::attr_ints(m.node("Unsqueeze", {"s"}, {"u"}, "unsq"), "axes", {0});
    auto* r = m.node("ReduceMean", {"u"}, {"r"}, "rm");
    onnx_model_maker::attr_ints(r, "axes", {-1});
    onnx_model_maker::attr_i(r, "keepdims", 1);
    auto* sl = m.node("Slice", {"r"}, {"sl"}, "slice");
    onnx_model_maker::attr_ints(sl, "starts", {1});
    onnx_model_maker::attr_ints(sl, "ends", {3});
    onnx_model_maker::attr_ints(sl, "axes", {1});
    auto* sp = m.node("Split", {"u"}, {"p0", "p1"}, "split");
    onnx_model_maker::attr_i(sp, "axis", 1);
    onnx_model_maker::attr_ints(sp, "split", {1, 3});
    auto* pd = m.node("Pad", {"p1"}, {"pd"}, "pad");
    onnx_model_maker::attr_ints(pd, "pads", {0, 0, 1, 0, 0, 1});
    onnx_model_maker::attr_f(pd, "value", 2.5f);
    auto* tk = m.node("TopK", {"pd"}, {"tv", "ti"}, "topk");
    onnx_model_maker::attr_i(tk, "k", 2);
    m.output("sl");
    m.output("p0");
    m.output("tv");
    const graph g = load(m, false);
    EXPECT_EQ(int_input(g, only_node(g, "Squeeze"), 1), (std::vector<std::int64_t>{0}));
    EXPECT_EQ(int_input(g, only_node(g, "Unsqueeze"), 1), (std::vector<std::int64_t>{0}));
    const node& rm = only_node(g, "ReduceMean");
    EXPECT_EQ(int_input(g, rm, 1), (std::vector<std::int64_t>{-1}));
    EXPECT_FALSE(rm.has_attr("axes"));
    EXPECT_EQ(rm.attr_int("keepdims"), 1);
    const node& s = only_node(g, "Slice");
    EXPECT_EQ(int_input(g, s, 1), (std::vector<std::int64_t>{1}));
    EXPECT_EQ(int_input(g, s, 2), (std::vector<std::int64_t>{3}));
    EXPECT_EQ(int_input(g, s, 3), (std::vector<std::int64_t>{1}));
    EXPECT_TRUE(s.attrs.empty());
    EXPECT_EQ(int_input(g, only_node(g, "Split"), 1), (std::vector<std::int64_t>{1, 3}));
    const node& p = only_node(g, "Pad");
    EXPECT_EQ(int_input(g, p, 1), (std::vector<std::int64_t>{0, 0, 1, 0, 0, 1}));
    EXPECT_EQ(g.params.at(p.inputs[2]).f32()[0], 2.5f);
    EXPECT_EQ(int_input(g, only_node(g, "TopK"), 1), (std::vector<std::int64_t>{2}));
    // The parameter names say where they come from.
    EXPECT_EQ(rm.inputs[1], "rm.axes");
}

TEST(onnx_canonical, newer_opsets_keep_their_forms) {
    onnx_model_maker m(18);
    m.input("x", {2, 6});
    m.init_i64("axes", {1});
    m.node("ReduceMean", {"x", "axes"}, {"r"}, "rm");
    auto* sp = m.node("Split", {"x"}, {"a", "b", "c"}, "split");
    onnx_model_maker::attr_i(sp, "axis", 1);
    onnx_model_maker::attr_i(sp, "num_outputs", 3);
    m.output("r");
    m.output("a");
    m.output("b");
    m.output("c");
    const graph g = load(m, false);
    EXPECT_EQ(only_node(g, "ReduceMean").inputs[1], "axes");
    EXPECT_FALSE(only_node(g, "Split").has_attr("num_outputs"));

    auto* bad = m.g->mutable_node(1);
    bad->mutable_attribute(1)->set_i(4);
    expect_load_error<parse_error>(m, {"node 'split' (Split)", "num_outputs = 4", "3 outputs"});
}

TEST(onnx_canonical, upsample_and_resize_10_become_asymmetric_resize) {
    onnx_model_maker m(9);
    m.input("x", {1, 1, 2, 2});
    m.constant("scales", {4}, {1.f, 1.f, 2.f, 2.f});
    auto* u = m.node("Upsample", {"x", "scales"}, {"y"}, "up");
    onnx_model_maker::attr_s(u, "mode", "nearest");
    m.output("y");
    graph g = load(m, false);
    const node& r = only_node(g, "Resize");
    ASSERT_EQ(r.inputs.size(), 3u);
    EXPECT_TRUE(r.inputs[1].empty());
    EXPECT_EQ(r.inputs[2], "scales");
    EXPECT_EQ(r.attr_string("coordinate_transformation_mode"), "asymmetric");
    EXPECT_EQ(r.attr_string("nearest_mode"), "floor");
    EXPECT_EQ(r.attr_string("mode"), "nearest");

    onnx_model_maker m10(10);
    m10.input("x", {1, 1, 4, 4});
    m10.constant("scales", {4}, {1.f, 1.f, 0.5f, 0.5f});
    onnx_model_maker::attr_s(m10.node("Resize", {"x", "scales"}, {"y"}, "rs"), "mode", "linear");
    m10.output("y");
    g = load(m10, false);
    const node& r10 = only_node(g, "Resize");
    EXPECT_EQ(r10.attr_string("mode"), "linear");
    EXPECT_EQ(r10.attr_string("coordinate_transformation_mode"), "asymmetric");
    EXPECT_EQ(r10.attr_string("nearest_mode"), "ceil") << "ONNX Runtime's rule when every scale shrinks";
}

TEST(onnx_canonical, resize_11_drops_empty_roi_and_scales_and_writes_defaults) {
    onnx_model_maker m(11);
    m.input("x", {1, 1, 2, 2});
    m.constant("roi", {0}, {});
    m.constant("scales", {0}, {});
    m.init_i64("sizes", {1, 1, 4, 4});
    m.node("Resize", {"x", "roi", "scales", "sizes"}, {"y"}, "rs");
    m.output("y");
    const graph g = load(m, false);
    const node& r = only_node(g, "Resize");
    ASSERT_EQ(r.inputs.size(), 4u);
    EXPECT_TRUE(r.inputs[1].empty());
    EXPECT_TRUE(r.inputs[2].empty());
    EXPECT_EQ(r.inputs[3], "sizes");
    EXPECT_EQ(r.attr_string("coordinate_transformation_mode"), "half_pixel");
    EXPECT_EQ(r.attr_string("nearest_mode"), "round_prefer_floor");
    EXPECT_FALSE(g.is_param("roi")) << "unused parameters are pruned";
}

TEST(onnx_canonical, dropout_becomes_identity_and_batchnorm_loses_training_attrs) {
    onnx_model_maker m(11);
    m.input("x", {1, 2, 2, 2});
    m.node("Dropout", {"x"}, {"d", "mask"}, "drop");
    for (const char* p : {"s", "b", "mean", "var"}) m.init(p, {2}, {1.f, 1.f});
    auto* bn = m.node("BatchNormalization", {"d", "s", "b", "mean", "var"}, {"y"}, "bn");
    onnx_model_maker::attr_f(bn, "momentum", 0.9f);
    onnx_model_maker::attr_f(bn, "epsilon", 1e-3f);
    m.output("y");
    const graph g = load(m);
    EXPECT_EQ(g.nodes[0].op_type, "Identity");
    EXPECT_EQ(g.nodes[0].outputs.size(), 1u);
    EXPECT_FALSE(g.nodes[1].has_attr("momentum"));
    EXPECT_FLOAT_EQ(g.nodes[1].attr_float("epsilon"), 1e-3f);

    m.output("mask");
    expect_load_error<unsupported_error>(m, {"node 'drop'", "mask"});
}

TEST(onnx_canonical, legacy_softmax_on_the_last_axis_keeps_one_node) {
    onnx_model_maker m(9);
    m.input("x", {-1, 5}, {"N"});
    onnx_model_maker::attr_i(m.node("Softmax", {"x"}, {"y"}, "sm"), "axis", 1);
    m.output("y");
    const graph g = load(m);
    ASSERT_EQ(g.nodes.size(), 1u);
    EXPECT_EQ(g.nodes[0].attr_int("axis"), -1);
}

// Opset < 13 softmax over a non-last axis normalizes over ALL trailing dims: the rewrite must reproduce that.
TEST(onnx_canonical, legacy_softmax_on_an_inner_axis_is_rewritten_exactly) {
    onnx_model_maker m(11);
    m.input("x", {2, 3, 4});
    m.node("Softmax", {"x"}, {"y"}, "sm");  // default axis 1 -> coerce to [2, 12]
    m.output("y");
    const graph g = load(m);
    ASSERT_EQ(g.nodes.size(), 4u);
    EXPECT_EQ(only_node(g, "Flatten").attr_int("axis"), 1);
    EXPECT_EQ(only_node(g, "Softmax").attr_int("axis"), -1);
    EXPECT_EQ(only_node(g, "Softmax").name, "sm");
    EXPECT_EQ(g.outputs[0].shape, (shape_t{2, 3, 4}));
    tensor x = tensor::empty({2, 3, 4});
    for (std::int64_t i = 0; i < 24; ++i) x.f32()[i] = std::sin(0.7f * static_cast<float>(i));
    const tensor y = test::run_graph(g, test_registry(), {{"x", x}}).at("y");
    ASSERT_EQ(y.shape(), (shape_t{2, 3, 4}));
    for (int b = 0; b < 2; ++b) {
        double sum = 0;
        for (int i = 0; i < 12; ++i) sum += std::exp(double(x.f32()[b * 12 + i]));
        for (int i = 0; i < 12; ++i)
            EXPECT_NEAR(y.f32()[b * 12 + i], std::exp(double(x.f32()[b * 12 + i])) / sum, 1e-6) << b << "," << i;
    }
}

// ---- errors ------------------------------------------------------------------------------------------------------

TEST(onnx_errors, malformed_models_name_the_problem) {
    {
        auto m = conv_model();
        m.g->mutable_initializer(0)->mutable_raw_data()->resize(10);
        expect_load_error<parse_error>(m, {"test.onnx", "initializer 'w'", "raw_data has 10 bytes", "needs 216"});
    }
    {
        auto m = conv_model();
        m.g->mutable_initializer(0)->set_dims(0, -2);
        expect_load_error<parse_error>(m, {"initializer 'w'", "negative dimension"});
    }
    {
        auto m = conv_model();
        auto* t = m.g->mutable_initializer(0);
        t->set_dims(0, std::int64_t{1} << 40);
        t->set_dims(1, std::int64_t{1} << 40);
        expect_load_error<resource_error>(m, {"initializer 'w'"});
    }
    {
        auto m = conv_model();
        m.g->mutable_initializer(0)->set_data_type(10);  // FLOAT16
        expect_load_error<unsupported_error>(m, {"initializer 'w'", "FLOAT16"});
    }
    {
        auto m = conv_model();
        m.g->mutable_node(2)->set_input(0, "ghost");
        expect_load_error<graph_error>(m, {"node 'relu' (Relu)", "ghost", "dangling"});
    }
    {
        auto m = conv_model();
        m.g->mutable_node(1)->set_input(0, "y");  // conv reads relu's output: a cycle
        expect_load_error<graph_error>(m, {"cycle", "node 'conv' (Conv)", "node 'relu' (Relu)"});
    }
    {
        auto m = conv_model();
        m.g->mutable_node(2)->set_output(0, "c");
        expect_load_error<graph_error>(m, {"node 'relu' (Relu)", "'c'", "two nodes"});
    }
    {
        auto m = conv_model();
        m.g->mutable_node(2)->set_op_type("Mystery");
        expect_load_error<unsupported_error>(m, {"node 'relu' (Mystery)", "no registered schema"}, true);
    }
    {
        auto m = conv_model();
        auto* a = m.g->mutable_node(2)->add_attribute();
        a->set_name("body");
        a->set_type(onnx::AttributeProto::GRAPH);
        a->mutable_g()->set_name("sub");
        expect_load_error<unsupported_error>(m, {"node 'relu' (Relu)", "'body'", "subgraph"});
    }
    {
        onnx_model_maker m(6);
        m.input("x", {1});
        m.node("Relu", {"x"}, {"y"});
        m.output("y");
        expect_load_error<unsupported_error>(m, {"opset 6"});
    }
    {
        auto m = conv_model();
        m.model.clear_opset_import();
        expect_load_error<parse_error>(m, {"opset"});
    }
    {
        auto m = conv_model();
        m.g->clear_output();
        expect_load_error<parse_error>(m, {"no outputs"});
    }
    {
        auto m = conv_model();
        m.g->mutable_output(0)->set_name("nope");
        expect_load_error<graph_error>(m, {"model output 'nope'"});
    }
    {
        auto m = conv_model();
        m.g->mutable_node(0)->mutable_attribute(0)->mutable_t()->add_dims(5);  // Constant value: 2 values, shape [2, 5]
        expect_load_error<parse_error>(m, {"raw_data has 8 bytes"});
    }
    {
        auto m = conv_model();
        m.g->mutable_input(0)->mutable_type()->mutable_tensor_type()->set_elem_type(8);  // STRING
        expect_load_error<unsupported_error>(m, {"graph input 'x'", "STRING"});
    }
    {
        auto m = conv_model();
        auto* t = m.g->mutable_initializer(0);
        t->clear_raw_data();
        t->add_float_data(1.f);
        expect_load_error<parse_error>(m, {"float_data has 1 values", "needs 54"});
    }
}

TEST(onnx_errors, not_a_model_and_empty_input) {
    EXPECT_THROW(load_onnx_from_memory(std::string_view(""), opts()), parse_error);
    EXPECT_THROW(load_onnx_from_memory(std::string_view("this is not protobuf at all \xff\xff\xff"), opts()), parse_error);
    try {
        load_onnx(fs::path(QUANTSIM_TEST_DATA_DIR) / "does_not_exist.onnx", opts());
        FAIL();
    } catch (const io_error& e) {
        EXPECT_NE(std::string(e.what()).find("does_not_exist.onnx"), std::string::npos);
    }
}

TEST(onnx_errors, every_truncation_is_a_clean_error) {
    const std::string bytes = conv_model().bytes();
    int errors = 0;
    for (std::size_t len = 0; len < bytes.size(); ++len) {
        try {
            load_onnx_from_memory(std::string_view(bytes.data(), len), opts(false), "truncated.onnx");
        } catch (const error&) {
            ++errors;
        }
    }
    // Some prefixes happen to be complete messages with a smaller graph (and must then load or fail cleanly);
    // nearly all must fail.
    EXPECT_GT(errors, static_cast<int>(bytes.size() * 9 / 10));
}

// An opset-9 model that exercises the canonicalization paths (Clip/Slice/Squeeze/Unsqueeze attributes, Upsample,
// legacy Softmax, Dropout, BatchNormalization) so that fuzzing reaches them.
onnx_model_maker legacy_model() {
    onnx_model_maker m(9);
    m.input("x", {-1, 2, 4, 4}, {"N"});
    for (const char* p : {"s", "b", "mean", "var"}) m.init(p, {2}, {1.f, 0.5f});
    m.node("BatchNormalization", {"x", "s", "b", "mean", "var"}, {"bn"}, "bn");
    auto* c = m.node("Clip", {"bn"}, {"c"}, "clip");
    onnx_model_maker::attr_f(c, "min", 0.f);
    onnx_model_maker::attr_f(c, "max", 6.f);
    m.node("Dropout", {"c"}, {"d"}, "drop");
    m.constant("scales", {4}, {1.f, 1.f, 2.f, 2.f});
    onnx_model_maker::attr_s(m.node("Upsample", {"d", "scales"}, {"u"}, "up"), "mode", "nearest");
    auto* sl = m.node("Slice", {"u"}, {"sl"}, "slice");
    onnx_model_maker::attr_ints(sl, "starts", {0});
    onnx_model_maker::attr_ints(sl, "ends", {1});
    onnx_model_maker::attr_ints(sl, "axes", {1});
    onnx_model_maker::attr_ints(m.node("Squeeze", {"sl"}, {"sq"}, "squeeze"), "axes", {1});
    onnx_model_maker::attr_ints(m.node("Unsqueeze", {"sq"}, {"un"}, "unsqueeze"), "axes", {1});
    onnx_model_maker::attr_i(m.node("Softmax", {"un"}, {"y"}, "softmax"), "axis", 2);
    m.output("y");
    return m;
}

TEST(onnx_import, legacy_model_loads_in_canonical_form) {
    const graph g = load(legacy_model(), false);
    EXPECT_EQ(only_node(g, "Clip").inputs.size(), 3u);
    EXPECT_EQ(only_node(g, "Resize").attr_string("coordinate_transformation_mode"), "asymmetric");
    EXPECT_EQ(only_node(g, "Identity").name, "drop");
    EXPECT_EQ(only_node(g, "Slice").inputs.size(), 4u);
    EXPECT_EQ(only_node(g, "Flatten").attr_int("axis"), 2) << "rank unknown without shapes: the exact rewrite";
}

// Seed and iteration count can be raised for a longer local run: QUANTSIM_FUZZ_SEED, QUANTSIM_FUZZ_ITERATIONS.
TEST(onnx_errors, random_byte_flips_never_crash) {
    const char* seed_env = std::getenv("QUANTSIM_FUZZ_SEED");
    const char* iter_env = std::getenv("QUANTSIM_FUZZ_ITERATIONS");
    const std::uint32_t seed = seed_env ? static_cast<std::uint32_t>(std::strtoul(seed_env, nullptr, 10)) : 20240611u;
    const int iterations = iter_env ? std::atoi(iter_env) : 2000;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    for (const std::string& base : {conv_model().bytes(), legacy_model().bytes()}) {
        int loaded = 0, rejected = 0;
        for (int iter = 0; iter < iterations; ++iter) {
            std::string b = base;
            const int flips = 1 + static_cast<int>(rng() % 4);
            for (int f = 0; f < flips; ++f) b[rng() % b.size()] = static_cast<char>(rng() & 0xff);
            try {
                // Rotate: the test ops (strict), no op checks, and the built-in ops (their infer functions too).
                onnx_load_options o = opts(iter % 3 != 1);
                if (iter % 3 == 2) o.registry = nullptr;
                const graph g = load_onnx_from_memory(b, o, "fuzz.onnx");
                ++loaded;
            } catch (const error&) {
                ++rejected;
            } catch (const std::exception& e) {
                ADD_FAILURE() << "iteration " << iter << ": non-quantsim exception: " << e.what();
            }
        }
        EXPECT_EQ(loaded + rejected, iterations);
        EXPECT_GT(rejected, 0);
        EXPECT_GT(loaded, 0) << "some flips (inside float data, names) must leave a loadable model";
    }
}

// ---- external data -------------------------------------------------------------------------------------------------

class onnx_external_data : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("quantsim_ext_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_ / "model");
        std::vector<float> w(2 * 3 * 3 * 3);
        for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i);
        std::string blob(16, 'x');  // 16 bytes of padding before the data
        blob.append(reinterpret_cast<const char*>(w.data()), w.size() * 4);
        write_file_atomic(dir_ / "model" / "weights.bin", std::string_view(blob));
        write_file_atomic(dir_ / "outside.bin", std::string_view(blob));
    }
    void TearDown() override { fs::remove_all(dir_); }

    // conv_model with w stored externally.
    onnx_model_maker model(const std::string& location, const std::string& offset = "16", const std::string& length = "216") {
        auto m = conv_model();
        auto* t = m.g->mutable_initializer(0);
        t->clear_raw_data();
        t->set_data_location(onnx::TensorProto_DataLocation_EXTERNAL);
        auto add = [&](const char* k, const std::string& v) {
            if (v.empty()) return;
            auto* e = t->add_external_data();
            e->set_key(k);
            e->set_value(v);
        };
        add("location", location);
        add("offset", offset);
        add("length", length);
        return m;
    }
    graph load_file(const onnx_model_maker& m) {
        const fs::path p = dir_ / "model" / "m.onnx";
        write_file_atomic(p, std::string_view(m.bytes()));
        return load_onnx(p, opts());
    }
    template <class E>
    void expect_error(const onnx_model_maker& m, const std::string& piece) {
        try {
            load_file(m);
            FAIL() << "loaded";
        } catch (const E& e) {
            EXPECT_NE(std::string(e.what()).find(piece), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("initializer 'w'"), std::string::npos) << e.what();
        }
    }
    fs::path dir_;
};

TEST_F(onnx_external_data, loads_relative_to_the_model_folder) {
    const graph g = load_file(model("weights.bin"));
    EXPECT_EQ(g.params.at("w").f32()[53], 53.f);
    // From memory: only with an explicit folder.
    EXPECT_THROW(load_onnx_from_memory(model("weights.bin").bytes(), opts()), io_error);
    auto o = opts();
    o.external_data_dir = dir_ / "model";
    EXPECT_EQ(load_onnx_from_memory(model("weights.bin").bytes(), o).params.at("w").f32()[1], 1.f);
}

TEST_F(onnx_external_data, rejects_escapes_and_bad_ranges) {
    expect_error<parse_error>(model((dir_ / "outside.bin").string()), "absolute");
    expect_error<parse_error>(model("../outside.bin"), "leaves the model's folder");
    expect_error<parse_error>(model("sub/../../outside.bin"), "leaves the model's folder");
    expect_error<parse_error>(model("weights.bin", "200"), "runs past the end");
    expect_error<parse_error>(model("weights.bin", "16", "100"), "length 100");
    expect_error<parse_error>(model("weights.bin", "-4"), "not a non-negative integer");
    expect_error<parse_error>(model("weights.bin", "99999999999999999999"), "not a non-negative integer");
    expect_error<io_error>(model("missing.bin"), "cannot read external data");
    std::error_code ec;
    fs::create_symlink(dir_ / "outside.bin", dir_ / "model" / "link.bin", ec);
    if (!ec) expect_error<parse_error>(model("link.bin"), "outside the model's folder");
}

}  // namespace
}  // namespace quantsim
