// Conv backward: geometry from attributes, the reference loops and the optimized kernels.
#include <algorithm>
#include <cstring>
#include <vector>

#include <quantsim/ir/detail/autograd_kernels.hpp>
#include <quantsim/ir/kernels/gemm.hpp>
#include <quantsim/ir/kernels/parallel.hpp>

namespace quantsim::detail {

conv_geometry conv_geometry_of(const node& n, const shape_t& x_shape, const shape_t& w_shape) {
    const std::string desc = n.describe();
    if (w_shape.size() != 3 && w_shape.size() != 4)
        QUANTSIM_THROW(unsupported_error, desc, ": gradients need a 1-D or 2-D conv, weight shape ",
                       to_string(w_shape));
    const int s = static_cast<int>(w_shape.size()) - 2;
    if (static_cast<int>(x_shape.size()) != s + 2)
        QUANTSIM_THROW(shape_error, desc, ": input shape ", to_string(x_shape), " does not fit weight shape ",
                       to_string(w_shape));
    const auto per_axis = [&](const char* key, std::int64_t def) {
        std::vector<std::int64_t> v = n.attr_ints(key, std::vector<std::int64_t>(static_cast<std::size_t>(s), def));
        if (static_cast<int>(v.size()) != s)
            QUANTSIM_THROW(graph_error, desc, ": attribute '", key, "' has ", v.size(), " values for ", s,
                           " spatial axes");
        return v;
    };
    const auto strides = per_axis("strides", 1);
    const auto dilations = per_axis("dilations", 1);
    std::vector<std::int64_t> pads =
        n.attr_ints("pads", std::vector<std::int64_t>(static_cast<std::size_t>(2 * s), 0));
    if (static_cast<int>(pads.size()) != 2 * s)
        QUANTSIM_THROW(graph_error, desc, ": attribute 'pads' has ", pads.size(), " values, expected ", 2 * s);
    const std::string auto_pad = n.attr_string("auto_pad", std::string("NOTSET"));
    conv_geometry g;
    g.group = n.attr_int("group", 1);
    g.out_channels = w_shape[0];
    g.in_channels = x_shape[1];
    if (g.group <= 0 || g.in_channels != w_shape[1] * g.group || g.out_channels % g.group != 0)
        QUANTSIM_THROW(shape_error, desc, ": input ", to_string(x_shape), ", weight ", to_string(w_shape),
                       " and group ", g.group, " do not fit");
    for (int i = 0; i < s; ++i) {
        const auto a = static_cast<std::size_t>(2 - s + i);  // 1-D convs use axis 1 (W), H = 1
        const auto ii = static_cast<std::size_t>(i);
        g.kernel[a] = w_shape[2 + ii];
        g.stride[a] = strides[ii];
        g.dilation[a] = dilations[ii];
        if (strides[ii] <= 0 || dilations[ii] <= 0)
            QUANTSIM_THROW(graph_error, desc, ": strides and dilations must be positive");
        const std::int64_t in = x_shape[2 + ii];
        if (auto_pad == "NOTSET") {
            g.pad_begin[a] = pads[ii];
            g.pad_end[a] = pads[ii + static_cast<std::size_t>(s)];
        } else if (auto_pad == "VALID") {
            g.pad_begin[a] = g.pad_end[a] = 0;
        } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
            const std::int64_t eff = dilations[ii] * (g.kernel[a] - 1) + 1;
            const std::int64_t out = (in + strides[ii] - 1) / strides[ii];
            const std::int64_t total = std::max<std::int64_t>(0, (out - 1) * strides[ii] + eff - in);
            g.pad_begin[a] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
            g.pad_end[a] = total - g.pad_begin[a];
        } else {
            QUANTSIM_THROW(unsupported_error, desc, ": auto_pad '", auto_pad, "' is not supported");
        }
        if (g.pad_begin[a] < 0 || g.pad_end[a] < 0)
            QUANTSIM_THROW(unsupported_error, desc, ": negative pads are not supported");
    }
    return g;
}

