// AdaRound over a quant_sim: layer discovery (Conv / Gemm / MatMul with the activation that follows), caching of
// layer inputs and FP32 targets, and the per-layer optimizer (exact Gram form for linear losses, sampled positions
// otherwise). docs/adaround.md explains the choices.
#include <quantsim/ptq/adaround.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <quantsim/core/error.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/ir/kernels/gemm.hpp>
#include <quantsim/ir/kernels/parallel.hpp>
#include <quantsim/ptq/detail/adaround_kernels.hpp>
#include <quantsim/ptq/detail/adaround_math.hpp>
#include <quantsim/quant/fake_quant.hpp>
#include <quantsim/quant/layout.hpp>

namespace quantsim {
namespace {

using detail::act_kind;
using detail::activation_fn;
using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// ---- one layer ------------------------------------------------------------------------------------------------

struct layer_spec {
    std::size_t node_index = 0;
    std::string node_name, weight, input, output;  // output: pre-activation value (bias included) fetched as target
    bool conv = false;
    // Conv
    std::int64_t groups = 1, kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
    std::int64_t pad_h = 0, pad_w = 0;  // explicit begin pads (auto_pad is resolved once shapes are known)
    std::string auto_pad = "NOTSET";
    int spatial = 2;  // 1 or 2
    // Gemm / MatMul
    bool w_k_major = false;  // weight stored [K, Cout]
    bool trans_a = false;
    float alpha = 1;
    std::int64_t cout = 0, k = 0;  // k: inputs per output channel (per group)
    std::vector<float> bias;       // per output channel
    std::vector<float> aff_a, aff_b;  // BatchNormalization after the layer (empty: none)
    activation_fn act;

    std::int64_t rows_per_group() const { return cout / groups; }
    // Flat index in the stored weight of internal element (c, kk).
    std::int64_t flat(std::int64_t c, std::int64_t kk) const { return w_k_major ? kk * cout + c : c * k + kk; }
};

std::optional<float> scalar_param(const graph& g, const std::string& name) {
    auto it = g.params.find(name);
    if (it == g.params.end() || it->second.type() != dtype::float32 || it->second.numel() != 1) return std::nullopt;
    return it->second.f32()[0];
}

// The single node reading `v` (none when v is a graph output or has several readers).
const node* single_consumer(const graph& g, const graph_index& gi, const std::string& v) {
    if (gi.is_output(v)) return nullptr;
    const auto& c = gi.consumers(v);
    return c.size() == 1 ? &g.nodes[c[0]] : nullptr;
}

// Recognizes the activation reading `v`; returns the value after it, or "" when none is recognized.
std::string detect_activation(const graph& g, const graph_index& gi, const std::string& v, activation_fn& act) {
    if (const node* n = single_consumer(g, gi, v)) {
        if (n->op_type == "Relu") {
            act.kind = act_kind::clip, act.lo = 0, act.name = "relu";
            return n->outputs[0];
        }
        if (n->op_type == "Clip") {
            std::optional<float> lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
            if (n->has_input(1)) lo = scalar_param(g, n->inputs[1]);
            if (n->has_input(2)) hi = scalar_param(g, n->inputs[2]);
            if (!lo || !hi) return "";
            act.kind = act_kind::clip, act.lo = *lo, act.hi = *hi;
            act.name = (*lo == 0 && *hi == 6) ? "relu6" : "clip";
            return n->outputs[0];
        }
        if (n->op_type == "LeakyRelu") {
            act.kind = act_kind::leaky_relu, act.alpha = n->attr_float("alpha", 0.01f), act.name = "leaky_relu";
            return n->outputs[0];
        }
        if (n->op_type == "HardSigmoid") {
            act.kind = act_kind::hard_sigmoid, act.alpha = n->attr_float("alpha", 0.2f);
            act.beta = n->attr_float("beta", 0.5f), act.name = "hardsigmoid";
            return n->outputs[0];
        }
        if (n->op_type == "HardSwish") {
            act.kind = act_kind::hard_swish, act.add = 3, act.lo = 0, act.hi = 6, act.mul = 1.0f / 6, act.name = "hardswish";
            return n->outputs[0];
        }
        return "";
    }
    // Hard-swish written out: v * Clip(v + a, lo, hi) [/ d | * m].
    if (gi.is_output(v)) return "";
    const auto& cs = gi.consumers(v);
    if (cs.size() != 2) return "";
    const node* add = nullptr;
    const node* mul = nullptr;
    for (auto i : cs) {
        if (g.nodes[i].op_type == "Add") add = &g.nodes[i];
        if (g.nodes[i].op_type == "Mul") mul = &g.nodes[i];
    }
    if (!add || !mul || add->inputs.size() != 2 || mul->inputs.size() != 2) return "";
    const std::string& other = add->inputs[0] == v ? add->inputs[1] : add->inputs[0];
    const auto a = scalar_param(g, other);
    if (!a || (add->inputs[0] != v && add->inputs[1] != v)) return "";
    const node* clip = single_consumer(g, gi, add->outputs[0]);
    if (!clip || clip->op_type != "Clip" || !clip->has_input(1) || !clip->has_input(2)) return "";
    const auto lo = scalar_param(g, clip->inputs[1]), hi = scalar_param(g, clip->inputs[2]);
    if (!lo || !hi) return "";
    if (single_consumer(g, gi, clip->outputs[0]) != mul) return "";
    const bool operands_ok = (mul->inputs[0] == v && mul->inputs[1] == clip->outputs[0]) ||
                             (mul->inputs[1] == v && mul->inputs[0] == clip->outputs[0]);
    if (!operands_ok) return "";
    act.kind = act_kind::hard_swish, act.add = *a, act.lo = *lo, act.hi = *hi, act.mul = 1, act.name = "hardswish";
    std::string out = mul->outputs[0];
    if (const node* d = single_consumer(g, gi, out); d && d->inputs.size() == 2 && d->inputs[0] == out) {
        if (d->op_type == "Div") {
            if (auto s = scalar_param(g, d->inputs[1]); s && *s != 0) act.mul = 1.0f / *s, out = d->outputs[0];
        } else if (d->op_type == "Mul") {
            if (auto s = scalar_param(g, d->inputs[1])) act.mul = *s, out = d->outputs[0];
        }
    }
    return out;
}

// Finds the layers AdaRound optimizes, in graph order. Candidates that cannot be handled go to `skipped`.
std::vector<layer_spec> find_layers(const graph& g, const quant_sim& sim, std::vector<std::string>& skipped) {
    const graph_index gi(g);
    std::vector<layer_spec> layers;
    for (std::size_t ni = 0; ni < g.nodes.size(); ++ni) {
        const node& n = g.nodes[ni];
        if (n.op_type != "Conv" && n.op_type != "Gemm" && n.op_type != "MatMul") continue;
        if (n.inputs.size() < 2 || !g.is_param(n.inputs[1]) || g.is_param(n.inputs[0])) continue;
        const std::string& wname = n.inputs[1];
        const quantizer* q = sim.find(wname);
        if (!q || q->kind != quantizer_kind::param) continue;
        auto skip = [&](const std::string& why) { skipped.push_back(wname + ": " + why); };
        if (!q->enabled) {
            skip("quantizer disabled");
            continue;
        }
        if (gi.consumers(wname).size() != 1) {
            skip("weight shared by several nodes");
            continue;
        }
        const tensor& w = g.params.at(wname);
        if (w.type() != dtype::float32) {
            skip("weight is not float32");
            continue;
        }
        layer_spec L;
        L.node_index = ni;
        L.node_name = n.name;
        L.weight = wname;
        L.input = n.inputs[0];
        L.output = n.outputs[0];
        // Conv and Gemm take their bias as input 2; MatMul's comes from a following Add (below).
        const tensor* bias = nullptr;
        if (n.op_type != "MatMul" && n.has_input(2)) {
            if (!g.is_param(n.inputs[2])) {
                skip("bias is not a parameter");
                continue;
            }
            bias = &g.params.at(n.inputs[2]);
        }
        if (n.op_type == "Conv") {
            if (w.rank() != 3 && w.rank() != 4) {
                skip("only 1-D and 2-D convolutions are supported");
                continue;
            }
            L.conv = true;
            L.spatial = w.rank() - 2;
            L.groups = n.attr_int("group", 1);
            L.cout = w.dim(0);
            L.kh = L.spatial == 2 ? w.dim(2) : 1;
            L.kw = w.dim(-1);
            L.k = w.numel() / L.cout;
            const auto st = n.attr_ints("strides", std::vector<std::int64_t>(static_cast<std::size_t>(L.spatial), 1));
            const auto di = n.attr_ints("dilations", std::vector<std::int64_t>(static_cast<std::size_t>(L.spatial), 1));
            const auto pa = n.attr_ints("pads", std::vector<std::int64_t>(2 * static_cast<std::size_t>(L.spatial), 0));
            if (static_cast<int>(st.size()) != L.spatial || static_cast<int>(di.size()) != L.spatial ||
                static_cast<int>(pa.size()) != 2 * L.spatial || L.groups < 1 || L.cout % L.groups != 0) {
                skip("unexpected Conv attributes");
                continue;
            }
            if (L.spatial == 2) {
                L.sh = st[0], L.sw = st[1], L.dh = di[0], L.dw = di[1], L.pad_h = pa[0], L.pad_w = pa[1];
            } else {
                L.sw = st[0], L.dw = di[0], L.pad_w = pa[0];
            }
            L.auto_pad = n.attr_string("auto_pad", "NOTSET");
            L.k = w.numel() / L.cout;
        } else {
            if (w.rank() != 2) {
                skip("weight is not 2-D");
                continue;
            }
            float beta = 1;
            if (n.op_type == "Gemm") {
                L.trans_a = n.attr_int("transA", 0) != 0;
                L.alpha = n.attr_float("alpha", 1.0f);
                beta = n.attr_float("beta", 1.0f);
                const bool tb = n.attr_int("transB", 0) != 0;
                L.w_k_major = !tb;
                L.cout = tb ? w.dim(0) : w.dim(1);
                L.k = tb ? w.dim(1) : w.dim(0);
            } else {
                L.w_k_major = true;
                L.cout = w.dim(1);
                L.k = w.dim(0);
                // MatMul followed by Add of a per-channel constant: that constant is the bias.
                if (const node* a = single_consumer(g, gi, L.output); a && a->op_type == "Add" && a->inputs.size() == 2) {
                    const std::string& other = a->inputs[0] == L.output ? a->inputs[1] : a->inputs[0];
                    auto it = g.params.find(other);
                    if (it != g.params.end() && it->second.type() == dtype::float32 &&
                        (it->second.numel() == L.cout || it->second.numel() == 1) && it->second.rank() <= 2 &&
                        (it->second.rank() == 0 || it->second.dim(-1) == it->second.numel())) {
                        bias = &it->second;
                        L.output = a->outputs[0];
                    }
                }
            }
            if (bias && bias->type() != dtype::float32) bias = nullptr;
            L.bias.assign(static_cast<std::size_t>(L.cout), 0.0f);
            if (bias) {
                if (bias->numel() != L.cout && bias->numel() != 1) {
                    skip("bias is not per output channel");
                    continue;
                }
                for (std::int64_t c = 0; c < L.cout; ++c)
                    L.bias[static_cast<std::size_t>(c)] = beta * bias->f32()[bias->numel() == 1 ? 0 : c];
            }
            bias = nullptr;
        }
        if (L.conv) {
            L.bias.assign(static_cast<std::size_t>(L.cout), 0.0f);
            if (bias) {
                if (bias->type() != dtype::float32 || bias->numel() != L.cout) {
                    skip("bias is not per output channel");
                    continue;
                }
                std::copy_n(bias->f32(), L.cout, L.bias.begin());
            }
        }
        // An unfolded BatchNormalization: its per-channel affine is part of the loss.
        std::string v = L.output;
        if (const node* bn = single_consumer(g, gi, v); bn && bn->op_type == "BatchNormalization" &&
                                                         bn->inputs.size() >= 5) {
            const auto* vi = g.info(v);
            bool ok = L.conv || (vi && vi->shape_known && vi->shape.size() == 2);
            for (int i = 1; i < 5 && ok; ++i) {
                auto it = g.params.find(bn->inputs[static_cast<std::size_t>(i)]);
                ok = it != g.params.end() && it->second.type() == dtype::float32 && it->second.numel() == L.cout;
            }
            if (ok) {
                const float eps = bn->attr_float("epsilon", 1e-5f);
                const float* s = g.params.at(bn->inputs[1]).f32();
                const float* b = g.params.at(bn->inputs[2]).f32();
                const float* m = g.params.at(bn->inputs[3]).f32();
                const float* var = g.params.at(bn->inputs[4]).f32();
                L.aff_a.resize(static_cast<std::size_t>(L.cout));
                L.aff_b.resize(static_cast<std::size_t>(L.cout));
                for (std::int64_t c = 0; c < L.cout; ++c) {
                    const double a = s[c] / std::sqrt(static_cast<double>(var[c]) + eps);
                    L.aff_a[static_cast<std::size_t>(c)] = static_cast<float>(a);
                    L.aff_b[static_cast<std::size_t>(c)] = static_cast<float>(b[c] - m[c] * a);
                }
                v = bn->outputs[0];
            }
        }
        detect_activation(g, gi, v, L.act);
        layers.push_back(std::move(L));
    }
    return layers;
}

// ---- cached data of one layer ---------------------------------------------------------------------------------

struct layer_data {
    std::vector<float> x;  // conv: [N, Cin, H, W]; dense: [P, K] (alpha and transA applied)
    std::vector<float> y;  // conv: [N, Cout, OH, OW]; dense: [P, Cout]; FP32 pre-activation output
    std::int64_t n = 0, cin = 0, h = 1, w = 1, oh = 1, ow = 1;
    std::int64_t positions = 0, samples = 0;
    std::int64_t ohw() const { return oh * ow; }
};

// Runs a graph in segments of consecutive nodes (graph order), keeping between segments only the values that later
// nodes read (or that the caller asks to keep). Over all layers every node runs once per batch, instead of one
// whole forward pass per layer. The simulated runner fake-quantizes parameters and activations as quant_sim does.
class segment_runner {
public:
    // sim == nullptr: the FP32 graph `fp`. Otherwise the sim's current model, weights fake-quantized, and (with
    // act_quant) activation quantizers applied to the values the segments produce and to the model inputs.
    segment_runner(const graph* fp, quant_sim* sim, bool act_quant, int threads,
                   const std::vector<std::vector<tensor>>& batches)
        : fp_(fp), sim_(sim), act_quant_(act_quant), threads_(threads) {
        const graph& g = src();
        for (std::size_t i = 0; i < g.nodes.size(); ++i)
            for (const auto& in : g.nodes[i].inputs)
                if (!in.empty()) last_use_[in] = i;
        states_.resize(batches.size());
        for (std::size_t b = 0; b < batches.size(); ++b)
            for (std::size_t i = 0; i < batches[b].size(); ++i) {
                const std::string& name = g.inputs[i].name;
                tensor t = batches[b][i];
                if (sim_ && act_quant_ && t.type() == dtype::float32) {
                    const quantizer* q = sim_->find(name);
                    if (q && q->kind == quantizer_kind::activation)
                        if (auto p = sim_->effective_params(name)) t = fake_quant(t, *p, q->options);
                }
                states_[b][name] = std::move(t);
            }
    }

