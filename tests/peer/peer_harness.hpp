// Shared harness for the peer tests: locate the repository, the peers folder (.peers: onnxruntime-node and the
// PaddleOCR models), the generated data (.data) and node; run ONNX Runtime on quantsim tensors through
// scripts/peers/ort_run.js (temp .npy files); turn the committed uint8 fixtures into model inputs exactly as the
// Python generator does (examples/data/textgen.py); compare outputs relative to the largest reference magnitude.
//
// Missing prerequisites (peers folder, node, a generated model) make a test SKIP with a message naming the fix,
// or FAIL when QUANTSIM_REQUIRE_PEERS=1 (`make test` sets it): use QUANTSIM_REQUIRE_PEER_FILE / _NODE.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <quantsim/core/tensor.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/graph.hpp>
#include "peer_npy.hpp"

namespace quantsim::peer {

namespace fs = std::filesystem;

// ---- locations ------------------------------------------------------------------------------------------------
inline std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : fallback;
}
inline fs::path repo_dir() { return env_or("QUANTSIM_SOURCE_DIR", QUANTSIM_SOURCE_DIR); }
inline fs::path peers_dir() { return env_or("QUANTSIM_PEERS_DIR", QUANTSIM_PEERS_DIR); }
inline fs::path data_dir() { return env_or("QUANTSIM_DATA_DIR", (repo_dir() / ".data").string()); }
inline fs::path fixture_dir() { return fs::path(QUANTSIM_TEST_DATA_DIR) / "peer"; }
inline fs::path ort_run_script() { return repo_dir() / "scripts" / "peers" / "ort_run.js"; }
inline fs::path paddle_assets() { return peers_dir() / "node_modules" / "@gutenye" / "ocr-models" / "assets"; }
inline fs::path paddle_model(const std::string& file) { return paddle_assets() / file; }
inline const char* cls_model_file = "ch_ppocr_mobile_v2.0_cls_infer.onnx";
inline const char* det_model_file = "ch_PP-OCRv4_det_infer.onnx";
inline const char* rec_model_file = "ch_PP-OCRv4_rec_infer.onnx";
inline fs::path torchvision_model(const std::string& name) { return data_dir() / "models" / (name + ".onnx"); }

inline bool peers_required() {
    const char* v = std::getenv("QUANTSIM_REQUIRE_PEERS");
    return v && std::string(v) == "1";
}

/// The node executable: $QUANTSIM_NODE, else the first `node` on PATH; empty when none.
inline std::string find_node() {
    std::string explicit_node = env_or("QUANTSIM_NODE", "");
    if (!explicit_node.empty()) return ::access(explicit_node.c_str(), X_OK) == 0 ? explicit_node : std::string();
    std::stringstream path(env_or("PATH", "/usr/local/bin:/usr/bin:/bin"));
    for (std::string dir; std::getline(path, dir, ':');) {
        if (dir.empty()) continue;
        fs::path p = fs::path(dir) / "node";
        if (::access(p.c_str(), X_OK) == 0) return p.string();
    }
    return {};
}

/// Message for a missing prerequisite.
inline std::string missing_message(const std::string& what) {
    return what + " is missing: run `make peers` (scripts/setup.sh --peers --torch, then scripts/make_data.sh)" +
           (peers_required() ? " [QUANTSIM_REQUIRE_PEERS=1: failing instead of skipping]" : "");
}

}  // namespace quantsim::peer

/// Skips the test (or fails it under QUANTSIM_REQUIRE_PEERS=1) when `peer_file` does not exist.
#define QUANTSIM_REQUIRE_PEER_FILE(peer_file)                                                            \
    do {                                                                                            \
        const ::std::filesystem::path quantsim_peer_path_ = (peer_file);                                 \
        if (!::std::filesystem::exists(quantsim_peer_path_)) {                                      \
            const auto quantsim_peer_msg_ = ::quantsim::peer::missing_message(quantsim_peer_path_.string()); \
            if (::quantsim::peer::peers_required()) FAIL() << quantsim_peer_msg_;                   \
            GTEST_SKIP() << quantsim_peer_msg_;                                                     \
        }                                                                                           \
    } while (0)

/// Skips (or fails under QUANTSIM_REQUIRE_PEERS=1) when node or onnxruntime-node is not available.
#define QUANTSIM_REQUIRE_PEER_NODE()                                                                \
    do {                                                                                            \
        if (::quantsim::peer::find_node().empty()) {                                                \
            const auto quantsim_peer_msg_ = ::quantsim::peer::missing_message("node (Node.js)");    \
            if (::quantsim::peer::peers_required()) FAIL() << quantsim_peer_msg_;                   \
            GTEST_SKIP() << quantsim_peer_msg_;                                                     \
        }                                                                                           \
        QUANTSIM_REQUIRE_PEER_FILE(::quantsim::peer::peers_dir() / "node_modules" / "onnxruntime-node"); \
    } while (0)

