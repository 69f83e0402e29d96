#include <quantsim/ir/kernels/conv.hpp>

#include <algorithm>
#include <cstring>

#include <quantsim/ir/kernels/gemm.hpp>
#include <quantsim/ir/kernels/parallel.hpp>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

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

// dst[i] = src[i * stride] for i < n (stride-2 with AVX-512: two loads and a lane permute per 16 outputs; masked
// at the end so nothing past src[(n - 1) * stride] is read).
void copy_strided(float* QUANTSIM_RESTRICT dst, const float* QUANTSIM_RESTRICT src, std::int64_t n,
                  std::int64_t stride) {
    std::int64_t i = 0;
#if defined(__AVX512F__)
    if (stride == 2) {
        const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        for (; i + 16 <= n; i += 16) {
            // The last pair's odd element may lie past the row: load 31 elements, not 32.
            const __m512 a = _mm512_loadu_ps(src + 2 * i);
            const __m512 b = _mm512_maskz_loadu_ps(0x7FFF, src + 2 * i + 16);
            _mm512_storeu_ps(dst + i, _mm512_permutex2var_ps(a, even, b));
        }
        if (i < n) {
            const std::int64_t rem = n - i;  // 1..15 outputs need 2 * rem - 1 inputs
            const std::int64_t need = 2 * rem - 1;
            const __mmask16 ma = static_cast<__mmask16>(need >= 16 ? 0xFFFF : (1u << need) - 1u);
            const __mmask16 mb = static_cast<__mmask16>(need > 16 ? (1u << (need - 16)) - 1u : 0u);
            const __m512 a = _mm512_maskz_loadu_ps(ma, src + 2 * i);
            const __m512 b = _mm512_maskz_loadu_ps(mb, src + 2 * i + 16);
            _mm512_mask_storeu_ps(dst + i, static_cast<__mmask16>((1u << rem) - 1u), _mm512_permutex2var_ps(a, even, b));
        }
        return;
    }
#endif
    for (; i < n; ++i) dst[i] = src[i * stride];
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
                            copy_strided(d + (a - ox0), row + (a * sw + xoff), b - a, sw);
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
    choose_algo();
    const std::int64_t per = detail::packed_a_size(mg, kdim_);
    packed_.resize(static_cast<std::size_t>(per * g.group));
    for (std::int64_t grp = 0; grp < g.group; ++grp)
        detail::pack_a(false, mg, kdim_, weight + grp * mg * kdim_, kdim_, 1.0f, packed_.data() + grp * per);
}

void conv2d_kernel::choose_algo() {
    const conv_geometry& g = g_;
    const bool unit_stride = g.stride[0] == 1 && g.stride[1] == 1;
    const bool no_pad = g.pad_begin[0] == 0 && g.pad_begin[1] == 0 && g.pad_end[0] == 0 && g.pad_end[1] == 0;
    if (unit_stride && no_pad && g.kernel[0] == 1 && g.kernel[1] == 1)
        algo_ = conv_algo::pointwise_gemm;
    else if (unit_stride)
        algo_ = conv_algo::indirect_gemm;
    else
        algo_ = conv_algo::im2col_gemm;
}

void conv2d_kernel::set_padding(const std::array<std::int64_t, 2>& begin, const std::array<std::int64_t, 2>& end) {
    g_.pad_begin = begin;
    g_.pad_end = end;
    // The three GEMM algorithms share the weight packing: only the way B is read changes.
    if (algo_ != conv_algo::depthwise) choose_algo();
}

