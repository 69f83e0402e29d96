#include <quantsim/ptq/mixed_precision.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iomanip>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>

#include <quantsim/core/error.hpp>

namespace quantsim {

// ---- candidates ---------------------------------------------------------------------------------------------------

mp_candidate parse_mp_candidate(const std::string& text) {
    std::string s;
    for (char c : text)
        if (!std::isspace(static_cast<unsigned char>(c))) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::optional<int> a, w;
    std::size_t i = 0;
    while (i < s.size()) {
        const char k = s[i++];
        std::size_t j = i;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
        if ((k != 'a' && k != 'w') || j == i || j - i > 2)
            QUANTSIM_THROW(invalid_argument, "mixed precision candidate '", text, "': expected the form a8w4");
        const int v = std::stoi(s.substr(i, j - i));
        if (v < 2 || v > 16)
            QUANTSIM_THROW(invalid_argument, "mixed precision candidate '", text, "': bit width ", v, " is outside 2..16");
        (k == 'a' ? a : w) = v;
        i = j;
    }
    if (!a || !w) QUANTSIM_THROW(invalid_argument, "mixed precision candidate '", text, "': expected the form a8w4");
    return {*a, *w};
}

std::vector<mp_candidate> parse_mp_candidates(const std::string& text) {
    std::vector<mp_candidate> r;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t end = std::min(text.find(',', start), text.size());
        r.push_back(parse_mp_candidate(text.substr(start, end - start)));
        start = end + 1;
    }
    return r;
}

std::string to_string(const mp_candidate& c) {
    return "a" + std::to_string(c.activation_bitwidth) + "w" + std::to_string(c.param_bitwidth);
}

// ---- costs --------------------------------------------------------------------------------------------------------

std::int64_t layer_macs(const graph& model, const node& layer) {
    if (layer.inputs.size() < 2) return 0;
    auto wit = model.params.find(layer.inputs[1]);
    if (wit == model.params.end()) return 0;
    const tensor& w = wit->second;
    const value_info* out = layer.outputs.empty() ? nullptr : model.info(layer.outputs[0]);
    if (!out || !out->shape_known || out->shape.empty()) return w.numel();
    // Output channels: dim 1 for convolutions, the last dim for Gemm/MatMul.
    const bool conv = layer.op_type == "Conv" || layer.op_type == "ConvTranspose";
    const std::size_t cdim = conv ? 1 : out->shape.size() - 1;
    if (cdim >= out->shape.size() || out->shape[cdim] <= 0) return w.numel();
    std::int64_t per_sample = 1;
    for (std::size_t d = out->shape.size() > 1 ? 1 : 0; d < out->shape.size(); ++d) {
        if (out->shape[d] < 0) return w.numel();
        per_sample *= out->shape[d];
    }
    // Each output element takes (weight elements / output channels) MACs: C/g x kernel for a convolution, K for a
    // matrix product. ConvTranspose scatters instead, with the same total.
    const std::int64_t channels = out->shape[cdim];
    if (layer.op_type == "ConvTranspose") {
        const value_info* in = model.info(layer.inputs[0]);
        if (in && in->fully_known() && in->shape.size() > 2) {
            std::int64_t in_spatial = 1;
            for (std::size_t d = 2; d < in->shape.size(); ++d) in_spatial *= in->shape[d];
            return in_spatial * w.numel();  // every input pixel meets every weight once (group-adjusted by numel)
        }
        return w.numel();
    }
    return per_sample * (w.numel() / channels);
}

// ---- the search ---------------------------------------------------------------------------------------------------

namespace {

bool is_layer(const node& n) {
    return n.op_type == "Conv" || n.op_type == "ConvTranspose" || n.op_type == "Gemm" || n.op_type == "MatMul";
}

// The quantizer whose encoding applies to `value` (following shared_with), or nullptr.
const quantizer* root_quantizer(const quant_sim& sim, const std::string& value) {
    const quantizer* q = sim.find(value);
    for (int hops = 0; q && !q->shared_with.empty() && hops < 64; ++hops) q = sim.find(q->shared_with);
    return q && q->enabled && q->kind == quantizer_kind::activation ? q : nullptr;
}

std::size_t find_root(std::vector<std::size_t>& parent, std::size_t i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
}

struct cost_model {
    std::vector<double> macs, elements;  // per group
    double bitops(const std::vector<mp_candidate>& cands, const std::vector<std::size_t>& choice) const {
        double s = 0;
        for (std::size_t g = 0; g < choice.size(); ++g)
            s += macs[g] * cands[choice[g]].activation_bitwidth * cands[choice[g]].param_bitwidth;
        return s;
    }
    double weight_bits(const std::vector<mp_candidate>& cands, const std::vector<std::size_t>& choice) const {
        double s = 0;
        for (std::size_t g = 0; g < choice.size(); ++g) s += elements[g] * cands[choice[g]].param_bitwidth;
        return s;
    }
};

double cost(const mp_candidate& c) { return static_cast<double>(c.activation_bitwidth) * c.param_bitwidth; }

}  // namespace

