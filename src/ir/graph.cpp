// graph: queries, edits, topological order, validation and the summary. Shape inference is in shape_inference.cpp.
#include <quantsim/ir/graph.hpp>

#include <algorithm>
#include <iomanip>
#include <queue>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <quantsim/ir/op.hpp>
#include <quantsim/ir/shape_inference.hpp>

namespace quantsim {

std::string to_string(const value_info& info) {
    std::string r(name_of(info.type));
    if (!info.shape_known) return r + " [?]";
    r += " [";
    for (std::size_t i = 0; i < info.shape.size(); ++i) {
        if (i) r += ", ";
        if (info.shape[i] >= 0)
            r += std::to_string(info.shape[i]);
        else if (!info.dim_param(i).empty())
            r += std::string(info.dim_param(i));
        else
            r += "?";
    }
    return r + "]";
}

// ---- queries ---------------------------------------------------------------------------------------------------

bool graph::is_input(std::string_view value) const {
    return std::any_of(inputs.begin(), inputs.end(), [&](const value_info& v) { return v.name == value; });
}

bool graph::is_output(std::string_view value) const {
    return std::any_of(outputs.begin(), outputs.end(), [&](const value_info& v) { return v.name == value; });
}

std::ptrdiff_t graph::producer(std::string_view value) const {
    if (value.empty()) return -1;
    for (std::size_t i = 0; i < nodes.size(); ++i)
        for (const auto& o : nodes[i].outputs)
            if (o == value) return static_cast<std::ptrdiff_t>(i);
    return -1;
}

std::vector<std::size_t> graph::consumers(std::string_view value) const {
    std::vector<std::size_t> r;
    if (value.empty()) return r;
    for (std::size_t i = 0; i < nodes.size(); ++i)
        if (std::find(nodes[i].inputs.begin(), nodes[i].inputs.end(), value) != nodes[i].inputs.end())
            r.push_back(i);
    return r;
}

std::ptrdiff_t graph::find_node(std::string_view node_name) const {
    for (std::size_t i = 0; i < nodes.size(); ++i)
        if (nodes[i].name == node_name) return static_cast<std::ptrdiff_t>(i);
    return -1;
}

const value_info* graph::info(std::string_view value) const {
    if (value.empty()) return nullptr;
    if (auto it = params.find(std::string(value)); it != params.end()) {
        if (!param_cache_.p) return nullptr;  // moved-from graph
        std::lock_guard<std::mutex> lock(param_cache_.p->mutex);
        auto& slot = param_cache_.p->infos[std::string(value)];
        const tensor& t = it->second;
        if (slot.name != value || slot.type != t.type() || slot.shape != t.shape() || !slot.shape_known) {
            slot.name = std::string(value);
            slot.type = t.type();
            slot.shape = t.shape();
            slot.dim_params.clear();
            slot.shape_known = true;
        }
        return &slot;
    }
    for (const auto& v : inputs)
        if (v.name == value) return &v;
    // A graph output's info is the intermediate's plus the model's own names for dims inference could not name.
    for (const auto& v : outputs)
        if (v.name == value && v.shape_known) return &v;
    if (auto it = value_infos.find(std::string(value)); it != value_infos.end()) return &it->second;
    for (const auto& v : outputs)
        if (v.name == value) return &v;
    return nullptr;
}

bool graph::is_defined(std::string_view value) const {
    return !value.empty() && (is_param(value) || is_input(value) || producer(value) >= 0);
}

std::int64_t graph::num_param_elements() const {
    std::int64_t n = 0;
    for (const auto& [k, t] : params) n += t.numel();
    return n;
}

// ---- edits -----------------------------------------------------------------------------------------------------

std::string graph::unique_name(std::string_view base) const {
    std::unordered_set<std::string> used;
    for (const auto& v : inputs) used.insert(v.name);
    for (const auto& v : outputs) used.insert(v.name);
    for (const auto& [k, t] : params) used.insert(k);
    for (const auto& [k, v] : value_infos) used.insert(k);
    for (const auto& n : nodes) {
        used.insert(n.name);
        for (const auto& o : n.outputs) used.insert(o);
        for (const auto& i : n.inputs) used.insert(i);
    }
    std::string b = base.empty() ? std::string("v") : std::string(base);
    if (!used.count(b)) return b;
    for (std::size_t k = 1;; ++k) {
        std::string c = b + "_" + std::to_string(k);
        if (!used.count(c)) return c;
    }
}

node& graph::add_node(node n) { return insert_node(nodes.size(), std::move(n)); }

node& graph::insert_node(std::size_t pos, node n) {
    if (pos > nodes.size()) QUANTSIM_THROW(invalid_argument, "graph::insert_node: position ", pos, " is past the end (", nodes.size(), " nodes)");
    if (n.name.empty() || find_node(n.name) >= 0) n.name = unique_name(n.name.empty() ? n.op_type : n.name);
    auto it = nodes.insert(nodes.begin() + static_cast<std::ptrdiff_t>(pos), std::move(n));
    return *it;
}

std::string graph::add_param(std::string_view base, tensor value) {
    if (!value.defined()) QUANTSIM_THROW(invalid_argument, "graph::add_param: tensor for '", base, "' is empty");
    std::string n = unique_name(base);
    params.emplace(n, std::move(value));
    return n;
}

void graph::remove_nodes(std::vector<std::size_t> indices) {
    std::sort(indices.begin(), indices.end());
    indices.erase(std::unique(indices.begin(), indices.end()), indices.end());
    for (auto i : indices)
        if (i >= nodes.size())
            QUANTSIM_THROW(invalid_argument, "graph::remove_nodes: index ", i, " is out of range (", nodes.size(), " nodes)");
    for (auto it = indices.rbegin(); it != indices.rend(); ++it) {
        for (const auto& o : nodes[*it].outputs) value_infos.erase(o);
        nodes.erase(nodes.begin() + static_cast<std::ptrdiff_t>(*it));
    }
}

void graph::replace_uses(std::string_view from, std::string_view to) {
    if (from == to || from.empty()) return;
    for (auto& n : nodes)
        for (auto& i : n.inputs)
            if (i == from) i = std::string(to);
    for (auto& o : outputs)
        if (o.name == from) {
            // The graph output keeps its declared type; its shape is re-derived by shape inference.
            o.name = std::string(to);
        }
}

void graph::rename_value(std::string_view from, std::string_view to) {
    if (from == to || from.empty()) return;
    if (to.empty()) QUANTSIM_THROW(invalid_argument, "graph::rename_value: new name for '", from, "' is empty");
    if (is_defined(to)) QUANTSIM_THROW(invalid_argument, "graph::rename_value: '", to, "' is already defined");
    const std::string f(from), t(to);
    for (auto& n : nodes) {
        for (auto& i : n.inputs)
            if (i == f) i = t;
        for (auto& o : n.outputs)
            if (o == f) o = t;
    }
    for (auto& v : inputs)
        if (v.name == f) v.name = t;
    for (auto& v : outputs)
        if (v.name == f) v.name = t;
    if (auto it = params.find(f); it != params.end()) {
        auto tensor_value = it->second;
        params.erase(it);
        params.emplace(t, std::move(tensor_value));
    }
    if (auto it = value_infos.find(f); it != value_infos.end()) {
        auto vi = it->second;
        value_infos.erase(it);
        vi.name = t;
        value_infos[t] = std::move(vi);
    }
}

std::size_t graph::prune_unused_params() {
    std::unordered_set<std::string> used;
    for (const auto& n : nodes)
        for (const auto& i : n.inputs) used.insert(i);
    for (const auto& o : outputs) used.insert(o.name);
    std::size_t dropped = 0;
    for (auto it = params.begin(); it != params.end();) {
        if (!used.count(it->first)) {
            value_infos.erase(it->first);
            it = params.erase(it);
            ++dropped;
        } else {
            ++it;
        }
    }
    return dropped;
}

std::size_t graph::remove_dead_nodes() {
    std::size_t removed = 0;
    for (;;) {
        std::unordered_set<std::string> used;
        for (const auto& n : nodes)
            for (const auto& i : n.inputs) used.insert(i);
        for (const auto& o : outputs) used.insert(o.name);
        std::vector<std::size_t> dead;
        for (std::size_t i = 0; i < nodes.size(); ++i) {
            bool live = false;
            for (const auto& o : nodes[i].outputs)
                if (!o.empty() && used.count(o)) live = true;
            if (!live) dead.push_back(i);
        }
        if (dead.empty()) break;
        removed += dead.size();
        remove_nodes(dead);
    }
    prune_unused_params();
    return removed;
}

namespace {

// Producer of every value, built once. Values produced twice keep the first producer (validate reports them).
std::unordered_map<std::string, std::size_t> producer_map(const graph& g) {
    std::unordered_map<std::string, std::size_t> m;
    for (std::size_t i = 0; i < g.nodes.size(); ++i)
        for (const auto& o : g.nodes[i].outputs)
            if (!o.empty()) m.emplace(o, i);
    return m;
}

// Describes one cycle among `remaining` nodes: "a (Add) -> b (Mul) -> a (Add)".
std::string describe_cycle(const graph& g, const std::vector<bool>& remaining,
                           const std::unordered_map<std::string, std::size_t>& prod) {
    std::size_t start = 0;
    while (start < remaining.size() && !remaining[start]) ++start;
    // Walk predecessors that are themselves remaining; a walk of n steps must revisit a node.
    std::vector<std::size_t> path;
    std::unordered_map<std::size_t, std::size_t> pos;
    std::size_t cur = start;
    while (!pos.count(cur)) {
        pos[cur] = path.size();
        path.push_back(cur);
        std::size_t next = cur;
        for (const auto& in : g.nodes[cur].inputs) {
            auto it = prod.find(in);
            if (it != prod.end() && remaining[it->second]) {
                next = it->second;
                break;
            }
        }
        if (next == cur && !pos.count(next)) break;
        cur = next;
    }
    std::string r;
    const std::size_t from = pos.count(cur) ? pos[cur] : 0;
    // path lists consumers before producers; print in data-flow order.
    for (std::size_t k = path.size(); k-- > from;) r += g.nodes[path[k]].describe() + " -> ";
    r += g.nodes[path.back()].describe();
    return r;
}

}  // namespace

void graph::topological_sort() {
    const auto prod = producer_map(*this);
    const std::size_t n = nodes.size();
    std::vector<std::size_t> indegree(n, 0);
    std::vector<std::vector<std::size_t>> succ(n);
    for (std::size_t i = 0; i < n; ++i) {
        std::set<std::size_t> preds;
        for (const auto& in : nodes[i].inputs) {
            if (in.empty()) continue;
            auto it = prod.find(in);
            if (it != prod.end()) preds.insert(it->second);
        }
        for (auto p : preds) {
            if (p == i)
                QUANTSIM_THROW(graph_error, nodes[i].describe(), " reads its own output: the graph has a cycle");
            succ[p].push_back(i);
            ++indegree[i];
        }
    }
    // Kahn's algorithm, always taking the lowest original index: keeps the existing order where it is valid.
    std::priority_queue<std::size_t, std::vector<std::size_t>, std::greater<>> ready;
    for (std::size_t i = 0; i < n; ++i)
        if (indegree[i] == 0) ready.push(i);
    std::vector<std::size_t> order;
    order.reserve(n);
    while (!ready.empty()) {
        auto i = ready.top();
        ready.pop();
        order.push_back(i);
        for (auto s : succ[i])
            if (--indegree[s] == 0) ready.push(s);
    }
    if (order.size() != n) {
        std::vector<bool> remaining(n, true);
        for (auto i : order) remaining[i] = false;
        QUANTSIM_THROW(graph_error, "the graph has a cycle: ", describe_cycle(*this, remaining, prod));
    }
    std::vector<node> sorted;
    sorted.reserve(n);
    for (auto i : order) sorted.push_back(std::move(nodes[i]));
    nodes = std::move(sorted);
}

// ---- validation ----------------------------------------------------------------------------------------------

void graph::validate() const { validate(validate_options{}); }

void graph::validate(const validate_options& options) const {
    std::unordered_set<std::string> defined;
    std::unordered_set<std::string> input_names;
    for (const auto& v : inputs) {
        if (v.name.empty()) QUANTSIM_THROW(graph_error, "graph '", name, "': a model input has an empty name");
        if (!input_names.insert(v.name).second)
            QUANTSIM_THROW(graph_error, "graph '", name, "': model input '", v.name, "' is listed twice");
        if (params.count(v.name))
            QUANTSIM_THROW(graph_error, "graph '", name, "': '", v.name, "' is both a model input and a parameter");
        defined.insert(v.name);
    }
    for (const auto& [k, t] : params) {
        if (k.empty()) QUANTSIM_THROW(graph_error, "graph '", name, "': a parameter has an empty name");
        if (!t.defined()) QUANTSIM_THROW(graph_error, "graph '", name, "': parameter '", k, "' holds no tensor");
        defined.insert(k);
    }
    const auto prod = producer_map(*this);
    std::unordered_set<std::string> node_names;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        const node& n = nodes[i];
        if (n.name.empty()) QUANTSIM_THROW(graph_error, "node #", i, " (", n.op_type, ") has an empty name");
        if (n.op_type.empty()) QUANTSIM_THROW(graph_error, n.describe(), ": empty op type");
        if (!node_names.insert(n.name).second)
            QUANTSIM_THROW(graph_error, n.describe(), ": node name '", n.name, "' is used by two nodes");
        for (std::size_t k = 0; k < n.inputs.size(); ++k) {
            const auto& in = n.inputs[k];
            if (in.empty() || defined.count(in)) continue;
            auto it = prod.find(in);
            if (it == prod.end())
                QUANTSIM_THROW(graph_error, n.describe(), ": input ", k, " '", in,
                               "' is dangling (not a model input, a parameter or any node's output)");
            // Produced by a later node: either out of order or a cycle; topological_sort() tells which.
            graph copy(*this);
            copy.topological_sort();
            QUANTSIM_THROW(graph_error, n.describe(), ": input '", in, "' is produced later by ",
                           nodes[it->second].describe(), " (nodes are not in topological order; call topological_sort())");
        }
        if (n.outputs.empty()) QUANTSIM_THROW(graph_error, n.describe(), ": has no outputs");
        for (const auto& o : n.outputs) {
            if (o.empty()) continue;
            if (!defined.insert(o).second) {
                if (input_names.count(o))
                    QUANTSIM_THROW(graph_error, n.describe(), ": output '", o, "' is also a model input");
                if (params.count(o)) QUANTSIM_THROW(graph_error, n.describe(), ": output '", o, "' is also a parameter");
                QUANTSIM_THROW(graph_error, n.describe(), ": output '", o, "' is produced by two nodes");
            }
        }
    }
    std::unordered_set<std::string> output_names;
    for (const auto& o : outputs) {
        if (o.name.empty()) QUANTSIM_THROW(graph_error, "graph '", name, "': a model output has an empty name");
        if (!defined.count(o.name))
            QUANTSIM_THROW(graph_error, "graph '", name, "': model output '", o.name, "' is not produced by any node");
        if (!output_names.insert(o.name).second)
            QUANTSIM_THROW(graph_error, "graph '", name, "': model output '", o.name, "' is listed twice");
    }

