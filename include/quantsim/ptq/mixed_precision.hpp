// Accuracy-driven mixed precision in the style of AIMET's AMP: measure how much accuracy each group of quantizers
// loses at each cheaper bit-width candidate (phase 1), walk the groups from the least to the most sensitive towards
// cheaper candidates while evaluating the model, which traces accuracy against BitOps (phase 2), and pick the cheapest
// configuration whose accuracy stays within the allowed drop (phase 3). docs/mixed-precision.md has the details.
//
// A group is what must share one bit width: the weight quantizers of every layer (Conv, ConvTranspose, Gemm, MatMul
// with a weight parameter) that reads the same quantized input, together with that input's activation quantizer. A
// candidate sets both the input activation bit width and the weight bit width of its group, so BitOps of a layer =
// MACs x activation bits x weight bits, as AIMET counts them.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace quantsim {

/// One bit-width choice for a group: its input activation and its weights.
struct mp_candidate {
    int activation_bitwidth = 8;
    int param_bitwidth = 8;
    bool operator==(const mp_candidate&) const = default;
};

/// "a8w4" (also "w4a8", "A8W4"); invalid_argument otherwise.
mp_candidate parse_mp_candidate(const std::string& text);
/// A comma-separated list of candidates: "a8w8,a8w4".
std::vector<mp_candidate> parse_mp_candidates(const std::string& text);
std::string to_string(const mp_candidate& c);

/// The model's accuracy (any metric, higher is better) with the sim as it is configured when called.
using mp_eval_fn = std::function<double(quant_sim&)>;

struct mp_search_options {
    /// The candidates; the most expensive one (activation bits x weight bits) is the starting point of every group.
    std::vector<mp_candidate> candidates = {{8, 8}, {8, 4}};
    /// Allowed accuracy drop, in the metric's units (0.01 = one point of a [0, 1] accuracy), from the reference.
    double allowed_drop = 0.01;
    /// The accuracy the drop is measured from (e.g. FP32's). NaN: the accuracy with every group at the most
    /// expensive candidate.
    double reference_accuracy = std::numeric_limits<double>::quiet_NaN();
    /// true: evaluate after every step of phase 2 (the whole accuracy/BitOps curve); false: binary search for the
    /// cheapest step that meets the target (log2 of the steps evaluations; the curve then has only those points).
    bool full_curve = true;
    /// Called during the phases: ("sensitivity" | "curve", evaluations done, evaluations planned).
    std::function<void(const std::string& phase, std::size_t done, std::size_t total)> progress;
};

struct mp_group {
    std::vector<std::string> weights;    ///< weight quantizers (tensor names)
    std::vector<std::string> layers;     ///< node names
    std::string activation;              ///< the input activation quantizer ("" when the input is not quantized)
    std::int64_t macs = 0;               ///< per sample, summed over the group's layers
    std::int64_t weight_elements = 0;
};

/// One evaluated configuration.
struct mp_point {
    std::vector<std::size_t> choice;  ///< candidate index per group
    double accuracy = 0;
    double bitops = 0;       ///< per sample, summed over the groups' layers
    double weight_bits = 0;  ///< summed over the groups' weights
};

struct mp_search_result {
    std::vector<mp_candidate> candidates;
    std::size_t base_candidate = 0;  ///< the most expensive candidate
    std::vector<mp_group> groups;
    /// sensitivity[g][c]: accuracy with group g at candidate c and every other group at the base (NaN for the base).
    std::vector<std::vector<double>> sensitivity;
    double baseline_accuracy = 0;   ///< every group at the base candidate
    double reference_accuracy = 0;  ///< what the drop is measured from
    double target_accuracy = 0;     ///< reference - allowed drop
    /// Phase 2's evaluated configurations in walk order (the first is the baseline).
    std::vector<mp_point> curve;
    std::size_t chosen = 0;  ///< index into curve: the cheapest point reaching the target (0 when none does)
    bool met_target = false;
    std::size_t evaluations = 0;

    /// Points of `curve` that no other point beats in both accuracy and BitOps, by increasing BitOps.
    std::vector<mp_point> pareto_front() const;
    /// Readable summary: groups with their sensitivities, the curve, the choice.
    std::string table() const;
};

/// MACs per sample of a layer node (Conv, ConvTranspose, Gemm, MatMul) with a weight parameter, from the graph's
/// value shapes (batch dimension excluded); the weight's element count when the output shape is unknown.
std::int64_t layer_macs(const graph& model, const node& layer);

/// Runs the three phases on a sim whose quantizers are placed (it need not be calibrated: activation encodings are
/// computed from `calibration` at every candidate activation bit width; with an empty `calibration` the sim's current
/// activation encodings are used, which needs every candidate to keep the activations' current bit width). Leaves the
/// sim configured with the chosen point and calibrated. Frozen weight quantizers keep their encoding and are not
/// searched. Throws invalid_argument for bad options and calibration_error when calibration data is needed but
/// missing.
mp_search_result mixed_precision_search(quant_sim& sim, const std::vector<std::vector<tensor>>& calibration,
                                        const mp_eval_fn& evaluate, const mp_search_options& options = {});

}  // namespace quantsim
