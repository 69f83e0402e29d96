// quantsim analyze: which layer hurts? Calibrates a simulation of the model and writes DIR/report.html with per-layer
// sensitivity, SQNR of weights and activations, activation histograms with clipping ranges and per-channel weight
// ranges.
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <quantsim/analysis/html_report.hpp>
#include <quantsim/analysis/quant_analysis.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/ptq/batch_norm_fold.hpp>
#include <quantsim/sim/quantsim.hpp>

#include "command.hpp"
#include "dataset.hpp"
#include "evaluate.hpp"
#include "options.hpp"
#include "progress.hpp"

namespace {

using namespace quantsim;

const char* const analyze_usage =
    "usage: quantsim analyze MODEL.onnx --calib [NAME=]X.npy --out DIR [options]\n"
    "\n"
    "Places quantizers as the config says, calibrates them on X.npy and writes DIR/report.html: a self-contained\n"
    "page (inline SVG charts) with the model summary, per-layer sensitivity (each layer quantized alone, and all but\n"
    "it), SQNR of every weight and activation quantizer, activation histograms with the clipping ranges and\n"
    "per-channel weight ranges.\n"
    "\n"
    "options:\n"
    "  --calib [NAME=]FILE     calibration samples (.npy, samples along axis 0)\n"
    "  --out DIR               output folder (created if needed)\n"
    "  --data [NAME=]FILE      labelled evaluation samples: adds FP32 and quantized top-1 to the summary\n"
    "  --labels FILE           labels for --data (.npy, int64 [N])\n"
    "  --sensitivity METRIC    sqnr (output SQNR against FP32 on the analysis samples; default) or top1 (top-1 on\n"
    "                          --data; slower: two evaluations per layer)\n"
    "  --no-sensitivity        skip the per-layer sensitivity\n"
    "  --samples N             calibration samples used for statistics and the sqnr metric (default 128)\n"
    "  --config NAME|FILE      quantsim config: default, per_channel, htp, or an AIMET-format JSON file\n"
    "  --param-bw N            weight bit width, 2..16 (default 8)\n"
    "  --act-bw N              activation bit width, 2..16 (default 8)\n"
    "  --per-channel           per-channel weights\n"
    "  --range METHOD          activation range setting (minmax, ema[:C], percentile:P, mse, sqnr, entropy)\n"
    "  --param-range METHOD    weight range setting, same choices\n"
    "  --fold-bn               fold batch norms first (what an integer runtime executes)\n"
    "  --batch N               samples per forward pass (default 32)\n"
    "  --threads N             threads (default: all cores)\n"
    "  --allow-nonfinite       skip samples with NaN/Inf instead of failing\n"
    "  --quiet                 no progress on stderr\n"
    "  -h, --help              this text\n"
    "\n"
    "Prints one JSON line on stdout with the report's path and the headline figures.\n";

std::string fmt2(double v) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(2) << v;
    return os.str();
}

