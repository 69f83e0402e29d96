// Properties of fake quantization that hold for any data: error bounds, idempotence, exact zero, symmetry,
// unbiased and thread-independent stochastic rounding, the NaN/Inf policy, per-channel == per-tensor per slice.
#include <cmath>
#include <cstring>

#include "quant_test_util.hpp"

namespace quantsim::test {
namespace {

/// Float slack on the error bounds: x / s and (r * s) are each rounded once.
constexpr double bound_slack_ulps = 4.0;
/// Stochastic-rounding mean test: allowed deviation in standard deviations of the sample mean (a false failure has
/// probability below 1e-8 per value; the stream is seeded, so the test is deterministic anyway).
constexpr double mean_sigmas = 6.0;

double ulp(float v) { return std::nextafter(std::fabs(v), INFINITY) - std::fabs(v); }

TEST(quant_properties, error_is_within_half_a_step_inside_the_grid) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (int bits : {2, 4, 8, 16}) {
        for (auto mode : {rounding_mode::nearest_even, rounding_mode::nearest_away, rounding_mode::floor,
                          rounding_mode::ceil, rounding_mode::stochastic}) {
            const quant_params p = make_params(bits, false, qscheme::asymmetric, granularity::per_tensor(), 1, rng);
            const float s = p.scale[0];
            const auto r = p.range();
            const double lo = static_cast<double>(r.qmin - p.zero_point[0]) * s;
            const double hi = static_cast<double>(r.qmax - p.zero_point[0]) * s;
            std::uniform_real_distribution<double> u(lo, hi);
            std::vector<float> x(20000), y(x.size());
            for (auto& v : x) v = static_cast<float>(u(rng));
            quant_options o;
            o.rounding = mode;
            o.seed = rng();
            fake_quant(x, y, p.at(0), o);
            const bool nearest = mode == rounding_mode::nearest_even || mode == rounding_mode::nearest_away;
            const double step_fraction = nearest ? 0.5 : 1.0;
            SCOPED_TRACE(std::string(name_of(mode)) + " bits " + std::to_string(bits));
            for (std::size_t i = 0; i < x.size(); ++i) {
                const double err = std::fabs(static_cast<double>(x[i]) - y[i]);
                ASSERT_LE(err, step_fraction * s + bound_slack_ulps * (ulp(x[i]) + ulp(s))) << "x=" << x[i];
                if (mode == rounding_mode::floor) {
                    ASSERT_LE(y[i], x[i] + bound_slack_ulps * ulp(x[i]));
                }
                if (mode == rounding_mode::ceil) {
                    ASSERT_GE(y[i], x[i] - bound_slack_ulps * ulp(x[i]));
                }
            }
        }
    }
}

TEST(quant_properties, nearest_rounding_is_idempotent) {
    // fq(fq(x)) == fq(x): x' = r * s divides back to within an ulp of the integer r, which nearest rounding
    // restores. (floor / ceil / stochastic are not idempotent in float arithmetic: r * s / s may land just below r.)
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (int bits : {2, 4, 8, 16})
        for (auto mode : {rounding_mode::nearest_even, rounding_mode::nearest_away})
            for (auto arith : {scale_arithmetic::divide, scale_arithmetic::multiply_reciprocal}) {
                const shape_t shape{13, 97};
                const granularity g = granularity::per_channel(0);
                const quant_params p = make_params(bits, true, qscheme::asymmetric, g, 13, rng);
                const auto r = p.range();
                const auto x = grid_probe_data(13 * 97, p.scale[0], r.qmin - p.zero_point[0], r.qmax - p.zero_point[0], rng);
                quant_options o;
                o.rounding = mode;
                o.arithmetic = arith;
                std::vector<float> once(x.size()), twice(x.size());
                fake_quant(x, once, shape, p, o);
                fake_quant(once, twice, shape, p, o);
                EXPECT_EQ(first_bit_mismatch(once, twice), -1) << name_of(mode) << " " << name_of(arith) << " " << bits;
            }
}

TEST(quant_properties, zero_is_exact_and_never_negative) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (int bits : {2, 3, 8, 16, 32})
        for (bool is_signed : {false, true})
            for (auto scheme : {qscheme::asymmetric, qscheme::symmetric, qscheme::strict_symmetric})
                for (auto mode : {rounding_mode::nearest_even, rounding_mode::nearest_away, rounding_mode::floor,
                                  rounding_mode::ceil, rounding_mode::stochastic}) {
                    if (bits == 32 && !is_signed) continue;
                    const quant_params p = make_params(bits, is_signed, scheme, granularity::per_tensor(), 1, rng);
                    std::vector<float> x{0.0f, -0.0f, 0.0f, -0.0f}, y(4);
                    quant_options o;
                    o.rounding = mode;
                    o.seed = rng();
                    fake_quant(x, y, p.at(0), o);
                    for (float v : y) EXPECT_EQ(std::bit_cast<std::uint32_t>(v), 0u) << "bits " << bits;
                    // Small negative values that round to zero give +0 as well (as torch: (q - zp) * s).
                    std::vector<float> tiny{-0.1f * p.scale[0], -0.4f * p.scale[0]}, ty(2);
                    fake_quant(tiny, ty, p.at(0), quant_options::onnx());
                    for (float v : ty) EXPECT_EQ(std::bit_cast<std::uint32_t>(v), 0u);
                }
}

