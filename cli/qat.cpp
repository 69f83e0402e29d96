// quantsim qat: quantization-aware training of an ONNX classifier. Writes the trained FP32 model, its encodings and
// a QDQ model, with the same meaning as `quantsim ptq`.
#include <chrono>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include <quantsim/io/file.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/qat/trainer.hpp>
#include <quantsim/sim/encodings.hpp>
#include <quantsim/sim/end_layers.hpp>
#include <quantsim/sim/quantsim.hpp>

#include "command.hpp"
#include "dataset.hpp"
#include "progress.hpp"
#include "evaluate.hpp"
#include "options.hpp"

namespace {

using namespace quantsim;

const char* const qat_usage =
    "usage: quantsim qat MODEL.onnx --train X.npy --labels Y.npy --out DIR [options]\n"
    "\n"
    "Quantization-aware training of a single-input classifier (cross-entropy on the logits: the input of a final\n"
    "Softmax, else output 0). Places quantizers as the config says, calibrates them (on --calib, else the first\n"
    "512 training samples), trains weights and encodings (LSQ by default) and writes\n"
    "  DIR/model.onnx             the trained FP32 model\n"
    "  DIR/model.encodings.json   the trained encodings, keyed by ONNX tensor names (AIMET format)\n"
    "  DIR/model_qdq.onnx         the model with QuantizeLinear/DequantizeLinear, weights as integers\n"
    "\n"
    "options:\n"
    "  --train FILE            training samples (.npy float32/float64, samples along axis 0)\n"
    "  --labels FILE           training labels (.npy int64 [N])\n"
    "  --out DIR               output folder (created if needed)\n"
    "  --calib FILE            calibration samples (default: the first 512 training samples)\n"
    "  --range M               activation range setting for the starting encodings: minmax, percentile:P, mse,\n"
    "                          sqnr or entropy (default: sqnr below 8 activation bits, as AIMET starts QAT from\n"
    "                          TF-enhanced ranges; minmax otherwise)\n"
    "  --param-range M         weight range setting (default minmax)\n"
    "  --encodings FILE        start from these encodings instead of calibrating, e.g. a `quantsim ptq` result:\n"
    "                          MODEL = DIR/model.onnx, FILE = DIR/model.encodings.json. Quantizers are placed\n"
    "                          where the file has entries and learned from there (not with --config, --param-bw,\n"
    "                          --act-bw, --per-channel or --calib)\n"
    "  --config NAME|FILE      quantsim config: default, per_channel, htp or an AIMET-format JSON (default: default)\n"
    "  --param-bw N            weight bit width, 2..16 (default 8)\n"
    "  --act-bw N              activation bit width, 2..16 (default 8)\n"
    "  --per-channel           per-channel weights (overrides the config)\n"
    "  --fuse-activations on|off  hard-swish / hard-sigmoid spelled out as Add(3)/Clip(0,6)/Mul/Div count as one\n"
    "                          op: only their output is quantized, as runtimes with a HardSwish kernel do (default:\n"
    "                          on below 8 activation bits, where a quantizer inside hard-swish costs most; off at 8)\n"
    "  --end-bw N|off          bit width of the first and last layers' weights, the model input and the last\n"
    "                          layer's outputs (default: 8 when --param-bw or --act-bw is below 8, as the LSQ and\n"
    "                          oscillation papers train 4-bit models; off = the same bit widths as the rest)\n"
    "  --epochs N              epochs (default 1)\n"
    "  --batch N               training batch (default 32)\n"
    "  --lr X                  weight learning rate, Adam (default 1e-3); cosine decay over the run\n"
    "  --quant-lr X            encoding learning rate (default 1e-3)\n"
    "  --range-mode M          lsq, range-learning (AIMET) or fixed (default lsq)\n"
    "  --bn-training           batch statistics during training, re-estimated afterwards (default: BN frozen)\n"
    "  --dampening             oscillation dampening regularizer (lambda 0 -> 0.1 from 25 % of the run)\n"
    "  --freezing              iterative freezing of oscillating weights (<= 4 bits; threshold 0.1 -> 0.01)\n"
    "  --hindsight             in-hindsight activation ranges (from the previous steps' statistics)\n"
    "  --eval FILE             report top-1 accuracy on these samples (before and after each epoch)\n"
    "  --eval-labels FILE      labels for --eval\n"
    "  --threads N             threads (default: all cores)\n"
    "  --seed N                shuffling seed (default 0)\n"
    "  --encodings-version V   0.6.1, 1.0.0 or 2.0.0 (default 1.0.0)\n"
    "  --opset N               opset of model_qdq.onnx, 13..21 (default 13; raised to 21 for int4/int16/blocks)\n"
    "  --quiet                 no progress on stderr\n"
    "  -h, --help              this text\n"
    "\n"
    "Prints one JSON line on stdout with what was written and the accuracies.\n";

tensor labels_tensor(const std::vector<std::int64_t>& v) { return tensor::from(v, {static_cast<std::int64_t>(v.size())}); }

int qat_command(const std::vector<std::string>& argv) {
    cli::args a(argv,
                {"--train", "--labels", "--out", "--calib", "--config", "--param-bw", "--act-bw", "--epochs", "--batch",
                 "--lr", "--quant-lr", "--range-mode", "--eval", "--eval-labels", "--threads", "--seed",
                 "--encodings-version", "--opset", "--encodings", "--range", "--param-range", "--fuse-activations", "--end-bw"},
                {"--per-channel", "--bn-training", "--dampening", "--freezing", "--hindsight", "--quiet"});
    a.expect_positionals(1, "MODEL.onnx");
    const auto out = a.value("--out");
    if (!out) throw cli::usage_error("missing --out");
    if (!a.value("--train") || !a.value("--labels")) throw cli::usage_error("--train and --labels are required");
    if (a.value("--eval").has_value() != a.value("--eval-labels").has_value())
        throw cli::usage_error("--eval and --eval-labels go together");
    const bool quiet = a.flag("--quiet");
    const auto start_encodings = a.value("--encodings");
    if (start_encodings)
        for (const char* f : {"--config", "--param-bw", "--act-bw", "--calib", "--range", "--param-range",
                              "--fuse-activations", "--end-bw"})
            if (a.value(f)) throw cli::usage_error(std::string("--encodings and ") + f + " do not go together");
    if (start_encodings && a.flag("--per-channel"))
        throw cli::usage_error("--encodings and --per-channel do not go together");
    const std::int64_t threads = a.int_value("--threads", 0, 1, 4096);
    const std::int64_t opset = a.int_value("--opset", 13, 13, 21);
    quantsim_options so;
    qat_options qo;
    try {
        so.config = cli::load_config(a.value("--config").value_or("default"));
        so.param_bitwidth = static_cast<int>(a.int_value("--param-bw", 8, 2, 16));
        so.activation_bitwidth = static_cast<int>(a.int_value("--act-bw", 8, 2, 16));
        // Min-max ranges at 4 bits leave the classifier at chance (50 %); SQNR ranges start it at 64 % (docs/qat.md).
        so.activation_range = parse_range_method(a.value("--range").value_or(so.activation_bitwidth < 8 ? "sqnr" : "minmax"));
        so.param_range = parse_range_method(a.value("--param-range").value_or("minmax"));
    } catch (const invalid_argument& e) {
        throw cli::usage_error(e.what());
    }
    if (a.flag("--per-channel")) so.per_channel = true;
    const bool low_bits = so.param_bitwidth < 8 || so.activation_bitwidth < 8;
    so.fuse_decomposed_activations = a.on_off("--fuse-activations", so.activation_bitwidth < 8);
    const auto end_bw = a.int_or_off("--end-bw", low_bits ? std::optional<std::int64_t>(8) : std::nullopt, 2, 16);
    so.num_threads = static_cast<int>(threads);
    qo.epochs = static_cast<int>(a.int_value("--epochs", 1, 0, 100000));
    qo.batch_size = static_cast<int>(a.int_value("--batch", 32, 1, 1 << 20));
    qo.weight_optimizer.lr = a.double_value("--lr", 1e-3, 0.0);
    qo.quantizer_optimizer.lr = a.double_value("--quant-lr", 1e-3, 0.0);
    qo.seed = static_cast<std::uint64_t>(a.int_value("--seed", 0, 0, std::int64_t{1} << 62));
    qo.num_threads = static_cast<int>(threads);
    qo.bn_training = a.flag("--bn-training");
    qo.dampening = a.flag("--dampening");
    qo.freezing = a.flag("--freezing");
    qo.hindsight_activations = a.flag("--hindsight");
    // Tracking integer flips of low-bit weights costs little and its figure (the share of oscillating weights) tells
    // whether --dampening or --freezing would help.
    qo.track_oscillations = true;
    const std::string mode = a.value("--range-mode").value_or("lsq");
    if (mode == "lsq") qo.range_mode = qat_range_mode::lsq;
    else if (mode == "range-learning") qo.range_mode = qat_range_mode::range_learning;
    else if (mode == "fixed") qo.range_mode = qat_range_mode::fixed;
    else throw cli::usage_error("--range-mode must be lsq, range-learning or fixed, got '" + mode + "'");
    encodings_version version;
    try {
        version = parse_encodings_version(a.value("--encodings-version").value_or("1.0.0"));
    } catch (const invalid_argument& e) {
        throw cli::usage_error(e.what());
    }

    const std::string model_path = a.positionals()[0];
    graph g = load_onnx(model_path);
    if (g.inputs.size() != 1) QUANTSIM_THROW(unsupported_error, model_path, ": qat needs a single-input model");
    const cli::dataset train = cli::load_dataset(g, {*a.value("--train")}, "--train", false, quiet);
    const std::vector<std::int64_t> train_labels = cli::load_labels(*a.value("--labels"));
    if (static_cast<std::int64_t>(train_labels.size()) != train.samples)
        QUANTSIM_THROW(shape_error, *a.value("--labels"), ": ", train_labels.size(), " labels for ", train.samples,
                       " training samples");
    std::optional<cli::dataset> calib;
    if (a.value("--calib")) calib = cli::load_dataset(g, {*a.value("--calib")}, "--calib", false, quiet);
    std::optional<cli::dataset> eval;
    std::vector<std::int64_t> eval_labels;
    if (a.value("--eval")) {
        eval = cli::load_dataset(g, {*a.value("--eval")}, "--eval", false, quiet);
        eval_labels = cli::load_labels(*a.value("--eval-labels"));
        if (static_cast<std::int64_t>(eval_labels.size()) != eval->samples)
            QUANTSIM_THROW(shape_error, *a.value("--eval-labels"), ": ", eval_labels.size(), " labels for ",
                           eval->samples, " samples");
    }

    std::ostringstream json;
    json << std::setprecision(6) << "{\"model\": \"" << cli::json_escape(model_path) << "\"";
    const auto t0 = std::chrono::steady_clock::now();
    quant_sim sim = start_encodings ? quant_sim::from_encodings(g, load_encodings(*start_encodings), so) : quant_sim(g, so);
    if (start_encodings) {
        // from_encodings freezes what it loads; QAT learns from there.
        if (qo.range_mode != qat_range_mode::fixed)
            for (auto& q : sim.quantizers()) q.frozen = false;
    } else {
        if (end_bw) {
            const auto ends = set_end_layers_bitwidth(sim, static_cast<int>(*end_bw), static_cast<int>(*end_bw));
            if (!quiet)
                std::cerr << "first and last layers at " << *end_bw << " bits (" << ends.params.size() << " weights, "
                          << ends.activations.size() << " activations)\n";
        }
        std::vector<tensor> cb;
        const tensor& src = calib ? calib->inputs[0] : train.inputs[0];
        const std::int64_t n = calib ? calib->samples : std::min<std::int64_t>(512, train.samples);
        for (std::int64_t s = 0; s < n; s += 32) cb.push_back(src.slice(s, std::min(n, s + 32)));
        sim.compute_encodings(cb);
    }
    const double calib_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    qat_trainer trainer(sim, qo);
    const tensor ytrain = labels_tensor(train_labels);
    const tensor yeval = eval ? labels_tensor(eval_labels) : tensor();
    if (eval) {
        const double before = trainer.evaluate(eval->inputs[0], yeval);
        if (!quiet) std::cerr << "top-1 after calibration: " << std::fixed << std::setprecision(2) << 100 * before << "%\n";
        json << ", \"calibrated_top1\": " << before;
    }
    const std::int64_t per_epoch = (train.samples + qo.batch_size - 1) / qo.batch_size;
    qat_callbacks cb;
    auto bar = std::make_shared<cli::progress>("QAT", quiet);
    cb.on_step = [&, bar](const qat_step_info& s) {
        std::ostringstream d;
        d << "epoch " << s.epoch + 1 << ", loss " << std::setprecision(4) << s.loss;
        bar->update(static_cast<std::size_t>(s.step + 1), static_cast<std::size_t>(per_epoch * qo.epochs), {}, d.str());
    };
    cb.on_epoch = [&, bar](const qat_epoch_info& e) {
        bar->finish();
        if (!quiet) {
            std::cerr << "epoch " << e.epoch + 1 << ": loss " << std::setprecision(4) << e.mean_loss << ", train top-1 "
                      << std::fixed << std::setprecision(2) << 100 * e.train_accuracy << "%";
            if (e.eval_accuracy) std::cerr << ", eval top-1 " << 100 * *e.eval_accuracy << "%";
            std::cerr << ", " << e.seconds << " s\n" << std::defaultfloat;
        }
        return true;
    };
    const auto t1 = std::chrono::steady_clock::now();
    const auto hist = trainer.fit(train.inputs[0], ytrain, cb, eval ? &eval->inputs[0] : nullptr, eval ? &yeval : nullptr);
    if (qo.bn_training) trainer.reestimate_bn_statistics(train.inputs[0], 64, 16);
    const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    trainer.write_back();
    json << ", \"calibration_seconds\": " << calib_s << ", \"training_seconds\": " << train_s
         << ", \"epochs\": " << hist.size() << ", \"steps\": " << per_epoch * static_cast<std::int64_t>(hist.size());
    if (!hist.empty()) json << ", \"final_loss\": " << hist.back().mean_loss;
    if (!hist.empty()) json << ", \"seconds_per_step\": " << train_s / static_cast<double>(per_epoch * static_cast<std::int64_t>(hist.size()));
    if (const auto os = trainer.oscillation_stats(); os.tracked > 0) {
        json << ", \"oscillating_weights\": " << os.oscillating << ", \"frozen_weights\": " << os.frozen
             << ", \"tracked_weights\": " << os.tracked;
        if (!quiet)
            std::cerr << "oscillations: " << os.oscillating << " of " << os.tracked << " tracked weights oscillating (frequency > "
                      << qo.freeze_threshold_final << "), " << os.frozen << " frozen\n";
    }
    if (eval) {
        // The exported simulation (the sim's own forward), not the trainer's tape.
        const auto r = cli::evaluate_top1([&](const std::vector<tensor>& in) { return sim.forward(in); }, *eval,
                                          eval_labels, 64);
        if (!quiet) std::cerr << "top-1 after QAT (simulated): " << std::fixed << std::setprecision(2) << 100 * r.top1() << "%\n";
        json << ", \"quantized_top1\": " << r.top1();
    }
    const std::filesystem::path dir(*out);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) QUANTSIM_THROW(io_error, "cannot create output folder '", dir.string(), "': ", ec.message());
    {
        const graph qdq = sim.qdq_model(opset);
        onnx_save_options so2;
        so2.opset = qdq.opset;
        const std::pair<std::filesystem::path, std::string> files[] = {
            {dir / "model.onnx", save_onnx_to_string(sim.model())},
            {dir / "model.encodings.json", write_encodings(sim.encodings(), version)},
            {dir / "model_qdq.onnx", save_onnx_to_string(qdq, so2)}};
        write_files_atomic(files);
    }
    if (!quiet) std::cerr << "wrote " << (dir / "model.onnx").string() << ", model.encodings.json, model_qdq.onnx\n";
    json << ", \"out\": \"" << cli::json_escape(dir.string()) << "\"}";
    std::cout << json.str() << std::endl;
    return 0;
}

}  // namespace

QUANTSIM_CLI_COMMAND(qat, "quantization-aware training: learn weights and encodings, write encodings and a QDQ model",
                     qat_usage, qat_command);
