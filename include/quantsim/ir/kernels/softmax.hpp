// Softmax / LogSoftmax along one axis of a float tensor viewed as [outer, n, inner].
#pragma once

#include <cstdint>

namespace quantsim {

void softmax(const float* x, float* y, std::int64_t outer, std::int64_t n, std::int64_t inner, bool log = false);
/// Plain reference (std::exp, double sums).
void softmax_ref(const float* x, float* y, std::int64_t outer, std::int64_t n, std::int64_t inner, bool log = false);
/// Hardmax: 1 at the first maximum along the axis, 0 elsewhere.
void hardmax(const float* x, float* y, std::int64_t outer, std::int64_t n, std::int64_t inner);

}  // namespace quantsim
