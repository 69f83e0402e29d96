// Structural comparison of two graphs for round-trip tests: nodes, attributes, parameters (bit for bit), shapes.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <variant>

#include <quantsim/ir/graph.hpp>

namespace quantsim::test {

inline bool same_tensor(const tensor& a, const tensor& b) {
    return a.type() == b.type() && a.shape() == b.shape() && (a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
}

inline bool same_attr(const attribute_value& a, const attribute_value& b) {
    if (a.index() != b.index()) return false;
    return std::visit(
        [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, tensor>)
                return same_tensor(x, std::get<tensor>(b));
            else
                return x == std::get<T>(b);
        },
        a);
}

inline void expect_same_info(const value_info& a, const value_info& b) {
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.type, b.type) << a.name;
    EXPECT_EQ(a.shape_known, b.shape_known) << a.name;
    if (a.shape_known && b.shape_known) {
        EXPECT_EQ(a.shape, b.shape) << a.name;
        for (std::size_t i = 0; i < a.shape.size(); ++i) EXPECT_EQ(a.dim_param(i), b.dim_param(i)) << a.name << " dim " << i;
    }
}

/// Expects `b` (e.g. `a` exported and re-imported) to have the same inputs, outputs, nodes and parameters.
inline void expect_same_graph(const graph& a, const graph& b) {
    ASSERT_EQ(a.inputs.size(), b.inputs.size());
    for (std::size_t i = 0; i < a.inputs.size(); ++i) expect_same_info(a.inputs[i], b.inputs[i]);
    ASSERT_EQ(a.outputs.size(), b.outputs.size());
    for (std::size_t i = 0; i < a.outputs.size(); ++i) expect_same_info(a.outputs[i], b.outputs[i]);
    ASSERT_EQ(a.nodes.size(), b.nodes.size());
    for (std::size_t i = 0; i < a.nodes.size(); ++i) {
        const node& x = a.nodes[i];
        const node& y = b.nodes[i];
        SCOPED_TRACE(x.describe());
        EXPECT_EQ(x.name, y.name);
        EXPECT_EQ(x.op_type, y.op_type);
        EXPECT_EQ(x.domain, y.domain);
        EXPECT_EQ(x.inputs, y.inputs);
        EXPECT_EQ(x.outputs, y.outputs);
        ASSERT_EQ(x.attrs.size(), y.attrs.size());
        for (const auto& [k, v] : x.attrs) {
            auto it = y.attrs.find(k);
            ASSERT_NE(it, y.attrs.end()) << "attribute " << k;
            EXPECT_TRUE(same_attr(v, it->second)) << "attribute " << k;
        }
    }
    ASSERT_EQ(a.params.size(), b.params.size());
    for (const auto& [k, t] : a.params) {
        auto it = b.params.find(k);
        ASSERT_NE(it, b.params.end()) << "parameter " << k;
        EXPECT_TRUE(same_tensor(t, it->second)) << "parameter " << k << " differs";
    }
    for (const auto& [k, v] : a.value_infos) {
        if (!v.shape_known) continue;
        const value_info* w = b.info(k);
        if (w && w->shape_known) expect_same_info(v, *w);
    }
}

}  // namespace quantsim::test
