// Built-in gradient rules. Formulas: docs/qat.md, "Gradients".
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include <quantsim/ir/autograd.hpp>
#include <quantsim/ir/detail/autograd_kernels.hpp>
#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/elementwise.hpp>
#include <quantsim/ir/kernels/gemm.hpp>
#include <quantsim/ir/kernels/layout.hpp>
#include <quantsim/ir/kernels/parallel.hpp>

namespace quantsim {
namespace detail {

tensor reduce_to_shape_ref(const tensor& grad, const shape_t& shape) {
    const shape_t& out = grad.shape();
    if (out == shape) return grad.clone();
    const int r = static_cast<int>(out.size());
    const int k = static_cast<int>(shape.size());
    if (k > r) QUANTSIM_THROW(shape_error, "reduce_to_shape: ", to_string(shape), " is not broadcast to ", to_string(out));
    shape_t padded(static_cast<std::size_t>(r - k), 1);
    padded.insert(padded.end(), shape.begin(), shape.end());
    for (int i = 0; i < r; ++i)
        if (padded[static_cast<std::size_t>(i)] != 1 && padded[static_cast<std::size_t>(i)] != out[static_cast<std::size_t>(i)])
            QUANTSIM_THROW(shape_error, "reduce_to_shape: ", to_string(shape), " is not broadcast to ", to_string(out));
    tensor res(shape);
    float* d = res.f32();
    const float* g = grad.f32();
    std::vector<std::int64_t> idx(static_cast<std::size_t>(r), 0);
    for (std::int64_t e = 0; e < grad.numel(); ++e) {
        std::int64_t off = 0;
        for (int i = 0; i < r; ++i) {
            const auto ii = static_cast<std::size_t>(i);
            off = off * padded[ii] + (padded[ii] == 1 ? 0 : idx[ii]);
        }
        d[off] += g[e];
        for (int i = r - 1; i >= 0; --i) {
            const auto ii = static_cast<std::size_t>(i);
            if (++idx[ii] < out[ii]) break;
            idx[ii] = 0;
        }
    }
    return res;
}

tensor reduce_to_shape(const tensor& grad, const shape_t& shape) {
    const shape_t& out = grad.shape();
    if (out == shape) return grad;
    const int r = static_cast<int>(out.size());
    const int k = static_cast<int>(shape.size());
    if (k > r) QUANTSIM_THROW(shape_error, "reduce_to_shape: ", to_string(shape), " is not broadcast to ", to_string(out));
    shape_t padded(static_cast<std::size_t>(r - k), 1);
    padded.insert(padded.end(), shape.begin(), shape.end());
    // Coalesce adjacent axes of the same kind (kept / reduced) into [outer..., inner] blocks.
    std::vector<std::int64_t> dims;
    std::vector<bool> kept;
    for (int i = 0; i < r; ++i) {
        const auto ii = static_cast<std::size_t>(i);
        if (padded[ii] != 1 && padded[ii] != out[ii])
            QUANTSIM_THROW(shape_error, "reduce_to_shape: ", to_string(shape), " is not broadcast to ", to_string(out));
        if (out[ii] == 1) continue;
        const bool kp = padded[ii] != 1;
        if (!dims.empty() && kept.back() == kp)
            dims.back() *= out[ii];
        else
            dims.push_back(out[ii]), kept.push_back(kp);
    }
    tensor res(shape);
    float* d = res.f32();
    const float* g = grad.f32();
    if (dims.empty()) {
        d[0] = g[0];
        return res;
    }
    // Common cases: [A(kept), B(reduced)] (per-channel sums), [A(reduced), B(kept)] (bias), all reduced.
    if (dims.size() == 1) {
        if (kept[0]) return grad.reshape(shape);
        double s = 0;
        for (std::int64_t i = 0; i < dims[0]; ++i) s += g[i];
        d[0] = static_cast<float>(s);
        return res;
    }
    if (dims.size() == 2 && kept[0]) {
        const std::int64_t inner = dims[1];
        parallel_range(dims[0], 16, [&](std::int64_t b, std::int64_t e) {
            for (std::int64_t a = b; a < e; ++a) {
                double s = 0;
                const float* p = g + a * inner;
                for (std::int64_t i = 0; i < inner; ++i) s += p[i];
                d[a] = static_cast<float>(s);
            }
        });
        return res;
    }
    if (dims.size() == 2 && !kept[0]) {
        const std::int64_t inner = dims[1];
        for (std::int64_t a = 0; a < dims[0]; ++a) {
            const float* p = g + a * inner;
            for (std::int64_t i = 0; i < inner; ++i) d[i] += p[i];
        }
        return res;
    }
    if (dims.size() == 3 && !kept[0] && kept[1]) {  // [reduced, kept, reduced]: per-channel over N and spatial
        const std::int64_t mid = dims[1], inner = dims[2];
        parallel_range(mid, 4, [&](std::int64_t b, std::int64_t e) {
            for (std::int64_t c = b; c < e; ++c) {
                double s = 0;
                for (std::int64_t a = 0; a < dims[0]; ++a) {
                    const float* p = g + (a * mid + c) * inner;
                    for (std::int64_t i = 0; i < inner; ++i) s += p[i];
                }
                d[c] = static_cast<float>(s);
            }
        });
        return res;
    }
    return reduce_to_shape_ref(grad, shape);
}

}  // namespace detail

namespace {

using detail::parallel_range;

const tensor& in(const grad_backward_context& c, std::size_t i) {
    if (i >= c.inputs.size() || !c.inputs[i] || !c.inputs[i]->defined())
        QUANTSIM_THROW(graph_error, c.n.describe(), ": input ", i, " is missing");
    return *c.inputs[i];
}
bool wants(const grad_backward_context& c, std::size_t i) { return i < c.needs_grad.size() && c.needs_grad[i]; }
// The output gradient, zeros when none reached it.
tensor gout(const grad_backward_context& c, std::size_t i = 0) {
    if (i < c.grad_outputs.size() && c.grad_outputs[i]) return *c.grad_outputs[i];
    return tensor(c.outputs.at(i)->shape());
}
void require_f32(const tensor& t, const grad_backward_context& c, std::size_t i) {
    if (t.type() != dtype::float32)
        QUANTSIM_THROW(unsupported_error, c.n.describe(), ": gradients need float32 input ", i, ", got ",
                       name_of(t.type()));
}

// y = f'(x) * g elementwise, parallel.
template <class F>
tensor unary_grad(const tensor& x, const tensor& g, F&& f) {
    tensor r = detail::new_tensor(x.shape());
    const float* xp = x.f32();
    const float* gp = g.f32();
    float* rp = r.f32();
    parallel_range(x.numel(), 16384, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i) rp[i] = f(xp[i]) * gp[i];
    });
    return r;
}