    if (options.check_ops || options.check_shapes) {
        const op_registry& reg = options.registry ? *options.registry : op_registry::global();
        if (options.check_ops) {
            for (const auto& n : nodes) {
                const op_schema* s = reg.find(n.op_type, n.domain);
                if (!s)
                    QUANTSIM_THROW(unsupported_error, n.describe(), ": op '", n.op_type, "'",
                                   n.domain.empty() ? std::string() : " of domain '" + n.domain + "'",
                                   " has no registered schema");
                const auto ni = static_cast<int>(n.num_present_inputs());
                const auto no = static_cast<int>(n.outputs.size());
                if (ni < s->min_inputs || ni > s->max_inputs)
                    QUANTSIM_THROW(graph_error, n.describe(), ": has ", ni, " inputs, the op takes ", s->min_inputs,
                                   s->max_inputs != s->min_inputs ? " to " + std::to_string(s->max_inputs) : std::string());
                if (no < s->min_outputs || no > s->max_outputs)
                    QUANTSIM_THROW(graph_error, n.describe(), ": has ", no, " outputs, the op makes ", s->min_outputs,
                                   s->max_outputs != s->min_outputs ? " to " + std::to_string(s->max_outputs) : std::string());
            }
        }
        if (options.check_shapes) {
            graph copy(*this);
            copy.value_infos.clear();
            shape_inference_options so;
            so.registry = &reg;
            so.strict = options.check_ops;
            run_shape_inference(copy, so);
            // Recorded shapes (from the model file or an earlier inference) must agree with the re-inferred ones
            // wherever both know a dimension: a pass that changed a weight's shape without fixing its users shows here.
            auto compare = [&](const value_info& recorded, const value_info* now) {
                if (!recorded.shape_known || !now || !now->shape_known) return;
                bool bad = recorded.shape.size() != now->shape.size();
                for (std::size_t d = 0; !bad && d < recorded.shape.size(); ++d)
                    bad = recorded.shape[d] >= 0 && now->shape[d] >= 0 && recorded.shape[d] != now->shape[d];
                if (!bad) return;
                const auto p = copy.producer(recorded.name);
                QUANTSIM_THROW(graph_error, p >= 0 ? copy.nodes[static_cast<std::size_t>(p)].describe() : "graph '" + name + "'",
                               ": value '", recorded.name, "' is recorded as ", to_string(recorded),
                               " but its inputs now give ", to_string(*now));
            };
            for (const auto& [k, v] : value_infos) compare(v, copy.info(k));
            for (const auto& v : outputs) {
                auto it = copy.value_infos.find(v.name);
                compare(v, it != copy.value_infos.end() ? &it->second : nullptr);
            }
        }
    }
}

