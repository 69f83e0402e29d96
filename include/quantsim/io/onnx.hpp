// ONNX import and export. Import normalizes every opset difference into the canonical op forms of docs/ir.md;
// export writes the IR back at a chosen opset (13 to 21). Protobuf stays private to the library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include <quantsim/ir/graph.hpp>

namespace quantsim {

class op_registry;

struct onnx_load_options {
    const op_registry* registry = nullptr;  ///< nullptr = op_registry::global()
    /// Every op must have a schema in the registry (else unsupported_error naming the node and the op), and its
    /// arity must fit. Off: any op type is accepted (e.g. to inspect a model quantsim cannot run).
    bool check_ops = true;
    /// Run shape inference after import (fills value_infos and output shapes; strict when check_ops is on).
    bool infer_shapes = true;
    /// Folder that external-data locations are relative to. load_onnx() uses the model's folder when this is
    /// empty; load_onnx_from_memory() refuses external data when it is empty.
    std::filesystem::path external_data_dir;
    /// Largest model file accepted, in bytes (protobuf cannot parse more than 2 GiB; bigger weights must be
    /// external data).
    std::size_t max_model_bytes = (std::size_t{1} << 31) - 1;
};

/// Loads an ONNX model file. Errors name the file, then the node/tensor and the problem: io_error (cannot read),
/// parse_error (not a model, truncated, sizes that do not add up, bad external data), unsupported_error (op,
/// attribute, data type or opset quantsim does not handle), graph_error (dangling inputs, cycles, duplicates),
/// resource_error (sizes above the limits).
graph load_onnx(const std::filesystem::path& path, const onnx_load_options& options = {});
/// Loads a model from serialized bytes; `what` names the source in error messages.
graph load_onnx_from_memory(std::span<const std::byte> bytes, const onnx_load_options& options = {},
                            const std::string& what = "<memory>");
graph load_onnx_from_memory(std::string_view bytes, const onnx_load_options& options = {},
                            const std::string& what = "<memory>");

struct onnx_save_options {
    /// Default-domain opset to write, 13 to 21. 0: the graph's own opset clamped to [13, 21], raised to 21 when
    /// a parameter is int4/uint4.
    std::int64_t opset = 0;
    bool write_value_info = true;  ///< write known intermediate shapes (value_info)
    std::string producer_name = "quantsim";
    std::string doc_string;
};

/// Writes `g` as an ONNX model, atomically (temporary file in the same folder, then rename: a failure leaves an
/// existing file intact). Parameters become initializers (raw little-endian data; int4/uint4 packed two per byte,
/// opset 21 required). unsupported_error when something cannot be expressed at the chosen opset.
void save_onnx(const graph& g, const std::filesystem::path& path, const onnx_save_options& options = {});
/// The serialized model.
std::string save_onnx_to_string(const graph& g, const onnx_save_options& options = {});

}  // namespace quantsim
