// QuantSim: placement, calibration, simulated forward, encodings import/export.
#include <quantsim/sim/quantsim.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <functional>
#include <iomanip>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <sstream>
#include <thread>

#include <quantsim/core/error.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/batch_independence.hpp>
#include <quantsim/ir/composite_ops.hpp>
#include <quantsim/ir/kernels/parallel.hpp>
#include <quantsim/ir/op.hpp>
#include <quantsim/ir/pattern.hpp>
#include <quantsim/quant/fake_quant.hpp>
#include <quantsim/quant/observers.hpp>
#include <quantsim/sim/detail/observe_split.hpp>

namespace quantsim {

struct quant_sim::impl {
    graph model;
    quantsim_options opts;
    std::vector<quantizer> qs;
    std::map<std::string, std::size_t, std::less<>> index;
    std::unique_ptr<executor> exec;
    std::string exec_signature;  ///< state of the quantizers the current executor was built for

    void reindex() {
        index.clear();
        for (std::size_t i = 0; i < qs.size(); ++i) index[qs[i].name] = i;
    }
    quantizer* find(std::string_view name) {
        auto it = index.find(name);
        return it == index.end() ? nullptr : &qs[it->second];
    }
    const quantizer* find(std::string_view name) const {
        auto it = index.find(name);
        return it == index.end() ? nullptr : &qs[it->second];
    }
    quantizer& add(quantizer q) {
        QUANTSIM_ASSERT(!find(q.name), "quantizer added twice");
        qs.push_back(std::move(q));
        index[qs.back().name] = qs.size() - 1;
        return qs.back();
    }

    std::optional<quant_params> effective(const quantizer& q, int depth = 0) const;
    std::string signature() const;
    void build_executor();
    void place_by_config();
    quantizer make_param_quantizer(const std::string& name, const node& n, std::string_view kind) const;
    quantizer make_activation_quantizer(const std::string& name, std::string_view op_type) const;
    int weight_axis(const node& n, const tensor& w) const;
};

namespace {

bool is_float_value(const graph& g, std::string_view name) {
    if (const auto* vi = g.info(name)) return vi->type == dtype::float32;
    if (auto it = g.params.find(std::string(name)); it != g.params.end()) return it->second.type() == dtype::float32;
    return true;  // unknown type: assume float (shape inference runs first, so this is rare)
}

bool moves_data_single_input(const node& n) {
    // Ops whose output elements are copies of input elements (so the input grid carries over). Concat is left out:
    // its inputs have different grids and runtimes requantize them to the output's.
    static const std::set<std::string, std::less<>> ops = {
        "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Dropout", "MaxPool",
        "Slice", "Gather", "Expand", "Tile", "Split", "DepthToSpace", "SpaceToDepth", "GlobalMaxPool"};
    return ops.count(n.op_type) > 0;
}

quant_spec spec_for(int bitwidth, bool symmetric, const quantsim_config& cfg, range_convention conv) {
    quant_spec s;
    s.bitwidth = bitwidth;
    s.scheme = symmetric ? (cfg.strict_symmetric ? qscheme::strict_symmetric : qscheme::symmetric) : qscheme::asymmetric;
    s.unsigned_symmetric = cfg.unsigned_symmetric;
    s.convention = conv;
    return s;
}

void check_finite_inputs(const std::vector<tensor>& batch, std::size_t batch_index, const graph& g) {
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const tensor& t = batch[i];
        if (t.type() != dtype::float32) continue;
        const float* p = t.f32();
        const std::int64_t n = t.numel();
        bool ok = true;
        for (std::int64_t k = 0; k < n; ++k) ok &= std::isfinite(p[k]);
        if (ok) continue;
        const std::int64_t per_sample = t.rank() > 0 && t.shape()[0] > 0 ? n / t.shape()[0] : n;
        for (std::int64_t k = 0; k < n; ++k) {
            if (!std::isfinite(p[k])) {
                QUANTSIM_THROW(numeric_error, "calibration batch ", batch_index, ", input '",
                               i < g.inputs.size() ? g.inputs[i].name : std::to_string(i), "': sample ",
                               per_sample ? k / per_sample : 0, " contains ", std::isnan(p[k]) ? "NaN" : "Inf",
                               " (element ", k, ")");
            }
        }
    }
}

std::string describe_params(const quant_params& p) {
    std::ostringstream os;
    os << std::setprecision(6);
    if (p.size() == 1) {
        os << "scale " << p.scale[0] << " zp " << p.zero_point[0];
    } else {
        const auto [lo, hi] = std::minmax_element(p.scale.begin(), p.scale.end());
        os << p.size() << " scales in [" << *lo << ", " << *hi << "]";
    }
    return os.str();
}

}  // namespace

