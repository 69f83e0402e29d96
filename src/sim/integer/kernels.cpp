// Integer convolution / matrix-product kernels of the integer executor (include/quantsim/sim/detail/
// integer_kernels.hpp). The vectorized product uses AVX-512 VNNI (vpdpbusd: 4 uint8 x int8 products summed into
// each int32 lane); the reference loops are the plain definition the tests compare against.
#include <quantsim/sim/detail/integer_kernels.hpp>

#include <algorithm>
#include <cstring>
#include <limits>

#include <quantsim/core/error.hpp>
#include <quantsim/ir/kernels/parallel.hpp>
#include <quantsim/sim/detail/integer_simd.hpp>

#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include <immintrin.h>
// GCC 12 warns about _mm512_undefined_*() inside the intrinsics (a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define QUANTSIM_INT_VNNI 1
#else
#define QUANTSIM_INT_VNNI 0
#endif

namespace quantsim::detail {
namespace {

constexpr std::int64_t row_block = 8;     // output channels per VNNI micro-tile
constexpr std::int64_t col_chunk = 256;   // output pixels per packed task (multiple of 32)

inline std::int32_t load_x(const void* x, bool is_signed, std::int64_t i) {
    return is_signed ? static_cast<const std::int8_t*>(x)[i] : static_cast<const std::uint8_t*>(x)[i];
}

inline void store_y(void* y, bool is_signed, std::int64_t i, std::int32_t v) {
    if (is_signed)
        static_cast<std::int8_t*>(y)[i] = static_cast<std::int8_t>(v);
    else
        static_cast<std::uint8_t*>(y)[i] = static_cast<std::uint8_t>(v);
}

}  // namespace

bool have_vnni() noexcept { return QUANTSIM_INT_VNNI != 0; }

void requant_row(const std::int32_t* acc, std::int32_t bias, std::int64_t n, std::int64_t channel,
                 const requant_params& r, void* out, bool out_signed, bool vectorized) {
    std::int64_t i = 0;
#if QUANTSIM_INT_VNNI
    if (vectorized && !r.tflite) {
        const float s = r.scale[r.scale.size() == 1 ? 0 : static_cast<std::size_t>(channel)];
        const __m512 vs = _mm512_set1_ps(s);
        const __m512 lo = _mm512_set1_ps(static_cast<float>(r.qmin - r.zp));
        const __m512 hi = _mm512_set1_ps(static_cast<float>(r.qmax - r.zp));
        const __m512i vz = _mm512_set1_epi32(r.zp);
        const __m512i vb = _mm512_set1_epi32(bias);
        for (; i < n; i += 16) {
            const auto m = static_cast<__mmask16>(n - i >= 16 ? 0xFFFF : ((1u << (n - i)) - 1));
            __m512i v = _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, acc + i), vb);
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), vs);
            f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
            v = _mm512_add_epi32(_mm512_cvtps_epi32(f), vz);  // MXCSR default: round half to even
            if (out_signed)
                _mm_mask_storeu_epi8(static_cast<std::int8_t*>(out) + i, m, _mm512_cvtepi32_epi8(v));
            else
                _mm_mask_storeu_epi8(static_cast<std::uint8_t*>(out) + i, m, _mm512_cvtepi32_epi8(v));
        }
        return;
    }
    if (vectorized && r.tflite) {
        const fixed_multiplier& fm = r.multiplier[r.multiplier.size() == 1 ? 0 : static_cast<std::size_t>(channel)];
        if (fm.multiplier != std::numeric_limits<std::int32_t>::min()) {
            const __m512i lo = _mm512_set1_epi32(r.qmin), hi = _mm512_set1_epi32(r.qmax);
            const __m512i vz = _mm512_set1_epi32(r.zp), vb = _mm512_set1_epi32(bias);
            for (; i < n; i += 16) {
                const auto m = static_cast<__mmask16>(n - i >= 16 ? 0xFFFF : ((1u << (n - i)) - 1));
                const __m512i v = _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, acc + i), vb);
                __m512i y = _mm512_add_epi32(tflite_multiply_epi32(v, fm), vz);
                y = _mm512_min_epi32(_mm512_max_epi32(y, lo), hi);
                _mm_mask_storeu_epi8(static_cast<std::uint8_t*>(out) + i, m, _mm512_cvtepi32_epi8(y));
            }
            return;
        }
    }
