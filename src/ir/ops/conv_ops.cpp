// Conv and ConvTranspose (1-D and 2-D), with pre-packed constant weights and the fused-epilogue variants.
#include <array>
#include <cmath>

#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/conv.hpp>

#include "common.hpp"
#include "fused.hpp"

namespace quantsim::detail {

namespace {

enum class auto_pad_kind { notset, same_upper, same_lower, valid };

struct conv_attrs {
    int spatial = 2;  ///< 1 or 2
    std::vector<std::int64_t> kernel_shape;  ///< empty: from the weight
    std::array<std::int64_t, 2> stride{1, 1}, dilation{1, 1}, pad_begin{0, 0}, pad_end{0, 0}, output_padding{0, 0};
    std::vector<std::int64_t> output_shape;  ///< ConvTranspose only
    auto_pad_kind auto_pad = auto_pad_kind::notset;
    std::int64_t group = 1;
};

// Spatial attribute lists are stored right-aligned in the 2-D arrays: a 1-D conv is H = 1.
void fill2(std::array<std::int64_t, 2>& dst, const std::vector<std::int64_t>& v, int spatial) {
    for (int i = 0; i < spatial; ++i) dst[static_cast<std::size_t>(2 - spatial + i)] = v[static_cast<std::size_t>(i)];
}

conv_attrs parse_attrs(const node& n, int weight_rank, bool transpose) {
    conv_attrs a;
    const std::string desc = n.describe();
    if (weight_rank >= 0) {
        if (weight_rank == 5)
            QUANTSIM_THROW(unsupported_error, desc, ": 3-D convolution is not supported (weight rank 5)");
        if (weight_rank != 3 && weight_rank != 4)
            QUANTSIM_THROW(shape_error, desc, ": weight must have rank 3 (1-D) or 4 (2-D), got rank ", weight_rank);
        a.spatial = weight_rank - 2;
    } else if (n.has_attr("kernel_shape")) {
        a.spatial = static_cast<int>(n.attr_ints("kernel_shape").size());
        if (a.spatial == 3) QUANTSIM_THROW(unsupported_error, desc, ": 3-D convolution is not supported");
        if (a.spatial != 1 && a.spatial != 2)
            QUANTSIM_THROW(shape_error, desc, ": kernel_shape must have 1 or 2 entries");
    }
    const int s = a.spatial;
    auto list = [&](const char* key, std::int64_t def, std::size_t count) {
        std::vector<std::int64_t> v = n.attr_ints(key, std::vector<std::int64_t>(count, def));
        if (v.size() != count)
            QUANTSIM_THROW(graph_error, desc, ": attribute '", key, "' has ", v.size(), " entries, expected ", count);
        return v;
    };
    a.kernel_shape = n.attr_ints("kernel_shape", std::vector<std::int64_t>{});
    if (!a.kernel_shape.empty() && static_cast<int>(a.kernel_shape.size()) != s)
        QUANTSIM_THROW(graph_error, desc, ": kernel_shape has ", a.kernel_shape.size(), " entries, expected ", s);
    const auto strides = list("strides", 1, static_cast<std::size_t>(s));
    const auto dil = list("dilations", 1, static_cast<std::size_t>(s));
    const auto pads = list("pads", 0, static_cast<std::size_t>(2 * s));
    for (auto v : strides)
        if (v <= 0) QUANTSIM_THROW(graph_error, desc, ": strides must be positive");
    for (auto v : dil)
        if (v <= 0) QUANTSIM_THROW(graph_error, desc, ": dilations must be positive");
    for (auto v : pads)
        if (v < 0) QUANTSIM_THROW(unsupported_error, desc, ": negative pads are not supported");
    fill2(a.stride, strides, s);
    fill2(a.dilation, dil, s);
    fill2(a.pad_begin, std::vector<std::int64_t>(pads.begin(), pads.begin() + s), s);
    fill2(a.pad_end, std::vector<std::int64_t>(pads.begin() + s, pads.end()), s);
    if (transpose) {
        const auto op = list("output_padding", 0, static_cast<std::size_t>(s));
        fill2(a.output_padding, op, s);
        a.output_shape = n.attr_ints("output_shape", std::vector<std::int64_t>{});
        if (!a.output_shape.empty() && static_cast<int>(a.output_shape.size()) != s)
            QUANTSIM_THROW(unsupported_error, desc, ": output_shape with ", a.output_shape.size(),
                           " entries (only the spatial sizes are supported)");
    }
    const std::string ap = n.attr_string("auto_pad", "NOTSET");
    if (ap == "NOTSET") a.auto_pad = auto_pad_kind::notset;
    else if (ap == "SAME_UPPER") a.auto_pad = auto_pad_kind::same_upper;
    else if (ap == "SAME_LOWER") a.auto_pad = auto_pad_kind::same_lower;
    else if (ap == "VALID") a.auto_pad = auto_pad_kind::valid;
    else QUANTSIM_THROW(unsupported_error, desc, ": auto_pad '", ap, "' is not supported");
    a.group = n.attr_int("group", 1);
    if (a.group < 1) QUANTSIM_THROW(graph_error, desc, ": group must be >= 1, got ", a.group);
    return a;
}

// Pads for one spatial axis of a Conv given the input size (auto_pad resolved).
void conv_pads(const conv_attrs& a, int i, std::int64_t in, std::int64_t k, std::int64_t& pb, std::int64_t& pe) {
    const std::int64_t eff = a.dilation[static_cast<std::size_t>(i)] * (k - 1) + 1;
    const std::int64_t s = a.stride[static_cast<std::size_t>(i)];
    switch (a.auto_pad) {
        case auto_pad_kind::notset:
            pb = a.pad_begin[static_cast<std::size_t>(i)];
            pe = a.pad_end[static_cast<std::size_t>(i)];
            return;
        case auto_pad_kind::valid: pb = pe = 0; return;
        default: {
            const std::int64_t out = (in + s - 1) / s;
            const std::int64_t total = std::max<std::int64_t>(0, (out - 1) * s + eff - in);
            if (a.auto_pad == auto_pad_kind::same_upper) {
                pb = total / 2;
                pe = total - pb;
            } else {
                pe = total / 2;
                pb = total - pe;
            }
        }
    }
}

// ConvTranspose: pads and output size for one axis.
void convt_pads(const conv_attrs& a, int i, std::int64_t in, std::int64_t k, std::int64_t& pb, std::int64_t& pe,
                std::int64_t& out) {
    const std::size_t ii = static_cast<std::size_t>(i);
    const std::int64_t eff = a.dilation[ii] * (k - 1) + 1;
    const std::int64_t s = a.stride[ii];
    const std::int64_t full = s * (in - 1) + a.output_padding[ii] + eff;
    std::int64_t target = -1;
    if (!a.output_shape.empty()) target = a.output_shape[static_cast<std::size_t>(i - (2 - a.spatial))];
    else if (a.auto_pad == auto_pad_kind::same_upper || a.auto_pad == auto_pad_kind::same_lower) target = in * s;
    if (target >= 0) {
        const std::int64_t total = full - target;
        if (a.auto_pad == auto_pad_kind::same_upper) {
            pb = total / 2;
            pe = total - pb;
        } else {
            pe = total / 2;
            pb = total - pe;
        }
        out = target;
        return;
    }
    if (a.auto_pad == auto_pad_kind::valid) {
        pb = pe = 0;
    } else {
        pb = a.pad_begin[ii];
        pe = a.pad_end[ii];
    }
    out = full - pb - pe;
}

struct runtime_shape {
    std::int64_t n, c, h, w;
};

runtime_shape input_shape_2d(const tensor& x, int spatial, const std::string& desc) {
    if (x.rank() != spatial + 2)
        QUANTSIM_THROW(shape_error, desc, ": input has shape ", to_string(x.shape()), ", expected rank ", spatial + 2);
    if (spatial == 1) return {x.shape()[0], x.shape()[1], 1, x.shape()[2]};
    return {x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]};
}

shape_t output_shape_nd(int spatial, std::int64_t n, std::int64_t m, std::int64_t oh, std::int64_t ow) {
    if (spatial == 1) return {n, m, ow};
    return {n, m, oh, ow};
}

// Weight dims viewed as 2-D: [d0, d1, kh, kw].
std::array<std::int64_t, 4> weight_dims(const shape_t& w) {
    if (w.size() == 3) return {w[0], w[1], 1, w[2]};
    return {w[0], w[1], w[2], w[3]};
}

void check_kernel_shape(const conv_attrs& a, const std::array<std::int64_t, 4>& wd, const std::string& desc) {
    if (a.kernel_shape.empty()) return;
    for (int i = 0; i < a.spatial; ++i)
        if (a.kernel_shape[static_cast<std::size_t>(i)] != wd[static_cast<std::size_t>(4 - a.spatial + i)])
            QUANTSIM_THROW(shape_error, desc, ": kernel_shape does not match the weight's spatial dims");
}

// ---- Conv --------------------------------------------------------------------------------------------------------

class conv_op_kernel final : public op_kernel {
public:
    conv_op_kernel(const node& n, const op_inputs_info& in, fused_epilogue ep, std::size_t first_extra)
        : desc_(n.describe()), ep_(std::move(ep)), first_extra_(first_extra) {
        const tensor* w = in_const(in, 1);
        a_ = parse_attrs(n, w ? w->rank() : rank_of(in, 1), false);
        if (w) {
            require_float(*w, desc_, 1);
            const tensor* b = in_const(in, 2);
            if (n.has_input(2) && !b) {
                dynamic_ = true;  // a runtime bias with a constant weight: rare; pack per run
                return;
            }
            if (b) require_float(*b, desc_, 2);
            build(*w, b);
        } else {
            if (!ep_.scale.empty())
                QUANTSIM_THROW(graph_error, desc_, ": cannot fold a channel affine into a runtime weight");
            dynamic_ = true;
        }
    }

