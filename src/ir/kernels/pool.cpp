#include <quantsim/ir/kernels/pool.hpp>

#include <algorithm>
#include <limits>
#include <vector>

#include <quantsim/ir/kernels/math.hpp>
#include <quantsim/ir/kernels/parallel.hpp>

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

namespace quantsim {

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Per output row: taps are applied one (ky, kx) at a time over the columns where that tap is inside the input,
// so the inner loops carry no bounds checks and vectorize.
template <bool Max>
void pool2d(const pool_geometry& g, std::int64_t planes, std::int64_t h, std::int64_t w, const float* x, float* y) {
    const std::int64_t oh = g.out_size(0, h), ow = g.out_size(1, w);
    if (oh <= 0 || ow <= 0) return;
    const std::int64_t kh = g.kernel[0], kw = g.kernel[1], sh = g.stride[0], sw = g.stride[1];
    const std::int64_t dh = g.dilation[0], dw = g.dilation[1];
    // Column ranges per kx, and the count of valid kx per output column (for averages).
    std::vector<std::int64_t> lo(static_cast<std::size_t>(kw)), hi(static_cast<std::size_t>(kw));
    std::vector<float> colcount(static_cast<std::size_t>(ow), 0.0f);
    for (std::int64_t kx = 0; kx < kw; ++kx) {
        const std::int64_t off = kx * dw - g.pad_begin[1];
        std::int64_t a = off >= 0 ? 0 : ceil_div(-off, sw);
        std::int64_t b = w - off <= 0 ? 0 : ceil_div(w - off, sw);
        a = std::min(a, ow);
        b = std::clamp(b, a, ow);
        lo[static_cast<std::size_t>(kx)] = a;
        hi[static_cast<std::size_t>(kx)] = b;
        for (std::int64_t ox = a; ox < b; ++ox) colcount[static_cast<std::size_t>(ox)] += 1.0f;
    }
    // count_include_pad divisor per column: window clipped to the padded extent.
    std::vector<float> padcols(static_cast<std::size_t>(ow));
    for (std::int64_t ox = 0; ox < ow; ++ox) {
        const std::int64_t x0 = ox * sw - g.pad_begin[1];
        const std::int64_t xe = std::min(x0 + (kw - 1) * dw + 1, w + g.pad_end[1]);
        padcols[static_cast<std::size_t>(ox)] = static_cast<float>((xe - x0 + dw - 1) / dw);
    }
    detail::parallel_for(planes, [&](std::int64_t p) {
        const float* xp = x + p * h * w;
        float* yp = y + p * oh * ow;
        for (std::int64_t oy = 0; oy < oh; ++oy) {
            float* QUANTSIM_RESTRICT yr = yp + oy * ow;
            const float init = Max ? -std::numeric_limits<float>::infinity() : 0.0f;
            std::fill(yr, yr + ow, init);
            const std::int64_t y0 = oy * sh - g.pad_begin[0];
            std::int64_t rows = 0;
            for (std::int64_t ky = 0; ky < kh; ++ky) {
                const std::int64_t iy = y0 + ky * dh;
                if (iy < 0 || iy >= h) continue;
                ++rows;
                const float* xr = xp + iy * w;
                for (std::int64_t kx = 0; kx < kw; ++kx) {
                    const std::int64_t a = lo[static_cast<std::size_t>(kx)], b = hi[static_cast<std::size_t>(kx)];
                    if (a >= b) continue;
                    const float* QUANTSIM_RESTRICT src = xr + (a * sw + kx * dw - g.pad_begin[1]);
                    float* QUANTSIM_RESTRICT dst = yr + a;
                    const std::int64_t n = b - a;
                    if (sw == 1) {
                        for (std::int64_t i = 0; i < n; ++i) {
                            if constexpr (Max) dst[i] = src[i] > dst[i] || src[i] != src[i] ? src[i] : dst[i];
                            else dst[i] += src[i];
                        }
                    } else {
                        for (std::int64_t i = 0; i < n; ++i) {
                            const float v = src[i * sw];
                            if constexpr (Max) dst[i] = v > dst[i] || v != v ? v : dst[i];
                            else dst[i] += v;
                        }
                    }
                }
            }
            if constexpr (!Max) {
                float ry;
                if (g.count_include_pad) {
                    const std::int64_t ye = std::min(y0 + (kh - 1) * dh + 1, h + g.pad_end[0]);
                    ry = static_cast<float>((ye - y0 + dh - 1) / dh);
                } else {
                    ry = static_cast<float>(rows);
                }
                const float* cols = g.count_include_pad ? padcols.data() : colcount.data();
                for (std::int64_t ox = 0; ox < ow; ++ox) {
                    const float d = ry * cols[ox];
                    yr[ox] = d > 0.0f ? yr[ox] / d : 0.0f;
                }
            }
        }
    });
}

}  // namespace

void max_pool2d(const pool_geometry& g, std::int64_t planes, std::int64_t h, std::int64_t w, const float* x,
                float* y) {
    pool2d<true>(g, planes, h, w, x, y);
}
void avg_pool2d(const pool_geometry& g, std::int64_t planes, std::int64_t h, std::int64_t w, const float* x,
                float* y) {
    pool2d<false>(g, planes, h, w, x, y);
}

namespace {
float plane_sum(const float* x, std::int64_t n) { return detail::sum_of(x, n); }
float plane_max(const float* x, std::int64_t n) { return detail::max_of(x, n); }
}  // namespace

void global_avg_pool(std::int64_t planes, std::int64_t size, const float* x, float* y) {
    detail::parallel_range(planes, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(size, 1)),
                           [&](std::int64_t b, std::int64_t e) {
                               for (std::int64_t p = b; p < e; ++p)
                                   y[p] = size > 0 ? plane_sum(x + p * size, size) / static_cast<float>(size) : 0.0f;
                           });
}

void global_max_pool(std::int64_t planes, std::int64_t size, const float* x, float* y) {
    detail::parallel_range(planes, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(size, 1)),
                           [&](std::int64_t b, std::int64_t e) {
                               for (std::int64_t p = b; p < e; ++p) y[p] = plane_max(x + p * size, size);
                           });
}

}  // namespace quantsim
