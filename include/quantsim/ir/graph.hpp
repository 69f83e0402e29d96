// The graph IR: named values (model inputs, outputs, parameters, intermediates) and nodes in topological order.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/node.hpp>

namespace quantsim {

/// Type and shape of a value. A dimension of -1 is unknown or symbolic; dim_params[i] then names it (e.g. "N" for
/// the batch), or is empty when the dimension is simply unknown. dim_params is empty or has shape.size() entries.
struct value_info {
    std::string name;
    dtype type = dtype::float32;
    shape_t shape;
    std::vector<std::string> dim_params;
    bool shape_known = false;  ///< false until the importer or shape inference filled `shape`
};

/// A computation graph. Nodes are kept in topological order (call topological_sort() after edits that may break it;
/// validate() checks). Parameters (ONNX initializers and Constant nodes) live in `params`, keyed by value name.
class graph {
public:
    std::string name;
    std::int64_t opset = 13;  ///< default-domain opset the graph's ops follow
    std::vector<value_info> inputs;   ///< model inputs, in order (never parameters)
    std::vector<value_info> outputs;  ///< model outputs, in order
    std::map<std::string, tensor> params;
    std::vector<node> nodes;
    std::map<std::string, value_info> value_infos;  ///< known types/shapes of intermediates (shape inference)

    // ---- queries (linear scans: graphs have hundreds of nodes; build a graph_index for heavy use) -------------
    bool is_param(std::string_view value) const { return params.find(std::string(value)) != params.end(); }
    bool is_input(std::string_view value) const;
    bool is_output(std::string_view value) const;
    /// Index into `nodes` of the node producing `value`, or -1 (inputs, params, unknown names).
    std::ptrdiff_t producer(std::string_view value) const;
    /// Indices of nodes that read `value`, in node order (a node reading it twice is listed once).
    std::vector<std::size_t> consumers(std::string_view value) const;
    /// Node index by node name, or -1.
    std::ptrdiff_t find_node(std::string_view node_name) const;
    /// Type/shape of any value (input, output, param, intermediate), or nullptr when unknown.
    const value_info* info(std::string_view value) const;

    // ---- edits --------------------------------------------------------------------------------------------------
    /// A value or node name not used yet, derived from `base`.
    std::string unique_name(std::string_view base) const;
    /// Appends a node (name made unique if empty or taken) and returns a reference valid until the next edit.
    node& add_node(node n);
    /// Removes nodes by index (any order). Values they produced become dangling unless rewired.
    void remove_nodes(std::vector<std::size_t> indices);
    /// Makes every reader of `from` (nodes and graph outputs) read `to` instead.
    void replace_uses(std::string_view from, std::string_view to);
    /// Drops parameters no node reads.
    void prune_unused_params();
    /// Reorders nodes topologically (stable where possible). Throws graph_error naming a node on a cycle.
    void topological_sort();

    // ---- checks and inference -------------------------------------------------------------------------------------
    /// Checks: unique node names and value producers, every input defined (model input, param or earlier node
    /// output), graph outputs produced, no cycle, known op types, shapes consistent. Throws graph_error naming the
    /// node and the problem.
    void validate() const;
    /// Static shape inference over all nodes; model-input dims with dim_params stay symbolic (-1 + name).
    void infer_shapes();
    /// Readable multi-line summary: inputs, outputs, op counts, parameters, then one line per node.
    std::string summary() const;
    /// Total number of parameter elements.
    std::int64_t num_param_elements() const;
};

}  // namespace quantsim