std::vector<tensor> none(const grad_backward_context& c) { return std::vector<tensor>(c.inputs.size()); }

// ---- elementwise arithmetic -------------------------------------------------------------------------------------

std::vector<tensor> add_sub_backward(const grad_backward_context& c, bool sub) {
    auto r = none(c);
    const tensor g = gout(c);
    if (wants(c, 0)) r[0] = detail::reduce_to_shape(g, in(c, 0).shape());
    if (wants(c, 1)) {
        tensor g1 = detail::reduce_to_shape(g, in(c, 1).shape());
        if (sub) {
            tensor n = detail::new_tensor(g1.shape());
            for (std::int64_t i = 0; i < n.numel(); ++i) n.f32()[i] = -g1.f32()[i];
            g1 = n;
        }
        r[1] = g1;
    }
    return r;
}

std::vector<tensor> mul_backward(const grad_backward_context& c) {
    auto r = none(c);
    const tensor g = gout(c);
    const std::string d = c.n.describe();
    if (wants(c, 0)) r[0] = detail::reduce_to_shape(binary(binary_op::mul, g, in(c, 1), d), in(c, 0).shape());
    if (wants(c, 1)) r[1] = detail::reduce_to_shape(binary(binary_op::mul, g, in(c, 0), d), in(c, 1).shape());
    return r;
}

std::vector<tensor> div_backward(const grad_backward_context& c) {
    auto r = none(c);
    const tensor g = gout(c);
    const std::string d = c.n.describe();
    const tensor gb = binary(binary_op::div, g, in(c, 1), d);  // g / b
    if (wants(c, 0)) r[0] = detail::reduce_to_shape(gb, in(c, 0).shape());
    if (wants(c, 1)) {
        // d(a/b)/db = -a / b^2 = -y / b
        tensor t = binary(binary_op::mul, gb, *c.outputs[0], d);
        float* p = t.f32();
        for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = -p[i];
        r[1] = detail::reduce_to_shape(t, in(c, 1).shape());
    }
    return r;
}

