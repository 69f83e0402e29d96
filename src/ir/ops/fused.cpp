// Fused kernels for the executor: producers with epilogues, standalone elementwise programs.
#include "fused.hpp"

#include <quantsim/ir/kernels/alloc.hpp>

#include "common.hpp"

namespace quantsim::detail {

std::unique_ptr<op_kernel> create_conv_fused(const node& n, const op_inputs_info& in, fused_epilogue ep);
std::int64_t conv_channels(const node& n, const op_inputs_info& in);
std::unique_ptr<op_kernel> create_gemm_fused(const node& n, const op_inputs_info& in, fused_epilogue ep);

int fusable_row_dims(const node& n, const op_inputs_info& in) {
    if (!n.domain.empty()) return -1;
    if (n.op_type == "Conv" || n.op_type == "ConvTranspose") {
        const tensor* w = in_const(in, 1);
        if (!w || w->type() != dtype::float32 || (w->rank() != 3 && w->rank() != 4)) return -1;
        if (n.has_input(2) && !in_const(in, 2)) return -1;
        return 2;
    }
    if (n.op_type == "MatMul" || n.op_type == "Gemm") {
        const int r = rank_of(in, 0), rb = rank_of(in, 1);
        if (type_of(in, 0) != dtype::float32 || type_of(in, 1) != dtype::float32) return -1;
        if (n.op_type == "Gemm") return 1;
        if (r < 2 || rb < 2) return -1;  // 1-D operands drop a dim: keep it simple
        return std::max(r, rb) - 1;
    }
    return -1;
}

bool can_fold_channel_affine(const node& n, const op_inputs_info& in) {
    return (n.op_type == "Conv" || n.op_type == "ConvTranspose") && fusable_row_dims(n, in) == 2;
}

std::int64_t producer_channels(const node& n, const op_inputs_info& in) {
    if (n.op_type == "Conv" || n.op_type == "ConvTranspose") return conv_channels(n, in);
    return -1;
}

std::size_t producer_arity(const node& n) { return n.op_type == "MatMul" ? 2 : 3; }

std::unique_ptr<op_kernel> create_fused_producer(const node& n, const op_inputs_info& in, fused_epilogue ep) {
    if (n.op_type == "Conv" || n.op_type == "ConvTranspose") return create_conv_fused(n, in, std::move(ep));
    if (n.op_type == "MatMul" || n.op_type == "Gemm") {
        if (!ep.scale.empty())
            QUANTSIM_THROW(graph_error, n.describe(), ": a channel affine cannot be folded into ", n.op_type);
        return create_gemm_fused(n, in, std::move(ep));
    }
    QUANTSIM_THROW(graph_error, n.describe(), ": cannot take a fused epilogue");
}

void check_program_inputs(const std::vector<const tensor*>& ins, std::size_t first,
                          const std::vector<pw_input_spec>& specs, const shape_t& out, int row_dims,
                          const std::string& desc, const shape_t* expected) {
    const std::size_t r = out.size();
    if (expected && !expected->empty()) {
        bool same = expected->size() == r;
        for (std::size_t k = 0; k < r && same; ++k) same = (*expected)[k] < 0 || (*expected)[k] == out[k];
        if (!same)
            QUANTSIM_THROW(shape_error, desc, ": output has shape ", to_string(out), " but the graph's recorded shape is ",
                           to_string(*expected), " (the fused plan relies on it)");
    }
    for (std::size_t i = 0; i < specs.size(); ++i) {
        const std::size_t slot = first + i;
        if (slot >= ins.size() || !ins[slot] || !ins[slot]->defined())
            QUANTSIM_THROW(graph_error, desc, ": fused input ", i, " is missing");
        const tensor& t = *ins[slot];
        if (t.type() != dtype::float32)
            QUANTSIM_THROW(unsupported_error, desc, ": fused input has dtype ", name_of(t.type()));
        const shape_t& s = t.shape();
        bool ok = s.size() <= r;
        if (ok) {
            // Right-align s against out.
            auto dim = [&](std::size_t k) -> std::int64_t { return k < r - s.size() ? 1 : s[k - (r - s.size())]; };
            switch (specs[i].k) {
                case pw_input_spec::kind::full:
                    ok = s == out;
                    break;
                case pw_input_spec::kind::row: {
                    // Non-1 dims only among the row dims, forming a suffix of them that matches the output.
                    std::size_t first_non1 = static_cast<std::size_t>(row_dims);
                    for (std::size_t k = 0; k < static_cast<std::size_t>(row_dims); ++k)
                        if (dim(k) != 1) {
                            first_non1 = k;
                            break;
                        }
                    for (std::size_t k = first_non1; k < static_cast<std::size_t>(row_dims) && ok; ++k)
                        ok = dim(k) == out[k];
                    for (std::size_t k = static_cast<std::size_t>(row_dims); k < r && ok; ++k) ok = dim(k) == 1;
                    break;
                }
                case pw_input_spec::kind::col:
                    for (std::size_t k = 0; k < static_cast<std::size_t>(row_dims) && ok; ++k) ok = dim(k) == 1;
                    for (std::size_t k = static_cast<std::size_t>(row_dims); k < r && ok; ++k) ok = dim(k) == out[k];
                    break;
            }
        }
        if (!ok)
            QUANTSIM_THROW(shape_error, desc, ": input of shape ", to_string(s), " does not broadcast onto ",
                           to_string(out), " the way the fused graph expects");
    }
}

namespace {
class pointwise_group_kernel final : public op_kernel {
public:
    pointwise_group_kernel(std::shared_ptr<const pw_program> p, std::vector<pw_input_spec> specs, std::size_t anchor,
                           int row_dims, std::string desc, shape_t expected)
        : p_(std::move(p)), specs_(std::move(specs)), anchor_(anchor), row_dims_(row_dims), desc_(std::move(desc)),
          expected_(std::move(expected)) {}

    void run(const std::vector<const tensor*>& ins, std::vector<tensor>& outs) override {
        const tensor& a = input(ins, anchor_, desc_);
        require_float(a, desc_, anchor_);
        check_program_inputs(ins, 0, specs_, a.shape(), row_dims_, desc_, &expected_);
        std::vector<const float*> ptrs;
        for (const tensor* t : ins) ptrs.push_back(t->data<float>());
        tensor y = detail::new_tensor(a.shape());
        std::int64_t P = 1, Q = 1;
        for (int i = 0; i < a.rank(); ++i) (i < row_dims_ ? P : Q) *= a.shape()[static_cast<std::size_t>(i)];
        p_->run(y.data<float>(), ptrs.data(), P, Q);
        outs[0] = std::move(y);
    }

private:
    std::shared_ptr<const pw_program> p_;
    std::vector<pw_input_spec> specs_;
    std::size_t anchor_;
    int row_dims_;
    std::string desc_;
    shape_t expected_;
};
}  // namespace

std::unique_ptr<op_kernel> create_pointwise_group(std::shared_ptr<const pw_program> program,
                                                  std::vector<pw_input_spec> inputs, std::size_t anchor,
                                                  int row_dims, std::string desc, shape_t expected) {
    return std::make_unique<pointwise_group_kernel>(std::move(program), std::move(inputs), anchor, row_dims,
                                                    std::move(desc), std::move(expected));
}

}  // namespace quantsim::detail
