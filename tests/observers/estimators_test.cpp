// The histogram estimators: percentile quantiles, MSE/SQNR beating min-max on heavy tails and not losing on
// uniform data, entropy clipping outliers, every scheme and bit width giving a valid encoding, and the error
// model's two integration paths agreeing with each other and with sampling.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include <quantsim/quant/observers.hpp>

#include "observer_test_util.hpp"

namespace {

using namespace quantsim;

constexpr double model_paths_rel_tolerance = 1e-9;     // cells vs bins integration of the same model
constexpr double model_sampling_rel_tolerance = 2e-3;  // exact model vs 4096 samples per bin
// Quantization MSE relative to min-max's on heavy-tailed data (measured: about 0.15-0.3 at 4 bits, 0.68-0.84
// (MSE) and 0.78-0.90 (SQNR, which penalizes clipping 3x) at 8 bits).
constexpr double mse_gain_4bit = 0.5, sqnr_gain_4bit = 0.5;
constexpr double mse_gain_8bit = 0.9, sqnr_gain_8bit = 0.95;
constexpr double uniform_slack = 1.02;                // and stay within 2% of it on uniform data
constexpr double search_optimality_slack = 1.002;     // MSE search vs a dense brute-force scan
constexpr double model_vs_data_rel_tolerance = 0.03;  // modelled vs measured error on 200k Laplace samples

template <class E>
histogram_observer<E> observed(E est, const std::vector<float>& x, std::size_t bins = 2048) {
    histogram_observer<E> o(std::move(est), bins);
    o.observe(x);
    return o;
}

double empirical_quantile(std::vector<float> x, double q) {
    std::sort(x.begin(), x.end());
    const auto i =
        static_cast<std::size_t>(std::clamp(q * static_cast<double>(x.size()), 0.0, static_cast<double>(x.size() - 1)));
    return x[i];
}

TEST(PercentileEstimator, PicksTheQuantile) {
    const std::uint32_t seed = qtest::default_seed + 20;
    SCOPED_TRACE(qtest::seed_trace(seed));
    const auto u = qtest::uniform(200000, seed, 0.0f, 1.0f);
    for (double p : {90.0, 99.0, 99.9}) {
        const auto o = observed(percentile_estimator(p), u);
        const double w = o.histogram().bin_width();
        const auto r = o.compute_range(qtest::spec(8, qscheme::asymmetric));
        EXPECT_NEAR(r.max, empirical_quantile(u, p / 100), w) << "P " << p;
        EXPECT_NEAR(r.min, empirical_quantile(u, 1 - p / 100), w) << "P " << p;
        EXPECT_NEAR(r.max, p / 100, 0.002) << "P " << p;  // and the true uniform quantile
    }
    // Symmetric grids clip |x| at its P-th percentile: 95% of N(0,1) lies within 1.96.
    const auto g = qtest::normal(200000, seed + 1);
    std::vector<float> absg(g.size());
    std::transform(g.begin(), g.end(), absg.begin(), [](float v) { return std::fabs(v); });
    const auto o = observed(percentile_estimator(95.0), g);
    const auto r = o.compute_range(qtest::spec(8, qscheme::symmetric));
    const double t = std::max(-r.min, r.max);
    EXPECT_NEAR(t, empirical_quantile(absg, 0.95), o.histogram().bin_width());
    EXPECT_NEAR(t, 1.95996, 0.02);
    // 100 is the observed range, exactly.
    const auto full = observed(percentile_estimator(100.0), g).compute_range(qtest::spec(8, qscheme::asymmetric));
    EXPECT_EQ(full.min, *std::min_element(g.begin(), g.end()));
    EXPECT_EQ(full.max, *std::max_element(g.begin(), g.end()));
    for (double bad : {0.0, -1.0, 100.5, std::nan("")}) EXPECT_THROW(percentile_estimator{bad}, invalid_argument);
}

TEST(ClippingEstimators, BeatMinMaxOnHeavyTails) {
    for (std::uint32_t seed : {qtest::default_seed + 21, qtest::default_seed + 22}) {
        SCOPED_TRACE(qtest::seed_trace(seed));
        // 4 bits: Laplace with a few far outliers; 8 bits: a power-law tail (Student t, 3 dof). (A handful of
        // outliers in 100k values is not worth clipping at 8 bits: keeping them costs less than clipping.)
        for (int bits : {4, 8}) {
            const auto x = bits == 4 ? qtest::laplace_with_outliers(100000, seed) : qtest::student_t(100000, seed);
            minmax_observer mm;
            mm.observe(x);
            const auto mse = observed(mse_estimator{}, x);
            const auto sqnr = observed(sqnr_estimator{}, x);
            for (const auto& s : {qtest::spec(bits, qscheme::asymmetric), qtest::spec(bits, qscheme::symmetric)}) {
                SCOPED_TRACE(qtest::describe(s));
                const double base = qtest::qdq_mse(x, mm.compute(s));
                const double e_mse = qtest::qdq_mse(x, mse.compute(s));
                const double e_sqnr = qtest::qdq_mse(x, sqnr.compute(s));
                EXPECT_LT(e_mse, (bits == 4 ? mse_gain_4bit : mse_gain_8bit) * base);
                EXPECT_LT(e_sqnr, (bits == 4 ? sqnr_gain_4bit : sqnr_gain_8bit) * base);
                EXPECT_LE(e_mse, e_sqnr * 1.01) << "the MSE search should find the lower MSE";
            }
        }
    }
}

TEST(ClippingEstimators, NoWorseThanMinMaxOnUniform) {
    const std::uint32_t seed = qtest::default_seed + 23;
    SCOPED_TRACE(qtest::seed_trace(seed));
    const auto x = qtest::uniform(100000, seed, -2.0f, 3.0f);
    minmax_observer mm;
    mm.observe(x);
    const auto mse = observed(mse_estimator{}, x);
    const auto sqnr = observed(sqnr_estimator{}, x);
    for (int bits : {4, 8}) {
        for (const auto& s : {qtest::spec(bits, qscheme::asymmetric), qtest::spec(bits, qscheme::symmetric)}) {
            SCOPED_TRACE(qtest::describe(s));
            const double base = qtest::qdq_mse(x, mm.compute(s));
            EXPECT_LE(qtest::qdq_mse(x, mse.compute(s)), uniform_slack * base);
            EXPECT_LE(qtest::qdq_mse(x, sqnr.compute(s)), uniform_slack * base);
        }
    }
}

TEST(ClippingEstimators, MseSearchFindsTheModelOptimum) {
    const auto x = qtest::laplace_with_outliers(50000, qtest::default_seed + 24);
    const auto o = observed(mse_estimator{}, x);
    const detail::histogram_model m(o.histogram());
    for (const auto& s : {qtest::spec(8, qscheme::symmetric), qtest::spec(4, qscheme::symmetric)}) {
        SCOPED_TRACE(qtest::describe(s));
        const double found = m.error(o.compute(s)).total();
        const double absmax = std::max(-o.histogram().min(), o.histogram().max());
        double brute = std::numeric_limits<double>::infinity();
        for (int i = 1; i <= 4000; ++i) {
            const double t = absmax * i / 4000.0;
            brute = std::min(brute, m.error(encoding_from_range(-t, t, s)).total());
        }
        EXPECT_LE(found, brute * search_optimality_slack);
    }
}

TEST(EntropyEstimator, ClipsOutliers) {
    const std::uint32_t seed = qtest::default_seed + 25;
    SCOPED_TRACE(qtest::seed_trace(seed));
    auto x = qtest::normal(100000, seed);
    x[10] = 60.0f;
    x[20] = -45.0f;
    const auto o = observed(entropy_estimator{}, x);
    for (const auto& s : {qtest::spec(8, qscheme::asymmetric), qtest::spec(8, qscheme::symmetric)}) {
        SCOPED_TRACE(qtest::describe(s));
        const auto r = o.compute_range(s);
        EXPECT_LT(r.max, 15.0);
        EXPECT_GT(r.min, -15.0);
        EXPECT_GT(r.max, 3.5);  // but keeps the bulk
        EXPECT_LT(r.min, -3.5);
    }
    // Without outliers at 8 bits nothing needs clipping beyond the tails.
    const auto plain = observed(entropy_estimator{}, qtest::uniform(100000, seed, -1.0f, 1.0f));
    const auto r = plain.compute_range(qtest::spec(8, qscheme::asymmetric));
    EXPECT_LT(r.min, -0.95);
    EXPECT_GT(r.max, 0.95);
    // Where the grid is as fine as the histogram, KL cannot prefer clipping: the observed range.
    const auto wide = o.compute_range(qtest::spec(16, qscheme::asymmetric));
    EXPECT_EQ(wide.max, 60.0);
    EXPECT_EQ(wide.min, -45.0);
    EXPECT_THROW(entropy_estimator(1.0), invalid_argument);
}

TEST(HistogramEstimators, EverySchemeAndBitWidthGivesAValidEncoding) {
    const std::uint32_t seed = qtest::default_seed + 26;
    SCOPED_TRACE(qtest::seed_trace(seed));
    const std::vector<std::vector<float>> datasets = {qtest::laplace_with_outliers(5000, seed),
                                                      qtest::uniform(3000, seed, 0.5f, 4.0f),
                                                      qtest::uniform(3000, seed, -7.0f, -0.25f),
                                                      std::vector<float>(100, 1.5f),
                                                      std::vector<float>(50, 0.0f),
                                                      qtest::uniform(2000, seed, 1000.0f, 1000.5f),
                                                      qtest::normal(2000, seed, 0, 1e-20f)};
    for (std::size_t d = 0; d < datasets.size(); ++d) {
        const auto& x = datasets[d];
        const std::vector<observer> obs = {make_observer("percentile:99.5"), make_observer("mse"),
                                           make_observer("sqnr"), make_observer("entropy")};
        for (auto o : obs) {
            o.observe(x);
            for (int bits = 2; bits <= 16; bits += (bits < 8 ? 1 : 4)) {
                for (const auto& s : qtest::all_specs(bits)) {
                    SCOPED_TRACE("dataset " + std::to_string(d) + " " + o.name() + " " + qtest::describe(s));
                    const auto r = o.compute_range(s);
                    EXPECT_LE(r.min, r.max);
                    const auto e = o.compute(s);
                    EXPECT_NO_THROW(e.validate());
                    EXPECT_EQ(e.bitwidth, bits);
                    if (s.scheme != qscheme::asymmetric) {
                        EXPECT_EQ(e.zero_point, 0);
                    }
                    if (s.scheme == qscheme::strict_symmetric) {
                        EXPECT_EQ(e.scheme, qscheme::strict_symmetric);
                    }
                    const double mse = qtest::qdq_mse(x, e);
                    EXPECT_TRUE(std::isfinite(mse));
                }
            }
        }
    }
}

// The SQNR search skips candidates whose clipping term alone reaches the best cost so far; it must pick exactly
// the range the exhaustive search picks (same doubles), for every scheme, bit width and gamma.
TEST(SqnrEstimator, PrunedSearchEqualsExhaustive) {
    const std::uint32_t seed = qtest::default_seed + 27;
    SCOPED_TRACE(qtest::seed_trace(seed));
    std::vector<float> relu = qtest::normal(20000, seed + 1);
    for (auto& v : relu) v = std::max(v, 0.0f);
    const std::vector<std::vector<float>> datasets = {qtest::laplace_with_outliers(20000, seed),
                                                      qtest::student_t(20000, seed),
                                                      qtest::uniform(5000, seed, -0.3f, 4.0f),
                                                      qtest::normal(20000, seed, 2.0f, 0.5f),
                                                      relu,
                                                      std::vector<float>(100, -1.5f),
                                                      qtest::uniform(2000, seed, 1000.0f, 1000.5f)};
    for (std::size_t d = 0; d < datasets.size(); ++d) {
        for (double gamma : {0.0, 1.0, sqnr_estimator::default_gamma, 10.0}) {
            const auto pruned = observed(sqnr_estimator{gamma}, datasets[d]);
            const auto full = observed(sqnr_estimator{gamma}.exhaustive(), datasets[d]);
            for (int bits : {2, 4, 8, 16}) {
                for (const auto& s : qtest::all_specs(bits)) {
                    SCOPED_TRACE("dataset " + std::to_string(d) + " gamma " + std::to_string(gamma) + " " +
                                 qtest::describe(s));
                    const auto a = pruned.compute_range(s), b = full.compute_range(s);
                    EXPECT_EQ(a.min, b.min);
                    EXPECT_EQ(a.max, b.max);
                }
            }
        }
    }
}

TEST(HistogramEstimators, EmptyObserverCannotCompute) {
    for (auto name : {"percentile:99", "mse", "sqnr", "entropy"}) {
        auto o = make_observer(name);
        EXPECT_THROW((void)o.compute({}), calibration_error) << name;
    }
}

TEST(HistogramModel, IntegrationPathsAgree) {
    const std::uint32_t seed = qtest::default_seed + 27;
    SCOPED_TRACE(qtest::seed_trace(seed));
    for (const auto& x : {qtest::laplace_with_outliers(20000, seed), qtest::uniform(20000, seed, -1, 2),
                          qtest::normal(20000, seed, 3, 0.5f)}) {
        exact_histogram h(2048);
        h.add(x);
        const detail::histogram_model m(h);
        for (int bits : {3, 5, 8}) {
            for (double frac : {1.0, 0.3, 0.05}) {
                const auto e =
                    encoding_from_range(h.min() * frac, h.max() * frac, qtest::spec(bits, qscheme::asymmetric));
                const double p = std::max(e.min(), static_cast<double>(h.min())),
                             q = std::min(e.max(), static_cast<double>(h.max()));
                if (!(p < q)) continue;
                const double cells = m.round_by_cells(e.scale, p, q), bins = m.round_by_bins(e.scale, p, q);
                EXPECT_NEAR(cells, bins, model_paths_rel_tolerance * bins + 1e-12) << bits << " bits, frac " << frac;
                const auto exact = m.error(e), sampled = m.error_ref(e, 4096);
                EXPECT_NEAR(exact.total(), sampled.total(), model_sampling_rel_tolerance * sampled.total())
                    << bits << " bits, frac " << frac;
            }
        }
    }
}

TEST(HistogramModel, PredictsTheRealQuantizationError) {
    const std::uint32_t seed = qtest::default_seed + 28;
    SCOPED_TRACE(qtest::seed_trace(seed));
    const auto x = qtest::laplace_with_outliers(200000, seed);
    exact_histogram h(2048);
    h.add(x);
    const detail::histogram_model m(h);
    for (int bits : {4, 8, 12}) {
        for (double frac : {1.0, 0.2, 0.05}) {
            const auto e = encoding_from_range(h.min() * frac, h.max() * frac, qtest::spec(bits, qscheme::asymmetric));
            const double predicted = m.error(e).total() / static_cast<double>(x.size());
            EXPECT_NEAR(predicted, qtest::qdq_mse(x, e), model_vs_data_rel_tolerance * predicted)
                << bits << " bits, frac " << frac;
        }
    }
}

}  // namespace