void conv2d_backward_ref(const conv_geometry& g, std::int64_t batch, std::int64_t h, std::int64_t w, const float* x,
                         const float* weight, const float* dy, float* dx, float* dw, float* db) {
    const std::int64_t oh = g.conv_out(0, h), ow = g.conv_out(1, w);
    const std::int64_t cg = g.in_channels / g.group, mg = g.out_channels / g.group;
    const std::int64_t kh = g.kernel[0], kw = g.kernel[1];
    if (dx) std::fill_n(dx, batch * g.in_channels * h * w, 0.0f);
    if (dw) std::fill_n(dw, g.out_channels * cg * kh * kw, 0.0f);
    if (db) std::fill_n(db, g.out_channels, 0.0f);
    for (std::int64_t n = 0; n < batch; ++n)
        for (std::int64_t m = 0; m < g.out_channels; ++m) {
            const std::int64_t grp = m / mg;
            for (std::int64_t oy = 0; oy < oh; ++oy)
                for (std::int64_t ox = 0; ox < ow; ++ox) {
                    const float gy = dy[((n * g.out_channels + m) * oh + oy) * ow + ox];
                    if (db) db[m] += gy;
                    for (std::int64_t c = 0; c < cg; ++c)
                        for (std::int64_t ky = 0; ky < kh; ++ky)
                            for (std::int64_t kx = 0; kx < kw; ++kx) {
                                const std::int64_t iy = oy * g.stride[0] - g.pad_begin[0] + ky * g.dilation[0];
                                const std::int64_t ix = ox * g.stride[1] - g.pad_begin[1] + kx * g.dilation[1];
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                const std::int64_t xi = ((n * g.in_channels + grp * cg + c) * h + iy) * w + ix;
                                const std::int64_t wi = ((m * cg + c) * kh + ky) * kw + kx;
                                if (dx) dx[xi] += weight[wi] * gy;
                                if (dw) dw[wi] += x[xi] * gy;
                            }
                }
        }
}