    // Runs nodes [cursor, last] on every batch; afterwards holds the values read by nodes after `last` and `keep`.
    void advance(std::ptrdiff_t last, const std::vector<std::string>& keep) {
        const std::size_t end = std::max(cursor_, last < 0 ? std::size_t{0} : static_cast<std::size_t>(last) + 1);
        if (end > cursor_) run_segment(src(), end, keep);
        for (auto& st : states_)
            for (auto it = st.begin(); it != st.end();) {
                const auto lu = last_use_.find(it->first);
                const bool later = lu != last_use_.end() && lu->second >= end;
                if (!later && std::find(keep.begin(), keep.end(), it->first) == keep.end())
                    it = st.erase(it);
                else
                    ++it;
            }
    }

    std::size_t batches() const { return states_.size(); }
    const tensor& value(std::size_t b, const std::string& name) const {
        auto it = states_[b].find(name);
        if (it == states_[b].end()) QUANTSIM_THROW(graph_error, "adaround: value '", name, "' was not computed");
        return it->second;
    }

private:
    const graph& src() const { return sim_ ? sim_->model() : *fp_; }

    void run_segment(const graph& g, std::size_t end, const std::vector<std::string>& keep) {
        graph seg;
        seg.name = g.name + "_segment";
        seg.opset = g.opset;
        seg.domain_opsets = g.domain_opsets;
        std::set<std::string, std::less<>> produced, inputs, hooked;
        for (std::size_t i = cursor_; i < end; ++i) {
            const node& n = g.nodes[i];
            for (const auto& in : n.inputs) {
                if (in.empty() || produced.count(in) || inputs.count(in) || seg.params.count(in)) continue;
                if (auto pit = g.params.find(in); pit != g.params.end()) {
                    tensor w = pit->second;
                    if (sim_ && w.type() == dtype::float32) {
                        const quantizer* q = sim_->find(in);
                        if (q && q->kind == quantizer_kind::param)
                            if (auto p = sim_->effective_params(in)) w = fake_quant(w, *p, q->options);
                    }
                    seg.params.emplace(in, std::move(w));
                    continue;
                }
                if (states_.empty() || !states_[0].count(in))
                    QUANTSIM_THROW(graph_error, "adaround: ", n.describe(), " reads '", in, "', which is not available");
                inputs.insert(in);
                value_info vi;
                if (const value_info* gi = g.info(in)) vi = *gi;
                const tensor& t = states_[0].at(in);
                vi.name = in;
                vi.type = t.type();
                vi.shape = t.shape();
                if (!vi.shape.empty()) vi.shape[0] = -1;
                vi.dim_params.clear();
                vi.shape_known = true;
                seg.inputs.push_back(std::move(vi));
            }
            for (const auto& out : n.outputs) {
                if (out.empty()) continue;
                produced.insert(out);
                if (auto it = g.value_infos.find(out); it != g.value_infos.end()) seg.value_infos.emplace(out, it->second);
                if (sim_ && act_quant_) {
                    const quantizer* q = sim_->find(out);
                    if (q && q->kind == quantizer_kind::activation && sim_->effective_params(out)) hooked.insert(out);
                }
            }
            seg.nodes.push_back(n);
        }
        std::vector<std::string> fetch;
        for (const auto& v : produced) {
            const auto lu = last_use_.find(v);
            if ((lu != last_use_.end() && lu->second >= end) || std::find(keep.begin(), keep.end(), v) != keep.end()) {
                fetch.push_back(v);
                value_info vi;
                if (const value_info* gi = g.info(v)) vi = *gi;
                vi.name = v;
                seg.outputs.push_back(std::move(vi));
            }
        }
        cursor_ = end;
        if (fetch.empty()) return;
        executor_options eo;
        eo.num_threads = threads_;
        executor ex(std::move(seg), eo);
        if (!hooked.empty()) {
            std::map<std::string, std::pair<quant_params, quant_options>, std::less<>> table;
            for (const auto& h : hooked) {
                quant_options qo = sim_->find(h)->options;
                if (qo.num_threads == 0) qo.num_threads = threads_;
                table.emplace(h, std::make_pair(*sim_->effective_params(h), qo));
            }
            auto shared = std::make_shared<decltype(table)>(std::move(table));
            ex.add_hook(
                [shared](std::string_view name, const node* producer, tensor& value) {
                    if (!producer || value.type() != dtype::float32) return;  // segment inputs are quantized already
                    auto it = shared->find(name);
                    if (it != shared->end()) fake_quant_(value, it->second.first, it->second.second);
                },
                hooked);
        }
        for (auto& st : states_) {
            std::map<std::string, tensor> feeds;
            for (const auto& in : inputs) feeds.emplace(in, st.at(in));
            auto out = ex.run(feeds, fetch);
            for (auto& [k, v] : out) st[k] = std::move(v);
        }
    }