void conv2d_kernel::run(std::int64_t batch, std::int64_t h, std::int64_t w, const float* x, float* y,
                        const conv_epilogue& ep) const {
    const std::int64_t oh = g_.conv_out(0, h), ow = g_.conv_out(1, w);
    if (batch <= 0 || oh <= 0 || ow <= 0) return;
    std::vector<float> scaled;
    if (ep.input_scale) {
        if (algo_ == conv_algo::depthwise) {
            // x * s then a depthwise conv = s * (conv without bias) + bias: scale the input instead (rare).
            std::vector<float> xs(static_cast<std::size_t>(batch * g_.in_channels * h * w));
            for (std::int64_t p = 0; p < batch * g_.in_channels; ++p)
                for (std::int64_t i = 0; i < h * w; ++i)
                    xs[static_cast<std::size_t>(p * h * w + i)] = x[p * h * w + i] * ep.input_scale[p];
            conv_epilogue e2 = ep;
            e2.input_scale = nullptr;
            run_depthwise(batch, h, w, oh, ow, xs.data(), y, e2);
            return;
        }
        // Per image: the packed weights with column k = (c, ky, kx) scaled by s[n, group * C/G + c].
        const std::int64_t G = g_.group, cg = g_.in_channels / G, taps = g_.kernel[0] * g_.kernel[1];
        const std::int64_t per = detail::packed_a_size(g_.out_channels / G, kdim_);
        scaled.resize(static_cast<std::size_t>(batch * G * per));
        detail::parallel_for(batch * G, [&](std::int64_t t) {
            const std::int64_t n = t / G, grp = t % G;
            const float* src = packed_.data() + grp * per;
            float* dst = scaled.data() + t * per;
            const float* sc = ep.input_scale + n * g_.in_channels + grp * cg;
            for (std::int64_t i = 0; i < per; ++i) dst[i] = src[i] * sc[(i % (kdim_ * detail::gemm_mr)) / detail::gemm_mr / taps];
        });
    }
    const float* a_images = ep.input_scale ? scaled.data() : nullptr;
    if (algo_ == conv_algo::depthwise)
        run_depthwise(batch, h, w, oh, ow, x, y, ep);
    else if (algo_ == conv_algo::indirect_gemm)
        run_indirect(batch, h, w, oh, ow, x, y, ep, a_images);
    else
        run_gemm(batch, h, w, oh, ow, x, y, ep, a_images);
}

namespace {

// Large weights, small planes (ResNet's last stages, 1x1 convs with hundreds of channels on a few pixels): one
// task per block of output channels, looping over the images inside, with K split in blocks. The packed weights
// then stream from memory once per run instead of once per (image, column tile), and each K-block of A stays in
// L1/L2 while the columns pass over it.
constexpr std::int64_t big_kc = 512;
constexpr std::int64_t big_mc = 128;
constexpr std::int64_t big_nc = 192;

bool use_big_weight_schedule(std::int64_t m, std::int64_t kdim, std::int64_t groups, std::int64_t cols) {
    return groups == 1 && m * kdim * 4 >= (std::int64_t{1} << 20) && kdim * cols * 4 <= (std::int64_t{2} << 20);
}

// C (rows x cols, ldc) = A rows [m0, m0 + rows) x B (kdim x cols), K-blocked; B rows from `b_row(k)` + col.
template <class BRow>
void big_weight_gemm(std::int64_t rows, std::int64_t cols, std::int64_t kdim, const float* a_packed, std::int64_t m0,
                     BRow b_row, float* c, std::int64_t ldc, const float* bias, float lo, float hi) {
    for (std::int64_t kb = 0; kb < kdim; kb += big_kc) {
        const std::int64_t kc = std::min(big_kc, kdim - kb);
        const bool last = kb + kc == kdim;
        detail::gemm_epilogue e;
        e.a_panel_stride = kdim * detail::gemm_mr;
        e.accumulate = kb > 0;
        if (last) {
            e.row_bias = bias;
            e.lo = lo;
            e.hi = hi;
        }
        const float* ap = a_packed + (m0 / detail::gemm_mr) * kdim * detail::gemm_mr + kb * detail::gemm_mr;
        for (std::int64_t j0 = 0; j0 < cols; j0 += big_nc) {
            const std::int64_t nc = std::min(big_nc, cols - j0);
            b_row(kb, kc, j0, nc, ap, e, c + j0, ldc, rows);
        }
    }
}

}  // namespace

