// The scalar pieces of AdaRound: the rectified sigmoid h(V), the rounding regularizer, their derivatives, the
// beta schedule and one Adam step. Kept in a header so tests check them against finite differences.
#pragma once

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

namespace quantsim::detail {

inline constexpr float adaround_zeta = 1.1f;
inline constexpr float adaround_gamma = -0.1f;

inline float adaround_sigmoid(float v) noexcept { return 1.0f / (1.0f + std::exp(-v)); }

/// h(V) = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1).
inline float adaround_h(float v) noexcept {
    const float r = adaround_sigmoid(v) * (adaround_zeta - adaround_gamma) + adaround_gamma;
    return r < 0.0f ? 0.0f : (r > 1.0f ? 1.0f : r);
}

/// dh/dV (0 where the clamp is active).
inline float adaround_dh(float v) noexcept {
    const float s = adaround_sigmoid(v);
    const float r = s * (adaround_zeta - adaround_gamma) + adaround_gamma;
    return (r > 0.0f && r < 1.0f) ? (adaround_zeta - adaround_gamma) * s * (1.0f - s) : 0.0f;
}

/// V with h(V) = frac for frac in [0, 1): the initialization that starts from the FP32 weight.
inline float adaround_init_v(float frac) noexcept {
    return -std::log((adaround_zeta - adaround_gamma) / (frac - adaround_gamma) - 1.0f);
}

/// One weight's regularizer term 1 - |2h - 1|^beta (0 when h is 0 or 1, largest at h = 1/2).
inline float adaround_reg(float h, float beta) noexcept { return 1.0f - std::pow(std::fabs(2.0f * h - 1.0f), beta); }

/// d/dh of adaround_reg.
inline float adaround_dreg(float h, float beta) noexcept {
    const float t = 2.0f * h - 1.0f;
    if (t == 0.0f) return 0.0f;
    const float g = -2.0f * beta * std::pow(std::fabs(t), beta - 1.0f);
    return t > 0.0f ? g : -g;
}

/// AIMET's schedule: no regularizer for the first warm_start * iterations; after that beta is cosine-annealed
/// from beta_start to beta_end over the remaining iterations.
struct adaround_schedule {
    int iterations = 10000;
    float warm_start = 0.2f;
    float beta_start = 20.0f, beta_end = 2.0f;

    int warm_iterations() const noexcept { return static_cast<int>(warm_start * static_cast<float>(iterations)); }
    bool regularize(int it) const noexcept { return it >= warm_iterations(); }
    float beta(int it) const noexcept {
        const double warm = static_cast<double>(warm_start) * iterations;
        const double span = static_cast<double>(iterations) * (1.0 - warm_start);
        const double rel = span > 0 ? (static_cast<double>(it) - warm) / span : 1.0;
        const double r = rel < 0 ? 0 : (rel > 1 ? 1 : rel);
        return static_cast<float>(beta_end + 0.5 * (beta_start - beta_end) * (1.0 + std::cos(r * 3.14159265358979323846)));
    }
};

/// Adam (torch.optim.Adam defaults: beta1 0.9, beta2 0.999, eps 1e-8) for one parameter; `step` is 1-based.
struct adam_coefficients {
    float lr_corrected;  ///< lr / (1 - beta1^t)
    float inv_sqrt_bc2;  ///< 1 / sqrt(1 - beta2^t)
    static adam_coefficients at(float lr, int step) noexcept {
        const double bc1 = 1.0 - std::pow(0.9, step), bc2 = 1.0 - std::pow(0.999, step);
        return {static_cast<float>(lr / bc1), static_cast<float>(1.0 / std::sqrt(bc2))};
    }
};
inline void adam_update(float& v, float& m, float& s, float g, const adam_coefficients& c) noexcept {
    m = 0.9f * m + 0.1f * g;
    s = 0.999f * s + 0.001f * g * g;
    v -= c.lr_corrected * m / (std::sqrt(s) * c.inv_sqrt_bc2 + 1e-8f);
}

/// The function the reconstruction loss goes through: the activation after the layer (pre-activation loss when
/// none). Relu and Relu6 are clips; the decomposed hard-swish of ONNX exports is z * clamp(z + add, lo, hi) * mul.

enum class act_kind { none, clip, leaky_relu, hard_sigmoid, hard_swish };

struct activation_fn {
    act_kind kind = act_kind::none;
    float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
    float alpha = 0, beta = 0;  // leaky slope; hard-sigmoid slope and offset
    float add = 0, mul = 1;     // hard-swish: z * clamp(z + add, lo, hi) * mul
    std::string name = "none";

    float f(float z) const noexcept {
        switch (kind) {
            case act_kind::none: return z;
            case act_kind::clip: return std::min(std::max(z, lo), hi);
            case act_kind::leaky_relu: return z >= 0 ? z : alpha * z;
            case act_kind::hard_sigmoid: return std::min(std::max(alpha * z + beta, 0.0f), 1.0f);
            case act_kind::hard_swish: return z * std::min(std::max(z + add, lo), hi) * mul;
        }
        return z;
    }
    float df(float z) const noexcept {
        switch (kind) {
            case act_kind::none: return 1;
            case act_kind::clip: return (z > lo && z < hi) ? 1.0f : 0.0f;
            case act_kind::leaky_relu: return z >= 0 ? 1.0f : alpha;
            case act_kind::hard_sigmoid: {
                const float u = alpha * z + beta;
                return (u > 0 && u < 1) ? alpha : 0.0f;
            }
            case act_kind::hard_swish: {
                const float u = z + add;
                const float c = std::min(std::max(u, lo), hi);
                return (c + ((u > lo && u < hi) ? z : 0.0f)) * mul;
            }
        }
        return 1;
    }
};

}  // namespace quantsim::detail
