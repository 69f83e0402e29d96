// BatchNormalization (inference), LayerNormalization, InstanceNormalization.
#include <cmath>

#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/elementwise.hpp>
#include <quantsim/ir/kernels/normalization.hpp>

#include "common.hpp"

namespace quantsim::detail {

void register_norm_ops(op_registry& r) {
    {
        op_schema s = schema("BatchNormalization", 5, 5, 1, 3);
        s.infer = [](const node& n, const op_inputs_info& in) {
            if (n.attr_int("training_mode", 0) != 0)
                QUANTSIM_THROW(unsupported_error, n.describe(), ": training_mode = 1 is not supported");
            auto xd = dims_of_input(in, 0);
            if (xd && xd->size() < 2)
                QUANTSIM_THROW(shape_error, n.describe(), ": input must have rank >= 2");
            for (std::size_t i = 1; i < 5 && xd; ++i)
                if (auto d = dims_of_input(in, i)) {
                    if (d->size() != 1)
                        QUANTSIM_THROW(shape_error, n.describe(), ": input ", i, " must be 1-D");
                    if ((*d)[0].known() && (*xd)[1].known() && (*d)[0].v != (*xd)[1].v)
                        QUANTSIM_THROW(shape_error, n.describe(), ": input ", i, " has ", (*d)[0].v,
                                       " values for ", (*xd)[1].v, " channels");
                }
            return std::vector<value_info>{same_as(in_info(in, 0))};
        };
        s.create = [](const node& n, const op_inputs_info&) {
            if (n.attr_int("training_mode", 0) != 0)
                QUANTSIM_THROW(unsupported_error, n.describe(), ": training_mode = 1 is not supported");
            if (n.outputs.size() > 1)
                for (std::size_t i = 1; i < n.outputs.size(); ++i)
                    if (!n.outputs[i].empty())
                        QUANTSIM_THROW(unsupported_error, n.describe(), ": training outputs are not supported");
            const float eps = n.attr_float("epsilon", 1e-5f);
            const std::string desc = n.describe();
            return make_kernel([eps, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                require_float(x, desc, 0);
                if (x.rank() < 2) QUANTSIM_THROW(shape_error, desc, ": input must have rank >= 2");
                const std::int64_t c = x.shape()[1];
                const float* p[4];
                for (std::size_t i = 1; i < 5; ++i) {
                    const tensor& t = input(ins, i, desc);
                    require_float(t, desc, i);
                    if (t.numel() != c)
                        QUANTSIM_THROW(shape_error, desc, ": input ", i, " has ", t.numel(), " values for ", c,
                                       " channels");
                    p[i - 1] = t.data<float>();
                }
                tensor y = detail::new_tensor(x.shape());
                batch_norm(x.data<float>(), y.data<float>(), x.shape()[0], c, c ? x.numel() / (x.shape()[0] * c) : 0,
                           p[0], p[1], p[2], p[3], eps);
                outs[0] = std::move(y);
            });
        };
        r.add(std::move(s));
    }
    {
        op_schema s = schema("LayerNormalization", 2, 3, 1, 3);
        s.infer = [](const node& n, const op_inputs_info& in) {
            std::vector<value_info> out{same_as(in_info(in, 0))};
            if (n.outputs.size() > 1) {
                auto xd = dims_of_input(in, 0);
                for (std::size_t k = 1; k < n.outputs.size(); ++k) {
                    if (!xd) {
                        out.push_back(unknown_shape(dtype::float32));
                        continue;
                    }
                    std::vector<sdim> d = *xd;
                    const int axis = normalize_axis(n.attr_int("axis", -1), static_cast<int>(d.size()));
                    for (std::size_t i = static_cast<std::size_t>(axis); i < d.size(); ++i) d[i] = {1, {}};
                    out.push_back(make_info(dtype::float32, d));
                }
            }
            return out;
        };
        s.create = [](const node& n, const op_inputs_info&) {
            const float eps = n.attr_float("epsilon", 1e-5f);
            const std::int64_t axis_attr = n.attr_int("axis", -1);
            const std::string desc = n.describe();
            return make_kernel([eps, axis_attr, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                require_float(x, desc, 0);
                const int axis = normalize_axis(axis_attr, x.rank());
                std::int64_t rows = 1, size = 1;
                for (int i = 0; i < x.rank(); ++i) (i < axis ? rows : size) *= x.shape()[static_cast<std::size_t>(i)];
                const tensor& sc = input(ins, 1, desc);
                const tensor* b = optional_input(ins, 2);
                require_float(sc, desc, 1);
                if (b) require_float(*b, desc, 2);
                // Scale and bias broadcast over the normalized dims; materialize them at full size.
                shape_t norm_shape(x.shape().begin() + axis, x.shape().end());
                tensor scf = sc.numel() == size ? sc : expand(sc, norm_shape, desc);
                tensor bf;
                if (b) bf = b->numel() == size ? *b : expand(*b, norm_shape, desc);
                if (scf.numel() != size || (b && bf.numel() != size))
                    QUANTSIM_THROW(shape_error, desc, ": scale/bias do not broadcast to ", to_string(norm_shape));
                tensor y = detail::new_tensor(x.shape());
                shape_t stat_shape = x.shape();
                for (std::size_t i = static_cast<std::size_t>(axis); i < stat_shape.size(); ++i) stat_shape[i] = 1;
                tensor mean, inv;
                if (outs.size() > 1) mean = detail::new_tensor(stat_shape);
                if (outs.size() > 2) inv = detail::new_tensor(stat_shape);
                layer_norm(x.data<float>(), y.data<float>(), rows, size, scf.data<float>(),
                           b ? bf.data<float>() : nullptr, eps, mean.defined() ? mean.data<float>() : nullptr,
                           inv.defined() ? inv.data<float>() : nullptr);
                outs[0] = std::move(y);
                if (outs.size() > 1) outs[1] = std::move(mean);
                if (outs.size() > 2) outs[2] = std::move(inv);
            });
        };
        r.add(std::move(s));
    }
    {
        op_schema s = schema("InstanceNormalization", 3, 3);
        s.infer = [](const node&, const op_inputs_info& in) { return std::vector<value_info>{same_as(in_info(in, 0))}; };
        s.create = [](const node& n, const op_inputs_info&) {
            const float eps = n.attr_float("epsilon", 1e-5f);
            const std::string desc = n.describe();
            return make_kernel([eps, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
                const tensor& x = input(ins, 0, desc);
                require_float(x, desc, 0);
                if (x.rank() < 3) QUANTSIM_THROW(shape_error, desc, ": input must have rank >= 3");
                const std::int64_t nb = x.shape()[0], c = x.shape()[1], inner = x.numel() / std::max<std::int64_t>(1, nb * c);
                const tensor& sc = input(ins, 1, desc);
                const tensor& b = input(ins, 2, desc);
                if (sc.numel() != c || b.numel() != c)
                    QUANTSIM_THROW(shape_error, desc, ": scale and B must have ", c, " values");
                tensor y = detail::new_tensor(x.shape());
                for (std::int64_t p = 0; p < nb * c; ++p) {
                    const float* xp = x.data<float>() + p * inner;
                    float* yp = y.data<float>() + p * inner;
                    double sum = 0, sq = 0;
                    for (std::int64_t i = 0; i < inner; ++i) sum += xp[i];
                    const double mean = inner ? sum / static_cast<double>(inner) : 0.0;
                    for (std::int64_t i = 0; i < inner; ++i) sq += (xp[i] - mean) * (xp[i] - mean);
                    const double var = inner ? sq / static_cast<double>(inner) : 0.0;
                    const float k = static_cast<float>(sc.data<float>()[p % c] / std::sqrt(var + eps));
                    const float t = b.data<float>()[p % c] - static_cast<float>(mean) * k;
                    for (std::int64_t i = 0; i < inner; ++i) yp[i] = xp[i] * k + t;
                }
                outs[0] = std::move(y);
            });
        };
        r.add(std::move(s));
    }
}

}  // namespace quantsim::detail
