// Parser and resolver for AIMET-format quantsim configurations.
#include <quantsim/sim/config.hpp>

#include <quantsim/io/file.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <quantsim/core/error.hpp>

namespace quantsim {
namespace {

using json = nlohmann::json;

// The ONNX operator set (ai.onnx, up to opset 21) and the ONNX Runtime contrib ops that quantized models use.
constexpr std::array onnx_ops = {
    "Abs", "Acos", "Acosh", "Add", "AffineGrid", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
    "AveragePool", "BatchNormalization", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr",
    "BitwiseXor", "BlackmanWindow", "Cast", "CastLike", "Ceil", "Celu", "CenterCropPad", "Clip", "Col2Im",
    "Compress", "Concat", "ConcatFromSequence", "Constant", "ConstantOfShape", "Conv", "ConvInteger",
    "ConvTranspose", "Cos", "Cosh", "CumSum", "DFT", "DeformConv", "DepthToSpace", "DequantizeLinear", "Det", "Div",
    "Dropout", "DynamicQuantizeLinear", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten",
    "Floor", "GRU", "Gather", "GatherElements", "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalLpPool",
    "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample", "GroupNormalization", "HammingWindow",
    "HannWindow", "HardSigmoid", "HardSwish", "Hardmax", "Identity", "If", "ImageDecoder", "InstanceNormalization",
    "IsInf", "IsNaN", "LRN", "LSTM", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log",
    "LogSoftmax", "Loop", "LpNormalization", "LpPool", "MatMul", "MatMulInteger", "Max", "MaxPool", "MaxRoiPool",
    "MaxUnpool", "Mean", "MeanVarianceNormalization", "MelWeightMatrix", "Min", "Mish", "Mod", "Mul",
    "Multinomial", "Neg", "NegativeLogLikelihoodLoss", "NonMaxSuppression", "NonZero", "Not", "OneHot", "Optional",
    "OptionalGetElement", "OptionalHasElement", "Or", "PRelu", "Pad", "Pow", "QLinearConv", "QLinearMatMul",
    "QuantizeLinear", "RNN", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range",
    "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
    "ReduceProd", "ReduceSum", "ReduceSumSquare", "RegexFullMatch", "Relu", "Reshape", "Resize", "ReverseSequence",
    "RoiAlign", "Round", "STFT", "Scan", "Scatter", "ScatterElements", "ScatterND", "Selu", "SequenceAt",
    "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength", "SequenceMap",
    "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax", "SoftmaxCrossEntropyLoss",
    "Softplus", "Softsign", "SpaceToDepth", "Split", "SplitToSequence", "Sqrt", "Squeeze", "StringConcat",
    "StringNormalizer", "StringSplit", "Sub", "Sum", "Tan", "Tanh", "TfIdfVectorizer", "ThresholdedRelu", "Tile",
    "TopK", "Transpose", "Trilu", "Unique", "Unsqueeze", "Upsample", "Where", "Xor",
    // ONNX Runtime com.microsoft ops found in quantized and transformer models
    "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearGlobalAveragePool", "QLinearConcat", "QGemm", "Attention",
    "MultiHeadAttention", "FastGelu", "BiasGelu", "SkipLayerNormalization", "QuickGelu", "FusedConv", "FusedGemm",
};

// AIMET's shipped configs also name framework ops; the first column maps to ONNX where there is an equivalent.
constexpr std::array<std::pair<const char*, const char*>, 10> aliases = {{
    {"LayerNorm", "LayerNormalization"},
    {"GroupNorm", "GroupNormalization"},
    {"InstanceNorm", "InstanceNormalization"},
    {"BatchPermutation", "BatchPermutation"},
    {"ChannelShuffle", "ChannelShuffle"},
    {"CropAndResize", "CropAndResize"},
    {"SpaceToBatch", "SpaceToBatch"},
    {"BatchToSpace", "BatchToSpace"},
    {"DepthwiseConv", "Conv"},
    {"Upsample", "Upsample"},
}};

std::string ptr(const std::string& parent, std::string_view key) { return parent + "/" + std::string(key); }

[[noreturn]] void fail(std::string_view source, const std::string& path, const std::string& what) {
    QUANTSIM_THROW(config_error, source, ": ", path.empty() ? "/" : path, ": ", what);
}

struct reader {
    std::string_view source;

