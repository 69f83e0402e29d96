// Resize (ONNX opset 19 semantics) of the two innermost dims of a [planes, h, w] float tensor.
#pragma once

#include <cstdint>

namespace quantsim {

enum class resize_mode { nearest, linear, cubic };
enum class resize_coord { half_pixel, pytorch_half_pixel, align_corners, asymmetric, tf_crop_and_resize,
                          half_pixel_symmetric };
enum class resize_nearest { round_prefer_floor, round_prefer_ceil, floor, ceil };

struct resize_params {
    resize_mode mode = resize_mode::nearest;
    resize_coord coord = resize_coord::half_pixel;
    resize_nearest nearest = resize_nearest::round_prefer_floor;
    float cubic_a = -0.75f;
    bool exclude_outside = false;
    float extrapolation_value = 0.0f;
    float scale[2] = {1.0f, 1.0f};  ///< output / input along h, w (as given by `scales`, or out/in for `sizes`)
    float roi_start[2] = {0.0f, 0.0f};  ///< tf_crop_and_resize only (normalized)
    float roi_end[2] = {1.0f, 1.0f};
};

/// Input coordinate of output index `o` along an axis (ONNX coordinate_transformation_mode).
float resize_source_coord(const resize_params& p, int axis, std::int64_t o, std::int64_t in, std::int64_t out);

/// x [planes, h, w] -> y [planes, oh, ow].
void resize2d(const resize_params& p, std::int64_t planes, std::int64_t h, std::int64_t w, std::int64_t oh,
              std::int64_t ow, const float* x, float* y);

}  // namespace quantsim
