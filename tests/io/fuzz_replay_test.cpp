// Replays the fuzzers' committed inputs (fuzz/corpus/<target>/ seeds and fuzz/regressions/<target>/ inputs that
// once broke a reader) through the same target bodies the fuzzers run, in the ordinary build: every crash the
// fuzzers found stays fixed without clang or libFuzzer. Under `make test-sanitize` this also runs with ASan+UBSan.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../../fuzz/fuzz_targets.hpp"

namespace quantsim {
namespace {

namespace fs = std::filesystem;

using target_fn = void (*)(const std::uint8_t*, std::size_t);

std::vector<fs::path> inputs_of(const std::string& target, const char* kind) {
    std::vector<fs::path> r;
    const fs::path dir = fs::path(QUANTSIM_SOURCE_DIR) / "fuzz" / kind / target;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return r;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file() && e.path().filename().string()[0] != '.') r.push_back(e.path());
    std::sort(r.begin(), r.end());
    return r;
}

std::string read_all(const fs::path& p) {
    std::ifstream is(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(is), {});
}

void replay(const std::string& target, target_fn fn, std::size_t min_seeds) {
    const auto seeds = inputs_of(target, "corpus");
    // The seeds are committed: finding none means the path is wrong, not that there is nothing to test.
    ASSERT_GE(seeds.size(), min_seeds) << "fuzz/corpus/" << target << " is missing or nearly empty";
    auto all = seeds;
    const auto regressions = inputs_of(target, "regressions");
    all.insert(all.end(), regressions.begin(), regressions.end());
    for (const auto& p : all) {
        SCOPED_TRACE(p.string());
        const std::string bytes = read_all(p);
        try {
            fn(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
        } catch (const fuzz::finding& f) {
            ADD_FAILURE() << f.what();
        } catch (const std::exception& e) {
            ADD_FAILURE() << "escaped the reader (not a quantsim::error): " << e.what();
        }
    }
}

TEST(fuzz_replay, onnx) { replay("onnx", fuzz::onnx_target, 5); }
TEST(fuzz_replay, config) { replay("config", fuzz::config_target, 3); }
TEST(fuzz_replay, encodings) { replay("encodings", fuzz::encodings_target, 3); }
TEST(fuzz_replay, npy) { replay("npy", fuzz::npy_target, 5); }

// The seeds are valid inputs: each must be accepted, or the fuzzers start from nothing but the rejection paths.
TEST(fuzz_replay, seeds_are_accepted) {
    for (const auto& p : inputs_of("npy", "corpus")) EXPECT_NO_THROW((void)load_npy(p)) << p;
    for (const auto& p : inputs_of("config", "corpus")) EXPECT_NO_THROW((void)quantsim_config::load(p)) << p;
    for (const auto& p : inputs_of("encodings", "corpus")) EXPECT_NO_THROW((void)load_encodings(p)) << p;
    for (const auto& p : inputs_of("onnx", "corpus")) EXPECT_NO_THROW((void)load_onnx(p)) << p;
}

}  // namespace
}  // namespace quantsim
