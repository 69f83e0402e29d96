// QAT gradients checked by central finite differences of the straight-through surrogate: every round() replaced by
// its argument plus the rounding offset frozen at the base point (round(v) ~ v + (round(v0) - v0)), which is what
// "differentiate as if round were the identity" means. Inputs are kept away from rounding and clamping
// discontinuities so the surrogate is smooth at the base point.
#include <cmath>

#include "quant_test_util.hpp"

namespace quantsim::test {
namespace {

/// Relative tolerance of analytic vs finite-difference gradients (double surrogate, float parameters).
constexpr double fd_rel_tol = 2e-3;
constexpr double fd_abs_tol = 1e-4;
constexpr double fd_step = 1e-4;  ///< relative step for central differences

bool close(double analytic, double numeric) {
    return std::fabs(analytic - numeric) <= fd_abs_tol + fd_rel_tol * std::max(std::fabs(analytic), std::fabs(numeric));
}

/// Random data for one group with scale s and grid lo..hi (relative to the zero point): mostly inside, some
/// outside, none near a rounding tie or rounding onto a grid end (in units of v = x / s).
std::vector<float> smooth_data(std::size_t n, double s, double lo, double hi, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> u(lo - 6, hi + 6);
    std::vector<float> x;
    while (x.size() < n) {
        const double v = u(rng);
        const double frac = v - std::floor(v);
        if (std::fabs(frac - 0.5) < 0.05) continue;                      // near a tie
        // Rounding to a grid end puts the surrogate exactly on its clamp kink (one-sided derivative): keep clear.
        if (std::fabs(v - lo) < 0.6 || std::fabs(v - hi) < 0.6) continue;
        x.push_back(static_cast<float>(v * s));
    }
    return x;
}

/// sum(g * surrogate_fq(x; s, zp)) for one group, with frozen rounding offsets d_i (round(x/s0) - x/s0).
double lsq_surrogate(const std::vector<float>& x, const std::vector<float>& g, const std::vector<double>& d, double s,
                     double zp, double qmin, double qmax) {
    double total = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double v = static_cast<double>(x[i]) / s + d[i];
        total += g[i] * std::clamp(v, qmin - zp, qmax - zp) * s;
    }
    return total;
}

TEST(quant_gradients, lsq_scale_and_zero_point_match_finite_differences) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int bits : {2, 4, 8})
        for (bool per_channel : {false, true}) {
            const std::int64_t channels = per_channel ? 3 : 1, per = 400;
            // Channel axis 1 of [per, channels] for per-channel (interleaved groups).
            const shape_t shape = per_channel ? shape_t{per, channels} : shape_t{per};
            quant_params p = make_params(bits, false, qscheme::asymmetric,
                                         per_channel ? granularity::per_channel(1) : granularity::per_tensor(), channels, rng);
            for (auto& z : p.zero_point) z = static_cast<std::int32_t>(p.range().qmax / 3);
            const auto r = p.range();
            tensor x = tensor::empty(shape), g = tensor::empty(shape);
            std::vector<std::vector<float>> xs(static_cast<std::size_t>(channels)), gs(xs.size());
            for (std::int64_t c = 0; c < channels; ++c) {
                const double s = p.scale[static_cast<std::size_t>(c)], zp = p.zero_point[static_cast<std::size_t>(c)];
                xs[static_cast<std::size_t>(c)] = smooth_data(static_cast<std::size_t>(per), s, r.qmin - zp, r.qmax - zp, rng);
                for (std::int64_t i = 0; i < per; ++i) {
                    x.f32()[i * channels + c] = xs[static_cast<std::size_t>(c)][static_cast<std::size_t>(i)];
                    const float gi = nd(rng);
                    g.f32()[i * channels + c] = gi;
                    gs[static_cast<std::size_t>(c)].push_back(gi);
                }
            }
            for (bool scaling : {false, true}) {
                const lsq_gradients lg = lsq_grad(x, g, p, lsq_options{scaling});
                const double factor = scaling ? 1.0 / std::sqrt(static_cast<double>(per) * static_cast<double>(r.qmax)) : 1.0;
                EXPECT_DOUBLE_EQ(lg.grad_factor, factor);
                for (std::int64_t c = 0; c < channels; ++c) {
                    const auto k = static_cast<std::size_t>(c);
                    const double s0 = p.scale[k], z0 = p.zero_point[k];
                    std::vector<double> d(xs[k].size());
                    for (std::size_t i = 0; i < d.size(); ++i) {
                        const double v = static_cast<double>(static_cast<float>(xs[k][i] / static_cast<float>(s0)));
                        d[i] = std::nearbyint(v) - static_cast<double>(xs[k][i]) / s0;
                    }
                    const double hs = s0 * fd_step, hz = 1e-3;
                    const double ds = (lsq_surrogate(xs[k], gs[k], d, s0 + hs, z0, r.qmin, r.qmax) -
                                       lsq_surrogate(xs[k], gs[k], d, s0 - hs, z0, r.qmin, r.qmax)) / (2 * hs);
                    const double dz = (lsq_surrogate(xs[k], gs[k], d, s0, z0 + hz, r.qmin, r.qmax) -
                                       lsq_surrogate(xs[k], gs[k], d, s0, z0 - hz, r.qmin, r.qmax)) / (2 * hz);
                    SCOPED_TRACE("bits " + std::to_string(bits) + " channel " + std::to_string(c));
                    EXPECT_PRED2(close, lg.grad_scale[k], ds * factor);
                    EXPECT_PRED2(close, lg.grad_zero_point[k], dz * factor);
                    EXPECT_NE(dz, 0.0) << "some elements must be clamped";
                }
                // STE input gradient: g inside the grid, 0 outside; equals the surrogate's d/dx (1 or 0).
                const tensor ste = ste_grad(x, g, p);
                for (std::int64_t i = 0; i < x.numel(); ++i) {
                    EXPECT_EQ(lg.grad_input.f32()[i], ste.f32()[i]);
                    const auto k = static_cast<std::size_t>(per_channel ? i % channels : 0);
                    const double v = x.f32()[i] / p.scale[k];
                    const bool inside = std::nearbyint(v) + p.zero_point[k] >= r.qmin &&
                                        std::nearbyint(v) + p.zero_point[k] <= r.qmax;
                    EXPECT_EQ(ste.f32()[i], inside ? g.f32()[i] : 0.0f);
                }
            }
        }
}

