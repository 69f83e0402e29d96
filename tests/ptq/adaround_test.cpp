#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include <quantsim/core/error.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/ptq/adaround.hpp>
#include <quantsim/ptq/detail/adaround_kernels.hpp>
#include <quantsim/ptq/detail/adaround_math.hpp>
#include <quantsim/quant/fake_quant.hpp>
#include <quantsim/quant/layout.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace qs = quantsim;
namespace qd = quantsim::detail;

namespace {

constexpr std::uint32_t base_seed = 20260417;
constexpr float fd_step = 1e-3f;
constexpr float fd_tol = 2e-3f;      // central differences in float
constexpr double mse_agree = 1e-3;   // relative agreement of the exact and the sampled loss on the same weights
constexpr float vec_math_tol = 3e-7f;  // relative error of the vectorizable exp / log (a few ulp)
constexpr float kernel_tol = 1e-5f;    // vectorized per-weight update and dot products vs the scalar references
constexpr double path_loss_tol = 1e-4;  // direct depthwise vs im2col: same math, different summation order

qs::tensor random_tensor(qs::shape_t shape, std::mt19937& rng, float scale = 1.0f) {
    qs::tensor t = qs::tensor::empty(std::move(shape));
    std::normal_distribution<float> d(0.0f, scale);
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

// x[N,16] -> Gemm(16->8, transB) -> out
qs::graph linear_net(std::mt19937& rng) {
    qs::graph_builder b("linear");
    auto x = b.input("x", {-1, 16});
    auto w = b.param("fc.weight", random_tensor({8, 16}, rng, 0.4f));
    auto bias = b.param("fc.bias", random_tensor({8}, rng, 0.1f));
    auto y = b.node("Gemm", {x, w, bias}, {{"transB", std::int64_t{1}}}, qs::node_options("fc").outputs({"fc_out"}));
    b.output(y);
    return b.build();
}

// x[N,6,4,12] -> depthwise Conv(6, 5x5, pad 2, bias) -> HardSwish -> out (the classifier's last depthwise
// layers: stride 1, 5x5, rows shorter than the kernel's reach, a row length that is not a multiple of 16)
qs::graph depthwise5_net(std::mt19937& rng) {
    qs::graph_builder b("dw5");
    auto x = b.input("x", {-1, 6, 4, 12});
    auto w = b.param("dw5.weight", random_tensor({6, 1, 5, 5}, rng, 0.3f));
    auto bias = b.param("dw5.bias", random_tensor({6}, rng, 0.1f));
    auto c = b.node("Conv", {x, w, bias}, {{"group", std::int64_t{6}}, {"pads", std::vector<std::int64_t>{2, 2, 2, 2}}},
                    qs::node_options("dw5").outputs({"dw5_out"}));
    auto h = b.node("HardSwish", {c}, {}, qs::node_options("hs").outputs({"hs_out"}));
    b.output(h);
    return b.build();
}

// x[N,4,8,8] -> Conv(4->8, 3x3, pad 1) -> Relu -> depthwise Conv(8, 3x3, stride 2) -> out
qs::graph conv_net(std::mt19937& rng) {
    qs::graph_builder b("conv");
    auto x = b.input("x", {-1, 4, 8, 8});
    auto w1 = b.param("conv1.weight", random_tensor({8, 4, 3, 3}, rng, 0.3f));
    auto b1 = b.param("conv1.bias", random_tensor({8}, rng, 0.1f));
    auto c1 = b.node("Conv", {x, w1, b1}, {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}},
                     qs::node_options("conv1").outputs({"conv1_out"}));
    auto r1 = b.node("Relu", {c1}, {}, qs::node_options("relu1").outputs({"relu1_out"}));
    auto w2 = b.param("dw.weight", random_tensor({8, 1, 3, 3}, rng, 0.3f));
    auto c2 = b.node("Conv", {r1, w2},
                     {{"group", std::int64_t{8}}, {"strides", std::vector<std::int64_t>{2, 2}},
                      {"pads", std::vector<std::int64_t>{1, 1, 1, 1}}},
                     qs::node_options("dw").outputs({"dw_out"}));
    b.output(c2);
    return b.build();
}

std::vector<std::vector<qs::tensor>> make_batches(std::mt19937& rng, const qs::shape_t& sample, int n, int batch) {
    std::vector<std::vector<qs::tensor>> out;
    for (int i = 0; i < n; ++i) {
        qs::shape_t s = sample;
        s.insert(s.begin(), batch);
        out.push_back({random_tensor(s, rng)});
    }
    return out;
}

// Correlated features (x = z M): with white inputs nearest rounding is already optimal for a linear layer, which
// leaves AdaRound nothing to gain.
std::vector<std::vector<qs::tensor>> correlated_batches(std::mt19937& rng, std::int64_t k, int n, int batch) {
    const qs::tensor m = random_tensor({k, k}, rng);
    std::vector<std::vector<qs::tensor>> out;
    for (int i = 0; i < n; ++i) {
        const qs::tensor z = random_tensor({batch, k}, rng);
        qs::tensor x = qs::tensor::zeros({batch, k});
        for (int r = 0; r < batch; ++r)
            for (std::int64_t a = 0; a < k; ++a)
                for (std::int64_t b = 0; b < k; ++b) x.f32()[r * k + b] += z.f32()[r * k + a] * m.f32()[a * k + b];
        out.push_back({x});
    }
    return out;
}

qs::quantsim_options w4(bool per_channel) {
    qs::quantsim_options o;
    o.param_bitwidth = 4;
    o.activation_bitwidth = 8;
    o.per_channel = per_channel;
    o.num_threads = 2;
    return o;
}

qs::adaround_options fast_options() {
    qs::adaround_options o;
    o.iterations = 1500;
    o.learning_rate = 1e-2f;  // fewer iterations, larger steps (the defaults are checked on the real model)
    o.positions_per_iteration = 256;
    return o;
}

// The weight the sim quantizes, the frozen encoding, and the integers (W'/s + zp) they give.
void expect_on_grid(const qs::quant_sim& sim, const std::string& name) {
    SCOPED_TRACE(name);
    const qs::quantizer* q = sim.find(name);
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(q->params.has_value());
    EXPECT_TRUE(q->frozen);
    const qs::tensor& w = sim.model().params.at(name);
    const qs::tensor fq = qs::fake_quant(w, *q->params, q->options);
    const auto rg = qs::check_quant_params(*q->params, w.shape());
    for (std::int64_t i = 0; i < w.numel(); ++i) {
        ASSERT_EQ(fq.f32()[i], w.f32()[i]) << "element " << i << " is not reproduced by nearest rounding";
        const auto g = static_cast<std::size_t>(qs::group_index_ref(rg, w.shape(), i));
        const double qv = w.f32()[i] / q->params->scale[g] + q->params->zero_point[g];
        EXPECT_NEAR(qv, std::nearbyint(qv), 1e-4) << "element " << i;
        EXPECT_GE(std::nearbyint(qv), q->params->range().qmin);
        EXPECT_LE(std::nearbyint(qv), q->params->range().qmax);
    }
}

}  // namespace

