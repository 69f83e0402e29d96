// Batch-norm folding (docs/ptq.md): every inference-mode BatchNormalization is folded into the layer before it
// (backward: Conv, ConvTranspose, Gemm, MatMul with a constant weight), else into the Conv after it (forward: no
// padding, one group), else rewritten as an affine Mul+Add. The BN statistics (beta, |gamma|: the distribution of the
// folded layer's output) are kept for high-bias folding and analytical bias correction.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include <quantsim/ir/graph.hpp>
#include <quantsim/ir/pass.hpp>

namespace quantsim {

/// Per-channel distribution of a value, from the BatchNormalization that produced it: mean = beta,
/// stddev = |gamma|, one entry per channel (axis 1).
struct bn_stats {
    std::vector<float> mean, stddev;
};

/// Key: the value the statistics describe (a folded layer's output value name; for a BN turned affine, its output).
using bn_stats_map = std::map<std::string, bn_stats>;

struct bn_fold_report {
    std::size_t backward = 0;   ///< BN folded into the layer producing its input
    std::size_t forward = 0;    ///< BN folded into the Conv reading its output
    std::size_t to_affine = 0;  ///< BN left alone, rewritten as Mul + Add
    bn_stats_map stats;         ///< for backward folds and affine conversions
    std::vector<std::string> log;  ///< one readable line per fold / conversion / BN left untouched
};

/// Folds every foldable BatchNormalization of `g` (see the header comment and docs/ptq.md for the rules). Output
/// value names of the folded layers are the BNs' output names, so the model's interface and the quantizer names
/// derived from value names stay stable. Shared weights are never written in place: a layer whose weight another
/// node also reads gets its own copy. BNs that cannot be rewritten at all (non-constant statistics, training mode,
/// unknown input rank) are left as they are and listed in the log.
bn_fold_report fold_batch_norms(graph& g);

class batch_norm_fold_pass final : public pass {
public:
    std::string name() const override { return "batch_norm_fold"; }
    bool run(graph& g) override {
        last_ = fold_batch_norms(g);
        return last_.backward + last_.forward + last_.to_affine > 0;
    }
    const bn_fold_report& last_report() const noexcept { return last_; }

private:
    bn_fold_report last_;
};

}  // namespace quantsim
