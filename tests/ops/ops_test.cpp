// Op schemas through the executor: hand-computed values, broadcasting, int64 shape arithmetic, attribute
// handling, shape inference with symbolic dims, and the errors bad input gets.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <quantsim/ir/kernels/conv.hpp>
#include <quantsim/ir/kernels/elementwise.hpp>
#include <quantsim/ir/op.hpp>

#include "ops_test_util.hpp"

namespace quantsim::test {
namespace {

using attrs = std::map<std::string, attribute_value, std::less<>>;

std::vector<float> values(const tensor& t) { return {t.f32(), t.f32() + t.numel()}; }
std::vector<std::int64_t> ivalues(const tensor& t) {
    return {t.data<std::int64_t>(), t.data<std::int64_t>() + t.numel()};
}

// ---- registry ------------------------------------------------------------------------------------------------------

TEST(registry, has_every_op_of_the_target_models) {
    // The PaddleOCR classifier / detector / recognizer and torchvision resnet18 / mobilenet_v2 op sets.
    const char* ops[] = {"Conv", "ConvTranspose", "BatchNormalization", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div",
                         "Pow", "Sqrt", "Relu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "Softmax",
                         "GlobalAveragePool", "AveragePool", "MaxPool", "Resize", "Concat", "Reshape", "Flatten",
                         "Transpose", "Squeeze", "Unsqueeze", "Slice", "Shape", "Cast", "ReduceMean", "Gather",
                         "Identity", "Tanh", "Exp", "Erf", "LayerNormalization", "ReduceMax", "Split", "Pad"};
    for (const char* op : ops) EXPECT_NE(op_registry::global().find(op), nullptr) << op;
    EXPECT_NE(op_registry::global().find("Relu", "ai.onnx"), nullptr);
    EXPECT_EQ(op_registry::global().find("NoSuchOp"), nullptr);
}

TEST(registry, users_can_add_and_replace_ops) {
    op_registry r;
    register_builtin_ops(r);
    const std::size_t n = r.op_types().size();
    op_schema s;
    s.op_type = "Twice";
    s.domain = "my.domain";
    s.infer = [](const node&, const op_inputs_info& in) { return std::vector<value_info>{*in.infos[0]}; };
    s.create = [](const node&, const op_inputs_info&) -> std::unique_ptr<op_kernel> {
        struct k : op_kernel {
            void run(const std::vector<const tensor*>& in, std::vector<tensor>& out) override {
                out[0] = in[0]->clone();
                for (auto& v : out[0].span<float>()) v *= 2.0f;
            }
        };
        return std::make_unique<k>();
    };
    r.add(s);
    r.add(s);  // replaces, does not duplicate
    EXPECT_EQ(r.op_types().size(), n + 1);
    graph g = single_op_graph("Twice", {tensor::from({1.0f, 2.0f}, {2})}, {});
    g.nodes[0].domain = "my.domain";
    executor_options o;
    o.registry = &r;
    executor ex(g, o);
    EXPECT_EQ(values(ex.run({tensor::from({1.0f, 2.0f}, {2})})[0]), (std::vector<float>{2.0f, 4.0f}));
}

// ---- elementwise ---------------------------------------------------------------------------------------------------

TEST(elementwise, broadcasting_hand_values) {
    const tensor a = tensor::from({1, 2, 3, 4, 5, 6}, {2, 3});
    const tensor row = tensor::from({10, 20, 30}, {3});
    const tensor col = tensor::from({100, 200}, {2, 1});
    EXPECT_EQ(values(run_single("Add", {a, row})[0]), (std::vector<float>{11, 22, 33, 14, 25, 36}));
    EXPECT_EQ(values(run_single("Sub", {a, col})[0]), (std::vector<float>{-99, -98, -97, -196, -195, -194}));
    const tensor out = run_single("Mul", {col, row})[0];  // [2,1] x [3] -> [2,3]
    EXPECT_EQ(out.shape(), (shape_t{2, 3}));
    EXPECT_EQ(values(out), (std::vector<float>{1000, 2000, 3000, 2000, 4000, 6000}));
    EXPECT_EQ(values(run_single("Div", {a, tensor::from({2.0f}, {})})[0]),
              (std::vector<float>{0.5f, 1, 1.5f, 2, 2.5f, 3}));
    EXPECT_EQ(values(run_single("Pow", {a, tensor::from({2.0f}, {1})})[0]), (std::vector<float>{1, 4, 9, 16, 25, 36}));
    // NCHW x [N, C, 1, 1] (squeeze-excitation scale) and [C, 1, 1] (per channel)
    std::mt19937 rng(kSeed + 20);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 20));
    const tensor x = random_tensor({2, 3, 4, 5}, rng);
    const tensor s = random_tensor({2, 3, 1, 1}, rng);
    const tensor c = random_tensor({3, 1, 1}, rng);
    const tensor y1 = run_single("Mul", {x, s})[0];
    const tensor y2 = run_single("Add", {x, c})[0];
    for (std::int64_t n = 0; n < 2; ++n)
        for (std::int64_t ch = 0; ch < 3; ++ch)
            for (std::int64_t i = 0; i < 20; ++i) {
                const std::int64_t k = (n * 3 + ch) * 20 + i;
                EXPECT_FLOAT_EQ(y1.f32()[k], x.f32()[k] * s.f32()[n * 3 + ch]);
                EXPECT_FLOAT_EQ(y2.f32()[k], x.f32()[k] + c.f32()[ch]);
            }
}

