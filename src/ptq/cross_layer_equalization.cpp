// Cross-layer equalization and high-bias folding (include/quantsim/ptq/cross_layer_equalization.hpp).
#include <quantsim/ptq/cross_layer_equalization.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include <quantsim/ir/pattern.hpp>
#include <quantsim/ptq/detail/layers.hpp>

namespace quantsim {

namespace {

using detail::conv_shape;
using detail::ptq_conv_shape;
using detail::ptq_float_param;
using detail::ptq_set_param;

enum class act_kind { none, relu, leaky, relu6, hardswish };

// What lies between two layers: from the first layer's output `from` to the value `to` the next layer reads.
struct link {
    std::string from, to;
    act_kind act = act_kind::none;
    std::vector<std::size_t> relu6_nodes;  // Clip(0, 6) nodes to turn into Relu
    std::optional<std::size_t> se_conv;    // squeeze-excitation Conv whose input channels compensate the scale
    std::size_t next = 0;                  // the next layer (a Conv reading `to` as its data input)
    std::string text;                      // "Relu -> SE", for the log
};

std::string act_name(act_kind a) {
    switch (a) {
        case act_kind::relu: return "Relu";
        case act_kind::leaky: return "LeakyRelu";
        case act_kind::relu6: return "ReLU6";
        case act_kind::hardswish: return "hardswish";
        default: return "";
    }
}

bool reads_only_as_data(const node& n, const std::string& v) {
    if (n.inputs.empty() || n.inputs[0] != v) return false;
    for (std::size_t k = 1; k < n.inputs.size(); ++k)
        if (n.inputs[k] == v) return false;
    return true;
}

// The other input of a binary node reading `v`, or "".
std::string other_input(const node& n, const std::string& v) {
    if (n.inputs.size() != 2) return "";
    if (n.inputs[0] == v && n.inputs[1] != v) return n.inputs[1];
    if (n.inputs[1] == v && n.inputs[0] != v) return n.inputs[0];
    return "";
}

bool scalar_is(const graph& g, const std::string& value, float x) {
    const tensor* t = param_value(g, value);
    return t && t->type() == dtype::float32 && t->numel() == 1 && std::fabs(t->f32()[0] - x) < 1e-6f;
}

class linker {
public:
    linker(const graph& g, const cle_options& o) : g_(g), idx_(g), o_(o) {}