    void run(const std::vector<const tensor*>& ins, std::vector<tensor>& outs) override {
        const tensor& x = input(ins, 0, desc_);
        require_float(x, desc_, 0);
        if (dynamic_) {
            const tensor& w = input(ins, 1, desc_);
            require_float(w, desc_, 1);
            const tensor* b = optional_input(ins, 2);
            if (b) require_float(*b, desc_, 2);
            if (w.rank() != a_.spatial + 2)
                QUANTSIM_THROW(shape_error, desc_, ": weight has shape ", to_string(w.shape()), ", expected rank ",
                               a_.spatial + 2);
            build(w, b);
        }
        const runtime_shape s = input_shape_2d(x, a_.spatial, desc_);
        if (s.c != g_.in_channels)
            QUANTSIM_THROW(shape_error, desc_, ": input has ", s.c, " channels (shape ", to_string(x.shape()),
                           "), the weight expects ", g_.in_channels);
        std::array<std::int64_t, 2> pb{0, 0}, pe{0, 0};
        const std::int64_t in_sz[2] = {s.h, s.w};
        for (int i = 2 - a_.spatial; i < 2; ++i)
            conv_pads(a_, i, in_sz[i], g_.kernel[static_cast<std::size_t>(i)], pb[static_cast<std::size_t>(i)],
                      pe[static_cast<std::size_t>(i)]);
        if (pb != kernel_->geometry().pad_begin || pe != kernel_->geometry().pad_end) kernel_->set_padding(pb, pe);
        const std::int64_t oh = kernel_->geometry().conv_out(0, s.h), ow = kernel_->geometry().conv_out(1, s.w);
        if (oh <= 0 || ow <= 0)
            QUANTSIM_THROW(shape_error, desc_, ": input ", to_string(x.shape()),
                           " is smaller than the (dilated) kernel after padding");
        tensor y = detail::new_tensor(output_shape_nd(a_.spatial, s.n, g_.out_channels, oh, ow));
        conv_epilogue ep;
        ep.lo = ep_.lo;
        ep.hi = ep_.hi;
        std::vector<const float*> extra;
        if (ep_.program) {
            check_program_inputs(ins, first_extra_, ep_.inputs, y.shape(), 2, desc_, &ep_.expected);
            for (std::size_t i = 0; i < ep_.inputs.size(); ++i) extra.push_back(ins[first_extra_ + i]->data<float>());
            ep.program = ep_.program.get();
            ep.inputs = extra.data();
        }
        if (ep_.input_scale) {
            const tensor& sc = input(ins, first_extra_ + ep_.inputs.size(), desc_);
            require_float(sc, desc_, first_extra_ + ep_.inputs.size());
            if (sc.rank() != 4 || sc.shape()[0] != s.n || sc.shape()[1] != s.c || sc.shape()[2] != 1 || sc.shape()[3] != 1)
                QUANTSIM_THROW(shape_error, desc_, ": the input scale has shape ", to_string(sc.shape()), ", expected [",
                               s.n, ", ", s.c, ", 1, 1]");
            ep.input_scale = sc.data<float>();
        }
        kernel_->run(s.n, s.h, s.w, x.data<float>(), y.data<float>(), ep);
        outs[0] = std::move(y);
    }

private:
    void build(const tensor& w, const tensor* b) {
        const auto wd = weight_dims(w.shape());
        check_kernel_shape(a_, wd, desc_);
        g_ = conv_geometry{};
        g_.out_channels = wd[0];
        g_.group = a_.group;
        g_.in_channels = wd[1] * a_.group;
        if (g_.out_channels % a_.group != 0)
            QUANTSIM_THROW(shape_error, desc_, ": ", g_.out_channels, " output channels are not divisible by group ",
                           a_.group);
        g_.kernel = {wd[2], wd[3]};
        g_.stride = a_.stride;
        g_.dilation = a_.dilation;
        g_.pad_begin = a_.pad_begin;
        g_.pad_end = a_.pad_end;
        if (b && b->numel() != g_.out_channels)
            QUANTSIM_THROW(shape_error, desc_, ": bias has ", b->numel(), " values for ", g_.out_channels,
                           " output channels");
        const float* wp = w.data<float>();
        const float* bp = b ? b->data<float>() : nullptr;
        std::vector<float> wf, bf;
        if (!ep_.scale.empty()) {
            // Fold y = conv(x) * s + t into the weights and bias.
            if (static_cast<std::int64_t>(ep_.scale.size()) != g_.out_channels)
                QUANTSIM_THROW(shape_error, desc_, ": folded affine has ", ep_.scale.size(), " channels, the conv has ",
                               g_.out_channels);
            const std::int64_t per = w.numel() / g_.out_channels;
            wf.assign(wp, wp + w.numel());
            bf.assign(static_cast<std::size_t>(g_.out_channels), 0.0f);
            for (std::int64_t m = 0; m < g_.out_channels; ++m) {
                const float sc = ep_.scale[static_cast<std::size_t>(m)];
                for (std::int64_t i = 0; i < per; ++i) wf[static_cast<std::size_t>(m * per + i)] *= sc;
                bf[static_cast<std::size_t>(m)] = (bp ? bp[m] : 0.0f) * sc + ep_.shift[static_cast<std::size_t>(m)];
            }
            wp = wf.data();
            bp = bf.data();
        }
        kernel_ = std::make_unique<conv2d_kernel>(g_, wp, bp);
    }