// ---- activations --------------------------------------------------------------------------------------------------

void clip_bounds(const node& n, const std::vector<const tensor*>& ins, float& lo, float& hi) {
    lo = -std::numeric_limits<float>::infinity();
    hi = std::numeric_limits<float>::infinity();
    // Opset < 11 keeps the bounds as attributes (graphs built without the importer's canonicalization).
    if (n.has_attr("min")) lo = n.attr_float("min");
    if (n.has_attr("max")) hi = n.attr_float("max");
    for (std::size_t i = 1; i < 3; ++i)
        if (i < ins.size() && ins[i] && ins[i]->defined()) {
            if (ins[i]->numel() != 1 || ins[i]->type() != dtype::float32)
                QUANTSIM_THROW(unsupported_error, n.describe(), ": Clip bound ", i, " must be a float32 scalar");
            (i == 1 ? lo : hi) = ins[i]->f32()[0];
        }
}

std::vector<tensor> unary_rule(const grad_backward_context& c, float (*f)(float, float, float), float a, float b) {
    auto r = none(c);
    if (!wants(c, 0)) return r;
    const tensor& x = in(c, 0);
    require_f32(x, c, 0);
    r[0] = unary_grad(x, gout(c), [f, a, b](float v) { return f(v, a, b); });
    return r;
}

// ---- Gemm / MatMul ------------------------------------------------------------------------------------------------

std::vector<tensor> gemm_backward(const grad_backward_context& c) {
    auto r = none(c);
    const tensor& a = in(c, 0);
    const tensor& b = in(c, 1);
    const bool ta = c.n.attr_int("transA", 0) != 0, tb = c.n.attr_int("transB", 0) != 0;
    const float alpha = c.n.attr_float("alpha", 1.0f), beta = c.n.attr_float("beta", 1.0f);
    if (a.rank() != 2 || b.rank() != 2)
        QUANTSIM_THROW(shape_error, c.n.describe(), ": Gemm needs 2-D inputs");
    const std::int64_t m = ta ? a.shape()[1] : a.shape()[0], k = ta ? a.shape()[0] : a.shape()[1];
    const std::int64_t n = tb ? b.shape()[0] : b.shape()[1];
    const tensor g = gout(c);
    const std::int64_t lda = ta ? m : k, ldb = tb ? k : n;
    if (wants(c, 0)) {
        tensor da = detail::new_tensor(a.shape());
        if (!ta)
            gemm(false, !tb, m, k, n, alpha, g.f32(), n, b.f32(), ldb, 0.0f, da.f32(), k);
        else
            gemm(tb, true, k, m, n, alpha, b.f32(), ldb, g.f32(), n, 0.0f, da.f32(), m);
        r[0] = da;
    }
    if (wants(c, 1)) {
        tensor db = detail::new_tensor(b.shape());
        if (!tb)
            gemm(!ta, false, k, n, m, alpha, a.f32(), lda, g.f32(), n, 0.0f, db.f32(), n);
        else
            gemm(true, ta, n, k, m, alpha, g.f32(), n, a.f32(), lda, 0.0f, db.f32(), k);
        r[1] = db;
    }
    if (c.inputs.size() > 2 && wants(c, 2)) {
        tensor dc = detail::reduce_to_shape(g, in(c, 2).shape()).clone();
        for (std::int64_t i = 0; i < dc.numel(); ++i) dc.f32()[i] *= beta;
        r[2] = dc;
    }
    return r;
}

