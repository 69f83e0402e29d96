// A small, self-contained op registry for the IR tests: plain reference implementations of the handful of ops the
// graph, shape-inference, pass and ONNX tests need, so those tests do not depend on the built-in kernels. Also a
// tiny interpreter (run_graph) that executes a graph with these kernels.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <quantsim/ir/graph.hpp>
#include <quantsim/ir/op.hpp>

namespace quantsim::test {

inline value_info make_info(dtype t, shape_t shape, std::vector<std::string> params = {}) {
    value_info v;
    v.type = t;
    v.shape = std::move(shape);
    v.dim_params = std::move(params);
    v.shape_known = true;
    return v;
}

inline std::string param_of(const value_info& v, std::size_t i) { return std::string(v.dim_param(i)); }

/// Numpy broadcasting of two known shapes with dim params (-1 dims broadcast against 1 or equal symbols).
inline value_info broadcast_info(const node& n, const value_info& a, const value_info& b) {
    const std::size_t r = std::max(a.shape.size(), b.shape.size());
    value_info o;
    o.type = a.type;
    o.shape_known = true;
    o.shape.assign(r, -1);
    o.dim_params.assign(r, "");
    for (std::size_t i = 0; i < r; ++i) {
        const std::size_t ia = i + a.shape.size() - r, ib = i + b.shape.size() - r;
        const bool ha = i + a.shape.size() >= r, hb = i + b.shape.size() >= r;
        const std::int64_t da = ha ? a.shape[ia] : 1, db = hb ? b.shape[ib] : 1;
        const std::string pa = ha ? param_of(a, ia) : "", pb = hb ? param_of(b, ib) : "";
        if (da == 1) {
            o.shape[i] = db;
            o.dim_params[i] = pb;
        } else if (db == 1 || da == db) {
            o.shape[i] = da;
            o.dim_params[i] = da < 0 ? (pa.empty() ? pb : pa) : "";
        } else if (da < 0 || db < 0) {
            o.shape[i] = std::max(da, db);
            if (o.shape[i] < 0) o.dim_params[i] = pa.empty() ? pb : pa;
        } else {
            QUANTSIM_THROW(shape_error, n.describe(), ": cannot broadcast ", to_string(a.shape), " with ", to_string(b.shape));
        }
    }
    return o;
}

/// Element offsets of a broadcast operand for every output index.
inline std::vector<std::int64_t> broadcast_offsets(const shape_t& in, const shape_t& out) {
    const std::size_t r = out.size();
    std::int64_t total = 1;
    for (auto d : out) total *= d;
    std::vector<std::int64_t> offs(static_cast<std::size_t>(total));
    std::vector<std::int64_t> stride(r, 0);
    std::int64_t s = 1;
    for (std::size_t k = in.size(); k-- > 0;) {
        const std::size_t o = k + r - in.size();
        stride[o] = in[k] == 1 ? 0 : s;
        s *= in[k];
    }
    std::vector<std::int64_t> idx(r, 0);
    for (std::int64_t i = 0; i < total; ++i) {
        std::int64_t off = 0;
        for (std::size_t k = 0; k < r; ++k) off += idx[k] * stride[k];
        offs[static_cast<std::size_t>(i)] = off;
        for (std::size_t k = r; k-- > 0;) {
            if (++idx[k] < out[k]) break;
            idx[k] = 0;
        }
    }
    return offs;
}

template <class F>
class lambda_kernel final : public op_kernel {
public:
    explicit lambda_kernel(F f) : f_(std::move(f)) {}
    void run(const std::vector<const tensor*>& in, std::vector<tensor>& out) override { f_(in, out); }

private:
    F f_;
};
template <class F>
std::unique_ptr<op_kernel> make_kernel(F f) {
    return std::make_unique<lambda_kernel<F>>(std::move(f));
}

inline std::vector<std::int64_t> ints_of(const tensor& t) {
    std::vector<std::int64_t> r(static_cast<std::size_t>(t.numel()));
    for (std::int64_t i = 0; i < t.numel(); ++i)
        r[static_cast<std::size_t>(i)] = t.type() == dtype::int64 ? t.data<std::int64_t>()[i] : t.data<std::int32_t>()[i];
    return r;
}

inline double get_as_double(const tensor& t, std::int64_t i) {
    switch (t.type()) {
        case dtype::float32: return t.data<float>()[i];
        case dtype::int64: return static_cast<double>(t.data<std::int64_t>()[i]);
        case dtype::int32: return t.data<std::int32_t>()[i];
        default: QUANTSIM_THROW(unsupported_error, "test op: dtype ", name_of(t.type()));
    }
}
inline void set_from_double(tensor& t, std::int64_t i, double v) {
    switch (t.type()) {
        case dtype::float32: t.data<float>()[i] = static_cast<float>(v); break;
        case dtype::int64: t.data<std::int64_t>()[i] = static_cast<std::int64_t>(v); break;
        case dtype::int32: t.data<std::int32_t>()[i] = static_cast<std::int32_t>(v); break;
        default: QUANTSIM_THROW(unsupported_error, "test op: dtype ", name_of(t.type()));
    }
}

inline op_schema unary_schema(std::string op, double (*f)(double)) {
    op_schema s;
    s.op_type = op;
    s.infer = [](const node&, const op_inputs_info& in) {
        return std::vector<value_info>{in.infos[0] ? *in.infos[0] : value_info{}};
    };
    s.create = [f](const node&, const op_inputs_info&) {
        return make_kernel([f](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            out[0] = tensor::empty(in[0]->shape(), in[0]->type());
            for (std::int64_t i = 0; i < in[0]->numel(); ++i) set_from_double(out[0], i, f(get_as_double(*in[0], i)));
        });
    };
    return s;
}

inline op_schema binary_schema(std::string op, double (*f)(double, double)) {
    op_schema s;
    s.op_type = op;
    s.min_inputs = s.max_inputs = 2;
    s.infer = [](const node& n, const op_inputs_info& in) {
        if (!in.infos[0] || !in.infos[1]) return std::vector<value_info>{value_info{}};
        return std::vector<value_info>{broadcast_info(n, *in.infos[0], *in.infos[1])};
    };
    s.create = [f](const node& n, const op_inputs_info&) {
        return make_kernel([f, n](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            const value_info o = broadcast_info(n, make_info(in[0]->type(), in[0]->shape()), make_info(in[1]->type(), in[1]->shape()));
            out[0] = tensor::empty(o.shape, in[0]->type());
            const auto oa = broadcast_offsets(in[0]->shape(), o.shape), ob = broadcast_offsets(in[1]->shape(), o.shape);
            for (std::int64_t i = 0; i < out[0].numel(); ++i)
                set_from_double(out[0], i, f(get_as_double(*in[0], oa[static_cast<std::size_t>(i)]),
                                             get_as_double(*in[1], ob[static_cast<std::size_t>(i)])));
        });
    };
    return s;
}

/// Output spatial size of a convolution, -1 when the input size is unknown.
inline std::int64_t conv_out(std::int64_t in, std::int64_t k, std::int64_t pb, std::int64_t pe, std::int64_t s, std::int64_t d) {
    if (in < 0) return -1;
    return (in + pb + pe - d * (k - 1) - 1) / s + 1;
}

inline op_schema conv_schema() {
    op_schema s;
    s.op_type = "Conv";
    s.min_inputs = 2;
    s.max_inputs = 3;
    s.infer = [](const node& n, const op_inputs_info& in) {
        if (!in.infos[0] || !in.infos[1]) return std::vector<value_info>{value_info{}};
        const auto& x = *in.infos[0];
        const auto& w = *in.infos[1];
        if (x.shape.size() != 4 || w.shape.size() != 4)
            QUANTSIM_THROW(shape_error, n.describe(), ": test Conv is 2-D only");
        const std::int64_t g = n.attr_int("group", 1);
        // Attribute lengths are checked: the ONNX fuzz tests feed this schema corrupted nodes.
        if (n.attr_ints("pads", std::vector<std::int64_t>{0, 0, 0, 0}).size() != 4 ||
            n.attr_ints("strides", std::vector<std::int64_t>{1, 1}).size() != 2 ||
            n.attr_ints("dilations", std::vector<std::int64_t>{1, 1}).size() != 2 || g < 1)
            QUANTSIM_THROW(graph_error, n.describe(), ": test Conv needs 4 pads, 2 strides, 2 dilations, group >= 1");
        for (auto v : n.attr_ints("strides", std::vector<std::int64_t>{1, 1}))
            if (v < 1) QUANTSIM_THROW(graph_error, n.describe(), ": strides must be positive");
        if (x.shape[1] >= 0 && x.shape[1] != w.shape[1] * g)
            QUANTSIM_THROW(shape_error, n.describe(), ": input has ", x.shape[1], " channels, weight expects ", w.shape[1] * g);
        const auto pads = n.attr_ints("pads", std::vector<std::int64_t>{0, 0, 0, 0});
        const auto strides = n.attr_ints("strides", std::vector<std::int64_t>{1, 1});
        const auto dil = n.attr_ints("dilations", std::vector<std::int64_t>{1, 1});
        value_info o = make_info(x.type, {x.shape[0], w.shape[0], conv_out(x.shape[2], w.shape[2], pads[0], pads[2], strides[0], dil[0]),
                                          conv_out(x.shape[3], w.shape[3], pads[1], pads[3], strides[1], dil[1])},
                                 {param_of(x, 0), "", "", ""});
        if (in.infos.size() > 2 && in.infos[2] && in.infos[2]->shape != shape_t{w.shape[0]})
            QUANTSIM_THROW(shape_error, n.describe(), ": bias shape ", to_string(in.infos[2]->shape), " does not match ", w.shape[0], " output channels");
        return std::vector<value_info>{o};
    };
    s.create = [](const node& n, const op_inputs_info&) {
        return make_kernel([n](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            const tensor& x = *in[0];
            const tensor& w = *in[1];
            const tensor* b = in.size() > 2 ? in[2] : nullptr;
            const std::int64_t g = n.attr_int("group", 1);
            const auto pads = n.attr_ints("pads", std::vector<std::int64_t>{0, 0, 0, 0});
            const auto st = n.attr_ints("strides", std::vector<std::int64_t>{1, 1});
            const auto dl = n.attr_ints("dilations", std::vector<std::int64_t>{1, 1});
            const std::int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
            const std::int64_t M = w.dim(0), KC = w.dim(1), KH = w.dim(2), KW = w.dim(3);
            const std::int64_t OH = conv_out(H, KH, pads[0], pads[2], st[0], dl[0]);
            const std::int64_t OW = conv_out(W, KW, pads[1], pads[3], st[1], dl[1]);
            (void)C;
            out[0] = tensor::zeros({N, M, OH, OW});
            float* y = out[0].f32();
            const float* xp = x.f32();
            const float* wp = w.f32();
            for (std::int64_t nn = 0; nn < N; ++nn)
                for (std::int64_t m = 0; m < M; ++m) {
                    const std::int64_t grp = m / (M / g);
                    for (std::int64_t oh = 0; oh < OH; ++oh)
                        for (std::int64_t ow = 0; ow < OW; ++ow) {
                            double acc = b ? b->f32()[m] : 0.0;
                            for (std::int64_t c = 0; c < KC; ++c)
                                for (std::int64_t kh = 0; kh < KH; ++kh)
                                    for (std::int64_t kw = 0; kw < KW; ++kw) {
                                        const std::int64_t ih = oh * st[0] - pads[0] + kh * dl[0];
                                        const std::int64_t iw = ow * st[1] - pads[1] + kw * dl[1];
                                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                        acc += double(xp[((nn * x.dim(1) + grp * KC + c) * H + ih) * W + iw]) *
                                               wp[((m * KC + c) * KH + kh) * KW + kw];
                                    }
                            y[((nn * M + m) * OH + oh) * OW + ow] = static_cast<float>(acc);
                        }
                }
        });
    };
    return s;
}

inline op_schema batchnorm_schema() {
    op_schema s;
    s.op_type = "BatchNormalization";
    s.min_inputs = s.max_inputs = 5;
    s.infer = [](const node&, const op_inputs_info& in) {
        return std::vector<value_info>{in.infos[0] ? *in.infos[0] : value_info{}};
    };
    s.create = [](const node& n, const op_inputs_info&) {
        const float eps = n.attr_float("epsilon", 1e-5f);
        return make_kernel([eps](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            const tensor& x = *in[0];
            out[0] = tensor::empty(x.shape());
            const std::int64_t C = x.dim(1), inner = x.numel() / x.dim(0) / C;
            for (std::int64_t i = 0; i < x.numel(); ++i) {
                const std::int64_t c = (i / inner) % C;
                const double sc = in[1]->f32()[c] / std::sqrt(double(in[4]->f32()[c]) + eps);
                out[0].f32()[i] = static_cast<float>((x.f32()[i] - in[3]->f32()[c]) * sc + in[2]->f32()[c]);
            }
        });
    };
    return s;
}

inline op_schema shape_schema() {
    op_schema s;
    s.op_type = "Shape";
    s.infer = [](const node&, const op_inputs_info& in) {
        value_info o = make_info(dtype::int64, {in.infos[0] ? static_cast<std::int64_t>(in.infos[0]->shape.size()) : -1});
        if (!in.infos[0]) o.shape_known = false;
        return std::vector<value_info>{o};
    };
    s.create = [](const node&, const op_inputs_info&) {
        return make_kernel([](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            out[0] = tensor::from(in[0]->shape(), {static_cast<std::int64_t>(in[0]->rank())});
        });
    };
    return s;
}

inline op_schema gather_schema() {
    op_schema s;
    s.op_type = "Gather";
    s.min_inputs = s.max_inputs = 2;
    s.infer = [](const node&, const op_inputs_info& in) {
        if (!in.infos[0] || !in.infos[1] || in.infos[0]->shape.size() != 1) return std::vector<value_info>{value_info{}};
        return std::vector<value_info>{make_info(in.infos[0]->type, in.infos[1]->shape)};
    };
    s.create = [](const node&, const op_inputs_info&) {
        return make_kernel([](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            const auto idx = ints_of(*in[1]);
            out[0] = tensor::empty(in[1]->shape(), in[0]->type());
            for (std::size_t i = 0; i < idx.size(); ++i) {
                auto k = idx[i] < 0 ? idx[i] + in[0]->dim(0) : idx[i];
                if (k < 0 || k >= in[0]->dim(0)) QUANTSIM_THROW(shape_error, "test Gather: index ", idx[i], " out of range");
                set_from_double(out[0], static_cast<std::int64_t>(i), get_as_double(*in[0], k));
            }
        });
    };
    return s;
}

inline op_schema concat_schema() {
    op_schema s;
    s.op_type = "Concat";
    s.max_inputs = 64;
    s.infer = [](const node& n, const op_inputs_info& in) {
        const auto axis_attr = n.attr_int("axis");
        value_info o;
        for (auto* i : in.infos)
            if (!i) return std::vector<value_info>{value_info{}};
        o = *in.infos[0];
        const int axis = normalize_axis(axis_attr, static_cast<int>(o.shape.size()));
        for (std::size_t k = 1; k < in.infos.size(); ++k) {
            const auto d = in.infos[k]->shape[static_cast<std::size_t>(axis)];
            o.shape[static_cast<std::size_t>(axis)] = (o.shape[static_cast<std::size_t>(axis)] < 0 || d < 0) ? -1 : o.shape[static_cast<std::size_t>(axis)] + d;
        }
        if (!o.dim_params.empty()) o.dim_params[static_cast<std::size_t>(axis)].clear();
        return std::vector<value_info>{o};
    };
    s.create = [](const node& n, const op_inputs_info&) {
        const auto axis_attr = n.attr_int("axis");
        return make_kernel([axis_attr](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            shape_t shape = in[0]->shape();
            const int axis = normalize_axis(axis_attr, in[0]->rank());
            shape[static_cast<std::size_t>(axis)] = 0;
            for (auto* t : in) shape[static_cast<std::size_t>(axis)] += t->dim(axis);
            out[0] = tensor::empty(shape, in[0]->type());
            std::int64_t outer = 1;
            for (int k = 0; k < axis; ++k) outer *= shape[static_cast<std::size_t>(k)];
            const std::size_t es = size_of(in[0]->type());
            auto* dst = static_cast<char*>(out[0].raw());
            for (std::int64_t o = 0; o < outer; ++o)
                for (auto* t : in) {
                    const std::size_t chunk = static_cast<std::size_t>(t->numel() / std::max<std::int64_t>(outer, 1)) * es;
                    std::memcpy(dst, static_cast<const char*>(t->raw()) + o * chunk, chunk);
                    dst += chunk;
                }
        });
    };
    return s;
}

inline op_schema unsqueeze_schema() {
    op_schema s;
    s.op_type = "Unsqueeze";
    s.min_inputs = s.max_inputs = 2;
    s.infer = [](const node&, const op_inputs_info& in) {
        if (!in.infos[0] || !in.constants[1]) return std::vector<value_info>{value_info{}};
        value_info o = *in.infos[0];
        o.dim_params.resize(o.shape.size());
        auto axes = ints_of(*in.constants[1]);
        const auto r = static_cast<std::int64_t>(o.shape.size() + axes.size());
        for (auto& a : axes) a = normalize_axis(a, static_cast<int>(r), "Unsqueeze axis");
        std::sort(axes.begin(), axes.end());
        for (auto a : axes) {
            o.shape.insert(o.shape.begin() + a, 1);
            o.dim_params.insert(o.dim_params.begin() + a, "");
        }
        return std::vector<value_info>{o};
    };
    s.create = [](const node&, const op_inputs_info& info) {
        auto axes = ints_of(*info.constants[1]);
        return make_kernel([axes](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            shape_t shape = in[0]->shape();
            auto ax = axes;
            const auto r = static_cast<std::int64_t>(shape.size() + ax.size());
            for (auto& a : ax) a = a < 0 ? a + r : a;
            std::sort(ax.begin(), ax.end());
            for (auto a : ax) shape.insert(shape.begin() + a, 1);
            out[0] = in[0]->clone().reshape(shape);
        });
    };
    return s;
}

inline op_schema reshape_schema() {
    op_schema s;
    s.op_type = "Reshape";
    s.min_inputs = s.max_inputs = 2;
    s.infer = [](const node& n, const op_inputs_info& in) {
        value_info o;
        if (!in.infos[0]) return std::vector<value_info>{o};
        o.type = in.infos[0]->type;
        if (in.constants[1]) {
            auto t = ints_of(*in.constants[1]);
            const auto& x = *in.infos[0];
            shape_t r(t.size());
            std::int64_t known = 1, total = 1;
            int infer = -1;
            bool x_known = x.fully_known();
            for (auto d : x.shape) total *= d;
            for (std::size_t i = 0; i < t.size(); ++i) {
                if (t[i] == 0) r[i] = i < x.shape.size() ? x.shape[i] : -1;
                else r[i] = t[i];
                if (r[i] == -1 && t[i] == -1) infer = static_cast<int>(i);
                else if (r[i] >= 0) known *= r[i];
            }
            if (infer >= 0) r[static_cast<std::size_t>(infer)] = x_known && known ? total / known : -1;
            o.shape = r;
            o.shape_known = true;
            if (x_known && infer < 0 && known != total) QUANTSIM_THROW(shape_error, n.describe(), ": size mismatch");
        } else if (in.infos[1] && in.infos[1]->fully_known() && in.infos[1]->shape.size() == 1 && in.infos[1]->shape[0] <= 64) {
            o.shape.assign(static_cast<std::size_t>(in.infos[1]->shape[0]), -1);
            o.shape_known = true;
        }
        return std::vector<value_info>{o};
    };
    s.create = [](const node&, const op_inputs_info&) {
        return make_kernel([](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            auto t = ints_of(*in[1]);
            shape_t r(t.begin(), t.end());
            for (std::size_t i = 0; i < r.size(); ++i)
                if (r[i] == 0) r[i] = in[0]->shape()[i];
            out[0] = in[0]->clone().reshape(r);
        });
    };
    s.moves_data = true;
    return s;
}

inline op_schema cast_schema() {
    op_schema s;
    s.op_type = "Cast";
    s.infer = [](const node& n, const op_inputs_info& in) {
        value_info o = in.infos[0] ? *in.infos[0] : value_info{};
        o.type = n.attr_int("to") == 7 ? dtype::int64 : n.attr_int("to") == 6 ? dtype::int32 : dtype::float32;
        return std::vector<value_info>{o};
    };
    s.create = [](const node& n, const op_inputs_info&) {
        const dtype to = n.attr_int("to") == 7 ? dtype::int64 : n.attr_int("to") == 6 ? dtype::int32 : dtype::float32;
        return make_kernel([to](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            out[0] = tensor::empty(in[0]->shape(), to);
            for (std::int64_t i = 0; i < in[0]->numel(); ++i) set_from_double(out[0], i, get_as_double(*in[0], i));
        });
    };
    return s;
}

inline op_schema flatten_schema() {
    op_schema s;
    s.op_type = "Flatten";
    s.infer = [](const node& n, const op_inputs_info& in) {
        if (!in.infos[0]) return std::vector<value_info>{value_info{}};
        const auto& x = *in.infos[0];
        const int axis = normalize_axis(n.attr_int("axis", 1), static_cast<int>(x.shape.size()) + 1);
        std::int64_t a = 1, b = 1;
        for (int i = 0; i < static_cast<int>(x.shape.size()); ++i) {
            auto& p = i < axis ? a : b;
            p = (p < 0 || x.shape[static_cast<std::size_t>(i)] < 0) ? -1 : p * x.shape[static_cast<std::size_t>(i)];
        }
        value_info o = make_info(x.type, {a, b});
        if (axis == 1 && x.shape[0] < 0 && !x.dim_param(0).empty()) o.dim_params = {param_of(x, 0), ""};
        return std::vector<value_info>{o};
    };
    s.create = [](const node& n, const op_inputs_info&) {
        const auto axis_attr = n.attr_int("axis", 1);
        return make_kernel([axis_attr](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            const int axis = normalize_axis(axis_attr, in[0]->rank() + 1);
            std::int64_t a = 1;
            for (int i = 0; i < axis; ++i) a *= in[0]->dim(i);
            out[0] = in[0]->clone().reshape({a, a ? in[0]->numel() / a : 0});
        });
    };
    return s;
}

inline op_schema softmax_schema() {
    op_schema s;
    s.op_type = "Softmax";
    s.infer = [](const node&, const op_inputs_info& in) {
        return std::vector<value_info>{in.infos[0] ? *in.infos[0] : value_info{}};
    };
    s.create = [](const node& n, const op_inputs_info&) {
        if (n.attr_int("axis", -1) != -1) QUANTSIM_THROW(unsupported_error, n.describe(), ": test Softmax needs axis -1");
        return make_kernel([](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            const tensor& x = *in[0];
            out[0] = tensor::empty(x.shape());
            const std::int64_t inner = x.dim(-1), outer = x.numel() / inner;
            for (std::int64_t o = 0; o < outer; ++o) {
                const float* p = x.f32() + o * inner;
                float* q = out[0].f32() + o * inner;
                const float mx = *std::max_element(p, p + inner);
                double sum = 0;
                for (std::int64_t i = 0; i < inner; ++i) sum += std::exp(double(p[i] - mx));
                for (std::int64_t i = 0; i < inner; ++i) q[i] = static_cast<float>(std::exp(double(p[i] - mx)) / sum);
            }
        });
    };
    return s;
}

inline op_schema clip_schema() {
    op_schema s;
    s.op_type = "Clip";
    s.max_inputs = 3;
    s.infer = [](const node&, const op_inputs_info& in) {
        return std::vector<value_info>{in.infos[0] ? *in.infos[0] : value_info{}};
    };
    s.create = [](const node&, const op_inputs_info&) {
        return make_kernel([](const std::vector<const tensor*>& in, std::vector<tensor>& out) {
            const float lo = in.size() > 1 && in[1] ? in[1]->f32()[0] : -INFINITY;
            const float hi = in.size() > 2 && in[2] ? in[2]->f32()[0] : INFINITY;
            out[0] = tensor::empty(in[0]->shape());
            for (std::int64_t i = 0; i < in[0]->numel(); ++i) out[0].f32()[i] = std::clamp(in[0]->f32()[i], lo, hi);
        });
    };
    return s;
}

/// A registry with the test ops above: Identity, Relu, Add, Sub, Mul, Div, Conv, BatchNormalization, Shape,
/// Gather, Concat, Unsqueeze, Reshape, Cast, Flatten, Softmax, Clip.
inline op_registry make_test_registry() {
    op_registry r;
    r.add(unary_schema("Identity", [](double x) { return x; }));
    r.add(unary_schema("Relu", [](double x) { return x > 0 ? x : 0.0; }));
    r.add(binary_schema("Add", [](double a, double b) { return a + b; }));
    r.add(binary_schema("Sub", [](double a, double b) { return a - b; }));
    r.add(binary_schema("Mul", [](double a, double b) { return a * b; }));
    r.add(binary_schema("Div", [](double a, double b) { return a / b; }));
    r.add(conv_schema());
    r.add(batchnorm_schema());
    r.add(shape_schema());
    r.add(gather_schema());
    r.add(concat_schema());
    r.add(unsqueeze_schema());
    r.add(reshape_schema());
    r.add(cast_schema());
    r.add(flatten_schema());
    r.add(softmax_schema());
    r.add(clip_schema());
    return r;
}

/// Options naming a registry (tests avoid designated initializers: GCC 12 warns on omitted fields).
inline validate_options with(const op_registry& reg) {
    validate_options o;
    o.registry = &reg;
    return o;
}
inline shape_inference_options infer_with(const op_registry& reg) {
    shape_inference_options o;
    o.registry = &reg;
    return o;
}

/// Runs `g` with the kernels of `reg` (a tiny reference interpreter for tests).
inline std::map<std::string, tensor> run_graph(const graph& g, const op_registry& reg,
                                               const std::map<std::string, tensor>& feeds) {
    std::map<std::string, tensor> values = feeds;
    for (const auto& [k, t] : g.params) values[k] = t;
    for (const auto& n : g.nodes) {
        const op_schema* s = reg.find(n.op_type, n.domain);
        if (!s) QUANTSIM_THROW(unsupported_error, n.describe(), ": no test op");
        op_inputs_info info;
        std::vector<const tensor*> ins;
        std::vector<value_info> infos(n.inputs.size());
        for (std::size_t i = 0; i < n.inputs.size(); ++i) {
            const tensor* t = n.inputs[i].empty() ? nullptr : &values.at(n.inputs[i]);
            ins.push_back(t);
            if (t) infos[i] = make_info(t->type(), t->shape());
            info.infos.push_back(t ? &infos[i] : nullptr);
            info.constants.push_back(g.is_param(n.inputs[i]) ? t : nullptr);
        }
        auto k = s->create(n, info);
        std::vector<tensor> outs(n.outputs.size());
        k->run(ins, outs);
        for (std::size_t i = 0; i < n.outputs.size(); ++i)
            if (!n.outputs[i].empty()) values[n.outputs[i]] = outs[i];
    }
    return values;
}

}  // namespace quantsim::test
