// The executor: validation, constant folding, the fusion planner, the run loop with liveness-based freeing,
// hooks, parameter updates and per-step profiling.
#include <quantsim/ir/executor.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <numeric>
#include <sstream>
#include <unordered_map>

#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/parallel.hpp>
#include <quantsim/ir/shape_inference.hpp>
#include <quantsim/quant/fake_quant.hpp>

#include "ops/common.hpp"
#include "ops/fused.hpp"

namespace quantsim {

namespace {

using detail::fused_epilogue;
using detail::pw_input_spec;

// ---- fusion planning ---------------------------------------------------------------------------------------------

// An operand while a group grows: registers are virtual (one per group value) until the group is final.
struct vop {
    enum class kind { none, output, vreg, scalar, const_row, const_col, input_full, input_row, input_col };
    kind k = kind::none;
    int idx = 0;
    float value = 0.0f;
    std::int64_t period = 0;
    bool operator==(const vop& o) const {
        return k == o.k && idx == o.idx && (k != kind::scalar || value == o.value) && period == o.period;
    }
};

struct vinstr {
    pw_op op = pw_op::copy;
    int dst = -1;  ///< virtual register
    vop a, b;
    float alpha = 0.0f, beta = 0.0f;
};

struct group_state {
    std::vector<std::size_t> members;        ///< node indices, in topological order
    std::map<int, vop> values;               ///< group values (value id -> operand)
    std::vector<vinstr> code;
    int next_vreg = 0;
    std::vector<std::vector<float>> consts;
    std::vector<pw_quant> quants;            ///< grids of the fake_quant instructions
    std::vector<int> extra;                  ///< runtime inputs (value ids)
    std::vector<pw_input_spec> specs;
    int row_dims = -1;
    int out_value = -1;                      ///< value id of the last member's output
    std::vector<char> relied;                ///< output dims the constant operands' layout depends on
};

bool is_absorbable_op(const node& n) {
    static const std::set<std::string, std::less<>> ops = {
        "Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt",
        "Reciprocal", "Erf", "Floor", "Ceil", "Softplus", "Gelu", "HardSigmoid", "HardSwish", "LeakyRelu", "Neg",
        "Abs", "Clip", "BatchNormalization"};
    if (!n.domain.empty() || ops.find(n.op_type) == ops.end()) return false;
    if (n.outputs.size() != 1 || n.outputs[0].empty()) return false;
    if ((n.op_type == "Min" || n.op_type == "Max") && n.inputs.size() != 2) return false;
    return true;
}

pw_op binary_pw(const std::string& t) {
    if (t == "Add") return pw_op::add;
    if (t == "Sub") return pw_op::sub;
    if (t == "Mul") return pw_op::mul;
    if (t == "Div") return pw_op::div;
    if (t == "Pow") return pw_op::pow;
    if (t == "Min") return pw_op::min;
    return pw_op::max;
}

bool unary_pw(const node& n, pw_op& op, float& alpha, float& beta) {
    const std::string& t = n.op_type;
    alpha = beta = 0.0f;
    if (t == "Relu") op = pw_op::relu;
    else if (t == "Sigmoid") op = pw_op::sigmoid;
    else if (t == "Tanh") op = pw_op::tanh;
    else if (t == "Exp") op = pw_op::exp;
    else if (t == "Log") op = pw_op::log;
    else if (t == "Sqrt") op = pw_op::sqrt;
    else if (t == "Reciprocal") op = pw_op::reciprocal;
    else if (t == "Erf") op = pw_op::erf;
    else if (t == "Floor") op = pw_op::floor;
    else if (t == "Ceil") op = pw_op::ceil;
    else if (t == "Softplus") op = pw_op::softplus;
    else if (t == "Neg") op = pw_op::neg;
    else if (t == "Abs") op = pw_op::abs;
    else if (t == "HardSwish") {
        op = pw_op::hard_swish;
        alpha = 1.0f / 6.0f;
        beta = 0.5f;
    }
    else if (t == "Gelu") {
        if (n.attr_string("approximate", "none") != "none") return false;
        op = pw_op::gelu;
    } else if (t == "HardSigmoid") {
        op = pw_op::hard_sigmoid;
        alpha = n.attr_float("alpha", 0.2f);
        beta = n.attr_float("beta", 0.5f);
    } else if (t == "LeakyRelu") {
        op = pw_op::leaky_relu;
        alpha = n.attr_float("alpha", 0.01f);
    } else {
        return false;
    }
    return true;
}

}  // namespace

// ---- the executor state ------------------------------------------------------------------------------------------

struct executor::impl {
    graph g;
    executor_options opt;
    const op_registry* reg = nullptr;

    // Values: every name (inputs, params, node outputs) gets an id.
    std::unordered_map<std::string, int> ids;
    std::vector<std::string> names;
    std::vector<int> producer;                 ///< node index, -1 for inputs/params
    std::vector<std::vector<std::size_t>> consumers;  ///< node indices (each once)
    std::vector<const tensor*> constant;        ///< params and folded values, else nullptr
    std::map<int, tensor> folded;               ///< folded node outputs
    std::vector<char> is_input;
    std::vector<int> input_ids, output_ids;

    std::vector<std::size_t> order;            ///< node indices in topological order
    std::vector<std::size_t> topo_pos;         ///< node index -> position in `order`
    std::vector<const op_schema*> schemas;
    std::vector<char> node_folded;
    std::map<std::string, value_info> infos;   ///< value infos for fusion decisions

    // Plan.
    struct step {
        std::vector<std::size_t> nodes;
        std::vector<int> inputs, outputs;
        std::string label;
        enum class kind { single, producer, pointwise } k = kind::single;
        fused_epilogue ep;  // producer
        std::shared_ptr<const pw_program> program;  // pointwise
        std::vector<pw_input_spec> specs;           // pointwise
        shape_t expected;                           // pointwise: output shape the plan assumed
        std::size_t anchor = 0;
        int row_dims = 0;
        bool fq_in_kernel = false;  ///< the output's fake_quant is the program's last instruction
        std::unique_ptr<op_kernel> kernel;
        std::int64_t calls = 0;
        double ms = 0.0;
    };
    std::vector<step> steps;
    bool planned = false;
    std::set<std::string, std::less<>> plan_fetch;
    std::vector<int> last_use;  ///< per value id: last step reading it (-1: none)
    std::vector<char> pinned;   ///< per value id: never freed during a run (fetched / outputs)
    std::set<int> quant_changed;  ///< values whose quantizer changed since the last plan (their steps get new kernels)

    struct hook_entry {
        value_hook fn;
        std::set<std::string, std::less<>> values;
    };
    std::map<int, hook_entry> hooks;
    int next_hook = 1;

    // Value quantizers: by name (the API) and resolved per value id at planning time.
    value_quantizer_map quantizers;
    struct resolved_quantizer {
        const value_quantizer* q = nullptr;
        bool fusable = false;  ///< per-tensor float grid: can be a fake_quant instruction
        pw_quant pq;
    };
    std::vector<resolved_quantizer> vq;  ///< per value id
    std::vector<char> post;      ///< per value id: quantize and/or call hooks after the producing step
    std::vector<char> hook_on;   ///< per value id: some hook wants it

    std::size_t peak = 0;
    detail::tensor_pool pool;  ///< freed activations, reused by the next outputs of the same size

    // ---- construction -----------------------------------------------------------------------------------------

    int id_of(const std::string& name) const {
        auto it = ids.find(name);
        return it == ids.end() ? -1 : it->second;
    }
    int add_value(const std::string& name) {
        auto [it, inserted] = ids.emplace(name, static_cast<int>(names.size()));
        if (inserted) {
            names.push_back(name);
            producer.push_back(-1);
            consumers.emplace_back();
            constant.push_back(nullptr);
            is_input.push_back(0);
        }
        return it->second;
    }

    void index_graph() {
        for (const auto& v : g.inputs) {
            if (v.name.empty()) QUANTSIM_THROW(graph_error, "model input with an empty name");
            if (g.params.count(v.name))
                QUANTSIM_THROW(graph_error, "model input '", v.name, "' is also a parameter");
            const int id = add_value(v.name);
            if (is_input[static_cast<std::size_t>(id)])
                QUANTSIM_THROW(graph_error, "model input '", v.name, "' is listed twice");
            is_input[static_cast<std::size_t>(id)] = 1;
            input_ids.push_back(id);
        }
        for (auto& [name, t] : g.params) {
            const int id = add_value(name);
            constant[static_cast<std::size_t>(id)] = &t;
        }
        for (std::size_t i = 0; i < g.nodes.size(); ++i) {
            const node& n = g.nodes[i];
            for (const auto& o : n.outputs) {
                if (o.empty()) continue;
                const int id = add_value(o);
                if (is_input[static_cast<std::size_t>(id)] || constant[static_cast<std::size_t>(id)])
                    QUANTSIM_THROW(graph_error, n.describe(), ": output '", o,
                                   "' is already a model input or a parameter");
                if (producer[static_cast<std::size_t>(id)] >= 0)
                    QUANTSIM_THROW(graph_error, n.describe(), ": output '", o, "' is also produced by ",
                                   g.nodes[static_cast<std::size_t>(producer[static_cast<std::size_t>(id)])].describe());
                producer[static_cast<std::size_t>(id)] = static_cast<int>(i);
            }
        }
        for (std::size_t i = 0; i < g.nodes.size(); ++i) {
            const node& n = g.nodes[i];
            for (const auto& in : n.inputs) {
                if (in.empty()) continue;
                const int id = id_of(in);
                if (id < 0)
                    QUANTSIM_THROW(graph_error, n.describe(), ": input '", in,
                                   "' is not a model input, a parameter or the output of any node");
                auto& c = consumers[static_cast<std::size_t>(id)];
                if (c.empty() || c.back() != i) c.push_back(i);
            }
        }
        for (const auto& o : g.outputs) {
            const int id = id_of(o.name);
            if (id < 0) QUANTSIM_THROW(graph_error, "model output '", o.name, "' is not produced by any node");
            output_ids.push_back(id);
        }
    }

