// The exception hierarchy for user and input errors. Every error quantsim throws derives from quantsim::error and
// its message starts with "[quantsim.<kind>]" followed by what is wrong and where.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace quantsim {

class error : public std::runtime_error {
public:
    error(std::string_view kind, const std::string& message)
        : std::runtime_error("[quantsim." + std::string(kind) + "] " + message), kind_(kind) {}
    /// Short machine-readable category, e.g. "invalid_argument", "parse".
    const std::string& kind() const noexcept { return kind_; }

private:
    std::string kind_;
};

/// A parameter out of its valid range: bit width, axis, block size, min > max, ...
class invalid_argument : public error {
public:
    explicit invalid_argument(const std::string& m) : error("invalid_argument", m) {}
};
/// Shapes that do not fit together.
class shape_error : public error {
public:
    explicit shape_error(const std::string& m) : error("shape", m) {}
};
/// NaN or Inf where finite numbers are required.
class numeric_error : public error {
public:
    explicit numeric_error(const std::string& m) : error("numeric", m) {}
};
/// A file that cannot be opened, read or written.
class io_error : public error {
public:
    explicit io_error(const std::string& m) : error("io", m) {}
};
/// Malformed content in a file or string: ONNX, JSON, .npy.
class parse_error : public error {
public:
    explicit parse_error(const std::string& m) : error("parse", m) {}
};
/// A configuration (quantsim config JSON, encodings JSON) with unknown keys, wrong types or invalid values.
class config_error : public error {
public:
    explicit config_error(const std::string& m) : error("config", m) {}
};
/// An invalid graph: dangling values, cycles, missing inputs.
class graph_error : public error {
public:
    explicit graph_error(const std::string& m) : error("graph", m) {}
};
/// Something valid that quantsim does not support (an op, an attribute value, a dtype).
class unsupported_error : public error {
public:
    explicit unsupported_error(const std::string& m) : error("unsupported", m) {}
};
/// Calibration that cannot produce an encoding (no data observed, empty set).
class calibration_error : public error {
public:
    explicit calibration_error(const std::string& m) : error("calibration", m) {}
};
/// A size or resource limit exceeded (allocation larger than allowed, dimension product overflow).
class resource_error : public error {
public:
    explicit resource_error(const std::string& m) : error("resource", m) {}
};

namespace detail {
/// Builds a message from any streamable pieces: concat("axis ", 3, " out of range").
template <class... Args>
std::string concat(Args&&... args) {
    std::ostringstream os;
    (os << ... << std::forward<Args>(args));
    return os.str();
}
}  // namespace detail

}  // namespace quantsim

/// Throws ErrorType with a message concatenated from the remaining arguments.
#define QUANTSIM_THROW(ErrorType, ...) throw ErrorType(::quantsim::detail::concat(__VA_ARGS__))
