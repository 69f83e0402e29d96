// Integer kernels (sim/detail/integer_kernels.hpp): the vectorized conv / matmul / requantization against the plain
// reference loops (bit-exact), and the reference against a hand-computed convolution.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <random>
#include <vector>

#include <quantsim/sim/detail/integer_kernels.hpp>
#include <quantsim/sim/detail/integer_simd.hpp>

namespace qs = quantsim;
namespace qd = quantsim::detail;

namespace {

constexpr std::uint32_t seed = 20261123;

struct conv_case {
    const char* name;
    std::int64_t c, m, group, kh, kw, sh, sw, pad, h, w;
    bool x_signed, y_signed, weight_zp, tflite, per_channel;
};

qd::requant_params requant_for(const conv_case& cc, std::mt19937& rng, std::int32_t qmin, std::int32_t qmax) {
    qd::requant_params r;
    r.tflite = cc.tflite;
    r.zp = cc.y_signed ? -3 : 17;
    r.qmin = qmin;
    r.qmax = qmax;
    std::uniform_real_distribution<float> sd(0.0005f, 0.02f);
    const std::int64_t n = cc.per_channel ? cc.m : 1;
    for (std::int64_t i = 0; i < n; ++i) {
        const float s = sd(rng);
        r.scale.push_back(s);
        r.multiplier.push_back(qs::tflite_quantize_multiplier(s));
    }
    return r;
}

void run_case(const conv_case& cc) {
    SCOPED_TRACE(testing::Message() << cc.name << ", seed " << seed);
    std::mt19937 rng(seed);
    qs::conv_geometry g;
    g.in_channels = cc.c;
    g.out_channels = cc.m;
    g.group = cc.group;
    g.kernel = {cc.kh, cc.kw};
    g.stride = {cc.sh, cc.sw};
    g.pad_begin = {cc.pad, cc.pad};
    g.pad_end = {cc.pad, cc.pad};
    const std::int64_t k = cc.c / cc.group * cc.kh * cc.kw;
    std::uniform_int_distribution<std::int32_t> wd(-127, 127), bd(-5000, 5000), zd(-20, 20);
    std::vector<std::int32_t> w(static_cast<std::size_t>(cc.m * k)), bias(static_cast<std::size_t>(cc.m));
    for (auto& v : w) v = wd(rng);
    for (auto& v : bias) v = bd(rng);
    std::vector<std::int32_t> wzp(static_cast<std::size_t>(cc.per_channel ? cc.m : 1), 0);
    if (cc.weight_zp)
        for (auto& z : wzp) z = zd(rng);
    const std::int32_t qmin = cc.y_signed ? -128 : 0, qmax = cc.y_signed ? 127 : 255;
    const auto layer = qd::make_qconv(g, w, wzp, bias, requant_for(cc, rng, qmin, qmax));
    const std::int64_t n = 3, oh = g.conv_out(0, cc.h), ow = g.conv_out(1, cc.w);
    std::vector<std::uint8_t> x(static_cast<std::size_t>(n * cc.c * cc.h * cc.w));
    std::uniform_int_distribution<int> xd(0, 255);
    for (auto& v : x) v = static_cast<std::uint8_t>(xd(rng));
    const std::int32_t x_zp = cc.x_signed ? 5 : 120;
    std::vector<std::uint8_t> ref(static_cast<std::size_t>(n * cc.m * oh * ow)), fast(ref.size(), 0xAB);
    qd::qconv_ref(layer, n, cc.h, cc.w, x.data(), cc.x_signed, x_zp, ref.data(), cc.y_signed);
    qd::qconv_run(layer, n, cc.h, cc.w, x.data(), cc.x_signed, x_zp, fast.data(), cc.y_signed, true);
    std::size_t distinct = 0;
    std::vector<bool> seen(256, false);
    for (std::size_t i = 0; i < ref.size(); ++i) {
        ASSERT_EQ(static_cast<int>(fast[i]), static_cast<int>(ref[i])) << "element " << i;
        if (!seen[ref[i]]) ++distinct, seen[ref[i]] = true;
    }
    // The case exercises the grid, not just saturation.
    EXPECT_GT(distinct, 10u);
}

}  // namespace