// ---- placement ----------------------------------------------------------------------------------------------------

int quant_sim::impl::weight_axis(const node& n, const tensor& w) const {
    // The output-channel axis of each op's weight.
    if (n.op_type == "ConvTranspose") return w.rank() >= 2 ? 1 : 0;
    if (n.op_type == "Gemm") return n.attr_int("transB", 0) ? 0 : (w.rank() >= 2 ? 1 : 0);
    if (n.op_type == "MatMul") return w.rank() >= 1 ? w.rank() - 1 : 0;
    return 0;
}

quantizer quant_sim::impl::make_param_quantizer(const std::string& name, const node& n, std::string_view kind) const {
    const quantsim_config& cfg = opts.config;
    const tensor& w = model.params.at(name);
    quantizer q;
    q.name = name;
    q.kind = quantizer_kind::param;
    q.op_type = n.op_type;
    q.param_kind = std::string(kind);
    q.enabled = true;
    q.spec = spec_for(opts.param_bitwidth, cfg.param_symmetric(n.op_type, kind), cfg, opts.convention);
    q.options = opts.options;
    q.range = opts.param_range;
    const bool per_channel = opts.per_channel.value_or(cfg.per_channel(n.op_type));
    if (per_channel && kind == "weight" && w.rank() >= 2)
        q.gran = granularity::per_channel(weight_axis(n, w));
    return q;
}

quantizer quant_sim::impl::make_activation_quantizer(const std::string& name, std::string_view op_type) const {
    const quantsim_config& cfg = opts.config;
    quantizer q;
    q.name = name;
    q.kind = quantizer_kind::activation;
    q.op_type = std::string(op_type);
    q.enabled = true;
    q.spec = spec_for(opts.activation_bitwidth, !op_type.empty() && cfg.activation_symmetric(op_type), cfg,
                      opts.convention);
    q.options = opts.options;
    q.range = opts.activation_range;
    if (!op_type.empty()) q.fixed_range = cfg.output_constraints(op_type);
    return q;
}

void quant_sim::impl::place_by_config() {
    const quantsim_config& cfg = opts.config;
    // With fused activations, placement sees each decomposed hard-swish as one node; every value it still has keeps
    // its name, so the quantizers placed on it are the model's.
    std::optional<graph> fused;
    if (opts.fuse_decomposed_activations) fused = fuse_decomposed_activations(model);
    const graph& g = fused ? *fused : model;

    // Parameters.
    for (const node& n : g.nodes) {
        for (std::size_t i = 0; i < n.inputs.size(); ++i) {
            const std::string& in = n.inputs[i];
            if (in.empty() || !g.is_param(in) || find(in) || !is_float_value(g, in)) continue;
            const std::string_view kind = param_kind(n.op_type, i);
            if (kind.empty()) continue;
            // Parameter kinds other than weight and bias (BN statistics) are quantized only when the config names
            // them: quantizing a running variance by default would be harmful, and runtimes fold them away.
            const bool named = cfg.params.count(kind) ||
                               (cfg.op_types.count(n.op_type) && cfg.op_types.at(n.op_type).params.count(kind));
            if (kind != "weight" && kind != "bias" && !named) continue;
            const bool quantized = cfg.param_quantized(n.op_type, kind);
            if (kind == "bias" && !quantized) {
                const bool fused_op = n.op_type == "Conv" || n.op_type == "ConvTranspose" || n.op_type == "Gemm";
                if (opts.int32_bias && fused_op && n.has_input(1) && g.is_param(n.inputs[1])) {
                    quantizer q = make_param_quantizer(in, n, kind);
                    q.spec.bitwidth = bias_bitwidth;
                    q.spec.scheme = qscheme::symmetric;
                    q.bias_input = n.inputs[0];
                    q.bias_weight = n.inputs[1];
                    q.frozen = true;  // derived, never calibrated
                    add(std::move(q));
                }
                continue;
            }
            if (!quantized) continue;
            add(make_param_quantizer(in, n, kind));
        }
    }

    // Model inputs.
    if (cfg.model_input_quantized.value_or(false))
        for (const auto& in : g.inputs)
            if (is_float_value(g, in.name)) add(make_activation_quantizer(in.name, ""));

    // Op outputs and inputs.
    for (const node& n : g.nodes) {
        if (cfg.output_quantized(n.op_type)) {
            for (const auto& out : n.outputs) {
                if (out.empty() || find(out) || !is_float_value(g, out)) continue;
                if (g.consumers(out).empty() && !g.is_output(out)) continue;  // dead value
                add(make_activation_quantizer(out, n.op_type));
            }
        }
    }
    for (const node& n : g.nodes) {
        if (!cfg.input_quantized(n.op_type)) continue;
        for (const auto& in : n.inputs) {
            if (in.empty() || g.is_param(in) || find(in) || !is_float_value(g, in)) continue;
            const auto p = g.producer(in);
            add(make_activation_quantizer(in, p >= 0 ? g.nodes[static_cast<std::size_t>(p)].op_type : ""));
        }
    }
    if (cfg.model_output_quantized) {
        for (const auto& out : g.outputs) {
            if (!is_float_value(g, out.name)) continue;
            if (quantizer* q = find(out.name)) {
                q->enabled = *cfg.model_output_quantized;
            } else if (*cfg.model_output_quantized) {
                const auto p = g.producer(out.name);
                add(make_activation_quantizer(out.name, p >= 0 ? g.nodes[static_cast<std::size_t>(p)].op_type : ""));
            }
        }
    }

    // Supergroups: no quantizer between the members of a fused chain.
    for (const auto& group : cfg.supergroups) {
        std::vector<op_pattern> chain(group.begin(), group.end());
        for (const auto& match : match_chains(g, chain)) {
            for (std::size_t k = 0; k + 1 < match.size(); ++k)
                if (quantizer* q = find(g.nodes[match[k]].outputs[0])) q->enabled = false;
        }
    }

    // Data-movement ops reuse their input's encoding (in node order, so chains of them resolve to the root).
    for (const node& n : g.nodes) {
        if (!moves_data_single_input(n) || n.inputs.empty()) continue;
        const quantizer* src = find(n.inputs[0]);
        if (!src || !src->enabled || src->kind != quantizer_kind::activation) continue;
        const std::string root = src->shared_with.empty() ? src->name : src->shared_with;
        for (const auto& out : n.outputs)
            if (quantizer* q = find(out); q && q->enabled && !q->fixed_range) q->shared_with = root;
    }
}

