// Helpers shared by the built-in op schemas: kernels from lambdas, input/attribute access with node-naming errors,
// and symbolic-dimension bookkeeping for shape inference.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <quantsim/core/error.hpp>
#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/op.hpp>

namespace quantsim::detail {

using kernel_fn = std::function<void(const std::vector<const tensor*>&, std::vector<tensor>&)>;

class fn_kernel final : public op_kernel {
public:
    explicit fn_kernel(kernel_fn f) : f_(std::move(f)) {}
    void run(const std::vector<const tensor*>& inputs, std::vector<tensor>& outputs) override { f_(inputs, outputs); }

private:
    kernel_fn f_;
};

inline std::unique_ptr<op_kernel> make_kernel(kernel_fn f) { return std::make_unique<fn_kernel>(std::move(f)); }

// ---- inputs --------------------------------------------------------------------------------------------------------

inline const value_info* in_info(const op_inputs_info& in, std::size_t i) {
    return i < in.infos.size() ? in.infos[i] : nullptr;
}
inline const tensor* in_const(const op_inputs_info& in, std::size_t i) {
    return i < in.constants.size() ? in.constants[i] : nullptr;
}
/// Input i at run time; throws graph_error when a required input is missing.
inline const tensor& input(const std::vector<const tensor*>& ins, std::size_t i, const std::string& desc) {
    if (i >= ins.size() || !ins[i] || !ins[i]->defined())
        QUANTSIM_THROW(graph_error, desc, ": input ", i, " is missing");
    return *ins[i];
}
inline const tensor* optional_input(const std::vector<const tensor*>& ins, std::size_t i) {
    return i < ins.size() && ins[i] && ins[i]->defined() ? ins[i] : nullptr;
}
inline void require_type(const tensor& t, dtype want, const std::string& desc, std::size_t i) {
    if (t.type() != want)
        QUANTSIM_THROW(unsupported_error, desc, ": input ", i, " has dtype ", name_of(t.type()), "; only ",
                       name_of(want), " is supported");
}
inline void require_float(const tensor& t, const std::string& desc, std::size_t i) {
    require_type(t, dtype::float32, desc, i);
}
/// Integer values of a 0-D or 1-D int64/int32 tensor (axes, shapes, pads, ...).
std::vector<std::int64_t> int_values(const tensor& t, const std::string& desc, const char* what);
/// One float of a scalar-like float tensor (Clip bounds, Pad value).
float float_scalar(const tensor& t, const std::string& desc, const char* what);
/// ONNX TensorProto::DataType number -> dtype (unsupported_error naming the node otherwise).
dtype dtype_from_onnx_code(std::int64_t code, const std::string& desc);

// ---- shape inference -----------------------------------------------------------------------------------------------

/// One dimension for inference: a number (v >= 0) or unknown (v = -1) with an optional symbol name.
struct sdim {
    std::int64_t v = -1;
    std::string p;
    bool known() const noexcept { return v >= 0; }
};
inline std::vector<sdim> dims_of(const value_info& vi) {
    std::vector<sdim> d(vi.shape.size());
    for (std::size_t i = 0; i < d.size(); ++i) {
        d[i].v = vi.shape[i] < 0 ? -1 : vi.shape[i];
        if (d[i].v < 0 && i < vi.dim_params.size()) d[i].p = vi.dim_params[i];
    }
    return d;
}
inline value_info make_info(dtype t, const std::vector<sdim>& dims) {
    value_info vi;
    vi.type = t;
    vi.shape_known = true;
    bool any = false;
    for (const auto& d : dims) {
        vi.shape.push_back(d.known() ? d.v : -1);
        any = any || !d.p.empty();
    }
    if (any)
        for (const auto& d : dims) vi.dim_params.push_back(d.known() ? std::string() : d.p);
    return vi;
}
inline value_info make_info(dtype t, const shape_t& shape) {
    value_info vi;
    vi.type = t;
    vi.shape = shape;
    vi.shape_known = true;
    return vi;
}
/// A value_info with a known type and an unknown shape.
inline value_info unknown_shape(dtype t) {
    value_info vi;
    vi.type = t;
    vi.shape_known = false;
    return vi;
}
inline value_info same_as(const value_info* in, dtype fallback = dtype::float32) {
    if (!in) return unknown_shape(fallback);
    value_info r = *in;
    r.name.clear();
    return r;
}
/// Type of input i when known, else `fallback`.
inline dtype type_of(const op_inputs_info& in, std::size_t i, dtype fallback = dtype::float32) {
    if (const tensor* c = in_const(in, i)) return c->type();
    if (const value_info* v = in_info(in, i)) return v->type;
    return fallback;
}
/// Rank of input i when known (constant or known shape), else -1.
inline int rank_of(const op_inputs_info& in, std::size_t i) {
    if (const tensor* c = in_const(in, i)) return c->rank();
    if (const value_info* v = in_info(in, i)) return static_cast<int>(v->shape.size());
    return -1;
}
inline std::optional<std::vector<sdim>> dims_of_input(const op_inputs_info& in, std::size_t i) {
    if (const value_info* v = in_info(in, i)) return dims_of(*v);
    if (const tensor* c = in_const(in, i)) {
        std::vector<sdim> d;
        for (auto x : c->shape()) d.push_back({x, {}});
        return d;
    }
    return std::nullopt;
}
/// Broadcast of symbolic dims; throws shape_error naming `desc` when two known sizes differ (neither 1).
std::vector<sdim> broadcast_dims(const std::vector<sdim>& a, const std::vector<sdim>& b, const std::string& desc);

/// Reads an int attribute list or the int64 input i (canonical form). nullopt when neither is there or the input
/// is not constant.
std::optional<std::vector<std::int64_t>> const_ints(const op_inputs_info& in, std::size_t i, const std::string& desc,
                                                    const char* what);

// ---- registration --------------------------------------------------------------------------------------------------

void register_elementwise_ops(op_registry& r);
void register_conv_ops(op_registry& r);
void register_gemm_ops(op_registry& r);
void register_pool_ops(op_registry& r);
void register_norm_ops(op_registry& r);
void register_shape_ops(op_registry& r);
void register_softmax_ops(op_registry& r);
void register_reduce_ops(op_registry& r);
void register_resize_ops(op_registry& r);
void register_qdq_ops(op_registry& r);

/// A schema with the common fields filled.
inline op_schema schema(std::string op_type, int min_in, int max_in, int min_out = 1, int max_out = 1) {
    op_schema s;
    s.op_type = std::move(op_type);
    s.min_inputs = min_in;
    s.max_inputs = max_in;
    s.min_outputs = min_out;
    s.max_outputs = max_out;
    return s;
}

}  // namespace quantsim::detail
