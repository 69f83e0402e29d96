// MatMul (numpy batching and broadcasting, 1-D promotion) and Gemm, on the packed GEMM; fused-epilogue variants.
#include <quantsim/ir/kernels/alloc.hpp>
#include <quantsim/ir/kernels/elementwise.hpp>
#include <quantsim/ir/kernels/gemm.hpp>
#include <quantsim/ir/kernels/parallel.hpp>

#include "common.hpp"
#include "fused.hpp"

namespace quantsim::detail {

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

struct matmul_plan {
    shape_t out_shape;
    std::int64_t batch = 1, m = 0, k = 0, n = 0;
    std::vector<std::int64_t> a_off, b_off;  ///< per batch: element offsets of the A and B matrices
};

matmul_plan plan_matmul(const shape_t& as, const shape_t& bs, const std::string& desc) {
    if (as.empty() || bs.empty()) QUANTSIM_THROW(shape_error, desc, ": MatMul inputs must have rank >= 1");
    shape_t a = as, b = bs;
    const bool a1 = a.size() == 1, b1 = b.size() == 1;
    if (a1) a.insert(a.begin(), 1);
    if (b1) b.push_back(1);
    matmul_plan p;
    p.m = a[a.size() - 2];
    p.k = a.back();
    p.n = b.back();
    if (b[b.size() - 2] != p.k)
        QUANTSIM_THROW(shape_error, desc, ": inner dimensions differ: ", to_string(as), " x ", to_string(bs));
    const shape_t abatch(a.begin(), a.end() - 2), bbatch(b.begin(), b.end() - 2);
    const shape_t batch = broadcast_shapes(abatch, bbatch, desc);
    for (auto d : batch) p.batch *= d;
    p.out_shape = batch;
    if (!a1) p.out_shape.push_back(p.m);
    if (!b1) p.out_shape.push_back(p.n);
    // Offsets per broadcast batch index.
    const std::size_t r = batch.size();
    auto strides = [&](const shape_t& s, std::int64_t mat) {
        std::vector<std::int64_t> st(r, 0);
        std::int64_t acc = mat;
        for (std::size_t i = s.size(); i-- > 0;) {
            const std::size_t d = r - s.size() + i;
            st[d] = s[i] == 1 ? 0 : acc;
            acc *= s[i];
        }
        return st;
    };
    const auto sa = strides(abatch, p.m * p.k), sb = strides(bbatch, p.k * p.n);
    p.a_off.resize(static_cast<std::size_t>(p.batch));
    p.b_off.resize(static_cast<std::size_t>(p.batch));
    for (std::int64_t i = 0; i < p.batch; ++i) {
        std::int64_t rem = i, oa = 0, ob = 0;
        for (std::size_t d = r; d-- > 0;) {
            const std::int64_t idx = rem % batch[d];
            rem /= batch[d];
            oa += idx * sa[d];
            ob += idx * sb[d];
        }
        p.a_off[static_cast<std::size_t>(i)] = oa;
        p.b_off[static_cast<std::size_t>(i)] = ob;
    }
    return p;
}

// C[batch] = A[batch] * B[batch] (+ epilogue program over rows p = batch * m + i, columns j).
void run_matmul(const matmul_plan& p, const float* a, const float* b, float* c, const pw_program* prog,
                const float* const* prog_inputs) {
    if (p.batch == 0 || p.m == 0 || p.n == 0) return;
    if (p.k == 0) {
        std::fill(c, c + p.batch * p.m * p.n, 0.0f);
        if (prog) prog->run(c, prog_inputs, p.batch * p.m, p.n);
        return;
    }
    // When B is shared by every batch (weights), the batches stack into one tall A.
    bool shared_b = true;
    for (auto o : p.b_off) shared_b = shared_b && o == p.b_off[0];
    bool contiguous_a = true;
    for (std::int64_t i = 0; i < p.batch; ++i) contiguous_a = contiguous_a && p.a_off[static_cast<std::size_t>(i)] == i * p.m * p.k;
    const bool stack = shared_b && contiguous_a;
    const std::int64_t nb = stack ? 1 : p.batch;
    const std::int64_t mm = stack ? p.batch * p.m : p.m;
    const std::int64_t per = packed_a_size(mm, p.k);
    std::vector<float> ap(static_cast<std::size_t>(per * nb));
    const std::int64_t mblocks = ceil_div(mm, 64);
    parallel_for(nb * mblocks, [&](std::int64_t t) {
        const std::int64_t bi = t / mblocks, i0 = (t % mblocks) * 64;
        const std::int64_t rows = std::min<std::int64_t>(64, mm - i0);
        pack_a(false, rows, p.k, a + (stack ? 0 : p.a_off[static_cast<std::size_t>(bi)]) + i0 * p.k, p.k, 1.0f,
               ap.data() + bi * per + i0 * p.k);
    });
    const std::int64_t nt = std::clamp<std::int64_t>(65536 / std::max<std::int64_t>(p.k, 1) / 16 * 16, 48, 384);
    const std::int64_t ntiles = ceil_div(p.n, nt);
    const std::int64_t mtiles = ceil_div(mm, 64);
    parallel_for(nb * mtiles * ntiles, [&](std::int64_t t) {
        const std::int64_t bi = t / (mtiles * ntiles);
        const std::int64_t rest = t % (mtiles * ntiles);
        const std::int64_t i0 = (rest % mtiles) * 64, j0 = (rest / mtiles) * nt;
        const std::int64_t rows = std::min<std::int64_t>(64, mm - i0), cols = std::min(nt, p.n - j0);
        float* cb = c + bi * p.m * p.n + i0 * p.n + j0;
        gemm_packed(rows, cols, p.k, ap.data() + bi * per + i0 * p.k, b + p.b_off[static_cast<std::size_t>(bi)] + j0,
                    p.n, cb, p.n, gemm_epilogue{});
        if (prog)
            for (std::int64_t i = 0; i < rows; ++i)
                prog->run_row(cb + i * p.n, prog_inputs, bi * p.m + i0 + i, j0, cols, p.n);
    });
}

class matmul_kernel final : public op_kernel {
public:
    matmul_kernel(const node& n, fused_epilogue ep, std::size_t first_extra)
        : desc_(n.describe()), ep_(std::move(ep)), first_extra_(first_extra) {}
    void run(const std::vector<const tensor*>& ins, std::vector<tensor>& outs) override {
        const tensor& a = input(ins, 0, desc_);
        const tensor& b = input(ins, 1, desc_);
        if (a.type() != dtype::float32 || b.type() != dtype::float32) {
            if (a.type() == b.type() && (a.type() == dtype::int64 || a.type() == dtype::int32)) {
                outs[0] = int_matmul(a, b);
                return;
            }
            require_float(a, desc_, 0);
            require_float(b, desc_, 1);
        }
        const matmul_plan p = plan_matmul(a.shape(), b.shape(), desc_);
        tensor y = detail::new_tensor(p.out_shape);
        std::vector<const float*> extra;
        if (ep_.program) {
            check_program_inputs(ins, first_extra_, ep_.inputs, y.shape(), std::max(0, y.rank() - 1), desc_, &ep_.expected);
            for (std::size_t i = 0; i < ep_.inputs.size(); ++i) extra.push_back(ins[first_extra_ + i]->data<float>());
        }
        run_matmul(p, a.data<float>(), b.data<float>(), y.data<float>(), ep_.program.get(), extra.data());
        outs[0] = std::move(y);
    }

private:
    tensor int_matmul(const tensor& a, const tensor& b) const {
        const matmul_plan p = plan_matmul(a.shape(), b.shape(), desc_);
        tensor fa = cast(a, dtype::float64), fb = cast(b, dtype::float64);
        tensor y = detail::new_tensor(p.out_shape, a.type());
        const double* pa = fa.data<double>();
        const double* pb = fb.data<double>();
        for (std::int64_t bi = 0; bi < p.batch; ++bi)
            for (std::int64_t i = 0; i < p.m; ++i)
                for (std::int64_t j = 0; j < p.n; ++j) {
                    double s = 0;
                    for (std::int64_t kk = 0; kk < p.k; ++kk)
                        s += pa[p.a_off[static_cast<std::size_t>(bi)] + i * p.k + kk] *
                             pb[p.b_off[static_cast<std::size_t>(bi)] + kk * p.n + j];
                    const std::int64_t o = (bi * p.m + i) * p.n + j;
                    if (a.type() == dtype::int64)
                        y.data<std::int64_t>()[o] = static_cast<std::int64_t>(s);
                    else
                        y.data<std::int32_t>()[o] = static_cast<std::int32_t>(s);
                }
        return y;
    }

