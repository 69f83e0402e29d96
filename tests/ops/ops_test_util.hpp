// Helpers for the op / executor tests: seeded random tensors (the seed is printed through SCOPED_TRACE), tolerant
// comparisons, and a tiny graph writer.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/ir/graph.hpp>

namespace quantsim::test {

/// Relative tolerance for float32 kernels that reorder sums (GEMM blocking, partial sums).
inline constexpr float kSumTol = 2e-5f;
/// Tolerance for the vectorized transcendental approximations (fast_exp and friends).
inline constexpr float kApproxTol = 4e-6f;
/// Base seed; every test derives its own and prints it.
inline constexpr unsigned kSeed = 20240611u;

inline std::vector<float> random_floats(std::size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

inline tensor random_tensor(const shape_t& shape, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return tensor::from(random_floats(static_cast<std::size_t>(n), rng, lo, hi), shape);
}

/// |a - b| <= atol + rtol * |b| elementwise; reports the first offending index.
inline ::testing::AssertionResult all_close(const float* a, const float* b, std::int64_t n, float rtol,
                                            float atol = 1e-6f) {
    for (std::int64_t i = 0; i < n; ++i) {
        const float d = std::fabs(a[i] - b[i]);
        if (!(d <= atol + rtol * std::fabs(b[i])))
            return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i] << " (diff " << d
                                                 << ")";
    }
    return ::testing::AssertionSuccess();
}
inline ::testing::AssertionResult all_close(const tensor& a, const tensor& b, float rtol, float atol = 1e-6f) {
    if (a.shape() != b.shape())
        return ::testing::AssertionFailure() << "shapes " << to_string(a.shape()) << " vs " << to_string(b.shape());
    return all_close(a.f32(), b.f32(), a.numel(), rtol, atol);
}

inline value_info vinfo(const std::string& name, shape_t shape, dtype t = dtype::float32,
                        std::vector<std::string> dim_params = {}) {
    value_info v;
    v.name = name;
    v.type = t;
    v.shape = std::move(shape);
    v.dim_params = std::move(dim_params);
    v.shape_known = true;
    return v;
}

/// A node with attributes.
inline node make_node(std::string op, std::vector<std::string> inputs, std::vector<std::string> outputs,
                      std::map<std::string, attribute_value, std::less<>> attrs = {}, std::string name = {}) {
    node n;
    n.op_type = std::move(op);
    n.name = name.empty() ? n.op_type + "_" + (outputs.empty() ? std::string("x") : outputs[0]) : std::move(name);
    n.inputs = std::move(inputs);
    n.outputs = std::move(outputs);
    n.attrs = std::move(attrs);
    return n;
}

inline std::vector<std::int64_t> ints(std::initializer_list<std::int64_t> v) { return v; }

/// One-node graph: inputs x0..xk (runtime) plus params, output "y".
inline graph single_op_graph(const std::string& op, const std::vector<tensor>& runtime_inputs,
                             const std::vector<std::pair<std::string, tensor>>& params,
                             std::map<std::string, attribute_value, std::less<>> attrs = {},
                             std::vector<std::string> input_order = {}, int num_outputs = 1) {
    graph g;
    std::vector<std::string> ins;
    for (std::size_t i = 0; i < runtime_inputs.size(); ++i) {
        const std::string name = "x" + std::to_string(i);
        g.inputs.push_back(vinfo(name, runtime_inputs[i].shape(), runtime_inputs[i].type()));
        ins.push_back(name);
    }
    for (const auto& [name, t] : params) {
        g.params[name] = t;
        ins.push_back(name);
    }
    if (!input_order.empty()) ins = input_order;
    std::vector<std::string> outs;
    for (int i = 0; i < num_outputs; ++i) outs.push_back(i == 0 ? "y" : "y" + std::to_string(i));
    g.nodes.push_back(make_node(op, ins, outs, std::move(attrs), "the_" + op));
    for (const auto& o : outs) {
        value_info v;
        v.name = o;
        g.outputs.push_back(v);
    }
    return g;
}

/// Runs a one-node graph and returns its outputs.
inline std::vector<tensor> run_single(const std::string& op, const std::vector<tensor>& runtime_inputs,
                                      const std::vector<std::pair<std::string, tensor>>& params = {},
                                      std::map<std::string, attribute_value, std::less<>> attrs = {},
                                      std::vector<std::string> input_order = {}, int num_outputs = 1,
                                      int threads = 0) {
    executor_options o;
    o.num_threads = threads;
    executor ex(single_op_graph(op, runtime_inputs, params, std::move(attrs), std::move(input_order), num_outputs), o);
    return ex.run(runtime_inputs);
}

inline tensor i64(std::vector<std::int64_t> v, shape_t shape) { return tensor::from(v, std::move(shape)); }
inline tensor i64(std::vector<std::int64_t> v) {
    const auto n = static_cast<std::int64_t>(v.size());
    return tensor::from(v, {n});
}

}  // namespace quantsim::test
