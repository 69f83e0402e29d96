// Bias correction (DFQ, Nagel et al. 2019; docs/ptq.md): removes the systematic shift E[W_q x] - E[W x] that weight
// quantization adds to each output channel of a layer, by subtracting it from the layer's bias.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ptq/batch_norm_fold.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace quantsim {

struct bias_correction_options {
    /// Empirical: use at most this many calibration batches (0 = all).
    std::size_t max_batches = 0;
    /// Only these layers (node names or output value names); empty = every eligible layer.
    std::vector<std::string> layers;
    /// Layers to leave alone (node names or output value names).
    std::vector<std::string> exclude;
};

struct bias_correction_report {
    std::vector<std::string> layers;     ///< corrected layers (node names)
    std::vector<double> mean_abs_shift;  ///< per corrected layer: mean |bias change| over its output channels
    std::string log;                     ///< one line per layer: corrected, or skipped and why
};

/// Eligible layers: Conv, ConvTranspose, Gemm with a float32 parameter bias, and MatMul with a constant weight whose
/// only reader is an Add of a constant [N] bias; the weight must have an enabled quantizer in `sim`. Parameter
/// encodings are computed first if missing. Biases are changed through sim.update_param.
///
/// Empirical: E[W_q x] - E[W x] per output channel, averaged over every position of every calibration batch, where
/// x is the layer's input in the FP32 model (the model as it is when this is called). Batches are lists of model
/// inputs, in order.
bias_correction_report correct_bias_empirical(quant_sim& sim, const std::vector<std::vector<tensor>>& batches,
                                              const bias_correction_options& o = {});

/// Analytical: E[x] per input channel from the statistics of the value feeding the layer (its key in `stats`), or
/// of the value before a Relu / Clip (ReLU6) feeding it, through the clipped-normal mean; the error is
/// sum over inputs and kernel taps of (W_q - W) * E[x] (padding ignored). Layers whose input has no statistics are
/// left alone and listed in the log.
bias_correction_report correct_bias_analytical(quant_sim& sim, const bn_stats_map& stats,
                                               const bias_correction_options& o = {});

/// E[clamp(X, lo, hi)] for X ~ N(mean, stddev^2); lo may be -inf and hi +inf. stddev 0 gives clamp(mean, lo, hi).
double clipped_normal_mean(double mean, double stddev, double lo, double hi);

}  // namespace quantsim