TEST(quant_properties, symmetric_grids_are_symmetric) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    for (int bits : {2, 4, 8, 16}) {
        for (auto scheme : {qscheme::symmetric, qscheme::strict_symmetric}) {
            quant_spec spec;
            spec.bitwidth = bits;
            spec.scheme = scheme;
            const encoding e = encoding_from_range(-1.7, 0.9, spec);
            ASSERT_EQ(e.zero_point, 0);
            if (scheme == qscheme::strict_symmetric) {
                EXPECT_EQ(e.qmin(), -e.qmax());
                EXPECT_DOUBLE_EQ(e.min(), -e.max());
            } else {
                EXPECT_EQ(e.qmin(), -e.qmax() - 1);  // the one extra negative level
            }
            std::uniform_real_distribution<float> u(-3.0f, 3.0f);
            std::vector<float> x(4000), neg(x.size()), fx(x.size()), fneg(x.size());
            for (std::size_t i = 0; i < x.size(); ++i) x[i] = u(rng), neg[i] = -x[i];
            for (auto mode : {rounding_mode::nearest_even, rounding_mode::nearest_away}) {
                quant_options o;
                o.rounding = mode;
                fake_quant(x, fx, e, o);
                fake_quant(neg, fneg, e, o);
                const double inner = static_cast<double>(e.qmax()) * e.scale;
                for (std::size_t i = 0; i < x.size(); ++i) {
                    // Strict grids are symmetric everywhere; the extra level only matters beyond qmax * s.
                    if (scheme == qscheme::symmetric && std::fabs(x[i]) > inner) continue;
                    ASSERT_EQ(fneg[i], -fx[i]) << "x=" << x[i] << " " << name_of(mode);
                }
            }
            // The floor/ceil pair mirrors too: floor(-v) = -ceil(v).
            quant_options fl, ce;
            fl.rounding = rounding_mode::floor;
            ce.rounding = rounding_mode::ceil;
            fake_quant(x, fx, e, ce);
            fake_quant(neg, fneg, e, fl);
            for (std::size_t i = 0; i < x.size(); ++i) {
                if (scheme == qscheme::strict_symmetric) {
                    ASSERT_EQ(fneg[i], -fx[i]);
                }
            }
        }
    }
}

TEST(quant_properties, stochastic_rounding_is_unbiased) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    const float s = 0.25f;  // power of two: x / s is exact, so the fraction is exactly known
    encoding e{s, 0, 8, true, qscheme::symmetric};
    const std::size_t n = 200000;
    for (double frac : {0.0, 0.03125, 0.25, 0.5, 0.71875, 0.96875}) {
        for (double k : {-7.0, 0.0, 12.0}) {
            const double v = k + frac;
            std::vector<float> x(n, static_cast<float>(v * s)), y(n);
            quant_options o;
            o.rounding = rounding_mode::stochastic;
            o.seed = seed + static_cast<std::uint64_t>(frac * 1e6);
            fake_quant(x, y, e, o);
            double sum = 0;
            for (float q : y) {
                const double r = q / s;
                ASSERT_TRUE(r == std::floor(v) || r == std::floor(v) + 1) << r;
                sum += r;
            }
            const double mean = sum / static_cast<double>(n);
            const double sigma = std::sqrt(frac * (1 - frac) / static_cast<double>(n));
            EXPECT_LE(std::fabs(mean - v), mean_sigmas * sigma + 1e-7) << "v=" << v;
            if (frac == 0.0) {
                EXPECT_EQ(mean, v);  // exact grid points never move
            }
        }
    }
}

