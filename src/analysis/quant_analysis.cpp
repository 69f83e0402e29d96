#include <quantsim/analysis/quant_analysis.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include <quantsim/core/error.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/quant/fake_quant.hpp>

namespace quantsim {

namespace {

// The first `max_samples` rows (axis 0) of the batches, in order.
std::vector<std::vector<tensor>> first_samples(const std::vector<std::vector<tensor>>& batches, std::int64_t max_samples) {
    std::vector<std::vector<tensor>> out;
    std::int64_t left = max_samples;
    for (const auto& b : batches) {
        if (left <= 0) break;
        if (b.empty() || b[0].rank() == 0) {
            out.push_back(b);
            continue;
        }
        const std::int64_t n = b[0].dim(0);
        if (n <= left) {
            out.push_back(b);
            left -= n;
            continue;
        }
        std::vector<tensor> cut;
        for (const auto& t : b) cut.push_back(t.rank() > 0 && t.dim(0) == n ? t.slice(0, left) : t);
        out.push_back(std::move(cut));
        left = 0;
    }
    return out;
}

double sqnr_db(double signal, double noise) {
    if (noise <= 0) return std::numeric_limits<double>::infinity();
    if (signal <= 0) return -std::numeric_limits<double>::infinity();
    return 10.0 * std::log10(signal / noise);
}

// Sets every quantizer's enabled flag by `on(index)`.
template <class F>
void set_all_enabled(quant_sim& sim, F on) {
    auto& qs = sim.quantizers();
    for (std::size_t i = 0; i < qs.size(); ++i) qs[i].enabled = on(i);
}

bool is_weighted(const quant_sim& sim, const node& n) {
    if (n.op_type != "Conv" && n.op_type != "ConvTranspose" && n.op_type != "Gemm" && n.op_type != "MatMul") return false;
    return n.inputs.size() > 1 && sim.find(n.inputs[1]) != nullptr;
}

}  // namespace

sim_metric output_sqnr_metric(quant_sim& sim, std::vector<std::vector<tensor>> batches) {
    if (batches.empty()) QUANTSIM_THROW(calibration_error, "output_sqnr_metric: no data");
    std::vector<bool> saved;
    for (const auto& q : sim.quantizers()) saved.push_back(q.enabled);
    set_all_enabled(sim, [](std::size_t) { return false; });
    std::vector<tensor> reference;
    try {
        for (const auto& b : batches) reference.push_back(sim.forward(b).at(0));
    } catch (...) {
        set_all_enabled(sim, [&](std::size_t i) { return static_cast<bool>(saved[i]); });
        throw;
    }
    set_all_enabled(sim, [&](std::size_t i) { return static_cast<bool>(saved[i]); });
    return [batches = std::move(batches), reference = std::move(reference)](quant_sim& s) {
        double signal = 0, noise = 0;
        for (std::size_t i = 0; i < batches.size(); ++i) {
            const tensor y = s.forward(batches[i]).at(0);
            const tensor& r = reference[i];
            if (y.numel() != r.numel() || y.type() != dtype::float32) continue;
            for (std::int64_t k = 0; k < y.numel(); ++k) {
                const double a = r.f32()[k], d = a - y.f32()[k];
                signal += a * a;
                noise += d * d;
            }
        }
        // Capped so that an exact match stays a finite, plottable number.
        return std::min(sqnr_db(signal, noise), 200.0);
    };
}

quant_analysis analyze_quantization(quant_sim& sim, const std::vector<std::vector<tensor>>& batches,
                                    const analysis_options& options, sim_metric metric, std::string metric_name) {
    if (batches.empty()) QUANTSIM_THROW(calibration_error, "analyze_quantization: no data");
    if (options.max_samples < 1 || options.histogram_bins < 2)
        QUANTSIM_THROW(invalid_argument, "analyze_quantization: max_samples must be >= 1 and histogram_bins >= 2");
    const auto data = first_samples(batches, options.max_samples);
    quant_analysis r;
    for (const auto& b : data)
        if (!b.empty() && b[0].rank() > 0) r.samples += b[0].dim(0);
    const auto progress = [&](const char* phase, std::size_t done, std::size_t total) {
        if (options.progress) options.progress(phase, done, total);
    };

    // ---- weights ----
    const graph& g = sim.model();
    std::map<std::string, const node*> consumer;
    for (const auto& n : g.nodes)
        for (const auto& in : n.inputs) consumer.emplace(in, &n);
    for (const auto& q : sim.quantizers()) {
        if (q.kind != quantizer_kind::param || q.param_kind != "weight") continue;
        const auto p = sim.effective_params(q.name);
        if (!p) continue;
        const tensor& w = g.params.at(q.name);
        if (w.type() != dtype::float32 || w.numel() == 0) continue;
        weight_analysis a;
        a.name = q.name;
        a.op_type = q.op_type;
        if (auto it = consumer.find(q.name); it != consumer.end()) a.layer = it->second->name;
        a.bitwidth = p->bitwidth;
        a.per_channel = p->size() > 1;
        const tensor fq = fake_quant(w, *p, q.options);
        double signal = 0, noise = 0;
        a.min = std::numeric_limits<float>::infinity();
        a.max = -a.min;
        for (std::int64_t i = 0; i < w.numel(); ++i) {
            const double x = w.f32()[i], d = x - fq.f32()[i];
            signal += x * x;
            noise += d * d;
            a.min = std::min(a.min, w.f32()[i]);
            a.max = std::max(a.max, w.f32()[i]);
        }
        a.sqnr_db = sqnr_db(signal, noise);
        if (w.rank() >= 2 && w.dim(0) > 1) {
            // ConvTranspose keeps output channels on axis 1, but axis 0 still shows the spread the same way.
            const std::int64_t c = w.dim(0), per = w.numel() / c;
            a.channel_min.assign(static_cast<std::size_t>(c), std::numeric_limits<float>::infinity());
            a.channel_max.assign(static_cast<std::size_t>(c), -std::numeric_limits<float>::infinity());
            for (std::int64_t ch = 0; ch < c; ++ch)
                for (std::int64_t k = 0; k < per; ++k) {
                    const float v = w.f32()[ch * per + k];
                    a.channel_min[static_cast<std::size_t>(ch)] = std::min(a.channel_min[static_cast<std::size_t>(ch)], v);
                    a.channel_max[static_cast<std::size_t>(ch)] = std::max(a.channel_max[static_cast<std::size_t>(ch)], v);
                }
            std::vector<double> ranges;
            for (std::size_t ch = 0; ch < a.channel_min.size(); ++ch)
                ranges.push_back(static_cast<double>(a.channel_max[ch]) - a.channel_min[ch]);
            std::vector<double> sorted = ranges;
            std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2), sorted.end());
            const double median = sorted[sorted.size() / 2];
            const double largest = *std::max_element(ranges.begin(), ranges.end());
            a.channel_spread = median > 0 ? largest / median : (largest > 0 ? std::numeric_limits<double>::infinity() : 1.0);
        }
        r.weights.push_back(std::move(a));
    }

    // ---- activations: two FP32 passes (range, then histogram and SQNR of each quantizer alone) ----
    struct act_state {
        std::size_t index;
        quant_params params;
        quant_options options;
        double signal = 0, noise = 0;
        std::int64_t count = 0, clipped = 0;
    };
    std::map<std::string, act_state, std::less<>> acts;
    std::vector<activation_analysis> act_out;
    for (std::size_t i = 0; i < sim.quantizers().size(); ++i) {
        const quantizer& q = sim.quantizers()[i];
        if (q.kind != quantizer_kind::activation || !q.enabled) continue;
        const auto p = sim.effective_params(q.name);
        if (!p) continue;
        activation_analysis a;
        a.name = q.name;
        a.op_type = q.op_type;
        a.bitwidth = p->bitwidth;
        const encoding e = p->at(0);
        const auto range = e.range();
        a.clip_min = static_cast<float>((static_cast<double>(range.qmin) - e.zero_point) * e.scale);
        a.clip_max = static_cast<float>((static_cast<double>(range.qmax) - e.zero_point) * e.scale);
        a.min = std::numeric_limits<float>::infinity();
        a.max = -a.min;
        a.histogram.assign(static_cast<std::size_t>(options.histogram_bins), 0);
        acts.emplace(q.name, act_state{act_out.size(), *p, q.options});
        act_out.push_back(std::move(a));
    }
    if (!acts.empty()) {
        executor_options eo;
        eo.num_threads = sim.options().num_threads;
        executor fp(g, eo);
        std::set<std::string, std::less<>> names;
        for (const auto& [k, v] : acts) names.insert(k);
        int pass = 0;
        fp.add_hook(
            [&](std::string_view name, const node*, tensor& value) {
                auto it = acts.find(name);
                if (it == acts.end() || value.type() != dtype::float32) return;
                activation_analysis& a = act_out[it->second.index];
                const float* x = value.f32();
                const std::int64_t n = value.numel();
                if (pass == 0) {
                    for (std::int64_t i = 0; i < n; ++i) {
                        a.min = std::min(a.min, x[i]);
                        a.max = std::max(a.max, x[i]);
                    }
                    return;
                }
                act_state& s = it->second;
                const tensor q = fake_quant(value, s.params, s.options);
                const double width = static_cast<double>(a.max) - a.min;
                const double bins = static_cast<double>(a.histogram.size());
                // Saturated: beyond the end points by more than half a step (closer values just round to them).
                const double half = 0.5 * s.params.scale[0];
                const double lo_sat = a.clip_min - half, hi_sat = a.clip_max + half;
                for (std::int64_t i = 0; i < n; ++i) {
                    const double v = x[i], d = v - q.f32()[i];
                    s.signal += v * v;
                    s.noise += d * d;
                    s.clipped += v < lo_sat || v > hi_sat;
                    std::size_t b = width > 0 ? static_cast<std::size_t>((v - a.min) / width * bins) : 0;
                    a.histogram[std::min(b, a.histogram.size() - 1)] += 1;
                }
                s.count += n;
            },
            names);
        const std::size_t total = 2 * data.size();
        for (pass = 0; pass < 2; ++pass)
            for (std::size_t b = 0; b < data.size(); ++b) {
                (void)fp.run(data[b]);
                progress("statistics", static_cast<std::size_t>(pass) * data.size() + b + 1, total);
            }
        for (auto& [name, s] : acts) {
            activation_analysis& a = act_out[s.index];
            a.sqnr_db = std::min(sqnr_db(s.signal, s.noise), 200.0);
            a.clipped_fraction = s.count ? static_cast<double>(s.clipped) / static_cast<double>(s.count) : 0.0;
            if (!std::isfinite(a.min)) a.min = a.max = 0;
        }
    }
    r.activations = std::move(act_out);

    // ---- metric and sensitivity ----
    if (!metric) {
        metric = output_sqnr_metric(sim, data);
        metric_name = "output SQNR vs FP32 (dB)";
    }
    r.metric_name = metric_name.empty() ? "metric" : metric_name;
    auto& qs = sim.quantizers();
    std::vector<bool> saved;
    for (const auto& q : qs) saved.push_back(q.enabled);
    const auto restore = [&] { set_all_enabled(sim, [&](std::size_t i) { return static_cast<bool>(saved[i]); }); };
    try {
        set_all_enabled(sim, [](std::size_t) { return false; });
        r.fp32_metric = metric(sim);
        restore();
        r.quantized_metric = metric(sim);
        if (options.sensitivity) {
            // Layers: each weighted node owns its parameter quantizers and the activation quantizers downstream of it
            // (following first inputs back to the nearest weighted node).
            std::map<std::string, std::size_t, std::less<>> index;
            for (std::size_t i = 0; i < qs.size(); ++i) index.emplace(qs[i].name, i);
            std::map<std::string, std::size_t> producer;
            for (std::size_t i = 0; i < g.nodes.size(); ++i)
                for (const auto& o : g.nodes[i].outputs) producer.emplace(o, i);
            std::vector<layer_sensitivity> layers;
            std::vector<std::vector<std::size_t>> members;
            std::map<std::size_t, std::size_t> layer_of_node;  // weighted node -> layer
            layers.push_back({"model inputs", "", {}, 0, 0});
            members.emplace_back();
            for (std::size_t i = 0; i < g.nodes.size(); ++i) {
                const node& n = g.nodes[i];
                if (!is_weighted(sim, n)) continue;
                layer_of_node[i] = layers.size();
                layers.push_back({n.name, n.op_type, {}, 0, 0});
                members.emplace_back();
                for (std::size_t k = 1; k < n.inputs.size(); ++k)
                    if (auto it = index.find(n.inputs[k]); it != index.end() && saved[it->second]) {
                        members.back().push_back(it->second);
                        layers.back().quantizers.push_back(n.inputs[k]);
                    }
            }
            for (std::size_t i = 0; i < qs.size(); ++i) {
                if (qs[i].kind != quantizer_kind::activation || !saved[i]) continue;
                std::size_t owner = 0;
                std::string v = qs[i].name;
                for (int hops = 0; hops < 10000; ++hops) {
                    auto p = producer.find(v);
                    if (p == producer.end()) break;
                    if (auto l = layer_of_node.find(p->second); l != layer_of_node.end()) {
                        owner = l->second;
                        break;
                    }
                    const node& n = g.nodes[p->second];
                    if (n.inputs.empty()) break;
                    v = n.inputs[0];
                }
                members[owner].push_back(i);
                layers[owner].quantizers.push_back(qs[i].name);
            }
            std::vector<std::size_t> keep;
            for (std::size_t l = 0; l < layers.size(); ++l)
                if (!members[l].empty()) keep.push_back(l);
            std::size_t done = 0;
            for (std::size_t l : keep) {
                std::vector<bool> in(qs.size(), false);
                for (std::size_t i : members[l]) in[i] = true;
                set_all_enabled(sim, [&](std::size_t i) { return saved[i] && in[i]; });
                layers[l].only_this = metric(sim);
                set_all_enabled(sim, [&](std::size_t i) { return saved[i] && !in[i]; });
                layers[l].all_but_this = metric(sim);
                restore();
                progress("sensitivity", ++done, keep.size());
                r.sensitivity.push_back(layers[l]);
            }
        }
    } catch (...) {
        restore();
        throw;
    }
    restore();
    return r;
}

}  // namespace quantsim