// Batched, broadcasting MatMul. 1-D operands are promoted ([k] -> [1, k] for A, [k, 1] for B).
std::vector<tensor> matmul_backward(const grad_backward_context& c) {
    auto r = none(c);
    const tensor& a0 = in(c, 0);
    const tensor& b0 = in(c, 1);
    require_f32(a0, c, 0);
    require_f32(b0, c, 1);
    const tensor a = a0.rank() == 1 ? a0.reshape({1, a0.numel()}) : a0;
    const tensor b = b0.rank() == 1 ? b0.reshape({b0.numel(), 1}) : b0;
    const std::int64_t m = a.shape()[static_cast<std::size_t>(a.rank() - 2)], k = a.shape().back();
    const std::int64_t n = b.shape().back();
    const shape_t ab(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
    const shape_t batch = broadcast_shapes(ab, bb, c.n.describe());
    const std::int64_t nb = checked_numel(batch);
    // Gradient in [batch..., m, n]
    tensor g = gout(c).reshape([&] {
        shape_t s = batch;
        s.push_back(m);
        s.push_back(n);
        return s;
    }());
    const auto batch_index = [&](const shape_t& own, std::int64_t flat) {
        // Index into an operand's batch dims (right-aligned, broadcast dims of size 1 map to 0).
        std::int64_t idx = 0, stride = 1, rem = flat;
        std::vector<std::int64_t> coords(batch.size());
        for (std::size_t i = batch.size(); i-- > 0;) {
            coords[i] = rem % batch[i];
            rem /= batch[i];
        }
        for (std::size_t j = own.size(); j-- > 0;) {
            const std::size_t i = batch.size() - own.size() + j;
            idx += (own[j] == 1 ? 0 : coords[i]) * stride;
            stride *= own[j];
        }
        return idx;
    };
    if (wants(c, 0)) {
        tensor da(a.shape());
        for (std::int64_t t = 0; t < nb; ++t) {
            const std::int64_t ia = batch_index(ab, t), ib = batch_index(bb, t);
            gemm(false, true, m, k, n, 1.0f, g.f32() + t * m * n, n, b.f32() + ib * k * n, n, 1.0f,
                 da.f32() + ia * m * k, k);
        }
        r[0] = da.reshape(a0.shape());
    }
    if (wants(c, 1)) {
        tensor db(b.shape());
        for (std::int64_t t = 0; t < nb; ++t) {
            const std::int64_t ia = batch_index(ab, t), ib = batch_index(bb, t);
            gemm(true, false, k, n, m, 1.0f, a.f32() + ia * m * k, k, g.f32() + t * m * n, n, 1.0f,
                 db.f32() + ib * k * n, n);
        }
        r[1] = db.reshape(b0.shape());
    }
    return r;
}

// ---- BatchNormalization -------------------------------------------------------------------------------------------

struct bn_dims {
    std::int64_t n, c, s;
};
bn_dims bn_dims_of(const tensor& x, const node& nd) {
    if (x.rank() < 2) QUANTSIM_THROW(shape_error, nd.describe(), ": input must have rank >= 2");
    const std::int64_t n = x.shape()[0], c = x.shape()[1];
    return {n, c, n * c != 0 ? x.numel() / (n * c) : 0};
}

bool bn_forward(grad_forward_context& f) {
    if (!f.training) return false;
    const node& nd = f.n;
    for (std::size_t i = 0; i < 5; ++i)
        if (i >= f.inputs.size() || !f.inputs[i])
            QUANTSIM_THROW(graph_error, nd.describe(), ": input ", i, " is missing");
    const tensor& x = *f.inputs[0];
    // Plain variables, not a structured binding: clang 14 (the fuzz build) cannot capture bindings in lambdas.
    const bn_dims dims = bn_dims_of(x, nd);
    const std::int64_t N = dims.n, C = dims.c, S = dims.s;
    for (std::size_t i = 1; i < 5; ++i)
        if (f.inputs[i]->numel() != C)
            QUANTSIM_THROW(shape_error, nd.describe(), ": input ", i, " has ", f.inputs[i]->numel(), " values for ",
                           C, " channels");
    const float eps = nd.attr_float("epsilon", 1e-5f);
    const float* gamma = f.inputs[1]->f32();
    const float* beta = f.inputs[2]->f32();
    tensor y = detail::new_tensor(x.shape());
    tensor mean = detail::new_tensor({C}), invstd = detail::new_tensor({C});
    tensor rmean = detail::new_tensor({C}), rvar = detail::new_tensor({C});
    const float* xp = x.f32();
    float* yp = y.f32();
    const std::int64_t cnt = N * S;
    detail::parallel_for(C, [&](std::int64_t ch) {
        double s = 0, s2 = 0;
        for (std::int64_t n = 0; n < N; ++n) {
            const float* p = xp + (n * C + ch) * S;
            for (std::int64_t i = 0; i < S; ++i) s += p[i];
        }
        const double mu = cnt ? s / static_cast<double>(cnt) : 0.0;
        for (std::int64_t n = 0; n < N; ++n) {
            const float* p = xp + (n * C + ch) * S;
            for (std::int64_t i = 0; i < S; ++i) {
                const double d = p[i] - mu;
                s2 += d * d;
            }
        }
        const double var = cnt ? s2 / static_cast<double>(cnt) : 0.0;
        const double is = 1.0 / std::sqrt(var + static_cast<double>(eps));
        mean.f32()[ch] = static_cast<float>(mu);
        invstd.f32()[ch] = static_cast<float>(is);
        const float a = static_cast<float>(gamma[ch] * is), b = static_cast<float>(beta[ch] - gamma[ch] * is * mu);
        for (std::int64_t n = 0; n < N; ++n) {
            const float* p = xp + (n * C + ch) * S;
            float* q = yp + (n * C + ch) * S;
            for (std::int64_t i = 0; i < S; ++i) q[i] = a * p[i] + b;
        }
        // Running statistics: unbiased variance, as PyTorch and ONNX's training mode keep them.
        const double unbiased = cnt > 1 ? s2 / static_cast<double>(cnt - 1) : var;
        const double m = f.bn_momentum;
        rmean.f32()[ch] = static_cast<float>(m * f.inputs[3]->f32()[ch] + (1 - m) * mu);
        rvar.f32()[ch] = static_cast<float>(m * f.inputs[4]->f32()[ch] + (1 - m) * unbiased);
    });
    f.outputs[0] = y;
    f.saved = {mean, invstd};
    f.state_updates.emplace_back(3, rmean);
    f.state_updates.emplace_back(4, rvar);
    return true;
}

std::vector<tensor> bn_backward(const grad_backward_context& c) {
    auto r = none(c);
    const tensor& x = in(c, 0);
    const bn_dims dims = bn_dims_of(x, c.n);  // no structured binding: clang 14 cannot capture those in lambdas
    const std::int64_t N = dims.n, C = dims.c, S = dims.s;
    const float eps = c.n.attr_float("epsilon", 1e-5f);
    const tensor g = gout(c);
    const float* gamma = in(c, 1).f32();
    const bool batch_stats = c.saved.size() == 2;  // the training forward saved (mean, invstd)
    tensor mean = batch_stats ? c.saved[0] : in(c, 3);
    tensor invstd = batch_stats ? c.saved[1] : detail::new_tensor({C});
    if (!batch_stats)
        for (std::int64_t ch = 0; ch < C; ++ch)
            invstd.f32()[ch] = 1.0f / std::sqrt(in(c, 4).f32()[ch] + eps);
    tensor dx = wants(c, 0) ? detail::new_tensor(x.shape()) : tensor();
    tensor dgamma = detail::new_tensor({C}), dbeta = detail::new_tensor({C}), dmean = detail::new_tensor({C}),
           dvar = detail::new_tensor({C});
    const float* xp = x.f32();
    const float* gp = g.f32();
    const std::int64_t cnt = N * S;
    detail::parallel_for(C, [&](std::int64_t ch) {
        const double mu = mean.f32()[ch], is = invstd.f32()[ch];
        double sg = 0, sgx = 0;  // sum g, sum g * xhat
        for (std::int64_t n = 0; n < N; ++n) {
            const float* p = xp + (n * C + ch) * S;
            const float* q = gp + (n * C + ch) * S;
            for (std::int64_t i = 0; i < S; ++i) {
                sg += q[i];
                sgx += q[i] * ((p[i] - mu) * is);
            }
        }
        dgamma.f32()[ch] = static_cast<float>(sgx);
        dbeta.f32()[ch] = static_cast<float>(sg);
        const double gi = gamma[ch] * is;
        dmean.f32()[ch] = static_cast<float>(-sg * gi);
        // d/dvar of gamma * (x - mu) * (var + eps)^-1/2 summed: -0.5 * gamma * is^3 * sum g (x - mu) = -0.5 gamma is^2 sgx
        dvar.f32()[ch] = static_cast<float>(-0.5 * gamma[ch] * is * is * sgx);
        if (!dx.defined()) return;
        float* d = dx.f32();
        if (batch_stats) {
            // dx = gamma * is / M * (M g - sum g - xhat * sum g xhat)
            const double inv_cnt = cnt ? 1.0 / static_cast<double>(cnt) : 0.0;
            for (std::int64_t n = 0; n < N; ++n) {
                const float* p = xp + (n * C + ch) * S;
                const float* q = gp + (n * C + ch) * S;
                float* o = d + (n * C + ch) * S;
                for (std::int64_t i = 0; i < S; ++i) {
                    const double xh = (p[i] - mu) * is;
                    o[i] = static_cast<float>(gi * (q[i] - sg * inv_cnt - xh * sgx * inv_cnt));
                }
            }
        } else {
            const float gf = static_cast<float>(gi);
            for (std::int64_t n = 0; n < N; ++n) {
                const float* q = gp + (n * C + ch) * S;
                float* o = d + (n * C + ch) * S;
                for (std::int64_t i = 0; i < S; ++i) o[i] = gf * q[i];
            }
        }
    });
    r[0] = dx;
    if (wants(c, 1)) r[1] = dgamma;
    if (wants(c, 2)) r[2] = dbeta;
    // The running statistics are not trained; with batch statistics the output does not depend on them.
    if (!batch_stats && wants(c, 3)) r[3] = dmean;
    if (!batch_stats && wants(c, 4)) r[4] = dvar;
    return r;
}

// ---- pooling, shapes, softmax -------------------------------------------------------------------------------------

std::vector<tensor> gap_backward(const grad_backward_context& c) {
    auto r = none(c);
    if (!wants(c, 0)) return r;
    const tensor& x = in(c, 0);
    const bn_dims dims = bn_dims_of(x, c.n);  // no structured binding: clang 14 cannot capture those in lambdas
    const std::int64_t N = dims.n, C = dims.c, S = dims.s;
    const tensor g = gout(c);
    tensor dx = detail::new_tensor(x.shape());
    const float inv = S ? 1.0f / static_cast<float>(S) : 0.0f;
    detail::parallel_range(N * C, 64, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t p = b; p < e; ++p) std::fill_n(dx.f32() + p * S, S, g.f32()[p] * inv);
    });
    (void)N;
    (void)C;
    r[0] = dx;
    return r;
}

