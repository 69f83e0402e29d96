// The quantsim executable on bad input: a table of broken files and calls, each of which must end with exit status
// 1 (bad input) or 2 (usage error), one message on stderr naming the problem, and never a signal; and failed runs
// that must leave an earlier run's outputs intact with no temporary files left behind (docs/robustness.md).
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <quantsim/io/file.hpp>
#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/builder.hpp>

namespace quantsim {
namespace {

namespace fs = std::filesystem;

fs::path cli_exe() { return fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "bin" / "quantsim"; }

std::string sh_quote(const std::string& s) {
    std::string r = "'";
    for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return r + "'";
}

struct outcome {
    int code = -1;
    int signal = 0;
    std::string out, err;
};

std::vector<std::string> lines_of(const std::string& s) {
    std::vector<std::string> r;
    std::size_t b = 0;
    while (b < s.size()) {
        const auto e = s.find('\n', b);
        r.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
        if (e == std::string::npos) break;
        b = e + 1;
    }
    return r;
}

class cli_robustness : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(fs::exists(cli_exe())) << "the quantsim executable is not built: " << cli_exe();
        dir_ = fs::temp_directory_path() / ("quantsim_cli_robustness_" + std::to_string(::getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    outcome run(const std::string& args) const {
        const fs::path out = dir_ / ".stdout", err = dir_ / ".stderr";
        const std::string cmd = sh_quote(cli_exe().string()) + " " + args + " >" + sh_quote(out.string()) + " 2>" +
                                sh_quote(err.string());
        const int status = std::system(cmd.c_str());
        outcome r;
        if (WIFEXITED(status)) r.code = WEXITSTATUS(status);
        if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
        if (r.code > 128) r.signal = r.code - 128;  // /bin/sh: a child killed by signal N exits 128 + N
        r.out = read_file_string(out);
        r.err = read_file_string(err);
        fs::remove(out);
        fs::remove(err);
        return r;
    }
    std::string p(const std::string& name) const { return sh_quote((dir_ / name).string()); }
    void put(const std::string& name, std::string_view bytes) const { write_file_atomic(dir_ / name, bytes); }

    // x [N, 2, 4, 4] -> Conv 3x3 -> Relu -> y
    static graph model() {
        graph_builder b("robust_model", 13);
        auto x = b.input("x", {-1, 2, 4, 4});
        tensor w = tensor::empty({3, 2, 3, 3});
        for (std::int64_t i = 0; i < w.numel(); ++i) w.f32()[i] = 0.05f * static_cast<float>(i % 11) - 0.2f;
        auto c = b.node("Conv", {x, b.param("w", w), b.param("b", tensor::from({0.1f, -0.1f, 0.0f}, {3}))},
                        {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}, {"kernel_shape", std::vector<std::int64_t>{3, 3}}},
                        "conv");
        b.output(b.node("Relu", {c}, {}, node_options("relu").outputs({"y"})));
        return b.build();
    }
    static tensor samples(std::int64_t n) {
        tensor x = tensor::empty({n, 2, 4, 4});
        for (std::int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = std::sin(0.37f * static_cast<float>(i));
        return x;
    }
    // Files whose names start with '.' and contain ".tmp-": write_file_atomic's temporaries.
    std::vector<std::string> temporaries(const fs::path& d) const {
        std::vector<std::string> r;
        for (const auto& e : fs::recursive_directory_iterator(d)) {
            const std::string n = e.path().filename().string();
            if (n.find(".tmp-") != std::string::npos) r.push_back(e.path().string());
        }
        return r;
    }
    std::map<std::string, std::string> snapshot(const fs::path& d) const {
        std::map<std::string, std::string> r;
        for (const auto& e : fs::directory_iterator(d))
            if (e.is_regular_file()) r[e.path().filename().string()] = read_file_string(e.path());
        return r;
    }

    fs::path dir_;
};

struct bad_case {
    const char* name;
    std::string args;          // after the executable
    int code;                  // 1 bad input, 2 usage error
    std::vector<std::string> needles;  // all must appear in the error line
};

TEST_F(cli_robustness, every_bad_input_gives_one_message_and_status_1_or_2) {
    const std::string model_bytes = save_onnx_to_string(model());
    put("model.onnx", model_bytes);
    put("truncated.onnx", std::string_view(model_bytes).substr(0, model_bytes.size() / 2));
    put("garbage.onnx", std::string_view("\x08\x07\x12\x04junk\xff\xff\xff\xff\x0f trailing bytes", 27));
    put("empty.onnx", "");
    fs::create_directories(dir_ / "folder.onnx");
    // Initializers that claim 4 GiB with 4 bytes of data, or dimensions whose product overflows: rejected from the
    // sizes, before anything is allocated (fuzz/make_seeds.py writes these regression inputs).
    const fs::path regressions = fs::path(QUANTSIM_SOURCE_DIR) / "fuzz" / "regressions" / "onnx";
    save_npy(dir_ / "x.npy", samples(4));
    save_npy(dir_ / "wrong_shape.npy", tensor::zeros({4, 5, 4, 4}));
    tensor nan = samples(4);
    nan.f32()[37] = std::numeric_limits<float>::quiet_NaN();
    save_npy(dir_ / "nan.npy", nan);
    save_npy(dir_ / "empty.npy", tensor::zeros({0, 2, 4, 4}));
    {
        // A header cut off mid-dictionary (sizeof - 1: the literal's bytes without its terminating NUL; ASan found the
        // earlier hand-counted length reading past the literal).
        static constexpr char truncated[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fo";
        put("truncated.npy", std::string_view(truncated, sizeof truncated - 1));
    }
    // Header of a float32 array of 2^50 elements followed by 8 bytes: a size check, never an allocation.
    {
        std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1125899906842624,), }";
        h.append(64 - 10 - h.size() % 64 - 1, ' ');
        h += '\n';
        std::string f("\x93NUMPY\x01\x00", 8);
        f += static_cast<char>(h.size() & 0xff);
        f += static_cast<char>(h.size() >> 8);
        put("huge.npy", f + h + std::string(8, '\0'));
    }
    put("bad_config.json", "{\"defaults\": {\"ops\": {\"is_output_quantized\": \"True\"}, ");
    put("wrong_config.json", "{\"defaults\": {\"ops\": {}, \"params\": {}}, \"params\": {}, \"op_type\": {\"Conv\": 5}}");
    put("bad_enc.json", "{\"version\": \"2.0.0\", \"encodings\": [{\"name\": \"y\", \"output_dtype\": \"uint8\", ");
    put("nan_enc.json",
        "{\"version\": \"0.6.1\", \"activation_encodings\": {\"y\": [{\"bitwidth\": 8, \"scale\": NaN, \"offset\": 0}]}}");
    put("inf_enc.json",
        "{\"version\": \"2.0.0\", \"encodings\": [{\"name\": \"y\", \"output_dtype\": \"uint8\", \"y_scale\": 1e999}]}");
    save_npy(dir_ / "labels_bad.npy", tensor::zeros({4}, dtype::float32));
    // Encodings that parse but do not fit the model: a tensor the model does not have, a per-channel weight encoding
    // with 5 channels for a weight with 3, and a zero point that only fits after wrapping to 32 bits.
    put("unknown_enc.json",
        "{\"version\": \"2.0.0\", \"encodings\": [{\"name\": \"no_such_tensor\", \"output_dtype\": \"uint8\", \"y_scale\": 0.1}]}");
    put("channels_enc.json",
        "{\"version\": \"2.0.0\", \"encodings\": [{\"name\": \"w\", \"output_dtype\": \"int8\", \"axis\": 0, "
        "\"y_scale\": [0.1, 0.1, 0.1, 0.1, 0.1]}]}");
    put("zp_enc.json", "{\"version\": \"2.0.0\", \"encodings\": [{\"name\": \"y\", \"output_dtype\": \"uint8\", "
                       "\"y_scale\": 0.1, \"y_zero_point\": 4294967299}]}");

    const std::string m = p("model.onnx");
    const std::string runm = "run " + m + " --output " + p("y.npy") + " --input ";
    const std::string ptqm = "ptq " + m + " --out " + p("out") + " --quiet --calib ";
    const std::vector<bad_case> cases = {
        {"missing model", "inspect " + p("missing.onnx"), 1, {"missing.onnx", "no such file"}},
        {"directory as model", "inspect " + p("folder.onnx"), 1, {"folder.onnx", "directory"}},
        {"truncated model", "inspect " + p("truncated.onnx"), 1, {"truncated.onnx"}},
        {"garbage model", "inspect " + p("garbage.onnx"), 1, {"garbage.onnx"}},
        {"empty model", "inspect " + p("empty.onnx"), 1, {"empty.onnx", "empty"}},
        {"4 GiB initializer claim", "inspect " + sh_quote((regressions / "huge_initializer_raw_data.onnx").string()), 1,
         {"huge_initializer_raw_data.onnx", "raw_data has 4 bytes"}},
        {"overflowing dimensions", "inspect " + sh_quote((regressions / "overflowing_dims.onnx").string()), 1,
         {"overflowing_dims.onnx", "overflows"}},
        {"truncated model in run", "run " + p("truncated.onnx") + " --input " + p("x.npy") + " --output " + p("y.npy"), 1,
         {"truncated.onnx"}},
        {"missing data", runm + p("nope.npy"), 1, {"nope.npy", "no such file"}},
        {"directory as data", runm + sh_quote(dir_.string()), 1, {"directory"}},
        {"wrong input shape", runm + p("wrong_shape.npy"), 1, {"does not fit model input 'x'"}},
        {"truncated npy", runm + p("truncated.npy"), 1, {"truncated.npy"}},
        {"huge npy header", runm + p("huge.npy"), 1, {"huge.npy"}},
        {"empty npy (run)", runm + p("empty.npy"), 1, {"no samples"}},
        {"empty npy (ptq)", ptqm + p("empty.npy"), 1, {"empty.npy", "empty"}},
        {"NaN calibration data", ptqm + p("nan.npy"), 1, {"nan.npy", "NaN"}},
        {"malformed JSON config", ptqm + p("x.npy") + " --config " + p("bad_config.json"), 1, {"bad_config.json"}},
        {"wrong config types", ptqm + p("x.npy") + " --config " + p("wrong_config.json"), 1, {"wrong_config.json"}},
        {"missing config", ptqm + p("x.npy") + " --config " + p("nope.json"), 1, {"nope.json"}},
        {"malformed encodings", runm + p("x.npy") + " --encodings " + p("bad_enc.json"), 1, {"bad_enc.json"}},
        {"NaN in encodings", runm + p("x.npy") + " --encodings " + p("nan_enc.json"), 1, {"nan_enc.json"}},
        {"Inf in encodings", runm + p("x.npy") + " --encodings " + p("inf_enc.json"), 1, {"inf_enc.json"}},
        {"encodings for a tensor the model lacks", runm + p("x.npy") + " --encodings " + p("unknown_enc.json"), 1,
         {"no_such_tensor"}},
        {"encodings with the wrong channel count", runm + p("x.npy") + " --encodings " + p("channels_enc.json"), 1,
         {"'w'"}},
        {"zero point beyond 32 bits", runm + p("x.npy") + " --encodings " + p("zp_enc.json"), 1,
         {"zp_enc.json", "4294967299"}},
        {"float labels", ptqm + p("x.npy") + " --eval " + p("x.npy") + " --labels " + p("labels_bad.npy"), 1,
         {"labels_bad.npy"}},
        {"output is a folder", "run " + m + " --input " + p("x.npy") + " --output " + p("folder.onnx"), 1,
         {"folder.onnx", "directory"}},
        {"unknown flag", runm + p("x.npy") + " --frobnicate", 2, {"unknown option '--frobnicate'"}},
        {"missing value", "run " + m + " --input", 2, {"'--input' needs a value"}},
        {"bad integer", runm + p("x.npy") + " --batch many", 2, {"--batch", "integer"}},
        {"integer out of range", runm + p("x.npy") + " --batch 0", 2, {"--batch"}},
        {"unknown command", "frobnicate", 2, {"unknown command 'frobnicate'"}},
        {"no arguments", "", 2, {}},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(std::string("case '") + c.name + "': quantsim " + c.args);
        const outcome r = run(c.args);
        ASSERT_EQ(r.signal, 0) << "killed by signal " << r.signal << "\n" << r.err;
        EXPECT_EQ(r.code, c.code) << r.err;
        const auto lines = lines_of(r.err);
        ASSERT_FALSE(lines.empty()) << "no message on stderr";
        std::size_t error_lines = 0;
        for (const auto& l : lines) error_lines += l.find("error") != std::string::npos && l.find("quantsim") == 0;
        if (c.code == 1) {
            // Bad input: exactly one line, "quantsim: error: <what and where>".
            EXPECT_EQ(lines.size(), 1u) << r.err;
            EXPECT_EQ(lines[0].rfind("quantsim: error: ", 0), 0u) << r.err;
        } else if (!c.args.empty()) {
            // Usage error: one error line first, then the command's usage text.
            EXPECT_EQ(error_lines, 1u) << r.err;
            EXPECT_NE(lines[0].find("error: "), std::string::npos) << r.err;
            EXPECT_NE(r.err.find("usage: quantsim"), std::string::npos) << r.err;
        }
        for (const auto& n : c.needles) EXPECT_NE(lines[0].find(n), std::string::npos) << "'" << n << "' not in: " << r.err;
        EXPECT_FALSE(fs::exists(dir_ / "y.npy")) << "a failed run wrote its output";
        EXPECT_TRUE(temporaries(dir_).empty()) << temporaries(dir_).front();
    }
}

// Models that load but carry hostile constants into the kernels (tests/io/untrusted_inputs_test.cpp has the
// library-level cases): INT_MIN / -1 raised SIGFPE and killed the process; a Pad of 2^40 loaded and failed in the
// allocator without naming a node.
TEST_F(cli_robustness, hostile_constants_never_kill_it) {
    save_npy(dir_ / "x.npy", samples(2));
    {
        graph_builder b("int_min_div", 13);
        auto x = b.input("x", {-1, 2, 4, 4});
        auto q = b.node("Div", {b.param("int_min", tensor::from(std::vector<std::int32_t>{std::numeric_limits<std::int32_t>::min()}, {1})),
                                b.param("minus_one", tensor::from(std::vector<std::int32_t>{-1}, {1}))},
                        {}, "div");
        auto f = b.node("Cast", {q}, {{"to", std::int64_t{1}}}, "cast");
        b.output(b.node("Add", {x, f}, {}, node_options("add").outputs({"y"})));
        put("div.onnx", save_onnx_to_string(b.build()));
    }
    auto r = run("run " + p("div.onnx") + " --input " + p("x.npy") + " --output " + p("y.npy") + " --quiet");
    ASSERT_EQ(r.signal, 0) << r.err;
    EXPECT_EQ(r.code, 0) << r.err;  // wraps to INT_MIN, as two's complement hardware and ONNX Runtime do
    {
        graph_builder b("pad_huge", 13);
        auto x = b.input("x", {-1, 2, 4, 4});
        const std::int64_t big = std::int64_t{1} << 40;
        auto y = b.node("Pad", {x, b.param("pads", tensor::from(std::vector<std::int64_t>{0, 0, big, big, 0, 0, big, big}, {8}))},
                        {}, node_options("pad").outputs({"y"}));
        b.output(y);
        put("pad.onnx", save_onnx_to_string(b.build()));
    }
    r = run("run " + p("pad.onnx") + " --input " + p("x.npy") + " --output " + p("y2.npy"));
    ASSERT_EQ(r.signal, 0) << r.err;
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
    EXPECT_NE(r.err.find("pad.onnx"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("node 'pad' (Pad)"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir_ / "y2.npy"));
}

// Names from the file are quoted in messages; a newline or escape byte in one must not break the one-line rule.
TEST_F(cli_robustness, control_characters_in_names_are_escaped) {
    graph g = model();
    g.nodes.back().name = "re\nlu\x1b[31m";
    g.nodes.back().op_type = "NoSuchOp";
    put("odd.onnx", save_onnx_to_string(g));
    const outcome r = run("run " + p("odd.onnx") + " --input " + p("x.npy") + " --output " + p("y.npy"));
    ASSERT_EQ(r.signal, 0);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_EQ(lines_of(r.err).size(), 1u) << r.err;
    EXPECT_NE(r.err.find("re\\nlu\\x1b[31m"), std::string::npos) << r.err;
}

// A run that fails after an earlier good run into the same place leaves the earlier outputs byte-identical.
TEST_F(cli_robustness, a_failed_run_keeps_the_previous_outputs) {
    put("model.onnx", save_onnx_to_string(model()));
    save_npy(dir_ / "x.npy", samples(6));
    tensor nan = samples(6);
    nan.f32()[5] = std::numeric_limits<float>::infinity();
    save_npy(dir_ / "inf.npy", nan);
    const std::string m = p("model.onnx");

    // quantsim ptq: a good run, then one with bad calibration data into the same folder.
    auto r = run("ptq " + m + " --calib " + p("x.npy") + " --out " + p("out") + " --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    const auto before = snapshot(dir_ / "out");
    for (const char* f : {"model.onnx", "model.encodings.json", "model_qdq.onnx"}) ASSERT_EQ(before.count(f), 1u) << f;
    r = run("ptq " + m + " --calib " + p("inf.npy") + " --out " + p("out") + " --quiet --param-bw 4");
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_EQ(snapshot(dir_ / "out"), before);
    EXPECT_TRUE(temporaries(dir_).empty());

    // A failure while writing: the last of the three outputs cannot be written (a folder is in its place). The
    // other two must not be replaced either, or the folder would hold a model and encodings from different runs.
    fs::create_directories(dir_ / "out2" / "model_qdq.onnx");
    put("out2/model.onnx", "previous model");
    put("out2/model.encodings.json", "previous encodings");
    r = run("ptq " + m + " --calib " + p("x.npy") + " --out " + p("out2") + " --quiet --param-bw 4");
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find("model_qdq.onnx"), std::string::npos) << r.err;
    EXPECT_EQ(read_file_string(dir_ / "out2" / "model.onnx"), "previous model");
    EXPECT_EQ(read_file_string(dir_ / "out2" / "model.encodings.json"), "previous encodings");
    EXPECT_TRUE(temporaries(dir_).empty()) << temporaries(dir_).front();

    // quantsim run: a good output, then a run that fails after loading (unknown --output-name).
    r = run("run " + m + " --input " + p("x.npy") + " --output " + p("y.npy") + " --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    const std::string y = read_file_string(dir_ / "y.npy");
    r = run("run " + m + " --input " + p("x.npy") + " --output " + p("y.npy") + " --quiet --output-name nothing");
    EXPECT_EQ(r.code, 1) << r.err;
    r = run("run " + m + " --input " + p("inf.npy") + " --output " + p("y.npy") + " --quiet --batch 0");
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_EQ(read_file_string(dir_ / "y.npy"), y);
    EXPECT_TRUE(temporaries(dir_).empty());
}

// Parallel calibration (several workers, each with its own executor, on two kernel threads) gives the same outputs
// as one worker. `make test-tsan` runs this test with the CLI built under ThreadSanitizer, where a data race in the
// child process makes it exit non-zero.
TEST_F(cli_robustness, parallel_calibration_workers_match_one_worker) {
    put("model.onnx", save_onnx_to_string(model()));
    save_npy(dir_ / "x.npy", samples(12));
    const std::string base = "ptq " + p("model.onnx") + " --calib " + p("x.npy") + " --batch 2 --quiet --per-channel";
    auto r = run(base + " --out " + p("one") + " --workers 1 --threads 1");
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_EQ(r.signal, 0);
    r = run(base + " --out " + p("four") + " --workers 4 --threads 2");
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_EQ(r.signal, 0);
    EXPECT_EQ(read_file_string(dir_ / "one" / "model.encodings.json"), read_file_string(dir_ / "four" / "model.encodings.json"));
    EXPECT_EQ(read_file_string(dir_ / "one" / "model_qdq.onnx"), read_file_string(dir_ / "four" / "model_qdq.onnx"));
}

}  // namespace
}  // namespace quantsim
