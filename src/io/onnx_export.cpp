// ONNX export: graph -> ModelProto at a chosen opset (13 to 21), written atomically.
#include <quantsim/io/onnx.hpp>

#include <algorithm>
#include <bit>
#include <climits>
#include <cstring>
#include <set>
#include <unordered_set>

#include <quantsim/io/file.hpp>
#include <quantsim/version.hpp>

#include "onnx_common.hpp"

namespace quantsim {

namespace {

void tensor_to_proto(const tensor& t, const std::string& name, onnx::TensorProto& p) {
    p.set_name(name);
    p.set_data_type(detail::onnx_from_dtype(t.type()));
    for (auto d : t.shape()) p.add_dims(d);
    std::string raw;
    if (t.type() == dtype::int4 || t.type() == dtype::uint4) {
        // Two values per byte, the first in the low nibble (ONNX packing).
        raw.assign(static_cast<std::size_t>((t.numel() + 1) / 2), '\0');
        const auto* v = static_cast<const std::uint8_t*>(t.raw());
        for (std::int64_t i = 0; i < t.numel(); ++i) {
            const std::uint8_t nib = v[i] & 0x0F;
            raw[static_cast<std::size_t>(i / 2)] =
                static_cast<char>(static_cast<std::uint8_t>(raw[static_cast<std::size_t>(i / 2)]) | (i % 2 ? nib << 4 : nib));
        }
    } else {
        raw.assign(static_cast<const char*>(t.raw()), t.nbytes());
        if constexpr (std::endian::native == std::endian::big) {
            const std::size_t es = size_of(t.type());
            for (std::size_t i = 0; es > 1 && i < raw.size(); i += es) std::reverse(raw.begin() + i, raw.begin() + i + es);
        }
    }
    p.set_raw_data(std::move(raw));
}

void value_info_to_proto(const value_info& v, onnx::ValueInfoProto& p) {
    p.set_name(v.name);
    auto* tt = p.mutable_type()->mutable_tensor_type();
    tt->set_elem_type(detail::onnx_from_dtype(v.type));
    if (!v.shape_known) return;
    auto* shape = tt->mutable_shape();
    for (std::size_t i = 0; i < v.shape.size(); ++i) {
        auto* d = shape->add_dim();
        if (v.shape[i] >= 0) d->set_dim_value(v.shape[i]);
        else if (!v.dim_param(i).empty()) d->set_dim_param(std::string(v.dim_param(i)));
    }
}

void attr_to_proto(const std::string& key, const attribute_value& a, onnx::AttributeProto& p) {
    using A = onnx::AttributeProto;
    p.set_name(key);
    std::visit(
        [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::int64_t>) {
                p.set_type(A::INT);
                p.set_i(v);
            } else if constexpr (std::is_same_v<T, float>) {
                p.set_type(A::FLOAT);
                p.set_f(v);
            } else if constexpr (std::is_same_v<T, std::string>) {
                p.set_type(A::STRING);
                p.set_s(v);
            } else if constexpr (std::is_same_v<T, std::vector<std::int64_t>>) {
                p.set_type(A::INTS);
                for (auto x : v) p.add_ints(x);
            } else if constexpr (std::is_same_v<T, std::vector<float>>) {
                p.set_type(A::FLOATS);
                for (auto x : v) p.add_floats(x);
            } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
                p.set_type(A::STRINGS);
                for (const auto& x : v) p.add_strings(x);
            } else {
                p.set_type(A::TENSOR);
                tensor_to_proto(v, "", *p.mutable_t());
            }
        },
        a);
}

bool is_reduce_with_attr_axes_before_18(const node& n) {
    static const std::set<std::string> r = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                                            "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"};
    return n.domain.empty() && r.count(n.op_type);
}

std::int64_t choose_opset(const graph& g, const onnx_save_options& options) {
    bool int4 = false;
    for (const auto& [k, t] : g.params) int4 |= t.type() == dtype::int4 || t.type() == dtype::uint4;
    std::int64_t opset = options.opset;
    if (opset == 0) {
        opset = std::clamp<std::int64_t>(g.opset, detail::min_export_opset, detail::max_opset);
        if (int4) opset = detail::max_opset;
    }
    if (opset < detail::min_export_opset || opset > detail::max_opset)
        QUANTSIM_THROW(unsupported_error, "save_onnx: opset ", opset, " is not supported for export (",
                       detail::min_export_opset, " to ", detail::max_opset, ")");
    if (int4 && opset < 21)
        for (const auto& [k, t] : g.params)
            if (t.type() == dtype::int4 || t.type() == dtype::uint4)
                QUANTSIM_THROW(unsupported_error, "save_onnx: parameter '", k, "' is ", name_of(t.type()),
                               ", which ONNX has only from opset 21 (asked for opset ", opset, ")");
    return opset;
}