#endif
    (void)vectorized;
    for (; i < n; ++i) store_y(out, out_signed, i, r.apply(acc[i] + bias, channel));
}

qconv_layer make_qconv(const conv_geometry& g, const std::vector<std::int32_t>& weights,
                       const std::vector<std::int32_t>& weight_zp, std::vector<std::int32_t> bias,
                       requant_params requant) {
    qconv_layer L;
    L.geom = g;
    const std::int64_t G = g.group, M = g.out_channels, Cg = g.in_channels / G, Mg = M / G;
    L.k = Cg * g.kernel[0] * g.kernel[1];
    L.k_padded = (L.k + 3) / 4 * 4;
    L.m_padded = (Mg + row_block - 1) / row_block * row_block;
    L.depthwise = G == g.in_channels && Cg == 1;
    if (static_cast<std::int64_t>(weights.size()) != M * L.k)
        QUANTSIM_THROW(shape_error, "integer conv: ", weights.size(), " weights for ", M, " x ", L.k);
    L.weight_zp.resize(static_cast<std::size_t>(M));
    for (std::int64_t m = 0; m < M; ++m)
        L.weight_zp[static_cast<std::size_t>(m)] = weight_zp[weight_zp.size() == 1 ? 0 : static_cast<std::size_t>(m)];
    L.bias = bias.empty() ? std::vector<std::int32_t>(static_cast<std::size_t>(M), 0) : std::move(bias);
    L.requant = std::move(requant);
    L.weight16.resize(static_cast<std::size_t>(M * L.k));
    L.weight_sum.assign(static_cast<std::size_t>(M), 0);
    L.int8_weights = true;
    for (std::int64_t m = 0; m < M; ++m)
        for (std::int64_t kk = 0; kk < L.k; ++kk) {
            const std::int32_t v = weights[static_cast<std::size_t>(m * L.k + kk)];
            if (v < -128 || v > 127) L.int8_weights = false;
            L.weight16[static_cast<std::size_t>(m * L.k + kk)] =
                static_cast<std::int16_t>(v - L.weight_zp[static_cast<std::size_t>(m)]);
            L.weight_sum[static_cast<std::size_t>(m)] += v;
        }
    if (L.int8_weights && !L.depthwise) {
        L.weight.assign(static_cast<std::size_t>(G * L.m_padded * L.k_padded), 0);
        for (std::int64_t gi = 0; gi < G; ++gi)
            for (std::int64_t m = 0; m < Mg; ++m)
                for (std::int64_t kk = 0; kk < L.k; ++kk)
                    L.weight[static_cast<std::size_t>((gi * L.m_padded + m) * L.k_padded + kk)] =
                        static_cast<std::int8_t>(weights[static_cast<std::size_t>((gi * Mg + m) * L.k + kk)]);
    }
    return L;
}

void qconv_ref(const qconv_layer& L, std::int64_t n, std::int64_t h, std::int64_t w, const void* x, bool x_signed,
               std::int32_t x_zp, void* y, bool y_signed) {
    const auto& g = L.geom;
    const std::int64_t G = g.group, C = g.in_channels, M = g.out_channels, Cg = C / G, Mg = M / G;
    const std::int64_t oh = g.conv_out(0, h), ow = g.conv_out(1, w);
    const std::int64_t kh = g.kernel[0], kw = g.kernel[1];
    for (std::int64_t b = 0; b < n; ++b)
        for (std::int64_t m = 0; m < M; ++m) {
            const std::int64_t gi = m / Mg;
            for (std::int64_t oy = 0; oy < oh; ++oy)
                for (std::int64_t ox = 0; ox < ow; ++ox) {
                    std::int32_t acc = 0;
                    for (std::int64_t c = 0; c < Cg; ++c)
                        for (std::int64_t ky = 0; ky < kh; ++ky)
                            for (std::int64_t kx = 0; kx < kw; ++kx) {
                                const std::int64_t iy = oy * g.stride[0] - g.pad_begin[0] + ky * g.dilation[0];
                                const std::int64_t ix = ox * g.stride[1] - g.pad_begin[1] + kx * g.dilation[1];
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;  // padding holds x_zp
                                const std::int32_t xv =
                                    load_x(x, x_signed, ((b * C + gi * Cg + c) * h + iy) * w + ix) - x_zp;
                                acc += xv * L.weight16[static_cast<std::size_t>(((m * Cg + c) * kh + ky) * kw + kx)];
                            }
                    acc += L.bias[static_cast<std::size_t>(m)];
                    store_y(y, y_signed, ((b * M + m) * oh + oy) * ow + ox, L.requant.apply(acc, m));
                }
        }
}

