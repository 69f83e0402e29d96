// Optimized kernels against their plain reference versions: GEMM, conv (1x1 GEMM, im2col, depthwise), conv
// transpose, fused epilogues, and the vectorized math.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include <quantsim/ir/kernels/conv.hpp>
#include <quantsim/ir/kernels/gemm.hpp>
#include <quantsim/ir/kernels/math.hpp>
#include <quantsim/ir/kernels/parallel.hpp>
#include <quantsim/ir/kernels/pointwise.hpp>
#include <quantsim/ir/kernels/pool.hpp>
#include <quantsim/ir/kernels/softmax.hpp>

#include "ops_test_util.hpp"

namespace quantsim::test {
namespace {

TEST(gemm, matches_reference_on_random_shapes) {
    for (int trial = 0; trial < 40; ++trial) {
        const unsigned seed = kSeed + static_cast<unsigned>(trial);
        SCOPED_TRACE("seed " + std::to_string(seed));
        std::mt19937 rng(seed);
        std::uniform_int_distribution<int> dim(1, 70);
        const std::int64_t m = dim(rng), n = dim(rng) * (trial % 3 == 0 ? 3 : 1), k = dim(rng);
        const bool ta = trial % 2 == 1, tb = trial % 4 >= 2;
        const float alpha = trial % 5 == 0 ? 0.5f : 1.0f;
        const float beta = trial % 3 == 1 ? 0.75f : 0.0f;
        const auto a = random_floats(static_cast<std::size_t>(m * k), rng);
        const auto b = random_floats(static_cast<std::size_t>(k * n), rng);
        const auto c0 = random_floats(static_cast<std::size_t>(m * n), rng);
        std::vector<float> c1 = c0, c2 = c0;
        const std::int64_t lda = ta ? m : k, ldb = tb ? k : n;
        gemm_ref(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c1.data(), n);
        gemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c2.data(), n);
        EXPECT_TRUE(all_close(c2.data(), c1.data(), m * n, kSumTol, 1e-5f)) << m << "x" << n << "x" << k;
    }
}

TEST(gemm, packed_generic_and_simd_agree_with_epilogue) {
    std::mt19937 rng(kSeed + 100);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 100));
    const std::int64_t m = 21, n = 53, k = 17;
    const auto a = random_floats(static_cast<std::size_t>(m * k), rng);
    const auto b = random_floats(static_cast<std::size_t>(k * n), rng);
    const auto bias = random_floats(static_cast<std::size_t>(m), rng);
    std::vector<float> ap(static_cast<std::size_t>(detail::packed_a_size(m, k)));
    detail::pack_a(false, m, k, a.data(), k, 1.0f, ap.data());
    detail::gemm_epilogue ep;
    ep.row_bias = bias.data();
    ep.lo = -0.25f;
    ep.hi = 0.5f;
    std::vector<float> c1(static_cast<std::size_t>(m * n)), c2(c1.size()), ref(c1.size());
    detail::gemm_packed(m, n, k, ap.data(), b.data(), n, c1.data(), n, ep);
    detail::gemm_packed_generic(m, n, k, ap.data(), b.data(), n, c2.data(), n, ep);
    gemm_ref(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, ref.data(), n);
    for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
            float& r = ref[static_cast<std::size_t>(i * n + j)];
            r = std::min(std::max(r + bias[static_cast<std::size_t>(i)], ep.lo), ep.hi);
        }
    EXPECT_TRUE(all_close(c1.data(), ref.data(), m * n, kSumTol, 1e-5f));
    EXPECT_TRUE(all_close(c2.data(), ref.data(), m * n, kSumTol, 1e-5f));
}

struct conv_trial {
    conv_geometry g;
    std::int64_t batch, h, w;
};

conv_trial random_conv(std::mt19937& rng, int trial) {
    std::uniform_int_distribution<int> u(0, 1000);
    conv_trial t;
    const int kind = trial % 4;  // 0: general, 1: depthwise, 2: 1x1, 3: grouped
    const std::int64_t groups = kind == 3 ? 1 + u(rng) % 3 : 1;
    t.g.group = groups;
    t.g.in_channels = groups * (1 + u(rng) % 6);
    t.g.out_channels = groups * (1 + u(rng) % 9);
    std::int64_t k0 = 1 + u(rng) % 5, k1 = 1 + u(rng) % 5;
    if (kind == 1) {
        t.g.group = t.g.in_channels = t.g.out_channels = 2 + u(rng) % 5;
        k0 = k1 = (u(rng) % 2) ? 3 : 5;
        if (u(rng) % 4 == 0) k1 = 1 + u(rng) % 4;  // non-square: generic depthwise path
    }
    if (kind == 2) k0 = k1 = 1;
    t.g.kernel = {k0, k1};
    t.g.stride = {1 + u(rng) % 2, 1 + u(rng) % 2};
    if (kind == 2 && u(rng) % 2) t.g.stride = {1, 1};
    t.g.dilation = {1 + (u(rng) % 4 == 0 ? 1 : 0), 1 + (u(rng) % 4 == 0 ? 1 : 0)};
    for (int i = 0; i < 2; ++i) {
        t.g.pad_begin[static_cast<std::size_t>(i)] = u(rng) % 3;
        t.g.pad_end[static_cast<std::size_t>(i)] = u(rng) % 3;
    }
    if (kind == 2 && u(rng) % 2) t.g.pad_begin = t.g.pad_end = {0, 0};
    t.batch = 1 + u(rng) % 3;
    t.h = 1 + u(rng) % 13 + (k0 - 1) * t.g.dilation[0];
    t.w = 1 + u(rng) % 70 + (k1 - 1) * t.g.dilation[1];
    return t;
}