    std::string desc_;
    conv_attrs a_;
    conv_geometry g_;
    fused_epilogue ep_;
    std::size_t first_extra_;
    bool dynamic_ = false;
    std::unique_ptr<conv2d_kernel> kernel_;
};

std::vector<value_info> infer_conv(const node& n, const op_inputs_info& in) {
    const std::string desc = n.describe();
    auto xd = dims_of_input(in, 0);
    auto wd_in = dims_of_input(in, 1);
    const int wr = rank_of(in, 1);
    const conv_attrs a = parse_attrs(n, wr, false);
    if (!xd) return {unknown_shape(dtype::float32)};
    const int s = a.spatial;
    if (static_cast<int>(xd->size()) != s + 2)
        QUANTSIM_THROW(shape_error, desc, ": input has rank ", xd->size(), ", expected ", s + 2);
    std::vector<sdim> out(static_cast<std::size_t>(s + 2));
    out[0] = (*xd)[0];
    std::vector<std::int64_t> k(static_cast<std::size_t>(s), -1);
    if (wd_in) {
        out[1] = (*wd_in)[0];
        if ((*wd_in)[1].known() && (*xd)[1].known() && (*wd_in)[1].v * a.group != (*xd)[1].v)
            QUANTSIM_THROW(shape_error, desc, ": input has ", (*xd)[1].v, " channels, the weight expects ",
                           (*wd_in)[1].v * a.group, " (", (*wd_in)[1].v, " x group ", a.group, ")");
        for (int i = 0; i < s; ++i) k[static_cast<std::size_t>(i)] = (*wd_in)[static_cast<std::size_t>(2 + i)].v;
    }
    if (!a.kernel_shape.empty()) k = a.kernel_shape;
    for (int i = 0; i < s; ++i) {
        const sdim& d = (*xd)[static_cast<std::size_t>(2 + i)];
        const std::int64_t kk = k[static_cast<std::size_t>(i)];
        if (!d.known() || kk < 0) continue;
        std::int64_t pb, pe;
        conv_pads(a, 2 - s + i, d.v, kk, pb, pe);
        const std::size_t ai = static_cast<std::size_t>(2 - s + i);
        const std::int64_t eff = a.dilation[ai] * (kk - 1) + 1;
        const std::int64_t o = (d.v + pb + pe - eff) / a.stride[ai] + 1;
        if (o <= 0)
            QUANTSIM_THROW(shape_error, desc, ": spatial size ", d.v, " is smaller than the (dilated) kernel ", eff);
        out[static_cast<std::size_t>(2 + i)] = {o, {}};
    }
    return {make_info(dtype::float32, out)};
}

// ---- ConvTranspose -----------------------------------------------------------------------------------------------

class convt_op_kernel final : public op_kernel {
public:
    convt_op_kernel(const node& n, const op_inputs_info& in, fused_epilogue ep, std::size_t first_extra)
        : desc_(n.describe()), ep_(std::move(ep)), first_extra_(first_extra) {
        const tensor* w = in_const(in, 1);
        a_ = parse_attrs(n, w ? w->rank() : rank_of(in, 1), true);
        const tensor* b = in_const(in, 2);
        if (w && (!n.has_input(2) || b)) {
            require_float(*w, desc_, 1);
            if (b) require_float(*b, desc_, 2);
            build(*w, b);
        } else {
            if (!ep_.scale.empty())
                QUANTSIM_THROW(graph_error, desc_, ": cannot fold a channel affine into a runtime weight");
            dynamic_ = true;
        }
    }

