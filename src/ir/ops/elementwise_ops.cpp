// Elementwise ops: arithmetic with broadcasting, comparisons and logic, activations, Clip, Cast, Where.
#include <cmath>
#include <limits>
#include <type_traits>

#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/elementwise.hpp>
#include <quantsim/ir/kernels/parallel.hpp>
#include <quantsim/ir/kernels/pointwise.hpp>

#include "common.hpp"

namespace quantsim::detail {

namespace {

// ---- binary ------------------------------------------------------------------------------------------------------

std::vector<value_info> infer_broadcast(const node& n, const op_inputs_info& in, std::size_t count, dtype out_type,
                                        bool out_is_input_type) {
    const dtype t = out_is_input_type ? type_of(in, 0) : out_type;
    std::optional<std::vector<sdim>> dims = dims_of_input(in, 0);
    for (std::size_t i = 1; i < count && dims; ++i) {
        auto d = dims_of_input(in, i);
        if (!d) {
            dims.reset();
            break;
        }
        *dims = broadcast_dims(*dims, *d, n.describe());
    }
    if (!dims) return {unknown_shape(t)};
    return {make_info(t, *dims)};
}

void add_binary(op_registry& r, const char* name, binary_op op) {
    op_schema s = schema(name, 2, 2);
    const bool to_bool = is_comparison(op) || is_logical(op);
    s.infer = [to_bool](const node& n, const op_inputs_info& in) {
        return infer_broadcast(n, in, 2, dtype::boolean, !to_bool);
    };
    s.create = [op](const node& n, const op_inputs_info&) {
        binary_op bop = op;
        if (bop == binary_op::mod && n.attr_int("fmod", 0) != 0) bop = binary_op::fmod;
        const std::string desc = n.describe();
        return make_kernel([bop, desc](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            const tensor& a = input(in, 0, desc);
            const tensor& b = input(in, 1, desc);
            if (bop == binary_op::pow && a.type() != b.type()) {
                // Pow allows an exponent of another numeric type.
                out[0] = binary(bop, a, cast(b, a.type()), desc);
                return;
            }
            out[0] = binary(bop, a, b, desc);
        });
    };
    r.add(std::move(s));
}

// Sum / Mean / Min / Max: variadic, folded pairwise.
void add_variadic(op_registry& r, const char* name, binary_op op, bool mean) {
    op_schema s = schema(name, 1, 1 << 20);
    s.infer = [](const node& n, const op_inputs_info& in) {
        return infer_broadcast(n, in, n.inputs.size(), dtype::float32, true);
    };
    s.create = [op, mean](const node& n, const op_inputs_info&) {
        const std::string desc = n.describe();
        return make_kernel([op, mean, desc](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            tensor acc = input(in, 0, desc);
            for (std::size_t i = 1; i < in.size(); ++i) acc = binary(op, acc, input(in, i, desc), desc);
            if (in.size() == 1) acc = acc.clone();
            if (mean) {
                require_float(acc, desc, 0);
                tensor d = tensor::full({}, static_cast<float>(in.size()));
                acc = binary(binary_op::div, acc, d, desc);
            }
            out[0] = std::move(acc);
        });
    };
    r.add(std::move(s));
}

// ---- unary float activations -------------------------------------------------------------------------------------

tensor unary_float(pw_op op, const tensor& x, float alpha, float beta) {
    tensor y = detail::new_tensor(x.shape(), dtype::float32);
    const float* px = x.data<float>();
    float* py = y.data<float>();
    parallel_range(x.numel(), 16384, [&](std::int64_t b, std::int64_t e) {
        pw_apply_unary(op, px + b, py + b, e - b, alpha, beta);
    });
    return y;
}

struct unary_spec {
    const char* name;
    pw_op op;
    const char* alpha_attr;
    float alpha_default;
    const char* beta_attr;
    float beta_default;
};

void add_unary(op_registry& r, const unary_spec& u) {
    op_schema s = schema(u.name, 1, 1);
    s.infer = [](const node&, const op_inputs_info& in) { return std::vector<value_info>{same_as(in_info(in, 0))}; };
    s.create = [u](const node& n, const op_inputs_info&) {
        const float alpha = u.alpha_attr ? n.attr_float(u.alpha_attr, u.alpha_default) : u.alpha_default;
        const float beta = u.beta_attr ? n.attr_float(u.beta_attr, u.beta_default) : u.beta_default;
        pw_op op = u.op;
        if (op == pw_op::gelu) {
            const std::string approx = n.attr_string("approximate", "none");
            if (approx != "none")
                QUANTSIM_THROW(unsupported_error, n.describe(), ": Gelu approximate='", approx,
                               "' is not supported (only 'none')");
        }
        const std::string desc = n.describe();
        return make_kernel([op, alpha, beta, desc](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            const tensor& x = input(in, 0, desc);
            require_float(x, desc, 0);
            out[0] = unary_float(op, x, alpha, beta);
        });
    };
    r.add(std::move(s));
}

template <class T, class F>
tensor map_typed(const tensor& x, F f) {
    tensor y = detail::new_tensor(x.shape(), x.type());
    const T* px = x.data<T>();
    T* py = y.data<T>();
    for (std::int64_t i = 0; i < x.numel(); ++i) py[i] = f(px[i]);
    return y;
}

// Neg / Abs / Sign also run on integer tensors (shape arithmetic).
void add_signed_unary(op_registry& r, const char* name, pw_op op) {
    op_schema s = schema(name, 1, 1);
    s.infer = [](const node&, const op_inputs_info& in) { return std::vector<value_info>{same_as(in_info(in, 0))}; };
    s.create = [op](const node& n, const op_inputs_info&) {
        const std::string desc = n.describe();
        const bool sign = std::string(n.op_type) == "Sign";
        return make_kernel([op, sign, desc](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            const tensor& x = input(in, 0, desc);
            auto f = [op, sign](auto v) -> decltype(v) {
                using V = decltype(v);
                if (sign) return static_cast<V>(v > V(0) ? 1 : (v < V(0) ? -1 : 0));
                V minus_v;
                if constexpr (std::is_integral_v<V>)  // -min overflows (undefined behaviour): wrap to min instead
                    minus_v = static_cast<V>(0u - static_cast<std::make_unsigned_t<V>>(v));
                else
                    minus_v = -v;
                if (op == pw_op::neg) return minus_v;
                return v < V(0) ? minus_v : v;
            };
            switch (x.type()) {
                case dtype::float32:
                    out[0] = sign ? map_typed<float>(x, f) : unary_float(op, x, 0.0f, 0.0f);
                    return;
                case dtype::float64: out[0] = map_typed<double>(x, f); return;
                case dtype::int64: out[0] = map_typed<std::int64_t>(x, f); return;
                case dtype::int32: out[0] = map_typed<std::int32_t>(x, f); return;
                case dtype::int8: out[0] = map_typed<std::int8_t>(x, f); return;
                default:
                    QUANTSIM_THROW(unsupported_error, desc, ": dtype ", name_of(x.type()), " is not supported");
            }
        });
    };
    r.add(std::move(s));
}

}  // namespace

void register_elementwise_ops(op_registry& r) {
    add_binary(r, "Add", binary_op::add);
    add_binary(r, "Sub", binary_op::sub);
    add_binary(r, "Mul", binary_op::mul);
    add_binary(r, "Div", binary_op::div);
    add_binary(r, "Pow", binary_op::pow);
    add_binary(r, "Mod", binary_op::mod);
    add_binary(r, "Equal", binary_op::equal);
    add_binary(r, "Less", binary_op::less);
    add_binary(r, "LessOrEqual", binary_op::less_equal);
    add_binary(r, "Greater", binary_op::greater);
    add_binary(r, "GreaterOrEqual", binary_op::greater_equal);
    add_binary(r, "And", binary_op::logical_and);
    add_binary(r, "Or", binary_op::logical_or);
    add_binary(r, "Xor", binary_op::logical_xor);
    add_binary(r, "BitwiseAnd", binary_op::bit_and);
    add_binary(r, "BitwiseOr", binary_op::bit_or);
    add_binary(r, "BitwiseXor", binary_op::bit_xor);
    add_variadic(r, "Sum", binary_op::add, false);
    add_variadic(r, "Mean", binary_op::add, true);
    add_variadic(r, "Min", binary_op::min, false);
    add_variadic(r, "Max", binary_op::max, false);

    const unary_spec unaries[] = {
        {"Relu", pw_op::relu, nullptr, 0, nullptr, 0},
        {"Sigmoid", pw_op::sigmoid, nullptr, 0, nullptr, 0},
        {"Tanh", pw_op::tanh, nullptr, 0, nullptr, 0},
        {"Exp", pw_op::exp, nullptr, 0, nullptr, 0},
        {"Log", pw_op::log, nullptr, 0, nullptr, 0},
        {"Sqrt", pw_op::sqrt, nullptr, 0, nullptr, 0},
        {"Reciprocal", pw_op::reciprocal, nullptr, 0, nullptr, 0},
        {"Erf", pw_op::erf, nullptr, 0, nullptr, 0},
        {"Floor", pw_op::floor, nullptr, 0, nullptr, 0},
        {"Ceil", pw_op::ceil, nullptr, 0, nullptr, 0},
        {"Softplus", pw_op::softplus, nullptr, 0, nullptr, 0},
        {"Gelu", pw_op::gelu, nullptr, 0, nullptr, 0},
        {"HardSigmoid", pw_op::hard_sigmoid, "alpha", 0.2f, "beta", 0.5f},
        {"HardSwish", pw_op::hard_swish, nullptr, 1.0f / 6.0f, nullptr, 0.5f},
        {"LeakyRelu", pw_op::leaky_relu, "alpha", 0.01f, nullptr, 0},
    };
    for (const auto& u : unaries) add_unary(r, u);
    add_signed_unary(r, "Neg", pw_op::neg);
    add_signed_unary(r, "Abs", pw_op::abs);
    add_signed_unary(r, "Sign", pw_op::abs);

    {  // Not
        op_schema s = schema("Not", 1, 1);
        s.infer = [](const node&, const op_inputs_info& in) {
            return std::vector<value_info>{same_as(in_info(in, 0), dtype::boolean)};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            return make_kernel([desc](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
                const tensor& x = input(in, 0, desc);
                require_type(x, dtype::boolean, desc, 0);
                out[0] = map_typed<bool>(x, [](bool v) { return !v; });
            });
        };
        r.add(std::move(s));
    }
    {  // Clip (X, min?, max?)
        op_schema s = schema("Clip", 1, 3);
        s.infer = [](const node&, const op_inputs_info& in) { return std::vector<value_info>{same_as(in_info(in, 0))}; };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            return make_kernel([desc](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
                const tensor& x = input(in, 0, desc);
                const tensor* lo = optional_input(in, 1);
                const tensor* hi = optional_input(in, 2);
                if (x.type() == dtype::float32) {
                    const float a = lo ? float_scalar(*lo, desc, "min") : -std::numeric_limits<float>::infinity();
                    const float b = hi ? float_scalar(*hi, desc, "max") : std::numeric_limits<float>::infinity();
                    out[0] = unary_float(pw_op::clip, x, a, b);
                    return;
                }
                if (x.type() == dtype::int64 || x.type() == dtype::int32) {
                    std::int64_t a = std::numeric_limits<std::int64_t>::min(), b = std::numeric_limits<std::int64_t>::max();
                    if (lo) a = int_values(*lo, desc, "min").at(0);
                    if (hi) b = int_values(*hi, desc, "max").at(0);
                    auto f = [a, b](auto v) { return static_cast<decltype(v)>(std::clamp<std::int64_t>(v, a, b)); };
                    out[0] = x.type() == dtype::int64 ? map_typed<std::int64_t>(x, f) : map_typed<std::int32_t>(x, f);
                    return;
                }
                QUANTSIM_THROW(unsupported_error, desc, ": Clip of dtype ", name_of(x.type()), " is not supported");
            });
        };
        r.add(std::move(s));
    }
    {  // Elu / Selu / Celu / ThresholdedRelu / PRelu: rare; plain loops.
        op_schema s = schema("Elu", 1, 1);
        s.infer = [](const node&, const op_inputs_info& in) { return std::vector<value_info>{same_as(in_info(in, 0))}; };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            const float alpha = n.attr_float("alpha", 1.0f);
            return make_kernel([desc, alpha](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
                const tensor& x = input(in, 0, desc);
                require_float(x, desc, 0);
                out[0] = map_typed<float>(x, [alpha](float v) { return v >= 0.0f ? v : alpha * std::expm1(v); });
            });
        };
        r.add(std::move(s));
    }
    {  // PRelu (X, slope) with broadcasting
        op_schema s = schema("PRelu", 2, 2);
        s.infer = [](const node& n, const op_inputs_info& in) { return infer_broadcast(n, in, 2, dtype::float32, true); };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            return make_kernel([desc](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
                const tensor& x = input(in, 0, desc);
                const tensor& slope = input(in, 1, desc);
                require_float(x, desc, 0);
                require_float(slope, desc, 1);
                tensor neg = binary(binary_op::mul, x, slope, desc);
                tensor y = detail::new_tensor(neg.shape());
                tensor xb = x.shape() == neg.shape() ? x : expand(x, neg.shape(), desc);
                const float* px = xb.data<float>();
                const float* pn = neg.data<float>();
                float* py = y.data<float>();
                for (std::int64_t i = 0; i < y.numel(); ++i) py[i] = px[i] >= 0.0f ? px[i] : pn[i];
                out[0] = std::move(y);
            });
        };
        r.add(std::move(s));
    }
    {  // Where (cond, X, Y)
        op_schema s = schema("Where", 3, 3);
        s.infer = [](const node& n, const op_inputs_info& in) {
            auto v = infer_broadcast(n, in, 3, dtype::float32, true);
            v[0].type = type_of(in, 1);
            return v;
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            return make_kernel([desc](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
                out[0] = where(input(in, 0, desc), input(in, 1, desc), input(in, 2, desc), desc);
            });
        };
        r.add(std::move(s));
    }
    {  // Cast
        op_schema s = schema("Cast", 1, 1);
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype to = dtype_from_onnx_code(n.attr_int("to"), n.describe());
            value_info v = same_as(in_info(in, 0), to);
            v.type = to;
            return std::vector<value_info>{v};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const dtype to = dtype_from_onnx_code(n.attr_int("to"), n.describe());
            const std::string desc = n.describe();
            return make_kernel([to, desc](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
                out[0] = cast(input(in, 0, desc), to);
            });
        };
        s.moves_data = false;
        r.add(std::move(s));
    }
    {  // CastLike (X, target)
        op_schema s = schema("CastLike", 2, 2);
        s.infer = [](const node&, const op_inputs_info& in) {
            value_info v = same_as(in_info(in, 0));
            v.type = type_of(in, 1);
            return std::vector<value_info>{v};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            return make_kernel([desc](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
                out[0] = cast(input(in, 0, desc), input(in, 1, desc).type());
            });
        };
        r.add(std::move(s));
    }
}

}  // namespace quantsim::detail