namespace {

// Depthwise (and channel-multiplier) conv: one task per (image, output channel), int16 padded plane, int32 rows.
void qconv_depthwise(const qconv_layer& L, std::int64_t n, std::int64_t h, std::int64_t w, const void* x,
                     bool x_signed, std::int32_t x_zp, void* y, bool y_signed, bool vectorized) {
    const auto& g = L.geom;
    const std::int64_t C = g.in_channels, M = g.out_channels, mult = M / C;
    const std::int64_t oh = g.conv_out(0, h), ow = g.conv_out(1, w);
    const std::int64_t kh = g.kernel[0], kw = g.kernel[1];
    const std::int64_t ph = h + g.pad_begin[0] + g.pad_end[0], pw = w + g.pad_begin[1] + g.pad_end[1];
    const std::int64_t sy = g.stride[0], sx = g.stride[1], dy = g.dilation[0], dx = g.dilation[1];
#if QUANTSIM_INT_VNNI
    const bool fast = vectorized && (sx == 1 || sx == 2);
#else
    const bool fast = false;
#endif
    const std::int64_t ow_pad = (ow + 31) / 32 * 32;
    // The vector rows read up to 2 * ow_pad + 64 int16 past a row start: zero slack after the plane.
    const std::int64_t slack = fast ? 2 * ow_pad + 64 : 0;
    parallel_for(n * M, [&](std::int64_t task) {
        const std::int64_t b = task / M, m = task % M, c = m / mult;
        thread_local std::vector<std::int16_t> plane;
        thread_local std::vector<std::int32_t> acc;
        plane.assign(static_cast<std::size_t>(ph * pw + slack), 0);
        acc.resize(static_cast<std::size_t>(ow_pad));
        const std::int64_t base = (b * C + c) * h * w;
        for (std::int64_t iy = 0; iy < h; ++iy) {
            std::int16_t* dst = plane.data() + (iy + g.pad_begin[0]) * pw + g.pad_begin[1];
            if (x_signed) {
                const auto* src = static_cast<const std::int8_t*>(x) + base + iy * w;
                for (std::int64_t ix = 0; ix < w; ++ix) dst[ix] = static_cast<std::int16_t>(src[ix] - x_zp);
            } else {
                const auto* src = static_cast<const std::uint8_t*>(x) + base + iy * w;
                for (std::int64_t ix = 0; ix < w; ++ix) dst[ix] = static_cast<std::int16_t>(src[ix] - x_zp);
            }
        }
        const std::int16_t* wt = L.weight16.data() + m * kh * kw;
#if QUANTSIM_INT_VNNI
        if (fast) {
            // 32 outputs of a row per step, all taps accumulated in registers. madd_epi16 against (w, 0) pairs
            // multiplies the even int16 lanes only (exact 32-bit products): with stride 2 those are the inputs of
            // consecutive outputs; with stride 1 a second madd against (0, w) gives the odd outputs, and the two
            // are interleaved before the store.
            thread_local std::vector<std::int32_t> wlo, whi;
            wlo.resize(static_cast<std::size_t>(kh * kw));
            whi.resize(static_cast<std::size_t>(kh * kw));
            for (std::int64_t t = 0; t < kh * kw; ++t) {
                const auto u = static_cast<std::uint32_t>(static_cast<std::uint16_t>(wt[t]));
                wlo[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(u);
                whi[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(u << 16);
            }
            const __m512i even = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            const __m512i odd = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            for (std::int64_t oy = 0; oy < oh; ++oy) {
                for (std::int64_t ox0 = 0; ox0 < ow; ox0 += 32) {
                    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
                    for (std::int64_t ky = 0; ky < kh; ++ky) {
                        const std::int16_t* row = plane.data() + (oy * sy + ky * dy) * pw;
                        for (std::int64_t kx = 0; kx < kw; ++kx) {
                            const std::size_t t = static_cast<std::size_t>(ky * kw + kx);
                            const std::int16_t* src = row + kx * dx + sx * ox0;
                            const __m512i lo = _mm512_set1_epi32(wlo[t]);
                            if (sx == 1) {
                                const __m512i v = _mm512_loadu_si512(src);
                                a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(v, lo));
                                a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(v, _mm512_set1_epi32(whi[t])));
                            } else {
                                a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(_mm512_loadu_si512(src), lo));
                                a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(_mm512_loadu_si512(src + 32), lo));
                            }
                        }
                    }
                    if (sx == 1) {
                        const __m512i r0 = _mm512_permutex2var_epi32(a0, even, a1);
                        a1 = _mm512_permutex2var_epi32(a0, odd, a1);
                        a0 = r0;
                    }
                    _mm512_storeu_si512(acc.data() + ox0, a0);
                    _mm512_storeu_si512(acc.data() + ox0 + 16, a1);
                }
                const std::int64_t off = ((b * M + m) * oh + oy) * ow;
                void* out = y_signed ? static_cast<void*>(static_cast<std::int8_t*>(y) + off)
                                     : static_cast<void*>(static_cast<std::uint8_t*>(y) + off);
                requant_row(acc.data(), L.bias[static_cast<std::size_t>(m)], ow, m, L.requant, out, y_signed,
                            vectorized);
            }
            return;
        }
#endif
        for (std::int64_t oy = 0; oy < oh; ++oy) {
            std::fill(acc.begin(), acc.end(), 0);
            for (std::int64_t ky = 0; ky < kh; ++ky) {
                const std::int16_t* row = plane.data() + (oy * sy + ky * dy) * pw;
                for (std::int64_t kx = 0; kx < kw; ++kx) {
                    const std::int32_t wv = wt[ky * kw + kx];
                    const std::int16_t* src = row + kx * dx;
                    if (sx == 1) {
                        for (std::int64_t ox = 0; ox < ow; ++ox) acc[static_cast<std::size_t>(ox)] += wv * src[ox];
                    } else {
                        for (std::int64_t ox = 0; ox < ow; ++ox)
                            acc[static_cast<std::size_t>(ox)] += wv * src[ox * sx];
                    }
                }
            }
            const std::int64_t off = ((b * M + m) * oh + oy) * ow;
            void* out = y_signed ? static_cast<void*>(static_cast<std::int8_t*>(y) + off)
                                 : static_cast<void*>(static_cast<std::uint8_t*>(y) + off);
            requant_row(acc.data(), L.bias[static_cast<std::size_t>(m)], ow, m, L.requant, out, y_signed, vectorized);
        }
    });
}

