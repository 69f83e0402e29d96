// The report renders in a real browser: headless Chromium loads DIR/report.html from `quantsim analyze`-like
// content, its DOM holds the SVG charts with their bars, and a screenshot has content. Chromium comes from Debian's
// chromium package (`make test` installs it); without it the test is skipped, unless QUANTSIM_REQUIRE_PEERS is set.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <quantsim/analysis/html_report.hpp>
#include <quantsim/ir/builder.hpp>

namespace {

using namespace quantsim;
namespace fs = std::filesystem;

std::string find_chromium() {
    if (const char* env = std::getenv("QUANTSIM_CHROMIUM")) return env;
    for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"})
        if (::access(p, X_OK) == 0) return p;
    return {};
}

// Runs a command line, returns its exit status and stdout.
int run(const std::string& cmd, std::string& out) {
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return -1;
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = ::pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::size_t count(const std::string& s, const std::string& what) {
    std::size_t c = 0;
    for (std::size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++c;
    return c;
}

TEST(report_render, headless_chromium_renders_the_charts) {
    const std::string chromium = find_chromium();
    if (chromium.empty()) {
        if (std::getenv("QUANTSIM_REQUIRE_PEERS")) FAIL() << "chromium not found (apt-get install chromium)";
        GTEST_SKIP() << "chromium not installed";
    }
    std::mt19937 rng(1);
    graph_builder b;
    auto x = b.input("x", {-1, 2, 6, 6});
    tensor w = tensor::zeros({4, 2, 3, 3});
    std::normal_distribution<float> d(0.0f, 0.3f);
    for (std::int64_t i = 0; i < w.numel(); ++i) w.f32()[i] = d(rng) * (i < 18 ? 10.0f : 1.0f);
    auto c = b.node("Conv", {x, b.param("w", w)}, {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "conv");
    b.output(b.node("Relu", {c}, {}, "relu"));
    quant_sim sim(b.build());
    std::vector<std::vector<tensor>> calib;
    for (int i = 0; i < 2; ++i) {
        tensor t = tensor::zeros({4, 2, 6, 6});
        for (std::int64_t k = 0; k < t.numel(); ++k) t.f32()[k] = d(rng);
        calib.push_back({t});
    }
    sim.compute_encodings(calib);
    const quant_analysis a = analyze_quantization(sim, calib);
    report_content rc;
    rc.title = "render test";
    rc.summary = {{"model", "conv+relu"}};
    rc.analysis = &a;

    const fs::path dir = fs::temp_directory_path() / ("quantsim_render_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    write_html_report(dir / "report.html", rc);
    const std::string flags = " --headless --no-sandbox --disable-gpu --disable-background-networking "
                              "--no-first-run --disable-dev-shm-usage --user-data-dir=" +
                              (dir / "profile").string() + " ";
    const std::string url = "file://" + (dir / "report.html").string();

    std::string dom;
    ASSERT_EQ(run(chromium + flags + "--dump-dom " + url + " 2>/dev/null", dom), 0) << dom;
    // The browser parsed the charts: every SVG and its bars are in the live DOM.
    const std::size_t svgs = count(dom, "<svg");
    EXPECT_EQ(svgs, 3 + a.activations.size() + a.weights.size());
    EXPECT_GT(count(dom, "class=\"bar\""), 10u);
    EXPECT_NE(dom.find("render test"), std::string::npos);

    std::string ignored;
    const fs::path png = dir / "report.png";
    ASSERT_EQ(run(chromium + flags + "--hide-scrollbars --window-size=1280,1600 --screenshot=" + png.string() + " " +
                      url + " 2>&1",
                  ignored),
              0)
        << ignored;
    ASSERT_TRUE(fs::exists(png));
    // A blank page of this size compresses to a few KB; charts and text make it far larger.
    EXPECT_GT(fs::file_size(png), 20000u);
    std::ifstream f(png, std::ios::binary);
    char sig[8] = {};
    f.read(sig, 8);
    EXPECT_EQ(std::string(sig + 1, 3), "PNG");
    fs::remove_all(dir);
}

}  // namespace