// ---- the scalar pieces ------------------------------------------------------------------------------------------

TEST(AdaroundMath, RectifiedSigmoidAndItsGradient) {
    for (float v : {-6.0f, -2.5f, -1.0f, -0.3f, 0.0f, 0.4f, 1.2f, 2.0f, 6.0f}) {
        SCOPED_TRACE(v);
        const float fd = (qd::adaround_h(v + fd_step) - qd::adaround_h(v - fd_step)) / (2 * fd_step);
        EXPECT_NEAR(qd::adaround_dh(v), fd, fd_tol);
        EXPECT_GE(qd::adaround_h(v), 0.0f);
        EXPECT_LE(qd::adaround_h(v), 1.0f);
    }
    EXPECT_EQ(qd::adaround_h(-10.0f), 0.0f);  // rectified: reaches exactly 0 and 1
    EXPECT_EQ(qd::adaround_h(10.0f), 1.0f);
    EXPECT_EQ(qd::adaround_dh(10.0f), 0.0f);
    EXPECT_NEAR(qd::adaround_h(0.0f), 0.5f, 1e-6f);
    for (float frac : {0.0f, 0.1f, 0.37f, 0.5f, 0.93f, 0.999f}) EXPECT_NEAR(qd::adaround_h(qd::adaround_init_v(frac)), frac, 1e-5f);
}