    // Follows the value `v` (a layer's output) to the single Conv reading it. nullopt with `why` set when the path
    // is anything else.
    std::optional<link> follow(const std::string& v, std::string& why) const {
        link l;
        l.from = v;
        std::string cur = v;
        std::vector<std::string> parts;
        for (int step = 0; step < 12; ++step) {
            if (idx_.is_output(cur)) {
                why = "'" + cur + "' is a model output";
                return std::nullopt;
            }
            const auto& readers = idx_.consumers(cur);
            if (readers.size() == 1) {
                const node& n = g_.nodes[readers[0]];
                if (!n.domain.empty()) {
                    why = n.describe() + " is not a default-domain op";
                    return std::nullopt;
                }
                if (n.op_type == "Conv") {
                    if (!reads_only_as_data(n, cur)) {
                        why = n.describe() + " reads '" + cur + "' as a weight";
                        return std::nullopt;
                    }
                    l.to = cur;
                    l.next = readers[0];
                    for (auto& p : parts) l.text += (l.text.empty() ? "" : " -> ") + p;
                    if (l.text.empty()) l.text = "direct";
                    return l;
                }
                act_kind a = act_kind::none;
                if (n.op_type == "Relu") {
                    a = act_kind::relu;
                } else if (n.op_type == "LeakyRelu") {
                    a = act_kind::leaky;
                } else if (n.op_type == "HardSwish") {
                    a = act_kind::hardswish;
                } else if (n.op_type == "Clip") {
                    const auto lo = detail::ptq_scalar_param(g_, n, 1);
                    const bool has_hi = n.has_input(2);
                    const auto hi = detail::ptq_scalar_param(g_, n, 2);
                    if ((n.has_input(1) && !lo) || (has_hi && !hi)) {
                        why = n.describe() + " has non-constant bounds";
                        return std::nullopt;
                    }
                    if (lo && *lo == 0.0f && (!has_hi || std::isinf(*hi))) {
                        a = act_kind::relu;
                    } else if (lo && *lo == 0.0f && hi && *hi == 6.0f) {
                        a = act_kind::relu6;
                        l.relu6_nodes.push_back(readers[0]);
                    } else {
                        why = n.describe() + " clips to a range other than [0, inf) or [0, 6]";
                        return std::nullopt;
                    }
                } else {
                    why = n.describe() + " follows '" + cur + "'";
                    return std::nullopt;
                }
                if (!reads_only_as_data(n, cur)) {
                    why = n.describe() + " reads '" + cur + "' twice";
                    return std::nullopt;
                }
                if (l.act != act_kind::none || l.se_conv) {
                    why = "more than one activation or an activation after a squeeze-excitation block";
                    return std::nullopt;
                }
                if (a == act_kind::relu6 && !o_.relu6_to_relu) {
                    why = "ReLU6 " + n.describe() + " (relu6_to_relu is off)";
                    return std::nullopt;
                }
                if (a == act_kind::hardswish && o_.hardswish == hardswish_policy::skip) {
                    why = "hardswish " + n.describe() + " (policy skip: rescaling through it is not exact)";
                    return std::nullopt;
                }
                l.act = a;
                parts.push_back(a == act_kind::relu6 ? "ReLU6->Relu" : act_name(a));
                cur = n.outputs[0];
                continue;
            }
            if (readers.size() == 2) {
                std::string next;
                if (auto hs = hardswish_pattern(cur, readers, next)) {
                    if (l.act != act_kind::none || l.se_conv) {
                        why = "more than one activation or an activation after a squeeze-excitation block";
                        return std::nullopt;
                    }
                    if (o_.hardswish == hardswish_policy::skip) {
                        why = "hardswish after '" + cur + "' (policy skip: rescaling through it is not exact)";
                        return std::nullopt;
                    }
                    l.act = act_kind::hardswish;
                    parts.push_back("hardswish");
                    cur = next;
                    continue;
                }
                if (auto se = se_pattern(cur, readers, next)) {
                    if (l.se_conv) {
                        why = "two squeeze-excitation blocks";
                        return std::nullopt;
                    }
                    if (!o_.through_squeeze_excitation) {
                        why = "squeeze-excitation after '" + cur + "' (through_squeeze_excitation is off)";
                        return std::nullopt;
                    }
                    l.se_conv = *se;
                    parts.push_back("SE");
                    cur = next;
                    continue;
                }
            }
            why = "'" + cur + "' is read by " + std::to_string(readers.size()) + " nodes";
            return std::nullopt;
        }
        why = "path too long";
        return std::nullopt;
    }

private:
    // x * relu6(x + 3) / 6 (Add -> Clip -> Mul -> Div, or Mul by 1/6), or x * HardSigmoid(x) with alpha 1/6.
    // Returns true and the hardswish output in `out`.
    std::optional<bool> hardswish_pattern(const std::string& x, const std::vector<std::size_t>& readers,
                                          std::string& out) const {
        const node* a = &g_.nodes[readers[0]];
        const node* b = &g_.nodes[readers[1]];
        if (a->op_type == "Mul") std::swap(a, b);
        if (b->op_type != "Mul" || other_input(*b, x).empty()) return std::nullopt;
        const std::string gate = other_input(*b, x);
        if (a->op_type == "HardSigmoid") {
            if (a->outputs[0] != gate || std::fabs(a->attr_float("alpha", 0.2f) - 1.0f / 6.0f) > 1e-4f ||
                std::fabs(a->attr_float("beta", 0.5f) - 0.5f) > 1e-6f)
                return std::nullopt;
            out = b->outputs[0];
            return true;
        }
        if (a->op_type != "Add" || !scalar_is(g_, other_input(*a, x), 3.0f)) return std::nullopt;
        const auto& cr = idx_.consumers(a->outputs[0]);
        if (cr.size() != 1 || idx_.is_output(a->outputs[0])) return std::nullopt;
        const node& clip = g_.nodes[cr[0]];
        if (clip.op_type != "Clip" || clip.outputs[0] != gate || detail::ptq_scalar_param(g_, clip, 1) != 0.0f ||
            detail::ptq_scalar_param(g_, clip, 2) != 6.0f)
            return std::nullopt;
        const auto& dr = idx_.consumers(b->outputs[0]);
        if (dr.size() != 1 || idx_.is_output(b->outputs[0])) return std::nullopt;
        const node& d = g_.nodes[dr[0]];
        const std::string k = other_input(d, b->outputs[0]);
        if (d.inputs.size() != 2 || d.inputs[0] != b->outputs[0]) return std::nullopt;
        if (!((d.op_type == "Div" && scalar_is(g_, k, 6.0f)) || (d.op_type == "Mul" && scalar_is(g_, k, 1.0f / 6.0f))))
            return std::nullopt;
        out = d.outputs[0];
        return true;
    }

