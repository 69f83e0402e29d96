// QuantSim: quantizers placed on a graph where the target runtime quantizes (by an AIMET-format config or by an
// encodings file), calibrated with any observer, a simulated (fake-quant) forward, and export of AIMET encodings
// and of a QDQ ONNX model. See docs/quantsim.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/ir/graph.hpp>
#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/observers/any_observer.hpp>
#include <quantsim/quant/rounding.hpp>
#include <quantsim/sim/config.hpp>
#include <quantsim/sim/encodings.hpp>

namespace quantsim {

enum class quantizer_kind : std::uint8_t { param, activation };

/// One quantizer: the tensor it quantizes and how.
struct quantizer {
    std::string name;  ///< the ONNX tensor (parameter or value) it quantizes
    quantizer_kind kind = quantizer_kind::activation;
    std::string op_type;  ///< activations: the producing op ("" for model inputs); params: the consuming op
    std::string param_kind;  ///< params: "weight", "bias", ...
    bool enabled = true;
    /// The encoding is fixed (loaded or set by the user or a pass): compute_encodings leaves it alone.
    bool frozen = false;
    quant_spec spec;
    granularity gran;
    quant_options options;
    range_method range;
    /// Fixed output range from the config's encoding_constraints (Sigmoid/Softmax [0, 1]).
    std::optional<std::pair<double, double>> fixed_range;
    /// Data-movement ops (Reshape, MaxPool, ...): the quantizer whose encoding this one reuses ("" = its own).
    std::string shared_with;
    /// int32 bias with scale = s_in * s_w: the input-activation and weight quantizers it is derived from.
    std::string bias_input;
    std::string bias_weight;
    /// The encoding, once computed, loaded or set.
    std::optional<quant_params> params;

    bool is_derived_bias() const noexcept { return !bias_weight.empty(); }
};

struct quantsim_options {
    quantsim_config config = quantsim_config::default_config();
    int param_bitwidth = 8;
    int activation_bitwidth = 8;
    /// Overrides the config's per-channel setting for weights when set.
    std::optional<bool> per_channel;
    range_method param_range{};       ///< minmax
    range_method activation_range{};  ///< minmax
    quant_options options{};          ///< rounding and arithmetic of every quantizer (ONNX: half-even, divide)
    range_convention convention = range_convention::aimet;
    /// Quantize Conv/ConvTranspose/Gemm biases to int32 with scale s_in * s_w, as integer runtimes (ONNX Runtime's
    /// QLinearConv, QNN, TFLite) do, when the config leaves bias unquantized.
    bool int32_bias = true;
    int num_threads = 0;  ///< 0 = default_num_threads()
    /// Simulated forward with activation fake-quant fused into the executor's steps (see docs/quantsim.md, "Speed").
    /// false: the reference path, a hook that fake-quantizes each value after its (unfused) producing step. Both give
    /// identical results.
    bool fused_forward = true;
    /// Place quantizers on hard-swish and hard-sigmoid spelled out in elementary ops (Add(x, 3) -> Clip(0, 6) ->
    /// Mul(x, .) -> Div(., 6), see ir/composite_ops.hpp) as on one HardSwish / HardSigmoid op: only the result is
    /// quantized, and the config's rules and supergroups for those op types apply (Conv -> HardSwish, ...). This is
    /// what runtimes with such kernels do (QNN, TFLite, OpenVINO). false: every elementary op is an op of its own,
    /// as AIMET and ONNX Runtime's quantizer treat them.
    bool fuse_decomposed_activations = false;
};

struct calibration_options {
    /// Calibration batches (or their micro-batches) are split across this many workers, each with its own executor
    /// and observers, merged at the end. 0 (the default) = one worker per thread (num_threads), or one when a
    /// moving-average observer is used, whose encodings depend on the order of the batches; every other observer
    /// gives the same encodings for any worker count.
    int workers = 0;
    /// Progress callback: (batches done, batches total).
    std::function<void(std::size_t, std::size_t)> progress;
    /// Histogram observers (SQNR, MSE, percentile, entropy) count one 16-value group in this many of each value
    /// larger than 4096 elements: 1 (every value), 2, 4, 8 (the default) or 16. Min/max still see every value.
    /// Counting every value is most of a histogram calibration's time: on the classifier, SQNR calibration takes
    /// about 3.4x an FP32 pass exactly and 1.9x with 8, which moves encodings less than calibrating on other images
    /// of the same kind does, and top-1 within the spread that image choice gives (docs/quantsim.md, "Speed:
    /// calibration", has the figures; set 1 where the last tenths of a point matter).
    /// Encodings stay independent of threads and workers.
    std::size_t histogram_sample = 8;
    /// Runs each batch as pieces along axis 0, so that the values observed after each op are still in the CPU's
    /// cache instead of being read back from memory (a batch of 32 classifier images makes 5 MB activations).
    /// Only where the model keeps samples apart (samples_are_independent, ir/batch_independence.hpp) and no
    /// observer depends on batch boundaries (the moving average does): the observed values are then the same, and
    /// so are the encodings of every observer that counts every value. Sampled histograms (histogram_sample > 1)
    /// pick their blocks per piece: their encodings change with the split, but not with threads or workers.
    /// 0 = automatic: a first piece of one sample, then pieces whose largest observed value holds about
    /// micro_batch_values floats; n > 0 = pieces of at most n samples; -1 = never split.
    std::int64_t micro_batch = 0;
    static constexpr std::int64_t micro_batch_values = std::int64_t{1} << 17;
};

/// Encodings loaded for tensors the model does not have, or quantizers left without an encoding.
struct encodings_load_report {
    std::vector<std::string> applied;
    std::vector<std::string> unknown_tensors;  ///< in the file, not in the model
};

class quant_sim {
public:
    /// Places quantizers on `model` by options.config. The graph is shape-inferred (value types decide which values
    /// can be quantized: only float32 ones are).
    explicit quant_sim(graph model, quantsim_options options = {});

