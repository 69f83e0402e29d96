#include <quantsim/ir/batch_independence.hpp>

#include <algorithm>
#include <optional>
#include <set>
#include <string_view>

namespace quantsim {

namespace {

bool one_of(std::string_view t, std::initializer_list<std::string_view> names) {
    return std::find(names.begin(), names.end(), t) != names.end();
}

// Elementwise ops (numpy broadcasting): per-sample when every sample-dependent operand has the output's rank.
bool is_elementwise(std::string_view t) {
    return one_of(t, {"Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Sum", "Mean", "Where", "Equal", "Less",
                      "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Not", "Mod", "PRelu",
                      "BitShift", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Exp", "Log",
                      "Sqrt", "Neg", "Abs", "Erf", "LeakyRelu", "Elu", "Selu", "Celu", "Softplus", "Softsign",
                      "Floor", "Ceil", "Round", "Reciprocal", "Cast", "CastLike", "Identity", "Dropout", "Gelu",
                      "Sign", "IsNaN", "IsInf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh",
                      "Mish", "ThresholdedRelu", "Shrink", "QuantizeLinear", "DequantizeLinear"});
}

// Ops that read one sample-dependent operand (input 0) of layout [N, C, ...] and compute each sample on its own;
// their other inputs (weights, scales, ROI, sizes) must not depend on the samples.
bool is_per_sample_spatial(std::string_view t) {
    return one_of(t, {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool",
                      "GlobalMaxPool", "GlobalLpPool", "BatchNormalization", "InstanceNormalization", "LRN",
                      "DepthToSpace", "SpaceToDepth", "Resize", "Upsample"});
}

bool is_reduce(std::string_view t) {
    return one_of(t, {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                      "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"});
}

class analysis {
public:
    explicit analysis(const graph& g) : g_(g) {}

    batch_independence run() {
        batch_independence r;
        if (g_.inputs.empty()) return fail(r, "the model has no inputs");
        for (const auto& in : g_.inputs) {
            const std::string_view d = in.dim_param(0);
            if (!in.shape_known || in.shape.empty() || in.shape[0] >= 0 || d.empty())
                return fail(r, "model input '" + in.name + "' has no symbolic batch dimension (" + to_string(in) + ")");
            if (batch_.empty()) batch_ = std::string(d);
            if (d != batch_)
                return fail(r, "model inputs have different first dimensions ('" + batch_ + "' and '" + std::string(d) +
                                   "')");
            sample_.insert(in.name);
        }
        r.batch_dim = batch_;
        for (const node& n : g_.nodes) {
            bool reads_samples = false;
            for (const auto& in : n.inputs) reads_samples = reads_samples || sampled(in);
            // Shape and Size read only the shape: their results depend on the batch size, never on sample data
            // (micro-batches see consistent sizes). Nodes not reading sample data are the same for every sample.
            if (!reads_samples || one_of(n.op_type, {"Shape", "Size"})) continue;
            std::string why;
            if (!op_is_per_sample(n, why)) return fail(r, n.describe() + ": " + why);
            for (const auto& o : n.outputs) {
                if (o.empty()) continue;
                const value_info* vi = g_.info(o);
                if (!vi || !vi->shape_known || vi->shape.empty() || vi->dim_param(0) != batch_)
                    return fail(r, n.describe() + ": output '" + o + "' does not keep the batch '" + batch_ +
                                       "' as its first dimension (" + (vi ? to_string(*vi) : std::string("unknown")) +
                                       ")");
                sample_.insert(o);
            }
        }
        r.independent = true;
        return r;
    }

private:
    static batch_independence fail(batch_independence& r, std::string why) {
        r.independent = false;
        r.reason = std::move(why);
        return r;
    }

    bool sampled(const std::string& v) const { return !v.empty() && sample_.count(v) > 0; }

    std::optional<std::int64_t> rank(const std::string& v) const {
        const value_info* vi = g_.info(v);
        if (!vi || !vi->shape_known) return std::nullopt;
        return static_cast<std::int64_t>(vi->shape.size());
    }

    // Integer values of a parameter input (axes, pads, ...), or nullopt when it is not a parameter.
    std::optional<std::vector<std::int64_t>> param_ints(const node& n, std::size_t i) const {
        if (i >= n.inputs.size() || n.inputs[i].empty()) return std::nullopt;
        auto it = g_.params.find(n.inputs[i]);
        if (it == g_.params.end()) return std::nullopt;
        const tensor& t = it->second;
        std::vector<std::int64_t> v;
        if (t.type() == dtype::int64)
            for (auto x : t.span<std::int64_t>()) v.push_back(x);
        else if (t.type() == dtype::int32)
            for (auto x : t.span<std::int32_t>()) v.push_back(x);
        else
            return std::nullopt;
        return v;
    }