TEST(conv2d, all_algorithms_match_reference_on_random_shapes) {
    int algos[4] = {0, 0, 0, 0};
    for (int trial = 0; trial < 120; ++trial) {
        const unsigned seed = kSeed + 1000 + static_cast<unsigned>(trial);
        SCOPED_TRACE("seed " + std::to_string(seed));
        std::mt19937 rng(seed);
        const conv_trial t = random_conv(rng, trial);
        const std::int64_t oh = t.g.conv_out(0, t.h), ow = t.g.conv_out(1, t.w);
        if (oh <= 0 || ow <= 0) continue;
        const auto x = random_floats(static_cast<std::size_t>(t.batch * t.g.in_channels * t.h * t.w), rng);
        const auto w = random_floats(static_cast<std::size_t>(t.g.out_channels * (t.g.in_channels / t.g.group) *
                                                              t.g.kernel[0] * t.g.kernel[1]), rng);
        const auto bias = random_floats(static_cast<std::size_t>(t.g.out_channels), rng);
        const std::size_t ny = static_cast<std::size_t>(t.batch * t.g.out_channels * oh * ow);
        std::vector<float> ref(ny), got(ny);
        conv2d_ref(t.g, t.batch, t.h, t.w, x.data(), w.data(), bias.data(), ref.data());
        conv2d_kernel k(t.g, w.data(), bias.data());
        ++algos[static_cast<int>(k.algo())];
        for (int threads : {1, 2}) {
            kernel_threads_scope ts(threads);
            std::fill(got.begin(), got.end(), std::numeric_limits<float>::quiet_NaN());
            k.run(t.batch, t.h, t.w, x.data(), got.data());
            EXPECT_TRUE(all_close(got.data(), ref.data(), static_cast<std::int64_t>(ny), kSumTol, 1e-5f))
                << "algo " << static_cast<int>(k.algo()) << " C=" << t.g.in_channels << " M=" << t.g.out_channels
                << " G=" << t.g.group << " k=" << t.g.kernel[0] << "x" << t.g.kernel[1] << " s=" << t.g.stride[0]
                << "," << t.g.stride[1] << " d=" << t.g.dilation[0] << "," << t.g.dilation[1] << " in=" << t.h << "x"
                << t.w << " threads=" << threads;
        }
    }
    // Every algorithm was exercised.
    EXPECT_GT(algos[0], 5);
    EXPECT_GT(algos[1], 5);
    EXPECT_GT(algos[2], 5);
    EXPECT_GT(algos[3], 5);
}

TEST(conv2d, depthwise_model_shapes_match_reference) {
    // The depthwise shapes of the OCR models: 3x3 / 5x5, strides (1,1), (2,1), (1,2), (2,2), widths around 16k+r.
    const std::int64_t ks[] = {3, 5};
    const std::array<std::int64_t, 2> strides[] = {{1, 1}, {2, 1}, {1, 2}, {2, 2}};
    unsigned seed = kSeed + 5000;
    for (auto k : ks)
        for (const auto& s : strides)
            for (std::int64_t w : {7, 16, 33, 96, 101}) {
                SCOPED_TRACE("seed " + std::to_string(seed));
                std::mt19937 rng(seed++);
                conv_geometry g;
                g.in_channels = g.out_channels = g.group = 3;
                g.kernel = {k, k};
                g.stride = s;
                g.pad_begin = g.pad_end = {k / 2, k / 2};
                const std::int64_t h = 6;
                const auto x = random_floats(static_cast<std::size_t>(2 * 3 * h * w), rng);
                const auto wt = random_floats(static_cast<std::size_t>(3 * k * k), rng);
                const std::int64_t oh = g.conv_out(0, h), ow = g.conv_out(1, w);
                std::vector<float> ref(static_cast<std::size_t>(2 * 3 * oh * ow)), got(ref.size());
                conv2d_ref(g, 2, h, w, x.data(), wt.data(), nullptr, ref.data());
                conv2d_kernel kern(g, wt.data(), nullptr);
                ASSERT_EQ(kern.algo(), conv_algo::depthwise);
                kern.run(2, h, w, x.data(), got.data());
                EXPECT_TRUE(all_close(got.data(), ref.data(), static_cast<std::int64_t>(ref.size()), kSumTol, 1e-5f))
                    << "k=" << k << " s=" << s[0] << "," << s[1] << " w=" << w;
            }
}

TEST(conv2d, hand_computed_small_case) {
    // 1x1x3x3 input, 2x2 kernel of ones, stride 1, no pads: sums of 2x2 windows; bias 0.5.
    conv_geometry g;
    g.in_channels = g.out_channels = 1;
    g.kernel = {2, 2};
    const float x[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const float w[] = {1, 1, 1, 1};
    const float b[] = {0.5f};
    float y[4];
    conv2d_kernel k(g, w, b);
    k.run(1, 3, 3, x, y);
    EXPECT_FLOAT_EQ(y[0], 12.5f);
    EXPECT_FLOAT_EQ(y[1], 16.5f);
    EXPECT_FLOAT_EQ(y[2], 24.5f);
    EXPECT_FLOAT_EQ(y[3], 28.5f);
}

TEST(conv2d, epilogue_clamp_and_program) {
    std::mt19937 rng(kSeed + 7);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 7));
    for (int depthwise = 0; depthwise < 2; ++depthwise) {
        conv_geometry g;
        g.in_channels = g.out_channels = 4;
        g.group = depthwise ? 4 : 1;
        g.kernel = {3, 3};
        g.pad_begin = g.pad_end = {1, 1};
        const auto x = random_floats(2 * 4 * 5 * 19, rng, -2.0f, 2.0f);
        const auto w = random_floats(static_cast<std::size_t>(4 * (4 / g.group) * 9), rng);
        const auto extra = random_floats(2 * 4 * 5 * 19, rng);  // a residual input
        std::vector<float> ref(2 * 4 * 5 * 19), got(ref.size());
        conv2d_ref(g, 2, 5, 19, x.data(), w.data(), nullptr, ref.data());
        // y = hard_swish(clamp(conv, -1, 1.5)) + residual
        for (std::size_t i = 0; i < ref.size(); ++i) {
            const float c = std::min(std::max(ref[i], -1.0f), 1.5f);
            ref[i] = pw_eval_ref(pw_op::hard_swish, c, 0, 1.0f / 6.0f, 0.5f) + extra[i];
        }
        pw_program p;
        p.num_registers = 1;
        p.code.push_back({pw_op::hard_swish, 0, pw_operand::output(), {}, 1.0f / 6.0f, 0.5f});
        pw_operand res;
        res.k = pw_operand::kind::input_full;
        res.index = 0;
        p.code.push_back({pw_op::add, -1, pw_operand::reg(0), res, 0, 0});
        const float* inputs[] = {extra.data()};
        conv_epilogue ep;
        ep.lo = -1.0f;
        ep.hi = 1.5f;
        ep.program = &p;
        ep.inputs = inputs;
        conv2d_kernel k(g, w.data(), nullptr);
        k.run(2, 5, 19, x.data(), got.data(), ep);
        EXPECT_TRUE(all_close(got.data(), ref.data(), static_cast<std::int64_t>(ref.size()), kSumTol, 1e-5f));
    }
}

