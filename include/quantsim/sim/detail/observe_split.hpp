// Calibration's observation of one value on the executor's threads (src/sim/quantsim.cpp); declared here so that
// tests can check that splitting never changes an observer's state.
#pragma once

#include <quantsim/core/tensor.hpp>
#include <quantsim/quant/observers.hpp>

namespace quantsim::detail {

/// Observes `value` with `obs`, in contiguous parts on kernel_threads() threads when it is large (empty copies of
/// the observer, merged in order; parts start at multiples of 16384 values so that sampled histograms count the
/// same blocks). The result equals obs.observe(value) for every observer but the moving average, which observes
/// serially. Any error re-runs the serial observe, which throws naming the element and leaves `obs` unchanged.
void observe_split(observer& obs, const tensor& value);

}  // namespace quantsim::detail