// MaxPool (2-D, or 1-D as H = 1): the gradient goes to the first maximum of each window (the output size, which
// ceil_mode decides, is read from the recorded output).
std::vector<tensor> maxpool_backward(const grad_backward_context& c) {
    auto r = none(c);
    if (!wants(c, 0)) return r;
    const tensor& x = in(c, 0);
    const tensor& y = *c.outputs.at(0);
    if (c.outputs.size() > 1 && c.grad_outputs.size() > 1 && c.grad_outputs[1])
        QUANTSIM_THROW(unsupported_error, c.n.describe(), ": no gradient through the Indices output");
    const int sp = x.rank() - 2;
    if (sp != 1 && sp != 2) QUANTSIM_THROW(unsupported_error, c.n.describe(), ": gradients need a 1-D or 2-D MaxPool");
    const auto k = c.n.attr_ints("kernel_shape");
    const auto st = c.n.attr_ints("strides", std::vector<std::int64_t>(static_cast<std::size_t>(sp), 1));
    const auto dl = c.n.attr_ints("dilations", std::vector<std::int64_t>(static_cast<std::size_t>(sp), 1));
    auto pads = c.n.attr_ints("pads", std::vector<std::int64_t>(static_cast<std::size_t>(2 * sp), 0));
    const std::string ap = c.n.attr_string("auto_pad", std::string("NOTSET"));
    if (static_cast<int>(k.size()) != sp || static_cast<int>(st.size()) != sp || static_cast<int>(dl.size()) != sp ||
        static_cast<int>(pads.size()) != 2 * sp)
        QUANTSIM_THROW(graph_error, c.n.describe(), ": attributes do not fit a ", sp, "-D pool");
    const std::int64_t N = x.shape()[0], C = x.shape()[1];
    const std::int64_t H = sp == 2 ? x.shape()[2] : 1, W = x.shape().back();
    const std::int64_t OH = sp == 2 ? y.shape()[2] : 1, OW = y.shape().back();
    const std::int64_t kh = sp == 2 ? k[0] : 1, kw = k.back(), sh = sp == 2 ? st[0] : 1, sw = st.back();
    const std::int64_t dh = sp == 2 ? dl[0] : 1, dw = dl.back();
    std::int64_t ph = sp == 2 ? pads[0] : 0, pw = pads[static_cast<std::size_t>(sp - 1)];
    if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
        const auto lead = [&](std::int64_t in, std::int64_t out, std::int64_t kk, std::int64_t s, std::int64_t d) {
            const std::int64_t total = std::max<std::int64_t>(0, (out - 1) * s + d * (kk - 1) + 1 - in);
            return ap == "SAME_UPPER" ? total / 2 : total - total / 2;
        };
        ph = sp == 2 ? lead(H, OH, kh, sh, dh) : 0;
        pw = lead(W, OW, kw, sw, dw);
    } else if (ap == "VALID") {
        ph = pw = 0;
    }
    const tensor g = gout(c);
    tensor dx = detail::new_tensor(x.shape());
    detail::parallel_for(N * C, [&](std::int64_t p) {
        std::fill_n(dx.f32() + p * H * W, H * W, 0.0f);
        const float* xp = x.f32() + p * H * W;
        const float* gp = g.f32() + p * OH * OW;
        float* d = dx.f32() + p * H * W;
        for (std::int64_t oy = 0; oy < OH; ++oy)
            for (std::int64_t ox = 0; ox < OW; ++ox) {
                std::int64_t best = -1;
                float bv = -std::numeric_limits<float>::infinity();
                for (std::int64_t ky = 0; ky < kh; ++ky) {
                    const std::int64_t iy = oy * sh - ph + ky * dh;
                    if (iy < 0 || iy >= H) continue;
                    for (std::int64_t kx = 0; kx < kw; ++kx) {
                        const std::int64_t ix = ox * sw - pw + kx * dw;
                        if (ix < 0 || ix >= W) continue;
                        if (best < 0 || xp[iy * W + ix] > bv) best = iy * W + ix, bv = xp[iy * W + ix];
                    }
                }
                if (best >= 0) d[best] += gp[oy * OW + ox];
            }
    });
    r[0] = dx;
    return r;
}