#if QUANTSIM_INT_VNNI
// acc[r][j] = sum_q dot4(B[q][j], W[r][q]) for 8 rows and `cols` (multiple of 32) columns of one packed chunk.
void vnni_tile(const std::int8_t* W, std::int64_t k_padded, const std::uint8_t* B, std::int64_t cols_padded,
               std::int64_t cols, std::int32_t* acc) {
    const std::int64_t k4 = k_padded / 4;
    for (std::int64_t j = 0; j < cols; j += 32) {
        __m512i c[row_block][2];
        for (auto& r : c) r[0] = r[1] = _mm512_setzero_si512();
        for (std::int64_t q = 0; q < k4; ++q) {
            const std::uint8_t* bp = B + (q * cols_padded + j) * 4;
            const __m512i b0 = _mm512_loadu_si512(bp);
            const __m512i b1 = _mm512_loadu_si512(bp + 64);
            for (std::int64_t r = 0; r < row_block; ++r) {
                std::int32_t wq;
                std::memcpy(&wq, W + r * k_padded + q * 4, 4);
                const __m512i a = _mm512_set1_epi32(wq);
                c[r][0] = _mm512_dpbusd_epi32(c[r][0], b0, a);
                c[r][1] = _mm512_dpbusd_epi32(c[r][1], b1, a);
            }
        }
        for (std::int64_t r = 0; r < row_block; ++r) {
            _mm512_storeu_si512(acc + r * cols_padded + j, c[r][0]);
            _mm512_storeu_si512(acc + r * cols_padded + j + 16, c[r][1]);
        }
    }
}
#endif

}  // namespace

