// The autograd tape: forward with kernels (or a rule's own forward), backward in reverse topological order.
#include <algorithm>
#include <cmath>
#include <mutex>
#include <unordered_map>

#include <quantsim/ir/autograd.hpp>
#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/elementwise.hpp>
#include <quantsim/ir/kernels/parallel.hpp>

namespace quantsim {

// ---- registry -----------------------------------------------------------------------------------------------------

grad_registry& grad_registry::global() {
    static grad_registry* r = [] {
        auto* g = new grad_registry();
        register_builtin_grad_rules(*g);
        return g;
    }();
    return *r;
}

void grad_registry::add(grad_rule rule) {
    if (!rule.backward) QUANTSIM_THROW(invalid_argument, "grad_registry::add: rule for '", rule.op_type, "' has no backward");
    for (auto& r : rules_)
        if (r.op_type == rule.op_type && r.domain == rule.domain) {
            r = std::move(rule);
            return;
        }
    rules_.push_back(std::move(rule));
}

const grad_rule* grad_registry::find(std::string_view op_type, std::string_view domain) const {
    for (const auto& r : rules_)
        if (r.op_type == op_type && r.domain == domain) return &r;
    return nullptr;
}

std::vector<std::string> grad_registry::op_types() const {
    std::vector<std::string> v;
    for (const auto& r : rules_) v.push_back(r.domain.empty() ? r.op_type : r.domain + "::" + r.op_type);
    std::sort(v.begin(), v.end());
    return v;
}

// ---- tape ---------------------------------------------------------------------------------------------------------

struct autograd_tape::impl {
    graph g;
    autograd_options opt;
    const op_registry* ops = nullptr;
    const grad_registry* rules = nullptr;
    std::unordered_map<std::string, int> ids;  // value name -> id
    std::vector<std::string> names;
    struct node_rec {
        std::vector<int> in, out;
        std::unique_ptr<op_kernel> kernel;
        const grad_rule* rule = nullptr;
    };
    std::vector<node_rec> recs;
    std::vector<int> param_ids;   // ids of parameters
    std::vector<std::string> input_names;
    std::set<std::string, std::less<>> variables;
    std::unordered_map<int, value_transform> transforms;
    // The tape.
    bool recorded = false;
    std::vector<tensor> vals, raw;
    std::vector<std::vector<tensor>> saved;
    // Buffers of the previous step, handed back to kernels and rules of the next one (a step then allocates, and
    // page-faults, almost nothing).
    detail::tensor_pool pool;

    void recycle() {
        // Buffers the last step did not take back were not needed by it; dropping them keeps the pool at one step's
        // worth. (Tensors made outside the pool, e.g. by transforms, would otherwise pile up step after step.)
        pool.clear();
        std::size_t bytes = 0;
        const auto give = [&](tensor& t) {
            if (!t.defined()) return;
            bytes += t.nbytes();
            pool.give(std::move(t));
            t = tensor();
        };
        pool.set_capacity(std::size_t{1} << 40);  // everything of the last step; trimmed below
        for (auto& t : vals) give(t);
        for (auto& t : raw) give(t);
        for (auto& v : saved)
            for (auto& t : v) give(t);
        pool.set_capacity(bytes);
    }

    int id_of(const std::string& name) {
        auto [it, fresh] = ids.emplace(name, static_cast<int>(names.size()));
        if (fresh) names.push_back(name);
        return it->second;
    }
    int find_id(std::string_view name) const {
        auto it = ids.find(std::string(name));
        return it == ids.end() ? -1 : it->second;
    }

    void build_kernel(std::size_t i) {
        const node& n = g.nodes[i];
        op_inputs_info info;
        for (const auto& v : n.inputs) {
            info.infos.push_back(v.empty() ? nullptr : g.info(v));
            const bool constant = !v.empty() && g.is_param(v) && !variables.count(v);
            info.constants.push_back(constant ? &g.params.at(v) : nullptr);
        }
        const op_schema* s = ops->find(n.op_type, n.domain);
        if (!s || !s->create) QUANTSIM_THROW(unsupported_error, n.describe(), ": no kernel for this op");
        recs[i].kernel = s->create(n, info);
    }

