// Private to the ONNX importer and exporter: protobuf includes, data type mapping and opset/IR version tables.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#ifndef ONNX_ML
#define ONNX_ML 1
#endif
#ifndef ONNX_NAMESPACE
#define ONNX_NAMESPACE onnx
#endif
#include <onnx/onnx_pb.h>

#include <quantsim/core/dtype.hpp>

namespace quantsim::detail {

// ONNX TensorProto::DataType numbers. INT4/UINT4 (ONNX 1.16) are newer than Debian's onnx.proto, so the numbers
// are spelled out here.
enum onnx_type : std::int32_t {
    onnx_undefined = 0,
    onnx_float = 1,
    onnx_uint8 = 2,
    onnx_int8 = 3,
    onnx_uint16 = 4,
    onnx_int16 = 5,
    onnx_int32 = 6,
    onnx_int64 = 7,
    onnx_string = 8,
    onnx_bool = 9,
    onnx_float16 = 10,
    onnx_double = 11,
    onnx_uint32 = 12,
    onnx_uint64 = 13,
    onnx_complex64 = 14,
    onnx_complex128 = 15,
    onnx_bfloat16 = 16,
    onnx_float8e4m3fn = 17,
    onnx_float8e4m3fnuz = 18,
    onnx_float8e5m2 = 19,
    onnx_float8e5m2fnuz = 20,
    onnx_uint4 = 21,
    onnx_int4 = 22,
    onnx_float4e2m1 = 23,
};

inline std::optional<dtype> dtype_from_onnx(std::int32_t t) {
    switch (t) {
        case onnx_float: return dtype::float32;
        case onnx_uint8: return dtype::uint8;
        case onnx_int8: return dtype::int8;
        case onnx_uint16: return dtype::uint16;
        case onnx_int16: return dtype::int16;
        case onnx_int32: return dtype::int32;
        case onnx_int64: return dtype::int64;
        case onnx_bool: return dtype::boolean;
        case onnx_double: return dtype::float64;
        case onnx_uint4: return dtype::uint4;
        case onnx_int4: return dtype::int4;
        default: return std::nullopt;
    }
}

inline std::int32_t onnx_from_dtype(dtype t) {
    switch (t) {
        case dtype::float32: return onnx_float;
        case dtype::float64: return onnx_double;
        case dtype::int64: return onnx_int64;
        case dtype::int32: return onnx_int32;
        case dtype::int16: return onnx_int16;
        case dtype::uint16: return onnx_uint16;
        case dtype::int8: return onnx_int8;
        case dtype::uint8: return onnx_uint8;
        case dtype::int4: return onnx_int4;
        case dtype::uint4: return onnx_uint4;
        case dtype::boolean: return onnx_bool;
    }
    return onnx_undefined;
}

inline const char* onnx_type_name(std::int32_t t) {
    switch (t) {
        case onnx_undefined: return "UNDEFINED";
        case onnx_float: return "FLOAT";
        case onnx_uint8: return "UINT8";
        case onnx_int8: return "INT8";
        case onnx_uint16: return "UINT16";
        case onnx_int16: return "INT16";
        case onnx_int32: return "INT32";
        case onnx_int64: return "INT64";
        case onnx_string: return "STRING";
        case onnx_bool: return "BOOL";
        case onnx_float16: return "FLOAT16";
        case onnx_double: return "DOUBLE";
        case onnx_uint32: return "UINT32";
        case onnx_uint64: return "UINT64";
        case onnx_complex64: return "COMPLEX64";
        case onnx_complex128: return "COMPLEX128";
        case onnx_bfloat16: return "BFLOAT16";
        case onnx_float8e4m3fn: return "FLOAT8E4M3FN";
        case onnx_float8e4m3fnuz: return "FLOAT8E4M3FNUZ";
        case onnx_float8e5m2: return "FLOAT8E5M2";
        case onnx_float8e5m2fnuz: return "FLOAT8E5M2FNUZ";
        case onnx_uint4: return "UINT4";
        case onnx_int4: return "INT4";
        case onnx_float4e2m1: return "FLOAT4E2M1";
        default: return "unknown";
    }
}

/// Smallest and largest default-domain opsets quantsim reads and writes.
constexpr std::int64_t min_import_opset = 7;
constexpr std::int64_t max_opset = 21;
constexpr std::int64_t min_export_opset = 13;

/// The IR version the ONNX spec pairs with an opset (onnx/helper.py VERSION_TABLE).
constexpr std::int64_t ir_version_for_opset(std::int64_t opset) {
    if (opset <= 8) return 3;
    if (opset <= 9) return 4;
    if (opset <= 10) return 5;
    if (opset <= 11) return 6;
    if (opset <= 14) return 7;
    if (opset <= 18) return 8;
    if (opset <= 20) return 9;
    return 10;
}

}  // namespace quantsim::detail
