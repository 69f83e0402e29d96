// quantsim ptq: post-training quantization of an ONNX model. Writes the FP32 model after any passes, its encodings
// (AIMET format) and a QDQ model that ONNX Runtime runs.
#include <charconv>
#include <cmath>
#include <filesystem>
#include <unistd.h>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <vector>

#include <quantsim/analysis/html_report.hpp>
#include <quantsim/analysis/quant_analysis.hpp>
#include <quantsim/io/file.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/ptq/pipeline.hpp>
#include <quantsim/sim/encodings.hpp>
#include <quantsim/sim/quantsim.hpp>

#include "command.hpp"
#include "dataset.hpp"
#include "evaluate.hpp"
#include "options.hpp"
#include "progress.hpp"

namespace {

using namespace quantsim;

const char* const ptq_usage =
    "usage: quantsim ptq MODEL.onnx --calib [NAME=]X.npy --out DIR [options]\n"
    "\n"
    "Runs the post-training pipeline (optional batch-norm folding, cross-layer equalization, range setting, then\n"
    "bias correction or AdaRound), places quantizers as the config says, calibrates them on X.npy and writes\n"
    "  DIR/model.onnx             the FP32 model (after any passes)\n"
    "  DIR/model.encodings.json   the encodings, keyed by ONNX tensor names (AIMET format)\n"
    "  DIR/model_qdq.onnx         the model with QuantizeLinear/DequantizeLinear, weights as integers\n"
    "Quantizing DIR/model.onnx with DIR/model.encodings.json (quantsim run --encodings) reproduces the simulation.\n"
    "\n"
    "options:\n"
    "  --calib [NAME=]FILE     calibration samples (.npy, float32/float64, samples along axis 0)\n"
    "  --out DIR               output folder (created if needed)\n"
    "  --config NAME|FILE      quantsim config: default, per_channel, htp, or an AIMET-format JSON file\n"
    "                          (default: default)\n"
    "  --param-bw N            weight bit width, 2..16 (default 8)\n"
    "  --act-bw N              activation bit width, 2..16 (default 8)\n"
    "  --per-channel           per-channel weights (overrides the config)\n"
    "  --fuse-activations on|off  hard-swish / hard-sigmoid spelled out as Add(3)/Clip(0,6)/Mul/Div count as one\n"
    "                          op: only their output is quantized, and the config's HardSwish rules apply, as\n"
    "                          runtimes with a HardSwish kernel do (QNN, TFLite, OpenVINO). Default off: every op\n"
    "                          of its own, as AIMET and ONNX Runtime's quantizer place them\n"
    "  --end-bw N|off          bit width of the first and last layers' weights, the model input and the last\n"
    "                          layer's outputs (4-bit recipes keep them at 8; default off: --param-bw / --act-bw)\n"
    "  --range METHOD          activation range setting: minmax, ema[:C], percentile:P, mse, sqnr (AIMET's\n"
    "                          TF-enhanced), entropy (default minmax)\n"
    "  --param-range METHOD    weight range setting, same choices (default minmax)\n"
    "  --fold-bn               fold batch norms into the layers before (or after) them\n"
    "  --cle                   cross-layer equalization with high-bias folding (ReLU6 becomes ReLU)\n"
    "  --bias-correction M     empirical or analytical (analytical folds batch norms for their statistics)\n"
    "  --adaround              learn the weight rounding (AdaRound); weights and their encodings are frozen\n"
    "  --adaround-iters N      AdaRound iterations per layer (default 10000)\n"
    "  --mixquant[=DB]         MixQuant: per layer, the fewest weight bits (2..--param-bw) whose weight SQNR\n"
    "                          reaches DB decibels (default 25); before range setting\n"
    "  --target-drop D         accuracy-driven mixed precision: the cheapest per-layer bit widths (BitOps) whose\n"
    "                          top-1 on --eval stays within D points of FP32; needs --eval and --labels\n"
    "  --mp-candidates LIST    candidates for --target-drop, e.g. a8w8,a8w4,a16w8 (default aAwP,aAw4 from\n"
    "                          --act-bw A and --param-bw P)\n"
    "  --encodings-version V   0.6.1, 1.0.0 or 2.0.0 (default 1.0.0)\n"
    "  --opset N               opset of model_qdq.onnx, 13..21 (default 13; raised to 21 for int4/int16/blocks)\n"
    "  --eval [NAME=]FILE      also report top-1 accuracy (FP32, and after every step) on these samples\n"
    "  --labels FILE           labels for --eval (.npy, int64 [N])\n"
    "  --batch N               samples per forward pass (default 32)\n"
    "  --threads N             threads (default: all cores)\n"
    "  --workers N             calibration workers, each with its own executor (default: one per thread;\n"
    "                          one with --range ema)\n"
    "  --calib-sample N        histogram ranges (sqnr, mse, percentile, entropy) count one 16-value group in N\n"
    "                          of each activation: 1 (every value), 2, 4, 8 (default) or 16; min/max stay exact.\n"
    "                          1 takes the classifier's SQNR calibration from 1.9x to 3.5x an FP32 pass\n"
    "  --allow-nonfinite       skip samples with NaN/Inf instead of failing\n"
    "  --no-report             do not write DIR/report.html (per-layer analysis of the result, as quantsim analyze)\n"
    "  --report-samples N      calibration samples the report's statistics and sensitivity use (default 32)\n"
    "  --quiet                 no progress or summary on stderr\n"
    "  -h, --help              this text\n"
    "\n"
    "Prints one JSON line on stdout with what was written and, with --eval, the accuracies.\n";

// "--mixquant" takes an optional value: "--mixquant", "--mixquant=30" or "--mixquant 30".
std::vector<std::string> normalize_optional_values(std::vector<std::string> argv) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < argv.size(); ++i) {
        if (argv[i] != "--mixquant") {
            out.push_back(argv[i]);
            continue;
        }
        double v = 0;
        const std::string next = i + 1 < argv.size() ? argv[i + 1] : std::string();
        const auto [p, ec] = std::from_chars(next.data(), next.data() + next.size(), v);
        if (!next.empty() && ec == std::errc() && p == next.data() + next.size()) {
            out.push_back("--mixquant=" + next);
            ++i;
        } else {
            out.push_back("--mixquant=");
        }
    }
    return out;
}

