// Elementwise ops with numpy broadcasting on any dtype, and dtype conversion.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>

namespace quantsim {

/// Numpy broadcast of two shapes (-1 = unknown dims allowed: they broadcast like an unknown size). Throws
/// shape_error naming `what` when the shapes are incompatible.
shape_t broadcast_shapes(const shape_t& a, const shape_t& b, const std::string& what);

enum class binary_op : std::uint8_t {
    add, sub, mul, div, pow, min, max, mod, fmod,
    equal, less, less_equal, greater, greater_equal,  // -> bool
    logical_and, logical_or, logical_xor,            // bool x bool -> bool
    bit_and, bit_or, bit_xor,
};
bool is_comparison(binary_op op) noexcept;
bool is_logical(binary_op op) noexcept;

/// out = a (op) b with broadcasting. a and b have the same dtype (bool for logical ops); out is allocated with the
/// broadcast shape and dtype (bool for comparisons and logical ops). `what` names the node in errors.
tensor binary(binary_op op, const tensor& a, const tensor& b, const std::string& what);

/// out = cond ? x : y with broadcasting (cond bool).
tensor where(const tensor& cond, const tensor& x, const tensor& y, const std::string& what);

/// Copies `x` broadcast to `shape` (Expand).
tensor expand(const tensor& x, const shape_t& shape, const std::string& what);

/// Converts to another dtype (float -> int truncates toward zero, like ONNX Cast; bool is x != 0).
tensor cast(const tensor& x, dtype to);

namespace detail {

/// Iterates over an output of shape `out` with K broadcast inputs: calls fn(offsets, out_offset, n, inner_strides)
/// for runs of n output elements along the innermost (coalesced) dimension; input k advances by inner_strides[k]
/// (0 or 1) per element. Runs are handed out in parallel when `parallel`.
struct broadcast_run {
    std::int64_t out_offset;
    std::int64_t n;
    std::int64_t in_offset[3];
    std::int64_t in_stride[3];
};
template <class F>
void for_each_broadcast(const shape_t& out, const std::vector<const shape_t*>& inputs, bool parallel, F&& fn);

}  // namespace detail
}  // namespace quantsim

#include <quantsim/ir/kernels/detail/broadcast_impl.hpp>