    void sort_nodes() {
        // Kahn's algorithm, stable in node order.
        const std::size_t n = g.nodes.size();
        std::vector<int> pending(n, 0);
        for (std::size_t i = 0; i < n; ++i)
            for (const auto& in : g.nodes[i].inputs) {
                if (in.empty()) continue;
                const int p = producer[static_cast<std::size_t>(id_of(in))];
                if (p >= 0) ++pending[i];
            }
        std::set<std::size_t> ready;
        for (std::size_t i = 0; i < n; ++i)
            if (pending[i] == 0) ready.insert(i);
        while (!ready.empty()) {
            const std::size_t i = *ready.begin();
            ready.erase(ready.begin());
            order.push_back(i);
            for (const auto& o : g.nodes[i].outputs) {
                if (o.empty()) continue;
                for (std::size_t c : consumers[static_cast<std::size_t>(id_of(o))]) {
                    // A node reading the same value twice was counted twice.
                    int uses = 0;
                    for (const auto& in : g.nodes[c].inputs) uses += in == o ? 1 : 0;
                    pending[c] -= uses;
                    if (pending[c] == 0) ready.insert(c);
                }
            }
        }
        if (order.size() != n) {
            for (std::size_t i = 0; i < n; ++i)
                if (pending[i] > 0)
                    QUANTSIM_THROW(graph_error, g.nodes[i].describe(), ": the graph has a cycle through this node");
        }
        topo_pos.assign(n, 0);
        for (std::size_t p = 0; p < n; ++p) topo_pos[order[p]] = p;
    }

    void resolve_schemas() {
        schemas.resize(g.nodes.size());
        for (std::size_t i = 0; i < g.nodes.size(); ++i) {
            const node& n = g.nodes[i];
            const op_schema* s = reg->find(n.op_type, n.domain);
            if (!s)
                QUANTSIM_THROW(unsupported_error, n.describe(), ": op '", n.op_type, "'",
                               n.domain.empty() ? std::string() : " of domain '" + n.domain + "'",
                               " is not supported (no registered schema)");
            const int nin = static_cast<int>(n.inputs.size());
            if (static_cast<int>(n.num_present_inputs()) < s->min_inputs || nin > s->max_inputs)
                QUANTSIM_THROW(graph_error, n.describe(), ": has ", nin, " inputs, the op takes ", s->min_inputs,
                               " to ", s->max_inputs);
            const int nout = static_cast<int>(n.outputs.size());
            if (nout < s->min_outputs || nout > s->max_outputs)
                QUANTSIM_THROW(graph_error, n.describe(), ": has ", nout, " outputs, the op has ", s->min_outputs,
                               " to ", s->max_outputs);
            if (!s->create) QUANTSIM_THROW(unsupported_error, n.describe(), ": op has no kernel");
            schemas[i] = s;
        }
    }

    void collect_infos() {
        infos = g.value_infos;
        for (const auto& v : g.inputs) infos[v.name] = v;
        for (const auto& v : g.outputs)
            if (v.shape_known) infos.emplace(v.name, v);
        if (infos.size() > g.inputs.size() + g.outputs.size() || g.nodes.empty()) return;
        // No recorded shapes (a hand-built graph): infer them on a copy; fusion then has shapes to check against.
        try {
            graph copy = g;
            shape_inference_options so;
            so.registry = reg;
            so.strict = false;
            run_shape_inference(copy, so);
            for (auto& [k, v] : copy.value_infos) infos.emplace(k, v);
        } catch (const std::exception&) {
            // Without shapes, fusion limits itself to scalar operands.
        }
    }

    op_inputs_info inputs_info(const node& n) const {
        op_inputs_info in;
        for (const auto& name : n.inputs) {
            if (name.empty()) {
                in.infos.push_back(nullptr);
                in.constants.push_back(nullptr);
                continue;
            }
            auto it = infos.find(name);
            in.infos.push_back(it != infos.end() && it->second.shape_known ? &it->second : nullptr);
            in.constants.push_back(constant[static_cast<std::size_t>(id_of(name))]);
        }
        return in;
    }

    /// Runs every node whose inputs are all constant, once (again for `only`'s dependents after update_param).
    void fold_constants() {
        node_folded.assign(g.nodes.size(), 0);
        for (const auto& [id, t] : folded) constant[static_cast<std::size_t>(id)] = nullptr;
        folded.clear();
        for (std::size_t i : order) {
            const node& n = g.nodes[i];
            bool all = true;
            for (const auto& in : n.inputs)
                if (!in.empty() && !constant[static_cast<std::size_t>(id_of(in))]) all = false;
            if (!all) continue;
            const op_inputs_info info = inputs_info(n);
            std::vector<tensor> outs(n.outputs.size());
            try {
                auto k = schemas[i]->create(n, info);
                kernel_threads_scope ts(opt.num_threads);
                k->run(info.constants, outs);
            } catch (const unsupported_error&) {
                continue;  // e.g. a dtype the kernel only handles at run time: leave it to the run
            }
            for (std::size_t o = 0; o < n.outputs.size(); ++o) {
                if (n.outputs[o].empty()) continue;
                if (!outs[o].defined())
                    QUANTSIM_THROW(graph_error, n.describe(), ": kernel produced no value for output '", n.outputs[o], "'");
                const int id = id_of(n.outputs[o]);
                auto [it, ok] = folded.insert_or_assign(id, std::move(outs[o]));
                (void)ok;
                constant[static_cast<std::size_t>(id)] = &it->second;
            }
            node_folded[i] = 1;
        }
    }

    // ---- planning -------------------------------------------------------------------------------------------------

    bool hooked(int id) const {
        for (const auto& [hid, h] : hooks)
            if (h.values.empty() || h.values.count(names[static_cast<std::size_t>(id)])) return true;
        return false;
    }

    const value_info* info_of(int id) const {
        auto it = infos.find(names[static_cast<std::size_t>(id)]);
        return it != infos.end() && it->second.shape_known ? &it->second : nullptr;
    }

    static bool same_dim(const value_info& a, std::size_t i, const value_info& b, std::size_t j) {
        const std::int64_t x = a.shape[i], y = b.shape[j];
        if (x >= 0 || y >= 0) return x == y;
        const std::string_view p = a.dim_param(i), q = b.dim_param(j);
        return !p.empty() && p == q;
    }

    /// True when every input of `n` other than value `id` broadcasts onto id's shape without growing it: in each
    /// (right-aligned) dim it is a known 1 or provably the same as id's (known or the same named dim). Then the
    /// node's output has id's shape whatever the unknown dims turn out to be.
    bool broadcasts_onto(const node& n, int id) const {
        const value_info* a = info_of(id);
        if (!a) return false;
        for (const auto& in : n.inputs) {
            if (in.empty()) continue;
            const int other = id_of(in);
            if (other == id) continue;
            const tensor* c = constant[static_cast<std::size_t>(other)];
            const value_info* b = c ? nullptr : info_of(other);
            if (!c && !b) return false;
            const std::size_t rb = c ? static_cast<std::size_t>(c->rank()) : b->shape.size();
            if (rb > a->shape.size()) return false;
            const std::size_t off = a->shape.size() - rb;
            for (std::size_t k = 0; k < rb; ++k) {
                const std::int64_t d = c ? c->shape()[k] : b->shape[k];
                if (d == 1) continue;
                if (c ? a->shape[off + k] != d : !same_dim(*a, off + k, *b, k)) return false;
            }
        }
        return true;
    }

    /// Index (0 or 1) of the [N, C, 1, 1] operand of a squeeze-excitation Mul (checked by scale_prologue).
    int scale_operand_index(const node& mul) const {
        const value_info* b = info_of(id_of(mul.inputs[1]));
        return b && b->shape.size() == 4 && b->shape[2] == 1 && b->shape[3] == 1 ? 1 : 0;
    }