// ---- encodings ----------------------------------------------------------------------------------------------------

std::optional<quant_params> quant_sim::impl::effective(const quantizer& q, int depth) const {
    if (!q.enabled || depth > 64) return std::nullopt;
    if (!q.shared_with.empty()) {
        const quantizer* src = find(q.shared_with);
        return src ? effective(*src, depth + 1) : std::nullopt;
    }
    if (q.is_derived_bias() && !q.params) {
        // int32 bias: scale = s_in * s_w per output channel, zero point 0.
        const quantizer* in = find(q.bias_input);
        const quantizer* w = find(q.bias_weight);
        if (!in || !w) return std::nullopt;
        const auto pin = effective(*in, depth + 1);
        const auto pw = effective(*w, depth + 1);
        if (!pin || !pw || pin->size() != 1) return std::nullopt;
        quant_params b;
        b.bitwidth = bias_bitwidth;
        b.is_signed = true;
        b.scheme = qscheme::symmetric;
        b.scale.clear();
        b.zero_point.clear();
        for (float sw : pw->scale) {
            b.scale.push_back(pin->scale[0] * sw);
            b.zero_point.push_back(0);
        }
        b.gran = b.size() > 1 ? granularity::per_channel(0) : granularity::per_tensor();
        return b;
    }
    return q.params;
}

std::string quant_sim::impl::signature() const {
    std::ostringstream os;
    os << std::hexfloat;
    for (const auto& q : qs) {
        os << q.name << '|' << q.enabled << '|' << static_cast<int>(q.options.rounding) << '|'
           << static_cast<int>(q.options.arithmetic) << '|' << q.options.seed << '|';
        if (auto p = effective(q)) {
            os << p->bitwidth << p->is_signed << static_cast<int>(p->gran.kind) << p->gran.axis;
            for (std::size_t i = 0; i < p->size(); ++i) os << ',' << p->scale[i] << ':' << p->zero_point[i];
        }
        os << ';';
    }
    return os.str();
}

