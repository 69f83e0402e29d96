// Inference-mode normalizations.
#pragma once

#include <cstdint>

namespace quantsim {

/// BatchNormalization (inference): y = (x - mean) / sqrt(var + eps) * scale + bias, x viewed as [n, c, inner].
/// Folds into a per-channel affine first, like a conv would.
void batch_norm(const float* x, float* y, std::int64_t n, std::int64_t c, std::int64_t inner, const float* scale,
                const float* bias, const float* mean, const float* var, float epsilon);

/// Per-channel affine y = x * s[c] + t[c], x viewed as [n, c, inner].
void channel_affine(const float* x, float* y, std::int64_t n, std::int64_t c, std::int64_t inner, const float* s,
                    const float* t);

/// LayerNormalization over the trailing `size` elements of each of `rows` rows; scale/bias have `size` elements
/// (bias may be nullptr). mean_out / inv_std_out (optional, may be nullptr) receive per-row statistics.
void layer_norm(const float* x, float* y, std::int64_t rows, std::int64_t size, const float* scale,
                const float* bias, float epsilon, float* mean_out = nullptr, float* inv_std_out = nullptr);

}  // namespace quantsim