    /// The Mul node whose x * s (s of shape [N, C, 1, 1]) only feeds Conv node `ni`, or -1.
    std::ptrdiff_t scale_prologue(std::size_t ni) const {
        const node& n = g.nodes[ni];
        if (n.op_type != "Conv" || !n.domain.empty() || n.inputs.empty() || n.outputs.size() != 1) return -1;
        if (n.attr_int("group", 1) != 1) return -1;
        const tensor* w = n.inputs.size() > 1 ? constant[static_cast<std::size_t>(id_of(n.inputs[1]))] : nullptr;
        if (!w || w->type() != dtype::float32 || w->rank() != 4) return -1;
        if (n.has_input(2) && !constant[static_cast<std::size_t>(id_of(n.inputs[2]))]) return -1;
        const int x = id_of(n.inputs[0]);
        const int p = producer[static_cast<std::size_t>(x)];
        if (p < 0 || node_folded[static_cast<std::size_t>(p)] || pinned[static_cast<std::size_t>(x)]) return -1;
        if (vq[static_cast<std::size_t>(x)].q) return -1;  // the conv must read the quantized x * s
        if (consumers[static_cast<std::size_t>(x)].size() != 1) return -1;
        for (const auto& in : n.inputs)
            if (in == n.inputs[0] && &in != &n.inputs[0]) return -1;  // the conv reads x twice
        const node& mul = g.nodes[static_cast<std::size_t>(p)];
        if (mul.op_type != "Mul" || !mul.domain.empty() || mul.inputs.size() != 2 || mul.outputs.size() != 1) return -1;
        const int si = scale_operand_index(mul);
        const int a_id = id_of(mul.inputs[static_cast<std::size_t>(1 - si)]);
        const int s_id = id_of(mul.inputs[static_cast<std::size_t>(si)]);
        if (a_id == s_id || constant[static_cast<std::size_t>(a_id)] || constant[static_cast<std::size_t>(s_id)]) return -1;
        const value_info* a = info_of(a_id);
        const value_info* sv = info_of(s_id);
        if (!a || !sv || a->type != dtype::float32 || sv->type != dtype::float32) return -1;
        if (a->shape.size() != 4 || sv->shape.size() != 4) return -1;
        if (!same_dim(*a, 0, *sv, 0) || !same_dim(*a, 1, *sv, 1) || sv->shape[2] != 1 || sv->shape[3] != 1) return -1;
        if (a->shape[1] != w->shape()[1]) return -1;
        if (a->shape[2] == 1 && a->shape[3] == 1) return -1;  // [N, C, 1, 1] both: ambiguous, leave it
        return p;
    }

    /// Classifies a non-group input of a candidate node; false when it cannot be an operand.
    bool classify(group_state& st, int id, const value_info* out, vop& result) {
        const tensor* c = constant[static_cast<std::size_t>(id)];
        if (c) {
            if (c->type() != dtype::float32) return false;
            if (c->numel() == 1) {
                result = {vop::kind::scalar, 0, c->data<float>()[0], 0};
                return true;
            }
        } else {
            if (is_input[static_cast<std::size_t>(id)] == 0 && producer[static_cast<std::size_t>(id)] < 0) return false;
        }
        if (!out) return false;
        const int R = static_cast<int>(out->shape.size());
        // The operand's dims, right-aligned to R; `known` dims only for constants, infos for runtime values.
        const value_info* vi = c ? nullptr : info_of(id);
        if (!c && (!vi || vi->type != dtype::float32)) return false;
        const int r = c ? c->rank() : static_cast<int>(vi->shape.size());
        if (r > R) return false;
        auto dim = [&](int k) -> std::int64_t {
            if (k < R - r) return 1;
            return c ? c->shape()[static_cast<std::size_t>(k - (R - r))] : vi->shape[static_cast<std::size_t>(k - (R - r))];
        };
        auto matches = [&](int k) {
            if (k < R - r) return out->shape[static_cast<std::size_t>(k)] == 1;
            if (c) return out->shape[static_cast<std::size_t>(k)] == dim(k);
            return same_dim(*vi, static_cast<std::size_t>(k - (R - r)), *out, static_cast<std::size_t>(k));
        };
        int f = R, l = -1;
        for (int k = 0; k < R; ++k)
            if (dim(k) != 1) {
                f = std::min(f, k);
                l = k;
            }
        if (!c) {
            // A runtime operand equal to the output shape everywhere: full.
            bool full = r == R;
            for (int k = 0; k < R && full; ++k) full = matches(k);
            if (full) {
                st.extra.push_back(id);
                st.specs.push_back({pw_input_spec::kind::full});
                result = {vop::kind::input_full, static_cast<int>(st.extra.size()) - 1, 0.0f, 0};
                return true;
            }
        }
        if (l < 0) return false;  // all ones but not one element (unknown dims): give up
        // Row operand: non-1 dims end before row_dims and match the output from the first non-1 dim on.
        auto try_row = [&](int rd) {
            if (l >= rd) return false;
            for (int k = f; k < rd; ++k)
                if (!matches(k)) return false;
            std::int64_t period = 1;
            for (int k = f; k < rd; ++k) period *= out->shape[static_cast<std::size_t>(k)];
            if (c) {
                if (period != c->numel()) return false;
                st.relied.resize(static_cast<std::size_t>(R), 0);
                for (int k = f; k < rd; ++k) st.relied[static_cast<std::size_t>(k)] = 1;
                const std::vector<float> v(c->data<float>(), c->data<float>() + c->numel());
                st.consts.push_back(v);
                result = {vop::kind::const_row, static_cast<int>(st.consts.size()) - 1, 0.0f, period};
            } else {
                // Runtime rows: index p directly when the operand spans all row dims, else p % (known period).
                if (f > 0 && period <= 0) return false;
                st.extra.push_back(id);
                st.specs.push_back({pw_input_spec::kind::row});
                result = {vop::kind::input_row, static_cast<int>(st.extra.size()) - 1, 0.0f, f == 0 ? 0 : period};
            }
            return true;
        };
        auto try_col = [&](int rd) {
            if (f < rd) return false;
            for (int k = rd; k < R; ++k)
                if (!matches(k) || (k < R - r)) return false;
            if (c) {
                st.relied.resize(static_cast<std::size_t>(R), 0);
                for (int k = rd; k < R; ++k) st.relied[static_cast<std::size_t>(k)] = 1;
                st.consts.push_back(std::vector<float>(c->data<float>(), c->data<float>() + c->numel()));
                result = {vop::kind::const_col, static_cast<int>(st.consts.size()) - 1, 0.0f, 0};
            } else {
                st.extra.push_back(id);
                st.specs.push_back({pw_input_spec::kind::col});
                result = {vop::kind::input_col, static_cast<int>(st.extra.size()) - 1, 0.0f, 0};
            }
            return true;
        };
        if (st.row_dims >= 0) return try_row(st.row_dims) || try_col(st.row_dims);
        // Standalone group without a split yet: the first shaped operand decides it.
        if (try_row(l + 1)) {
            st.row_dims = l + 1;
            return true;
        }
        if (try_col(f)) {
            st.row_dims = f;
            return true;
        }
        return false;
    }

    /// Adds node `ni` to the group if all its inputs can be expressed; returns false (state unchanged) otherwise.
    bool absorb(group_state& st, std::size_t ni, const value_info* out) {
        const node& n = g.nodes[ni];
        if (!is_absorbable_op(n)) return false;
        group_state s = st;
        std::vector<vop> ops;
        const bool bn = n.op_type == "BatchNormalization";  // its parameters are handled below
        for (std::size_t i = 0; i < (bn ? 1 : n.inputs.size()); ++i) {
            if (n.inputs[i].empty()) {
                ops.push_back({});
                continue;
            }
            const int id = id_of(n.inputs[i]);
            auto it = s.values.find(id);
            if (it != s.values.end()) {
                ops.push_back(it->second);
                continue;
            }
            vop o;
            if (!classify(s, id, out, o)) return false;
            ops.push_back(o);
        }
        // The node's result must not broadcast the group value to a bigger shape: one input is a group value of the
        // full output shape (every operand kind we accept broadcasts onto it).
        bool has_group_input = false;
        for (const auto& o : ops)
            if (o.k == vop::kind::output || o.k == vop::kind::vreg || o.k == vop::kind::input_full) has_group_input = true;
        if (!has_group_input) return false;
        auto new_reg = [&]() { return s.next_vreg++; };
        const std::string& t = n.op_type;
        int result = -1;
        pw_op op;
        float alpha, beta;
        if (t == "Add" || t == "Sub" || t == "Mul" || t == "Div" || t == "Pow" || t == "Min" || t == "Max") {
            result = new_reg();
            s.code.push_back({binary_pw(t), result, ops[0], ops[1], 0.0f, 0.0f});
        } else if (t == "Clip") {
            float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
            if (ops.size() > 1 && ops[1].k != vop::kind::none) {
                if (ops[1].k != vop::kind::scalar) return false;
                lo = ops[1].value;
            }
            if (ops.size() > 2 && ops[2].k != vop::kind::none) {
                if (ops[2].k != vop::kind::scalar) return false;
                hi = ops[2].value;
            }
            result = new_reg();
            s.code.push_back({pw_op::clip, result, ops[0], {}, lo, hi});
        } else if (t == "BatchNormalization") {
            // y = x * k + (b - mean * k), k = scale / sqrt(var + eps): per channel (axis 1).
            if (!out || out->shape.size() < 3 || s.row_dims != 2) return false;
            const std::int64_t C = out->shape[1];
            if (C <= 0) return false;
            const tensor* p[4];
            for (int i = 0; i < 4; ++i) {
                p[i] = constant[static_cast<std::size_t>(id_of(n.inputs[static_cast<std::size_t>(i + 1)]))];
                if (!p[i] || p[i]->type() != dtype::float32 || p[i]->numel() != C) return false;
            }
            if (ops[0].k != vop::kind::output && ops[0].k != vop::kind::vreg) return false;
            const float eps = n.attr_float("epsilon", 1e-5f);
            std::vector<float> k(static_cast<std::size_t>(C)), b(static_cast<std::size_t>(C));
            for (std::int64_t c = 0; c < C; ++c) {
                const float kk = p[0]->data<float>()[c] / std::sqrt(p[3]->data<float>()[c] + eps);
                k[static_cast<std::size_t>(c)] = kk;
                b[static_cast<std::size_t>(c)] = p[1]->data<float>()[c] - p[2]->data<float>()[c] * kk;
            }
            s.relied.resize(out->shape.size(), 0);
            s.relied[1] = 1;
            s.consts.push_back(std::move(k));
            const vop kop{vop::kind::const_row, static_cast<int>(s.consts.size()) - 1, 0.0f, C};
            s.consts.push_back(std::move(b));
            const vop bop{vop::kind::const_row, static_cast<int>(s.consts.size()) - 1, 0.0f, C};
            const int tmp = new_reg();
            s.code.push_back({pw_op::mul, tmp, ops[0], kop, 0.0f, 0.0f});
            result = new_reg();
            s.code.push_back({pw_op::add, result, {vop::kind::vreg, tmp, 0.0f, 0}, bop, 0.0f, 0.0f});
        } else if (unary_pw(n, op, alpha, beta)) {
            result = new_reg();
            s.code.push_back({op, result, ops[0], {}, alpha, beta});
        } else {
            return false;
        }
        result = append_fake_quant(s, id_of(n.outputs[0]), result);
        s.values[id_of(n.outputs[0])] = {vop::kind::vreg, result, 0.0f, 0};
        s.members.push_back(ni);
        s.out_value = id_of(n.outputs[0]);
        st = std::move(s);
        return true;
    }

