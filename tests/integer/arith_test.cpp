// The runtimes' scalar arithmetic (sim/integer_arith.hpp): known values, rounding ties, saturation, and the TFLite
// fixed-point pipeline against an independent 128-bit reference of the same formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include <quantsim/core/error.hpp>
#include <quantsim/sim/integer_arith.hpp>

namespace qs = quantsim;

namespace {

__extension__ typedef __int128 i128;  // GCC/Clang extension: exact products of two int64 values

constexpr std::uint32_t seed = 20261122;
constexpr int random_cases = 20000;

// round(num / 2^bits) half away from zero, exact (num in 128 bits).
i128 round_shift_away(i128 num, int bits) {
    if (bits == 0) return num;
    const i128 den = static_cast<i128>(1) << bits;
    const i128 mag = num < 0 ? -num : num;
    i128 q = mag / den;
    const i128 r = mag % den;
    if (2 * r >= den) ++q;
    return num < 0 ? -q : q;
}

// TFLite's MultiplyByQuantizedMultiplier written from its definition: x * 2^left, then the doubling high multiply
// (x * m * 2 / 2^32: gemmlowp adds 2^30, or 1 - 2^30 for negative products, and truncates, so ties round up),
// then a rounding right shift (ties away from zero).
std::int32_t tflite_multiply_reference(std::int32_t x, const qs::fixed_multiplier& m) {
    const int left = m.shift > 0 ? m.shift : 0, right = m.shift > 0 ? 0 : -m.shift;
    const auto shifted = static_cast<std::int32_t>(static_cast<std::int64_t>(x) * (std::int64_t{1} << left));
    if (shifted == std::numeric_limits<std::int32_t>::min() && m.multiplier == shifted)
        return std::numeric_limits<std::int32_t>::max();
    const i128 ab = static_cast<i128>(shifted) * m.multiplier;
    const i128 den = static_cast<i128>(1) << 31;
    const i128 high = ab >= 0 ? (ab + (den >> 1)) / den : -((-ab + (den >> 1) - 1) / den);
    return static_cast<std::int32_t>(round_shift_away(high, right));
}

}  // namespace

TEST(IntegerArith, ort_requantize_rounds_half_to_even) {
    EXPECT_EQ(qs::ort_requantize(5, 0.5f, 0, 0, 255), 2);    // 2.5 -> 2
    EXPECT_EQ(qs::ort_requantize(7, 0.5f, 0, 0, 255), 4);    // 3.5 -> 4
    EXPECT_EQ(qs::ort_requantize(-5, 0.5f, 10, 0, 255), 8);  // -2.5 -> -2, + 10
    EXPECT_EQ(qs::ort_requantize(-7, 0.5f, 10, 0, 255), 6);  // -3.5 -> -4, + 10
    EXPECT_EQ(qs::ort_requantize(3, 0.5f, -3, -128, 127), -1);  // 1.5 -> 2, - 3
}

TEST(IntegerArith, ort_requantize_saturates) {
    EXPECT_EQ(qs::ort_requantize(100000, 1.0f, 0, 0, 255), 255);
    EXPECT_EQ(qs::ort_requantize(-100000, 1.0f, 0, 0, 255), 0);
    EXPECT_EQ(qs::ort_requantize(100000, 1.0f, 5, -128, 127), 127);
    EXPECT_EQ(qs::ort_requantize(-100000, 1.0f, 5, -128, 127), -128);
    EXPECT_EQ(qs::ort_requantize(std::numeric_limits<std::int32_t>::max(), 1e-3f, 128, 0, 255), 255);
}