    void rebuild_readers(const std::string& param) {
        for (std::size_t i = 0; i < g.nodes.size(); ++i)
            if (std::find(g.nodes[i].inputs.begin(), g.nodes[i].inputs.end(), param) != g.nodes[i].inputs.end())
                build_kernel(i);
    }
};

autograd_tape::autograd_tape(graph g, autograd_options options) : impl_(std::make_unique<impl>()) {
    auto& m = *impl_;
    m.g = std::move(g);
    m.opt = std::move(options);
    m.ops = m.opt.ops ? m.opt.ops : &op_registry::global();
    m.rules = m.opt.rules ? m.opt.rules : &grad_registry::global();
    shape_inference_options si;
    si.registry = m.ops;
    m.g.infer_shapes(si);
    if (m.opt.variables.empty()) {
        for (const auto& [name, t] : m.g.params)
            if (t.type() == dtype::float32 && t.numel() > 1) m.variables.insert(name);
    } else {
        for (const auto& v : m.opt.variables) {
            if (!m.g.is_param(v)) QUANTSIM_THROW(invalid_argument, "autograd_tape: variable '", v, "' is not a parameter");
            m.variables.insert(v);
        }
    }
    for (const auto& vi : m.g.inputs) {
        m.id_of(vi.name);
        m.input_names.push_back(vi.name);
    }
    for (const auto& [name, t] : m.g.params) m.param_ids.push_back(m.id_of(name));
    m.recs.resize(m.g.nodes.size());
    for (std::size_t i = 0; i < m.g.nodes.size(); ++i) {
        const node& n = m.g.nodes[i];
        for (const auto& v : n.inputs) m.recs[i].in.push_back(v.empty() ? -1 : m.id_of(v));
        for (const auto& v : n.outputs) m.recs[i].out.push_back(v.empty() ? -1 : m.id_of(v));
        m.recs[i].rule = m.rules->find(n.op_type, n.domain);
        m.build_kernel(i);
    }
}

autograd_tape::~autograd_tape() = default;
autograd_tape::autograd_tape(autograd_tape&&) noexcept = default;
autograd_tape& autograd_tape::operator=(autograd_tape&&) noexcept = default;

const graph& autograd_tape::model() const noexcept { return impl_->g; }

const tensor& autograd_tape::param(const std::string& name) const {
    auto it = impl_->g.params.find(name);
    if (it == impl_->g.params.end()) QUANTSIM_THROW(invalid_argument, "autograd_tape: no parameter '", name, "'");
    return it->second;
}

void autograd_tape::set_param(const std::string& name, tensor value) {
    auto& m = *impl_;
    auto it = m.g.params.find(name);
    if (it == m.g.params.end()) QUANTSIM_THROW(invalid_argument, "autograd_tape::set_param: no parameter '", name, "'");
    if (value.shape() != it->second.shape() || value.type() != it->second.type())
        QUANTSIM_THROW(shape_error, "autograd_tape::set_param: parameter '", name, "' is ", name_of(it->second.type()),
                       " ", to_string(it->second.shape()), ", the new value ", name_of(value.type()), " ",
                       to_string(value.shape()));
    it->second = std::move(value);
    if (!m.variables.count(name)) m.rebuild_readers(name);
}

bool autograd_tape::is_variable(std::string_view p) const { return impl_->variables.count(p) != 0; }
void autograd_tape::set_training(bool t) noexcept { impl_->opt.training = t; }
bool autograd_tape::training() const noexcept { return impl_->opt.training; }
void autograd_tape::set_num_threads(int n) noexcept { impl_->opt.num_threads = n; }
void autograd_tape::set_bn_momentum(float m) noexcept { impl_->opt.bn_momentum = m; }

void autograd_tape::set_transform(const std::string& value, value_transform t) {
    const int id = impl_->find_id(value);
    if (id < 0) QUANTSIM_THROW(invalid_argument, "autograd_tape::set_transform: '", value, "' is not a value of the graph");
    if (!t.forward || !t.backward)
        QUANTSIM_THROW(invalid_argument, "autograd_tape::set_transform: transform of '", value,
                       "' needs both forward and backward");
    impl_->transforms[id] = std::move(t);
}
void autograd_tape::remove_transform(const std::string& value) {
    const int id = impl_->find_id(value);
    if (id >= 0) impl_->transforms.erase(id);
}
void autograd_tape::clear_transforms() { impl_->transforms.clear(); }

std::map<std::string, tensor> autograd_tape::forward(const std::map<std::string, tensor>& feeds,
                                                     const std::vector<std::string>& fetch) {
    auto& m = *impl_;
    kernel_threads_scope threads(m.opt.num_threads);
    m.recorded = false;
    m.recycle();
    detail::tensor_pool_scope pool_scope(&m.pool);
    m.vals.assign(m.names.size(), tensor());
    m.raw.assign(m.names.size(), tensor());
    m.saved.assign(m.g.nodes.size(), {});
    const auto store = [&](int id, tensor v) {
        auto t = m.transforms.find(id);
        if (t != m.transforms.end()) {
            m.raw[static_cast<std::size_t>(id)] = v;
            v = t->second.forward(v);
        }
        m.vals[static_cast<std::size_t>(id)] = std::move(v);
    };
    for (const auto& [name, t] : feeds)
        if (!m.g.is_input(name))
            QUANTSIM_THROW(invalid_argument, "autograd_tape::forward: '", name, "' is not a model input");
    for (const auto& vi : m.g.inputs) {
        auto it = feeds.find(vi.name);
        if (it == feeds.end()) QUANTSIM_THROW(graph_error, "autograd_tape::forward: model input '", vi.name, "' is not fed");
        store(m.find_id(vi.name), it->second);
    }
    for (int id : m.param_ids) store(id, m.g.params.at(m.names[static_cast<std::size_t>(id)]));
    std::vector<const tensor*> ins;
    std::vector<tensor> outs;
    std::vector<std::pair<std::size_t, tensor>> updates;
    for (std::size_t i = 0; i < m.g.nodes.size(); ++i) {
        const node& n = m.g.nodes[i];
        auto& rec = m.recs[i];
        ins.clear();
        for (int id : rec.in) ins.push_back(id < 0 ? nullptr : &m.vals[static_cast<std::size_t>(id)]);
        outs.assign(n.outputs.size(), tensor());
        updates.clear();
        bool done = false;
        if (rec.rule && rec.rule->forward) {
            grad_forward_context ctx{n, ins, outs, m.saved[i], updates, m.opt.training, m.opt.bn_momentum};
            done = rec.rule->forward(ctx);
        }
        if (!done) rec.kernel->run(ins, outs);
        for (auto& [k, v] : updates)
            if (k < n.inputs.size() && m.g.is_param(n.inputs[k])) {
                m.g.params[n.inputs[k]] = std::move(v);
                if (!m.variables.count(n.inputs[k])) m.rebuild_readers(n.inputs[k]);
            }
        for (std::size_t o = 0; o < rec.out.size(); ++o)
            if (rec.out[o] >= 0) {
                if (!outs[o].defined())
                    QUANTSIM_THROW(graph_error, n.describe(), ": output ", o, " was not produced");
                store(rec.out[o], std::move(outs[o]));
            }
    }
    m.recorded = true;
    std::map<std::string, tensor> result;
    if (fetch.empty()) {
        for (const auto& vi : m.g.outputs) result[vi.name] = m.vals[static_cast<std::size_t>(m.find_id(vi.name))];
    } else {
        for (const auto& f : fetch) {
            const int id = m.find_id(f);
            if (id < 0 || !m.vals[static_cast<std::size_t>(id)].defined())
                QUANTSIM_THROW(invalid_argument, "autograd_tape::forward: cannot fetch '", f, "'");
            result[f] = m.vals[static_cast<std::size_t>(id)];
        }
    }
    return result;
}

std::vector<tensor> autograd_tape::forward(const std::vector<tensor>& inputs) {
    const auto& gi = impl_->g.inputs;
    if (inputs.size() != gi.size())
        QUANTSIM_THROW(invalid_argument, "autograd_tape::forward: ", inputs.size(), " inputs for a model with ", gi.size());
    std::map<std::string, tensor> feeds;
    for (std::size_t i = 0; i < gi.size(); ++i) feeds[gi[i].name] = inputs[i];
    auto out = forward(feeds);
    std::vector<tensor> r;
    for (const auto& vi : impl_->g.outputs) r.push_back(out.at(vi.name));
    return r;
}

tensor autograd_tape::value(std::string_view name) const {
    const int id = impl_->find_id(name);
    if (id < 0 || static_cast<std::size_t>(id) >= impl_->vals.size()) return {};
    return impl_->vals[static_cast<std::size_t>(id)];
}

std::size_t autograd_tape::cached_bytes() const noexcept { return impl_->pool.pooled_bytes(); }

void autograd_tape::clear_tape() {
    impl_->pool.clear();
    impl_->recorded = false;
    impl_->vals.clear();
    impl_->raw.clear();
    impl_->saved.clear();
}

namespace {
void accumulate(tensor& acc, tensor g, const std::string& where) {
    if (!acc.defined()) {
        acc = std::move(g);
        return;
    }
    if (acc.shape() != g.shape())
        QUANTSIM_THROW(shape_error, where, ": gradient of shape ", to_string(g.shape()), " does not match ",
                       to_string(acc.shape()));
    acc = binary(binary_op::add, acc, g, where);
}
}  // namespace

std::map<std::string, tensor> autograd_tape::backward(const std::map<std::string, tensor>& seeds,
                                                      const std::vector<std::string>& wrt) {
    auto& m = *impl_;
    if (!m.recorded) QUANTSIM_THROW(graph_error, "autograd_tape::backward: no recorded forward");
    kernel_threads_scope threads(m.opt.num_threads);
    detail::tensor_pool_scope pool_scope(&m.pool);
    const std::size_t nv = m.names.size();
    std::vector<char> requires_grad(nv, 0);
    std::vector<int> wrt_ids;
    for (const auto& w : wrt) {
        const int id = m.find_id(w);
        if (id < 0 || (!m.g.is_param(w) && !m.g.is_input(w)))
            QUANTSIM_THROW(invalid_argument, "autograd_tape::backward: '", w, "' is not a parameter or model input");
        requires_grad[static_cast<std::size_t>(id)] = 1;
        wrt_ids.push_back(id);
    }
    for (const auto& [id, t] : m.transforms)
        if (t.learnable) requires_grad[static_cast<std::size_t>(id)] = 1;
    for (std::size_t i = 0; i < m.g.nodes.size(); ++i) {
        bool any = false;
        for (int id : m.recs[i].in) any = any || (id >= 0 && requires_grad[static_cast<std::size_t>(id)]);
        if (any)
            for (int id : m.recs[i].out)
                if (id >= 0) requires_grad[static_cast<std::size_t>(id)] = 1;
    }
    std::vector<tensor> grads(nv);
    for (const auto& [name, s] : seeds) {
        const int id = m.find_id(name);
        if (id < 0 || !m.vals[static_cast<std::size_t>(id)].defined())
            QUANTSIM_THROW(invalid_argument, "autograd_tape::backward: seed '", name, "' is not a recorded value");
        const tensor& v = m.vals[static_cast<std::size_t>(id)];
        if (s.shape() != v.shape() || s.type() != dtype::float32)
            QUANTSIM_THROW(shape_error, "autograd_tape::backward: seed of '", name, "' has shape ", to_string(s.shape()),
                           ", the value ", to_string(v.shape()));
        accumulate(grads[static_cast<std::size_t>(id)], s, "seed '" + name + "'");
    }
    // A transformed value's gradient is complete once every reader ran (readers come later in node order).
    const auto through_transform = [&](int id) {
        auto t = m.transforms.find(id);
        auto& g = grads[static_cast<std::size_t>(id)];
        if (t == m.transforms.end() || !g.defined()) return;
        g = t->second.backward(m.raw[static_cast<std::size_t>(id)], g);
    };
    std::vector<const tensor*> ins, outs, gouts;
    std::vector<bool> needs;
    for (std::size_t i = m.g.nodes.size(); i-- > 0;) {
        const node& n = m.g.nodes[i];
        auto& rec = m.recs[i];
        bool any_out = false, any_in = false;
        for (int id : rec.out)
            if (id >= 0) {
                through_transform(id);
                any_out = any_out || grads[static_cast<std::size_t>(id)].defined();
            }
        needs.assign(rec.in.size(), false);
        for (std::size_t k = 0; k < rec.in.size(); ++k) {
            const int id = rec.in[k];
            needs[k] = id >= 0 && requires_grad[static_cast<std::size_t>(id)];
            any_in = any_in || needs[k];
        }
        if (!any_out || !any_in) continue;
        if (!rec.rule)
            QUANTSIM_THROW(unsupported_error, n.describe(), ": no gradient rule for op type '", n.op_type,
                           "' (add one with grad_registry::add)");
        ins.clear();
        outs.clear();
        gouts.clear();
        for (int id : rec.in) ins.push_back(id < 0 ? nullptr : &m.vals[static_cast<std::size_t>(id)]);
        for (int id : rec.out) {
            const bool t = id >= 0 && m.transforms.count(id);
            outs.push_back(id < 0 ? nullptr : t ? &m.raw[static_cast<std::size_t>(id)] : &m.vals[static_cast<std::size_t>(id)]);
            gouts.push_back(id >= 0 && grads[static_cast<std::size_t>(id)].defined() ? &grads[static_cast<std::size_t>(id)] : nullptr);
        }
        grad_backward_context ctx{n, ins, outs, m.saved[i], gouts, needs, m.opt.training};
        std::vector<tensor> gin = rec.rule->backward(ctx);
        if (gin.size() != rec.in.size())
            QUANTSIM_THROW(graph_error, n.describe(), ": gradient rule returned ", gin.size(), " gradients for ",
                           rec.in.size(), " inputs");
        for (std::size_t k = 0; k < rec.in.size(); ++k) {
            if (!needs[k] || !gin[k].defined()) continue;
            const tensor& v = *ins[k];
            if (gin[k].shape() != v.shape())
                QUANTSIM_THROW(shape_error, n.describe(), ": gradient of input ", k, " has shape ",
                               to_string(gin[k].shape()), ", the input ", to_string(v.shape()));
            accumulate(grads[static_cast<std::size_t>(rec.in[k])], std::move(gin[k]), n.describe());
        }
    }
    for (int id : m.param_ids) through_transform(id);
    for (const auto& name : m.input_names) through_transform(m.find_id(name));
    std::map<std::string, tensor> result;
    for (std::size_t k = 0; k < wrt.size(); ++k) {
        tensor g = grads[static_cast<std::size_t>(wrt_ids[k])];
        if (!g.defined()) {
            const tensor& v = m.transforms.count(wrt_ids[k]) ? m.raw[static_cast<std::size_t>(wrt_ids[k])]
                                                               : m.vals[static_cast<std::size_t>(wrt_ids[k])];
            g = tensor(v.shape());
        }
        result[wrt[k]] = g;
    }
    // Intermediate gradients go back to the pool (returned ones are still referenced and are not kept).
    for (auto& g : grads)
        if (g.defined()) m.pool.give(std::move(g));
    return result;
}

// ---- loss ---------------------------------------------------------------------------------------------------------

cross_entropy_result softmax_cross_entropy(const tensor& logits, const tensor& labels, float label_smoothing) {
    if (logits.type() != dtype::float32 || logits.rank() < 2)
        QUANTSIM_THROW(invalid_argument, "softmax_cross_entropy: logits must be float32 [N, C], got ",
                       name_of(logits.type()), " ", to_string(logits.shape()));
    const std::int64_t n = logits.shape()[0];
    const std::int64_t c = n ? logits.numel() / n : 0;
    if (labels.rank() != 1 || labels.numel() != n)
        QUANTSIM_THROW(shape_error, "softmax_cross_entropy: labels ", to_string(labels.shape()), " for ", n, " rows");
    if (labels.type() != dtype::int64 && labels.type() != dtype::int32)
        QUANTSIM_THROW(invalid_argument, "softmax_cross_entropy: labels must be int64 or int32, got ",
                       name_of(labels.type()));
    if (!(label_smoothing >= 0 && label_smoothing < 1))
        QUANTSIM_THROW(invalid_argument, "softmax_cross_entropy: label_smoothing ", label_smoothing, " is outside [0, 1)");
    if (n == 0) QUANTSIM_THROW(invalid_argument, "softmax_cross_entropy: empty batch");
    cross_entropy_result r;
    r.grad = tensor::empty(logits.shape());
    const float* z = logits.f32();
    float* g = r.grad.f32();
    double total = 0;
    const double eps = label_smoothing;
    for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t y = labels.type() == dtype::int64 ? labels.data<std::int64_t>()[i] : labels.data<std::int32_t>()[i];
        if (y < 0 || y >= c)
            QUANTSIM_THROW(invalid_argument, "softmax_cross_entropy: label ", y, " of row ", i, " is outside [0, ", c, ")");
        const float* zi = z + i * c;
        float mx = zi[0];
        std::int64_t arg = 0;
        for (std::int64_t j = 0; j < c; ++j) {
            if (!std::isfinite(zi[j]))
                QUANTSIM_THROW(numeric_error, "softmax_cross_entropy: logit ", j, " of row ", i, " is ", zi[j]);
            if (zi[j] > mx) mx = zi[j], arg = j;
        }
        double se = 0;
        for (std::int64_t j = 0; j < c; ++j) se += std::exp(static_cast<double>(zi[j]) - mx);
        const double lse = std::log(se) + mx;
        double li = 0;
        for (std::int64_t j = 0; j < c; ++j) {
            const double t = (j == y ? 1.0 - eps : 0.0) + eps / static_cast<double>(c);
            li -= t * (static_cast<double>(zi[j]) - lse);
            const double p = std::exp(static_cast<double>(zi[j]) - lse);
            g[i * c + j] = static_cast<float>((p - t) / static_cast<double>(n));
        }
        total += li;
        if (arg == y) ++r.correct;
    }
    r.loss = total / static_cast<double>(n);
    return r;
}

}  // namespace quantsim
