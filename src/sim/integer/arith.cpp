// ONNX Runtime's QLinearSoftmax arithmetic (the exp table and one row), include/quantsim/sim/integer_arith.hpp.
#include <quantsim/sim/integer_arith.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace quantsim {

std::vector<float> ort_softmax_table(float x_scale, std::int64_t reduce_len, bool is_signed) {
    if (!(x_scale > 0) || !std::isfinite(x_scale))
        QUANTSIM_THROW(invalid_argument, "softmax table: input scale must be finite and positive, got ", x_scale);
    if (reduce_len <= 0) QUANTSIM_THROW(invalid_argument, "softmax table: reduced length must be positive");
    // Keeps sum(exp) below the float maximum: the table is shifted up by as much headroom as D values allow.
    double shift = std::log(static_cast<double>(std::numeric_limits<float>::max() / static_cast<float>(reduce_len)));
    shift = std::max(0.0, shift - 5.0) / static_cast<double>(x_scale);
    std::vector<float> table(256);
    for (int i = 0; i < 256; ++i) {
        const double e = std::exp((static_cast<double>(i) - 255 + shift) * static_cast<double>(x_scale));
        const auto index = static_cast<std::uint8_t>(is_signed ? i - 128 : i);
        table[index] = static_cast<float>(e);
    }
    return table;
}

void ort_softmax_row(const std::int32_t* x, std::int32_t* y, std::int64_t d, const std::vector<float>& table,
                     float y_scale, std::int32_t y_zp, bool is_signed) {
    if (d <= 0) return;
    // ONNX Runtime multiplies by floor(1 / y_scale) instead of dividing by y_scale.
    const float inv = std::floor(1.0f / y_scale);
    const std::int32_t xmax = *std::max_element(x, x + d);
    float sum = 0;
    if (!is_signed) {
        const float* t = table.data() + (255 - xmax);
        for (std::int64_t i = 0; i < d; ++i) sum += t[x[i]];
        if (sum == 0) return;  // ONNX Runtime leaves the row unwritten
        for (std::int64_t i = 0; i < d; ++i) {
            const auto q = static_cast<std::uint32_t>(static_cast<std::int32_t>(std::nearbyint(t[x[i]] * inv / sum)) + y_zp);
            y[i] = q > 255 ? 255 : static_cast<std::int32_t>(q);
        }
        return;
    }
    const std::int32_t adjust = 127 - xmax;
    for (std::int64_t i = 0; i < d; ++i) sum += table[static_cast<std::uint8_t>(adjust + x[i])];
    if (sum == 0) return;
    for (std::int64_t i = 0; i < d; ++i) {
        const float t = table[static_cast<std::uint8_t>(adjust + x[i])];
        const std::int32_t q = static_cast<std::int32_t>(std::nearbyint(t * inv / sum)) + y_zp;
        // ONNX Runtime's int8 path clamps only above 255 and then narrows to int8 (wraps), kept as is.
        y[i] = q > 255 ? static_cast<std::int8_t>(255) : static_cast<std::int8_t>(q);
    }
}

}  // namespace quantsim
