// Scalar integer arithmetic of the two target runtimes that quantsim's integer mode emulates (docs/integer.md):
//
// - ONNX Runtime (MLAS, x86-64): requantization multiplies the int32 accumulator, converted to float, by a float
//   multiplier, clamps in float and converts with round-to-nearest-even (cvtps2dq); QuantizeLinear divides by the
//   scale. The QLinearAdd / QLinearMul / QLinearSoftmax formulas follow MLAS's x86 kernels operation by operation.
// - TFLite integer specification: a real multiplier becomes an int32 fixed-point multiplier and a shift
//   (QuantizeMultiplier); requantization is SaturatingRoundingDoublingHighMul (ties round up) followed by
//   RoundingDivideByPOT (ties round away from zero).
//
// These are the plain reference versions: the vectorized kernels of the integer executor are tested against them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <quantsim/core/error.hpp>

namespace quantsim {

// ---- ONNX Runtime ------------------------------------------------------------------------------------------------

/// MlasRequantizeOutput: float(acc) * scale, clamped to [qmin - zp, qmax - zp], rounded half to even, plus zp.
inline std::int32_t ort_requantize(std::int32_t acc, float scale, std::int32_t zp, std::int32_t qmin,
                                   std::int32_t qmax) noexcept {
    float f = static_cast<float>(acc) * scale;
    f = std::max(f, static_cast<float>(qmin - zp));
    f = std::min(f, static_cast<float>(qmax - zp));
    return static_cast<std::int32_t>(std::nearbyint(f)) + zp;
}

/// QuantizeLinear (MlasQuantizeLinear): x / scale clamped to [qmin - zp, qmax - zp], rounded half to even, plus zp.
/// A NaN quotient takes the lower bound, as MAXPS does.
inline std::int32_t ort_quantize(float x, float scale, std::int32_t zp, std::int32_t qmin, std::int32_t qmax) noexcept {
    float f = x / scale;
    f = f > static_cast<float>(qmin - zp) ? f : static_cast<float>(qmin - zp);  // MAXPS: NaN -> second operand
    f = std::min(f, static_cast<float>(qmax - zp));
    return static_cast<std::int32_t>(std::nearbyint(f)) + zp;
}

/// DequantizeLinear: float(q - zp) * scale.
inline float ort_dequantize(std::int32_t q, float scale, std::int32_t zp) noexcept {
    return static_cast<float>(q - zp) * scale;
}

/// QLinearConv / QLinearMatMul output multiplier: (x_scale * w_scale) / y_scale in float, in that order.
inline float ort_conv_multiplier(float x_scale, float w_scale, float y_scale) noexcept {
    return x_scale * w_scale / y_scale;
}

/// Saturating pack to [qmin, qmax] of a rounded int (the packus/packs steps of MLAS).
inline std::int32_t saturate(std::int64_t v, std::int32_t qmin, std::int32_t qmax) noexcept {
    return static_cast<std::int32_t>(std::clamp<std::int64_t>(v, qmin, qmax));
}

/// Constants of MLAS's AVX2 QLinearAdd (qladd_avx2.cpp): c = fma(a, ratio_a, fma(b, ratio_b, fixed)), rounded half
/// to even and saturated. fixed = zp_c - (ratio_a * zp_a + ratio_b * zp_b); ONNX Runtime's x86 build contracts the
/// inner expression into one fused multiply-add (verified against ONNX Runtime, docs/integer.md).
struct ort_add_params {
    float ratio_a = 1, ratio_b = 1, fixed = 0;
    std::int32_t qmin = 0, qmax = 255;
};
inline ort_add_params make_ort_add(float scale_a, std::int32_t zp_a, float scale_b, std::int32_t zp_b, float scale_c,
                                   std::int32_t zp_c, std::int32_t qmin, std::int32_t qmax) noexcept {
    ort_add_params p;
    p.ratio_a = scale_a / scale_c;
    p.ratio_b = scale_b / scale_c;
    p.fixed = static_cast<float>(zp_c) -
              std::fma(p.ratio_a, static_cast<float>(zp_a), p.ratio_b * static_cast<float>(zp_b));
    p.qmin = qmin;
    p.qmax = qmax;
    return p;
}
/// Both inputs are tensors of the same length.
inline std::int32_t ort_add(std::int32_t a, std::int32_t b, const ort_add_params& p) noexcept {
    const float c = std::fma(static_cast<float>(a), p.ratio_a,
                             std::fma(static_cast<float>(b), p.ratio_b, p.fixed));
    return saturate(static_cast<std::int64_t>(std::nearbyint(c)), p.qmin, p.qmax);
}
/// One input is a scalar over the span (broadcast): MLAS folds it into the fixed part first (mul, then add).
inline std::int32_t ort_add_scalar_a(std::int32_t a_scalar, std::int32_t b, const ort_add_params& p) noexcept {
    const float fixed = p.fixed + static_cast<float>(a_scalar) * p.ratio_a;
    const float c = std::fma(static_cast<float>(b), p.ratio_b, fixed);
    return saturate(static_cast<std::int64_t>(std::nearbyint(c)), p.qmin, p.qmax);
}
inline std::int32_t ort_add_scalar_b(std::int32_t a, std::int32_t b_scalar, const ort_add_params& p) noexcept {
    const float fixed = p.fixed + static_cast<float>(b_scalar) * p.ratio_b;
    const float c = std::fma(static_cast<float>(a), p.ratio_a, fixed);
    return saturate(static_cast<std::int64_t>(std::nearbyint(c)), p.qmin, p.qmax);
}

/// MLAS's x86 QLinearMul (qlmul.cpp, SSE2): the exact int32 product (a - zp_a) * (b - zp_b), times
/// (scale_a * scale_b) / scale_c in float, plus zp_c in float, rounded half to even, saturated.
inline float ort_mul_multiplier(float scale_a, float scale_b, float scale_c) noexcept {
    return scale_a * scale_b / scale_c;
}
inline std::int32_t ort_mul(std::int32_t a, std::int32_t zp_a, std::int32_t b, std::int32_t zp_b, float multiplier,
                            std::int32_t zp_c, std::int32_t qmin, std::int32_t qmax) noexcept {
    const std::int32_t prod = (a - zp_a) * (b - zp_b);
    const float c = static_cast<float>(prod) * multiplier + static_cast<float>(zp_c);
    return saturate(static_cast<std::int64_t>(std::nearbyint(c)), qmin, qmax);
}

/// QLinearGlobalAveragePool multiplier: x_scale / (y_scale * float(image_size)); the sum gets -zp_x * image_size
/// and is requantized like a convolution's accumulator.
inline float ort_gap_multiplier(float x_scale, float y_scale, std::int64_t image_size) noexcept {
    return x_scale / (y_scale * static_cast<float>(image_size));
}

/// QLinearSoftmax's exp table (float, 256 entries) for an input scale and reduced length, as ONNX Runtime builds
/// it: entry i holds exp((i - 255 + shift) * x_scale) with shift = max(0, log(FLT_MAX / D) - 5) / x_scale, indexed
/// by the raw byte (uint8) or by (uint8)(i - 128) for int8 inputs.
std::vector<float> ort_softmax_table(float x_scale, std::int64_t reduce_len, bool is_signed);
/// One softmax row of D values, uint8 (is_signed = false) or int8 storage held in int32 (in and out).
void ort_softmax_row(const std::int32_t* x, std::int32_t* y, std::int64_t d, const std::vector<float>& table,
                     float y_scale, std::int32_t y_zp, bool is_signed);

// ---- TFLite --------------------------------------------------------------------------------------------------------

/// A real multiplier as an int32 fixed-point value in [2^30, 2^31) and a power-of-two exponent:
/// real = multiplier * 2^(shift - 31).
struct fixed_multiplier {
    std::int32_t multiplier = 0;
    int shift = 0;
    bool operator==(const fixed_multiplier&) const = default;
};

/// TFLite's QuantizeMultiplier (frexp, then round half away from zero to 31 bits).
inline fixed_multiplier tflite_quantize_multiplier(double real) {
    if (!(real >= 0) || !std::isfinite(real))
        QUANTSIM_THROW(invalid_argument, "TFLite multiplier must be finite and non-negative, got ", real);
    fixed_multiplier r;
    if (real == 0.0) return r;
    int shift = 0;
    const double q = std::frexp(real, &shift);
    auto q_fixed = static_cast<std::int64_t>(std::round(q * static_cast<double>(std::int64_t{1} << 31)));
    if (q_fixed == (std::int64_t{1} << 31)) {
        q_fixed /= 2;
        ++shift;
    }
    if (shift < -31) {
        shift = 0;
        q_fixed = 0;
    }
    if (shift > 30) {
        shift = 30;
        q_fixed = (std::int64_t{1} << 31) - 1;
    }
    r.multiplier = static_cast<std::int32_t>(q_fixed);
    r.shift = shift;
    return r;
}

/// gemmlowp's SaturatingRoundingDoublingHighMul: a * b * 2 / 2^32, adding 2^30 (1 - 2^30 for a negative product)
/// and truncating, so ties round up; the single overflow case (INT32_MIN * INT32_MIN) saturates.
inline std::int32_t saturating_rounding_doubling_high_mul(std::int32_t a, std::int32_t b) noexcept {
    const bool overflow = a == b && a == std::numeric_limits<std::int32_t>::min();
    const std::int64_t ab = static_cast<std::int64_t>(a) * static_cast<std::int64_t>(b);
    const std::int64_t nudge = ab >= 0 ? (std::int64_t{1} << 30) : (1 - (std::int64_t{1} << 30));
    const auto high = static_cast<std::int32_t>((ab + nudge) / (std::int64_t{1} << 31));
    return overflow ? std::numeric_limits<std::int32_t>::max() : high;
}

/// gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded half away from zero (exponent in [0, 31]).
inline std::int32_t rounding_divide_by_pot(std::int32_t x, int exponent) noexcept {
    const std::int32_t mask = static_cast<std::int32_t>((std::int64_t{1} << exponent) - 1);
    const std::int32_t remainder = x & mask;
    const std::int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/// TFLite's MultiplyByQuantizedMultiplier: x * real multiplier in fixed point (within one step of the real product).
inline std::int32_t tflite_multiply(std::int32_t x, const fixed_multiplier& m) noexcept {
    const int left = m.shift > 0 ? m.shift : 0;
    const int right = m.shift > 0 ? 0 : -m.shift;
    const auto shifted = static_cast<std::int32_t>(static_cast<std::int64_t>(x) * (std::int64_t{1} << left));
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, m.multiplier), right);
}