    const graph* fp_;
    quant_sim* sim_;
    bool act_quant_;
    int threads_;
    std::size_t cursor_ = 0;
    std::map<std::string, std::size_t, std::less<>> last_use_;
    std::vector<std::map<std::string, tensor>> states_;
};

layer_data collect(const layer_spec& L, const segment_runner& xs, const segment_runner& ys, const adaround_options& o) {
    layer_data d;
    for (std::size_t bi = 0; bi < xs.batches(); ++bi) {
        tensor xin = xs.value(bi, L.input);
        const tensor& yout = ys.value(bi, L.output);
        const std::int64_t bn = xin.rank() > 0 ? xin.dim(0) : 1;
        if (xin.type() != dtype::float32 || yout.type() != dtype::float32)
            QUANTSIM_THROW(unsupported_error, "adaround: layer '", L.node_name, "' has non-float32 input or output");
        if (L.conv) {
            const int rank = 2 + L.spatial;
            if (xin.rank() != rank || yout.rank() != rank)
                QUANTSIM_THROW(shape_error, "adaround: Conv '", L.node_name, "': input ", to_string(xin.shape()),
                               ", output ", to_string(yout.shape()));
            d.cin = xin.dim(1), d.h = L.spatial == 2 ? xin.dim(2) : 1, d.w = xin.dim(-1);
            d.oh = L.spatial == 2 ? yout.dim(2) : 1, d.ow = yout.dim(-1);
            if (yout.dim(1) != L.cout || d.cin != L.k / (L.kh * L.kw) * L.groups)
                QUANTSIM_THROW(shape_error, "adaround: Conv '", L.node_name, "': channels do not match the weight");
            d.n += xin.dim(0);
            d.positions += yout.dim(0) * d.ohw();
        } else {
            const std::int64_t kx = L.trans_a ? xin.dim(0) : xin.dim(-1);
            if (kx != L.k || yout.dim(-1) != L.cout)
                QUANTSIM_THROW(shape_error, "adaround: '", L.node_name, "': input ", to_string(xin.shape()),
                               " and output ", to_string(yout.shape()), " do not fit weight K=", L.k, ", Cout=", L.cout);
            const std::int64_t rows = xin.numel() / L.k;
            if (yout.numel() != rows * L.cout)
                QUANTSIM_THROW(shape_error, "adaround: '", L.node_name, "': output ", to_string(yout.shape()),
                               " has not one row per input row");
            const std::size_t off = d.x.size();
            d.x.resize(off + static_cast<std::size_t>(xin.numel()));
            const float* xp = xin.f32();
            if (L.trans_a) {  // A is [K, rows]
                for (std::int64_t r = 0; r < rows; ++r)
                    for (std::int64_t kk = 0; kk < L.k; ++kk) d.x[off + static_cast<std::size_t>(r * L.k + kk)] = L.alpha * xp[kk * rows + r];
            } else {
                for (std::int64_t i = 0; i < xin.numel(); ++i) d.x[off + static_cast<std::size_t>(i)] = L.alpha * xp[i];
            }
            d.positions += rows;
            xin = tensor();
        }
        if (xin.defined()) d.x.insert(d.x.end(), xin.f32(), xin.f32() + xin.numel());
        d.y.insert(d.y.end(), yout.f32(), yout.f32() + yout.numel());
        d.samples += bn;
        if ((d.x.size() + d.y.size()) * sizeof(float) >= o.max_cache_bytes) break;
    }
    if (d.samples == 0) QUANTSIM_THROW(calibration_error, "adaround: no calibration samples for layer '", L.node_name, "'");
    return d;
}

// Resolves auto_pad to begin pads once the input and output sizes are known.
void resolve_pads(layer_spec& L, const layer_data& d) {
    if (L.auto_pad == "NOTSET") return;
    auto begin = [&](std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t s, std::int64_t dil) -> std::int64_t {
        if (L.auto_pad == "VALID") return 0;
        const std::int64_t total = std::max<std::int64_t>(0, (out - 1) * s + (k - 1) * dil + 1 - in);
        return L.auto_pad == "SAME_LOWER" ? total - total / 2 : total / 2;
    };
    L.pad_h = begin(d.h, d.oh, L.kh, L.sh, L.dh);
    L.pad_w = begin(d.w, d.ow, L.kw, L.sw, L.dw);
}

// Writes the K x ncols input columns of group g for the output positions cols[0..ncols) (row-major, row stride ld).
void gather_columns(const layer_spec& L, const layer_data& d, std::int64_t g, const std::int64_t* cols,
                    std::int64_t ncols, float* out, std::int64_t ld) {
    if (!L.conv) {
        for (std::int64_t j = 0; j < ncols; ++j) {
            const float* src = d.x.data() + cols[j] * L.k;
            for (std::int64_t kk = 0; kk < L.k; ++kk) out[kk * ld + j] = src[kk];
        }
        return;
    }
    const std::int64_t cg = d.cin / L.groups, ohw = d.ohw(), hw = d.h * d.w;
    for (std::int64_t j = 0; j < ncols; ++j) {
        const std::int64_t n = cols[j] / ohw, r = cols[j] % ohw, oh = r / d.ow, ow = r % d.ow;
        const std::int64_t ih0 = oh * L.sh - L.pad_h, iw0 = ow * L.sw - L.pad_w;
        const float* base = d.x.data() + (n * d.cin + g * cg) * hw;
        std::int64_t kk = 0;
        for (std::int64_t ci = 0; ci < cg; ++ci) {
            const float* plane = base + ci * hw;
            for (std::int64_t a = 0; a < L.kh; ++a) {
                const std::int64_t ih = ih0 + a * L.dh;
                const bool row_ok = ih >= 0 && ih < d.h;
                for (std::int64_t b = 0; b < L.kw; ++b, ++kk) {
                    const std::int64_t iw = iw0 + b * L.dw;
                    out[kk * ld + j] = (row_ok && iw >= 0 && iw < d.w) ? plane[ih * d.w + iw] : 0.0f;
                }
            }
        }
    }
}

// Target value of channel c at output position col.
inline float& target_at(const layer_spec& L, layer_data& d, std::int64_t c, std::int64_t col) {
    if (!L.conv) return d.y[static_cast<std::size_t>(col * L.cout + c)];
    const std::int64_t ohw = d.ohw();
    return d.y[static_cast<std::size_t>(((col / ohw) * L.cout + c) * ohw + col % ohw)];
}

// ---- the optimizer ----------------------------------------------------------------------------------------------

struct splitmix {
    std::uint64_t s;
    std::uint64_t next() noexcept {
        std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
};

struct row_task {
    std::int64_t g, r0, r1;  // group and its rows [r0, r1) (absolute output channels)
};

class layer_optimizer {
public:
    layer_optimizer(const layer_spec& L, layer_data& d, const quant_params& p, const shape_t& wshape, const tensor& w,
                    const adaround_options& o, std::uint64_t seed)
        : L_(L), d_(d), o_(o), rng_{seed} {
        const resolved_granularity rg = check_quant_params(p, wshape, "adaround weight encoding");
        const std::int64_t n = L.cout * L.k;
        const auto rng = p.range();
        s_.resize(static_cast<std::size_t>(n)), b0_.resize(s_.size()), lo_.resize(s_.size()), hi_.resize(s_.size());
        v_.resize(s_.size()), m_.assign(s_.size(), 0.0f), a2_.assign(s_.size(), 0.0f), near_.resize(s_.size());
        const float* wp = w.f32();
        for (std::int64_t c = 0; c < L.cout; ++c)
            for (std::int64_t kk = 0; kk < L.k; ++kk) {
                const std::int64_t f = L.flat(c, kk);
                const std::int64_t gidx = group_index_ref(rg, wshape, f);
                const float s = p.scale[static_cast<std::size_t>(gidx)];
                const float zp = static_cast<float>(p.zero_point[static_cast<std::size_t>(gidx)]);
                const std::size_t i = static_cast<std::size_t>(c * L.k + kk);
                const float ws = wp[f] / s;
                const float fl = std::floor(ws);
                s_[i] = s;
                b0_[i] = fl;
                lo_[i] = static_cast<float>(rng.qmin) - zp;
                hi_[i] = static_cast<float>(rng.qmax) - zp;
                v_[i] = detail::adaround_init_v(std::min(std::max(ws - fl, 0.0f), 0.9999f));
                near_[i] = std::min(std::max(std::nearbyint(ws), lo_[i]), hi_[i]);
            }
        cg_ = L.cout / L.groups;
        kin_ = L.k;
        rows_affine_ = !L.aff_a.empty();
    }