TEST(quant_properties, stochastic_rounding_is_reproducible_and_thread_independent) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    const shape_t shape{512, 300};
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    std::vector<float> x(512 * 300);
    for (auto& v : x) v = u(rng);
    const quant_params p = make_params(4, true, qscheme::asymmetric, granularity::per_channel(1), 300, rng);
    quant_options o;
    o.rounding = rounding_mode::stochastic;
    o.seed = 42;
    std::vector<float> a(x.size()), b(x.size()), c(x.size()), d(x.size());
    fake_quant(x, a, shape, p, quant_options(o).with_threads(1));
    fake_quant(x, b, shape, p, quant_options(o).with_threads(2));
    fake_quant(x, c, shape, p, quant_options(o).with_threads(2));
    EXPECT_EQ(first_bit_mismatch(a, b), -1);
    EXPECT_EQ(first_bit_mismatch(b, c), -1);
    fake_quant(x, d, shape, p, quant_options(o).with_seed(43));
    std::size_t differ = 0;
    for (std::size_t i = 0; i < x.size(); ++i) differ += a[i] != d[i];
    EXPECT_GT(differ, x.size() / 10) << "another seed must give another stream";
}

TEST(quant_properties, nan_propagates_and_infinities_saturate) {
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const encoding e{0.1f, 3, 8, false, qscheme::asymmetric};  // grid -0.3 .. 25.2
    std::vector<float> x{nan, inf, -inf, 1e38f, -1e38f, 1.0f}, y(x.size());
    for (auto mode : {rounding_mode::nearest_even, rounding_mode::nearest_away, rounding_mode::floor,
                      rounding_mode::ceil, rounding_mode::stochastic})
        for (auto arith : {scale_arithmetic::divide, scale_arithmetic::multiply_reciprocal}) {
            quant_options o;
            o.rounding = mode;
            o.arithmetic = arith;
            fake_quant(x, y, e, o);
            EXPECT_TRUE(std::isnan(y[0])) << name_of(mode);
            EXPECT_EQ(y[1], static_cast<float>((255 - 3) * 0.1f));
            EXPECT_EQ(y[2], static_cast<float>(-3 * 0.1f));
            EXPECT_EQ(y[3], y[1]);
            EXPECT_EQ(y[4], y[2]);
        }
    // Quantize: infinities saturate, NaN is an error naming the element.
    std::vector<std::uint8_t> q(3);
    std::vector<float> xi{inf, -inf, 2.0f};
    quantize<std::uint8_t>(xi, q, shape_t{3}, quant_params::per_tensor(e));
    EXPECT_EQ(q[0], 255);
    EXPECT_EQ(q[1], 0);
    EXPECT_EQ(q[2], 23);
    std::vector<float> xn(12, 1.0f);
    xn[7] = nan;
    std::vector<std::uint8_t> qn(12);
    try {
        quantize<std::uint8_t>(xn, qn, shape_t{3, 4}, quant_params::per_tensor(e));
        FAIL() << "NaN must not quantize";
    } catch (const numeric_error& err) {
        EXPECT_NE(std::string(err.what()).find("element 7 (index [1, 3])"), std::string::npos) << err.what();
    }
    // NaN in a 32-bit (double path) fake-quant propagates too.
    std::vector<float> x32{nan, 1.5f}, y32(2);
    fake_quant(x32, y32, encoding{0.5f, 0, 32, true, qscheme::symmetric});
    EXPECT_TRUE(std::isnan(y32[0]));
    EXPECT_EQ(y32[1], 1.5f);
}

