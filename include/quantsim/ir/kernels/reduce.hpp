// Reductions over a set of axes (ReduceMean, ReduceSum, ... and ArgMax/ArgMin).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>

namespace quantsim {

enum class reduce_kind { sum, mean, max, min, prod, l1, l2, log_sum, log_sum_exp, sum_square };

/// Reduces `x` (float32 / float64 / int64 / int32) over `axes` (normalized, any order; empty = all axes). The result
/// keeps reduced dims as 1 when keepdims. `what` names the node in errors.
tensor reduce(reduce_kind kind, const tensor& x, std::vector<int> axes, bool keepdims, const std::string& what);

/// Index of the first (or last, select_last) max / min along `axis`, int64.
tensor arg_reduce(bool is_max, const tensor& x, int axis, bool keepdims, bool select_last, const std::string& what);

}  // namespace quantsim