    bool exact_possible() const {
        const std::int64_t p = o_.positions_per_iteration > 0 ? o_.positions_per_iteration : d_.positions;
        return o_.exact_linear && L_.act.kind == act_kind::none && kin_ <= 1024 && kin_ <= 2 * std::max<std::int64_t>(p, 1);
    }

    void prepare(bool exact) {
        exact_ = exact;
        const int threads = kernel_threads();
        // Row blocks: a few tasks per thread, at least 8 rows each for the GEMMs.
        const std::int64_t rb = std::max<std::int64_t>(std::min<std::int64_t>(cg_, 8),
                                                       (cg_ + 4 * threads - 1) / (4 * threads));
        for (std::int64_t g = 0; g < L_.groups; ++g)
            for (std::int64_t r = 0; r < cg_; r += rb)
                tasks_.push_back({g, g * cg_ + r, g * cg_ + std::min(cg_, r + rb)});
        if (exact) {
            build_gram();
        } else {
            // Sampled targets are compared after the affine and the activation: transform them once.
            for (std::int64_t col = 0; col < d_.positions; ++col)
                for (std::int64_t c = 0; c < L_.cout; ++c) {
                    float& t = target_at(L_, d_, c, col);
                    t = L_.act.f(affine(c, t));
                }
            // Sampled batches are whole output rows (see run()): a multiple of the row length.
            const std::int64_t run = L_.conv ? d_.ow : 1;
            batch_ = o_.positions_per_iteration > 0
                         ? std::max<std::int64_t>(1, (o_.positions_per_iteration + run / 2) / run) * run
                         : d_.positions;
            batch_ = std::min(batch_, d_.positions);
            full_batch_ = batch_ == d_.positions;
            run_ = run;
            // Depthwise: straight from the cached rows (no columns). Conv targets of a sampled output row are
            // consecutive in the cache and are read in place; full batches and dense layers gather them once.
            direct_dw_ = o_.direct_depthwise && L_.conv && cg_ == 1 && d_.cin == L_.groups;
            tdirect_ = direct_dw_ || (L_.conv && !full_batch_ && run >= 8);
            cols_.resize(static_cast<std::size_t>(batch_));
            if (!direct_dw_) xbuf_.resize(static_cast<std::size_t>(L_.groups * kin_ * batch_));
            if (!tdirect_) tbuf_.resize(static_cast<std::size_t>(L_.cout * batch_));
            // Fixed evaluation positions for the reported MSE.
            const std::int64_t ne = std::min<std::int64_t>(d_.positions, std::max<std::int64_t>(1, o_.eval_positions));
            eval_cols_.resize(static_cast<std::size_t>(ne));
            if (ne == d_.positions) {
                for (std::int64_t j = 0; j < ne; ++j) eval_cols_[static_cast<std::size_t>(j)] = j;
            } else {
                for (auto& c : eval_cols_) c = static_cast<std::int64_t>(rng_.next() % static_cast<std::uint64_t>(d_.positions));
            }
            eval_x_.resize(static_cast<std::size_t>(L_.groups * kin_ * ne));
            eval_t_.resize(static_cast<std::size_t>(L_.cout * ne));
            gather(eval_cols_, ne, eval_x_, eval_t_, 1, true, true);
            // After the evaluation gather: the full batch's column descriptors (desc_) stay for the iterations.
            if (full_batch_) {
                for (std::int64_t j = 0; j < batch_; ++j) cols_[static_cast<std::size_t>(j)] = j;
                gather(cols_, batch_, xbuf_, tbuf_, run, !direct_dw_, !tdirect_);
            }
        }
    }

    // Runs the optimization; `report(it, loss)` is called every 100 iterations and at the end.
    template <class Report>
    void run(Report&& report) {
        const detail::adaround_schedule sched{o_.iterations, o_.warm_start, o_.beta_start, o_.beta_end};
        std::vector<double> task_loss(tasks_.size());
        for (int it = 0; it < o_.iterations; ++it) {
            const bool want_loss = (it % 100 == 0) || it + 1 == o_.iterations;
            const float beta = sched.beta(it);
            const float reg = sched.regularize(it) ? o_.reg_param : 0.0f;
            const auto adam = detail::adam_coefficients::at(o_.learning_rate, it + 1);
            if (!exact_ && !full_batch_) {
                // Whole output rows at random (image, row): the columns of a row read consecutive input memory,
                // where single random positions would each miss the cache (the cached inputs are ~100 MB).
                const std::int64_t run = L_.conv ? d_.ow : 1;
                const std::uint64_t rows = static_cast<std::uint64_t>(d_.positions / run);
                for (std::int64_t j = 0; j < batch_; j += run) {
                    const std::int64_t r0 = static_cast<std::int64_t>(rng_.next() % rows) * run;
                    for (std::int64_t i = 0; i < run; ++i) cols_[static_cast<std::size_t>(j + i)] = r0 + i;
                }
                gather(cols_, batch_, xbuf_, tbuf_, run_, !direct_dw_, !tdirect_);
            }
            detail::parallel_for(static_cast<std::int64_t>(tasks_.size()), [&](std::int64_t ti) {
                const row_task& t = tasks_[static_cast<std::size_t>(ti)];
                task_loss[static_cast<std::size_t>(ti)] = exact_       ? step_exact(t, reg, beta, adam, want_loss)
                                                          : direct_dw_ ? step_depthwise(t, reg, beta, adam)
                                                                       : step_sampled(t, reg, beta, adam);
            });
            if (want_loss) {
                double l = 0;
                for (double v : task_loss) l += v;
                report(it + 1, l);
            }
        }
    }

    // Hard rounding: the learned integers relative to the zero point (q - zp), in internal layout.
    std::vector<float> learned() const {
        std::vector<float> q(v_.size());
        for (std::size_t i = 0; i < q.size(); ++i)
            q[i] = std::min(std::max(b0_[i] + (v_[i] >= 0 ? 1.0f : 0.0f), lo_[i]), hi_[i]);
        return q;
    }
    const std::vector<float>& nearest() const { return near_; }
    const std::vector<float>& scales() const { return s_; }