namespace {

// Valid output range [lo, hi) along one axis for kernel tap k: 0 <= o*s - p + k*d < in.
inline void tap_range(std::int64_t in, std::int64_t out, std::int64_t s, std::int64_t p, std::int64_t off,
                      std::int64_t& lo, std::int64_t& hi) {
    // o*s >= p - off  and  o*s < in + p - off
    const std::int64_t a = p - off;
    lo = a <= 0 ? 0 : (a + s - 1) / s;
    const std::int64_t b = in + p - off;  // o*s < b
    hi = b <= 0 ? 0 : std::min(out, (b + s - 1) / s);
    if (hi < lo) hi = lo;
}

void depthwise_backward(const conv_geometry& g, std::int64_t batch, std::int64_t h, std::int64_t w,
                        std::int64_t oh, std::int64_t ow, const float* x, const float* weight, const float* dy,
                        float* dx, float* dw, float* db) {
    const std::int64_t C = g.in_channels, kh = g.kernel[0], kw = g.kernel[1];
    const std::int64_t sy = g.stride[0], sx = g.stride[1];
    // One plane (image, channel) per task for dx; one channel per task for dw/db (sums over images in order).
    if (dx)
        parallel_for(batch * C, [&](std::int64_t p) {
            const std::int64_t c = p % C;
            float* dxp = dx + p * h * w;
            std::fill_n(dxp, h * w, 0.0f);
            const float* dyp = dy + p * oh * ow;
            for (std::int64_t ky = 0; ky < kh; ++ky) {
                std::int64_t oy0, oy1;
                tap_range(h, oh, sy, g.pad_begin[0], ky * g.dilation[0], oy0, oy1);
                for (std::int64_t kx = 0; kx < kw; ++kx) {
                    std::int64_t ox0, ox1;
                    tap_range(w, ow, sx, g.pad_begin[1], kx * g.dilation[1], ox0, ox1);
                    const float wv = weight[(c * kh + ky) * kw + kx];
                    for (std::int64_t oy = oy0; oy < oy1; ++oy) {
                        float* row = dxp + (oy * sy - g.pad_begin[0] + ky * g.dilation[0]) * w - g.pad_begin[1] +
                                     kx * g.dilation[1];
                        const float* grow = dyp + oy * ow;
                        if (sx == 1)
                            for (std::int64_t ox = ox0; ox < ox1; ++ox) row[ox] += wv * grow[ox];
                        else
                            for (std::int64_t ox = ox0; ox < ox1; ++ox) row[ox * sx] += wv * grow[ox];
                    }
                }
            }
        });
    if (dw || db)
        parallel_for(C, [&](std::int64_t c) {
            double bsum = 0;
            std::vector<double> acc(static_cast<std::size_t>(kh * kw), 0.0);
            for (std::int64_t n = 0; n < batch; ++n) {
                const float* xp = x + (n * C + c) * h * w;
                const float* dyp = dy + (n * C + c) * oh * ow;
                if (db)
                    for (std::int64_t i = 0; i < oh * ow; ++i) bsum += dyp[i];
                if (!dw) continue;
                for (std::int64_t ky = 0; ky < kh; ++ky) {
                    std::int64_t oy0, oy1;
                    tap_range(h, oh, sy, g.pad_begin[0], ky * g.dilation[0], oy0, oy1);
                    for (std::int64_t kx = 0; kx < kw; ++kx) {
                        std::int64_t ox0, ox1;
                        tap_range(w, ow, sx, g.pad_begin[1], kx * g.dilation[1], ox0, ox1);
                        float s = 0;
                        for (std::int64_t oy = oy0; oy < oy1; ++oy) {
                            const float* row = xp + (oy * sy - g.pad_begin[0] + ky * g.dilation[0]) * w -
                                               g.pad_begin[1] + kx * g.dilation[1];
                            const float* grow = dyp + oy * ow;
                            if (sx == 1)
                                for (std::int64_t ox = ox0; ox < ox1; ++ox) s += row[ox] * grow[ox];
                            else
                                for (std::int64_t ox = ox0; ox < ox1; ++ox) s += row[ox * sx] * grow[ox];
                        }
                        acc[static_cast<std::size_t>(ky * kw + kx)] += s;
                    }
                }
            }
            if (dw)
                for (std::int64_t k = 0; k < kh * kw; ++k) dw[c * kh * kw + k] = static_cast<float>(acc[static_cast<std::size_t>(k)]);
            if (db) db[c] = static_cast<float>(bsum);
        });
}

// col [cg*kh*kw, oh*ow] of one image and group.
void im2col(const conv_geometry& g, std::int64_t cg, std::int64_t h, std::int64_t w, std::int64_t oh,
            std::int64_t ow, const float* x, float* col) {
    const std::int64_t kh = g.kernel[0], kw = g.kernel[1];
    for (std::int64_t c = 0; c < cg; ++c)
        for (std::int64_t ky = 0; ky < kh; ++ky)
            for (std::int64_t kx = 0; kx < kw; ++kx) {
                float* dst = col + ((c * kh + ky) * kw + kx) * oh * ow;
                std::fill_n(dst, oh * ow, 0.0f);
                std::int64_t oy0, oy1, ox0, ox1;
                tap_range(h, oh, g.stride[0], g.pad_begin[0], ky * g.dilation[0], oy0, oy1);
                tap_range(w, ow, g.stride[1], g.pad_begin[1], kx * g.dilation[1], ox0, ox1);
                for (std::int64_t oy = oy0; oy < oy1; ++oy) {
                    const float* src = x + (c * h + oy * g.stride[0] - g.pad_begin[0] + ky * g.dilation[0]) * w -
                                       g.pad_begin[1] + kx * g.dilation[1];
                    float* d = dst + oy * ow;
                    if (g.stride[1] == 1)
                        std::memcpy(d + ox0, src + ox0, static_cast<std::size_t>(ox1 - ox0) * sizeof(float));
                    else
                        for (std::int64_t ox = ox0; ox < ox1; ++ox) d[ox] = src[ox * g.stride[1]];
                }
            }
}

// dx (one image and group, accumulated) += col2im(dcol).
void col2im_add(const conv_geometry& g, std::int64_t cg, std::int64_t h, std::int64_t w, std::int64_t oh,
                std::int64_t ow, const float* col, float* dx) {
    const std::int64_t kh = g.kernel[0], kw = g.kernel[1];
    for (std::int64_t c = 0; c < cg; ++c)
        for (std::int64_t ky = 0; ky < kh; ++ky)
            for (std::int64_t kx = 0; kx < kw; ++kx) {
                const float* src = col + ((c * kh + ky) * kw + kx) * oh * ow;
                std::int64_t oy0, oy1, ox0, ox1;
                tap_range(h, oh, g.stride[0], g.pad_begin[0], ky * g.dilation[0], oy0, oy1);
                tap_range(w, ow, g.stride[1], g.pad_begin[1], kx * g.dilation[1], ox0, ox1);
                for (std::int64_t oy = oy0; oy < oy1; ++oy) {
                    float* d = dx + (c * h + oy * g.stride[0] - g.pad_begin[0] + ky * g.dilation[0]) * w -
                               g.pad_begin[1] + kx * g.dilation[1];
                    const float* s = src + oy * ow;
                    if (g.stride[1] == 1)
                        for (std::int64_t ox = ox0; ox < ox1; ++ox) d[ox] += s[ox];
                    else
                        for (std::int64_t ox = ox0; ox < ox1; ++ox) d[ox * g.stride[1]] += s[ox];
                }
            }
}

}  // namespace

