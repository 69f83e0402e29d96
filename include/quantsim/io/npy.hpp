// NumPy .npy files: reading and writing tensors (float32, float64, int64, int32, int16, uint16, int8, uint8, bool).
// C order only. Format versions 1.0, 2.0 and 3.0. Every size read from a file is checked before allocating.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>

namespace quantsim {

struct npy_load_options {
    /// Convert float64 data to float32 (the executor's type). Off: a float64 file gives a float64 tensor.
    bool float64_to_float32 = false;
};

/// Reads a .npy file. Errors: io_error (cannot open), parse_error naming the file and the problem (bad magic,
/// header past the end of the file, unparsable header dict, data size not matching the shape), unsupported_error
/// (a dtype quantsim has no type for, Fortran order), resource_error (a shape whose size overflows or exceeds
/// max_tensor_bytes()).
tensor load_npy(const std::filesystem::path& path, const npy_load_options& options = {});
/// Same from memory; `what` names the source in error messages.
tensor load_npy_from_memory(std::span<const std::byte> bytes, const npy_load_options& options = {},
                            const std::string& what = "<memory>");

/// Writes a tensor as .npy (format 1.0, or 2.0 when the header needs it), atomically. int4/uint4 tensors are
/// written as int8/uint8 (their in-memory storage).
void save_npy(const std::filesystem::path& path, const tensor& t);
/// The .npy bytes of a tensor.
std::vector<std::byte> to_npy_bytes(const tensor& t);

}  // namespace quantsim