namespace quantsim::peer {

// ---- temp files -------------------------------------------------------------------------------------------------
/// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class temp_dir {
public:
    temp_dir() {
        std::string tmpl = (fs::path(env_or("TMPDIR", "/tmp")) / "quantsim_peer_XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("peer harness: mkdtemp failed for " + tmpl);
        path_ = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const fs::path& path() const noexcept { return path_; }
    fs::path operator/(const std::string& name) const { return path_ / name; }

private:
    fs::path path_;
};

inline std::string read_text(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

/// Single-quotes a string for /bin/sh.
inline std::string shell_quote(const std::string& s) {
    std::string r = "'";
    for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return r + "'";
}

struct command_result {
    int exit_code = -1;
    std::string out, err;
};

/// Runs a shell command with stdout and stderr captured to files.
inline command_result run_command(const std::string& command, const temp_dir& tmp) {
    const fs::path out = tmp / "cmd.stdout", err = tmp / "cmd.stderr";
    const std::string full = command + " >" + shell_quote(out.string()) + " 2>" + shell_quote(err.string());
    const int status = std::system(full.c_str());
    command_result r;
    r.exit_code = status == -1 ? -1 : (WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    r.out = read_text(out);
    r.err = read_text(err);
    return r;
}

// ---- ONNX Runtime -----------------------------------------------------------------------------------------------
struct ort_options {
    int threads = 1;
    std::int64_t batch = 0;          ///< 0 = one run over the whole input
    std::string opt_level = "all";   ///< graphOptimizationLevel: disabled, basic, extended, layout, all
    bool all_outputs = false;        ///< fetch every graph output (else the first)
    int repeats = 1;
};

struct ort_result {
    std::vector<std::string> output_names;  ///< in the order of `outputs`
    std::vector<tensor> outputs;            ///< float outputs as float32
    nlohmann::json report;                  ///< ort_run.js's JSON line (timings, peak RSS)
};

/// Runs `model` with ONNX Runtime on named inputs (empty names bind the model inputs in order). Throws
/// std::runtime_error with ort_run.js's message when it fails.
inline ort_result run_ort(const fs::path& model, const std::vector<std::pair<std::string, tensor>>& inputs,
                          const ort_options& opt = {}) {
    const std::string node = find_node();
    if (node.empty()) throw std::runtime_error("peer harness: node not found on PATH");
    temp_dir tmp;
    std::string cmd = shell_quote(node) + " " + shell_quote(ort_run_script().string()) + " --model " +
                      shell_quote(model.string());
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        const fs::path p = tmp / ("in" + std::to_string(i) + ".npy");
        save_npy(p, inputs[i].second);
        const std::string spec = inputs[i].first.empty() ? p.string() : inputs[i].first + "=" + p.string();
        cmd += " --input " + shell_quote(spec);
    }
    const fs::path out_dir = tmp / "out";
    if (opt.all_outputs)
        cmd += " --all-outputs " + shell_quote(out_dir.string());
    else
        cmd += " --output " + shell_quote((tmp / "first.npy").string());
    cmd += " --threads " + std::to_string(opt.threads) + " --opt-level " + shell_quote(opt.opt_level) +
           " --repeats " + std::to_string(opt.repeats);
    if (opt.batch > 0) cmd += " --batch " + std::to_string(opt.batch);
    const command_result r = run_command(cmd, tmp);
    if (r.exit_code != 0)
        throw std::runtime_error("ort_run.js failed (exit " + std::to_string(r.exit_code) + "): " + r.err);
    ort_result res;
    const std::string line = r.out.substr(0, r.out.find('\n'));
    try {
        res.report = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
        throw std::runtime_error("ort_run.js printed no JSON report: " + r.out + r.err);
    }
    for (const auto& [name, shape] : res.report.at("outputs").items()) {
        (void)shape;
        res.output_names.push_back(name);
    }
    if (opt.all_outputs) {
        for (const auto& name : res.output_names) {
            std::string file = name;
            for (char& c : file)
                if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) c = '_';
            res.outputs.push_back(load_npy(out_dir / (file + ".npy")));
        }
    } else {
        res.outputs.push_back(load_npy(tmp / "first.npy"));
    }
    return res;
}

/// Runs a quantsim graph with ONNX Runtime: saves it with save_onnx (opset from `save`) to a temp file first. For
/// QDQ models and exported rewrites of a model.
inline ort_result run_ort_on_graph(const graph& g, const std::vector<std::pair<std::string, tensor>>& inputs,
                                   const ort_options& opt = {}, const onnx_save_options& save = {}) {
    temp_dir tmp;
    const fs::path model = tmp / "model.onnx";
    save_onnx(g, model, save);
    return run_ort(model, inputs, opt);
}

/// Convenience: one input bound to the model's first input; returns the first output.
inline tensor run_ort_first(const fs::path& model, const tensor& input, const ort_options& opt = {}) {
    return std::move(run_ort(model, {{"", input}}, opt).outputs.front());
}

// ---- fixtures -> model inputs (the formulas of examples/data/textgen.py) ----------------------------------------
/// uint8 lines [N, H, W] (gray) or [N, H, W, 3] (RGB) + valid widths -> float32 [N, 3, H, W], BGR order,
/// (x/255 - 0.5)/0.5 left of the width and 0 right of it (PaddleOCR cls/rec preprocessing, textgen.line_to_input).
inline tensor lines_to_input(const tensor& u8, const tensor& widths) {
    const auto& s = u8.shape();
    if (u8.type() != dtype::uint8 || (s.size() != 3 && !(s.size() == 4 && s[3] == 3)))
        throw std::invalid_argument("lines_to_input: expected uint8 [N,H,W] or [N,H,W,3], got " + to_string(s));
    const std::int64_t n = s[0], h = s[1], w = s[2], c_in = s.size() == 4 ? 3 : 1;
    if (widths.numel() != n) throw std::invalid_argument("lines_to_input: one width per line expected");
    tensor x = tensor::empty({n, 3, h, w});
    const std::uint8_t* src = u8.data<std::uint8_t>();
    float* dst = x.f32();
    for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t valid = widths.type() == dtype::int32 ? widths.data<std::int32_t>()[i]
                                                                 : widths.data<std::int64_t>()[i];
        for (std::int64_t c = 0; c < 3; ++c) {
            const std::int64_t src_c = c_in == 3 ? 2 - c : 0;  // BGR
            for (std::int64_t y = 0; y < h; ++y)
                for (std::int64_t xx = 0; xx < w; ++xx) {
                    const float v = static_cast<float>(src[((i * h + y) * w + xx) * c_in + src_c]);
                    dst[((i * 3 + c) * h + y) * w + xx] = xx < valid ? (v / 255.0f - 0.5f) / 0.5f : 0.0f;
                }
        }
    }
    return x;
}

/// uint8 page [N, H, W] or [N, H, W, 3] -> float32 [N, 3, H, W]: BGR, (x/255 - mean[c]) / std[c] with PaddleOCR's
/// detector mean/std applied by channel index (textgen.page_to_input).
inline tensor page_to_input(const tensor& u8) {
    static constexpr float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    const auto& s = u8.shape();
    if (u8.type() != dtype::uint8 || (s.size() != 3 && !(s.size() == 4 && s[3] == 3)))
        throw std::invalid_argument("page_to_input: expected uint8 [N,H,W] or [N,H,W,3], got " + to_string(s));
    const std::int64_t n = s[0], h = s[1], w = s[2], c_in = s.size() == 4 ? 3 : 1;
    tensor x = tensor::empty({n, 3, h, w});
    const std::uint8_t* src = u8.data<std::uint8_t>();
    float* dst = x.f32();
    for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t c = 0; c < 3; ++c) {
            const std::int64_t src_c = c_in == 3 ? 2 - c : 0;
            for (std::int64_t p = 0; p < h * w; ++p)
                dst[(i * 3 + c) * h * w + p] = (static_cast<float>(src[(i * h * w + p) * c_in + src_c]) / 255.0f -
                                                mean[c]) / stdv[c];
        }
    return x;
}

