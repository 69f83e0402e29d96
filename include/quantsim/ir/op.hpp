// Operators: a schema (arity, shape inference, kernel factory) per op type, kept in a registry. Virtual interfaces
// live here, at graph level; the numeric kernels behind them are plain functions (include/quantsim/ir/kernels/).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/graph.hpp>
#include <quantsim/ir/node.hpp>

namespace quantsim {

/// An executable instance of one node. Created once per executor (so it may pre-pack constant weights), run many
/// times. run() must be safe to call from one thread at a time; it may use OpenMP inside.
class op_kernel {
public:
    virtual ~op_kernel() = default;
    /// inputs[i] is nullptr for an omitted optional input. outputs has node.outputs.size() entries to fill.
    virtual void run(const std::vector<const tensor*>& inputs, std::vector<tensor>& outputs) = 0;
};

/// What shape inference and kernel creation know about a node's inputs.
struct op_inputs_info {
    std::vector<const value_info*> infos;  ///< nullptr when unknown or omitted
    std::vector<const tensor*> constants;  ///< parameter / constant-folded values, nullptr when not constant
};

struct op_schema {
    std::string op_type;
    std::string domain;  ///< "" = default ONNX domain
    int min_inputs = 1;
    int max_inputs = 1;
    int min_outputs = 1;
    int max_outputs = 1;
    /// Output types/shapes from input types/shapes (and constant inputs, e.g. Reshape's shape). Throws graph_error
    /// or shape_error naming the node when inputs do not fit.
    std::function<std::vector<value_info>(const node&, const op_inputs_info&)> infer;
    /// Makes the kernel; validates attributes (unsupported values are unsupported_error naming the node).
    std::function<std::unique_ptr<op_kernel>(const node&, const op_inputs_info&)> create;
    /// True for ops that only move or select data (Reshape, Transpose, Concat, MaxPool, Slice, ...): their outputs
    /// lie on their input's quantization grid.
    bool moves_data = false;
};

/// The set of known ops. op_registry::global() holds every built-in op (registered explicitly on first use, never
/// by static initializers, so static linking keeps them). Users may add their own.
class op_registry {
public:
    static op_registry& global();
    void add(op_schema schema);  ///< replaces an existing schema of the same (domain, op_type)
    const op_schema* find(std::string_view op_type, std::string_view domain = "") const;
    std::vector<std::string> op_types() const;

private:
    std::vector<op_schema> schemas_;
};

/// Registers quantsim's built-in ops into `registry` (done for global() automatically).
void register_builtin_ops(op_registry& registry);

}  // namespace quantsim