    /// Places quantizers exactly where `encodings` has entries (and nowhere else) and freezes them: applying an
    /// exported encodings file to the exported FP32 model reproduces the simulated model.
    static quant_sim from_encodings(graph model, const encodings_file& encodings, quantsim_options options = {});

    quant_sim(quant_sim&&) noexcept;
    quant_sim& operator=(quant_sim&&) noexcept;
    ~quant_sim();

    const graph& model() const noexcept;
    const quantsim_options& options() const noexcept;

    // ---- quantizers ---------------------------------------------------------------------------------------------
    std::vector<quantizer>& quantizers() noexcept;
    const std::vector<quantizer>& quantizers() const noexcept;
    quantizer* find(std::string_view tensor_name);
    const quantizer* find(std::string_view tensor_name) const;
    /// find() that throws invalid_argument naming the tensor when there is no quantizer.
    quantizer& at(std::string_view tensor_name);
    /// The effective encoding of a quantizer (following shared_with and derived int32 bias), or nullopt.
    std::optional<quant_params> effective_params(std::string_view tensor_name) const;

    /// Programmatic overrides. Changing bit width or scheme drops the encoding (recompute it); set_encoding
    /// freezes.
    void set_bitwidth(std::string_view tensor_name, int bitwidth);
    void set_enabled(std::string_view tensor_name, bool enabled);
    void set_encoding(std::string_view tensor_name, const quant_params& params, bool freeze = true);

    // ---- calibration --------------------------------------------------------------------------------------------
    /// Computes parameter encodings from the weights, then activation encodings by running the FP32 model on the
    /// batches (each a list of model inputs in order) and observing every quantized value. Frozen quantizers are
    /// kept. Throws calibration_error for an empty set, numeric_error naming the batch for NaN/Inf data.
    void compute_encodings(const std::vector<std::vector<tensor>>& batches, const calibration_options& options = {});
    /// Convenience: a single-input model, batches of its input.
    void compute_encodings(const std::vector<tensor>& batches, const calibration_options& options = {});
    /// Parameter encodings only (from the current weights).
    void compute_param_encodings();

    // ---- simulated inference ------------------------------------------------------------------------------------
    /// Runs the simulated model: fake-quantized weights and activations. Quantizers without an encoding are
    /// skipped (disabled).
    std::vector<tensor> forward(const std::vector<tensor>& inputs);
    tensor forward(const tensor& input);
    /// The executor running the simulated model (hooks installed); valid until the quantizers or weights change.
    executor& sim_executor();
    /// Replaces a parameter's float value (PTQ passes); its encoding is recomputed unless frozen.
    void update_param(const std::string& name, tensor value);

    // ---- encodings and export ------------------------------------------------------------------------------------
    encodings_file encodings() const;
    void export_encodings(const std::filesystem::path& path,
                          encodings_version version = encodings_version::v1_0_0) const;
    /// Applies encodings by tensor name and freezes those quantizers. Per-channel entries whose axis the file does
    /// not record take the quantizer's own axis. Shape mismatches are config_error naming the tensor.
    encodings_load_report load_encodings(const encodings_file& encodings);

    /// The model with QuantizeLinear/DequantizeLinear for every enabled quantizer and weights stored as integers.
    /// opset >= 13 (per-channel axis); int4 weights need opset 21 (otherwise int8 storage holds the 4-bit values).
    graph qdq_model(std::int64_t opset = 13) const;
    void export_qdq(const std::filesystem::path& path, std::int64_t opset = 13) const;

    /// Readable table of quantizers: tensor, kind, op, bit width, scheme, granularity, encoding.
    std::string summary() const;

private:
    quant_sim();
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace quantsim