    // Reconstruction loss (AIMET's form) of integer weights q (relative to zp).
    double loss_of(const std::vector<float>& q) const {
        std::vector<float> wq(q.size());
        for (std::size_t i = 0; i < q.size(); ++i) wq[i] = q[i] * s_[i];
        if (exact_) {
            double l = 0;
            for (std::int64_t c = 0; c < L_.cout; ++c) {
                const std::int64_t g = c / cg_;
                const float* wc = wq.data() + c * kin_;
                const double* H = gram_.data() + g * kin_ * kin_;
                const float* gc = cross_.data() + c * kin_;
                double quad = 0, lin = 0;
                for (std::int64_t a = 0; a < kin_; ++a) {
                    double row = 0;
                    for (std::int64_t b = 0; b < kin_; ++b) row += H[a * kin_ + b] * wc[b];
                    quad += row * wc[a];
                    lin += static_cast<double>(gc[a]) * wc[a];
                }
                const double a2 = rows_affine_ ? static_cast<double>(L_.aff_a[static_cast<std::size_t>(c)]) * L_.aff_a[static_cast<std::size_t>(c)] : 1.0;
                l += a2 * (quad - 2 * lin + yy_[static_cast<std::size_t>(c)]);
            }
            return l;
        }
        const std::int64_t ne = static_cast<std::int64_t>(eval_cols_.size());
        double l = 0;
        for (std::int64_t c = 0; c < L_.cout; ++c) {
            const std::int64_t g = c / cg_;
            const float* x = eval_x_.data() + g * kin_ * ne;
            for (std::int64_t j = 0; j < ne; ++j) {
                float z = L_.bias[static_cast<std::size_t>(c)];
                for (std::int64_t kk = 0; kk < kin_; ++kk) z += wq[static_cast<std::size_t>(c * kin_ + kk)] * x[kk * ne + j];
                const double diff = L_.act.f(affine(c, z)) - eval_t_[static_cast<std::size_t>(c * ne + j)];
                l += diff * diff;
            }
        }
        return l / static_cast<double>(ne);
    }

    bool exact() const { return exact_; }

private:
    float affine(std::int64_t c, float z) const {
        return rows_affine_ ? L_.aff_a[static_cast<std::size_t>(c)] * z + L_.aff_b[static_cast<std::size_t>(c)] : z;
    }

    // run > 1: the columns are whole output rows of `run` (= OW) consecutive positions each.
    // want_x / want_t: build the input columns / gather the targets (otherwise only the column descriptors).
    void gather(const std::vector<std::int64_t>& cols, std::int64_t ncols, std::vector<float>& xb, std::vector<float>& tb,
                std::int64_t run, bool want_x, bool want_t) {
        // Per-column offsets once, then each group's rows read them (depthwise layers have hundreds of groups).
        desc_.resize(static_cast<std::size_t>(ncols));
        const std::int64_t ohw = d_.ohw(), hw = d_.h * d_.w;
        for (std::int64_t j = 0; j < ncols; ++j) {
            const std::int64_t col = cols[static_cast<std::size_t>(j)];
            auto& dc = desc_[static_cast<std::size_t>(j)];
            if (L_.conv) {
                const std::int64_t n = col / ohw, r = col % ohw;
                dc = {n * d_.cin * hw, (r / d_.ow) * L_.sh - L_.pad_h, (r % d_.ow) * L_.sw - L_.pad_w, n * L_.cout * ohw + r};
            } else {
                dc = {col * L_.k, 0, 0, col * L_.cout};
            }
        }
        const std::int64_t ystride = L_.conv ? ohw : 1;
        const std::int64_t cgin = L_.conv ? d_.cin / L_.groups : 0;
        // Tasks: one per (group, input channel) for convolutions (a 1x1 convolution has one group), column chunks
        // for dense layers, and one for the targets.
        const std::int64_t dense_chunks = std::min<std::int64_t>(ncols, 8);
        const std::int64_t xtasks = !want_x ? 0 : L_.conv ? L_.groups * cgin : dense_chunks;
        detail::parallel_for(xtasks + (want_t ? 1 : 0), [&](std::int64_t task) {
            if (task == xtasks) {
                for (std::int64_t c = 0; c < L_.cout; ++c) {
                    float* out = tb.data() + c * ncols;
                    for (std::int64_t j = 0; j < ncols; ++j) out[j] = d_.y[static_cast<std::size_t>(desc_[static_cast<std::size_t>(j)].yoff + c * ystride)];
                }
                return;
            }
            if (!L_.conv) {
                float* out = xb.data();
                const std::int64_t j0 = task * ncols / dense_chunks, j1 = (task + 1) * ncols / dense_chunks;
                for (std::int64_t j = j0; j < j1; ++j) {
                    const float* src = d_.x.data() + desc_[static_cast<std::size_t>(j)].xoff;
                    for (std::int64_t kk = 0; kk < kin_; ++kk) out[kk * ncols + j] = src[kk];
                }
                return;
            }
            const std::int64_t t = task / cgin, ci = task % cgin;  // group, input channel in the group
            float* out = xb.data() + t * kin_ * ncols;
            if (run > 1) {  // whole output rows: strided copies with the padding worked out per row
                for (std::int64_t j0 = 0; j0 < ncols; j0 += run) {
                    const auto& dc = desc_[static_cast<std::size_t>(j0)];
                    std::int64_t kk = ci * L_.kh * L_.kw;
                    {
                        const float* plane = d_.x.data() + dc.xoff + (t * cgin + ci) * hw;
                        for (std::int64_t a = 0; a < L_.kh; ++a) {
                            const std::int64_t ih = dc.ih0 + a * L_.dh;
                            for (std::int64_t b = 0; b < L_.kw; ++b, ++kk) {
                                float* o = out + kk * ncols + j0;
                                if (ih < 0 || ih >= d_.h) {
                                    std::fill(o, o + run, 0.0f);
                                    continue;
                                }
                                const float* row = plane + ih * d_.w;
                                const std::int64_t iw0 = dc.iw0 + b * L_.dw;  // input column of output column 0
                                // Output columns i with 0 <= iw0 + i * sw < W.
                                const std::int64_t lo = iw0 >= 0 ? 0 : std::min(run, (-iw0 + L_.sw - 1) / L_.sw);
                                const std::int64_t hi =
                                    iw0 >= d_.w ? 0 : std::min(run, (d_.w - 1 - iw0) / L_.sw + 1);
                                std::int64_t i = 0;
                                for (; i < lo; ++i) o[i] = 0.0f;
                                if (L_.sw == 1)
                                    for (; i < hi; ++i) o[i] = row[iw0 + i];
                                else
                                    for (; i < hi; ++i) o[i] = row[iw0 + i * L_.sw];
                                for (i = std::max(i, lo); i < run; ++i) o[i] = 0.0f;
                            }
                        }
                    }
                }
                return;
            }
            std::int64_t kk = ci * L_.kh * L_.kw;
            {
                const float* plane = d_.x.data() + (t * cgin + ci) * hw;
                for (std::int64_t a = 0; a < L_.kh; ++a)
                    for (std::int64_t b = 0; b < L_.kw; ++b, ++kk) {
                        float* o = out + kk * ncols;
                        for (std::int64_t j = 0; j < ncols; ++j) {
                            const auto& dc = desc_[static_cast<std::size_t>(j)];
                            const std::int64_t ih = dc.ih0 + a * L_.dh, iw = dc.iw0 + b * L_.dw;
                            o[j] = (ih >= 0 && ih < d_.h && iw >= 0 && iw < d_.w) ? plane[dc.xoff + ih * d_.w + iw] : 0.0f;
                        }
                    }
            }
        });
    }

    // Soft weights of rows [r0, r1) into b.wt (row-major, kin_ columns), with h and sigmoid(V) into b.hb / b.sg.
    struct scratch_bufs {
        std::vector<float> wt, hb, sg, z, gw, ap, rows, cols, acc;
        std::vector<const float*> colp;
        std::vector<std::int64_t> kidx;
    };
    static scratch_bufs& bufs() {
        thread_local scratch_bufs b;
        return b;
    }
    void soft_weights(std::int64_t r0, std::int64_t r1, scratch_bufs& b) const {
        const std::size_t n = static_cast<std::size_t>((r1 - r0) * kin_), off = static_cast<std::size_t>(r0 * kin_);
        b.wt.resize(n), b.hb.resize(n), b.sg.resize(n), b.gw.resize(n);
        detail::adaround_soft_weights(static_cast<std::int64_t>(n), v_.data() + off, s_.data() + off, b0_.data() + off,
                                      lo_.data() + off, hi_.data() + off, b.wt.data(), b.hb.data(), b.sg.data());
    }

