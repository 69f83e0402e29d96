// Google Benchmark for the op kernels: packed GEMM, the three conv algorithms on shapes taken from the PaddleOCR
// classifier / detector / recognizer, depthwise 3x3 and 5x5, fused epilogues, pooling and broadcasting.
// Threads: --benchmark_filter as usual; kernels use QUANTSIM_BENCH_THREADS (default 1) OpenMP threads.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <vector>

#include <quantsim/ir/kernels/conv.hpp>
#include <quantsim/ir/kernels/elementwise.hpp>
#include <quantsim/ir/kernels/gemm.hpp>
#include <quantsim/ir/kernels/parallel.hpp>
#include <quantsim/ir/kernels/pointwise.hpp>
#include <quantsim/ir/kernels/pool.hpp>
#include <quantsim/ir/kernels/softmax.hpp>

using namespace quantsim;

namespace {

int bench_threads() {
    const char* e = std::getenv("QUANTSIM_BENCH_THREADS");
    return e ? std::atoi(e) : 1;
}

std::vector<float> random_vec(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// args: M, N, K
void BM_gemm(benchmark::State& st) {
    kernel_threads_scope ts(bench_threads());
    const std::int64_t m = st.range(0), n = st.range(1), k = st.range(2);
    auto a = random_vec(static_cast<std::size_t>(m * k), 1), b = random_vec(static_cast<std::size_t>(k * n), 2);
    std::vector<float> c(static_cast<std::size_t>(m * n));
    for (auto _ : st) {
        gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
        benchmark::DoNotOptimize(c.data());
    }
    st.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(m * n * k), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_gemm)->Args({64, 1024, 64})->Args({240, 960, 240})->Args({480, 480, 480})->Args({320, 6625, 120})->Unit(benchmark::kMicrosecond);

void BM_gemm_ref(benchmark::State& st) {
    const std::int64_t m = st.range(0), n = st.range(1), k = st.range(2);
    auto a = random_vec(static_cast<std::size_t>(m * k), 1), b = random_vec(static_cast<std::size_t>(k * n), 2);
    std::vector<float> c(static_cast<std::size_t>(m * n));
    for (auto _ : st) {
        gemm_ref(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
        benchmark::DoNotOptimize(c.data());
    }
    st.counters["GFLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(m * n * k), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_gemm_ref)->Args({64, 1024, 64})->Unit(benchmark::kMicrosecond);

struct conv_case {
    std::int64_t batch, c, h, w, m, k, sh, sw, pad, group;
};

void run_conv(benchmark::State& st, const conv_case& cc) {
    kernel_threads_scope ts(bench_threads());
    conv_geometry g;
    g.in_channels = cc.c;
    g.out_channels = cc.m;
    g.group = cc.group;
    g.kernel = {cc.k, cc.k};
    g.stride = {cc.sh, cc.sw};
    g.pad_begin = g.pad_end = {cc.pad, cc.pad};
    const auto w = random_vec(static_cast<std::size_t>(cc.m * cc.c / cc.group * cc.k * cc.k), 3);
    const auto bias = random_vec(static_cast<std::size_t>(cc.m), 4);
    const auto x = random_vec(static_cast<std::size_t>(cc.batch * cc.c * cc.h * cc.w), 5);
    conv2d_kernel kern(g, w.data(), bias.data());
    const std::int64_t oh = g.conv_out(0, cc.h), ow = g.conv_out(1, cc.w);
    std::vector<float> y(static_cast<std::size_t>(cc.batch * cc.m * oh * ow));
    conv_epilogue ep;
    ep.lo = 0.0f;
    for (auto _ : st) {
        kern.run(cc.batch, cc.h, cc.w, x.data(), y.data(), ep);
        benchmark::DoNotOptimize(y.data());
    }
    const double macs = static_cast<double>(cc.batch * cc.m * oh * ow * (cc.c / cc.group) * cc.k * cc.k);
    st.counters["GFLOP/s"] = benchmark::Counter(2.0 * macs, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
    const char* names[] = {"depthwise", "1x1-gemm", "im2col", "indirect"};
    st.SetLabel(names[static_cast<int>(kern.algo())]);
}

// Classifier (batch 32, 3x48x192 input)
void BM_conv_cls_first(benchmark::State& st) { run_conv(st, {32, 3, 48, 192, 8, 3, 2, 2, 1, 1}); }
void BM_conv_cls_pw_16_88(benchmark::State& st) { run_conv(st, {32, 16, 3, 96, 88, 1, 1, 1, 0, 1}); }
void BM_conv_cls_pw_200_32(benchmark::State& st) { run_conv(st, {32, 200, 2, 96, 32, 1, 1, 1, 0, 1}); }
void BM_conv_cls_dw5_88(benchmark::State& st) { run_conv(st, {32, 88, 3, 96, 88, 5, 1, 1, 2, 88}); }
void BM_conv_cls_dw3_s21(benchmark::State& st) { run_conv(st, {32, 24, 12, 96, 24, 3, 2, 1, 1, 24}); }
// Detector (batch 1, 640x640)
void BM_conv_det_first(benchmark::State& st) { run_conv(st, {1, 3, 640, 640, 16, 3, 2, 2, 1, 1}); }
void BM_conv_det_dw3_320(benchmark::State& st) { run_conv(st, {1, 16, 320, 320, 16, 3, 1, 1, 1, 16}); }
void BM_conv_det_pw_16_32(benchmark::State& st) { run_conv(st, {1, 16, 320, 320, 32, 1, 1, 1, 0, 1}); }
void BM_conv_det_3x3_96_24(benchmark::State& st) { run_conv(st, {1, 96, 160, 160, 24, 3, 1, 1, 1, 1}); }
void BM_conv_det_pw_384(benchmark::State& st) { run_conv(st, {1, 384, 20, 20, 384, 1, 1, 1, 0, 1}); }
// Recognizer (batch 8, 3x48x320)
void BM_conv_rec_pw_240(benchmark::State& st) { run_conv(st, {8, 240, 12, 80, 240, 1, 1, 1, 0, 1}); }
void BM_conv_rec_dw5_240(benchmark::State& st) { run_conv(st, {8, 240, 12, 80, 240, 5, 1, 1, 2, 240}); }

BENCHMARK(BM_conv_cls_first)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_cls_pw_16_88)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_cls_pw_200_32)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_cls_dw5_88)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_cls_dw3_s21)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_det_first)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_det_dw3_320)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_det_pw_16_32)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_det_3x3_96_24)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_det_pw_384)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_rec_pw_240)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_rec_dw5_240)->Unit(benchmark::kMicrosecond);
// ResNet-18 layer1 3x3 (batch 4)
void BM_conv_resnet_3x3_64(benchmark::State& st) { run_conv(st, {4, 64, 56, 56, 64, 3, 1, 1, 1, 1}); }
BENCHMARK(BM_conv_resnet_3x3_64)->Unit(benchmark::kMicrosecond);
// MobileNetV2 expansion 1x1 on a large plane (batch 4, 16 -> 96 channels, 112x112)
void BM_conv_mbv2_pw_16_96(benchmark::State& st) { run_conv(st, {4, 16, 112, 112, 96, 1, 1, 1, 0, 1}); }
BENCHMARK(BM_conv_mbv2_pw_16_96)->Unit(benchmark::kMicrosecond);

