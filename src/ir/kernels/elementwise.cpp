#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/elementwise.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include <quantsim/ir/kernels/pointwise.hpp>

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

namespace quantsim {

shape_t broadcast_shapes(const shape_t& a, const shape_t& b, const std::string& what) {
    const std::size_t r = std::max(a.size(), b.size());
    shape_t out(r, 1);
    for (std::size_t i = 0; i < r; ++i) {
        const std::int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
        const std::int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
        std::int64_t d;
        if (da == db)
            d = da;
        else if (da == 1)
            d = db;
        else if (db == 1)
            d = da;
        else if (da < 0)
            d = db;  // unknown broadcasts against a known size: that size (or 1, which is an error at run time)
        else if (db < 0)
            d = da;
        else
            QUANTSIM_THROW(shape_error, what, ": shapes ", to_string(a), " and ", to_string(b),
                           " cannot be broadcast (dimension ", i, ": ", da, " vs ", db, ")");
        out[i] = d;
    }
    return out;
}

bool is_comparison(binary_op op) noexcept {
    return op == binary_op::equal || op == binary_op::less || op == binary_op::less_equal ||
           op == binary_op::greater || op == binary_op::greater_equal;
}
bool is_logical(binary_op op) noexcept {
    return op == binary_op::logical_and || op == binary_op::logical_or || op == binary_op::logical_xor;
}

namespace {

// Integer arithmetic on values from the model wraps modulo 2^bits (what two's complement hardware, numpy and ONNX
// Runtime give) instead of overflowing a signed type, which is undefined behaviour. The unsigned type is at least
// `unsigned` so that narrow operands do not promote back to (overflowing) int.
template <class T>
using wrap_t = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;
template <class T>
T wrap_add(T a, T b) { return static_cast<T>(static_cast<wrap_t<T>>(static_cast<wrap_t<T>>(a) + static_cast<wrap_t<T>>(b))); }
template <class T>
T wrap_sub(T a, T b) { return static_cast<T>(static_cast<wrap_t<T>>(static_cast<wrap_t<T>>(a) - static_cast<wrap_t<T>>(b))); }
template <class T>
T wrap_mul(T a, T b) { return static_cast<T>(static_cast<wrap_t<T>>(static_cast<wrap_t<T>>(a) * static_cast<wrap_t<T>>(b))); }

// a^b by squaring (a loop of b multiplications would run for 2^62 steps on an exponent from the file); negative
// exponents truncate 1 / a^|b| toward zero, as the float computation does.
template <class T>
T int_pow(T a, T b) {
    if constexpr (std::is_signed_v<T>) {
        if (b < 0) {
            if (a == 1) return T(1);
            if (a == -1) return (b % 2 != 0) ? T(-1) : T(1);
            return T(0);
        }
    }
    T r = 1;
    for (; b > 0; b = static_cast<T>(b / 2)) {
        if (b % 2 != 0) r = wrap_mul(r, a);
        a = wrap_mul(a, a);
    }
    return r;
}

template <class T>
T apply_op(binary_op op, T a, T b) {
    if constexpr (std::is_same_v<T, bool>) {
        return a;  // bool arithmetic is rejected before dispatch
    } else {
    switch (op) {
        case binary_op::add:
            if constexpr (std::is_integral_v<T>) return wrap_add(a, b);
            else return a + b;
        case binary_op::sub:
            if constexpr (std::is_integral_v<T>) return wrap_sub(a, b);
            else return a - b;
        case binary_op::mul:
            if constexpr (std::is_integral_v<T>) return wrap_mul(a, b);
            else return a * b;
        case binary_op::div:
            if constexpr (std::is_integral_v<T>) {
                if (b == 0) return T(0);  // checked by the caller
                // min / -1 overflows (the CPU traps: SIGFPE); it wraps to min like the other ops.
                if constexpr (std::is_signed_v<T>)
                    if (b == -1) return wrap_sub(T(0), a);
                return static_cast<T>(a / b);
            } else {
                return a / b;
            }
        case binary_op::pow:
            if constexpr (std::is_integral_v<T>) {
                return int_pow(a, b);
            } else {
                return static_cast<T>(std::pow(a, b));
            }
        case binary_op::min: return a < b ? a : b;
        case binary_op::max: return a > b ? a : b;
        case binary_op::mod:
            if constexpr (std::is_integral_v<T>) {
                if (b == 0) return T(0);
                if constexpr (std::is_signed_v<T>)
                    if (b == -1) return T(0);  // min % -1 traps like min / -1
                T r = static_cast<T>(a % b);
                if (r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);  // sign of the divisor (fmod=0)
                return r;
            } else {
                return static_cast<T>(std::fmod(a, b));
            }
        case binary_op::fmod:
            if constexpr (std::is_integral_v<T>) {
                if constexpr (std::is_signed_v<T>)
                    if (b == -1) return T(0);
                return b == 0 ? T(0) : static_cast<T>(a % b);
            } else {
                return static_cast<T>(std::fmod(a, b));
            }
        case binary_op::bit_and:
            if constexpr (std::is_integral_v<T>) return static_cast<T>(a & b);
            return a;
        case binary_op::bit_or:
            if constexpr (std::is_integral_v<T>) return static_cast<T>(a | b);
            return a;
        case binary_op::bit_xor:
            if constexpr (std::is_integral_v<T>) return static_cast<T>(a ^ b);
            return a;
        default: return a;
    }
    }
}

template <class T>
bool apply_cmp(binary_op op, T a, T b) {
    switch (op) {
        case binary_op::equal: return a == b;
        case binary_op::less: return a < b;
        case binary_op::less_equal: return a <= b;
        case binary_op::greater: return a > b;
        case binary_op::greater_equal: return a >= b;
        case binary_op::logical_and: return a && b;
        case binary_op::logical_or: return a || b;
        case binary_op::logical_xor: return static_cast<bool>(a) != static_cast<bool>(b);
        default: return false;
    }
}

template <class T>
void binary_typed(binary_op op, const tensor& a, const tensor& b, tensor& out) {
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    const bool to_bool = is_comparison(op) || is_logical(op);
    if (!to_bool && std::is_integral_v<T> && (op == binary_op::div || op == binary_op::mod || op == binary_op::fmod))
        for (std::int64_t i = 0; i < b.numel(); ++i)
            if (pb[i] == 0) QUANTSIM_THROW(numeric_error, "integer division by zero");
    detail::for_each_broadcast(out.shape(), {&a.shape(), &b.shape()}, true, [&](const detail::broadcast_run& r) {
        const T* x = pa + r.in_offset[0];
        const T* y = pb + r.in_offset[1];
        const std::int64_t sx = r.in_stride[0], sy = r.in_stride[1];
        if (to_bool) {
            bool* o = out.data<bool>() + r.out_offset;
            for (std::int64_t i = 0; i < r.n; ++i) o[i] = apply_cmp<T>(op, x[i * sx], y[i * sy]);
            return;
        }
        T* o = out.data<T>() + r.out_offset;
        if constexpr (std::is_same_v<T, float>) {
            pw_op p;
            bool fast = true;
            switch (op) {
                case binary_op::add: p = pw_op::add; break;
                case binary_op::sub: p = pw_op::sub; break;
                case binary_op::mul: p = pw_op::mul; break;
                case binary_op::div: p = pw_op::div; break;
                case binary_op::pow: p = pw_op::pow; break;
                case binary_op::min: p = pw_op::min; break;
                case binary_op::max: p = pw_op::max; break;
                default: p = pw_op::add; fast = false; break;
            }
            if (fast) {
                if (sx == 1 && sy == 1)
                    pw_apply_binary(p, x, y, 0.0f, o, r.n);
                else if (sx == 1)
                    pw_apply_binary(p, x, nullptr, *y, o, r.n);
                else if (sy == 1)
                    pw_apply_binary(p, y, nullptr, *x, o, r.n, true);
                else
                    std::fill_n(o, r.n, pw_eval_ref(p, *x, *y, 0.0f, 0.0f));
                return;
            }
        }
        if (sx == 1 && sy == 1)
            for (std::int64_t i = 0; i < r.n; ++i) o[i] = apply_op<T>(op, x[i], y[i]);
        else
            for (std::int64_t i = 0; i < r.n; ++i) o[i] = apply_op<T>(op, x[i * sx], y[i * sy]);
    });
}

template <class F>
void dispatch(dtype t, const std::string& what, F&& f) {
    switch (t) {
        case dtype::float32: f(float{}); return;
        case dtype::float64: f(double{}); return;
        case dtype::int64: f(std::int64_t{}); return;
        case dtype::int32: f(std::int32_t{}); return;
        case dtype::int16: f(std::int16_t{}); return;
        case dtype::uint16: f(std::uint16_t{}); return;
        case dtype::int8:
        case dtype::int4: f(std::int8_t{}); return;
        case dtype::uint8:
        case dtype::uint4: f(std::uint8_t{}); return;
        case dtype::boolean: f(bool{}); return;
    }
    QUANTSIM_THROW(unsupported_error, what, ": unsupported dtype");
}

}  // namespace

tensor binary(binary_op op, const tensor& a, const tensor& b, const std::string& what) {
    if (a.type() != b.type())
        QUANTSIM_THROW(invalid_argument, what, ": inputs have different dtypes (", name_of(a.type()), " and ",
                       name_of(b.type()), ")");
    if (is_logical(op) && a.type() != dtype::boolean)
        QUANTSIM_THROW(invalid_argument, what, ": logical ops need bool inputs, got ", name_of(a.type()));
    if (a.type() == dtype::boolean && !is_logical(op) && op != binary_op::equal)
        QUANTSIM_THROW(unsupported_error, what, ": arithmetic on bool tensors");
    const shape_t shape = broadcast_shapes(a.shape(), b.shape(), what);
    const dtype ot = is_comparison(op) || is_logical(op) ? dtype::boolean : a.type();
    tensor out = detail::new_tensor(shape, ot);
    try {
        dispatch(a.type(), what, [&](auto tag) { binary_typed<decltype(tag)>(op, a, b, out); });
    } catch (const numeric_error& e) {
        QUANTSIM_THROW(numeric_error, what, ": ", e.what());
    }
    return out;
}

tensor where(const tensor& cond, const tensor& x, const tensor& y, const std::string& what) {
    if (cond.type() != dtype::boolean)
        QUANTSIM_THROW(invalid_argument, what, ": condition must be bool, got ", name_of(cond.type()));
    if (x.type() != y.type())
        QUANTSIM_THROW(invalid_argument, what, ": X and Y have different dtypes (", name_of(x.type()), " and ",
                       name_of(y.type()), ")");
    const shape_t shape = broadcast_shapes(broadcast_shapes(cond.shape(), x.shape(), what), y.shape(), what);
    tensor out = detail::new_tensor(shape, x.type());
    const std::size_t es = size_of(x.type());
    const bool* pc = cond.data<bool>();
    const auto* px = static_cast<const std::byte*>(x.raw());
    const auto* py = static_cast<const std::byte*>(y.raw());
    auto* po = static_cast<std::byte*>(out.raw());
    detail::for_each_broadcast(shape, {&cond.shape(), &x.shape(), &y.shape()}, true,
                               [&](const detail::broadcast_run& r) {
                                   for (std::int64_t i = 0; i < r.n; ++i) {
                                       const bool c = pc[r.in_offset[0] + i * r.in_stride[0]];
                                       const std::byte* src = c ? px + (r.in_offset[1] + i * r.in_stride[1]) * es
                                                                : py + (r.in_offset[2] + i * r.in_stride[2]) * es;
                                       std::memcpy(po + (r.out_offset + i) * es, src, es);
                                   }
                               });
    return out;
}

tensor expand(const tensor& x, const shape_t& shape, const std::string& what) {
    const shape_t out_shape = broadcast_shapes(x.shape(), shape, what);
    tensor out = detail::new_tensor(out_shape, x.type());
    const std::size_t es = size_of(x.type());
    const auto* px = static_cast<const std::byte*>(x.raw());
    auto* po = static_cast<std::byte*>(out.raw());
    detail::for_each_broadcast(out_shape, {&x.shape()}, true, [&](const detail::broadcast_run& r) {
        if (r.in_stride[0] == 1) {
            std::memcpy(po + r.out_offset * es, px + r.in_offset[0] * es, static_cast<std::size_t>(r.n) * es);
        } else {
            for (std::int64_t i = 0; i < r.n; ++i) std::memcpy(po + (r.out_offset + i) * es, px + r.in_offset[0] * es, es);
        }
    });
    return out;
}

namespace {
template <class To, class From>
void convert(const tensor& x, tensor& out) {
    const From* s = x.data<From>();
    To* d = out.data<To>();
    const std::int64_t n = x.numel();
    for (std::int64_t i = 0; i < n; ++i) {
        if constexpr (std::is_same_v<To, bool>) {
            d[i] = s[i] != From(0);
        } else if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To>) {
            // Out-of-range and NaN values are undefined in ONNX; saturate instead of invoking UB.
            const double v = static_cast<double>(s[i]);
            if (!(v == v)) d[i] = To(0);
            else if (v >= static_cast<double>(std::numeric_limits<To>::max())) d[i] = std::numeric_limits<To>::max();
            else if (v <= static_cast<double>(std::numeric_limits<To>::lowest())) d[i] = std::numeric_limits<To>::lowest();
            else d[i] = static_cast<To>(v);
        } else {
            d[i] = static_cast<To>(s[i]);
        }
    }
}
}  // namespace

tensor cast(const tensor& x, dtype to) {
    if (x.type() == to) return x.clone();
    tensor out = detail::new_tensor(x.shape(), to);
    dispatch(to, "Cast", [&](auto to_tag) {
        using To = decltype(to_tag);
        dispatch(x.type(), "Cast", [&](auto from_tag) { convert<To, decltype(from_tag)>(x, out); });
    });
    if (to == dtype::int4 || to == dtype::uint4) {
        // Keep the 4-bit range: wrap like a 4-bit integer would.
        auto* p = static_cast<std::int8_t*>(out.raw());
        for (std::int64_t i = 0; i < out.numel(); ++i) {
            int v = p[i] & 0xF;
            if (to == dtype::int4 && v >= 8) v -= 16;
            p[i] = static_cast<std::int8_t>(v);
        }
    }
    return out;
}

}  // namespace quantsim