TEST(elementwise, incompatible_shapes_name_the_node) {
    try {
        run_single("Add", {tensor::zeros({2, 3}), tensor::zeros({4})});
        FAIL() << "expected shape_error";
    } catch (const shape_error& e) {
        EXPECT_NE(std::string(e.what()).find("the_Add"), std::string::npos) << e.what();
    }
}

TEST(elementwise, int64_arithmetic_and_comparisons) {
    const tensor a = i64({6, -7, 8});
    const tensor b = i64({3, 2, -3});
    EXPECT_EQ(ivalues(run_single("Add", {a, b})[0]), (std::vector<std::int64_t>{9, -5, 5}));
    EXPECT_EQ(ivalues(run_single("Div", {a, b})[0]), (std::vector<std::int64_t>{2, -3, -2}));  // truncation
    EXPECT_EQ(ivalues(run_single("Mul", {a, i64({2}, {})})[0]), (std::vector<std::int64_t>{12, -14, 16}));
    EXPECT_EQ(ivalues(run_single("Mod", {a, b})[0]), (std::vector<std::int64_t>{0, 1, -1}));  // sign of divisor
    const tensor eq = run_single("Equal", {a, i64({6, 7, 8})})[0];
    ASSERT_EQ(eq.type(), dtype::boolean);
    EXPECT_TRUE(eq.data<bool>()[0]);
    EXPECT_FALSE(eq.data<bool>()[1]);
    const tensor w = run_single("Where", {eq, a, i64({0})})[0];
    EXPECT_EQ(ivalues(w), (std::vector<std::int64_t>{6, 0, 8}));
    EXPECT_THROW(run_single("Div", {a, i64({0})}), numeric_error);
    EXPECT_THROW(run_single("Add", {a, tensor::from({1.0f}, {1})}), invalid_argument);
}

TEST(elementwise, activations_hand_values) {
    const tensor x = tensor::from({-4.0f, -1.0f, 0.0f, 1.0f, 4.0f}, {5});
    EXPECT_EQ(values(run_single("Relu", {x})[0]), (std::vector<float>{0, 0, 0, 1, 4}));
    const auto hs = values(run_single("HardSigmoid", {x}, {}, {{"alpha", 0.2f}, {"beta", 0.5f}})[0]);
    const float hs_expect[] = {0.0f, 0.3f, 0.5f, 0.7f, 1.0f};
    for (int i = 0; i < 5; ++i) EXPECT_NEAR(hs[static_cast<std::size_t>(i)], hs_expect[i], 1e-7f);
    const auto sw = values(run_single("HardSwish", {x})[0]);
    EXPECT_FLOAT_EQ(sw[1], -1.0f * (1.0f / 3.0f));
    EXPECT_FLOAT_EQ(sw[3], 1.0f * (2.0f / 3.0f));
    EXPECT_FLOAT_EQ(sw[4], 4.0f);
    const auto sg = values(run_single("Sigmoid", {x})[0]);
    EXPECT_NEAR(sg[3], 0.7310586f, 1e-6f);
    EXPECT_NEAR(values(run_single("Tanh", {x})[0])[3], std::tanh(1.0f), 1e-6f);
    EXPECT_NEAR(values(run_single("Erf", {x})[0])[3], std::erf(1.0f), 1e-6f);
    EXPECT_NEAR(values(run_single("Exp", {x})[0])[4], std::exp(4.0f), 1e-6f * std::exp(4.0f));
    EXPECT_EQ(values(run_single("Sqrt", {tensor::from({4.0f, 9.0f}, {2})})[0]), (std::vector<float>{2, 3}));
    EXPECT_EQ(values(run_single("LeakyRelu", {x}, {}, {{"alpha", 0.5f}})[0])[0], -2.0f);
    EXPECT_EQ(values(run_single("Neg", {x})[0])[4], -4.0f);
}

