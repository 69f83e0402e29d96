// AdaRound (Nagel et al., ICML 2020): learns, layer by layer, whether each weight rounds down or up so that the
// layer's output on calibration data matches the FP32 model's, instead of rounding every weight to nearest.
// AIMET's formulation and defaults (docs/adaround.md): rectified sigmoid h(V) with zeta = 1.1, gamma = -0.1,
// regularizer lambda * sum(1 - |2h - 1|^beta) with beta cosine-annealed 20 -> 2 after a 20% warm start, Adam at
// 1e-3, 10000 iterations per layer, loss = MSE of the layer output after its activation function (if any).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace quantsim {

/// Where the optimization of one layer stands (passed to adaround_options::progress).
struct adaround_progress {
    std::size_t layer = 0, layers = 0;  ///< 0-based layer index, number of layers
    std::string weight;
    int iteration = 0, iterations = 0;
    double loss = 0;  ///< reconstruction loss (AIMET's form, see adaround_layer_report) at `iteration`
};

struct adaround_options {
    int iterations = 10000;  ///< per layer (AIMET's default; AIMET v1 uses 15000 for < 8-bit weights when unset)
    float reg_param = 0.01f;  ///< lambda
    float beta_start = 20.f, beta_end = 2.f;
    float warm_start = 0.2f;  ///< fraction of iterations without the regularizer
    float learning_rate = 1e-3f;
    /// Layer inputs from the model quantized so far (the sim, with the layers before already adarounded): AIMET's
    /// default. false: inputs from the FP32 model. Targets always come from the FP32 model.
    bool quantized_inputs = true;
    /// With quantized_inputs: keep the sim's activation quantizers on while collecting layer inputs (the inputs
    /// the layer sees at inference). AIMET turns them off during AdaRound; false does the same.
    bool input_activation_quantizers = true;
    std::size_t max_samples = 0;  ///< calibration samples used (0 = all given)
    int num_threads = 0;          ///< 0 = the sim's (quantsim_options::num_threads), or the default
    bool progress_bar = false;    ///< a one-line progress bar on stderr
    std::function<void(const adaround_progress&)> progress;  ///< optional, called every 100 iterations and at the end
    std::uint64_t seed = 0;  ///< sampling of positions

    // ---- speed knobs --------------------------------------------------------------------------------------------
    /// Output positions (image x spatial position, or rows of a MatMul/Gemm input) sampled per iteration for
    /// layers whose loss goes through a nonlinear activation (0 = all positions every iteration). AIMET samples 32
    /// whole images per iteration; random positions across all images give a less correlated mini-batch.
    std::int64_t positions_per_iteration = 1024;
    /// Layers whose loss is linear in the weights (no activation, or BatchNormalization only) optimize the exact
    /// loss over ALL cached positions through the input Gram matrix (x x^T, K x K per group), which costs
    /// Cout*K*K per iteration independently of the data size. Used when K <= 2 * positions_per_iteration and
    /// K <= 1024; false: such layers are sampled like the others.
    bool exact_linear = true;
    /// Bound on the cached layer inputs and outputs of one layer: samples beyond it are not used for that layer.
    std::size_t max_cache_bytes = std::size_t{1} << 30;
    /// Positions used to report the sampled layers' MSE (nearest vs AdaRound); exact layers use all.
    std::int64_t eval_positions = 8192;
    /// Depthwise convolutions (one input and one output channel per group) compute their sampled loss and gradient
    /// straight from the cached input rows, one channel at a time in L1, instead of building im2col columns for all
    /// channels (false: the im2col path, which the tests compare it with).
    bool direct_depthwise = true;
    /// After a layer is optimized, keep nearest rounding for it when the learned rounding's reconstruction loss
    /// on the evaluation positions is higher than nearest rounding's (adaround_layer_report::kept_nearest).
    bool keep_nearest_if_worse = true;
};

struct adaround_layer_report {
    std::string weight, node;
    double seconds = 0;
    /// Reconstruction loss of the layer output (sum over channels, mean over positions, after the activation),
    /// with nearest rounding and with the learned rounding, on the calibration data (see eval_positions).
    double mse_nearest = 0, mse_adaround = 0;
    /// Fraction of weights whose learned rounding differs from nearest rounding (0 when kept_nearest).
    double fraction_rounded_up_changed = 0;
    /// The learned rounding was worse than nearest rounding on the calibration data (mse_adaround > mse_nearest),
    /// so the layer keeps nearest rounding (adaround_options::keep_nearest_if_worse); mse_adaround is then the
    /// rejected learned rounding's loss.
    bool kept_nearest = false;
    std::string activation;  ///< the activation the loss goes through ("none", "relu", "hardswish", ...)
    bool exact = false;      ///< exact loss over all positions (Gram form) instead of sampled positions
    std::int64_t samples = 0, positions = 0;  ///< calibration samples cached, output positions they give
};

struct adaround_report {
    std::vector<adaround_layer_report> layers;
    std::vector<std::string> skipped;  ///< "weight: reason" for candidate weights left alone
    double seconds = 0;
    /// Readable table: one line per layer (weight, activation, exact/sampled, seconds, MSE nearest -> AdaRound,
    /// fraction changed, "kept nearest" where the learned rounding was rejected), then the total.
    std::string table() const;
};

/// Runs AdaRound over every enabled weight quantizer of a Conv (1-D/2-D, grouped and depthwise included), Gemm or
/// MatMul (constant 2-D weight) node, in graph order. `batches` are model inputs in order (as for
/// compute_encodings). Weight encodings that are missing are computed first; with quantized_inputs the activation
/// encodings should be computed before (quantizers without an encoding are simply off). For each layer the
/// learned integers q are written as W' = (q - zp) * s (so nearest rounding of W' with the same encoding gives
/// exactly q) via sim.update_param, and the encoding is frozen with sim.set_encoding(weight, params, true).
/// Throws calibration_error for no batches or no samples, invalid_argument for bad options.
adaround_report adaround(quant_sim& sim, const std::vector<std::vector<tensor>>& batches,
                         const adaround_options& o = {});

}  // namespace quantsim
