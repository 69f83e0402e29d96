#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <unistd.h>

#include <quantsim/core/error.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/quant/fake_quant.hpp>
#include <quantsim/sim/end_layers.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace qs = quantsim;

namespace {

constexpr std::uint32_t seed = 20261122;

qs::tensor random_tensor(qs::shape_t shape, std::mt19937& rng, float scale = 1.0f) {
    qs::tensor t = qs::tensor::empty(std::move(shape));
    std::normal_distribution<float> d(0.0f, scale);
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

// x -> Conv(3->8, 3x3) -> Relu -> Conv(8->8, 1x1) -> Add(residual with relu1) -> Relu -> MaxPool -> GlobalAveragePool
//   -> Flatten -> Gemm(8->4) -> Softmax
// Node "n" with the single output "n_out".
qs::node_options named(const std::string& n) { return qs::node_options(n).outputs({n + "_out"}); }

qs::graph small_net(std::mt19937& rng) {
    qs::graph_builder b("small_net");
    auto x = b.input("x", {-1, 3, 8, 8});
    auto w1 = b.param("conv1.weight", random_tensor({8, 3, 3, 3}, rng, 0.3f));
    auto b1 = b.param("conv1.bias", random_tensor({8}, rng, 0.1f));
    auto c1 = b.node("Conv", {x, w1, b1}, {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, named("conv1"));
    auto r1 = b.node("Relu", {c1}, {}, named("relu1"));
    auto w2 = b.param("conv2.weight", random_tensor({8, 8, 1, 1}, rng, 0.3f));
    auto b2 = b.param("conv2.bias", random_tensor({8}, rng, 0.1f));
    auto c2 = b.node("Conv", {r1, w2, b2}, {}, named("conv2"));
    auto add = b.node("Add", {c2, r1}, {}, named("add"));
    auto r2 = b.node("Relu", {add}, {}, named("relu2"));
    auto mp = b.node("MaxPool", {r2}, {{"kernel_shape", std::vector<std::int64_t>{2, 2}},
                                        {"strides", std::vector<std::int64_t>{2, 2}}}, named("pool"));
    auto gap = b.node("GlobalAveragePool", {mp}, {}, named("gap"));
    auto fl = b.node("Flatten", {gap}, {}, named("flatten"));
    auto wf = b.param("fc.weight", random_tensor({4, 8}, rng, 0.5f));
    auto bf = b.param("fc.bias", random_tensor({4}, rng, 0.1f));
    auto fc = b.node("Gemm", {fl, wf, bf}, {{"transB", std::int64_t{1}}}, named("fc"));
    auto sm = b.node("Softmax", {fc}, {{"axis", std::int64_t{1}}}, named("softmax"));
    b.output(sm);
    return b.build();
}

std::vector<qs::tensor> batches(std::mt19937& rng, int n, int batch = 4) {
    std::vector<qs::tensor> out;
    for (int i = 0; i < n; ++i) out.push_back(random_tensor({batch, 3, 8, 8}, rng));
    return out;
}

float max_abs_diff(const qs::tensor& a, const qs::tensor& b) {
    float m = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(a.f32()[i] - b.f32()[i]));
    return m;
}

}  // namespace

TEST(quantsim, places_quantizers_like_the_default_config) {
    SCOPED_TRACE("seed=" + std::to_string(seed));
    std::mt19937 rng(seed);
    qs::quant_sim sim(small_net(rng));
    SCOPED_TRACE(sim.summary());
    // Weights: symmetric int8 per tensor.
    const auto& w = sim.at("conv1.weight");
    EXPECT_EQ(w.kind, qs::quantizer_kind::param);
    EXPECT_EQ(w.spec.scheme, qs::qscheme::symmetric);
    EXPECT_EQ(w.gran.kind, qs::granularity_kind::per_tensor);
    // Bias: int32, derived from input and weight scales.
    ASSERT_NE(sim.find("conv1.bias"), nullptr);
    EXPECT_TRUE(sim.at("conv1.bias").is_derived_bias());
    // Model input quantized; Conv->Relu is a supergroup: no quantizer between them.
    EXPECT_TRUE(sim.at("x").enabled);
    EXPECT_FALSE(sim.at("conv1_out").enabled) << sim.summary();
    EXPECT_TRUE(sim.find("relu1_out")->enabled);
    // Add->Relu supergroup.
    EXPECT_FALSE(sim.at("add_out").enabled);
    // Data-movement ops reuse their input's grid.
    EXPECT_EQ(sim.at("pool_out").shared_with, "relu2_out");
    EXPECT_EQ(sim.at("flatten_out").shared_with, "gap_out");
    EXPECT_TRUE(sim.at("softmax_out").enabled);
}

TEST(quantsim, per_channel_config_and_override) {
    std::mt19937 rng(seed);
    qs::quantsim_options o;
    o.config = qs::quantsim_config::builtin("per_channel");
    qs::quant_sim sim(small_net(rng), o);
    EXPECT_EQ(sim.at("conv1.weight").gran.kind, qs::granularity_kind::per_channel);
    EXPECT_EQ(sim.at("conv1.weight").gran.axis, 0);
    EXPECT_EQ(sim.at("fc.weight").gran.kind, qs::granularity_kind::per_tensor);  // Gemm: per-tensor in that config
    o.per_channel = true;
    qs::quant_sim all(small_net(rng), o);
    EXPECT_EQ(all.at("fc.weight").gran.kind, qs::granularity_kind::per_channel);
    EXPECT_EQ(all.at("fc.weight").gran.axis, 0);  // transB=1: rows are output channels
}

TEST(quantsim, calibrated_forward_is_close_and_matches_a_manual_simulation) {
    SCOPED_TRACE("seed=" + std::to_string(seed));
    std::mt19937 rng(seed);
    qs::graph g = small_net(rng);
    qs::quant_sim sim(g);
    const auto calib = batches(rng, 8);
    sim.compute_encodings(calib);
    for (const auto& q : sim.quantizers())
        if (q.enabled) {
            EXPECT_TRUE(sim.effective_params(q.name).has_value()) << q.name;
        }

    const qs::tensor x = random_tensor({4, 3, 8, 8}, rng);
    const qs::tensor y_sim = sim.forward(x);
    qs::executor fp(g);
    const qs::tensor y_fp = fp.run({x})[0];
    const float d = max_abs_diff(y_sim, y_fp);
    EXPECT_GT(d, 0.0f);    // quantization changes something
    EXPECT_LT(d, 0.05f);   // but an 8-bit softmax output stays close

    // Independent simulation: fake-quantize the weights by hand, quantize values through a hook.
    qs::graph manual = g;
    for (const auto& q : sim.quantizers()) {
        if (q.kind != qs::quantizer_kind::param) continue;
        auto p = sim.effective_params(q.name);
        if (p) manual.params[q.name] = qs::fake_quant(manual.params[q.name], *p);
    }
    qs::executor ex(manual);
    ex.add_hook([&](std::string_view name, const qs::node*, qs::tensor& v) {
        const auto* q = sim.find(name);
        if (!q || q->kind != qs::quantizer_kind::activation) return;
        if (auto p = sim.effective_params(name)) qs::fake_quant_(v, *p);
    });
    const qs::tensor y_manual = ex.run({x})[0];
    EXPECT_EQ(max_abs_diff(y_sim, y_manual), 0.0f);
}

TEST(quantsim, derived_bias_scale_is_input_times_weight_scale) {
    std::mt19937 rng(seed);
    qs::quant_sim sim(small_net(rng));
    sim.compute_encodings(batches(rng, 2));
    const auto b = sim.effective_params("conv1.bias");
    const auto in = sim.effective_params("x");
    const auto w = sim.effective_params("conv1.weight");
    ASSERT_TRUE(b && in && w);
    EXPECT_EQ(b->bitwidth, 32);
    EXPECT_EQ(b->scale[0], in->scale[0] * w->scale[0]);
    EXPECT_EQ(b->zero_point[0], 0);
}

TEST(quantsim, split_calibration_gives_the_same_encodings) {
    for (const char* method : {"minmax", "sqnr", "percentile:99.9", "mse", "entropy"}) {
        SCOPED_TRACE(std::string(method) + " seed=" + std::to_string(seed));
        std::mt19937 rng(seed);
        qs::graph g = small_net(rng);
        const auto calib = batches(rng, 6);
        qs::quantsim_options o;
        o.activation_range = qs::parse_range_method(method);
        qs::quant_sim one(g, o), two(g, o);
        one.compute_encodings(calib, {1, {}});
        two.compute_encodings(calib, {3, {}});
        for (const auto& q : one.quantizers()) {
            const auto a = one.effective_params(q.name), c = two.effective_params(q.name);
            ASSERT_EQ(a.has_value(), c.has_value()) << q.name;
            if (!a) continue;
            EXPECT_EQ(a->scale, c->scale) << q.name;
            EXPECT_EQ(a->zero_point, c->zero_point) << q.name;
        }
    }
}

TEST(quantsim, exported_encodings_reproduce_the_simulation) {
    std::mt19937 rng(seed);
    qs::graph g = small_net(rng);
    qs::quantsim_options o;
    o.config = qs::quantsim_config::builtin("per_channel");
    qs::quant_sim sim(g, o);
    sim.compute_encodings(batches(rng, 4));
    const qs::tensor x = random_tensor({2, 3, 8, 8}, rng);
    const qs::tensor y = sim.forward(x);
    for (auto v : {qs::encodings_version::v0_6_1, qs::encodings_version::v1_0_0, qs::encodings_version::v2_0_0}) {
        SCOPED_TRACE(std::string(qs::to_string(v)));
        const auto file = qs::read_encodings(qs::write_encodings(sim.encodings(), v));
        qs::quant_sim again = qs::quant_sim::from_encodings(g, file);
        EXPECT_EQ(max_abs_diff(again.forward(x), y), 0.0f);
        // Loading into a config-placed sim gives the same as well.
        qs::quant_sim loaded(g, o);
        const auto report = loaded.load_encodings(file);
        EXPECT_TRUE(report.unknown_tensors.empty());
        EXPECT_EQ(max_abs_diff(loaded.forward(x), y), 0.0f);
    }
}

TEST(quantsim, qdq_model_runs_and_matches_the_simulation) {
    std::mt19937 rng(seed);
    qs::graph g = small_net(rng);
    for (const char* cfg : {"default", "per_channel"}) {
        for (int bits : {8, 4}) {
            SCOPED_TRACE(std::string(cfg) + " W" + std::to_string(bits));
            qs::quantsim_options o;
            o.config = qs::quantsim_config::builtin(cfg);
            o.param_bitwidth = bits;
            o.activation_bitwidth = bits == 4 ? 6 : 8;  // 6-bit activations exercise the Clip before Quantize
            qs::quant_sim sim(g, o);
            sim.compute_encodings(batches(rng, 4));
            const qs::graph qdq = sim.qdq_model(13);
            std::size_t q = 0, dq = 0;
            for (const auto& n : qdq.nodes) {
                q += n.op_type == "QuantizeLinear";
                dq += n.op_type == "DequantizeLinear";
            }
            EXPECT_GT(q, 0u);
            EXPECT_GT(dq, q);  // weights have DequantizeLinear only
            EXPECT_EQ(qdq.params.at("conv1.weight_quantized").type(), qs::dtype::int8);
            EXPECT_EQ(qdq.params.at("conv1.bias_quantized").type(), qs::dtype::int32);
            qs::executor ex(qdq);
            const qs::tensor x = random_tensor({2, 3, 8, 8}, rng);
            EXPECT_LT(max_abs_diff(ex.run({x})[0], sim.forward(x)), 1e-5f);
        }
    }
}

TEST(quantsim, qdq_int4_weights_at_opset_21) {
    std::mt19937 rng(seed);
    qs::quantsim_options o;
    o.param_bitwidth = 4;
    qs::quant_sim sim(small_net(rng), o);
    sim.compute_encodings(batches(rng, 2));
    const qs::graph qdq = sim.qdq_model(21);
    EXPECT_EQ(qdq.opset, 21);
    EXPECT_EQ(qdq.params.at("conv1.weight_quantized").type(), qs::dtype::int4);
    qs::executor ex(qdq);
    const qs::tensor x = random_tensor({1, 3, 8, 8}, rng);
    EXPECT_LT(max_abs_diff(ex.run({x})[0], sim.forward(x)), 1e-5f);
}

TEST(quantsim, overrides_and_frozen_encodings) {
    std::mt19937 rng(seed);
    qs::quant_sim sim(small_net(rng));
    sim.set_bitwidth("conv2.weight", 4);
    sim.set_enabled("softmax_out", false);
    qs::quant_spec s;
    s.scheme = qs::qscheme::symmetric;
    const auto fixed = qs::quant_params::per_tensor(qs::encoding_from_range(-2, 2, s));
    sim.set_encoding("fc.weight", fixed);
    sim.compute_encodings(batches(rng, 2));
    EXPECT_EQ(sim.effective_params("conv2.weight")->bitwidth, 4);
    EXPECT_FALSE(sim.effective_params("softmax_out").has_value());
    EXPECT_EQ(sim.effective_params("fc.weight")->scale, fixed.scale);
    EXPECT_THROW(sim.set_enabled("no_such_tensor", true), qs::invalid_argument);
    auto bad = qs::quant_params::from(std::vector<qs::encoding>(3, fixed.at(0)), qs::granularity::per_channel(0));
    EXPECT_THROW(sim.set_encoding("conv1.weight", bad), qs::error);  // 3 channels for 8
}

TEST(quantsim, bad_calibration_data_is_an_error) {
    std::mt19937 rng(seed);
    qs::quant_sim sim(small_net(rng));
    EXPECT_THROW(sim.compute_encodings(std::vector<qs::tensor>{}), qs::calibration_error);
    auto calib = batches(rng, 3);
    calib[2].f32()[3 * 192 + 5] = std::nanf("");
    try {
        sim.compute_encodings(calib);
        FAIL() << "NaN accepted";
    } catch (const qs::numeric_error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("batch 2"), std::string::npos) << m;
        EXPECT_NE(m.find("sample 3"), std::string::npos) << m;
    }
    std::vector<std::vector<qs::tensor>> two_inputs{{calib[0], calib[1]}};
    EXPECT_THROW(sim.compute_encodings(two_inputs), qs::invalid_argument);
}

