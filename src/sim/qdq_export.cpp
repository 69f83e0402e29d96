// QDQ export: QuantizeLinear/DequantizeLinear around every enabled activation quantizer, weights stored as integers
// followed by DequantizeLinear. The result is a standard ONNX model that ONNX Runtime (and other QDQ consumers)
// execute with integer kernels where they support them.
#include <quantsim/sim/quantsim.hpp>

#include <algorithm>
#include <map>

#include <quantsim/core/error.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/quant/quantize.hpp>

namespace quantsim {
namespace {

dtype storage_for(const quant_params& p, bool allow_int4) {
    const int bw = p.bitwidth;
    if (bw <= 4 && allow_int4) return p.is_signed ? dtype::int4 : dtype::uint4;
    if (bw <= 8) return p.is_signed ? dtype::int8 : dtype::uint8;
    if (bw <= 16) return p.is_signed ? dtype::int16 : dtype::uint16;
    if (bw == 32 && p.is_signed) return dtype::int32;
    QUANTSIM_THROW(unsupported_error, "QDQ export: no ONNX integer type holds a ", bw, "-bit ",
                   p.is_signed ? "signed" : "unsigned", " grid");
}

tensor zero_points(const quant_params& p, dtype t, const shape_t& shape) {
    tensor z = tensor::empty(shape, t);
    const auto n = static_cast<std::size_t>(z.numel());
    for (std::size_t i = 0; i < n; ++i) {
        const std::int32_t v = p.zero_point[i % p.size()];
        switch (t) {
            case dtype::int4:
            case dtype::int8: z.data<std::int8_t>()[i] = static_cast<std::int8_t>(v); break;
            case dtype::uint4:
            case dtype::uint8: z.data<std::uint8_t>()[i] = static_cast<std::uint8_t>(v); break;
            case dtype::int16: z.data<std::int16_t>()[i] = static_cast<std::int16_t>(v); break;
            case dtype::uint16: z.data<std::uint16_t>()[i] = static_cast<std::uint16_t>(v); break;
            case dtype::int32: z.data<std::int32_t>()[i] = v; break;
            default: QUANTSIM_THROW(unsupported_error, "QDQ export: zero point type ", name_of(t));
        }
    }
    return z;
}

struct qdq_tensors {
    tensor scale;
    tensor zero_point;
    std::int64_t axis = -1;        ///< per-channel / blocked axis, -1 = per tensor
    std::int64_t block_size = 0;
};

// ONNX's (scale, zero point) tensors for quant_params over data of `shape`.
qdq_tensors onnx_params(const quant_params& p, dtype storage, const shape_t& shape, const std::string& name) {
    qdq_tensors r;
    if (p.gran.kind == granularity_kind::per_tensor) {
        r.scale = tensor::scalar(p.scale[0]);
        r.zero_point = zero_points(p, storage, {});
        return r;
    }
    if (p.gran.kind == granularity_kind::per_channel) {
        const auto c = static_cast<std::int64_t>(p.size());
        r.scale = tensor::from(p.scale, {c});
        r.zero_point = zero_points(p, storage, {c});
        r.axis = p.gran.axis;
        return r;
    }
    // Blocked (opset 21): scale has the data's rank; the block axis holds D / block entries, the channel axis C,
    // every other axis its full size with the (channel, block) scale repeated along it.
    const int rank = static_cast<int>(shape.size());
    const int ca = p.gran.axis, ba = p.gran.block_axis;
    if (ca < 0 || ca >= rank || ba < 0 || ba >= rank)
        QUANTSIM_THROW(invalid_argument, "QDQ export: per-block axes of '", name, "' do not fit shape ", to_string(shape));
    const std::int64_t blocks = shape[static_cast<std::size_t>(ba)] / p.gran.block_size;
    shape_t sshape = shape;
    sshape[static_cast<std::size_t>(ba)] = blocks;
    tensor scale = tensor::empty(sshape);
    quant_params expanded = p;
    expanded.scale.assign(static_cast<std::size_t>(scale.numel()), 0.0f);
    expanded.zero_point.assign(static_cast<std::size_t>(scale.numel()), 0);
    // Walk the scale tensor in row-major order and pick the (channel, block) entry for each position.
    std::vector<std::int64_t> idx(static_cast<std::size_t>(rank), 0);
    for (std::int64_t flat = 0; flat < scale.numel(); ++flat) {
        const std::int64_t c = idx[static_cast<std::size_t>(ca)], b = idx[static_cast<std::size_t>(ba)];
        const auto src = static_cast<std::size_t>(c * blocks + b);
        expanded.scale[static_cast<std::size_t>(flat)] = p.scale[src];
        expanded.zero_point[static_cast<std::size_t>(flat)] = p.zero_point[src];
        for (int d = rank - 1; d >= 0; --d) {
            if (++idx[static_cast<std::size_t>(d)] < sshape[static_cast<std::size_t>(d)]) break;
            idx[static_cast<std::size_t>(d)] = 0;
        }
    }
    std::copy(expanded.scale.begin(), expanded.scale.end(), scale.f32());
    r.scale = scale;
    r.zero_point = zero_points(expanded, storage, sshape);
    r.axis = ba;
    r.block_size = p.gran.block_size;
    return r;
}

node make_node(graph& g, std::string op, std::string base, std::vector<std::string> inputs,
               std::vector<std::string> outputs) {
    node n;
    n.name = g.unique_name(base);
    n.op_type = std::move(op);
    n.inputs = std::move(inputs);
    n.outputs = std::move(outputs);
    return n;
}

}  // namespace

graph quant_sim::qdq_model(std::int64_t opset) const {
    graph g = model();
    if (opset < 13) QUANTSIM_THROW(invalid_argument, "QDQ export needs opset 13 or later (per-channel axis), got ", opset);
    // Wider types and blocked scales need opset 21; raise it rather than fail.
    for (const auto& q : quantizers()) {
        const auto p = effective_params(q.name);
        if (!p) continue;
        const bool needs21 = (q.kind == quantizer_kind::activation && p->bitwidth > 8) ||
                             (q.kind == quantizer_kind::param && p->bitwidth > 8 && p->bitwidth <= 16) ||
                             p->gran.kind == granularity_kind::per_block;
        if (needs21) opset = std::max<std::int64_t>(opset, 21);
    }
    g.opset = opset;
    const bool int4 = opset >= 21;

    std::vector<node> front;  // DequantizeLinear of weights: inputs are all parameters
    std::map<std::string, std::pair<std::string, std::string>> act_params;  // root quantizer -> (scale, zp) names

    for (const auto& q : quantizers()) {
        const auto p = effective_params(q.name);
        if (!p) continue;
        if (q.kind == quantizer_kind::param) {
            auto it = g.params.find(q.name);
            if (it == g.params.end()) continue;
            const tensor w = it->second;
            const dtype st = storage_for(*p, int4);
            const qdq_tensors t = onnx_params(*p, st, w.shape(), q.name);
            const std::string qn = g.unique_name(q.name + "_quantized");
            const std::string sn = g.unique_name(q.name + "_scale");
            const std::string zn = g.unique_name(q.name + "_zero_point");
            g.params.erase(it);
            g.params[qn] = quantize(w, *p, st, q.options);
            g.params[sn] = t.scale;
            g.params[zn] = t.zero_point;
            node dq = make_node(g, "DequantizeLinear", q.name + "_DequantizeLinear", {qn, sn, zn}, {q.name});
            if (t.axis >= 0) dq.attrs["axis"] = t.axis;
            if (t.block_size > 0) dq.attrs["block_size"] = t.block_size;
            front.push_back(std::move(dq));
            continue;
        }
        // Activations.
        const std::string& v = q.name;
        const bool is_input = g.is_input(v);
        const auto producer = g.producer(v);
        if (!is_input && producer < 0) continue;
        if (p->bitwidth > 16) QUANTSIM_THROW(unsupported_error, "QDQ export: ", p->bitwidth, "-bit activation '", v, "'");
        const dtype st = storage_for(*p, false);
        const std::string root = q.shared_with.empty() ? v : q.shared_with;
        std::string sn, zn;
        if (auto it = act_params.find(root); it != act_params.end()) {
            std::tie(sn, zn) = it->second;
        } else {
            const qdq_tensors t = onnx_params(*p, st, {}, v);
            sn = g.unique_name(root + "_scale");
            zn = g.unique_name(root + "_zero_point");
            g.params[sn] = t.scale;
            g.params[zn] = t.zero_point;
            act_params[root] = {sn, zn};
        }
        std::string src = v;
        std::string out = v;
        if (is_input) {
            out = g.unique_name(v + "_dequantized");
            g.replace_uses(v, out);
        } else {
            src = g.unique_name(v + "_float");
            node& prod = g.nodes[static_cast<std::size_t>(producer)];
            std::replace(prod.outputs.begin(), prod.outputs.end(), v, src);
        }
        // A grid narrower than its storage type (e.g. 6 bits in uint8) is enforced by a Clip before the Quantize.
        const auto grid = p->range();
        const bool full = (p->bitwidth == 8 || p->bitwidth == 16);
        if (!full) {
            const float lo = static_cast<float>((grid.qmin - p->zero_point[0]) * static_cast<double>(p->scale[0]));
            const float hi = static_cast<float>((grid.qmax - p->zero_point[0]) * static_cast<double>(p->scale[0]));
            const std::string lon = g.unique_name(v + "_clip_min"), hin = g.unique_name(v + "_clip_max");
            g.params[lon] = tensor::scalar(lo);
            g.params[hin] = tensor::scalar(hi);
            const std::string clipped = g.unique_name(v + "_clipped");
            g.add_node(make_node(g, "Clip", v + "_Clip", {src, lon, hin}, {clipped}));
            src = clipped;
        }
        const std::string qv = g.unique_name(v + "_quantized");
        g.add_node(make_node(g, "QuantizeLinear", v + "_QuantizeLinear", {src, sn, zn}, {qv}));
        g.add_node(make_node(g, "DequantizeLinear", v + "_DequantizeLinear", {qv, sn, zn}, {out}));
    }
    g.nodes.insert(g.nodes.begin(), front.begin(), front.end());
    g.topological_sort();
    g.value_infos.clear();
    g.infer_shapes();
    g.validate();
    return g;
}

void quant_sim::export_qdq(const std::filesystem::path& path, std::int64_t opset) const {
    const graph g = qdq_model(opset);
    onnx_save_options o;
    o.opset = g.opset;
    save_onnx(g, path, o);
}

}  // namespace quantsim
