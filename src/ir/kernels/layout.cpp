#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/layout.hpp>

#include <algorithm>
#include <cstring>

#include <quantsim/ir/kernels/parallel.hpp>

namespace quantsim {

namespace {

std::vector<std::int64_t> strides_of(const shape_t& s) {
    std::vector<std::int64_t> st(s.size());
    std::int64_t acc = 1;
    for (std::size_t i = s.size(); i-- > 0;) {
        st[i] = acc;
        acc *= s[i];
    }
    return st;
}

// Copies an N-D strided view of `src` (sizes `dims`, element strides `st`, element offset `off`) into dense `dst`.
template <class E>
void gather_strided(const E* src, std::int64_t off, const std::vector<std::int64_t>& dims,
                    const std::vector<std::int64_t>& st, E* dst) {
    const int r = static_cast<int>(dims.size());
    if (r == 0) {
        dst[0] = src[off];
        return;
    }
    std::int64_t total = 1;
    for (auto d : dims) total *= d;
    if (total == 0) return;
    const std::int64_t inner = dims.back(), is = st.back();
    const std::int64_t outer = total / inner;
    auto body = [&](std::int64_t b, std::int64_t e) {
        std::vector<std::int64_t> idx(static_cast<std::size_t>(r), 0);
        std::int64_t rem = b, base = off;
        for (int i = r - 2; i >= 0; --i) {
            idx[static_cast<std::size_t>(i)] = rem % dims[static_cast<std::size_t>(i)];
            rem /= dims[static_cast<std::size_t>(i)];
            base += idx[static_cast<std::size_t>(i)] * st[static_cast<std::size_t>(i)];
        }
        for (std::int64_t o = b; o < e; ++o) {
            E* d = dst + o * inner;
            if (is == 1)
                std::memcpy(d, src + base, static_cast<std::size_t>(inner) * sizeof(E));
            else
                for (std::int64_t j = 0; j < inner; ++j) d[j] = src[base + j * is];
            for (int i = r - 2; i >= 0; --i) {
                auto& k = idx[static_cast<std::size_t>(i)];
                base += st[static_cast<std::size_t>(i)];
                if (++k < dims[static_cast<std::size_t>(i)]) break;
                base -= k * st[static_cast<std::size_t>(i)];
                k = 0;
            }
        }
    };
    if (total >= 65536)
        detail::parallel_range(outer, std::max<std::int64_t>(1, 4096 / std::max<std::int64_t>(inner, 1)), body);
    else
        body(0, outer);
}

void gather_strided_bytes(const tensor& x, std::int64_t off, const std::vector<std::int64_t>& dims,
                          const std::vector<std::int64_t>& st, tensor& out) {
    switch (size_of(x.type())) {
        case 8:
            gather_strided(static_cast<const std::uint64_t*>(x.raw()), off, dims, st,
                           static_cast<std::uint64_t*>(out.raw()));
            break;
        case 4:
            gather_strided(static_cast<const std::uint32_t*>(x.raw()), off, dims, st,
                           static_cast<std::uint32_t*>(out.raw()));
            break;
        case 2:
            gather_strided(static_cast<const std::uint16_t*>(x.raw()), off, dims, st,
                           static_cast<std::uint16_t*>(out.raw()));
            break;
        default:
            gather_strided(static_cast<const std::uint8_t*>(x.raw()), off, dims, st,
                           static_cast<std::uint8_t*>(out.raw()));
            break;
    }
}

}  // namespace

tensor transpose(const tensor& x, const std::vector<std::int64_t>& perm) {
    const int r = x.rank();
    if (static_cast<int>(perm.size()) != r)
        QUANTSIM_THROW(shape_error, "transpose: permutation of length ", perm.size(), " for a tensor of rank ", r);
    const auto st = strides_of(x.shape());
    shape_t out_shape(static_cast<std::size_t>(r));
    std::vector<std::int64_t> in_st(static_cast<std::size_t>(r));
    std::vector<bool> seen(static_cast<std::size_t>(r), false);
    for (int i = 0; i < r; ++i) {
        const std::int64_t p = perm[static_cast<std::size_t>(i)];
        if (p < 0 || p >= r || seen[static_cast<std::size_t>(p)])
            QUANTSIM_THROW(shape_error, "transpose: invalid permutation");
        seen[static_cast<std::size_t>(p)] = true;
        out_shape[static_cast<std::size_t>(i)] = x.shape()[static_cast<std::size_t>(p)];
        in_st[static_cast<std::size_t>(i)] = st[static_cast<std::size_t>(p)];
    }
    tensor out = detail::new_tensor(out_shape, x.type());
    // Coalesce output dims that are also adjacent (in order) in the input; drop size-1 dims.
    std::vector<std::int64_t> dims, cst;
    for (int i = 0; i < r; ++i) {
        const std::int64_t d = out_shape[static_cast<std::size_t>(i)];
        if (d == 1) continue;
        if (!dims.empty() && cst.back() == in_st[static_cast<std::size_t>(i)] * d) {
            dims.back() *= d;
            cst.back() = in_st[static_cast<std::size_t>(i)];
            continue;
        }
        dims.push_back(d);
        cst.push_back(in_st[static_cast<std::size_t>(i)]);
    }
    gather_strided_bytes(x, 0, dims, cst, out);
    return out;
}

slice_axis resolve_slice(int axis, std::int64_t dim, std::int64_t start, std::int64_t end, std::int64_t step) {
    if (start < 0) start += dim;
    if (end < 0) end += dim;
    std::int64_t count;
    if (step > 0) {
        start = std::clamp<std::int64_t>(start, 0, dim);
        end = std::clamp<std::int64_t>(end, 0, dim);
        count = end > start ? (end - start + step - 1) / step : 0;
    } else {
        start = std::clamp<std::int64_t>(start, 0, dim - 1);
        end = std::clamp<std::int64_t>(end, -1, dim - 1);
        count = start > end ? (start - end + (-step) - 1) / (-step) : 0;
    }
    return {axis, start, step, count};
}

tensor slice(const tensor& x, const std::vector<slice_axis>& axes) {
    const int r = x.rank();
    const auto st = strides_of(x.shape());
    shape_t out_shape = x.shape();
    std::vector<std::int64_t> ost(st.begin(), st.end());
    std::int64_t off = 0;
    for (const auto& a : axes) {
        out_shape[static_cast<std::size_t>(a.axis)] = a.count;
        if (a.count > 0) off += a.start * st[static_cast<std::size_t>(a.axis)];
        ost[static_cast<std::size_t>(a.axis)] = st[static_cast<std::size_t>(a.axis)] * a.step;
    }
    tensor out = detail::new_tensor(out_shape, x.type());
    if (out.numel() == 0) return out;
    std::vector<std::int64_t> dims, cst;
    for (int i = 0; i < r; ++i) {
        const std::int64_t d = out_shape[static_cast<std::size_t>(i)];
        if (d == 1) continue;
        if (!dims.empty() && cst.back() == ost[static_cast<std::size_t>(i)] * d) {
            dims.back() *= d;
            cst.back() = ost[static_cast<std::size_t>(i)];
            continue;
        }
        dims.push_back(d);
        cst.push_back(ost[static_cast<std::size_t>(i)]);
    }
    gather_strided_bytes(x, off, dims, cst, out);
    return out;
}

tensor concat(const std::vector<const tensor*>& inputs, int axis, const std::string& what) {
    if (inputs.empty()) QUANTSIM_THROW(shape_error, what, ": nothing to concatenate");
    const tensor& first = *inputs[0];
    const int r = first.rank();
    shape_t out_shape = first.shape();
    std::int64_t total = 0;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        const tensor& t = *inputs[i];
        if (t.type() != first.type())
            QUANTSIM_THROW(invalid_argument, what, ": input ", i, " has dtype ", name_of(t.type()), ", input 0 has ",
                           name_of(first.type()));
        if (t.rank() != r)
            QUANTSIM_THROW(shape_error, what, ": input ", i, " has shape ", to_string(t.shape()),
                           ", not of rank ", r, " like input 0 ", to_string(first.shape()));
        for (int d = 0; d < r; ++d)
            if (d != axis && t.shape()[static_cast<std::size_t>(d)] != first.shape()[static_cast<std::size_t>(d)])
                QUANTSIM_THROW(shape_error, what, ": input ", i, " has shape ", to_string(t.shape()),
                               ", which differs from input 0 ", to_string(first.shape()), " outside axis ", axis);
        total += t.shape()[static_cast<std::size_t>(axis)];
    }
    out_shape[static_cast<std::size_t>(axis)] = total;
    tensor out = detail::new_tensor(out_shape, first.type());
    const std::size_t es = size_of(first.type());
    std::int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; ++d) outer *= out_shape[static_cast<std::size_t>(d)];
    for (int d = axis + 1; d < r; ++d) inner *= out_shape[static_cast<std::size_t>(d)];
    auto* po = static_cast<std::byte*>(out.raw());
    const std::int64_t orow = total * inner;
    auto body = [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t o = b; o < e; ++o) {
            std::int64_t pos = 0;
            for (const tensor* t : inputs) {
                const std::int64_t chunk = t->shape()[static_cast<std::size_t>(axis)] * inner;
                std::memcpy(po + (o * orow + pos) * es, static_cast<const std::byte*>(t->raw()) + o * chunk * es,
                            static_cast<std::size_t>(chunk) * es);
                pos += chunk;
            }
        }
    };
    if (out.numel() >= 65536)
        detail::parallel_range(outer, 1, body);
    else
        body(0, outer);
    return out;
}

