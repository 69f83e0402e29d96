// Helpers shared by the PTQ passes: reading and (copy-on-write) writing layer parameters, layer geometry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/graph.hpp>

namespace quantsim::detail {

/// The float32 parameter behind input `input` of `n`, or nullptr (absent, computed at run time, other dtype).
const tensor* ptq_float_param(const graph& g, const node& n, std::size_t input);

/// Stores `value` as the parameter behind input `input` of node `index`. The old tensor is never written: when only
/// this node reads the parameter it is replaced under its name, otherwise (shared weight, absent input) a new
/// parameter named after `base` is added and the node alone is rewired to it.
void ptq_set_param(graph& g, std::size_t index, std::size_t input, std::string_view base, tensor value);

/// A float scalar parameter (Clip min/max), or nullopt when absent or not a constant one-element tensor.
std::optional<float> ptq_scalar_param(const graph& g, const node& n, std::size_t input);

/// True when the Conv has no padding at all (pads all zero, auto_pad NOTSET or VALID).
bool ptq_zero_padding(const node& conv);

/// Conv geometry from its weight parameter [M, C/group, k...]: nullopt when the weight is not a float parameter.
struct conv_shape {
    std::int64_t out_channels = 0, in_channels = 0, group = 1, kernel = 1;  ///< kernel = product of spatial dims
    bool depthwise() const noexcept { return group > 1 && group == out_channels && group == in_channels; }
};
std::optional<conv_shape> ptq_conv_shape(const graph& g, const node& conv);

}  // namespace quantsim::detail