    const json& object(const json& j, const std::string& path) const {
        if (!j.is_object()) fail(source, path, std::string("expected an object, got ") + j.type_name());
        return j;
    }
    // Rejects keys outside `allowed` (AIMET's schema sets additionalProperties: false everywhere).
    void only_keys(const json& j, const std::string& path, std::initializer_list<std::string_view> allowed) const {
        for (auto it = j.begin(); it != j.end(); ++it) {
            if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
                std::string list;
                for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
                fail(source, ptr(path, it.key()), "unknown key (allowed here: " + list + ")");
            }
        }
    }
    // AIMET writes booleans as the strings "True"/"False"; real JSON booleans are accepted too.
    bool boolean(const json& j, const std::string& path) const {
        if (j.is_boolean()) return j.get<bool>();
        if (j.is_string()) {
            const auto s = j.get<std::string>();
            if (s == "True" || s == "true") return true;
            if (s == "False" || s == "false") return false;
            fail(source, path, "expected \"True\" or \"False\", got \"" + s + "\"");
        }
        fail(source, path, std::string("expected \"True\" or \"False\", got ") + j.type_name());
    }
    double number(const json& j, const std::string& path) const {
        if (!j.is_number()) fail(source, path, std::string("expected a number, got ") + j.type_name());
        const double v = j.get<double>();
        if (!std::isfinite(v)) fail(source, path, "expected a finite number");
        return v;
    }
    std::string string(const json& j, const std::string& path) const {
        if (!j.is_string()) fail(source, path, std::string("expected a string, got ") + j.type_name());
        return j.get<std::string>();
    }
    const json& array(const json& j, const std::string& path) const {
        if (!j.is_array()) fail(source, path, std::string("expected an array, got ") + j.type_name());
        return j;
    }
    std::string op_type(const std::string& name, const std::string& path) const {
        if (!is_known_op_type(name)) fail(source, path, "unknown op type '" + name + "'");
        return normalize_op_type(name);
    }

    param_rule param(const json& j, const std::string& path) const {
        object(j, path);
        only_keys(j, path, {"is_quantized", "is_symmetric"});
        param_rule r;
        if (j.contains("is_quantized")) r.is_quantized = boolean(j["is_quantized"], ptr(path, "is_quantized"));
        if (j.contains("is_symmetric")) r.is_symmetric = boolean(j["is_symmetric"], ptr(path, "is_symmetric"));
        return r;
    }

    std::map<std::string, param_rule, std::less<>> params(const json& j, const std::string& path) const {
        object(j, path);
        std::map<std::string, param_rule, std::less<>> out;
        for (auto it = j.begin(); it != j.end(); ++it) {
            if (it.key().empty()) fail(source, path, "empty parameter name");
            out[it.key()] = param(it.value(), ptr(path, it.key()));
        }
        return out;
    }

    int bitwidth(const json& j, const std::string& path) const {
        if (!j.is_number_integer()) fail(source, path, std::string("expected an integer, got ") + j.type_name());
        const auto v = j.get<long long>();
        if (!(v == 32 || (v >= 2 && v <= 16)))
            fail(source, path, "bit width " + std::to_string(v) + " is not 2..16 or 32");
        return static_cast<int>(v);
    }

    std::string dtype_name(const json& j, const std::string& path) const {
        auto s = string(j, path);
        if (s != "int" && s != "float") fail(source, path, "dtype must be \"int\" or \"float\", got \"" + s + "\"");
        return s;
    }

    std::vector<kernel_support> kernels(const json& j, const std::string& path) const {
        array(j, path);
        if (j.empty()) fail(source, path, "supported_kernels needs at least one entry");
        std::vector<kernel_support> out;
        for (std::size_t i = 0; i < j.size(); ++i) {
            const std::string p = ptr(path, std::to_string(i));
            object(j[i], p);
            only_keys(j[i], p, {"activation", "param"});
            if (!j[i].contains("activation")) fail(source, p, "missing required key 'activation'");
            kernel_support k;
            const auto& a = object(j[i]["activation"], ptr(p, "activation"));
            only_keys(a, ptr(p, "activation"), {"bitwidth", "dtype"});
            if (!a.contains("bitwidth") || !a.contains("dtype"))
                fail(source, ptr(p, "activation"), "needs 'bitwidth' and 'dtype'");
            k.activation_bitwidth = bitwidth(a["bitwidth"], ptr(ptr(p, "activation"), "bitwidth"));
            k.activation_dtype = dtype_name(a["dtype"], ptr(ptr(p, "activation"), "dtype"));
            if (j[i].contains("param")) {
                const auto& q = object(j[i]["param"], ptr(p, "param"));
                only_keys(q, ptr(p, "param"), {"bitwidth", "dtype"});
                if (!q.contains("bitwidth") || !q.contains("dtype"))
                    fail(source, ptr(p, "param"), "needs 'bitwidth' and 'dtype'");
                k.param_bitwidth = bitwidth(q["bitwidth"], ptr(ptr(p, "param"), "bitwidth"));
                k.param_dtype = dtype_name(q["dtype"], ptr(ptr(p, "param"), "dtype"));
            }
            out.push_back(k);
        }
        return out;
    }