TEST(IntegerKernels, conv_vectorized_matches_reference) {
    const conv_case cases[] = {
        {"3x3 stride 2 pad 1 (first layer)", 3, 8, 1, 3, 3, 2, 2, 1, 16, 37, false, false, false, false, false},
        {"1x1 pointwise, per-channel", 40, 20, 1, 1, 1, 1, 1, 0, 7, 50, false, false, false, false, true},
        {"depthwise 3x3 stride (2,1)", 16, 16, 16, 3, 3, 2, 1, 1, 12, 21, false, false, false, false, true},
        {"depthwise 5x5 stride 1 pad 2", 12, 12, 12, 5, 5, 1, 1, 2, 9, 13, false, false, false, false, false},
        {"grouped conv", 8, 12, 4, 3, 3, 1, 1, 1, 6, 9, false, false, false, false, true},
        {"int8 activations in and out", 10, 9, 1, 3, 3, 1, 2, 1, 8, 11, true, true, false, false, true},
        {"weight zero points", 10, 9, 1, 3, 1, 1, 1, 0, 8, 11, false, false, true, false, true},
        {"tflite requantization", 24, 17, 1, 1, 1, 1, 1, 0, 5, 70, false, false, false, true, true},
        {"tflite depthwise", 6, 6, 6, 3, 3, 2, 2, 1, 10, 10, true, true, false, true, true},
        // Rows longer than one 32-output vector step, with a partial last step (the vectorized depthwise rows).
        {"depthwise 3x3 stride 1, 75-wide rows", 8, 8, 8, 3, 3, 1, 1, 1, 5, 75, false, false, false, false, true},
        {"depthwise 5x5 stride 2, weight zero points", 8, 8, 8, 5, 5, 2, 2, 2, 9, 101, false, false, true, false, true},
        {"depthwise int8 stride (1,2), 140-wide", 6, 6, 6, 3, 3, 1, 2, 1, 4, 140, true, true, false, false, false},
        {"depthwise channel multiplier 2", 4, 8, 4, 3, 3, 1, 1, 1, 6, 40, false, false, false, false, true},
        {"1x1 pointwise int8, weight zero points, k = 10", 10, 9, 1, 1, 1, 1, 1, 0, 5, 23, true, true, true, false, true},
        {"1x1 pointwise, 2 images of 300 pixels", 7, 16, 1, 1, 1, 1, 1, 0, 15, 20, false, false, false, false, false},
        {"depthwise stride 3 (scalar rows)", 5, 5, 5, 3, 3, 3, 3, 1, 7, 50, false, false, false, false, true},
    };
    for (const auto& c : cases) run_case(c);
}

TEST(IntegerKernels, conv_reference_matches_hand_computation) {
    // 1 input channel 2x2, one 2x2 filter, no padding: one output.
    qs::conv_geometry g;
    g.in_channels = 1;
    g.out_channels = 1;
    g.kernel = {2, 2};
    qd::requant_params r;
    r.scale = {0.5f};
    r.zp = 10;
    // x - zp = [1, 2; 3, 4], w = [1, -1; 2, 0]: 1 - 2 + 6 + 0 = 5, + bias 2 = 7, * 0.5 = 3.5 -> 4 (half even), + 10.
    const auto layer = qd::make_qconv(g, {1, -1, 2, 0}, {0}, {2}, r);
    const std::uint8_t x[4] = {101, 102, 103, 104};
    std::uint8_t y = 0;
    qd::qconv_ref(layer, 1, 2, 2, x, false, 100, &y, false);
    EXPECT_EQ(y, 14);
    qd::qconv_run(layer, 1, 2, 2, x, false, 100, &y, false, true);
    EXPECT_EQ(y, 14);
}

TEST(IntegerKernels, matmul_matches_reference_loops) {
    std::mt19937 rng(seed);
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    const std::int64_t rows = 5, k = 37, cols = 11;
    std::uniform_int_distribution<std::int32_t> wd(-127, 127);
    std::uniform_int_distribution<int> xd(0, 255);
    std::vector<std::int32_t> b(static_cast<std::size_t>(k * cols));
    for (auto& v : b) v = wd(rng);
    std::vector<std::uint8_t> a(static_cast<std::size_t>(rows * k));
    for (auto& v : a) v = static_cast<std::uint8_t>(xd(rng));
    qd::requant_params r;
    r.scale = {0.003f};
    r.zp = 128;
    const auto L = qd::make_qmatmul(k, cols, b, {0}, {}, r);
    std::vector<std::uint8_t> y(static_cast<std::size_t>(rows * cols));
    qd::qmatmul_run(L, rows, a.data(), false, 3, y.data(), false, true);
    for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t j = 0; j < cols; ++j) {
            std::int32_t acc = 0;
            for (std::int64_t q = 0; q < k; ++q)
                acc += (a[static_cast<std::size_t>(i * k + q)] - 3) * b[static_cast<std::size_t>(q * cols + j)];
            ASSERT_EQ(static_cast<int>(y[static_cast<std::size_t>(i * cols + j)]), qs::ort_requantize(acc, 0.003f, 128, 0, 255))
                << "row " << i << " col " << j;
        }
}