/// AIMET asymmetric learned grid, surrogate: s = (max - min) / n, zp = -min / s + c (frozen offset rounding).
double range_surrogate(const std::vector<float>& x, const std::vector<float>& g, const std::vector<double>& d,
                       double mn, double mx, double n, double c_zp, bool symmetric) {
    double s, zp, qmin, qmax;
    if (symmetric) {
        s = mx / std::floor(n / 2);
        zp = 0;
        qmin = -std::ceil(n / 2);
        qmax = std::floor(n / 2);
    } else {
        s = (mx - mn) / n;
        zp = -mn / s + c_zp;
        qmin = 0;
        qmax = n;
    }
    double total = 0;
    for (std::size_t i = 0; i < x.size(); ++i)
        total += g[i] * std::clamp(static_cast<double>(x[i]) / s + d[i], qmin - zp, qmax - zp) * s;
    return total;
}

TEST(quant_gradients, aimet_range_learning_matches_finite_differences) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int bits : {3, 8})
        for (auto scheme : {qscheme::asymmetric, qscheme::symmetric})
            for (bool per_channel : {false, true}) {
                const std::int64_t channels = per_channel ? 4 : 1, per = 300;
                learned_range lr;
                lr.bitwidth = bits;
                lr.scheme = scheme;
                lr.gran = per_channel ? granularity::per_channel(0) : granularity::per_tensor();
                lr.min.clear(), lr.max.clear();
                std::uniform_real_distribution<float> umin(-2.0f, -0.5f), umax(0.5f, 3.0f);
                for (std::int64_t c = 0; c < channels; ++c) lr.min.push_back(umin(rng)), lr.max.push_back(umax(rng));
                const quant_params p = lr.params();
                const auto r = p.range();
                const shape_t shape = per_channel ? shape_t{channels, per} : shape_t{per};
                tensor x = tensor::empty(shape), g = tensor::empty(shape);
                for (std::int64_t c = 0; c < channels; ++c) {
                    const auto k = static_cast<std::size_t>(c);
                    const auto xs = smooth_data(static_cast<std::size_t>(per), p.scale[k], r.qmin - p.zero_point[k],
                                                r.qmax - p.zero_point[k], rng);
                    for (std::int64_t i = 0; i < per; ++i) {
                        x.f32()[c * per + i] = xs[static_cast<std::size_t>(i)];
                        g.f32()[c * per + i] = nd(rng);
                    }
                }
                const range_gradients rg = range_learning_grad(x, g, lr);
                const bool sym = scheme != qscheme::asymmetric;
                const double n = static_cast<double>((std::int64_t{1} << bits) - 1);
                for (std::int64_t c = 0; c < channels; ++c) {
                    const auto k = static_cast<std::size_t>(c);
                    std::vector<float> xs(x.f32() + c * per, x.f32() + (c + 1) * per), gs(g.f32() + c * per, g.f32() + (c + 1) * per);
                    const double s0 = p.scale[k];
                    std::vector<double> d(xs.size());
                    for (std::size_t i = 0; i < d.size(); ++i) {
                        const double v = static_cast<double>(xs[i] / static_cast<float>(s0));
                        d[i] = std::nearbyint(v) - static_cast<double>(xs[i]) / s0;
                    }
                    const double mn = lr.min[k], mx = lr.max[k];
                    const double c_zp = sym ? 0.0 : p.zero_point[k] - (-mn / s0);
                    const double h = fd_step * (mx - mn);
                    const double dmin = (range_surrogate(xs, gs, d, mn + h, mx, n, c_zp, sym) -
                                         range_surrogate(xs, gs, d, mn - h, mx, n, c_zp, sym)) / (2 * h);
                    const double dmax = (range_surrogate(xs, gs, d, mn, mx + h, n, c_zp, sym) -
                                         range_surrogate(xs, gs, d, mn, mx - h, n, c_zp, sym)) / (2 * h);
                    SCOPED_TRACE(std::string(name_of(scheme)) + " bits " + std::to_string(bits) + " channel " +
                                 std::to_string(c));
                    EXPECT_PRED2(close, rg.grad_max[k], dmax);
                    if (sym) {
                        EXPECT_EQ(rg.grad_min[k], -rg.grad_max[k]);  // AIMET ties min to -max
                    } else {
                        EXPECT_PRED2(close, rg.grad_min[k], dmin);
                    }
                }
                // The forward of the learned range is fake_quant with its params; its input gradient is the STE.
                const tensor ste = ste_grad(x, g, p);
                EXPECT_EQ(first_bit_mismatch(ste.f32(), rg.grad_input.f32(), x.numel()), -1);
            }
}