void conv2d_kernel::run_gemm(std::int64_t batch, std::int64_t h, std::int64_t w, std::int64_t oh, std::int64_t ow,
                             const float* x, float* y, const conv_epilogue& ep, const float* a_images) const {
    const std::int64_t C = g_.in_channels, M = g_.out_channels, G = g_.group;
    const std::int64_t cg = C / G, mg = M / G;
    const std::int64_t Q = oh * ow;
    const bool direct = algo_ == conv_algo::pointwise_gemm;
    if (use_big_weight_schedule(M, kdim_, G, Q)) {
        const std::int64_t chunks = ceil_div(M, big_mc);
        detail::parallel_for(chunks, [&](std::int64_t t) {
            const std::int64_t m0 = t * big_mc, rows_m = std::min(big_mc, M - m0);
            float* buf = direct ? nullptr : detail::scratch(kdim_ * Q, 0);
            for (std::int64_t n = 0; n < batch; ++n) {
                const float* xn = x + n * C * h * w;
                const float* b = xn;
                if (!direct) {
                    im2col_tile(g_, xn, C, h, w, ow, 0, Q, buf);
                    b = buf;
                }
                const float* ap = a_images ? a_images + n * detail::packed_a_size(M, kdim_) : packed_.data();
                float* yn = y + (n * M + m0) * Q;
                big_weight_gemm(rows_m, Q, kdim_, ap, m0,
                                [&](std::int64_t kb, std::int64_t kc, std::int64_t j0, std::int64_t nc, const float* a,
                                    const detail::gemm_epilogue& e, float* cdst, std::int64_t ldc, std::int64_t r) {
                                    detail::gemm_packed(r, nc, kc, a, b + kb * Q + j0, Q, cdst, ldc, e);
                                },
                                yn, Q, bias_.data() + m0, ep.lo, ep.hi);
                if (ep.program) ep.program->run_span(yn, ep.inputs, (n * M + m0) * Q, rows_m * Q, Q);
            }
        });
        return;
    }
    // Column tile: the B block (kdim x nt) should stay in L2 while all row blocks of A pass over it. Whole
    // micro-tiles (48 columns) except at the end of a row: a 16-column tail tile runs at a third of the speed.
    constexpr std::int64_t nr = detail::gemm_nr;
    std::int64_t nt = std::clamp<std::int64_t>(65536 / std::max<std::int64_t>(kdim_, 1) / nr * nr, nr, 480);
    const int threads = kernel_threads();
    if (threads > 1) {
        const std::int64_t want = ceil_div(4 * threads, batch);
        if (ceil_div(Q, nt) < want) nt = std::max<std::int64_t>(nr, ceil_div(ceil_div(Q, want), nr) * nr);
    }
    // Spread the columns evenly over the tiles (a last tile of a few columns would waste a task).
    const std::int64_t ntiles0 = ceil_div(Q, nt);
    nt = std::min(Q, ceil_div(ceil_div(Q, ntiles0), nr) * nr);
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
            const float* ap = a_images ? a_images + (n * G + grp) * per : packed_.data() + grp * per;
            detail::gemm_packed(mg, len, kdim_, ap, b, ldb, y + (n * M + grp * mg) * Q + q0,
                                Q, gep);
        }
        if (ep.program) {
            if (len == Q)  // the tile is whole rows: one span (short rows share the program's passes)
                ep.program->run_span(y + n * M * Q, ep.inputs, n * M * Q, M * Q, Q);
            else
                for (std::int64_t m = 0; m < M; ++m)
                    ep.program->run_row(y + (n * M + m) * Q + q0, ep.inputs, n * M + m, q0, len, Q);
        }
    });
}

