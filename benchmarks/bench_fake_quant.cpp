// Quantizer kernel throughput against a memcpy baseline measured in the same run. Bytes processed count read +
// write (8 bytes per float element for fake-quant, like memcpy's 4 + 4), so the GB/s columns compare directly.
//
//   build-<you>/bin/bench_fake_quant --benchmark_min_time=0.2
//
// Sizes: 16M floats (64 MiB in + 64 MiB out: DRAM-bound) and 1M floats (4 MiB each: cache-resident).
// Threads: the second argument (OpenMP; results are identical for any count).
#include <cstring>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include <quantsim/quant.hpp>

namespace {

using namespace quantsim;

constexpr std::int64_t big = std::int64_t{1} << 24;
constexpr std::int64_t cached = std::int64_t{1} << 20;

// Buffers are quantsim tensors (64-byte aligned storage, as the library allocates them), for the kernels and the
// memcpy baseline alike.
tensor random_data(std::int64_t n) {
    tensor t = tensor::empty({n});
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& x : t.span<float>()) x = nd(rng);
    return t;
}
tensor zeroed(std::int64_t n) { return tensor::zeros({n}); }

void set_bytes(benchmark::State& state, std::int64_t n, std::int64_t bytes_per_element = 8) {
    state.SetBytesProcessed(state.iterations() * n * bytes_per_element);
    state.counters["threads"] = static_cast<double>(state.range(1));
}

// Baseline: memcpy split over the same threads the kernels use.
void BM_memcpy(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    const int threads = static_cast<int>(state.range(1));
    const tensor xt = random_data(n);
    tensor yt = zeroed(n);
    const float* x = xt.f32();
    float* y = yt.f32();
    for (auto _ : state) {
        detail::parallel_ranges(n, threads, [&](std::int64_t b, std::int64_t e) {
            std::memcpy(y + b, x + b, static_cast<std::size_t>(e - b) * sizeof(float));
        });
        benchmark::DoNotOptimize(y);
        benchmark::ClobberMemory();
    }
    set_bytes(state, n);
}

quant_params per_tensor_params() { return quant_params::per_tensor({0.0173f, 0, 8, true, qscheme::symmetric}); }

quant_params per_channel_params(std::int64_t channels, int axis) {
    quant_params p;
    p.bitwidth = 8;
    p.is_signed = false;
    p.scheme = qscheme::asymmetric;
    p.scale.clear(), p.zero_point.clear();
    for (std::int64_t c = 0; c < channels; ++c) {
        p.scale.push_back(0.01f + 0.0001f * static_cast<float>(c % 97));
        p.zero_point.push_back(static_cast<std::int32_t>(c % 256));
    }
    p.gran = granularity::per_channel(axis);
    return p;
}

void run_fake_quant(benchmark::State& state, const shape_t& shape, const quant_params& p, quant_options o,
                    bool in_place) {
    const std::int64_t n = checked_numel(shape);
    o.num_threads = static_cast<int>(state.range(1));
    const tensor xt = random_data(n);
    tensor yt = zeroed(n), zt = xt.clone();
    const auto x = xt.span<float>();
    const auto y = yt.span<float>();
    const auto z = zt.span<float>();
    for (auto _ : state) {
        if (in_place)
            fake_quant_(z, shape, p, o);  // repeated in place: fq is idempotent, the work is the same every pass
        else
            fake_quant(x, y, shape, p, o);
        benchmark::ClobberMemory();
    }
    set_bytes(state, n);
}

