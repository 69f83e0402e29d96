// Shape inference: schema `infer` per node, constant folding through the kernels, and a side table of partially
// known integer values (shape_value) so that symbolic dims such as the batch survive Shape/Gather/Concat/Reshape.
#include <quantsim/ir/shape_inference.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <quantsim/ir/op.hpp>

namespace quantsim {

namespace {

constexpr std::size_t max_shape_value_elems = 64;  // integer constants longer than this are not shapes

bool is_int_type(dtype t) { return t == dtype::int64 || t == dtype::int32; }

// ONNX TensorProto data type numbers of the integer types a Cast may produce while keeping a shape value.
bool onnx_type_is_integer(std::int64_t to) {
    switch (to) {
        case 2: case 3: case 4: case 5: case 6: case 7: case 12: case 13: return true;
        default: return false;
    }
}

std::optional<shape_value> shape_value_of_tensor(const tensor& t) {
    if (!is_int_type(t.type()) || t.rank() > 1 || static_cast<std::size_t>(t.numel()) > max_shape_value_elems)
        return std::nullopt;
    shape_value sv;
    sv.scalar = t.rank() == 0;
    for (std::int64_t i = 0; i < t.numel(); ++i)
        sv.elems.push_back(sym_int::number(t.type() == dtype::int64 ? t.data<std::int64_t>()[i]
                                                                     : std::int64_t{t.data<std::int32_t>()[i]}));
    return sv;
}

tensor tensor_of_shape_value(const shape_value& sv, dtype type) {
    shape_t shape = sv.scalar ? shape_t{} : shape_t{static_cast<std::int64_t>(sv.elems.size())};
    tensor t = tensor::empty(shape, type);
    for (std::size_t i = 0; i < sv.elems.size(); ++i) {
        if (type == dtype::int64)
            t.data<std::int64_t>()[i] = sv.elems[i].value;
        else
            t.data<std::int32_t>()[i] = static_cast<std::int32_t>(sv.elems[i].value);
    }
    return t;
}

std::optional<std::vector<std::int64_t>> const_ints(const tensor* t) {
    if (!t || !is_int_type(t->type()) || t->rank() > 1) return std::nullopt;
    std::vector<std::int64_t> r(static_cast<std::size_t>(t->numel()));
    for (std::int64_t i = 0; i < t->numel(); ++i)
        r[static_cast<std::size_t>(i)] =
            t->type() == dtype::int64 ? t->data<std::int64_t>()[i] : std::int64_t{t->data<std::int32_t>()[i]};
    return r;
}

sym_int dim_of(const value_info& v, std::size_t i) {
    if (v.shape[i] >= 0) return sym_int::number(v.shape[i]);
    if (!v.dim_param(i).empty()) return sym_int::symbolic(std::string(v.dim_param(i)));
    return sym_int::unknown();
}

void set_dims(value_info& v, const std::vector<sym_int>& dims) {
    v.shape.assign(dims.size(), -1);
    v.dim_params.assign(dims.size(), std::string());
    bool any_param = false;
    for (std::size_t i = 0; i < dims.size(); ++i) {
        if (dims[i].known) {
            v.shape[i] = dims[i].value;
        } else if (dims[i].is_symbolic()) {
            v.dim_params[i] = dims[i].symbol;
            any_param = true;
        }
    }
    if (!any_param) v.dim_params.clear();
    v.shape_known = true;
}

// Element-wise integer arithmetic on partially known values (Shape -> Mul/Div chains in exported models).
std::optional<shape_value> arith(const std::string& op, const shape_value& a, const shape_value& b) {
    const std::size_t n = std::max(a.elems.size(), b.elems.size());
    if ((a.elems.size() != n && a.elems.size() != 1) || (b.elems.size() != n && b.elems.size() != 1)) return std::nullopt;
    shape_value r;
    r.scalar = a.scalar && b.scalar;
    for (std::size_t i = 0; i < n; ++i) {
        const sym_int& x = a.elems[a.elems.size() == 1 ? 0 : i];
        const sym_int& y = b.elems[b.elems.size() == 1 ? 0 : i];
        sym_int z = sym_int::unknown();
        if (x.known && y.known) {
            if (op == "Add") z = sym_int::number(x.value + y.value);
            else if (op == "Sub") z = sym_int::number(x.value - y.value);
            else if (op == "Mul") z = sym_int::number(x.value * y.value);
            else if (op == "Div" && y.value != 0) z = sym_int::number(x.value / y.value);
        } else if (op == "Mul" && y.known && y.value == 1) {
            z = x;
        } else if (op == "Mul" && x.known && x.value == 1) {
            z = y;
        } else if ((op == "Add" || op == "Sub") && y.known && y.value == 0) {
            z = x;
        } else if (op == "Add" && x.known && x.value == 0) {
            z = y;
        } else if (op == "Div" && y.known && y.value == 1) {
            z = x;
        }
        r.elems.push_back(z);
    }
    return r;
}

// Shape values of a node's outputs from its inputs' shape values and constants.
std::optional<shape_value> propagate_shape_value(const node& n, const op_inputs_info& in,
                                                 const std::vector<const shape_value*>& sv) {
    auto input_sv = [&](std::size_t i) -> const shape_value* { return i < sv.size() ? sv[i] : nullptr; };
    const std::string& op = n.op_type;
    if (!n.domain.empty()) return std::nullopt;
    if (op == "Shape") {
        const value_info* x = in.infos.empty() ? nullptr : in.infos[0];
        if (!x || !x->shape_known) return std::nullopt;
        const auto rank = static_cast<std::int64_t>(x->shape.size());
        std::int64_t start = n.attr_int("start", 0), end = n.attr_int("end", rank);
        if (start < 0) start += rank;
        if (end < 0) end += rank;
        start = std::clamp<std::int64_t>(start, 0, rank);
        end = std::clamp<std::int64_t>(end, 0, rank);
        shape_value r;
        for (std::int64_t i = start; i < end; ++i) r.elems.push_back(dim_of(*x, static_cast<std::size_t>(i)));
        return r;
    }
    if (op == "Identity") {
        if (auto* s = input_sv(0)) return *s;
        return std::nullopt;
    }
    if (op == "Cast") {
        if (auto* s = input_sv(0); s && onnx_type_is_integer(n.attr_int("to", 0))) return *s;
        return std::nullopt;
    }
    if (op == "Gather") {
        const shape_value* s = input_sv(0);
        const auto idx = const_ints(in.constants.size() > 1 ? in.constants[1] : nullptr);
        if (!s || s->scalar || !idx || n.attr_int("axis", 0) != 0) return std::nullopt;
        shape_value r;
        r.scalar = in.constants[1]->rank() == 0;
        const auto len = static_cast<std::int64_t>(s->elems.size());
        for (auto k : *idx) {
            if (k < 0) k += len;
            if (k < 0 || k >= len) return std::nullopt;  // the kernel or infer reports it
            r.elems.push_back(s->elems[static_cast<std::size_t>(k)]);
        }
        return r;
    }
    if (op == "Slice") {
        const shape_value* s = input_sv(0);
        auto cst = [&](std::size_t i) { return const_ints(i < in.constants.size() ? in.constants[i] : nullptr); };
        if (!s || s->scalar) return std::nullopt;
        const auto starts = cst(1), ends = cst(2);
        if (!starts || !ends || starts->size() != 1 || ends->size() != 1) return std::nullopt;
        if (n.has_input(3)) {
            auto axes = cst(3);
            if (!axes || axes->size() != 1 || ((*axes)[0] != 0 && (*axes)[0] != -1)) return std::nullopt;
        }
        std::int64_t step = 1;
        if (n.has_input(4)) {
            auto steps = cst(4);
            if (!steps || steps->size() != 1 || (*steps)[0] == 0) return std::nullopt;
            step = (*steps)[0];
        }
        const auto len = static_cast<std::int64_t>(s->elems.size());
        std::int64_t b = (*starts)[0], e = (*ends)[0];
        if (b < 0) b += len;
        if (e < 0) e += len;
        shape_value r;
        if (step > 0) {
            b = std::clamp<std::int64_t>(b, 0, len);
            e = std::clamp<std::int64_t>(e, 0, len);
            for (std::int64_t i = b; i < e; i += step) r.elems.push_back(s->elems[static_cast<std::size_t>(i)]);
        } else {
            b = std::clamp<std::int64_t>(b, -1, len - 1);
            e = std::clamp<std::int64_t>(e, -1, len - 1);
            for (std::int64_t i = b; i > e; i += step) r.elems.push_back(s->elems[static_cast<std::size_t>(i)]);
        }
        return r;
    }
    if (op == "Concat") {
        shape_value r;
        for (std::size_t i = 0; i < n.inputs.size(); ++i) {
            const shape_value* s = input_sv(i);
            if (!s) return std::nullopt;
            r.elems.insert(r.elems.end(), s->elems.begin(), s->elems.end());
        }
        return r;
    }
    if (op == "Unsqueeze") {
        const shape_value* s = input_sv(0);
        if (s && s->scalar) {
            shape_value r = *s;
            r.scalar = false;
            return r;
        }
        return std::nullopt;
    }
    if (op == "Squeeze") {
        const shape_value* s = input_sv(0);
        if (s && !s->scalar && s->elems.size() == 1) {
            shape_value r = *s;
            r.scalar = true;
            return r;
        }
        return std::nullopt;
    }
    if (op == "Reshape") {
        const shape_value* s = input_sv(0);
        const auto target = const_ints(in.constants.size() > 1 ? in.constants[1] : nullptr);
        if (!s || !target) return std::nullopt;
        if (target->empty() && s->elems.size() == 1) {
            shape_value r = *s;
            r.scalar = true;
            return r;
        }
        if (target->size() == 1 && ((*target)[0] == -1 || (*target)[0] == static_cast<std::int64_t>(s->elems.size()))) {
            shape_value r = *s;
            r.scalar = false;
            return r;
        }
        return std::nullopt;
    }
    if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
        const shape_value* a = input_sv(0);
        const shape_value* b = input_sv(1);
        if (!a || !b) return std::nullopt;
        return arith(op, *a, *b);
    }
    return std::nullopt;
}

// Output shape refinement for ops that take a shape as a (non-constant) input.
std::optional<value_info> refine_with_shape_value(const node& n, const op_inputs_info& in,
                                                  const std::vector<const shape_value*>& sv,
                                                  const value_info& inferred) {
    if (!n.domain.empty() || sv.size() < 1) return std::nullopt;
    const std::string& op = n.op_type;
    auto input_sv = [&](std::size_t i) -> const shape_value* { return i < sv.size() ? sv[i] : nullptr; };
    if (op == "Reshape") {
        const shape_value* target = input_sv(1);
        const value_info* x = in.infos.empty() ? nullptr : in.infos[0];
        if (!target || target->scalar || !x) return std::nullopt;
        auto r = reshape_symbolic(*x, *target, n.attr_int("allowzero", 0) != 0, n.describe());
        if (r) r->type = x->type;
        return r;
    }
    if (op == "ConstantOfShape") {
        const shape_value* target = input_sv(0);
        if (!target || target->scalar) return std::nullopt;
        value_info r = inferred;
        set_dims(r, target->elems);
        return r;
    }
    if (op == "Expand") {
        const shape_value* target = input_sv(1);
        const value_info* x = in.infos.empty() ? nullptr : in.infos[0];
        if (!target || target->scalar || !x || !x->shape_known) return std::nullopt;
        const std::size_t rank = std::max(x->shape.size(), target->elems.size());
        std::vector<sym_int> dims(rank);
        for (std::size_t i = 0; i < rank; ++i) {
            const std::size_t xo = rank - x->shape.size(), to = rank - target->elems.size();
            const sym_int a = i >= xo ? dim_of(*x, i - xo) : sym_int::number(1);
            const sym_int b = i >= to ? target->elems[i - to] : sym_int::number(1);
            if (a.known && a.value == 1) dims[i] = b;
            else if (b.known && b.value == 1) dims[i] = a;
            else if (a == b) dims[i] = a;
            else if (a.known && b.known)
                QUANTSIM_THROW(shape_error, n.describe(), ": cannot expand dimension ", a.value, " to ", b.value);
            else dims[i] = a.known ? a : (b.known ? b : (a.is_symbolic() ? a : b));
        }
        value_info r = inferred;
        r.type = x->type;
        set_dims(r, dims);
        return r;
    }
    return std::nullopt;
}

bool more_specific(const value_info& a, const value_info& b) {
    // True when `a` says something `b` does not (known rank or dims b lacks).
    if (!a.shape_known) return false;
    if (!b.shape_known || a.shape.size() != b.shape.size()) return true;
    for (std::size_t i = 0; i < a.shape.size(); ++i) {
        if (b.shape[i] < 0 && a.shape[i] >= 0) return true;
        if (b.shape[i] < 0 && b.dim_param(i).empty() && !a.dim_param(i).empty()) return true;
    }
    return false;
}

value_info info_of_tensor(const std::string& name, const tensor& t) {
    value_info v;
    v.name = name;
    v.type = t.type();
    v.shape = t.shape();
    v.shape_known = true;
    return v;
}

// Ops whose output is not a function of their inputs alone: never folded.
bool foldable(const node& n) {
    static const std::unordered_set<std::string> nondeterministic = {
        "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"};
    return n.domain.empty() && !nondeterministic.count(n.op_type);
}

}  // namespace