/// TFLite's real-valued quantize (Quantize op, float islands): round(x / scale) half away from zero, plus zp.
inline std::int32_t tflite_quantize(float x, float scale, std::int32_t zp, std::int32_t qmin, std::int32_t qmax) noexcept {
    const float r = std::round(x / scale);
    if (!(r == r)) return qmin;
    const double v = static_cast<double>(r) + zp;
    return static_cast<std::int32_t>(std::clamp<double>(v, qmin, qmax));
}

/// TFLite's quantized Add (reference_ops::Add for int8/uint8): both inputs shifted left by 20 bits, rescaled to
/// twice the larger input scale, summed, rescaled to the output.
struct tflite_add_params {
    int left_shift = 20;
    fixed_multiplier in_a, in_b, out;
    std::int32_t zp_a = 0, zp_b = 0, zp_c = 0, qmin = 0, qmax = 255;
};
inline tflite_add_params make_tflite_add(float scale_a, std::int32_t zp_a, float scale_b, std::int32_t zp_b,
                                         float scale_c, std::int32_t zp_c, std::int32_t qmin, std::int32_t qmax) {
    tflite_add_params p;
    const double twice_max = 2.0 * std::max(static_cast<double>(scale_a), static_cast<double>(scale_b));
    p.in_a = tflite_quantize_multiplier(static_cast<double>(scale_a) / twice_max);
    p.in_b = tflite_quantize_multiplier(static_cast<double>(scale_b) / twice_max);
    p.out = tflite_quantize_multiplier(twice_max / (static_cast<double>(1 << p.left_shift) * scale_c));
    p.zp_a = zp_a;
    p.zp_b = zp_b;
    p.zp_c = zp_c;
    p.qmin = qmin;
    p.qmax = qmax;
    return p;
}
inline std::int32_t tflite_add(std::int32_t a, std::int32_t b, const tflite_add_params& p) noexcept {
    const std::int32_t sa = tflite_multiply((a - p.zp_a) * (1 << p.left_shift), p.in_a);
    const std::int32_t sb = tflite_multiply((b - p.zp_b) * (1 << p.left_shift), p.in_b);
    const std::int32_t raw = tflite_multiply(sa + sb, p.out) + p.zp_c;
    return std::clamp(raw, p.qmin, p.qmax);
}

/// TFLite's quantized Mul: (a - zp_a) * (b - zp_b) times the fixed-point (s_a * s_b / s_c), plus zp_c.
inline std::int32_t tflite_mul(std::int32_t a, std::int32_t zp_a, std::int32_t b, std::int32_t zp_b,
                               const fixed_multiplier& m, std::int32_t zp_c, std::int32_t qmin,
                               std::int32_t qmax) noexcept {
    const std::int32_t raw = tflite_multiply((a - zp_a) * (b - zp_b), m) + zp_c;
    return std::clamp(raw, qmin, qmax);
}

/// TFLite's integer Mean over n elements (reference_integer_ops::Mean): the zero-point-free sum times the
/// fixed-point s_in / s_out, divided by n rounding half away from zero, plus zp_out.
inline std::int32_t tflite_mean(std::int32_t sum, std::int32_t n, const fixed_multiplier& m, std::int32_t zp_out,
                                std::int32_t qmin, std::int32_t qmax) noexcept {
    std::int32_t acc = tflite_multiply(sum, m);
    acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
    return std::clamp(acc + zp_out, qmin, qmax);
}

}  // namespace quantsim