void conv2d_kernel::run_indirect(std::int64_t batch, std::int64_t h, std::int64_t w, std::int64_t oh,
                                 std::int64_t ow, const float* x, float* y, const conv_epilogue& ep,
                                 const float* a_images) const {
    const std::int64_t C = g_.in_channels, M = g_.out_channels, G = g_.group;
    const std::int64_t cg = C / G, mg = M / G;
    const std::int64_t kh = g_.kernel[0], kw = g_.kernel[1], dh = g_.dilation[0], dw = g_.dilation[1];
    const std::int64_t pt = g_.pad_begin[0], pl = g_.pad_begin[1];
    const std::int64_t Q = oh * ow;
    // Zero-padded input: every window of a stride-1 conv is a contiguous run of the flattened padded plane, so
    // output column q' = oy * pw + ox of the "padded-width" output reads row (c, ky, kx) at
    // plane_c + ky*dh*pw + kx*dw + q'. Columns ox >= ow of that output are computed and thrown away.
    const std::int64_t pw = ow + (kw - 1) * dw;
    const std::int64_t ph = oh + (kh - 1) * dh;
    const std::int64_t plane = ph * pw;
    const std::int64_t Qp = oh * pw;
    const std::int64_t slack = (kw - 1) * dw + 64;
    float* padded = detail::scratch(batch * C * plane + slack, 2);
    detail::parallel_for(batch * C, [&](std::int64_t t) {
        const float* xp = x + t * h * w;
        float* dst0 = padded + t * plane;
        const std::int64_t a = std::min(pl, pw), e = std::clamp<std::int64_t>(w + pl, a, pw);
        for (std::int64_t r = 0; r < ph; ++r) {
            float* dst = dst0 + r * pw;
            const std::int64_t iy = r - pt;
            if (iy < 0 || iy >= h) {
                std::fill(dst, dst + pw, 0.0f);
                continue;
            }
            std::fill(dst, dst + a, 0.0f);
            std::memcpy(dst + a, xp + iy * w + (a - pl), static_cast<std::size_t>(e - a) * sizeof(float));
            std::fill(dst + e, dst + pw, 0.0f);
        }
    });
    std::fill(padded + batch * C * plane, padded + batch * C * plane + slack, 0.0f);

    const std::int64_t per = detail::packed_a_size(mg, kdim_);
    if (use_big_weight_schedule(M, kdim_, G, Qp)) {
        const std::int64_t chunks = ceil_div(M, big_mc);
        detail::parallel_for(chunks, [&](std::int64_t t) {
            const std::int64_t m0 = t * big_mc, rows_m = std::min(big_mc, M - m0);
            float* cbuf = detail::scratch(rows_m * Qp, 0);
            thread_local std::vector<const float*> rows;
            rows.resize(static_cast<std::size_t>(kdim_));
            for (std::int64_t n = 0; n < batch; ++n) {
                for (std::int64_t c = 0; c < C; ++c) {
                    const float* base = padded + (n * C + c) * plane;
                    for (std::int64_t ky = 0; ky < kh; ++ky)
                        for (std::int64_t kx = 0; kx < kw; ++kx)
                            rows[static_cast<std::size_t>((c * kh + ky) * kw + kx)] = base + ky * dh * pw + kx * dw;
                }
                const float* ap = a_images ? a_images + n * per : packed_.data();
                big_weight_gemm(rows_m, Qp, kdim_, ap, m0,
                                [&](std::int64_t kb, std::int64_t kc, std::int64_t j0, std::int64_t nc, const float* a,
                                    const detail::gemm_epilogue& e, float* cdst, std::int64_t ldc, std::int64_t r) {
                                    detail::gemm_packed_indirect(r, nc, kc, a, rows.data() + kb, j0, cdst, ldc, e);
                                },
                                cbuf, Qp, bias_.data() + m0, ep.lo, ep.hi);
                for (std::int64_t oy = 0; oy < oh; ++oy)
                    for (std::int64_t m = 0; m < rows_m; ++m) {
                        float* dst = y + (n * M + m0 + m) * Q + oy * ow;
                        std::memcpy(dst, cbuf + m * Qp + oy * pw, static_cast<std::size_t>(ow) * sizeof(float));
                    }
                if (ep.program)
                    ep.program->run_span(y + (n * M + m0) * Q, ep.inputs, (n * M + m0) * Q, rows_m * Q, Q);
            }
        });
        return;
    }
    constexpr std::int64_t nr = detail::gemm_nr;
    std::int64_t nt = std::clamp<std::int64_t>(65536 / std::max<std::int64_t>(kdim_, 1) / nr * nr, nr, 480);
    const int threads = kernel_threads();
    if (threads > 1) {
        const std::int64_t want = ceil_div(4 * threads, batch);
        if (ceil_div(Qp, nt) < want) nt = std::max<std::int64_t>(nr, ceil_div(ceil_div(Qp, want), nr) * nr);
    }
    const std::int64_t ntiles0 = ceil_div(Qp, nt);
    nt = std::min(Qp, ceil_div(ceil_div(Qp, ntiles0), nr) * nr);
    const std::int64_t tiles = ceil_div(Qp, nt);
    detail::parallel_for(batch * tiles, [&](std::int64_t t) {
        const std::int64_t n = t / tiles, q0 = (t % tiles) * nt;
        const std::int64_t len = std::min(nt, Qp - q0);
        float* cbuf = detail::scratch(M * nt, 0);
        thread_local std::vector<const float*> rows;
        rows.resize(static_cast<std::size_t>(kdim_));
        for (std::int64_t grp = 0; grp < G; ++grp) {
            for (std::int64_t c = 0; c < cg; ++c) {
                const float* base = padded + (n * C + grp * cg + c) * plane;
                for (std::int64_t ky = 0; ky < kh; ++ky)
                    for (std::int64_t kx = 0; kx < kw; ++kx)
                        rows[static_cast<std::size_t>((c * kh + ky) * kw + kx)] = base + ky * dh * pw + kx * dw;
            }
            detail::gemm_epilogue gep;
            gep.row_bias = bias_.data() + grp * mg;
            gep.lo = ep.lo;
            gep.hi = ep.hi;
            const float* ap = a_images ? a_images + (n * G + grp) * per : packed_.data() + grp * per;
            detail::gemm_packed_indirect(mg, len, kdim_, ap, rows.data(), q0,
                                         cbuf + grp * mg * nt, nt, gep);
        }
        // Scatter the valid columns of each output row the tile touches (and run the epilogue program there).
        for (std::int64_t oy = q0 / pw; oy * pw < q0 + len; ++oy) {
            const std::int64_t s0 = std::max(q0, oy * pw), s1 = std::min(q0 + len, oy * pw + ow);
            if (s0 >= s1) continue;
            const std::int64_t ox0 = s0 - oy * pw, cnt = s1 - s0;
            for (std::int64_t m = 0; m < M; ++m) {
                float* dst = y + (n * M + m) * Q + oy * ow + ox0;
                std::memcpy(dst, cbuf + m * nt + (s0 - q0), static_cast<std::size_t>(cnt) * sizeof(float));
                if (ep.program) ep.program->run_row(dst, ep.inputs, n * M + m, oy * ow + ox0, cnt, Q);
            }
        }
    });
}