TEST(elementwise, clip_with_optional_bounds) {
    const tensor x = tensor::from({-2.0f, 0.5f, 7.0f}, {3});
    EXPECT_EQ(values(run_single("Clip", {x}, {{"lo", tensor::from({0.0f}, {})}, {"hi", tensor::from({6.0f}, {})}})[0]),
              (std::vector<float>{0.0f, 0.5f, 6.0f}));
    // max only: min omitted (empty name)
    graph g = single_op_graph("Clip", {x}, {{"hi", tensor::from({1.0f}, {})}}, {}, {"x0", "", "hi"});
    executor ex(g);
    EXPECT_EQ(values(ex.run({x})[0]), (std::vector<float>{-2.0f, 0.5f, 1.0f}));
    EXPECT_EQ(values(run_single("Clip", {x})[0]), values(x));
}

TEST(elementwise, cast_between_types) {
    const tensor f = tensor::from({-1.7f, 2.5f, 0.0f}, {3});
    const tensor i = run_single("Cast", {f}, {}, {{"to", std::int64_t{7}}})[0];
    ASSERT_EQ(i.type(), dtype::int64);
    EXPECT_EQ(ivalues(i), (std::vector<std::int64_t>{-1, 2, 0}));
    const tensor i32 = run_single("Cast", {i}, {}, {{"to", std::int64_t{6}}})[0];
    EXPECT_EQ(i32.type(), dtype::int32);
    const tensor back = run_single("Cast", {i32}, {}, {{"to", std::int64_t{1}}})[0];
    EXPECT_EQ(values(back), (std::vector<float>{-1.0f, 2.0f, 0.0f}));
    const tensor b = run_single("Cast", {f}, {}, {{"to", std::int64_t{9}}})[0];
    EXPECT_EQ(b.type(), dtype::boolean);
    EXPECT_TRUE(b.data<bool>()[0]);
    EXPECT_FALSE(b.data<bool>()[2]);
    EXPECT_THROW(run_single("Cast", {f}, {}, {{"to", std::int64_t{16}}}), unsupported_error);  // bfloat16
}

// ---- conv / gemm / matmul ------------------------------------------------------------------------------------------

TEST(conv_op, attributes_auto_pad_and_1d) {
    std::mt19937 rng(kSeed + 30);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 30));
    const tensor x = random_tensor({2, 4, 7, 9}, rng);
    const tensor w = random_tensor({6, 2, 3, 3}, rng);
    const tensor b = random_tensor({6}, rng);
    // SAME_UPPER with stride 2: out = ceil(in / 2); total pad (3 - 1) split begin 0 / end 1 for 7.
    const tensor y = run_single("Conv", {x}, {{"w", w}, {"b", b}},
                                {{"group", std::int64_t{2}}, {"strides", ints({2, 2})}, {"auto_pad", std::string("SAME_UPPER")}})[0];
    ASSERT_EQ(y.shape(), (shape_t{2, 6, 4, 5}));
    conv_geometry g;
    g.in_channels = 4;
    g.out_channels = 6;
    g.group = 2;
    g.kernel = {3, 3};
    g.stride = {2, 2};
    g.pad_begin = {1, 1};  // total pad for 7 (stride 2, out 4): (4-1)*2+3-7 = 2 -> 1/1; for 9: (5-1)*2+3-9 = 2 -> 1/1
    g.pad_end = {1, 1};
    tensor ref = tensor::empty({2, 6, 4, 5});
    conv2d_ref(g, 2, 7, 9, x.f32(), w.f32(), b.f32(), ref.f32());
    EXPECT_TRUE(all_close(y, ref, kSumTol, 1e-5f));
    // 1-D conv with dilation and pads
    const tensor x1 = random_tensor({1, 3, 20}, rng);
    const tensor w1 = random_tensor({5, 3, 3}, rng);
    const tensor y1 = run_single("Conv", {x1}, {{"w", w1}}, {{"dilations", ints({2})}, {"pads", ints({1, 2})}})[0];
    ASSERT_EQ(y1.shape(), (shape_t{1, 5, 19}));
    conv_geometry g1;
    g1.in_channels = 3;
    g1.out_channels = 5;
    g1.kernel = {1, 3};
    g1.dilation = {1, 2};
    g1.pad_begin = {0, 1};
    g1.pad_end = {0, 2};
    tensor ref1 = tensor::empty({1, 5, 1, 19});
    conv2d_ref(g1, 1, 1, 20, x1.f32(), w1.f32(), nullptr, ref1.f32());
    EXPECT_TRUE(all_close(y1.f32(), ref1.f32(), y1.numel(), kSumTol, 1e-5f));
}