    void run(const std::vector<const tensor*>& ins, std::vector<tensor>& outs) override {
        const tensor& x = input(ins, 0, desc_);
        require_float(x, desc_, 0);
        if (dynamic_) {
            const tensor& w = input(ins, 1, desc_);
            require_float(w, desc_, 1);
            const tensor* b = optional_input(ins, 2);
            if (b) require_float(*b, desc_, 2);
            if (w.rank() != a_.spatial + 2)
                QUANTSIM_THROW(shape_error, desc_, ": weight has shape ", to_string(w.shape()), ", expected rank ",
                               a_.spatial + 2);
            build(w, b);
        }
        const runtime_shape s = input_shape_2d(x, a_.spatial, desc_);
        if (s.c != g_.in_channels)
            QUANTSIM_THROW(shape_error, desc_, ": input has ", s.c, " channels, the weight expects ", g_.in_channels);
        std::array<std::int64_t, 2> pb{0, 0}, pe{0, 0}, o{1, 1};
        const std::int64_t in_sz[2] = {s.h, s.w};
        for (int i = 2 - a_.spatial; i < 2; ++i) {
            const std::size_t ii = static_cast<std::size_t>(i);
            convt_pads(a_, i, in_sz[i], g_.kernel[ii], pb[ii], pe[ii], o[ii]);
            if (pb[ii] < 0 || pe[ii] < 0)
                QUANTSIM_THROW(unsupported_error, desc_, ": output_shape needs negative padding");
        }
        if (o[0] <= 0 || o[1] <= 0)
            QUANTSIM_THROW(shape_error, desc_, ": output size would be empty for input ", to_string(x.shape()));
        kernel_->set_padding(pb, pe);
        tensor y = detail::new_tensor(output_shape_nd(a_.spatial, s.n, g_.out_channels, o[0], o[1]));
        conv_epilogue ep;
        ep.lo = ep_.lo;
        ep.hi = ep_.hi;
        std::vector<const float*> extra;
        if (ep_.program) {
            check_program_inputs(ins, first_extra_, ep_.inputs, y.shape(), 2, desc_, &ep_.expected);
            for (std::size_t i = 0; i < ep_.inputs.size(); ++i) extra.push_back(ins[first_extra_ + i]->data<float>());
            ep.program = ep_.program.get();
            ep.inputs = extra.data();
        }
        kernel_->run(s.n, s.h, s.w, o[0], o[1], x.data<float>(), y.data<float>(), ep);
        outs[0] = std::move(y);
    }

private:
    void build(const tensor& w, const tensor* b) {
        const auto wd = weight_dims(w.shape());
        check_kernel_shape(a_, wd, desc_);
        g_ = conv_geometry{};
        g_.in_channels = wd[0];
        g_.group = a_.group;
        g_.out_channels = wd[1] * a_.group;
        if (g_.in_channels % a_.group != 0)
            QUANTSIM_THROW(shape_error, desc_, ": ", g_.in_channels, " input channels are not divisible by group ",
                           a_.group);
        g_.kernel = {wd[2], wd[3]};
        g_.stride = a_.stride;
        g_.dilation = a_.dilation;
        if (b && b->numel() != g_.out_channels)
            QUANTSIM_THROW(shape_error, desc_, ": bias has ", b->numel(), " values for ", g_.out_channels,
                           " output channels");
        const float* wp = w.data<float>();
        const float* bp = b ? b->data<float>() : nullptr;
        std::vector<float> wf, bf;
        if (!ep_.scale.empty()) {
            if (static_cast<std::int64_t>(ep_.scale.size()) != g_.out_channels)
                QUANTSIM_THROW(shape_error, desc_, ": folded affine has ", ep_.scale.size(), " channels, expected ",
                               g_.out_channels);
            // weight [C, M/G, kh, kw]: output channel m = g * M/G + mm.
            const std::int64_t cg = g_.in_channels / g_.group, mg = wd[1], k = wd[2] * wd[3];
            wf.assign(wp, wp + w.numel());
            for (std::int64_t c = 0; c < g_.in_channels; ++c) {
                const std::int64_t grp = c / cg;
                for (std::int64_t mm = 0; mm < mg; ++mm)
                    for (std::int64_t i = 0; i < k; ++i)
                        wf[static_cast<std::size_t>((c * mg + mm) * k + i)] *= ep_.scale[static_cast<std::size_t>(grp * mg + mm)];
            }
            bf.resize(static_cast<std::size_t>(g_.out_channels));
            for (std::int64_t m = 0; m < g_.out_channels; ++m)
                bf[static_cast<std::size_t>(m)] = (bp ? bp[m] : 0.0f) * ep_.scale[static_cast<std::size_t>(m)] +
                                                  ep_.shift[static_cast<std::size_t>(m)];
            wp = wf.data();
            bp = bf.data();
        }
        kernel_ = std::make_unique<conv_transpose2d_kernel>(g_, wp, bp);
    }

