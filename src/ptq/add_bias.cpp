// Zero biases for bias-less layers (include/quantsim/ptq/add_bias.hpp).
#include <quantsim/ptq/add_bias.hpp>

#include <quantsim/ptq/detail/layers.hpp>

namespace quantsim {

std::size_t add_zero_biases(graph& g) {
    std::size_t added = 0;
    for (std::size_t i = 0; i < g.nodes.size(); ++i) {
        const node& n = g.nodes[i];
        if (!n.domain.empty() || n.has_input(2)) continue;
        const tensor* w = detail::ptq_float_param(g, n, 1);
        if (!w || !n.has_input(0)) continue;
        std::int64_t m = -1;
        if (n.op_type == "Conv" && w->rank() >= 3) {
            m = w->dim(0);
        } else if (n.op_type == "ConvTranspose" && w->rank() >= 3) {
            m = w->dim(1) * n.attr_int("group", 1);
        } else if (n.op_type == "Gemm" && w->rank() == 2) {
            m = n.attr_int("transB", 0) != 0 ? w->dim(0) : w->dim(1);
        }
        if (m <= 0) continue;
        detail::ptq_set_param(g, i, 2, n.name + ".bias", tensor::zeros({m}));
        ++added;
    }
    return added;
}

}  // namespace quantsim