onnx::ModelProto build_model(const graph& g, const onnx_save_options& options) {
    const std::int64_t opset = choose_opset(g, options);
    onnx::ModelProto m;
    m.set_ir_version(detail::ir_version_for_opset(opset));
    m.set_producer_name(options.producer_name);
    m.set_producer_version(QUANTSIM_VERSION_STRING);
    if (!options.doc_string.empty()) m.set_doc_string(options.doc_string);
    auto* op = m.add_opset_import();
    op->set_domain("");
    op->set_version(opset);
    std::set<std::string> domains;
    for (const auto& n : g.nodes)
        if (!n.domain.empty()) domains.insert(n.domain);
    for (const auto& d : domains) {
        auto* o = m.add_opset_import();
        o->set_domain(d);
        auto it = g.domain_opsets.find(d);
        o->set_version(it == g.domain_opsets.end() ? 1 : it->second);
    }

    auto* gp = m.mutable_graph();
    gp->set_name(g.name.empty() ? "graph" : g.name);
    for (const auto& v : g.inputs) value_info_to_proto(v, *gp->add_input());
    for (const auto& v : g.outputs) {
        // The output's own info carries the model's names for dims inference could not name; fall back to the
        // intermediate's info only when the output has none.
        value_info out = v;
        if (!v.shape_known)
            if (auto it = g.value_infos.find(v.name); it != g.value_infos.end() && it->second.shape_known) out = it->second;
        if (const tensor* t = g.is_param(v.name) ? &g.params.at(v.name) : nullptr) {
            out.type = t->type();
            out.shape = t->shape();
            out.dim_params.clear();
            out.shape_known = true;
        }
        out.name = v.name;
        value_info_to_proto(out, *gp->add_output());
    }

    std::unordered_set<std::string> params_read;
    for (const auto& n : g.nodes) {
        auto* np = gp->add_node();
        np->set_name(n.name);
        np->set_op_type(n.op_type);
        if (!n.domain.empty()) np->set_domain(n.domain);
        std::vector<std::string> inputs = n.inputs;
        auto attrs = n.attrs;
        // Canonical -> target opset: the inputs that are still attributes at this opset.
        if (opset < 18 && is_reduce_with_attr_axes_before_18(n) && n.has_input(1)) {
            auto it = g.params.find(n.inputs[1]);
            if (it == g.params.end() || it->second.type() != dtype::int64 || it->second.rank() != 1)
                QUANTSIM_THROW(unsupported_error, "save_onnx: ", n.describe(), ": axes come from '", n.inputs[1],
                               "', which is not a constant int64 vector; opset ", opset,
                               " needs them as an attribute (export at opset 18 or later)");
            const auto s = it->second.span<std::int64_t>();
            attrs["axes"] = std::vector<std::int64_t>(s.begin(), s.end());
            inputs.resize(1);
        }
        if (opset >= 18 && n.domain.empty() && n.op_type == "Split" && !n.has_input(1))
            attrs["num_outputs"] = static_cast<std::int64_t>(n.outputs.size());
        for (const auto& i : inputs) {
            np->add_input(i);
            if (g.is_param(i)) params_read.insert(i);
        }
        for (const auto& o : n.outputs) np->add_output(o);
        for (const auto& [k, a] : attrs) attr_to_proto(k, a, *np->add_attribute());
    }
    for (const auto& v : g.outputs)
        if (g.is_param(v.name)) params_read.insert(v.name);
    for (const auto& [k, t] : g.params)
        if (params_read.count(k)) tensor_to_proto(t, k, *gp->add_initializer());

    if (options.write_value_info) {
        std::unordered_set<std::string> skip;
        for (const auto& v : g.inputs) skip.insert(v.name);
        for (const auto& v : g.outputs) skip.insert(v.name);
        for (const auto& n : g.nodes)
            for (const auto& o : n.outputs)
                if (!o.empty() && !skip.count(o))
                    if (auto it = g.value_infos.find(o); it != g.value_infos.end() && it->second.shape_known) {
                        value_info v = it->second;
                        v.name = o;
                        value_info_to_proto(v, *gp->add_value_info());
                    }
    }
    return m;
}

}  // namespace

std::string save_onnx_to_string(const graph& g, const onnx_save_options& options) {
    const onnx::ModelProto m = build_model(g, options);
    const auto size = m.ByteSizeLong();
    if (size > static_cast<std::size_t>(INT_MAX))
        QUANTSIM_THROW(resource_error, "save_onnx: the model would be ", size,
                       " bytes, above protobuf's 2 GiB limit for one message");
    std::string out;
    if (!m.SerializeToString(&out)) QUANTSIM_THROW(io_error, "save_onnx: serializing the model failed");
    return out;
}

void save_onnx(const graph& g, const std::filesystem::path& path, const onnx_save_options& options) {
    const std::string bytes = save_onnx_to_string(g, options);
    write_file_atomic(path, std::string_view(bytes));
}

}  // namespace quantsim
