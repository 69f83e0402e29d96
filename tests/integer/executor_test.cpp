// The integer executor on small graphs: hand-computed expectations for both profiles, the lowering it chooses,
// agreement with the fake-quant simulation where both compute the same thing, and clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <utility>
#include <string>

#include <quantsim/core/error.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/sim/integer_executor.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace qs = quantsim;

namespace {

constexpr std::uint32_t seed = 20261124;
// Share of outputs on which the integer mode and the fake-quant simulation must agree on a small random net; they
// differ only where a requantization lands within float error of a rounding tie.
constexpr double min_identical_vs_fake_quant = 0.9;

qs::quant_params act(float scale, std::int32_t zp) {
    return {{scale}, {zp}, 8, false, qs::qscheme::asymmetric, qs::granularity::per_tensor()};
}
qs::quant_params weight(float scale) {
    return {{scale}, {0}, 8, true, qs::qscheme::symmetric, qs::granularity::per_tensor()};
}

qs::tensor random_tensor(qs::shape_t shape, std::mt19937& rng, float scale = 1.0f) {
    qs::tensor t = qs::tensor::empty(std::move(shape));
    std::normal_distribution<float> d(0.0f, scale);
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

// x [1,1,2,2] -> Conv 1x1 (w = 1.0) -> y, with grids set by hand.
qs::quant_sim single_conv() {
    qs::graph_builder b("conv");
    auto x = b.input("x", {1, 1, 2, 2});
    auto w = b.param("w", qs::tensor::from({1.0f}, {1, 1, 1, 1}));
    auto y = b.node("Conv", {x, w}, {}, qs::node_options("conv").outputs({"y"}));
    b.output(y);
    qs::quant_sim sim(b.build());
    sim.set_encoding("x", act(0.5f, 0));
    sim.set_encoding("w", weight(0.25f));
    sim.set_encoding("y", act(1.0f, 0));
    return sim;
}

}  // namespace

TEST(IntegerExecutor, conv_matches_hand_computation_per_profile) {
    auto sim = single_conv();
    // x = 1.0, 2.0, 2.5, 3.5 -> q = 2, 4, 5, 7; w -> 4; acc = 8, 16, 20, 28; * (0.5 * 0.25 / 1) = 1, 2, 2.5, 3.5.
    const qs::tensor x = qs::tensor::from({1.0f, 2.0f, 2.5f, 3.5f}, {1, 1, 2, 2});
    qs::integer_executor ort(sim);
    const qs::tensor y = ort.run(x);
    EXPECT_EQ(y.f32()[0], 1.0f);
    EXPECT_EQ(y.f32()[1], 2.0f);
    EXPECT_EQ(y.f32()[2], 2.0f);  // 2.5: half to even
    EXPECT_EQ(y.f32()[3], 4.0f);
    qs::integer_options t;
    t.profile = qs::integer_profile::tflite;
    qs::integer_executor tfl(sim, t);
    const qs::tensor z = tfl.run(x);
    EXPECT_EQ(z.f32()[2], 3.0f);  // 2.5: half away from zero
    EXPECT_EQ(z.f32()[3], 4.0f);
    ASSERT_EQ(ort.plan().size(), 2u);
    EXPECT_EQ(ort.plan()[0].kernel, "QuantizeLinear");
    EXPECT_EQ(ort.plan()[1].kernel, "QLinearConv");
    // The raw run returns the integers.
    const auto raw = ort.run_raw({{"x", x}}, {"y"});
    ASSERT_EQ(raw.at("y").type(), qs::dtype::uint8);
    EXPECT_EQ(raw.at("y").data<std::uint8_t>()[3], 4);
}

TEST(IntegerExecutor, relu_after_conv_is_fused_as_the_runtime_fuses_it) {
    qs::graph_builder b("conv_relu");
    auto x = b.input("x", {1, 1, 2, 2});
    auto w = b.param("w", qs::tensor::from({-1.0f}, {1, 1, 1, 1}));
    auto c = b.node("Conv", {x, w}, {}, qs::node_options("conv").outputs({"c"}));
    auto r = b.node("Relu", {c}, {}, qs::node_options("relu").outputs({"y"}));
    b.output(r);
    qs::quant_sim sim(b.build());
    sim.set_encoding("x", act(0.5f, 4));
    sim.set_encoding("w", weight(0.25f));
    ASSERT_FALSE(sim.effective_params("c").has_value());  // Conv -> Relu is a supergroup: nothing quantized between
    sim.set_encoding("y", act(1.0f, 0));
    qs::integer_executor ex(sim);
    ASSERT_EQ(ex.plan().size(), 2u);
    EXPECT_EQ(ex.plan()[1].kernel, "QLinearConv+Relu");
    // x = -1, 1, 2, 3 -> q = 2, 6, 8, 10 (zp 4); acc = -4 * (q - 4) = 8, -8, -16, -24; * 0.125 = 1, -1, ...
    const qs::tensor y = ex.run(qs::tensor::from({-1.0f, 1.0f, 2.0f, 3.0f}, {1, 1, 2, 2}));
    EXPECT_EQ(y.f32()[0], 1.0f);
    EXPECT_EQ(y.f32()[1], 0.0f);
    EXPECT_EQ(y.f32()[3], 0.0f);
}

TEST(IntegerExecutor, clip6_is_removed_when_it_cannot_change_the_quantized_result) {
    // ONNX Runtime (ClipQuantFusion) removes Clip(0, 6) before a QuantizeLinear when clip_max >= the lower edge of
    // the values that round to 255 (254.5 steps, nudged below for round-half-even): a grid topping out a little
    // above 6 (6.01) still loses its Clip and the Conv becomes QLinearConv; one reaching half a step past 6 keeps
    // the Clip as a float op (and the Conv in float with it). Checked on MobileNetV2 against ONNX Runtime too
    // (tests/peer/integer_qdq_test.cpp).
    for (const auto& [top, fused] : {std::pair{6.0f, true}, std::pair{6.01f, true}, std::pair{6.1f, false}}) {
        SCOPED_TRACE(testing::Message() << "grid top " << top);
        qs::graph_builder b("conv_clip");
        auto x = b.input("x", {1, 1, 2, 2});
        auto w = b.param("w", qs::tensor::from({1.0f}, {1, 1, 1, 1}));
        auto c = b.node("Conv", {x, w}, {}, qs::node_options("conv").outputs({"c"}));
        auto r = b.node("Clip", {c, b.constant_scalar(0.0f), b.constant_scalar(6.0f)}, {},
                        qs::node_options("clip").outputs({"y"}));
        b.output(r);
        qs::quant_sim sim(b.build());
        sim.set_encoding("x", act(0.05f, 0));
        sim.set_encoding("w", weight(1.0f / 127));
        sim.set_encoding("y", act(top / 255, 0));
        qs::integer_executor ex(sim);
        std::map<std::string, std::string> kernel;
        for (const auto& p : ex.plan()) kernel[p.node] = p.kernel;
        if (fused)
            EXPECT_EQ(kernel["conv"], "QLinearConv+Clip");
        else
            EXPECT_EQ(kernel["clip"], "float Clip");
    }
}

TEST(IntegerExecutor, gemm_becomes_qgemm_with_its_int32_bias) {
    // Gemm(A, B, C) with alpha = beta = 1 is ONNX Runtime's QGemm: int32 bias plus the int32 product, requantized
    // per column (checked against ONNX Runtime on ResNet-18 and MobileNetV2 heads in tests/peer). Other alphas stay
    // float.
    for (const bool trans_b : {true, false})
        for (const float alpha : {1.0f, 0.5f}) {
            std::mt19937 rng(seed);
            SCOPED_TRACE(testing::Message() << "seed " << seed << ", transB " << trans_b << ", alpha " << alpha);
            qs::graph_builder b("gemm");
            auto x = b.input("x", {-1, 24});
            auto w = b.param("w", random_tensor(trans_b ? qs::shape_t{10, 24} : qs::shape_t{24, 10}, rng, 0.3f));
            auto c = b.param("c", random_tensor({10}, rng, 0.2f));
            auto y = b.node("Gemm", {x, w, c},
                            {{"transB", std::int64_t{trans_b ? 1 : 0}}, {"alpha", alpha}, {"beta", 1.0f}},
                            qs::node_options("fc").outputs({"y"}));
            b.output(y);
            qs::quantsim_options o;
            o.config = qs::quantsim_config::builtin(trans_b ? "per_channel" : "default");
            qs::quant_sim sim(b.build(), o);
            sim.compute_encodings(std::vector<qs::tensor>{random_tensor({32, 24}, rng)});
            qs::integer_executor ex(sim);
            std::map<std::string, std::string> kernel;
            for (const auto& p : ex.plan()) kernel[p.node] = p.kernel;
            EXPECT_EQ(kernel["fc"], alpha == 1.0f ? "QGemm" : "float Gemm");
            const qs::tensor in = random_tensor({7, 24}, rng);
            const qs::tensor a = ex.run(in), e = sim.forward(in);
            ASSERT_EQ(a.shape(), e.shape());
            const float step = sim.effective_params("y")->scale[0];
            std::int64_t same = 0;
            for (std::int64_t i = 0; i < a.numel(); ++i) {
                ASSERT_LE(std::fabs(a.f32()[i] - e.f32()[i]), 1.01f * step) << "element " << i;
                same += a.f32()[i] == e.f32()[i];
            }
            EXPECT_GE(static_cast<double>(same) / static_cast<double>(a.numel()), min_identical_vs_fake_quant);
            qs::integer_options ro;
            ro.vectorized = false;
            qs::integer_executor ref(sim, ro);
            const auto p = ex.run_raw({{"x", in}}, {"y"}), r = ref.run_raw({{"x", in}}, {"y"});
            EXPECT_EQ(std::memcmp(p.at("y").raw(), r.at("y").raw(), p.at("y").nbytes()), 0);
        }
}

TEST(IntegerExecutor, float_islands_equal_the_fake_quant_simulation) {
    // No op here has an integer kernel: every node runs dequantize -> float -> quantize, exactly the simulation.
    std::mt19937 rng(seed);
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    qs::graph_builder b("islands");
    auto x = b.input("x", {-1, 4, 5, 5});
    auto s = b.node("Sigmoid", {x}, {}, qs::node_options("sig").outputs({"s"}));
    auto h = b.node("HardSigmoid", {s}, {{"alpha", 0.3f}, {"beta", 0.4f}}, qs::node_options("hs").outputs({"h"}));
    auto d = b.node("Div", {h, b.constant_scalar(3.0f)}, {}, qs::node_options("div").outputs({"y"}));
    b.output(d);
    qs::quant_sim sim(b.build());
    sim.compute_encodings(std::vector<qs::tensor>{random_tensor({8, 4, 5, 5}, rng, 3.0f)});
    // Both as float islands and as the lookup tables they become (one quantized input, elementwise).
    for (const bool tables : {false, true}) {
        SCOPED_TRACE(tables ? "island tables" : "float islands");
        qs::integer_options o;
        o.island_tables = tables;
        qs::integer_executor ex(sim, o);
        const qs::tensor in = random_tensor({3, 4, 5, 5}, rng, 3.0f);
        const qs::tensor a = ex.run(in), e = sim.forward(in);
        ASSERT_EQ(a.shape(), e.shape());
        for (std::int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a.f32()[i], e.f32()[i]) << "element " << i;
        const std::string island = tables ? "table " : "float ";
        for (const auto& p : ex.plan())
            EXPECT_TRUE(p.kernel == "QuantizeLinear" || p.kernel.rfind(island, 0) == 0) << p.kernel;
    }
}

TEST(IntegerExecutor, small_net_lowers_to_integer_kernels_and_tracks_the_simulation) {
    std::mt19937 rng(seed);
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    qs::graph_builder b("net");
    auto x = b.input("x", {-1, 3, 12, 12});
    auto c1 = b.node("Conv", {x, b.param("w1", random_tensor({8, 3, 3, 3}, rng, 0.3f)),
                              b.param("b1", random_tensor({8}, rng, 0.1f))},
                     {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, qs::node_options("conv1").outputs({"c1"}));
    auto r1 = b.node("Relu", {c1}, {}, qs::node_options("relu1").outputs({"r1"}));
    auto dw = b.node("Conv", {r1, b.param("w2", random_tensor({8, 1, 3, 3}, rng, 0.3f))},
                     {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}, {"group", std::int64_t{8}}},
                     qs::node_options("dw").outputs({"c2"}));
    auto add = b.node("Add", {dw, r1}, {}, qs::node_options("add").outputs({"a"}));
    auto gap = b.node("GlobalAveragePool", {add}, {}, qs::node_options("gap").outputs({"g"}));
    auto mul = b.node("Mul", {add, gap}, {}, qs::node_options("se").outputs({"m"}));
    auto gap2 = b.node("GlobalAveragePool", {mul}, {}, qs::node_options("gap2").outputs({"g2"}));
    auto fl = b.node("Flatten", {gap2}, {}, qs::node_options("flat").outputs({"f"}));
    auto mm = b.node("MatMul", {fl, b.param("w3", random_tensor({8, 5}, rng, 0.5f))}, {},
                     qs::node_options("fc").outputs({"l"}));
    auto sm = b.node("Softmax", {mm}, {{"axis", std::int64_t{-1}}}, qs::node_options("softmax").outputs({"y"}));
    b.output(sm);
    qs::quantsim_options o;
    o.config = qs::quantsim_config::builtin("per_channel");
    qs::quant_sim sim(b.build(), o);
    sim.compute_encodings(std::vector<qs::tensor>{random_tensor({16, 3, 12, 12}, rng)});
    qs::integer_executor ex(sim);
    std::map<std::string, std::string> kernel;
    for (const auto& p : ex.plan()) kernel[p.node] = p.kernel;
    EXPECT_EQ(kernel["conv1"], "QLinearConv+Relu");
    EXPECT_EQ(kernel["dw"], "QLinearConv");
    EXPECT_EQ(kernel["add"], "QLinearAdd");
    EXPECT_EQ(kernel["gap"], "QLinearGlobalAveragePool");
    EXPECT_EQ(kernel["se"], "QLinearMul");
    EXPECT_EQ(kernel["fc"], "QLinearMatMul");
    EXPECT_EQ(kernel["softmax"], "QLinearSoftmax");
    EXPECT_EQ(kernel["flat"], "float Flatten");

    const qs::tensor in = random_tensor({10, 3, 12, 12}, rng);
    // Intermediates: the integer values stay on the simulated grid and within one step of the simulation.
    const auto ints = ex.run({{"x", in}}, {"a", "m"});
    const auto fq = sim.sim_executor().run({{"x", in}}, {"a", "m"});
    for (const char* v : {"a", "m"}) {
        const float step = sim.effective_params(v)->scale[0];
        std::int64_t same = 0;
        const auto& p = ints.at(v);
        const auto& q = fq.at(v);
        ASSERT_EQ(p.shape(), q.shape());
        for (std::int64_t i = 0; i < p.numel(); ++i) {
            ASSERT_LE(std::fabs(p.f32()[i] - q.f32()[i]), 1.01f * step) << v << " element " << i;
            same += p.f32()[i] == q.f32()[i];
        }
        EXPECT_GE(static_cast<double>(same) / static_cast<double>(p.numel()), min_identical_vs_fake_quant) << v;
    }
    // The scalar reference kernels give the same integers as the vectorized ones.
    qs::integer_options ro;
    ro.vectorized = false;
    qs::integer_executor ref(sim, ro);
    const std::vector<std::string> fetch = {"y", "c2", "r1", "a", "m", "g"};
    const auto a = ex.run_raw({{"x", in}}, fetch);
    const auto r = ref.run_raw({{"x", in}}, fetch);
    for (const auto& [name, t] : a) {
        ASSERT_EQ(t.type(), qs::dtype::uint8) << name;
        ASSERT_EQ(t.shape(), r.at(name).shape()) << name;
        EXPECT_EQ(std::memcmp(t.raw(), r.at(name).raw(), t.nbytes()), 0) << name;
    }
}

TEST(IntegerExecutor, errors_name_the_value_and_the_node) {
    std::mt19937 rng(seed);
    qs::graph_builder b("wide");
    auto x = b.input("x", {-1, 4});
    auto s = b.node("Sigmoid", {x}, {}, qs::node_options("sig").outputs({"s"}));
    b.output(s);
    qs::quant_sim sim(b.build());
    sim.set_bitwidth("s", 16);
    sim.compute_encodings(std::vector<qs::tensor>{random_tensor({4, 4}, rng)});
    try {
        qs::integer_executor ex(sim);
        FAIL() << "a 16-bit activation must be rejected";
    } catch (const qs::unsupported_error& e) {
        EXPECT_NE(std::string(e.what()).find("'s'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("sig"), std::string::npos) << e.what();
    }
    auto conv = single_conv();
    qs::integer_executor ex(conv);
    EXPECT_THROW(ex.run(std::vector<qs::tensor>{}), qs::invalid_argument);
    EXPECT_THROW(ex.run_raw({{"x", qs::tensor::zeros({1, 1, 2, 2})}}, {"nope"}), qs::invalid_argument);
    EXPECT_THROW(qs::parse_integer_profile("tensorrt"), qs::invalid_argument);
    EXPECT_EQ(qs::parse_integer_profile("tflite"), qs::integer_profile::tflite);
}