TEST(conv2d, large_weight_schedule_matches_reference) {
    // Weights over 1 MiB on small planes take the K-blocked, channel-block schedule (all three GEMM algorithms),
    // with a clamp, an epilogue program and an input scale on top.
    struct shape_case {
        std::int64_t c, m, k, stride, pad, h, w;
    };
    const shape_case cases[] = {{256, 256, 3, 1, 1, 5, 6}, {512, 520, 1, 1, 0, 3, 7}, {256, 264, 3, 2, 1, 7, 9}};
    unsigned seed = kSeed + 4000;
    for (const auto& sc : cases) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        std::mt19937 rng(seed++);
        conv_geometry g;
        g.in_channels = sc.c;
        g.out_channels = sc.m;
        g.kernel = {sc.k, sc.k};
        g.stride = {sc.stride, sc.stride};
        g.pad_begin = g.pad_end = {sc.pad, sc.pad};
        const std::int64_t batch = 2, oh = g.conv_out(0, sc.h), ow = g.conv_out(1, sc.w);
        const auto x = random_floats(static_cast<std::size_t>(batch * sc.c * sc.h * sc.w), rng);
        const auto w = random_floats(static_cast<std::size_t>(sc.m * sc.c * sc.k * sc.k), rng, -0.05f, 0.05f);
        const auto b = random_floats(static_cast<std::size_t>(sc.m), rng);
        const auto s = random_floats(static_cast<std::size_t>(batch * sc.c), rng, 0.5f, 1.5f);
        std::vector<float> xs = x;
        for (std::int64_t p = 0; p < batch * sc.c; ++p)
            for (std::int64_t i = 0; i < sc.h * sc.w; ++i) xs[static_cast<std::size_t>(p * sc.h * sc.w + i)] *= s[static_cast<std::size_t>(p)];
        std::vector<float> ref(static_cast<std::size_t>(batch * sc.m * oh * ow)), got(ref.size());
        conv2d_ref(g, batch, sc.h, sc.w, xs.data(), w.data(), b.data(), ref.data());
        for (float& v : ref) v = pw_eval_ref(pw_op::hard_swish, std::min(std::max(v, -2.0f), 3.0f), 0, 1.0f / 6.0f, 0.5f);
        pw_program p;
        p.code.push_back({pw_op::hard_swish, -1, pw_operand::output(), {}, 1.0f / 6.0f, 0.5f});
        conv_epilogue ep;
        ep.lo = -2.0f;
        ep.hi = 3.0f;
        ep.program = &p;
        ep.input_scale = s.data();
        conv2d_kernel k(g, w.data(), b.data());
        for (int threads : {1, 2}) {
            kernel_threads_scope ts(threads);
            k.run(batch, sc.h, sc.w, x.data(), got.data(), ep);
            EXPECT_TRUE(all_close(got.data(), ref.data(), static_cast<std::int64_t>(ref.size()), 1e-4f, 1e-5f))
                << "algo " << static_cast<int>(k.algo()) << " threads " << threads;
        }
    }
}

TEST(conv2d, input_scale_matches_scaling_the_input) {
    // conv(x * s[n, c]) for every algorithm, s folded into per-image weights (depthwise: applied to the input).
    for (int trial = 0; trial < 24; ++trial) {
        const unsigned seed = kSeed + 3000 + static_cast<unsigned>(trial);
        SCOPED_TRACE("seed " + std::to_string(seed));
        std::mt19937 rng(seed);
        const conv_trial t = random_conv(rng, trial);
        const std::int64_t oh = t.g.conv_out(0, t.h), ow = t.g.conv_out(1, t.w);
        if (oh <= 0 || ow <= 0) continue;
        const std::int64_t C = t.g.in_channels;
        auto x = random_floats(static_cast<std::size_t>(t.batch * C * t.h * t.w), rng);
        const auto w = random_floats(static_cast<std::size_t>(t.g.out_channels * (C / t.g.group) * t.g.kernel[0] *
                                                              t.g.kernel[1]), rng);
        const auto bias = random_floats(static_cast<std::size_t>(t.g.out_channels), rng);
        const auto sc = random_floats(static_cast<std::size_t>(t.batch * C), rng, 0.1f, 2.0f);
        std::vector<float> xs = x;
        for (std::int64_t p = 0; p < t.batch * C; ++p)
            for (std::int64_t i = 0; i < t.h * t.w; ++i) xs[static_cast<std::size_t>(p * t.h * t.w + i)] *= sc[static_cast<std::size_t>(p)];
        const std::size_t ny = static_cast<std::size_t>(t.batch * t.g.out_channels * oh * ow);
        std::vector<float> ref(ny), got(ny);
        conv2d_ref(t.g, t.batch, t.h, t.w, xs.data(), w.data(), bias.data(), ref.data());
        conv2d_kernel k(t.g, w.data(), bias.data());
        conv_epilogue ep;
        ep.input_scale = sc.data();
        k.run(t.batch, t.h, t.w, x.data(), got.data(), ep);
        EXPECT_TRUE(all_close(got.data(), ref.data(), static_cast<std::int64_t>(ny), kSumTol, 1e-5f))
            << "algo " << static_cast<int>(k.algo());
    }
}

