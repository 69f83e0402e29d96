// `quantsim run --integer`: the built executable (<build>/bin/quantsim) gives the integer executor's outputs, and
// its flag combinations are checked (usage errors exit 2). Skipped when the executable is not built.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/sim/integer_executor.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace qs = quantsim;
namespace fs = std::filesystem;

namespace {

constexpr std::uint32_t seed = 20261125;

fs::path cli_path() { return fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "bin" / "quantsim"; }

int run(const std::string& args) {
    const std::string cmd = "'" + cli_path().string() + "' " + args + " >/dev/null 2>&1";
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST(IntegerCli, run_integer_matches_the_api_and_checks_flags) {
    if (!fs::exists(cli_path())) GTEST_SKIP() << "quantsim executable not built: " << cli_path();
    std::mt19937 rng(seed);
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::normal_distribution<float> d(0.0f, 0.5f);
    qs::graph_builder b("m");
    auto x = b.input("x", {-1, 2, 6, 6});
    qs::tensor w = qs::tensor::empty({4, 2, 3, 3});
    for (auto& v : w.span<float>()) v = d(rng);
    auto c = b.node("Conv", {x, b.param("w", w)}, {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}},
                    qs::node_options("conv").outputs({"c"}));
    auto r = b.node("Relu", {c}, {}, qs::node_options("relu").outputs({"y"}));
    b.output(r);
    const qs::graph g = b.build();
    qs::tensor in = qs::tensor::empty({5, 2, 6, 6});
    for (auto& v : in.span<float>()) v = d(rng);

    const fs::path dir = fs::temp_directory_path() / ("quantsim_integer_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    qs::save_onnx(g, dir / "m.onnx");
    qs::quant_sim sim(g);
    sim.compute_encodings(std::vector<qs::tensor>{in});
    sim.export_encodings(dir / "m.json");
    qs::save_npy(dir / "x.npy", in);
    const std::string base = "run '" + (dir / "m.onnx").string() + "' --input '" + (dir / "x.npy").string() +
                             "' --output '" + (dir / "y.npy").string() + "' --quiet";
    const std::string enc = " --encodings '" + (dir / "m.json").string() + "'";

    ASSERT_EQ(run(base + enc + " --integer"), 0);
    const qs::tensor got = qs::load_npy(dir / "y.npy");
    qs::quant_sim loaded = qs::quant_sim::from_encodings(qs::load_onnx(dir / "m.onnx"), qs::load_encodings(dir / "m.json"));
    qs::integer_executor ex(loaded);
    const qs::tensor want = ex.run(in);
    ASSERT_EQ(got.shape(), want.shape());
    for (std::int64_t i = 0; i < got.numel(); ++i) ASSERT_EQ(got.f32()[i], want.f32()[i]) << "element " << i;

    EXPECT_EQ(run(base + enc + " --integer --profile tflite"), 0);
    EXPECT_EQ(run(base + " --integer"), 2);                          // needs --encodings
    EXPECT_EQ(run(base + enc + " --profile tflite"), 2);             // needs --integer
    EXPECT_EQ(run(base + enc + " --integer --profile tensorrt"), 2);  // unknown profile
    fs::remove_all(dir);
}