std::optional<value_info> reshape_symbolic(const value_info& input, const shape_value& target, bool allowzero,
                                           const std::string& what) {
    std::vector<sym_int> out(target.elems.size());
    std::ptrdiff_t infer_at = -1;
    for (std::size_t i = 0; i < target.elems.size(); ++i) {
        const sym_int& e = target.elems[i];
        if (!e.known) {
            out[i] = e;
            continue;
        }
        if (e.value == -1) {
            if (infer_at >= 0) QUANTSIM_THROW(shape_error, what, ": Reshape target has more than one -1");
            infer_at = static_cast<std::ptrdiff_t>(i);
        } else if (e.value < -1) {
            QUANTSIM_THROW(shape_error, what, ": Reshape target has the invalid dimension ", e.value);
        } else if (e.value == 0 && !allowzero) {
            if (!input.shape_known) {
                out[i] = sym_int::unknown();
            } else {
                if (i >= input.shape.size())
                    QUANTSIM_THROW(shape_error, what, ": Reshape target copies dimension ", i, " (0) but the input ",
                                   to_string(input), " has rank ", input.shape.size());
                out[i] = dim_of(input, i);
            }
        } else {
            out[i] = e;
        }
    }
    if (infer_at >= 0) {
        sym_int inferred = sym_int::unknown();
        if (input.shape_known) {
            std::int64_t k_in = 1, k_out = 1;
            bool unknown = false;
            std::multiset<std::string> s_in, s_out;
            for (std::size_t i = 0; i < input.shape.size(); ++i) {
                const sym_int d = dim_of(input, i);
                if (d.known) k_in *= d.value;
                else if (d.is_symbolic()) s_in.insert(d.symbol);
                else unknown = true;
            }
            for (std::size_t i = 0; i < out.size(); ++i) {
                if (static_cast<std::ptrdiff_t>(i) == infer_at) continue;
                if (out[i].known) k_out *= out[i].value;
                else if (out[i].is_symbolic()) s_out.insert(out[i].symbol);
                else unknown = true;
            }
            if (!unknown) {
                bool subset = true;
                for (const auto& s : s_out) {
                    auto it = s_in.find(s);
                    if (it == s_in.end()) {
                        subset = false;
                        break;
                    }
                    s_in.erase(it);
                }
                if (subset && k_out != 0) {
                    if (s_in.empty()) {
                        if (k_in % k_out != 0)
                            QUANTSIM_THROW(shape_error, what, ": cannot reshape ", to_string(input), " (", k_in,
                                           " elements) into a multiple of ", k_out);
                        inferred = sym_int::number(k_in / k_out);
                    } else if (s_in.size() == 1 && k_in == k_out) {
                        inferred = sym_int::symbolic(*s_in.begin());
                    }
                }
            }
        }
        out[static_cast<std::size_t>(infer_at)] = inferred;
    } else if (input.fully_known()) {
        std::int64_t k_in = 1, k_out = 1;
        bool all_known = true;
        for (auto d : input.shape) k_in *= d;
        for (const auto& d : out) {
            if (d.known) k_out *= d.value;
            else all_known = false;
        }
        if (all_known && k_in != k_out)
            QUANTSIM_THROW(shape_error, what, ": cannot reshape ", to_string(input), " (", k_in, " elements) into ",
                           k_out, " elements");
    }
    value_info r;
    r.type = input.type;
    set_dims(r, out);
    return r;
}

