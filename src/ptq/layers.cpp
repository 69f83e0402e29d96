// PTQ pass helpers (include/quantsim/ptq/detail/layers.hpp).
#include <quantsim/ptq/detail/layers.hpp>

#include <quantsim/ir/pattern.hpp>

namespace quantsim::detail {

const tensor* ptq_float_param(const graph& g, const node& n, std::size_t input) {
    if (!n.has_input(input)) return nullptr;
    const tensor* t = param_value(g, n.inputs[input]);
    return t && t->defined() && t->type() == dtype::float32 ? t : nullptr;
}

void ptq_set_param(graph& g, std::size_t index, std::size_t input, std::string_view base, tensor value) {
    const node& n = g.nodes[index];
    if (n.has_input(input) && g.is_param(n.inputs[input]) && use_count(g, n.inputs[input]) == 1) {
        g.params[n.inputs[input]] = std::move(value);
        return;
    }
    const std::string name = g.add_param(base, std::move(value));
    node& m = g.nodes[index];
    if (m.inputs.size() <= input) m.inputs.resize(input + 1);
    m.inputs[input] = name;  // only this input: a node reading the shared tensor twice keeps it on the other
}

std::optional<float> ptq_scalar_param(const graph& g, const node& n, std::size_t input) {
    const tensor* t = ptq_float_param(g, n, input);
    if (!t || t->numel() != 1) return std::nullopt;
    return t->f32()[0];
}

bool ptq_zero_padding(const node& conv) {
    const std::string ap = conv.attr_string("auto_pad", "NOTSET");
    if (ap != "NOTSET" && ap != "VALID") return false;
    if (ap == "VALID") return true;
    for (auto p : conv.attr_ints("pads", std::vector<std::int64_t>{}))
        if (p != 0) return false;
    return true;
}

std::optional<conv_shape> ptq_conv_shape(const graph& g, const node& conv) {
    const tensor* w = ptq_float_param(g, conv, 1);
    if (!w || w->rank() < 3) return std::nullopt;
    conv_shape s;
    s.group = conv.attr_int("group", 1);
    if (s.group < 1 || w->dim(0) % s.group != 0) return std::nullopt;
    s.out_channels = w->dim(0);
    s.in_channels = w->dim(1) * s.group;
    s.kernel = w->dim(1) == 0 ? 0 : w->numel() / (w->dim(0) * w->dim(1));
    return s;
}

}  // namespace quantsim::detail
