// Cross-layer equalization (DFQ, Nagel et al. 2019; docs/ptq.md): per-channel rescaling of consecutive Conv layers
// so that their weight ranges match, and high-bias folding. Run it after fold_batch_norms, whose statistics it uses
// for high-bias folding and keeps up to date.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <quantsim/ir/graph.hpp>
#include <quantsim/ptq/batch_norm_fold.hpp>

namespace quantsim {

/// What to do where two layers are joined by hardswish (x * relu6(x + 3) / 6, HardSwish, or x * HardSigmoid(x)).
/// hardswish is not positively homogeneous, so per-channel rescaling through it changes the FP32 function.
enum class hardswish_policy {
    skip,      ///< leave such chains alone (default; measured on the text classifier in docs/ptq.md)
    equalize,  ///< equalize anyway, accepting the approximation
};

struct cle_options {
    /// Replace Clip(0, 6) (ReLU6) between equalized layers by Relu, as AIMET does; this changes the FP32 model where
    /// activations exceed 6. false: chains through ReLU6 are skipped.
    bool relu6_to_relu = true;
    /// Absorb high biases into the next layer (needs the first layer's BN statistics).
    bool high_bias_fold = true;
    /// High-bias folding into a layer with zero padding is exact only away from the borders (padding sees 0, not the
    /// absorbed shift). false (default): such folds are skipped and logged.
    bool high_bias_fold_into_padded = false;
    /// Squeeze-excitation blocks (x * f(GlobalAveragePool(x)) feeding the next layer) are equalized through
    /// exactly: the SE's first Conv has its input channels rescaled to compensate. false: such chains are skipped.
    bool through_squeeze_excitation = true;
    hardswish_policy hardswish = hardswish_policy::skip;
    /// Scaling passes over all chains: chains sharing a layer (c1-dw-c2, c2-c3) interact, and repeating converges
    /// towards all of them being equalized at once.
    int iterations = 1;
};

struct cle_report {
    std::size_t pairs = 0, triplets = 0, high_bias_folded = 0, relu6_replaced = 0;
    std::vector<std::string> log;  ///< chains equalized, and chains skipped with the reason
};

/// Equalizes Conv->Conv pairs and Conv->depthwise->Conv triplets (depthwise: group == in == out channels) joined
/// through Relu, LeakyRelu, Clip(0, +inf), ReLU6 (with relu6_to_relu), nothing, squeeze-excitation blocks and
/// (by policy) hardswish. Pair scales s = sqrt(r1 / r2), triplet scales by cube roots (r = per-channel max |W|).
/// Then folds high biases (c = max(0, beta - 3|gamma|) through ReLU, beta through nothing) when `stats` holds the
/// first layer's statistics. `stats` (if given) is updated for every rescaled or shifted layer output. Weights
/// shared with other nodes are copied, never changed in place.
cle_report equalize_cross_layer(graph& g, const cle_options& o = {}, bn_stats_map* stats = nullptr);

}  // namespace quantsim
