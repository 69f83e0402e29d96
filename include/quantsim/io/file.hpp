// File helpers shared by every writer and reader: atomic writes (a failure never leaves a half-written file or
// destroys an existing one) and bounded whole-file reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <quantsim/core/error.hpp>

namespace quantsim {

/// Writes `bytes` to `path` atomically: into a temporary file in the same folder, flushed to disk, then renamed
/// over `path`. On any failure the temporary file is removed, an existing `path` is left intact, and io_error is
/// thrown naming the path and the reason.
void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes);
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

/// Writes several files as one unit (e.g. a model and its encodings): every content is written to a temporary file
/// next to its target first, and only when all of them are complete are they renamed over their targets. A failure
/// while writing (full disk, a target that is a directory, a missing folder) leaves every target intact and removes
/// every temporary file. The renames are separate steps: a crash between two of them can leave some targets new.
void write_files_atomic(std::span<const std::pair<std::filesystem::path, std::string>> files);

/// Streaming variant: `writer` writes the content into the stream (binary mode). If it throws, or the stream
/// fails, nothing is replaced and the exception (or an io_error) propagates.
void write_file_atomic(const std::filesystem::path& path, const std::function<void(std::ostream&)>& writer);

/// The machine's physical memory in bytes (0 when it cannot be determined).
std::uint64_t physical_memory_bytes() noexcept;
/// Throws resource_error naming `what` when `bytes` (a size taken from a file, about to be allocated) exceeds the
/// machine's physical memory: such a file would otherwise end in std::bad_alloc or the OOM killer, not a message.
void check_fits_in_memory(std::uint64_t bytes, const std::string& what);

/// Reads a whole file. Files larger than `max_bytes` are a resource_error; a missing or unreadable file an
/// io_error naming the path.
std::vector<std::byte> read_file_bytes(const std::filesystem::path& path, std::size_t max_bytes = std::size_t{1} << 34);
std::string read_file_string(const std::filesystem::path& path, std::size_t max_bytes = std::size_t{1} << 34);

}  // namespace quantsim