    // dL/dV of rows [r0, r1) from dL/dW~ (b.gw) and the regularizer, then Adam.
    void update(std::int64_t r0, std::int64_t r1, const scratch_bufs& b, float reg, float beta,
                const detail::adam_coefficients& adam) {
        const std::size_t off = static_cast<std::size_t>(r0 * kin_);
        detail::adaround_grad_adam((r1 - r0) * kin_, b.gw.data(), b.hb.data(), b.sg.data(), s_.data() + off,
                                   b0_.data() + off, lo_.data() + off, hi_.data() + off, reg, beta, adam,
                                   v_.data() + off, m_.data() + off, a2_.data() + off);
    }

    // One run of n consecutive positions of channel c: z (pre-activation, no bias) becomes dLoss/dz (scaled by
    // `scale`); returns the summed squared residual against the transformed targets tg.
    template <act_kind Kind>
    float residual_run(std::int64_t c, float* QUANTSIM_RESTRICT z, const float* QUANTSIM_RESTRICT tg, std::int64_t n,
                       float scale) const {
        activation_fn f = L_.act;
        f.kind = Kind;  // a compile-time kind lets the loop below vectorize
        const float bias = L_.bias[static_cast<std::size_t>(c)];
        const float a = rows_affine_ ? L_.aff_a[static_cast<std::size_t>(c)] : 1.0f;
        const float bb = rows_affine_ ? L_.aff_b[static_cast<std::size_t>(c)] : 0.0f;
        float lr = 0;
        for (std::int64_t j = 0; j < n; ++j) {
            const float u = a * (z[j] + bias) + bb;
            float y, dy;
            if constexpr (Kind == act_kind::none) {
                y = u, dy = 1;
            } else if constexpr (Kind == act_kind::clip) {
                y = std::min(std::max(u, f.lo), f.hi), dy = (u > f.lo && u < f.hi) ? 1.0f : 0.0f;
            } else if constexpr (Kind == act_kind::hard_swish) {
                const float v = u + f.add;
                const float cl = std::min(std::max(v, f.lo), f.hi);
                y = u * cl * f.mul, dy = (cl + ((v > f.lo && v < f.hi) ? u : 0.0f)) * f.mul;
            } else {
                y = f.f(u), dy = f.df(u);
            }
            const float diff = y - tg[j];
            lr += diff * diff;
            z[j] = scale * diff * dy * a;
        }
        return lr;
    }

    // Targets of channel c for the sampled positions [j0, j0 + run_) (j0 a multiple of run_ when read in place).
    const float* targets(std::int64_t c, std::int64_t j0) const {
        if (tdirect_) return d_.y.data() + desc_[static_cast<std::size_t>(j0)].yoff + c * d_.ohw();
        return tbuf_.data() + c * batch_ + j0;
    }

    // z (R x P pre-activation, no bias) becomes dLoss/dz; returns the summed squared residual.
    template <act_kind Kind>
    double residuals(const row_task& t, float* zb, std::int64_t P) const {
        const float scale = 2.0f / static_cast<float>(P);
        const std::int64_t seg = tdirect_ ? run_ : P;
        double loss = 0;
        for (std::int64_t r = 0; r < t.r1 - t.r0; ++r) {
            const std::int64_t c = t.r0 + r;
            for (std::int64_t j0 = 0; j0 < P; j0 += seg)
                loss += residual_run<Kind>(c, zb + r * P + j0, targets(c, j0), std::min(seg, P - j0), scale);
        }
        return loss;
    }

    template <class F>
    static auto with_kind(act_kind k, F&& f) {
        switch (k) {
            case act_kind::clip: return f(std::integral_constant<act_kind, act_kind::clip>{});
            case act_kind::leaky_relu: return f(std::integral_constant<act_kind, act_kind::leaky_relu>{});
            case act_kind::hard_sigmoid: return f(std::integral_constant<act_kind, act_kind::hard_sigmoid>{});
            case act_kind::hard_swish: return f(std::integral_constant<act_kind, act_kind::hard_swish>{});
            case act_kind::none: break;
        }
        return f(std::integral_constant<act_kind, act_kind::none>{});
    }

    // im2col path: forward with the packed GEMM reading the gathered columns in place, backward as dot products.
    double step_sampled(const row_task& t, float reg, float beta, const detail::adam_coefficients& adam) {
        const std::int64_t R = t.r1 - t.r0, P = batch_;
        auto& b = bufs();
        b.z.resize(static_cast<std::size_t>(R * P));
        soft_weights(t.r0, t.r1, b);
        const float* x = xbuf_.data() + t.g * kin_ * P;
        if (R < 4) {  // packing does not pay off for one or two rows (grouped convolutions)
            for (std::int64_t r = 0; r < R; ++r) {
                float* z = b.z.data() + r * P;
                std::fill(z, z + P, 0.0f);
                for (std::int64_t kk = 0; kk < kin_; ++kk) {
                    const float wv = b.wt[static_cast<std::size_t>(r * kin_ + kk)];
                    const float* xr = x + kk * P;
                    for (std::int64_t j = 0; j < P; ++j) z[j] += wv * xr[j];
                }
            }
        } else {
            b.ap.resize(static_cast<std::size_t>(detail::packed_a_size(R, kin_)));
            detail::pack_a(false, R, kin_, b.wt.data(), kin_, 1.0f, b.ap.data());
            detail::gemm_packed(R, P, kin_, b.ap.data(), x, P, b.z.data(), P, detail::gemm_epilogue{});
        }
        const double loss =
            with_kind(L_.act.kind, [&](auto k) { return residuals<decltype(k)::value>(t, b.z.data(), P); });
        detail::adaround_gemm_nt(R, kin_, P, b.z.data(), P, x, P, b.gw.data(), kin_);
        update(t.r0, t.r1, b, reg, beta, adam);
        return loss / static_cast<double>(P);
    }

    // Depthwise (one input channel, one output channel per group): for each sampled output row, the kernel's
    // input rows are copied into a zero-padded row buffer, the forward pass, the residual and the gradient run on
    // them while they sit in L1, with no im2col columns. 16-lane partial sums; summation order differs from the
    // im2col path only by rounding.
    double step_depthwise(const row_task& t, float reg, float beta, const detail::adam_coefficients& adam) {
        return with_kind(L_.act.kind, [&](auto k) { return step_depthwise_k<decltype(k)::value>(t, reg, beta, adam); });
    }
    template <act_kind Kind>
    double step_depthwise_k(const row_task& t, float reg, float beta, const detail::adam_coefficients& adam) {
        constexpr std::int64_t lanes = 16;
        const std::int64_t KH = L_.kh, KW = L_.kw, K = kin_, OW = d_.ow, W = d_.w, H = d_.h, P = batch_;
        const std::int64_t sw = L_.sw, dw = L_.dw;
        const std::int64_t owp = (OW + lanes - 1) / lanes * lanes;
        const std::int64_t wp = (owp - 1) * sw + (KW - 1) * dw + 1;  // buffer index i <-> input column i - pad_w
        auto& b = bufs();
        soft_weights(t.r0, t.r1, b);
        b.rows.resize(static_cast<std::size_t>(KH * wp));
        if (sw != 1) b.cols.resize(static_cast<std::size_t>(K * owp));
        b.z.resize(static_cast<std::size_t>(owp));
        b.acc.assign(static_cast<std::size_t>(K * lanes), 0.0f);
        const float scale = 2.0f / static_cast<float>(P);
        const std::int64_t hw = H * W;
        b.colp.resize(static_cast<std::size_t>(K));
        b.kidx.resize(static_cast<std::size_t>(K));
        const float** colp = b.colp.data();
        std::int64_t* kidx = b.kidx.data();
        double loss = 0;
        for (std::int64_t c = t.r0; c < t.r1; ++c) {
            const float* wt = b.wt.data() + (c - t.r0) * K;
            float* acc = b.acc.data();
            std::fill(acc, acc + K * lanes, 0.0f);
            for (std::int64_t j0 = 0; j0 < P; j0 += OW) {
                const auto& dc = desc_[static_cast<std::size_t>(j0)];
                const float* plane = d_.x.data() + dc.xoff + c * hw;
                std::int64_t nv = 0;
                for (std::int64_t a = 0; a < KH; ++a) {
                    const std::int64_t ih = dc.ih0 + a * L_.dh;
                    if (ih < 0 || ih >= H) continue;
                    float* br = b.rows.data() + a * wp;
                    const float* src = plane + ih * W;
                    // Buffer index i reads input column dc.iw0 + i (dc.iw0 = -pad_w at the row start).
                    const std::int64_t lo = std::min(wp, std::max<std::int64_t>(0, -dc.iw0));
                    const std::int64_t hi = std::max(lo, std::min(wp, W - dc.iw0));
                    std::fill(br, br + lo, 0.0f);
                    std::copy(src + dc.iw0 + lo, src + dc.iw0 + hi, br + lo);
                    std::fill(br + hi, br + wp, 0.0f);
                    for (std::int64_t bc = 0; bc < KW; ++bc) {
                        const std::int64_t kk = a * KW + bc;
                        const float* col = br + bc * dw;
                        if (sw != 1) {
                            float* cc = b.cols.data() + kk * owp;
                            for (std::int64_t o = 0; o < owp; ++o) cc[o] = col[o * sw];
                            col = cc;
                        }
                        colp[nv] = col;
                        kidx[nv++] = kk;
                    }
                }
                float* QUANTSIM_RESTRICT z = b.z.data();
                std::fill(z, z + owp, 0.0f);
                for (std::int64_t q = 0; q < nv; ++q) {
                    const float wv = wt[kidx[q]];
                    const float* QUANTSIM_RESTRICT col = colp[q];
                    for (std::int64_t o = 0; o < owp; ++o) z[o] += wv * col[o];
                }
                loss += residual_run<Kind>(c, z, d_.y.data() + dc.yoff + c * d_.ohw(), OW, scale);
                std::fill(z + OW, z + owp, 0.0f);  // padding lanes add nothing to the gradient
                for (std::int64_t q = 0; q < nv; ++q) {
                    float* QUANTSIM_RESTRICT ak = acc + kidx[q] * lanes;
                    const float* QUANTSIM_RESTRICT col = colp[q];
                    for (std::int64_t o = 0; o < owp; o += lanes)
                        for (std::int64_t l = 0; l < lanes; ++l) ak[l] += z[o + l] * col[o + l];
                }
            }
            float* gw = b.gw.data() + (c - t.r0) * K;
            for (std::int64_t kk = 0; kk < K; ++kk) {
                float sum = 0;
                for (std::int64_t l = 0; l < lanes; ++l) sum += acc[kk * lanes + l];
                gw[kk] = sum;
            }
        }
        update(t.r0, t.r1, b, reg, beta, adam);
        return loss / static_cast<double>(P);
    }

