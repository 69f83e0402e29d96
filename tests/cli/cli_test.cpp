// Runs the built `quantsim` executable (<build>/bin/quantsim, found next to this test's folder) on good and bad
// inputs and checks exit codes, messages, and that it never dies by a signal.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <quantsim/io/file.hpp>
#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/ir/executor.hpp>

namespace quantsim {
namespace {

namespace fs = std::filesystem;

fs::path cli_path() {
    const fs::path self = fs::read_symlink("/proc/self/exe");
    return self.parent_path().parent_path() / "bin" / "quantsim";
}

struct result {
    int code = -1;      ///< exit code, or -1 when killed by a signal
    int signal = 0;
    std::string out, err;
};

std::string quote(const std::string& s) {
    std::string r = "'";
    for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return r + "'";
}

class cli : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(fs::exists(cli_path())) << "the quantsim executable is not built: " << cli_path()
                                            << " (build the quantsim_cli target)";
        dir_ = fs::temp_directory_path() /
               ("quantsim_cli_test_" + std::to_string(::getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    result run(const std::string& args) {
        const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt";
        const std::string cmd = quote(cli_path().string()) + " " + args + " >" + quote(out.string()) + " 2>" + quote(err.string());
        const int status = std::system(cmd.c_str());
        result r;
        if (WIFEXITED(status)) r.code = WEXITSTATUS(status);
        // /bin/sh reports a child killed by signal N as exit status 128 + N.
        if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
        if (r.code > 128) r.signal = r.code - 128;
        r.out = read_file_string(out);
        r.err = read_file_string(err);
        return r;
    }
    std::string path(const std::string& name) const { return quote((dir_ / name).string()); }

    // x [N, 2, 4, 4] -> Conv 3x3 (pads 1) -> Relu -> y [N, 3, 4, 4]
    graph small_model() {
        graph_builder b("cli_model", 13);
        auto x = b.input("x", {-1, 2, 4, 4});
        tensor w = tensor::empty({3, 2, 3, 3});
        for (std::int64_t i = 0; i < w.numel(); ++i) w.f32()[i] = 0.05f * static_cast<float>(i % 11) - 0.2f;
        auto c = b.node("Conv", {x, b.param("w", w), b.param("b", tensor::from({0.1f, -0.1f, 0.0f}, {3}))},
                        {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}, {"kernel_shape", std::vector<std::int64_t>{3, 3}}}, "conv");
        b.output(b.node("Relu", {c}, {}, node_options("relu").outputs({"y"})));
        return b.build();
    }
    fs::path save_small_model() {
        const fs::path p = dir_ / "model.onnx";
        save_onnx(small_model(), p);
        return p;
    }
    static tensor sample_input(std::int64_t n) {
        tensor x = tensor::empty({n, 2, 4, 4});
        for (std::int64_t i = 0; i < x.numel(); ++i) x.f32()[i] = std::sin(0.37f * static_cast<float>(i));
        return x;
    }

    fs::path dir_;
};

TEST_F(cli, version_help_and_usage_errors) {
    auto r = run("--version");
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(r.out.rfind("quantsim ", 0), 0u) << r.out;
    r = run("");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("usage: quantsim"), std::string::npos) << r.err;
    r = run("--help");
    EXPECT_EQ(r.code, 0);
    EXPECT_NE(r.out.find("inspect"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("run"), std::string::npos) << r.out;
    r = run("frobnicate");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("unknown command 'frobnicate'"), std::string::npos) << r.err;
    for (const char* c : {"inspect", "run"}) {
        r = run(std::string(c) + " --help");
        EXPECT_EQ(r.code, 0) << c;
        EXPECT_NE(r.out.find(std::string("usage: quantsim ") + c), std::string::npos) << r.out;
        r = run(std::string("help ") + c);
        EXPECT_EQ(r.code, 0) << c;
    }
    r = run("inspect");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("missing MODEL.onnx"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("usage: quantsim inspect"), std::string::npos) << r.err;
    r = run("inspect a.onnx --bogus");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("unknown option '--bogus'"), std::string::npos) << r.err;
    r = run("run m.onnx --output y.npy");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("missing --input"), std::string::npos) << r.err;
    r = run("run m.onnx --input x.npy --output y.npy --batch 0");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("--batch"), std::string::npos) << r.err;
    r = run("run m.onnx --input x.npy --output y.npy --threads many");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("needs an integer"), std::string::npos) << r.err;
    r = run("run m.onnx --input");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("needs a value"), std::string::npos) << r.err;
}

