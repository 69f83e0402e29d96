// The bodies of the libFuzzer targets, shared by the fuzzers (fuzz/fuzz_*.cpp, clang) and by the corpus replay
// test (tests/io/fuzz_replay_test.cpp, part of `make test`), so that every input that ever crashed a loader stays
// fixed in the ordinary build.
//
// Contract checked for every input: a loader either returns or throws a quantsim::error subclass. Anything else is
// a finding: a crash or sanitizer report, a std::exception that is not a quantsim::error, a quantsim error that
// only wraps a standard exception ("internal error"), or a result that does not survive a write/read round trip.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include <quantsim/core/error.hpp>
#include <quantsim/core/tensor.hpp>
#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/sim/config.hpp>
#include <quantsim/sim/encodings.hpp>

namespace quantsim::fuzz {

/// A broken contract. Deliberately not a quantsim::error, so nothing in the library swallows it.
class finding : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

/// Tensors a fuzz input may legitimately ask for stay below this (the loaders must reject bigger claims from the
/// sizes actually present, long before this limit; it only keeps a legal-but-huge shape from exhausting the
/// fuzzer's memory limit).
inline constexpr std::size_t fuzz_max_tensor_bytes = std::size_t{256} << 20;

/// Lowers max_tensor_bytes() for one input and restores it (the replay test shares its process with other tests).
class tensor_limit {
public:
    tensor_limit() : old_(max_tensor_bytes()) { set_max_tensor_bytes(fuzz_max_tensor_bytes); }
    ~tensor_limit() { set_max_tensor_bytes(old_); }
    tensor_limit(const tensor_limit&) = delete;
    tensor_limit& operator=(const tensor_limit&) = delete;

private:
    std::size_t old_;
};

// The ONNX importer turns a standard exception escaping from deeper code into graph_error "<file>: internal error:
// ..." (detail::rethrow_with_prefix): a bug, not an input error. Only the anchored form counts: the input's own text
// (node names, JSON keys) may say "internal error" anywhere else, and the fuzzer does learn the phrase.
inline void check_quantsim_error(const error& e, const char* target) {
    const std::string_view m = e.what();
    constexpr std::string_view wrapped = "[quantsim.graph] fuzz.onnx: internal error: ";
    if (m.substr(0, wrapped.size()) == wrapped)
        throw finding(std::string(target) + ": a standard exception escaped as 'internal error': " + std::string(m));
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

/// ONNX importer: parse, canonicalize, validate, infer shapes; an accepted model must export and re-import.
inline void onnx_target(const std::uint8_t* data, std::size_t size) {
    const tensor_limit limit;
    graph g;
    try {
        onnx_load_options o;
        g = load_onnx_from_memory(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), o, "fuzz.onnx");
    } catch (const error& e) {
        check_quantsim_error(e, "onnx");
        return;
    }
    std::string bytes;
    try {
        bytes = save_onnx_to_string(g);
    } catch (const error& e) {
        check_quantsim_error(e, "onnx export");
        return;  // something valid that cannot be written at opset 13+: a documented limit, not a bug
    }
    try {
        (void)load_onnx_from_memory(bytes, {}, "fuzz-reexport.onnx");
    } catch (const error& e) {
        throw finding(std::string("onnx: an accepted model does not re-import after export: ") + e.what());
    }
}

/// quantsim config JSON: an accepted config must print and parse again.
inline void config_target(const std::uint8_t* data, std::size_t size) {
    quantsim_config c;
    try {
        c = quantsim_config::parse(as_text(data, size), "fuzz.json");
    } catch (const error& e) {
        check_quantsim_error(e, "config");
        return;
    }
    const std::string again = c.to_json();
    try {
        (void)quantsim_config::parse(again, "fuzz-rewritten.json");
    } catch (const error& e) {
        throw finding(std::string("config: an accepted config does not parse after to_json(): ") + e.what());
    }
}

/// AIMET encodings JSON (0.6.1, 1.0.0, 2.0.0): accepted encodings written as 2.0.0 must read back.
inline void encodings_target(const std::uint8_t* data, std::size_t size) {
    const tensor_limit limit;
    encodings_file f;
    try {
        f = read_encodings(as_text(data, size), "fuzz.encodings");
    } catch (const error& e) {
        check_quantsim_error(e, "encodings");
        return;
    }
    std::string text;
    try {
        text = write_encodings(f, encodings_version::v2_0_0);
    } catch (const error& e) {
        check_quantsim_error(e, "encodings write");
        return;
    }
    try {
        (void)read_encodings(text, "fuzz-rewritten.encodings");
    } catch (const error& e) {
        throw finding(std::string("encodings: accepted encodings do not read back after writing 2.0.0: ") + e.what());
    }
}

/// .npy reader: an accepted array must write and read back bit-identically.
inline void npy_target(const std::uint8_t* data, std::size_t size) {
    const tensor_limit limit;
    tensor t;
    try {
        t = load_npy_from_memory(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), {}, "fuzz.npy");
    } catch (const error& e) {
        check_quantsim_error(e, "npy");
        return;
    }
    const auto bytes = to_npy_bytes(t);
    tensor u;
    try {
        u = load_npy_from_memory(bytes, {}, "fuzz-rewritten.npy");
    } catch (const error& e) {
        throw finding(std::string("npy: an accepted array does not read back after writing: ") + e.what());
    }
    if (u.type() != t.type() || u.shape() != t.shape() || u.nbytes() != t.nbytes() ||
        (t.nbytes() && std::memcmp(u.raw(), t.raw(), t.nbytes()) != 0))
        throw finding("npy: the array changed in a write/read round trip");
}

}  // namespace quantsim::fuzz