    double step_exact(const row_task& t, float reg, float beta, const detail::adam_coefficients& adam, bool want_loss) {
        const std::int64_t R = t.r1 - t.r0;
        auto& b = bufs();
        soft_weights(t.r0, t.r1, b);
        const float* H = gramf_.data() + t.g * kin_ * kin_;
        b.ap.resize(static_cast<std::size_t>(detail::packed_a_size(R, kin_)));
        detail::pack_a(false, R, kin_, b.wt.data(), kin_, 1.0f, b.ap.data());
        detail::gemm_packed(R, kin_, kin_, b.ap.data(), H, kin_, b.gw.data(), kin_, detail::gemm_epilogue{});
        double loss = 0;
        for (std::int64_t r = 0; r < R; ++r) {
            const std::int64_t c = t.r0 + r;
            const float a2 = rows_affine_ ? L_.aff_a[static_cast<std::size_t>(c)] * L_.aff_a[static_cast<std::size_t>(c)] : 1.0f;
            float* g = b.gw.data() + r * kin_;
            const float* w = b.wt.data() + r * kin_;
            const float* gc = cross_.data() + c * kin_;
            if (want_loss) {
                double quad = 0, lin = 0;
                for (std::int64_t kk = 0; kk < kin_; ++kk) quad += static_cast<double>(g[kk]) * w[kk], lin += static_cast<double>(gc[kk]) * w[kk];
                loss += a2 * (quad - 2 * lin + yy_[static_cast<std::size_t>(c)]);
            }
            for (std::int64_t kk = 0; kk < kin_; ++kk) g[kk] = 2.0f * a2 * (g[kk] - gc[kk]);
        }
        update(t.r0, t.r1, b, reg, beta, adam);
        return loss;
    }

    // Gram matrices H_g = mean(x x^T) (K x K per group), cross terms mean(x (y - b)) per output channel and
    // mean((y - b)^2), over all cached positions. Partial sums per partition, in double.
    void build_gram() {
        constexpr std::int64_t chunk = 256;
        const std::int64_t P = d_.positions;
        const std::int64_t nchunks = (P + chunk - 1) / chunk;
        const std::int64_t parts = std::max<std::int64_t>(1, std::min<std::int64_t>(nchunks, 2 * kernel_threads()));
        const std::size_t hsz = static_cast<std::size_t>(L_.groups * kin_ * kin_);
        const std::size_t csz = static_cast<std::size_t>(L_.cout * kin_);
        std::vector<std::vector<double>> H(static_cast<std::size_t>(parts)), C(H.size()), Y(H.size());
        detail::parallel_for(parts, [&](std::int64_t part) {
            auto& h = H[static_cast<std::size_t>(part)];
            auto& cr = C[static_cast<std::size_t>(part)];
            auto& yy = Y[static_cast<std::size_t>(part)];
            h.assign(hsz, 0.0), cr.assign(csz, 0.0), yy.assign(static_cast<std::size_t>(L_.cout), 0.0);
            std::vector<std::int64_t> cols(chunk);
            std::vector<float> xc(static_cast<std::size_t>(kin_ * chunk)), yc(static_cast<std::size_t>(cg_ * chunk));
            std::vector<float> hk(static_cast<std::size_t>(kin_ * kin_)), ck(static_cast<std::size_t>(cg_ * kin_));
            for (std::int64_t ch = part; ch < nchunks; ch += parts) {
                const std::int64_t j0 = ch * chunk, n = std::min(P, j0 + chunk) - j0;
                for (std::int64_t j = 0; j < n; ++j) cols[static_cast<std::size_t>(j)] = j0 + j;
                for (std::int64_t g = 0; g < L_.groups; ++g) {
                    gather_columns(L_, d_, g, cols.data(), n, xc.data(), n);
                    for (std::int64_t r = 0; r < cg_; ++r) {
                        const std::int64_t c = g * cg_ + r;
                        for (std::int64_t j = 0; j < n; ++j) {
                            const float v = target_at(L_, d_, c, j0 + j) - L_.bias[static_cast<std::size_t>(c)];
                            yc[static_cast<std::size_t>(r * n + j)] = v;
                            yy[static_cast<std::size_t>(c)] += static_cast<double>(v) * v;
                        }
                    }
                    gemm(false, true, kin_, kin_, n, 1.0f, xc.data(), n, xc.data(), n, 0.0f, hk.data(), kin_);
                    gemm(false, true, cg_, kin_, n, 1.0f, yc.data(), n, xc.data(), n, 0.0f, ck.data(), kin_);
                    double* hg = h.data() + g * kin_ * kin_;
                    for (std::int64_t i = 0; i < kin_ * kin_; ++i) hg[i] += hk[static_cast<std::size_t>(i)];
                    double* cgp = cr.data() + g * cg_ * kin_;
                    for (std::int64_t i = 0; i < cg_ * kin_; ++i) cgp[i] += ck[static_cast<std::size_t>(i)];
                }
            }
        });
        const double inv = 1.0 / static_cast<double>(P);
        gram_.assign(hsz, 0.0);
        std::vector<double> cross(csz, 0.0);
        yy_.assign(static_cast<std::size_t>(L_.cout), 0.0);
        for (std::size_t p = 0; p < H.size(); ++p) {
            for (std::size_t i = 0; i < hsz; ++i) gram_[i] += H[p][i] * inv;
            for (std::size_t i = 0; i < csz; ++i) cross[i] += C[p][i] * inv;
            for (std::size_t i = 0; i < yy_.size(); ++i) yy_[i] += Y[p][i] * inv;
        }
        gramf_.assign(gram_.begin(), gram_.end());
        cross_.assign(cross.begin(), cross.end());
    }

