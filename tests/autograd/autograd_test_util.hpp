// Finite-difference checks for the autograd tests.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <quantsim/ir/autograd.hpp>
#include <quantsim/ir/builder.hpp>

namespace qat_test {

namespace qs = quantsim;

constexpr double fd_step = 1e-3;      // central-difference step (float32 forward)
constexpr double fd_abs_tol = 4e-3;   // absolute agreement of analytic and numeric derivatives
constexpr double fd_rel_tol = 3e-2;   // relative agreement (of the larger magnitude)
constexpr int fd_samples = 10;        // elements checked per tensor

inline qs::tensor random_tensor(qs::shape_t shape, std::mt19937& rng, float scale = 1.0f, float offset = 0.0f) {
    qs::tensor t = qs::tensor::empty(std::move(shape));
    std::normal_distribution<float> d(0.0f, scale);
    for (auto& v : t.span<float>()) v = d(rng) + offset;
    return t;
}

/// Values with |v| >= margin (away from the kinks of Relu/Clip at 0).
inline qs::tensor away_from(qs::shape_t shape, std::mt19937& rng, float margin, float scale = 1.0f) {
    qs::tensor t = random_tensor(std::move(shape), rng, scale);
    for (auto& v : t.span<float>())
        if (std::abs(v) < margin) v = v < 0 ? v - margin : v + margin;
    return t;
}

/// L = sum_o <R_o, y_o> over the model outputs, R fixed random projections.
struct fd_checker {
    qs::autograd_tape& tape;
    std::map<std::string, qs::tensor> feeds;
    std::map<std::string, qs::tensor> proj;

    double loss() {
        auto out = tape.forward(feeds);
        double l = 0;
        for (auto& [name, y] : out) {
            const qs::tensor& r = proj.at(name);
            for (std::int64_t i = 0; i < y.numel(); ++i) l += static_cast<double>(r.f32()[i]) * y.f32()[i];
        }
        return l;
    }

    /// Checks d L / d wrt (parameters or model inputs) on sampled elements.
    void check(const std::vector<std::string>& wrt, std::mt19937& rng, double step = fd_step) {
        auto out = tape.forward(feeds);
        if (proj.empty())
            for (auto& [name, y] : out) proj[name] = random_tensor(y.shape(), rng);
        auto grads = tape.backward(proj, wrt);
        for (const auto& w : wrt) {
            SCOPED_TRACE("wrt " + w);
            const bool is_input = feeds.count(w) != 0;
            qs::tensor base = (is_input ? feeds.at(w) : tape.param(w)).clone();
            const qs::tensor& g = grads.at(w);
            ASSERT_EQ(g.shape(), base.shape());
            std::uniform_int_distribution<std::int64_t> pick(0, base.numel() - 1);
            const int samples = static_cast<int>(std::min<std::int64_t>(fd_samples, base.numel()));
            for (int s = 0; s < samples; ++s) {
                const std::int64_t i = base.numel() <= fd_samples ? s : pick(rng);
                const auto eval = [&](double delta) {
                    qs::tensor t = base.clone();
                    t.f32()[i] = static_cast<float>(base.f32()[i] + delta);
                    if (is_input)
                        feeds[w] = t;
                    else
                        tape.set_param(w, t);
                    return loss();
                };
                const double lp = eval(step), lm = eval(-step);
                const double fd = (lp - lm) / (2 * step);
                const double an = g.f32()[i];
                EXPECT_NEAR(an, fd, fd_abs_tol + fd_rel_tol * std::max(std::abs(an), std::abs(fd)))
                    << "element " << i;
            }
            if (is_input)
                feeds[w] = base;
            else
                tape.set_param(w, base);
        }
    }
};

}  // namespace qat_test
