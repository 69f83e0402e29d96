// quantsim run: runs an ONNX model on .npy inputs in batches along axis 0 and writes the first output as .npy.
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>

#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/sim/integer_executor.hpp>
#include <quantsim/sim/quantsim.hpp>
#include <optional>

#include "command.hpp"

namespace {

using namespace quantsim;

const char* const run_usage =
    "usage: quantsim run MODEL.onnx --input [NAME=]X.npy --output Y.npy [--batch N] [--threads N]\n"
    "                    [--output-name NAME] [--encodings FILE.json [--integer [--profile P]]] [--quiet]\n"
    "\n"
    "Runs the model on the samples in X.npy (split into batches along axis 0) and writes the model's first output\n"
    "(or --output-name) for all samples, concatenated along axis 0, as a float32 .npy file.\n"
    "\n"
    "options:\n"
    "  --input [NAME=]FILE  a .npy file for a model input (float32 or float64; float64 is converted). NAME may be\n"
    "                       left out when the model has one input. Repeat for models with several inputs; every\n"
    "                       file must have the same number of samples along axis 0.\n"
    "  --output FILE        where to write the output (.npy, float32), atomically\n"
    "  --batch N            samples per run (default: the model's fixed batch size, else 32)\n"
    "  --threads N          threads for the kernels (default: all cores)\n"
    "  --output-name NAME   write this model output (or intermediate value) instead of the first output\n"
    "  --encodings FILE     run the simulated model: every tensor named in this AIMET encodings file (0.6.1,\n"
    "                       1.0.0 or 2.0.0) is fake-quantized with its encoding\n"
    "  --integer            with --encodings: compute what an int8 runtime computes (uint8/int8 tensors, int32\n"
    "                       accumulation, the runtime's requantization and rounding) instead of fake-quantizing;\n"
    "                       see docs/integer.md\n"
    "  --profile P          the runtime --integer emulates: onnxruntime (default; ONNX Runtime running the QDQ\n"
    "                       export) or tflite (the TFLite integer specification)\n"
    "  --quiet              no timing line on stderr\n"
    "  -h, --help           this text\n";

tensor to_model_type(tensor t, const value_info& in, const std::string& file) {
    if (t.type() == in.type) return t;
    if (t.type() == dtype::float64 && in.type == dtype::float32) {
        tensor f = tensor::empty(t.shape(), dtype::float32);
        const double* s = t.data<double>();
        for (std::int64_t i = 0; i < t.numel(); ++i) f.f32()[i] = static_cast<float>(s[i]);
        return f;
    }
    QUANTSIM_THROW(invalid_argument, file, ": holds ", name_of(t.type()), " data but model input '", in.name, "' is ",
                   name_of(in.type));
}

tensor to_float32(const tensor& t, const std::string& what) {
    if (t.type() == dtype::float32) return t;
    tensor f = tensor::empty(t.shape(), dtype::float32);
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        float v = 0;
        switch (t.type()) {
            case dtype::float64: v = static_cast<float>(t.data<double>()[i]); break;
            case dtype::int64: v = static_cast<float>(t.data<std::int64_t>()[i]); break;
            case dtype::int32: v = static_cast<float>(t.data<std::int32_t>()[i]); break;
            case dtype::int16: v = t.data<std::int16_t>()[i]; break;
            case dtype::uint16: v = t.data<std::uint16_t>()[i]; break;
            case dtype::int8:
            case dtype::int4: v = t.data<std::int8_t>()[i]; break;
            case dtype::uint8:
            case dtype::uint4: v = t.data<std::uint8_t>()[i]; break;
            case dtype::boolean: v = t.data<bool>()[i] ? 1.f : 0.f; break;
            case dtype::float32: break;
        }
        f.f32()[i] = v;
    }
    (void)what;
    return f;
}