    std::string desc_;
    fused_epilogue ep_;
    std::size_t first_extra_;
};

std::vector<value_info> infer_matmul(const node& n, const op_inputs_info& in) {
    const std::string desc = n.describe();
    auto ad = dims_of_input(in, 0), bd = dims_of_input(in, 1);
    const dtype t = type_of(in, 0);
    if (!ad || !bd) return {unknown_shape(t)};
    std::vector<sdim> a = *ad, b = *bd;
    if (a.empty() || b.empty()) QUANTSIM_THROW(shape_error, desc, ": MatMul inputs must have rank >= 1");
    const bool a1 = a.size() == 1, b1 = b.size() == 1;
    if (a1) a.insert(a.begin(), sdim{1, {}});
    if (b1) b.push_back(sdim{1, {}});
    const sdim ka = a.back(), kb = b[b.size() - 2];
    if (ka.known() && kb.known() && ka.v != kb.v)
        QUANTSIM_THROW(shape_error, desc, ": inner dimensions differ (", ka.v, " vs ", kb.v, ")");
    std::vector<sdim> batch = broadcast_dims(std::vector<sdim>(a.begin(), a.end() - 2),
                                             std::vector<sdim>(b.begin(), b.end() - 2), desc);
    if (!a1) batch.push_back(a[a.size() - 2]);
    if (!b1) batch.push_back(b.back());
    return {make_info(t, batch)};
}

// ---- Gemm --------------------------------------------------------------------------------------------------------

class gemm_kernel final : public op_kernel {
public:
    gemm_kernel(const node& n, const op_inputs_info& in, fused_epilogue ep, std::size_t first_extra)
        : desc_(n.describe()), ep_(std::move(ep)), first_extra_(first_extra) {
        alpha_ = n.attr_float("alpha", 1.0f);
        beta_ = n.attr_float("beta", 1.0f);
        trans_a_ = n.attr_int("transA", 0) != 0;
        trans_b_ = n.attr_int("transB", 0) != 0;
        if (const tensor* b = in_const(in, 1); b && b->type() == dtype::float32 && b->rank() == 2) {
            // Pre-transpose a constant B into row-major [K, N].
            const std::int64_t k = trans_b_ ? b->shape()[1] : b->shape()[0];
            const std::int64_t nn = trans_b_ ? b->shape()[0] : b->shape()[1];
            bk_ = detail::new_tensor({k, nn});
            const float* src = b->data<float>();
            float* dst = bk_.data<float>();
            for (std::int64_t i = 0; i < k; ++i)
                for (std::int64_t j = 0; j < nn; ++j) dst[i * nn + j] = trans_b_ ? src[j * k + i] : src[i * nn + j];
        }
    }