TEST(AdaroundMath, RegularizerAndItsGradient) {
    for (float beta : {2.0f, 7.5f, 20.0f})
        for (float h : {0.05f, 0.2f, 0.45f, 0.55f, 0.8f, 0.97f}) {
            SCOPED_TRACE(::testing::Message() << "beta " << beta << " h " << h);
            const float fd = (qd::adaround_reg(h + fd_step, beta) - qd::adaround_reg(h - fd_step, beta)) / (2 * fd_step);
            EXPECT_NEAR(qd::adaround_dreg(h, beta), fd, fd_tol * std::max(1.0f, std::fabs(fd)));
        }
    EXPECT_EQ(qd::adaround_reg(0.0f, 20.0f), 0.0f);
    EXPECT_EQ(qd::adaround_reg(1.0f, 2.0f), 0.0f);
    EXPECT_EQ(qd::adaround_reg(0.5f, 2.0f), 1.0f);
}

TEST(AdaroundMath, BetaScheduleAndWarmStart) {
    const qd::adaround_schedule s{10000, 0.2f, 20.0f, 2.0f};
    EXPECT_EQ(s.warm_iterations(), 2000);
    EXPECT_FALSE(s.regularize(1999));
    EXPECT_TRUE(s.regularize(2000));
    EXPECT_FLOAT_EQ(s.beta(2000), 20.0f);
    EXPECT_FLOAT_EQ(s.beta(6000), 11.0f);  // half way: the cosine is at 0
    EXPECT_FLOAT_EQ(s.beta(10000), 2.0f);
    for (int it = 2000; it < 10000; it += 500) EXPECT_GE(s.beta(it), s.beta(it + 500));
}

TEST(AdaroundMath, ActivationDerivatives) {
    qd::activation_fn relu;
    relu.kind = qd::act_kind::clip, relu.lo = 0;
    qd::activation_fn hs;
    hs.kind = qd::act_kind::hard_swish, hs.add = 3, hs.lo = 0, hs.hi = 6, hs.mul = 1.0f / 6;
    qd::activation_fn hsig;
    hsig.kind = qd::act_kind::hard_sigmoid, hsig.alpha = 0.2f, hsig.beta = 0.5f;
    qd::activation_fn leaky;
    leaky.kind = qd::act_kind::leaky_relu, leaky.alpha = 0.1f;
    for (const auto* f : {&relu, &hs, &hsig, &leaky})
        for (float z : {-4.1f, -2.0f, -0.7f, 0.3f, 1.9f, 2.4f, 3.3f, 5.0f}) {
            SCOPED_TRACE(::testing::Message() << "kind " << static_cast<int>(f->kind) << " z " << z);
            const float fd = (f->f(z + fd_step) - f->f(z - fd_step)) / (2 * fd_step);
            EXPECT_NEAR(f->df(z), fd, fd_tol);
        }
    EXPECT_FLOAT_EQ(hs.f(1.0f), 1.0f * 4.0f / 6.0f);
}

TEST(AdaroundKernels, ExpAndLogMatchTheLibrary) {
    for (float x = -87.0f; x < 88.0f; x += 0.0173f) {
        const double e = std::exp(static_cast<double>(x));
        ASSERT_NEAR(qd::adaround_exp(x), e, vec_math_tol * e) << "x " << x;
    }
    for (float x = 1e-30f; x < 1e30f; x *= 1.0371f) {
        const double l = std::log(static_cast<double>(x));
        ASSERT_NEAR(qd::adaround_log(x), l, vec_math_tol * std::max(1.0, std::fabs(l))) << "x " << x;
    }
}

