// Writing graphs in C++: graph_builder b; auto x = b.input("x", {-1, 3, 8, 8}); auto w = b.param("w", weights);
// auto y = b.node("Conv", {x, w}, {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}); b.output(y); graph g = b.build();
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/graph.hpp>
#include <quantsim/ir/node.hpp>

namespace quantsim {

/// A value handle: just its name. Converts from strings so existing names can be used directly; an empty value
/// is an omitted optional input.
struct value_ref {
    std::string name;
    value_ref() = default;
    value_ref(std::string n) : name(std::move(n)) {}        // NOLINT: implicit by design
    value_ref(const char* n) : name(n ? n : "") {}           // NOLINT
    value_ref(std::string_view n) : name(n) {}               // NOLINT
    operator const std::string&() const noexcept { return name; }  // NOLINT
    operator std::string_view() const noexcept { return name; }     // NOLINT
};

using attribute_map = std::map<std::string, attribute_value, std::less<>>;

/// Options of one builder node. Converts from a string (the node name), and chains:
/// b.node("Add", {a, c}, {}, node_options("add").outputs({"y"})).
struct node_options {
    std::string name;        ///< node name; empty = "<op>_<k>"
    std::string domain;      ///< "" = default ONNX domain
    int num_outputs = 1;     ///< outputs to create
    std::vector<std::string> output_names;  ///< explicit output names (size must be num_outputs, or empty)

    node_options() = default;
    node_options(const char* node_name) : name(node_name ? node_name : "") {}  // NOLINT: implicit by design
    node_options(std::string node_name) : name(std::move(node_name)) {}       // NOLINT
    /// Names the outputs (and sets their number).
    node_options& outputs(std::vector<std::string> names) {
        num_outputs = static_cast<int>(names.size());
        output_names = std::move(names);
        return *this;
    }
    node_options& count(int n) {
        num_outputs = n;
        return *this;
    }
    node_options& in_domain(std::string d) {
        domain = std::move(d);
        return *this;
    }
};

class graph_builder {
public:
    explicit graph_builder(std::string graph_name = "graph", std::int64_t opset = 13);

    /// A model input. Dimensions of -1 are unknown; dim 0 of -1 is the symbolic batch, named by batch_param
    /// unless dim_params says otherwise (dim_params: one name per dim, "" for none).
    value_ref input(std::string name, shape_t shape, dtype type = dtype::float32,
                    std::vector<std::string> dim_params = {});
    /// A parameter (weights, constants). The tensor is shared, not copied.
    value_ref param(std::string name, tensor value);
    /// A float32 constant parameter with a generated name ("const_<k>").
    value_ref constant(tensor value);
    value_ref constant_ints(std::vector<std::int64_t> values);        ///< int64 [n]
    value_ref constant_scalar(float value);                            ///< float32 []

    /// Adds a node with one output; returns the output.
    value_ref node(std::string op_type, std::vector<value_ref> inputs, attribute_map attrs = {},
                   node_options options = {});
    /// Adds a node with options.num_outputs outputs; returns them.
    std::vector<value_ref> node_multi(std::string op_type, std::vector<value_ref> inputs, attribute_map attrs,
                                      node_options options);

    /// Marks a value as a model output (optionally giving its type/shape; shape inference fills it otherwise).
    void output(const value_ref& value);

    /// The graph so far (for inspection while building).
    const graph& peek() const noexcept { return g_; }

    /// Finishes: validates structure (and, with a registry that knows the ops, op arity and shapes) and returns
    /// the graph. The builder is empty afterwards.
    graph build(bool validate_ops = false);

    std::string batch_param = "N";

private:
    std::string fresh(std::string_view base);
    graph g_;
    std::size_t counter_ = 0;
};

}  // namespace quantsim
