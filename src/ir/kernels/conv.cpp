#include <quantsim/ir/kernels/conv.hpp>

#include <algorithm>
#include <cstring>

#include <quantsim/ir/kernels/gemm.hpp>
#include <quantsim/ir/kernels/parallel.hpp>

namespace quantsim {

// ---- reference ---------------------------------------------------------------------------------------------------

void conv2d_ref(const conv_geometry& g, std::int64_t batch, std::int64_t h, std::int64_t w, const float* x,
                const float* weight, const float* bias, float* y) {
    const std::int64_t oh = g.conv_out(0, h), ow = g.conv_out(1, w);
    const std::int64_t cg = g.in_channels / g.group, mg = g.out_channels / g.group;
    const std::int64_t kh = g.kernel[0], kw = g.kernel[1];
    for (std::int64_t n = 0; n < batch; ++n)
        for (std::int64_t m = 0; m < g.out_channels; ++m) {
            const std::int64_t grp = m / mg;
            for (std::int64_t oy = 0; oy < oh; ++oy)
                for (std::int64_t ox = 0; ox < ow; ++ox) {
                    double acc = bias ? bias[m] : 0.0;
                    for (std::int64_t c = 0; c < cg; ++c)
                        for (std::int64_t ky = 0; ky < kh; ++ky)
                            for (std::int64_t kx = 0; kx < kw; ++kx) {
                                const std::int64_t iy = oy * g.stride[0] - g.pad_begin[0] + ky * g.dilation[0];
                                const std::int64_t ix = ox * g.stride[1] - g.pad_begin[1] + kx * g.dilation[1];
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                const float xv = x[((n * g.in_channels + grp * cg + c) * h + iy) * w + ix];
                                const float wv = weight[((m * cg + c) * kh + ky) * kw + kx];
                                acc += static_cast<double>(xv) * wv;
                            }
                    y[((n * g.out_channels + m) * oh + oy) * ow + ox] = static_cast<float>(acc);
                }
        }
}

void conv_transpose2d_ref(const conv_geometry& g, std::int64_t batch, std::int64_t h, std::int64_t w,
                          std::int64_t oh, std::int64_t ow, const float* x, const float* weight, const float* bias,
                          float* y) {
    const std::int64_t cg = g.in_channels / g.group, mg = g.out_channels / g.group;
    const std::int64_t kh = g.kernel[0], kw = g.kernel[1];
    std::vector<double> acc(static_cast<std::size_t>(oh * ow));
    for (std::int64_t n = 0; n < batch; ++n)
        for (std::int64_t m = 0; m < g.out_channels; ++m) {
            const std::int64_t grp = m / mg, mm = m % mg;
            std::fill(acc.begin(), acc.end(), bias ? bias[m] : 0.0);
            for (std::int64_t c = 0; c < cg; ++c)
                for (std::int64_t iy = 0; iy < h; ++iy)
                    for (std::int64_t ix = 0; ix < w; ++ix) {
                        const float xv = x[((n * g.in_channels + grp * cg + c) * h + iy) * w + ix];
                        for (std::int64_t ky = 0; ky < kh; ++ky)
                            for (std::int64_t kx = 0; kx < kw; ++kx) {
                                const std::int64_t oy = iy * g.stride[0] - g.pad_begin[0] + ky * g.dilation[0];
                                const std::int64_t ox = ix * g.stride[1] - g.pad_begin[1] + kx * g.dilation[1];
                                if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
                                const float wv = weight[(((grp * cg + c) * mg + mm) * kh + ky) * kw + kx];
                                acc[static_cast<std::size_t>(oy * ow + ox)] += static_cast<double>(xv) * wv;
                            }
                    }
            float* yp = y + (n * g.out_channels + m) * oh * ow;
            for (std::int64_t i = 0; i < oh * ow; ++i) yp[i] = static_cast<float>(acc[static_cast<std::size_t>(i)]);
        }
}

// ---- helpers -----------------------------------------------------------------------------------------------------

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// First and one-past-last output index o in [0, n_out) with 0 <= o*stride + off < n_in.
void valid_range(std::int64_t n_out, std::int64_t n_in, std::int64_t stride, std::int64_t off, std::int64_t& lo,
                 std::int64_t& hi) {
    lo = off >= 0 ? 0 : ceil_div(-off, stride);
    hi = n_in - off <= 0 ? 0 : ceil_div(n_in - off, stride);
    lo = std::min(lo, n_out);
    hi = std::clamp(hi, lo, n_out);
}

void clamp_row(float* y, std::int64_t n, float lo, float hi) {
    if (lo == -std::numeric_limits<float>::infinity() && hi == std::numeric_limits<float>::infinity()) return;
    for (std::int64_t i = 0; i < n; ++i) {
        float v = y[i];
        v = v < lo ? lo : v;
        y[i] = v > hi ? hi : v;
    }
}

// Columns of the im2col matrix for output positions [q0, q0 + nt): rows (c, ky, kx), row stride nt.
void im2col_tile(const conv_geometry& g, const float* x, std::int64_t cg, std::int64_t h, std::int64_t w,
                 std::int64_t ow, std::int64_t q0, std::int64_t nt, float* buf) {
    const std::int64_t kh = g.kernel[0], kw = g.kernel[1];
    const std::int64_t sh = g.stride[0], sw = g.stride[1];
    for (std::int64_t c = 0; c < cg; ++c) {
        const float* xc = x + c * h * w;
        for (std::int64_t ky = 0; ky < kh; ++ky)
            for (std::int64_t kx = 0; kx < kw; ++kx) {
                float* dst = buf + ((c * kh + ky) * kw + kx) * nt;
                const std::int64_t xoff = kx * g.dilation[1] - g.pad_begin[1];
                std::int64_t lo, hi;
                valid_range(ow, w, sw, xoff, lo, hi);
                std::int64_t q = q0;
                const std::int64_t q1 = q0 + nt;
                while (q < q1) {
                    const std::int64_t oy = q / ow, ox0 = q % ow;
                    const std::int64_t ox1 = std::min(ow, ox0 + (q1 - q));
                    float* d = dst + (q - q0);  // d[ox - ox0] is the column of output (oy, ox)
                    const std::int64_t iy = oy * sh - g.pad_begin[0] + ky * g.dilation[0];
                    if (iy < 0 || iy >= h) {
                        std::fill(d, d + (ox1 - ox0), 0.0f);
                    } else {
                        const float* row = xc + iy * w;  // x[iy, ox*sw + xoff] for ox in [lo, hi)
                        const std::int64_t a = std::clamp(lo, ox0, ox1), b = std::clamp(hi, a, ox1);
                        std::fill(d, d + (a - ox0), 0.0f);
                        if (sw == 1)
                            std::memcpy(d + (a - ox0), row + (a + xoff),
                                        static_cast<std::size_t>(b - a) * sizeof(float));
                        else
                            for (std::int64_t ox = a; ox < b; ++ox) d[ox - ox0] = row[ox * sw + xoff];
                        std::fill(d + (b - ox0), d + (ox1 - ox0), 0.0f);
                    }
                    q += ox1 - ox0;
                }
            }
    }
}

}  // namespace

