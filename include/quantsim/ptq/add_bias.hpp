// Zero biases for layers without one, so that bias correction (and high-bias folding) has a parameter to adjust.
#pragma once

#include <cstddef>

#include <quantsim/ir/graph.hpp>

namespace quantsim {

/// Gives every Conv, ConvTranspose and Gemm whose weight is a float32 parameter and that has no bias input a zero
/// float32 bias parameter ([M], M = output channels; Gemm's C is added as [N] and beta left as is, since C = 0).
/// MatMul is not changed: a bias would need a new Add node, which adds a quantized intermediate value; bias
/// correction instead uses the constant of an Add that already follows a MatMul (docs/ptq.md). Returns how many
/// biases were added.
std::size_t add_zero_biases(graph& g);

}  // namespace quantsim
