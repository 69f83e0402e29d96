// First-order optimizers for QAT (SGD with momentum / Nesterov, Adam, AdamW) and the cosine learning-rate schedule
// with linear warmup. Formulas: docs/qat.md, "Optimizers".
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numbers>
#include <string>
#include <vector>

#include <quantsim/core/error.hpp>

namespace quantsim {

enum class optimizer_kind : std::uint8_t {
    sgd,    ///< v = mu v + g (+ wd p); p -= lr v (Nesterov: p -= lr (g + mu v)), PyTorch's SGD
    adam,   ///< L2 weight decay added to the gradient (PyTorch's Adam)
    adamw,  ///< decoupled weight decay: p -= lr wd p (PyTorch's AdamW)
};

struct optimizer_options {
    optimizer_kind kind = optimizer_kind::adam;
    double lr = 1e-4;
    double momentum = 0.9;  ///< SGD
    bool nesterov = false;  ///< SGD
    double beta1 = 0.9;     ///< Adam
    double beta2 = 0.999;   ///< Adam
    double eps = 1e-8;      ///< Adam
    double weight_decay = 0.0;

    void validate(const char* where = "optimizer_options") const {
        if (!(lr >= 0 && std::isfinite(lr))) QUANTSIM_THROW(invalid_argument, where, ": lr ", lr, " must be >= 0");
        if (!(momentum >= 0 && momentum < 1)) QUANTSIM_THROW(invalid_argument, where, ": momentum ", momentum, " is outside [0, 1)");
        if (nesterov && momentum == 0) QUANTSIM_THROW(invalid_argument, where, ": Nesterov needs momentum > 0");
        if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1))
            QUANTSIM_THROW(invalid_argument, where, ": Adam betas (", beta1, ", ", beta2, ") must lie in [0, 1)");
        if (!(eps > 0)) QUANTSIM_THROW(invalid_argument, where, ": eps ", eps, " must be > 0");
        if (!(weight_decay >= 0)) QUANTSIM_THROW(invalid_argument, where, ": weight_decay ", weight_decay, " must be >= 0");
    }
};

/// Keeps per-tensor state (momentum buffers, Adam moments) by key. Call step() once per training step, then
/// update() for every tensor.
class optimizer {
public:
    explicit optimizer(optimizer_options o = {}) : o_(o) { o_.validate(); }
    const optimizer_options& options() const noexcept { return o_; }

    /// Starts a step: Adam's bias corrections use the step count.
    void step() noexcept { ++t_; }
    std::int64_t steps() const noexcept { return t_; }

    /// p -= update(g) with learning rate `lr` (the schedule's value) and the options' weight decay unless
    /// `decay` is false (biases, BatchNormalization and quantizer parameters usually take none).
    void update(const std::string& key, float* p, const float* g, std::int64_t n, double lr, bool decay = true) {
        if (t_ == 0) QUANTSIM_THROW(invalid_argument, "optimizer::update: call step() first");
        auto& s = state_[key];
        const double wd = decay ? o_.weight_decay : 0.0;
        if (o_.kind == optimizer_kind::sgd) {
            if (o_.momentum > 0 && s.m.size() != static_cast<std::size_t>(n)) s.m.assign(static_cast<std::size_t>(n), 0.0f);
            for (std::int64_t i = 0; i < n; ++i) {
                double gi = static_cast<double>(g[i]) + wd * p[i];
                if (o_.momentum > 0) {
                    float& v = s.m[static_cast<std::size_t>(i)];
                    v = static_cast<float>(o_.momentum * v + gi);
                    gi = o_.nesterov ? gi + o_.momentum * v : v;
                }
                p[i] = static_cast<float>(p[i] - lr * gi);
            }
            return;
        }
        if (s.m.size() != static_cast<std::size_t>(n)) {
            s.m.assign(static_cast<std::size_t>(n), 0.0f);
            s.v.assign(static_cast<std::size_t>(n), 0.0f);
            s.t0 = t_ - 1;
        }
        const double t = static_cast<double>(t_ - s.t0);
        const double c1 = 1 - std::pow(o_.beta1, t), c2 = 1 - std::pow(o_.beta2, t);
        const bool decoupled = o_.kind == optimizer_kind::adamw;
        for (std::int64_t i = 0; i < n; ++i) {
            const auto k = static_cast<std::size_t>(i);
            double gi = g[i];
            if (!decoupled) gi += wd * p[i];
            s.m[k] = static_cast<float>(o_.beta1 * s.m[k] + (1 - o_.beta1) * gi);
            s.v[k] = static_cast<float>(o_.beta2 * s.v[k] + (1 - o_.beta2) * gi * gi);
            const double mh = s.m[k] / c1, vh = s.v[k] / c2;
            double pi = p[i];
            if (decoupled) pi -= lr * wd * pi;
            p[i] = static_cast<float>(pi - lr * mh / (std::sqrt(vh) + o_.eps));
        }
    }
    void reset() {
        state_.clear();
        t_ = 0;
    }

private:
    struct slot {
        std::vector<float> m, v;
        std::int64_t t0 = 0;
    };
    optimizer_options o_;
    std::map<std::string, slot> state_;
    std::int64_t t_ = 0;
};

/// Cosine decay from base_lr to min_lr over total_steps after `warmup_steps` of linear warmup from 0:
/// lr(t) = base * (t + 1) / warmup for t < warmup, then min + (base - min) * (1 + cos(pi * p)) / 2, p = progress.
inline double cosine_lr(double base_lr, std::int64_t step, std::int64_t total_steps, std::int64_t warmup_steps = 0,
                        double min_lr = 0.0) {
    if (total_steps <= 0) return base_lr;
    if (step < warmup_steps) return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    const double span = static_cast<double>(std::max<std::int64_t>(1, total_steps - warmup_steps));
    const double p = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * p));
}

}  // namespace quantsim
