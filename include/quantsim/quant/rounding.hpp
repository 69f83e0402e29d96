// How a quantizer maps x / scale to an integer: rounding mode, the arithmetic of the division, the stochastic
// rounding stream, and the per-call options that carry them (quant_options).
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include <quantsim/config.hpp>
#include <quantsim/core/error.hpp>

namespace quantsim {

enum class rounding_mode : std::uint8_t {
    nearest_even,  ///< ties to even: ONNX QuantizeLinear, PyTorch, numpy (the default)
    nearest_away,  ///< ties away from zero: AIMET's C++/CUDA kernels, TFLite
    floor,         ///< toward -inf
    ceil,          ///< toward +inf
    stochastic,    ///< floor(v) + 1 with probability v - floor(v); reproducible from (seed, element index)
};

constexpr std::string_view name_of(rounding_mode m) noexcept {
    switch (m) {
        case rounding_mode::nearest_even: return "nearest_even";
        case rounding_mode::nearest_away: return "nearest_away";
        case rounding_mode::floor: return "floor";
        case rounding_mode::ceil: return "ceil";
        case rounding_mode::stochastic: return "stochastic";
    }
    return "unknown";
}

/// How x / scale is computed. They differ in the last bit for some x, which moves some exact ties.
enum class scale_arithmetic : std::uint8_t {
    divide,               ///< x / scale, correctly rounded: ONNX QuantizeLinear and ONNX Runtime (default)
    multiply_reciprocal,  ///< x * (1.0f / scale): PyTorch's fake_quantize CPU kernels
};

constexpr std::string_view name_of(scale_arithmetic a) noexcept {
    return a == scale_arithmetic::divide ? "divide" : "multiply_reciprocal";
}

/// Options of every quantize / fake-quant call. The result never depends on num_threads.
struct quant_options {
    rounding_mode rounding = rounding_mode::nearest_even;
    scale_arithmetic arithmetic = scale_arithmetic::divide;
    std::uint64_t seed = 0;  ///< stochastic rounding stream; element i of a call uses (seed, i)
    int num_threads = 0;     ///< 0: default_num_threads(); small tensors always run on one thread

    /// ONNX QuantizeLinear / ONNX Runtime: x / scale, ties to even.
    static constexpr quant_options onnx() { return {}; }
    /// torch.fake_quantize_per_{tensor,channel}_affine: x * (1 / scale), ties to even.
    static constexpr quant_options pytorch() {
        return {rounding_mode::nearest_even, scale_arithmetic::multiply_reciprocal, 0, 0};
    }
    /// AIMET's C++ quantize-dequantize: ties away from zero.
    static constexpr quant_options aimet() { return {rounding_mode::nearest_away, scale_arithmetic::divide, 0, 0}; }

    quant_options& with_threads(int n) {
        num_threads = n;
        return *this;
    }
    quant_options& with_seed(std::uint64_t s) {
        seed = s;
        return *this;
    }
};

namespace detail {

/// The splitmix64 finalizer: a bijective 64-bit mix with full avalanche.
QUANTSIM_ALWAYS_INLINE constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
inline constexpr std::uint64_t golden_gamma = 0x9E3779B97F4A7C15ull;

/// Stream key of a seed (mixed once per call, so neighbouring seeds give unrelated streams).
constexpr std::uint64_t stochastic_key(std::uint64_t seed) noexcept { return mix64(seed ^ 0x5DEECE66Dull); }

}  // namespace detail

/// The uniform number in [0, 1) that stochastic rounding compares with the fraction of element `index`: a
/// counter-based hash of (seed, index), so any thread may compute any element and results do not depend on the
/// thread count or the loop order. float: multiples of 2^-24; double: multiples of 2^-53.
template <class T>
QUANTSIM_ALWAYS_INLINE constexpr T stochastic_uniform_keyed(std::uint64_t key, std::uint64_t index) noexcept {
    const std::uint64_t h = detail::mix64(key + index * detail::golden_gamma);
    if constexpr (sizeof(T) == 4)
        return static_cast<T>(static_cast<std::int32_t>(h >> 40)) * T(0x1p-24);
    else
        return static_cast<T>(static_cast<std::int64_t>(h >> 11)) * T(0x1p-53);
}
template <class T>
constexpr T stochastic_uniform(std::uint64_t seed, std::uint64_t index) noexcept {
    return stochastic_uniform_keyed<T>(detail::stochastic_key(seed), index);
}

/// Plain scalar rounding of v (float or double) with the standard library; the reference for every kernel.
/// `index` is the element index for stochastic rounding.
template <class T>
T round_ref(T v, rounding_mode mode, std::uint64_t seed = 0, std::uint64_t index = 0) {
    switch (mode) {
        case rounding_mode::nearest_even: return std::nearbyint(v);
        case rounding_mode::nearest_away: return std::round(v);
        case rounding_mode::floor: return std::floor(v);
        case rounding_mode::ceil: return std::ceil(v);
        case rounding_mode::stochastic: {
            const T f = std::floor(v);
            return stochastic_uniform<T>(seed, index) < v - f ? f + T(1) : f;
        }
    }
    QUANTSIM_THROW(invalid_argument, "round_ref: unknown rounding mode ", static_cast<int>(mode));
}

}  // namespace quantsim
