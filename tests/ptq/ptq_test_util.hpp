// Shared helpers of the PTQ pass tests: seeded random tensors, running graphs, comparing outputs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/ir/graph.hpp>

namespace ptq_test {

inline quantsim::tensor uniform(quantsim::shape_t shape, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
    quantsim::tensor t = quantsim::tensor::empty(std::move(shape));
    std::uniform_real_distribution<float> d(lo, hi);
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

inline quantsim::tensor normal(quantsim::shape_t shape, std::mt19937& rng, float mean = 0.0f, float stddev = 1.0f) {
    quantsim::tensor t = quantsim::tensor::empty(std::move(shape));
    std::normal_distribution<float> d(mean, stddev);
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

/// Output 0 of `g` on `x`, without executor fusion (the reference path).
inline quantsim::tensor run1(const quantsim::graph& g, const quantsim::tensor& x) {
    quantsim::executor_options o;
    o.fuse = false;
    quantsim::executor e(g, o);
    return e.run(std::vector<quantsim::tensor>{x})[0];
}

inline double max_abs(const quantsim::tensor& t) {
    double m = 0;
    for (float v : t.span<float>()) m = std::max(m, double(std::fabs(v)));
    return m;
}

inline double max_abs_diff(const quantsim::tensor& a, const quantsim::tensor& b) {
    if (a.shape() != b.shape()) return INFINITY;
    double m = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, double(std::fabs(a.f32()[i] - b.f32()[i])));
    return m;
}

/// Random BatchNormalization parameters for `c` channels: gamma of both signs, positive variance.
struct bn_params {
    quantsim::tensor gamma, beta, mean, var;
};
inline bn_params random_bn(std::int64_t c, std::mt19937& rng) {
    bn_params p{uniform({c}, rng, 0.5f, 1.5f), uniform({c}, rng, -1.0f, 1.0f), uniform({c}, rng, -1.0f, 1.0f),
                uniform({c}, rng, 0.5f, 2.0f)};
    std::bernoulli_distribution neg(0.25);
    for (auto& g : p.gamma.span<float>())
        if (neg(rng)) g = -g;
    return p;
}

/// Multiplies slice k of axis 0 of `w` by exp(U(-spread, spread)): channels with very different ranges.
inline void spread_channels(quantsim::tensor& w, std::mt19937& rng, float spread) {
    std::uniform_real_distribution<float> d(-spread, spread);
    const std::int64_t block = w.numel() / w.dim(0);
    for (std::int64_t k = 0; k < w.dim(0); ++k) {
        const float f = std::exp(d(rng));
        for (std::int64_t j = 0; j < block; ++j) w.f32()[k * block + j] *= f;
    }
}

}  // namespace ptq_test