    op_rule op(const json& j, const std::string& path, bool is_defaults) const {
        object(j, path);
        if (is_defaults)
            only_keys(j, path, {"is_input_quantized", "is_output_quantized", "is_symmetric"});
        else
            only_keys(j, path,
                      {"is_input_quantized", "is_output_quantized", "is_symmetric", "per_channel_quantization",
                       "params", "supported_kernels", "encoding_constraints"});
        op_rule r;
        auto flag = [&](const char* key, std::optional<bool>& dst) {
            if (j.contains(key)) dst = boolean(j[key], ptr(path, key));
        };
        flag("is_input_quantized", r.is_input_quantized);
        flag("is_output_quantized", r.is_output_quantized);
        flag("is_symmetric", r.is_symmetric);
        flag("per_channel_quantization", r.per_channel_quantization);
        if (j.contains("params")) r.params = params(j["params"], ptr(path, "params"));
        if (j.contains("supported_kernels")) r.supported_kernels = kernels(j["supported_kernels"], ptr(path, "supported_kernels"));
        if (j.contains("encoding_constraints")) {
            const std::string p = ptr(path, "encoding_constraints");
            const auto& c = object(j["encoding_constraints"], p);
            only_keys(c, p, {"min", "max"});
            if (!c.contains("min") || !c.contains("max")) fail(source, p, "needs both 'min' and 'max'");
            const double lo = number(c["min"], ptr(p, "min"));
            const double hi = number(c["max"], ptr(p, "max"));
            if (!(lo < hi)) fail(source, p, "min must be below max");
            r.encoding_constraints = std::make_pair(lo, hi);
        }
        return r;
    }
};

std::string bool_str(bool b) { return b ? "True" : "False"; }

json op_to_json(const op_rule& r) {
    json j = json::object();
    if (r.is_input_quantized) j["is_input_quantized"] = bool_str(*r.is_input_quantized);
    if (r.is_output_quantized) j["is_output_quantized"] = bool_str(*r.is_output_quantized);
    if (r.is_symmetric) j["is_symmetric"] = bool_str(*r.is_symmetric);
    if (r.per_channel_quantization) j["per_channel_quantization"] = bool_str(*r.per_channel_quantization);
    if (!r.params.empty()) {
        json p = json::object();
        for (const auto& [k, v] : r.params) {
            json q = json::object();
            if (v.is_quantized) q["is_quantized"] = bool_str(*v.is_quantized);
            if (v.is_symmetric) q["is_symmetric"] = bool_str(*v.is_symmetric);
            p[k] = q;
        }
        j["params"] = p;
    }
    if (!r.supported_kernels.empty()) {
        json a = json::array();
        for (const auto& k : r.supported_kernels) {
            json e;
            e["activation"] = {{"bitwidth", k.activation_bitwidth}, {"dtype", k.activation_dtype}};
            if (k.param_bitwidth) e["param"] = {{"bitwidth", *k.param_bitwidth}, {"dtype", *k.param_dtype}};
            a.push_back(e);
        }
        j["supported_kernels"] = a;
    }
    if (r.encoding_constraints)
        j["encoding_constraints"] = {{"min", r.encoding_constraints->first}, {"max", r.encoding_constraints->second}};
    return j;
}

}  // namespace

namespace detail {
extern const std::pair<std::string_view, std::string_view> builtin_configs[];
extern const int builtin_config_count;
}  // namespace detail

quantsim_config quantsim_config::builtin(std::string_view name) {
    // Short names for the shipped files under configs/.
    std::string_view file = name;
    if (name == "default") file = "default_config";
    if (name == "per_channel") file = "default_config_per_channel";
    if (name == "htp") file = "htp_config";
    for (int i = 0; i < detail::builtin_config_count; ++i)
        if (detail::builtin_configs[i].first == file)
            return parse(detail::builtin_configs[i].second, std::string("builtin:") + std::string(name));
    QUANTSIM_THROW(config_error, "no built-in config named '", name, "' (known: default, per_channel, htp)");
}

quantsim_config quantsim_config::default_config() { return builtin("default"); }

bool is_known_op_type(std::string_view op_type) {
    for (const char* o : onnx_ops)
        if (op_type == o) return true;
    for (const auto& [a, b] : aliases)
        if (op_type == a) return true;
    return false;
}

