// The graph IR: named values (model inputs, outputs, parameters, intermediates) and nodes in topological order.
// docs/ir.md describes the data model and the canonical form of each op.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/node.hpp>

namespace quantsim {

class op_registry;

/// Type and shape of a value. A dimension of -1 is unknown or symbolic; dim_params[i] then names it (e.g. "N" for
/// the batch), or is empty when the dimension is simply unknown. dim_params is empty or has shape.size() entries.
struct value_info {
    std::string name;
    dtype type = dtype::float32;
    shape_t shape;
    std::vector<std::string> dim_params;
    bool shape_known = false;  ///< false until the importer or shape inference filled `shape`

    /// dim_params[i], or "" when there is none.
    std::string_view dim_param(std::size_t i) const noexcept {
        return i < dim_params.size() ? std::string_view(dim_params[i]) : std::string_view();
    }
    /// True when the shape is known and has no -1 dimension.
    bool fully_known() const noexcept {
        if (!shape_known) return false;
        for (auto d : shape)
            if (d < 0) return false;
        return true;
    }
};

/// "float32 [N, 3, 224, 224]" (unknown dims print as '?', an unknown shape as "[?]").
std::string to_string(const value_info& info);

/// What graph::validate() checks besides structure (names, definitions, order, cycles).
struct validate_options {
    const op_registry* registry = nullptr;  ///< nullptr = op_registry::global()
    bool check_ops = true;     ///< every op type has a schema, and the node's arity fits it
    bool check_shapes = true;  ///< re-run shape inference and compare with the recorded value_infos
};

/// Options of graph::infer_shapes(); shape_inference.hpp has the detailed entry point.
struct shape_inference_options {
    const op_registry* registry = nullptr;  ///< nullptr = op_registry::global()
    /// Run kernels on nodes whose inputs are all constant (parameters or folded values) so that values such as
    /// Reshape targets become known. Only outputs up to this many elements are folded (0 disables folding).
    std::int64_t max_folded_elements = std::int64_t{1} << 16;
    /// false: a node whose op has no schema gets unknown output shapes instead of an unsupported_error.
    bool strict = true;
    /// true: an error while inferring one node (a shape mismatch, a failing kernel) leaves that node's outputs
    /// unknown and is recorded in shape_inference_result::errors instead of being thrown (for diagnostics).
    bool tolerate_errors = false;
};

/// Options of graph::summary().
struct summary_options {
    bool list_params = true;   ///< one line per parameter
    bool list_nodes = true;    ///< one line per node
    std::size_t max_attr_chars = 80;  ///< attribute text per node is cut after this many characters
};

/// A computation graph. Nodes are kept in topological order (call topological_sort() after edits that may break it;
/// validate() checks). Parameters (ONNX initializers and Constant nodes) live in `params`, keyed by value name.
class graph {
public:
    std::string name;
    std::int64_t opset = 13;  ///< default-domain opset of the source model; kernels never depend on it (docs/ir.md)
    std::vector<value_info> inputs;   ///< model inputs, in order (never parameters)
    std::vector<value_info> outputs;  ///< model outputs, in order
    std::map<std::string, tensor> params;
    std::vector<node> nodes;
    std::map<std::string, value_info> value_infos;  ///< known types/shapes of intermediates (shape inference)
    /// Opset versions of non-default domains the nodes use (e.g. {"com.microsoft", 1}); kept for export.
    std::map<std::string, std::int64_t> domain_opsets;

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
    /// Type/shape of any value (input, output, param, intermediate), or nullptr when unknown. For a parameter the
    /// info describes the tensor itself. The pointer is valid until the next edit of the graph.
    const value_info* info(std::string_view value) const;
    /// True when `value` names a model input, a parameter or a node output.
    bool is_defined(std::string_view value) const;

    // ---- edits --------------------------------------------------------------------------------------------------
    /// A value or node name not used yet, derived from `base`.
    std::string unique_name(std::string_view base) const;
    /// Appends a node (name made unique if empty or taken) and returns a reference valid until the next edit.
    node& add_node(node n);
    /// Inserts a node before position `pos` (name made unique if empty or taken).
    node& insert_node(std::size_t pos, node n);
    /// Adds a parameter under a new unique name derived from `base`; returns the name.
    std::string add_param(std::string_view base, tensor value);
    /// Removes nodes by index (any order). Values they produced become dangling unless rewired.
    void remove_nodes(std::vector<std::size_t> indices);
    /// Makes every reader of `from` (nodes and graph outputs) read `to` instead.
    void replace_uses(std::string_view from, std::string_view to);
    /// Renames a value everywhere (producer output, readers, graph inputs/outputs, params, value_infos).
    void rename_value(std::string_view from, std::string_view to);
    /// Drops parameters no node reads (and that are not graph outputs). Returns how many were dropped.
    std::size_t prune_unused_params();
    /// Drops nodes whose outputs nobody reads (repeatedly), then unused params. Returns how many nodes went.
    std::size_t remove_dead_nodes();
    /// Reorders nodes topologically (stable where possible). Throws graph_error naming a node on a cycle.
    void topological_sort();

    // ---- checks and inference -------------------------------------------------------------------------------------
    /// Checks: unique node names and value producers, every input defined (model input, param or earlier node
    /// output), graph outputs produced, no cycle, known op types, shapes consistent. Throws graph_error naming the
    /// node and the problem.
    void validate() const;
    void validate(const validate_options& options) const;
    /// Static shape inference over all nodes; model-input dims with dim_params stay symbolic (-1 + name).
    /// Fills value_infos (and the shapes of graph outputs).
    void infer_shapes();
    void infer_shapes(const shape_inference_options& options);
    /// Readable multi-line summary: inputs, outputs, op counts, parameters, then one line per node.
    std::string summary() const;
    std::string summary(const summary_options& options) const;
    /// Total number of parameter elements.
    std::int64_t num_param_elements() const;

private:
    // Value infos of parameters, built on demand by info() and re-checked against the tensor on every call.
    // Guarded so that concurrent const readers are safe. A copy starts with an empty cache of its own, so graph
    // keeps its implicit copy and move operations.
    struct param_info_cache {
        struct state {
            std::mutex mutex;
            std::map<std::string, value_info, std::less<>> infos;
        };
        std::unique_ptr<state> p = std::make_unique<state>();
        param_info_cache() = default;
        param_info_cache(const param_info_cache&) : p(std::make_unique<state>()) {}
        param_info_cache& operator=(const param_info_cache&) {
            p = std::make_unique<state>();
            return *this;
        }
        param_info_cache(param_info_cache&&) noexcept = default;
        param_info_cache& operator=(param_info_cache&&) noexcept = default;
    };
    mutable param_info_cache param_cache_;
};

/// O(1) producer/consumer lookups for a graph that is not being edited (invalid after any edit).
class graph_index {
public:
    explicit graph_index(const graph& g);
    /// Node index producing `value`, or -1.
    std::ptrdiff_t producer(std::string_view value) const;
    /// Nodes reading `value`, in node order, each once.
    const std::vector<std::size_t>& consumers(std::string_view value) const;
    /// Number of readers of `value`, graph outputs counted as readers.
    std::size_t use_count(std::string_view value) const;
    bool is_output(std::string_view value) const;

private:
    std::unordered_map<std::string, std::size_t> producer_;
    std::unordered_map<std::string, std::vector<std::size_t>> consumers_;
    std::unordered_map<std::string, std::size_t> output_uses_;
    std::vector<std::size_t> none_;
};

}  // namespace quantsim
