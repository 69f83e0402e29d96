// Runs a graph. Intermediates are freed after their last consumer, so peak memory follows the live set. Hooks see
// (and may modify in place) chosen values as they are produced: calibration, simulated quantization and PTQ use them.
#pragma once

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

namespace quantsim {

struct executor_options {
    int num_threads = 0;  ///< 0 = default_num_threads()
    const op_registry* registry = nullptr;  ///< nullptr = op_registry::global()
};

/// Called when a value is produced: model inputs (producer == nullptr) and node outputs. The tensor may be modified
/// in place or replaced (same shape and dtype); later nodes read the modified value.
using value_hook = std::function<void(std::string_view value_name, const node* producer, tensor& value)>;

class executor {
public:
    /// Prepares a kernel per node (validating attributes and pre-packing parameters). The graph is copied.
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
    int add_hook(value_hook hook, std::set<std::string, std::less<>> values = {});
    void remove_hook(int id);
    void clear_hooks();

    /// Replaces a parameter's value (same shape) and rebuilds the kernels that read it.
    void update_param(const std::string& name, tensor value);
    const tensor& param(const std::string& name) const;

    /// Peak bytes of live intermediate tensors during the last run (excludes parameters).
    std::size_t last_peak_bytes() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace quantsim
