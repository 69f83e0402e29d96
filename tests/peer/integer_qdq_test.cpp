// The integer mode against a real int8 runtime: the PaddleOCR classifier quantized W8A8 (per-tensor and
// per-channel), exported as QDQ ONNX and run by ONNX Runtime with its integer kernels (graph optimizations "all"),
// against quantsim's integer executor (ONNX Runtime profile) on rendered text lines. The fake-quant simulation's
// figures are printed beside them (docs/runtime-gap.md).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include <quantsim/io/onnx.hpp>
#include <quantsim/sim/integer_executor.hpp>
#include <quantsim/sim/quantsim.hpp>

#include "peer_harness.hpp"

namespace qs = quantsim;
namespace peer = quantsim::peer;

namespace {

// The bars: at least 99.9% of output values identical to ONNX Runtime, the same top-1 on every image.
constexpr double min_identical = 0.999;
constexpr double min_top1_agreement = 1.0;
constexpr std::int64_t calib_samples = 128;
constexpr std::int64_t eval_samples = 200;

struct gap {
    double agreement = 0;
    double max_steps = 0;
    double identical = 0;
};

gap compare(const qs::tensor& a, const qs::tensor& b, float step) {
    gap g;
    const std::int64_t n = a.dim(0), c = a.dim(1);
    std::int64_t agree = 0, same = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        std::int64_t ba = 0, bb = 0;
        for (std::int64_t k = 0; k < c; ++k) {
            const float x = a.f32()[i * c + k], y = b.f32()[i * c + k];
            if (x > a.f32()[i * c + ba]) ba = k;
            if (y > b.f32()[i * c + bb]) bb = k;
            g.max_steps = std::max(g.max_steps, static_cast<double>(std::fabs(x - y) / step));
            same += x == y;
        }
        agree += ba == bb;
    }
    g.agreement = static_cast<double>(agree) / static_cast<double>(n);
    g.identical = static_cast<double>(same) / static_cast<double>(n * c);
    return g;
}

qs::tensor concat_rows(const std::vector<qs::tensor>& parts) {
    std::int64_t rows = 0;
    for (const auto& p : parts) rows += p.dim(0);
    qs::tensor out = qs::tensor::empty({rows, parts[0].dim(1)});
    std::int64_t off = 0;
    for (const auto& p : parts) {
        std::copy_n(p.f32(), p.numel(), out.f32() + off);
        off += p.numel();
    }
    return out;
}

void run_case(const char* config) {
    QUANTSIM_REQUIRE_PEER_NODE();
    const auto model = peer::paddle_model(peer::cls_model_file);
    const auto calib_file = peer::data_dir() / "cls" / "calib" / "X.npy";
    const auto eval_file = peer::data_dir() / "cls" / "eval" / "X.npy";
    QUANTSIM_REQUIRE_PEER_FILE(model);
    QUANTSIM_REQUIRE_PEER_FILE(calib_file);
    QUANTSIM_REQUIRE_PEER_FILE(eval_file);

    const qs::tensor calib = peer::load_npy(calib_file);
    const qs::tensor eval = peer::load_npy(eval_file).slice(0, eval_samples).clone();
    qs::quantsim_options o;
    o.config = qs::quantsim_config::builtin(config);
    qs::quant_sim sim(qs::load_onnx(model), o);
    std::vector<qs::tensor> batches;
    for (std::int64_t s = 0; s < std::min(calib_samples, calib.dim(0)); s += 32)
        batches.push_back(calib.slice(s, std::min(calib_samples, s + 32)));
    sim.compute_encodings(batches);

    qs::integer_executor ints(sim);
    std::vector<qs::tensor> fq, iq;
    for (std::int64_t s = 0; s < eval.dim(0); s += 50) {
        fq.push_back(sim.forward(eval.slice(s, s + 50)));
        iq.push_back(ints.run(eval.slice(s, s + 50)));
    }
    const float step = sim.effective_params(sim.model().outputs[0].name)->scale[0];
    const qs::tensor ort = peer::run_ort_on_graph(sim.qdq_model(13), {{"", eval}}).outputs[0];
    const auto integer = compare(concat_rows(iq), ort, step);
    const auto fake = compare(concat_rows(fq), ort, step);
    std::cout << config << " vs ONNX Runtime (opt all), " << eval.dim(0) << " images: integer mode: identical "
              << integer.identical << ", max " << integer.max_steps << " steps, top-1 " << integer.agreement
              << " | fake-quant: identical " << fake.identical << ", max " << fake.max_steps << " steps, top-1 "
              << fake.agreement << "\n";
    EXPECT_GE(integer.identical, min_identical);
    EXPECT_GE(integer.agreement, min_top1_agreement);
}

// A torchvision ImageNet model (Conv/Relu or Clip, residual Add, GlobalAveragePool, Flatten, Gemm head), W8A8,
// on seeded random inputs (the agreement, not the accuracy, is measured): the integer mode against ONNX Runtime.
void run_torchvision_case(const char* name, const char* config) {
    QUANTSIM_REQUIRE_PEER_NODE();
    const auto model = peer::torchvision_model(name);
    QUANTSIM_REQUIRE_PEER_FILE(model);
    constexpr std::uint32_t seed = 20261127;
    SCOPED_TRACE(testing::Message() << name << ", " << config << ", seed " << seed);
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    auto images = [&](std::int64_t n) {
        qs::tensor t = qs::tensor::empty({n, 3, 224, 224});
        for (auto& v : t.span<float>()) v = d(rng);
        return t;
    };
    qs::quantsim_options o;
    o.config = qs::quantsim_config::builtin(config);
    qs::quant_sim sim(qs::load_onnx(model), o);
    sim.compute_encodings(std::vector<qs::tensor>{images(8), images(8)});
    const qs::tensor eval = images(16);
    qs::integer_executor ints(sim);
    const qs::tensor iq = ints.run(eval);
    const float step = sim.effective_params(sim.model().outputs[0].name)->scale[0];
    const qs::tensor ort = peer::run_ort_on_graph(sim.qdq_model(13), {{"", eval}}).outputs[0];
    const auto integer = compare(iq, ort, step);
    std::map<std::string, int> kernels;
    for (const auto& p : ints.plan()) ++kernels[p.kernel];
    std::cout << name << " " << config << " vs ONNX Runtime (opt all), " << eval.dim(0)
              << " random images: integer mode: identical " << integer.identical << ", max " << integer.max_steps
              << " steps, top-1 " << integer.agreement << "; Gemm as " << (kernels.count("float Gemm") ? "float" : "QGemm")
              << "\n";
    EXPECT_GE(integer.identical, min_identical);
    EXPECT_GE(integer.agreement, min_top1_agreement);
}

}  // namespace

TEST(PeerIntegerQdq, resnet18_w8a8_per_channel_integer_mode_matches_onnx_runtime) {
    run_torchvision_case("resnet18", "per_channel");
}
TEST(PeerIntegerQdq, mobilenet_v2_w8a8_per_tensor_integer_mode_matches_onnx_runtime) {
    run_torchvision_case("mobilenet_v2", "default");
}

TEST(PeerIntegerQdq, classifier_w8a8_per_tensor_integer_mode_matches_onnx_runtime) { run_case("default"); }
TEST(PeerIntegerQdq, classifier_w8a8_per_channel_integer_mode_matches_onnx_runtime) { run_case("per_channel"); }