int ptq_command(const std::vector<std::string>& raw_argv) {
    const std::vector<std::string> argv = normalize_optional_values(raw_argv);
    cli::args a(argv,
                {"--calib", "--out", "--config", "--param-bw", "--act-bw", "--range", "--param-range",
                 "--encodings-version", "--opset", "--eval", "--labels", "--batch", "--threads", "--workers", "--calib-sample",
                 "--bias-correction", "--adaround-iters", "--mixquant", "--target-drop", "--mp-candidates", "--report-samples", "--end-bw",
                 "--fuse-activations"},
                {"--per-channel", "--allow-nonfinite", "--quiet", "--fold-bn", "--cle", "--adaround", "--no-report"});
    a.expect_positionals(1, "MODEL.onnx");
    const auto out = a.value("--out");
    if (!out) throw cli::usage_error("missing --out");
    const bool quiet = a.flag("--quiet");
    const bool allow_nonfinite = a.flag("--allow-nonfinite");
    const std::int64_t batch = a.int_value("--batch", 32, 1, std::int64_t{1} << 31);
    const std::int64_t threads = a.int_value("--threads", 0, 1, 4096);
    const std::int64_t workers = a.int_value("--workers", 0, 1, 256);  // 0: automatic
    const std::int64_t opset = a.int_value("--opset", 13, 13, 21);
    if (a.value("--eval").has_value() != a.value("--labels").has_value())
        throw cli::usage_error("--eval and --labels go together");

    ptq_options po;
    quantsim_options& o = po.sim;
    po.fold_bn = a.flag("--fold-bn");
    po.cle = a.flag("--cle");
    po.adaround = a.flag("--adaround");
    if (a.value("--adaround-iters") && !po.adaround) throw cli::usage_error("--adaround-iters needs --adaround");
    po.adaround_opts.iterations = static_cast<int>(a.int_value("--adaround-iters", 10000, 1, 10000000));
    if (!quiet) {
        // A bar with the ETA over all layers' iterations on a terminal; plain lines (one per 10%) in logs.
        po.adaround_opts.progress = [bar = std::make_shared<cli::progress>("adaround", false)](const adaround_progress& p) {
            const std::size_t total = p.layers * static_cast<std::size_t>(p.iterations);
            std::ostringstream d;
            d << p.weight << " loss " << std::setprecision(4) << p.loss;
            bar->update(p.layer * static_cast<std::size_t>(p.iterations) + static_cast<std::size_t>(p.iteration), total, {},
                        d.str());
        };
    }
    po.adaround_opts.num_threads = static_cast<int>(threads);
    try {
        po.bias_correction = parse_bias_correction_method(a.value("--bias-correction").value_or("none"));
    } catch (const invalid_argument& e) {
        throw cli::usage_error(e.what());
    }
    if (po.adaround && po.bias_correction != bias_correction_method::none)
        throw cli::usage_error("--bias-correction and --adaround are alternatives: choose one");
    try {
        o.config = cli::load_config(a.value("--config").value_or("default"));
        o.param_bitwidth = static_cast<int>(a.int_value("--param-bw", 8, 2, 16));
        o.activation_bitwidth = static_cast<int>(a.int_value("--act-bw", 8, 2, 16));
        if (a.flag("--per-channel")) o.per_channel = true;
        o.fuse_decomposed_activations = a.on_off("--fuse-activations", false);
        if (const auto e = a.int_or_off("--end-bw", std::nullopt, 2, 16)) po.end_layers_bitwidth = static_cast<int>(*e);
        o.activation_range = parse_range_method(a.value("--range").value_or("minmax"));
        o.param_range = parse_range_method(a.value("--param-range").value_or("minmax"));
    } catch (const invalid_argument& e) {
        throw cli::usage_error(e.what());
    }
    o.num_threads = static_cast<int>(threads);
    if (a.value("--mixquant")) {
        mixquant_options mo;
        mo.min_sqnr_db = a.double_value("--mixquant", 25.0);
        mo.bitwidths.clear();
        for (int b = 2; b <= o.param_bitwidth; ++b) mo.bitwidths.push_back(b);
        po.mixquant = mo;
    }
    if (a.value("--mp-candidates") && !a.value("--target-drop")) throw cli::usage_error("--mp-candidates needs --target-drop");
    if (a.value("--target-drop")) {
        if (!a.value("--eval")) throw cli::usage_error("--target-drop needs --eval and --labels (the accuracy it keeps)");
        if (po.mixquant) throw cli::usage_error("--mixquant and --target-drop both choose bit widths: choose one");
        mp_search_options mo;
        const double drop = a.double_value("--target-drop", 1.0);
        if (drop < 0 || drop > 100) throw cli::usage_error("--target-drop must be between 0 and 100 points");
        mo.allowed_drop = drop / 100.0;
        try {
            if (auto c = a.value("--mp-candidates")) {
                mo.candidates = parse_mp_candidates(*c);
            } else {
                if (o.param_bitwidth <= 4)
                    throw cli::usage_error("--target-drop with --param-bw <= 4 needs --mp-candidates");
                mo.candidates = {{o.activation_bitwidth, o.param_bitwidth}, {o.activation_bitwidth, 4}};
            }
        } catch (const invalid_argument& e) {
            throw cli::usage_error(e.what());
        }
        po.mixed_precision = mo;
    }
    encodings_version version;
    try {
        version = parse_encodings_version(a.value("--encodings-version").value_or("1.0.0"));
    } catch (const invalid_argument& e) {
        throw cli::usage_error(e.what());
    }

    const std::string model_path = a.positionals()[0];
    graph g = load_onnx(model_path);
    const cli::dataset calib = cli::load_dataset(g, a.values("--calib"), "--calib", allow_nonfinite, quiet);
    std::optional<cli::dataset> eval_data;
    std::vector<std::int64_t> labels;
    if (a.value("--eval")) {
        eval_data = cli::load_dataset(g, a.values("--eval"), "--eval", allow_nonfinite, quiet);
        labels = cli::load_labels(*a.value("--labels"));
        if (static_cast<std::int64_t>(labels.size()) != eval_data->inputs[0].dim(0) && eval_data->kept.empty())
            QUANTSIM_THROW(shape_error, *a.value("--labels"), ": ", labels.size(), " labels for ",
                           eval_data->samples, " samples");
    }

    std::ostringstream json;
    json << std::setprecision(6) << "{\"model\": \"" << cli::json_escape(model_path) << "\"";
    const auto eval_sim = [&](quant_sim& sim) {
        return cli::evaluate_top1([&](const std::vector<tensor>& in) { return sim.forward(in); }, *eval_data, labels,
                                  batch);
    };
    const auto eval_fp32 = [&](const graph& m) {
        executor_options eo;
        eo.num_threads = static_cast<int>(threads);
        executor fp(m, eo);
        return cli::evaluate_top1([&](const std::vector<tensor>& in) { return fp.run(in); }, *eval_data, labels, batch);
    };
    std::ostringstream steps_json;
    if (eval_data) {
        const auto r = eval_fp32(g);
        if (!quiet) std::cerr << "FP32 top-1: " << std::fixed << std::setprecision(2) << 100 * r.top1() << "%\n";
        json << ", \"fp32_top1\": " << r.top1();
        if (po.mixed_precision) {
            po.mixed_precision->reference_accuracy = r.top1();
            po.mixed_precision_eval = [&](quant_sim& s) { return eval_sim(s).top1(); };
            po.mixed_precision->progress = [&, bar = std::make_shared<cli::progress>("mixed precision", quiet)](
                                               const std::string& phase, std::size_t done, std::size_t total) {
                bar->update(done, total, phase);
                if (total && done == total) bar->finish();
            };
        }
    }
    double last_top1 = -1;
    const std::string wa = "W" + std::to_string(o.param_bitwidth) + "A" + std::to_string(o.activation_bitwidth);
    const auto on_step = [&](const ptq_step& s, const graph& fp32_model, quant_sim* sim) {
        if (!quiet) {
            std::cerr << s.name << ": " << std::fixed << std::setprecision(2) << s.seconds << " s\n";
            for (const auto& line : s.log) std::cerr << "  " << line << "\n";
        }
        steps_json << (steps_json.tellp() > 0 ? ", " : "") << "{\"step\": \"" << s.name
                   << "\", \"seconds\": " << s.seconds;
        if (eval_data && (sim || s.changes_fp32)) {  // steps that only configure (mixquant) change no accuracy yet
            // FP32 steps: the FP32 model's accuracy (changes only where the pass is not exact, e.g. ReLU6 -> ReLU).
            const auto r = sim ? eval_sim(*sim) : eval_fp32(fp32_model);
            if (!quiet)
                std::cerr << "  " << (sim ? wa : std::string("FP32")) << " top-1 after " << s.name << ": " << std::fixed
                          << std::setprecision(2) << 100 * r.top1() << "%\n";
            steps_json << ", \"" << (sim ? "quantized_top1" : "fp32_top1") << "\": " << r.top1();
            if (sim) last_top1 = r.top1();
        }
        steps_json << "}";
    };

    const auto t0 = std::chrono::steady_clock::now();
    po.calibration.workers = static_cast<int>(workers);
    {
        const std::int64_t sample = a.int_value("--calib-sample", 8, 1, 16);
        if ((sample & (sample - 1)) != 0) throw cli::usage_error("--calib-sample must be 1, 2, 4, 8 or 16");
        po.calibration.histogram_sample = static_cast<std::size_t>(sample);
    }
    auto calib_bar = std::make_shared<cli::progress>("calibration", quiet);
    po.calibration.progress = [calib_bar](std::size_t done, std::size_t total) {
        calib_bar->update(done, total);
        if (done == total) calib_bar->finish();
    };
    ptq_result result = run_ptq(std::move(g), calib.batches(batch), po, on_step);
    const double ptq_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    quant_sim& sim = result.sim;
    std::size_t enabled = 0;
    for (const auto& q : sim.quantizers()) enabled += sim.effective_params(q.name).has_value();
    double calib_s = 0;
    for (const auto& s : result.steps)
        if (s.name == "range_setting") calib_s = s.seconds;
    if (!quiet)
        std::cerr << "calibrated " << enabled << " quantizers on " << calib.samples << " samples; pipeline "
                  << std::fixed << std::setprecision(2) << ptq_s << " s\n";
    json << ", \"quantizers\": " << enabled << ", \"calibration_seconds\": " << calib_s
         << ", \"pipeline_seconds\": " << ptq_s;
    if (eval_data) json << ", \"quantized_top1\": " << last_top1;
    {
        // Weight storage at the chosen bit widths (enabled weight quantizers; others count as 32-bit floats).
        double bits = 0;
        for (const auto& [name, t] : sim.model().params) {
            const quantizer* q = sim.find(name);
            if (!q || q->kind != quantizer_kind::param || q->param_kind != "weight") continue;
            const auto p = sim.effective_params(name);
            bits += static_cast<double>(t.numel()) * (p ? p->bitwidth : 32);
        }
        json << ", \"weight_kib\": " << bits / 8.0 / 1024.0;
    }
    if (result.mixquant)
        json << ", \"mixquant\": {\"min_sqnr_db\": " << result.mixquant->min_sqnr_db
             << ", \"mean_bitwidth\": " << result.mixquant->mean_bitwidth() << ", \"layers\": "
             << result.mixquant->layers.size() << "}";
    if (result.mixed_precision) {
        const auto& mp = *result.mixed_precision;
        json << ", \"mixed_precision\": {\"groups\": " << mp.groups.size() << ", \"evaluations\": " << mp.evaluations
             << ", \"met_target\": " << (mp.met_target ? "true" : "false") << ", \"target_top1\": "
             << mp.target_accuracy << ", \"bitops_ratio\": " << mp.curve[mp.chosen].bitops / mp.curve.front().bitops
             << "}";
        if (!quiet) std::cerr << mp.table();
    }
    json << ", \"steps\": [" << steps_json.str() << "]";

    const std::filesystem::path dir(*out);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) QUANTSIM_THROW(io_error, "cannot create output folder '", dir.string(), "': ", ec.message());
    std::string report_html;
    if (!a.flag("--no-report")) {
        analysis_options ao;
        ao.max_samples = a.int_value("--report-samples", 32, 1, std::int64_t{1} << 40);
        cli::progress bar("report", quiet);
        ao.progress = [&](const std::string& phase, std::size_t done, std::size_t total) { bar.update(done, total, phase); };
        const quant_analysis analysis = analyze_quantization(sim, calib.batches(batch), ao);
        bar.finish();
        report_content rc;
        rc.title = "quantsim ptq: " + std::filesystem::path(model_path).filename().string();
        rc.summary = {{"model", model_path},
                      {"quantization", wa + (o.per_channel.value_or(false) ? " per-channel" : "") + ", config " +
                                           a.value("--config").value_or("default")},
                      {"calibration samples", std::to_string(calib.samples)},
                      {"pipeline time", std::to_string(ptq_s) + " s"}};
        report_table steps{"PTQ steps", {"step", "seconds", "what it did"}, {}};
        for (const auto& st : result.steps) {
            std::string what;
            if (!st.log.empty()) what = st.log.back();
            steps.rows.push_back({st.name, std::to_string(st.seconds), what});
        }
        rc.tables.push_back(std::move(steps));
        rc.analysis = &analysis;
        if (result.mixed_precision) rc.mixed_precision = &*result.mixed_precision;
        if (result.mixquant) rc.mixquant = &*result.mixquant;
        report_html = render_html_report(rc);
    }
    // All three serialized first, then written as one unit: a failure leaves an earlier run's outputs intact.
    {
        const graph qdq = sim.qdq_model(opset);
        onnx_save_options qo;
        qo.opset = qdq.opset;
        std::vector<std::pair<std::filesystem::path, std::string>> files = {
            {dir / "model.onnx", save_onnx_to_string(sim.model())},
            {dir / "model.encodings.json", write_encodings(sim.encodings(), version)},
            {dir / "model_qdq.onnx", save_onnx_to_string(qdq, qo)}};
        if (!report_html.empty()) files.emplace_back(dir / "report.html", std::move(report_html));
        write_files_atomic(files);
    }
    if (!quiet)
        std::cerr << "wrote " << (dir / "model.onnx").string() << ", model.encodings.json, model_qdq.onnx"
                  << (a.flag("--no-report") ? "" : ", report.html") << "\n";
    json << ", \"out\": \"" << cli::json_escape(dir.string()) << "\"}";
    std::cout << json.str() << std::endl;
    return 0;
}

}  // namespace

QUANTSIM_CLI_COMMAND(ptq, "post-training quantization: calibrate, write encodings and a QDQ model", ptq_usage, ptq_command);
