// Re-throwing a quantsim error with context ("pass 'x': ", "model.onnx: ") while keeping its type, so callers can
// still catch graph_error, parse_error, ... by type.
#pragma once

#include <exception>
#include <new>
#include <string>
#include <string_view>

#include <quantsim/core/error.hpp>

namespace quantsim::detail {

/// The message of a quantsim error without its "[quantsim.<kind>] " prefix.
inline std::string bare_message(const error& e) {
    std::string_view m = e.what();
    const std::string tag = "[quantsim." + e.kind() + "] ";
    if (m.substr(0, tag.size()) == tag) m.remove_prefix(tag.size());
    return std::string(m);
}

/// Must be called inside a catch block: rethrows the current exception with `prefix` in front of its message and
/// the same quantsim error type. std::bad_alloc passes through unchanged; other std::exceptions become graph_error.
[[noreturn]] inline void rethrow_with_prefix(const std::string& prefix) {
    try {
        throw;
    } catch (const invalid_argument& e) {
        throw invalid_argument(prefix + bare_message(e));
    } catch (const shape_error& e) {
        throw shape_error(prefix + bare_message(e));
    } catch (const numeric_error& e) {
        throw numeric_error(prefix + bare_message(e));
    } catch (const io_error& e) {
        throw io_error(prefix + bare_message(e));
    } catch (const parse_error& e) {
        throw parse_error(prefix + bare_message(e));
    } catch (const config_error& e) {
        throw config_error(prefix + bare_message(e));
    } catch (const graph_error& e) {
        throw graph_error(prefix + bare_message(e));
    } catch (const unsupported_error& e) {
        throw unsupported_error(prefix + bare_message(e));
    } catch (const calibration_error& e) {
        throw calibration_error(prefix + bare_message(e));
    } catch (const resource_error& e) {
        throw resource_error(prefix + bare_message(e));
    } catch (const error& e) {
        throw error(e.kind(), prefix + bare_message(e));
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {
        throw graph_error(prefix + "internal error: " + e.what());
    }
}

}  // namespace quantsim::detail
