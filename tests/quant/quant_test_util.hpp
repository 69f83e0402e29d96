// Helpers shared by the quantizer tests: seeded data, bit-exact comparison, parameter builders.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <quantsim/quant.hpp>

namespace quantsim::test {

/// Seed for randomized tests: QUANTSIM_TEST_SEED from the environment, else a fixed default. Tests put it in a
/// SCOPED_TRACE so a failure prints it.
inline std::uint64_t test_seed(std::uint64_t fallback = 20240611) {
    if (const char* s = std::getenv("QUANTSIM_TEST_SEED")) return std::strtoull(s, nullptr, 10);
    return fallback;
}
inline std::string seed_trace(std::uint64_t seed) { return "seed=" + std::to_string(seed) + " (QUANTSIM_TEST_SEED)"; }

/// Index of the first element whose bits differ (NaNs of any payload compare equal), or -1.
inline std::int64_t first_bit_mismatch(const float* a, const float* b, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) {
        if (std::isnan(a[i]) && std::isnan(b[i])) continue;
        if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) return i;
    }
    return -1;
}
inline std::int64_t first_bit_mismatch(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return 0;
    return first_bit_mismatch(a.data(), b.data(), static_cast<std::int64_t>(a.size()));
}

/// Values spread over the grid of scale s and zero point zp and beyond it, with exact ties ((k + 0.5) * s),
/// grid points, zeros, values just beside ties, and outliers.
inline std::vector<float> grid_probe_data(std::size_t n, float s, std::int64_t lo, std::int64_t hi, std::mt19937_64& rng) {
    std::vector<float> x(n);
    std::uniform_int_distribution<std::int64_t> k(lo - 3, hi + 3);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::uniform_int_distribution<int> kind(0, 5);
    for (auto& v : x) {
        const float kk = static_cast<float>(k(rng));
        switch (kind(rng)) {
            case 0: v = (kk + 0.5f) * s; break;
            case 1: v = kk * s; break;
            case 2: v = std::nextafter((kk + 0.5f) * s, kk > 0 ? 1e30f : -1e30f); break;
            case 3: v = u(rng) * s * static_cast<float>(hi - lo + 8); break;
            case 4: v = u(rng) * 1e4f * s * static_cast<float>(hi - lo + 1); break;
            default: v = kk == 0 ? 0.0f : u(rng) * s; break;
        }
    }
    return x;
}

/// A quant_params with `groups` encodings on the given grid: scales spread over 3 decades, zero points anywhere on
/// the grid for asymmetric grids, 0 (or mid-grid when unsigned) for symmetric ones.
inline quant_params make_params(int bitwidth, bool is_signed, qscheme scheme, granularity g, std::int64_t groups,
                                std::mt19937_64& rng) {
    quant_params p;
    p.scale.clear();
    p.zero_point.clear();
    p.bitwidth = bitwidth;
    p.is_signed = is_signed;
    p.scheme = scheme;
    p.gran = g;
    const auto r = p.range();
    std::uniform_real_distribution<double> e(-3.0, 0.0);
    std::uniform_int_distribution<std::int64_t> z(r.qmin, r.qmax);
    for (std::int64_t i = 0; i < groups; ++i) {
        p.scale.push_back(static_cast<float>(std::pow(10.0, e(rng))));
        if (scheme == qscheme::asymmetric)
            p.zero_point.push_back(static_cast<std::int32_t>(z(rng)));
        else
            p.zero_point.push_back(is_signed ? 0 : static_cast<std::int32_t>((r.qmin + r.qmax + 1) / 2));
    }
    return p;
}

/// Number of encodings a granularity needs for a shape.
inline std::int64_t groups_for(const granularity& g, const shape_t& shape) {
    const int rank = static_cast<int>(shape.size());
    if (g.kind == granularity_kind::per_tensor) return 1;
    const auto ax = [&](int a) { return shape[static_cast<std::size_t>(a < 0 ? a + rank : a)]; };
    if (g.kind == granularity_kind::per_channel) return ax(g.axis);
    return ax(g.axis) * (ax(g.block_axis) / g.block_size);
}

}  // namespace quantsim::test