std::string normalize_op_type(std::string_view op_type) {
    for (const auto& [a, b] : aliases)
        if (op_type == a) return b;
    return std::string(op_type);
}

std::string_view param_kind(std::string_view op_type, std::size_t i) {
    if (op_type == "Conv" || op_type == "ConvTranspose" || op_type == "Gemm" || op_type == "PRelu" ||
        op_type == "LayerNormalization" || op_type == "GroupNormalization" || op_type == "InstanceNormalization") {
        if (i == 1) return "weight";
        if (i == 2) return "bias";
        return "";
    }
    if (op_type == "MatMul") return i == 1 ? "weight" : "";
    if (op_type == "BatchNormalization") {
        switch (i) {
            case 1: return "weight";
            case 2: return "bias";
            case 3: return "running_mean";
            case 4: return "running_var";
            default: return "";
        }
    }
    // Elementwise ops with a constant operand (Add bias, Mul scale): AIMET treats these as "weight"-less constants.
    return "";
}

quantsim_config quantsim_config::parse(std::string_view text, std::string_view source) {
    json root;
    try {
        root = json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
        // Not only parse_error: a number too large for a double ("1e999") is out_of_range (406).
        QUANTSIM_THROW(config_error, source, ": not valid JSON: ", e.what());
    }
    reader rd{source};
    rd.object(root, "");
    rd.only_keys(root, "", {"defaults", "params", "op_type", "supergroups", "model_input", "model_output"});
    for (const char* required : {"defaults", "params", "op_type", "supergroups", "model_input", "model_output"})
        if (!root.contains(required)) fail(source, "", std::string("missing required section '") + required + "'");

    quantsim_config c;
    {
        const json& d = rd.object(root["defaults"], "/defaults");
        rd.only_keys(d, "/defaults",
                     {"ops", "params", "strict_symmetric", "unsigned_symmetric", "per_channel_quantization",
                      "supported_kernels", "hw_version"});
        if (!d.contains("ops") || !d.contains("params")) fail(source, "/defaults", "needs 'ops' and 'params'");
        c.default_ops = rd.op(d["ops"], "/defaults/ops", true);
        c.default_params = rd.param(d["params"], "/defaults/params");
        if (d.contains("strict_symmetric")) c.strict_symmetric = rd.boolean(d["strict_symmetric"], "/defaults/strict_symmetric");
        if (d.contains("unsigned_symmetric"))
            c.unsigned_symmetric = rd.boolean(d["unsigned_symmetric"], "/defaults/unsigned_symmetric");
        if (d.contains("per_channel_quantization"))
            c.per_channel_quantization = rd.boolean(d["per_channel_quantization"], "/defaults/per_channel_quantization");
        if (d.contains("supported_kernels")) c.supported_kernels = rd.kernels(d["supported_kernels"], "/defaults/supported_kernels");
        if (d.contains("hw_version")) c.hw_version = rd.string(d["hw_version"], "/defaults/hw_version");
    }
    c.params = rd.params(root["params"], "/params");
    {
        const json& o = rd.object(root["op_type"], "/op_type");
        for (auto it = o.begin(); it != o.end(); ++it) {
            const std::string p = "/op_type/" + it.key();
            const std::string name = rd.op_type(it.key(), p);
            if (c.op_types.count(name)) fail(source, p, "op type '" + name + "' is configured twice (via an alias)");
            c.op_types[name] = rd.op(it.value(), p, false);
        }
    }
    {
        const json& s = rd.array(root["supergroups"], "/supergroups");
        for (std::size_t i = 0; i < s.size(); ++i) {
            const std::string p = "/supergroups/" + std::to_string(i);
            rd.object(s[i], p);
            rd.only_keys(s[i], p, {"op_list"});
            if (!s[i].contains("op_list")) fail(source, p, "missing required key 'op_list'");
            const json& l = rd.array(s[i]["op_list"], p + "/op_list");
            if (l.size() < 2) fail(source, p + "/op_list", "a supergroup needs at least two ops");
            std::vector<std::string> ops;
            for (std::size_t k = 0; k < l.size(); ++k) {
                const std::string q = p + "/op_list/" + std::to_string(k);
                ops.push_back(rd.op_type(rd.string(l[k], q), q));
            }
            c.supergroups.push_back(std::move(ops));
        }
    }
    {
        const json& m = rd.object(root["model_input"], "/model_input");
        rd.only_keys(m, "/model_input", {"is_input_quantized"});
        if (m.contains("is_input_quantized"))
            c.model_input_quantized = rd.boolean(m["is_input_quantized"], "/model_input/is_input_quantized");
    }
    {
        const json& m = rd.object(root["model_output"], "/model_output");
        rd.only_keys(m, "/model_output", {"is_output_quantized"});
        if (m.contains("is_output_quantized"))
            c.model_output_quantized = rd.boolean(m["is_output_quantized"], "/model_output/is_output_quantized");
    }
    return c;
}

