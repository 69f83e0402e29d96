#include <quantsim/ir/kernels/resize.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include <quantsim/ir/kernels/parallel.hpp>

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

namespace quantsim {

float resize_source_coord(const resize_params& p, int axis, std::int64_t o, std::int64_t in, std::int64_t out) {
    const float s = p.scale[axis];
    const float x = static_cast<float>(o);
    switch (p.coord) {
        case resize_coord::half_pixel: return (x + 0.5f) / s - 0.5f;
        case resize_coord::half_pixel_symmetric: {
            const float adj = static_cast<float>(out) / (s * static_cast<float>(in));
            const float center = static_cast<float>(in) / 2.0f;
            const float offset = center * (1.0f - adj);
            return offset + (x + 0.5f) / s - 0.5f;
        }
        case resize_coord::pytorch_half_pixel: return out > 1 ? (x + 0.5f) / s - 0.5f : 0.0f;
        case resize_coord::align_corners:
            return out > 1 ? x * static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
        case resize_coord::asymmetric: return x / s;
        case resize_coord::tf_crop_and_resize: {
            const float a = p.roi_start[axis], b = p.roi_end[axis];
            const float len = static_cast<float>(in - 1);
            if (out > 1) return a * len + x * (b - a) * len / static_cast<float>(out - 1);
            return 0.5f * (a + b) * len;
        }
    }
    return x / s;
}

namespace {

std::int64_t nearest_index(resize_nearest m, float c) {
    switch (m) {
        case resize_nearest::round_prefer_floor:
            return c == std::floor(c) + 0.5f ? static_cast<std::int64_t>(std::floor(c))
                                              : static_cast<std::int64_t>(std::round(c));
        case resize_nearest::round_prefer_ceil: return static_cast<std::int64_t>(std::round(c));
        case resize_nearest::floor: return static_cast<std::int64_t>(std::floor(c));
        case resize_nearest::ceil: return static_cast<std::int64_t>(std::ceil(c));
    }
    return 0;
}

// Taps of one output coordinate: indices into the input axis and their weights (cubic: 4 taps, linear: 2).
struct taps {
    std::int64_t idx[4];
    float wt[4];
    int n;
    bool outside;  ///< tf_crop_and_resize coordinate outside the input: use extrapolation_value
};

std::vector<taps> axis_taps(const resize_params& p, int axis, std::int64_t in, std::int64_t out) {
    std::vector<taps> t(static_cast<std::size_t>(out));
    for (std::int64_t o = 0; o < out; ++o) {
        taps& k = t[static_cast<std::size_t>(o)];
        float c = resize_source_coord(p, axis, o, in, out);
        k.outside = p.coord == resize_coord::tf_crop_and_resize && (c < 0.0f || c > static_cast<float>(in - 1));
        if (p.mode == resize_mode::nearest) {
            k.n = 1;
            k.idx[0] = std::clamp<std::int64_t>(nearest_index(p.nearest, c), 0, in - 1);
            k.wt[0] = 1.0f;
        } else if (p.mode == resize_mode::linear) {
            c = std::clamp(c, 0.0f, static_cast<float>(in - 1));
            const std::int64_t i0 = static_cast<std::int64_t>(std::floor(c));
            const std::int64_t i1 = std::min(i0 + 1, in - 1);
            const float f = c - static_cast<float>(i0);
            k.n = 2;
            k.idx[0] = i0;
            k.idx[1] = i1;
            k.wt[0] = 1.0f - f;
            k.wt[1] = f;
        } else {
            const std::int64_t i0 = static_cast<std::int64_t>(std::floor(c));
            const float f = c - static_cast<float>(i0);
            const float A = p.cubic_a;
            auto w = [A](float d) {
                d = std::fabs(d);
                if (d <= 1.0f) return ((A + 2.0f) * d - (A + 3.0f)) * d * d + 1.0f;
                if (d < 2.0f) return ((A * d - 5.0f * A) * d + 8.0f * A) * d - 4.0f * A;
                return 0.0f;
            };
            k.n = 4;
            float sum = 0.0f;
            for (int j = 0; j < 4; ++j) {
                const std::int64_t idx = i0 - 1 + j;
                float wt = w(f + 1.0f - static_cast<float>(j));
                if (p.exclude_outside && (idx < 0 || idx >= in)) wt = 0.0f;
                k.idx[j] = std::clamp<std::int64_t>(idx, 0, in - 1);
                k.wt[j] = wt;
                sum += wt;
            }
            if (p.exclude_outside && sum != 0.0f)
                for (float& wt : k.wt) wt /= sum;
        }
    }
    return t;
}

}  // namespace

void resize2d(const resize_params& p, std::int64_t planes, std::int64_t h, std::int64_t w, std::int64_t oh,
              std::int64_t ow, const float* x, float* y) {
    if (planes <= 0 || oh <= 0 || ow <= 0) return;
    const std::vector<taps> ty = axis_taps(p, 0, h, oh);
    const std::vector<taps> tx = axis_taps(p, 1, w, ow);
    const bool nearest = p.mode == resize_mode::nearest && p.coord != resize_coord::tf_crop_and_resize;
    detail::parallel_for(planes, [&](std::int64_t pl) {
        const float* xp = x + pl * h * w;
        float* yp = y + pl * oh * ow;
        for (std::int64_t oy = 0; oy < oh; ++oy) {
            const taps& a = ty[static_cast<std::size_t>(oy)];
            float* yr = yp + oy * ow;
            if (nearest) {
                const float* xr = xp + a.idx[0] * w;
                for (std::int64_t ox = 0; ox < ow; ++ox) yr[ox] = xr[tx[static_cast<std::size_t>(ox)].idx[0]];
                continue;
            }
            for (std::int64_t ox = 0; ox < ow; ++ox) {
                const taps& b = tx[static_cast<std::size_t>(ox)];
                if (a.outside || b.outside) {
                    yr[ox] = p.extrapolation_value;
                    continue;
                }
                float acc = 0.0f;
                for (int i = 0; i < a.n; ++i) {
                    const float* xr = xp + a.idx[i] * w;
                    float r = 0.0f;
                    for (int j = 0; j < b.n; ++j) r += b.wt[j] * xr[b.idx[j]];
                    acc += a.wt[i] * r;
                }
                yr[ox] = acc;
            }
        }
    });
}

}  // namespace quantsim