std::vector<tensor> reshape_like_backward(const grad_backward_context& c) {
    auto r = none(c);
    if (wants(c, 0)) r[0] = gout(c).reshape(in(c, 0).shape());
    return r;
}

std::vector<tensor> transpose_backward(const grad_backward_context& c) {
    auto r = none(c);
    if (!wants(c, 0)) return r;
    const int rank = in(c, 0).rank();
    std::vector<std::int64_t> perm(static_cast<std::size_t>(rank));
    for (int i = 0; i < rank; ++i) perm[static_cast<std::size_t>(i)] = rank - 1 - i;
    perm = c.n.attr_ints("perm", perm);
    std::vector<std::int64_t> inv(perm.size());
    for (std::size_t i = 0; i < perm.size(); ++i) inv[static_cast<std::size_t>(normalize_axis(perm[i], rank, "perm"))] = static_cast<std::int64_t>(i);
    r[0] = transpose(gout(c), inv);
    return r;
}

// Softmax along one axis (the importer gives every opset this form; docs/ir.md): dx = y * (g - sum(g * y)).
std::vector<tensor> softmax_backward(const grad_backward_context& c) {
    auto r = none(c);
    if (!wants(c, 0)) return r;
    const tensor& y = *c.outputs[0];
    const int ax = normalize_axis(c.n.attr_int("axis", -1), y.rank(), "Softmax axis");
    std::int64_t outer = 1, inner = 1;
    for (int i = 0; i < ax; ++i) outer *= y.shape()[static_cast<std::size_t>(i)];
    for (int i = ax + 1; i < y.rank(); ++i) inner *= y.shape()[static_cast<std::size_t>(i)];
    const std::int64_t len = y.shape()[static_cast<std::size_t>(ax)];
    const tensor g = gout(c);
    tensor dx = detail::new_tensor(y.shape());
    const float* yp = y.f32();
    const float* gp = g.f32();
    float* d = dx.f32();
    detail::parallel_range(outer * inner, 64, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t t = b; t < e; ++t) {
            const std::int64_t o = t / inner, i = t % inner;
            const std::int64_t base = o * len * inner + i;
            double dot = 0;
            for (std::int64_t j = 0; j < len; ++j) dot += static_cast<double>(gp[base + j * inner]) * yp[base + j * inner];
            for (std::int64_t j = 0; j < len; ++j) {
                const std::int64_t q = base + j * inner;
                d[q] = static_cast<float>(yp[q] * (gp[q] - dot));
            }
        }
    });
    r[0] = dx;
    return r;
}

