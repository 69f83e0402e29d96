#include <quantsim/ir/kernels/pool.hpp>

#include <algorithm>
#include <limits>

#include <quantsim/ir/kernels/parallel.hpp>

namespace quantsim {

namespace {
template <bool Max>
void pool2d(const pool_geometry& g, std::int64_t planes, std::int64_t h, std::int64_t w, const float* x, float* y) {
    const std::int64_t oh = g.out_size(0, h), ow = g.out_size(1, w);
    if (oh <= 0 || ow <= 0) return;
    detail::parallel_for(planes, [&](std::int64_t p) {
        const float* xp = x + p * h * w;
        float* yp = y + p * oh * ow;
        for (std::int64_t oy = 0; oy < oh; ++oy) {
            const std::int64_t y0 = oy * g.stride[0] - g.pad_begin[0];
            for (std::int64_t ox = 0; ox < ow; ++ox) {
                const std::int64_t x0 = ox * g.stride[1] - g.pad_begin[1];
                float acc = Max ? -std::numeric_limits<float>::infinity() : 0.0f;
                std::int64_t count = 0;
                for (std::int64_t ky = 0; ky < g.kernel[0]; ++ky) {
                    const std::int64_t iy = y0 + ky * g.dilation[0];
                    if (iy < 0 || iy >= h) continue;
                    for (std::int64_t kx = 0; kx < g.kernel[1]; ++kx) {
                        const std::int64_t ix = x0 + kx * g.dilation[1];
                        if (ix < 0 || ix >= w) continue;
                        const float v = xp[iy * w + ix];
                        if constexpr (Max)
                            acc = v > acc || v != v ? v : acc;
                        else
                            acc += v;
                        ++count;
                    }
                }
                if constexpr (!Max) {
                    std::int64_t div = count;
                    if (g.count_include_pad) {
                        // The window clipped to the padded input (pads count, the ceil_mode overhang does not).
                        const std::int64_t ye = std::min(y0 + (g.kernel[0] - 1) * g.dilation[0] + 1, h + g.pad_end[0]);
                        const std::int64_t xe = std::min(x0 + (g.kernel[1] - 1) * g.dilation[1] + 1, w + g.pad_end[1]);
                        const std::int64_t ny = (ye - y0 + g.dilation[0] - 1) / g.dilation[0];
                        const std::int64_t nx = (xe - x0 + g.dilation[1] - 1) / g.dilation[1];
                        div = ny * nx;
                    }
                    acc = div > 0 ? acc / static_cast<float>(div) : 0.0f;
                }
                yp[oy * ow + ox] = acc;
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

void global_avg_pool(std::int64_t planes, std::int64_t size, const float* x, float* y) {
    detail::parallel_range(planes, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(size, 1)),
                           [&](std::int64_t b, std::int64_t e) {
                               for (std::int64_t p = b; p < e; ++p) {
                                   const float* xp = x + p * size;
                                   float s = 0.0f;
                                   for (std::int64_t i = 0; i < size; ++i) s += xp[i];
                                   y[p] = size > 0 ? s / static_cast<float>(size) : 0.0f;
                               }
                           });
}

void global_max_pool(std::int64_t planes, std::int64_t size, const float* x, float* y) {
    detail::parallel_range(planes, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(size, 1)),
                           [&](std::int64_t b, std::int64_t e) {
                               for (std::int64_t p = b; p < e; ++p) {
                                   const float* xp = x + p * size;
                                   float m = -std::numeric_limits<float>::infinity();
                                   for (std::int64_t i = 0; i < size; ++i) m = xp[i] > m ? xp[i] : m;
                                   y[p] = m;
                               }
                           });
}

}  // namespace quantsim
