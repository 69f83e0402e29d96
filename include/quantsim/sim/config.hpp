// The quantsim configuration: where quantizers go and how they behave, in AIMET's quantsim-config JSON format
// (sections defaults, params, op_type, supergroups, model_input, model_output). See docs/config.md.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quantsim {

/// Settings of one kind of parameter quantizer ("weight", "bias", ...). Unset fields inherit.
struct param_rule {
    std::optional<bool> is_quantized;
    std::optional<bool> is_symmetric;
};

/// One entry of supported_kernels: the (activation, param) bit widths and dtypes a runtime offers.
struct kernel_support {
    int activation_bitwidth = 8;
    std::string activation_dtype = "int";  ///< "int" or "float"
    std::optional<int> param_bitwidth;
    std::optional<std::string> param_dtype;
};

/// Settings of an op type (or of all ops, in defaults.ops). Unset fields inherit from more general sections.
struct op_rule {
    std::optional<bool> is_input_quantized;
    std::optional<bool> is_output_quantized;
    std::optional<bool> is_symmetric;              ///< activations
    std::optional<bool> per_channel_quantization;  ///< parameters
    std::map<std::string, param_rule, std::less<>> params;
    std::vector<kernel_support> supported_kernels;
    /// Fixed output range, e.g. Sigmoid/Softmax [0, 1].
    std::optional<std::pair<double, double>> encoding_constraints;
};

/// A parsed configuration. Sections apply from general to specific: defaults, params, op_type.
struct quantsim_config {
    op_rule default_ops;         ///< defaults.ops
    param_rule default_params;   ///< defaults.params
    bool strict_symmetric = false;
    bool unsigned_symmetric = false;
    bool per_channel_quantization = false;
    std::vector<kernel_support> supported_kernels;
    std::string hw_version;
    std::map<std::string, param_rule, std::less<>> params;  ///< by parameter kind
    std::map<std::string, op_rule, std::less<>> op_types;   ///< by ONNX op type (AIMET aliases normalized)
    std::vector<std::vector<std::string>> supergroups;      ///< fused chains: no quantizer between members
    std::optional<bool> model_input_quantized;
    std::optional<bool> model_output_quantized;

    /// Parses AIMET-format JSON text. `source` names the file in error messages. Unknown keys, wrong types, unknown
    /// op types and invalid values throw config_error naming the JSON path (e.g. "/op_type/Conv/is_symmetric").
    static quantsim_config parse(std::string_view json_text, std::string_view source = "<config>");
    static quantsim_config load(const std::filesystem::path& path);
    /// The built-in default configuration (the same as configs/default_config.json).
    static quantsim_config default_config();
    /// Looks up a shipped configuration by name: "default", "per_channel", "htp".
    static quantsim_config builtin(std::string_view name);

    /// Serializes back to AIMET-format JSON (booleans as "True"/"False" strings).
    std::string to_json() const;

    // ---- resolved settings -------------------------------------------------------------------------------------
    bool input_quantized(std::string_view op_type) const;
    bool output_quantized(std::string_view op_type) const;
    bool activation_symmetric(std::string_view op_type) const;
    bool per_channel(std::string_view op_type) const;
    bool param_quantized(std::string_view op_type, std::string_view param_kind) const;
    bool param_symmetric(std::string_view op_type, std::string_view param_kind) const;
    std::optional<std::pair<double, double>> output_constraints(std::string_view op_type) const;
};

/// True for op types quantsim accepts in configs: the ONNX operator set plus AIMET's framework aliases.
bool is_known_op_type(std::string_view op_type);
/// Maps AIMET/framework op names to ONNX ones ("LayerNorm" -> "LayerNormalization"); others are returned unchanged.
std::string normalize_op_type(std::string_view op_type);

/// Which parameter kind ("weight", "bias", "running_mean", ...) input `index` of an op is, or "" if it is not one.
std::string_view param_kind(std::string_view op_type, std::size_t input_index);

}  // namespace quantsim