TEST_F(cli, bad_inputs_exit_1_with_one_clear_message) {
    auto r = run("inspect " + path("missing.onnx"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("quantsim: error: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("missing.onnx"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;

    write_file_atomic(dir_ / "garbage.onnx", std::string_view("definitely not a protobuf \xff\xfe\x01"));
    r = run("inspect " + path("garbage.onnx"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("garbage.onnx"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("not a valid ONNX model"), std::string::npos) << r.err;

    const fs::path model = save_small_model();
    save_npy(dir_ / "x.npy", sample_input(3));
    write_file_atomic(dir_ / "bad.npy", std::string_view("\x93NUMPY\x01\x00\x05\x00{'de", 14));
    r = run("run " + quote(model.string()) + " --input " + path("bad.npy") + " --output " + path("y.npy"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("bad.npy"), std::string::npos) << r.err;

    save_npy(dir_ / "wrong.npy", tensor::zeros({3, 5, 4, 4}));
    r = run("run " + quote(model.string()) + " --input " + path("wrong.npy") + " --output " + path("y.npy"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("does not fit model input 'x'"), std::string::npos) << r.err;

    save_npy(dir_ / "ints.npy", tensor::zeros({3, 2, 4, 4}, dtype::int32));
    r = run("run " + quote(model.string()) + " --input " + path("ints.npy") + " --output " + path("y.npy"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("int32"), std::string::npos) << r.err;

    r = run("run " + quote(model.string()) + " --input nope=" + path("x.npy") + " --output " + path("y.npy"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("no input 'nope'"), std::string::npos) << r.err;

    r = run("run " + quote(model.string()) + " --input " + path("x.npy") + " --output " + path("no/such/dir/y.npy"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("y.npy"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir_ / "y.npy"));
}

TEST_F(cli, run_matches_the_executor_in_batches_and_accepts_float64) {
    const fs::path model = save_small_model();
    const tensor x = sample_input(7);
    save_npy(dir_ / "x.npy", x);
    auto r = run("run " + quote(model.string()) + " --input " + path("x.npy") + " --output " + path("y.npy") + " --batch 3 --threads 1");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("7 samples in 3 batches"), std::string::npos) << r.err;
    const tensor y = load_npy(dir_ / "y.npy");
    ASSERT_EQ(y.shape(), (shape_t{7, 3, 4, 4}));
    executor ex(small_model());
    const tensor expect = ex.run(std::vector<tensor>{x}).at(0);
    ASSERT_EQ(expect.shape(), y.shape());
    for (std::int64_t i = 0; i < y.numel(); ++i) EXPECT_NEAR(y.f32()[i], expect.f32()[i], 1e-5f) << i;

    tensor x64 = tensor::empty(x.shape(), dtype::float64);
    for (std::int64_t i = 0; i < x.numel(); ++i) x64.data<double>()[i] = x.f32()[i];
    save_npy(dir_ / "x64.npy", x64);
    r = run("run " + quote(model.string()) + " --input x=" + path("x64.npy") + " --output " + path("y64.npy") + " --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;
    const tensor y64 = load_npy(dir_ / "y64.npy");
    EXPECT_EQ(0, std::memcmp(y64.raw(), y.raw(), y.nbytes()));

    r = run("inspect " + quote(model.string()));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("x: float32 [N, 2, 4, 4]"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("y: float32 [N, 3, 4, 4]"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("w: float32 [3, 2, 3, 3]"), std::string::npos) << r.out;
    r = run("inspect " + quote(model.string()) + " --shape x=5,2,4,4 --no-params");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("y: float32 [5, 3, 4, 4]"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("w: float32"), std::string::npos) << r.out;
    r = run("inspect " + quote(model.string()) + " --shape q=1");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("no input 'q'"), std::string::npos) << r.err;
}

TEST_F(cli, corrupted_models_never_kill_it) {
    const fs::path model = save_small_model();
    const std::string bytes = read_file_string(model);
    save_npy(dir_ / "x.npy", sample_input(2));
    const std::uint32_t seed = 77;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    for (int i = 0; i < 12; ++i) {
        std::string b = bytes;
        for (int f = 0; f < 3; ++f) b[rng() % b.size()] = static_cast<char>(rng());
        write_file_atomic(dir_ / "fuzz.onnx", std::string_view(b));
        for (const std::string& cmd : {"inspect " + path("fuzz.onnx"),
                                      "run " + path("fuzz.onnx") + " --input " + path("x.npy") + " --output " + path("o.npy")}) {
            const auto r = run(cmd);
            EXPECT_EQ(r.signal, 0) << "iteration " << i << ": killed by signal " << r.signal << "\n" << r.err;
            EXPECT_TRUE(r.code == 0 || r.code == 1) << "iteration " << i << " exit " << r.code << "\n" << r.err;
            if (r.code == 1) {
                EXPECT_NE(r.err.find("quantsim"), std::string::npos) << r.err;
            }
        }
    }
}

// x [N, 2, 4, 4] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> y [N, 3]: scores for top-1.
graph small_classifier() {
    graph_builder b("cli_classifier", 13);
    auto x = b.input("x", {-1, 2, 4, 4});
    tensor w = tensor::empty({6, 2, 3, 3});
    for (std::int64_t i = 0; i < w.numel(); ++i) w.f32()[i] = 0.07f * static_cast<float>(i % 13) - 0.4f;
    tensor wf = tensor::empty({3, 6});
    for (std::int64_t i = 0; i < wf.numel(); ++i) wf.f32()[i] = 0.3f * static_cast<float>(i % 5) - 0.6f;
    auto c = b.node("Conv", {x, b.param("w", w)}, {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "conv");
    auto r = b.node("Relu", {c}, {}, "relu");
    auto g = b.node("GlobalAveragePool", {r}, {}, "gap");
    auto f = b.node("Flatten", {g}, {}, "flat");
    b.output(b.node("Gemm", {f, b.param("wf", wf)}, {{"transB", std::int64_t{1}}}, node_options("fc").outputs({"y"})));
    return b.build();
}

TEST_F(cli, mixed_precision_flags_and_the_analysis_report) {
    const fs::path model = dir_ / "cls.onnx";
    save_onnx(small_classifier(), model);
    save_npy(dir_ / "calib.npy", sample_input(16));
    std::vector<std::int64_t> labels(16);
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 3);
    save_npy(dir_ / "labels.npy", tensor::from(labels, {16}));
    const std::string base = "ptq " + quote(model.string()) + " --calib " + path("calib.npy") + " --out " + path("out");
    const std::string eval = " --eval " + path("calib.npy") + " --labels " + path("labels.npy");

    auto r = run(base + " --mixquant=20 --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("\"mixquant\": {\"min_sqnr_db\": 20"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\"weight_kib\""), std::string::npos) << r.out;
    EXPECT_TRUE(fs::exists(dir_ / "out" / "report.html"));
    EXPECT_NE(read_file_string(dir_ / "out" / "report.html").find("MixQuant"), std::string::npos);
    r = run(base + " --mixquant 35 --quiet --no-report");  // value as the next argument
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("\"min_sqnr_db\": 35"), std::string::npos) << r.out;
    r = run(base + " --mixquant --quiet");  // default threshold
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("\"min_sqnr_db\": 25"), std::string::npos) << r.out;

    r = run(base + eval + " --target-drop 50 --mp-candidates a8w8,a8w4,a8w2 --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("\"mixed_precision\": {\"groups\": 2"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\"step\": \"mixed_precision\""), std::string::npos) << r.out;
    EXPECT_NE(read_file_string(dir_ / "out" / "report.html").find("Mixed precision search"), std::string::npos);

    r = run(base + " --target-drop 1");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("--target-drop needs --eval"), std::string::npos) << r.err;
    r = run(base + eval + " --target-drop 1 --mixquant");
    EXPECT_EQ(r.code, 2);
    r = run(base + eval + " --target-drop 1 --mp-candidates a8");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("a8"), std::string::npos) << r.err;
    r = run(base + " --mixquant=abc");
    EXPECT_EQ(r.code, 2);

    r = run("analyze " + quote(model.string()) + " --calib " + path("calib.npy") + " --out " + path("an") + " --data " +
            path("calib.npy") + " --labels " + path("labels.npy") + " --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("\"most_sensitive\""), std::string::npos) << r.out;
    const std::string html = read_file_string(dir_ / "an" / "report.html");
    EXPECT_NE(html.find("<svg"), std::string::npos);
    EXPECT_NE(html.find("Per-layer sensitivity"), std::string::npos);
    r = run("analyze " + quote(model.string()) + " --out " + path("an"));
    EXPECT_EQ(r.code, 2);
    r = run("analyze " + quote(model.string()) + " --calib " + path("calib.npy") + " --out " + path("an") +
            " --sensitivity top1");
    EXPECT_EQ(r.code, 2);
}

}  // namespace
}  // namespace quantsim

namespace quantsim {
namespace {

// The PTQ pipeline flags: every step runs on a small model and is reported; conflicting flags are usage errors.
TEST_F(cli, ptq_pipeline_flags_run_every_step_and_reject_conflicts) {
    const fs::path model = save_small_model();
    save_npy(dir_ / "calib.npy", sample_input(8));
    const std::string base = "ptq " + quote(model.string()) + " --calib " + path("calib.npy") + " --out " + path("out");
    auto r = run(base + " --fold-bn --cle --bias-correction empirical --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    for (const char* step : {"\"fold_bn\"", "\"cle\"", "\"range_setting\"", "\"bias_correction\""})
        EXPECT_NE(r.out.find(step), std::string::npos) << step << "\n" << r.out;
    EXPECT_TRUE(fs::exists(dir_ / "out" / "model_qdq.onnx"));
    r = run(base + " --param-bw 4 --adaround --adaround-iters 20 --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("\"adaround\""), std::string::npos) << r.out;
    // Usage errors: status 2 and a message containing `says`.
    const auto usage_error = [&](const std::string& flags, const std::string& says) {
        const result u = run(base + flags);
        EXPECT_EQ(u.code, 2) << flags;
        EXPECT_NE(u.err.find(says), std::string::npos) << flags << ": " << u.err;
    };
    usage_error(" --adaround --bias-correction empirical", "alternatives");
    usage_error(" --bias-correction magic", "magic");
    r = run(base + " --param-bw 4 --act-bw 4 --end-bw 8 --fuse-activations on --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("\"end_layers\""), std::string::npos) << r.out;
    usage_error(" --fuse-activations maybe", "--fuse-activations must be on or off");
    usage_error(" --end-bw 1", "--end-bw");
    r = run(base + " --range sqnr --calib-sample 8 --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    usage_error(" --calib-sample 3", "--calib-sample must be 1, 2, 4, 8 or 16");
    usage_error(" --adaround-iters 10", "--adaround-iters needs --adaround");
}


// x [N, 2, 4, 4] -> Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> Softmax; the label says which input
// channel has the larger mean (learnable by this net).
TEST_F(cli, qat_trains_writes_reproducible_outputs_and_starts_from_a_ptq_result) {
    graph_builder b("cli_classifier", 13);
    auto x = b.input("x", {-1, 2, 4, 4});
    tensor w = tensor::empty({4, 2, 3, 3});
    for (std::int64_t i = 0; i < w.numel(); ++i) w.f32()[i] = 0.1f * std::sin(1.3f * static_cast<float>(i));
    auto c = b.node("Conv", {x, b.param("w", w), b.param("b", tensor::zeros({4}))},
                    {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}, {"kernel_shape", std::vector<std::int64_t>{3, 3}}}, "conv");
    auto f = b.node("Flatten", {b.node("GlobalAveragePool", {b.node("Relu", {c}, {}, "relu")}, {}, "gap")}, {}, "flat");
    tensor fw = tensor::empty({2, 4});
    for (std::int64_t i = 0; i < fw.numel(); ++i) fw.f32()[i] = 0.2f * std::cos(0.7f * static_cast<float>(i));
    auto z = b.node("Gemm", {f, b.param("fc.w", fw), b.param("fc.b", tensor::zeros({2}))}, {{"transB", std::int64_t{1}}},
                    node_options("fc").outputs({"logits"}));
    b.output(b.node("Softmax", {z}, {{"axis", std::int64_t{-1}}}, node_options("softmax").outputs({"prob"})));
    save_onnx(b.build(), dir_ / "model.onnx");
    constexpr std::int64_t n = 128;
    tensor xs = tensor::empty({n, 2, 4, 4});
    tensor ys = tensor::empty({n}, dtype::int64);
    std::mt19937 rng(20261122);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (std::int64_t i = 0; i < n; ++i) {
        double a = 0, bb = 0;
        for (std::int64_t k = 0; k < 16; ++k) {
            xs.f32()[i * 32 + k] = nd(rng);
            xs.f32()[i * 32 + 16 + k] = nd(rng);
            a += xs.f32()[i * 32 + k];
            bb += xs.f32()[i * 32 + 16 + k];
        }
        ys.data<std::int64_t>()[i] = a > bb ? 1 : 0;
    }
    save_npy(dir_ / "x.npy", xs);
    save_npy(dir_ / "y.npy", ys);
    const std::string data = " --train " + path("x.npy") + " --labels " + path("y.npy");
    const std::string eval = " --eval " + path("x.npy") + " --eval-labels " + path("y.npy");
    const auto number = [](const std::string& json, const std::string& key) {
        const auto p = json.find("\"" + key + "\": ");
        if (p == std::string::npos) return -1.0;
        return std::stod(json.substr(p + key.size() + 4));
    };

    auto r = run("qat " + path("model.onnx") + data + eval + " --out " + path("qat") +
                 " --param-bw 4 --act-bw 4 --end-bw off --epochs 8 --batch 16 --lr 0.01 --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    for (const char* file : {"model.onnx", "model.encodings.json", "model_qdq.onnx"}) EXPECT_TRUE(fs::exists(dir_ / "qat" / file)) << file;
    const double before = number(r.out, "calibrated_top1"), after = number(r.out, "quantized_top1");
    EXPECT_GT(after, before) << r.out;
    EXPECT_GE(after, 0.75) << r.out;
    EXPECT_GT(number(r.out, "seconds_per_step"), 0.0) << r.out;
    EXPECT_EQ(number(r.out, "tracked_weights"), static_cast<double>(w.numel() + fw.numel())) << r.out;
    // The written model and encodings are the simulated model the trainer reported on.
    auto e = run("eval " + path("qat/model.onnx") + " --data " + path("x.npy") + " --labels " + path("y.npy") +
                 " --encodings " + path("qat/model.encodings.json"));
    ASSERT_EQ(e.code, 0) << e.err;
    EXPECT_NEAR(number(e.out, "top1"), after, 1e-6) << e.out;

    // Dampening and freezing run; from a PTQ result the run starts from its encodings (no calibration).
    r = run("qat " + path("model.onnx") + data + " --out " + path("qat2") + " --param-bw 3 --act-bw 4 --end-bw off --epochs 2 --batch 16"
            " --dampening --freezing --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_GE(number(r.out, "frozen_weights"), 0.0) << r.out;
    // Below 8 bits the first and last layers stay at 8 bits by default: here that is every weight, so no weight has
    // the <= 4 bits that oscillation tracking covers.
    r = run("qat " + path("model.onnx") + data + " --out " + path("qat2b") + " --param-bw 3 --act-bw 4 --epochs 1 --batch 16 --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(number(r.out, "tracked_weights"), -1.0) << r.out;
    EXPECT_NE(read_file_string(dir_ / "qat2b" / "model.encodings.json").find("\"bw\": 8"), std::string::npos);
    r = run("ptq " + path("model.onnx") + " --calib " + path("x.npy") + " --out " + path("ptq") + " --param-bw 4 --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    r = run("qat " + path("ptq/model.onnx") + " --encodings " + path("ptq/model.encodings.json") + data + eval +
            " --out " + path("qat3") + " --epochs 1 --batch 16 --quiet");
    ASSERT_EQ(r.code, 0) << r.err;
    e = run("eval " + path("ptq/model.onnx") + " --data " + path("x.npy") + " --labels " + path("y.npy") + " --encodings " +
            path("ptq/model.encodings.json"));
    ASSERT_EQ(e.code, 0) << e.err;
    // Before training: the PTQ model as the trainer's tape computes it (int32-bias rounding may differ from the sim's
    // forward on a sample right at a decision boundary).
    EXPECT_NEAR(number(r.out, "calibrated_top1"), number(e.out, "top1"), 2.0 / n) << r.out << "\n" << e.out;

    // Usage errors: 2; bad data: 1.
    r = run("qat " + path("ptq/model.onnx") + " --encodings " + path("ptq/model.encodings.json") + data + " --out " +
            path("qat4") + " --param-bw 4");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("--encodings and --param-bw"), std::string::npos) << r.err;
    save_npy(dir_ / "y_short.npy", ys.slice(0, 10).clone());
    r = run("qat " + path("model.onnx") + " --train " + path("x.npy") + " --labels " + path("y_short.npy") + " --out " + path("qat5"));
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find("labels"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace quantsim