    std::string desc_;
    conv_attrs a_;
    conv_geometry g_;
    fused_epilogue ep_;
    std::size_t first_extra_;
    bool dynamic_ = false;
    std::unique_ptr<conv_transpose2d_kernel> kernel_;
};

std::vector<value_info> infer_convt(const node& n, const op_inputs_info& in) {
    const std::string desc = n.describe();
    auto xd = dims_of_input(in, 0);
    auto wd_in = dims_of_input(in, 1);
    const conv_attrs a = parse_attrs(n, rank_of(in, 1), true);
    if (!xd) return {unknown_shape(dtype::float32)};
    const int s = a.spatial;
    if (static_cast<int>(xd->size()) != s + 2)
        QUANTSIM_THROW(shape_error, desc, ": input has rank ", xd->size(), ", expected ", s + 2);
    std::vector<sdim> out(static_cast<std::size_t>(s + 2));
    out[0] = (*xd)[0];
    std::vector<std::int64_t> k(static_cast<std::size_t>(s), -1);
    if (wd_in) {
        if ((*wd_in)[1].known()) out[1] = {(*wd_in)[1].v * a.group, {}};
        if ((*wd_in)[0].known() && (*xd)[1].known() && (*wd_in)[0].v != (*xd)[1].v)
            QUANTSIM_THROW(shape_error, desc, ": input has ", (*xd)[1].v, " channels, the weight expects ",
                           (*wd_in)[0].v);
        for (int i = 0; i < s; ++i) k[static_cast<std::size_t>(i)] = (*wd_in)[static_cast<std::size_t>(2 + i)].v;
    }
    if (!a.kernel_shape.empty()) k = a.kernel_shape;
    for (int i = 0; i < s; ++i) {
        const sdim& d = (*xd)[static_cast<std::size_t>(2 + i)];
        const std::int64_t kk = k[static_cast<std::size_t>(i)];
        if (!d.known() || kk < 0) continue;
        std::int64_t pb, pe, o;
        convt_pads(a, 2 - s + i, d.v, kk, pb, pe, o);
        out[static_cast<std::size_t>(2 + i)] = {o, {}};
    }
    return {make_info(dtype::float32, out)};
}

}  // namespace

