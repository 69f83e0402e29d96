// Fake-quant, quantize and dequantize on Eigen objects: Matrix, Array, Map (any strides), Ref, Block, expressions;
// row- and col-major. A quant_params' axes refer to the logical matrix: axis 0 = rows, axis 1 = cols (per-channel
// on axis 0 = one encoding per row; per-block (0, 1, B) = blocks of B columns within each row). Stochastic rounding
// uses the logical row-major index i * cols + j, so a matrix gives the same result in either storage order and as a
// quantsim::tensor of shape [rows, cols].
#pragma once

#include <cstdint>
#include <type_traits>

#include <Eigen/Core>

#include <quantsim/quant/detail/dispatch.hpp>
#include <quantsim/quant/detail/kernels.hpp>
#include <quantsim/quant/detail/parallel.hpp>
#include <quantsim/quant/detail/run_layout.hpp>
#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/layout.hpp>
#include <quantsim/quant/quantize.hpp>
#include <quantsim/quant/rounding.hpp>

namespace quantsim {

namespace detail {

template <class Derived>
inline constexpr bool eigen_row_major_v = (Derived::Flags & Eigen::RowMajorBit) != 0;

/// True when the object's storage can be addressed as data() + outer * outerStride() + inner.
template <class Derived>
bool eigen_strided_access(const Eigen::DenseBase<Derived>& m) {
    if constexpr ((Derived::Flags & Eigen::DirectAccessBit) != 0)
        return m.derived().innerStride() == 1 || m.size() <= 1;
    else
        return false;
}

/// Plain matrix with another scalar and the same shape, sizes and storage order.
template <class Derived, class Scalar>
using eigen_plain_t = Eigen::Matrix<Scalar, Derived::RowsAtCompileTime, Derived::ColsAtCompileTime,
                                    Derived::PlainObject::Options, Derived::MaxRowsAtCompileTime,
                                    Derived::MaxColsAtCompileTime>;

/// One storage-order view of a matrix: element (o, t) at data + o * outer_stride + t.
template <class T>
struct strided {
    T* data;
    std::int64_t outer_stride;
    QUANTSIM_ALWAYS_INLINE T* at(std::int64_t o, std::int64_t t) const { return data + o * outer_stride + t; }
};

template <class Derived>
strided<std::conditional_t<std::is_const_v<std::remove_pointer_t<decltype(std::declval<Derived&>().data())>>,
                           const typename Derived::Scalar, typename Derived::Scalar>>
strided_of(Derived& m) {
    const bool row_major = eigen_row_major_v<Derived>;
    const std::int64_t inner = row_major ? m.cols() : m.rows();
    // Eigen reports odd outer strides for vectors; a single outer vector never uses it.
    const std::int64_t outer_count = row_major ? m.rows() : m.cols();
    return {m.data(), outer_count <= 1 ? inner : static_cast<std::int64_t>(m.outerStride())};
}

/// The quant_params checked against [rows, cols], with axes moved to storage order ([outer, inner]).
inline resolved_granularity eigen_storage_granularity(const quant_params& p, std::int64_t rows, std::int64_t cols,
                                                      bool row_major, const char* where) {
    resolved_granularity g = check_quant_params(p, shape_t{rows, cols}, where);
    if (!row_major) {
        g.axis = 1 - g.axis;
        if (g.kind == granularity_kind::per_block) g.block_axis = 1 - g.block_axis;
        if (g.kind == granularity_kind::per_tensor) g.axis = 0;
    }
    return g;
}

/// Calls fn(o, t, count, view, idx0, step) over runs of the [outer, inner] storage, split over threads; idx0 and
/// step give the logical row-major index of the run's elements.
template <class C, class Fn>
void eigen_runs(std::int64_t rows, std::int64_t cols, bool row_major, bool contiguous, bool stochastic,
                const resolved_granularity& g, const quant_params& p, int threads, Fn&& fn) {
    const std::int64_t outer = row_major ? rows : cols, inner = row_major ? cols : rows;
    const run_layout L = make_run_layout(g, shape_t{outer, inner}, !contiguous || (!row_major && stochastic));
    const group_table<C> G = make_group_table<C>(p, needs_group_arrays(L));
    parallel_ranges(outer * inner, threads, [&](std::int64_t begin, std::int64_t end) {
        for_each_run<C>(L, G, begin, end, [&](std::int64_t i, std::int64_t count, const auto& view) {
            const std::int64_t o = i / inner, t = i % inner;
            const auto idx0 = static_cast<std::uint64_t>(row_major ? i : t * cols + o);
            const auto step = static_cast<std::uint64_t>(row_major ? 1 : cols);
            fn(o, t, count, view, idx0, step);
        });
    });
}

template <class C>
void eigen_fake_quant(strided<const float> in, strided<float> out, std::int64_t rows, std::int64_t cols,
                      bool row_major, const resolved_granularity& g, const quant_params& p, const quant_options& o) {
    const std::int64_t inner = row_major ? cols : rows;
    const bool contiguous = in.outer_stride == inner && out.outer_stride == inner;
    const std::uint64_t key = stochastic_key(o.seed);
    const bool inplace = in.data == out.data;
    with_modes(o, "fake_quant", [&](auto tag) {
        using T = decltype(tag);
        eigen_runs<C>(rows, cols, row_major, contiguous, T::rounding == rounding_mode::stochastic, g, p,
                      o.num_threads,
                      [&](std::int64_t oi, std::int64_t t, std::int64_t n, const auto& view, std::uint64_t idx0,
                          std::uint64_t step) {
                          if (inplace)
                              fq_run_inplace<T::rounding, T::arithmetic, C>(out.at(oi, t), n, view, key, idx0, step);
                          else
                              fq_run<T::rounding, T::arithmetic, C>(in.at(oi, t), out.at(oi, t), n, view, key, idx0,
                                                                    step);
                      });
    });
}

template <class Derived>
void check_float_scalar() {
    static_assert(std::is_same_v<typename Derived::Scalar, float>,
                  "quantsim: fake_quant / quantize on Eigen objects need float scalars (use .template cast<float>())");
}

template <class Derived>
void eigen_fake_quant_inplace(Eigen::DenseBase<Derived>& m, const quant_params& p, const quant_options& o) {
    check_float_scalar<Derived>();
    constexpr bool row_major = eigen_row_major_v<Derived>;
    const resolved_granularity g = eigen_storage_granularity(p, m.rows(), m.cols(), row_major, "fake_quant_ (Eigen)");
    if (m.size() == 0) return;
    if constexpr ((Derived::Flags & Eigen::LvalueBit) != 0 && (Derived::Flags & Eigen::DirectAccessBit) != 0) {
        if (eigen_strided_access(m)) {
            const strided<float> s = strided_of(m.derived());
            const strided<const float> in{s.data, s.outer_stride};
            if (p.bitwidth <= max_bitwidth)
                eigen_fake_quant<float>(in, s, m.rows(), m.cols(), row_major, g, p, o);
            else
                eigen_fake_quant<double>(in, s, m.rows(), m.cols(), row_major, g, p, o);
            return;
        }
    }
    // Inner stride != 1 or no direct access: work on a contiguous copy.
    eigen_plain_t<Derived, float> tmp = m;
    strided<float> s{tmp.data(), eigen_row_major_v<decltype(tmp)> ? tmp.cols() : tmp.rows()};
    const resolved_granularity gt =
        eigen_storage_granularity(p, tmp.rows(), tmp.cols(), eigen_row_major_v<decltype(tmp)>, "fake_quant_ (Eigen)");
    if (p.bitwidth <= max_bitwidth)
        eigen_fake_quant<float>({s.data, s.outer_stride}, s, tmp.rows(), tmp.cols(), eigen_row_major_v<decltype(tmp)>,
                                gt, p, o);
    else
        eigen_fake_quant<double>({s.data, s.outer_stride}, s, tmp.rows(), tmp.cols(),
                                 eigen_row_major_v<decltype(tmp)>, gt, p, o);
    m.derived() = tmp;
}

}  // namespace detail

/// Fake-quantizes an Eigen object into a new plain matrix of the same shape and storage order.
template <class Derived>
detail::eigen_plain_t<Derived, float> fake_quant(const Eigen::DenseBase<Derived>& m, const quant_params& p,
                                                 const quant_options& o = {}) {
    detail::check_float_scalar<Derived>();
    using out_t = detail::eigen_plain_t<Derived, float>;
    constexpr bool row_major = detail::eigen_row_major_v<Derived>;
    if constexpr ((Derived::Flags & Eigen::DirectAccessBit) != 0 && row_major == detail::eigen_row_major_v<out_t>) {
        if (detail::eigen_strided_access(m)) {
            const resolved_granularity g =
                detail::eigen_storage_granularity(p, m.rows(), m.cols(), row_major, "fake_quant (Eigen)");
            out_t y(m.rows(), m.cols());
            if (m.size() == 0) return y;
            const auto in = detail::strided_of(m.derived());
            detail::strided<float> out{y.data(), row_major ? y.cols() : y.rows()};
            const detail::strided<const float> cin{in.data, in.outer_stride};
            if (p.bitwidth <= max_bitwidth)
                detail::eigen_fake_quant<float>(cin, out, m.rows(), m.cols(), row_major, g, p, o);
            else
                detail::eigen_fake_quant<double>(cin, out, m.rows(), m.cols(), row_major, g, p, o);
            return y;
        }
    }
    out_t y = m;
    detail::eigen_fake_quant_inplace(y, p, o);
    return y;
}
template <class Derived>
detail::eigen_plain_t<Derived, float> fake_quant(const Eigen::DenseBase<Derived>& m, const encoding& e,
                                                 const quant_options& o = {}) {
    return fake_quant(m, quant_params::per_tensor(e), o);
}

/// Fake-quantizes a writable Eigen object in place (Matrix, Array, Map, Ref, Block; temporaries such as
/// m.block(...) or a Map bind to the rvalue overload).
template <class Derived>
void fake_quant_(Eigen::DenseBase<Derived>& m, const quant_params& p, const quant_options& o = {}) {
    detail::eigen_fake_quant_inplace(m, p, o);
}
template <class Derived>
void fake_quant_(Eigen::DenseBase<Derived>&& m, const quant_params& p, const quant_options& o = {}) {
    detail::eigen_fake_quant_inplace(m, p, o);
}
template <class Derived>
void fake_quant_(Eigen::DenseBase<Derived>& m, const encoding& e, const quant_options& o = {}) {
    detail::eigen_fake_quant_inplace(m, quant_params::per_tensor(e), o);
}
template <class Derived>
void fake_quant_(Eigen::DenseBase<Derived>&& m, const encoding& e, const quant_options& o = {}) {
    detail::eigen_fake_quant_inplace(m, quant_params::per_tensor(e), o);
}

/// Quantizes an Eigen float object to a plain integer matrix of the same shape and storage order. OutT is the
/// storage's C++ type; `storage` may name int4/uint4 for std::int8_t/std::uint8_t.
template <class OutT, class Derived>
detail::eigen_plain_t<Derived, OutT> quantize(const Eigen::DenseBase<Derived>& m, const quant_params& p,
                                              const quant_options& o = {}, dtype storage = dtype_of_v<OutT>) {
    detail::check_float_scalar<Derived>();
    using in_t = detail::eigen_plain_t<Derived, float>;
    using out_t = detail::eigen_plain_t<Derived, OutT>;
    constexpr bool row_major = detail::eigen_row_major_v<out_t>;
    constexpr const char* where = "quantize (Eigen)";
    // Work from contiguous storage of the output's order; expressions and strided maps are evaluated first.
    const in_t x = m;
    const resolved_granularity g = detail::eigen_storage_granularity(p, x.rows(), x.cols(), row_major, where);
    detail::check_storage<OutT>(storage, p.range(), where);
    out_t q(x.rows(), x.cols());
    if (x.size() == 0) return q;
    const std::int64_t inner = row_major ? x.cols() : x.rows();
    const std::uint64_t key = detail::stochastic_key(o.seed);
    bool any_nan = false;
    const auto run = [&]<class C>() {
        detail::with_modes(o, where, [&](auto tag) {
            using T = decltype(tag);
            detail::eigen_runs<C>(x.rows(), x.cols(), row_major, true, T::rounding == rounding_mode::stochastic, g, p,
                                  o.num_threads,
                                  [&](std::int64_t oi, std::int64_t t, std::int64_t n, const auto& view,
                                      std::uint64_t idx0, std::uint64_t step) {
                                      const std::int64_t off = oi * inner + t;
                                      if (detail::quantize_run<T::rounding, T::arithmetic, C>(
                                              x.data() + off, q.data() + off, n, view, key, idx0, step)) {
#if QUANTSIM_HAS_OPENMP
#pragma omp atomic write
#endif
                                          any_nan = true;
                                      }
                                  });
        });
    };
    if (sizeof(OutT) == 4 && p.bitwidth > max_bitwidth)
        run.template operator()<double>();
    else
        run.template operator()<float>();
    if (any_nan)
        for (Eigen::Index i = 0; i < x.rows(); ++i)
            for (Eigen::Index j = 0; j < x.cols(); ++j)
                if (std::isnan(x(i, j)))
                    QUANTSIM_THROW(numeric_error, where, ": element (", i, ", ", j,
                                   ") is NaN, which has no integer representation");
    return q;
}
template <class OutT, class Derived>
detail::eigen_plain_t<Derived, OutT> quantize(const Eigen::DenseBase<Derived>& m, const encoding& e,
                                              const quant_options& o = {}, dtype storage = dtype_of_v<OutT>) {
    return quantize<OutT>(m, quant_params::per_tensor(e), o, storage);
}

/// Dequantizes an Eigen integer object to a plain float matrix of the same shape and storage order.
template <class Derived>
detail::eigen_plain_t<Derived, float> dequantize(const Eigen::DenseBase<Derived>& m, const quant_params& p,
                                                 dtype storage = dtype_of_v<typename Derived::Scalar>) {
    using InT = typename Derived::Scalar;
    static_assert(std::is_integral_v<InT> && sizeof(InT) <= 4, "dequantize (Eigen): integer scalars expected");
    using in_t = detail::eigen_plain_t<Derived, InT>;
    using out_t = detail::eigen_plain_t<Derived, float>;
    constexpr bool row_major = detail::eigen_row_major_v<out_t>;
    constexpr const char* where = "dequantize (Eigen)";
    const in_t q = m;
    const resolved_granularity g = detail::eigen_storage_granularity(p, q.rows(), q.cols(), row_major, where);
    const int_range s = storage_range(storage, where);
    if (!stores<InT>(storage))
        QUANTSIM_THROW(invalid_argument, where, ": ", name_of(storage), " storage is not held in this element type");
    out_t y(q.rows(), q.cols());
    if (q.size() == 0) return y;
    const std::int64_t inner = row_major ? q.cols() : q.rows();
    bool any_bad = false;
    const auto run = [&]<class C>() {
        detail::eigen_runs<C>(q.rows(), q.cols(), row_major, true, false, g, p, 0,
                              [&](std::int64_t oi, std::int64_t t, std::int64_t n, const auto& view, std::uint64_t,
                                  std::uint64_t) {
                                  const std::int64_t off = oi * inner + t;
                                  if (detail::dequantize_run<C>(q.data() + off, y.data() + off, n, view,
                                                                static_cast<std::int32_t>(s.qmin),
                                                                static_cast<std::int32_t>(s.qmax))) {
#if QUANTSIM_HAS_OPENMP
#pragma omp atomic write
#endif
                                      any_bad = true;
                                  }
                              });
    };
    if (sizeof(InT) == 4 || p.bitwidth > max_bitwidth)
        run.template operator()<double>();
    else
        run.template operator()<float>();
    if (any_bad)
        for (Eigen::Index i = 0; i < q.rows(); ++i)
            for (Eigen::Index j = 0; j < q.cols(); ++j)
                if (q(i, j) < s.qmin || q(i, j) > s.qmax)
                    QUANTSIM_THROW(invalid_argument, where, ": element (", i, ", ", j, ") holds ",
                                   static_cast<std::int64_t>(q(i, j)), ", outside ", name_of(storage), " [", s.qmin,
                                   ", ", s.qmax, "]");
    return y;
}
template <class Derived>
detail::eigen_plain_t<Derived, float> dequantize(const Eigen::DenseBase<Derived>& m, const encoding& e,
                                                 dtype storage = dtype_of_v<typename Derived::Scalar>) {
    return dequantize(m, quant_params::per_tensor(e), storage);
}

}  // namespace quantsim
