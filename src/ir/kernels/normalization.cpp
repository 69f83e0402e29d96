#include <quantsim/ir/kernels/normalization.hpp>

#include <cmath>
#include <vector>

#include <quantsim/ir/kernels/parallel.hpp>

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

namespace quantsim {

void channel_affine(const float* x, float* y, std::int64_t n, std::int64_t c, std::int64_t inner, const float* s,
                    const float* t) {
    detail::parallel_range(n * c, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(inner, 1)),
                           [&](std::int64_t b, std::int64_t e) {
                               for (std::int64_t p = b; p < e; ++p) {
                                   const float sv = s[p % c], tv = t[p % c];
                                   const float* xs = x + p * inner;
                                   float* ys = y + p * inner;
                                   for (std::int64_t i = 0; i < inner; ++i) ys[i] = xs[i] * sv + tv;
                               }
                           });
}

void batch_norm(const float* x, float* y, std::int64_t n, std::int64_t c, std::int64_t inner, const float* scale,
                const float* bias, const float* mean, const float* var, float epsilon) {
    std::vector<float> s(static_cast<std::size_t>(c)), t(static_cast<std::size_t>(c));
    for (std::int64_t i = 0; i < c; ++i) {
        const float k = scale[i] / std::sqrt(var[i] + epsilon);
        s[static_cast<std::size_t>(i)] = k;
        t[static_cast<std::size_t>(i)] = bias[i] - mean[i] * k;
    }
    channel_affine(x, y, n, c, inner, s.data(), t.data());
}

void layer_norm(const float* x, float* y, std::int64_t rows, std::int64_t size, const float* scale,
                const float* bias, float epsilon, float* mean_out, float* inv_std_out) {
    detail::parallel_range(rows, std::max<std::int64_t>(1, 8192 / std::max<std::int64_t>(size, 1)),
                           [&](std::int64_t b, std::int64_t e) {
                               for (std::int64_t r = b; r < e; ++r) {
                                   const float* xs = x + r * size;
                                   float* ys = y + r * size;
                                   double sum = 0, sq = 0;
                                   for (std::int64_t i = 0; i < size; ++i) sum += xs[i];
                                   const double mean = size ? sum / static_cast<double>(size) : 0.0;
                                   for (std::int64_t i = 0; i < size; ++i) {
                                       const double d = xs[i] - mean;
                                       sq += d * d;
                                   }
                                   const double var = size ? sq / static_cast<double>(size) : 0.0;
                                   const float inv = static_cast<float>(1.0 / std::sqrt(var + epsilon));
                                   const float m = static_cast<float>(mean);
                                   for (std::int64_t i = 0; i < size; ++i)
                                       ys[i] = (xs[i] - m) * inv * scale[i] + (bias ? bias[i] : 0.0f);
                                   if (mean_out) mean_out[r] = m;
                                   if (inv_std_out) inv_std_out[r] = inv;
                               }
                           });
}

}  // namespace quantsim