void BM_fake_quant_per_tensor(benchmark::State& state) {
    run_fake_quant(state, {state.range(0)}, per_tensor_params(), {}, false);
}
void BM_fake_quant_per_tensor_inplace(benchmark::State& state) {
    run_fake_quant(state, {state.range(0)}, per_tensor_params(), {}, true);
}
void BM_fake_quant_per_tensor_torch_arith(benchmark::State& state) {
    run_fake_quant(state, {state.range(0)}, per_tensor_params(), quant_options::pytorch(), false);
}
void BM_fake_quant_per_tensor_stochastic(benchmark::State& state) {
    quant_options o;
    o.rounding = rounding_mode::stochastic;
    run_fake_quant(state, {state.range(0)}, per_tensor_params(), o, false);
}
void BM_fake_quant_per_tensor_away(benchmark::State& state) {
    run_fake_quant(state, {state.range(0)}, per_tensor_params(), quant_options::aimet(), false);
}
// Channel axis outermost: [256, n / 256] (weights [O, I], NCHW batch-1 activations).
void BM_fake_quant_per_channel_outer(benchmark::State& state) {
    const std::int64_t c = 256;
    run_fake_quant(state, {c, state.range(0) / c}, per_channel_params(c, 0), {}, false);
}
// Channel axis innermost: [n / 256, 256] (NHWC / [tokens, features] activations, MatMul weights [K, N]).
void BM_fake_quant_per_channel_inner(benchmark::State& state) {
    const std::int64_t c = 256;
    run_fake_quant(state, {state.range(0) / c, c}, per_channel_params(c, 1), {}, false);
}
// NCHW with a 7x7 image, channel axis 1 (short rows, folded): [n / (512 * 49), 512, 7, 7] rounded down.
void BM_fake_quant_per_channel_nchw7x7(benchmark::State& state) {
    const std::int64_t c = 512, hw = 49, batch = state.range(0) / (c * hw);
    run_fake_quant(state, {batch, c, 7, 7}, per_channel_params(c, 1), {}, false);
}
// int4 weights in blocks of 64 along the input axis, per output channel: [n / 4096, 4096].
void BM_fake_quant_per_block64_int4(benchmark::State& state) {
    const std::int64_t in = 4096, out = state.range(0) / in, blocks = out * (in / 64);
    quant_params p;
    p.bitwidth = 4;
    p.is_signed = true;
    p.scheme = qscheme::symmetric;
    p.scale.assign(static_cast<std::size_t>(blocks), 0.05f);
    p.zero_point.assign(static_cast<std::size_t>(blocks), 0);
    for (std::int64_t b = 0; b < blocks; ++b) p.scale[static_cast<std::size_t>(b)] += 0.001f * static_cast<float>(b % 13);
    p.gran = granularity::per_block(0, 1, 64);
    run_fake_quant(state, {out, in}, p, {}, false);
}

void BM_quantize_int8(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    quant_options o;
    o.num_threads = static_cast<int>(state.range(1));
    const tensor xt = random_data(n);
    const auto x = xt.span<float>();
    std::vector<std::int8_t> q(x.size());
    const shape_t shape{n};
    const quant_params p = per_tensor_params();
    for (auto _ : state) {
        quantize<std::int8_t>(x, q, shape, p, o);
        benchmark::ClobberMemory();
    }
    set_bytes(state, n, 5);  // 4 read + 1 written
}
void BM_dequantize_int8(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    const tensor xt = random_data(n);
    const auto x = xt.span<float>();
    std::vector<std::int8_t> q(x.size());
    const shape_t shape{n};
    const quant_params p = per_tensor_params();
    quantize<std::int8_t>(x, q, shape, p);
    tensor yt = zeroed(n);
    const auto y = yt.span<float>();
    quant_options o;
    o.num_threads = static_cast<int>(state.range(1));
    for (auto _ : state) {
        dequantize<std::int8_t>(q, y, shape, p, dtype::int8, o);
        benchmark::ClobberMemory();
    }
    set_bytes(state, n, 5);
}
// The plain reference kernel, for scale.
void BM_fake_quant_ref_per_tensor(benchmark::State& state) {
    const std::int64_t n = state.range(0);
    const tensor xt = random_data(n);
    tensor yt = zeroed(n);
    const shape_t shape{n};
    const quant_params p = per_tensor_params();
    for (auto _ : state) {
        fake_quant_ref(xt.span<float>(), yt.span<float>(), shape, p);
        benchmark::ClobberMemory();
    }
    set_bytes(state, n);
}

void sizes_and_threads(benchmark::internal::Benchmark* b) {
    for (std::int64_t n : {big, cached})
        for (int t : {1, 2}) b->Args({n, t});
    b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_memcpy)->Apply(sizes_and_threads);
BENCHMARK(BM_fake_quant_per_tensor)->Apply(sizes_and_threads);
BENCHMARK(BM_fake_quant_per_channel_outer)->Apply(sizes_and_threads);
BENCHMARK(BM_fake_quant_per_channel_inner)->Apply(sizes_and_threads);
BENCHMARK(BM_fake_quant_per_tensor_inplace)->Apply(sizes_and_threads);
BENCHMARK(BM_fake_quant_per_tensor_torch_arith)->Apply(sizes_and_threads);
BENCHMARK(BM_fake_quant_per_tensor_away)->Args({big, 1})->Args({big, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fake_quant_per_tensor_stochastic)->Args({big, 1})->Args({big, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fake_quant_per_channel_nchw7x7)->Args({big, 1})->Args({big, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fake_quant_per_block64_int4)->Args({big, 1})->Args({big, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_quantize_int8)->Args({big, 1})->Args({big, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dequantize_int8)->Args({big, 1})->Args({big, 2})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fake_quant_ref_per_tensor)->Args({cached, 1})->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