TEST(conv_transpose2d, matches_reference_on_random_shapes) {
    for (int trial = 0; trial < 30; ++trial) {
        const unsigned seed = kSeed + 2000 + static_cast<unsigned>(trial);
        SCOPED_TRACE("seed " + std::to_string(seed));
        std::mt19937 rng(seed);
        std::uniform_int_distribution<int> u(0, 1000);
        conv_geometry g;
        g.group = 1 + u(rng) % 2;
        g.in_channels = g.group * (1 + u(rng) % 4);
        g.out_channels = g.group * (1 + u(rng) % 4);
        g.kernel = {1 + u(rng) % 3, 1 + u(rng) % 3};
        g.stride = {1 + u(rng) % 3, 1 + u(rng) % 3};
        g.dilation = {1 + u(rng) % 2, 1};
        g.pad_begin = {u(rng) % 2, u(rng) % 2};
        const std::int64_t batch = 1 + u(rng) % 2, h = 1 + u(rng) % 6, w = 1 + u(rng) % 9;
        const std::int64_t oh = g.stride[0] * (h - 1) + g.dilation[0] * (g.kernel[0] - 1) + 1 - 2 * g.pad_begin[0];
        const std::int64_t ow = g.stride[1] * (w - 1) + g.dilation[1] * (g.kernel[1] - 1) + 1 - 2 * g.pad_begin[1];
        if (oh <= 0 || ow <= 0) continue;
        g.pad_end = g.pad_begin;
        const auto x = random_floats(static_cast<std::size_t>(batch * g.in_channels * h * w), rng);
        const auto wt = random_floats(static_cast<std::size_t>(g.in_channels * (g.out_channels / g.group) *
                                                               g.kernel[0] * g.kernel[1]), rng);
        const auto b = random_floats(static_cast<std::size_t>(g.out_channels), rng);
        std::vector<float> ref(static_cast<std::size_t>(batch * g.out_channels * oh * ow)), got(ref.size());
        conv_transpose2d_ref(g, batch, h, w, oh, ow, x.data(), wt.data(), b.data(), ref.data());
        conv_transpose2d_kernel k(g, wt.data(), b.data());
        k.run(batch, h, w, oh, ow, x.data(), got.data());
        EXPECT_TRUE(all_close(got.data(), ref.data(), static_cast<std::int64_t>(ref.size()), kSumTol, 1e-5f));
    }
}

TEST(conv_transpose2d, hand_computed_stride2) {
    // 1x1x2x2 input, 2x2 kernel [1 2; 3 4], stride 2: each input pixel stamps the kernel scaled by itself.
    conv_geometry g;
    g.in_channels = g.out_channels = 1;
    g.kernel = {2, 2};
    g.stride = {2, 2};
    const float x[] = {1, 2, 3, 4};
    const float w[] = {1, 2, 3, 4};
    float y[16];
    conv_transpose2d_kernel k(g, w, nullptr);
    k.run(1, 2, 2, 4, 4, x, y);
    const float expect[] = {1, 2, 2, 4, 3, 4, 6, 8, 3, 6, 4, 8, 9, 12, 12, 16};
    for (int i = 0; i < 16; ++i) EXPECT_FLOAT_EQ(y[i], expect[i]) << i;
}

TEST(math, fast_exp_and_friends_match_std) {
    float worst_exp = 0, worst_tanh = 0, worst_erf = 0, worst_sig = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
        const double e = std::exp(static_cast<double>(x));
        worst_exp = std::max(worst_exp, static_cast<float>(std::fabs(detail::fast_exp(x) - e) / e));
    }
    for (float x = -9.0f; x <= 9.0f; x += 0.00173f) {
        worst_tanh = std::max(worst_tanh, std::fabs(detail::fast_tanh(x) - static_cast<float>(std::tanh(static_cast<double>(x)))) /
                                              std::max(1e-30f, std::fabs(static_cast<float>(std::tanh(static_cast<double>(x))))));
        worst_erf = std::max(worst_erf, std::fabs(detail::fast_erf(x) - static_cast<float>(std::erf(static_cast<double>(x)))));
        const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(x)));
        worst_sig = std::max(worst_sig, static_cast<float>(std::fabs(detail::fast_sigmoid(x) - s) / s));
    }
    EXPECT_LT(worst_exp, kApproxTol);
    EXPECT_LT(worst_tanh, kApproxTol);
    EXPECT_LT(worst_erf, 5e-7f);
    EXPECT_LT(worst_sig, kApproxTol);
    EXPECT_EQ(detail::fast_exp(-1000.0f), 0.0f);
    EXPECT_TRUE(std::isfinite(detail::fast_exp(1000.0f)));
    EXPECT_TRUE(std::isnan(detail::fast_exp(std::numeric_limits<float>::quiet_NaN())));
    EXPECT_LT(detail::fast_sigmoid(-200.0f), 1e-37f);
    EXPECT_EQ(detail::fast_sigmoid(200.0f), 1.0f);
}

TEST(pointwise, vectorized_ops_match_scalar_reference) {
    std::mt19937 rng(kSeed + 9);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 9));
    const auto a = random_floats(1000, rng, -4.0f, 4.0f);
    const auto b = random_floats(1000, rng, 0.5f, 3.0f);
    const pw_op unary[] = {pw_op::neg, pw_op::abs, pw_op::relu, pw_op::clip, pw_op::hard_sigmoid, pw_op::hard_swish,
                           pw_op::sigmoid, pw_op::tanh, pw_op::exp, pw_op::erf, pw_op::leaky_relu, pw_op::floor,
                           pw_op::ceil, pw_op::gelu, pw_op::softplus, pw_op::reciprocal};
    std::vector<float> out(1000);
    for (pw_op op : unary) {
        pw_apply_unary(op, a.data(), out.data(), 1000, 0.2f, 0.5f);
        for (std::size_t i = 0; i < 1000; ++i) {
            const float r = pw_eval_ref(op, a[i], 0.0f, 0.2f, 0.5f);
            EXPECT_NEAR(out[i], r, 1e-5f + kApproxTol * std::fabs(r)) << pw_name(op) << " at " << a[i];
        }
    }
    const pw_op binary_ops[] = {pw_op::add, pw_op::sub, pw_op::mul, pw_op::div, pw_op::min, pw_op::max, pw_op::pow};
    for (pw_op op : binary_ops) {
        pw_apply_binary(op, b.data(), a.data(), 0.0f, out.data(), 1000);
        for (std::size_t i = 0; i < 1000; ++i) EXPECT_FLOAT_EQ(out[i], pw_eval_ref(op, b[i], a[i], 0, 0)) << pw_name(op);
        pw_apply_binary(op, b.data(), nullptr, 1.5f, out.data(), 1000, true);  // scalar (op) array
        for (std::size_t i = 0; i < 1000; ++i) EXPECT_FLOAT_EQ(out[i], pw_eval_ref(op, 1.5f, b[i], 0, 0)) << pw_name(op);
    }
}

// Bit-identical, NaN matching NaN.
::testing::AssertionResult same_bits(const float* a, const float* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) {
        if (std::isnan(a[i]) && std::isnan(b[i])) continue;
        if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0)
            return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs reference " << b[i];
    }
    return ::testing::AssertionSuccess();
}

