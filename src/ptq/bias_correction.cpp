// Empirical and analytical bias correction (include/quantsim/ptq/bias_correction.hpp).
#include <quantsim/ptq/bias_correction.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numbers>
#include <optional>
#include <sstream>

#include <quantsim/ir/builder.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/ir/pattern.hpp>
#include <quantsim/ptq/detail/layers.hpp>
#include <quantsim/quant/fake_quant.hpp>

namespace quantsim {

double clipped_normal_mean(double mean, double stddev, double lo, double hi) {
    if (std::isnan(mean) || std::isnan(stddev) || std::isnan(lo) || std::isnan(hi) || stddev < 0 || lo > hi)
        QUANTSIM_THROW(invalid_argument, "clipped_normal_mean: mean ", mean, ", stddev ", stddev, ", bounds [", lo,
                       ", ", hi, "] (need stddev >= 0 and lo <= hi)");
    if (stddev == 0) return std::clamp(mean, lo, hi);
    const auto Phi = [](double z) { return 0.5 * std::erfc(-z / std::numbers::sqrt2); };
    const auto phi = [](double z) { return std::exp(-0.5 * z * z) / std::sqrt(2.0 * std::numbers::pi); };
    // E[clamp(X)] = lo P(X < lo) + hi P(X > hi) + E[X; lo <= X <= hi]; infinite bounds drop their terms.
    double p_lo = 0, d_lo = 0, p_hi = 1, d_hi = 0, r = 0;
    if (std::isfinite(lo)) {
        const double a = (lo - mean) / stddev;
        p_lo = Phi(a);
        d_lo = phi(a);
        r += lo * p_lo;
    }
    if (std::isfinite(hi)) {
        const double b = (hi - mean) / stddev;
        p_hi = Phi(b);
        d_hi = phi(b);
        r += hi * (1.0 - p_hi);
    }
    return r + mean * (p_hi - p_lo) + stddev * (d_lo - d_hi);
}

namespace {

enum class layer_kind { conv, conv_transpose, gemm, matmul };

struct bc_layer {
    std::size_t node = 0;
    layer_kind kind = layer_kind::conv;
    std::string name, input, weight, bias;
    double bias_factor = 1.0;  // Gemm: beta (the bias enters as beta * C)
    std::int64_t channels = 0;
};

bool listed(const std::vector<std::string>& names, const node& n) {
    return std::find(names.begin(), names.end(), n.name) != names.end() ||
           (!n.outputs.empty() && std::find(names.begin(), names.end(), n.outputs[0]) != names.end());
}

// The layers to correct, and a log line for every candidate left out.
std::vector<bc_layer> find_layers(quant_sim& sim, const bias_correction_options& o, std::ostringstream& log) {
    const graph& g = sim.model();
    std::vector<bc_layer> out;
    bool need_encodings = false;
    for (std::size_t i = 0; i < g.nodes.size(); ++i) {
        const node& n = g.nodes[i];
        if (!n.domain.empty() || n.inputs.size() < 2 || n.outputs.empty()) continue;
        bc_layer l;
        if (n.op_type == "Conv") l.kind = layer_kind::conv;
        else if (n.op_type == "ConvTranspose") l.kind = layer_kind::conv_transpose;
        else if (n.op_type == "Gemm") l.kind = layer_kind::gemm;
        else if (n.op_type == "MatMul") l.kind = layer_kind::matmul;
        else continue;
        const tensor* w = detail::ptq_float_param(g, n, 1);
        if (!w) continue;  // not a layer with a constant weight
        if (!o.layers.empty() && !listed(o.layers, n)) continue;
        if (listed(o.exclude, n)) {
            log << "skipped '" << n.name << "': excluded\n";
            continue;
        }
        l.node = i;
        l.name = n.name;
        l.input = n.inputs[0];
        l.weight = n.inputs[1];
        const tensor* b = nullptr;
        switch (l.kind) {
            case layer_kind::conv:
                l.channels = w->rank() >= 3 ? w->dim(0) : 0;
                b = detail::ptq_float_param(g, n, 2);
                if (b) l.bias = n.inputs[2];
                break;
            case layer_kind::conv_transpose:
                l.channels = w->rank() >= 3 ? w->dim(1) * n.attr_int("group", 1) : 0;
                b = detail::ptq_float_param(g, n, 2);
                if (b) l.bias = n.inputs[2];
                break;
            case layer_kind::gemm:
                if (n.attr_int("transA", 0) != 0) {
                    log << "skipped '" << n.name << "': Gemm with transA\n";
                    continue;
                }
                l.channels = w->rank() == 2 ? (n.attr_int("transB", 0) != 0 ? w->dim(0) : w->dim(1)) : 0;
                l.bias_factor = n.attr_float("beta", 1.0f);
                b = detail::ptq_float_param(g, n, 2);
                if (b) l.bias = n.inputs[2];
                break;
            case layer_kind::matmul: {
                l.channels = w->rank() == 2 ? w->dim(1) : 0;
                const auto readers = g.consumers(n.outputs[0]);
                if (readers.size() == 1 && !g.is_output(n.outputs[0])) {
                    const node& add = g.nodes[readers[0]];
                    if (add.op_type == "Add" && add.inputs.size() == 2) {
                        const std::size_t k = add.inputs[0] == n.outputs[0] ? 1 : 0;
                        b = detail::ptq_float_param(g, add, k);
                        // Broadcast along the last axis only: [N], [1, N], [1, 1, N], ...
                        if (b && b->numel() == l.channels && b->rank() >= 1 && b->dim(-1) == l.channels)
                            l.bias = add.inputs[k];
                        else
                            b = nullptr;
                    }
                }
                break;
            }
        }
        if (l.channels <= 0) continue;
        if (l.bias.empty() || !b) {
            log << "skipped '" << n.name << "': no float bias parameter (add_zero_biases gives Conv/Gemm one)\n";
            continue;
        }
        if (b->numel() != l.channels && !(l.kind == layer_kind::gemm && b->numel() == l.channels)) {
            log << "skipped '" << n.name << "': bias has " << b->numel() << " values for " << l.channels
                << " output channels\n";
            continue;
        }
        if (use_count(g, l.bias) != 1) {
            log << "skipped '" << n.name << "': its bias '" << l.bias << "' is shared with another node\n";
            continue;
        }
        const quantizer* q = sim.find(l.weight);
        if (!q || !q->enabled) {
            log << "skipped '" << n.name << "': weight '" << l.weight << "' is not quantized\n";
            continue;
        }
        if (!sim.effective_params(l.weight)) need_encodings = true;
        out.push_back(std::move(l));
    }
    if (need_encodings) sim.compute_param_encodings();
    return out;
}

// W_q - W for the layer's weight.
tensor weight_error(quant_sim& sim, const bc_layer& l) {
    const tensor& w = sim.model().params.at(l.weight);
    const auto p = sim.effective_params(l.weight);
    if (!p) QUANTSIM_THROW(calibration_error, "bias correction: weight '", l.weight, "' of '", l.name, "' has no encoding");
    tensor d = fake_quant(w, *p, sim.at(l.weight).options);
    for (std::int64_t i = 0; i < d.numel(); ++i) d.f32()[i] -= w.f32()[i];
    return d;
}

// Subtracts err (per output channel) from the layer's bias through the sim. Returns the mean |change|.
double apply(quant_sim& sim, const bc_layer& l, const std::vector<double>& err) {
    const tensor& b = sim.model().params.at(l.bias);
    tensor b2 = b.clone();
    double shift = 0;
    for (std::int64_t c = 0; c < l.channels; ++c) {
        const double d = err[static_cast<std::size_t>(c)] / l.bias_factor;
        b2.f32()[c] = static_cast<float>(double(b2.f32()[c]) - d);
        shift += std::fabs(d);
    }
    sim.update_param(l.bias, std::move(b2));
    return shift / double(l.channels);
}

// The layer alone, with W_q - W as its weight and no bias: its output is the quantization error of the layer.
executor delta_executor(const graph& g, const bc_layer& l, tensor dw, const tensor& x) {
    const node& n = g.nodes[l.node];
    graph_builder b("bias_correction_delta");
    shape_t s = x.shape();
    if (!s.empty()) s[0] = -1;
    auto in = b.input("x", s);
    auto w = b.param("w", std::move(dw));
    attribute_map attrs(n.attrs.begin(), n.attrs.end());
    attrs.erase("beta");
    auto y = b.node(n.op_type, {in, w}, attrs, node_options("delta"));
    b.output(y);
    return executor(b.build(), executor_options{});
}

void accumulate(const tensor& y, layer_kind kind, std::vector<double>& sum, std::int64_t& count) {
    const std::int64_t C = static_cast<std::int64_t>(sum.size());
    if (kind == layer_kind::conv || kind == layer_kind::conv_transpose || kind == layer_kind::gemm) {
        const std::int64_t n = y.dim(0), inner = y.numel() / (n * C);
        for (std::int64_t b = 0; b < n; ++b)
            for (std::int64_t c = 0; c < C; ++c) {
                const float* p = y.f32() + (b * C + c) * inner;
                double s = 0;
                for (std::int64_t e = 0; e < inner; ++e) s += p[e];
                sum[static_cast<std::size_t>(c)] += s;
            }
        count += n * inner;
    } else {  // MatMul: channels on the last axis
        const std::int64_t rows = y.numel() / C;
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < C; ++c) sum[static_cast<std::size_t>(c)] += y.f32()[r * C + c];
        count += rows;
    }
}

}  // namespace