    void run(const std::vector<const tensor*>& ins, std::vector<tensor>& outs) override {
        const tensor& a = input(ins, 0, desc_);
        require_float(a, desc_, 0);
        if (a.rank() != 2) QUANTSIM_THROW(shape_error, desc_, ": A must be 2-D, got ", to_string(a.shape()));
        tensor b = bk_;
        if (!b.defined()) {
            const tensor& braw = input(ins, 1, desc_);
            require_float(braw, desc_, 1);
            if (braw.rank() != 2) QUANTSIM_THROW(shape_error, desc_, ": B must be 2-D, got ", to_string(braw.shape()));
            b = trans_b_ ? transpose_2d(braw) : braw;
        }
        const std::int64_t m = trans_a_ ? a.shape()[1] : a.shape()[0];
        const std::int64_t k = trans_a_ ? a.shape()[0] : a.shape()[1];
        if (b.shape()[0] != k)
            QUANTSIM_THROW(shape_error, desc_, ": A ", to_string(a.shape()), " and B do not agree on K (", k, " vs ",
                           b.shape()[0], ")");
        const std::int64_t n = b.shape()[1];
        tensor y = detail::new_tensor({m, n});
        const tensor* c = optional_input(ins, 2);
        if (c && beta_ != 0.0f) {
            require_float(*c, desc_, 2);
            tensor cb = expand(*c, {m, n}, desc_ + " (C)");
            if (cb.shape() != shape_t{m, n})
                QUANTSIM_THROW(shape_error, desc_, ": C ", to_string(c->shape()), " does not broadcast to [", m, ", ",
                               n, "]");
            const float* pc = cb.data<float>();
            float* py = y.data<float>();
            for (std::int64_t i = 0; i < m * n; ++i) py[i] = beta_ * pc[i];
            gemm(trans_a_, false, m, n, k, alpha_, a.data<float>(), a.shape()[1], b.data<float>(), n, 1.0f,
                 y.data<float>(), n);
        } else {
            gemm(trans_a_, false, m, n, k, alpha_, a.data<float>(), a.shape()[1], b.data<float>(), n, 0.0f,
                 y.data<float>(), n);
        }
        if (ep_.program) {
            check_program_inputs(ins, first_extra_, ep_.inputs, y.shape(), 1, desc_, &ep_.expected);
            std::vector<const float*> extra;
            for (std::size_t i = 0; i < ep_.inputs.size(); ++i) extra.push_back(ins[first_extra_ + i]->data<float>());
            ep_.program->run(y.data<float>(), extra.data(), m, n);
        }
        outs[0] = std::move(y);
    }

private:
    static tensor transpose_2d(const tensor& t) {
        const std::int64_t r = t.shape()[0], c = t.shape()[1];
        tensor o = detail::new_tensor({c, r});
        const float* s = t.data<float>();
        float* d = o.data<float>();
        for (std::int64_t i = 0; i < r; ++i)
            for (std::int64_t j = 0; j < c; ++j) d[j * r + i] = s[i * c + j];
        return o;
    }

