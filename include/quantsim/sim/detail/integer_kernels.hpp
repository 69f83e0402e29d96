// Integer kernels of the integer executor (sim/integer_executor.hpp): convolution and matrix products on uint8
// activations and int8 weights with int32 accumulation, followed by a requantization epilogue. Each has a plain
// reference loop that the tests compare the vectorized (AVX-512 VNNI) version against.
#pragma once

#include <cstdint>
#include <vector>

#include <quantsim/ir/kernels/conv.hpp>
#include <quantsim/sim/integer_arith.hpp>

namespace quantsim::detail {

/// How an int32 accumulator (bias included) becomes an output integer, per output channel.
struct requant_params {
    bool tflite = false;
    std::vector<float> scale;                   ///< onnxruntime: per channel (size 1 = per tensor)
    std::vector<fixed_multiplier> multiplier;   ///< tflite: per channel (size 1 = per tensor)
    std::int32_t zp = 0;
    std::int32_t qmin = 0, qmax = 255;          ///< the output grid, narrowed by a fused activation

    std::int32_t apply(std::int32_t acc, std::int64_t channel) const noexcept {
        if (tflite) {
            const auto& m = multiplier[multiplier.size() == 1 ? 0 : static_cast<std::size_t>(channel)];
            return std::clamp(tflite_multiply(acc, m) + zp, qmin, qmax);
        }
        const float s = scale[scale.size() == 1 ? 0 : static_cast<std::size_t>(channel)];
        return ort_requantize(acc, s, zp, qmin, qmax);
    }
};

/// Requantizes n accumulators of one channel (acc[i] + bias) into out (uint8 when !is_signed, else int8).
void requant_row(const std::int32_t* acc, std::int32_t bias, std::int64_t n, std::int64_t channel,
                 const requant_params& r, void* out, bool out_signed, bool vectorized);

/// A convolution on quantized NCHW data. Activations are handled as uint8 (int8 storage is offset by 128, which
/// leaves every product sum unchanged once the zero point moves with it).
struct qconv_layer {
    conv_geometry geom;
    bool depthwise = false;
    std::int64_t k = 0;        ///< C/G * KH * KW
    std::int64_t k_padded = 0; ///< k rounded up to 4 (VNNI quads)
    std::int64_t m_padded = 0; ///< M/G rounded up to the kernel's row block, per group
    std::vector<std::int8_t> weight;    ///< [G][m_padded][k_padded], zero padded (int8 weights)
    std::vector<std::int16_t> weight16; ///< [M][k] (w - zp_w): reference loops and depthwise kernel
    std::vector<std::int32_t> weight_sum;  ///< [M] sum of int8 weights (zero-point correction)
    std::vector<std::int32_t> weight_zp;   ///< [M] weight zero points
    std::vector<std::int32_t> bias;        ///< [M] int32 bias (0 when absent)
    bool int8_weights = true;              ///< false: weights do not fit int8 (uint8 grids): reference loops only
    requant_params requant;
};

/// Builds the packed layer from int weights [M, C/G, KH, KW] (values in the weight grid) and their zero points.
qconv_layer make_qconv(const conv_geometry& g, const std::vector<std::int32_t>& weights,
                       const std::vector<std::int32_t>& weight_zp, std::vector<std::int32_t> bias,
                       requant_params requant);

/// Runs the conv on x [N, C, H, W] (uint8, or int8 when x_signed) with zero point x_zp, writing y [N, M, OH, OW].
void qconv_run(const qconv_layer& L, std::int64_t n, std::int64_t h, std::int64_t w, const void* x, bool x_signed,
               std::int32_t x_zp, void* y, bool y_signed, bool vectorized);

/// Plain reference: every output is requant(sum (x - x_zp) * (w - w_zp) + bias).
void qconv_ref(const qconv_layer& L, std::int64_t n, std::int64_t h, std::int64_t w, const void* x, bool x_signed,
               std::int32_t x_zp, void* y, bool y_signed);

/// Matrix product y[m, j] = requant(sum_k (a[m, k] - a_zp) * (b[k, j] - b_zp[j]) + bias[j]), A activations
/// [rows, K], B weights [K, cols] (per-column zero points). Implemented as a 1x1 convolution of A^T.
struct qmatmul_layer {
    qconv_layer conv;  ///< M = cols, C = K, 1x1
    std::int64_t k = 0, cols = 0;
};
qmatmul_layer make_qmatmul(std::int64_t k, std::int64_t cols, const std::vector<std::int32_t>& b_kxn,
                           const std::vector<std::int32_t>& b_zp, std::vector<std::int32_t> bias,
                           requant_params requant);
void qmatmul_run(const qmatmul_layer& L, std::int64_t rows, const void* a, bool a_signed, std::int32_t a_zp, void* y,
                 bool y_signed, bool vectorized);

/// True when this CPU and build have AVX-512 VNNI (the vectorized int8 product).
bool have_vnni() noexcept;

}  // namespace quantsim::detail
