// Optimizers, the cosine schedule and the QAT trainer over a quant_sim.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include <quantsim/ir/builder.hpp>
#include <quantsim/qat/optimizer.hpp>
#include <quantsim/qat/trainer.hpp>
#include <quantsim/quant/fake_quant.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace qs = quantsim;
using qs::tensor;

namespace {

constexpr std::uint32_t base_seed = 20261124;
constexpr double exact_tol = 1e-6;      // optimizer steps computed by hand
constexpr double consistency_tol = 2e-3; // trained tape vs the sim's simulated forward (int32 bias noise only)

tensor random_tensor(qs::shape_t shape, std::mt19937& rng, float scale = 1.0f) {
    tensor t = tensor::empty(std::move(shape));
    std::normal_distribution<float> d(0.0f, scale);
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

// x [N, 3, 6, 6] -> Conv 3x3 -> BN -> Relu -> GAP -> Flatten -> Gemm(transB) -> Softmax
qs::graph tiny_net(std::mt19937& rng) {
    qs::graph_builder b("tiny");
    auto x = b.input("x", {-1, 3, 6, 6});
    auto c = b.node("Conv", {x, b.param("conv.w", random_tensor({8, 3, 3, 3}, rng, 0.3f)), b.param("conv.b", tensor({8}))},
                    {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "conv");
    tensor var = tensor::full({8}, 1.0f);
    auto bn = b.node("BatchNormalization", {c, b.param("bn.g", tensor::full({8}, 1.0f)), b.param("bn.b", tensor({8})),
                                            b.param("bn.m", tensor({8})), b.param("bn.v", var)}, {}, "bn");
    auto r = b.node("Relu", {bn}, {}, "relu");
    auto f = b.node("Flatten", {b.node("GlobalAveragePool", {r}, {}, "gap")}, {}, "flat");
    auto z = b.node("Gemm", {f, b.param("fc.w", random_tensor({2, 8}, rng, 0.3f)), b.param("fc.b", tensor({2}))},
                    {{"transB", std::int64_t{1}}}, qs::node_options("fc").outputs({"logits"}));
    b.output(b.node("Softmax", {z}, {{"axis", std::int64_t{-1}}}, "softmax"));
    return b.build();
}

// Label 1 when channel 0's mean exceeds channel 1's: learnable by the net above.
void make_data(std::int64_t n, std::mt19937& rng, tensor& x, tensor& y) {
    x = random_tensor({n, 3, 6, 6}, rng);
    y = tensor::empty({n}, qs::dtype::int64);
    for (std::int64_t i = 0; i < n; ++i) {
        double a = 0, b = 0;
        for (std::int64_t k = 0; k < 36; ++k) a += x.f32()[i * 108 + k], b += x.f32()[i * 108 + 36 + k];
        y.data<std::int64_t>()[i] = a > b ? 1 : 0;
    }
}

qs::quant_sim make_sim(const qs::graph& g, int bw, const tensor& calib) {
    qs::quantsim_options o;
    o.param_bitwidth = bw;
    o.activation_bitwidth = bw;
    qs::quant_sim sim(g, o);
    sim.compute_encodings(std::vector<tensor>{calib});
    return sim;
}

}  // namespace

TEST(Optimizer, FirstStepsMatchTheFormulas) {
    {  // SGD with momentum: v1 = g1, p1 = p0 - lr g1; v2 = mu v1 + g2, p2 = p1 - lr v2
        qs::optimizer o({qs::optimizer_kind::sgd, 0.1, 0.9});
        float p = 1.0f, g1 = 0.5f, g2 = -0.25f;
        o.step();
        o.update("p", &p, &g1, 1, 0.1);
        EXPECT_NEAR(p, 1.0 - 0.1 * 0.5, exact_tol);
        o.step();
        o.update("p", &p, &g2, 1, 0.1);
        EXPECT_NEAR(p, 0.95 - 0.1 * (0.9 * 0.5 - 0.25), exact_tol);
    }
    {  // Nesterov: p -= lr (g + mu v)
        qs::optimizer_options oo{qs::optimizer_kind::sgd, 0.1, 0.9, true};
        qs::optimizer o(oo);
        float p = 1.0f, g = 0.5f;
        o.step();
        o.update("p", &p, &g, 1, 0.1);
        EXPECT_NEAR(p, 1.0 - 0.1 * (0.5 + 0.9 * 0.5), exact_tol);
    }
    {  // Adam's first step moves every element by lr * sign(g) (bias-corrected m / sqrt(v) = g / |g|)
        qs::optimizer o({qs::optimizer_kind::adam, 0.01});
        float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {3.0f, -0.001f, 10.0f};
        o.step();
        o.update("p", p, g, 3, 0.01);
        EXPECT_NEAR(p[0], 0.99, 1e-5);
        EXPECT_NEAR(p[1], -1.99, 1e-4);
        EXPECT_NEAR(p[2], 0.49, 1e-5);
    }
    {  // AdamW decays decoupled from the gradient; Adam adds wd * p to it; decay=false skips both
        qs::optimizer_options w{qs::optimizer_kind::adamw, 0.1};
        w.weight_decay = 0.5;
        qs::optimizer o(w);
        float p = 2.0f, q = 2.0f, g = 0.0f;
        o.step();
        o.update("p", &p, &g, 1, 0.1);
        o.update("q", &q, &g, 1, 0.1, false);
        EXPECT_NEAR(p, 2.0 * (1 - 0.1 * 0.5), exact_tol);
        EXPECT_NEAR(q, 2.0, exact_tol);
        qs::optimizer_options a{qs::optimizer_kind::adam, 0.1};
        a.weight_decay = 0.5;
        qs::optimizer o2(a);
        float r = 2.0f;
        o2.step();
        o2.update("r", &r, &g, 1, 0.1);
        EXPECT_NEAR(r, 2.0 - 0.1, 1e-5);  // gradient wd * p = 1 > 0: first step is -lr
    }
    EXPECT_THROW(qs::optimizer({qs::optimizer_kind::sgd, -1.0}), qs::invalid_argument);
    qs::optimizer o;
    float p = 0, g = 0;
    EXPECT_THROW(o.update("p", &p, &g, 1, 0.1), qs::invalid_argument);  // step() first
}

TEST(Optimizer, ConvergesOnAQuadratic) {
    for (auto kind : {qs::optimizer_kind::sgd, qs::optimizer_kind::adam, qs::optimizer_kind::adamw}) {
        qs::optimizer o({kind, kind == qs::optimizer_kind::sgd ? 0.1 : 0.05});
        std::vector<float> p{3.0f, -1.0f, 0.5f}, target{1.0f, 2.0f, -0.5f}, g(3);
        for (int t = 0; t < 400; ++t) {
            for (int i = 0; i < 3; ++i) g[static_cast<std::size_t>(i)] = p[static_cast<std::size_t>(i)] - target[static_cast<std::size_t>(i)];
            o.step();
            o.update("p", p.data(), g.data(), 3, o.options().lr);
        }
        for (int i = 0; i < 3; ++i) EXPECT_NEAR(p[static_cast<std::size_t>(i)], target[static_cast<std::size_t>(i)], 1e-2);
    }
}

TEST(Schedule, CosineWithWarmup) {
    EXPECT_NEAR(qs::cosine_lr(1.0, 0, 100, 10), 0.1, exact_tol);
    EXPECT_NEAR(qs::cosine_lr(1.0, 9, 100, 10), 1.0, exact_tol);
    EXPECT_NEAR(qs::cosine_lr(1.0, 10, 100, 10), 1.0, exact_tol);
    EXPECT_NEAR(qs::cosine_lr(1.0, 55, 100, 10), 0.5, exact_tol);
    EXPECT_NEAR(qs::cosine_lr(1.0, 100, 100, 10, 0.1), 0.1, exact_tol);
    EXPECT_NEAR(qs::cosine_lr(2.0, 50, 100), 1.0, exact_tol);
}

TEST(Trainer, LearnsAndWritesBackConsistentlyInEveryRangeMode) {
    for (auto mode : {qs::qat_range_mode::fixed, qs::qat_range_mode::lsq, qs::qat_range_mode::range_learning}) {
        SCOPED_TRACE("mode " + std::to_string(static_cast<int>(mode)) + ", seed " + std::to_string(base_seed));
        std::mt19937 rng(base_seed);
        const qs::graph g = tiny_net(rng);
        tensor x, y, ex, ey;
        make_data(256, rng, x, y);
        make_data(128, rng, ex, ey);
        qs::quant_sim sim = make_sim(g, 4, x.slice(0, 64));
        qs::qat_options o;
        o.range_mode = mode;
        o.weight_optimizer.lr = 1e-2;
        o.quantizer_optimizer.lr = 1e-3;
        o.epochs = 6;
        o.batch_size = 32;
        o.seed = 7;
        qs::qat_trainer t(sim, o);
        EXPECT_EQ(t.logits(), "logits");
        const double before = t.evaluate(ex, ey);
        int steps = 0;
        qs::qat_callbacks cb;
        cb.on_step = [&](const qs::qat_step_info& s) {
            ++steps;
            EXPECT_TRUE(std::isfinite(s.loss));
        };
        auto hist = t.fit(x, y, cb, &ex, &ey);
        ASSERT_EQ(hist.size(), 6u);
        EXPECT_EQ(steps, 6 * 8);
        EXPECT_LT(hist.back().mean_loss, hist.front().mean_loss);
        EXPECT_GT(*hist.back().eval_accuracy, before + 0.1) << "before " << before;
        EXPECT_GE(*hist.back().eval_accuracy, 0.8);
        // Encodings moved in the learning modes, stayed in the fixed one.
        const auto enc0 = sim.effective_params("conv.w");
        const auto enc1 = t.encoding("conv.w");
        ASSERT_TRUE(enc0 && enc1);
        if (mode == qs::qat_range_mode::fixed) {
            EXPECT_EQ(enc0->scale, enc1->scale);
        } else {
            EXPECT_NE(enc0->scale, enc1->scale);
        }
        // After write-back the sim's own simulated forward computes what the trainer evaluated.
        t.write_back();
        EXPECT_TRUE(sim.at("conv.w").frozen);
        const tensor sim_out = sim.forward(ex.slice(0, 16));
        const tensor logits = t.tape().forward({{"x", ex.slice(0, 16)}}).begin()->second;
        ASSERT_EQ(sim_out.shape(), logits.shape());
        for (std::int64_t i = 0; i < logits.numel(); ++i) EXPECT_NEAR(sim_out.f32()[i], logits.f32()[i], consistency_tol);
    }
}

TEST(Trainer, BatchNormTrainingAndStatisticsReestimation) {
    std::mt19937 rng(base_seed + 1);
    SCOPED_TRACE("seed " + std::to_string(base_seed + 1));
    const qs::graph g = tiny_net(rng);
    tensor x, y;
    make_data(128, rng, x, y);
    qs::quant_sim sim = make_sim(g, 8, x.slice(0, 64));
    qs::qat_options o;
    o.bn_training = true;
    o.weight_optimizer.lr = 1e-2;
    o.epochs = 2;
    qs::qat_trainer t(sim, o);
    t.fit(x, y);
    t.reestimate_bn_statistics(x, 64, 2);
    // The re-estimated mean is the average batch mean of the BN input (the conv output) over the two batches.
    t.tape().set_training(false);
    t.tape().forward({{"x", x}}, {"logits"});
    const tensor conv = t.tape().value(sim.model().nodes[0].outputs[0]);
    std::vector<double> mean(8, 0.0);
    for (std::int64_t n = 0; n < 128; ++n)
        for (std::int64_t c = 0; c < 8; ++c)
            for (std::int64_t i = 0; i < 36; ++i) mean[static_cast<std::size_t>(c)] += conv.f32()[(n * 8 + c) * 36 + i] / (128.0 * 36);
    for (std::int64_t c = 0; c < 8; ++c)
        EXPECT_NEAR(t.tape().param("bn.m").f32()[c], mean[static_cast<std::size_t>(c)], 1e-4);
    t.write_back();
    EXPECT_EQ(sim.model().params.at("bn.m").f32()[0], t.tape().param("bn.m").f32()[0]);
}

TEST(Trainer, BadInputsAreClearErrors) {
    std::mt19937 rng(base_seed + 2);
    const qs::graph g = tiny_net(rng);
    tensor x, y;
    make_data(16, rng, x, y);
    qs::quant_sim sim = make_sim(g, 8, x);
    qs::qat_options o;
    o.trainable = {"nope"};
    EXPECT_THROW(qs::qat_trainer(sim, o), qs::invalid_argument);
    o.trainable = {};
    o.batch_size = 0;
    EXPECT_THROW(qs::qat_trainer(sim, o), qs::invalid_argument);
    o.batch_size = 8;
    qs::qat_trainer t(sim, o);
    EXPECT_THROW(t.fit(x, y.slice(0, 8)), qs::shape_error);
    EXPECT_THROW(t.fit(x, qs::tensor::zeros({16})), qs::invalid_argument);  // float labels
    tensor bad = y.clone();
    bad.data<std::int64_t>()[3] = 5;
    EXPECT_THROW(t.train_step(x, bad), qs::invalid_argument);
}

TEST(Trainer, OscillationTrackingDampeningAndFreezing) {
    std::mt19937 rng(base_seed + 3);
    SCOPED_TRACE("seed " + std::to_string(base_seed + 3));
    const qs::graph g = tiny_net(rng);
    tensor x, y;
    make_data(256, rng, x, y);
    qs::quant_sim sim = make_sim(g, 3, x.slice(0, 64));
    qs::qat_options o;
    o.weight_optimizer = {qs::optimizer_kind::sgd, 0.05, 0.9};  // large steps: weights flip back and forth
    o.epochs = 8;
    o.dampening = true;
    o.freezing = true;
    o.oscillation_momentum = 0.05;
    o.freeze_threshold = 0.05;
    o.freeze_threshold_final = 0.02;
    qs::qat_trainer t(sim, o);
    double first_damp = -1, last_damp = 0;
    std::int64_t steps = 0;
    qs::qat_callbacks cb;
    cb.on_step = [&](const qs::qat_step_info& s) {
        if (s.step < 16) {
            EXPECT_EQ(s.dampening_loss, 0.0);  // the first 25 % of the 64 steps: lambda = 0
        }
        if (s.step >= 17 && first_damp < 0) first_damp = s.dampening_loss;
        last_damp = s.dampening_loss;
        ++steps;
    };
    t.fit(x, y, cb);
    EXPECT_EQ(steps, 64);
    EXPECT_GT(first_damp, 0.0);
    EXPECT_GT(last_damp, 0.0);
    const auto st = t.oscillation_stats();
    EXPECT_EQ(st.tracked, 8 * 3 * 9 + 2 * 8);  // the conv and fc weights (3 bits <= 4)
    EXPECT_GT(st.frozen, 0);
    EXPECT_GT(st.mean_frequency, 0.0);
    // Frozen weights sit exactly on their grid: fake-quantizing them changes nothing.
    const tensor w = t.tape().param("conv.w");
    const auto enc = t.encoding("conv.w");
    ASSERT_TRUE(enc);
    const tensor q = qs::fake_quant(w, *enc);
    std::int64_t on_grid = 0;
    for (std::int64_t i = 0; i < w.numel(); ++i) on_grid += w.f32()[i] == q.f32()[i];
    EXPECT_GT(on_grid, 0);
}

TEST(Trainer, InHindsightActivationRangesComeFromThePreviousSteps) {
    std::mt19937 rng(base_seed + 4);
    SCOPED_TRACE("seed " + std::to_string(base_seed + 4));
    const qs::graph g = tiny_net(rng);
    tensor x, y;
    make_data(64, rng, x, y);
    qs::quant_sim sim = make_sim(g, 8, x);
    // The Relu output's quantizer (Conv+BN+Relu is one supergroup: no quantizer on conv or bn outputs).
    const std::string relu_out = sim.model().nodes[2].outputs[0];
    const std::string bn_out = sim.model().nodes[1].outputs[0];
    ASSERT_NE(sim.find(relu_out), nullptr);
    qs::qat_options o;
    o.hindsight_activations = true;
    o.hindsight_momentum = 0.5;
    o.weight_optimizer.lr = 0.0;  // weights fixed: the statistics of each step are known
    qs::qat_trainer t(sim, o);
    const auto calibrated = t.encoding(relu_out);
    const auto range_of = [&](const tensor& batch) {
        t.tape().forward({{"x", batch}}, {"logits"});
        const tensor b = t.tape().value(bn_out);  // the Relu's input (no quantizer there)
        double mx = 0;
        for (float v : b.span<float>()) mx = std::max<double>(mx, v);
        return mx;  // Relu output range is [0, mx]
    };
    const tensor b0 = x.slice(0, 32), b1 = x.slice(32, 64);
    const double m0 = range_of(b0);
    t.train_step(b0, y.slice(0, 32));
    // Step 0 used the calibrated encoding; step 1 uses the range of step 0.
    const auto e1 = t.encoding(relu_out);
    const auto want1 = qs::encoding_from_range(0.0, m0, sim.at(relu_out).spec);
    EXPECT_EQ(e1->scale[0], want1.scale);
    EXPECT_EQ(e1->zero_point[0], want1.zero_point);
    EXPECT_NE(e1->scale[0], calibrated->scale[0]);
    const double m1 = range_of(b1);  // with the encodings step 1 uses (the input's changed too)
    t.train_step(b1, y.slice(32, 64));
    const auto want2 = qs::encoding_from_range(0.0, 0.5 * m0 + 0.5 * m1, sim.at(relu_out).spec);
    EXPECT_FLOAT_EQ(t.encoding(relu_out)->scale[0], want2.scale);
}

// Memory stays flat over a run: the tape keeps at most one step's buffers for reuse (a pool that also kept tensors made
// outside it, such as fake-quant outputs, once grew by a whole step's activations per step).
TEST(Trainer, MemoryKeptBetweenStepsDoesNotGrow) {
    SCOPED_TRACE("seed " + std::to_string(base_seed));
    std::mt19937 rng(base_seed);
    const qs::graph g = tiny_net(rng);
    tensor x, y;
    make_data(64, rng, x, y);
    qs::quant_sim sim = make_sim(g, 4, x.slice(0, 32));
    qs::qat_trainer t(sim, qs::qat_options{});
    const tensor bx = x.slice(0, 32), by = y.slice(0, 32);
    t.train_step(bx, by);
    t.train_step(bx, by);
    const std::size_t after_two = t.tape().cached_bytes();
    EXPECT_GT(after_two, 0u);
    for (int i = 0; i < 10; ++i) t.train_step(bx, by);
    // Steps differ a little in what they allocate (some buffers are dropped while still shared); a leak adds a step's
    // worth (here about the whole figure) per step.
    EXPECT_LE(static_cast<double>(t.tape().cached_bytes()), 1.25 * static_cast<double>(after_two));
}
