// op_registry and the helpers of src/ir/ops/common.hpp.
#include <mutex>

#include "common.hpp"

namespace quantsim {

namespace {
std::string_view canonical_domain(std::string_view d) { return d == "ai.onnx" ? std::string_view() : d; }
}  // namespace

op_registry& op_registry::global() {
    // Built once, on first use, by an explicit call (no static registration objects a static link could drop).
    static op_registry* instance = [] {
        auto* r = new op_registry();
        register_builtin_ops(*r);
        return r;
    }();
    return *instance;
}

void op_registry::add(op_schema schema) {
    schema.domain = std::string(canonical_domain(schema.domain));
    for (auto& s : schemas_)
        if (s.op_type == schema.op_type && s.domain == schema.domain) {
            s = std::move(schema);
            return;
        }
    schemas_.push_back(std::move(schema));
}

const op_schema* op_registry::find(std::string_view op_type, std::string_view domain) const {
    domain = canonical_domain(domain);
    for (const auto& s : schemas_)
        if (s.op_type == op_type && s.domain == domain) return &s;
    return nullptr;
}

std::vector<std::string> op_registry::op_types() const {
    std::vector<std::string> r;
    for (const auto& s : schemas_) r.push_back(s.domain.empty() ? s.op_type : s.domain + "::" + s.op_type);
    std::sort(r.begin(), r.end());
    return r;
}

void register_builtin_ops(op_registry& r) {
    detail::register_elementwise_ops(r);
    detail::register_conv_ops(r);
    detail::register_gemm_ops(r);
    detail::register_pool_ops(r);
    detail::register_norm_ops(r);
    detail::register_shape_ops(r);
    detail::register_softmax_ops(r);
    detail::register_reduce_ops(r);
    detail::register_resize_ops(r);
    detail::register_qdq_ops(r);
}

namespace detail {

std::vector<std::int64_t> int_values(const tensor& t, const std::string& desc, const char* what) {
    if (t.rank() > 1)
        QUANTSIM_THROW(shape_error, desc, ": ", what, " must be a scalar or 1-D, got shape ", to_string(t.shape()));
    std::vector<std::int64_t> v(static_cast<std::size_t>(t.numel()));
    if (t.type() == dtype::int64) {
        const auto* p = t.data<std::int64_t>();
        std::copy(p, p + t.numel(), v.begin());
    } else if (t.type() == dtype::int32) {
        const auto* p = t.data<std::int32_t>();
        std::copy(p, p + t.numel(), v.begin());
    } else {
        QUANTSIM_THROW(invalid_argument, desc, ": ", what, " must be int64 (or int32), got ", name_of(t.type()));
    }
    return v;
}

float float_scalar(const tensor& t, const std::string& desc, const char* what) {
    if (t.numel() != 1)
        QUANTSIM_THROW(shape_error, desc, ": ", what, " must hold one value, got shape ", to_string(t.shape()));
    switch (t.type()) {
        case dtype::float32: return t.data<float>()[0];
        case dtype::float64: return static_cast<float>(t.data<double>()[0]);
        case dtype::int64: return static_cast<float>(t.data<std::int64_t>()[0]);
        case dtype::int32: return static_cast<float>(t.data<std::int32_t>()[0]);
        default: QUANTSIM_THROW(invalid_argument, desc, ": ", what, " has unsupported dtype ", name_of(t.type()));
    }
}

dtype dtype_from_onnx_code(std::int64_t code, const std::string& desc) {
    switch (code) {
        case 1: return dtype::float32;
        case 2: return dtype::uint8;
        case 3: return dtype::int8;
        case 4: return dtype::uint16;
        case 5: return dtype::int16;
        case 6: return dtype::int32;
        case 7: return dtype::int64;
        case 9: return dtype::boolean;
        case 11: return dtype::float64;
        case 21: return dtype::uint4;
        case 22: return dtype::int4;
        default: QUANTSIM_THROW(unsupported_error, desc, ": data type ", code, " is not supported");
    }
}

std::vector<sdim> broadcast_dims(const std::vector<sdim>& a, const std::vector<sdim>& b, const std::string& desc) {
    const std::size_t r = std::max(a.size(), b.size());
    std::vector<sdim> out(r);
    for (std::size_t i = 0; i < r; ++i) {
        const sdim one{1, {}};
        const sdim& x = i < r - a.size() ? one : a[i - (r - a.size())];
        const sdim& y = i < r - b.size() ? one : b[i - (r - b.size())];
        if (x.known() && y.known()) {
            if (x.v != y.v && x.v != 1 && y.v != 1)
                QUANTSIM_THROW(shape_error, desc, ": input dimensions ", x.v, " and ", y.v,
                               " cannot be broadcast (output dimension ", i, ")");
            out[i] = x.v == 1 ? y : x;
        } else if (x.known()) {
            out[i] = x.v == 1 ? y : x;
        } else if (y.known()) {
            out[i] = y.v == 1 ? x : y;
        } else {
            out[i] = x.p == y.p ? x : sdim{-1, x.p.empty() ? y.p : (y.p.empty() ? x.p : std::string())};
            // Two different symbols: unknown. One symbol and one anonymous unknown: keep nothing either.
            if (x.p != y.p) out[i].p.clear();
        }
    }
    return out;
}

std::optional<std::vector<std::int64_t>> const_ints(const op_inputs_info& in, std::size_t i, const std::string& desc,
                                                    const char* what) {
    if (const tensor* c = in_const(in, i)) return int_values(*c, desc, what);
    return std::nullopt;
}

}  // namespace detail
}  // namespace quantsim