tensor gather(const tensor& data, const tensor& indices, int axis, const std::string& what) {
    const int r = data.rank();
    const std::int64_t dim = data.shape()[static_cast<std::size_t>(axis)];
    std::vector<std::int64_t> idx(static_cast<std::size_t>(indices.numel()));
    for (std::int64_t i = 0; i < indices.numel(); ++i) {
        std::int64_t v;
        if (indices.type() == dtype::int64)
            v = indices.data<std::int64_t>()[i];
        else if (indices.type() == dtype::int32)
            v = indices.data<std::int32_t>()[i];
        else
            QUANTSIM_THROW(invalid_argument, what, ": indices must be int64 or int32, got ", name_of(indices.type()));
        if (v < -dim || v >= dim)
            QUANTSIM_THROW(invalid_argument, what, ": index ", v, " is out of range for axis ", axis, " of size ", dim);
        idx[static_cast<std::size_t>(i)] = v < 0 ? v + dim : v;
    }
    shape_t out_shape;
    for (int d = 0; d < axis; ++d) out_shape.push_back(data.shape()[static_cast<std::size_t>(d)]);
    for (auto d : indices.shape()) out_shape.push_back(d);
    for (int d = axis + 1; d < r; ++d) out_shape.push_back(data.shape()[static_cast<std::size_t>(d)]);
    tensor out = detail::new_tensor(out_shape, data.type());
    std::int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; ++d) outer *= data.shape()[static_cast<std::size_t>(d)];
    for (int d = axis + 1; d < r; ++d) inner *= data.shape()[static_cast<std::size_t>(d)];
    const std::size_t es = size_of(data.type());
    const auto* pd = static_cast<const std::byte*>(data.raw());
    auto* po = static_cast<std::byte*>(out.raw());
    const std::int64_t ni = static_cast<std::int64_t>(idx.size());
    for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t j = 0; j < ni; ++j)
            std::memcpy(po + ((o * ni + j) * inner) * es, pd + ((o * dim + idx[static_cast<std::size_t>(j)]) * inner) * es,
                        static_cast<std::size_t>(inner) * es);
    return out;
}