TEST(IntegerArith, ort_quantize_divides_and_rounds_half_to_even) {
    EXPECT_EQ(qs::ort_quantize(0.25f, 0.1f, 0, 0, 255), 2);  // 2.5 after the float division -> 2
    EXPECT_EQ(qs::ort_quantize(2.5f, 1.0f, 0, 0, 255), 2);
    EXPECT_EQ(qs::ort_quantize(3.5f, 1.0f, 0, 0, 255), 4);
    EXPECT_EQ(qs::ort_quantize(-1000.0f, 1.0f, 7, 0, 255), 0);
    EXPECT_EQ(qs::ort_quantize(1000.0f, 1.0f, 7, 0, 255), 255);
    EXPECT_EQ(qs::ort_quantize(std::nanf(""), 1.0f, 7, 0, 255), 0);  // MAXPS: NaN takes the lower bound
    EXPECT_FLOAT_EQ(qs::ort_dequantize(10, 0.5f, 4), 3.0f);
}

TEST(IntegerArith, ort_add_matches_hand_computation) {
    // a: scale 0.1 zp 10, b: scale 0.2 zp 20, c: scale 0.3 zp 5. a=30 (2.0), b=35 (3.0): 5.0/0.3 = 16.67 + 5 -> 22.
    const auto p = qs::make_ort_add(0.1f, 10, 0.2f, 20, 0.3f, 5, 0, 255);
    EXPECT_EQ(qs::ort_add(30, 35, p), 22);
    EXPECT_EQ(qs::ort_add_scalar_a(30, 35, p), 22);
    EXPECT_EQ(qs::ort_add_scalar_b(30, 35, p), 22);
    EXPECT_EQ(qs::ort_add(255, 255, p), 243);  // 24.5 + 47 = 71.5 / 0.3 = 238.3, + 5
    EXPECT_EQ(qs::ort_add(0, 0, p), 0);        // -1 - 4 < 0: saturates
    const auto fine = qs::make_ort_add(0.1f, 10, 0.2f, 20, 0.1f, 5, 0, 255);
    EXPECT_EQ(qs::ort_add(255, 255, fine), 255);  // saturates
    // Exact tie: scales 1, zp 0, output scale 2: (1 + 2) / 2 = 1.5 -> 2, (1 + 0) / 2 = 0.5 -> 0.
    const auto t = qs::make_ort_add(1.0f, 0, 1.0f, 0, 2.0f, 0, 0, 255);
    EXPECT_EQ(qs::ort_add(1, 2, t), 2);
    EXPECT_EQ(qs::ort_add(1, 0, t), 0);
}

TEST(IntegerArith, ort_mul_uses_the_exact_integer_product) {
    // (12 - 2) * (7 - 3) = 40; * (0.5 * 0.25 / 0.5) = 10 + zp 3 = 13.
    const float m = qs::ort_mul_multiplier(0.5f, 0.25f, 0.5f);
    EXPECT_EQ(qs::ort_mul(12, 2, 7, 3, m, 3, 0, 255), 13);
    // Tie: product 5 times 0.5 = 2.5 -> 2 (half to even).
    EXPECT_EQ(qs::ort_mul(5, 0, 1, 0, 0.5f, 0, 0, 255), 2);
    EXPECT_EQ(qs::ort_mul(255, 0, 255, 0, 1.0f, 0, -128, 127), 127);
}

TEST(IntegerArith, ort_softmax_known_values) {
    // Output scale 1/256 (exact): floor(1 / s) = 256. Two equal inputs share the mass: 128 each.
    const auto table = qs::ort_softmax_table(0.05f, 2, false);
    std::int32_t x[2] = {200, 200}, y[2] = {0, 0};
    qs::ort_softmax_row(x, y, 2, table, 1.0f / 256, 0, false);
    EXPECT_EQ(y[0], 128);
    EXPECT_EQ(y[1], 128);
    // A large gap: the larger one takes everything (256 clamps to 255), the smaller rounds to 0.
    const auto wide = qs::ort_softmax_table(1.0f, 2, false);
    std::int32_t x2[2] = {255, 0}, y2[2] = {0, 0};
    qs::ort_softmax_row(x2, y2, 2, wide, 1.0f / 256, 0, false);
    EXPECT_EQ(y2[0], 255);
    EXPECT_EQ(y2[1], 0);
    // The table is indexed relative to the row maximum: shifting both inputs changes nothing.
    std::int32_t x3[2] = {100, 90}, x4[2] = {250, 240}, y3[2], y4[2];
    qs::ort_softmax_row(x3, y3, 2, table, 1.0f / 255, 0, false);
    qs::ort_softmax_row(x4, y4, 2, table, 1.0f / 255, 0, false);
    EXPECT_EQ(y3[0], y4[0]);
    EXPECT_EQ(y3[1], y4[1]);
    // exp(0.5) / (1 + exp(0.5)) = 0.6225 -> * floor(255.00000x) ... within one step of the real value.
    EXPECT_NEAR(y3[0], 0.6224593 * 255, 1.0);
    EXPECT_THROW(qs::ort_softmax_table(0.0f, 2, false), qs::invalid_argument);
}