    // Axes from input `input` (the IR's form; the importer moves older opsets' attributes there) or the attribute
    // `attr`; nullopt when given by neither.
    std::optional<std::vector<std::int64_t>> axes_of(const node& n, const char* attr, std::size_t input) const {
        if (input < n.inputs.size() && !n.inputs[input].empty()) return param_ints(n, input);
        if (n.has_attr(attr)) return n.attr_ints(attr);
        return std::nullopt;
    }

    static bool refuse(std::string& why, std::string text) {
        why = std::move(text);
        return false;
    }

    // The node's `axis` attribute (default def), counted from the front of a rank-r tensor.
    static std::int64_t axis_attr(const node& n, std::int64_t def, std::int64_t r) {
        const std::int64_t a = n.attr_int("axis", def);
        return a < 0 ? a + r : a;
    }

    static bool any_axis_is_zero(const std::vector<std::int64_t>& axes, std::int64_t r) {
        for (auto a : axes)
            if ((a < 0 ? a + r : a) == 0) return true;
        return false;
    }

    // Every operand that is not sample data has rank < out rank or a first dimension of 1 (broadcast over the
    // batch); every sample-data operand has the output's rank (so its axis 0 is the output's axis 0).
    bool broadcast_ok(const node& n, std::int64_t out_rank, std::string& why) const {
        for (const auto& in : n.inputs) {
            if (in.empty()) continue;
            const auto r = rank(in);
            if (!r) {
                why = "the rank of '" + in + "' is unknown";
                return false;
            }
            if (sampled(in)) {
                if (*r != out_rank) {
                    why = "'" + in + "' has rank " + std::to_string(*r) + ", the output " + std::to_string(out_rank);
                    return false;
                }
            } else if (*r == out_rank) {
                const value_info* vi = g_.info(in);
                if (out_rank > 0 && vi->shape[0] != 1) {
                    why = "'" + in + "' spans the batch axis without being sample data";
                    return false;
                }
            }
        }
        return true;
    }

    bool only_input0_sampled(const node& n, std::string& why) const {
        for (std::size_t i = 1; i < n.inputs.size(); ++i)
            if (sampled(n.inputs[i])) {
                why = "input " + std::to_string(i) + " ('" + n.inputs[i] + "') depends on the samples";
                return false;
            }
        if (n.inputs.empty() || !sampled(n.inputs[0])) {
            why = "reads sample data other than through input 0";
            return false;
        }
        return true;
    }

    // only_input0_sampled, and the rank the op's axes refer to is known.
    bool input0_with_rank(const node& n, const std::optional<std::int64_t>& r, std::string& why) const {
        if (!only_input0_sampled(n, why)) return false;
        if (!r) why = "the rank its axes refer to is unknown";
        return r.has_value();
    }