TEST(quant_properties, per_channel_equals_per_tensor_on_each_slice) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    const shape_t shape{3, 4, 5};
    std::vector<float> x(60);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& v : x) v = nd(rng);
    for (int axis = 0; axis < 3; ++axis) {
        const quant_params p = make_params(4, false, qscheme::asymmetric, granularity::per_channel(axis),
                                           shape[static_cast<std::size_t>(axis)], rng);
        std::vector<float> y(60);
        fake_quant(x, y, shape, p);
        for (std::int64_t i = 0; i < 60; ++i) {
            const std::int64_t idx[3] = {i / 20, (i / 5) % 4, i % 5};
            float want;
            fake_quant(std::span<const float>(&x[static_cast<std::size_t>(i)], 1), std::span<float>(&want, 1),
                       p.at(static_cast<std::size_t>(idx[axis])));
            ASSERT_EQ(y[static_cast<std::size_t>(i)], want) << "axis " << axis << " element " << i;
        }
    }
    // Per-block along axis 1 with block 2 == per-channel over [3, 2 blocks] groups.
    quant_params pb = make_params(8, true, qscheme::symmetric, granularity::per_block(0, 1, 2), 6, rng);
    std::vector<float> yb(60);
    fake_quant(x, yb, shape, pb);
    for (std::int64_t i = 0; i < 60; ++i) {
        const std::int64_t c = i / 20, block = ((i / 5) % 4) / 2;
        float want;
        fake_quant(std::span<const float>(&x[static_cast<std::size_t>(i)], 1), std::span<float>(&want, 1),
                   pb.at(static_cast<std::size_t>(c * 2 + block)));
        ASSERT_EQ(yb[static_cast<std::size_t>(i)], want) << "element " << i;
    }
}

TEST(quant_properties, empty_and_scalar_tensors) {
    const encoding e{0.5f, 0, 8, true, qscheme::symmetric};
    tensor empty = tensor::empty({0, 4});
    EXPECT_EQ(fake_quant(empty, e).numel(), 0);
    fake_quant_(empty, e);
    quant_params pc = quant_params::per_tensor(e);
    pc.scale.assign(4, 0.5f), pc.zero_point.assign(4, 0), pc.gran = granularity::per_channel(1);
    EXPECT_EQ(fake_quant(empty, pc).shape(), (shape_t{0, 4}));
    EXPECT_EQ(quantize(empty, pc).type(), dtype::int8);
    EXPECT_EQ(dequantize(quantize(empty, pc), pc).numel(), 0);
    tensor s = tensor::scalar(1.3f);
    EXPECT_EQ(fake_quant(s, e).f32()[0], 1.5f);
    EXPECT_EQ(quantize(s, e).data<std::int8_t>()[0], 3);
}

TEST(quant_properties, tensor_api_matches_span_api_and_views_write_through) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    tensor x = tensor::empty({6, 10});
    for (auto& v : x.span<float>()) v = nd(rng);
    const quant_params p = make_params(4, true, qscheme::symmetric, granularity::per_channel(0), 6, rng);
    std::vector<float> want(60);
    fake_quant(x.span<float>(), want, x.shape(), p);
    tensor y = fake_quant(x, p);
    EXPECT_EQ(first_bit_mismatch(want.data(), y.f32(), 60), -1);
    // quantize -> dequantize round trip == fake_quant; storage picked from the grid.
    tensor q = quantize(x, p);
    EXPECT_EQ(q.type(), dtype::int4);
    EXPECT_EQ(first_bit_mismatch(want.data(), dequantize(q, p).f32(), 60), -1);
    // In place on a slice view: rows 2..4 only, with the per-channel parameters of those rows.
    tensor z = x.clone();
    tensor rows = z.slice(2, 4);
    quant_params p2 = p;
    p2.scale = {p.scale[2], p.scale[3]};
    p2.zero_point = {p.zero_point[2], p.zero_point[3]};
    fake_quant_(rows, p2);
    for (std::int64_t i = 0; i < 60; ++i) {
        const bool inside = i >= 20 && i < 40;
        EXPECT_EQ(z.f32()[i], inside ? want[static_cast<std::size_t>(i)] : x.f32()[i]) << i;
    }
}

}  // namespace
}  // namespace quantsim::test