TEST(IntegerArith, tflite_quantize_multiplier_known_values) {
    EXPECT_EQ(qs::tflite_quantize_multiplier(0.5), (qs::fixed_multiplier{1 << 30, 0}));
    EXPECT_EQ(qs::tflite_quantize_multiplier(1.0), (qs::fixed_multiplier{1 << 30, 1}));
    EXPECT_EQ(qs::tflite_quantize_multiplier(0.25), (qs::fixed_multiplier{1 << 30, -1}));
    EXPECT_EQ(qs::tflite_quantize_multiplier(0.75), (qs::fixed_multiplier{3 << 29, 0}));
    EXPECT_EQ(qs::tflite_quantize_multiplier(0.0), (qs::fixed_multiplier{0, 0}));
    // A mantissa that rounds up to 2^31 moves to the next exponent.
    EXPECT_EQ(qs::tflite_quantize_multiplier(1.0 - 1e-12), (qs::fixed_multiplier{1 << 30, 1}));
    EXPECT_THROW(qs::tflite_quantize_multiplier(-1.0), qs::invalid_argument);
    EXPECT_THROW(qs::tflite_quantize_multiplier(std::nan("")), qs::invalid_argument);
}

TEST(IntegerArith, tflite_rounding_is_half_away_from_zero) {
    EXPECT_EQ(qs::rounding_divide_by_pot(5, 1), 3);    // 2.5 -> 3
    EXPECT_EQ(qs::rounding_divide_by_pot(-5, 1), -3);  // -2.5 -> -3
    EXPECT_EQ(qs::rounding_divide_by_pot(3, 1), 2);
    EXPECT_EQ(qs::rounding_divide_by_pot(-3, 1), -2);
    EXPECT_EQ(qs::rounding_divide_by_pot(6, 2), 2);    // 1.5 -> 2
    EXPECT_EQ(qs::rounding_divide_by_pot(-6, 2), -2);
    EXPECT_EQ(qs::rounding_divide_by_pot(1, 2), 0);    // 0.25 -> 0
    EXPECT_EQ(qs::rounding_divide_by_pot(-1, 2), 0);
    EXPECT_EQ(qs::rounding_divide_by_pot(7, 0), 7);
    const std::int32_t lo = std::numeric_limits<std::int32_t>::min();
    EXPECT_EQ(qs::saturating_rounding_doubling_high_mul(lo, lo), std::numeric_limits<std::int32_t>::max());
    EXPECT_EQ(qs::saturating_rounding_doubling_high_mul(1 << 30, 1 << 30), 1 << 29);
    // The doubling high multiply rounds ties up: 3 * 2^30 * 2 / 2^32 = 1.5 -> 2, -1.5 -> -1.
    EXPECT_EQ(qs::saturating_rounding_doubling_high_mul(3, 1 << 30), 2);
    EXPECT_EQ(qs::saturating_rounding_doubling_high_mul(-3, 1 << 30), -1);
    // x * 0.5 (shift 0: only the high multiply rounds): 2.5 -> 3, -2.5 -> -2 (ONNX Runtime: 2 and -2).
    const auto half = qs::tflite_quantize_multiplier(0.5);
    EXPECT_EQ(qs::tflite_multiply(5, half), 3);
    EXPECT_EQ(qs::tflite_multiply(-5, half), -2);
    // x * 0.25 (a right shift of 1 after an exact high multiply): 1.5 -> 2, -1.5 -> -2 (away from zero).
    const auto quarter = qs::tflite_quantize_multiplier(0.25);
    EXPECT_EQ(qs::tflite_multiply(6, quarter), 2);
    EXPECT_EQ(qs::tflite_multiply(-6, quarter), -2);
    EXPECT_EQ(qs::tflite_quantize(2.5f, 1.0f, 0, 0, 255), 3);
    EXPECT_EQ(qs::tflite_quantize(-2.5f, 1.0f, 10, 0, 255), 7);
    EXPECT_EQ(qs::tflite_quantize(1e9f, 1.0f, 0, -128, 127), 127);
}