void qconv_run(const qconv_layer& L, std::int64_t n, std::int64_t h, std::int64_t w, const void* x, bool x_signed,
               std::int32_t x_zp, void* y, bool y_signed, bool vectorized) {
    if (L.depthwise) return qconv_depthwise(L, n, h, w, x, x_signed, x_zp, y, y_signed, vectorized);
    if (!vectorized || !L.int8_weights || !have_vnni()) {
        // Reference loops, parallel over images.
        const auto& g = L.geom;
        const std::int64_t C = g.in_channels, M = g.out_channels;
        const std::int64_t oh = g.conv_out(0, h), ow = g.conv_out(1, w);
        const std::int64_t in_img = C * h * w, out_img = M * oh * ow;
        parallel_for(n, [&](std::int64_t b) {  // one byte per element, signed or not
            qconv_ref(L, 1, h, w, static_cast<const char*>(x) + b * in_img, x_signed, x_zp,
                      static_cast<char*>(y) + b * out_img, y_signed);
        });
        return;
    }
#if QUANTSIM_INT_VNNI
    const auto& g = L.geom;
    const std::int64_t G = g.group, C = g.in_channels, M = g.out_channels, Cg = C / G, Mg = M / G;
    const std::int64_t oh = g.conv_out(0, h), ow = g.conv_out(1, w), P = oh * ow;
    const std::int64_t kh = g.kernel[0], kw = g.kernel[1];
    const std::int64_t chunks = (P + col_chunk - 1) / col_chunk;
    // uint8 view of the activations: int8 storage is offset by 128 (x ^ 0x80), the zero point with it.
    const std::int32_t zx = x_signed ? x_zp + 128 : x_zp;
    const auto zx_byte = static_cast<std::uint8_t>(zx);
    const bool pointwise = kh == 1 && kw == 1 && g.stride[0] == 1 && g.stride[1] == 1 && g.pad_begin[0] == 0 &&
                           g.pad_begin[1] == 0 && g.pad_end[0] == 0 && g.pad_end[1] == 0;
    bool any_wzp = false;
    for (auto z : L.weight_zp) any_wzp |= z != 0;
    parallel_for(n * G * chunks, [&](std::int64_t task) {
        const std::int64_t b = task / (G * chunks), gi = (task / chunks) % G, ch = task % chunks;
        const std::int64_t p0 = ch * col_chunk, cols = std::min(col_chunk, P - p0);
        const std::int64_t cols_padded = (cols + 31) / 32 * 32;
        thread_local std::vector<std::uint8_t> packed;
        thread_local std::vector<std::int32_t> acc, colsum;
        packed.resize(static_cast<std::size_t>(L.k_padded * cols_padded));
        acc.resize(static_cast<std::size_t>(row_block * cols_padded));
        colsum.assign(static_cast<std::size_t>(cols_padded), 0);
        const auto* xb = static_cast<const std::uint8_t*>(x) + (b * C + gi * Cg) * h * w;
        const std::uint8_t flip = x_signed ? 0x80 : 0;
        // Pack B: [k/4][cols_padded][4]; padding holds the zero point (contributes nothing once corrected).
#if defined(__AVX512VL__)
        if (pointwise) {
            // Four channel rows at a time, 16 pixels per step: each byte zero-extended into its quad position
            // (the same bytes as the scalar loop below: x ^ flip, the zero point past the last pixel, 0 in the
            // rows past k).
            const __m128i fl = _mm_set1_epi8(static_cast<char>(flip));
            const __m128i pad = _mm_set1_epi8(static_cast<char>(zx_byte ^ flip));
            for (std::int64_t q = 0; q < L.k_padded / 4; ++q) {
                std::uint8_t* dst = packed.data() + q * cols_padded * 4;
                for (std::int64_t j = 0; j < cols_padded; j += 16) {
                    const std::int64_t left = cols - j;
                    const auto m = static_cast<__mmask16>(left >= 16 ? 0xFFFF : left > 0 ? (1u << left) - 1 : 0);
                    __m512i v = _mm512_setzero_si512();
                    for (int r = 0; r < 4; ++r) {
                        const std::int64_t kk = 4 * q + r;
                        if (kk >= L.k) break;
                        const __m128i bytes = _mm_xor_si128(_mm_mask_loadu_epi8(pad, m, xb + kk * h * w + p0 + j), fl);
                        v = _mm512_or_si512(v, _mm512_slli_epi32(_mm512_cvtepu8_epi32(bytes), 8 * r));
                    }
                    _mm512_storeu_si512(dst + j * 4, v);
                }
                if (any_wzp)
                    for (std::int64_t r = 0; r < 4 && 4 * q + r < L.k; ++r)
                        for (std::int64_t j = 0; j < cols; ++j) colsum[static_cast<std::size_t>(j)] += dst[j * 4 + r];
            }
        }
        for (std::int64_t kk = pointwise ? L.k_padded : 0; kk < L.k_padded; ++kk) {
#else
        for (std::int64_t kk = 0; kk < L.k_padded; ++kk) {
#endif
            std::uint8_t* dst = packed.data() + (kk / 4) * cols_padded * 4 + (kk % 4);
            if (kk >= L.k) {
                for (std::int64_t j = 0; j < cols_padded; ++j) dst[j * 4] = 0;
                continue;
            }
            const std::int64_t c = kk / (kh * kw), ky = (kk / kw) % kh, kx = kk % kw;
            const std::uint8_t* plane = xb + c * h * w;
            if (pointwise) {
                const std::uint8_t* src = plane + p0;
                for (std::int64_t j = 0; j < cols; ++j) dst[j * 4] = static_cast<std::uint8_t>(src[j] ^ flip);
            } else {
                std::int64_t oy = p0 / ow, ox = p0 % ow;
                for (std::int64_t j = 0; j < cols; ++j) {
                    const std::int64_t iy = oy * g.stride[0] - g.pad_begin[0] + ky * g.dilation[0];
                    const std::int64_t ix = ox * g.stride[1] - g.pad_begin[1] + kx * g.dilation[1];
                    dst[j * 4] = (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                     ? static_cast<std::uint8_t>(plane[iy * w + ix] ^ flip)
                                     : zx_byte;
                    if (++ox == ow) {
                        ox = 0;
                        ++oy;
                    }
                }
            }
            for (std::int64_t j = cols; j < cols_padded; ++j) dst[j * 4] = zx_byte;
            if (any_wzp)
                for (std::int64_t j = 0; j < cols; ++j) colsum[static_cast<std::size_t>(j)] += dst[j * 4];
        }
        for (std::int64_t m0 = 0; m0 < Mg; m0 += row_block) {
            vnni_tile(L.weight.data() + (gi * L.m_padded + m0) * L.k_padded, L.k_padded, packed.data(), cols_padded,
                      cols_padded, acc.data());
            for (std::int64_t r = 0; r < row_block && m0 + r < Mg; ++r) {
                const std::int64_t m = gi * Mg + m0 + r;
                std::int32_t* a = acc.data() + r * cols_padded;
                const std::int32_t zw = L.weight_zp[static_cast<std::size_t>(m)];
                // sum (x - zx)(w - zw) = sum x w - zx sum w - zw sum x + k zx zw
                const std::int32_t bias = L.bias[static_cast<std::size_t>(m)] -
                                          zx * L.weight_sum[static_cast<std::size_t>(m)] +
                                          static_cast<std::int32_t>(L.k) * zx * zw;
                if (zw != 0)
                    for (std::int64_t j = 0; j < cols; ++j) a[j] -= zw * colsum[static_cast<std::size_t>(j)];
                const std::int64_t off = (b * M + m) * P + p0;
                void* out = y_signed ? static_cast<void*>(static_cast<std::int8_t*>(y) + off)
                                     : static_cast<void*>(static_cast<std::uint8_t*>(y) + off);
                requant_row(a, bias, cols, m, L.requant, out, y_signed, true);
            }
        }
    });
#endif
}

qmatmul_layer make_qmatmul(std::int64_t k, std::int64_t cols, const std::vector<std::int32_t>& b_kxn,
                           const std::vector<std::int32_t>& b_zp, std::vector<std::int32_t> bias,
                           requant_params requant) {
    qmatmul_layer L;
    L.k = k;
    L.cols = cols;
    conv_geometry g;
    g.in_channels = k;
    g.out_channels = cols;
    std::vector<std::int32_t> w(static_cast<std::size_t>(k * cols));
    for (std::int64_t i = 0; i < k; ++i)
        for (std::int64_t j = 0; j < cols; ++j)
            w[static_cast<std::size_t>(j * k + i)] = b_kxn[static_cast<std::size_t>(i * cols + j)];
    L.conv = make_qconv(g, w, b_zp, std::move(bias), std::move(requant));
    return L;
}

void qmatmul_run(const qmatmul_layer& L, std::int64_t rows, const void* a, bool a_signed, std::int32_t a_zp, void* y,
                 bool y_signed, bool vectorized) {
    // Each row of A is a 1x1 "image" with K channels: the NCHW layout of [rows, K, 1, 1] is A itself.
    qconv_run(L.conv, rows, 1, 1, a, a_signed, a_zp, y, y_signed, vectorized);
}

}  // namespace quantsim::detail