TEST(conv_op, runtime_weight_and_errors) {
    std::mt19937 rng(kSeed + 31);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 31));
    const tensor x = random_tensor({1, 2, 5, 5}, rng);
    const tensor w = random_tensor({3, 2, 3, 3}, rng);
    // Weight as a runtime input (e.g. produced by a fake-quant node): packed per run.
    const tensor y = run_single("Conv", {x, w}, {}, {{"pads", ints({1, 1, 1, 1})}})[0];
    const tensor yc = run_single("Conv", {x}, {{"w", w}}, {{"pads", ints({1, 1, 1, 1})}})[0];
    EXPECT_TRUE(all_close(y, yc, 0.0f, 0.0f));
    // channel mismatch -> shape_error naming the node
    try {
        run_single("Conv", {random_tensor({1, 3, 5, 5}, rng)}, {{"w", w}});
        FAIL();
    } catch (const shape_error& e) {
        EXPECT_NE(std::string(e.what()).find("the_Conv"), std::string::npos) << e.what();
    }
    EXPECT_THROW(run_single("Conv", {x}, {{"w", w}}, {{"auto_pad", std::string("BOGUS")}}), unsupported_error);
    EXPECT_THROW(run_single("Conv", {random_tensor({1, 2, 3, 3, 3}, rng)}, {{"w", random_tensor({1, 2, 1, 1, 1}, rng)}}),
                 unsupported_error);
    EXPECT_THROW(run_single("Conv", {x}, {{"w", w}}, {{"group", std::int64_t{2}}}), shape_error);
}

TEST(conv_transpose_op, output_shape_and_padding) {
    std::mt19937 rng(kSeed + 32);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 32));
    const tensor x = random_tensor({1, 4, 5, 5}, rng);
    const tensor w = random_tensor({4, 3, 2, 2}, rng);
    const tensor y = run_single("ConvTranspose", {x}, {{"w", w}}, {{"strides", ints({2, 2})}})[0];
    EXPECT_EQ(y.shape(), (shape_t{1, 3, 10, 10}));
    const tensor y2 = run_single("ConvTranspose", {x}, {{"w", w}},
                                 {{"strides", ints({2, 2})}, {"output_padding", ints({1, 1})}})[0];
    EXPECT_EQ(y2.shape(), (shape_t{1, 3, 11, 11}));
    const tensor y3 = run_single("ConvTranspose", {x}, {{"w", w}},
                                 {{"strides", ints({2, 2})}, {"output_shape", ints({10, 9})}})[0];
    EXPECT_EQ(y3.shape(), (shape_t{1, 3, 10, 9}));
}

TEST(gemm_op, transposes_alpha_beta_and_bias_broadcast) {
    const tensor a = tensor::from({1, 2, 3, 4, 5, 6}, {3, 2});  // A^T is [2, 3]
    const tensor b = tensor::from({1, 0, 0, 1, 1, 1}, {2, 3});  // B^T is [3, 2]
    const tensor c = tensor::from({10, 20}, {2});
    // Y = 2 * A^T(2x3) * B^T(3x2) + 0.5 * C
    const tensor y = run_single("Gemm", {a}, {{"b", b}, {"c", c}},
                                {{"transA", std::int64_t{1}}, {"transB", std::int64_t{1}}, {"alpha", 2.0f}, {"beta", 0.5f}})[0];
    ASSERT_EQ(y.shape(), (shape_t{2, 2}));
    // A^T = [[1 3 5] [2 4 6]], B^T = [[1 1] [0 1] [0 1]] -> A^T B^T = [[1 9] [2 12]]
    EXPECT_EQ(values(y), (std::vector<float>{2 * 1 + 5, 2 * 9 + 10, 2 * 2 + 5, 2 * 12 + 10}));
}

TEST(matmul_op, batched_broadcast_and_1d) {
    std::mt19937 rng(kSeed + 33);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 33));
    const tensor a = random_tensor({2, 1, 4, 5}, rng);
    const tensor b = random_tensor({3, 5, 6}, rng);
    const tensor y = run_single("MatMul", {a, b})[0];
    ASSERT_EQ(y.shape(), (shape_t{2, 3, 4, 6}));
    for (std::int64_t i = 0; i < 2; ++i)
        for (std::int64_t j = 0; j < 3; ++j)
            for (std::int64_t r = 0; r < 4; ++r)
                for (std::int64_t c = 0; c < 6; ++c) {
                    double s = 0;
                    for (std::int64_t k = 0; k < 5; ++k) s += a.f32()[(i * 4 + r) * 5 + k] * b.f32()[(j * 5 + k) * 6 + c];
                    EXPECT_NEAR(y.f32()[((i * 3 + j) * 4 + r) * 6 + c], s, 1e-5);
                }
    const tensor v = random_tensor({5}, rng);
    EXPECT_EQ(run_single("MatMul", {v, random_tensor({5, 6}, rng)})[0].shape(), (shape_t{6}));
    EXPECT_EQ(run_single("MatMul", {random_tensor({4, 5}, rng), v})[0].shape(), (shape_t{4}));
    EXPECT_THROW(run_single("MatMul", {random_tensor({4, 5}, rng), random_tensor({4, 5}, rng)}), shape_error);
}

// ---- normalization / pooling / resize / softmax / reduce ------------------------------------------------------------

