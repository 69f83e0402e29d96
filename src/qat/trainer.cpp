// QAT trainer: fake quantizers as tape transforms (STE / LSQ / range learning), optimizers, schedule, write-back.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <numeric>
#include <random>
#include <set>

#include <quantsim/qat/trainer.hpp>
#include <quantsim/quant/fake_quant.hpp>
#include <quantsim/quant/gradients.hpp>

namespace quantsim {

namespace {

// One learnable (or fixed) quantizer; values whose quantizer shares its encoding use the same state.
struct qstate {
    std::string owner;
    quantizer_kind kind = quantizer_kind::activation;
    quant_options qopt;
    quant_params p;  // the encoding the forward uses
    qat_range_mode mode = qat_range_mode::fixed;
    bool learn_offset = false;
    std::vector<float> s, z, s_floor;  // LSQ: scale, zero point (continuous), smallest scale allowed
    learned_range range;                // range learning
    std::vector<float> g1, g2;          // gradients of (s, z) or (min, max), summed over the step
    std::int64_t numel = 0;
    // In-hindsight ranges: statistics of the last forward, running range, the spec turning a range into an encoding.
    bool hindsight = false;
    quant_spec spec;
    double seen_min = 0, seen_max = 0;
    bool seen = false, started = false;
    double run_min = 0, run_max = 0;

    void refresh() {
        if (mode == qat_range_mode::lsq) {
            const auto r = p.range();
            for (std::size_t k = 0; k < s.size(); ++k) {
                s[k] = std::max(s[k], s_floor[k]);
                p.scale[k] = s[k];
                if (learn_offset) {
                    z[k] = std::clamp(z[k], static_cast<float>(r.qmin), static_cast<float>(r.qmax));
                    p.zero_point[k] = static_cast<std::int32_t>(std::nearbyint(z[k]));
                }
            }
        } else if (mode == qat_range_mode::range_learning) {
            const bool sym = range.scheme != qscheme::asymmetric;
            for (std::size_t k = 0; k < range.min.size(); ++k) {
                const float tiny = std::max(1e-8f, s_floor[k]);
                if (sym) {
                    range.max[k] = std::max(range.max[k], tiny);
                    range.min[k] = -range.max[k];
                } else if (!(range.max[k] > range.min[k] + tiny)) {
                    range.max[k] = range.min[k] + tiny;
                }
            }
            p = range.params();
        }
    }
};

std::int64_t label_at(const tensor& y, std::int64_t i) {
    return y.type() == dtype::int64 ? y.data<std::int64_t>()[i] : y.data<std::int32_t>()[i];
}

tensor gather_rows(const tensor& x, const std::vector<std::int64_t>& rows) {
    shape_t s = x.shape();
    s[0] = static_cast<std::int64_t>(rows.size());
    tensor r = tensor::empty(s, x.type());
    const std::size_t row = x.shape()[0] ? x.nbytes() / static_cast<std::size_t>(x.shape()[0]) : 0;
    for (std::size_t i = 0; i < rows.size(); ++i)
        std::memcpy(static_cast<std::byte*>(r.raw()) + i * row,
                    static_cast<const std::byte*>(x.raw()) + static_cast<std::size_t>(rows[i]) * row, row);
    return r;
}

// Group (channel) of each element for per-tensor / per-channel encodings.
struct group_map {
    std::int64_t inner = 1, dim = 1;
    bool per_channel = false;
    std::int64_t operator()(std::int64_t i) const { return per_channel ? (i / inner) % dim : 0; }
};
group_map groups_of(const quant_params& p, const shape_t& shape) {
    group_map g;
    if (p.gran.kind != granularity_kind::per_channel) return g;
    const int a = normalize_axis(p.gran.axis, static_cast<int>(shape.size()), "quantizer axis");
    g.per_channel = true;
    g.dim = shape[static_cast<std::size_t>(a)];
    for (std::size_t k = static_cast<std::size_t>(a) + 1; k < shape.size(); ++k) g.inner *= shape[k];
    return g;
}

// Oscillation state of one weight tensor.
struct osc_state {
    std::string weight;
    qstate* st = nullptr;
    bool tracked = false;  // oscillation tracking / freezing (bit width small enough)
    bool initialized = false;
    std::vector<std::int32_t> prev;
    std::vector<std::int8_t> dir;
    std::vector<float> freq, ema;
    std::vector<std::uint8_t> frozen;
    std::vector<std::int32_t> frozen_int;
};

// Schedules of the oscillation paper: nothing before 25 % of the run, then a cosine.
double late_cosine(std::int64_t t, std::int64_t total, double from, double to, double before) {
    if (total <= 0) return to;
    const double t0 = 0.25 * static_cast<double>(total);
    if (static_cast<double>(t) < t0) return before;
    const double p = std::min(1.0, (static_cast<double>(t) - t0) / std::max(1.0, static_cast<double>(total) - t0));
    return to + 0.5 * (from - to) * (1 + std::cos(3.14159265358979323846 * p));
}

}  // namespace

struct qat_trainer::impl {
    quant_sim* sim = nullptr;
    qat_options opt;
    std::unique_ptr<autograd_tape> tape;
    std::string input, logits;
    std::vector<std::string> trainable;
    std::set<std::string> decay;  // trainable tensors that take weight decay (rank >= 2)
    std::vector<std::string> bn_stats;
    std::deque<qstate> states;
    std::map<std::string, qstate*, std::less<>> by_owner;
    optimizer wopt, qopt;
    std::int64_t steps_done = 0;
    std::int64_t total_steps = 0;
    std::vector<osc_state> osc;