std::vector<mp_point> mp_search_result::pareto_front() const {
    std::vector<mp_point> pts = curve;
    std::sort(pts.begin(), pts.end(), [](const mp_point& a, const mp_point& b) {
        return a.bitops != b.bitops ? a.bitops < b.bitops : a.accuracy > b.accuracy;
    });
    std::vector<mp_point> front;
    double best = -std::numeric_limits<double>::infinity();
    for (const auto& p : pts)
        if (p.accuracy > best) {
            front.push_back(p);
            best = p.accuracy;
        }
    return front;
}

std::string mp_search_result::table() const {
    std::ostringstream os;
    os << std::fixed << std::setprecision(4);
    os << "mixed precision search: " << groups.size() << " groups, candidates";
    for (const auto& c : candidates) os << ' ' << to_string(c);
    os << "\nbaseline (" << to_string(candidates[base_candidate]) << ") " << baseline_accuracy << ", reference "
       << reference_accuracy << ", target " << target_accuracy << ", " << evaluations << " evaluations\n";
    os << "phase 1, accuracy with one group lowered:\n";
    for (std::size_t g = 0; g < groups.size(); ++g) {
        os << "  " << std::left << std::setw(44) << (groups[g].weights.empty() ? groups[g].activation : groups[g].weights[0])
           << std::right;
        for (std::size_t c = 0; c < candidates.size(); ++c)
            if (c != base_candidate) os << "  " << to_string(candidates[c]) << " " << sensitivity[g][c];
        os << "\n";
    }
    const double full = curve.empty() ? 1.0 : curve.front().bitops;
    os << "phase 2, accuracy against BitOps (relative to the baseline):\n";
    for (std::size_t i = 0; i < curve.size(); ++i)
        os << "  " << (i == chosen ? "* " : "  ") << std::setw(7) << curve[i].bitops / full << "  " << curve[i].accuracy
           << "  " << curve[i].weight_bits / 8.0 / 1024.0 << " KiB\n";
    os << (met_target ? "chosen: " : "no configuration reached the target; kept: ") << "point " << chosen << "\n";
    return os.str();
}