    std::string desc_;
    fused_epilogue ep_;
    std::size_t first_extra_;
    float alpha_ = 1.0f, beta_ = 1.0f;
    bool trans_a_ = false, trans_b_ = false;
    tensor bk_;
};

std::vector<value_info> infer_gemm(const node& n, const op_inputs_info& in) {
    const std::string desc = n.describe();
    auto ad = dims_of_input(in, 0), bd = dims_of_input(in, 1);
    if (!ad || !bd) return {unknown_shape(dtype::float32)};
    if (ad->size() != 2 || bd->size() != 2)
        QUANTSIM_THROW(shape_error, desc, ": Gemm inputs must be 2-D");
    const bool ta = n.attr_int("transA", 0) != 0, tb = n.attr_int("transB", 0) != 0;
    const sdim m = (*ad)[ta ? 1 : 0], ka = (*ad)[ta ? 0 : 1];
    const sdim kb = (*bd)[tb ? 1 : 0], nn = (*bd)[tb ? 0 : 1];
    if (ka.known() && kb.known() && ka.v != kb.v)
        QUANTSIM_THROW(shape_error, desc, ": A and B do not agree on K (", ka.v, " vs ", kb.v, ")");
    return {make_info(dtype::float32, std::vector<sdim>{m, nn})};
}

}  // namespace

std::unique_ptr<op_kernel> create_gemm_fused(const node& n, const op_inputs_info& in, fused_epilogue ep) {
    if (n.op_type == "MatMul") return std::make_unique<matmul_kernel>(n, std::move(ep), 2);
    return std::make_unique<gemm_kernel>(n, in, std::move(ep), 3);
}

void register_gemm_ops(op_registry& r) {
    {
        op_schema s = schema("MatMul", 2, 2);
        s.infer = infer_matmul;
        s.create = [](const node& n, const op_inputs_info&) -> std::unique_ptr<op_kernel> {
            return std::make_unique<matmul_kernel>(n, fused_epilogue{}, 2);
        };
        r.add(std::move(s));
    }
    {
        op_schema s = schema("Gemm", 2, 3);
        s.infer = infer_gemm;
        s.create = [](const node& n, const op_inputs_info& in) -> std::unique_ptr<op_kernel> {
            return std::make_unique<gemm_kernel>(n, in, fused_epilogue{}, 3);
        };
        r.add(std::move(s));
    }
}

}  // namespace quantsim::detail
