// Graph rewriting: the pass interface and the pass manager that runs passes in order and validates the graph after
// each one. docs/passes.md explains the API with examples; pattern.hpp has the matching and rewiring helpers.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <quantsim/ir/graph.hpp>

namespace quantsim {

/// A graph-to-graph rewrite. run() returns whether it changed the graph. A pass may leave the graph with nodes out
/// of topological order only if it calls graph::topological_sort() itself; the pass manager validates afterwards.
class pass {
public:
    virtual ~pass() = default;
    virtual std::string name() const = 0;
    virtual bool run(graph& g) = 0;
};

/// A pass made from a function, for one-off rewrites: make_pass("drop_identity", [](graph& g) { ...; return true; }).
std::unique_ptr<pass> make_pass(std::string name, std::function<bool(graph&)> fn);

struct pass_manager_options {
    const op_registry* registry = nullptr;  ///< nullptr = op_registry::global()
    bool validate = true;              ///< validate after each pass (structure, and ops/shapes below)
    bool check_ops = true;             ///< validation checks op schemas and arity
    bool check_shapes = true;          ///< validation re-runs shape inference and compares recorded shapes
    bool infer_shapes = true;          ///< after a pass that changed the graph, refresh value_infos
    int max_iterations = 1;            ///< >1: repeat the whole list until no pass changes the graph (fixed point)
};

/// What one pass did in the last pass_manager::run().
struct pass_record {
    std::string name;
    bool changed = false;
    std::size_t nodes_before = 0;
    std::size_t nodes_after = 0;
    double seconds = 0;
};

/// Runs passes in order. After each pass that changed the graph it validates it; any error (from the pass or from
/// validation) is rethrown with the same quantsim error type and a message that starts with "pass '<name>': ",
/// followed by the original message naming the node.
class pass_manager {
public:
    explicit pass_manager(pass_manager_options options = {}) : options_(options) {}

    pass_manager& add(std::unique_ptr<pass> p);
    pass_manager& add(std::string name, std::function<bool(graph&)> fn) { return add(make_pass(std::move(name), std::move(fn))); }
    template <class Pass, class... Args>
    pass_manager& emplace(Args&&... args) {
        return add(std::make_unique<Pass>(std::forward<Args>(args)...));
    }

    /// Runs every pass (repeating up to max_iterations while something changes). Returns whether any pass changed
    /// the graph. On an exception the graph is left as the failing pass left it.
    bool run(graph& g);

    std::size_t size() const noexcept { return passes_.size(); }
    const std::vector<pass_record>& records() const noexcept { return records_; }
    /// One line per pass run: name, changed or not, node count change, time.
    std::string report() const;

private:
    pass_manager_options options_;
    std::vector<std::unique_ptr<pass>> passes_;
    std::vector<pass_record> records_;
};

}  // namespace quantsim