// ---- summary -------------------------------------------------------------------------------------------------

namespace {

std::string human_bytes(double b) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(1);
    if (b >= double(1 << 30))
        os << b / double(1 << 30) << " GiB";
    else if (b >= double(1 << 20))
        os << b / double(1 << 20) << " MiB";
    else if (b >= 1024)
        os << b / 1024 << " KiB";
    else
        os << std::setprecision(0) << b << " B";
    return os.str();
}

std::string attr_text(const attribute_value& a) {
    std::ostringstream os;
    std::visit(
        [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::int64_t> || std::is_same_v<T, float>) {
                os << v;
            } else if constexpr (std::is_same_v<T, std::string>) {
                os << '"' << v << '"';
            } else if constexpr (std::is_same_v<T, tensor>) {
                os << "tensor " << name_of(v.type()) << ' ' << to_string(v.shape());
            } else {
                os << '[';
                for (std::size_t i = 0; i < v.size(); ++i) {
                    if (i) os << ", ";
                    if constexpr (std::is_same_v<T, std::vector<std::string>>)
                        os << '"' << v[i] << '"';
                    else
                        os << v[i];
                }
                os << ']';
            }
        },
        a);
    return os.str();
}

}  // namespace

std::string graph::summary() const { return summary(summary_options{}); }