TEST(AdaroundKernels, SoftWeightsAndAdamStepMatchTheScalarReference) {
    const std::uint32_t seed = base_seed + 60;
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 2.0f);
    constexpr std::int64_t n = 53;  // three 16-lane blocks and a tail
    std::vector<float> v(n), s(n), b0(n), lo(n, -8.0f), hi(n, 7.0f), gw(n), m(n), a2(n);
    for (std::int64_t i = 0; i < n; ++i) {
        v[i] = nd(rng) * (i % 7 == 0 ? 4.0f : 1.0f);  // some saturated h
        s[i] = 0.01f + 0.001f * static_cast<float>(i % 5);
        b0[i] = std::floor(nd(rng) * 3.0f);
        if (i % 11 == 0) b0[i] = 7.0f;  // on the upper clamp
        gw[i] = nd(rng);
        m[i] = 0.1f * nd(rng);
        a2[i] = 0.01f * std::fabs(nd(rng));
    }
    for (float reg : {0.0f, 0.01f})
        for (float beta : {2.0f, 13.7f}) {
            SCOPED_TRACE(::testing::Message() << "reg " << reg << " beta " << beta);
            std::vector<float> wt(n), h(n), sig(n);
            qd::adaround_soft_weights(n, v.data(), s.data(), b0.data(), lo.data(), hi.data(), wt.data(), h.data(), sig.data());
            std::vector<float> v2 = v, m2 = m, a22 = a2;
            const auto c = qd::adam_coefficients::at(1e-3f, 17);
            qd::adaround_grad_adam(n, gw.data(), h.data(), sig.data(), s.data(), b0.data(), lo.data(), hi.data(), reg,
                                   beta, c, v2.data(), m2.data(), a22.data());
            for (std::int64_t i = 0; i < n; ++i) {
                SCOPED_TRACE(i);
                const float hr = qd::adaround_h(v[i]);
                ASSERT_NEAR(h[i], hr, kernel_tol);
                ASSERT_NEAR(wt[i], s[i] * std::min(std::max(b0[i] + hr, lo[i]), hi[i]), kernel_tol * s[i]);
                const float qs = b0[i] + hr;
                const float dw = (qs > lo[i] && qs < hi[i]) ? gw[i] * s[i] : 0.0f;
                const float dr = reg != 0.0f ? reg * qd::adaround_dreg(hr, beta) : 0.0f;
                float vr = v[i], mr = m[i], ar = a2[i];
                qd::adam_update(vr, mr, ar, (dw + dr) * qd::adaround_dh(v[i]), c);
                ASSERT_NEAR(m2[i], mr, kernel_tol * std::max(1e-3f, std::fabs(mr)));
                ASSERT_NEAR(a22[i], ar, kernel_tol * std::max(1e-6f, std::fabs(ar)));
                // The step itself (about lr): its error relative to the step, plus rounding of V.
                ASSERT_NEAR(v2[i] - v[i], vr - v[i], 1e-3f * std::fabs(vr - v[i]) + 1e-6f);
            }
        }
}