    bool op_is_per_sample(const node& n, std::string& why) const {
        const std::string& t = n.op_type;
        if (!n.domain.empty() && n.domain != "ai.onnx") {
            why = "op of domain '" + n.domain + "' is not known to keep samples apart";
            return false;
        }
        const std::string out0 = n.outputs.empty() ? std::string() : n.outputs[0];
        const auto out_rank = rank(out0);
        const auto in_rank = n.inputs.empty() ? std::nullopt : rank(n.inputs[0]);
        const bool old_softmax = g_.opset < 13;
        if (is_elementwise(t)) {
            if (!out_rank) {
                why = "the output rank is unknown";
                return false;
            }
            if ((t == "QuantizeLinear" || t == "DequantizeLinear") && n.inputs.size() > 1) {
                const value_info* s = g_.info(n.inputs[1]);
                const bool per_axis = s && s->shape_known && !s->shape.empty() &&
                                      std::max<std::int64_t>(s->shape[0], 1) > 1;
                if (per_axis) {
                    std::int64_t a = n.attr_int("axis", 1);
                    if ((a < 0 ? a + *out_rank : a) == 0) {
                        why = "per-axis quantization along the batch axis";
                        return false;
                    }
                }
            }
            return broadcast_ok(n, *out_rank, why);
        }
        if (is_per_sample_spatial(t)) {
            if (!only_input0_sampled(n, why)) return false;
            if ((t == "Resize" || t == "Upsample") && n.attr_string("mode", "nearest") == "tf_crop_and_resize") {
                why = "tf_crop_and_resize mode";
                return false;
            }
            if (t == "BatchNormalization" && n.attr_int("training_mode", 0) != 0) {
                why = "training mode computes statistics over the batch";
                return false;
            }
            return true;
        }
        if (t == "Softmax" || t == "LogSoftmax" || t == "Hardmax" || t == "LayerNormalization") {
            if (!input0_with_rank(n, in_rank, why)) return false;
            const std::int64_t def = (t == "LayerNormalization" || !old_softmax) ? -1 : 1;
            return axis_attr(n, def, *in_rank) > 0 || refuse(why, "normalizes over the batch axis");
        }
        if (is_reduce(t) || t == "ArgMax" || t == "ArgMin") {
            if (!input0_with_rank(n, in_rank, why)) return false;
            std::optional<std::vector<std::int64_t>> axes;
            if (t == "ArgMax" || t == "ArgMin")
                axes = std::vector<std::int64_t>{n.attr_int("axis", 0)};
            else
                axes = axes_of(n, "axes", 1);
            if (!axes || axes->empty() || any_axis_is_zero(*axes, *in_rank)) {
                why = "reduces over the batch axis (or over axes not given as constants)";
                return false;
            }
            return true;
        }
        if (t == "Transpose") {
            if (!only_input0_sampled(n, why)) return false;
            if (!n.has_attr("perm") || n.attr_ints("perm").empty() || n.attr_ints("perm")[0] != 0) {
                why = "moves the batch axis";
                return false;
            }
            return true;
        }
        if (t == "Reshape" || t == "Expand") {
            // The output keeps the batch as dim 0 (checked for every output): with input [N, rest] and output
            // [N, rest'] in row-major order, sample i stays the i-th block.
            return only_input0_sampled(n, why);
        }
        if (t == "Flatten") {
            if (!input0_with_rank(n, in_rank, why)) return false;
            return axis_attr(n, 1, *in_rank) > 0 || refuse(why, "flattens the batch axis");
        }
        if (t == "Squeeze" || t == "Unsqueeze") {
            const auto r = t == "Squeeze" ? in_rank : out_rank;
            if (!input0_with_rank(n, r, why)) return false;
            const auto axes = axes_of(n, "axes", 1);
            if (!axes || any_axis_is_zero(*axes, *r)) {
                why = "axes include the batch axis or are not constants";
                return false;
            }
            return true;
        }
        if (t == "Concat" || t == "Split") {
            if (!in_rank) {
                why = "unknown rank";
                return false;
            }
            if (t == "Concat") {
                for (const auto& in : n.inputs)
                    if (!in.empty() && !sampled(in)) {
                        why = "joins sample data with '" + in + "'";
                        return false;
                    }
            } else if (!only_input0_sampled(n, why)) {
                return false;
            }
            return axis_attr(n, 0, *in_rank) != 0 || refuse(why, "along the batch axis");
        }
        if (t == "Slice") {
            if (!input0_with_rank(n, in_rank, why)) return false;
            const auto axes = param_ints(n, 3);
            if (!axes || any_axis_is_zero(*axes, *in_rank)) {
                why = "slices the batch axis (or its axes are not constants)";
                return false;
            }
            return true;
        }
        if (t == "Gather") {
            if (!input0_with_rank(n, in_rank, why)) return false;
            return axis_attr(n, 0, *in_rank) != 0 || refuse(why, "gathers along the batch axis");
        }
        if (t == "Pad") {
            if (!input0_with_rank(n, in_rank, why)) return false;
            const auto pads = n.has_attr("pads") ? std::optional(n.attr_ints("pads")) : param_ints(n, 1);
            const bool axes_given = n.inputs.size() > 3 && !n.inputs[3].empty();
            if (!pads || axes_given || static_cast<std::int64_t>(pads->size()) != 2 * *in_rank || (*pads)[0] != 0 ||
                (*pads)[static_cast<std::size_t>(*in_rank)] != 0) {
                why = "pads the batch axis (or its pads are not constants)";
                return false;
            }
            return true;
        }
        if (t == "MatMul") {
            const auto ra = rank(n.inputs[0]), rb = rank(n.inputs[1]);
            if (!ra || !rb) {
                why = "unknown rank";
                return false;
            }
            const bool a = sampled(n.inputs[0]), b = sampled(n.inputs[1]);
            if ((a && !b && *ra >= 2 && *rb <= 2) || (a && b && *ra == *rb && *ra >= 3) || (!a && b && *ra <= 2 && *rb >= 3))
                return true;
            why = "the operands' ranks let the product mix samples";
            return false;
        }
        if (t == "Gemm") {
            if (!only_input0_sampled(n, why)) return false;
            if (n.attr_int("transA", 0) != 0) {
                why = "transA moves the batch axis";
                return false;
            }
            if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
                const value_info* c = g_.info(n.inputs[2]);
                if (!c || !c->shape_known || (c->shape.size() == 2 && c->shape[0] != 1)) {
                    why = "C spans the batch axis";
                    return false;
                }
            }
            return true;
        }
        why = "op '" + t + "' is not known to keep samples apart";
        return false;
    }

    const graph& g_;
    std::string batch_;
    std::set<std::string> sample_;  ///< values that depend on the inputs' sample data
};

}  // namespace

batch_independence samples_are_independent(const graph& g) { return analysis(g).run(); }

}  // namespace quantsim