TEST(pointwise, program_rows_match_reference_bitwise) {
    // Random programs over every op and operand kind, rows shorter than, equal to and longer than a vector and a
    // chunk, values with NaN/inf/signed zeros and exact fake-quant rounding ties: run_row (vectorized) must equal
    // run_row_reference bit for bit.
    const pw_op ops[] = {pw_op::add, pw_op::sub, pw_op::mul, pw_op::div, pw_op::min, pw_op::max, pw_op::pow,
                         pw_op::copy, pw_op::neg, pw_op::abs, pw_op::relu, pw_op::clip, pw_op::hard_sigmoid,
                         pw_op::hard_swish, pw_op::sigmoid, pw_op::tanh, pw_op::exp, pw_op::log, pw_op::sqrt,
                         pw_op::reciprocal, pw_op::erf, pw_op::leaky_relu, pw_op::floor, pw_op::ceil, pw_op::gelu,
                         pw_op::softplus, pw_op::fake_quant, pw_op::fake_quant, pw_op::fake_quant};
    const rounding_mode modes[] = {rounding_mode::nearest_even, rounding_mode::nearest_away, rounding_mode::floor,
                                   rounding_mode::ceil, rounding_mode::stochastic};
    const std::int64_t lengths[] = {1, 7, 16, 17, 36, 144, 256, 300, 529};
    constexpr std::int64_t P = 7;
    constexpr int kTrials = 160;
    for (int trial = 0; trial < kTrials; ++trial) {
        const unsigned seed = kSeed + 5000 + static_cast<unsigned>(trial);
        SCOPED_TRACE("seed " + std::to_string(seed));
        std::mt19937 rng(seed);
        const std::int64_t Q = lengths[trial % std::size(lengths)];
        pw_program prog;
        prog.num_registers = 3;
        const std::size_t fq_grids = 4;
        for (std::size_t g = 0; g < fq_grids; ++g) {
            pw_quant fq;
            fq.scale = std::uniform_real_distribution<float>(0.01f, 0.4f)(rng);
            fq.inv = 1.0f / fq.scale;
            const float zp = static_cast<float>(std::uniform_int_distribution<int>(-20, 20)(rng));
            fq.lo = -128.0f - zp;
            fq.hi = 127.0f - zp;
            fq.rounding = modes[std::uniform_int_distribution<std::size_t>(0, std::size(modes) - 1)(rng)];
            fq.arithmetic = rng() % 3 == 0 ? scale_arithmetic::multiply_reciprocal : scale_arithmetic::divide;
            fq.key = rng();
            prog.quants.push_back(fq);
        }
        const int row_const = prog.add_constant(random_floats(P, rng, -2.0f, 2.0f));
        const int col_const = prog.add_constant(random_floats(static_cast<std::size_t>(Q), rng, -2.0f, 2.0f));
        auto special = [&](std::vector<float>& v) {
            const float sp[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity(), 0.0f, -0.0f, 1e-30f};
            for (auto& x : v) {
                const unsigned r = rng() % 16;
                if (r == 0) x = sp[rng() % std::size(sp)];
                else if (r < 4) x = (static_cast<float>(static_cast<int>(rng() % 41) - 20) + 0.5f) * prog.quants[rng() % fq_grids].scale;
            }
        };
        std::vector<float> out0 = random_floats(static_cast<std::size_t>(P * Q), rng, -3.0f, 3.0f);
        std::vector<float> full = random_floats(out0.size(), rng, -3.0f, 3.0f);
        std::vector<float> col = random_floats(static_cast<std::size_t>(Q), rng, -3.0f, 3.0f);
        const std::vector<float> row = random_floats(P, rng, -3.0f, 3.0f);
        special(out0);
        special(full);
        special(col);
        const float* inputs[] = {full.data(), col.data(), row.data()};
        auto operand = [&](int written) {
            pw_operand o;
            switch (rng() % (written > 0 ? 9 : 7)) {
                case 0: o = pw_operand::output(); break;
                case 1: o = pw_operand::scalar(std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng)); break;
                case 2: o = {pw_operand::kind::const_row, row_const, 0.0f, rng() % 2 ? 0 : 3}; break;
                case 3: o = {pw_operand::kind::const_col, col_const, 0.0f, 1}; break;
                case 4: o = {pw_operand::kind::input_full, 0, 0.0f, 1}; break;
                case 5: o = {pw_operand::kind::input_col, 1, 0.0f, 1}; break;
                case 6: o = {pw_operand::kind::input_row, 2, 0.0f, rng() % 2 ? 0 : 2}; break;
                default: o = pw_operand::reg(static_cast<int>(rng() % static_cast<unsigned>(written))); break;
            }
            return o;
        };
        const int len = 2 + static_cast<int>(rng() % 6);
        for (int i = 0; i < len; ++i) {
            pw_instr ins;
            ins.op = ops[rng() % std::size(ops)];
            ins.dst = i + 1 == len ? -1 : std::min(i, 2);
            ins.a = operand(std::min(i, 3));
            if (ins.op == pw_op::fake_quant) {
                ins.b = {pw_operand::kind::none, static_cast<int>(rng() % fq_grids), 0.0f, 0};
            } else if (pw_is_binary(ins.op)) {
                ins.b = operand(std::min(i, 3));
            }
            ins.alpha = ins.op == pw_op::clip ? -1.0f : 0.2f;
            ins.beta = ins.op == pw_op::clip ? 1.5f : 0.5f;
            prog.code.push_back(ins);
        }
        if (trial % 2) prog.compile();  // whatever suffix qualifies becomes a table; results must not change
        SCOPED_TRACE("Q " + std::to_string(Q) + " program " + prog.describe() + " table at " +
                     std::to_string(prog.table_at()));
        std::vector<float> got = out0, want = out0;
        // Whole rows, and a row segment starting mid-row (the conv kernels' spatial tiles).
        for (std::int64_t p = 0; p < P; ++p) {
            prog.run_row(got.data() + p * Q, inputs, p, 0, Q, Q);
            prog.run_row_reference(want.data() + p * Q, inputs, p, 0, Q, Q);
        }
        ASSERT_TRUE(same_bits(got.data(), want.data(), P * Q));
        if (Q > 3) {
            const std::int64_t q0 = Q / 3, n = Q - Q / 3 - 1;
            got = out0;
            want = out0;
            prog.run_row(got.data() + 2 * Q + q0, inputs, 2, q0, n, Q);
            prog.run_row_reference(want.data() + 2 * Q + q0, inputs, 2, q0, n, Q);
            ASSERT_TRUE(same_bits(got.data(), want.data(), P * Q)) << "segment at " << q0;
        }
        // A span over several rows, starting and ending mid-row (the conv kernels' whole-tile epilogues).
        {
            const std::int64_t first = Q / 2, last = P * Q - (Q + 1) / 3;
            got = out0;
            want = out0;
            prog.run_span(got.data() + first, inputs, first, last - first, Q);
            for (std::int64_t e = first; e < last;) {
                const std::int64_t m = std::min(last - e, Q - e % Q);
                prog.run_row_reference(want.data() + e, inputs, e / Q, e % Q, m, Q);
                e += m;
            }
            ASSERT_TRUE(same_bits(got.data(), want.data(), P * Q)) << "span [" << first << ", " << last << ")";
        }
    }
}