TEST(AdaroundKernels, DotProductGemmMatchesReference) {
    const std::uint32_t seed = base_seed + 61;
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    for (std::int64_t rows : {1, 3, 4, 9})
        for (std::int64_t k : {1, 5, 8})
            for (std::int64_t p : {1, 15, 16, 37, 100}) {
                SCOPED_TRACE(::testing::Message() << rows << " x " << k << " x " << p);
                const std::int64_t ldd = p + 3, ldx = p + 1, ldg = k + 2;
                std::vector<float> d(static_cast<std::size_t>(rows * ldd)), x(static_cast<std::size_t>(k * ldx));
                for (auto& e : d) e = nd(rng);
                for (auto& e : x) e = nd(rng);
                std::vector<float> g(static_cast<std::size_t>(rows * ldg), -1.0f), gr = g;
                qd::adaround_gemm_nt(rows, k, p, d.data(), ldd, x.data(), ldx, g.data(), ldg);
                qd::adaround_gemm_nt_ref(rows, k, p, d.data(), ldd, x.data(), ldx, gr.data(), ldg);
                for (std::size_t i = 0; i < g.size(); ++i)
                    ASSERT_NEAR(g[i], gr[i], kernel_tol * std::sqrt(static_cast<float>(p)) * 4) << "element " << i;
            }
}

// ---- the algorithm ------------------------------------------------------------------------------------------------

TEST(Adaround, LinearLayerBeatsNearestAndReproducesIntegers) {
    for (bool per_channel : {true, false}) {
        const std::uint32_t seed = base_seed + per_channel;
        SCOPED_TRACE(::testing::Message() << "seed " << seed << " per_channel " << per_channel);
        std::mt19937 rng(seed);
        qs::quant_sim sim(linear_net(rng), w4(per_channel));
        const auto batches = correlated_batches(rng, 16, 8, 32);
        sim.compute_encodings(batches);
        const auto before = *sim.find("fc.weight")->params;
        const auto rep = qs::adaround(sim, batches, fast_options());
        ASSERT_EQ(rep.layers.size(), 1u);
        const auto& l = rep.layers[0];
        EXPECT_TRUE(l.exact);
        EXPECT_EQ(l.activation, "none");
        EXPECT_EQ(l.samples, 256);
        EXPECT_LT(l.mse_adaround, 0.8 * l.mse_nearest);
        EXPECT_GT(l.fraction_rounded_up_changed, 0.0);
        expect_on_grid(sim, "fc.weight");
        EXPECT_EQ(*sim.find("fc.weight")->params, before);  // same grid, now frozen
        sim.compute_encodings(batches);                     // frozen encodings are kept
        EXPECT_EQ(*sim.find("fc.weight")->params, before);
        expect_on_grid(sim, "fc.weight");
    }
}

TEST(Adaround, ConvReluAndDepthwiseSampled) {
    for (bool per_channel : {true, false}) {
        const std::uint32_t seed = base_seed + 10 + per_channel;
        SCOPED_TRACE(::testing::Message() << "seed " << seed << " per_channel " << per_channel);
        std::mt19937 rng(seed);
        qs::quant_sim sim(conv_net(rng), w4(per_channel));
        const auto batches = make_batches(rng, {4, 8, 8}, 4, 8);
        sim.compute_encodings(batches);
        const auto rep = qs::adaround(sim, batches, fast_options());
        ASSERT_EQ(rep.layers.size(), 2u);
        EXPECT_EQ(rep.layers[0].activation, "relu");
        EXPECT_FALSE(rep.layers[0].exact);
        EXPECT_EQ(rep.layers[0].positions, 32 * 64);
        EXPECT_EQ(rep.layers[1].positions, 32 * 16);
        for (const auto& l : rep.layers) {
            SCOPED_TRACE(l.weight);
            EXPECT_LT(l.mse_adaround, l.mse_nearest);
            expect_on_grid(sim, l.weight);
        }
    }
}

TEST(Adaround, ExactAndSampledLossAgree) {
    // The Gram form and the sampled form over all positions must give the same loss for the same weights: the
    // nearest-rounding MSE of the two runs is computed by the two code paths.
    std::mt19937 rng(base_seed + 20);
    const qs::graph g = conv_net(rng);
    const auto batches = make_batches(rng, {4, 8, 8}, 2, 8);
    qs::adaround_options o = fast_options();
    o.iterations = 1;
    o.eval_positions = 1 << 20;  // all positions
    double mse[2];
    for (int exact = 0; exact < 2; ++exact) {
        qs::quant_sim sim(g, w4(true));
        sim.compute_encodings(batches);
        o.exact_linear = exact != 0;
        const auto rep = qs::adaround(sim, batches, o);
        ASSERT_EQ(rep.layers.size(), 2u);
        EXPECT_EQ(rep.layers[1].exact, exact != 0);
        mse[exact] = rep.layers[1].mse_nearest;
    }
    EXPECT_NEAR(mse[0], mse[1], mse_agree * mse[1]);
}