void quant_sim::impl::build_executor() {
    graph sim = model;
    std::map<std::string, std::pair<quant_params, quant_options>, std::less<>> act;
    for (const auto& q : qs) {
        auto p = effective(q);
        if (!p) continue;
        if (q.kind == quantizer_kind::param) {
            auto& w = sim.params.at(q.name);
            w = fake_quant(w, *p, q.options);
        } else {
            // Hooks run inside the executor's step: use its thread count, never OpenMP's default team on top of it.
            quant_options o = q.options;
            if (o.num_threads == 0) o.num_threads = opts.num_threads > 0 ? opts.num_threads : default_num_threads();
            act.emplace(q.name, std::make_pair(std::move(*p), o));
        }
    }
    executor_options eo;
    eo.num_threads = opts.num_threads;
    if (opts.fused_forward) {
        // Fake-quant joins the producing steps' epilogues (one pass per fused group instead of one per value).
        for (auto& [name, pq] : act) eo.quantizers.emplace(name, value_quantizer{std::move(pq.first), pq.second});
        exec = std::make_unique<executor>(std::move(sim), std::move(eo));
        exec_signature = signature();
        return;
    }
    exec = std::make_unique<executor>(std::move(sim), eo);
    if (!act.empty()) {
        std::set<std::string, std::less<>> names;
        for (const auto& [k, v] : act) names.insert(k);
        auto table = std::make_shared<decltype(act)>(std::move(act));
        exec->add_hook(
            [table](std::string_view name, const node*, tensor& value) {
                auto it = table->find(name);
                if (it == table->end() || value.type() != dtype::float32) return;
                fake_quant_(value, it->second.first, it->second.second);
            },
            std::move(names));
    }
    exec_signature = signature();
}

// ---- quant_sim ----------------------------------------------------------------------------------------------------

quant_sim::quant_sim() : impl_(std::make_unique<impl>()) {}

quant_sim::quant_sim(graph model, quantsim_options options) : impl_(std::make_unique<impl>()) {
    check_bitwidth(options.param_bitwidth, "quantsim param bit width");
    check_bitwidth(options.activation_bitwidth, "quantsim activation bit width");
    if (options.param_bitwidth > max_bitwidth || options.activation_bitwidth > max_bitwidth)
        QUANTSIM_THROW(invalid_argument, "quantsim: bit widths above 16 are only for int32 bias");
    impl_->model = std::move(model);
    impl_->opts = std::move(options);
    impl_->model.infer_shapes();
    impl_->place_by_config();
}

quant_sim quant_sim::from_encodings(graph model, const encodings_file& enc, quantsim_options options) {
    quant_sim s;
    s.impl_->model = std::move(model);
    s.impl_->opts = std::move(options);
    impl& m = *s.impl_;
    m.model.infer_shapes();
    const graph& g = m.model;
    auto place = [&](const tensor_encoding& t) {
        if (m.find(t.name)) QUANTSIM_THROW(config_error, "encodings name tensor '", t.name, "' twice");
        if (g.is_param(t.name)) {
            // The first consumer decides the op type (and so the per-channel axis).
            for (const node& n : g.nodes)
                for (std::size_t i = 0; i < n.inputs.size(); ++i)
                    if (n.inputs[i] == t.name) {
                        quantizer q = m.make_param_quantizer(t.name, n, param_kind(n.op_type, i));
                        if (t.params.gran.kind != granularity_kind::per_tensor) {
                            const tensor& w = g.params.at(t.name);
                            q.gran = granularity::per_channel(w.rank() >= 2 ? m.weight_axis(n, w) : 0);
                        }
                        m.add(std::move(q));
                        return;
                    }
            QUANTSIM_THROW(config_error, "encodings: parameter '", t.name, "' is not used by any node");
        }
        const bool produced = g.producer(t.name) >= 0 || g.is_input(t.name);
        if (!produced) QUANTSIM_THROW(config_error, "encodings: the model has no tensor named '", t.name, "'");
        const auto p = g.producer(t.name);
        m.add(m.make_activation_quantizer(t.name, p >= 0 ? g.nodes[static_cast<std::size_t>(p)].op_type : ""));
    };
    for (const auto& t : enc.params) place(t);
    for (const auto& t : enc.activations) place(t);
    const auto report = s.load_encodings(enc);
    (void)report;
    return s;
}

quant_sim::quant_sim(quant_sim&&) noexcept = default;
quant_sim& quant_sim::operator=(quant_sim&&) noexcept = default;
quant_sim::~quant_sim() = default;

const graph& quant_sim::model() const noexcept { return impl_->model; }
const quantsim_options& quant_sim::options() const noexcept { return impl_->opts; }
std::vector<quantizer>& quant_sim::quantizers() noexcept { return impl_->qs; }
const std::vector<quantizer>& quant_sim::quantizers() const noexcept { return impl_->qs; }
quantizer* quant_sim::find(std::string_view n) { return impl_->find(n); }
const quantizer* quant_sim::find(std::string_view n) const { return impl_->find(n); }