TEST(batchnorm_op, inference_formula) {
    const tensor x = tensor::from({1, 2, 3, 4}, {1, 2, 2, 1});
    const tensor y = run_single("BatchNormalization", {x},
                                {{"s", tensor::from({2.0f, 1.0f}, {2})}, {"b", tensor::from({0.5f, -1.0f}, {2})},
                                 {"m", tensor::from({1.0f, 3.0f}, {2})}, {"v", tensor::from({4.0f, 1.0f}, {2})}},
                                {{"epsilon", 0.0f}})[0];
    // ch0: (x - 1) / 2 * 2 + 0.5 ; ch1: (x - 3) / 1 * 1 - 1
    EXPECT_EQ(values(y), (std::vector<float>{0.5f, 1.5f, -1.0f, 0.0f}));
}

TEST(layernorm_op, normalizes_trailing_axes) {
    const tensor x = tensor::from({1, 2, 3, 4, 10, 10, 10, 10}, {2, 4});
    const tensor y = run_single("LayerNormalization", {x}, {{"s", tensor::full({4}, 2.0f)}, {"b", tensor::full({4}, 1.0f)}},
                                {{"epsilon", 0.0f}})[0];
    const float inv = 1.0f / std::sqrt(1.25f);
    EXPECT_NEAR(y.f32()[0], (1 - 2.5f) * inv * 2 + 1, 1e-5f);
    EXPECT_NEAR(y.f32()[3], (4 - 2.5f) * inv * 2 + 1, 1e-5f);
    EXPECT_TRUE(std::isinf(y.f32()[4]) || std::isnan(y.f32()[4]) || y.f32()[4] == 1.0f);  // zero variance, eps 0
}

TEST(pool_ops, maxpool_avgpool_global_hand_values) {
    const tensor x = tensor::from({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, {1, 1, 4, 4});
    EXPECT_EQ(values(run_single("MaxPool", {x}, {}, {{"kernel_shape", ints({2, 2})}, {"strides", ints({2, 2})}})[0]),
              (std::vector<float>{6, 8, 14, 16}));
    const tensor ap = run_single("AveragePool", {x}, {}, {{"kernel_shape", ints({3, 2})}, {"strides", ints({3, 2})}})[0];
    EXPECT_EQ(ap.shape(), (shape_t{1, 1, 1, 2}));
    EXPECT_EQ(values(ap), (std::vector<float>{(1 + 2 + 5 + 6 + 9 + 10) / 6.0f, (3 + 4 + 7 + 8 + 11 + 12) / 6.0f}));
    const tensor gp = run_single("GlobalAveragePool", {x})[0];
    EXPECT_EQ(gp.shape(), (shape_t{1, 1, 1, 1}));
    EXPECT_FLOAT_EQ(gp.f32()[0], 8.5f);
    // SAME_UPPER keeps ceil(4 / 3) = 2 outputs
    EXPECT_EQ(run_single("MaxPool", {x}, {}, {{"kernel_shape", ints({3, 3})}, {"strides", ints({3, 3})},
                                             {"auto_pad", std::string("SAME_UPPER")}})[0].shape(),
              (shape_t{1, 1, 2, 2}));
    // Indices output is not supported
    EXPECT_THROW(run_single("MaxPool", {x}, {}, {{"kernel_shape", ints({2, 2})}}, {}, 2), unsupported_error);
}

TEST(resize_op, nearest_asymmetric_floor_and_linear_half_pixel) {
    const tensor x = tensor::from({1, 2, 3, 4}, {1, 1, 2, 2});
    const tensor scales = tensor::from({1.0f, 1.0f, 2.0f, 2.0f}, {4});
    attrs nearest{{"mode", std::string("nearest")},
                  {"coordinate_transformation_mode", std::string("asymmetric")},
                  {"nearest_mode", std::string("floor")}};
    graph g = single_op_graph("Resize", {x}, {{"scales", scales}}, nearest, {"x0", "", "scales"});
    executor ex(g);
    const tensor y = ex.run({x})[0];
    EXPECT_EQ(values(y), (std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}));
    attrs linear{{"mode", std::string("linear")}, {"coordinate_transformation_mode", std::string("half_pixel")}};
    graph g2 = single_op_graph("Resize", {x}, {{"scales", scales}}, linear, {"x0", "", "scales"});
    executor ex2(g2);
    const tensor y2 = ex2.run({x})[0];
    // Row 0 (input row 0 clamped): x coords -0.25, 0.25, 0.75, 1.25 -> 1, 1.25, 1.75, 2
    EXPECT_EQ(std::vector<float>(y2.f32(), y2.f32() + 4), (std::vector<float>{1.0f, 1.25f, 1.75f, 2.0f}));
    // Row 1: y coord 0.25 -> mix rows 0.75/0.25
    EXPECT_FLOAT_EQ(y2.f32()[4], 1.5f);
    // sizes instead of scales
    graph g3 = single_op_graph("Resize", {x}, {{"sizes", i64({1, 1, 3, 1})}}, nearest, {"x0", "", "", "sizes"});
    executor ex3(g3);
    EXPECT_EQ(ex3.run({x})[0].shape(), (shape_t{1, 1, 3, 1}));
    // resizing the channel axis is not supported
    graph g4 = single_op_graph("Resize", {x}, {{"scales", tensor::from({1.0f, 2.0f, 1.0f, 1.0f}, {4})}}, nearest,
                               {"x0", "", "scales"});
    executor ex4(g4);
    EXPECT_THROW(ex4.run({x}), unsupported_error);
    try {
        executor bad(single_op_graph("Resize", {x}, {{"scales", scales}}, {{"mode", std::string("area")}}, {"x0", "", "scales"}));
        FAIL();
    } catch (const unsupported_error& e) {
        EXPECT_NE(std::string(e.what()).find("the_Resize"), std::string::npos);
    }
}