// compile() builds tables only where run_span has the vector path.
#if defined(__AVX512F__)
constexpr bool kHasTables = true;
#else
constexpr bool kHasTables = false;
#endif

// quant_sim's program for Conv -> BatchNormalization -> decomposed hard-swish with a quantizer on every output.
// runtime_shift: the BatchNormalization shift is a runtime per-row input (input 0) instead of a constant, so row
// tables cannot be precomputed.
pw_program quantized_hard_swish_program(std::vector<pw_quant> grids, std::int64_t channels, std::mt19937& rng,
                                        bool runtime_shift = false) {
    pw_program p;
    p.quants = std::move(grids);
    p.num_registers = 2;
    const int mul = p.add_constant(random_floats(static_cast<std::size_t>(channels), rng, 0.5f, 2.0f));
    const int add = p.add_constant(random_floats(static_cast<std::size_t>(channels), rng, -1.0f, 1.0f));
    const auto fq = [&p](int dst, pw_operand a, int grid) {
        p.code.push_back({pw_op::fake_quant, dst, a, {pw_operand::kind::none, grid, 0.0f, 0}, 0.0f, 0.0f});
    };
    fq(0, pw_operand::output(), 0);
    p.code.push_back({pw_op::mul, 0, pw_operand::reg(0), {pw_operand::kind::const_row, mul, 0.0f, 0}, 0.0f, 0.0f});
    const pw_operand shift = runtime_shift ? pw_operand{pw_operand::kind::input_row, 0, 0.0f, 0}
                                           : pw_operand{pw_operand::kind::const_row, add, 0.0f, 0};
    p.code.push_back({pw_op::add, 0, pw_operand::reg(0), shift, 0.0f, 0.0f});
    fq(0, pw_operand::reg(0), 1);
    p.code.push_back({pw_op::add, 1, pw_operand::reg(0), pw_operand::scalar(3.0f), 0.0f, 0.0f});
    fq(1, pw_operand::reg(1), 2);
    p.code.push_back({pw_op::clip, 1, pw_operand::reg(1), {}, 0.0f, 6.0f});
    fq(1, pw_operand::reg(1), 3);
    p.code.push_back({pw_op::mul, 1, pw_operand::reg(0), pw_operand::reg(1), 0.0f, 0.0f});
    fq(1, pw_operand::reg(1), 4);
    p.code.push_back({pw_op::div, 1, pw_operand::reg(1), pw_operand::scalar(6.0f), 0.0f, 0.0f});
    fq(-1, pw_operand::reg(1), 5);
    return p;
}

TEST(pointwise, compiled_table_suffix_matches_reference_bitwise) {
    // compile() turns everything from the BatchNormalization output's fake_quant on into one table lookup; the
    // results must stay those of the instruction-by-instruction reference for every grid kind, NaN/inf included.
    const rounding_mode modes[] = {rounding_mode::nearest_even, rounding_mode::nearest_away, rounding_mode::floor,
                                   rounding_mode::ceil};
    constexpr std::int64_t P = 6;
    for (int trial = 0; trial < 24; ++trial) {
        // Rows of 600 take run-time row tables from the first fake_quant on (8-bit grids need row parts of 343).
        const std::int64_t Q = trial % 2 ? 600 : 150;
        const unsigned seed = kSeed + 6000 + static_cast<unsigned>(trial);
        SCOPED_TRACE("seed " + std::to_string(seed));
        std::mt19937 rng(seed);
        std::vector<pw_quant> grids;
        for (int g = 0; g < 6; ++g) {
            pw_quant fq;
            fq.scale = std::uniform_real_distribution<float>(0.01f, 0.1f)(rng);
            fq.inv = 1.0f / fq.scale;
            const int bits = trial % 4 == 3 ? 4 : 8;
            const float zp = static_cast<float>(std::uniform_int_distribution<int>(0, (1 << bits) - 1)(rng));
            fq.lo = -zp;
            fq.hi = static_cast<float>((1 << bits) - 1) - zp;
            fq.rounding = modes[(trial + g) % 4];
            fq.arithmetic = trial % 3 == 2 ? scale_arithmetic::multiply_reciprocal : scale_arithmetic::divide;
            grids.push_back(fq);
        }
        // Odd trials: precomputed per-channel tables; even: tables built per long row at run time.
        const bool runtime_shift = trial % 4 < 2;
        pw_program prog = quantized_hard_swish_program(grids, P, rng, runtime_shift);
        const std::vector<float> shift = random_floats(P, rng, -1.0f, 1.0f);
        const float* inputs[] = {shift.data()};
        const pw_program plain = prog;
        prog.compile();
        EXPECT_EQ(prog.table_at(), kHasTables ? 3u : prog.code.size()) << prog.describe();
        EXPECT_EQ(prog.row_table_at(), kHasTables ? 0u : prog.code.size()) << prog.describe();
        EXPECT_EQ(plain.table_at(), plain.code.size());
        std::vector<float> x = random_floats(static_cast<std::size_t>(P * Q), rng, -4.0f, 6.0f);
        x[5] = std::numeric_limits<float>::quiet_NaN();
        x[17] = std::numeric_limits<float>::infinity();
        x[40] = -std::numeric_limits<float>::infinity();
        x[41] = -0.0f;
        std::vector<float> got = x, want = x;
        prog.run_span(got.data(), inputs, 0, P * Q, Q);
        for (std::int64_t p = 0; p < P; ++p) plain.run_row_reference(want.data() + p * Q, inputs, p, 0, Q, Q);
        ASSERT_TRUE(same_bits(got.data(), want.data(), P * Q));
        // Row segments as the conv tiles pass them (a row's table is rebuilt per call).
        got = x;
        for (std::int64_t p = 0; p < P; ++p) {
            prog.run_row(got.data() + p * Q, inputs, p, 0, Q / 3, Q);
            prog.run_row(got.data() + p * Q + Q / 3, inputs, p, Q / 3, Q - Q / 3, Q);
        }
        ASSERT_TRUE(same_bits(got.data(), want.data(), P * Q));
    }
}