    // Integer grid value of each element of w under the state's encoding.
    static void integers(const tensor& w, const qstate& st, std::vector<std::int32_t>& out) {
        const group_map gm = groups_of(st.p, w.shape());
        const auto r = st.p.range();
        out.resize(static_cast<std::size_t>(w.numel()));
        const float* x = w.f32();
        for (std::int64_t i = 0; i < w.numel(); ++i) {
            const auto k = static_cast<std::size_t>(gm(i));
            const double v = std::nearbyint(static_cast<double>(x[i]) / st.p.scale[k]) + st.p.zero_point[k];
            out[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(std::clamp<double>(v, static_cast<double>(r.qmin), static_cast<double>(r.qmax)));
        }
    }

    // Tracks flips of the updated weight w (new encodings) and applies freezing to it.
    void track(osc_state& o, tensor& w, double threshold) {
        std::vector<std::int32_t> cur;
        integers(w, *o.st, cur);
        const std::size_t n = cur.size();
        const float m = static_cast<float>(opt.oscillation_momentum);
        if (!o.initialized) {
            o.prev = cur;
            o.dir.assign(n, 0);
            o.freq.assign(n, 0.0f);
            o.ema.assign(cur.begin(), cur.end());
            o.frozen.assign(n, 0);
            o.frozen_int.assign(n, 0);
            o.initialized = true;
            return;
        }
        const group_map gm = groups_of(o.st->p, w.shape());
        float* x = w.f32();
        for (std::size_t i = 0; i < n; ++i) {
            if (o.frozen[i]) {
                const auto k = static_cast<std::size_t>(gm(static_cast<std::int64_t>(i)));
                x[i] = static_cast<float>(o.frozen_int[i] - o.st->p.zero_point[k]) * o.st->p.scale[k];
                continue;
            }
            const std::int32_t d = cur[i] - o.prev[i];
            float osc_event = 0.0f;
            if (d != 0) {
                const std::int8_t sd = d > 0 ? 1 : -1;
                if (sd == -o.dir[i]) osc_event = 1.0f;
                o.dir[i] = sd;
            }
            o.prev[i] = cur[i];
            o.freq[i] = m * osc_event + (1 - m) * o.freq[i];
            o.ema[i] = m * static_cast<float>(cur[i]) + (1 - m) * o.ema[i];
            if (opt.freezing && threshold > 0 && o.freq[i] > threshold) {
                o.frozen[i] = 1;
                o.frozen_int[i] = static_cast<std::int32_t>(std::nearbyint(o.ema[i]));
                const auto k = static_cast<std::size_t>(gm(static_cast<std::int64_t>(i)));
                x[i] = static_cast<float>(o.frozen_int[i] - o.st->p.zero_point[k]) * o.st->p.scale[k];
            }
        }
    }

    // Adds the dampening gradient to g; returns the dampening loss (lambda included).
    static double dampen(const tensor& w, const qstate& st, double lambda, tensor& g) {
        const tensor q = fake_quant(w, st.p, st.qopt);
        const group_map gm = groups_of(st.p, w.shape());
        const auto r = st.p.range();
        const double norm = w.shape().empty() || w.shape()[0] == 0 ? 1.0 : static_cast<double>(w.numel()) / static_cast<double>(w.shape()[0]);
        double loss = 0;
        const float* x = w.f32();
        float* gp = g.f32();
        for (std::int64_t i = 0; i < w.numel(); ++i) {
            const auto k = static_cast<std::size_t>(gm(i));
            const double s = st.p.scale[k], zp = st.p.zero_point[k];
            const double lo = (static_cast<double>(r.qmin) - zp) * s, hi = (static_cast<double>(r.qmax) - zp) * s;
            const double c = std::clamp<double>(x[i], lo, hi);
            const double d = q.f32()[i] - c;
            loss += d * d;
            if (x[i] >= lo && x[i] <= hi) gp[i] += static_cast<float>(lambda * 2 * (c - q.f32()[i]) / norm);
        }
        return lambda * loss / norm;
    }

    qstate* state_for(const std::string& owner) {
        if (auto it = by_owner.find(owner); it != by_owner.end()) return it->second;
        const quantizer& q = sim->at(owner);
        const auto eff = sim->effective_params(owner);
        if (!eff) return nullptr;
        qstate& st = states.emplace_back();
        st.owner = owner;
        st.kind = q.kind;
        st.qopt = q.options;
        st.qopt.num_threads = opt.num_threads;
        st.p = *eff;
        st.mode = q.frozen ? qat_range_mode::fixed : opt.range_mode;
        if (st.mode == qat_range_mode::range_learning &&
            (st.p.scheme == qscheme::symmetric_unsigned || st.p.gran.kind == granularity_kind::per_block))
            st.mode = qat_range_mode::lsq;  // learned_range has no such grids; LSQ learns the same scales
        st.spec = q.spec;
        if (opt.hindsight_activations && q.kind == quantizer_kind::activation && !q.frozen && st.p.size() == 1 &&
            !q.fixed_range) {
            st.hindsight = true;
            st.mode = qat_range_mode::fixed;
        }
        st.s = st.p.scale;
        st.s_floor.resize(st.s.size());
        for (std::size_t k = 0; k < st.s.size(); ++k) st.s_floor[k] = st.s[k] * 1e-3f;
        st.z.assign(st.p.zero_point.begin(), st.p.zero_point.end());
        st.learn_offset = st.p.scheme == qscheme::asymmetric;
        if (st.mode == qat_range_mode::range_learning) {
            st.range.bitwidth = st.p.bitwidth;
            st.range.scheme = st.p.scheme;
            st.range.gran = st.p.gran;
            st.range.min.clear();
            st.range.max.clear();
            for (std::size_t k = 0; k < st.p.size(); ++k) {
                const quantsim::encoding e = st.p.at(k);
                st.range.min.push_back(static_cast<float>(e.min()));
                st.range.max.push_back(static_cast<float>(e.max()));
            }
            st.refresh();
        }
        by_owner[owner] = &st;
        return &st;
    }

    value_transform transform_of(qstate* st) {
        value_transform t;
        t.learnable = st->mode != qat_range_mode::fixed;
        t.forward = [st](const tensor& x) {
            if (st->hindsight && x.numel() > 0) {
                const auto [mn, mx] = std::minmax_element(x.f32(), x.f32() + x.numel());
                const double lo = *mn, hi = *mx;
                if (std::isfinite(lo) && std::isfinite(hi)) {
                    // Several values may share one state (shared_with): the step's range covers them all.
                    st->seen_min = st->seen ? std::min(st->seen_min, lo) : lo;
                    st->seen_max = st->seen ? std::max(st->seen_max, hi) : hi;
                    st->seen = true;
                }
            }
            return fake_quant(x, st->p, st->qopt);
        };
        t.backward = [st, this](const tensor& x, const tensor& g) -> tensor {
            st->numel = x.numel();
            if (st->mode == qat_range_mode::fixed) return ste_grad(x, g, st->p, st->qopt);
            if (st->mode == qat_range_mode::lsq) {
                lsq_options lo;
                lo.grad_scaling = opt.lsq_grad_scaling;
                lsq_gradients r = lsq_grad(x, g, st->p, lo, st->qopt);
                for (std::size_t k = 0; k < st->g1.size(); ++k) {
                    st->g1[k] += r.grad_scale[k];
                    if (st->learn_offset) st->g2[k] += r.grad_zero_point[k];
                }
                return r.grad_input;
            }
            range_gradients r = range_learning_grad(x, g, st->range, st->qopt);
            for (std::size_t k = 0; k < st->g1.size(); ++k) {
                st->g1[k] += r.grad_min[k];
                st->g2[k] += r.grad_max[k];
            }
            return r.grad_input;
        };
        return t;
    }
};

qat_trainer::qat_trainer(quant_sim& sim, qat_options options) : impl_(std::make_unique<impl>()) {
    auto& m = *impl_;
    m.sim = &sim;
    m.opt = std::move(options);
    if (m.opt.batch_size <= 0) QUANTSIM_THROW(invalid_argument, "qat_options: batch_size ", m.opt.batch_size, " must be > 0");
    if (m.opt.epochs < 0) QUANTSIM_THROW(invalid_argument, "qat_options: epochs ", m.opt.epochs, " must be >= 0");
    if (!(m.opt.bn_momentum >= 0 && m.opt.bn_momentum < 1))
        QUANTSIM_THROW(invalid_argument, "qat_options: bn_momentum ", m.opt.bn_momentum, " is outside [0, 1)");
    if (!(m.opt.min_lr_fraction >= 0 && m.opt.min_lr_fraction <= 1))
        QUANTSIM_THROW(invalid_argument, "qat_options: min_lr_fraction ", m.opt.min_lr_fraction, " is outside [0, 1]");
    m.wopt = optimizer(m.opt.weight_optimizer);
    m.qopt = optimizer(m.opt.quantizer_optimizer);
    const graph& g = sim.model();
    if (g.inputs.size() != 1)
        QUANTSIM_THROW(unsupported_error, "qat_trainer: the model has ", g.inputs.size(), " inputs; QAT supports one");
    if (g.outputs.empty()) QUANTSIM_THROW(graph_error, "qat_trainer: the model has no output");
    m.input = g.inputs[0].name;
    m.logits = m.opt.logits;
    if (m.logits.empty()) {
        m.logits = g.outputs[0].name;
        const auto p = g.producer(m.logits);
        if (p >= 0 && g.nodes[static_cast<std::size_t>(p)].op_type == "Softmax")
            m.logits = g.nodes[static_cast<std::size_t>(p)].inputs[0];
    } else if (!g.is_defined(m.logits)) {
        QUANTSIM_THROW(invalid_argument, "qat_options: logits value '", m.logits, "' is not in the model");
    }
    // Trainable parameters.
    std::set<std::string> chosen;
    if (m.opt.trainable.empty()) {
        for (const node& n : g.nodes) {
            std::vector<std::size_t> idx;
            if (n.op_type == "Conv" || n.op_type == "Gemm" || n.op_type == "BatchNormalization") idx = {1, 2};
            else if (n.op_type == "MatMul" || n.op_type == "Add" || n.op_type == "Sub" || n.op_type == "Mul") idx = {0, 1};
            for (std::size_t i : idx) {
                if (!n.has_input(i) || !g.is_param(n.inputs[i])) continue;
                const tensor& t = g.params.at(n.inputs[i]);
                if (t.type() != dtype::float32) continue;
                if ((n.op_type == "Add" || n.op_type == "Sub" || n.op_type == "Mul") && t.numel() <= 1) continue;
                chosen.insert(n.inputs[i]);
            }
            if (n.op_type == "BatchNormalization")
                for (std::size_t i : {3u, 4u})
                    if (n.has_input(i) && g.is_param(n.inputs[i])) m.bn_stats.push_back(n.inputs[i]);
        }
    } else {
        for (const auto& t : m.opt.trainable) {
            if (!g.is_param(t) || g.params.at(t).type() != dtype::float32)
                QUANTSIM_THROW(invalid_argument, "qat_options: trainable '", t, "' is not a float32 parameter");
            chosen.insert(t);
        }
        for (const node& n : g.nodes)
            if (n.op_type == "BatchNormalization")
                for (std::size_t i : {3u, 4u})
                    if (n.has_input(i) && g.is_param(n.inputs[i])) m.bn_stats.push_back(n.inputs[i]);
    }
    m.trainable.assign(chosen.begin(), chosen.end());
    for (const auto& t : m.trainable)
        if (g.params.at(t).rank() >= 2) m.decay.insert(t);
    // Quantizers: one state per encoding owner.
    std::vector<std::pair<std::string, qstate*>> attach;
    std::vector<std::pair<std::string, value_transform>> bias_transforms;
    const auto owner_of = [&](const std::string& name) -> qstate* {
        const quantizer* q = sim.find(name);
        if (!q || !q->enabled) return nullptr;
        const std::string owner = q->shared_with.empty() ? q->name : q->shared_with;
        const quantizer* oq = sim.find(owner);
        return oq && oq->enabled ? m.state_for(owner) : nullptr;
    };
    for (const quantizer& q : sim.quantizers()) {
        if (!q.enabled) continue;
        if (q.is_derived_bias() && !q.params) {
            // int32 bias, scale = s_in * s_w per channel from the current (trained) encodings, as the sim derives it.
            qstate* s_in = owner_of(q.bias_input);
            qstate* s_w = owner_of(q.bias_weight);
            if (!s_in || !s_w || s_in->p.size() != 1) continue;
            quant_options qo = q.options;
            qo.num_threads = m.opt.num_threads;
            const auto derived = [s_in, s_w]() {
                quant_params b;
                b.bitwidth = bias_bitwidth;
                b.is_signed = true;
                b.scheme = qscheme::symmetric;
                b.scale.clear();
                b.zero_point.clear();
                for (float s : s_w->p.scale) {
                    b.scale.push_back(s_in->p.scale[0] * s);
                    b.zero_point.push_back(0);
                }
                b.gran = b.size() > 1 ? granularity::per_channel(0) : granularity::per_tensor();
                return b;
            };
            value_transform t;
            t.forward = [derived, qo](const tensor& x) { return fake_quant(x, derived(), qo); };
            t.backward = [derived, qo](const tensor& x, const tensor& gy) { return ste_grad(x, gy, derived(), qo); };
            bias_transforms.emplace_back(q.name, std::move(t));
            continue;
        }
        const std::string owner = q.shared_with.empty() ? q.name : q.shared_with;
        const quantizer* oq = sim.find(owner);
        if (!oq || !oq->enabled) continue;
        if (qstate* st = m.state_for(owner)) attach.emplace_back(q.name, st);
    }
    autograd_options ao;
    ao.num_threads = m.opt.num_threads;
    ao.training = m.opt.bn_training;
    ao.bn_momentum = m.opt.bn_momentum;
    ao.variables.insert(m.trainable.begin(), m.trainable.end());
    for (const auto& [name, st] : attach)
        if (g.is_param(name)) ao.variables.insert(name);
    for (const auto& [name, t] : bias_transforms) ao.variables.insert(name);
    if (m.opt.bn_training) ao.variables.insert(m.bn_stats.begin(), m.bn_stats.end());
    m.tape = std::make_unique<autograd_tape>(g, ao);
    for (auto& st : m.states) {
        st.g1.assign(st.p.size(), 0.0f);
        st.g2.assign(st.p.size(), 0.0f);
    }
    for (const auto& [name, st] : attach) m.tape->set_transform(name, m.transform_of(st));
    for (auto& [name, t] : bias_transforms) m.tape->set_transform(name, std::move(t));
    if (m.opt.freezing || m.opt.dampening) m.opt.track_oscillations = m.opt.track_oscillations || m.opt.freezing;
    if (!(m.opt.hindsight_momentum >= 0 && m.opt.hindsight_momentum < 1))
        QUANTSIM_THROW(invalid_argument, "qat_options: hindsight_momentum ", m.opt.hindsight_momentum, " is outside [0, 1)");
    if (!(m.opt.oscillation_momentum > 0 && m.opt.oscillation_momentum <= 1))
        QUANTSIM_THROW(invalid_argument, "qat_options: oscillation_momentum ", m.opt.oscillation_momentum, " is outside (0, 1]");
    if (m.opt.track_oscillations || m.opt.dampening) {
        const std::set<std::string> trained(m.trainable.begin(), m.trainable.end());
        for (const auto& [name, st] : attach) {
            if (!g.is_param(name) || !trained.count(name) || g.params.at(name).rank() < 2) continue;
            if (st->p.gran.kind == granularity_kind::per_block) continue;
            osc_state o;
            o.weight = name;
            o.st = st;
            o.tracked = m.opt.track_oscillations && st->p.bitwidth <= m.opt.oscillation_max_bits;
            m.osc.push_back(std::move(o));
        }
    }
}

qat_trainer::~qat_trainer() = default;
qat_trainer::qat_trainer(qat_trainer&&) noexcept = default;
qat_trainer& qat_trainer::operator=(qat_trainer&&) noexcept = default;

const qat_options& qat_trainer::options() const noexcept { return impl_->opt; }
const std::string& qat_trainer::logits() const noexcept { return impl_->logits; }
const std::vector<std::string>& qat_trainer::trainable() const noexcept { return impl_->trainable; }
autograd_tape& qat_trainer::tape() noexcept { return *impl_->tape; }

qat_step_info qat_trainer::train_step(const tensor& x, const tensor& labels, double lr_scale) {
    auto& m = *impl_;
    const auto t0 = std::chrono::steady_clock::now();
    if (x.rank() == 0 || labels.rank() != 1 || labels.numel() != x.shape()[0])
        QUANTSIM_THROW(shape_error, "qat_trainer::train_step: ", to_string(labels.shape()), " labels for input ",
                       to_string(x.shape()));
    m.tape->set_training(m.opt.bn_training);
    for (auto& st : m.states) st.seen = false;
    auto out = m.tape->forward({{m.input, x}}, {m.logits});
    const cross_entropy_result ce = softmax_cross_entropy(out.at(m.logits), labels, m.opt.label_smoothing);
    if (!std::isfinite(ce.loss))
        QUANTSIM_THROW(numeric_error, "qat_trainer::train_step: loss is ", ce.loss, " at step ", m.steps_done);
    for (auto& st : m.states) {
        std::fill(st.g1.begin(), st.g1.end(), 0.0f);
        std::fill(st.g2.begin(), st.g2.end(), 0.0f);
    }
    auto grads = m.tape->backward({{m.logits, ce.grad}}, m.trainable);
    double damp_loss = 0;
    if (m.opt.dampening) {
        const double lambda = late_cosine(m.steps_done, m.total_steps, 0.0, m.opt.dampening_lambda, 0.0);
        if (lambda > 0)
            for (auto& o : m.osc) {
                tensor g = grads.at(o.weight).clone();
                damp_loss += impl::dampen(m.tape->param(o.weight), *o.st, lambda, g);
                grads[o.weight] = g;
            }
    }
    const double wlr = m.opt.weight_optimizer.lr * lr_scale, qlr = m.opt.quantizer_optimizer.lr * lr_scale;
    m.wopt.step();
    std::map<std::string, tensor> updated;
    for (const auto& name : m.trainable) {
        tensor p = m.tape->param(name).clone();  // the tape's graph shares storage with the sim's model
        const tensor& gr = grads.at(name);
        m.wopt.update(name, p.f32(), gr.f32(), p.numel(), wlr, m.decay.count(name) != 0);
        updated[name] = std::move(p);
    }
    m.qopt.step();
    for (auto& st : m.states) {
        if (st.mode == qat_range_mode::fixed) continue;
        const auto n = static_cast<std::int64_t>(st.g1.size());
        if (st.mode == qat_range_mode::lsq) {
            m.qopt.update(st.owner + ":scale", st.s.data(), st.g1.data(), n, qlr, false);
            if (st.learn_offset) m.qopt.update(st.owner + ":zero_point", st.z.data(), st.g2.data(), n, qlr, false);
        } else {
            m.qopt.update(st.owner + ":min", st.range.min.data(), st.g1.data(), n, qlr, false);
            m.qopt.update(st.owner + ":max", st.range.max.data(), st.g2.data(), n, qlr, false);
        }
        st.refresh();
    }
    for (auto& st : m.states) {
        if (!st.hindsight || !st.seen) continue;
        const double mo = m.opt.hindsight_momentum;
        st.run_min = st.started ? mo * st.run_min + (1 - mo) * st.seen_min : st.seen_min;
        st.run_max = st.started ? mo * st.run_max + (1 - mo) * st.seen_max : st.seen_max;
        st.started = true;
        const quant_params np = quant_params::per_tensor(encoding_from_range(st.run_min, st.run_max, st.spec));
        st.p.scale = np.scale;
        st.p.zero_point = np.zero_point;
    }
    if (m.opt.track_oscillations) {
        const double th = late_cosine(m.steps_done, m.total_steps, m.opt.freeze_threshold, m.opt.freeze_threshold_final, 0.0);
        for (auto& o : m.osc)
            if (o.tracked) m.track(o, updated.at(o.weight), th);
    }
    for (auto& [name, p] : updated) m.tape->set_param(name, std::move(p));
    qat_step_info info;
    info.step = m.steps_done++;
    info.loss = ce.loss + damp_loss;
    info.dampening_loss = damp_loss;
    info.lr = wlr;
    info.correct = ce.correct;
    info.count = x.shape()[0];
    info.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return info;
}

std::vector<qat_epoch_info> qat_trainer::fit(const tensor& x, const tensor& labels, const qat_callbacks& cb,
                                             const tensor* eval_x, const tensor* eval_labels) {
    auto& m = *impl_;
    if (x.rank() == 0 || labels.rank() != 1 || labels.numel() != x.shape()[0])
        QUANTSIM_THROW(shape_error, "qat_trainer::fit: ", to_string(labels.shape()), " labels for input ",
                       to_string(x.shape()));
    if (labels.type() != dtype::int64 && labels.type() != dtype::int32)
        QUANTSIM_THROW(invalid_argument, "qat_trainer::fit: labels must be int64 or int32, got ", name_of(labels.type()));
    if ((eval_x == nullptr) != (eval_labels == nullptr))
        QUANTSIM_THROW(invalid_argument, "qat_trainer::fit: evaluation needs both inputs and labels");
    const std::int64_t n = x.shape()[0];
    if (n == 0) QUANTSIM_THROW(invalid_argument, "qat_trainer::fit: empty training set");
    const std::int64_t bs = m.opt.batch_size;
    const std::int64_t per_epoch = (n + bs - 1) / bs;
    const std::int64_t total = per_epoch * m.opt.epochs;
    std::vector<qat_epoch_info> history;
    std::vector<std::int64_t> order(static_cast<std::size_t>(n));
    std::int64_t step = 0;
    m.total_steps = m.steps_done + total;
    for (int e = 0; e < m.opt.epochs; ++e) {
        const auto t0 = std::chrono::steady_clock::now();
        std::iota(order.begin(), order.end(), 0);
        std::mt19937_64 rng(m.opt.seed + static_cast<std::uint64_t>(e));
        std::shuffle(order.begin(), order.end(), rng);
        double loss_sum = 0;
        std::int64_t correct = 0;
        for (std::int64_t b = 0; b < n; b += bs, ++step) {
            std::vector<std::int64_t> rows(order.begin() + b, order.begin() + std::min(n, b + bs));
            const double scale = m.opt.cosine_schedule
                                     ? cosine_lr(1.0, step, total, m.opt.warmup_steps, m.opt.min_lr_fraction)
                                     : (step < m.opt.warmup_steps ? static_cast<double>(step + 1) / static_cast<double>(m.opt.warmup_steps) : 1.0);
            qat_step_info info = train_step(gather_rows(x, rows), gather_rows(labels, rows), scale);
            info.epoch = e;
            loss_sum += info.loss * static_cast<double>(info.count);
            correct += info.correct;
            if (cb.on_step) cb.on_step(info);
        }
        qat_epoch_info ei;
        ei.epoch = e;
        ei.mean_loss = loss_sum / static_cast<double>(n);
        ei.train_accuracy = static_cast<double>(correct) / static_cast<double>(n);
        if (eval_x) ei.eval_accuracy = evaluate(*eval_x, *eval_labels);
        ei.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        history.push_back(ei);
        if (cb.on_epoch && !cb.on_epoch(ei)) break;
    }
    return history;
}

double qat_trainer::evaluate(const tensor& x, const tensor& labels, int batch_size) {
    auto& m = *impl_;
    if (x.rank() == 0 || labels.rank() != 1 || labels.numel() != x.shape()[0] || x.shape()[0] == 0)
        QUANTSIM_THROW(shape_error, "qat_trainer::evaluate: ", to_string(labels.shape()), " labels for input ",
                       to_string(x.shape()));
    if (batch_size <= 0) QUANTSIM_THROW(invalid_argument, "qat_trainer::evaluate: batch_size must be > 0");
    m.tape->set_training(false);
    std::int64_t correct = 0;
    const std::int64_t n = x.shape()[0];
    for (std::int64_t b = 0; b < n; b += batch_size) {
        const std::int64_t e = std::min(n, b + batch_size);
        const tensor z = m.tape->forward({{m.input, x.slice(b, e)}}, {m.logits}).at(m.logits);
        const std::int64_t c = z.numel() / (e - b);
        for (std::int64_t i = 0; i < e - b; ++i) {
            const float* r = z.f32() + i * c;
            if (std::max_element(r, r + c) - r == label_at(labels, b + i)) ++correct;
        }
    }
    m.tape->clear_tape();
    m.tape->set_training(m.opt.bn_training);
    return static_cast<double>(correct) / static_cast<double>(n);
}

void qat_trainer::reestimate_bn_statistics(const tensor& x, int batch_size, int max_batches) {
    auto& m = *impl_;
    if (batch_size <= 0 || max_batches <= 0 || x.rank() == 0 || x.shape()[0] == 0)
        QUANTSIM_THROW(invalid_argument, "qat_trainer::reestimate_bn_statistics: needs data, batch_size > 0 and max_batches > 0");
    m.tape->set_training(true);
    int k = 0;
    for (std::int64_t b = 0; b < x.shape()[0] && k < max_batches; b += batch_size) {
        ++k;
        // running = (k-1)/k running + 1/k batch: the plain average of the k batches' statistics.
        m.tape->set_bn_momentum(static_cast<float>(k - 1) / static_cast<float>(k));
        m.tape->forward({{m.input, x.slice(b, std::min(x.shape()[0], b + batch_size))}}, {m.logits});
    }
    m.tape->clear_tape();
    m.tape->set_bn_momentum(m.opt.bn_momentum);
    m.tape->set_training(m.opt.bn_training);
}

void qat_trainer::set_total_steps(std::int64_t steps) noexcept { impl_->total_steps = steps; }

qat_oscillation_stats qat_trainer::oscillation_stats() const {
    qat_oscillation_stats r;
    double fsum = 0;
    for (const auto& o : impl_->osc) {
        if (!o.tracked || !o.initialized) continue;
        for (std::size_t i = 0; i < o.freq.size(); ++i) {
            ++r.tracked;
            fsum += o.freq[i];
            r.oscillating += o.freq[i] > impl_->opt.freeze_threshold_final;
            r.frozen += o.frozen[i];
        }
    }
    r.mean_frequency = r.tracked ? fsum / static_cast<double>(r.tracked) : 0.0;
    return r;
}

std::optional<quant_params> qat_trainer::encoding(std::string_view name) const {
    const auto& m = *impl_;
    const quantizer* q = m.sim->find(name);
    if (!q) return std::nullopt;
    const std::string owner = q->shared_with.empty() ? q->name : q->shared_with;
    auto it = m.by_owner.find(owner);
    if (it == m.by_owner.end()) return std::nullopt;
    return it->second->p;
}

void qat_trainer::write_back() {
    auto& m = *impl_;
    for (const auto& name : m.trainable) m.sim->update_param(name, m.tape->param(name).clone());
    for (const auto& name : m.bn_stats) m.sim->update_param(name, m.tape->param(name).clone());
    for (const auto& st : m.states) m.sim->set_encoding(st.owner, st.p, true);
}

}  // namespace quantsim