tensor pad(const tensor& x, const std::vector<std::int64_t>& pads, pad_mode mode, double value,
           const std::string& what) {
    const int r = x.rank();
    if (static_cast<int>(pads.size()) != 2 * r)
        QUANTSIM_THROW(shape_error, what, ": pads has ", pads.size(), " entries, expected ", 2 * r);
    shape_t out_shape(static_cast<std::size_t>(r));
    for (int i = 0; i < r; ++i) {
        const std::int64_t d = x.shape()[static_cast<std::size_t>(i)] + pads[static_cast<std::size_t>(i)] +
                               pads[static_cast<std::size_t>(i + r)];
        if (d < 0) QUANTSIM_THROW(shape_error, what, ": pads make axis ", i, " negative");
        if (mode != pad_mode::constant && x.shape()[static_cast<std::size_t>(i)] == 0 && d > 0)
            QUANTSIM_THROW(shape_error, what, ": cannot ", mode == pad_mode::edge ? "edge" : "reflect/wrap",
                           "-pad an empty axis ", i);
        if (mode == pad_mode::reflect &&
            (pads[static_cast<std::size_t>(i)] >= x.shape()[static_cast<std::size_t>(i)] ||
             pads[static_cast<std::size_t>(i + r)] >= x.shape()[static_cast<std::size_t>(i)]) &&
            (pads[static_cast<std::size_t>(i)] > 0 || pads[static_cast<std::size_t>(i + r)] > 0))
            QUANTSIM_THROW(unsupported_error, what, ": reflect pads must be smaller than the axis (axis ", i, ")");
        out_shape[static_cast<std::size_t>(i)] = d;
    }
    tensor out = detail::new_tensor(out_shape, x.type());
    const std::size_t es = size_of(x.type());
    // Constant value in the tensor's dtype.
    tensor cval = tensor::empty({}, x.type());
    switch (x.type()) {
        case dtype::float32: *cval.data<float>() = static_cast<float>(value); break;
        case dtype::float64: *cval.data<double>() = value; break;
        case dtype::int64: *cval.data<std::int64_t>() = static_cast<std::int64_t>(value); break;
        case dtype::int32: *cval.data<std::int32_t>() = static_cast<std::int32_t>(value); break;
        default: std::memset(cval.raw(), 0, es); break;
    }
    const auto st = strides_of(x.shape());
    const auto ost = strides_of(out_shape);
    const auto* px = static_cast<const std::byte*>(x.raw());
    auto* po = static_cast<std::byte*>(out.raw());
    const std::int64_t n = out.numel();
    for (std::int64_t o = 0; o < n; ++o) {
        std::int64_t src = 0;
        bool inside = true;
        for (int i = 0; i < r; ++i) {
            const std::int64_t dim = x.shape()[static_cast<std::size_t>(i)];
            std::int64_t c = (o / ost[static_cast<std::size_t>(i)]) % out_shape[static_cast<std::size_t>(i)] -
                             pads[static_cast<std::size_t>(i)];
            if (c < 0 || c >= dim) {
                switch (mode) {
                    case pad_mode::constant: inside = false; break;
                    case pad_mode::edge: c = std::clamp<std::int64_t>(c, 0, dim - 1); break;
                    case pad_mode::reflect: {
                        const std::int64_t period = 2 * (dim - 1);
                        if (period == 0) {
                            c = 0;
                        } else {
                            c = ((c % period) + period) % period;
                            if (c >= dim) c = period - c;
                        }
                        break;
                    }
                    case pad_mode::wrap: c = ((c % dim) + dim) % dim; break;
                }
            }
            if (!inside) break;
            src += c * st[static_cast<std::size_t>(i)];
        }
        std::memcpy(po + o * static_cast<std::int64_t>(es), inside ? px + src * static_cast<std::int64_t>(es) : static_cast<const std::byte*>(cval.raw()), es);
    }
    return out;
}

tensor tile(const tensor& x, const std::vector<std::int64_t>& repeats) {
    const int r = x.rank();
    shape_t out_shape(static_cast<std::size_t>(r));
    for (int i = 0; i < r; ++i) out_shape[static_cast<std::size_t>(i)] = x.shape()[static_cast<std::size_t>(i)] * repeats[static_cast<std::size_t>(i)];
    tensor out = detail::new_tensor(out_shape, x.type());
    const std::size_t es = size_of(x.type());
    const auto st = strides_of(x.shape());
    const auto ost = strides_of(out_shape);
    const auto* px = static_cast<const std::byte*>(x.raw());
    auto* po = static_cast<std::byte*>(out.raw());
    for (std::int64_t o = 0; o < out.numel(); ++o) {
        std::int64_t src = 0;
        for (int i = 0; i < r; ++i) {
            const std::int64_t c = (o / ost[static_cast<std::size_t>(i)]) % out_shape[static_cast<std::size_t>(i)];
            src += (c % x.shape()[static_cast<std::size_t>(i)]) * st[static_cast<std::size_t>(i)];
        }
        std::memcpy(po + o * static_cast<std::int64_t>(es), px + src * static_cast<std::int64_t>(es), es);
    }
    return out;
}

}  // namespace quantsim