TEST(quant_gradients, sums_do_not_depend_on_thread_count) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 2.0f);
    tensor x = tensor::empty({1000, 130}), g = tensor::empty({1000, 130});
    for (std::int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = nd(rng), g.f32()[i] = nd(rng);
    for (const auto& gran : {granularity::per_tensor(), granularity::per_channel(1)}) {
        const quant_params p = make_params(4, true, qscheme::symmetric, gran, gran.kind == granularity_kind::per_tensor ? 1 : 130, rng);
        const auto a = lsq_grad(x, g, p, {}, quant_options{}.with_threads(1));
        const auto b = lsq_grad(x, g, p, {}, quant_options{}.with_threads(2));
        EXPECT_EQ(a.grad_scale, b.grad_scale);
        EXPECT_EQ(a.grad_zero_point, b.grad_zero_point);
        EXPECT_EQ(first_bit_mismatch(a.grad_input.f32(), b.grad_input.f32(), x.numel()), -1);
    }
}

// The vector path (one-group runs, nearest-even) against the reference loop: the same input gradient bit for bit and
// the same sums up to summation order, on exact ties and their neighbours, grid ends, huge values (|x / s| >= 2^22),
// infinities, and a NaN in one channel (that run falls back to the reference).
TEST(quant_gradients, vector_path_matches_the_reference_loop) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    constexpr double sum_rel_tol = 1e-12;  // double sums of exact float products, different order
    const std::int64_t rows = 7, cols = 1000;
    for (const auto& gran : {granularity::per_tensor(), granularity::per_channel(0)}) {
        for (const auto arith : {scale_arithmetic::divide, scale_arithmetic::multiply_reciprocal}) {
            for (const bool with_nan : {false, true}) {
                const quant_params p =
                    make_params(4, true, qscheme::asymmetric, gran, gran.kind == granularity_kind::per_tensor ? 1 : rows, rng);
                tensor x = tensor::empty({rows, cols}), g = tensor::empty({rows, cols});
                for (std::int64_t i = 0; i < x.numel(); ++i) {
                    const float s = p.scale[p.size() == 1 ? 0 : static_cast<std::size_t>(i / cols)];
                    const std::int64_t kind = i % 10;
                    float v = nd(rng) * 4;
                    if (kind == 1) v = std::round(v) + 0.5f;                                   // exact tie
                    if (kind == 2) v = std::nextafter(std::round(v) + 0.5f, 100.0f);           // just above a tie
                    if (kind == 3) v = static_cast<float>(p.zero_point.front() % 3) + 7.5f;    // near the top end
                    if (kind == 4 && i % 70 == 4) v = (i % 140 == 4 ? 1 : -1) * 0x1.8p22f;     // beyond 2^22
                    x.f32()[i] = v * s;
                    g.f32()[i] = nd(rng);
                }
                x.f32()[13] = std::numeric_limits<float>::infinity();
                x.f32()[27] = -std::numeric_limits<float>::infinity();
                if (with_nan) x.f32()[cols * 3 + 5] = std::numeric_limits<float>::quiet_NaN();
                quant_options o;
                o.arithmetic = arith;
                const resolved_granularity rg = check_quant_params(p, x.shape(), "test");
                std::vector<float> dx_fast(static_cast<std::size_t>(x.numel())), dx_ref(dx_fast.size());
                detail::backward_sums fast, ref;
                detail::fq_backward_impl<float, true>(x.f32(), g.f32(), dx_fast.data(), x.numel(), x.shape(), rg, p, o, &fast);
                detail::fq_backward_impl<float, false>(x.f32(), g.f32(), dx_ref.data(), x.numel(), x.shape(), rg, p, o, &ref);
                EXPECT_EQ(first_bit_mismatch(dx_fast.data(), dx_ref.data(), x.numel()), -1);
                ASSERT_EQ(fast.scale.size(), ref.scale.size());
                for (std::size_t k = 0; k < ref.scale.size(); ++k) {
                    if (std::isnan(ref.scale[k])) {
                        EXPECT_TRUE(std::isnan(fast.scale[k])) << k;
                        continue;
                    }
                    EXPECT_NEAR(fast.scale[k], ref.scale[k], sum_rel_tol * (1 + std::fabs(ref.scale[k]))) << k;
                    EXPECT_NEAR(fast.offset[k], ref.offset[k], sum_rel_tol * (1 + std::fabs(ref.offset[k]))) << k;
                }
            }
        }
    }
}

TEST(quant_gradients, nan_inputs_propagate) {
    tensor x = tensor::from({1.0f, std::numeric_limits<float>::quiet_NaN(), 0.5f}, {3});
    tensor g = tensor::full({3}, 1.0f);
    const quant_params p = quant_params::per_tensor({0.1f, 0, 8, true, qscheme::symmetric});
    const auto r = lsq_grad(x, g, p);
    EXPECT_TRUE(std::isnan(r.grad_input.f32()[1]));
    EXPECT_EQ(r.grad_input.f32()[0], 1.0f);
    EXPECT_TRUE(std::isnan(r.grad_scale[0]));
}

}  // namespace
}  // namespace quantsim::test