namespace {

// Depthwise rows over a zero-padded plane: out[ox] = bias + sum_{ky,kx} w[ky,kx] * row_ky[ox*sw + kx*dw].
// `rows[ky]` points at the padded input row for tap row ky; every read is in bounds (the padding absorbs the
// borders), so the loops carry no checks.
void dw_row_generic(const float* const* rows, const float* w, std::int64_t kh, std::int64_t kw, std::int64_t sw,
                    std::int64_t dw, float bias, float lo, float hi, float* out, std::int64_t ow) {
    for (std::int64_t ox = 0; ox < ow; ++ox) out[ox] = bias;
    for (std::int64_t ky = 0; ky < kh; ++ky)
        for (std::int64_t kx = 0; kx < kw; ++kx) {
            const float wv = w[ky * kw + kx];
            const float* QUANTSIM_RESTRICT src = rows[ky] + kx * dw;
            float* QUANTSIM_RESTRICT dst = out;
            if (sw == 1)
                for (std::int64_t ox = 0; ox < ow; ++ox) dst[ox] += wv * src[ox];
            else
                for (std::int64_t ox = 0; ox < ow; ++ox) dst[ox] += wv * src[ox * sw];
        }
    clamp_row(out, ow, lo, hi);
}

#if defined(__AVX512F__)
// 16 outputs per vector, NV vectors per step. The taps are split over S = 8 / NV accumulator sets so that eight
// independent FMA chains are in flight whatever NV is.
template <int K, int SW, int NV>
QUANTSIM_ALWAYS_INLINE void dw_block_avx512(const float* const* rows, const float* w, std::int64_t dw, __m512 bias,
                                            __m512 lo, __m512 hi, float* out, std::int64_t ox0, __mmask16 last) {
    constexpr int S = NV >= 3 ? 2 : 8 / NV;
    __m512 acc[S][NV];
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[s][v] = s == 0 ? bias : _mm512_setzero_ps();
    [[maybe_unused]] const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
#pragma GCC unroll 5
    for (int ky = 0; ky < K; ++ky) {
        const float* row = rows[ky] + ox0 * SW;
#pragma GCC unroll 5
        for (int kx = 0; kx < K; ++kx) {
            const __m512 wv = _mm512_set1_ps(w[ky * K + kx]);
            const float* src = row + kx * dw;
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) {
                const __mmask16 m = v == NV - 1 ? last : __mmask16(0xFFFF);
                __m512 x;
                if constexpr (SW == 1) {
                    x = _mm512_maskz_loadu_ps(m, src + 16 * v);
                } else {
                    // Lanes 0..15 of the result are elements 0, 2, ..., 30 of the 32 loaded.
                    const int cnt = __builtin_popcount(m);
                    const __mmask16 ma = static_cast<__mmask16>(cnt >= 8 ? 0xFFFF : (1u << (2 * cnt)) - 1u);
                    const int rest = 2 * cnt - 16;
                    const __mmask16 mb = static_cast<__mmask16>(rest <= 0 ? 0 : (rest >= 16 ? 0xFFFF : (1u << rest) - 1u));
                    const __m512 a = _mm512_maskz_loadu_ps(ma, src + 32 * v);
                    const __m512 b = _mm512_maskz_loadu_ps(mb, src + 32 * v + 16);
                    x = _mm512_permutex2var_ps(a, even, b);
                }
                const int sidx = (ky * K + kx) % S;
                acc[sidx][v] = _mm512_fmadd_ps(wv, x, acc[sidx][v]);
            }
        }
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
        __m512 r = acc[0][v];
#pragma GCC unroll 8
        for (int s = 1; s < S; ++s) r = _mm512_add_ps(r, acc[s][v]);
        const __mmask16 m = v == NV - 1 ? last : __mmask16(0xFFFF);
        r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
        _mm512_mask_storeu_ps(out + ox0 + 16 * v, m, r);
    }
}