quantizer& quant_sim::at(std::string_view n) {
    if (quantizer* q = impl_->find(n)) return *q;
    QUANTSIM_THROW(invalid_argument, "quantsim: no quantizer on tensor '", n, "'");
}

std::optional<quant_params> quant_sim::effective_params(std::string_view n) const {
    const quantizer* q = impl_->find(n);
    return q ? impl_->effective(*q) : std::nullopt;
}

void quant_sim::set_bitwidth(std::string_view n, int bitwidth) {
    quantizer& q = at(n);
    check_bitwidth(bitwidth, "set_bitwidth");
    q.spec.bitwidth = bitwidth;
    q.params.reset();
    q.frozen = false;
}

void quant_sim::set_enabled(std::string_view n, bool enabled) { at(n).enabled = enabled; }

void quant_sim::set_encoding(std::string_view n, const quant_params& params, bool freeze) {
    quantizer& q = at(n);
    const tensor* t = q.kind == quantizer_kind::param ? &impl_->model.params.at(q.name) : nullptr;
    if (t) (void)check_quant_params(params, t->shape(), "set_encoding");
    for (std::size_t i = 0; i < params.size(); ++i) params.at(i).validate("set_encoding");
    q.params = params;
    q.spec.bitwidth = params.bitwidth;
    q.gran = params.gran;
    q.frozen = freeze;
    q.enabled = true;
    q.shared_with.clear();
}

namespace {
// Encoding of one parameter quantizer from the parameter's current value.
void compute_param_encoding(quantizer& q, const tensor& w) {
    if (w.numel() == 0) return;
    observer_options oo;
    oo.label = q.name;
    if (q.gran.kind == granularity_kind::per_channel) {
        channel_observer obs = make_channel_observer(q.range, q.gran.axis, oo);
        obs.observe(w);
        q.params = obs.compute(q.spec);
        q.params->gran = q.gran;
    } else {
        observer obs = make_observer(q.range, oo);
        obs.observe(w);
        q.params = quant_params::per_tensor(obs.compute(q.spec));
    }
}
}  // namespace

// Runs in calibration's hook, between executor steps, while the pool is idle (detail/observe_split.hpp).
void detail::observe_split(observer& obs, const tensor& value) {
    constexpr std::size_t min_part = std::size_t{1} << 16;
    const int threads = kernel_threads();
    const std::size_t n = value.defined() && value.type() == dtype::float32 ? static_cast<std::size_t>(value.numel()) : 0;
    const std::size_t parts = std::min(n / min_part, 2 * static_cast<std::size_t>(std::max(threads, 1)));
    if (threads <= 1 || parts < 2 || obs.get_if<moving_average_observer>()) {
        obs.observe(value);
        return;
    }
    std::vector<observer> local(parts, obs);
    for (auto& l : local) l.reset();
    std::vector<char> failed(parts, 0);
    const std::span<const float> x = value.span<float>();
    // Parts start at multiples of 16384 values, exact_histogram's chunk: sampled counting then counts the same
    // blocks as one observe() of the whole value, so encodings do not depend on the thread count.
    constexpr std::size_t align = std::size_t{1} << 14;
    const auto edge = [&](std::size_t k) { return k == parts ? n : n * k / parts / align * align; };
    detail::parallel_for(static_cast<std::int64_t>(parts), [&](std::int64_t i) {
        const auto k = static_cast<std::size_t>(i);
        const std::size_t b = edge(k), e = edge(k + 1);
        try {
            local[k].observe(x.subspan(b, e - b));
        } catch (...) {
            failed[k] = 1;
        }
    });
    if (std::find(failed.begin(), failed.end(), 1) != failed.end()) {
        obs.observe(value);
        return;
    }
    for (const auto& l : local) obs.merge(l);
}

void quant_sim::compute_param_encodings() {
    impl& m = *impl_;
    for (auto& q : m.qs)
        if (q.kind == quantizer_kind::param && q.enabled && !q.frozen && !q.is_derived_bias())
            compute_param_encoding(q, m.model.params.at(q.name));
}

void quant_sim::compute_encodings(const std::vector<tensor>& batches, const calibration_options& options) {
    std::vector<std::vector<tensor>> b;
    b.reserve(batches.size());
    for (const auto& t : batches) b.push_back({t});
    compute_encodings(b, options);
}

