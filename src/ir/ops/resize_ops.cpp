// Resize (opset 19 attributes; Upsample and Resize-10 arrive rewritten by the importer). Resizes the two
// innermost dims (rank 3: the last one); the scale of every other axis must be 1.
#include <cmath>

#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/resize.hpp>

#include "common.hpp"

namespace quantsim::detail {

namespace {

struct resize_attrs {
    resize_params p;
    std::vector<std::int64_t> axes;  ///< empty = all
    std::string aspect = "stretch";
};

resize_attrs parse_resize(const node& n) {
    const std::string desc = n.describe();
    resize_attrs a;
    const std::string mode = n.attr_string("mode", "nearest");
    if (mode == "nearest") a.p.mode = resize_mode::nearest;
    else if (mode == "linear") a.p.mode = resize_mode::linear;
    else if (mode == "cubic") a.p.mode = resize_mode::cubic;
    else QUANTSIM_THROW(unsupported_error, desc, ": mode '", mode, "' is not supported");
    const std::string ct = n.attr_string("coordinate_transformation_mode", "half_pixel");
    if (ct == "half_pixel") a.p.coord = resize_coord::half_pixel;
    else if (ct == "pytorch_half_pixel") a.p.coord = resize_coord::pytorch_half_pixel;
    else if (ct == "align_corners") a.p.coord = resize_coord::align_corners;
    else if (ct == "asymmetric") a.p.coord = resize_coord::asymmetric;
    else if (ct == "tf_crop_and_resize") a.p.coord = resize_coord::tf_crop_and_resize;
    else if (ct == "half_pixel_symmetric") a.p.coord = resize_coord::half_pixel_symmetric;
    else QUANTSIM_THROW(unsupported_error, desc, ": coordinate_transformation_mode '", ct, "' is not supported");
    const std::string nm = n.attr_string("nearest_mode", "round_prefer_floor");
    if (nm == "round_prefer_floor") a.p.nearest = resize_nearest::round_prefer_floor;
    else if (nm == "round_prefer_ceil") a.p.nearest = resize_nearest::round_prefer_ceil;
    else if (nm == "floor") a.p.nearest = resize_nearest::floor;
    else if (nm == "ceil") a.p.nearest = resize_nearest::ceil;
    else QUANTSIM_THROW(unsupported_error, desc, ": nearest_mode '", nm, "' is not supported");
    a.p.cubic_a = n.attr_float("cubic_coeff_a", -0.75f);
    a.p.exclude_outside = n.attr_int("exclude_outside", 0) != 0;
    a.p.extrapolation_value = n.attr_float("extrapolation_value", 0.0f);
    if (n.attr_int("antialias", 0) != 0)
        QUANTSIM_THROW(unsupported_error, desc, ": antialias = 1 is not supported");
    a.axes = n.attr_ints("axes", std::vector<std::int64_t>{});
    a.aspect = n.attr_string("keep_aspect_ratio_policy", "stretch");
    if (a.aspect != "stretch" && a.aspect != "not_larger" && a.aspect != "not_smaller")
        QUANTSIM_THROW(unsupported_error, desc, ": keep_aspect_ratio_policy '", a.aspect, "' is not supported");
    return a;
}

// Full-rank scales and output sizes from the scales / sizes inputs.
void output_geometry(const resize_attrs& a, const shape_t& in, const tensor* scales, const tensor* sizes,
                     const std::string& desc, std::vector<float>& sc, shape_t& out) {
    const int r = static_cast<int>(in.size());
    std::vector<int> axes;
    if (a.axes.empty())
        for (int i = 0; i < r; ++i) axes.push_back(i);
    else
        for (auto v : a.axes) axes.push_back(normalize_axis(v, r, "Resize axis"));
    sc.assign(static_cast<std::size_t>(r), 1.0f);
    out = in;
    if (scales && scales->numel() > 0) {
        if (scales->type() != dtype::float32) QUANTSIM_THROW(invalid_argument, desc, ": scales must be float32");
        if (scales->numel() != static_cast<std::int64_t>(axes.size()))
            QUANTSIM_THROW(shape_error, desc, ": scales has ", scales->numel(), " values for ", axes.size(), " axes");
        for (std::size_t i = 0; i < axes.size(); ++i) {
            const float s = scales->data<float>()[i];
            if (!(s > 0.0f)) QUANTSIM_THROW(invalid_argument, desc, ": scales must be positive, got ", s);
            const std::size_t ax = static_cast<std::size_t>(axes[i]);
            sc[ax] = s;
            const double o = std::floor(static_cast<double>(in[ax]) * static_cast<double>(s));
            // A huge scale from a model file: converting an out-of-range double to int64 is undefined (found by fuzz_onnx).
            if (!(std::fabs(o) < 9.0e18))
                QUANTSIM_THROW(resource_error, desc, ": scale ", s, " makes axis ", ax, " (size ", in[ax], ") too large");
            out[ax] = static_cast<std::int64_t>(o);
        }
    } else if (sizes && sizes->numel() > 0) {
        const auto sz = int_values(*sizes, desc, "sizes");
        if (sz.size() != axes.size())
            QUANTSIM_THROW(shape_error, desc, ": sizes has ", sz.size(), " values for ", axes.size(), " axes");
        if (a.aspect == "stretch") {
            for (std::size_t i = 0; i < axes.size(); ++i) {
                const std::size_t ax = static_cast<std::size_t>(axes[i]);
                if (sz[i] <= 0) QUANTSIM_THROW(invalid_argument, desc, ": sizes must be positive");
                out[ax] = sz[i];
                sc[ax] = in[ax] ? static_cast<float>(sz[i]) / static_cast<float>(in[ax]) : 1.0f;
            }
        } else {
            float s = a.aspect == "not_larger" ? 1e30f : 0.0f;
            for (std::size_t i = 0; i < axes.size(); ++i) {
                const float v = static_cast<float>(sz[i]) / static_cast<float>(in[static_cast<std::size_t>(axes[i])]);
                s = a.aspect == "not_larger" ? std::min(s, v) : std::max(s, v);
            }
            for (int ax : axes) {
                sc[static_cast<std::size_t>(ax)] = s;
                out[static_cast<std::size_t>(ax)] =
                    static_cast<std::int64_t>(std::round(s * static_cast<float>(in[static_cast<std::size_t>(ax)])));
            }
        }
    } else {
        QUANTSIM_THROW(graph_error, desc, ": Resize needs scales or sizes");
    }
}

}  // namespace

void register_resize_ops(op_registry& reg) {
    op_schema s = schema("Resize", 1, 4);
    s.moves_data = false;
    s.infer = [](const node& n, const op_inputs_info& in) {
        const resize_attrs a = parse_resize(n);
        auto xd = dims_of_input(in, 0);
        const dtype t = type_of(in, 0);
        if (!xd) return std::vector<value_info>{unknown_shape(t)};
        const tensor* scales = n.has_input(2) ? in_const(in, 2) : nullptr;
        const tensor* sizes = n.has_input(3) ? in_const(in, 3) : nullptr;
        if (!scales && !sizes) {
            std::vector<sdim> d(xd->size());
            return std::vector<value_info>{make_info(t, d)};
        }
        shape_t ins;
        for (const auto& d : *xd) ins.push_back(d.known() ? d.v : 1);
        std::vector<float> sc;
        shape_t out;
        output_geometry(a, ins, scales, sizes, n.describe(), sc, out);
        std::vector<sdim> od(xd->size());
        for (std::size_t i = 0; i < od.size(); ++i) {
            if ((*xd)[i].known()) od[i] = {out[i], {}};
            else if (sc[i] == 1.0f) od[i] = (*xd)[i];  // unscaled symbolic dims (the batch) stay symbolic
        }
        return std::vector<value_info>{make_info(t, od)};
    };
    s.create = [](const node& n, const op_inputs_info&) {
        const resize_attrs a = parse_resize(n);
        const std::string desc = n.describe();
        return make_kernel([a, desc](const std::vector<const tensor*>& ins, std::vector<tensor>& outs) {
            const tensor& x = input(ins, 0, desc);
            require_float(x, desc, 0);
            std::vector<float> sc;
            shape_t out;
            output_geometry(a, x.shape(), optional_input(ins, 2), optional_input(ins, 3), desc, sc, out);
            const int r = x.rank();
            if (r < 1) QUANTSIM_THROW(shape_error, desc, ": input must have rank >= 1");
            const int first = std::max(0, r - 2);
            for (int i = 0; i < first; ++i)
                if (out[static_cast<std::size_t>(i)] != x.shape()[static_cast<std::size_t>(i)])
                    QUANTSIM_THROW(unsupported_error, desc, ": resizing axis ", i,
                                   " is not supported (only the two innermost axes)");
            resize_params p = a.p;
            const std::int64_t h = r >= 2 ? x.shape()[static_cast<std::size_t>(r - 2)] : 1;
            const std::int64_t w = x.shape()[static_cast<std::size_t>(r - 1)];
            const std::int64_t oh = r >= 2 ? out[static_cast<std::size_t>(r - 2)] : 1;
            const std::int64_t ow = out[static_cast<std::size_t>(r - 1)];
            p.scale[0] = r >= 2 ? sc[static_cast<std::size_t>(r - 2)] : 1.0f;
            p.scale[1] = sc[static_cast<std::size_t>(r - 1)];
            if (p.coord == resize_coord::tf_crop_and_resize) {
                const tensor* roi = optional_input(ins, 1);
                if (!roi || roi->type() != dtype::float32 || roi->numel() != 2 * r)
                    QUANTSIM_THROW(invalid_argument, desc, ": tf_crop_and_resize needs a float roi of ", 2 * r,
                                   " values");
                const float* rv = roi->data<float>();
                for (int i = 0; i < 2; ++i) {
                    const int ax = r - 2 + i;
                    if (ax < 0) continue;
                    p.roi_start[i] = rv[ax];
                    p.roi_end[i] = rv[r + ax];
                }
            }
            tensor y = detail::new_tensor(out);
            const std::int64_t planes = (h * w) != 0 ? x.numel() / (h * w) : 0;
            resize2d(p, planes, h, w, oh, ow, x.data<float>(), y.data<float>());
            outs[0] = std::move(y);
        });
    };
    reg.add(std::move(s));
}

}  // namespace quantsim::detail