TEST(Adaround, FloatingPointInputsAndProgress) {
    std::mt19937 rng(base_seed + 30);
    qs::quant_sim sim(conv_net(rng), w4(true));
    const auto batches = make_batches(rng, {4, 8, 8}, 2, 8);
    sim.compute_encodings(batches);
    qs::adaround_options o = fast_options();
    o.iterations = 300;
    o.quantized_inputs = false;
    o.max_samples = 5;
    int calls = 0, last = 0;
    o.progress = [&](const qs::adaround_progress& p) {
        ++calls;
        EXPECT_EQ(p.layers, 2u);
        EXPECT_TRUE(std::isfinite(p.loss));
        last = p.iteration;
    };
    const auto rep = qs::adaround(sim, batches, o);
    EXPECT_EQ(rep.layers[0].samples, 5);
    EXPECT_EQ(calls, 2 * 4);  // iterations 1, 101, 201 and the last, per layer
    EXPECT_EQ(last, 300);
    expect_on_grid(sim, "conv1.weight");
}

TEST(Adaround, MissingWeightEncodingIsComputedAndDisabledQuantizerSkipped) {
    std::mt19937 rng(base_seed + 40);
    qs::quant_sim sim(conv_net(rng), w4(true));
    const auto batches = make_batches(rng, {4, 8, 8}, 2, 4);
    sim.set_enabled("dw.weight", false);
    const qs::tensor dw_before = sim.model().params.at("dw.weight").clone();
    ASSERT_FALSE(sim.find("conv1.weight")->params.has_value());
    qs::adaround_options o = fast_options();
    o.iterations = 50;
    const auto rep = qs::adaround(sim, batches, o);
    ASSERT_EQ(rep.layers.size(), 1u);
    EXPECT_EQ(rep.layers[0].weight, "conv1.weight");
    ASSERT_EQ(rep.skipped.size(), 1u);
    EXPECT_NE(rep.skipped[0].find("dw.weight"), std::string::npos);
    expect_on_grid(sim, "conv1.weight");
    const qs::tensor& dw_after = sim.model().params.at("dw.weight");
    for (std::int64_t i = 0; i < dw_after.numel(); ++i) EXPECT_EQ(dw_after.f32()[i], dw_before.f32()[i]);
}

TEST(Adaround, BadInput) {
    std::mt19937 rng(base_seed + 50);
    qs::quant_sim sim(linear_net(rng), w4(true));
    EXPECT_THROW(qs::adaround(sim, {}), qs::calibration_error);
    std::vector<std::vector<qs::tensor>> empty_batch{{qs::tensor::empty({0, 16})}};
    EXPECT_THROW(qs::adaround(sim, empty_batch), qs::calibration_error);
    const auto batches = make_batches(rng, {16}, 1, 4);
    qs::adaround_options o;
    o.iterations = 0;
    EXPECT_THROW(qs::adaround(sim, batches, o), qs::invalid_argument);
    o = {};
    o.warm_start = 1.0f;
    EXPECT_THROW(qs::adaround(sim, batches, o), qs::invalid_argument);
    o = {};
    o.learning_rate = std::nanf("");
    EXPECT_THROW(qs::adaround(sim, batches, o), qs::invalid_argument);
    std::vector<std::vector<qs::tensor>> two_inputs{{batches[0][0], batches[0][0]}};
    EXPECT_THROW(qs::adaround(sim, two_inputs), qs::invalid_argument);
}