void quant_sim::compute_encodings(const std::vector<std::vector<tensor>>& batches, const calibration_options& options) {
    impl& m = *impl_;
    if (batches.empty()) QUANTSIM_THROW(calibration_error, "compute_encodings: the calibration set is empty");
    for (std::size_t i = 0; i < batches.size(); ++i) {
        if (batches[i].size() != m.model.inputs.size())
            QUANTSIM_THROW(invalid_argument, "compute_encodings: batch ", i, " has ", batches[i].size(),
                           " inputs, the model takes ", m.model.inputs.size());
        check_finite_inputs(batches[i], i, m.model);
    }
    compute_param_encodings();

    // Activation quantizers that observe data.
    std::vector<std::size_t> observed;
    for (std::size_t i = 0; i < m.qs.size(); ++i) {
        auto& q = m.qs[i];
        if (q.kind != quantizer_kind::activation || !q.enabled || q.frozen || !q.shared_with.empty()) continue;
        if (q.fixed_range) {
            q.params = quant_params::per_tensor(encoding_from_range(q.fixed_range->first, q.fixed_range->second, q.spec));
            continue;
        }
        observed.push_back(i);
    }
    if (observed.empty()) return;

    const int threads = m.opts.num_threads > 0 ? m.opts.num_threads : default_num_threads();
    bool moving_average = false;
    for (std::size_t i : observed) moving_average = moving_average || m.qs[i].range.kind == range_method_kind::moving_average;
    // Micro-batches (calibration_options::micro_batch): only when the split cannot change what is observed.
    const bool split = options.micro_batch >= 0 && !moving_average && samples_are_independent(m.model).independent;
    // Rows of each batch that can be split: every input has them along axis 0 (0: run the batch whole).
    std::vector<std::int64_t> split_rows(batches.size(), 0);
    std::int64_t pieces_bound = 0;
    for (std::size_t b = 0; b < batches.size(); ++b) {
        const auto& in = batches[b];
        std::int64_t rows = in.empty() || in[0].rank() == 0 ? 0 : in[0].dim(0);
        for (const auto& t : in)
            if (t.rank() == 0 || t.dim(0) != rows) rows = 0;
        split_rows[b] = split && rows > 1 ? rows : 0;
        pieces_bound += std::max<std::int64_t>(split_rows[b], 1);
    }
    // Workers take pieces (or batches) as they come; the moving average depends on their order, so automatic
    // worker counts keep it on one.
    const int requested = options.workers > 0 ? options.workers : (moving_average ? 1 : threads);
    const int workers = static_cast<int>(std::clamp<std::int64_t>(requested, 1, pieces_bound));
    struct worker_state {
        std::map<std::string, observer, std::less<>> obs;
        std::unique_ptr<executor> ex;
        std::size_t current_batch = 0;
        std::int64_t largest = 0;  // elements of the largest value observed in the current run
    };
    std::vector<worker_state> states(static_cast<std::size_t>(workers));
    std::set<std::string, std::less<>> names;
    for (std::size_t i : observed) names.insert(m.qs[i].name);
    for (auto& st : states) {
        for (std::size_t i : observed) {
            observer_options oo;
            oo.label = m.qs[i].name;
            oo.histogram_sample = options.histogram_sample;
            st.obs.emplace(m.qs[i].name, make_observer(m.qs[i].range, oo));
        }
        executor_options eo;
        eo.num_threads = workers > 1 ? std::max(1, threads / workers) : threads;
        st.ex = std::make_unique<executor>(m.model, eo);
        st.ex->add_hook(
            [&st](std::string_view name, const node*, tensor& value) {
                auto it = st.obs.find(name);
                if (it == st.obs.end()) return;
                st.largest = std::max(st.largest, value.numel());
                try {
                    detail::observe_split(it->second, value);
                } catch (const numeric_error& e) {
                    QUANTSIM_THROW(numeric_error, "calibration batch ", st.current_batch, ": value '", name,
                                   "' is not finite: ", e.what());
                }
            },
            names);
    }

    // Work items: rows [r0, r1) of a batch (r1 = 0: all of it).
    struct item {
        std::size_t batch;
        std::int64_t r0, r1;
    };
    std::vector<std::size_t> left(batches.size(), 0);  // items of each batch not run yet
    std::mutex progress_mutex;
    std::size_t done = 0;
    const auto run_item = [&](worker_state& st, const item& it) {
        st.current_batch = it.batch;
        st.largest = 0;
        if (it.r1 == 0) {
            st.ex->run(batches[it.batch]);
        } else {
            std::vector<tensor> piece;
            for (const auto& t : batches[it.batch]) piece.push_back(t.slice(it.r0, it.r1));
            st.ex->run(piece);
        }
    };
    const auto finish = [&](std::size_t b) {
        std::lock_guard<std::mutex> lock(progress_mutex);
        if (--left[b] == 0 && options.progress) options.progress(++done, batches.size());
    };
    // Piece size: options.micro_batch, or (automatic) from the largest observed value of one sample, measured on a
    // first piece of batch 0's first sample. The pieces depend only on the batches, so sampled histograms count the
    // same values whichever worker runs a piece.
    std::vector<item> items;
    std::int64_t step = options.micro_batch > 0 ? options.micro_batch : 0;
    for (std::size_t b = 0; b < batches.size(); ++b) {
        const std::int64_t rows = split_rows[b];
        if (rows == 0) {
            items.push_back({b, 0, 0});
            ++left[b];
            continue;
        }
        std::int64_t r0 = 0;
        if (step == 0) {  // the probe (rows >= 2: the rest of the batch is left for the items)
            run_item(states[0], {b, 0, 1});
            step = std::clamp<std::int64_t>(
                calibration_options::micro_batch_values / std::max<std::int64_t>(states[0].largest, 1), 1, rows);
            r0 = 1;
        }
        for (; r0 < rows; r0 += step) {
            items.push_back({b, r0, std::min(rows, r0 + step)});
            ++left[b];
        }
    }
    std::atomic<std::size_t> next{0};
    const auto run_worker = [&](int w) {
        for (std::size_t k; (k = next.fetch_add(1)) < items.size();) {
            run_item(states[static_cast<std::size_t>(w)], items[k]);
            finish(items[k].batch);
        }
    };
    if (workers == 1) {
        run_worker(0);
    } else {
        std::vector<std::thread> pool;
        std::vector<std::exception_ptr> errors(static_cast<std::size_t>(workers));
        for (int w = 0; w < workers; ++w)
            pool.emplace_back([&, w] {
                try {
                    run_worker(w);
                } catch (...) {
                    errors[static_cast<std::size_t>(w)] = std::current_exception();
                    next = items.size();  // the others stop after their current item
                }
            });
        for (auto& t : pool) t.join();
        for (auto& e : errors)
            if (e) std::rethrow_exception(e);
        for (int w = 1; w < workers; ++w)
            for (auto& [name, o] : states[static_cast<std::size_t>(w)].obs) states[0].obs.at(name).merge(o);
    }
    // The range searches (SQNR, MSE, ...) are independent per quantizer: run them on the pool.
    std::vector<const observer*> obs_of(observed.size());
    for (std::size_t k = 0; k < observed.size(); ++k) obs_of[k] = &states[0].obs.at(m.qs[observed[k]].name);
    std::vector<std::optional<encoding>> enc(observed.size());
    std::vector<std::exception_ptr> errors(observed.size());
    {
        kernel_threads_scope scope(threads);
        detail::parallel_for(static_cast<std::int64_t>(observed.size()), [&](std::int64_t i) {
            const auto k = static_cast<std::size_t>(i);
            if (obs_of[k]->empty()) return;  // never produced for these inputs: left without an encoding
            try {
                enc[k] = obs_of[k]->compute(m.qs[observed[k]].spec);
            } catch (...) {
                errors[k] = std::current_exception();
            }
        });
    }
    for (std::size_t k = 0; k < observed.size(); ++k) {
        if (errors[k]) std::rethrow_exception(errors[k]);
        if (enc[k]) m.qs[observed[k]].params = quant_params::per_tensor(*enc[k]);
    }
}

