// ONNX export: round trips (structure, bit-identical params, shapes), opset conversions, int4, atomic writes.
#include <gtest/gtest.h>

#include <filesystem>

#include <quantsim/io/file.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/builder.hpp>

#include "io/onnx_model_maker.hpp"
#include "io/round_trip.hpp"
#include "ir/test_ops.hpp"

namespace quantsim {
namespace {

namespace fs = std::filesystem;

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

graph sample_graph() {
    graph_builder b("sample", 13);
    auto x = b.input("x", {-1, 3, 5, 5});
    tensor w = tensor::empty({2, 3, 3, 3});
    for (std::int64_t i = 0; i < w.numel(); ++i) w.f32()[i] = 0.013f * static_cast<float>(i) - 0.3f;
    auto c = b.node("Conv", {x, b.param("w", w), b.param("b", tensor::from({0.25f, -1.5f}, {2}))},
                    {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}, {"group", std::int64_t{1}}}, "conv");
    auto r = b.node("Relu", {c}, {}, "relu");
    auto f = b.node("Flatten", {r}, {{"axis", std::int64_t{1}}}, "flat");
    b.output(b.node("Softmax", {f}, {{"axis", std::int64_t{-1}}}, node_options("softmax").outputs({"prob"})));
    graph g = b.build();
    g.infer_shapes(test::infer_with(test_registry()));
    return g;
}

TEST(onnx_export, round_trip_keeps_nodes_params_and_shapes) {
    const graph g = sample_graph();
    const std::string bytes = save_onnx_to_string(g);
    const graph h = load_onnx_from_memory(bytes, opts(), "roundtrip.onnx");
    test::expect_same_graph(g, h);
    EXPECT_EQ(h.outputs[0].shape, (shape_t{-1, 50}));
    EXPECT_EQ(h.outputs[0].dim_param(0), "N");
    // And the run gives identical outputs.
    tensor x = tensor::empty({2, 3, 5, 5});
    for (std::int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = static_cast<float>(i % 7) - 3.f;
    const tensor a = test::run_graph(g, test_registry(), {{"x", x}}).at("prob");
    const tensor b2 = test::run_graph(h, test_registry(), {{"x", x}}).at("prob");
    ASSERT_EQ(a.shape(), b2.shape());
    EXPECT_EQ(0, std::memcmp(a.raw(), b2.raw(), a.nbytes()));
}

TEST(onnx_export, writes_the_requested_opset_and_ir_version) {
    const graph g = sample_graph();
    for (std::int64_t opset : {13, 17, 18, 21}) {
        onnx_save_options so;
        so.opset = opset;
        onnx::ModelProto m;
        ASSERT_TRUE(m.ParseFromString(save_onnx_to_string(g, so)));
        EXPECT_EQ(m.opset_import(0).version(), opset);
        EXPECT_EQ(m.ir_version(), opset <= 14 ? 7 : opset <= 18 ? 8 : 10);
        EXPECT_EQ(m.producer_name(), "quantsim");
        EXPECT_EQ(m.graph().initializer_size(), 2);
    }
    onnx_save_options bad;
    bad.opset = 12;
    EXPECT_THROW(save_onnx_to_string(g, bad), unsupported_error);
    bad.opset = 22;
    EXPECT_THROW(save_onnx_to_string(g, bad), unsupported_error);
}

TEST(onnx_export, reduce_axes_become_attributes_before_opset_18) {
    graph_builder b("reduce", 18);
    auto x = b.input("x", {2, 6});
    auto r = b.node("ReduceMean", {x, b.constant_ints({1})}, {{"keepdims", std::int64_t{0}}}, "rm");
    auto s = b.node_multi("Split", {x}, {{"axis", std::int64_t{1}}}, node_options("split").outputs({"s0", "s1"}));
    b.output(r);
    b.output(s[0]);
    b.output(s[1]);
    const graph g = b.build();
    onnx_save_options so;
    so.opset = 13;
    onnx::ModelProto m13;
    ASSERT_TRUE(m13.ParseFromString(save_onnx_to_string(g, so)));
    const auto& n13 = m13.graph().node(0);
    EXPECT_EQ(n13.input_size(), 1);
    ASSERT_EQ(n13.attribute_size(), 2);
    EXPECT_EQ(m13.graph().initializer_size(), 0) << "the axes parameter is not needed at opset 13";
    so.opset = 18;
    onnx::ModelProto m18;
    ASSERT_TRUE(m18.ParseFromString(save_onnx_to_string(g, so)));
    EXPECT_EQ(m18.graph().node(0).input_size(), 2);
    bool has_num_outputs = false;
    for (const auto& a : m18.graph().node(1).attribute()) has_num_outputs |= a.name() == "num_outputs" && a.i() == 2;
    EXPECT_TRUE(has_num_outputs);
    // Both re-import into the same canonical graph.
    const graph a = load_onnx_from_memory(m13.SerializeAsString(), opts(false));
    const graph c = load_onnx_from_memory(m18.SerializeAsString(), opts(false));
    EXPECT_EQ(test::ints_of(a.params.at(a.nodes[0].inputs[1])), (std::vector<std::int64_t>{1}));
    EXPECT_EQ(test::ints_of(c.params.at(c.nodes[0].inputs[1])), (std::vector<std::int64_t>{1}));

    // Axes computed at run time cannot become an attribute.
    graph_builder b2("dyn", 18);
    auto x2 = b2.input("x", {2, 6});
    auto axes = b2.input("axes", {1}, dtype::int64);
    b2.output(b2.node("ReduceMean", {x2, axes}, {}, "rm"));
    so.opset = 13;
    EXPECT_THROW(save_onnx_to_string(b2.build(), so), unsupported_error);
}

TEST(onnx_export, integer_and_int4_params_round_trip_bit_identically) {
    graph_builder b("ints", 21);
    auto x = b.input("x", {4});
    tensor q4 = tensor::empty({5}, dtype::int4);
    const std::int8_t v4[] = {-8, -1, 0, 3, 7};
    std::memcpy(q4.raw(), v4, 5);
    tensor u4 = tensor::empty({3}, dtype::uint4);
    const std::uint8_t vu[] = {0, 9, 15};
    std::memcpy(u4.raw(), vu, 3);
    tensor i8 = tensor::from(std::vector<std::int8_t>{-128, 5, 127}, {3});
    tensor u8 = tensor::from(std::vector<std::uint8_t>{0, 128, 255}, {3});
    tensor i32 = tensor::from(std::vector<std::int32_t>{-5, 1 << 30}, {2});
    tensor i64 = tensor::from(std::vector<std::int64_t>{-1, std::int64_t{1} << 40}, {2});
    b.output(b.node("Identity", {x}, {}, "id"));
    for (auto [name, t] : {std::pair<const char*, tensor>{"q4", q4}, {"u4", u4}, {"i8", i8}, {"u8", u8}, {"i32", i32}, {"i64", i64}})
        b.output(b.node("Identity", {b.param(name, t)}, {}, std::string("id_") + name));
    const graph g = b.build();
    const graph h = load_onnx_from_memory(save_onnx_to_string(g), opts(false));
    test::expect_same_graph(g, h);
    onnx_save_options so;
    so.opset = 20;
    try {
        save_onnx_to_string(g, so);
        FAIL();
    } catch (const unsupported_error& e) {
        EXPECT_NE(std::string(e.what()).find("'q4'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("opset 21"), std::string::npos) << e.what();
    }
}

TEST(onnx_export, save_is_atomic_and_leaves_an_existing_file_on_failure) {
    const fs::path dir = fs::temp_directory_path() / "quantsim_export_test";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const fs::path p = dir / "model.onnx";
    const graph g = sample_graph();
    save_onnx(g, p);
    const auto first = read_file_string(p);
    onnx_save_options bad;
    bad.opset = 5;
    EXPECT_THROW(save_onnx(g, p, bad), unsupported_error);
    EXPECT_EQ(read_file_string(p), first);
    EXPECT_THROW(save_onnx(g, dir / "no_such_folder" / "m.onnx"), io_error);
    const graph h = load_onnx(p, opts());
    test::expect_same_graph(g, h);
    std::size_t files = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
    EXPECT_EQ(files, 1u) << "no temporary files are left behind";
    fs::remove_all(dir);
}

}  // namespace
}  // namespace quantsim
