// AIMET encodings files: reading and writing versions 0.6.1, 1.0.0 and 2.0.0, keyed by ONNX tensor names.
// docs/formats.md explains each version and the offset / zero-point conventions.
#pragma once

#include <filesystem>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <quantsim/quant/encoding.hpp>

namespace quantsim {

enum class encodings_version { v0_6_1, v1_0_0, v2_0_0 };

std::string_view to_string(encodings_version v) noexcept;
/// "0.6.1", "1.0.0" or "2.0.0"; throws invalid_argument otherwise.
encodings_version parse_encodings_version(std::string_view text);

/// The encoding(s) of one tensor. `float_bitwidth` marks a floating-point quantizer (AIMET's {"dtype": "float",
/// "bitwidth": 16}) and then `params` is unused.
struct tensor_encoding {
    std::string name;
    quant_params params;
    std::optional<int> float_bitwidth;
    /// Per-channel/per-block files of versions 0.6.1 and 1.0.0 do not record the axis: after reading them the
    /// channel axis is unknown (-1) and QuantSim takes it from the op that uses the parameter.
    bool axis_known = true;
    /// Per-block encodings: blocks per channel (params.size() = channels * blocks_per_channel). Needed to nest
    /// 2.0.0's y_scale; 0 when not per-block.
    std::int64_t blocks_per_channel = 0;
};

/// Summary of how the encodings were made (AIMET's quantizer_args); optional in every version.
struct quantizer_args {
    int activation_bitwidth = 8;
    int param_bitwidth = 8;
    bool is_symmetric = true;  ///< parameters
    bool per_channel_quantization = false;
    std::string quant_scheme = "post_training_tf";
    std::string dtype = "int";
};

struct encodings_file {
    std::vector<tensor_encoding> activations;
    std::vector<tensor_encoding> params;
    std::vector<std::string> excluded_layers;
    std::optional<quantizer_args> args;

    const tensor_encoding* find(std::string_view name) const;
};

/// Serializes in the given version. Encodings a version cannot express (per-block in 0.6.1) are unsupported_error
/// naming the tensor.
std::string write_encodings(const encodings_file& file, encodings_version version);
/// Writes atomically (temporary file in the same folder, then rename).
void save_encodings(const encodings_file& file, const std::filesystem::path& path, encodings_version version);

/// Parses any of the three versions (from the "version" key, or from the structure when it is missing). Malformed
/// content is config_error naming the source and the JSON path.
encodings_file read_encodings(std::string_view json_text, std::string_view source = "<encodings>");
encodings_file load_encodings(const std::filesystem::path& path);

}  // namespace quantsim