std::string graph::summary(const summary_options& options) const {
    std::ostringstream os;
    std::size_t param_bytes = 0;
    for (const auto& [k, t] : params) param_bytes += t.nbytes();
    os << "graph '" << name << "' (opset " << opset << "): " << nodes.size() << " nodes, " << params.size()
       << " parameters (" << num_param_elements() << " elements, " << human_bytes(double(param_bytes)) << ")\n";
    os << "inputs:\n";
    for (const auto& v : inputs) os << "  " << v.name << ": " << to_string(v) << '\n';
    os << "outputs:\n";
    for (const auto& v : outputs) {
        const value_info* i = info(v.name);
        os << "  " << v.name << ": " << to_string(i && i->shape_known ? *i : v) << '\n';
    }
    std::map<std::string, std::size_t> counts;
    for (const auto& n : nodes) counts[n.domain.empty() ? n.op_type : n.domain + "." + n.op_type]++;
    os << "ops (" << counts.size() << " types):\n";
    std::vector<std::pair<std::string, std::size_t>> sorted(counts.begin(), counts.end());
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    for (const auto& [op, c] : sorted) os << "  " << std::left << std::setw(24) << op << std::right << ' ' << c << '\n';
    if (options.list_params) {
        os << "parameters:\n";
        for (const auto& [k, t] : params)
            os << "  " << k << ": " << name_of(t.type()) << ' ' << to_string(t.shape()) << '\n';
    }
    if (options.list_nodes) {
        os << "nodes:\n";
        for (std::size_t i = 0; i < nodes.size(); ++i) {
            const node& n = nodes[i];
            os << "  #" << i << ' ' << n.name << ": " << (n.domain.empty() ? "" : n.domain + ".") << n.op_type << '(';
            for (std::size_t k = 0; k < n.inputs.size(); ++k) os << (k ? ", " : "") << (n.inputs[k].empty() ? "<none>" : n.inputs[k]);
            os << ") -> ";
            for (std::size_t k = 0; k < n.outputs.size(); ++k) {
                if (k) os << ", ";
                os << (n.outputs[k].empty() ? "<unused>" : n.outputs[k]);
                if (const value_info* vi = n.outputs[k].empty() ? nullptr : info(n.outputs[k]); vi && vi->shape_known)
                    os << ' ' << to_string(*vi);
            }
            if (!n.attrs.empty()) {
                std::string a;
                for (const auto& [key, v] : n.attrs) a += (a.empty() ? "" : ", ") + key + "=" + attr_text(v);
                if (a.size() > options.max_attr_chars) a = a.substr(0, options.max_attr_chars) + "...";
                os << "  {" << a << '}';
            }
            os << '\n';
        }
    }
    return os.str();
}

