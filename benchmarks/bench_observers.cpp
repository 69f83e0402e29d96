// Observer throughput (observe() over 16M floats, 1 and 2 threads: split, observe, merge) against a read-only
// baseline in the same binary, plus the cost of compute() (the range searches) and of per-channel observers.
//   build-obs/bin/bench_observers --benchmark_filter='Read|Observe'
#include <cstddef>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <quantsim/quant/observers.hpp>

namespace {

using namespace quantsim;

constexpr std::size_t big_n = std::size_t{1} << 24;  // 16M floats = 64 MiB: far beyond the caches

const std::vector<float>& big_data() {
    static const std::vector<float> v = [] {
        std::vector<float> x(big_n);
        std::mt19937 rng(42);
        std::normal_distribution<float> d(0.0f, 2.0f);
        for (auto& f : x) f = d(rng);
        return x;
    }();
    return v;
}

std::vector<float> laplace_with_outliers(std::size_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::exponential_distribution<float> e(1.0f);
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = (i & 1 ? 1.0f : -1.0f) * e(rng);
    for (std::size_t i = 0; i < 16; ++i) v[i * 7919 % n] = (i & 1 ? 1.0f : -1.0f) * 50.0f;
    return v;
}

// Read-only baseline: a vectorized sum with independent accumulators (what any streaming scan can reach).
float sum_chunk(const float* x, std::size_t n) {
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    std::size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + i + 48));
    }
    alignas(64) float t[16];
    _mm512_store_ps(t, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    float s = 0;
    for (float v : t) s += v;
    for (; i < n; ++i) s += x[i];
    return s;
#else
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) s0 += x[i], s1 += x[i + 1], s2 += x[i + 2], s3 += x[i + 3];
    for (; i < n; ++i) s0 += x[i];
    return s0 + s1 + s2 + s3;
#endif
}

void BM_ReadBaseline(benchmark::State& state) {
    const auto& x = big_data();
    const int t = static_cast<int>(state.range(0));
    for (auto _ : state) {
        float total = 0;
#pragma omp parallel for num_threads(t) reduction(+ : total) schedule(static)
        for (int i = 0; i < t; ++i) {
            const std::size_t b = x.size() * static_cast<std::size_t>(i) / static_cast<std::size_t>(t);
            const std::size_t e = x.size() * static_cast<std::size_t>(i + 1) / static_cast<std::size_t>(t);
            total += sum_chunk(x.data() + b, e - b);
        }
        benchmark::DoNotOptimize(total);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(x.size() * 4));
}
BENCHMARK(BM_ReadBaseline)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

template <class Make>
void observe_bench(benchmark::State& state, Make make) {
    const auto& x = big_data();
    const int t = static_cast<int>(state.range(0));
    auto obs = make();
    for (auto _ : state) {
        obs.reset();
        if (t == 1)
            obs.observe(x);
        else
            observe_parallel(obs, x, t);
        benchmark::DoNotOptimize(obs);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(x.size() * 4));
}

void BM_ObserveMinMax(benchmark::State& s) {
    observe_bench(s, [] { return minmax_observer{}; });
}
void BM_ObserveEma(benchmark::State& s) {
    observe_bench(s, [] { return moving_average_observer{}; });
}
void BM_ObserveHistogram(benchmark::State& s) {
    observe_bench(s, [] { return sqnr_observer(sqnr_estimator{}); });
}
BENCHMARK(BM_ObserveMinMax)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ObserveEma)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ObserveHistogram)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// compute(): the range search over a full 2048-bin histogram (1M Laplace values with outliers), 8 bits.
// Arg 0: asymmetric, 1: symmetric.
template <class E>
void compute_bench(benchmark::State& state, E est, int bits = 8) {
    const auto x = laplace_with_outliers(std::size_t{1} << 20, 7);
    histogram_observer<E> o(est);
    o.observe(x);
    quant_spec spec;
    spec.bitwidth = bits;
    spec.scheme = state.range(0) ? qscheme::symmetric : qscheme::asymmetric;
    for (auto _ : state) benchmark::DoNotOptimize(o.compute(spec));
    state.counters["bins"] = static_cast<double>(o.histogram().num_bins());
}
void BM_ComputePercentile(benchmark::State& s) {
    compute_bench(s, percentile_estimator(99.99));
}
void BM_ComputeMse(benchmark::State& s) {
    compute_bench(s, mse_estimator{});
}
void BM_ComputeMse16(benchmark::State& s) {
    compute_bench(s, mse_estimator{}, 16);
}
void BM_ComputeSqnr(benchmark::State& s) {
    compute_bench(s, sqnr_estimator{});
}
void BM_ComputeEntropy(benchmark::State& s) {
    compute_bench(s, entropy_estimator{});
}
BENCHMARK(BM_ComputePercentile)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ComputeMse)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ComputeMse16)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ComputeSqnr)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ComputeEntropy)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// Per-channel observe over a 512 x 4608 weight (2.4M floats): channel axis 0 (contiguous rows) and the
// transposed layout with the channel axis last (axis 1 of 4608 x 512).
template <class Make>
void per_channel_observe_bench(benchmark::State& state, Make make) {
    const auto x = laplace_with_outliers(512 * 4608, 9);
    const bool last = state.range(0) == 1;
    const shape_t shape = last ? shape_t{4608, 512} : shape_t{512, 4608};
    auto obs = make(last ? 1 : 0);
    for (auto _ : state) {
        obs.reset();
        obs.observe(x, shape);
        benchmark::DoNotOptimize(obs);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(x.size() * 4));
}
void BM_PerChannelObserveMinMax(benchmark::State& s) {
    per_channel_observe_bench(s, [](int axis) { return per_channel_minmax_observer(axis); });
}
void BM_PerChannelObserveHistogram(benchmark::State& s) {
    per_channel_observe_bench(s, [](int axis) { return per_channel_sqnr_observer(sqnr_estimator{}, axis); });
}
BENCHMARK(BM_PerChannelObserveMinMax)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PerChannelObserveHistogram)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// Per-channel compute for a 512 x 576 conv weight (512 channels), 8-bit symmetric, all threads.
template <class E>
void per_channel_compute_bench(benchmark::State& state, E est) {
    const auto x = laplace_with_outliers(512 * 576, 11);
    per_channel_histogram_observer<E> o(est, 0);
    o.observe(x, {512, 576});
    quant_spec spec;
    spec.scheme = qscheme::symmetric;
    for (auto _ : state) benchmark::DoNotOptimize(o.compute(spec));
}
void BM_PerChannelComputeMse(benchmark::State& s) {
    per_channel_compute_bench(s, mse_estimator{});
}
void BM_PerChannelComputeSqnr(benchmark::State& s) {
    per_channel_compute_bench(s, sqnr_estimator{});
}
BENCHMARK(BM_PerChannelComputeMse)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PerChannelComputeSqnr)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