// ---- fusion hooks ------------------------------------------------------------------------------------------------

std::unique_ptr<op_kernel> create_conv_fused(const node& n, const op_inputs_info& in, fused_epilogue ep) {
    if (n.op_type == "Conv") return std::make_unique<conv_op_kernel>(n, in, std::move(ep), 3);
    return std::make_unique<convt_op_kernel>(n, in, std::move(ep), 3);
}

std::int64_t conv_channels(const node& n, const op_inputs_info& in) {
    const tensor* w = in_const(in, 1);
    if (!w || w->rank() < 3) return -1;
    if (n.op_type == "Conv") return w->shape()[0];
    return w->shape()[1] * n.attr_int("group", 1);
}

void register_conv_ops(op_registry& r) {
    {
        op_schema s = schema("Conv", 2, 3);
        s.infer = infer_conv;
        s.create = [](const node& n, const op_inputs_info& in) -> std::unique_ptr<op_kernel> {
            return std::make_unique<conv_op_kernel>(n, in, fused_epilogue{}, 3);
        };
        r.add(std::move(s));
    }
    {
        op_schema s = schema("ConvTranspose", 2, 3);
        s.infer = infer_convt;
        s.create = [](const node& n, const op_inputs_info& in) -> std::unique_ptr<op_kernel> {
            return std::make_unique<convt_op_kernel>(n, in, fused_epilogue{}, 3);
        };
        r.add(std::move(s));
    }
}

}  // namespace quantsim::detail
