// Integer-exact target emulation: runs a quant_sim's model the way an int8 runtime runs its QDQ export, with
// uint8/int8 activations and weights, int32 accumulation, int32 bias (scale s_in * s_w) and the runtime's own
// requantization arithmetic and rounding. See docs/integer.md for the lowering rules of each profile and
// docs/runtime-gap.md for the measured agreement with ONNX Runtime.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace quantsim {

/// Which runtime's integer arithmetic to reproduce.
enum class integer_profile : std::uint8_t {
    /// ONNX Runtime (CPU, x86-64, graph optimizations on) executing quantsim's QDQ export: QLinearConv,
    /// QLinearMatMul, QLinearAdd, QLinearMul, QLinearGlobalAveragePool and QLinearSoftmax with MLAS's arithmetic
    /// (float multiplier, round half to even), float ops between DequantizeLinear and QuantizeLinear elsewhere.
    onnxruntime,
    /// The TFLite integer specification: fixed-point multiplier and shift, rounding half away from zero, fused
    /// Relu/Relu6 clamps. Unverified against a device (no TFLite runtime here): tested against the formulas.
    tflite,
};

/// "onnxruntime" / "tflite"; parse_integer_profile throws invalid_argument naming the accepted values.
std::string_view to_string(integer_profile p) noexcept;
integer_profile parse_integer_profile(std::string_view name);

struct integer_options {
    integer_profile profile = integer_profile::onnxruntime;
    int num_threads = 0;  ///< 0 = default_num_threads()
    /// false: every integer kernel uses its plain reference loop instead of the vectorized one (for tests; results
    /// are identical).
    bool vectorized = true;
    /// true: a float island whose outputs are all quantized and depend elementwise on ONE quantized input (per
    /// channel at most: BatchNormalization, Add/Mul/Div by constants, Relu, Clip, HardSigmoid, ...) runs as a
    /// lookup table per output and channel, int8 -> int8, filled at the first run by running the island itself on
    /// every input code (so the results are bit-identical; checked then, the island runs when they are not).
    /// false: every island runs its float ops (the reference the tables are tested against).
    bool island_tables = true;
};

/// How one node of the model is executed.
struct integer_step_info {
    std::string node;    ///< node name (for the model-input quantizers: the input's name)
    std::string kernel;  ///< e.g. "QLinearConv", "QLinearAdd", "float Div", "QuantizeLinear"
};

class integer_executor {
public:
    /// Lowers the simulated model: quantized weights, biases and activation grids come from `sim`'s effective
    /// encodings (quantizers without an encoding are disabled). Throws unsupported_error naming the value and node
    /// for activation grids the runtimes cannot store (per-channel activations, more than 8 bits).
    explicit integer_executor(const quant_sim& sim, integer_options options = {});
    ~integer_executor();
    integer_executor(integer_executor&&) noexcept;
    integer_executor& operator=(integer_executor&&) noexcept;

    /// Runs on float inputs (model input order). Quantized outputs come back dequantized: (q - zp) * scale.
    std::vector<tensor> run(const std::vector<tensor>& inputs);
    tensor run(const tensor& input);
    /// Runs on named inputs and returns the named values (model outputs or intermediates), dequantized.
    std::map<std::string, tensor> run(const std::map<std::string, tensor>& feeds,
                                      const std::vector<std::string>& fetch = {});
    /// The same, but quantized values come back as their integers (uint8/int8 tensors); float values as float.
    std::map<std::string, tensor> run_raw(const std::map<std::string, tensor>& feeds,
                                          const std::vector<std::string>& fetch = {});

    /// One entry per executed step, in order.
    const std::vector<integer_step_info>& plan() const noexcept;
    /// Readable plan: one line per step, then counts per kernel.
    std::string plan_summary() const;
    const integer_options& options() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace quantsim
