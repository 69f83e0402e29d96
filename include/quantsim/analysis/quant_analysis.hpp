// Quantization analysis: "which layer hurts?" Per-layer sensitivity (one layer quantized at a time, and all but one),
// per-quantizer SQNR of weights and activations, activation histograms with the chosen clipping range, and
// per-channel weight ranges (the spread that makes per-tensor quantization fail). analysis/html_report.hpp turns the
// result into a self-contained HTML page. docs/analysis.md describes each figure.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace quantsim {

/// A score of the sim as configured when called (higher is better): top-1 accuracy, output SQNR, ...
using sim_metric = std::function<double(quant_sim&)>;

/// Output SQNR in dB of the sim against the FP32 model (every quantizer off) on `batches` (first output, all
/// batches): 10 log10(sum y^2 / sum (y - y_q)^2). The FP32 outputs are computed once, here.
sim_metric output_sqnr_metric(quant_sim& sim, std::vector<std::vector<tensor>> batches);

struct analysis_options {
    /// Samples (rows of the calibration batches, in order) used for the statistics and the default metric.
    std::int64_t max_samples = 128;
    int histogram_bins = 64;
    bool sensitivity = true;
    /// Called as (phase, done, total): "statistics" and "sensitivity".
    std::function<void(const std::string&, std::size_t, std::size_t)> progress;
};

struct weight_analysis {
    std::string name, layer, op_type;
    int bitwidth = 0;
    bool per_channel = false;
    double sqnr_db = 0;  ///< of the fake-quantized weight against the weight
    float min = 0, max = 0;
    std::vector<float> channel_min, channel_max;  ///< along axis 0 (output channels); empty for 1-D weights
    /// Largest channel range / median channel range (1 = uniform; large = per-tensor quantization suffers).
    double channel_spread = 1;
};

struct activation_analysis {
    std::string name, op_type;
    int bitwidth = 0;
    double sqnr_db = 0;  ///< of this quantizer alone, applied to the FP32 value
    float min = 0, max = 0;            ///< observed
    float clip_min = 0, clip_max = 0;  ///< the encoding's representable range
    /// Share of observed values that saturate: beyond [clip_min, clip_max] by more than half a quantization step.
    double clipped_fraction = 0;
    std::vector<std::int64_t> histogram;  ///< histogram_bins bins over [min, max]
};

/// A layer: a node with a weight quantizer together with the activation quantizers of the nodes that follow it up
/// to the next such node (its BN, activation, hard-swish pieces); "model inputs" holds those before any layer.
struct layer_sensitivity {
    std::string layer, op_type;
    std::vector<std::string> quantizers;
    double only_this = 0;     ///< metric with only this layer's quantizers enabled
    double all_but_this = 0;  ///< metric with every quantizer but this layer's enabled
};

struct quant_analysis {
    std::string metric_name;     ///< e.g. "output SQNR (dB)"
    double fp32_metric = 0;      ///< every quantizer off
    double quantized_metric = 0; ///< every quantizer as configured
    std::int64_t samples = 0;
    std::vector<weight_analysis> weights;
    std::vector<activation_analysis> activations;
    std::vector<layer_sensitivity> sensitivity;
};

/// Analyzes a calibrated sim on `batches` (each a list of model inputs). `metric` scores sensitivity; empty = the
/// output SQNR against FP32 on the first max_samples samples. The sim's enabled flags are restored afterwards.
/// Throws calibration_error for empty data.
quant_analysis analyze_quantization(quant_sim& sim, const std::vector<std::vector<tensor>>& batches,
                                    const analysis_options& options = {}, sim_metric metric = {},
                                    std::string metric_name = {});

}  // namespace quantsim
