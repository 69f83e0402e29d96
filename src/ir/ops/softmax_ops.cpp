// Softmax, LogSoftmax, Hardmax (opset 13 semantics: one axis; the importer rewrites older forms, docs/ir.md).
#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/softmax.hpp>

#include "common.hpp"

namespace quantsim::detail {

namespace {
void add_softmax(op_registry& r, const char* name, int kind) {
    op_schema s = schema(name, 1, 1);
    s.infer = [](const node& n, const op_inputs_info& in) {
        if (const value_info* v = in_info(in, 0))
            (void)normalize_axis(n.attr_int("axis", -1), static_cast<int>(v->shape.size()), "softmax axis");
        return std::vector<value_info>{same_as(in_info(in, 0))};
    };
    s.create = [kind](const node& n, const op_inputs_info&) {
        const std::int64_t axis_attr = n.attr_int("axis", -1);
        const std::string desc = n.describe();
        return make_kernel([kind, axis_attr, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
            const tensor& x = input(ins, 0, desc);
            require_float(x, desc, 0);
            if (x.rank() == 0) QUANTSIM_THROW(shape_error, desc, ": input must have rank >= 1");
            if (axis_attr < -x.rank() || axis_attr >= x.rank())
                QUANTSIM_THROW(invalid_argument, desc, ": axis ", axis_attr, " is out of range for shape ",
                               to_string(x.shape()));
            const int axis = normalize_axis(axis_attr, x.rank());
            std::int64_t outer = 1, inner = 1;
            for (int i = 0; i < axis; ++i) outer *= x.shape()[static_cast<std::size_t>(i)];
            for (int i = axis + 1; i < x.rank(); ++i) inner *= x.shape()[static_cast<std::size_t>(i)];
            const std::int64_t len = x.shape()[static_cast<std::size_t>(axis)];
            tensor y = detail::new_tensor(x.shape());
            if (kind == 2)
                hardmax(x.data<float>(), y.data<float>(), outer, len, inner);
            else
                softmax(x.data<float>(), y.data<float>(), outer, len, inner, kind == 1);
            outs[0] = std::move(y);
        });
    };
    r.add(std::move(s));
}
}  // namespace

void register_softmax_ops(op_registry& r) {
    add_softmax(r, "Softmax", 0);
    add_softmax(r, "LogSoftmax", 1);
    add_softmax(r, "Hardmax", 2);
}

}  // namespace quantsim::detail