int analyze_command(const std::vector<std::string>& argv) {
    cli::args a(argv,
                {"--calib", "--out", "--data", "--labels", "--sensitivity", "--samples", "--config", "--param-bw",
                 "--act-bw", "--range", "--param-range", "--batch", "--threads"},
                {"--no-sensitivity", "--per-channel", "--fold-bn", "--allow-nonfinite", "--quiet"});
    a.expect_positionals(1, "MODEL.onnx");
    const auto out = a.value("--out");
    if (!out) throw cli::usage_error("missing --out");
    if (!a.value("--calib")) throw cli::usage_error("missing --calib");
    if (a.value("--data").has_value() != a.value("--labels").has_value())
        throw cli::usage_error("--data and --labels go together");
    const std::string metric = a.value("--sensitivity").value_or("sqnr");
    if (metric != "sqnr" && metric != "top1") throw cli::usage_error("--sensitivity must be sqnr or top1");
    if (metric == "top1" && !a.value("--data")) throw cli::usage_error("--sensitivity top1 needs --data and --labels");
    const bool quiet = a.flag("--quiet");
    const bool allow_nonfinite = a.flag("--allow-nonfinite");
    const std::int64_t batch = a.int_value("--batch", 32, 1, std::int64_t{1} << 31);
    const std::int64_t threads = a.int_value("--threads", 0, 1, 4096);
    analysis_options ao;
    ao.max_samples = a.int_value("--samples", 128, 1, std::int64_t{1} << 40);
    ao.sensitivity = !a.flag("--no-sensitivity");
    quantsim_options o;
    try {
        o.config = cli::load_config(a.value("--config").value_or("default"));
        o.param_bitwidth = static_cast<int>(a.int_value("--param-bw", 8, 2, 16));
        o.activation_bitwidth = static_cast<int>(a.int_value("--act-bw", 8, 2, 16));
        if (a.flag("--per-channel")) o.per_channel = true;
        o.activation_range = parse_range_method(a.value("--range").value_or("minmax"));
        o.param_range = parse_range_method(a.value("--param-range").value_or("minmax"));
    } catch (const invalid_argument& e) {
        throw cli::usage_error(e.what());
    }
    o.num_threads = static_cast<int>(threads);

    const std::string model_path = a.positionals()[0];
    graph g = load_onnx(model_path);
    const cli::dataset calib = cli::load_dataset(g, a.values("--calib"), "--calib", allow_nonfinite, quiet);
    std::optional<cli::dataset> data;
    std::vector<std::int64_t> labels;
    if (a.value("--data")) {
        data = cli::load_dataset(g, a.values("--data"), "--data", allow_nonfinite, quiet);
        labels = cli::load_labels(*a.value("--labels"));
    }
    const std::int64_t nodes = static_cast<std::int64_t>(g.nodes.size()), params = g.num_param_elements();
    if (a.flag("--fold-bn")) (void)fold_batch_norms(g);

    const auto t0 = std::chrono::steady_clock::now();
    quant_sim sim(std::move(g), o);
    {
        cli::progress bar("calibration", quiet);
        calibration_options co;
        co.progress = [&](std::size_t done, std::size_t total) { bar.update(done, total); };
        sim.compute_encodings(calib.batches(batch), co);
    }
    std::vector<std::pair<std::string, std::string>> summary = {
        {"model", model_path},
        {"nodes", std::to_string(nodes)},
        {"parameters", std::to_string(params)},
        {"quantization", "W" + std::to_string(o.param_bitwidth) + "A" + std::to_string(o.activation_bitwidth) + ", " +
                             (o.per_channel.value_or(false) ? "per-channel" : "per-tensor (config default)") +
                             ", activation range " + a.value("--range").value_or("minmax") +
                             (a.flag("--fold-bn") ? ", batch norms folded" : "")},
        {"calibration samples", std::to_string(calib.samples)}};
    std::size_t enabled = 0;
    for (const auto& q : sim.quantizers()) enabled += sim.effective_params(q.name).has_value();
    summary.push_back({"quantizers", std::to_string(enabled) + " with an encoding"});

    std::ostringstream json;
    json << std::setprecision(6) << "{\"model\": \"" << cli::json_escape(model_path) << "\"";
    const auto top1_of = [&](quant_sim& s) {
        return cli::evaluate_top1([&](const std::vector<tensor>& in) { return s.forward(in); }, *data, labels, batch)
            .top1();
    };
    if (data) {
        std::vector<bool> saved;
        for (const auto& q : sim.quantizers()) saved.push_back(q.enabled);
        for (auto& q : sim.quantizers()) q.enabled = false;
        const double fp = top1_of(sim);
        for (std::size_t i = 0; i < saved.size(); ++i) sim.quantizers()[i].enabled = saved[i];
        const double qt = top1_of(sim);
        summary.push_back({"top-1 on --data (" + std::to_string(data->samples) + " samples)",
                           "FP32 " + fmt2(100 * fp) + "%, quantized " + fmt2(100 * qt) + "%"});
        json << ", \"fp32_top1\": " << fp << ", \"quantized_top1\": " << qt;
    }

    quant_analysis result;
    {
        cli::progress bar("analysis", quiet);
        ao.progress = [&](const std::string& phase, std::size_t done, std::size_t total) { bar.update(done, total, phase); };
        if (metric == "top1")
            result = analyze_quantization(sim, calib.batches(batch), ao, top1_of, "top-1 on --data");
        else
            result = analyze_quantization(sim, calib.batches(batch), ao);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    summary.push_back({"analysis time", fmt2(seconds) + " s"});

    const std::filesystem::path dir(*out);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) QUANTSIM_THROW(io_error, "cannot create output folder '", dir.string(), "': ", ec.message());
    report_content rc;
    rc.title = "quantsim analysis: " + std::filesystem::path(model_path).filename().string();
    rc.summary = summary;
    rc.analysis = &result;
    write_html_report(dir / "report.html", rc);
    if (!quiet) std::cerr << "wrote " << (dir / "report.html").string() << "\n";

    const layer_sensitivity* worst = nullptr;
    for (const auto& s : result.sensitivity)
        if (!worst || s.only_this < worst->only_this) worst = &s;
    json << ", \"metric\": \"" << result.metric_name << "\", \"fp32_metric\": " << result.fp32_metric
         << ", \"quantized_metric\": " << result.quantized_metric << ", \"layers\": " << result.sensitivity.size();
    if (worst) json << ", \"most_sensitive\": \"" << cli::json_escape(worst->layer) << "\"";
    json << ", \"seconds\": " << seconds << ", \"report\": \"" << cli::json_escape((dir / "report.html").string()) << "\"}";
    std::cout << json.str() << std::endl;
    return 0;
}

}  // namespace

QUANTSIM_CLI_COMMAND(analyze, "per-layer quantization analysis: writes an HTML report with charts", analyze_usage,
                     analyze_command);