    /// When value `id` has a fusable quantizer, appends fake_quant(reg) and returns its register; else returns reg.
    int append_fake_quant(group_state& s, int id, int reg) {
        const resolved_quantizer& r = vq[static_cast<std::size_t>(id)];
        if (!r.q || !r.fusable) return reg;
        s.quants.push_back(r.pq);
        const int dst = s.next_vreg++;
        const vop src = reg < 0 ? vop{vop::kind::output, 0, 0.0f, 0} : vop{vop::kind::vreg, reg, 0.0f, 0};
        s.code.push_back({pw_op::fake_quant, dst, src, {vop::kind::none, static_cast<int>(s.quants.size()) - 1, 0.0f, 0},
                          0.0f, 0.0f});
        return dst;
    }

    /// True when only the group's last output leaves the group.
    bool closed(const group_state& st) const {
        std::set<std::size_t> members(st.members.begin(), st.members.end());
        for (const auto& [id, op] : st.values) {
            if (id == st.out_value) continue;
            if (pinned[static_cast<std::size_t>(id)]) return false;
            for (std::size_t c : consumers[static_cast<std::size_t>(id)])
                if (!members.count(c)) return false;
        }
        return true;
    }

    /// Grows a group from its start state; returns the largest closed state reached.
    group_state grow(group_state st, std::vector<char>& assigned, const value_info* out) {
        group_state best = st;
        for (int iter = 0; iter < 32; ++iter) {
            // Candidates: unassigned consumers of group values, in topological order.
            std::vector<std::size_t> cands;
            std::set<std::size_t> members(st.members.begin(), st.members.end());
            for (const auto& [id, op] : st.values)
                for (std::size_t c : consumers[static_cast<std::size_t>(id)])
                    if (!members.count(c) && !assigned[c] && !node_folded[c]) cands.push_back(c);
            std::sort(cands.begin(), cands.end(), [&](std::size_t a, std::size_t b) { return topo_pos[a] < topo_pos[b]; });
            cands.erase(std::unique(cands.begin(), cands.end()), cands.end());
            bool grew = false;
            for (std::size_t c : cands) {
                // Every input must be ready: a group value, or produced outside the group (any earlier node).
                if (absorb(st, c, out)) {
                    grew = true;
                    break;
                }
            }
            if (!grew) break;
            if (closed(st)) best = st;
        }
        return best;
    }

    /// x * clip(x + 3, 0, 6) / 6 and x * HardSigmoid(x) become one hard_swish instruction (one pass instead of
    /// four; exporters spell HardSwish these ways).
    static void hard_swish_peephole(std::vector<vinstr>& code) {
        auto uses = [&](const vop& v) {
            int u = 0;
            for (const auto& in : code) u += (in.a == v ? 1 : 0) + (in.b == v ? 1 : 0);
            return u;
        };
        auto reg = [](int r) { return vop{vop::kind::vreg, r, 0.0f, 0}; };
        auto is_scalar = [](const vop& v, float x) { return v.k == vop::kind::scalar && v.value == x; };
        for (std::size_t i = 0; i < code.size(); ++i) {
            // (b) t = hard_sigmoid(X); y = X * t
            if (i + 1 < code.size() && code[i].op == pw_op::hard_sigmoid && code[i + 1].op == pw_op::mul) {
                const vop x = code[i].a, t = reg(code[i].dst);
                const vinstr& m = code[i + 1];
                if (((m.a == x && m.b == t) || (m.a == t && m.b == x)) && uses(t) == 1) {
                    vinstr hs{pw_op::hard_swish, m.dst, x, {}, code[i].alpha, code[i].beta};
                    code[i] = hs;
                    code.erase(code.begin() + static_cast<std::ptrdiff_t>(i) + 1);
                    continue;
                }
            }
            // (a) t1 = X + 3; t2 = clip(t1, 0, 6); t3 = X * t2; y = t3 / 6
            if (i + 3 < code.size() && code[i].op == pw_op::add && code[i + 1].op == pw_op::clip &&
                code[i + 2].op == pw_op::mul && code[i + 3].op == pw_op::div) {
                const vinstr &a = code[i], &c = code[i + 1], &m = code[i + 2], &d = code[i + 3];
                const vop x = is_scalar(a.b, 3.0f) ? a.a : (is_scalar(a.a, 3.0f) ? a.b : vop{});
                if (x.k == vop::kind::none || x.k == vop::kind::scalar) continue;
                const vop t1 = reg(a.dst), t2 = reg(c.dst), t3 = reg(m.dst);
                if (!(c.a == t1 && c.alpha == 0.0f && c.beta == 6.0f)) continue;
                if (!((m.a == x && m.b == t2) || (m.a == t2 && m.b == x))) continue;
                if (!(d.a == t3 && is_scalar(d.b, 6.0f))) continue;
                if (uses(t1) != 1 || uses(t2) != 1 || uses(t3) != 1) continue;
                vinstr hs{pw_op::hard_swish, d.dst, x, {}, 1.0f / 6.0f, 0.5f};
                code[i] = hs;
                code.erase(code.begin() + static_cast<std::ptrdiff_t>(i) + 1, code.begin() + static_cast<std::ptrdiff_t>(i) + 4);
            }
        }
    }

    /// The dims of `out` the group's constant operands were laid out for; -1 elsewhere (any size at run time).
    static shape_t relied_shape(const group_state& st, const value_info& out) {
        shape_t e(out.shape.size(), -1);
        for (std::size_t k = 0; k < e.size() && k < st.relied.size(); ++k)
            if (st.relied[k]) e[k] = out.shape[k];
        return e;
    }