TEST(IntegerArith, tflite_multiply_matches_a_128_bit_reference) {
    std::mt19937 rng(seed);
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::uniform_int_distribution<std::int32_t> xs(-(1 << 24), 1 << 24);
    std::uniform_real_distribution<double> exps(-20.0, 4.0);
    for (int i = 0; i < random_cases; ++i) {
        const std::int32_t x = xs(rng);
        const double real = std::exp2(exps(rng));
        const auto m = qs::tflite_quantize_multiplier(real);
        // Keep x * 2^left inside int32 as TFLite requires.
        if (m.shift > 0 && std::abs(static_cast<std::int64_t>(x)) << m.shift > std::numeric_limits<std::int32_t>::max())
            continue;
        ASSERT_EQ(qs::tflite_multiply(x, m), tflite_multiply_reference(x, m)) << "x " << x << " real " << real;
        // And the fixed-point result is within one step of the real product.
        ASSERT_LE(std::fabs(qs::tflite_multiply(x, m) - x * real), 1.0) << "x " << x << " real " << real;
    }
    // Exact ties: power-of-two multipliers and odd x.
    for (int e = 1; e <= 20; ++e) {
        const auto m = qs::tflite_quantize_multiplier(std::ldexp(1.0, -e));
        for (std::int32_t x = -(1 << 12) - 1; x <= (1 << 12) + 1; x += 2)
            ASSERT_EQ(qs::tflite_multiply(x, m), tflite_multiply_reference(x, m)) << "x " << x << " 2^-" << e;
    }
}

TEST(IntegerArith, tflite_add_mul_mean_match_real_arithmetic) {
    // Add: a = 2.0 (scale 0.1 zp 10 -> 30), b = 3.0 (scale 0.2 zp 20 -> 35), c scale 0.3 zp 5: 5 / 0.3 = 16.67 -> 22.
    const auto p = qs::make_tflite_add(0.1f, 10, 0.2f, 20, 0.3f, 5, 0, 255);
    EXPECT_EQ(qs::tflite_add(30, 35, p), 22);
    EXPECT_EQ(qs::tflite_add(255, 255, p), 243);
    const auto fine = qs::make_tflite_add(0.1f, 10, 0.2f, 20, 0.1f, 5, 0, 255);
    EXPECT_EQ(qs::tflite_add(255, 255, fine), 255);  // saturates
    // Mul: (12 - 2) * (7 - 3) = 40 times 0.25 = 10, + 3.
    EXPECT_EQ(qs::tflite_mul(12, 2, 7, 3, qs::tflite_quantize_multiplier(0.25), 3, 0, 255), 13);
    // Mean of 4 values summing to 10 (after zero point), same scales: 2.5 -> 3 (away from zero).
    EXPECT_EQ(qs::tflite_mean(10, 4, qs::tflite_quantize_multiplier(1.0), 0, 0, 255), 3);
    EXPECT_EQ(qs::tflite_mean(-10, 4, qs::tflite_quantize_multiplier(1.0), 100, 0, 255), 97);
}