/// uint8 RGB images [N, H, W, 3] -> float32 [N, 3, H, W] with torchvision's ImageNet normalization
/// (textgen.scene_to_input).
inline tensor scene_to_input(const tensor& u8) {
    static constexpr float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    const auto& s = u8.shape();
    if (u8.type() != dtype::uint8 || s.size() != 4 || s[3] != 3)
        throw std::invalid_argument("scene_to_input: expected uint8 [N,H,W,3], got " + to_string(s));
    const std::int64_t n = s[0], h = s[1], w = s[2];
    tensor x = tensor::empty({n, 3, h, w});
    const std::uint8_t* src = u8.data<std::uint8_t>();
    float* dst = x.f32();
    for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t c = 0; c < 3; ++c)
            for (std::int64_t p = 0; p < h * w; ++p)
                dst[(i * 3 + c) * h * w + p] =
                    (static_cast<float>(src[(i * h * w + p) * 3 + c]) / 255.0f - mean[c]) / stdv[c];
    return x;
}

inline tensor load_fixture(const std::string& file) { return load_npy(fixture_dir() / file); }

/// The recognizer's classes: 0 = CTC blank, then one per dictionary line (UTF-8), then " ".
inline std::vector<std::string> load_rec_classes(const fs::path& dict) {
    std::ifstream f(dict);
    if (!f) throw std::runtime_error("cannot open " + dict.string());
    std::vector<std::string> classes{"<blank>"};
    for (std::string line; std::getline(f, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        classes.push_back(line);
    }
    if (!classes.empty() && classes.back().empty()) classes.pop_back();
    classes.push_back(" ");
    return classes;
}

/// Greedy CTC decode of [N, T, C] probabilities: best class per step, merge repeats, drop blanks (index 0).
inline std::vector<std::string> ctc_greedy_decode(const tensor& probs, const std::vector<std::string>& classes) {
    const auto& s = probs.shape();
    if (s.size() != 3) throw std::invalid_argument("ctc_greedy_decode: expected [N,T,C], got " + to_string(s));
    std::vector<std::string> out;
    const float* p = probs.f32();
    for (std::int64_t i = 0; i < s[0]; ++i) {
        std::string text;
        std::int64_t prev = 0;
        for (std::int64_t t = 0; t < s[1]; ++t) {
            const float* row = p + (i * s[1] + t) * s[2];
            const std::int64_t best = std::max_element(row, row + s[2]) - row;
            if (best != prev && best != 0 && best < static_cast<std::int64_t>(classes.size())) text += classes[best];
            prev = best;
        }
        out.push_back(text);
    }
    return out;
}

inline std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// ---- comparison -------------------------------------------------------------------------------------------------
/// Relative tolerance of the peer comparisons: |quantsim - ORT| <= rel_tol * max|ORT| elementwise.
inline constexpr double peer_rel_tol = 1e-4;

/// Checks that `actual` matches `expected` within rel_tol of expected's largest magnitude; the failure message
/// names the worst element, its index, both values, and how many elements are off.
inline ::testing::AssertionResult outputs_match(const tensor& actual, const tensor& expected,
                                                double rel_tol = peer_rel_tol) {
    if (actual.shape() != expected.shape())
        return ::testing::AssertionFailure()
               << "shape " << to_string(actual.shape()) << " vs expected " << to_string(expected.shape());
    if (actual.type() != dtype::float32 || expected.type() != dtype::float32)
        return ::testing::AssertionFailure() << "outputs_match compares float32 tensors";
    const float* a = actual.f32();
    const float* e = expected.f32();
    double max_ref = 0;
    for (std::int64_t i = 0; i < expected.numel(); ++i) max_ref = std::max(max_ref, std::abs(double(e[i])));
    const double tol = rel_tol * std::max(max_ref, 1e-30);
    double worst = 0;
    std::int64_t worst_i = -1, bad = 0, nonfinite = 0;
    for (std::int64_t i = 0; i < expected.numel(); ++i) {
        if (!std::isfinite(a[i]) || !std::isfinite(e[i])) {
            ++nonfinite;
            if (worst_i < 0 || std::isfinite(worst)) worst_i = i, worst = INFINITY;
            continue;
        }
        const double d = std::abs(double(a[i]) - double(e[i]));
        if (d > tol) ++bad;
        if (d > worst) worst = d, worst_i = i;
    }
    std::ostringstream os;
    os << "max |diff| " << worst << " = " << (max_ref > 0 ? worst / max_ref : worst) << " x max|expected| ("
       << max_ref << "), tolerance " << rel_tol << " x max|expected|";
    if (worst_i >= 0) os << "; worst at flat index " << worst_i << ": " << a[worst_i] << " vs " << e[worst_i];
    if (bad == 0 && nonfinite == 0) return ::testing::AssertionSuccess() << os.str();
    return ::testing::AssertionFailure() << bad << " of " << expected.numel() << " elements off, " << nonfinite
                                         << " not finite; " << os.str();
}

/// Index of the largest value in each row of a [N, C] tensor.
inline std::vector<std::int64_t> argmax_rows(const tensor& t) {
    const std::int64_t n = t.shape().at(0), c = t.numel() / std::max<std::int64_t>(1, t.shape().at(0));
    std::vector<std::int64_t> r(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) r[i] = std::max_element(t.f32() + i * c, t.f32() + (i + 1) * c) - (t.f32() + i * c);
    return r;
}

}  // namespace quantsim::peer
