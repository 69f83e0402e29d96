// 2-D convolution and transposed convolution on NCHW float tensors (1-D is 2-D with H = 1).
//
// conv2d_ref / conv_transpose2d_ref are the plain loops the tests trust. conv2d_kernel packs the weights once and
// picks an algorithm: a direct kernel for depthwise convs, a GEMM on the input itself for 1x1 stride-1 convs, and
// im2col tiles + the packed GEMM otherwise. Outputs go through an epilogue (bias, clamp, an elementwise program)
// while the tile is still in cache.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <quantsim/ir/kernels/pointwise.hpp>

namespace quantsim {

/// Static description of a convolution: channels, kernel, strides, dilations, pads (top/left = begin).
struct conv_geometry {
    std::int64_t in_channels = 0;   ///< C
    std::int64_t out_channels = 0;  ///< M
    std::int64_t group = 1;
    std::array<std::int64_t, 2> kernel{1, 1};
    std::array<std::int64_t, 2> stride{1, 1};
    std::array<std::int64_t, 2> dilation{1, 1};
    std::array<std::int64_t, 2> pad_begin{0, 0};
    std::array<std::int64_t, 2> pad_end{0, 0};

    /// Output spatial size of a conv for input size `in` along axis `i` (may be <= 0 for invalid inputs).
    std::int64_t conv_out(int i, std::int64_t in) const {
        const std::int64_t eff = dilation[i] * (kernel[i] - 1) + 1;
        return (in + pad_begin[i] + pad_end[i] - eff) / stride[i] + 1;
    }
};

/// Elementwise work done on conv / matmul outputs before they leave the cache. The output is viewed as [P, Q]
/// with P = N * M (image, channel) and Q = OH * OW.
struct conv_epilogue {
    float lo = -std::numeric_limits<float>::infinity();  ///< clamp applied right after the bias
    float hi = std::numeric_limits<float>::infinity();
    const pw_program* program = nullptr;  ///< then this program (may be nullptr)
    const float* const* inputs = nullptr;  ///< runtime inputs of the program
    /// Optional [N, C] factors: the conv runs on x[n, c] * input_scale[n, c] (a squeeze-excitation Mul folded into
    /// per-image weights). Not for depthwise convs.
    const float* input_scale = nullptr;
};

/// y[n, m, oy, ox] = bias[m] + sum w[m, c, ky, kx] * x[n, g*C/G + c, oy*s - p + ky*d, ox*s - p + kx*d].
void conv2d_ref(const conv_geometry& g, std::int64_t batch, std::int64_t h, std::int64_t w, const float* x,
                const float* weight, const float* bias, float* y);

/// ConvTranspose: weight [C, M/G, KH, KW]; y has size oh x ow (given, since output_padding/output_shape decide it).
void conv_transpose2d_ref(const conv_geometry& g, std::int64_t batch, std::int64_t h, std::int64_t w,
                          std::int64_t oh, std::int64_t ow, const float* x, const float* weight, const float* bias,
                          float* y);

/// depthwise: direct kernel per channel. pointwise_gemm: 1x1 stride 1, the input is B. indirect_gemm: stride 1,
/// B rows are shifted windows of a zero-padded input (no im2col matrix). im2col_gemm: everything else.
enum class conv_algo { depthwise, pointwise_gemm, im2col_gemm, indirect_gemm };

/// A convolution with packed weights. Thread-safe to run concurrently? No: one run at a time (scratch is per thread).
class conv2d_kernel {
public:
    /// weight [M, C/G, KH, KW]; bias [M] or nullptr.
    conv2d_kernel(const conv_geometry& g, const float* weight, const float* bias);

    conv_algo algo() const noexcept { return algo_; }
    const conv_geometry& geometry() const noexcept { return g_; }
    /// Changes the pads (auto_pad resolves them per input size); the packed weights stay.
    void set_padding(const std::array<std::int64_t, 2>& begin, const std::array<std::int64_t, 2>& end);
    /// x [batch, C, h, w] -> y [batch, M, oh, ow] with oh/ow from geometry().conv_out.
    void run(std::int64_t batch, std::int64_t h, std::int64_t w, const float* x, float* y,
             const conv_epilogue& ep = {}) const;

private:
    void run_depthwise(std::int64_t batch, std::int64_t h, std::int64_t w, std::int64_t oh, std::int64_t ow,
                       const float* x, float* y, const conv_epilogue& ep) const;
    // a_images: packed weights per image (input_scale), else nullptr (the shared packed_).
    void run_gemm(std::int64_t batch, std::int64_t h, std::int64_t w, std::int64_t oh, std::int64_t ow,
                  const float* x, float* y, const conv_epilogue& ep, const float* a_images) const;
    void run_indirect(std::int64_t batch, std::int64_t h, std::int64_t w, std::int64_t oh, std::int64_t ow,
                      const float* x, float* y, const conv_epilogue& ep, const float* a_images) const;
    void choose_algo();

    conv_geometry g_;
    conv_algo algo_;
    std::vector<float> packed_;  ///< per group: packed A (depthwise: raw weights [M, KH*KW])
    std::vector<float> bias_;    ///< [M] (zeros without bias)
    std::int64_t kdim_ = 0;      ///< C/G * KH * KW
};

/// Transposed convolution with packed weights (GEMM into columns, then col2im).
class conv_transpose2d_kernel {
public:
    /// weight [C, M/G, KH, KW]; bias [M] or nullptr.
    conv_transpose2d_kernel(const conv_geometry& g, const float* weight, const float* bias);
    const conv_geometry& geometry() const noexcept { return g_; }
    void set_padding(const std::array<std::int64_t, 2>& begin, const std::array<std::int64_t, 2>& end) {
        g_.pad_begin = begin;
        g_.pad_end = end;
    }
    void run(std::int64_t batch, std::int64_t h, std::int64_t w, std::int64_t oh, std::int64_t ow, const float* x,
             float* y, const conv_epilogue& ep = {}) const;

private:
    conv_geometry g_;
    std::vector<float> packed_;  ///< per group: packed (W_g)^T, rows (m, ky, kx), cols c
    std::vector<float> bias_;
    std::int64_t rows_ = 0;  ///< M/G * KH * KW
};

/// Applies bias/clamp/program to a finished [batch*M, Q] output (used by kernels without a fused epilogue path).
void apply_conv_epilogue(float* y, std::int64_t P, std::int64_t Q, std::int64_t channels, const float* bias,
                         const conv_epilogue& ep);

}  // namespace quantsim
