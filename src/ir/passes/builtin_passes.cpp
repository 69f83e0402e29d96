// Built-in passes (include/quantsim/ir/passes.hpp).
#include <quantsim/ir/passes.hpp>

#include <cmath>
#include <unordered_set>

#include <quantsim/ir/pattern.hpp>
#include <quantsim/ir/shape_inference.hpp>

namespace quantsim {

bool remove_identity(graph& g) {
    bool changed = false;
    for (std::size_t i = 0; i < g.nodes.size();) {
        const node& n = g.nodes[i];
        if (n.domain.empty() && n.op_type == "Identity" && n.has_input(0) && bypass_node(g, i, 0)) {
            changed = true;
            continue;  // node i is gone; the next node moved into its place
        }
        ++i;
    }
    return changed;
}

bool eliminate_dead_nodes(graph& g) {
    const std::size_t params_before = g.params.size();
    const std::size_t removed = g.remove_dead_nodes();
    return removed > 0 || g.params.size() != params_before;
}

bool fold_constants(graph& g, const op_registry* registry, std::int64_t max_elements) {
    shape_inference_options so;
    so.registry = registry;
    so.strict = false;
    so.max_folded_elements = max_elements;
    auto result = run_shape_inference(g, so);
    if (result.constants.empty()) return false;
    std::vector<std::size_t> folded;
    for (std::size_t i = 0; i < g.nodes.size(); ++i) {
        const node& n = g.nodes[i];
        bool all = false;
        for (const auto& o : n.outputs) {
            if (o.empty()) continue;
            if (!result.constants.count(o)) {
                all = false;
                break;
            }
            all = true;
        }
        if (all) folded.push_back(i);
    }
    if (folded.empty()) return false;
    for (auto i : folded)
        for (const auto& o : g.nodes[i].outputs)
            if (!o.empty()) g.params[o] = std::move(result.constants[o]);
    g.remove_nodes(folded);
    g.prune_unused_params();
    return true;
}

namespace {

const tensor* float_param(const graph& g, const node& n, std::size_t input) {
    if (!n.has_input(input)) return nullptr;
    const tensor* t = param_value(g, n.inputs[input]);
    return t && t->type() == dtype::float32 ? t : nullptr;
}

// Stores `value` as the parameter behind input `input` of node `idx`: in place when only this node reads it,
// else under a new name.
void set_param_input(graph& g, std::size_t idx, std::size_t input, const std::string& base, tensor value) {
    node& n = g.nodes[idx];
    if (n.has_input(input) && g.is_param(n.inputs[input]) && use_count(g, n.inputs[input]) == 1) {
        g.params[n.inputs[input]] = std::move(value);
        return;
    }
    const std::string name = g.add_param(base, std::move(value));
    node& m = g.nodes[idx];
    if (m.inputs.size() <= input) m.inputs.resize(input + 1);
    m.inputs[input] = name;
}

}  // namespace

std::size_t fold_batch_norm(graph& g) {
    std::size_t folded = 0;
    // Re-match after every fold: indices shift when nodes go.
    for (;;) {
        auto matches = match_chains(g, {"Conv|ConvTranspose|Gemm", "BatchNormalization"});
        bool did = false;
        for (const auto& m : matches) {
            const std::size_t ci = m[0], bi = m[1];
            const node& c = g.nodes[ci];
            const node& bn = g.nodes[bi];
            if (!c.domain.empty() || !bn.domain.empty() || bn.num_present_inputs() != 5) continue;
            const tensor *gamma = float_param(g, bn, 1), *beta = float_param(g, bn, 2), *mean = float_param(g, bn, 3),
                         *var = float_param(g, bn, 4);
            const tensor* w = float_param(g, c, 1);
            if (!gamma || !beta || !mean || !var || !w) continue;
            const std::int64_t M = gamma->numel();
            if (beta->numel() != M || mean->numel() != M || var->numel() != M || gamma->rank() != 1) continue;
            const tensor* b = nullptr;
            if (c.has_input(2)) {
                b = float_param(g, c, 2);
                if (!b) continue;  // a bias computed at run time cannot be folded into
            }
            const double eps = bn.attr_float("epsilon", 1e-5f);
            std::vector<double> a(static_cast<std::size_t>(M));
            for (std::int64_t k = 0; k < M; ++k) {
                a[static_cast<std::size_t>(k)] = double(gamma->f32()[k]) / std::sqrt(double(var->f32()[k]) + eps);
            }
            tensor w2 = w->clone();
            std::vector<double> bias_in(static_cast<std::size_t>(M), 0.0);
            node replacement = c;
            if (c.op_type == "Conv") {
                if (w->rank() < 3 || w->dim(0) != M) continue;
                const std::int64_t block = w->numel() / M;
                for (std::int64_t k = 0; k < M; ++k)
                    for (std::int64_t j = 0; j < block; ++j)
                        w2.f32()[k * block + j] = static_cast<float>(double(w->f32()[k * block + j]) * a[static_cast<std::size_t>(k)]);
                if (b && b->numel() != M) continue;
            } else if (c.op_type == "ConvTranspose") {
                const std::int64_t groups = c.attr_int("group", 1);
                if (w->rank() < 3 || groups < 1 || w->dim(0) % groups != 0 || w->dim(1) * groups != M) continue;
                const std::int64_t cin = w->dim(0), per_group_out = w->dim(1), block = w->numel() / (cin * per_group_out);
                for (std::int64_t ci2 = 0; ci2 < cin; ++ci2) {
                    const std::int64_t grp = ci2 / (cin / groups);
                    for (std::int64_t j = 0; j < per_group_out; ++j) {
                        const double s = a[static_cast<std::size_t>(grp * per_group_out + j)];
                        float* p = w2.f32() + (ci2 * per_group_out + j) * block;
                        const float* q = w->f32() + (ci2 * per_group_out + j) * block;
                        for (std::int64_t e = 0; e < block; ++e) p[e] = static_cast<float>(double(q[e]) * s);
                    }
                }
                if (b && b->numel() != M) continue;
            } else {  // Gemm
                if (w->rank() != 2) continue;
                const bool trans_b = c.attr_int("transB", 0) != 0;
                const std::int64_t N = trans_b ? w->dim(0) : w->dim(1), K = trans_b ? w->dim(1) : w->dim(0);
                if (N != M) continue;
                for (std::int64_t r = 0; r < w->dim(0); ++r)
                    for (std::int64_t col = 0; col < w->dim(1); ++col) {
                        const std::int64_t out_ch = trans_b ? r : col;
                        w2.f32()[r * w->dim(1) + col] =
                            static_cast<float>(double(w->f32()[r * w->dim(1) + col]) * a[static_cast<std::size_t>(out_ch)]);
                    }
                (void)K;
                if (b) {
                    // C must broadcast to [N] along the output channels: scalar, [N] or [1, N].
                    const bool ok = b->numel() == 1 || (b->numel() == M && (b->rank() == 1 || (b->rank() == 2 && b->dim(0) == 1)));
                    if (!ok) continue;
                }
                const double beta_attr = c.attr_float("beta", 1.0f);
                replacement.attrs["beta"] = 1.0f;
                if (b)
                    for (std::int64_t k = 0; k < M; ++k)
                        bias_in[static_cast<std::size_t>(k)] = beta_attr * b->f32()[b->numel() == 1 ? 0 : k];
            }
            if (c.op_type != "Gemm" && b)
                for (std::int64_t k = 0; k < M; ++k) bias_in[static_cast<std::size_t>(k)] = b->f32()[k];
            tensor b2 = tensor::empty({M});
            for (std::int64_t k = 0; k < M; ++k)
                b2.f32()[k] = static_cast<float>((bias_in[static_cast<std::size_t>(k)] - mean->f32()[k]) * a[static_cast<std::size_t>(k)] +
                                                 beta->f32()[k]);
            // Write the new weights, then swap the pair for the rewritten producer (which takes the BN's output).
            const std::string conv_name = c.name;
            set_param_input(g, ci, 1, conv_name + ".weight", std::move(w2));
            set_param_input(g, ci, 2, conv_name + ".bias", std::move(b2));
            replacement.inputs = g.nodes[ci].inputs;
            replacement.outputs.clear();
            replacement.name = conv_name;
            replace_chain(g, {ci, bi}, std::move(replacement));
            ++folded;
            did = true;
            break;
        }
        if (!did) break;
    }
    return folded;
}

}  // namespace quantsim