shape_inference_result run_shape_inference(graph& g, const shape_inference_options& options) {
    const op_registry& reg = options.registry ? *options.registry : op_registry::global();
    shape_inference_result result;
    // Local table of every value's info; std::map keeps pointers stable while we insert.
    std::map<std::string, value_info> infos;
    const std::map<std::string, value_info> recorded = g.value_infos;

    for (const auto& v : g.inputs) infos[v.name] = v;
    for (const auto& [k, t] : g.params) {
        infos[k] = info_of_tensor(k, t);
        if (auto sv = shape_value_of_tensor(t)) result.shape_values[k] = std::move(*sv);
    }
    auto constant_of = [&](const std::string& name) -> const tensor* {
        if (auto it = g.params.find(name); it != g.params.end()) return &it->second;
        if (auto it = result.constants.find(name); it != result.constants.end()) return &it->second;
        return nullptr;
    };

    auto infer_node = [&](const node& n) -> std::vector<value_info> {
        op_inputs_info in;
        std::vector<const shape_value*> svs;
        bool all_constant = !n.inputs.empty() && n.num_present_inputs() > 0;
        for (const auto& name : n.inputs) {
            if (name.empty()) {
                in.infos.push_back(nullptr);
                in.constants.push_back(nullptr);
                svs.push_back(nullptr);
                continue;
            }
            auto it = infos.find(name);
            // The schema contract: nullptr when the shape is unknown.
            in.infos.push_back(it == infos.end() || !it->second.shape_known ? nullptr : &it->second);
            const tensor* c = constant_of(name);
            in.constants.push_back(c);
            if (!c) all_constant = false;
            auto sv = result.shape_values.find(name);
            svs.push_back(sv == result.shape_values.end() ? nullptr : &sv->second);
        }

        std::vector<value_info> outs;
        const op_schema* schema = reg.find(n.op_type, n.domain);
        if (!schema) {
            if (options.strict)
                QUANTSIM_THROW(unsupported_error, n.describe(), ": op '", n.op_type, "'",
                               n.domain.empty() ? std::string() : " of domain '" + n.domain + "'",
                               " has no registered schema");
            result.unknown_ops.push_back(n.op_type);
            outs.resize(n.outputs.size());
        } else if (!schema->infer) {
            outs.resize(n.outputs.size());
        } else {
            // Arity first: schemas may index their inputs by position (validate() reports the same way).
            const auto ni = static_cast<int>(n.num_present_inputs());
            const auto no = static_cast<int>(n.outputs.size());
            if (ni < schema->min_inputs || ni > schema->max_inputs)
                QUANTSIM_THROW(graph_error, n.describe(), ": has ", ni, " inputs, the op takes ", schema->min_inputs,
                               schema->max_inputs != schema->min_inputs ? " to " + std::to_string(schema->max_inputs) : std::string());
            if (no < schema->min_outputs || no > schema->max_outputs)
                QUANTSIM_THROW(graph_error, n.describe(), ": has ", no, " outputs, the op makes ", schema->min_outputs,
                               schema->max_outputs != schema->min_outputs ? " to " + std::to_string(schema->max_outputs) : std::string());
            // Omitted optional inputs up to the op's arity read as nullptr, so infer may index them directly.
            const auto width = static_cast<std::size_t>(std::clamp(schema->max_inputs, 0, 64));
            if (in.infos.size() < width) {
                in.infos.resize(width, nullptr);
                in.constants.resize(width, nullptr);
                svs.resize(width, nullptr);
            }
            try {
                outs = schema->infer(n, in);
            } catch (const error&) {
                throw;
            } catch (const std::exception& e) {
                QUANTSIM_THROW(graph_error, n.describe(), ": shape inference failed: ", e.what());
            }
            if (outs.size() < n.outputs.size()) outs.resize(n.outputs.size());
        }

        // Symbolic refinement from partially known shape inputs.
        if (!outs.empty()) {
            if (auto r = refine_with_shape_value(n, in, svs, outs[0]); r && more_specific(*r, outs[0])) {
                if (outs[0].shape_known && r->shape.size() != outs[0].shape.size())
                    QUANTSIM_THROW(shape_error, n.describe(), ": output rank ", r->shape.size(),
                                   " from the shape input disagrees with ", outs[0].shape.size());
                if (outs[0].shape_known) r->type = outs[0].type;
                outs[0] = std::move(*r);
            }
        }

        // Constant folding: run the kernel when every input is constant and the outputs are small.
        bool folded = false;
        if (schema && schema->create && all_constant && options.max_folded_elements > 0 && foldable(n)) {
            bool small = true;
            for (const auto& o : outs) {
                if (!o.fully_known()) {
                    small = false;
                    break;
                }
                // Saturating product: dims come from the model file and may be huge.
                std::int64_t numel = 1;
                for (auto d : o.shape) {
                    if (d == 0) { numel = 0; break; }
                    numel = numel > options.max_folded_elements / d ? options.max_folded_elements + 1 : numel * d;
                }
                if (numel > options.max_folded_elements) small = false;
            }
            if (small) {
                try {
                    auto kernel = schema->create(n, in);
                    std::vector<tensor> values(n.outputs.size());
                    // Exactly the node's inputs, as the executor passes them.
                    const std::vector<const tensor*> args(in.constants.begin(),
                                                          in.constants.begin() + static_cast<std::ptrdiff_t>(std::min(n.inputs.size(), in.constants.size())));
                    kernel->run(args, values);
                    for (std::size_t k = 0; k < n.outputs.size(); ++k) {
                        if (n.outputs[k].empty() || !values[k].defined()) continue;
                        outs[k] = info_of_tensor(n.outputs[k], values[k]);
                        if (auto sv = shape_value_of_tensor(values[k])) result.shape_values[n.outputs[k]] = std::move(*sv);
                        result.constants[n.outputs[k]] = std::move(values[k]);
                    }
                    folded = true;
                } catch (const unsupported_error&) {
                    // The kernel does not handle these constant inputs (e.g. an integer dtype): leave it to run time.
                }
            }
        }
        if (!folded && !n.outputs.empty() && !n.outputs[0].empty()) {
            if (auto sv = propagate_shape_value(n, in, svs)) {
                // A fully known integer value is a constant: later nodes (Reshape) see it as one.
                const dtype t = outs[0].shape_known ? outs[0].type : dtype::int64;
                if (sv->fully_known() && is_int_type(t)) {
                    tensor c = tensor_of_shape_value(*sv, t);
                    outs[0] = info_of_tensor(n.outputs[0], c);
                    result.constants[n.outputs[0]] = std::move(c);
                } else if (!outs[0].shape_known) {
                    outs[0].type = dtype::int64;
                    outs[0].shape = sv->scalar ? shape_t{} : shape_t{static_cast<std::int64_t>(sv->elems.size())};
                    outs[0].shape_known = true;
                }
                result.shape_values[n.outputs[0]] = std::move(*sv);
            }
        }

        return outs;
    };

    for (auto& n : g.nodes) {
        std::vector<value_info> outs;
        try {
            outs = infer_node(n);
        } catch (const error& e) {
            if (!options.tolerate_errors) throw;
            result.errors.push_back(e.what());
            outs.assign(n.outputs.size(), value_info{});
        }
        if (outs.size() < n.outputs.size()) outs.resize(n.outputs.size());
        for (std::size_t k = 0; k < n.outputs.size(); ++k) {
            const std::string& name = n.outputs[k];
            if (name.empty()) continue;
            value_info v = std::move(outs[k]);
            v.name = name;
            if (!v.dim_params.empty() && v.dim_params.size() != v.shape.size()) v.dim_params.clear();
            if (!v.shape_known) {
                // Unknown op (non-strict) or a schema that could not say: keep what the model file recorded.
                if (auto it = recorded.find(name); it != recorded.end() && it->second.shape_known) v = it->second;
            }
            infos[name] = v;
            g.value_infos[name] = std::move(v);
        }
    }

    for (auto& o : g.outputs) {
        auto it = infos.find(o.name);
        if (it == infos.end() || !it->second.shape_known) continue;
        value_info v = it->second;
        // Keep the model's own names for dims inference could not name.
        if (o.shape_known && o.shape.size() == v.shape.size()) {
            for (std::size_t d = 0; d < v.shape.size(); ++d) {
                if (v.shape[d] < 0 && v.dim_param(d).empty()) {
                    if (o.shape[d] >= 0) {
                        v.shape[d] = o.shape[d];
                    } else if (!o.dim_param(d).empty()) {
                        v.dim_params.resize(v.shape.size());
                        v.dim_params[d] = o.dim_params[d];
                    }
                }
            }
        }
        v.name = o.name;
        if (auto vi = g.value_infos.find(o.name); vi != g.value_infos.end()) vi->second = v;
        o = std::move(v);
    }
    return result;
}

void graph::infer_shapes() { run_shape_inference(*this, shape_inference_options{}); }
void graph::infer_shapes(const shape_inference_options& options) { run_shape_inference(*this, options); }

}  // namespace quantsim
