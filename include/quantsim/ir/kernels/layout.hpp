// Data movement on tensors of any dtype: transpose, slice, concat, gather, pad, tile.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>

namespace quantsim {

/// out.shape[i] = x.shape[perm[i]] (perm must be a permutation of [0, rank)).
tensor transpose(const tensor& x, const std::vector<std::int64_t>& perm);

/// One sliced axis: `count` elements starting at `start` with `step` (step != 0; negative steps walk backwards).
struct slice_axis {
    int axis;
    std::int64_t start, step, count;
};
/// ONNX Slice index arithmetic: clamps start/end for the given dim and step; returns {start, count}.
slice_axis resolve_slice(int axis, std::int64_t dim, std::int64_t start, std::int64_t end, std::int64_t step);
tensor slice(const tensor& x, const std::vector<slice_axis>& axes);

/// Concatenates along `axis` (normalized); all inputs share dtype and all other dims.
tensor concat(const std::vector<const tensor*>& inputs, int axis, const std::string& what);

/// Gathers along `axis` with int64/int32 indices (negative indices count from the end).
tensor gather(const tensor& data, const tensor& indices, int axis, const std::string& what);

enum class pad_mode { constant, reflect, edge, wrap };
/// pads: begin then end per axis (2 * rank entries, negative values crop). value: float for constant mode (cast to
/// the tensor's dtype).
tensor pad(const tensor& x, const std::vector<std::int64_t>& pads, pad_mode mode, double value,
           const std::string& what);

/// Repeats x `repeats[i]` times along each axis.
tensor tile(const tensor& x, const std::vector<std::int64_t>& repeats);

}  // namespace quantsim
