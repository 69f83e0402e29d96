// MaxPool, AveragePool (1-D and 2-D), GlobalAveragePool, GlobalMaxPool.
#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/pool.hpp>

#include "common.hpp"

namespace quantsim::detail {

namespace {

struct pool_attrs {
    int spatial = 2;
    pool_geometry g;
    std::string auto_pad = "NOTSET";
};

pool_attrs parse_pool(const node& n, bool is_max) {
    pool_attrs a;
    const std::string desc = n.describe();
    const auto k = n.attr_ints("kernel_shape");
    a.spatial = static_cast<int>(k.size());
    if (a.spatial == 3) QUANTSIM_THROW(unsupported_error, desc, ": 3-D pooling is not supported");
    if (a.spatial != 1 && a.spatial != 2) QUANTSIM_THROW(graph_error, desc, ": kernel_shape must have 1 or 2 entries");
    const std::size_t s = static_cast<std::size_t>(a.spatial);
    auto list = [&](const char* key, std::int64_t def, std::size_t count) {
        auto v = n.attr_ints(key, std::vector<std::int64_t>(count, def));
        if (v.size() != count)
            QUANTSIM_THROW(graph_error, desc, ": attribute '", key, "' has ", v.size(), " entries, expected ", count);
        return v;
    };
    const auto st = list("strides", 1, s), dl = list("dilations", 1, s), pads = list("pads", 0, 2 * s);
    for (std::size_t i = 0; i < s; ++i) {
        const std::size_t d = 2 - s + i;
        if (k[i] <= 0 || st[i] <= 0 || dl[i] <= 0)
            QUANTSIM_THROW(graph_error, desc, ": kernel_shape, strides and dilations must be positive");
        if (pads[i] < 0 || pads[i + s] < 0) QUANTSIM_THROW(unsupported_error, desc, ": negative pads");
        a.g.kernel[d] = k[i];
        a.g.stride[d] = st[i];
        a.g.dilation[d] = dl[i];
        a.g.pad_begin[d] = pads[i];
        a.g.pad_end[d] = pads[i + s];
    }
    a.g.ceil_mode = n.attr_int("ceil_mode", 0) != 0;
    a.g.count_include_pad = !is_max && n.attr_int("count_include_pad", 0) != 0;
    a.auto_pad = n.attr_string("auto_pad", "NOTSET");
    if (a.auto_pad != "NOTSET" && a.auto_pad != "SAME_UPPER" && a.auto_pad != "SAME_LOWER" && a.auto_pad != "VALID")
        QUANTSIM_THROW(unsupported_error, desc, ": auto_pad '", a.auto_pad, "' is not supported");
    if (is_max && n.attr_int("storage_order", 0) != 0 && n.outputs.size() > 1)
        QUANTSIM_THROW(unsupported_error, desc, ": storage_order = 1 is not supported");
    if (is_max && n.outputs.size() > 1 && !n.outputs[1].empty())
        QUANTSIM_THROW(unsupported_error, desc, ": the Indices output of MaxPool is not supported");
    return a;
}

// Geometry with auto_pad resolved for input size in[2] (h, w).
pool_geometry resolve(const pool_attrs& a, const std::int64_t in[2]) {
    pool_geometry g = a.g;
    if (a.auto_pad == "NOTSET") return g;
    for (int i = 2 - a.spatial; i < 2; ++i) {
        const std::size_t ii = static_cast<std::size_t>(i);
        if (a.auto_pad == "VALID") {
            g.pad_begin[ii] = g.pad_end[ii] = 0;
            continue;
        }
        const std::int64_t eff = g.dilation[ii] * (g.kernel[ii] - 1) + 1;
        const std::int64_t out = (in[i] + g.stride[ii] - 1) / g.stride[ii];
        const std::int64_t total = std::max<std::int64_t>(0, (out - 1) * g.stride[ii] + eff - in[i]);
        if (a.auto_pad == "SAME_UPPER") {
            g.pad_begin[ii] = total / 2;
            g.pad_end[ii] = total - total / 2;
        } else {
            g.pad_end[ii] = total / 2;
            g.pad_begin[ii] = total - total / 2;
        }
        g.ceil_mode = false;
    }
    return g;
}

void add_pool(op_registry& r, const char* name, bool is_max) {
    op_schema s = schema(name, 1, 1, 1, is_max ? 2 : 1);
    s.moves_data = is_max;
    s.infer = [is_max](const node& n, const op_inputs_info& in) {
        const pool_attrs a = parse_pool(n, is_max);
        auto xd = dims_of_input(in, 0);
        if (!xd) return std::vector<value_info>{unknown_shape(dtype::float32)};
        if (static_cast<int>(xd->size()) != a.spatial + 2)
            QUANTSIM_THROW(shape_error, n.describe(), ": input has rank ", xd->size(), ", expected ", a.spatial + 2);
        std::vector<sdim> out = *xd;
        // Each spatial axis on its own: a symbolic width does not hide a known height.
        std::int64_t in2[2] = {1, 1};
        for (int i = 0; i < a.spatial; ++i) {
            const sdim& d = (*xd)[static_cast<std::size_t>(2 + i)];
            in2[2 - a.spatial + i] = d.known() ? d.v : 1;
        }
        const pool_geometry g = resolve(a, in2);
        for (int i = 0; i < a.spatial; ++i) {
            const sdim& d = (*xd)[static_cast<std::size_t>(2 + i)];
            if (!d.known()) {
                out[static_cast<std::size_t>(2 + i)] = {};
                continue;
            }
            const std::int64_t o = g.out_size(2 - a.spatial + i, d.v);
            if (o <= 0) QUANTSIM_THROW(shape_error, n.describe(), ": input is smaller than the pooling window");
            out[static_cast<std::size_t>(2 + i)] = {o, {}};
        }
        return std::vector<value_info>{make_info(dtype::float32, out)};
    };
    s.create = [is_max](const node& n, const op_inputs_info&) {
        const pool_attrs a = parse_pool(n, is_max);
        const std::string desc = n.describe();
        return make_kernel([a, is_max, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
            const tensor& x = input(ins, 0, desc);
            require_float(x, desc, 0);
            if (x.rank() != a.spatial + 2)
                QUANTSIM_THROW(shape_error, desc, ": input has shape ", to_string(x.shape()), ", expected rank ",
                               a.spatial + 2);
            const std::int64_t h = a.spatial == 2 ? x.shape()[2] : 1, w = x.shape().back();
            const std::int64_t in2[2] = {h, w};
            const pool_geometry g = resolve(a, in2);
            const std::int64_t oh = g.out_size(0, h), ow = g.out_size(1, w);
            if (oh <= 0 || ow <= 0)
                QUANTSIM_THROW(shape_error, desc, ": input ", to_string(x.shape()), " is smaller than the window");
            shape_t os = {x.shape()[0], x.shape()[1]};
            if (a.spatial == 2) os.push_back(oh);
            os.push_back(ow);
            tensor y = detail::new_tensor(os);
            const std::int64_t planes = x.shape()[0] * x.shape()[1];
            if (is_max)
                max_pool2d(g, planes, h, w, x.data<float>(), y.data<float>());
            else
                avg_pool2d(g, planes, h, w, x.data<float>(), y.data<float>());
            outs[0] = std::move(y);
        });
    };
    r.add(std::move(s));
}

void add_global_pool(op_registry& r, const char* name, bool is_max) {
    op_schema s = schema(name, 1, 1);
    s.moves_data = false;
    s.infer = [](const node& n, const op_inputs_info& in) {
        auto xd = dims_of_input(in, 0);
        if (!xd) return std::vector<value_info>{unknown_shape(dtype::float32)};
        if (xd->size() < 3)
            QUANTSIM_THROW(shape_error, n.describe(), ": input must have rank >= 3, got ", xd->size());
        std::vector<sdim> out = *xd;
        for (std::size_t i = 2; i < out.size(); ++i) out[i] = {1, {}};
        return std::vector<value_info>{make_info(dtype::float32, out)};
    };
    s.create = [is_max](const node& n, const op_inputs_info&) {
        const std::string desc = n.describe();
        return make_kernel([is_max, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
            const tensor& x = input(ins, 0, desc);
            require_float(x, desc, 0);
            if (x.rank() < 3)
                QUANTSIM_THROW(shape_error, desc, ": input must have rank >= 3, got ", to_string(x.shape()));
            shape_t os = x.shape();
            std::int64_t size = 1;
            for (std::size_t i = 2; i < os.size(); ++i) {
                size *= os[i];
                os[i] = 1;
            }
            tensor y = detail::new_tensor(os);
            const std::int64_t planes = x.shape()[0] * x.shape()[1];
            if (is_max)
                global_max_pool(planes, size, x.data<float>(), y.data<float>());
            else
                global_avg_pool(planes, size, x.data<float>(), y.data<float>());
            outs[0] = std::move(y);
        });
    };
    r.add(std::move(s));
}

}  // namespace

void register_pool_ops(op_registry& r) {
    add_pool(r, "MaxPool", true);
    add_pool(r, "AveragePool", false);
    add_global_pool(r, "GlobalAveragePool", false);
    add_global_pool(r, "GlobalMaxPool", true);
}

}  // namespace quantsim::detail