void apply_conv_epilogue(float* y, std::int64_t P, std::int64_t Q, std::int64_t channels, const float* bias,
                         const conv_epilogue& ep) {
    detail::parallel_for(P, [&](std::int64_t p) {
        float* row = y + p * Q;
        if (bias) {
            const float b = bias[p % channels];
            for (std::int64_t i = 0; i < Q; ++i) row[i] += b;
        }
        clamp_row(row, Q, ep.lo, ep.hi);
        if (ep.program) ep.program->run_row(row, ep.inputs, p, 0, Q, Q);
    });
}

// ---- conv2d_kernel -----------------------------------------------------------------------------------------------

conv2d_kernel::conv2d_kernel(const conv_geometry& g, const float* weight, const float* bias) : g_(g) {
    const std::int64_t cg = g.in_channels / g.group, mg = g.out_channels / g.group;
    kdim_ = cg * g.kernel[0] * g.kernel[1];
    bias_.assign(static_cast<std::size_t>(g.out_channels), 0.0f);
    if (bias) std::copy(bias, bias + g.out_channels, bias_.begin());
    if (g.group == g.in_channels && g.out_channels == g.in_channels && g.group > 1) {
        algo_ = conv_algo::depthwise;
        packed_.assign(weight, weight + g.out_channels * kdim_);
        return;
    }
    const bool one = g.kernel[0] == 1 && g.kernel[1] == 1 && g.stride[0] == 1 && g.stride[1] == 1 &&
                     g.pad_begin[0] == 0 && g.pad_begin[1] == 0 && g.pad_end[0] == 0 && g.pad_end[1] == 0;
    algo_ = one ? conv_algo::pointwise_gemm : conv_algo::im2col_gemm;
    const std::int64_t per = detail::packed_a_size(mg, kdim_);
    packed_.resize(static_cast<std::size_t>(per * g.group));
    for (std::int64_t grp = 0; grp < g.group; ++grp)
        detail::pack_a(false, mg, kdim_, weight + grp * mg * kdim_, kdim_, 1.0f, packed_.data() + grp * per);
}