TEST(Adaround, DirectDepthwiseMatchesIm2col) {
    // The direct depthwise step and the im2col step see the same sampled rows (same seed) and compute the same
    // loss and gradient: the progress losses agree to rounding and the learned integers are the same.
    struct net {
        const char* name;
        qs::graph (*make)(std::mt19937&);
        qs::shape_t sample;
        std::string weight;
    };
    const net nets[] = {{"5x5 stride 1 hardswish", depthwise5_net, {6, 4, 12}, "dw5.weight"},
                        {"3x3 stride 2 after conv+relu", conv_net, {4, 8, 8}, "dw.weight"}};
    for (const auto& nt : nets) {
        const std::uint32_t seed = base_seed + 70;
        SCOPED_TRACE(::testing::Message() << "seed " << seed << " " << nt.name);
        std::mt19937 rng(seed);
        const qs::graph g = nt.make(rng);
        const auto batches = make_batches(rng, nt.sample, 3, 8);
        std::vector<double> losses[2];
        std::vector<float> weights[2];
        for (int direct = 0; direct < 2; ++direct) {
            qs::quant_sim sim(g, w4(true));
            sim.compute_encodings(batches);
            qs::adaround_options o = fast_options();
            o.iterations = 400;
            o.positions_per_iteration = 40;
            o.direct_depthwise = direct != 0;
            o.progress = [&](const qs::adaround_progress& p) {
                if (p.weight == nt.weight) losses[direct].push_back(p.loss);
            };
            qs::adaround(sim, batches, o);
            const qs::tensor& w = sim.model().params.at(nt.weight);
            weights[direct].assign(w.f32(), w.f32() + w.numel());
        }
        ASSERT_EQ(losses[0].size(), losses[1].size());
        ASSERT_FALSE(losses[0].empty());
        for (std::size_t i = 0; i < losses[0].size(); ++i)
            EXPECT_NEAR(losses[1][i], losses[0][i], path_loss_tol * std::max(1e-6, losses[0][i])) << "report " << i;
        EXPECT_EQ(weights[0], weights[1]);
    }
}

TEST(Adaround, KeepsNearestRoundingWhenTheLearnedOneIsWorse) {
    // A huge learning rate saturates every h(V) after the first step in the direction of the first sampled
    // gradient: an essentially random rounding, far worse than nearest. The safeguard must reject it.
    const std::uint32_t seed = base_seed + 80;
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    std::mt19937 rng(seed);
    const qs::graph g = linear_net(rng);
    const auto batches = correlated_batches(rng, 16, 8, 32);
    qs::adaround_options o = fast_options();
    o.iterations = 20;
    o.learning_rate = 1e3f;
    o.exact_linear = false;
    o.positions_per_iteration = 4;
    for (bool keep : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "keep_nearest_if_worse " << keep);
        qs::quant_sim sim(g, w4(true));
        sim.compute_encodings(batches);
        const qs::quantizer& q = *sim.find("fc.weight");
        const qs::tensor nearest = qs::fake_quant(sim.model().params.at("fc.weight"), *q.params, q.options);
        o.keep_nearest_if_worse = keep;
        const auto rep = qs::adaround(sim, batches, o);
        ASSERT_EQ(rep.layers.size(), 1u);
        const auto& l = rep.layers[0];
        EXPECT_GT(l.mse_adaround, l.mse_nearest);  // the forced case: learned rounding is worse
        EXPECT_EQ(l.kept_nearest, keep);
        const qs::tensor& w = sim.model().params.at("fc.weight");
        std::int64_t differ = 0;
        for (std::int64_t i = 0; i < w.numel(); ++i) differ += w.f32()[i] != nearest.f32()[i];
        if (keep) {
            EXPECT_EQ(differ, 0);
            EXPECT_EQ(l.fraction_rounded_up_changed, 0.0);
            EXPECT_NE(rep.table().find("kept nearest"), std::string::npos);
        } else {
            EXPECT_GT(differ, 0);
        }
        expect_on_grid(sim, "fc.weight");
    }
}
