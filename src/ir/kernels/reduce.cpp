#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/reduce.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <quantsim/ir/kernels/layout.hpp>
#include <quantsim/ir/kernels/parallel.hpp>

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

namespace quantsim {

namespace {

template <class T, class Acc>
Acc init_value(reduce_kind k) {
    switch (k) {
        case reduce_kind::max: return std::numeric_limits<Acc>::has_infinity ? -std::numeric_limits<Acc>::infinity() : std::numeric_limits<Acc>::lowest();
        case reduce_kind::min: return std::numeric_limits<Acc>::has_infinity ? std::numeric_limits<Acc>::infinity() : std::numeric_limits<Acc>::max();
        case reduce_kind::prod: return Acc(1);
        default: return Acc(0);
    }
}

template <class T, class Acc>
QUANTSIM_ALWAYS_INLINE Acc step(reduce_kind k, Acc acc, T v, Acc shift) {
    const Acc x = static_cast<Acc>(v);
    switch (k) {
        case reduce_kind::sum:
        case reduce_kind::mean:
        case reduce_kind::log_sum: return acc + x;
        case reduce_kind::max: return x > acc || x != x ? x : acc;
        case reduce_kind::min: return x < acc || x != x ? x : acc;
        case reduce_kind::prod: return acc * x;
        case reduce_kind::l1: return acc + (x < Acc(0) ? -x : x);
        case reduce_kind::l2:
        case reduce_kind::sum_square: return acc + x * x;
        case reduce_kind::log_sum_exp:
            if constexpr (std::is_floating_point_v<Acc>) return acc + std::exp(x - shift);
            return acc;
    }
    return acc;
}

template <class T, class Acc>
T finish(reduce_kind k, Acc acc, std::int64_t n, Acc shift) {
    switch (k) {
        case reduce_kind::mean:
            if constexpr (std::is_floating_point_v<Acc>) return static_cast<T>(acc / static_cast<Acc>(n));
            return n ? static_cast<T>(acc / static_cast<Acc>(n)) : T(0);
        case reduce_kind::l2:
            if constexpr (std::is_floating_point_v<Acc>) return static_cast<T>(std::sqrt(acc));
            return static_cast<T>(std::sqrt(static_cast<double>(acc)));
        case reduce_kind::log_sum:
            if constexpr (std::is_floating_point_v<Acc>) return static_cast<T>(std::log(acc));
            return static_cast<T>(acc);
        case reduce_kind::log_sum_exp:
            if constexpr (std::is_floating_point_v<Acc>) return static_cast<T>(std::log(acc) + shift);
            return static_cast<T>(acc);
        default: return static_cast<T>(acc);
    }
}

// x viewed as [outer, n, inner]; y [outer, inner].
template <class T>
void reduce_typed(reduce_kind k, const T* x, T* y, std::int64_t outer, std::int64_t n, std::int64_t inner) {
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, std::int64_t>;
    detail::parallel_range(outer * inner, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(n, 1)),
                           [&](std::int64_t b, std::int64_t e) {
                               for (std::int64_t t = b; t < e; ++t) {
                                   const std::int64_t o = t / inner, j = t % inner;
                                   const T* xs = x + o * n * inner + j;
                                   Acc shift = Acc(0);
                                   if (k == reduce_kind::log_sum_exp && n > 0) {
                                       shift = static_cast<Acc>(xs[0]);
                                       for (std::int64_t i = 1; i < n; ++i)
                                           shift = std::max(shift, static_cast<Acc>(xs[i * inner]));
                                       if constexpr (std::is_floating_point_v<Acc>)
                                           if (!std::isfinite(shift)) shift = Acc(0);
                                   }
                                   Acc acc = init_value<T, Acc>(k);
                                   for (std::int64_t i = 0; i < n; ++i) acc = step<T, Acc>(k, acc, xs[i * inner], shift);
                                   y[t] = finish<T, Acc>(k, acc, n, shift);
                               }
                           });
}

}  // namespace