// The reference conv on a small case, for scale.
void BM_conv_ref_dw3(benchmark::State& st) {
    conv_geometry g;
    g.in_channels = g.out_channels = g.group = 24;
    g.kernel = {3, 3};
    g.pad_begin = g.pad_end = {1, 1};
    const auto w = random_vec(24 * 9, 3);
    const auto x = random_vec(2 * 24 * 12 * 96, 5);
    std::vector<float> y(2 * 24 * 12 * 96);
    for (auto _ : st) {
        conv2d_ref(g, 2, 12, 96, x.data(), w.data(), nullptr, y.data());
        benchmark::DoNotOptimize(y.data());
    }
}
BENCHMARK(BM_conv_ref_dw3)->Unit(benchmark::kMicrosecond);

// A fused hard-swish epilogue (x * clip(x + 3, 0, 6) / 6) on a 1x1 conv vs the conv alone.
void BM_conv_pw_hardswish_epilogue(benchmark::State& st) {
    kernel_threads_scope ts(bench_threads());
    conv_geometry g;
    g.in_channels = 16;
    g.out_channels = 88;
    const auto w = random_vec(88 * 16, 3);
    const auto x = random_vec(32 * 16 * 288, 5);
    std::vector<float> y(32 * 88 * 288);
    conv2d_kernel kern(g, w.data(), nullptr);
    pw_program p;
    p.num_registers = 1;
    p.code.push_back({pw_op::add, 0, pw_operand::output(), pw_operand::scalar(3.0f), 0, 0});
    p.code.push_back({pw_op::clip, 0, pw_operand::reg(0), {}, 0.0f, 6.0f});
    p.code.push_back({pw_op::mul, 0, pw_operand::output(), pw_operand::reg(0), 0, 0});
    p.code.push_back({pw_op::div, -1, pw_operand::reg(0), pw_operand::scalar(6.0f), 0, 0});
    conv_epilogue ep;
    if (st.range(0)) ep.program = &p;
    for (auto _ : st) {
        kern.run(32, 3, 96, x.data(), y.data(), ep);
        benchmark::DoNotOptimize(y.data());
    }
}
BENCHMARK(BM_conv_pw_hardswish_epilogue)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