void conv2d_backward(const conv_geometry& g, std::int64_t batch, std::int64_t h, std::int64_t w, const float* x,
                     const float* weight, const float* dy, float* dx, float* dw, float* db) {
    const std::int64_t oh = g.conv_out(0, h), ow = g.conv_out(1, w);
    const std::int64_t cg = g.in_channels / g.group, mg = g.out_channels / g.group;
    const std::int64_t kk = cg * g.kernel[0] * g.kernel[1], q = oh * ow;
    if (cg == 1 && mg == 1) {
        depthwise_backward(g, batch, h, w, oh, ow, x, weight, dy, dx, dw, db);
        return;
    }
    // 1x1, stride 1, no pad: the input itself is the column matrix.
    const bool direct = g.kernel[0] == 1 && g.kernel[1] == 1 && g.stride[0] == 1 && g.stride[1] == 1 &&
                        g.pad_begin[0] == 0 && g.pad_begin[1] == 0 && g.pad_end[0] == 0 && g.pad_end[1] == 0;
    // Images are split into a fixed number of chunks (not the thread count) so that the summation order of the
    // weight gradient is the same for any number of threads.
    const std::int64_t chunks = std::min<std::int64_t>(batch, 16);
    const std::int64_t wsize = g.out_channels * kk;
    std::vector<float> partial(dw ? static_cast<std::size_t>(chunks * wsize) : 0);
    parallel_for(chunks, [&](std::int64_t ch) {
        const std::int64_t n0 = batch * ch / chunks, n1 = batch * (ch + 1) / chunks;
        // Per-thread scratch (slot 3: the forward conv kernels use slots 0-2), reused across calls.
        float* const col = direct ? nullptr : scratch(2 * kk * q, 3);
        float* const dcol = col ? col + kk * q : nullptr;
        float* pw = dw ? partial.data() + ch * wsize : nullptr;
        for (std::int64_t n = n0; n < n1; ++n)
            for (std::int64_t grp = 0; grp < g.group; ++grp) {
                const float* xg = x + (n * g.in_channels + grp * cg) * h * w;
                const float* dyg = dy + (n * g.out_channels + grp * mg) * q;
                const float* wg = weight + grp * mg * kk;
                if (dw) {
                    const float* cm = xg;
                    if (!direct) {
                        im2col(g, cg, h, w, oh, ow, xg, col);
                        cm = col;
                    }
                    // dW_g [mg, kk] += dY [mg, q] * col^T [q, kk]
                    gemm(false, true, mg, kk, q, 1.0f, dyg, q, cm, q, n == n0 ? 0.0f : 1.0f, pw + grp * mg * kk, kk);
                }
                if (dx) {
                    float* dxg = dx + (n * g.in_channels + grp * cg) * h * w;
                    if (direct) {
                        gemm(true, false, kk, q, mg, 1.0f, wg, kk, dyg, q, 0.0f, dxg, q);
                    } else {
                        gemm(true, false, kk, q, mg, 1.0f, wg, kk, dyg, q, 0.0f, dcol, q);
                        std::fill_n(dxg, cg * h * w, 0.0f);
                        col2im_add(g, cg, h, w, oh, ow, dcol, dxg);
                    }
                }
            }
    });
    if (dw) {
        std::copy_n(partial.data(), wsize, dw);
        for (std::int64_t ch = 1; ch < chunks; ++ch) {
            const float* p = partial.data() + ch * wsize;
            for (std::int64_t i = 0; i < wsize; ++i) dw[i] += p[i];
        }
    }
    if (db)
        parallel_for(g.out_channels, [&](std::int64_t m) {
            double s = 0;
            for (std::int64_t n = 0; n < batch; ++n) {
                const float* p = dy + (n * g.out_channels + m) * q;
                for (std::int64_t i = 0; i < q; ++i) s += p[i];
            }
            db[m] = static_cast<float>(s);
        });
}

}  // namespace quantsim::detail
