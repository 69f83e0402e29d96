// Built-in graph passes. Each is a quantsim::pass (pass.hpp) usable with the pass manager, and a plain function.
#pragma once

#include <cstdint>
#include <string>

#include <quantsim/ir/graph.hpp>
#include <quantsim/ir/pass.hpp>

namespace quantsim {

/// Removes Identity nodes, rewiring their readers (graph output names are kept). Returns whether anything changed.
bool remove_identity(graph& g);

/// Removes nodes whose outputs nobody reads, then unused parameters.
bool eliminate_dead_nodes(graph& g);

/// Replaces every node whose outputs are computable from parameters alone (constant subgraphs, shape arithmetic
/// on fully known shapes) by parameters holding the values, using the registry's kernels. Outputs larger than
/// `max_elements` elements are left alone.
bool fold_constants(graph& g, const op_registry* registry = nullptr, std::int64_t max_elements = std::int64_t{1} << 20);

/// Folds inference-mode BatchNormalization into the preceding Conv, ConvTranspose or Gemm when the BN is the
/// producer's only reader and all weights are parameters: W' = W * gamma / sqrt(var + eps) per output channel,
/// b' = (b - mean) * gamma / sqrt(var + eps) + beta (computed in double). Returns the number of folded pairs.
std::size_t fold_batch_norm(graph& g);

/// Pass objects for the functions above.
class remove_identity_pass final : public pass {
public:
    std::string name() const override { return "remove_identity"; }
    bool run(graph& g) override { return remove_identity(g); }
};
class eliminate_dead_nodes_pass final : public pass {
public:
    std::string name() const override { return "eliminate_dead_nodes"; }
    bool run(graph& g) override { return eliminate_dead_nodes(g); }
};
class fold_constants_pass final : public pass {
public:
    explicit fold_constants_pass(const op_registry* registry = nullptr, std::int64_t max_elements = std::int64_t{1} << 20)
        : registry_(registry), max_elements_(max_elements) {}
    std::string name() const override { return "fold_constants"; }
    bool run(graph& g) override { return fold_constants(g, registry_, max_elements_); }

private:
    const op_registry* registry_;
    std::int64_t max_elements_;
};
class fold_batch_norm_pass final : public pass {
public:
    std::string name() const override { return "fold_batch_norm"; }
    bool run(graph& g) override { return fold_batch_norm(g) > 0; }
};

}  // namespace quantsim
