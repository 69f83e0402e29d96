// Element types of tensors and of integer quantized storage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include <quantsim/core/error.hpp>

namespace quantsim {

/// Element type. int4/uint4 are stored one value per byte (low bits, sign-extended for int4).
enum class dtype : std::uint8_t {
    float32,
    float64,
    int64,
    int32,
    int16,
    uint16,
    int8,
    uint8,
    int4,
    uint4,
    boolean,
};

/// Bytes one element occupies in memory.
constexpr std::size_t size_of(dtype t) noexcept {
    switch (t) {
        case dtype::float64:
        case dtype::int64: return 8;
        case dtype::float32:
        case dtype::int32: return 4;
        case dtype::int16:
        case dtype::uint16: return 2;
        default: return 1;
    }
}

constexpr std::string_view name_of(dtype t) noexcept {
    switch (t) {
        case dtype::float32: return "float32";
        case dtype::float64: return "float64";
        case dtype::int64: return "int64";
        case dtype::int32: return "int32";
        case dtype::int16: return "int16";
        case dtype::uint16: return "uint16";
        case dtype::int8: return "int8";
        case dtype::uint8: return "uint8";
        case dtype::int4: return "int4";
        case dtype::uint4: return "uint4";
        case dtype::boolean: return "bool";
    }
    return "unknown";
}

constexpr bool is_floating(dtype t) noexcept { return t == dtype::float32 || t == dtype::float64; }
constexpr bool is_integer(dtype t) noexcept { return !is_floating(t) && t != dtype::boolean; }

/// The dtype that stores C++ type T (int4/uint4 have no C++ type of their own: they use int8/uint8).
template <class T>
inline constexpr bool has_dtype_v = false;
template <class T>
inline constexpr dtype dtype_of_v = dtype::float32;
#define QUANTSIM_DTYPE_OF(T, D)                 \
    template <>                                 \
    inline constexpr bool has_dtype_v<T> = true; \
    template <>                                 \
    inline constexpr dtype dtype_of_v<T> = D;
QUANTSIM_DTYPE_OF(float, dtype::float32)
QUANTSIM_DTYPE_OF(double, dtype::float64)
QUANTSIM_DTYPE_OF(std::int64_t, dtype::int64)
QUANTSIM_DTYPE_OF(std::int32_t, dtype::int32)
QUANTSIM_DTYPE_OF(std::int16_t, dtype::int16)
QUANTSIM_DTYPE_OF(std::uint16_t, dtype::uint16)
QUANTSIM_DTYPE_OF(std::int8_t, dtype::int8)
QUANTSIM_DTYPE_OF(std::uint8_t, dtype::uint8)
QUANTSIM_DTYPE_OF(bool, dtype::boolean)
#undef QUANTSIM_DTYPE_OF

/// True when C++ type T is the in-memory type of dtype t (int8 also stores int4, uint8 stores uint4).
template <class T>
constexpr bool stores(dtype t) noexcept {
    if constexpr (!has_dtype_v<T>) {
        return false;
    } else {
        if (dtype_of_v<T> == t) return true;
        if constexpr (std::is_same_v<T, std::int8_t>) return t == dtype::int4;
        if constexpr (std::is_same_v<T, std::uint8_t>) return t == dtype::uint4;
        return false;
    }
}

}  // namespace quantsim