    // x * f(GlobalAveragePool(x)) where f starts with a Conv (group 1) and otherwise only reads its own chain and
    // parameters. Returns the SE Conv's index and the Mul's output in `out`.
    std::optional<std::size_t> se_pattern(const std::string& x, const std::vector<std::size_t>& readers,
                                          std::string& out) const {
        const node* pool = &g_.nodes[readers[0]];
        const node* mul = &g_.nodes[readers[1]];
        if (pool->op_type == "Mul") std::swap(pool, mul);
        if (pool->op_type != "GlobalAveragePool" || mul->op_type != "Mul" || other_input(*mul, x).empty())
            return std::nullopt;
        const std::string gate = other_input(*mul, x);
        const auto& pr = idx_.consumers(pool->outputs[0]);
        if (pr.size() != 1 || idx_.is_output(pool->outputs[0])) return std::nullopt;
        const node& sq = g_.nodes[pr[0]];
        const auto shape = ptq_conv_shape(g_, sq);
        if (sq.op_type != "Conv" || !reads_only_as_data(sq, pool->outputs[0]) || !shape || shape->group != 1)
            return std::nullopt;
        std::string cur = sq.outputs[0];
        for (int step = 0; step < 16; ++step) {
            if (cur == gate) {
                out = mul->outputs[0];
                return pr[0];
            }
            const auto& r = idx_.consumers(cur);
            if (r.size() != 1 || idx_.is_output(cur)) return std::nullopt;
            const node& n = g_.nodes[r[0]];
            for (const auto& in : n.inputs)
                if (!in.empty() && in != cur && !g_.is_param(in)) return std::nullopt;
            if (n.outputs.size() != 1) return std::nullopt;
            cur = n.outputs[0];
        }
        return std::nullopt;
    }

