// quantsim eval: top-1 accuracy of a model (FP32, or simulated with an encodings file) on labelled samples.
#include <iomanip>
#include <iostream>

#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/sim/quantsim.hpp>

#include "command.hpp"
#include "dataset.hpp"
#include "evaluate.hpp"

namespace {

using namespace quantsim;

const char* const eval_usage =
    "usage: quantsim eval MODEL.onnx --data [NAME=]X.npy --labels Y.npy [--encodings FILE.json] [options]\n"
    "\n"
    "Prints one JSON line: the top-1 accuracy of the model's first output ([batch, classes]) against the labels,\n"
    "and the time taken. With --encodings, the model is simulated with those encodings (every tensor named in the\n"
    "file is quantized as it says).\n"
    "\n"
    "options:\n"
    "  --data [NAME=]FILE   samples (.npy, float32/float64, along axis 0)\n"
    "  --labels FILE        class labels (.npy, int64 [N])\n"
    "  --encodings FILE     AIMET encodings (0.6.1, 1.0.0 or 2.0.0)\n"
    "  --batch N            samples per forward pass (default 32)\n"
    "  --threads N          threads (default: all cores)\n"
    "  --allow-nonfinite    skip samples with NaN/Inf instead of failing\n"
    "  -h, --help           this text\n";

int run_eval(const std::vector<std::string>& argv) {
    cli::args a(argv, {"--data", "--labels", "--encodings", "--batch", "--threads"}, {"--allow-nonfinite", "--quiet"});
    a.expect_positionals(1, "MODEL.onnx");
    if (!a.value("--labels")) throw cli::usage_error("missing --labels");
    const std::int64_t batch = a.int_value("--batch", 32, 1, std::int64_t{1} << 31);
    const std::int64_t threads = a.int_value("--threads", 0, 1, 4096);
    const std::string model_path = a.positionals()[0];

    const auto t0 = std::chrono::steady_clock::now();
    graph g = load_onnx(model_path);
    const cli::dataset data = cli::load_dataset(g, a.values("--data"), "--data", a.flag("--allow-nonfinite"), true);
    const auto labels = cli::load_labels(*a.value("--labels"));
    if (data.kept.size() == static_cast<std::size_t>(data.samples) && static_cast<std::int64_t>(labels.size()) != data.samples)
        QUANTSIM_THROW(shape_error, *a.value("--labels"), ": ", labels.size(), " labels for ", data.samples, " samples");

    cli::eval_result r;
    if (const auto enc = a.value("--encodings")) {
        quantsim_options o;
        o.num_threads = static_cast<int>(threads);
        quant_sim sim = quant_sim::from_encodings(std::move(g), load_encodings(*enc), o);
        r = cli::evaluate_top1([&](const std::vector<tensor>& in) { return sim.forward(in); }, data, labels, batch);
    } else {
        executor_options eo;
        eo.num_threads = static_cast<int>(threads);
        executor ex(std::move(g), eo);
        r = cli::evaluate_top1([&](const std::vector<tensor>& in) { return ex.run(in); }, data, labels, batch);
    }
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << std::setprecision(6) << "{\"top1\": " << r.top1() << ", \"correct\": " << r.correct
              << ", \"samples\": " << r.samples << ", \"seconds\": " << r.seconds << ", \"total_seconds\": " << total
              << ", \"encodings\": " << (a.value("--encodings") ? "true" : "false") << "}" << std::endl;
    return 0;
}

}  // namespace

QUANTSIM_CLI_COMMAND(eval, "top-1 accuracy of a model, FP32 or simulated with encodings", eval_usage, run_eval);