executor& quant_sim::sim_executor() {
    impl& m = *impl_;
    if (!m.exec || m.signature() != m.exec_signature) m.build_executor();
    return *m.exec;
}

std::vector<tensor> quant_sim::forward(const std::vector<tensor>& inputs) { return sim_executor().run(inputs); }

tensor quant_sim::forward(const tensor& input) {
    auto out = forward(std::vector<tensor>{input});
    if (out.empty()) QUANTSIM_THROW(graph_error, "quantsim forward: the model has no outputs");
    return out[0];
}

void quant_sim::update_param(const std::string& name, tensor value) {
    impl& m = *impl_;
    auto it = m.model.params.find(name);
    if (it == m.model.params.end()) QUANTSIM_THROW(invalid_argument, "update_param: no parameter '", name, "'");
    if (it->second.shape() != value.shape() || it->second.type() != value.type())
        QUANTSIM_THROW(shape_error, "update_param: '", name, "' has shape ", to_string(it->second.shape()),
                       ", the new value ", to_string(value.shape()));
    it->second = std::move(value);
    if (quantizer* q = m.find(name); q && q->kind == quantizer_kind::param && q->enabled && !q->frozen &&
                                     !q->is_derived_bias() && q->params)
        compute_param_encoding(*q, it->second);
    m.exec.reset();
}