bias_correction_report correct_bias_empirical(quant_sim& sim, const std::vector<std::vector<tensor>>& batches,
                                              const bias_correction_options& o) {
    if (batches.empty()) QUANTSIM_THROW(calibration_error, "correct_bias_empirical: no calibration batches");
    bias_correction_report rep;
    std::ostringstream log;
    auto layers = find_layers(sim, o, log);
    if (layers.empty()) {
        rep.log = log.str();
        return rep;
    }
    const graph& g = sim.model();
    for (std::size_t k = 0; k < batches.size(); ++k)
        if (batches[k].size() != g.inputs.size())
            QUANTSIM_THROW(invalid_argument, "correct_bias_empirical: batch ", k, " has ", batches[k].size(),
                           " tensors, the model has ", g.inputs.size(), " inputs");
    // The FP32 model as it is now (biases change below; the layers' inputs must not).
    executor fp(g, executor_options{});
    std::vector<std::string> fetch;
    for (const auto& l : layers)
        if (!g.is_input(l.input) && std::find(fetch.begin(), fetch.end(), l.input) == fetch.end())
            fetch.push_back(l.input);
    std::vector<tensor> dws;
    for (const auto& l : layers) dws.push_back(weight_error(sim, l));
    std::vector<std::unique_ptr<executor>> deltas(layers.size());
    std::vector<std::vector<double>> sums(layers.size());
    std::vector<std::int64_t> counts(layers.size(), 0);
    for (std::size_t i = 0; i < layers.size(); ++i) sums[i].assign(static_cast<std::size_t>(layers[i].channels), 0.0);
    const std::size_t nb = o.max_batches ? std::min(o.max_batches, batches.size()) : batches.size();
    for (std::size_t k = 0; k < nb; ++k) {
        std::map<std::string, tensor> feeds;
        for (std::size_t i = 0; i < g.inputs.size(); ++i) feeds[g.inputs[i].name] = batches[k][i];
        auto values = fetch.empty() ? std::map<std::string, tensor>{} : fp.run(feeds, fetch);
        for (const auto& [name, t] : feeds) values[name] = t;  // layers reading a model input
        for (std::size_t i = 0; i < layers.size(); ++i) {
            const tensor& x = values.at(layers[i].input);
            if (!deltas[i]) deltas[i] = std::make_unique<executor>(delta_executor(g, layers[i], dws[i], x));
            auto y = deltas[i]->run(std::vector<tensor>{x});
            accumulate(y[0], layers[i].kind, sums[i], counts[i]);
        }
    }
    for (std::size_t i = 0; i < layers.size(); ++i) {
        std::vector<double> err(sums[i].size());
        for (std::size_t c = 0; c < err.size(); ++c) err[c] = counts[i] ? sums[i][c] / double(counts[i]) : 0.0;
        const double shift = apply(sim, layers[i], err);
        rep.layers.push_back(layers[i].name);
        rep.mean_abs_shift.push_back(shift);
        log << "corrected '" << layers[i].name << "' (empirical, " << nb << " batches): mean |bias shift| " << shift << "\n";
    }
    rep.log = log.str();
    return rep;
}