bool clip_forward(grad_forward_context& f) {
    // Only graphs that keep opset-9 attributes need this; the kernel reads bound inputs.
    if (!f.n.has_attr("min") && !f.n.has_attr("max")) return false;
    float lo, hi;
    clip_bounds(f.n, f.inputs, lo, hi);
    const tensor& x = *f.inputs.at(0);
    tensor y = detail::new_tensor(x.shape());
    for (std::int64_t i = 0; i < x.numel(); ++i) y.f32()[i] = std::min(std::max(x.f32()[i], lo), hi);
    f.outputs[0] = y;
    return true;
}

}  // namespace

void register_builtin_grad_rules(grad_registry& reg) {
    const auto add = [&](const char* op, grad_backward_fn b, grad_forward_fn f = {}) {
        reg.add(grad_rule{op, "", std::move(f), std::move(b)});
    };
    add("Conv", [](const grad_backward_context& c) {
        auto r = none(c);
        const tensor& x = in(c, 0);
        const tensor& w = in(c, 1);
        require_f32(x, c, 0);
        require_f32(w, c, 1);
        const conv_geometry g = detail::conv_geometry_of(c.n, x.shape(), w.shape());
        const bool one_d = x.rank() == 3;
        const std::int64_t h = one_d ? 1 : x.shape()[2], wd = one_d ? x.shape()[2] : x.shape()[3];
        const tensor dy = gout(c);
        tensor dx = wants(c, 0) ? detail::new_tensor(x.shape()) : tensor();
        tensor dw = wants(c, 1) ? detail::new_tensor(w.shape()) : tensor();
        const bool bias = c.inputs.size() > 2 && c.inputs[2] && wants(c, 2);
        tensor db = bias ? detail::new_tensor({g.out_channels}) : tensor();
        detail::conv2d_backward(g, x.shape()[0], h, wd, x.f32(), w.f32(), dy.f32(), dx.defined() ? dx.f32() : nullptr,
                                dw.defined() ? dw.f32() : nullptr, db.defined() ? db.f32() : nullptr);
        r[0] = dx;
        r[1] = dw;
        if (bias) r[2] = db.reshape(in(c, 2).shape());
        return r;
    });
    add("BatchNormalization", bn_backward, bn_forward);
    add("Gemm", gemm_backward);
    add("MatMul", matmul_backward);
    add("Add", [](const grad_backward_context& c) { return add_sub_backward(c, false); });
    add("Sub", [](const grad_backward_context& c) { return add_sub_backward(c, true); });
    add("Mul", mul_backward);
    add("Div", div_backward);
    add("Neg", [](const grad_backward_context& c) {
        return unary_rule(c, [](float, float, float) { return -1.0f; }, 0, 0);
    });
    add("Relu", [](const grad_backward_context& c) {
        return unary_rule(c, [](float v, float, float) { return v > 0 ? 1.0f : 0.0f; }, 0, 0);
    });
    add("LeakyRelu", [](const grad_backward_context& c) {
        return unary_rule(c, [](float v, float a, float) { return v > 0 ? 1.0f : a; }, c.n.attr_float("alpha", 0.01f), 0);
    });
    add("Sigmoid", [](const grad_backward_context& c) {
        auto r = none(c);
        if (!wants(c, 0)) return r;
        r[0] = unary_grad(*c.outputs[0], gout(c), [](float y) { return y * (1 - y); });
        return r;
    });
    add(
        "Clip",
        [](const grad_backward_context& c) {
            float lo, hi;
            clip_bounds(c.n, c.inputs, lo, hi);
            auto r = unary_rule(c, [](float v, float a, float b) { return v >= a && v <= b ? 1.0f : 0.0f; }, lo, hi);
            return r;
        },
        clip_forward);
    add("HardSigmoid", [](const grad_backward_context& c) {
        const float a = c.n.attr_float("alpha", 0.2f), b = c.n.attr_float("beta", 0.5f);
        return unary_rule(c, [](float v, float al, float be) {
            const float t = al * v + be;
            return t > 0 && t < 1 ? al : 0.0f;
        }, a, b);
    });
    add("HardSwish", [](const grad_backward_context& c) {
        // y = x * clamp(x / 6 + 1/2, 0, 1)
        return unary_rule(c, [](float v, float, float) {
            if (v <= -3.0f) return 0.0f;
            if (v >= 3.0f) return 1.0f;
            return v / 3.0f + 0.5f;
        }, 0, 0);
    });
    add("GlobalAveragePool", gap_backward);
    add("MaxPool", maxpool_backward);
    for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})
        add(op, reshape_like_backward);
    add("Transpose", transpose_backward);
    add("Softmax", softmax_backward);
}

}  // namespace quantsim