    /// Turns virtual registers into physical ones and folds a leading affine / clamp into the producer.
    bool finalize(group_state& st, bool producer_root, bool fold_affine, std::int64_t channels, step& out,
                  const value_info* out_info) {
        std::vector<vinstr> code = st.code;
        if (code.empty()) return producer_root;  // a producer with only a prologue: nothing to add
        auto uses = [&](const std::vector<vinstr>& cd, const vop& v) {
            int u = 0;
            for (const auto& in : cd) u += (in.a == v ? 1 : 0) + (in.b == v ? 1 : 0);
            return u;
        };
        const vop outv{vop::kind::output, 0, 0.0f, 0};
        hard_swish_peephole(code);
        std::vector<float> scale, shift;
        float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
        if (producer_root) {
            // Leading affine ops on the producer's output fold into its weights.
            if (fold_affine && channels > 0) {
                scale.assign(static_cast<std::size_t>(channels), 1.0f);
                shift.assign(static_cast<std::size_t>(channels), 0.0f);
                bool folded_any = false;
                while (!code.empty()) {
                    vinstr& in = code.front();
                    if (!(in.a == outv || in.b == outv) || uses(code, outv) != 1) break;
                    const vop& other = in.a == outv ? in.b : in.a;
                    const bool out_first = in.a == outv;
                    auto value = [&](std::int64_t c) -> float {
                        if (other.k == vop::kind::scalar) return other.value;
                        return st.consts[static_cast<std::size_t>(other.idx)][static_cast<std::size_t>(c % other.period)];
                    };
                    const bool per_channel = other.k == vop::kind::scalar ||
                                             (other.k == vop::kind::const_row && other.period == channels);
                    if (!per_channel) break;
                    bool ok = true;
                    for (std::int64_t c = 0; c < channels && ok; ++c) {
                        const float v = value(c);
                        float& s = scale[static_cast<std::size_t>(c)];
                        float& t = shift[static_cast<std::size_t>(c)];
                        switch (in.op) {
                            case pw_op::mul: s *= v; t *= v; break;
                            case pw_op::add: t += v; break;
                            case pw_op::sub:
                                if (out_first) t -= v;
                                else { s = -s; t = v - t; }
                                break;
                            case pw_op::div:
                                if (!out_first) ok = false;
                                else { s /= v; t /= v; }
                                break;
                            default: ok = false;
                        }
                    }
                    if (!ok) break;
                    // The result register becomes the (folded) output.
                    const vop res{vop::kind::vreg, in.dst, 0.0f, 0};
                    code.erase(code.begin());
                    for (auto& c2 : code) {
                        if (c2.a == res) c2.a = outv;
                        if (c2.b == res) c2.b = outv;
                    }
                    folded_any = true;
                }
                if (!folded_any) {
                    scale.clear();
                    shift.clear();
                }
            }
            // A clamp of the output goes into the GEMM's store.
            if (!code.empty()) {
                vinstr& in = code.front();
                if ((in.op == pw_op::relu || in.op == pw_op::clip) && in.a == outv && uses(code, outv) == 1) {
                    lo = in.op == pw_op::relu ? 0.0f : in.alpha;
                    hi = in.op == pw_op::relu ? std::numeric_limits<float>::infinity() : in.beta;
                    const vop res{vop::kind::vreg, in.dst, 0.0f, 0};
                    code.erase(code.begin());
                    for (auto& c2 : code) {
                        if (c2.a == res) c2.a = outv;
                        if (c2.b == res) c2.b = outv;
                    }
                }
            }
        }
        // Physical registers by liveness; the last instruction writes the output.
        auto prog = std::make_shared<pw_program>();
        prog->constants = st.consts;
        prog->quants = st.quants;
        std::map<int, int> phys;
        std::vector<int> free_regs;
        int nregs = 0;
        std::map<int, std::size_t> last;
        for (std::size_t i = 0; i < code.size(); ++i) {
            if (code[i].a.k == vop::kind::vreg) last[code[i].a.idx] = i;
            if (code[i].b.k == vop::kind::vreg) last[code[i].b.idx] = i;
        }
        auto convert = [&](const vop& v) -> pw_operand {
            pw_operand o;
            switch (v.k) {
                case vop::kind::none: o.k = pw_operand::kind::none; o.index = v.idx; break;
                case vop::kind::output: o.k = pw_operand::kind::output; break;
                case vop::kind::vreg: o.k = pw_operand::kind::reg; o.index = phys.at(v.idx); break;
                case vop::kind::scalar: o.k = pw_operand::kind::scalar; o.value = v.value; break;
                case vop::kind::const_row: o.k = pw_operand::kind::const_row; o.index = v.idx; o.period = v.period; break;
                case vop::kind::const_col: o.k = pw_operand::kind::const_col; o.index = v.idx; break;
                case vop::kind::input_full: o.k = pw_operand::kind::input_full; o.index = v.idx; break;
                case vop::kind::input_row: o.k = pw_operand::kind::input_row; o.index = v.idx; o.period = v.period; break;
                case vop::kind::input_col: o.k = pw_operand::kind::input_col; o.index = v.idx; break;
            }
            return o;
        };
        for (std::size_t i = 0; i < code.size(); ++i) {
            const vinstr& in = code[i];
            pw_instr pi;
            pi.op = in.op;
            pi.a = convert(in.a);
            pi.b = convert(in.b);
            pi.alpha = in.alpha;
            pi.beta = in.beta;
            // Registers whose last use is this instruction are free for its result.
            for (const vop* v : {&in.a, &in.b})
                if (v->k == vop::kind::vreg && last.at(v->idx) == i && phys.count(v->idx)) {
                    free_regs.push_back(phys[v->idx]);
                    last[v->idx] = SIZE_MAX;  // free once even if used twice
                }
            if (i + 1 == code.size()) {
                pi.dst = -1;
            } else {
                int r;
                if (!free_regs.empty()) {
                    r = free_regs.back();
                    free_regs.pop_back();
                } else {
                    r = nregs++;
                }
                phys[in.dst] = r;
                pi.dst = r;
            }
            prog->code.push_back(pi);
        }
        if (nregs > pw_program::max_registers) return false;
        prog->num_registers = nregs;
        out.ep.scale = std::move(scale);
        out.ep.shift = std::move(shift);
        out.ep.lo = lo;
        out.ep.hi = hi;
        std::shared_ptr<const pw_program> cprog;
        if (!prog->code.empty()) {
            prog->compile();  // e.g. a quantized hard-swish chain after its first fake_quant becomes a table
            cprog = prog;
        }
        if (producer_root) {
            out.ep.program = cprog;
            out.ep.inputs = st.specs;
            if (cprog && out_info) out.ep.expected = relied_shape(st, *out_info);
        } else {
            out.program = cprog;
            out.specs = st.specs;
        }
        return true;
    }

