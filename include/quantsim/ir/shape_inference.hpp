// Static shape inference with a symbolic batch dimension and constant folding of shape computations.
//
// graph::infer_shapes() walks the nodes in order and calls each op schema's `infer`. Beside the shapes it keeps two
// tables that make Shape -> Gather -> Concat -> Reshape chains resolvable (docs/ir.md, "Shape inference"):
//   - constants: values computable before running the model (parameters excluded), found by running the kernels of
//     nodes whose inputs are all constant;
//   - shape values: 1-D (or scalar) integer values known element by element, each element either a number or a
//     symbolic dimension such as the batch "N" (the output of Shape on [N, 3, 48, W] is [N, 3, 48, ?]).
// Reshape, Expand and ConstantOfShape read shape values to produce symbolic output shapes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/graph.hpp>

namespace quantsim {

/// One element of a partially known integer value: a number, a named symbolic dimension, or unknown.
struct sym_int {
    std::int64_t value = 0;  ///< meaningful when known
    std::string symbol;      ///< name of a symbolic dimension ("N"), empty when unknown or known
    bool known = false;

    static sym_int number(std::int64_t v) { return {v, {}, true}; }
    static sym_int symbolic(std::string name) { return {0, std::move(name), false}; }
    static sym_int unknown() { return {}; }
    bool is_symbolic() const noexcept { return !known && !symbol.empty(); }
    bool operator==(const sym_int& o) const {
        return known == o.known && (known ? value == o.value : symbol == o.symbol && !symbol.empty());
    }
};

/// A partially known 1-D or scalar integer value.
struct shape_value {
    std::vector<sym_int> elems;
    bool scalar = false;  ///< rank 0 (one element) instead of rank 1

    bool fully_known() const noexcept {
        for (const auto& e : elems)
            if (!e.known) return false;
        return true;
    }
};

/// What shape inference found, besides the value_infos it wrote into the graph.
struct shape_inference_result {
    std::map<std::string, tensor> constants;         ///< folded node outputs (parameters not repeated)
    std::map<std::string, shape_value> shape_values;  ///< partially known integer values (constants included)
    std::vector<std::string> unknown_ops;             ///< op types without a schema (non-strict mode only)
    std::vector<std::string> errors;                  ///< per-node errors (tolerate_errors mode only)
};

/// Runs shape inference on `g` (fills g.value_infos and the shapes of g.outputs) and returns the tables above.
shape_inference_result run_shape_inference(graph& g, const shape_inference_options& options = {});

/// Output dims of a Reshape of `input` (shape + dim_params) to the partially known `target` (ONNX rules: 0 copies
/// the input dim unless allowzero, -1 is inferred, using symbolic products where dims are symbolic). Returns
/// std::nullopt when nothing can be said; throws shape_error naming `what` when the sizes cannot match.
std::optional<value_info> reshape_symbolic(const value_info& input, const shape_value& target, bool allowzero,
                                           const std::string& what);

}  // namespace quantsim