quantsim_config quantsim_config::load(const std::filesystem::path& path) {
    // Configs are a few KiB; the cap keeps a wrong path (a model, a device, /dev/zero) from exhausting memory.
    // read_file_string names the path and tells a missing file from a folder.
    return parse(read_file_string(path, std::size_t{64} << 20), path.string());
}

std::string quantsim_config::to_json() const {
    json root;
    json d;
    d["ops"] = op_to_json(default_ops);
    json dp = json::object();
    if (default_params.is_quantized) dp["is_quantized"] = bool_str(*default_params.is_quantized);
    if (default_params.is_symmetric) dp["is_symmetric"] = bool_str(*default_params.is_symmetric);
    d["params"] = dp;
    d["strict_symmetric"] = bool_str(strict_symmetric);
    d["unsigned_symmetric"] = bool_str(unsigned_symmetric);
    d["per_channel_quantization"] = bool_str(per_channel_quantization);
    if (!hw_version.empty()) d["hw_version"] = hw_version;
    if (!supported_kernels.empty()) {
        op_rule tmp;
        tmp.supported_kernels = supported_kernels;
        d["supported_kernels"] = op_to_json(tmp)["supported_kernels"];
    }
    root["defaults"] = d;
    op_rule with_params;
    with_params.params = params;
    root["params"] = params.empty() ? json::object() : op_to_json(with_params)["params"];
    json ot = json::object();
    for (const auto& [k, v] : op_types) ot[k] = op_to_json(v);
    root["op_type"] = ot;
    json sg = json::array();
    for (const auto& g : supergroups) sg.push_back({{"op_list", g}});
    root["supergroups"] = sg;
    root["model_input"] = json::object();
    if (model_input_quantized) root["model_input"]["is_input_quantized"] = bool_str(*model_input_quantized);
    root["model_output"] = json::object();
    if (model_output_quantized) root["model_output"]["is_output_quantized"] = bool_str(*model_output_quantized);
    return root.dump(4);
}

// ---- resolution: defaults -> params (by kind) -> op_type ------------------------------------------------------

namespace {
const op_rule* find_op(const quantsim_config& c, std::string_view op_type) {
    auto it = c.op_types.find(op_type);
    return it == c.op_types.end() ? nullptr : &it->second;
}
}  // namespace

bool quantsim_config::input_quantized(std::string_view op_type) const {
    if (const auto* r = find_op(*this, op_type); r && r->is_input_quantized) return *r->is_input_quantized;
    return default_ops.is_input_quantized.value_or(false);
}

bool quantsim_config::output_quantized(std::string_view op_type) const {
    if (const auto* r = find_op(*this, op_type); r && r->is_output_quantized) return *r->is_output_quantized;
    return default_ops.is_output_quantized.value_or(false);
}

bool quantsim_config::activation_symmetric(std::string_view op_type) const {
    if (const auto* r = find_op(*this, op_type); r && r->is_symmetric) return *r->is_symmetric;
    return default_ops.is_symmetric.value_or(false);
}

bool quantsim_config::per_channel(std::string_view op_type) const {
    if (const auto* r = find_op(*this, op_type); r && r->per_channel_quantization) return *r->per_channel_quantization;
    return per_channel_quantization;
}

bool quantsim_config::param_quantized(std::string_view op_type, std::string_view kind) const {
    if (const auto* r = find_op(*this, op_type)) {
        if (auto it = r->params.find(kind); it != r->params.end() && it->second.is_quantized)
            return *it->second.is_quantized;
    }
    if (auto it = params.find(kind); it != params.end() && it->second.is_quantized) return *it->second.is_quantized;
    return default_params.is_quantized.value_or(false);
}

bool quantsim_config::param_symmetric(std::string_view op_type, std::string_view kind) const {
    if (const auto* r = find_op(*this, op_type)) {
        if (auto it = r->params.find(kind); it != r->params.end() && it->second.is_symmetric)
            return *it->second.is_symmetric;
    }
    if (auto it = params.find(kind); it != params.end() && it->second.is_symmetric) return *it->second.is_symmetric;
    return default_params.is_symmetric.value_or(true);
}

std::optional<std::pair<double, double>> quantsim_config::output_constraints(std::string_view op_type) const {
    if (const auto* r = find_op(*this, op_type)) return r->encoding_constraints;
    return std::nullopt;
}

}  // namespace quantsim
