// AdaRound on an image classifier: fold BatchNorm (optionally CLE), calibrate W<b>A8, evaluate nearest rounding,
// run AdaRound, evaluate again, print the per-layer table. Used for the figures in docs/adaround.md.
//
//   example_adaround MODEL.onnx CALIB_X.npy EVAL_X.npy EVAL_Y.npy [--per-tensor] [--cle] [--calib-n 256]
//                    [--eval-n 2000] [--iters 10000] [--positions 1024] [--fp-inputs] [--no-input-act-quant]
//                    [--param-bw 4] [--threads N] [--no-progress] [--im2col-depthwise] [--keep-learned]
//                    [--seed S]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/ptq/adaround.hpp>
#include <quantsim/ptq/batch_norm_fold.hpp>
#include <quantsim/ptq/cross_layer_equalization.hpp>
#include <quantsim/sim/quantsim.hpp>

using namespace quantsim;

namespace {

template <class Run>
double top1(Run&& run, const tensor& x, const tensor& y, std::int64_t n, std::int64_t batch) {
    std::int64_t correct = 0;
    for (std::int64_t b = 0; b < n; b += batch) {
        const std::int64_t e = std::min(n, b + batch);
        const tensor out = run(x.slice(b, e));
        const std::int64_t classes = out.numel() / (e - b);
        for (std::int64_t i = 0; i < e - b; ++i) {
            const float* p = out.f32() + i * classes;
            const std::int64_t arg = std::max_element(p, p + classes) - p;
            correct += arg == y.data<std::int64_t>()[b + i];
        }
    }
    return 100.0 * static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace

int main(int argc, char** argv) try {
    // Fake quantization runs OpenMP regions between the library's own thread-pool kernels; by default idle
    // OpenMP workers spin after each region and take the cores the pool needs (on this 2-core machine that cost
    // about a third of the CPU time of a short run). Passive waiting unless the user chose otherwise.
    setenv("OMP_WAIT_POLICY", "passive", /*overwrite=*/0);
    if (argc < 5) {
        std::cerr << "usage: example_adaround MODEL.onnx CALIB_X.npy EVAL_X.npy EVAL_Y.npy [options]\n";
        return 2;
    }
    bool per_tensor = false, cle = false, fp_inputs = false, input_act_q = true, progress = true;
    std::int64_t calib_n = 256, eval_n = 2000;
    int param_bw = 4, threads = 0;
    adaround_options ao;
    for (int i = 5; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw invalid_argument("missing value after " + a);
            return argv[++i];
        };
        if (a == "--per-tensor") per_tensor = true;
        else if (a == "--cle") cle = true;
        else if (a == "--fp-inputs") fp_inputs = true;
        else if (a == "--no-input-act-quant") input_act_q = false;
        else if (a == "--no-progress") progress = false;
        else if (a == "--calib-n") calib_n = std::stoll(next());
        else if (a == "--eval-n") eval_n = std::stoll(next());
        else if (a == "--iters") ao.iterations = std::stoi(next());
        else if (a == "--positions") ao.positions_per_iteration = std::stoll(next());
        else if (a == "--param-bw") param_bw = std::stoi(next());
        else if (a == "--threads") threads = std::stoi(next());
        else if (a == "--im2col-depthwise") ao.direct_depthwise = false;
        else if (a == "--keep-learned") ao.keep_nearest_if_worse = false;
        else if (a == "--seed") ao.seed = std::stoull(next());
        else throw invalid_argument("unknown option " + a);
    }
    graph g = load_onnx(argv[1]);
    const tensor cx = load_npy(argv[2]);
    const tensor ex = load_npy(argv[3]);
    const tensor ey = load_npy(argv[4]);
    calib_n = std::min(calib_n, cx.dim(0));
    eval_n = std::min(eval_n, ex.dim(0));

    const auto folded = fold_batch_norms(g);
    std::printf("folded %zu BatchNormalization nodes\n", folded.backward + folded.forward);
    if (cle) {
        auto stats = folded.stats;
        const auto r = equalize_cross_layer(g, {}, &stats);
        std::printf("CLE: %zu pairs, %zu triplets, %zu high-bias folds\n", r.pairs, r.triplets, r.high_bias_folded);
    }

    executor_options eo;
    eo.num_threads = threads;
    executor fp(g, eo);
    const std::int64_t eval_batch = 100;
    const double fp_acc = top1([&](const tensor& x) { return fp.run(std::vector<tensor>{x})[0]; }, ex, ey, eval_n, eval_batch);

    quantsim_options qo;
    qo.param_bitwidth = param_bw;
    qo.activation_bitwidth = 8;
    qo.per_channel = !per_tensor;
    qo.num_threads = threads;
    quant_sim sim(g, qo);
    std::vector<std::vector<tensor>> calib;
    for (std::int64_t b = 0; b < calib_n; b += 32) calib.push_back({cx.slice(b, std::min(calib_n, b + 32))});
    sim.compute_encodings(calib);
    const double near_acc = top1([&](const tensor& x) { return sim.forward(x); }, ex, ey, eval_n, eval_batch);

    ao.quantized_inputs = !fp_inputs;
    ao.input_activation_quantizers = input_act_q;
    ao.progress_bar = progress;
    ao.num_threads = threads;
    const adaround_report rep = adaround(sim, calib, ao);
    const double ada_acc = top1([&](const tensor& x) { return sim.forward(x); }, ex, ey, eval_n, eval_batch);

    std::cout << rep.table();
    for (const auto& s : rep.skipped) std::cout << "skipped " << s << '\n';
    std::printf("W%dA8 %s%s, %lld calibration images, %d iterations, %lld positions/iteration\n", param_bw,
                per_tensor ? "per-tensor" : "per-channel", cle ? " + CLE" : "", static_cast<long long>(calib_n),
                ao.iterations, static_cast<long long>(ao.positions_per_iteration));
    std::printf("top-1 on %lld eval images: FP32 %.2f%%  nearest %.2f%%  AdaRound %.2f%%  (AdaRound %.1f s)\n",
                static_cast<long long>(eval_n), fp_acc, near_acc, ada_acc, rep.seconds);
    return 0;
} catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    return 1;
}