void BM_broadcast_mul_se(benchmark::State& st) {
    kernel_threads_scope ts(bench_threads());
    tensor x = tensor::from(random_vec(32 * 88 * 288, 1), {32, 88, 3, 96});
    tensor s = tensor::from(random_vec(32 * 88, 2), {32, 88, 1, 1});
    for (auto _ : st) benchmark::DoNotOptimize(binary(binary_op::mul, x, s, "bench").raw());
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * x.numel() * 8);
}
BENCHMARK(BM_broadcast_mul_se)->Unit(benchmark::kMicrosecond);

void BM_global_avg_pool(benchmark::State& st) {
    kernel_threads_scope ts(bench_threads());
    const auto x = random_vec(32 * 88 * 288, 1);
    std::vector<float> y(32 * 88);
    for (auto _ : st) {
        global_avg_pool(32 * 88, 288, x.data(), y.data());
        benchmark::DoNotOptimize(y.data());
    }
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(x.size()) * 4);
}
BENCHMARK(BM_global_avg_pool)->Unit(benchmark::kMicrosecond);

void BM_max_pool_2x2(benchmark::State& st) {
    kernel_threads_scope ts(bench_threads());
    pool_geometry g;
    g.kernel = {2, 2};
    g.stride = {2, 2};
    const auto x = random_vec(32 * 200 * 2 * 96, 1);
    std::vector<float> y(32 * 200 * 48);
    for (auto _ : st) {
        max_pool2d(g, 32 * 200, 2, 96, x.data(), y.data());
        benchmark::DoNotOptimize(y.data());
    }
}
BENCHMARK(BM_max_pool_2x2)->Unit(benchmark::kMicrosecond);

void BM_softmax_rows(benchmark::State& st) {
    kernel_threads_scope ts(bench_threads());
    const auto x = random_vec(8 * 40 * 6625, 1);
    std::vector<float> y(x.size());
    for (auto _ : st) {
        softmax(x.data(), y.data(), 8 * 40, 6625, 1);
        benchmark::DoNotOptimize(y.data());
    }
}
BENCHMARK(BM_softmax_rows)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