TEST(IntegerKernels, requant_row_vectorized_matches_scalar_including_ties) {
    std::mt19937 rng(seed);
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::uniform_int_distribution<std::int32_t> ad(-3000, 3000);
    std::vector<std::int32_t> acc(1000);
    for (auto& v : acc) v = ad(rng);
    for (int i = 0; i < 50; ++i) acc[static_cast<std::size_t>(i)] = 2 * i + 1;  // exact ties at scale 0.5
    for (const bool sign : {false, true}) {
        qd::requant_params r;
        r.scale = {0.5f};
        r.zp = sign ? 0 : 128;
        r.qmin = sign ? -128 : 0;
        r.qmax = sign ? 127 : 255;
        for (const std::int64_t n : {std::int64_t{1000}, std::int64_t{7}, std::int64_t{33}}) {
            std::vector<std::uint8_t> a(static_cast<std::size_t>(n)), b(static_cast<std::size_t>(n));
            qd::requant_row(acc.data(), 3, n, 0, r, a.data(), sign, true);
            qd::requant_row(acc.data(), 3, n, 0, r, b.data(), sign, false);
            ASSERT_EQ(a, b) << "n " << n << " signed " << sign;
        }
    }
}

TEST(IntegerKernels, tflite_multiply_vectorized_matches_scalar) {
#if defined(__AVX512F__)
    std::mt19937 rng(seed);
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::uniform_int_distribution<std::int32_t> any(std::numeric_limits<std::int32_t>::min(),
                                                    std::numeric_limits<std::int32_t>::max());
    std::uniform_int_distribution<std::int32_t> small(-70000, 70000);
    std::uniform_real_distribution<double> real(-12.0, 4.0);
    std::vector<std::int32_t> x(4096);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = i % 2 ? any(rng) : small(rng);
    const std::int32_t edges[] = {0, 1, -1, 2, -2, std::numeric_limits<std::int32_t>::min(),
                                  std::numeric_limits<std::int32_t>::max(), 1 << 30, -(1 << 30)};
    std::copy(std::begin(edges), std::end(edges), x.begin());
    for (int t = 0; t < 40; ++t) {
        // Multipliers from 2^-12 to 2^4 (right shifts and left shifts), plus exact halves for ties.
        const double m = t < 4 ? std::ldexp(1.0, -t) : std::exp2(real(rng));
        const auto fm = qs::tflite_quantize_multiplier(m);
        for (std::size_t i = 0; i < x.size(); i += 16) {
            alignas(64) std::int32_t out[16];
            _mm512_store_si512(out, qd::tflite_multiply_epi32(_mm512_loadu_si512(x.data() + i), fm));
            for (std::size_t j = 0; j < 16; ++j)
                ASSERT_EQ(out[j], qs::tflite_multiply(x[i + j], fm))
                    << "x " << x[i + j] << " multiplier " << fm.multiplier << " shift " << fm.shift;
        }
    }
#else
    GTEST_SKIP() << "built without AVX-512";
#endif
}

TEST(IntegerKernels, tflite_requant_row_vectorized_matches_scalar) {
    std::mt19937 rng(seed);
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::uniform_int_distribution<std::int32_t> ad(-300000, 300000);
    std::vector<std::int32_t> acc(1000);
    for (auto& v : acc) v = ad(rng);
    for (int i = 0; i < 60; ++i) acc[static_cast<std::size_t>(i)] = 2 * i - 61;  // ties at multiplier 0.5
    for (const bool sign : {false, true})
        for (const double m : {0.5, 0.0123, 0.00037, 1.75}) {
            qd::requant_params r;
            r.tflite = true;
            r.multiplier = {qs::tflite_quantize_multiplier(m), qs::tflite_quantize_multiplier(m * 0.3)};
            r.zp = sign ? -5 : 128;
            r.qmin = sign ? -128 : 0;
            r.qmax = sign ? 127 : 255;
            for (const std::int64_t n : {std::int64_t{1000}, std::int64_t{7}, std::int64_t{33}})
                for (const std::int64_t channel : {0, 1}) {
                    std::vector<std::uint8_t> a(static_cast<std::size_t>(n)), b(static_cast<std::size_t>(n));
                    qd::requant_row(acc.data(), -17, n, channel, r, a.data(), sign, true);
                    qd::requant_row(acc.data(), -17, n, channel, r, b.data(), sign, false);
                    ASSERT_EQ(a, b) << "n " << n << " signed " << sign << " multiplier " << m;
                }
        }
}
