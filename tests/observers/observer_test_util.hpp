// Shared helpers for the observer tests: seeded data generators and a plain quantize-dequantize error.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <quantsim/quant/observers.hpp>

namespace qtest {

/// Seeds are fixed so failures reproduce; every test prints its seed through SCOPED_TRACE.
constexpr std::uint32_t default_seed = 0x5eed0b5u;

inline std::string seed_trace(std::uint32_t seed) {
    return "seed = " + std::to_string(seed);
}

inline std::vector<float> normal(std::size_t n, std::uint32_t seed, float mean = 0, float stddev = 1) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(mean, stddev);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

inline std::vector<float> uniform(std::size_t n, std::uint32_t seed, float lo, float hi) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

/// Laplace(0, b) with a few large outliers: the heavy-tailed case clipping estimators exist for.
inline std::vector<float> laplace_with_outliers(std::size_t n, std::uint32_t seed, float b = 1.0f,
                                                std::size_t outliers = 8, float outlier_scale = 60.0f) {
    std::mt19937 rng(seed);
    std::exponential_distribution<float> e(1.0f / b);
    std::bernoulli_distribution sign(0.5);
    std::vector<float> v(n);
    for (auto& x : v) x = sign(rng) ? e(rng) : -e(rng);
    std::uniform_real_distribution<float> u(0.5f, 1.0f);
    for (std::size_t i = 0; i < outliers && i < n; ++i)
        v[(i * 7919u) % n] = (i % 2 ? -1.0f : 1.0f) * outlier_scale * u(rng);
    return v;
}

/// Student's t with `dof` degrees of freedom: a power-law tail (clipping pays off even at 8 bits).
inline std::vector<float> student_t(std::size_t n, std::uint32_t seed, float dof = 3.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> z(0.0f, 1.0f);
    std::chi_squared_distribution<float> c(dof);
    std::vector<float> v(n);
    for (auto& x : v) x = z(rng) / std::sqrt(c(rng) / dof);
    return v;
}

/// Mean squared error of quantize-dequantize with e (round half to even, clamp to the grid).
inline double qdq_mse(std::span<const float> x, const quantsim::encoding& e) {
    const auto r = e.range();
    double sum = 0;
    for (float v : x) {
        const double q = std::clamp(std::nearbyint(static_cast<double>(v) / e.scale) + e.zero_point,
                                    static_cast<double>(r.qmin), static_cast<double>(r.qmax));
        const double d = v - (q - e.zero_point) * static_cast<double>(e.scale);
        sum += d * d;
    }
    return sum / static_cast<double>(x.size());
}

inline quantsim::quant_spec spec(int bits, quantsim::qscheme scheme, bool is_signed = false,
                                 bool unsigned_symmetric = false) {
    quantsim::quant_spec s;
    s.bitwidth = bits;
    s.scheme = scheme;
    s.is_signed = is_signed;
    s.unsigned_symmetric = unsigned_symmetric;
    return s;
}

/// Asymmetric, signed asymmetric, symmetric, strict symmetric and unsigned symmetric, all at `bits`.
inline std::vector<quantsim::quant_spec> all_specs(int bits) {
    using quantsim::qscheme;
    return {spec(bits, qscheme::asymmetric), spec(bits, qscheme::asymmetric, true), spec(bits, qscheme::symmetric),
            spec(bits, qscheme::strict_symmetric), spec(bits, qscheme::symmetric, false, true)};
}

inline std::string describe(const quantsim::quant_spec& s) {
    return std::string(quantsim::name_of(s.scheme)) + (s.is_signed ? " signed" : "") +
           (s.unsigned_symmetric ? " unsigned_symmetric" : "") + " " + std::to_string(s.bitwidth) + "b";
}

inline void expect_same_encoding(const quantsim::encoding& a, const quantsim::encoding& b) {
    EXPECT_EQ(a.scale, b.scale);
    EXPECT_EQ(a.zero_point, b.zero_point);
    EXPECT_EQ(a.bitwidth, b.bitwidth);
    EXPECT_EQ(a.is_signed, b.is_signed);
    EXPECT_EQ(a.scheme, b.scheme);
}

}  // namespace qtest
