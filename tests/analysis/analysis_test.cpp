// Quantization analysis and its HTML report: statistics are consistent with the data, sensitivity restores the
// sim, the report contains every chart and escapes names.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <quantsim/analysis/html_report.hpp>
#include <quantsim/analysis/quant_analysis.hpp>
#include <quantsim/core/error.hpp>
#include <quantsim/ir/builder.hpp>

namespace {

using namespace quantsim;

tensor randn(shape_t s, std::mt19937& rng, float sd = 1.0f) {
    tensor t = tensor::zeros(s);
    std::normal_distribution<float> d(0.0f, sd);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = d(rng);
    return t;
}

// conv1 (one channel 20x wider than the others) -> Relu -> conv2 -> GAP -> Flatten -> fc.
graph net(std::mt19937& rng) {
    graph_builder b;
    auto x = b.input("x", {-1, 3, 8, 8});
    tensor w1 = randn({6, 3, 3, 3}, rng, 0.2f);
    for (std::int64_t k = 0; k < 27; ++k) w1.f32()[k] *= 20.0f;  // channel 0
    auto pads = std::vector<std::int64_t>{1, 1, 1, 1};
    auto c1 = b.node("Conv", {x, b.param("w1", w1), b.param("b1", randn({6}, rng, 0.1f))}, {{"pads", pads}}, "conv1");
    auto r1 = b.node("Relu", {c1}, {}, "relu1");
    auto c2 = b.node("Conv", {r1, b.param("w2", randn({4, 6, 3, 3}, rng, 0.2f))}, {{"pads", pads}}, "conv2");
    auto gap = b.node("GlobalAveragePool", {c2}, {}, "gap");
    auto flat = b.node("Flatten", {gap}, {}, "flat");
    b.output(b.node("Gemm", {flat, b.param("w<fc>", randn({3, 4}, rng, 0.5f))}, {{"transB", std::int64_t{1}}}, "fc"));
    return b.build();
}

std::vector<std::vector<tensor>> data(std::mt19937& rng, int batches, std::int64_t n) {
    std::vector<std::vector<tensor>> out;
    for (int i = 0; i < batches; ++i) out.push_back({randn({n, 3, 8, 8}, rng)});
    return out;
}

// The builder names values "<node>_out_<k>": the quantizer of a node's output by the node's name.
std::string output_of(const quant_sim& sim, const std::string& node_name) {
    for (const auto& q : sim.quantizers())
        if (q.name.rfind(node_name + "_out", 0) == 0) return q.name;
    return "?";
}

constexpr double sqnr_cap_db = 200.0;          // output_sqnr_metric's value for an exact match
constexpr double sensitivity_slack_db = 0.5;   // one layer alone adds no more noise than all layers (up to noise)

TEST(analysis, statistics_match_the_data_and_the_sim_is_restored) {
    const unsigned seed = 17;
    SCOPED_TRACE("seed=" + std::to_string(seed));
    std::mt19937 rng(seed);
    quant_sim sim(net(rng));
    const auto calib = data(rng, 3, 4);
    sim.compute_encodings(calib);
    const std::string relu1 = output_of(sim, "relu1"), conv2 = output_of(sim, "conv2");
    sim.set_enabled(relu1, false);  // a disabled quantizer stays disabled and is not analyzed
    std::vector<bool> before;
    for (const auto& q : sim.quantizers()) before.push_back(q.enabled);

    analysis_options o;
    o.max_samples = 10;  // 4 + 4 + 2 of the third batch
    o.histogram_bins = 32;
    std::size_t calls = 0;
    o.progress = [&](const std::string&, std::size_t, std::size_t) { ++calls; };
    const quant_analysis a = analyze_quantization(sim, calib, o);
    EXPECT_EQ(a.samples, 10);
    EXPECT_GT(calls, 0u);
    for (std::size_t i = 0; i < before.size(); ++i) EXPECT_EQ(sim.quantizers()[i].enabled, before[i]) << i;

    ASSERT_EQ(a.weights.size(), 3u);
    const weight_analysis& w1 = a.weights[0];
    EXPECT_EQ(w1.name, "w1");
    EXPECT_EQ(w1.layer, "conv1");
    ASSERT_EQ(w1.channel_min.size(), 6u);
    for (std::size_t c = 0; c < 6; ++c) EXPECT_LE(w1.channel_min[c], w1.channel_max[c]);
    EXPECT_GT(w1.channel_spread, 8.0);  // the wide channel
    EXPECT_LT(a.weights[1].channel_spread, 4.0);
    for (const auto& w : a.weights) EXPECT_GT(w.sqnr_db, 10.0) << w.name;

    bool saw_conv2 = false;
    for (const auto& act : a.activations) {
        SCOPED_TRACE(act.name);
        EXPECT_NE(act.name, relu1);
        std::int64_t total = 0;
        for (auto c : act.histogram) total += c;
        ASSERT_EQ(act.histogram.size(), 32u);
        if (act.name == "x") {
            EXPECT_EQ(total, 10 * 3 * 8 * 8);
        }
        if (act.name == conv2) {
            saw_conv2 = true;
            EXPECT_EQ(total, 10 * 4 * 8 * 8);
        }
        EXPECT_LE(act.min, act.max);
        // min-max ranges from these very samples' batches: nothing saturates by more than half a step.
        EXPECT_EQ(act.clipped_fraction, 0.0);
        EXPECT_GT(act.sqnr_db, 20.0);
    }
    EXPECT_TRUE(saw_conv2);

    EXPECT_DOUBLE_EQ(a.fp32_metric, sqnr_cap_db);
    EXPECT_LT(a.quantized_metric, a.fp32_metric);
    ASSERT_FALSE(a.sensitivity.empty());
    bool conv1_layer = false;
    for (const auto& s : a.sensitivity) {
        SCOPED_TRACE(s.layer);
        EXPECT_GE(s.only_this, a.quantized_metric - sensitivity_slack_db);
        EXPECT_FALSE(s.quantizers.empty());
        if (s.layer == "conv1") {
            conv1_layer = true;
            // conv1 owns its weight; its output is inside the Conv->Relu supergroup (no quantizer) and relu1's
            // quantizer is disabled, so neither is listed.
            EXPECT_NE(std::find(s.quantizers.begin(), s.quantizers.end(), "w1"), s.quantizers.end());
            EXPECT_EQ(std::find(s.quantizers.begin(), s.quantizers.end(), relu1), s.quantizers.end());
        }
    }
    EXPECT_TRUE(conv1_layer);
    // conv2's layer owns conv2's output quantizer, found by walking back from it.
    for (const auto& s : a.sensitivity)
        if (s.layer == "conv2") {
            EXPECT_NE(std::find(s.quantizers.begin(), s.quantizers.end(), conv2), s.quantizers.end());
        }
}

TEST(analysis, custom_metric_and_no_sensitivity) {
    std::mt19937 rng(3);
    quant_sim sim(net(rng));
    const auto calib = data(rng, 2, 4);
    sim.compute_encodings(calib);
    int calls = 0;
    analysis_options o;
    o.sensitivity = false;
    const auto a = analyze_quantization(sim, calib, o, [&](quant_sim&) { return static_cast<double>(++calls); }, "calls");
    EXPECT_EQ(a.metric_name, "calls");
    EXPECT_EQ(calls, 2);  // FP32 and quantized only
    EXPECT_TRUE(a.sensitivity.empty());
    EXPECT_THROW(analyze_quantization(sim, {}, o), calibration_error);
    o.histogram_bins = 1;
    EXPECT_THROW(analyze_quantization(sim, calib, o), invalid_argument);
}

TEST(analysis, report_has_every_chart_and_escapes_names) {
    std::mt19937 rng(5);
    quant_sim sim(net(rng));
    const auto calib = data(rng, 2, 4);
    sim.compute_encodings(calib);
    const auto a = analyze_quantization(sim, calib);
    report_content rc;
    rc.title = "test <report>";
    rc.summary = {{"model", "net & co"}};
    rc.tables.push_back({"steps", {"step", "seconds"}, {{"range_setting", "0.1"}}});
    rc.analysis = &a;
    const std::string html = render_html_report(rc);
    EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
    EXPECT_NE(html.find("test &lt;report&gt;"), std::string::npos);
    EXPECT_NE(html.find("net &amp; co"), std::string::npos);
    EXPECT_NE(html.find("w&lt;fc&gt;"), std::string::npos);
    EXPECT_EQ(html.find("w<fc>"), std::string::npos);
    std::size_t svgs = 0;
    for (std::size_t p = html.find("<svg"); p != std::string::npos; p = html.find("<svg", p + 1)) ++svgs;
    // sensitivity + weight SQNR + activation SQNR + one histogram per activation + one range chart per 2-D weight.
    EXPECT_EQ(svgs, 3 + a.activations.size() + 3);
    // Self-contained: nothing fetched from anywhere.
    EXPECT_EQ(html.find("src=\""), std::string::npos);
    EXPECT_EQ(html.find("href=\"http"), std::string::npos);
    EXPECT_EQ(html.find("<script"), std::string::npos);

    const auto dir = std::filesystem::temp_directory_path() / ("quantsim_report_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    write_html_report(dir / "report.html", rc);
    std::ifstream f(dir / "report.html");
    std::stringstream ss;
    ss << f.rdbuf();
    EXPECT_EQ(ss.str(), html);
    std::filesystem::remove_all(dir);
}

}  // namespace