void conv2d_kernel::set_padding(const std::array<std::int64_t, 2>& begin, const std::array<std::int64_t, 2>& end) {
    g_.pad_begin = begin;
    g_.pad_end = end;
    // The packing of the two GEMM algorithms is the same: only the choice of B changes.
    if (algo_ == conv_algo::pointwise_gemm && (begin[0] || begin[1] || end[0] || end[1]))
        algo_ = conv_algo::im2col_gemm;
    else if (algo_ == conv_algo::im2col_gemm && !(begin[0] || begin[1] || end[0] || end[1]) &&
             g_.kernel[0] == 1 && g_.kernel[1] == 1 && g_.stride[0] == 1 && g_.stride[1] == 1)
        algo_ = conv_algo::pointwise_gemm;
}

void conv2d_kernel::run(std::int64_t batch, std::int64_t h, std::int64_t w, const float* x, float* y,
                        const conv_epilogue& ep) const {
    const std::int64_t oh = g_.conv_out(0, h), ow = g_.conv_out(1, w);
    if (batch <= 0 || oh <= 0 || ow <= 0) return;
    if (algo_ == conv_algo::depthwise)
        run_depthwise(batch, h, w, oh, ow, x, y, ep);
    else
        run_gemm(batch, h, w, oh, ow, x, y, ep);
}

void conv2d_kernel::run_gemm(std::int64_t batch, std::int64_t h, std::int64_t w, std::int64_t oh, std::int64_t ow,
                             const float* x, float* y, const conv_epilogue& ep) const {
    const std::int64_t C = g_.in_channels, M = g_.out_channels, G = g_.group;
    const std::int64_t cg = C / G, mg = M / G;
    const std::int64_t Q = oh * ow;
    const bool direct = algo_ == conv_algo::pointwise_gemm;
    // Column tile: the B block (kdim x nt) should stay in L2 while all row blocks of A pass over it.
    std::int64_t nt = std::clamp<std::int64_t>(65536 / std::max<std::int64_t>(kdim_, 1) / 16 * 16, 48, 512);
    const int threads = kernel_threads();
    if (threads > 1) {
        const std::int64_t want = ceil_div(4 * threads, batch);
        if (ceil_div(Q, nt) < want) nt = std::max<std::int64_t>(32, ceil_div(ceil_div(Q, want), 16) * 16);
    }
    nt = std::min(nt, Q);
    const std::int64_t tiles = ceil_div(Q, nt);
    const std::int64_t per = detail::packed_a_size(mg, kdim_);
    detail::parallel_for(batch * tiles, [&](std::int64_t t) {
        const std::int64_t n = t / tiles, q0 = (t % tiles) * nt;
        const std::int64_t len = std::min(nt, Q - q0);
        float* buf = direct ? nullptr : detail::scratch(kdim_ * nt);
        for (std::int64_t grp = 0; grp < G; ++grp) {
            const float* xg = x + (n * C + grp * cg) * h * w;
            const float* b;
            std::int64_t ldb;
            if (direct) {
                b = xg + q0;
                ldb = h * w;
            } else {
                im2col_tile(g_, xg, cg, h, w, ow, q0, len, buf);
                b = buf;
                ldb = len;
            }
            detail::gemm_epilogue gep;
            gep.row_bias = bias_.data() + grp * mg;
            gep.lo = ep.lo;
            gep.hi = ep.hi;
            detail::gemm_packed(mg, len, kdim_, packed_.data() + grp * per, b, ldb, y + (n * M + grp * mg) * Q + q0,
                                Q, gep);
        }
        if (ep.program)
            for (std::int64_t m = 0; m < M; ++m)
                ep.program->run_row(y + (n * M + m) * Q + q0, ep.inputs, n * M + m, q0, len, Q);
    });
}

