// First and last layers of a model (include/quantsim/sim/end_layers.hpp).
#include <quantsim/sim/end_layers.hpp>

#include <deque>
#include <set>
#include <string>
#include <vector>

namespace quantsim {

namespace {

bool weighted(const graph& g, const node& n) {
    const bool op = n.op_type == "Conv" || n.op_type == "ConvTranspose" || n.op_type == "Gemm" || n.op_type == "MatMul";
    return op && n.domain.empty() && n.inputs.size() > 1 && g.is_param(n.inputs[1]);
}

// Only float values carry features: the walks must not follow shape arithmetic (Reshape's shape from Shape(x)) into
// the middle of the network.
bool float_value(const graph& g, const std::string& v) {
    const auto* vi = g.info(v);
    return !vi || vi->type == dtype::float32;
}

}  // namespace

end_layer_quantizers find_end_layers(const quant_sim& sim) {
    const graph& g = sim.model();
    const graph_index index(g);
    end_layer_quantizers r;
    std::set<std::string> params, acts, first, last;
    auto note_act = [&](const std::string& v) {
        const quantizer* q = sim.find(v);
        if (q && q->enabled && q->kind == quantizer_kind::activation) acts.insert(v);
    };
    auto note_layer = [&](const node& n, std::set<std::string>& layers) {
        layers.insert(n.name);
        const quantizer* q = sim.find(n.inputs[1]);
        if (q && q->enabled && q->kind == quantizer_kind::param) params.insert(n.inputs[1]);
    };

    // Breadth-first over float values from `starts`; step(v, push) notes v and pushes the values after it.
    const auto walk = [&](std::vector<std::string> starts, const auto& step) {
        std::deque<std::string> todo(starts.begin(), starts.end());
        std::set<std::string> seen;
        const auto push = [&](const std::string& v) { todo.push_back(v); };
        while (!todo.empty()) {
            const std::string v = todo.front();
            todo.pop_front();
            if (!seen.insert(v).second || !float_value(g, v)) continue;
            note_act(v);
            step(v, push);
        }
    };
    std::vector<std::string> inputs, outputs;
    for (const auto& in : g.inputs) inputs.push_back(in.name);
    for (const auto& out : g.outputs) outputs.push_back(out.name);

    // Forward from the model inputs to the first weighted nodes.
    walk(inputs, [&](const std::string& v, const auto& push) {
        for (const auto c : index.consumers(v)) {
            const node& n = g.nodes[c];
            if (weighted(g, n)) {
                if (n.inputs[0] == v) note_layer(n, first);
                continue;
            }
            for (const auto& o : n.outputs)
                if (!o.empty()) push(o);
        }
    });
    // Backward from the model outputs to the last weighted nodes.
    walk(outputs, [&](const std::string& v, const auto& push) {
        const auto p = index.producer(v);
        if (p < 0) return;
        const node& n = g.nodes[static_cast<std::size_t>(p)];
        if (weighted(g, n)) {
            note_layer(n, last);
            return;
        }
        for (const auto& in : n.inputs)
            if (!in.empty() && !g.is_param(in)) push(in);
    });
    r.first_layers.assign(first.begin(), first.end());
    r.last_layers.assign(last.begin(), last.end());
    r.params.assign(params.begin(), params.end());
    r.activations.assign(acts.begin(), acts.end());
    return r;
}

end_layer_quantizers set_end_layers_bitwidth(quant_sim& sim, int param_bitwidth, int activation_bitwidth) {
    end_layer_quantizers r = find_end_layers(sim);
    for (const auto& p : r.params) sim.set_bitwidth(p, param_bitwidth);
    for (const auto& a : r.activations) sim.set_bitwidth(a, activation_bitwidth);
    return r;
}

}  // namespace quantsim