    const layer_spec& L_;
    layer_data& d_;
    const adaround_options& o_;
    splitmix rng_;
    std::int64_t cg_ = 1, kin_ = 1;
    bool rows_affine_ = false, exact_ = false, full_batch_ = false;
    bool direct_dw_ = false, tdirect_ = false;  // depthwise without columns; conv targets read in place
    std::int64_t run_ = 1;                        // positions per sampled row
    std::vector<float> s_, b0_, lo_, hi_, v_, m_, a2_, near_;
    std::vector<row_task> tasks_;
    struct col_desc {
        std::int64_t xoff, ih0, iw0, yoff;
    };
    std::vector<col_desc> desc_;
    // sampled
    std::int64_t batch_ = 0;
    std::vector<std::int64_t> cols_, eval_cols_;
    std::vector<float> xbuf_, tbuf_, eval_x_, eval_t_;
    // exact
    std::vector<double> gram_, yy_;
    std::vector<float> gramf_, cross_;
};

// ---- progress -----------------------------------------------------------------------------------------------------

class progress_bar {
public:
    explicit progress_bar(bool on) : on_(on) {}
    void show(const adaround_progress& p, bool force) {
        if (!on_) return;
        const auto now = clock_type::now();
        if (!force && now - last_ < std::chrono::milliseconds(200)) return;
        last_ = now;
        constexpr int width = 24;
        const double frac = p.iterations > 0 ? static_cast<double>(p.iteration) / p.iterations : 1.0;
        const int fill = static_cast<int>(frac * width);
        std::string bar(static_cast<std::size_t>(fill), '#');
        bar.resize(width, '.');
        std::string w = p.weight.size() > 32 ? "..." + p.weight.substr(p.weight.size() - 29) : p.weight;
        std::fprintf(stderr, "\radaround %zu/%zu %-32s [%s] %5d/%d loss %.3e ", p.layer + 1, p.layers, w.c_str(),
                     bar.c_str(), p.iteration, p.iterations, p.loss);
        std::fflush(stderr);
    }
    void finish() {
        if (on_) std::fprintf(stderr, "\n");
    }

private:
    bool on_;
    clock_type::time_point last_{};
};

void check_options(const adaround_options& o) {
    if (o.iterations < 1) QUANTSIM_THROW(invalid_argument, "adaround: iterations ", o.iterations, " must be >= 1");
    if (!(o.reg_param >= 0) || !std::isfinite(o.reg_param))
        QUANTSIM_THROW(invalid_argument, "adaround: reg_param ", o.reg_param, " must be finite and >= 0");
    if (!(o.beta_start >= 1 && o.beta_end >= 1) || !std::isfinite(o.beta_start) || !std::isfinite(o.beta_end))
        QUANTSIM_THROW(invalid_argument, "adaround: beta range [", o.beta_start, ", ", o.beta_end, "] must be >= 1");
    if (!(o.warm_start >= 0 && o.warm_start < 1))
        QUANTSIM_THROW(invalid_argument, "adaround: warm_start ", o.warm_start, " must be in [0, 1)");
    if (!(o.learning_rate > 0) || !std::isfinite(o.learning_rate))
        QUANTSIM_THROW(invalid_argument, "adaround: learning_rate ", o.learning_rate, " must be finite and > 0");
    if (o.positions_per_iteration < 0)
        QUANTSIM_THROW(invalid_argument, "adaround: positions_per_iteration ", o.positions_per_iteration, " must be >= 0");
    if (o.num_threads < 0) QUANTSIM_THROW(invalid_argument, "adaround: num_threads ", o.num_threads, " must be >= 0");
}

}  // namespace

std::string adaround_report::table() const {
    std::ostringstream os;
    os << std::left << std::setw(36) << "weight" << std::setw(12) << "activation" << std::setw(8) << "loss"
       << std::right << std::setw(9) << "seconds" << std::setw(12) << "mse near" << std::setw(12) << "mse ada"
       << std::setw(9) << "changed" << '\n';
    std::size_t kept = 0;
    for (const auto& l : layers) {
        os << std::left << std::setw(36) << l.weight << std::setw(12) << l.activation << std::setw(8)
           << (l.exact ? "exact" : "sampled") << std::right << std::fixed << std::setprecision(2) << std::setw(9)
           << l.seconds << std::scientific << std::setprecision(3) << std::setw(12) << l.mse_nearest << std::setw(12)
           << l.mse_adaround << std::fixed << std::setprecision(3) << std::setw(9) << l.fraction_rounded_up_changed
           << (l.kept_nearest ? "  kept nearest (learned rounding worse)" : "") << '\n';
        kept += l.kept_nearest;
    }
    os << std::fixed << std::setprecision(2) << "total " << seconds << " s, " << layers.size() << " layers";
    if (kept > 0) os << ", " << kept << " kept nearest rounding";
    if (!skipped.empty()) os << ", " << skipped.size() << " skipped";
    os << '\n';
    return os.str();
}

adaround_report adaround(quant_sim& sim, const std::vector<std::vector<tensor>>& batches, const adaround_options& o) {
    check_options(o);
    const auto t_all = clock_type::now();
    bool any = false;
    for (const auto& b : batches)
        if (!b.empty() && (b[0].rank() == 0 || b[0].dim(0) > 0)) any = true;
    if (!any) QUANTSIM_THROW(calibration_error, "adaround: no calibration batches (or only empty ones)");

    const int threads = o.num_threads > 0 ? o.num_threads
                        : sim.options().num_threads > 0 ? sim.options().num_threads
                                                        : default_num_threads();
    kernel_threads_scope thread_scope(threads);

    adaround_report rep;
    std::vector<layer_spec> layers = find_layers(sim.model(), sim, rep.skipped);
    // Weight encodings that are missing are computed from the current weights.
    bool missing = false;
    for (const auto& L : layers) missing = missing || !sim.effective_params(L.weight);
    if (missing) sim.compute_param_encodings();

    for (const auto& b : batches)
        if (b.size() != sim.model().inputs.size())
            QUANTSIM_THROW(invalid_argument, "adaround: a batch has ", b.size(), " inputs, the model has ",
                           sim.model().inputs.size());
    // The samples used: the first max_samples of the batches.
    std::vector<std::vector<tensor>> used;
    std::size_t count = 0;
    for (const auto& b : batches) {
        if (o.max_samples > 0 && count >= o.max_samples) break;
        std::int64_t n = b.empty() || b[0].rank() == 0 ? 1 : b[0].dim(0);
        if (n == 0) continue;
        if (o.max_samples > 0) n = std::min<std::int64_t>(n, static_cast<std::int64_t>(o.max_samples - count));
        std::vector<tensor> s;
        for (const auto& t : b) s.push_back(t.rank() > 0 && t.dim(0) != n ? t.slice(0, n) : t);
        used.push_back(std::move(s));
        count += static_cast<std::size_t>(n);
    }

    // Targets come from the FP32 model as it is now (before any weight is replaced).
    const graph fp_graph = sim.model();
    segment_runner fp_run(&fp_graph, nullptr, false, threads, used);
    std::optional<segment_runner> q_run;
    if (o.quantized_inputs) q_run.emplace(nullptr, &sim, o.input_activation_quantizers, threads, used);

    progress_bar bar(o.progress_bar);
    for (std::size_t li = 0; li < layers.size(); ++li) {
        layer_spec& L = layers[li];
        const auto t0 = clock_type::now();
        const auto params = sim.effective_params(L.weight);
        if (!params) {
            rep.skipped.push_back(L.weight + ": no encoding");
            continue;
        }
        const tensor w = sim.model().params.at(L.weight);
        const std::ptrdiff_t px = fp_graph.producer(L.input), py = fp_graph.producer(L.output);
        if (q_run) {
            q_run->advance(px, {L.input});
            fp_run.advance(py, {L.output});
        } else {
            fp_run.advance(std::max(px, py), {L.input, L.output});
        }
        layer_data d = collect(L, q_run ? *q_run : fp_run, fp_run, o);
        if (L.conv) resolve_pads(L, d);

        layer_optimizer opt(L, d, *params, w.shape(), w, o, o.seed ^ (0x9E3779B97F4A7C15ull * (li + 1)));
        opt.prepare(opt.exact_possible());
        adaround_progress pr{li, layers.size(), L.weight, 0, o.iterations, 0.0};
        opt.run([&](int it, double loss) {
            pr.iteration = it, pr.loss = loss;
            if (o.progress) o.progress(pr);
            bar.show(pr, it == o.iterations);
        });

        std::vector<float> q = opt.learned();
        adaround_layer_report lr;
        lr.weight = L.weight;
        lr.node = L.node_name;
        lr.activation = (L.aff_a.empty() ? "" : "bn+") + L.act.name;
        lr.exact = opt.exact();
        lr.samples = d.samples;
        lr.positions = d.positions;
        lr.mse_nearest = opt.loss_of(opt.nearest());
        lr.mse_adaround = opt.loss_of(q);
        if (o.keep_nearest_if_worse && lr.mse_adaround > lr.mse_nearest) {
            q = opt.nearest();
            lr.kept_nearest = true;
        }
        std::size_t changed = 0;
        for (std::size_t i = 0; i < q.size(); ++i) changed += q[i] != opt.nearest()[i];
        lr.fraction_rounded_up_changed = q.empty() ? 0.0 : static_cast<double>(changed) / static_cast<double>(q.size());

        // W' = (q - zp) * s sits on the grid point, so nearest rounding with the frozen encoding gives back q.
        tensor wn = tensor::empty(w.shape());
        float* wp = wn.f32();
        for (std::int64_t c = 0; c < L.cout; ++c)
            for (std::int64_t kk = 0; kk < L.k; ++kk) {
                const std::size_t i = static_cast<std::size_t>(c * L.k + kk);
                wp[L.flat(c, kk)] = q[i] * opt.scales()[i];
            }
        sim.set_encoding(L.weight, *params, /*freeze=*/true);
        sim.update_param(L.weight, std::move(wn));
        lr.seconds = seconds_since(t0);
        rep.layers.push_back(std::move(lr));
    }
    bar.finish();
    rep.seconds = seconds_since(t_all);
    return rep;
}

}  // namespace quantsim
