// Whether a graph treats the samples of a batch independently: every value that depends on the model inputs'
// data has the batch as its axis 0, and sample i of it depends only on sample i of the inputs. Running such a
// graph on a batch or on pieces of it (split along axis 0) gives the same per-sample values, which lets
// calibration run large batches as cache-sized micro-batches (sim/quantsim.hpp, calibration_options::micro_batch).
//
// The analysis is conservative: it needs shape inference's symbolic batch dimension (the inputs' first dim_param)
// and accepts an op only where its attributes keep axis 0 apart (Softmax over axis >= 1, Transpose with perm[0] =
// 0, Reshape whose output keeps the batch as dim 0, ...). Any other op on sample data, an unknown shape, or a
// value whose first dimension is not the batch gives `false` with the reason.
#pragma once

#include <string>

#include <quantsim/ir/graph.hpp>

namespace quantsim {

struct batch_independence {
    bool independent = false;
    std::string batch_dim;  ///< the inputs' symbolic batch dimension (when found)
    std::string reason;     ///< why not (names the node or input), empty when independent
    explicit operator bool() const noexcept { return independent; }
};

/// Analyses `g`, which must carry shape inference's value_infos (graph::infer_shapes, or a quant_sim's model).
batch_independence samples_are_independent(const graph& g);

}  // namespace quantsim
