// Matching chains of nodes (Conv -> BatchNormalization, Conv -> Relu|Clip, Add -> Relu, ...) and rewiring the graph
// safely after a rewrite: bypassing a node, replacing a matched chain by one node, reading constant inputs.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <quantsim/ir/graph.hpp>

namespace quantsim {

/// One link of a chain: the op types it accepts ("Relu|Clip" = either; "*" or empty = any) and an optional extra
/// condition on the node.
struct op_pattern {
    std::vector<std::string> op_types;
    std::function<bool(const graph&, const node&)> predicate;

    op_pattern() = default;
    op_pattern(const char* ops) : op_pattern(std::string_view(ops)) {}  // NOLINT: implicit by design
    op_pattern(std::string_view ops);                                    // NOLINT: implicit by design
    op_pattern(const std::string& ops) : op_pattern(std::string_view(ops)) {}  // NOLINT
    op_pattern(std::string_view ops, std::function<bool(const graph&, const node&)> pred)
        : op_pattern(ops) {
        predicate = std::move(pred);
    }

    bool matches(const graph& g, const node& n) const;
};

struct chain_match_options {
    /// The next node must read the previous node's output as its FIRST input (the data input: Conv's output is
    /// BatchNormalization's X, not its scale). false: any input.
    bool data_input_only = true;
    /// Allow a node to belong to several matches (Add -> Add -> Add with {"Add", "Add"} gives [0,1] and [1,2]).
    bool allow_overlap = false;
};

/// Chains of nodes matching `chain` link by link, where each link's first output is read by exactly one node (the
/// next link) and is not a graph output: folding or fusing the chain then never changes a value someone else sees.
/// Returns node indices per match, in node order of the first link.
std::vector<std::vector<std::size_t>> match_chains(const graph& g, const std::vector<op_pattern>& chain,
                                                   const chain_match_options& options = {});

/// Number of readers of `value`: nodes (each once) plus one per graph output of that name.
std::size_t use_count(const graph& g, std::string_view value);

/// The parameter tensor behind `value`, or nullptr (not a parameter).
const tensor* param_value(const graph& g, std::string_view value);

/// The float32 scalar parameter (one element, any rank) read by input `input` of `n`, if it is one.
std::optional<float> scalar_param_input(const graph& g, const node& n, std::size_t input);

/// Removes node `index`, handing its first output's readers its input `input` instead (Identity, Dropout, a no-op
/// Reshape, ...). When that output is a graph output, the producer of `input` is renamed to produce the graph
/// output's name, so the model's interface keeps its names; if that is impossible (the input is a model input, a
/// parameter or itself a graph output) the graph is left unchanged and false is returned. Unused params are pruned.
bool bypass_node(graph& g, std::size_t index, std::size_t input = 0);

/// Replaces the nodes of `chain` (indices, e.g. from match_chains) by `replacement`. An empty replacement.outputs
/// takes the outputs of the chain's last node, so readers and graph outputs stay connected. The chain's other
/// outputs must have no readers outside the chain (invalid_argument otherwise). The replacement goes where the
/// last chain node was; the graph is re-sorted if its inputs come later. Unused params are pruned.
/// Returns the replacement's index.
std::size_t replace_chain(graph& g, const std::vector<std::size_t>& chain, node replacement);

}  // namespace quantsim