template <int K, int SW>
void dw_row_avx512(const float* const* rows, const float* w, std::int64_t dw, float bias, float lo, float hi,
                   float* out, std::int64_t ow) {
    const __m512 vb = _mm512_set1_ps(bias), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    std::int64_t ox = 0;
    for (; ox + 64 <= ow; ox += 64) dw_block_avx512<K, SW, 4>(rows, w, dw, vb, vlo, vhi, out, ox, 0xFFFF);
    const std::int64_t rem = ow - ox;
    if (rem <= 0) return;
    // The remaining 1..63 columns in one block of 1..4 vectors, the last one masked.
    const int nv = static_cast<int>((rem + 15) / 16);
    const __mmask16 last = static_cast<__mmask16>(rem % 16 == 0 ? 0xFFFF : (1u << (rem % 16)) - 1u);
    switch (nv) {
        case 1: dw_block_avx512<K, SW, 1>(rows, w, dw, vb, vlo, vhi, out, ox, last); break;
        case 2: dw_block_avx512<K, SW, 2>(rows, w, dw, vb, vlo, vhi, out, ox, last); break;
        case 3: dw_block_avx512<K, SW, 3>(rows, w, dw, vb, vlo, vhi, out, ox, last); break;
        default: dw_block_avx512<K, SW, 4>(rows, w, dw, vb, vlo, vhi, out, ox, last); break;
    }
}
#endif

}  // namespace

