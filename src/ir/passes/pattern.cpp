// Chain matching and safe rewiring helpers (include/quantsim/ir/pattern.hpp).
#include <quantsim/ir/pattern.hpp>

#include <algorithm>
#include <set>
#include <unordered_set>

namespace quantsim {

op_pattern::op_pattern(std::string_view ops) {
    std::size_t start = 0;
    while (start <= ops.size()) {
        const auto bar = ops.find('|', start);
        const auto end = bar == std::string_view::npos ? ops.size() : bar;
        std::string_view t = ops.substr(start, end - start);
        while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
        while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
        if (!t.empty() && t != "*") op_types.emplace_back(t);
        if (bar == std::string_view::npos) break;
        start = bar + 1;
    }
}

bool op_pattern::matches(const graph& g, const node& n) const {
    if (!op_types.empty() && std::find(op_types.begin(), op_types.end(), n.op_type) == op_types.end()) return false;
    return !predicate || predicate(g, n);
}

std::size_t use_count(const graph& g, std::string_view value) {
    std::size_t n = g.consumers(value).size();
    for (const auto& o : g.outputs)
        if (o.name == value) ++n;
    return n;
}

const tensor* param_value(const graph& g, std::string_view value) {
    auto it = g.params.find(std::string(value));
    return it == g.params.end() ? nullptr : &it->second;
}

std::optional<float> scalar_param_input(const graph& g, const node& n, std::size_t input) {
    if (input >= n.inputs.size() || n.inputs[input].empty()) return std::nullopt;
    const tensor* t = param_value(g, n.inputs[input]);
    if (!t || t->type() != dtype::float32 || t->numel() != 1) return std::nullopt;
    return t->f32()[0];
}

std::vector<std::vector<std::size_t>> match_chains(const graph& g, const std::vector<op_pattern>& chain,
                                                   const chain_match_options& options) {
    std::vector<std::vector<std::size_t>> matches;
    if (chain.empty()) return matches;
    const graph_index index(g);
    std::vector<bool> used(g.nodes.size(), false);
    for (std::size_t start = 0; start < g.nodes.size(); ++start) {
        if (!options.allow_overlap && used[start]) continue;
        if (!chain[0].matches(g, g.nodes[start])) continue;
        std::vector<std::size_t> m{start};
        bool ok = true;
        for (std::size_t link = 1; link < chain.size() && ok; ++link) {
            const node& prev = g.nodes[m.back()];
            if (prev.outputs.empty() || prev.outputs[0].empty()) {
                ok = false;
                break;
            }
            const std::string& v = prev.outputs[0];
            // Exactly one reader, and not a graph output: fusing then changes no value anyone else observes.
            // Other outputs of `prev` must be unused for the same reason.
            if (index.use_count(v) != 1 || index.is_output(v)) {
                ok = false;
                break;
            }
            for (std::size_t k = 1; k < prev.outputs.size(); ++k)
                if (!prev.outputs[k].empty() && index.use_count(prev.outputs[k]) != 0) ok = false;
            if (!ok) break;
            const std::size_t next = index.consumers(v).front();
            const node& nn = g.nodes[next];
            if (options.data_input_only) {
                if (nn.inputs.empty() || nn.inputs[0] != v) ok = false;
                for (std::size_t k = 1; ok && k < nn.inputs.size(); ++k)
                    if (nn.inputs[k] == v) ok = false;
            }
            if (!ok || !chain[link].matches(g, nn) || (!options.allow_overlap && used[next])) {
                ok = false;
                break;
            }
            m.push_back(next);
        }
        if (!ok) continue;
        if (!options.allow_overlap)
            for (auto i : m) used[i] = true;
        matches.push_back(std::move(m));
    }
    return matches;
}

bool bypass_node(graph& g, std::size_t index, std::size_t input) {
    if (index >= g.nodes.size())
        QUANTSIM_THROW(invalid_argument, "bypass_node: node index ", index, " is out of range (", g.nodes.size(), " nodes)");
    const node n = g.nodes[index];
    if (!n.has_input(input))
        QUANTSIM_THROW(invalid_argument, "bypass_node: ", n.describe(), " has no input ", input);
    if (n.outputs.empty() || n.outputs[0].empty()) {
        g.remove_nodes({index});
        g.prune_unused_params();
        return true;
    }
    for (std::size_t k = 1; k < n.outputs.size(); ++k)
        if (!n.outputs[k].empty() && use_count(g, n.outputs[k]) != 0)
            QUANTSIM_THROW(invalid_argument, "bypass_node: ", n.describe(), " output '", n.outputs[k],
                           "' is still read; only a node whose other outputs are unused can be bypassed");
    const std::string out = n.outputs[0];
    const std::string in = n.inputs[input];
    if (!g.is_output(out)) {
        g.remove_nodes({index});
        g.replace_uses(out, in);
        g.prune_unused_params();
        return true;
    }
    // The bypassed value is a graph output: keep the output's name by renaming the value that flows into it.
    if (g.is_input(in) || g.is_param(in) || g.is_output(in) || g.producer(in) < 0) return false;
    g.remove_nodes({index});
    g.rename_value(in, out);
    g.prune_unused_params();
    return true;
}

std::size_t replace_chain(graph& g, const std::vector<std::size_t>& chain, node replacement) {
    if (chain.empty()) QUANTSIM_THROW(invalid_argument, "replace_chain: the chain is empty");
    std::set<std::size_t> members(chain.begin(), chain.end());
    for (auto i : members)
        if (i >= g.nodes.size())
            QUANTSIM_THROW(invalid_argument, "replace_chain: node index ", i, " is out of range (", g.nodes.size(), " nodes)");
    const std::size_t last = chain.back();
    if (replacement.outputs.empty()) replacement.outputs = g.nodes[last].outputs;
    const std::unordered_set<std::string> kept(replacement.outputs.begin(), replacement.outputs.end());
    // Every other value the chain produced must be read only inside the chain.
    for (auto i : members) {
        for (const auto& o : g.nodes[i].outputs) {
            if (o.empty() || kept.count(o)) continue;
            if (g.is_output(o))
                QUANTSIM_THROW(invalid_argument, "replace_chain: ", g.nodes[i].describe(), " output '", o,
                               "' is a graph output and the replacement does not produce it");
            for (auto c : g.consumers(o))
                if (!members.count(c))
                    QUANTSIM_THROW(invalid_argument, "replace_chain: ", g.nodes[i].describe(), " output '", o,
                                   "' is read by ", g.nodes[c].describe(), " outside the chain");
        }
    }
    if (replacement.name.empty()) replacement.name = g.nodes[last].name;
    std::vector<std::size_t> to_remove(members.begin(), members.end());
    const std::size_t removed_before_last =
        static_cast<std::size_t>(std::count_if(to_remove.begin(), to_remove.end(), [&](std::size_t i) { return i < last; }));
    g.remove_nodes(to_remove);
    const std::size_t pos = last - removed_before_last;
    g.insert_node(pos, std::move(replacement));
    std::size_t at = pos;
    // Inputs produced after the insertion point (a caller wiring in a later value) need a re-sort.
    for (const auto& in : g.nodes[pos].inputs) {
        const auto p = g.producer(in);
        if (p > static_cast<std::ptrdiff_t>(pos)) {
            const std::string nm = g.nodes[pos].name;
            g.topological_sort();
            at = static_cast<std::size_t>(g.find_node(nm));
            break;
        }
    }
    g.prune_unused_params();
    return at;
}

}  // namespace quantsim