// ---- graph_index ---------------------------------------------------------------------------------------------

graph_index::graph_index(const graph& g) {
    for (std::size_t i = 0; i < g.nodes.size(); ++i) {
        for (const auto& o : g.nodes[i].outputs)
            if (!o.empty()) producer_.emplace(o, i);
        for (const auto& in : g.nodes[i].inputs) {
            if (in.empty()) continue;
            auto& c = consumers_[in];
            if (c.empty() || c.back() != i) c.push_back(i);
        }
    }
    for (const auto& o : g.outputs) output_uses_[o.name]++;
}

std::ptrdiff_t graph_index::producer(std::string_view value) const {
    auto it = producer_.find(std::string(value));
    return it == producer_.end() ? -1 : static_cast<std::ptrdiff_t>(it->second);
}

const std::vector<std::size_t>& graph_index::consumers(std::string_view value) const {
    auto it = consumers_.find(std::string(value));
    return it == consumers_.end() ? none_ : it->second;
}

std::size_t graph_index::use_count(std::string_view value) const {
    auto it = output_uses_.find(std::string(value));
    return consumers(value).size() + (it == output_uses_.end() ? 0 : it->second);
}

bool graph_index::is_output(std::string_view value) const { return output_uses_.count(std::string(value)) != 0; }

}  // namespace quantsim
