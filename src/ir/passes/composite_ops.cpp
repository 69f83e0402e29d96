// Decomposed hard-swish / hard-sigmoid recognition (include/quantsim/ir/composite_ops.hpp).
#include <quantsim/ir/composite_ops.hpp>

#include <algorithm>
#include <cmath>
#include <set>

#include <quantsim/ir/pattern.hpp>

namespace quantsim {

namespace {

bool near(float v, float want) { return std::fabs(v - want) <= 1e-6f * std::fabs(want); }

std::optional<float> scalar_attr(const node& n, const char* key) {
    auto it = n.attrs.find(key);
    if (it == n.attrs.end()) return std::nullopt;
    if (auto* f = std::get_if<float>(&it->second)) return *f;
    if (auto* i = std::get_if<std::int64_t>(&it->second)) return static_cast<float>(*i);
    return std::nullopt;
}

struct matcher {
    const graph& g;
    graph_index index;
    std::set<std::size_t> taken;

    explicit matcher(const graph& gr) : g(gr), index(gr) {}

    // The one node reading `value` (which must not be a graph output), if `value` has exactly one reader.
    std::optional<std::size_t> sole_reader(const std::string& value) const {
        if (index.use_count(value) != 1 || index.is_output(value)) return std::nullopt;
        const auto& c = index.consumers(value);
        if (c.size() != 1 || taken.count(c[0])) return std::nullopt;
        return c[0];
    }

    // For a binary node reading `value`: the other operand, if `value` is exactly one of its two inputs.
    std::optional<std::string> other_operand(const node& n, const std::string& value) const {
        if (n.inputs.size() != 2 || n.outputs.size() != 1) return std::nullopt;
        if (n.inputs[0] == value && n.inputs[1] != value) return n.inputs[1];
        if (n.inputs[1] == value && n.inputs[0] != value) return n.inputs[0];
        return std::nullopt;
    }

    // Add(x, 3): the non-constant operand x.
    std::optional<std::string> add_three(const node& n) const {
        if (n.op_type != "Add" || !n.domain.empty() || n.inputs.size() != 2 || n.outputs.size() != 1) return std::nullopt;
        for (std::size_t i = 0; i < 2; ++i) {
            auto c = scalar_param_input(g, n, i);
            if (c && near(*c, 3.0f) && !g.is_param(n.inputs[1 - i])) return n.inputs[1 - i];
        }
        return std::nullopt;
    }

    // Clip(v, 0, 6), bounds as attributes (opset < 11) or scalar inputs.
    bool clip_0_6(const node& n, const std::string& v) const {
        if (n.op_type != "Clip" || !n.domain.empty() || n.inputs.empty() || n.inputs[0] != v || n.outputs.size() != 1)
            return false;
        std::optional<float> lo = scalar_attr(n, "min"), hi = scalar_attr(n, "max");
        if (n.inputs.size() > 1 && !n.inputs[1].empty()) lo = scalar_param_input(g, n, 1);
        if (n.inputs.size() > 2 && !n.inputs[2].empty()) hi = scalar_param_input(g, n, 2);
        return lo && hi && *lo == 0.0f && near(*hi, 6.0f);
    }

    // Div(v, 6) or Mul(v, 1/6) with v the numerator.
    bool divide_by_six(const node& n, const std::string& v) const {
        if (!n.domain.empty() || n.inputs.size() != 2 || n.outputs.size() != 1) return false;
        if (n.op_type == "Div") {
            auto c = scalar_param_input(g, n, 1);
            return n.inputs[0] == v && c && near(*c, 6.0f);
        }
        if (n.op_type == "Mul") {
            auto other = other_operand(n, v);
            if (!other) return false;
            const std::size_t ci = n.inputs[0] == *other ? 0 : 1;
            auto c = scalar_param_input(g, n, ci);
            return c && near(*c, 1.0f / 6.0f);
        }
        return false;
    }

    bool times_x(const node& n, const std::string& v, const std::string& x) const {
        if (n.op_type != "Mul" || !n.domain.empty()) return false;
        auto other = other_operand(n, v);
        return other && *other == x;
    }

    std::optional<composite_activation> at(std::size_t start) const {
        const node& a = g.nodes[start];
        if (a.op_type == "HardSigmoid" && a.domain.empty() && a.inputs.size() == 1 && a.outputs.size() == 1 &&
            near(a.attr_float("alpha", 0.2f), 1.0f / 6.0f) && near(a.attr_float("beta", 0.5f), 0.5f)) {
            const std::string& x = a.inputs[0];
            if (auto m = sole_reader(a.outputs[0]); m && times_x(g.nodes[*m], a.outputs[0], x))
                return composite_activation{"HardSwish", {start, *m}, x, g.nodes[*m].outputs[0]};
            return std::nullopt;
        }
        const auto x = add_three(a);
        if (!x) return std::nullopt;
        const auto c = sole_reader(a.outputs[0]);
        if (!c || !clip_0_6(g.nodes[*c], a.outputs[0])) return std::nullopt;
        const std::string& cv = g.nodes[*c].outputs[0];
        const auto n3 = sole_reader(cv);
        if (!n3) return std::nullopt;
        const node& third = g.nodes[*n3];
        if (times_x(third, cv, *x)) {  // Mul(x, .) then / 6
            const auto d = sole_reader(third.outputs[0]);
            if (d && divide_by_six(g.nodes[*d], third.outputs[0]))
                return composite_activation{"HardSwish", {start, *c, *n3, *d}, *x, g.nodes[*d].outputs[0]};
            return std::nullopt;
        }
        if (!divide_by_six(third, cv)) return std::nullopt;
        const std::string& sv = third.outputs[0];
        if (auto m = sole_reader(sv); m && times_x(g.nodes[*m], sv, *x))
            return composite_activation{"HardSwish", {start, *c, *n3, *m}, *x, g.nodes[*m].outputs[0]};
        return composite_activation{"HardSigmoid", {start, *c, *n3}, *x, sv};
    }
};

}  // namespace

std::vector<composite_activation> match_decomposed_activations(const graph& g) {
    matcher m(g);
    std::vector<composite_activation> out;
    for (std::size_t i = 0; i < g.nodes.size(); ++i) {
        if (m.taken.count(i)) continue;
        auto c = m.at(i);
        if (!c) continue;
        std::sort(c->nodes.begin(), c->nodes.end());
        for (auto k : c->nodes) m.taken.insert(k);
        out.push_back(std::move(*c));
    }
    return out;
}

graph fuse_decomposed_activations(const graph& g) {
    graph out = g;
    // Each replacement renumbers nodes, so match again after each (a graph has tens of these, not thousands).
    for (;;) {
        const auto matches = match_decomposed_activations(out);
        if (matches.empty()) break;
        const composite_activation* it = &matches.front();
        node fused;
        fused.op_type = it->op_type;
        fused.name = out.nodes[it->nodes.back()].name;
        fused.inputs = {it->input};
        fused.outputs = {it->output};
        if (it->op_type == "HardSigmoid") {
            fused.attrs["alpha"] = 1.0f / 6.0f;
            fused.attrs["beta"] = 0.5f;
        }
        replace_chain(out, it->nodes, std::move(fused));
    }
    return out;
}

}  // namespace quantsim
