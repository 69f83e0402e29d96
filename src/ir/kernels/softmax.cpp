#include <quantsim/ir/kernels/softmax.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <quantsim/ir/kernels/math.hpp>
#include <quantsim/ir/kernels/parallel.hpp>

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

namespace quantsim {

namespace {
// One contiguous row (inner == 1): max, exp and sum in vectorizable passes.
void softmax_row(const float* QUANTSIM_RESTRICT x, float* QUANTSIM_RESTRICT y, std::int64_t n, bool log) {
    const float m = detail::max_of(x, n);
    for (std::int64_t i = 0; i < n; ++i) y[i] = detail::fast_exp(x[i] - m);
    const float s = detail::sum_of(y, n);
    if (log) {
        const float ls = std::log(s);
        for (std::int64_t k = 0; k < n; ++k) y[k] = x[k] - m - ls;
    } else {
        const float inv = 1.0f / s;
        for (std::int64_t k = 0; k < n; ++k) y[k] *= inv;
    }
}
}  // namespace

void softmax(const float* x, float* y, std::int64_t outer, std::int64_t n, std::int64_t inner, bool log) {
    if (outer <= 0 || n <= 0 || inner <= 0) return;
    if (inner == 1) {
        detail::parallel_range(outer, std::max<std::int64_t>(1, 8192 / n), [&](std::int64_t b, std::int64_t e) {
            for (std::int64_t o = b; o < e; ++o) softmax_row(x + o * n, y + o * n, n, log);
        });
        return;
    }
    // Strided axis: work on whole [n, inner] slabs, vectorized along inner.
    detail::parallel_for(outer, [&](std::int64_t o) {
        const float* xs = x + o * n * inner;
        float* ys = y + o * n * inner;
        std::vector<float> mx(static_cast<std::size_t>(inner), -std::numeric_limits<float>::infinity());
        std::vector<float> sum(static_cast<std::size_t>(inner), 0.0f);
        for (std::int64_t k = 0; k < n; ++k)
            for (std::int64_t j = 0; j < inner; ++j) mx[static_cast<std::size_t>(j)] = std::max(mx[static_cast<std::size_t>(j)], xs[k * inner + j]);
        for (std::int64_t k = 0; k < n; ++k)
            for (std::int64_t j = 0; j < inner; ++j) {
                const float e = detail::fast_exp(xs[k * inner + j] - mx[static_cast<std::size_t>(j)]);
                ys[k * inner + j] = e;
                sum[static_cast<std::size_t>(j)] += e;
            }
        for (std::int64_t k = 0; k < n; ++k)
            for (std::int64_t j = 0; j < inner; ++j) {
                const std::size_t jj = static_cast<std::size_t>(j);
                ys[k * inner + j] = log ? xs[k * inner + j] - mx[jj] - std::log(sum[jj]) : ys[k * inner + j] / sum[jj];
            }
    });
}

void softmax_ref(const float* x, float* y, std::int64_t outer, std::int64_t n, std::int64_t inner, bool log) {
    for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t j = 0; j < inner; ++j) {
            const float* xs = x + o * n * inner + j;
            float* ys = y + o * n * inner + j;
            double m = -std::numeric_limits<double>::infinity();
            for (std::int64_t k = 0; k < n; ++k) m = std::max(m, static_cast<double>(xs[k * inner]));
            double s = 0;
            for (std::int64_t k = 0; k < n; ++k) s += std::exp(static_cast<double>(xs[k * inner]) - m);
            for (std::int64_t k = 0; k < n; ++k) {
                const double v = static_cast<double>(xs[k * inner]) - m;
                ys[k * inner] = static_cast<float>(log ? v - std::log(s) : std::exp(v) / s);
            }
        }
}

void hardmax(const float* x, float* y, std::int64_t outer, std::int64_t n, std::int64_t inner) {
    for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t j = 0; j < inner; ++j) {
            const float* xs = x + o * n * inner + j;
            float* ys = y + o * n * inner + j;
            std::int64_t best = 0;
            for (std::int64_t k = 1; k < n; ++k)
                if (xs[k * inner] > xs[best * inner]) best = k;
            for (std::int64_t k = 0; k < n; ++k) ys[k * inner] = k == best ? 1.0f : 0.0f;
        }
}

}  // namespace quantsim
