// Reduce* (axes as an optional int64 input, keepdims, noop_with_empty_axes) and ArgMax / ArgMin.
#include <quantsim/ir/kernels/reduce.hpp>

#include "common.hpp"

namespace quantsim::detail {

namespace {

void add_reduce(op_registry& r, const char* name, reduce_kind kind) {
    op_schema s = schema(name, 1, 2);
    s.infer = [](const node& n, const op_inputs_info& in) {
        const dtype t = type_of(in, 0);
        auto xd = dims_of_input(in, 0);
        const bool keep = n.attr_int("keepdims", 1) != 0;
        const bool noop = n.attr_int("noop_with_empty_axes", 0) != 0;
        if (!xd) return std::vector<value_info>{unknown_shape(t)};
        const int rank = static_cast<int>(xd->size());
        std::optional<std::vector<std::int64_t>> axes;
        if (n.has_input(1)) {
            axes = const_ints(in, 1, n.describe(), "axes");
            if (!axes) {
                // Runtime axes: the rank is known only with keepdims.
                if (!keep) return std::vector<value_info>{unknown_shape(t)};
                std::vector<sdim> d(xd->size());
                return std::vector<value_info>{make_info(t, d)};
            }
        } else {
            axes = std::vector<std::int64_t>{};
        }
        if (axes->empty() && noop) return std::vector<value_info>{same_as(in_info(in, 0), t)};
        std::vector<bool> red(static_cast<std::size_t>(rank), axes->empty());
        for (auto a : *axes) red[static_cast<std::size_t>(normalize_axis(a, rank, "reduce axis"))] = true;
        std::vector<sdim> out;
        for (int i = 0; i < rank; ++i) {
            if (!red[static_cast<std::size_t>(i)]) out.push_back((*xd)[static_cast<std::size_t>(i)]);
            else if (keep) out.push_back({1, {}});
        }
        return std::vector<value_info>{make_info(t, out)};
    };
    s.create = [kind](const node& n, const op_inputs_info&) {
        const bool keep = n.attr_int("keepdims", 1) != 0;
        const bool noop = n.attr_int("noop_with_empty_axes", 0) != 0;
        const std::string desc = n.describe();
        return make_kernel([kind, keep, noop, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
            const tensor& x = input(ins, 0, desc);
            std::vector<int> axes;
            if (const tensor* a = optional_input(ins, 1))
                for (auto v : int_values(*a, desc, "axes")) {
                    if (v < -x.rank() || v >= x.rank())
                        QUANTSIM_THROW(invalid_argument, desc, ": axis ", v, " is out of range for shape ",
                                       to_string(x.shape()));
                    axes.push_back(normalize_axis(v, x.rank()));
                }
            if (axes.empty() && noop) {
                outs[0] = x.clone();
                return;
            }
            outs[0] = reduce(kind, x, axes, keep, desc);
        });
    };
    r.add(std::move(s));
}

void add_arg(op_registry& r, const char* name, bool is_max) {
    op_schema s = schema(name, 1, 1);
    s.infer = [](const node& n, const op_inputs_info& in) {
        auto xd = dims_of_input(in, 0);
        if (!xd) return std::vector<value_info>{unknown_shape(dtype::int64)};
        const int axis = normalize_axis(n.attr_int("axis", 0), static_cast<int>(xd->size()));
        std::vector<sdim> out;
        for (int i = 0; i < static_cast<int>(xd->size()); ++i) {
            if (i != axis) out.push_back((*xd)[static_cast<std::size_t>(i)]);
            else if (n.attr_int("keepdims", 1) != 0) out.push_back({1, {}});
        }
        return std::vector<value_info>{make_info(dtype::int64, out)};
    };
    s.create = [is_max](const node& n, const op_inputs_info&) {
        const std::int64_t axis = n.attr_int("axis", 0);
        const bool keep = n.attr_int("keepdims", 1) != 0;
        const bool last = n.attr_int("select_last_index", 0) != 0;
        const std::string desc = n.describe();
        return make_kernel([=](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
            const tensor& x = input(ins, 0, desc);
            if (axis < -x.rank() || axis >= x.rank())
                QUANTSIM_THROW(invalid_argument, desc, ": axis ", axis, " is out of range for shape ", to_string(x.shape()));
            outs[0] = arg_reduce(is_max, x, normalize_axis(axis, x.rank()), keep, last, desc);
        });
    };
    r.add(std::move(s));
}

}  // namespace

void register_reduce_ops(op_registry& r) {
    add_reduce(r, "ReduceMean", reduce_kind::mean);
    add_reduce(r, "ReduceSum", reduce_kind::sum);
    add_reduce(r, "ReduceMax", reduce_kind::max);
    add_reduce(r, "ReduceMin", reduce_kind::min);
    add_reduce(r, "ReduceProd", reduce_kind::prod);
    add_reduce(r, "ReduceL1", reduce_kind::l1);
    add_reduce(r, "ReduceL2", reduce_kind::l2);
    add_reduce(r, "ReduceLogSum", reduce_kind::log_sum);
    add_reduce(r, "ReduceLogSumExp", reduce_kind::log_sum_exp);
    add_reduce(r, "ReduceSumSquare", reduce_kind::sum_square);
    add_arg(r, "ArgMax", true);
    add_arg(r, "ArgMin", false);
}

}  // namespace quantsim::detail
