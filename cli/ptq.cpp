// quantsim ptq: post-training quantization of an ONNX model. Writes the FP32 model after any passes, its encodings
// (AIMET format) and a QDQ model that ONNX Runtime runs.
#include <filesystem>
#include <unistd.h>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <quantsim/io/file.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/ptq/pipeline.hpp>
#include <quantsim/sim/encodings.hpp>
#include <quantsim/sim/quantsim.hpp>

#include "command.hpp"
#include "dataset.hpp"
#include "evaluate.hpp"

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
    "  --range METHOD          activation range setting: minmax, ema[:C], percentile:P, mse, sqnr (AIMET's\n"
    "                          TF-enhanced), entropy (default minmax)\n"
    "  --param-range METHOD    weight range setting, same choices (default minmax)\n"
    "  --fold-bn               fold batch norms into the layers before (or after) them\n"
    "  --cle                   cross-layer equalization with high-bias folding (ReLU6 becomes ReLU)\n"
    "  --bias-correction M     empirical or analytical (analytical folds batch norms for their statistics)\n"
    "  --adaround              learn the weight rounding (AdaRound); weights and their encodings are frozen\n"
    "  --adaround-iters N      AdaRound iterations per layer (default 10000)\n"
    "  --encodings-version V   0.6.1, 1.0.0 or 2.0.0 (default 1.0.0)\n"
    "  --opset N               opset of model_qdq.onnx, 13..21 (default 13; raised to 21 for int4/int16/blocks)\n"
    "  --eval [NAME=]FILE      also report top-1 accuracy (FP32, and after every step) on these samples\n"
    "  --labels FILE           labels for --eval (.npy, int64 [N])\n"
    "  --batch N               samples per forward pass (default 32)\n"
    "  --threads N             threads (default: all cores)\n"
    "  --workers N             calibration workers, each with its own executor (default 1)\n"
    "  --allow-nonfinite       skip samples with NaN/Inf instead of failing\n"
    "  --quiet                 no progress or summary on stderr\n"
    "  -h, --help              this text\n"
    "\n"
    "Prints one JSON line on stdout with what was written and, with --eval, the accuracies.\n";

quantsim_config load_config(const std::string& spec) {
    if (spec == "default" || spec == "per_channel" || spec == "htp") return quantsim_config::builtin(spec);
    return quantsim_config::load(spec);
}

std::string json_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        o += c;
    }
    return o;
}

int ptq_command(const std::vector<std::string>& argv) {
    cli::args a(argv,
                {"--calib", "--out", "--config", "--param-bw", "--act-bw", "--range", "--param-range",
                 "--encodings-version", "--opset", "--eval", "--labels", "--batch", "--threads", "--workers",
                 "--bias-correction", "--adaround-iters"},
                {"--per-channel", "--allow-nonfinite", "--quiet", "--fold-bn", "--cle", "--adaround"});
    a.expect_positionals(1, "MODEL.onnx");
    const auto out = a.value("--out");
    if (!out) throw cli::usage_error("missing --out");
    const bool quiet = a.flag("--quiet");
    const bool allow_nonfinite = a.flag("--allow-nonfinite");
    const std::int64_t batch = a.int_value("--batch", 32, 1, std::int64_t{1} << 31);
    const std::int64_t threads = a.int_value("--threads", 0, 1, 4096);
    const std::int64_t workers = a.int_value("--workers", 1, 1, 256);
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
    po.adaround_opts.progress_bar = !quiet && isatty(2);  // a redrawn line makes no sense in a log file
    po.adaround_opts.num_threads = static_cast<int>(threads);
    try {
        po.bias_correction = parse_bias_correction_method(a.value("--bias-correction").value_or("none"));
    } catch (const invalid_argument& e) {
        throw cli::usage_error(e.what());
    }
    if (po.adaround && po.bias_correction != bias_correction_method::none)
        throw cli::usage_error("--bias-correction and --adaround are alternatives: choose one");
    try {
        o.config = load_config(a.value("--config").value_or("default"));
        o.param_bitwidth = static_cast<int>(a.int_value("--param-bw", 8, 2, 16));
        o.activation_bitwidth = static_cast<int>(a.int_value("--act-bw", 8, 2, 16));
        if (a.flag("--per-channel")) o.per_channel = true;
        o.activation_range = parse_range_method(a.value("--range").value_or("minmax"));
        o.param_range = parse_range_method(a.value("--param-range").value_or("minmax"));
    } catch (const invalid_argument& e) {
        throw cli::usage_error(e.what());
    }
    o.num_threads = static_cast<int>(threads);
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
    json << std::setprecision(6) << "{\"model\": \"" << json_escape(model_path) << "\"";
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
        if (eval_data) {
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
    json << ", \"steps\": [" << steps_json.str() << "]";

    const std::filesystem::path dir(*out);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) QUANTSIM_THROW(io_error, "cannot create output folder '", dir.string(), "': ", ec.message());
    // All three serialized first, then written as one unit: a failure leaves an earlier run's outputs intact.
    {
        const graph qdq = sim.qdq_model(opset);
        onnx_save_options qo;
        qo.opset = qdq.opset;
        const std::pair<std::filesystem::path, std::string> files[] = {
            {dir / "model.onnx", save_onnx_to_string(sim.model())},
            {dir / "model.encodings.json", write_encodings(sim.encodings(), version)},
            {dir / "model_qdq.onnx", save_onnx_to_string(qdq, qo)}};
        write_files_atomic(files);
    }
    if (!quiet) std::cerr << "wrote " << (dir / "model.onnx").string() << ", model.encodings.json, model_qdq.onnx\n";
    json << ", \"out\": \"" << json_escape(dir.string()) << "\"}";
    std::cout << json.str() << std::endl;
    return 0;
}

}  // namespace

QUANTSIM_CLI_COMMAND(ptq, "post-training quantization: calibrate, write encodings and a QDQ model", ptq_usage, ptq_command);
