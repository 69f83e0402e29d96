// Shape and data-movement ops: Shape, Size, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice,
// Gather, Expand, Identity, Dropout, Pad, Tile, ConstantOfShape, Range, Constant. They run on every dtype
// (int64 shape arithmetic flows through them). Reshape-like ops return views that share the input's storage.
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>

#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/elementwise.hpp>
#include <quantsim/ir/kernels/layout.hpp>

#include "common.hpp"

namespace quantsim::detail {

namespace {

// Range's element count max(ceil((limit - start) / delta), 0) without overflow: limit - start of two int64 values
// from the model can exceed int64 (undefined behaviour), so the span is taken in uint64, where it always fits.
std::int64_t range_count(std::int64_t start, std::int64_t limit, std::int64_t delta, const std::string& desc) {
    if (delta == 0) QUANTSIM_THROW(invalid_argument, desc, ": delta is 0");
    if (delta > 0 ? limit <= start : limit >= start) return 0;
    const std::uint64_t span = delta > 0 ? static_cast<std::uint64_t>(limit) - static_cast<std::uint64_t>(start)
                                         : static_cast<std::uint64_t>(start) - static_cast<std::uint64_t>(limit);
    const std::uint64_t step = delta > 0 ? static_cast<std::uint64_t>(delta) : 0u - static_cast<std::uint64_t>(delta);
    const std::uint64_t n = span / step + (span % step != 0 ? 1 : 0);
    if (n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        QUANTSIM_THROW(resource_error, desc, ": Range of ", n, " elements");
    return static_cast<std::int64_t>(n);
}

// The float form: the quotient is checked before it becomes an integer (a NaN or a count beyond int64 would make
// the conversion undefined behaviour).
std::int64_t range_count(float start, float limit, float delta, const std::string& desc) {
    if (delta == 0.0f) QUANTSIM_THROW(invalid_argument, desc, ": delta is 0");
    const double n = std::ceil((static_cast<double>(limit) - start) / delta);
    if (std::isnan(n)) QUANTSIM_THROW(numeric_error, desc, ": start, limit and delta must not be NaN");
    if (n <= 0) return 0;
    if (!(n < 0x1p62)) QUANTSIM_THROW(resource_error, desc, ": Range of ", n, " elements");
    return static_cast<std::int64_t>(n);
}

value_info info_from(dtype t, const std::vector<sdim>& d) { return make_info(t, d); }

// ---- Reshape -----------------------------------------------------------------------------------------------------

shape_t resolve_reshape(const shape_t& in, const std::vector<std::int64_t>& target, bool allowzero,
                        const std::string& desc) {
    shape_t out(target.size());
    std::int64_t known = 1;
    int infer = -1;
    for (std::size_t i = 0; i < target.size(); ++i) {
        std::int64_t d = target[i];
        if (d == 0 && !allowzero) {
            if (i >= in.size())
                QUANTSIM_THROW(shape_error, desc, ": shape entry ", i, " is 0 (copy) but the input has rank ",
                               in.size());
            d = in[i];
        }
        if (d == -1) {
            if (infer >= 0) QUANTSIM_THROW(shape_error, desc, ": more than one -1 in the target shape");
            infer = static_cast<int>(i);
            out[i] = -1;
            continue;
        }
        if (d < 0) QUANTSIM_THROW(shape_error, desc, ": invalid target dimension ", d);
        out[i] = d;
        known *= d;
    }
    std::int64_t numel = 1;
    for (auto d : in) numel *= d;
    if (infer >= 0) {
        if (known == 0 || numel % known != 0)
            QUANTSIM_THROW(shape_error, desc, ": cannot reshape ", to_string(in), " to ", to_string(shape_t(target)));
        out[static_cast<std::size_t>(infer)] = numel / known;
    } else if (known != numel) {
        QUANTSIM_THROW(shape_error, desc, ": cannot reshape ", to_string(in), " (", numel, " elements) to ",
                       to_string(out));
    }
    return out;
}

std::vector<value_info> infer_reshape(const node& n, const op_inputs_info& in) {
    const dtype t = type_of(in, 0);
    const auto target = const_ints(in, 1, n.describe(), "shape");
    if (!target) {
        if (const value_info* s = in_info(in, 1); s && s->shape.size() == 1 && s->shape[0] >= 0)
            return {info_from(t, std::vector<sdim>(static_cast<std::size_t>(s->shape[0])))};
        return {unknown_shape(t)};
    }
    const bool allowzero = n.attr_int("allowzero", 0) != 0;
    auto xd = dims_of_input(in, 0);
    std::vector<sdim> out(target->size());
    int infer = -1;
    std::int64_t known_out = 1;
    std::vector<std::string> out_syms;
    bool out_anon = false;
    for (std::size_t i = 0; i < target->size(); ++i) {
        const std::int64_t d = (*target)[i];
        if (d == 0 && !allowzero) {
            if (!xd) continue;
            if (i >= xd->size())
                QUANTSIM_THROW(shape_error, n.describe(), ": shape entry ", i, " copies a dimension the input lacks");
            out[i] = (*xd)[i];
        } else if (d == -1) {
            infer = static_cast<int>(i);
            continue;
        } else {
            out[i] = {d, {}};
        }
        // Dimensions come from the model file: their product may overflow (UB; found by fuzz_onnx).
        if (out[i].known()) {
            if (__builtin_mul_overflow(known_out, out[i].v, &known_out))
                QUANTSIM_THROW(resource_error, n.describe(), ": the element count of the target shape overflows");
        } else if (!out[i].p.empty()) {
            out_syms.push_back(out[i].p);
        } else {
            out_anon = true;
        }
    }
    if (infer >= 0 && xd) {
        std::int64_t known_in = 1;
        std::vector<std::string> in_syms;
        bool in_anon = false;
        for (const auto& d : *xd) {
            if (d.known()) {
                if (__builtin_mul_overflow(known_in, d.v, &known_in))
                    QUANTSIM_THROW(resource_error, n.describe(), ": the element count of the input shape overflows");
            } else if (!d.p.empty()) {
                in_syms.push_back(d.p);
            } else {
                in_anon = true;
            }
        }
        std::sort(in_syms.begin(), in_syms.end());
        std::sort(out_syms.begin(), out_syms.end());
        // The -1 is a plain number when the unknown factors on both sides are the same symbols.
        if (!in_anon && !out_anon && in_syms == out_syms && known_out != 0) {
            if (known_in % known_out != 0)
                QUANTSIM_THROW(shape_error, n.describe(), ": cannot reshape to the target shape");
            out[static_cast<std::size_t>(infer)] = {known_in / known_out, {}};
        }
    }
    return {info_from(t, out)};
}

// ---- Squeeze / Unsqueeze -----------------------------------------------------------------------------------------

shape_t squeeze_shape(const shape_t& in, const std::vector<std::int64_t>* axes, const std::string& desc) {
    const int r = static_cast<int>(in.size());
    std::vector<bool> drop(static_cast<std::size_t>(r), false);
    if (axes) {
        for (auto a : *axes) {
            if (a < -r || a >= r) QUANTSIM_THROW(invalid_argument, desc, ": axis ", a, " is out of range for rank ", r);
            const int ax = normalize_axis(a, r);
            if (in[static_cast<std::size_t>(ax)] != 1)
                QUANTSIM_THROW(shape_error, desc, ": cannot squeeze axis ", ax, " of size ", in[static_cast<std::size_t>(ax)],
                               " (shape ", to_string(in), ")");
            drop[static_cast<std::size_t>(ax)] = true;
        }
    } else {
        for (int i = 0; i < r; ++i) drop[static_cast<std::size_t>(i)] = in[static_cast<std::size_t>(i)] == 1;
    }
    shape_t out;
    for (int i = 0; i < r; ++i)
        if (!drop[static_cast<std::size_t>(i)]) out.push_back(in[static_cast<std::size_t>(i)]);
    return out;
}

std::vector<bool> unsqueeze_mask(int in_rank, const std::vector<std::int64_t>& axes, const std::string& desc) {
    const int r = in_rank + static_cast<int>(axes.size());
    std::vector<bool> ins(static_cast<std::size_t>(r), false);
    for (auto a : axes) {
        if (a < -r || a >= r) QUANTSIM_THROW(invalid_argument, desc, ": axis ", a, " is out of range for rank ", r);
        const int ax = normalize_axis(a, r);
        if (ins[static_cast<std::size_t>(ax)]) QUANTSIM_THROW(invalid_argument, desc, ": axis ", a, " repeated");
        ins[static_cast<std::size_t>(ax)] = true;
    }
    return ins;
}

// ---- Slice -------------------------------------------------------------------------------------------------------

std::vector<slice_axis> slice_axes(const shape_t& shape, const std::vector<std::int64_t>& starts,
                                   const std::vector<std::int64_t>& ends, const std::vector<std::int64_t>* axes_in,
                                   const std::vector<std::int64_t>* steps_in, const std::string& desc) {
    const int r = static_cast<int>(shape.size());
    if (starts.size() != ends.size() || (axes_in && axes_in->size() != starts.size()) ||
        (steps_in && steps_in->size() != starts.size()))
        QUANTSIM_THROW(shape_error, desc, ": starts, ends, axes and steps must have the same length");
    std::vector<slice_axis> out;
    std::vector<bool> seen(static_cast<std::size_t>(r), false);
    for (std::size_t i = 0; i < starts.size(); ++i) {
        const std::int64_t a = axes_in ? (*axes_in)[i] : static_cast<std::int64_t>(i);
        if (a < -r || a >= r) QUANTSIM_THROW(invalid_argument, desc, ": axis ", a, " is out of range for rank ", r);
        const int ax = normalize_axis(a, r);
        if (seen[static_cast<std::size_t>(ax)]) QUANTSIM_THROW(invalid_argument, desc, ": axis ", a, " repeated");
        seen[static_cast<std::size_t>(ax)] = true;
        const std::int64_t step = steps_in ? (*steps_in)[i] : 1;
        if (step == 0) QUANTSIM_THROW(invalid_argument, desc, ": slice step 0");
        out.push_back(resolve_slice(ax, shape[static_cast<std::size_t>(ax)], starts[i], ends[i], step));
    }
    return out;
}

// ---- registration helpers ----------------------------------------------------------------------------------------

void add(op_registry& r, op_schema s) { r.add(std::move(s)); }

}  // namespace

void register_shape_ops(op_registry& reg) {
    {  // Shape
        op_schema s = schema("Shape", 1, 1);
        s.infer = [](const node& n, const op_inputs_info& in) {
            const int rank = rank_of(in, 0);
            if (rank < 0) {
                value_info v = unknown_shape(dtype::int64);
                v.shape = {-1};
                v.shape_known = true;
                return std::vector<value_info>{v};
            }
            std::int64_t start = n.attr_int("start", 0), end = n.attr_int("end", rank);
            if (start < 0) start += rank;
            if (end < 0) end += rank;
            start = std::clamp<std::int64_t>(start, 0, rank);
            end = std::clamp<std::int64_t>(end, 0, rank);
            return std::vector<value_info>{make_info(dtype::int64, shape_t{std::max<std::int64_t>(0, end - start)})};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const bool has_start = n.has_attr("start"), has_end = n.has_attr("end");
            const std::int64_t start_attr = n.attr_int("start", 0), end_attr = n.attr_int("end", 0);
            const std::string desc = n.describe();
            return make_kernel([=](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                const std::int64_t rank = x.rank();
                std::int64_t start = has_start ? start_attr : 0, end = has_end ? end_attr : rank;
                if (start < 0) start += rank;
                if (end < 0) end += rank;
                start = std::clamp<std::int64_t>(start, 0, rank);
                end = std::clamp<std::int64_t>(end, 0, rank);
                std::vector<std::int64_t> v(x.shape().begin() + start, x.shape().begin() + std::max(start, end));
                outs[0] = tensor::from(v, {static_cast<std::int64_t>(v.size())});
            });
        };
        add(reg, std::move(s));
    }
    {  // Size
        op_schema s = schema("Size", 1, 1);
        s.infer = [](const node&, const op_inputs_info&) { return std::vector<value_info>{make_info(dtype::int64, shape_t{})}; };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            return make_kernel([desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const std::vector<std::int64_t> v{input(ins, 0, desc).numel()};
                outs[0] = tensor::from(v, {});
            });
        };
        add(reg, std::move(s));
    }
    {  // Reshape (view)
        op_schema s = schema("Reshape", 2, 2);
        s.moves_data = true;
        s.infer = infer_reshape;
        s.create = [](const node& n, const op_inputs_info&) {
            const bool allowzero = n.attr_int("allowzero", 0) != 0;
            const std::string desc = n.describe();
            return make_kernel([allowzero, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                const auto target = int_values(input(ins, 1, desc), desc, "shape");
                outs[0] = x.reshape(resolve_reshape(x.shape(), target, allowzero, desc));
            });
        };
        add(reg, std::move(s));
    }
    {  // Flatten (view)
        op_schema s = schema("Flatten", 1, 1);
        s.moves_data = true;
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = type_of(in, 0);
            auto xd = dims_of_input(in, 0);
            if (!xd) return std::vector<value_info>{make_info(t, std::vector<sdim>(2))};
            const int r = static_cast<int>(xd->size());
            std::int64_t axis = n.attr_int("axis", 1);
            if (axis < -r || axis > r) QUANTSIM_THROW(invalid_argument, n.describe(), ": axis ", axis, " out of range");
            if (axis < 0) axis += r;
            sdim a{1, {}}, b{1, {}};
            for (int i = 0; i < r; ++i) {
                sdim& t2 = i < axis ? a : b;
                const sdim& d = (*xd)[static_cast<std::size_t>(i)];
                if (!t2.known()) continue;
                if (d.known()) t2.v *= d.v;
                else t2 = (t2.v == 1 ? d : sdim{});
            }
            return std::vector<value_info>{make_info(t, std::vector<sdim>{a, b})};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::int64_t axis_attr = n.attr_int("axis", 1);
            const std::string desc = n.describe();
            return make_kernel([axis_attr, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                const int r = x.rank();
                if (axis_attr < -r || axis_attr > r)
                    QUANTSIM_THROW(invalid_argument, desc, ": axis ", axis_attr, " out of range for rank ", r);
                const std::int64_t axis = axis_attr < 0 ? axis_attr + r : axis_attr;
                std::int64_t a = 1, b = 1;
                for (int i = 0; i < r; ++i) (i < axis ? a : b) *= x.shape()[static_cast<std::size_t>(i)];
                outs[0] = x.reshape({a, b});
            });
        };
        add(reg, std::move(s));
    }
    {  // Squeeze (view)
        op_schema s = schema("Squeeze", 1, 2);
        s.moves_data = true;
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = type_of(in, 0);
            auto xd = dims_of_input(in, 0);
            std::optional<std::vector<std::int64_t>> axes;
            if (n.has_input(1)) {
                axes = const_ints(in, 1, n.describe(), "axes");
                if (!axes) return std::vector<value_info>{unknown_shape(t)};
            }
            if (!xd) return std::vector<value_info>{unknown_shape(t)};
            const int r = static_cast<int>(xd->size());
            std::vector<bool> drop(static_cast<std::size_t>(r), false);
            if (axes) {
                for (auto a : *axes) {
                    const int ax = normalize_axis(a, r, "Squeeze axis");
                    const sdim& d = (*xd)[static_cast<std::size_t>(ax)];
                    if (d.known() && d.v != 1)
                        QUANTSIM_THROW(shape_error, n.describe(), ": cannot squeeze axis ", ax, " of size ", d.v);
                    drop[static_cast<std::size_t>(ax)] = true;
                }
            } else {
                for (int i = 0; i < r; ++i) {
                    const sdim& d = (*xd)[static_cast<std::size_t>(i)];
                    if (!d.known()) return std::vector<value_info>{unknown_shape(t)};
                    drop[static_cast<std::size_t>(i)] = d.v == 1;
                }
            }
            std::vector<sdim> out;
            for (int i = 0; i < r; ++i)
                if (!drop[static_cast<std::size_t>(i)]) out.push_back((*xd)[static_cast<std::size_t>(i)]);
            return std::vector<value_info>{make_info(t, out)};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            return make_kernel([desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                std::vector<std::int64_t> axes;
                const tensor* a = optional_input(ins, 1);
                if (a) axes = int_values(*a, desc, "axes");
                outs[0] = x.reshape(squeeze_shape(x.shape(), a ? &axes : nullptr, desc));
            });
        };
        add(reg, std::move(s));
    }
    {  // Unsqueeze (view)
        op_schema s = schema("Unsqueeze", 2, 2);
        s.moves_data = true;
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = type_of(in, 0);
            auto xd = dims_of_input(in, 0);
            const auto axes = const_ints(in, 1, n.describe(), "axes");
            if (!xd || !axes) return std::vector<value_info>{unknown_shape(t)};
            const auto mask = unsqueeze_mask(static_cast<int>(xd->size()), *axes, n.describe());
            std::vector<sdim> out;
            std::size_t k = 0;
            for (bool m : mask) out.push_back(m ? sdim{1, {}} : (*xd)[k++]);
            return std::vector<value_info>{make_info(t, out)};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            return make_kernel([desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                const auto mask = unsqueeze_mask(x.rank(), int_values(input(ins, 1, desc), desc, "axes"), desc);
                shape_t out;
                std::size_t k = 0;
                for (bool m : mask) out.push_back(m ? 1 : x.shape()[k++]);
                outs[0] = x.reshape(out);
            });
        };
        add(reg, std::move(s));
    }
    {  // Identity / Dropout (inference): the same tensor
        for (const char* name : {"Identity", "Dropout"}) {
            op_schema s = schema(name, 1, name[0] == 'D' ? 3 : 1, 1, name[0] == 'D' ? 2 : 1);
            s.moves_data = true;
            s.infer = [](const node&, const op_inputs_info& in) { return std::vector<value_info>{same_as(in_info(in, 0))}; };
            s.create = [](const node& n, const op_inputs_info&) {
                if (n.op_type == "Dropout" && n.outputs.size() > 1 && !n.outputs[1].empty())
                    QUANTSIM_THROW(unsupported_error, n.describe(), ": the mask output of Dropout is not supported");
                const std::string desc = n.describe();
                return make_kernel([desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                    outs[0] = input(ins, 0, desc);
                });
            };
            add(reg, std::move(s));
        }
    }
    {  // Transpose
        op_schema s = schema("Transpose", 1, 1);
        s.moves_data = true;
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = type_of(in, 0);
            auto xd = dims_of_input(in, 0);
            if (!xd) return std::vector<value_info>{unknown_shape(t)};
            const int r = static_cast<int>(xd->size());
            std::vector<std::int64_t> perm(static_cast<std::size_t>(r));
            std::iota(perm.rbegin(), perm.rend(), 0);
            perm = n.attr_ints("perm", perm);
            if (static_cast<int>(perm.size()) != r)
                QUANTSIM_THROW(shape_error, n.describe(), ": perm has ", perm.size(), " entries for rank ", r);
            std::vector<sdim> out;
            std::vector<bool> seen(static_cast<std::size_t>(r), false);
            for (auto p : perm) {
                if (p < 0 || p >= r || seen[static_cast<std::size_t>(p)])
                    QUANTSIM_THROW(graph_error, n.describe(), ": perm is not a permutation");
                seen[static_cast<std::size_t>(p)] = true;
                out.push_back((*xd)[static_cast<std::size_t>(p)]);
            }
            return std::vector<value_info>{make_info(t, out)};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const bool has_perm = n.has_attr("perm");
            const std::vector<std::int64_t> perm_attr = n.attr_ints("perm", std::vector<std::int64_t>{});
            const std::string desc = n.describe();
            return make_kernel([=](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                std::vector<std::int64_t> perm = perm_attr;
                if (!has_perm) {
                    perm.resize(static_cast<std::size_t>(x.rank()));
                    std::iota(perm.rbegin(), perm.rend(), 0);
                }
                if (static_cast<int>(perm.size()) != x.rank())
                    QUANTSIM_THROW(shape_error, desc, ": perm has ", perm.size(), " entries for input ", to_string(x.shape()));
                try {
                    outs[0] = transpose(x, perm);
                } catch (const shape_error& e) {
                    QUANTSIM_THROW(shape_error, desc, ": ", e.what());
                }
            });
        };
        add(reg, std::move(s));
    }
    {  // Concat
        op_schema s = schema("Concat", 1, 1 << 20);
        s.moves_data = true;
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = type_of(in, 0);
            std::optional<std::vector<sdim>> out;
            int axis = 0;
            for (std::size_t i = 0; i < n.inputs.size(); ++i) {
                auto d = dims_of_input(in, i);
                if (!d) {
                    const int rr = out ? static_cast<int>(out->size()) : -1;
                    if (rr < 0) continue;
                    (*out)[static_cast<std::size_t>(axis)] = {};
                    continue;
                }
                if (!out) {
                    axis = normalize_axis(n.attr_int("axis"), static_cast<int>(d->size()), "Concat axis");
                    out = d;
                    continue;
                }
                if (d->size() != out->size())
                    QUANTSIM_THROW(shape_error, n.describe(), ": input ", i, " has rank ", d->size(), ", input 0 has ",
                                   out->size());
                for (std::size_t k = 0; k < d->size(); ++k) {
                    sdim& o = (*out)[k];
                    const sdim& v = (*d)[k];
                    if (static_cast<int>(k) == axis) {
                        o = o.known() && v.known() ? sdim{o.v + v.v, {}} : sdim{};
                    } else if (o.known() && v.known() && o.v != v.v) {
                        QUANTSIM_THROW(shape_error, n.describe(), ": input ", i, " has size ", v.v, " on axis ", k,
                                       ", input 0 has ", o.v);
                    } else if (!o.known() && v.known()) {
                        o = v;
                    }
                }
            }
            // Inputs of unknown shape make the concatenated axis unknown.
            for (std::size_t i = 0; i < n.inputs.size() && out; ++i)
                if (!dims_of_input(in, i)) (*out)[static_cast<std::size_t>(axis)] = {};
            if (!out) return std::vector<value_info>{unknown_shape(t)};
            return std::vector<value_info>{make_info(t, *out)};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::int64_t axis_attr = n.attr_int("axis");
            const std::string desc = n.describe();
            return make_kernel([axis_attr, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                std::vector<const tensor*> ts;
                for (std::size_t i = 0; i < ins.size(); ++i) ts.push_back(&input(ins, i, desc));
                const int r = ts[0]->rank();
                if (axis_attr < -r || axis_attr >= r)
                    QUANTSIM_THROW(invalid_argument, desc, ": axis ", axis_attr, " is out of range for rank ", r);
                outs[0] = ::quantsim::concat(ts, normalize_axis(axis_attr, r), desc);
            });
        };
        add(reg, std::move(s));
    }
    {  // Split (X, split?) -> outputs
        op_schema s = schema("Split", 1, 2, 1, 1 << 20);
        s.moves_data = true;
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = type_of(in, 0);
            const std::size_t k = n.outputs.size();
            auto xd = dims_of_input(in, 0);
            std::vector<value_info> outs(k, unknown_shape(t));
            if (!xd) return outs;
            const int axis = normalize_axis(n.attr_int("axis", 0), static_cast<int>(xd->size()), "Split axis");
            const sdim d = (*xd)[static_cast<std::size_t>(axis)];
            std::optional<std::vector<std::int64_t>> split;
            if (n.has_input(1)) split = const_ints(in, 1, n.describe(), "split");
            for (std::size_t i = 0; i < k; ++i) {
                std::vector<sdim> o = *xd;
                if (split) {
                    if (split->size() != k)
                        QUANTSIM_THROW(shape_error, n.describe(), ": split has ", split->size(), " entries for ", k,
                                       " outputs");
                    o[static_cast<std::size_t>(axis)] = {(*split)[i], {}};
                } else if (d.known() && !n.has_input(1)) {
                    const std::int64_t chunk = (d.v + static_cast<std::int64_t>(k) - 1) / static_cast<std::int64_t>(k);
                    o[static_cast<std::size_t>(axis)] = {std::max<std::int64_t>(0, std::min(chunk, d.v - chunk * static_cast<std::int64_t>(i))), {}};
                } else {
                    o[static_cast<std::size_t>(axis)] = {};
                }
                outs[i] = make_info(t, o);
            }
            return outs;
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::int64_t axis_attr = n.attr_int("axis", 0);
            const std::string desc = n.describe();
            return make_kernel([axis_attr, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                if (axis_attr < -x.rank() || axis_attr >= x.rank())
                    QUANTSIM_THROW(invalid_argument, desc, ": axis ", axis_attr, " out of range for ", to_string(x.shape()));
                const int axis = normalize_axis(axis_attr, x.rank());
                const std::int64_t dim = x.shape()[static_cast<std::size_t>(axis)];
                const std::int64_t k = static_cast<std::int64_t>(outs.size());
                std::vector<std::int64_t> split;
                if (const tensor* sp = optional_input(ins, 1)) {
                    split = int_values(*sp, desc, "split");
                    if (static_cast<std::int64_t>(split.size()) != k)
                        QUANTSIM_THROW(shape_error, desc, ": split has ", split.size(), " entries for ", k, " outputs");
                    std::int64_t sum = 0;
                    for (auto v : split) {
                        if (v < 0) QUANTSIM_THROW(shape_error, desc, ": negative split size");
                        sum += v;
                    }
                    if (sum != dim)
                        QUANTSIM_THROW(shape_error, desc, ": split sizes sum to ", sum, ", axis ", axis, " has ", dim);
                } else {
                    const std::int64_t chunk = (dim + k - 1) / k;
                    for (std::int64_t i = 0; i < k; ++i) split.push_back(std::max<std::int64_t>(0, std::min(chunk, dim - chunk * i)));
                }
                std::int64_t start = 0;
                for (std::int64_t i = 0; i < k; ++i) {
                    const std::int64_t len = split[static_cast<std::size_t>(i)];
                    outs[static_cast<std::size_t>(i)] = slice(x, {slice_axis{axis, start, 1, len}});
                    start += len;
                }
            });
        };
        add(reg, std::move(s));
    }
    {  // Slice (X, starts, ends, axes?, steps?)
        op_schema s = schema("Slice", 3, 5);
        s.moves_data = true;
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = type_of(in, 0);
            auto xd = dims_of_input(in, 0);
            const std::string desc = n.describe();
            const auto starts = const_ints(in, 1, desc, "starts"), ends = const_ints(in, 2, desc, "ends");
            std::optional<std::vector<std::int64_t>> axes, steps;
            bool ok = starts && ends;
            if (n.has_input(3)) ok = ok && (axes = const_ints(in, 3, desc, "axes")).has_value();
            if (n.has_input(4)) ok = ok && (steps = const_ints(in, 4, desc, "steps")).has_value();
            if (!xd) return std::vector<value_info>{unknown_shape(t)};
            if (!ok) return std::vector<value_info>{make_info(t, std::vector<sdim>(xd->size()))};
            std::vector<sdim> out = *xd;
            const int r = static_cast<int>(xd->size());
            for (std::size_t i = 0; i < starts->size(); ++i) {
                const std::int64_t a = axes ? (*axes)[i] : static_cast<std::int64_t>(i);
                const int ax = normalize_axis(a, r, "Slice axis");
                const sdim& d = (*xd)[static_cast<std::size_t>(ax)];
                const std::int64_t step = steps ? (*steps)[i] : 1;
                if (step == 0) QUANTSIM_THROW(invalid_argument, desc, ": slice step 0");
                if (!d.known()) {
                    // An unknown dim sliced from 0 to "the end" stays the same symbol.
                    if (!((*starts)[i] == 0 && (*ends)[i] >= std::numeric_limits<std::int32_t>::max() && step == 1))
                        out[static_cast<std::size_t>(ax)] = {};
                    continue;
                }
                out[static_cast<std::size_t>(ax)] = {resolve_slice(ax, d.v, (*starts)[i], (*ends)[i], step).count, {}};
            }
            return std::vector<value_info>{make_info(t, out)};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            return make_kernel([desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                const auto starts = int_values(input(ins, 1, desc), desc, "starts");
                const auto ends = int_values(input(ins, 2, desc), desc, "ends");
                std::vector<std::int64_t> axes, steps;
                const tensor* a = optional_input(ins, 3);
                const tensor* st = optional_input(ins, 4);
                if (a) axes = int_values(*a, desc, "axes");
                if (st) steps = int_values(*st, desc, "steps");
                outs[0] = slice(x, slice_axes(x.shape(), starts, ends, a ? &axes : nullptr, st ? &steps : nullptr, desc));
            });
        };
        add(reg, std::move(s));
    }
    {  // Gather
        op_schema s = schema("Gather", 2, 2);
        s.moves_data = true;
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = type_of(in, 0);
            auto dd = dims_of_input(in, 0), id = dims_of_input(in, 1);
            if (!dd || !id) return std::vector<value_info>{unknown_shape(t)};
            const int axis = normalize_axis(n.attr_int("axis", 0), static_cast<int>(dd->size()), "Gather axis");
            std::vector<sdim> out(dd->begin(), dd->begin() + axis);
            out.insert(out.end(), id->begin(), id->end());
            out.insert(out.end(), dd->begin() + axis + 1, dd->end());
            return std::vector<value_info>{make_info(t, out)};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::int64_t axis_attr = n.attr_int("axis", 0);
            const std::string desc = n.describe();
            return make_kernel([axis_attr, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                if (x.rank() == 0) QUANTSIM_THROW(shape_error, desc, ": data must have rank >= 1");
                if (axis_attr < -x.rank() || axis_attr >= x.rank())
                    QUANTSIM_THROW(invalid_argument, desc, ": axis ", axis_attr, " out of range for ", to_string(x.shape()));
                outs[0] = gather(x, input(ins, 1, desc), normalize_axis(axis_attr, x.rank()), desc);
            });
        };
        add(reg, std::move(s));
    }
    {  // Expand
        op_schema s = schema("Expand", 2, 2);
        s.moves_data = true;
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = type_of(in, 0);
            auto xd = dims_of_input(in, 0);
            const auto shape = const_ints(in, 1, n.describe(), "shape");
            if (!xd || !shape) return std::vector<value_info>{unknown_shape(t)};
            std::vector<sdim> sd;
            for (auto v : *shape) sd.push_back({v, {}});
            return std::vector<value_info>{make_info(t, broadcast_dims(*xd, sd, n.describe()))};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            return make_kernel([desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const auto shape = int_values(input(ins, 1, desc), desc, "shape");
                outs[0] = expand(input(ins, 0, desc), shape_t(shape.begin(), shape.end()), desc);
            });
        };
        add(reg, std::move(s));
    }
    {  // Pad (X, pads, constant_value?, axes?)
        op_schema s = schema("Pad", 2, 4);
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = type_of(in, 0);
            auto xd = dims_of_input(in, 0);
            const auto pads = const_ints(in, 1, n.describe(), "pads");
            if (!xd) return std::vector<value_info>{unknown_shape(t)};
            std::optional<std::vector<std::int64_t>> axes;
            if (n.has_input(3)) axes = const_ints(in, 3, n.describe(), "axes");
            if (!pads || (n.has_input(3) && !axes)) return std::vector<value_info>{make_info(t, std::vector<sdim>(xd->size()))};
            const int r = static_cast<int>(xd->size());
            std::vector<int> ax;
            if (axes)
                for (auto a : *axes) ax.push_back(normalize_axis(a, r, "Pad axis"));
            else
                for (int i = 0; i < r; ++i) ax.push_back(i);
            if (pads->size() != 2 * ax.size())
                QUANTSIM_THROW(shape_error, n.describe(), ": pads has ", pads->size(), " entries, expected ", 2 * ax.size());
            std::vector<sdim> out = *xd;
            for (std::size_t i = 0; i < ax.size(); ++i) {
                sdim& d = out[static_cast<std::size_t>(ax[i])];
                if (d.known()) d.v += (*pads)[i] + (*pads)[i + ax.size()];
                else if ((*pads)[i] != 0 || (*pads)[i + ax.size()] != 0) d = {};
            }
            return std::vector<value_info>{make_info(t, out)};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string mode_s = n.attr_string("mode", "constant");
            pad_mode mode;
            if (mode_s == "constant") mode = pad_mode::constant;
            else if (mode_s == "reflect") mode = pad_mode::reflect;
            else if (mode_s == "edge") mode = pad_mode::edge;
            else if (mode_s == "wrap") mode = pad_mode::wrap;
            else QUANTSIM_THROW(unsupported_error, n.describe(), ": Pad mode '", mode_s, "' is not supported");
            const std::string desc = n.describe();
            return make_kernel([mode, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                const auto p = int_values(input(ins, 1, desc), desc, "pads");
                double value = 0.0;
                if (const tensor* c = optional_input(ins, 2); c && c->numel() > 0) value = float_scalar(*c, desc, "constant_value");
                const int r = x.rank();
                std::vector<std::int64_t> full(static_cast<std::size_t>(2 * r), 0);
                if (const tensor* a = optional_input(ins, 3)) {
                    const auto axes = int_values(*a, desc, "axes");
                    if (p.size() != 2 * axes.size())
                        QUANTSIM_THROW(shape_error, desc, ": pads has ", p.size(), " entries for ", axes.size(), " axes");
                    for (std::size_t i = 0; i < axes.size(); ++i) {
                        if (axes[i] < -r || axes[i] >= r) QUANTSIM_THROW(invalid_argument, desc, ": axis out of range");
                        const int ax = normalize_axis(axes[i], r);
                        full[static_cast<std::size_t>(ax)] = p[i];
                        full[static_cast<std::size_t>(ax + r)] = p[i + axes.size()];
                    }
                } else {
                    full = p;
                }
                outs[0] = pad(x, full, mode, value, desc);
            });
        };
        add(reg, std::move(s));
    }
    {  // Tile
        op_schema s = schema("Tile", 2, 2);
        s.moves_data = true;
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = type_of(in, 0);
            auto xd = dims_of_input(in, 0);
            const auto rep = const_ints(in, 1, n.describe(), "repeats");
            if (!xd || !rep) return std::vector<value_info>{unknown_shape(t)};
            if (rep->size() != xd->size())
                QUANTSIM_THROW(shape_error, n.describe(), ": repeats has ", rep->size(), " entries for rank ", xd->size());
            std::vector<sdim> out = *xd;
            for (std::size_t i = 0; i < out.size(); ++i)
                if (out[i].known()) out[i].v *= (*rep)[i];
                else if ((*rep)[i] != 1) out[i] = {};
            return std::vector<value_info>{make_info(t, out)};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            return make_kernel([desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                const auto rep = int_values(input(ins, 1, desc), desc, "repeats");
                if (static_cast<int>(rep.size()) != x.rank())
                    QUANTSIM_THROW(shape_error, desc, ": repeats has ", rep.size(), " entries for rank ", x.rank());
                for (auto v : rep)
                    if (v < 0) QUANTSIM_THROW(invalid_argument, desc, ": negative repeat");
                outs[0] = tile(x, rep);
            });
        };
        add(reg, std::move(s));
    }
    {  // ConstantOfShape
        op_schema s = schema("ConstantOfShape", 1, 1);
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = n.has_attr("value") ? n.attr_tensor("value").type() : dtype::float32;
            const auto shape = const_ints(in, 0, n.describe(), "shape");
            if (!shape) {
                if (const value_info* v = in_info(in, 0); v && v->shape.size() == 1 && v->shape[0] >= 0)
                    return std::vector<value_info>{make_info(t, std::vector<sdim>(static_cast<std::size_t>(v->shape[0])))};
                return std::vector<value_info>{unknown_shape(t)};
            }
            return std::vector<value_info>{make_info(t, shape_t(shape->begin(), shape->end()))};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            tensor value = n.has_attr("value") ? n.attr_tensor("value") : tensor::full({1}, 0.0f);
            if (value.numel() != 1)
                QUANTSIM_THROW(graph_error, n.describe(), ": value must hold exactly one element");
            const std::string desc = n.describe();
            return make_kernel([value, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const auto shape = int_values(input(ins, 0, desc), desc, "shape");
                for (auto d : shape)
                    if (d < 0) QUANTSIM_THROW(shape_error, desc, ": negative dimension ", d);
                tensor out = detail::new_tensor(shape_t(shape.begin(), shape.end()), value.type());
                const std::size_t es = size_of(value.type());
                auto* po = static_cast<std::byte*>(out.raw());
                for (std::int64_t i = 0; i < out.numel(); ++i)
                    std::memcpy(po + static_cast<std::size_t>(i) * es, value.raw(), es);
                outs[0] = std::move(out);
            });
        };
        add(reg, std::move(s));
    }
    {  // Range (start, limit, delta): scalars of one dtype
        op_schema s = schema("Range", 3, 3);
        s.infer = [](const node& n, const op_inputs_info& in) {
            const dtype t = type_of(in, 0, dtype::int64);
            const tensor *a = in_const(in, 0), *b = in_const(in, 1), *c = in_const(in, 2);
            if (a && b && c && t == dtype::int64) {
                const std::int64_t s0 = a->data<std::int64_t>()[0], l = b->data<std::int64_t>()[0],
                                   d = c->data<std::int64_t>()[0];
                if (d != 0) return std::vector<value_info>{make_info(t, shape_t{range_count(s0, l, d, n.describe())})};
            }
            return std::vector<value_info>{make_info(t, std::vector<sdim>(1))};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const std::string desc = n.describe();
            return make_kernel([desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& a = input(ins, 0, desc);
                const tensor& b = input(ins, 1, desc);
                const tensor& c = input(ins, 2, desc);
                if (a.type() != b.type() || a.type() != c.type())
                    QUANTSIM_THROW(invalid_argument, desc, ": start, limit and delta must share a dtype");
                if (a.type() == dtype::float32) {
                    const float s0 = a.data<float>()[0], l = b.data<float>()[0], d = c.data<float>()[0];
                    const std::int64_t nn = range_count(s0, l, d, desc);
                    checked_numel({nn}, 4, desc);
                    tensor out = detail::new_tensor({nn});
                    for (std::int64_t i = 0; i < nn; ++i) out.data<float>()[i] = s0 + static_cast<float>(i) * d;
                    outs[0] = std::move(out);
                    return;
                }
                const auto s0 = int_values(a, desc, "start").at(0), l = int_values(b, desc, "limit").at(0),
                           d = int_values(c, desc, "delta").at(0);
                const std::int64_t nn = range_count(s0, l, d, desc);
                checked_numel({nn}, 8, desc);
                std::vector<std::int64_t> v(static_cast<std::size_t>(nn));
                // start + i * delta lies between start and limit, but i * delta alone may not fit: modular math.
                for (std::int64_t i = 0; i < nn; ++i)
                    v[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(
                        static_cast<std::uint64_t>(s0) + static_cast<std::uint64_t>(i) * static_cast<std::uint64_t>(d));
                outs[0] = a.type() == dtype::int64 ? tensor::from(v, {nn}) : cast(tensor::from(v, {nn}), a.type());
            });
        };
        add(reg, std::move(s));
    }
    {  // Constant (imported graphs have none; hand-built graphs may)
        op_schema s = schema("Constant", 0, 0);
        auto value_of = [](const node& n) -> tensor {
            if (n.has_attr("value")) return n.attr_tensor("value");
            if (n.has_attr("value_float")) return tensor::scalar(n.attr_float("value_float"));
            if (n.has_attr("value_floats")) {
                const auto v = n.attr_floats("value_floats");
                return tensor::from(v, {static_cast<std::int64_t>(v.size())});
            }
            if (n.has_attr("value_int")) {
                const std::vector<std::int64_t> v{n.attr_int("value_int")};
                return tensor::from(v, {});
            }
            if (n.has_attr("value_ints")) {
                const auto v = n.attr_ints("value_ints");
                return tensor::from(v, {static_cast<std::int64_t>(v.size())});
            }
            QUANTSIM_THROW(unsupported_error, n.describe(), ": Constant needs value, value_float(s) or value_int(s)");
        };
        s.infer = [value_of](const node& n, const op_inputs_info&) {
            const tensor v = value_of(n);
            return std::vector<value_info>{make_info(v.type(), v.shape())};
        };
        s.create = [value_of](const node& n, const op_inputs_info&) {
            const tensor v = value_of(n);
            return make_kernel([v](const std::vector<const tensor*>&, std::vector<tensor>& outs) { outs[0] = v; });
        };
        add(reg, std::move(s));
    }
}

}  // namespace quantsim::detail
