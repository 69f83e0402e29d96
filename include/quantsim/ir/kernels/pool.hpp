// Pooling on NCHW float tensors (1-D pooling is 2-D with H = 1).
#pragma once

#include <array>
#include <cstdint>

namespace quantsim {

struct pool_geometry {
    std::array<std::int64_t, 2> kernel{1, 1};
    std::array<std::int64_t, 2> stride{1, 1};
    std::array<std::int64_t, 2> dilation{1, 1};
    std::array<std::int64_t, 2> pad_begin{0, 0};
    std::array<std::int64_t, 2> pad_end{0, 0};
    bool ceil_mode = false;
    bool count_include_pad = false;  ///< AveragePool: divide by the full kernel area even where it hangs over pads

    /// Output size along axis i for input size `in` (ONNX rule: with ceil_mode, a window must start inside the
    /// input or the left padding).
    std::int64_t out_size(int i, std::int64_t in) const {
        const std::int64_t eff = dilation[i] * (kernel[i] - 1) + 1;
        const std::int64_t span = in + pad_begin[i] + pad_end[i] - eff;
        std::int64_t o = (ceil_mode ? (span + stride[i] - 1) / stride[i] : span / stride[i]) + 1;
        if (ceil_mode && (o - 1) * stride[i] >= in + pad_begin[i]) --o;
        return o;
    }
};

/// planes = N * C; x [planes, h, w] -> y [planes, oh, ow].
void max_pool2d(const pool_geometry& g, std::int64_t planes, std::int64_t h, std::int64_t w, const float* x,
                float* y);
void avg_pool2d(const pool_geometry& g, std::int64_t planes, std::int64_t h, std::int64_t w, const float* x,
                float* y);
/// Mean / max over each plane of `size` elements.
void global_avg_pool(std::int64_t planes, std::int64_t size, const float* x, float* y);
void global_max_pool(std::int64_t planes, std::int64_t size, const float* x, float* y);

}  // namespace quantsim
