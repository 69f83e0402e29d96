// Batch-norm folding (include/quantsim/ptq/batch_norm_fold.hpp).
#include <quantsim/ptq/batch_norm_fold.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>

#include <quantsim/ir/pattern.hpp>
#include <quantsim/ptq/detail/layers.hpp>

namespace quantsim {

namespace {

using detail::ptq_float_param;
using detail::ptq_set_param;

// The per-channel affine map of an inference-mode BatchNormalization: y = a * x + shift, in double.
struct bn_affine {
    std::vector<double> a, shift;
    std::vector<float> beta, gamma;
    std::int64_t channels = 0;
};

std::optional<bn_affine> read_bn(const graph& g, const node& bn, std::string& why) {
    if (!bn.domain.empty()) {
        why = "not the default domain";
        return std::nullopt;
    }
    if (bn.attr_int("training_mode", 0) != 0) {
        why = "training mode";
        return std::nullopt;
    }
    for (std::size_t k = 1; k < bn.outputs.size(); ++k)
        if (!bn.outputs[k].empty() && use_count(g, bn.outputs[k]) > 0) {
            why = "its running-statistics outputs are used";
            return std::nullopt;
        }
    if (bn.num_present_inputs() != 5) {
        why = "it does not have 5 inputs";
        return std::nullopt;
    }
    const tensor *gamma = ptq_float_param(g, bn, 1), *beta = ptq_float_param(g, bn, 2),
                 *mean = ptq_float_param(g, bn, 3), *var = ptq_float_param(g, bn, 4);
    if (!gamma || !beta || !mean || !var) {
        why = "scale, bias, mean or variance is not a float32 parameter";
        return std::nullopt;
    }
    const std::int64_t c = gamma->numel();
    if (beta->numel() != c || mean->numel() != c || var->numel() != c || gamma->rank() != 1) {
        why = "scale, bias, mean and variance differ in size";
        return std::nullopt;
    }
    const double eps = bn.attr_float("epsilon", 1e-5f);
    bn_affine r;
    r.channels = c;
    r.a.resize(static_cast<std::size_t>(c));
    r.shift.resize(static_cast<std::size_t>(c));
    r.beta.assign(beta->f32(), beta->f32() + c);
    r.gamma.assign(gamma->f32(), gamma->f32() + c);
    for (std::int64_t k = 0; k < c; ++k) {
        const auto i = static_cast<std::size_t>(k);
        const double v = double(var->f32()[k]) + eps;
        if (!(v > 0) || !std::isfinite(v)) {
            why = "variance + epsilon of channel " + std::to_string(k) + " is not positive and finite";
            return std::nullopt;
        }
        r.a[i] = double(gamma->f32()[k]) / std::sqrt(v);
        r.shift[i] = double(beta->f32()[k]) - double(mean->f32()[k]) * r.a[i];
    }
    return r;
}

bn_stats stats_of(const bn_affine& bn) {
    bn_stats s;
    s.mean = bn.beta;
    s.stddev.resize(bn.gamma.size());
    for (std::size_t k = 0; k < bn.gamma.size(); ++k) s.stddev[k] = std::fabs(bn.gamma[k]);
    return s;
}

// Rank of a value from the recorded shapes, or -1.
int known_rank(const graph& g, const std::string& value) {
    const value_info* vi = g.info(value);
    return vi && vi->shape_known ? static_cast<int>(vi->shape.size()) : -1;
}

// Folds BN `bi` into its producer `ci` (a Conv, ConvTranspose, Gemm or MatMul). Returns false (why set) when the
// pair does not qualify; the graph is unchanged then.
bool fold_backward(graph& g, std::size_t ci, std::size_t bi, bn_fold_report& r, std::string& why) {
    const node c = g.nodes[ci];
    const node& bn = g.nodes[bi];
    if (!c.domain.empty()) {
        why = "the producer is not in the default domain";
        return false;
    }
    auto ab = read_bn(g, bn, why);
    if (!ab) return false;
    const std::int64_t M = ab->channels;
    const tensor* w = ptq_float_param(g, c, 1);
    if (!w) {
        why = "the weight is not a float32 parameter";
        return false;
    }
    const tensor* b = nullptr;
    if (c.has_input(2)) {
        b = ptq_float_param(g, c, 2);
        if (!b) {
            why = "the bias is computed at run time";
            return false;
        }
    }
    tensor w2 = w->clone();
    std::vector<double> bias_in(static_cast<std::size_t>(M), 0.0);
    node replacement = c;
    const auto A = [&](std::int64_t k) { return ab->a[static_cast<std::size_t>(k)]; };
    if (c.op_type == "Conv") {
        if (w->rank() < 3 || w->dim(0) != M || (b && b->numel() != M)) {
            why = "weight/bias do not have the BN's " + std::to_string(M) + " output channels";
            return false;
        }
        const std::int64_t block = w->numel() / M;
        for (std::int64_t k = 0; k < M; ++k)
            for (std::int64_t j = 0; j < block; ++j)
                w2.f32()[k * block + j] = static_cast<float>(double(w->f32()[k * block + j]) * A(k));
        if (b)
            for (std::int64_t k = 0; k < M; ++k) bias_in[static_cast<std::size_t>(k)] = b->f32()[k];
    } else if (c.op_type == "ConvTranspose") {
        // Weight [C_in, M / group, k...]: output channel grp * (M / group) + j.
        const std::int64_t groups = c.attr_int("group", 1);
        if (w->rank() < 3 || groups < 1 || w->dim(0) % groups != 0 || w->dim(1) * groups != M ||
            (b && b->numel() != M)) {
            why = "weight/bias do not have the BN's " + std::to_string(M) + " output channels";
            return false;
        }
        const std::int64_t cin = w->dim(0), per_group = w->dim(1), block = w->numel() / (cin * per_group);
        for (std::int64_t i = 0; i < cin; ++i) {
            const std::int64_t grp = i / (cin / groups);
            for (std::int64_t j = 0; j < per_group; ++j) {
                const double s = A(grp * per_group + j);
                const std::int64_t off = (i * per_group + j) * block;
                for (std::int64_t e = 0; e < block; ++e)
                    w2.f32()[off + e] = static_cast<float>(double(w->f32()[off + e]) * s);
            }
        }
        if (b)
            for (std::int64_t k = 0; k < M; ++k) bias_in[static_cast<std::size_t>(k)] = b->f32()[k];
    } else {  // Gemm, or MatMul [.., K] x [K, N] rewritten as Gemm
        const bool matmul = c.op_type == "MatMul";
        if (w->rank() != 2) {
            why = "the weight is not a matrix";
            return false;
        }
        if (matmul && known_rank(g, c.inputs[0]) != 2) {
            why = "the MatMul input is not known to be a matrix (BN's channel axis would not be the output columns)";
            return false;
        }
        const bool trans_b = !matmul && c.attr_int("transB", 0) != 0;
        if ((trans_b ? w->dim(0) : w->dim(1)) != M) {
            why = "the weight does not have the BN's " + std::to_string(M) + " output columns";
            return false;
        }
        for (std::int64_t row = 0; row < w->dim(0); ++row)
            for (std::int64_t col = 0; col < w->dim(1); ++col) {
                const std::int64_t i = row * w->dim(1) + col;
                w2.f32()[i] = static_cast<float>(double(w->f32()[i]) * A(trans_b ? row : col));
            }
        if (b) {
            // C must broadcast along the output columns: scalar, [N] or [1, N].
            const bool ok = b->numel() == 1 || (b->numel() == M && (b->rank() == 1 || (b->rank() == 2 && b->dim(0) == 1)));
            if (!ok) {
                why = "the Gemm bias C is not a scalar, [N] or [1, N]";
                return false;
            }
            const double beta_attr = c.attr_float("beta", 1.0f);
            for (std::int64_t k = 0; k < M; ++k)
                bias_in[static_cast<std::size_t>(k)] = beta_attr * b->f32()[b->numel() == 1 ? 0 : k];
        }
        if (matmul) {
            replacement.op_type = "Gemm";
            replacement.attrs.clear();
        }
        replacement.attrs["beta"] = 1.0f;
    }
    tensor b2 = tensor::empty({M});
    for (std::int64_t k = 0; k < M; ++k) {
        const auto i = static_cast<std::size_t>(k);
        b2.f32()[k] = static_cast<float>(bias_in[i] * ab->a[i] + ab->shift[i]);
    }
    const std::string bn_name = bn.name, bn_out = bn.outputs[0];
    ptq_set_param(g, ci, 1, c.name + ".weight", std::move(w2));
    // A [1, N] Gemm bias that only this node reads becomes [N]: ptq_set_param keeps the name, the shape may change.
    ptq_set_param(g, ci, 2, c.name + ".bias", std::move(b2));
    replacement.inputs = g.nodes[ci].inputs;
    replacement.outputs.clear();
    replace_chain(g, {ci, bi}, std::move(replacement));
    g.value_infos.erase(c.outputs[0]);
    r.stats[bn_out] = stats_of(*ab);
    ++r.backward;
    r.log.push_back("backward: BatchNormalization '" + bn_name + "' folded into " + c.op_type + " '" + c.name +
                    "' (output '" + bn_out + "')");
    return true;
}

// Folds BN `bi` into the Conv `ci` reading its output (no padding, one group).
bool fold_forward(graph& g, std::size_t bi, std::size_t ci, bn_fold_report& r, std::string& why) {
    const node& bn = g.nodes[bi];
    const node& c = g.nodes[ci];
    auto ab = read_bn(g, bn, why);
    if (!ab) return false;
    if (c.op_type != "Conv" || !c.domain.empty()) {
        why = "its reader is not a Conv";
        return false;
    }
    if (c.attr_int("group", 1) != 1) {
        why = "the Conv after it has groups";
        return false;
    }
    if (!detail::ptq_zero_padding(c)) {
        why = "the Conv after it pads (padding would see the BN's shift missing)";
        return false;
    }
    const tensor* w = ptq_float_param(g, c, 1);
    const tensor* b = c.has_input(2) ? ptq_float_param(g, c, 2) : nullptr;
    const std::int64_t C = ab->channels;
    if (!w || w->rank() < 3 || w->dim(1) != C || (c.has_input(2) && (!b || b->numel() != w->dim(0)))) {
        why = "the Conv's weight/bias are not parameters with the BN's " + std::to_string(C) + " input channels";
        return false;
    }
    const std::int64_t M = w->dim(0), K = w->numel() / (M * C);
    tensor w2 = w->clone();
    tensor b2 = tensor::empty({M});
    for (std::int64_t o = 0; o < M; ++o) {
        double acc = b ? double(b->f32()[o]) : 0.0;
        for (std::int64_t i = 0; i < C; ++i) {
            const auto ii = static_cast<std::size_t>(i);
            for (std::int64_t e = 0; e < K; ++e) {
                const std::int64_t idx = (o * C + i) * K + e;
                acc += double(w->f32()[idx]) * ab->shift[ii];
                w2.f32()[idx] = static_cast<float>(double(w->f32()[idx]) * ab->a[ii]);
            }
        }
        b2.f32()[o] = static_cast<float>(acc);
    }
    const std::string bn_name = bn.name, conv_name = c.name, bn_in = bn.inputs[0], bn_out = bn.outputs[0];
    ptq_set_param(g, ci, 1, conv_name + ".weight", std::move(w2));
    ptq_set_param(g, ci, 2, conv_name + ".bias", std::move(b2));
    g.nodes[ci].inputs[0] = bn_in;
    g.remove_nodes({bi});
    g.value_infos.erase(bn_out);
    g.prune_unused_params();
    ++r.forward;
    r.log.push_back("forward: BatchNormalization '" + bn_name + "' folded into the Conv '" + conv_name +
                    "' after it");
    return true;
}

// Rewrites BN `bi` as Mul + Add with [C, 1, ..] constants; the Add produces the BN's output name.
bool to_affine(graph& g, std::size_t bi, bn_fold_report& r, std::string& why) {
    const node bn = g.nodes[bi];
    auto ab = read_bn(g, bn, why);
    if (!ab) return false;
    const int rank = known_rank(g, bn.inputs[0]);
    if (rank < 2) {
        why = "the rank of its input is unknown";
        return false;
    }
    shape_t pshape(static_cast<std::size_t>(rank - 1), 1);
    pshape[0] = ab->channels;
    tensor s = tensor::empty(pshape), t = tensor::empty(pshape);
    for (std::int64_t k = 0; k < ab->channels; ++k) {
        s.f32()[k] = static_cast<float>(ab->a[static_cast<std::size_t>(k)]);
        t.f32()[k] = static_cast<float>(ab->shift[static_cast<std::size_t>(k)]);
    }
    const std::string sname = g.add_param(bn.name + ".affine_scale", std::move(s));
    const std::string tname = g.add_param(bn.name + ".affine_shift", std::move(t));
    const std::string mid = g.unique_name(bn.outputs[0] + ".scaled");
    node mul;
    mul.op_type = "Mul";
    mul.inputs = {bn.inputs[0], sname};
    mul.outputs = {mid};
    node add;
    add.op_type = "Add";
    add.inputs = {mid, tname};
    add.outputs = {bn.outputs[0]};
    g.remove_nodes({bi});
    mul.name = g.unique_name(bn.name + ".mul");
    add.name = g.unique_name(bn.name + ".add");
    g.insert_node(bi, std::move(mul));
    g.insert_node(bi + 1, std::move(add));
    g.prune_unused_params();
    r.stats[bn.outputs[0]] = stats_of(*ab);
    ++r.to_affine;
    r.log.push_back("affine: BatchNormalization '" + bn.name + "' rewritten as Mul + Add (output '" + bn.outputs[0] +
                    "')");
    return true;
}

}  // namespace

bn_fold_report fold_batch_norms(graph& g) {
    bn_fold_report r;
    {
        // Ranks decide MatMul folds and the affine constants' shapes; a model the inference cannot finish still folds.
        shape_inference_options so;
        so.strict = false;
        so.tolerate_errors = true;
        try {
            g.infer_shapes(so);
        } catch (const error&) {
        }
    }
    // 1. Backward folds have priority (AIMET's order). Re-match after each fold: indices shift.
    std::vector<std::string> refused;  // BN node names whose backward fold was refused, with reason logged once
    for (bool did = true; did;) {
        did = false;
        for (const auto& m : match_chains(g, {"Conv|ConvTranspose|Gemm|MatMul", "BatchNormalization"})) {
            const std::string bn_name = g.nodes[m[1]].name;
            if (std::find(refused.begin(), refused.end(), bn_name) != refused.end()) continue;
            std::string why;
            if (fold_backward(g, m[0], m[1], r, why)) {
                did = true;
                break;
            }
            refused.push_back(bn_name);
            r.log.push_back("backward fold of '" + bn_name + "' into '" + g.nodes[m[0]].name + "' refused: " + why);
        }
    }
    // 2. Forward folds into the single Conv reading the BN.
    for (bool did = true; did;) {
        did = false;
        for (std::size_t bi = 0; bi < g.nodes.size() && !did; ++bi) {
            const node& bn = g.nodes[bi];
            if (bn.op_type != "BatchNormalization" || !bn.domain.empty() || bn.outputs.empty()) continue;
            const auto readers = g.consumers(bn.outputs[0]);
            if (readers.size() != 1 || g.is_output(bn.outputs[0])) continue;
            const node& c = g.nodes[readers[0]];
            if (c.op_type != "Conv" || c.inputs.empty() || c.inputs[0] != bn.outputs[0]) continue;
            // The weight slot must not read the BN output too.
            bool other = false;
            for (std::size_t k = 1; k < c.inputs.size(); ++k) other = other || c.inputs[k] == bn.outputs[0];
            if (other) continue;
            std::string why;
            const std::string bn_name = bn.name, conv_name = c.name;
            if (fold_forward(g, bi, readers[0], r, why)) {
                did = true;
            } else if (std::find(refused.begin(), refused.end(), bn_name + "#fwd") == refused.end()) {
                refused.push_back(bn_name + "#fwd");
                r.log.push_back("forward fold of '" + bn_name + "' into '" + conv_name + "' refused: " + why);
            }
        }
    }
    // 3. What is left becomes an affine op.
    for (std::size_t bi = 0; bi < g.nodes.size(); ++bi) {
        if (g.nodes[bi].op_type != "BatchNormalization" || !g.nodes[bi].domain.empty()) continue;
        std::string why;
        const std::string bn_name = g.nodes[bi].name;
        if (to_affine(g, bi, r, why))
            ++bi;  // skip the Add just inserted after the Mul
        else
            r.log.push_back("BatchNormalization '" + bn_name + "' left unchanged: " + why);
    }
    if (r.backward + r.forward + r.to_affine > 0) g.topological_sort();
    return r;
}

}  // namespace quantsim
