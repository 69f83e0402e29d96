// QuantizeLinear and DequantizeLinear (ONNX opset 10-21): per-tensor, per-axis and blocked, all integer types
// quantsim stores. They let the executor run QDQ models, including quantsim's own QDQ export.
#include <string>

#include <quantsim/quant/quantize.hpp>

#include "common.hpp"

namespace quantsim::detail {
namespace {

int bits_of(dtype t) {
    switch (t) {
        case dtype::int4:
        case dtype::uint4: return 4;
        case dtype::int8:
        case dtype::uint8: return 8;
        case dtype::int16:
        case dtype::uint16: return 16;
        case dtype::int32: return 32;
        default: return 0;
    }
}
bool signed_type(dtype t) { return t == dtype::int4 || t == dtype::int8 || t == dtype::int16 || t == dtype::int32; }

std::int32_t zero_point_at(const tensor& zp, std::int64_t i) {
    switch (zp.type()) {
        case dtype::int8:
        case dtype::int4: return zp.data<std::int8_t>()[i];
        case dtype::uint8:
        case dtype::uint4: return zp.data<std::uint8_t>()[i];
        case dtype::int16: return zp.data<std::int16_t>()[i];
        case dtype::uint16: return zp.data<std::uint16_t>()[i];
        case dtype::int32: return zp.data<std::int32_t>()[i];
        default: return 0;
    }
}

// The quant_params equivalent of ONNX's (scale, zero point, axis, block_size) for data of shape `shape`.
quant_params params_of(const tensor& scale, const tensor* zp, dtype int_type, std::int64_t axis, std::int64_t block,
                       const shape_t& shape, const std::string& desc) {
    if (scale.type() != dtype::float32)
        QUANTSIM_THROW(unsupported_error, desc, ": scale must be float32, got ", name_of(scale.type()));
    if (zp && zp->numel() != scale.numel())
        QUANTSIM_THROW(shape_error, desc, ": zero point has ", zp->numel(), " elements, scale ", scale.numel());
    quant_params p;
    p.bitwidth = bits_of(int_type);
    if (p.bitwidth == 0) QUANTSIM_THROW(unsupported_error, desc, ": integer type ", name_of(int_type), " is not supported");
    p.is_signed = signed_type(int_type);
    p.scheme = qscheme::asymmetric;
    p.scale.assign(scale.f32(), scale.f32() + scale.numel());
    p.zero_point.assign(static_cast<std::size_t>(scale.numel()), 0);
    if (zp)
        for (std::int64_t i = 0; i < zp->numel(); ++i) p.zero_point[static_cast<std::size_t>(i)] = zero_point_at(*zp, i);
    const int rank = static_cast<int>(shape.size());
    if (scale.numel() == 1 && scale.rank() <= 1 && block == 0) {
        p.gran = granularity::per_tensor();
    } else if (block > 0) {
        // Blocked: scale has the data's rank; the blocked axis holds ceil(D / block) entries, the others match.
        const int a = normalize_axis(axis, rank, "DequantizeLinear axis");
        if (scale.rank() != rank) QUANTSIM_THROW(shape_error, desc, ": blocked scale must have the data's rank");
        int channel = -1;
        for (int d = 0; d < rank; ++d) {
            if (d == a) continue;
            if (scale.shape()[d] != shape[d]) QUANTSIM_THROW(shape_error, desc, ": blocked scale shape mismatch");
            if (shape[d] > 1) {
                if (channel >= 0)
                    QUANTSIM_THROW(unsupported_error, desc, ": blocked quantization with more than one non-blocked "
                                                            "axis larger than 1 is not supported");
                channel = d;
            }
        }
        p.gran = granularity::per_block(channel < 0 ? (a == 0 ? 1 : 0) : channel, a, block);
    } else {
        const int a = normalize_axis(axis, rank, "QuantizeLinear axis");
        if (scale.rank() != 1 || scale.numel() != shape[static_cast<std::size_t>(a)])
            QUANTSIM_THROW(shape_error, desc, ": per-axis scale of ", scale.numel(), " elements does not match axis ",
                           a, " of size ", shape[static_cast<std::size_t>(a)]);
        p.gran = granularity::per_channel(a);
    }
    // Scales come from the model: a zero, negative, infinite or NaN scale is the file's error, named with its node
    // here rather than by the quantize kernel (whose message names no node).
    p.validate(desc.c_str());
    return p;
}

dtype output_type_of(const node& n, const tensor* zp, const op_inputs_info& in) {
    if (zp) return zp->type();
    if (const auto* vi = in_info(in, 2); vi && n.has_input(2)) return vi->type;
    if (n.has_attr("output_dtype")) return dtype_from_onnx_code(n.attr_int("output_dtype"), n.describe());
    return dtype::uint8;
}

}  // namespace

void register_qdq_ops(op_registry& r) {
    {
        op_schema s = schema("QuantizeLinear", 2, 3);
        s.infer = [](const node& n, const op_inputs_info& in) {
            value_info out;
            if (const auto* x = in_info(in, 0)) out = *x;
            out.name = n.outputs[0];
            out.type = output_type_of(n, in_const(in, 2), in);
            return std::vector<value_info>{out};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::int64_t axis = n.attr_int("axis", 1);
            const std::int64_t block = n.attr_int("block_size", 0);
            if (n.attr_int("saturate", 1) != 1)
                QUANTSIM_THROW(unsupported_error, n.describe(), ": saturate=0 applies to float8 only");
            const std::string desc = n.describe();
            const bool has_zp_attr_type = n.has_attr("output_dtype");
            const dtype attr_type = has_zp_attr_type ? dtype_from_onnx_code(n.attr_int("output_dtype"), desc) : dtype::uint8;
            return make_kernel([=](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                require_float(x, desc, 0);
                const tensor* zp = optional_input(ins, 2);
                const dtype t = zp ? zp->type() : attr_type;
                const quant_params p = params_of(input(ins, 1, desc), zp, t, axis, block, x.shape(), desc);
                outs[0] = quantize(x, p, t, quant_options::onnx());
            });
        };
        r.add(std::move(s));
    }
    {
        op_schema s = schema("DequantizeLinear", 2, 3);
        s.infer = [](const node& n, const op_inputs_info& in) {
            value_info out;
            if (const auto* x = in_info(in, 0)) out = *x;
            out.name = n.outputs[0];
            out.type = dtype::float32;
            return std::vector<value_info>{out};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::int64_t axis = n.attr_int("axis", 1);
            const std::int64_t block = n.attr_int("block_size", 0);
            const std::string desc = n.describe();
            return make_kernel([=](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                const tensor* zp = optional_input(ins, 2);
                if (zp && zp->type() != x.type())
                    QUANTSIM_THROW(shape_error, desc, ": zero point dtype ", name_of(zp->type()), " differs from input ",
                                   name_of(x.type()));
                const quant_params p = params_of(input(ins, 1, desc), zp, x.type(), axis, block, x.shape(), desc);
                outs[0] = dequantize(x, p);
            });
        };
        r.add(std::move(s));
    }
}

}  // namespace quantsim::detail