void conv2d_kernel::run_depthwise(std::int64_t batch, std::int64_t h, std::int64_t w, std::int64_t oh,
                                  std::int64_t ow, const float* x, float* y, const conv_epilogue& ep) const {
    const std::int64_t C = g_.in_channels;
    const std::int64_t kh = g_.kernel[0], kw = g_.kernel[1];
    const std::int64_t sh = g_.stride[0], sw = g_.stride[1];
    const std::int64_t Q = oh * ow;
    detail::parallel_for(batch * C, [&](std::int64_t t) {
        const std::int64_t c = t % C;
        const float* xp = x + t * h * w;
        float* yp = y + t * Q;
        const float* wt = packed_.data() + c * kh * kw;
        const float b = bias_[static_cast<std::size_t>(c)];
        for (std::int64_t oy = 0; oy < oh; ++oy) {
            float* yr = yp + oy * ow;
            std::fill(yr, yr + ow, b);
            for (std::int64_t ky = 0; ky < kh; ++ky) {
                const std::int64_t iy = oy * sh - g_.pad_begin[0] + ky * g_.dilation[0];
                if (iy < 0 || iy >= h) continue;
                const float* xr = xp + iy * w;
                for (std::int64_t kx = 0; kx < kw; ++kx) {
                    const float wv = wt[ky * kw + kx];
                    const std::int64_t off = kx * g_.dilation[1] - g_.pad_begin[1];
                    std::int64_t lo, hi;
                    valid_range(ow, w, sw, off, lo, hi);
                    if (lo >= hi) continue;
                    // src[i] is x[iy, lo*sw + off + i]; both offsets are inside the row.
                    const float* QUANTSIM_RESTRICT src = xr + (lo * sw + off);
                    float* QUANTSIM_RESTRICT dst = yr + lo;
                    const std::int64_t cnt = hi - lo;
                    if (sw == 1) {
                        for (std::int64_t i = 0; i < cnt; ++i) dst[i] += wv * src[i];
                    } else if (sw == 2) {
                        for (std::int64_t i = 0; i < cnt; ++i) dst[i] += wv * src[2 * i];
                    } else {
                        for (std::int64_t i = 0; i < cnt; ++i) dst[i] += wv * src[i * sw];
                    }
                }
            }
            clamp_row(yr, ow, ep.lo, ep.hi);
        }
        if (ep.program) ep.program->run_row(yp, ep.inputs, t, 0, Q, Q);
    });
}

// ---- conv_transpose2d_kernel -------------------------------------------------------------------------------------