mp_search_result mixed_precision_search(quant_sim& sim, const std::vector<std::vector<tensor>>& calibration,
                                        const mp_eval_fn& evaluate, const mp_search_options& options) {
    if (!evaluate) QUANTSIM_THROW(invalid_argument, "mixed_precision_search: no evaluation function");
    if (options.candidates.size() < 2)
        QUANTSIM_THROW(invalid_argument, "mixed_precision_search: needs at least two candidates, got ",
                       options.candidates.size());
    for (const auto& c : options.candidates)
        if (c.activation_bitwidth < 2 || c.activation_bitwidth > 16 || c.param_bitwidth < 2 || c.param_bitwidth > 16)
            QUANTSIM_THROW(invalid_argument, "mixed_precision_search: candidate ", to_string(c), " is outside 2..16");
    if (!(options.allowed_drop >= 0) || !std::isfinite(options.allowed_drop))
        QUANTSIM_THROW(invalid_argument, "mixed_precision_search: allowed_drop must be finite and >= 0, got ",
                       options.allowed_drop);

    mp_search_result r;
    for (const auto& c : options.candidates)
        if (std::find(r.candidates.begin(), r.candidates.end(), c) == r.candidates.end()) r.candidates.push_back(c);
    if (r.candidates.size() < 2)
        QUANTSIM_THROW(invalid_argument, "mixed_precision_search: needs at least two different candidates");
    const auto& cands = r.candidates;
    for (std::size_t c = 1; c < cands.size(); ++c) {
        const double a = cost(cands[c]), b = cost(cands[r.base_candidate]);
        if (a > b || (a == b && cands[c].param_bitwidth > cands[r.base_candidate].param_bitwidth)) r.base_candidate = c;
    }

    // ---- groups: layers joined by a shared input activation quantizer ----
    const graph& g = sim.model();
    struct layer_info {
        std::string node, weight, activation;
        std::int64_t macs = 0, elements = 0;
    };
    std::vector<layer_info> layers;
    for (const auto& n : g.nodes) {
        if (!is_layer(n) || n.inputs.size() < 2) continue;
        const quantizer* w = sim.find(n.inputs[1]);
        if (!w || w->kind != quantizer_kind::param || !w->enabled || w->frozen) continue;
        const quantizer* a = root_quantizer(sim, n.inputs[0]);
        if (a && a->frozen) a = nullptr;  // a loaded/frozen activation encoding is not ours to change
        layers.push_back({n.name, w->name, a ? a->name : std::string(), layer_macs(g, n), g.params.at(w->name).numel()});
    }
    if (layers.empty())
        QUANTSIM_THROW(invalid_argument, "mixed_precision_search: the model has no layer with a searchable weight quantizer");
    std::vector<std::size_t> parent(layers.size());
    std::iota(parent.begin(), parent.end(), 0);
    {
        std::map<std::string, std::size_t> by_act, by_weight;
        for (std::size_t i = 0; i < layers.size(); ++i) {
            if (!layers[i].activation.empty()) {
                auto [it, fresh] = by_act.emplace(layers[i].activation, i);
                if (!fresh) parent[find_root(parent, i)] = find_root(parent, it->second);
            }
            auto [it, fresh] = by_weight.emplace(layers[i].weight, i);  // a weight shared by two layers
            if (!fresh) parent[find_root(parent, i)] = find_root(parent, it->second);
        }
    }
    std::map<std::size_t, std::size_t> group_of_root;
    cost_model costs;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const std::size_t root = find_root(parent, i);
        auto [it, fresh] = group_of_root.emplace(root, r.groups.size());
        if (fresh) {
            r.groups.emplace_back();
            costs.macs.push_back(0);
            costs.elements.push_back(0);
        }
        mp_group& grp = r.groups[it->second];
        grp.layers.push_back(layers[i].node);
        if (std::find(grp.weights.begin(), grp.weights.end(), layers[i].weight) == grp.weights.end()) {
            grp.weights.push_back(layers[i].weight);
            grp.weight_elements += layers[i].elements;
        }
        if (!layers[i].activation.empty()) grp.activation = layers[i].activation;
        grp.macs += layers[i].macs;
        costs.macs[it->second] = static_cast<double>(grp.macs);
        costs.elements[it->second] = static_cast<double>(grp.weight_elements);
    }
    const std::size_t ng = r.groups.size();

    // ---- encodings of every group quantizer at every candidate bit width ----
    auto& qs = sim.quantizers();
    std::map<std::string, std::size_t, std::less<>> index;
    for (std::size_t i = 0; i < qs.size(); ++i) index.emplace(qs[i].name, i);
    std::vector<std::size_t> acts, weights;
    for (const auto& grp : r.groups) {
        if (!grp.activation.empty()) acts.push_back(index.at(grp.activation));
        for (const auto& w : grp.weights) weights.push_back(index.at(w));
    }
    std::map<int, std::map<std::size_t, std::optional<quant_params>>> act_cache, weight_cache;
    std::vector<int> act_bits, weight_bits;
    for (const auto& c : cands) {
        act_bits.push_back(c.activation_bitwidth);
        weight_bits.push_back(c.param_bitwidth);
    }
    std::sort(act_bits.begin(), act_bits.end());
    act_bits.erase(std::unique(act_bits.begin(), act_bits.end()), act_bits.end());
    std::sort(weight_bits.begin(), weight_bits.end());
    weight_bits.erase(std::unique(weight_bits.begin(), weight_bits.end()), weight_bits.end());

    bool reuse_current = calibration.empty();
    if (reuse_current) {
        for (std::size_t i : acts)
            if (!qs[i].params || act_bits.size() != 1 || qs[i].spec.bitwidth != act_bits[0])
                QUANTSIM_THROW(calibration_error,
                               "mixed_precision_search: no calibration data, and the activation quantizer '", qs[i].name,
                               "' has ", qs[i].params ? "another bit width than the candidates'" : "no encoding",
                               "; pass calibration batches");
        for (std::size_t i : acts) act_cache[act_bits[0]][i] = qs[i].params;
    } else {
        for (int b : act_bits) {
            for (std::size_t i : acts) {
                qs[i].spec.bitwidth = b;
                qs[i].params.reset();
            }
            sim.compute_encodings(calibration);
            for (std::size_t i : acts) act_cache[b][i] = qs[i].params;
        }
    }
    for (int b : weight_bits) {
        for (std::size_t i : weights) {
            qs[i].spec.bitwidth = b;
            qs[i].params.reset();
        }
        sim.compute_param_encodings();
        for (std::size_t i : weights) weight_cache[b][i] = qs[i].params;
    }

    const auto apply = [&](const std::vector<std::size_t>& choice) {
        for (std::size_t gi = 0; gi < ng; ++gi) {
            const mp_candidate& c = cands[choice[gi]];
            const mp_group& grp = r.groups[gi];
            if (!grp.activation.empty()) {
                quantizer& q = qs[index.at(grp.activation)];
                q.spec.bitwidth = c.activation_bitwidth;
                q.params = act_cache.at(c.activation_bitwidth).at(index.at(grp.activation));
            }
            for (const auto& w : grp.weights) {
                quantizer& q = qs[index.at(w)];
                q.spec.bitwidth = c.param_bitwidth;
                q.params = weight_cache.at(c.param_bitwidth).at(index.at(w));
            }
        }
    };
    const auto eval = [&](const std::vector<std::size_t>& choice) {
        apply(choice);
        ++r.evaluations;
        const double acc = evaluate(sim);
        if (!std::isfinite(acc))
            QUANTSIM_THROW(numeric_error, "mixed_precision_search: the evaluation function returned ", acc);
        return acc;
    };
    const auto point = [&](const std::vector<std::size_t>& choice, double acc) {
        return mp_point{choice, acc, costs.bitops(cands, choice), costs.weight_bits(cands, choice)};
    };

    // ---- phase 1: sensitivity of each group ----
    const std::vector<std::size_t> base(ng, r.base_candidate);
    const std::size_t phase1_total = 1 + ng * (cands.size() - 1);
    if (options.progress) options.progress("sensitivity", 0, phase1_total);
    r.baseline_accuracy = eval(base);
    r.sensitivity.assign(ng, std::vector<double>(cands.size(), std::numeric_limits<double>::quiet_NaN()));
    for (std::size_t gi = 0; gi < ng; ++gi)
        for (std::size_t c = 0; c < cands.size(); ++c) {
            if (c == r.base_candidate) continue;
            std::vector<std::size_t> choice = base;
            choice[gi] = c;
            r.sensitivity[gi][c] = eval(choice);
            if (options.progress) options.progress("sensitivity", r.evaluations, phase1_total);
        }
    r.reference_accuracy =
        std::isnan(options.reference_accuracy) ? r.baseline_accuracy : options.reference_accuracy;
    r.target_accuracy = r.reference_accuracy - options.allowed_drop;

    // ---- phase 2: from the least sensitive (group, candidate) on, lower one group at a time ----
    struct move {
        std::size_t group, cand;
        double accuracy, saving;
    };
    std::vector<move> moves;
    for (std::size_t gi = 0; gi < ng; ++gi)
        for (std::size_t c = 0; c < cands.size(); ++c)
            if (c != r.base_candidate && cost(cands[c]) < cost(cands[r.base_candidate]))
                moves.push_back({gi, c, r.sensitivity[gi][c],
                                 costs.macs[gi] * (cost(cands[r.base_candidate]) - cost(cands[c]))});
    std::stable_sort(moves.begin(), moves.end(), [](const move& a, const move& b) {
        return a.accuracy != b.accuracy ? a.accuracy > b.accuracy : a.saving > b.saving;
    });
    // The configurations along the walk; a move applies only when it makes its group cheaper than it already is.
    std::vector<std::vector<std::size_t>> walk{base};
    for (const auto& m : moves) {
        std::vector<std::size_t> next = walk.back();
        if (cost(cands[m.cand]) >= cost(cands[next[m.group]])) continue;
        next[m.group] = m.cand;
        walk.push_back(std::move(next));
    }
    r.curve.push_back(point(base, r.baseline_accuracy));
    std::vector<double> acc(walk.size(), std::numeric_limits<double>::quiet_NaN());
    acc[0] = r.baseline_accuracy;
    if (options.full_curve) {
        for (std::size_t i = 1; i < walk.size(); ++i) {
            acc[i] = eval(walk[i]);
            r.curve.push_back(point(walk[i], acc[i]));
            if (options.progress) options.progress("curve", i, walk.size() - 1);
        }
    } else {
        // Accuracy falls (roughly monotonically) along the walk: find the last step still at the target.
        std::size_t lo = 0, hi = walk.size();  // acc[lo] >= target is assumed for lo = 0 only if it holds
        while (hi - lo > 1) {
            const std::size_t mid = lo + (hi - lo) / 2;
            acc[mid] = eval(walk[mid]);
            r.curve.push_back(point(walk[mid], acc[mid]));
            if (acc[mid] >= r.target_accuracy) lo = mid;
            else hi = mid;
            if (options.progress) options.progress("curve", r.curve.size() - 1, 0);
        }
    }

    // ---- phase 3: the cheapest evaluated point at the target ----
    r.chosen = 0;
    r.met_target = false;
    for (std::size_t i = 0; i < r.curve.size(); ++i)
        if (r.curve[i].accuracy >= r.target_accuracy &&
            (!r.met_target || r.curve[i].bitops < r.curve[r.chosen].bitops)) {
            r.chosen = i;
            r.met_target = true;
        }
    apply(r.curve[r.chosen].choice);
    return r;
}

}  // namespace quantsim
