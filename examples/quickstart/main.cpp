// The README's example: quantize an ONNX model to W4A8 per-channel, calibrate, simulate, export.
//   example_quickstart MODEL.onnx CALIB.npy OUT_DIR
#include <algorithm>
#include <filesystem>
#include <iostream>

#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/sim/quantsim.hpp>

int main(int argc, char** argv) {
    if (argc != 4) {
        std::cerr << "usage: example_quickstart MODEL.onnx CALIB.npy OUT_DIR\n";
        return 2;
    }
    try {
        quantsim::graph model = quantsim::load_onnx(argv[1]);
        quantsim::quantsim_options options;
        options.config = quantsim::quantsim_config::builtin("per_channel");  // or quantsim_config::load("my.json")
        options.param_bitwidth = 4;
        options.activation_range = quantsim::parse_range_method("sqnr");
        quantsim::quant_sim sim(std::move(model), options);

        const quantsim::tensor calib = quantsim::load_npy(argv[2]);
        std::vector<quantsim::tensor> batches;
        for (std::int64_t i = 0; i < calib.dim(0); i += 32)
            batches.push_back(calib.slice(i, std::min(calib.dim(0), i + 32)));
        sim.compute_encodings(batches);

        const quantsim::tensor y = sim.forward(calib.slice(0, std::min<std::int64_t>(8, calib.dim(0))));
        const std::filesystem::path out(argv[3]);
        std::filesystem::create_directories(out);
        sim.export_encodings(out / "model.encodings.json");
        sim.export_qdq(out / "model_qdq.onnx");
        std::cout << sim.summary().substr(0, sim.summary().find('\n')) << "\noutput " << quantsim::to_string(y.shape())
                  << ", wrote " << (out / "model.encodings.json").string() << " and model_qdq.onnx\n";
    } catch (const quantsim::error& e) {
        std::cerr << e.what() << "\n";
        return 1;
    }
    return 0;
}
