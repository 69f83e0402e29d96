// Runs a graph. Intermediates are freed after their last consumer, so peak memory follows the live set. Hooks see
// (and may modify in place) chosen values as they are produced: calibration, simulated quantization and PTQ use them.
//
// Before the first run the executor plans the steps: nodes whose inputs are all parameters are folded into
// constants once; chains of elementwise nodes are fused into their producer (Conv/ConvTranspose/MatMul/Gemm, with
// a following BatchNormalization or per-channel affine folded into the weights) or into one standalone pass. A
// value that is hooked, fetched or a model output is never fused away, so hooks and fetches see exactly the
// unfused graph's values. The plan is rebuilt when hooks or the fetch set change.
//
// Value quantizers (quant_sim's activations) fake-quantize chosen values as they are produced. A quantized value
// does not end a fused group: its fake_quant becomes an instruction of the group's program, applied to exactly the
// float value the unfused graph would produce there (a producer's leading affine / clamp is only folded when no
// quantizer sits on the producer's output), so Conv -> BatchNormalization -> Relu -> fake-quant is one step.
// Quantizers that cannot join a program (per-channel or >16-bit grids, outputs of non-fusable nodes, model inputs)
// run right after their producing step. Hooks and fetches see the quantized value.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/graph.hpp>
#include <quantsim/ir/op.hpp>
#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/rounding.hpp>

namespace quantsim {

/// A fake quantizer on a value: q = clamp(round(x / s) + zp, qmin, qmax), x' = (q - zp) * s (quant/fake_quant.hpp).
struct value_quantizer {
    quant_params params;    ///< any granularity valid for the value's shape (per-tensor ones fuse into programs)
    quant_options options;  ///< rounding, arithmetic, stochastic seed (element index = flat index in the value)
};

using value_quantizer_map = std::map<std::string, value_quantizer, std::less<>>;

struct executor_options {
    int num_threads = 0;  ///< 0 = default_num_threads(); the kernels' OpenMP team size for every run
    const op_registry* registry = nullptr;  ///< nullptr = op_registry::global()
    bool fuse = true;      ///< fuse elementwise chains and BatchNormalization into producers (see above)
    bool profile = false;  ///< time every step (profile(), profile_table())
    /// Fake quantizers by value name (see above); also settable later with set_value_quantizers.
    value_quantizer_map quantizers{};
};

/// Called when a value is produced: model inputs (producer == nullptr) and node outputs. The tensor may be modified
/// in place or replaced (same shape and dtype); later nodes read the modified value.
using value_hook = std::function<void(std::string_view value_name, const node* producer, tensor& value)>;

/// Time spent in one step of the plan (a node, or a fused group of nodes).
struct step_profile {
    std::vector<std::string> nodes;  ///< node names, producer first
    std::string label;               ///< op types joined by '+', e.g. "Conv+BatchNormalization+Relu"
    std::int64_t calls = 0;
    double total_ms = 0.0;
};

class executor {
public:
    /// Prepares a kernel per node (validating attributes and pre-packing parameters). The graph is copied.
    /// Throws unsupported_error for ops without a schema, graph_error for undefined values or cycles.
    explicit executor(graph g, executor_options options = {});
    ~executor();
    executor(executor&&) noexcept;
    executor& operator=(executor&&) noexcept;

    const graph& model() const noexcept;

    /// Runs on positional inputs (graph().inputs order); returns the model outputs in order.
    std::vector<tensor> run(const std::vector<tensor>& inputs);
    /// Runs on named inputs; returns the named values in `fetch` (model outputs or intermediates; empty = outputs).
    std::map<std::string, tensor> run(const std::map<std::string, tensor>& feeds,
                                      const std::vector<std::string>& fetch = {});

    /// Calls `hook` for every value whose name is in `values` (empty set = every value). Returns an id.
    /// Values computed from parameters alone are folded at construction and never reach hooks.
    int add_hook(value_hook hook, std::set<std::string, std::less<>> values = {});
    void remove_hook(int id);
    void clear_hooks();

    /// Replaces the value quantizers (empty = none). Names must be values of the graph (invalid_argument otherwise);
    /// values folded to constants are never quantized (as they never reach hooks). Steps whose recipe does not change
    /// keep their kernels; a change of grids only (same values quantized) updates the programs in place.
    void set_value_quantizers(value_quantizer_map quantizers);
    const value_quantizer_map& value_quantizers() const noexcept;

    /// Replaces a parameter's value (same shape) and rebuilds the kernels that read it.
    void update_param(const std::string& name, tensor value);
    const tensor& param(const std::string& name) const;

    /// Peak bytes of live intermediate tensors during the last run (excludes parameters, model inputs and kernel
    /// scratch; views such as Reshape outputs count once with the tensor they view).
    std::size_t last_peak_bytes() const noexcept;

    /// Per-step timing of the runs since construction or reset_profile() (needs executor_options::profile).
    std::vector<step_profile> profile() const;
    /// The same, summed per label and sorted by time: one line per label with steps, calls, ms and share.
    std::string profile_table() const;
    void reset_profile();

    /// The current plan: one line per step (fused groups list their nodes). Plans first if needed.
    std::string plan_summary();
    /// Number of steps of the current plan (nodes minus folded minus fused-away). Plans first if needed.
    std::size_t num_steps();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace quantsim
