// Backward kernels of the autograd tape (ir/autograd.hpp). Each optimized kernel has a plain reference version that
// the tests compare against; the reference versions are the formulas in docs/qat.md written as loops.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/kernels/conv.hpp>
#include <quantsim/ir/node.hpp>

namespace quantsim::detail {

/// Conv geometry of a node from its attributes, the weight shape [M, C/G, kh, kw] (or [M, C/G, k] for 1-D) and the
/// input spatial size (auto_pad needs it). 1-D convs become 2-D with H = 1. Errors name the node.
conv_geometry conv_geometry_of(const node& n, const shape_t& x_shape, const shape_t& w_shape);

/// Gradients of y = conv(x, w) + b for y's gradient dy ([batch, M, oh, ow]). dx, dw, db may each be nullptr (not
/// wanted); dx and dw are overwritten, not accumulated.
void conv2d_backward_ref(const conv_geometry& g, std::int64_t batch, std::int64_t h, std::int64_t w, const float* x,
                         const float* weight, const float* dy, float* dx, float* dw, float* db);
/// Same contract: direct loops for depthwise convs, im2col + GEMM / GEMM + col2im otherwise, on the persistent pool.
/// Results do not depend on the thread count (partial weight gradients are summed in a fixed order).
void conv2d_backward(const conv_geometry& g, std::int64_t batch, std::int64_t h, std::int64_t w, const float* x,
                     const float* weight, const float* dy, float* dx, float* dw, float* db);

/// Sums a gradient of a broadcast result back to an input's shape (numpy broadcasting rules).
tensor reduce_to_shape(const tensor& grad, const shape_t& shape);
/// Plain loop version of reduce_to_shape.
tensor reduce_to_shape_ref(const tensor& grad, const shape_t& shape);

}  // namespace quantsim::detail