TEST(pointwise, table_lookups_match_reference_for_every_grid_size) {
    // The lookup kinds compile() and run_span choose by grid size and program shape: byte codes of the output grid
    // (the program ends in a fake_quant whose grid has at most 256 values), float tables in registers (up to 256
    // entries), gathers (larger grids); per-row tables (a per-channel constant after the first fake_quant) and one
    // whole-program table. Every one must equal the instruction-by-instruction reference bit for bit.
    const rounding_mode modes[] = {rounding_mode::nearest_even, rounding_mode::nearest_away, rounding_mode::floor,
                                   rounding_mode::ceil};
    constexpr std::int64_t P = 5;
    int trial = 0;
    for (int in_bits : {2, 4, 5, 6, 7, 8, 9}) {
        for (int form = 0; form < 4; ++form, ++trial) {
            const unsigned seed = kSeed + 6200 + static_cast<unsigned>(trial);
            SCOPED_TRACE("seed " + std::to_string(seed) + ", input grid bits " + std::to_string(in_bits) +
                         ", form " + std::to_string(form));
            std::mt19937 rng(seed);
            auto grid = [&](int bits) {
                pw_quant fq;
                fq.scale = std::uniform_real_distribution<float>(0.01f, 0.2f)(rng);
                fq.inv = 1.0f / fq.scale;
                const float zp = static_cast<float>(std::uniform_int_distribution<int>(0, (1 << bits) - 1)(rng));
                fq.lo = -zp;
                fq.hi = static_cast<float>((1 << bits) - 1) - zp;
                fq.rounding = modes[rng() % std::size(modes)];
                fq.arithmetic = rng() % 3 == 0 ? scale_arithmetic::multiply_reciprocal : scale_arithmetic::divide;
                return fq;
            };
            pw_program prog;
            prog.num_registers = 1;
            // form 0: fq -> per-channel affine -> fq (8-bit): row tables as byte codes
            // form 1: fq -> per-channel affine -> relu into the output: float row tables
            // form 2: fq -> +0.25 -> hard_swish -> fq (8-bit): one table, byte codes
            // form 3: fq -> *1.7 -> fq (16-bit): one table whose entries are not byte codes
            prog.quants = {grid(in_bits), grid(form == 3 ? 16 : 8)};
            const int k = prog.add_constant(random_floats(P, rng, 0.5f, 2.0f));
            const int b = prog.add_constant(random_floats(P, rng, -1.0f, 1.0f));
            prog.code.push_back({pw_op::fake_quant, 0, pw_operand::output(), {pw_operand::kind::none, 0, 0.0f, 0}, 0.0f, 0.0f});
            if (form < 2) {
                prog.code.push_back({pw_op::mul, 0, pw_operand::reg(0), {pw_operand::kind::const_row, k, 0.0f, 0}, 0.0f, 0.0f});
                prog.code.push_back({pw_op::add, 0, pw_operand::reg(0), {pw_operand::kind::const_row, b, 0.0f, 0}, 0.0f, 0.0f});
            } else if (form == 2) {
                prog.code.push_back({pw_op::add, 0, pw_operand::reg(0), pw_operand::scalar(0.25f), 0.0f, 0.0f});
                prog.code.push_back({pw_op::hard_swish, 0, pw_operand::reg(0), {}, 1.0f / 6.0f, 0.5f});
            } else {
                prog.code.push_back({pw_op::mul, 0, pw_operand::reg(0), pw_operand::scalar(1.7f), 0.0f, 0.0f});
            }
            if (form == 1)
                prog.code.push_back({pw_op::relu, -1, pw_operand::reg(0), {}, 0.0f, 0.0f});
            else
                prog.code.push_back({pw_op::fake_quant, -1, pw_operand::reg(0), {pw_operand::kind::none, 1, 0.0f, 0}, 0.0f, 0.0f});
            const pw_program plain = prog;
            prog.compile();
            if (kHasTables && in_bits <= 8) {
                EXPECT_EQ(form < 2 ? prog.row_table_at() : prog.table_at(), 0u) << prog.describe();
            }
            for (std::int64_t Q : {7, 36, 150}) {
                std::vector<float> x = random_floats(static_cast<std::size_t>(P * Q), rng, -6.0f, 6.0f);
                x[3] = std::numeric_limits<float>::quiet_NaN();
                x[5] = std::numeric_limits<float>::infinity();
                x[6] = -std::numeric_limits<float>::infinity();
                x[P * Q - 1] = -0.0f;
                // Rounding ties of the first grid and their neighbours: x * (1 / s) and x / s can round apart.
                for (std::size_t i = 8; i + 1 < x.size(); i += 3) {
                    const float t = (static_cast<float>(static_cast<int>(rng() % 41) - 20) + 0.5f) * prog.quants[0].scale;
                    x[i] = i % 2 ? t : std::nextafter(t, (i % 4 == 1) ? 10.0f : -10.0f);
                }
                std::vector<float> got = x, want = x;
                prog.run_span(got.data(), nullptr, 0, P * Q, Q);
                for (std::int64_t p = 0; p < P; ++p) plain.run_row_reference(want.data() + p * Q, nullptr, p, 0, Q, Q);
                ASSERT_TRUE(same_bits(got.data(), want.data(), P * Q)) << "Q " << Q;
            }
        }
    }
}