encodings_file quant_sim::encodings() const {
    const impl& m = *impl_;
    encodings_file f;
    for (const auto& q : m.qs) {
        auto p = m.effective(q);
        if (!p) continue;
        tensor_encoding t;
        t.name = q.name;
        t.params = *p;
        if (q.kind == quantizer_kind::param)
            f.params.push_back(std::move(t));
        else
            f.activations.push_back(std::move(t));
    }
    quantizer_args a;
    a.activation_bitwidth = m.opts.activation_bitwidth;
    a.param_bitwidth = m.opts.param_bitwidth;
    a.per_channel_quantization = m.opts.per_channel.value_or(m.opts.config.per_channel_quantization);
    a.is_symmetric = m.opts.config.default_params.is_symmetric.value_or(true);
    a.quant_scheme = m.opts.activation_range.kind == range_method_kind::sqnr ? "post_training_tf_enhanced"
                     : m.opts.activation_range.kind == range_method_kind::percentile ? "post_training_percentile"
                                                                                     : "post_training_tf";
    f.args = a;
    return f;
}

void quant_sim::export_encodings(const std::filesystem::path& path, encodings_version version) const {
    save_encodings(encodings(), path, version);
}

encodings_load_report quant_sim::load_encodings(const encodings_file& enc) {
    impl& m = *impl_;
    encodings_load_report report;
    auto apply = [&](const tensor_encoding& t) {
        quantizer* q = m.find(t.name);
        if (!q) {
            report.unknown_tensors.push_back(t.name);
            return;
        }
        if (t.float_bitwidth) {
            // Floating-point quantizers (fp16) are not simulated: the tensor stays float32.
            q->enabled = false;
            report.applied.push_back(t.name);
            return;
        }
        quant_params p = t.params;
        if (!t.axis_known && p.gran.kind == granularity_kind::per_channel) p.gran.axis = q->gran.axis;
        if (q->kind == quantizer_kind::param) {
            const tensor& w = m.model.params.at(q->name);
            try {
                (void)check_quant_params(p, w.shape(), "encodings");
            } catch (const error& e) {
                QUANTSIM_THROW(config_error, "encodings for parameter '", t.name, "' do not fit its shape ",
                               to_string(w.shape()), ": ", e.what());
            }
        } else if (p.gran.kind != granularity_kind::per_tensor) {
            QUANTSIM_THROW(config_error, "encodings for activation '", t.name, "' must be per-tensor");
        }
        q->params = std::move(p);
        q->spec.bitwidth = q->params->bitwidth;
        q->gran = q->params->gran;
        q->frozen = true;
        q->enabled = true;
        q->shared_with.clear();
        q->bias_input.clear();
        q->bias_weight.clear();
        report.applied.push_back(t.name);
    };
    for (const auto& t : enc.params) apply(t);
    for (const auto& t : enc.activations) apply(t);
    return report;
}

std::string quant_sim::summary() const {
    const impl& m = *impl_;
    std::ostringstream os;
    std::size_t enabled = 0, with_enc = 0;
    for (const auto& q : m.qs) {
        enabled += q.enabled;
        with_enc += m.effective(q).has_value();
    }
    os << "quantizers: " << m.qs.size() << " (" << enabled << " enabled, " << with_enc << " with an encoding)\n";
    for (const auto& q : m.qs) {
        os << (q.kind == quantizer_kind::param ? "  param " : "  act   ") << q.name << " [" << q.op_type
           << (q.param_kind.empty() ? "" : "." + q.param_kind) << "] ";
        if (!q.enabled) {
            os << "disabled\n";
            continue;
        }
        os << q.spec.bitwidth << "-bit " << name_of(q.spec.scheme);
        if (q.gran.kind == granularity_kind::per_channel) os << " per-channel(axis " << q.gran.axis << ")";
        if (!q.shared_with.empty()) os << " shares " << q.shared_with;
        if (q.is_derived_bias()) os << " int32 bias";
        if (auto p = m.effective(q)) os << ": " << describe_params(*p);
        os << '\n';
    }
    return os.str();
}

}  // namespace quantsim
