// MixQuant: a per-layer weight bit-width search driven by each layer's quantization roundoff error (after
// Kloberdanz and Le, "MixQuant: Mixed Precision Quantization with a Bit-width Optimization Search", 2023). It needs
// no data and no evaluation, so it runs in milliseconds as a pre-processing step before calibration, AdaRound or any
// other pass. The rule (docs/mixed-precision.md):
//
//   For layer l and candidate bit width b, e_l(b) = ||W_l - Q_b(W_l)||^2 / ||W_l||^2 with Q_b the sim's own weight
//   quantizer at b bits (its scheme, granularity, range method and rounding), and SQNR_l(b) = -10 log10 e_l(b) dB.
//   Layer l gets the smallest candidate b with SQNR_l(b) >= threshold; when none reaches it, the largest candidate.
//
// Raising the threshold never lowers a layer's bit width, and no layer ever gets more than the largest candidate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <quantsim/sim/quantsim.hpp>

namespace quantsim {

struct mixquant_options {
    /// Each layer's weight SQNR must reach this many dB (higher: more bits, smaller error). 25 dB is about 5 bits
    /// for Gaussian-like weights with min-max ranges; 8-bit weights typically reach 40-45 dB.
    double min_sqnr_db = 25.0;
    /// Candidate bit widths, each 2..16 (sorted and deduplicated by the search).
    std::vector<int> bitwidths = {2, 3, 4, 5, 6, 7, 8};
};

/// One weight quantizer's search.
struct mixquant_layer {
    std::string weight;   ///< the weight tensor (quantizer name)
    std::string op_type;  ///< the consuming op
    std::int64_t elements = 0;
    int original_bitwidth = 0;
    int bitwidth = 0;              ///< chosen
    std::vector<double> sqnr_db;   ///< per candidate (mixquant_result::bitwidths); +inf for an exact (all-zero) weight
};

struct mixquant_result {
    std::vector<int> bitwidths;  ///< the candidates, ascending
    double min_sqnr_db = 0;
    std::vector<mixquant_layer> layers;  ///< the searched weight quantizers, in quantizer order

    /// Sum over the searched layers of elements x chosen bit width.
    std::int64_t weight_bits() const;
    /// Element-weighted mean bit width of the searched layers.
    double mean_bitwidth() const;
    /// Readable table: weight, op, elements, SQNR per candidate, chosen bit width.
    std::string table() const;
};

/// Runs the search over every enabled, non-frozen weight quantizer of `sim` (param_kind "weight"; frozen ones, e.g.
/// after AdaRound, keep theirs and are not listed). The sim is left as it was. Throws invalid_argument for bad
/// options (no candidates, a candidate outside 2..16, a non-finite threshold).
mixquant_result mixquant_search(quant_sim& sim, const mixquant_options& options = {});

/// Sets each searched weight quantizer to its chosen bit width and recomputes the parameter encodings. Throws
/// invalid_argument when a weight of the result has no quantizer in `sim`.
void apply_mixquant(quant_sim& sim, const mixquant_result& result);

}  // namespace quantsim