TEST(pointwise, compiled_table_only_where_it_is_exact) {
    std::mt19937 rng(kSeed + 6100);
    pw_quant fq;
    fq.scale = 0.05f;
    fq.inv = 20.0f;
    fq.lo = -128.0f;
    fq.hi = 127.0f;
    std::vector<pw_quant> grids(6, fq);
    pw_program p = quantized_hard_swish_program(grids, 3, rng);
    // A suffix that reads a per-channel constant is not a function of the grid value alone.
    pw_program c = p;
    c.code[4].b = {pw_operand::kind::const_row, 0, 0.0f, 0};
    c.compile();
    EXPECT_GT(c.table_at(), 4u);  // a later fake_quant still qualifies
    // Stochastic rounding depends on the element's index.
    pw_program st = p;
    st.quants[4].rounding = rounding_mode::stochastic;
    st.compile();
    EXPECT_EQ(st.table_at(), st.code.size());
    // Too many grid values.
    pw_program wide = p;
    wide.quants[1].lo = -32768.0f;
    wide.quants[1].hi = 32767.0f;
    wide.compile();
    EXPECT_NE(wide.table_at(), 3u);
    // Any change after compile() disables the table (the results follow the new program).
    p.compile();
    ASSERT_EQ(p.table_at(), kHasTables ? 3u : p.code.size());
    p.quants[5].scale = 0.07f;
    p.quants[5].inv = 1.0f / 0.07f;
    EXPECT_EQ(p.table_at(), p.code.size());
    std::vector<float> x = random_floats(300, rng, -4.0f, 6.0f), got = x, want = x;
    p.run_span(got.data(), nullptr, 0, 300, 100);
    for (std::int64_t r = 0; r < 3; ++r) p.run_row_reference(want.data() + r * 100, nullptr, r, 0, 100, 100);
    EXPECT_TRUE(same_bits(got.data(), want.data(), 300));
}

TEST(softmax, matches_reference_rows_and_strided) {
    std::mt19937 rng(kSeed + 11);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 11));
    for (auto [outer, n, inner] : {std::array<std::int64_t, 3>{7, 37, 1}, {3, 5, 9}, {2, 6625, 1}, {1, 1, 4}}) {
        const auto x = random_floats(static_cast<std::size_t>(outer * n * inner), rng, -20.0f, 20.0f);
        std::vector<float> a(x.size()), b(x.size());
        for (bool log : {false, true}) {
            softmax(x.data(), a.data(), outer, n, inner, log);
            softmax_ref(x.data(), b.data(), outer, n, inner, log);
            EXPECT_TRUE(all_close(a.data(), b.data(), static_cast<std::int64_t>(a.size()), 1e-5f, 1e-6f));
        }
    }
}

TEST(pooling, max_avg_global_hand_values) {
    // 1 plane 3x4: [[1 2 3 4] [5 6 7 8] [9 10 11 12]]
    const float x[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    pool_geometry g;
    g.kernel = {2, 2};
    g.stride = {2, 2};
    float y[4];
    max_pool2d(g, 1, 3, 4, x, y);  // floor mode: 1x2
    EXPECT_FLOAT_EQ(y[0], 6);
    EXPECT_FLOAT_EQ(y[1], 8);
    g.ceil_mode = true;  // 2x2: last row window holds row 2 only
    max_pool2d(g, 1, 3, 4, x, y);
    EXPECT_FLOAT_EQ(y[2], 10);
    EXPECT_FLOAT_EQ(y[3], 12);
    avg_pool2d(g, 1, 3, 4, x, y);
    EXPECT_FLOAT_EQ(y[0], 3.5f);
    EXPECT_FLOAT_EQ(y[2], 9.5f);  // (9 + 10) / 2: the overhang is not counted
    // pads with and without count_include_pad
    pool_geometry p;
    p.kernel = {3, 3};
    p.pad_begin = p.pad_end = {1, 1};
    float z[12];
    avg_pool2d(p, 1, 3, 4, x, z);
    EXPECT_FLOAT_EQ(z[0], (1 + 2 + 5 + 6) / 4.0f);
    p.count_include_pad = true;
    avg_pool2d(p, 1, 3, 4, x, z);
    EXPECT_FLOAT_EQ(z[0], (1 + 2 + 5 + 6) / 9.0f);
    float m;
    global_avg_pool(1, 12, x, &m);
    EXPECT_FLOAT_EQ(m, 6.5f);
    global_max_pool(1, 12, x, &m);
    EXPECT_FLOAT_EQ(m, 12.0f);
}

TEST(pooling, stride_and_dilation_match_naive) {
    std::mt19937 rng(kSeed + 12);
    SCOPED_TRACE("seed " + std::to_string(kSeed + 12));
    for (int trial = 0; trial < 30; ++trial) {
        std::uniform_int_distribution<int> u(0, 100);
        pool_geometry g;
        g.kernel = {1 + u(rng) % 3, 1 + u(rng) % 3};
        g.stride = {1 + u(rng) % 3, 1 + u(rng) % 3};
        g.dilation = {1 + u(rng) % 2, 1 + u(rng) % 2};
        g.pad_begin = {u(rng) % 2, u(rng) % 2};
        g.pad_end = {u(rng) % 2, u(rng) % 2};
        g.ceil_mode = u(rng) % 2;
        const std::int64_t h = 5 + u(rng) % 6, w = 5 + u(rng) % 30;
        const std::int64_t oh = g.out_size(0, h), ow = g.out_size(1, w);
        const auto x = random_floats(static_cast<std::size_t>(2 * h * w), rng);
        std::vector<float> y(static_cast<std::size_t>(2 * oh * ow));
        max_pool2d(g, 2, h, w, x.data(), y.data());
        for (std::int64_t p = 0; p < 2; ++p)
            for (std::int64_t oy = 0; oy < oh; ++oy)
                for (std::int64_t ox = 0; ox < ow; ++ox) {
                    float m = -std::numeric_limits<float>::infinity();
                    for (std::int64_t ky = 0; ky < g.kernel[0]; ++ky)
                        for (std::int64_t kx = 0; kx < g.kernel[1]; ++kx) {
                            const std::int64_t iy = oy * g.stride[0] - g.pad_begin[0] + ky * g.dilation[0];
                            const std::int64_t ix = ox * g.stride[1] - g.pad_begin[1] + kx * g.dilation[1];
                            if (iy >= 0 && iy < h && ix >= 0 && ix < w) m = std::max(m, x[static_cast<std::size_t>((p * h + iy) * w + ix)]);
                        }
                    EXPECT_FLOAT_EQ(y[static_cast<std::size_t>((p * oh + oy) * ow + ox)], m);
                }
    }
}

}  // namespace
}  // namespace quantsim::test