int run_run(const std::vector<std::string>& argv) {
    cli::args a(argv, {"--input", "--output", "--batch", "--threads", "--output-name", "--encodings", "--profile"},
                {"--quiet", "--integer"});
    a.expect_positionals(1, "MODEL.onnx");
    const auto inputs_spec = a.values("--input");
    if (inputs_spec.empty()) throw cli::usage_error("missing --input");
    const auto out_path = a.value("--output");
    if (!out_path) throw cli::usage_error("missing --output");
    const std::int64_t threads = a.int_value("--threads", 0, 1, 4096);
    const bool integer = a.flag("--integer");
    if (integer && !a.value("--encodings")) throw cli::usage_error("--integer needs --encodings FILE");
    if (a.value("--profile") && !integer) throw cli::usage_error("--profile needs --integer");
    integer_options io;
    io.num_threads = static_cast<int>(threads);
    if (const auto p = a.value("--profile")) {
        if (*p != "onnxruntime" && *p != "tflite")
            throw cli::usage_error("--profile must be onnxruntime or tflite, got '" + *p + "'");
        io.profile = parse_integer_profile(*p);
    }
    const std::int64_t batch_arg = a.int_value("--batch", 0, 1, std::int64_t{1} << 31);

    graph g = load_onnx(a.positionals()[0]);
    if (g.inputs.empty()) QUANTSIM_THROW(invalid_argument, a.positionals()[0], ": the model has no inputs");

    // Match the files to the model inputs.
    std::map<std::string, tensor> data;
    for (const auto& spec : inputs_spec) {
        std::string name, file = spec;
        if (auto eq = spec.find('='); eq != std::string::npos && eq > 0) {
            name = spec.substr(0, eq);
            file = spec.substr(eq + 1);
        } else if (g.inputs.size() == 1) {
            name = g.inputs[0].name;
        } else {
            std::string names;
            for (const auto& in : g.inputs) names += (names.empty() ? "" : ", ") + in.name;
            throw cli::usage_error("the model has " + std::to_string(g.inputs.size()) + " inputs (" + names +
                                   "): name them, --input NAME=FILE");
        }
        const value_info* in = nullptr;
        for (const auto& v : g.inputs)
            if (v.name == name) in = &v;
        if (!in) QUANTSIM_THROW(invalid_argument, "--input ", spec, ": the model has no input '", name, "'");
        if (data.count(name)) throw cli::usage_error("input '" + name + "' is given twice");
        tensor t = to_model_type(load_npy(file), *in, file);
        if (t.rank() == 0) QUANTSIM_THROW(invalid_argument, file, ": a scalar has no samples along axis 0");
        if (in->shape_known) {
            bool ok = in->shape.size() == static_cast<std::size_t>(t.rank());
            for (std::size_t i = 1; ok && i < in->shape.size(); ++i) ok = in->shape[i] < 0 || in->shape[i] == t.shape()[i];
            if (!ok)
                QUANTSIM_THROW(shape_error, file, ": shape ", to_string(t.shape()), " does not fit model input '", name,
                               "' ", to_string(*in));
        }
        data.emplace(name, std::move(t));
    }
    for (const auto& in : g.inputs)
        if (!data.count(in.name)) throw cli::usage_error("no --input for model input '" + in.name + "'");
    const std::int64_t samples = data.begin()->second.dim(0);
    if (samples == 0) QUANTSIM_THROW(invalid_argument, "input '", data.begin()->first, "' has no samples (axis 0 is empty)");
    for (const auto& [name, t] : data)
        if (t.dim(0) != samples)
            QUANTSIM_THROW(shape_error, "input '", name, "' has ", t.dim(0), " samples along axis 0, input '",
                           data.begin()->first, "' has ", samples);

    // Batch size: what the user asked, else the model's fixed batch, else 32.
    std::int64_t batch = batch_arg;
    const value_info& first_in = g.inputs[0];
    const std::int64_t fixed = first_in.shape_known && !first_in.shape.empty() ? first_in.shape[0] : -1;
    if (batch == 0) batch = fixed > 0 ? fixed : 32;
    if (fixed > 0 && batch != fixed)
        QUANTSIM_THROW(invalid_argument, "model input '", first_in.name, "' has a fixed batch of ", fixed,
                       "; --batch ", batch, " cannot run");
    if (fixed > 0 && samples % fixed != 0)
        QUANTSIM_THROW(invalid_argument, "model input '", first_in.name, "' has a fixed batch of ", fixed, " but the input has ",
                       samples, " samples (not a multiple)");

    std::string fetch = a.value("--output-name").value_or(g.outputs.at(0).name);
    executor_options eo;
    eo.num_threads = static_cast<int>(threads);
    // With --encodings the executor is QuantSim's: weights fake-quantized, activations through hooks.
    std::optional<quant_sim> sim;
    std::optional<executor> plain;
    std::optional<integer_executor> int_exec;
    if (const auto enc = a.value("--encodings")) {
        quantsim_options so;
        so.num_threads = static_cast<int>(threads);
        sim.emplace(quant_sim::from_encodings(std::move(g), load_encodings(*enc), so));
        if (integer) int_exec.emplace(*sim, io);
    } else {
        plain.emplace(std::move(g), eo);
    }
    executor* ex = int_exec ? nullptr : (sim ? &sim->sim_executor() : &*plain);

    const auto t0 = std::chrono::steady_clock::now();
    tensor result;
    std::int64_t done = 0, batches = 0;
    std::int64_t row_elems = -1;
    while (done < samples) {
        const std::int64_t n = std::min(batch, samples - done);
        std::map<std::string, tensor> feeds;
        for (const auto& [name, t] : data) feeds.emplace(name, t.slice(done, done + n));
        auto outs = ex ? ex->run(feeds, {fetch}) : int_exec->run(feeds, {fetch});
        auto it = outs.find(fetch);
        if (it == outs.end()) QUANTSIM_THROW(invalid_argument, "the model produced no value '", fetch, "'");
        tensor y = to_float32(it->second, fetch);
        if (y.rank() == 0 || y.dim(0) != n)
            QUANTSIM_THROW(shape_error, "output '", fetch, "' has shape ", to_string(y.shape()), " for a batch of ", n,
                           " samples: it is not batched along axis 0 (run with --batch ", samples, " to process all at once)");
        const std::int64_t row = n ? y.numel() / n : 0;
        if (!result.defined()) {
            shape_t s = y.shape();
            s[0] = samples;
            result = tensor::empty(s, dtype::float32);
            row_elems = row;
        } else {
            shape_t expect = result.shape();
            expect[0] = n;
            if (y.shape() != expect)
                QUANTSIM_THROW(shape_error, "output '", fetch, "' changed shape between batches: ", to_string(y.shape()),
                               " after ", to_string(expect));
        }
        if (row_elems > 0) std::memcpy(result.f32() + done * row_elems, y.f32(), static_cast<std::size_t>(n * row_elems) * 4);
        done += n;
        ++batches;
    }
    save_npy(*out_path, result);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!a.flag("--quiet"))
        std::cerr << "quantsim run: " << samples << " samples in " << batches << " batches of up to " << batch << ", "
                  << secs << " s (" << (secs > 0 ? static_cast<double>(samples) / secs : 0.0) << " samples/s); wrote "
                  << *out_path << ' ' << to_string(result.shape()) << '\n';
    return 0;
}

}  // namespace

QUANTSIM_CLI_COMMAND(run, "run a model on .npy inputs in batches and write its output as .npy", run_usage, run_run);