TEST(softmax_op, axis_semantics) {
    const tensor x = tensor::from({1, 2, 3, 1, 1, 1}, {2, 3});
    const tensor y = run_single("Softmax", {x}, {}, {{"axis", std::int64_t{-1}}})[0];
    const float e1 = std::exp(1.0f), e2 = std::exp(2.0f), e3 = std::exp(3.0f), s = e1 + e2 + e3;
    EXPECT_NEAR(y.f32()[0], e1 / s, 1e-6f);
    EXPECT_NEAR(y.f32()[2], e3 / s, 1e-6f);
    EXPECT_NEAR(y.f32()[4], 1.0f / 3.0f, 1e-6f);
    const tensor y0 = run_single("Softmax", {x}, {}, {{"axis", std::int64_t{0}}})[0];
    EXPECT_NEAR(y0.f32()[0], 0.5f, 1e-6f);
    EXPECT_NEAR(y0.f32()[2], e3 / (e3 + e1), 1e-6f);
    EXPECT_THROW(run_single("Softmax", {x}, {}, {{"axis", std::int64_t{2}}}), std::exception);
}

TEST(reduce_op, mean_over_axes_input_and_keepdims) {
    const tensor x = tensor::from({1, 2, 3, 4, 5, 6}, {1, 2, 3});
    const tensor m = run_single("ReduceMean", {x}, {{"axes", i64({-1})}})[0];
    EXPECT_EQ(m.shape(), (shape_t{1, 2, 1}));
    EXPECT_EQ(values(m), (std::vector<float>{2, 5}));
    const tensor m2 = run_single("ReduceMean", {x}, {{"axes", i64({0, 2})}}, {{"keepdims", std::int64_t{0}}})[0];
    EXPECT_EQ(m2.shape(), (shape_t{2}));
    const tensor all = run_single("ReduceSum", {x}, {}, {{"keepdims", std::int64_t{0}}})[0];
    EXPECT_EQ(all.shape(), shape_t{});
    EXPECT_FLOAT_EQ(all.f32()[0], 21.0f);
    const tensor mx = run_single("ReduceMax", {x}, {{"axes", i64({1})}})[0];
    EXPECT_EQ(values(mx), (std::vector<float>{4, 5, 6}));
    // Non-contiguous axes (transposed internally)
    const tensor y = tensor::from({1, 2, 3, 4, 5, 6, 7, 8}, {2, 2, 2});
    EXPECT_EQ(values(run_single("ReduceSum", {y}, {{"axes", i64({0, 2})}}, {{"keepdims", std::int64_t{0}}})[0]),
              (std::vector<float>{1 + 2 + 5 + 6, 3 + 4 + 7 + 8}));
    EXPECT_THROW(run_single("ReduceMean", {x}, {{"axes", i64({3})}}), std::exception);
}

// ---- shape ops with int64 ------------------------------------------------------------------------------------------

TEST(shape_ops, shape_gather_concat_reshape_chain) {
    // Reshape x [N, C, H, W] to [N, -1] through Shape -> Gather(0) -> Unsqueeze -> Concat(-1) -> Reshape.
    graph g;
    g.inputs.push_back(vinfo("x", {-1, 2, 3, 4}, dtype::float32, {"N", "", "", ""}));
    g.params["zero"] = i64({0}, {});
    g.params["axes0"] = i64({0});
    g.params["minus1"] = i64({-1});
    g.nodes.push_back(make_node("Shape", {"x"}, {"s"}));
    g.nodes.push_back(make_node("Gather", {"s", "zero"}, {"n"}, {{"axis", std::int64_t{0}}}));
    g.nodes.push_back(make_node("Unsqueeze", {"n", "axes0"}, {"n1"}));
    g.nodes.push_back(make_node("Concat", {"n1", "minus1"}, {"shape"}, {{"axis", std::int64_t{0}}}));
    g.nodes.push_back(make_node("Reshape", {"x", "shape"}, {"y"}));
    g.outputs.push_back(vinfo("y", {-1, -1}));
    executor ex(g);
    for (std::int64_t n : {1, 3}) {
        const tensor x = tensor::zeros({n, 2, 3, 4});
        auto out = ex.run({{"x", x}}, {"y", "shape", "s"});
        EXPECT_EQ(out["y"].shape(), (shape_t{n, 24}));
        EXPECT_EQ(ivalues(out["shape"]), (std::vector<std::int64_t>{n, -1}));
        EXPECT_EQ(ivalues(out["s"]), (std::vector<std::int64_t>{n, 2, 3, 4}));
        EXPECT_TRUE(out["y"].shares_storage(x)) << "Reshape is a view";
    }
}