    void build_plan(const std::set<std::string, std::less<>>& fetch) {
        std::vector<step> old = std::move(steps);
        steps.clear();
        pinned.assign(names.size(), 0);
        for (int id : output_ids) pinned[static_cast<std::size_t>(id)] = 1;
        for (const auto& f : fetch) {
            const int id = id_of(f);
            if (id < 0) QUANTSIM_THROW(invalid_argument, "fetch: '", f, "' is not a value of the graph");
            pinned[static_cast<std::size_t>(id)] = 1;
        }
        resolve_quantizers();
        hook_on.assign(names.size(), 0);
        for (std::size_t id = 0; id < names.size(); ++id) hook_on[id] = !hooks.empty() && hooked(static_cast<int>(id));
        std::vector<char> no_fuse(names.size(), 0);
        for (std::size_t id = 0; id < names.size(); ++id)
            no_fuse[id] = pinned[id] || hook_on[id] || (vq[id].q && !vq[id].fusable);
        // Hooked values must be step outputs: pinned for fusion purposes.
        std::vector<char> saved = pinned;
        pinned = no_fuse;

        std::vector<char> assigned(g.nodes.size(), 0);
        // Squeeze-excitation scales x[N, C, H, W] * s[N, C, 1, 1] feeding a (non-depthwise) Conv fold into the
        // conv's per-image weights: reserve those Mul nodes before the walk reaches them.
        std::map<std::size_t, std::size_t> prologue;  // conv node -> Mul node
        if (opt.fuse)
            for (std::size_t ni : order) {
                if (node_folded[ni]) continue;
                const auto m = scale_prologue(ni);
                if (m >= 0) {
                    prologue[ni] = static_cast<std::size_t>(m);
                    assigned[static_cast<std::size_t>(m)] = 1;
                }
            }
        std::vector<std::pair<std::size_t, step>> planned_steps;  // (topo position of last member, step)
        for (std::size_t ni : order) {
            if (assigned[ni] || node_folded[ni]) continue;
            const node& n = g.nodes[ni];
            step s;
            s.k = step::kind::single;
            s.nodes = {ni};
            bool grouped = false;
            if (opt.fuse) {
                const op_inputs_info info = inputs_info(n);
                const int rd = detail::fusable_row_dims(n, info);
                if (rd >= 0 && n.outputs.size() == 1 && !n.outputs[0].empty()) {
                    group_state st;
                    st.members = {ni};
                    st.row_dims = rd;
                    const int out_id = id_of(n.outputs[0]);
                    st.values[out_id] = {vop::kind::output, 0, 0.0f, 0};
                    st.out_value = out_id;
                    // A quantizer on the producer's own output: the epilogue starts with its fake_quant.
                    if (const int r = append_fake_quant(st, out_id, -1); r >= 0)
                        st.values[out_id] = {vop::kind::vreg, r, 0.0f, 0};
                    const group_state best = grow(st, assigned, info_of(out_id));
                    const auto pro = prologue.find(ni);
                    if (best.members.size() > 1 || pro != prologue.end() || !best.code.empty()) {
                        step fs;
                        fs.k = step::kind::producer;
                        group_state b = best;
                        const bool fold = detail::can_fold_channel_affine(n, info);
                        if (finalize(b, true, fold, detail::producer_channels(n, info), fs, info_of(out_id))) {
                            fs.nodes = b.members;
                            for (const auto& in : n.inputs) fs.inputs.push_back(in.empty() ? -1 : id_of(in));
                            fs.inputs.resize(detail::producer_arity(n), -1);
                            for (int e : b.extra) fs.inputs.push_back(e);
                            if (pro != prologue.end()) {
                                // The conv reads the Mul's tensor operand; the scale comes last.
                                const node& mul = g.nodes[pro->second];
                                const int a = id_of(mul.inputs[scale_operand_index(mul) == 1 ? 0 : 1]);
                                const int sc = id_of(mul.inputs[static_cast<std::size_t>(scale_operand_index(mul))]);
                                fs.inputs[0] = a;
                                fs.inputs.push_back(sc);
                                fs.ep.input_scale = true;
                                fs.nodes.push_back(pro->second);
                            }
                            fs.outputs = {b.out_value};
                            fs.fq_in_kernel = vq[static_cast<std::size_t>(b.out_value)].fusable;
                            s = std::move(fs);
                            grouped = true;
                        }
                    }
                    if (!grouped && pro != prologue.end()) assigned[pro->second] = 0;  // not fused after all
                } else if (is_absorbable_op(n) && n.op_type != "BatchNormalization") {
                    // Standalone: the root's first runtime input of the output's full shape anchors the group.
                    const int out_id = id_of(n.outputs[0]);
                    const value_info* oi = info_of(out_id);  // the group's output shape (see below)
                    int anchor = -1;
                    if (oi && oi->type == dtype::float32)
                        for (const auto& in : n.inputs) {
                            if (in.empty()) continue;
                            const int id = id_of(in);
                            const value_info* vi = info_of(id);
                            if (constant[static_cast<std::size_t>(id)] || !vi || vi->type != dtype::float32) continue;
                            bool full = vi->shape.size() == oi->shape.size();
                            for (std::size_t k = 0; k < vi->shape.size() && full; ++k) full = same_dim(*vi, k, *oi, k);
                            if (full) {
                                anchor = id;
                                break;
                            }
                            // Unknown dims (dynamic H, W): the output still has exactly this input's shape when
                            // every other operand is 1 or provably equal in each dim (a squeeze-excitation scale
                            // x[N, C, H, W] * s[N, C, 1, 1]). The group then plans against the input's info.
                            if (vi->shape.size() == oi->shape.size() && broadcasts_onto(n, id)) {
                                anchor = id;
                                oi = vi;
                                break;
                            }
                        }
                    if (anchor >= 0) {
                        group_state st;
                        st.extra = {anchor};
                        st.specs = {{pw_input_spec::kind::full}};
                        st.values[anchor] = {vop::kind::input_full, 0, 0.0f, 0};
                        // The anchor is not a group value in the closure sense: it is only read.
                        group_state s0 = st;
                        if (absorb(s0, ni, oi)) {
                            s0.values.erase(anchor);
                            const group_state best = grow(s0, assigned, oi);
                            if (best.members.size() > 1 || !best.quants.empty()) {
                                step fs;
                                fs.k = step::kind::pointwise;
                                group_state b = best;
                                if (b.row_dims < 0) b.row_dims = 0;
                                if (finalize(b, false, false, -1, fs, oi)) {
                                    fs.expected = relied_shape(b, *oi);
                                    fs.nodes = b.members;
                                    fs.inputs = b.extra;
                                    fs.outputs = {b.out_value};
                                    fs.anchor = 0;
                                    fs.row_dims = b.row_dims;
                                    fs.fq_in_kernel = vq[static_cast<std::size_t>(b.out_value)].fusable;
                                    s = std::move(fs);
                                    grouped = true;
                                }
                            }
                        }
                    }
                }
            }
            if (!grouped) {
                for (const auto& in : n.inputs) s.inputs.push_back(in.empty() ? -1 : id_of(in));
                for (const auto& o : n.outputs) s.outputs.push_back(o.empty() ? -1 : id_of(o));
            }
            for (std::size_t m : s.nodes) assigned[m] = 1;
            std::string label;
            for (std::size_t m : s.nodes) label += (label.empty() ? "" : "+") + g.nodes[m].op_type;
            s.label = label;
            std::size_t pos = 0;
            for (std::size_t m : s.nodes) pos = std::max(pos, topo_pos[m]);
            planned_steps.emplace_back(pos, std::move(s));
        }
        pinned = std::move(saved);
        std::stable_sort(planned_steps.begin(), planned_steps.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        for (auto& [pos, s] : planned_steps) steps.push_back(std::move(s));

        // Reuse kernels of identical steps (same nodes, same recipe) from the previous plan.
        for (auto& o : old) {
            bool touched = false;
            for (std::size_t m : o.nodes)
                for (const auto& out : g.nodes[m].outputs)
                    touched = touched || (!out.empty() && quant_changed.count(id_of(out)));
            if (touched && o.k != step::kind::single) o.kernel.reset();  // its program holds the old grids
        }
        quant_changed.clear();
        for (auto& s : steps)
            for (auto& o : old)
                if (o.kernel && o.nodes == s.nodes && o.k == s.k && o.inputs == s.inputs &&
                    o.fq_in_kernel == s.fq_in_kernel) {
                    s.kernel = std::move(o.kernel);
                    s.calls = o.calls;
                    s.ms = o.ms;
                    break;
                }
        for (auto& s : steps)
            if (!s.kernel) make_kernel(s);

        last_use.assign(names.size(), -1);
        for (std::size_t i = 0; i < steps.size(); ++i)
            for (int id : steps[i].inputs)
                if (id >= 0) last_use[static_cast<std::size_t>(id)] = static_cast<int>(i);
        for (const auto& f : fetch) pinned[static_cast<std::size_t>(id_of(f))] = 1;
        // Work after a step: hooks, and quantizers the step's kernel does not apply itself.
        post.assign(names.size(), 0);
        for (std::size_t id = 0; id < names.size(); ++id)
            post[id] = hook_on[id] || (vq[id].q && (is_input[id] || producer[id] >= 0));
        for (const auto& s : steps)
            if (s.fq_in_kernel)
                for (int id : s.outputs)
                    if (id >= 0) post[static_cast<std::size_t>(id)] = hook_on[static_cast<std::size_t>(id)];
        plan_fetch = fetch;
        planned = true;
    }

    void resolve_quantizers() {
        vq.assign(names.size(), {});
        for (const auto& [name, q] : quantizers) {
            const int id = id_of(name);
            if (id < 0 || constant[static_cast<std::size_t>(id)]) continue;  // folded values are never quantized
            resolved_quantizer& r = vq[static_cast<std::size_t>(id)];
            r.q = &q;
            const quant_params& p = q.params;
            r.fusable = p.gran.kind == granularity_kind::per_tensor && p.size() == 1 && p.bitwidth <= max_bitwidth;
            if (!r.fusable) continue;
            const auto range = p.range();
            r.pq.scale = p.scale[0];
            r.pq.inv = 1.0f / p.scale[0];
            r.pq.lo = static_cast<float>(range.qmin - p.zero_point[0]);
            r.pq.hi = static_cast<float>(range.qmax - p.zero_point[0]);
            r.pq.rounding = q.options.rounding;
            r.pq.arithmetic = q.options.arithmetic;
            r.pq.key = detail::stochastic_key(q.options.seed);
        }
    }

    void set_quantizers(value_quantizer_map qm) {
        for (const auto& [name, q] : qm) {
            if (id_of(name) < 0) QUANTSIM_THROW(invalid_argument, "value quantizer: '", name, "' is not a value of the graph");
            const quant_params& p = q.params;
            const std::string where = "value quantizer on '" + name + "'";
            if (p.scale.empty() || p.scale.size() != p.zero_point.size())
                QUANTSIM_THROW(invalid_argument, where, ": ", p.scale.size(), " scales and ", p.zero_point.size(),
                               " zero points");
            for (std::size_t i = 0; i < p.size(); ++i) p.at(i).validate(where.c_str());
            if (p.gran.kind != granularity_kind::per_tensor) {
                const value_info* vi = info_of(id_of(name));
                if (vi) (void)check_quant_params(p, vi->shape, where.c_str());
            } else if (p.size() != 1) {
                QUANTSIM_THROW(invalid_argument, where, ": per-tensor with ", p.size(), " encodings");
            }
        }
        // Values whose quantizer is new, gone or different: their steps' programs change.
        auto same = [](const value_quantizer& a, const value_quantizer& b) {
            return a.params.scale == b.params.scale && a.params.zero_point == b.params.zero_point &&
                   a.params.bitwidth == b.params.bitwidth && a.params.is_signed == b.params.is_signed &&
                   a.params.scheme == b.params.scheme && a.params.gran.kind == b.params.gran.kind &&
                   a.params.gran.axis == b.params.gran.axis && a.params.gran.block_axis == b.params.gran.block_axis &&
                   a.params.gran.block_size == b.params.gran.block_size && a.options.rounding == b.options.rounding &&
                   a.options.arithmetic == b.options.arithmetic && a.options.seed == b.options.seed &&
                   a.options.num_threads == b.options.num_threads;
        };
        for (const auto& [name, q] : quantizers) {
            auto it = qm.find(name);
            if (it == qm.end() || !same(q, it->second)) quant_changed.insert(id_of(name));
        }
        for (const auto& [name, q] : qm)
            if (!quantizers.count(name)) quant_changed.insert(id_of(name));
        quantizers = std::move(qm);
        resolve_quantizers();  // the resolved entries point into the map just replaced
        if (!quant_changed.empty()) planned = false;
    }

    void make_kernel(step& s) {
        const node& root = g.nodes[s.nodes.front()];
        const op_inputs_info info = inputs_info(root);
        switch (s.k) {
            case step::kind::single: s.kernel = schemas[s.nodes.front()]->create(root, info); break;
            case step::kind::producer: s.kernel = detail::create_fused_producer(root, info, s.ep); break;
            case step::kind::pointwise:
                s.kernel = detail::create_pointwise_group(s.program, s.specs, s.anchor, s.row_dims,
                                                          "fused group '" + root.name + "' (" + s.label + ")",
                                                          s.expected);
                break;
        }
    }

    void ensure_plan(const std::set<std::string, std::less<>>& fetch) {
        if (!planned || fetch != plan_fetch) build_plan(fetch);
    }

    // ---- running --------------------------------------------------------------------------------------------------

    void check_input(const value_info& vi, const tensor& t) const {
        if (!t.defined()) QUANTSIM_THROW(invalid_argument, "model input '", vi.name, "' is an empty tensor");
        if (t.type() != vi.type)
            QUANTSIM_THROW(invalid_argument, "model input '", vi.name, "' has dtype ", name_of(t.type()), ", expected ",
                           name_of(vi.type));
        if (!vi.shape_known) return;
        if (t.rank() != static_cast<int>(vi.shape.size()))
            QUANTSIM_THROW(shape_error, "model input '", vi.name, "' has shape ", to_string(t.shape()), ", expected ",
                           to_string(vi), "");
        for (std::size_t i = 0; i < vi.shape.size(); ++i)
            if (vi.shape[i] >= 0 && t.shape()[i] != vi.shape[i])
                QUANTSIM_THROW(shape_error, "model input '", vi.name, "' has shape ", to_string(t.shape()),
                               ", expected ", to_string(vi), " (dimension ", i, ")");
    }

    /// After value `id` is produced: its fake quantizer (when `quantize`), then the hooks that want it. Writes go
    /// to a copy when must_copy (a view's source or a caller's tensor may have other readers).
    void call_post(int id, const node* prod, tensor& value, bool must_copy, bool quantize) {
        bool copied = !must_copy;
        const std::string& name = names[static_cast<std::size_t>(id)];
        if (quantize && value.type() == dtype::float32 && vq[static_cast<std::size_t>(id)].fusable) {
            // Per-tensor grids on the executor's own pool with the program's kernel (bit-identical to
            // fake_quant_): an OpenMP team here would spin next to the pool's threads after every region, which
            // on a machine without spare cores made 2-thread simulated runs several times slower.
            const pw_quant& pq = vq[static_cast<std::size_t>(id)].pq;
            const float* src = value.f32();
            tensor out = copied ? value : tensor::empty(value.shape());
            float* dst = out.f32();
            // A one-instruction program: its vector loop (bit-identical to pw_fake_quant, which is the plain
            // reference) reads src element f at flat index f, so stochastic indices are the tensor's own.
            pw_program fq;
            fq.quants = {pq};
            fq.code.push_back({pw_op::fake_quant, -1, {pw_operand::kind::input_full, 0, 0.0f, 1},
                               {pw_operand::kind::none, 0, 0.0f, 0}, 0.0f, 0.0f});
            const float* const ins[] = {src};
            const std::int64_t n = value.numel();
            detail::parallel_range(n, 16384, [&](std::int64_t b, std::int64_t e) {
                fq.run_span(dst + b, ins, b, e - b, std::max<std::int64_t>(n, 1));
            });
            value = std::move(out);
            copied = true;
        } else if (quantize && value.type() == dtype::float32) {
            const value_quantizer& q = *vq[static_cast<std::size_t>(id)].q;
            if (!copied) {
                value = fake_quant(value, q.params, q.options);
                copied = true;
            } else {
                fake_quant_(value, q.params, q.options);
            }
        }
        if (!hook_on[static_cast<std::size_t>(id)]) return;
        for (auto& [hid, h] : hooks) {
            if (!h.values.empty() && !h.values.count(name)) continue;
            if (!copied) {
                value = value.clone();  // the hook may write: never into a caller's tensor or a view's source
                copied = true;
            }
            const shape_t shape = value.shape();
            const dtype type = value.type();
            h.fn(name, prod, value);
            if (!value.defined() || value.shape() != shape || value.type() != type)
                QUANTSIM_THROW(invalid_argument, "hook on '", name, "' changed the value's shape or dtype");
        }
    }

    std::map<std::string, tensor> run(const std::map<std::string, tensor>& feeds, const std::vector<std::string>& fetch_in) {
        std::set<std::string, std::less<>> fetch(fetch_in.begin(), fetch_in.end());
        for (const auto& [name, t] : feeds)
            if (id_of(name) < 0 || !is_input[static_cast<std::size_t>(id_of(name))])
                QUANTSIM_THROW(invalid_argument, "feed '", name, "' is not a model input");
        std::set<std::string, std::less<>> plan_set;
        for (const auto& f : fetch)
            if (id_of(f) < 0) QUANTSIM_THROW(invalid_argument, "fetch: '", f, "' is not a value of the graph");
        // Fetched values that are node outputs change the plan; inputs and constants do not.
        for (const auto& f : fetch) {
            const int id = id_of(f);
            if (producer[static_cast<std::size_t>(id)] >= 0 && !constant[static_cast<std::size_t>(id)]) plan_set.insert(f);
        }
        ensure_plan(plan_set);
        kernel_threads_scope threads(opt.num_threads);
        detail::tensor_pool_scope pool_scope(&pool);

        std::vector<tensor> vals(names.size());
        // Values never freed during this run: the plan's pinned ones and every fetched one (model inputs included).
        std::vector<char> keep = pinned;
        for (const auto& f : fetch)
            if (const auto id = static_cast<std::size_t>(id_of(f)); id < keep.size()) keep[id] = 1;
        // Storage accounting: every value slot maps to an accounting root (views share their source's root).
        std::vector<int> root(names.size(), -1);
        std::vector<std::size_t> root_bytes(names.size(), 0), root_refs(names.size(), 0);
        std::size_t live = 0, peak_now = 0;

        for (std::size_t i = 0; i < g.inputs.size(); ++i) {
            const value_info& vi = g.inputs[i];
            auto it = feeds.find(vi.name);
            if (it == feeds.end()) QUANTSIM_THROW(invalid_argument, "model input '", vi.name, "' was not fed");
            check_input(vi, it->second);
            const int id = input_ids[i];
            vals[static_cast<std::size_t>(id)] = it->second;
            if (post[static_cast<std::size_t>(id)])
                call_post(id, nullptr, vals[static_cast<std::size_t>(id)], true, vq[static_cast<std::size_t>(id)].q != nullptr);
        }

        auto value_of = [&](int id) -> const tensor* {
            if (const tensor* c = constant[static_cast<std::size_t>(id)]) return c;
            const tensor& t = vals[static_cast<std::size_t>(id)];
            return t.defined() ? &t : nullptr;
        };
        auto release = [&](int id) {
            // Storage nobody else references goes back to the pool for the next output of its size.
            pool.give(std::move(vals[static_cast<std::size_t>(id)]));
            vals[static_cast<std::size_t>(id)] = tensor();
            const int r = root[static_cast<std::size_t>(id)];
            if (r < 0) return;
            root[static_cast<std::size_t>(id)] = -1;
            if (--root_refs[static_cast<std::size_t>(r)] == 0) live -= root_bytes[static_cast<std::size_t>(r)];
        };

        std::vector<const tensor*> ins;
        std::vector<tensor> outs;
        for (std::size_t si = 0; si < steps.size(); ++si) {
            step& s = steps[si];
            ins.clear();
            for (int id : s.inputs) ins.push_back(id >= 0 ? value_of(id) : nullptr);
            outs.assign(s.outputs.size(), tensor());
            const node& last = g.nodes[s.nodes.back()];
            if (opt.profile) {
                const auto t0 = std::chrono::steady_clock::now();
                s.kernel->run(ins, outs);
                s.ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                ++s.calls;
            } else {
                s.kernel->run(ins, outs);
            }
            for (std::size_t k = 0; k < s.outputs.size(); ++k) {
                const int id = s.outputs[k];
                if (id < 0) continue;
                tensor& t = outs[k];
                if (!t.defined())
                    QUANTSIM_THROW(graph_error, last.describe(), ": kernel produced no value for output '",
                                   names[static_cast<std::size_t>(id)], "'");
                // A view of an input shares that input's accounting root.
                int r = id;
                for (std::size_t j = 0; j < ins.size(); ++j)
                    if (ins[j] && s.inputs[j] >= 0 && t.shares_storage(*ins[j])) {
                        r = root[static_cast<std::size_t>(s.inputs[j])];
                        break;
                    }
                bool is_view = r != id;
                if (r == id) {
                    root_bytes[static_cast<std::size_t>(id)] = t.nbytes();
                    live += t.nbytes();
                }
                if (r >= 0) {
                    root[static_cast<std::size_t>(id)] = r;
                    ++root_refs[static_cast<std::size_t>(r)];
                }
                if (post[static_cast<std::size_t>(id)]) {
                    const node* prod = &g.nodes[static_cast<std::size_t>(producer[static_cast<std::size_t>(id)])];
                    // Copy before a hook writes into a view (its source may have other readers) or an alias of a
                    // model input or parameter (root < 0).
                    const tensor before = t;
                    call_post(id, prod, t, is_view || r < 0, vq[static_cast<std::size_t>(id)].q && !s.fq_in_kernel);
                    if (!t.shares_storage(before) && r != id) {
                        // The value is now a tensor of its own: account it on its own.
                        if (r >= 0 && --root_refs[static_cast<std::size_t>(r)] == 0)
                            live -= root_bytes[static_cast<std::size_t>(r)];
                        root[static_cast<std::size_t>(id)] = id;
                        root_bytes[static_cast<std::size_t>(id)] = t.nbytes();
                        root_refs[static_cast<std::size_t>(id)] = 1;
                        live += t.nbytes();
                    }
                }
                vals[static_cast<std::size_t>(id)] = std::move(t);
            }
            peak_now = std::max(peak_now, live);
            // Outputs nobody reads (and nobody fetches) go at once; inputs after their last reader.
            for (int id : s.outputs)
                if (id >= 0 && last_use[static_cast<std::size_t>(id)] < 0 && !keep[static_cast<std::size_t>(id)] &&
                    std::find(output_ids.begin(), output_ids.end(), id) == output_ids.end())
                    release(id);
            for (int id : s.inputs)
                if (id >= 0 && last_use[static_cast<std::size_t>(id)] == static_cast<int>(si) &&
                    !keep[static_cast<std::size_t>(id)] && !constant[static_cast<std::size_t>(id)] &&
                    std::find(output_ids.begin(), output_ids.end(), id) == output_ids.end())
                    release(id);
        }
        peak = peak_now;
        pool.set_capacity(std::max<std::size_t>(2 * peak_now, std::size_t{16} << 20));

        std::map<std::string, tensor> result;
        auto fetch_one = [&](int id) {
            const tensor* t = value_of(id);
            if (!t)
                QUANTSIM_THROW(graph_error, "value '", names[static_cast<std::size_t>(id)],
                               "' was not computed (no step produces it)");
            result[names[static_cast<std::size_t>(id)]] = *t;
        };
        if (fetch.empty())
            for (int id : output_ids) fetch_one(id);
        else
            for (const auto& f : fetch) fetch_one(id_of(f));
        return result;
    }

    // ---- parameter updates ----------------------------------------------------------------------------------------

    void update_param(const std::string& name, tensor value) {
        auto it = g.params.find(name);
        if (it == g.params.end()) QUANTSIM_THROW(invalid_argument, "update_param: '", name, "' is not a parameter");
        if (!value.defined()) QUANTSIM_THROW(invalid_argument, "update_param: '", name, "': empty tensor");
        if (value.shape() != it->second.shape() || value.type() != it->second.type())
            QUANTSIM_THROW(shape_error, "update_param: '", name, "' is ", name_of(it->second.type()), " ",
                           to_string(it->second.shape()), ", the new value is ", name_of(value.type()), " ",
                           to_string(value.shape()));
        it->second = std::move(value);
        // Values depending on the parameter: its readers, transitively through folded nodes.
        std::set<int> changed{id_of(name)};
        std::vector<char> affected(g.nodes.size(), 0);
        for (std::size_t ni : order) {
            const node& n = g.nodes[ni];
            bool hit = false;
            for (const auto& in : n.inputs)
                if (!in.empty() && changed.count(id_of(in))) hit = true;
            if (!hit) continue;
            affected[ni] = 1;
            if (node_folded[ni])
                for (const auto& o : n.outputs)
                    if (!o.empty()) changed.insert(id_of(o));
        }
        bool refold = false;
        for (std::size_t ni = 0; ni < g.nodes.size(); ++ni) refold = refold || (affected[ni] && node_folded[ni]);
        if (refold) fold_constants();
        if (!planned) return;
        for (auto& s : steps) {
            bool hit = false;
            for (std::size_t m : s.nodes) hit = hit || affected[m];
            if (hit) s.kernel.reset();
        }
        // Re-plan: recipes (folded BatchNormalization, epilogue constants) may depend on the parameter; the
        // kernels of unaffected steps move over unchanged.
        build_plan(plan_fetch);
    }
};

// ---- public API --------------------------------------------------------------------------------------------------

executor::executor(graph g, executor_options options) : impl_(std::make_unique<impl>()) {
    impl& m = *impl_;
    m.g = std::move(g);
    m.opt = options;
    if (m.opt.num_threads < 0) QUANTSIM_THROW(invalid_argument, "executor_options::num_threads must be >= 0");
    m.reg = options.registry ? options.registry : &op_registry::global();
    m.index_graph();
    m.sort_nodes();
    m.resolve_schemas();
    m.collect_infos();
    m.fold_constants();
    if (!m.opt.quantizers.empty()) m.set_quantizers(std::move(m.opt.quantizers));
    m.opt.quantizers.clear();
    // Kernels (attribute validation, weight packing) are made now so that errors surface at construction.
    m.build_plan({});
}

executor::~executor() = default;
executor::executor(executor&&) noexcept = default;
executor& executor::operator=(executor&&) noexcept = default;

const graph& executor::model() const noexcept { return impl_->g; }

std::vector<tensor> executor::run(const std::vector<tensor>& inputs) {
    const graph& g = impl_->g;
    if (inputs.size() != g.inputs.size())
        QUANTSIM_THROW(invalid_argument, "run: ", inputs.size(), " inputs given, the model has ", g.inputs.size());
    std::map<std::string, tensor> feeds;
    for (std::size_t i = 0; i < inputs.size(); ++i) feeds[g.inputs[i].name] = inputs[i];
    auto res = impl_->run(feeds, {});
    std::vector<tensor> out;
    for (const auto& o : g.outputs) out.push_back(res.at(o.name));
    return out;
}

std::map<std::string, tensor> executor::run(const std::map<std::string, tensor>& feeds,
                                            const std::vector<std::string>& fetch) {
    return impl_->run(feeds, fetch);
}

int executor::add_hook(value_hook hook, std::set<std::string, std::less<>> values) {
    if (!hook) QUANTSIM_THROW(invalid_argument, "add_hook: empty hook function");
    for (const auto& v : values)
        if (impl_->id_of(v) < 0) QUANTSIM_THROW(invalid_argument, "add_hook: '", v, "' is not a value of the graph");
    const int id = impl_->next_hook++;
    impl_->hooks[id] = {std::move(hook), std::move(values)};
    impl_->planned = false;
    return id;
}

void executor::remove_hook(int id) {
    if (impl_->hooks.erase(id)) impl_->planned = false;
}

void executor::clear_hooks() {
    if (!impl_->hooks.empty()) impl_->planned = false;
    impl_->hooks.clear();
}

void executor::update_param(const std::string& name, tensor value) { impl_->update_param(name, std::move(value)); }

void executor::set_value_quantizers(value_quantizer_map quantizers) { impl_->set_quantizers(std::move(quantizers)); }

const value_quantizer_map& executor::value_quantizers() const noexcept { return impl_->quantizers; }

const tensor& executor::param(const std::string& name) const {
    auto it = impl_->g.params.find(name);
    if (it == impl_->g.params.end()) QUANTSIM_THROW(invalid_argument, "param: '", name, "' is not a parameter");
    return it->second;
}

std::size_t executor::last_peak_bytes() const noexcept { return impl_->peak; }

std::vector<step_profile> executor::profile() const {
    std::vector<step_profile> r;
    for (const auto& s : impl_->steps) {
        step_profile p;
        for (std::size_t m : s.nodes) p.nodes.push_back(impl_->g.nodes[m].name);
        p.label = s.label;
        p.calls = s.calls;
        p.total_ms = s.ms;
        r.push_back(std::move(p));
    }
    return r;
}

std::string executor::profile_table() const {
    struct agg {
        int steps = 0;
        std::int64_t calls = 0;
        double ms = 0;
    };
    std::map<std::string, agg> by;
    double total = 0;
    for (const auto& s : impl_->steps) {
        auto& a = by[s.label];
        ++a.steps;
        a.calls += s.calls;
        a.ms += s.ms;
        total += s.ms;
    }
    std::vector<std::pair<std::string, agg>> rows(by.begin(), by.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    std::ostringstream os;
    os << std::left << std::setw(56) << "op (fused group)" << std::right << std::setw(7) << "steps" << std::setw(9)
       << "calls" << std::setw(12) << "ms" << std::setw(8) << "%" << "\n";
    for (const auto& [label, a] : rows)
        os << std::left << std::setw(56) << label << std::right << std::setw(7) << a.steps << std::setw(9) << a.calls
           << std::setw(12) << std::fixed << std::setprecision(2) << a.ms << std::setw(7) << std::setprecision(1)
           << (total > 0 ? 100.0 * a.ms / total : 0.0) << "%\n";
    os << std::left << std::setw(56) << "total" << std::right << std::setw(7) << impl_->steps.size() << std::setw(9)
       << "" << std::setw(12) << std::fixed << std::setprecision(2) << total << "\n";
    return os.str();
}

void executor::reset_profile() {
    for (auto& s : impl_->steps) {
        s.calls = 0;
        s.ms = 0.0;
    }
}

std::string executor::plan_summary() {
    impl_->ensure_plan(impl_->plan_fetch);
    std::ostringstream os;
    for (std::size_t i = 0; i < impl_->steps.size(); ++i) {
        const auto& s = impl_->steps[i];
        os << i << ": " << s.label << " [";
        for (std::size_t k = 0; k < s.nodes.size(); ++k) os << (k ? ", " : "") << impl_->g.nodes[s.nodes[k]].name;
        os << "]";
        if (s.k == impl::step::kind::producer) {
            if (!s.ep.scale.empty()) os << " affine-folded";
            if (s.ep.input_scale) os << " input-scale-folded";
            if (s.ep.lo != -std::numeric_limits<float>::infinity() || s.ep.hi != std::numeric_limits<float>::infinity())
                os << " clamp[" << s.ep.lo << ", " << s.ep.hi << "]";
            if (s.ep.program) os << " epilogue{" << s.ep.program->describe() << "}";
        } else if (s.k == impl::step::kind::pointwise && s.program) {
            os << " program{" << s.program->describe() << "}";
        }
        os << "\n";
    }
    return os.str();
}

std::size_t executor::num_steps() {
    impl_->ensure_plan(impl_->plan_fetch);
    return impl_->steps.size();
}

}  // namespace quantsim
