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
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <quantsim/core/error.hpp>
#include <quantsim/core/tensor.hpp>
#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/composite_ops.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/sim/config.hpp>
#include <quantsim/sim/encodings.hpp>
#include <quantsim/sim/end_layers.hpp>
#include <quantsim/sim/quantsim.hpp>

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

/// Deterministic values of any dtype the executor takes: mostly small (floats in [-1, 1], integers in [-3, 3]),
/// with the type's extremes at some positions (integer min and max, float 1e30, -inf and NaN) because those are
/// what overflow or trap in kernels; bools 0/1. False for a dtype it has no filler for.
inline bool fill_input(tensor& t) {
    const std::int64_t n = t.numel();
    auto ints = [n](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        for (std::int64_t i = 0; i < n; ++i)
            p[i] = i % 11 == 5 ? std::numeric_limits<T>::min()
                               : i % 11 == 9 ? std::numeric_limits<T>::max() : static_cast<T>(i % 7 - 3);
    };
    auto floats = [n](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        for (std::int64_t i = 0; i < n; ++i)
            p[i] = i % 13 == 7 ? T(1e30) : i % 17 == 8 ? -std::numeric_limits<T>::infinity()
                 : i % 19 == 9 ? std::numeric_limits<T>::quiet_NaN() : static_cast<T>((i * 37) % 201 - 100) / T(100);
    };
    switch (t.type()) {
        case dtype::float32: floats(t.f32()); return true;
        case dtype::float64: floats(t.data<double>()); return true;
        case dtype::int64: ints(t.data<std::int64_t>()); return true;
        case dtype::int32: ints(t.data<std::int32_t>()); return true;
        case dtype::int8: ints(t.data<std::int8_t>()); return true;
        case dtype::uint8:
            for (std::int64_t i = 0; i < n; ++i) t.data<std::uint8_t>()[i] = static_cast<std::uint8_t>(i % 7);
            return true;
        case dtype::boolean:
            for (std::int64_t i = 0; i < n; ++i) t.data<bool>()[i] = i % 2 != 0;
            return true;
        default: return false;
    }
}

/// Elements of a shape with unknown (symbolic) dimensions taken as 1; -1 when above `limit`.
inline std::int64_t small_numel(const shape_t& s, std::int64_t limit) {
    std::int64_t n = 1;
    for (std::int64_t d : s) {
        const std::int64_t k = d < 0 ? 1 : d;
        if (k > limit || (k > 0 && n > limit / k)) return -1;
        n *= k;
    }
    return n;
}

/// An accepted model whose inputs and inferred values are small also runs once (one thread, symbolic dimensions
/// as 1) on deterministic inputs: loading checks what the file says, running checks that those checks protect the
/// kernels (an integer INT_MIN / -1 from constants loaded fine and killed the process with SIGFPE when run).
/// Limits: 2^16 input elements, 2^20 elements per inferred value, so that one run stays far below libFuzzer's
/// -timeout and -rss_limit_mb (a slow or huge run is then a finding, not a false alarm).
inline void run_small_model(const graph& g) {
    constexpr std::int64_t max_input_elements = std::int64_t{1} << 16, max_value_elements = std::int64_t{1} << 20;
    for (const auto& [name, vi] : g.value_infos)
        if (!vi.shape_known || small_numel(vi.shape, max_value_elements) < 0) return;
    std::vector<tensor> inputs;
    std::int64_t total = 0;
    for (const value_info& v : g.inputs) {
        if (!v.shape_known) return;
        const std::int64_t n = small_numel(v.shape, max_input_elements);
        if (n < 0 || (total += n) > max_input_elements) return;
        shape_t s = v.shape;
        for (auto& d : s) d = d < 0 ? 1 : d;
        tensor t = tensor::empty(s, v.type);
        if (!fill_input(t)) return;
        inputs.push_back(std::move(t));
    }
    try {
        executor_options o;
        o.num_threads = 1;
        executor ex(g, o);
        (void)ex.run(inputs);
    } catch (const error& e) {
        check_quantsim_error(e, "onnx run");
    }
}

/// ONNX importer: parse, canonicalize, validate, infer shapes; an accepted model must export and re-import, and a
/// small one must run (run_small_model).
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
    // Placement on the decomposed-activation view and the end-layer walks take any accepted graph: the fused view
    // must still be a valid graph, and quantizer placement may only fail with a quantsim error.
    graph fused;
    try {
        fused = fuse_decomposed_activations(g);
    } catch (const error& e) {
        check_quantsim_error(e, "fuse_decomposed_activations");
        return;
    }
    try {
        fused.validate();
    } catch (const error& e) {
        throw finding(std::string("onnx: fuse_decomposed_activations made an invalid graph: ") + e.what());
    }
    try {
        quantsim_options so;
        so.fuse_decomposed_activations = true;
        quant_sim sim(g, so);
        (void)set_end_layers_bitwidth(sim, 8, 8);
    } catch (const error& e) {
        check_quantsim_error(e, "onnx placement");
    }
    run_small_model(g);
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