TEST(shape_ops, slice_squeeze_unsqueeze_transpose_flatten_split) {
    const tensor x = tensor::from({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {1, 3, 4});
    // Slice with negative step and axes/steps inputs
    const tensor s = run_single("Slice", {x}, {{"st", i64({-1})}, {"en", i64({-1000})}, {"ax", i64({2})}, {"sp", i64({-2})}})[0];
    EXPECT_EQ(s.shape(), (shape_t{1, 3, 2}));
    EXPECT_EQ(values(s), (std::vector<float>{3, 1, 7, 5, 11, 9}));
    const tensor s2 = run_single("Slice", {x}, {{"st", i64({1})}, {"en", i64({100})}})[0];  // axes default: 0..k-1
    EXPECT_EQ(s2.shape(), (shape_t{0, 3, 4}));
    EXPECT_EQ(run_single("Squeeze", {x}, {{"a", i64({0})}})[0].shape(), (shape_t{3, 4}));
    EXPECT_EQ(run_single("Squeeze", {x})[0].shape(), (shape_t{3, 4}));
    EXPECT_THROW(run_single("Squeeze", {x}, {{"a", i64({1})}}), shape_error);
    EXPECT_EQ(run_single("Unsqueeze", {x}, {{"a", i64({0, -1})}})[0].shape(), (shape_t{1, 1, 3, 4, 1}));
    const tensor t = run_single("Transpose", {x}, {}, {{"perm", ints({0, 2, 1})}})[0];
    EXPECT_EQ(t.shape(), (shape_t{1, 4, 3}));
    EXPECT_EQ(values(t), (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
    EXPECT_EQ(run_single("Flatten", {x}, {}, {{"axis", std::int64_t{2}}})[0].shape(), (shape_t{3, 4}));
    const auto parts = run_single("Split", {x}, {{"sp", i64({1, 3})}}, {{"axis", std::int64_t{2}}}, {}, 2);
    EXPECT_EQ(parts[0].shape(), (shape_t{1, 3, 1}));
    EXPECT_EQ(values(parts[1]), (std::vector<float>{1, 2, 3, 5, 6, 7, 9, 10, 11}));
    const auto eq = run_single("Split", {x}, {}, {{"axis", std::int64_t{1}}}, {"x0"}, 3);
    EXPECT_EQ(values(eq[2]), (std::vector<float>{8, 9, 10, 11}));
    const tensor c = run_single("Concat", {x, x}, {}, {{"axis", std::int64_t{-2}}})[0];
    EXPECT_EQ(c.shape(), (shape_t{1, 6, 4}));
    const tensor gth = run_single("Gather", {x}, {{"i", i64({2, -3}, {2})}}, {{"axis", std::int64_t{1}}})[0];
    EXPECT_EQ(gth.shape(), (shape_t{1, 2, 4}));
    EXPECT_EQ(values(gth), (std::vector<float>{8, 9, 10, 11, 0, 1, 2, 3}));
    EXPECT_THROW(run_single("Gather", {x}, {{"i", i64({3})}}, {{"axis", std::int64_t{1}}}), invalid_argument);
}

TEST(shape_ops, pad_expand_tile_constant_of_shape_range) {
    const tensor x = tensor::from({1, 2, 3, 4}, {2, 2});
    EXPECT_EQ(values(run_single("Pad", {x}, {{"p", i64({0, 1, 0, 0})}, {"v", tensor::from({9.0f}, {})}})[0]),
              (std::vector<float>{9, 1, 2, 9, 3, 4}));
    EXPECT_EQ(values(run_single("Pad", {x}, {{"p", i64({1, 0, 0, 0})}}, {{"mode", std::string("edge")}})[0]),
              (std::vector<float>{1, 2, 1, 2, 3, 4}));
    EXPECT_EQ(values(run_single("Pad", {x}, {{"p", i64({0, 1, 0, 1})}}, {{"mode", std::string("reflect")}})[0]),
              (std::vector<float>{2, 1, 2, 1, 4, 3, 4, 3}));
    EXPECT_EQ(run_single("Expand", {x}, {{"s", i64({3, 1, 2})}})[0].shape(), (shape_t{3, 2, 2}));
    EXPECT_EQ(values(run_single("Tile", {x}, {{"r", i64({1, 2})}})[0]), (std::vector<float>{1, 2, 1, 2, 3, 4, 3, 4}));
    const tensor cs = run_single("ConstantOfShape", {i64({2, 3})}, {}, {{"value", tensor::from({7.0f}, {1})}})[0];
    EXPECT_EQ(cs.shape(), (shape_t{2, 3}));
    EXPECT_EQ(cs.f32()[5], 7.0f);
    const tensor r = run_single("Range", {}, {{"a", i64({1}, {})}, {"b", i64({10}, {})}, {"c", i64({3}, {})}})[0];
    EXPECT_EQ(ivalues(r), (std::vector<std::int64_t>{1, 4, 7}));
}

// ---- shape inference ------------------------------------------------------------------------------------------------

TEST(infer, conv_pool_broadcast_keep_symbolic_batch) {
    const op_registry& reg = op_registry::global();
    const value_info x = vinfo("x", {-1, 3, 48, -1}, dtype::float32, {"N", "", "", "W"});
    const tensor w = tensor::zeros({8, 3, 3, 3});
    op_inputs_info in;
    in.infos = {&x, nullptr};
    in.constants = {nullptr, &w};
    node conv = make_node("Conv", {"x", "w"}, {"y"}, {{"strides", ints({2, 2})}, {"pads", ints({1, 1, 1, 1})}});
    const auto out = reg.find("Conv")->infer(conv, in);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].shape, (shape_t{-1, 8, 24, -1}));
    ASSERT_EQ(out[0].dim_params.size(), 4u);
    EXPECT_EQ(out[0].dim_params[0], "N");
    // AveragePool on a symbolic width still computes the height
    const value_info p = vinfo("p", {-1, 480, 3, -1}, dtype::float32, {"N", "", "", "W"});
    op_inputs_info pin;
    pin.infos = {&p};
    pin.constants = {nullptr};
    node pool = make_node("AveragePool", {"p"}, {"q"}, {{"kernel_shape", ints({3, 2})}, {"strides", ints({3, 2})}});
    EXPECT_EQ(reg.find("AveragePool")->infer(pool, pin)[0].shape, (shape_t{-1, 480, 1, -1}));
    // Broadcasting: [N, 8, 1, 1] with [N, 8, 24, W] keeps both symbols
    const value_info a = vinfo("a", {-1, 8, 1, 1}, dtype::float32, {"N", "", "", ""});
    const value_info b = vinfo("b", {-1, 8, 24, -1}, dtype::float32, {"N", "", "", "W"});
    op_inputs_info bin;
    bin.infos = {&a, &b};
    bin.constants = {nullptr, nullptr};
    node mul = make_node("Mul", {"a", "b"}, {"c"});
    const auto m = reg.find("Mul")->infer(mul, bin)[0];
    EXPECT_EQ(m.shape, (shape_t{-1, 8, 24, -1}));
    EXPECT_EQ(m.dim_params[0], "N");
    EXPECT_EQ(m.dim_params[3], "W");
    // Incompatible known dims: shape_error naming the node
    const value_info c5 = vinfo("c5", {5, 7});
    op_inputs_info ein;
    ein.infos = {&c5, &b};
    ein.constants = {nullptr, nullptr};
    try {
        reg.find("Add")->infer(make_node("Add", {"c5", "b"}, {"z"}, {}, "adder"), ein);
        FAIL();
    } catch (const shape_error& e) {
        EXPECT_NE(std::string(e.what()).find("adder"), std::string::npos);
    }
}

TEST(infer, reshape_with_symbolic_batch) {
    const op_registry& reg = op_registry::global();
    const value_info x = vinfo("x", {-1, 2, 3, 4}, dtype::float32, {"N", "", "", ""});
    const tensor shape = i64({0, -1});
    op_inputs_info in;
    in.infos = {&x, nullptr};
    in.constants = {nullptr, &shape};
    const auto out = reg.find("Reshape")->infer(make_node("Reshape", {"x", "s"}, {"y"}), in)[0];
    EXPECT_EQ(out.shape, (shape_t{-1, 24}));
    EXPECT_EQ(out.dim_params[0], "N");
    const tensor bad = i64({5, -1});
    in.constants = {nullptr, &bad};
    const value_info k = vinfo("k", {2, 3, 4});
    in.infos = {&k, nullptr};
    EXPECT_THROW(reg.find("Reshape")->infer(make_node("Reshape", {"k", "s"}, {"y"}), in), shape_error);
}

}  // namespace
}  // namespace quantsim::test
