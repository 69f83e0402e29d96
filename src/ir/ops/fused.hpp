// Kernels the executor builds for fused node groups: a producer (Conv, ConvTranspose, MatMul, Gemm) with a folded
// per-channel affine (BatchNormalization) and an elementwise epilogue, or a standalone elementwise program.
#pragma once

#include <limits>
#include <memory>
#include <vector>

#include <quantsim/ir/kernels/pointwise.hpp>
#include <quantsim/ir/op.hpp>

namespace quantsim::detail {

/// How a runtime input of a program must look relative to the output shape (checked at every run).
struct pw_input_spec {
    enum class kind { full, row, col } k = kind::full;
};

struct fused_epilogue {
    std::vector<float> scale, shift;  ///< per-output-channel affine folded into the weights (empty = none)
    float lo = -std::numeric_limits<float>::infinity();  ///< clamp right after the bias
    float hi = std::numeric_limits<float>::infinity();
    std::shared_ptr<const pw_program> program;  ///< then this program (may be null)
    std::vector<pw_input_spec> inputs;           ///< the program's runtime inputs, in order
    /// The output shape the plan assumed when it laid out the program's operands (-1 = any size); checked at every
    /// run so that a graph whose recorded shapes were wrong fails loudly instead of indexing the wrong channel.
    shape_t expected;
    /// Conv only: the last input is s [N, C, 1, 1] and the conv runs on x * s (squeeze-excitation scale).
    bool input_scale = false;
};

/// Leading output dims that form P in the [P, Q] view of a producer's output: 2 for Conv/ConvTranspose (N, M),
/// rank - 1 for MatMul/Gemm. -1 when the node cannot take an epilogue.
int fusable_row_dims(const node& n, const op_inputs_info& in);
/// True when a per-output-channel affine can be folded into the producer's weights (constant weights).
bool can_fold_channel_affine(const node& n, const op_inputs_info& in);
/// Number of output channels of a producer (Conv: M), or -1 when unknown.
std::int64_t producer_channels(const node& n, const op_inputs_info& in);

/// The fused kernel's inputs are the producer's inputs (padded with nullptr to `producer_arity`), then the
/// program's runtime inputs.
std::size_t producer_arity(const node& n);
std::unique_ptr<op_kernel> create_fused_producer(const node& n, const op_inputs_info& in, fused_epilogue ep);

/// A standalone program. Inputs are the program's runtime inputs; input `anchor` (kind full) gives the output
/// shape. `row_dims` is the P/Q split. `desc` names the group in errors.
std::unique_ptr<op_kernel> create_pointwise_group(std::shared_ptr<const pw_program> program,
                                                  std::vector<pw_input_spec> inputs, std::size_t anchor,
                                                  int row_dims, std::string desc, shape_t expected = {});

/// Checks runtime program inputs against the output shape split at row_dims; throws shape_error naming desc.
void check_program_inputs(const std::vector<const tensor*>& ins, std::size_t first,
                          const std::vector<pw_input_spec>& specs, const shape_t& out, int row_dims,
                          const std::string& desc, const shape_t* expected = nullptr);

}  // namespace quantsim::detail
