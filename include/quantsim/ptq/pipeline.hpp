// The standard post-training quantization pipeline: batch-norm folding, cross-layer equalization, range setting, then
// bias correction or AdaRound, each step optional, in the order AIMET's white paper recommends. Every step is also a
// function of its own (ptq/batch_norm_fold.hpp, cross_layer_equalization.hpp, bias_correction.hpp, adaround.hpp);
// this file only sequences them and reports what each did. See docs/ptq.md.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/graph.hpp>
#include <quantsim/ptq/adaround.hpp>
#include <quantsim/ptq/batch_norm_fold.hpp>
#include <quantsim/ptq/bias_correction.hpp>
#include <quantsim/ptq/cross_layer_equalization.hpp>
#include <quantsim/ptq/mixed_precision.hpp>
#include <quantsim/ptq/mixquant.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace quantsim {

enum class bias_correction_method : std::uint8_t { none, empirical, analytical };

/// "none", "empirical" or "analytical"; invalid_argument otherwise.
bias_correction_method parse_bias_correction_method(const std::string& s);

struct ptq_options {
    bool fold_bn = false;
    bool cle = false;
    cle_options cle_opts{};
    /// Analytical correction needs BN statistics, so it folds batch norms even when fold_bn is false (logged).
    bias_correction_method bias_correction = bias_correction_method::none;
    bias_correction_options bias_correction_opts{};
    bool adaround = false;
    adaround_options adaround_opts{};
    /// MixQuant weight bit widths (per layer, from the weights alone), chosen before range setting.
    std::optional<mixquant_options> mixquant;
    /// Accuracy-driven mixed precision after range setting (before bias correction or AdaRound, which then work at
    /// the chosen bit widths); needs mixed_precision_eval. Not together with mixquant.
    std::optional<mp_search_options> mixed_precision;
    mp_eval_fn mixed_precision_eval;
    quantsim_options sim{};
    /// Bit width of the first and last layers' weights and their input/output activations (sim/end_layers.hpp), when
    /// it differs from the rest: 4-bit recipes keep them at 8.
    std::optional<int> end_layers_bitwidth;
    calibration_options calibration{};
};

/// What one step did.
struct ptq_step {
    /// "fold_bn", "cle", "end_layers", "mixquant", "range_setting", "mixed_precision", "bias_correction", "adaround"
    std::string name;
    double seconds = 0;
    std::vector<std::string> log;  ///< readable lines: folds, chains, corrected layers, per-layer AdaRound times
    /// True when the step changed the FP32 model (fold, CLE); the quantized model changes at every step.
    bool changes_fp32 = false;
};

/// Called after each step with the FP32 model so far and, from range setting on, the quantized model. Lets a caller
/// evaluate the accuracy after every step (the CLI's --eval does).
using ptq_step_callback = std::function<void(const ptq_step&, const graph& fp32_model, quant_sim* sim)>;

struct ptq_result {
    quant_sim sim;  ///< calibrated, with any AdaRound weights frozen; sim.model() is the FP32 model after the passes
    std::vector<ptq_step> steps;
    bn_stats_map bn_stats;  ///< from batch-norm folding (rescaled by CLE), empty without folding
    std::optional<mixquant_result> mixquant;
    std::optional<mp_search_result> mixed_precision;
};

/// Runs the pipeline on `model` with the calibration batches (each a list of model inputs in order). Bias correction
/// and AdaRound together are an invalid_argument: AdaRound already minimizes the layer output error that bias
/// correction removes, and running both fights over the same weights.
ptq_result run_ptq(graph model, const std::vector<std::vector<tensor>>& calibration, const ptq_options& options = {},
                   const ptq_step_callback& on_step = {});

}  // namespace quantsim