tensor reduce(reduce_kind kind, const tensor& x, std::vector<int> axes, bool keepdims, const std::string& what) {
    const int r = x.rank();
    if (axes.empty()) {
        axes.resize(static_cast<std::size_t>(r));
        std::iota(axes.begin(), axes.end(), 0);
    }
    std::sort(axes.begin(), axes.end());
    axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
    std::vector<bool> red(static_cast<std::size_t>(r), false);
    for (int a : axes) {
        if (a < 0 || a >= r) QUANTSIM_THROW(invalid_argument, what, ": axis ", a, " out of range for rank ", r);
        red[static_cast<std::size_t>(a)] = true;
    }
    shape_t out_shape, kept_shape;
    for (int i = 0; i < r; ++i) {
        if (red[static_cast<std::size_t>(i)]) {
            if (keepdims) out_shape.push_back(1);
        } else {
            out_shape.push_back(x.shape()[static_cast<std::size_t>(i)]);
        }
    }
    // Bring the reduced axes together: [outer, n, inner] when they are contiguous, else transpose them last.
    tensor src = x;
    std::int64_t outer = 1, n = 1, inner = 1;
    const bool contiguous = axes.empty() || axes.back() - axes.front() + 1 == static_cast<int>(axes.size());
    if (contiguous) {
        for (int i = 0; i < r; ++i) {
            const std::int64_t d = x.shape()[static_cast<std::size_t>(i)];
            if (!axes.empty() && i < axes.front()) outer *= d;
            else if (red[static_cast<std::size_t>(i)]) n *= d;
            else inner *= d;
        }
    } else {
        std::vector<std::int64_t> perm;
        for (int i = 0; i < r; ++i)
            if (!red[static_cast<std::size_t>(i)]) perm.push_back(i);
        for (int a : axes) perm.push_back(a);
        src = transpose(x, perm);
        for (int i = 0; i < r; ++i) {
            const std::int64_t d = x.shape()[static_cast<std::size_t>(i)];
            (red[static_cast<std::size_t>(i)] ? n : outer) *= d;
        }
    }
    tensor out = detail::new_tensor(out_shape, x.type());
    switch (x.type()) {
        case dtype::float32: reduce_typed<float>(kind, src.data<float>(), out.data<float>(), outer, n, inner); break;
        case dtype::float64: reduce_typed<double>(kind, src.data<double>(), out.data<double>(), outer, n, inner); break;
        case dtype::int64:
            reduce_typed<std::int64_t>(kind, src.data<std::int64_t>(), out.data<std::int64_t>(), outer, n, inner);
            break;
        case dtype::int32:
            reduce_typed<std::int32_t>(kind, src.data<std::int32_t>(), out.data<std::int32_t>(), outer, n, inner);
            break;
        default:
            QUANTSIM_THROW(unsupported_error, what, ": reduction of dtype ", name_of(x.type()), " is not supported");
    }
    return out;
}

tensor arg_reduce(bool is_max, const tensor& x, int axis, bool keepdims, bool select_last, const std::string& what) {
    if (x.type() != dtype::float32)
        QUANTSIM_THROW(unsupported_error, what, ": ArgMax/ArgMin of dtype ", name_of(x.type()), " is not supported");
    const int r = x.rank();
    std::int64_t outer = 1, n = x.shape()[static_cast<std::size_t>(axis)], inner = 1;
    shape_t out_shape;
    for (int i = 0; i < r; ++i) {
        const std::int64_t d = x.shape()[static_cast<std::size_t>(i)];
        if (i < axis) outer *= d;
        if (i > axis) inner *= d;
        if (i != axis) out_shape.push_back(d);
        else if (keepdims) out_shape.push_back(1);
    }
    if (n == 0) QUANTSIM_THROW(shape_error, what, ": cannot take ArgMax/ArgMin over an empty axis");
    tensor out = detail::new_tensor(out_shape, dtype::int64);
    const float* px = x.data<float>();
    auto* po = out.data<std::int64_t>();
    for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t j = 0; j < inner; ++j) {
            const float* xs = px + o * n * inner + j;
            std::int64_t best = 0;
            for (std::int64_t i = 1; i < n; ++i) {
                const float v = xs[i * inner], b = xs[best * inner];
                const bool better = is_max ? (select_last ? v >= b : v > b) : (select_last ? v <= b : v < b);
                if (better) best = i;
            }
            po[o * inner + j] = best;
        }
    return out;
}

}  // namespace quantsim