TEST(quantsim, encodings_for_another_model_are_rejected) {
    std::mt19937 rng(seed);
    qs::graph g = small_net(rng);
    qs::encodings_file f;
    qs::quant_spec s;
    f.activations.push_back({"not_in_model", qs::quant_params::per_tensor(qs::encoding_from_range(0, 1, s)), {}, true, 0});
    EXPECT_THROW(qs::quant_sim::from_encodings(g, f), qs::config_error);
    qs::encodings_file w;
    s.scheme = qs::qscheme::symmetric;
    std::vector<qs::encoding> five(5, qs::encoding_from_range(-1, 1, s));
    w.params.push_back({"conv1.weight", qs::quant_params::from(five, qs::granularity::per_channel(0)), {}, false, 0});
    EXPECT_THROW(qs::quant_sim::from_encodings(g, w), qs::config_error);
}

TEST(quantsim, export_files_are_written_atomically) {
    std::mt19937 rng(seed);
    qs::quant_sim sim(small_net(rng));
    sim.compute_encodings(batches(rng, 2));
    const auto dir = std::filesystem::temp_directory_path() / ("qs_sim_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    sim.export_encodings(dir / "m.encodings.json");
    sim.export_qdq(dir / "m_qdq.onnx");
    EXPECT_GT(std::filesystem::file_size(dir / "m_qdq.onnx"), 1000u);
    EXPECT_GT(std::filesystem::file_size(dir / "m.encodings.json"), 100u);
    std::filesystem::remove_all(dir);
}

namespace {

// x -> Conv -> Add(3) -> Clip(0, 6) -> Mul(conv) -> Div(6) [a decomposed hard-swish, as opset-9 exporters write it]
//   -> Conv -> y
qs::graph decomposed_hard_swish_net(std::mt19937& rng) {
    qs::graph_builder b("hs_net");
    auto x = b.input("x", {-1, 3, 6, 6});
    auto c1 = b.node("Conv", {x, b.param("conv1.weight", random_tensor({4, 3, 1, 1}, rng, 2.0f))}, {}, named("conv1"));
    auto a = b.node("Add", {c1, b.constant_scalar(3.f)}, {}, named("hs_add"));
    auto cl = b.node("Clip", {a, b.constant_scalar(0.f), b.constant_scalar(6.f)}, {}, named("hs_clip"));
    auto m = b.node("Mul", {c1, cl}, {}, named("hs_mul"));
    auto d = b.node("Div", {m, b.constant_scalar(6.f)}, {}, named("hs"));
    b.output(b.node("Conv", {d, b.param("conv2.weight", random_tensor({2, 4, 1, 1}, rng))}, {}, named("conv2")));
    return b.build();
}

}  // namespace

TEST(quantsim, fused_activations_quantize_a_decomposed_hard_swish_only_at_its_output) {
    std::mt19937 rng(seed);
    const qs::graph g = decomposed_hard_swish_net(rng);
    auto enabled = [](const qs::quant_sim& s, const std::string& v) {
        const auto* q = s.find(v);
        return q != nullptr && q->enabled;
    };
    qs::quantsim_options o;
    qs::quant_sim plain(g, o);
    for (const char* v : {"conv1_out", "hs_add_out", "hs_clip_out", "hs_mul_out", "hs_out"}) EXPECT_TRUE(enabled(plain, v)) << v;

    o.fuse_decomposed_activations = true;
    qs::quant_sim fused(g, o);
    for (const char* v : {"hs_add_out", "hs_clip_out", "hs_mul_out"}) EXPECT_FALSE(enabled(fused, v)) << v;
    EXPECT_TRUE(enabled(fused, "conv1_out"));  // the default config has no Conv -> HardSwish supergroup
    ASSERT_TRUE(enabled(fused, "hs_out"));
    EXPECT_EQ(fused.find("hs_out")->op_type, "HardSwish");

    // The HTP-like config fuses Conv -> HardSwish: only the activation's output is quantized.
    o.config = qs::quantsim_config::builtin("htp");
    qs::quant_sim htp(g, o);
    EXPECT_FALSE(enabled(htp, "conv1_out"));
    EXPECT_TRUE(enabled(htp, "hs_out"));

    // The model is unchanged and the simulation runs: placing differently changes no FP32 value.
    EXPECT_EQ(fused.model().nodes.size(), g.nodes.size());
    fused.compute_encodings(std::vector<qs::tensor>{random_tensor({2, 3, 6, 6}, rng)});
    const qs::tensor y = fused.forward(random_tensor({2, 3, 6, 6}, rng));
    EXPECT_EQ(y.numel(), 2 * 2 * 6 * 6);
}

TEST(quantsim, end_layers_are_the_first_and_last_weighted_layers_and_their_outer_activations) {
    std::mt19937 rng(seed);
    qs::quantsim_options o;
    o.param_bitwidth = 4;
    o.activation_bitwidth = 4;
    qs::quant_sim sim(small_net(rng), o);
    const auto ends = qs::set_end_layers_bitwidth(sim, 8, 8);
    EXPECT_EQ(ends.first_layers, std::vector<std::string>{"conv1"});
    EXPECT_EQ(ends.last_layers, std::vector<std::string>{"fc"});
    EXPECT_EQ(ends.params, (std::vector<std::string>{"conv1.weight", "fc.weight"}));
    // The model input, and the Gemm's and Softmax's outputs; conv2 and everything between stay at 4 bits.
    EXPECT_EQ(ends.activations, (std::vector<std::string>{"fc_out", "softmax_out", "x"}));
    for (const auto& q : sim.quantizers()) {
        if (!q.enabled || q.is_derived_bias()) continue;
        const bool end = std::count(ends.params.begin(), ends.params.end(), q.name) +
                             std::count(ends.activations.begin(), ends.activations.end(), q.name) > 0;
        EXPECT_EQ(q.spec.bitwidth, end ? 8 : 4) << q.name;
    }
}