void conv2d_kernel::run_depthwise(std::int64_t batch, std::int64_t h, std::int64_t w, std::int64_t oh,
                                  std::int64_t ow, const float* x, float* y, const conv_epilogue& ep) const {
    const std::int64_t C = g_.in_channels;
    const std::int64_t kh = g_.kernel[0], kw = g_.kernel[1];
    const std::int64_t sh = g_.stride[0], sw = g_.stride[1];
    const std::int64_t dh = g_.dilation[0], dw = g_.dilation[1];
    const std::int64_t pt = g_.pad_begin[0], pl = g_.pad_begin[1];
    const std::int64_t Q = oh * ow;
    // Padded plane: rows the windows can reach, columns the windows can reach (+ slack for stride-2 pair loads).
    const std::int64_t ph = (oh - 1) * sh + (kh - 1) * dh + 1;
    const std::int64_t pw = (ow - 1) * sw + (kw - 1) * dw + 1;
    const std::int64_t pstride = pw + 32;
    void (*fast)(const float* const*, const float*, std::int64_t, float, float, float, float*, std::int64_t) = nullptr;
#if defined(__AVX512F__)
    if (kh == kw) {
        if (kh == 3 && sw == 1) fast = dw_row_avx512<3, 1>;
        else if (kh == 3 && sw == 2) fast = dw_row_avx512<3, 2>;
        else if (kh == 5 && sw == 1) fast = dw_row_avx512<5, 1>;
        else if (kh == 5 && sw == 2) fast = dw_row_avx512<5, 2>;
    }
#endif
    const auto plane = [&](std::int64_t t) {
        const std::int64_t c = t % C;
        const float* xp = x + t * h * w;
        float* yp = y + t * Q;
        const float* wt = packed_.data() + c * kh * kw;
        const float b = bias_[static_cast<std::size_t>(c)];
        float* pad = detail::scratch(ph * pstride, 1);
        // Zero-padded copy of the window's reach: rows iy = r - pt, columns ix = col - pl.
        for (std::int64_t r = 0; r < ph; ++r) {
            float* dst = pad + r * pstride;
            const std::int64_t iy = r - pt;
            if (iy < 0 || iy >= h) {
                std::fill(dst, dst + pstride, 0.0f);
                continue;
            }
            const std::int64_t a = std::min(pl, pw), e = std::clamp<std::int64_t>(w + pl, a, pw);
            std::fill(dst, dst + a, 0.0f);
            std::memcpy(dst + a, xp + iy * w + (a - pl), static_cast<std::size_t>(e - a) * sizeof(float));
            std::fill(dst + e, dst + pstride, 0.0f);
        }
        const float* rows[16];
        std::vector<const float*> rows_big;
        const float** rp = rows;
        if (kh > 16) {
            rows_big.resize(static_cast<std::size_t>(kh));
            rp = rows_big.data();
        }
        for (std::int64_t oy = 0; oy < oh; ++oy) {
            for (std::int64_t ky = 0; ky < kh; ++ky) rp[ky] = pad + (oy * sh + ky * dh) * pstride;
            float* yr = yp + oy * ow;
            if (fast)
                fast(rp, wt, dw, b, ep.lo, ep.hi, yr, ow);
            else
                dw_row_generic(rp, wt, kh, kw, sw, dw, b, ep.lo, ep.hi, yr, ow);
        }
    };
    if (!ep.program || Q >= pw_program::chunk) {
        detail::parallel_for(batch * C, [&](std::int64_t t) {
            plane(t);
            if (ep.program) ep.program->run_row(y + t * Q, ep.inputs, t, 0, Q, Q);
        });
        return;
    }
    // Small planes: the program runs once per block of planes (still in cache) instead of once per plane.
    const std::int64_t block = std::max<std::int64_t>(1, 4 * pw_program::chunk / Q);
    detail::parallel_range(batch * C, block, [&](std::int64_t b0, std::int64_t e0) {
        for (std::int64_t b = b0; b < e0; b += block) {
            const std::int64_t e = std::min(e0, b + block);
            for (std::int64_t t = b; t < e; ++t) plane(t);
            ep.program->run_span(y + b * Q, ep.inputs, b * Q, (e - b) * Q, Q);
        }
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