    const graph& g_;
    graph_index idx_;
    const cle_options& o_;
};

// Per-channel max |W| over a Conv's output channels, and (group 1) over its input channels.
std::vector<double> out_ranges(const tensor& w) {
    const std::int64_t m = w.dim(0), block = w.numel() / m;
    std::vector<double> r(static_cast<std::size_t>(m), 0.0);
    for (std::int64_t o = 0; o < m; ++o)
        for (std::int64_t e = 0; e < block; ++e)
            r[static_cast<std::size_t>(o)] = std::max(r[static_cast<std::size_t>(o)], double(std::fabs(w.f32()[o * block + e])));
    return r;
}
std::vector<double> in_ranges(const tensor& w) {
    const std::int64_t m = w.dim(0), c = w.dim(1), k = w.numel() / (m * c);
    std::vector<double> r(static_cast<std::size_t>(c), 0.0);
    for (std::int64_t o = 0; o < m; ++o)
        for (std::int64_t i = 0; i < c; ++i)
            for (std::int64_t e = 0; e < k; ++e)
                r[static_cast<std::size_t>(i)] =
                    std::max(r[static_cast<std::size_t>(i)], double(std::fabs(w.f32()[(o * c + i) * k + e])));
    return r;
}

// Multiplies output channel o of node `n`'s weight (and bias) by f[o].
void scale_out(graph& g, std::size_t n, const std::vector<double>& f, bool bias_too = true) {
    const tensor* w = ptq_float_param(g, g.nodes[n], 1);
    tensor w2 = w->clone();
    const std::int64_t m = w->dim(0), block = w->numel() / m;
    for (std::int64_t o = 0; o < m; ++o)
        for (std::int64_t e = 0; e < block; ++e)
            w2.f32()[o * block + e] = static_cast<float>(double(w2.f32()[o * block + e]) * f[static_cast<std::size_t>(o)]);
    const std::string base = g.nodes[n].name;
    ptq_set_param(g, n, 1, base + ".weight", std::move(w2));
    if (!bias_too) return;
    if (const tensor* b = ptq_float_param(g, g.nodes[n], 2)) {
        tensor b2 = b->clone();
        for (std::int64_t o = 0; o < m; ++o) b2.f32()[o] = static_cast<float>(double(b2.f32()[o]) * f[static_cast<std::size_t>(o)]);
        ptq_set_param(g, n, 2, base + ".bias", std::move(b2));
    }
}
// Multiplies input channel i of a group-1 Conv's weight by f[i].
void scale_in(graph& g, std::size_t n, const std::vector<double>& f) {
    const tensor* w = ptq_float_param(g, g.nodes[n], 1);
    tensor w2 = w->clone();
    const std::int64_t m = w->dim(0), c = w->dim(1), k = w->numel() / (m * c);
    for (std::int64_t o = 0; o < m; ++o)
        for (std::int64_t i = 0; i < c; ++i)
            for (std::int64_t e = 0; e < k; ++e) {
                float& x = w2.f32()[(o * c + i) * k + e];
                x = static_cast<float>(double(x) * f[static_cast<std::size_t>(i)]);
            }
    ptq_set_param(g, n, 1, g.nodes[n].name + ".weight", std::move(w2));
}

// The chain's channel scale s: the first layer's outputs are divided by s, the next layer compensates.
std::vector<double> pair_scale(const std::vector<double>& r1, const std::vector<double>& r2) {
    std::vector<double> s(r1.size(), 1.0);
    for (std::size_t c = 0; c < s.size(); ++c) {
        const double p = r1[c] * r2[c];
        if (p > 0 && std::isfinite(p)) s[c] = std::sqrt(r1[c] / r2[c]);
    }
    return s;
}

struct chain {
    std::vector<std::size_t> layers;  // 2 or 3 Conv nodes
    std::vector<link> links;          // layers.size() - 1
};

std::vector<double> inverse(const std::vector<double>& s) {
    std::vector<double> r(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) r[i] = 1.0 / s[i];
    return r;
}

// Applies scale s across link l from layer a to layer b (b's input channels, or a depthwise b's channels).
void compensate(graph& g, const link& l, std::size_t b, const std::vector<double>& s, bool b_depthwise) {
    if (b_depthwise)
        scale_out(g, b, s, /*bias_too=*/false);
    else
        scale_in(g, b, s);
    if (l.se_conv) scale_in(g, *l.se_conv, s);
}

void scale_stats(bn_stats_map* stats, const std::string& key, const std::vector<double>& s) {
    if (!stats) return;
    auto it = stats->find(key);
    if (it == stats->end() || it->second.mean.size() != s.size()) return;
    for (std::size_t c = 0; c < s.size(); ++c) {
        it->second.mean[c] = static_cast<float>(it->second.mean[c] / s[c]);
        it->second.stddev[c] = static_cast<float>(it->second.stddev[c] / s[c]);
    }
}

// High-bias folding across link l from layer a to layer b. Returns whether anything was absorbed.
bool high_bias_fold(graph& g, const link& l, std::size_t a, std::size_t b, bn_stats_map& stats, const cle_options& o,
                    std::vector<std::string>& log) {
    const std::string what = "high-bias fold '" + g.nodes[a].name + "' -> '" + g.nodes[b].name + "'";
    if (l.act != act_kind::none && l.act != act_kind::relu && l.act != act_kind::relu6) {
        log.push_back(what + " skipped: " + act_name(l.act) + " between");
        return false;
    }
    if (l.se_conv) {
        log.push_back(what + " skipped: a squeeze-excitation block between (the gate would see the shift)");
        return false;
    }
    auto it = stats.find(l.from);
    if (it == stats.end()) {
        log.push_back(what + " skipped: no BN statistics for '" + l.from + "'");
        return false;
    }
    if (!o.high_bias_fold_into_padded && !detail::ptq_zero_padding(g.nodes[b])) {
        log.push_back(what + " skipped: '" + g.nodes[b].name + "' pads (high_bias_fold_into_padded is off)");
        return false;
    }
    const tensor* ba = ptq_float_param(g, g.nodes[a], 2);
    const auto sa = ptq_conv_shape(g, g.nodes[a]);
    const auto sb = ptq_conv_shape(g, g.nodes[b]);
    if (!ba || !sa || !sb || ba->numel() != sa->out_channels || it->second.mean.size() != std::size_t(sa->out_channels)) {
        log.push_back(what + " skipped: '" + g.nodes[a].name + "' has no bias parameter matching its statistics");
        return false;
    }
    if (g.nodes[b].has_input(2) && !ptq_float_param(g, g.nodes[b], 2)) {
        log.push_back(what + " skipped: the bias of '" + g.nodes[b].name + "' is not a parameter");
        return false;
    }
    const std::size_t C = static_cast<std::size_t>(sa->out_channels);
    std::vector<double> c(C, 0.0);
    bool any = false;
    // With ReLU (ReLU6 became ReLU) only the part below which the activation (nearly) never goes can move:
    // beta - 3|gamma| leaves out 0.13% of a Gaussian. Without an activation the whole mean moves.
    for (std::size_t i = 0; i < C; ++i) {
        const double beta = it->second.mean[i], gamma = it->second.stddev[i];
        c[i] = l.act == act_kind::none ? beta : std::max(0.0, beta - 3.0 * gamma);
        any = any || c[i] != 0.0;
    }
    if (!any) return false;
    tensor ba2 = ba->clone();
    for (std::size_t i = 0; i < C; ++i) ba2.f32()[i] = static_cast<float>(double(ba2.f32()[i]) - c[i]);
    ptq_set_param(g, a, 2, g.nodes[a].name + ".bias", std::move(ba2));
    for (std::size_t i = 0; i < C; ++i) it->second.mean[i] = static_cast<float>(it->second.mean[i] - c[i]);
    const tensor* w = ptq_float_param(g, g.nodes[b], 1);
    const std::int64_t m = w->dim(0), cin = w->dim(1), k = w->numel() / (m * cin);
    tensor bb = ptq_float_param(g, g.nodes[b], 2) ? ptq_float_param(g, g.nodes[b], 2)->clone() : tensor::zeros({m});
    for (std::int64_t oc = 0; oc < m; ++oc) {
        double acc = 0.0;
        for (std::int64_t i = 0; i < cin; ++i) {
            // depthwise: output channel oc reads input channel oc
            const std::size_t ch = sb->group == 1 ? static_cast<std::size_t>(i) : static_cast<std::size_t>(oc / (m / sb->group) * cin + i);
            for (std::int64_t e = 0; e < k; ++e) acc += double(w->f32()[(oc * cin + i) * k + e]) * c[ch];
        }
        bb.f32()[oc] = static_cast<float>(double(bb.f32()[oc]) + acc);
    }
    ptq_set_param(g, b, 2, g.nodes[b].name + ".bias", std::move(bb));
    log.push_back(what + ": absorbed into '" + g.nodes[b].name + "'");
    return true;
}

}  // namespace

cle_report equalize_cross_layer(graph& g, const cle_options& o, bn_stats_map* stats) {
    cle_report r;
    if (o.iterations < 1) QUANTSIM_THROW(invalid_argument, "equalize_cross_layer: iterations must be >= 1, got ", o.iterations);
    // 1. Find the chains (node indices stay valid: nothing below adds or removes nodes).
    std::vector<chain> chains;
    {
        linker lk(g, o);
        std::vector<bool> used_as_middle(g.nodes.size(), false);
        for (std::size_t i = 0; i < g.nodes.size(); ++i) {
            const node& n = g.nodes[i];
            if (n.op_type != "Conv" || !n.domain.empty() || used_as_middle[i] || n.outputs.empty()) continue;
            const auto s1 = ptq_conv_shape(g, n);
            if (!s1) continue;
            if (n.has_input(2) && !ptq_float_param(g, n, 2)) continue;
            if (s1->group != 1 && !s1->depthwise()) {
                r.log.push_back("skipped '" + n.name + "': grouped (not depthwise) Conv");
                continue;
            }
            std::string why;
            auto l1 = lk.follow(n.outputs[0], why);
            if (!l1) {
                r.log.push_back("no chain from '" + n.name + "': " + why);
                continue;
            }
            const node& n2 = g.nodes[l1->next];
            const auto s2 = ptq_conv_shape(g, n2);
            if (!s2 || (n2.has_input(2) && !ptq_float_param(g, n2, 2)) || s2->in_channels != s1->out_channels ||
                (s2->group != 1 && !s2->depthwise())) {
                r.log.push_back("no chain from '" + n.name + "': '" + n2.name +
                                "' is not a group-1 or depthwise Conv with parameter weights matching its channels");
                continue;
            }
            if (l1->se_conv) {
                const auto se = ptq_conv_shape(g, g.nodes[*l1->se_conv]);
                if (!se || se->in_channels != s1->out_channels) {
                    r.log.push_back("no chain from '" + n.name + "': squeeze-excitation Conv channels differ");
                    continue;
                }
            }
            chain c;
            c.layers = {i, l1->next};
            c.links = {*l1};
            if (s2->depthwise()) {
                std::string why2;
                auto l2 = lk.follow(n2.outputs[0], why2);
                if (l2) {
                    const node& n3 = g.nodes[l2->next];
                    const auto s3 = ptq_conv_shape(g, n3);
                    bool ok = s3 && s3->group == 1 && s3->in_channels == s2->out_channels &&
                              (!n3.has_input(2) || ptq_float_param(g, n3, 2));
                    if (ok && l2->se_conv) {
                        const auto se = ptq_conv_shape(g, g.nodes[*l2->se_conv]);
                        ok = se && se->in_channels == s2->out_channels;
                    }
                    if (ok) {
                        c.layers.push_back(l2->next);
                        c.links.push_back(*l2);
                        used_as_middle[l1->next] = true;
                    }
                }
            }
            chains.push_back(std::move(c));
        }
    }
    // 2. ReLU6 -> Relu inside the chains.
    for (const auto& c : chains)
        for (const auto& l : c.links)
            for (auto ni : l.relu6_nodes) {
                node& n = g.nodes[ni];
                if (n.op_type != "Clip") continue;  // shared by two chains, already replaced
                n.op_type = "Relu";
                n.inputs.resize(1);
                ++r.relu6_replaced;
            }
    g.prune_unused_params();
    // 3. Scaling.
    for (int it = 0; it < o.iterations; ++it)
        for (const auto& c : chains) {
            const auto s2 = *ptq_conv_shape(g, g.nodes[c.layers[1]]);
            const auto r1 = out_ranges(*ptq_float_param(g, g.nodes[c.layers[0]], 1));
            const tensor& w2 = *ptq_float_param(g, g.nodes[c.layers[1]], 1);
            if (c.layers.size() == 2) {
                const auto s = pair_scale(r1, s2.depthwise() ? out_ranges(w2) : in_ranges(w2));
                scale_out(g, c.layers[0], inverse(s));
                compensate(g, c.links[0], c.layers[1], s, s2.depthwise());
                scale_stats(stats, c.links[0].from, s);
            } else {
                const auto r2 = out_ranges(w2);
                const auto r3 = in_ranges(*ptq_float_param(g, g.nodes[c.layers[2]], 1));
                std::vector<double> s12(r1.size(), 1.0), s23(r1.size(), 1.0);
                for (std::size_t k = 0; k < r1.size(); ++k) {
                    const double p = r1[k] * r2[k] * r3[k];
                    if (!(p > 0) || !std::isfinite(p)) continue;
                    const double cb = std::cbrt(p);
                    s12[k] = r1[k] / cb;
                    s23[k] = cb / r3[k];
                }
                scale_out(g, c.layers[0], inverse(s12));
                if (c.links[0].se_conv) scale_in(g, *c.links[0].se_conv, s12);
                std::vector<double> mid(r1.size());
                for (std::size_t k = 0; k < mid.size(); ++k) mid[k] = s12[k] / s23[k];
                scale_out(g, c.layers[1], mid, /*bias_too=*/false);
                // the depthwise bias only sees the output scale
                if (const tensor* b = ptq_float_param(g, g.nodes[c.layers[1]], 2)) {
                    tensor b2 = b->clone();
                    for (std::size_t k = 0; k < mid.size(); ++k)
                        b2.f32()[k] = static_cast<float>(double(b2.f32()[k]) / s23[k]);
                    ptq_set_param(g, c.layers[1], 2, g.nodes[c.layers[1]].name + ".bias", std::move(b2));
                }
                compensate(g, c.links[1], c.layers[2], s23, false);
                scale_stats(stats, c.links[0].from, s12);
                scale_stats(stats, c.links[1].from, s23);
            }
        }
    for (const auto& c : chains) {
        std::string text = c.layers.size() == 2 ? "pair: " : "triplet: ";
        for (std::size_t k = 0; k < c.layers.size(); ++k) {
            if (k) text += " -(" + c.links[k - 1].text + ")-> ";
            text += "'" + g.nodes[c.layers[k]].name + "'";
        }
        r.log.push_back(text);
        (c.layers.size() == 2 ? r.pairs : r.triplets)++;
    }
    // 4. High-bias folding, first link first (its shift lands in the middle layer's bias before that one moves).
    if (o.high_bias_fold && stats)
        for (const auto& c : chains)
            for (std::size_t k = 0; k + 1 < c.layers.size(); ++k)
                if (high_bias_fold(g, c.links[k], c.layers[k], c.layers[k + 1], *stats, o, r.log)) ++r.high_bias_folded;
    return r;
}

}  // namespace quantsim