conv_transpose2d_kernel::conv_transpose2d_kernel(const conv_geometry& g, const float* weight, const float* bias)
    : g_(g) {
    const std::int64_t cg = g.in_channels / g.group, mg = g.out_channels / g.group;
    rows_ = mg * g.kernel[0] * g.kernel[1];
    bias_.assign(static_cast<std::size_t>(g.out_channels), 0.0f);
    if (bias) std::copy(bias, bias + g.out_channels, bias_.begin());
    const std::int64_t per = detail::packed_a_size(rows_, cg);
    packed_.resize(static_cast<std::size_t>(per * g.group));
    for (std::int64_t grp = 0; grp < g.group; ++grp)
        detail::pack_a(true, rows_, cg, weight + grp * cg * rows_, rows_, 1.0f, packed_.data() + grp * per);
}

void conv_transpose2d_kernel::run(std::int64_t batch, std::int64_t h, std::int64_t w, std::int64_t oh,
                                  std::int64_t ow, const float* x, float* y, const conv_epilogue& ep) const {
    const std::int64_t C = g_.in_channels, M = g_.out_channels, G = g_.group;
    const std::int64_t cg = C / G, mg = M / G;
    const std::int64_t kh = g_.kernel[0], kw = g_.kernel[1];
    const std::int64_t hw = h * w, Q = oh * ow;
    if (batch <= 0 || Q <= 0) return;
    const std::int64_t per = detail::packed_a_size(rows_, cg);
    // Phase 1: columns = W^T * X for every (image, group), tiled over input positions.
    std::vector<float> cols(static_cast<std::size_t>(batch * G * rows_ * hw));
    const std::int64_t nt = std::min<std::int64_t>(hw, 256);
    const std::int64_t tiles = ceil_div(hw, nt);
    detail::parallel_for(batch * G * tiles, [&](std::int64_t t) {
        const std::int64_t ng = t / tiles, q0 = (t % tiles) * nt;
        const std::int64_t n = ng / G, grp = ng % G;
        const std::int64_t len = std::min(nt, hw - q0);
        detail::gemm_packed(rows_, len, cg, packed_.data() + grp * per, x + (n * C + grp * cg) * hw + q0, hw,
                            cols.data() + ng * rows_ * hw + q0, hw, detail::gemm_epilogue{});
    });
    // Phase 2: col2im, one output plane per task (no two tasks write the same element).
    detail::parallel_for(batch * M, [&](std::int64_t t) {
        const std::int64_t n = t / M, m = t % M, grp = m / mg, mm = m % mg;
        float* yp = y + t * Q;
        std::fill(yp, yp + Q, bias_[static_cast<std::size_t>(m)]);
        const float* cbase = cols.data() + (n * G + grp) * rows_ * hw;
        for (std::int64_t ky = 0; ky < kh; ++ky)
            for (std::int64_t kx = 0; kx < kw; ++kx) {
                const float* crow = cbase + ((mm * kh + ky) * kw + kx) * hw;
                const std::int64_t xoff = kx * g_.dilation[1] - g_.pad_begin[1];
                for (std::int64_t iy = 0; iy < h; ++iy) {
                    const std::int64_t oy = iy * g_.stride[0] - g_.pad_begin[0] + ky * g_.dilation[0];
                    if (oy < 0 || oy >= oh) continue;
                    float* yr = yp + oy * ow;
                    const float* cr = crow + iy * w;
                    // ox = ix * stride + xoff must lie in [0, ow).
                    std::int64_t lo, hi;
                    lo = xoff >= 0 ? 0 : ceil_div(-xoff, g_.stride[1]);
                    hi = ow - xoff <= 0 ? 0 : ceil_div(ow - xoff, g_.stride[1]);
                    lo = std::min(lo, w);
                    hi = std::clamp(hi, lo, w);
                    const std::int64_t s = g_.stride[1];
                    for (std::int64_t ix = lo; ix < hi; ++ix) yr[ix * s + xoff] += cr[ix];
                }
            }
        clamp_row(yp, Q, ep.lo, ep.hi);
        if (ep.program) ep.program->run_row(yp, ep.inputs, t, 0, Q, Q);
    });
}

}  // namespace quantsim