bias_correction_report correct_bias_analytical(quant_sim& sim, const bn_stats_map& stats,
                                               const bias_correction_options& o) {
    bias_correction_report rep;
    std::ostringstream log;
    auto layers = find_layers(sim, o, log);
    const graph& g = sim.model();
    constexpr double inf = std::numeric_limits<double>::infinity();
    for (const auto& l : layers) {
        const node& n = g.nodes[l.node];
        // E[x] per input channel: the input's own statistics, or those before a Relu / Clip producing it.
        const bn_stats* st = nullptr;
        double lo = -inf, hi = inf;
        std::string how;
        if (auto it = stats.find(l.input); it != stats.end()) {
            st = &it->second;
            how = "identity";
        } else if (auto p = g.producer(l.input); p >= 0) {
            const node& a = g.nodes[static_cast<std::size_t>(p)];
            if (a.domain.empty() && !a.inputs.empty() && (a.op_type == "Relu" || a.op_type == "Clip")) {
                if (auto it2 = stats.find(a.inputs[0]); it2 != stats.end()) {
                    bool ok = true;
                    if (a.op_type == "Relu") {
                        lo = 0;
                    } else {
                        if (a.has_input(1)) {
                            auto v = detail::ptq_scalar_param(g, a, 1);
                            ok = ok && v.has_value();
                            if (v) lo = *v;
                        }
                        if (a.has_input(2)) {
                            auto v = detail::ptq_scalar_param(g, a, 2);
                            ok = ok && v.has_value();
                            if (v) hi = *v;
                        }
                    }
                    if (ok && lo <= hi) {
                        st = &it2->second;
                        how = a.op_type == "Relu" ? "ReLU" : "Clip";
                    }
                }
            }
        }
        if (!st) {
            log << "skipped '" << l.name << "': no BN statistics for its input '" << l.input << "'\n";
            continue;
        }
        const tensor dw = weight_error(sim, l);
        const std::int64_t cin_total = static_cast<std::int64_t>(st->mean.size());
        std::vector<double> ex(st->mean.size());
        for (std::size_t c = 0; c < ex.size(); ++c) ex[c] = clipped_normal_mean(st->mean[c], st->stddev[c], lo, hi);
        std::vector<double> err(static_cast<std::size_t>(l.channels), 0.0);
        bool fits = true;
        if (l.kind == layer_kind::conv) {
            const std::int64_t M = dw.dim(0), cg = dw.dim(1), k = dw.numel() / (M * cg), group = n.attr_int("group", 1);
            fits = cg * group == cin_total;
            for (std::int64_t oc = 0; fits && oc < M; ++oc) {
                const std::int64_t base = oc / (M / group) * cg;
                double acc = 0;
                for (std::int64_t i = 0; i < cg; ++i)
                    for (std::int64_t e = 0; e < k; ++e)
                        acc += double(dw.f32()[(oc * cg + i) * k + e]) * ex[static_cast<std::size_t>(base + i)];
                err[static_cast<std::size_t>(oc)] = acc;
            }
        } else if (l.kind == layer_kind::conv_transpose) {
            const std::int64_t cin = dw.dim(0), mg = dw.dim(1), k = dw.numel() / (cin * mg), group = n.attr_int("group", 1);
            fits = cin == cin_total;
            for (std::int64_t i = 0; fits && i < cin; ++i) {
                const std::int64_t grp = i / (cin / group);
                for (std::int64_t j = 0; j < mg; ++j)
                    for (std::int64_t e = 0; e < k; ++e)
                        err[static_cast<std::size_t>(grp * mg + j)] +=
                            double(dw.f32()[(i * mg + j) * k + e]) * ex[static_cast<std::size_t>(i)];
            }
        } else {
            const bool tb = l.kind == layer_kind::gemm && n.attr_int("transB", 0) != 0;
            const std::int64_t K = tb ? dw.dim(1) : dw.dim(0);
            const double alpha = l.kind == layer_kind::gemm ? n.attr_float("alpha", 1.0f) : 1.0;
            const value_info* vi = g.info(l.input);
            // MatMul reads channels on the last axis; the statistics are per axis-1 channel: only rank 2 agrees.
            fits = K == cin_total && (l.kind == layer_kind::gemm || (vi && vi->shape_known && vi->shape.size() == 2));
            for (std::int64_t c = 0; fits && c < l.channels; ++c) {
                double acc = 0;
                for (std::int64_t kk = 0; kk < K; ++kk)
                    acc += double(dw.f32()[tb ? c * K + kk : kk * l.channels + c]) * ex[static_cast<std::size_t>(kk)];
                err[static_cast<std::size_t>(c)] = alpha * acc;
            }
        }
        if (!fits) {
            log << "skipped '" << l.name << "': the statistics of '" << l.input << "' have " << cin_total
                << " channels, which do not match the layer's input channels\n";
            continue;
        }
        const double shift = apply(sim, l, err);
        rep.layers.push_back(l.name);
        rep.mean_abs_shift.push_back(shift);
        log << "corrected '" << l.name << "' (analytical, input " << how << "): mean |bias shift| " << shift << "\n";
    }
    rep.log = log.str();
    return rep;
}

}  // namespace quantsim
