// The PTQ pipeline: sequences the passes (see pipeline.hpp).
#include <quantsim/ptq/pipeline.hpp>

#include <chrono>
#include <sstream>
#include <utility>

#include <quantsim/core/error.hpp>
#include <quantsim/ptq/add_bias.hpp>

namespace quantsim {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

template <class T>
std::string str(const T& v) {
    std::ostringstream s;
    s << v;
    return s.str();
}

}  // namespace

bias_correction_method parse_bias_correction_method(const std::string& s) {
    if (s == "none") return bias_correction_method::none;
    if (s == "empirical") return bias_correction_method::empirical;
    if (s == "analytical") return bias_correction_method::analytical;
    QUANTSIM_THROW(invalid_argument, "bias correction method '", s, "': expected none, empirical or analytical");
}

ptq_result run_ptq(graph model, const std::vector<std::vector<tensor>>& calibration, const ptq_options& options,
                   const ptq_step_callback& on_step) {
    if (options.adaround && options.bias_correction != bias_correction_method::none)
        QUANTSIM_THROW(invalid_argument,
                       "run_ptq: bias correction and AdaRound are alternatives (AdaRound already minimizes the output "
                       "error that bias correction removes): choose one");
    if (calibration.empty()) QUANTSIM_THROW(calibration_error, "run_ptq: the calibration set is empty");

    std::vector<ptq_step> steps;
    bn_stats_map stats;
    const bool fold = options.fold_bn || options.bias_correction == bias_correction_method::analytical;
    const auto report = [&](ptq_step s, quant_sim* sim) {
        steps.push_back(std::move(s));
        if (on_step) on_step(steps.back(), sim ? sim->model() : model, sim);
    };

    if (fold) {
        const auto t0 = clock_type::now();
        bn_fold_report r = fold_batch_norms(model);
        ptq_step s{"fold_bn", seconds_since(t0), std::move(r.log), true};
        if (!options.fold_bn) s.log.insert(s.log.begin(), "folding batch norms for their statistics (analytical bias correction)");
        s.log.push_back(str(r.backward) + " folded into the layer before, " + str(r.forward) + " into the layer after, " +
                        str(r.to_affine) + " left as affine ops");
        stats = std::move(r.stats);
        report(std::move(s), nullptr);
    }
    if (options.cle) {
        const auto t0 = clock_type::now();
        cle_report r = equalize_cross_layer(model, options.cle_opts, fold ? &stats : nullptr);
        ptq_step s{"cle", seconds_since(t0), std::move(r.log), true};
        s.log.push_back(str(r.pairs) + " pairs and " + str(r.triplets) + " triplets equalized, " +
                        str(r.high_bias_folded) + " high biases folded, " + str(r.relu6_replaced) +
                        " ReLU6 replaced by ReLU");
        report(std::move(s), nullptr);
    }
    // Bias correction needs a bias to correct on every layer; the zero biases cost nothing at inference.
    if (options.bias_correction != bias_correction_method::none) add_zero_biases(model);

    quant_sim sim(std::move(model), options.sim);
    {
        const auto t0 = clock_type::now();
        sim.compute_encodings(calibration, options.calibration);
        std::size_t enabled = 0;
        for (const auto& q : sim.quantizers()) enabled += sim.effective_params(q.name).has_value();
        report({"range_setting", seconds_since(t0), {str(enabled) + " quantizers calibrated"}, false}, &sim);
    }
    if (options.bias_correction != bias_correction_method::none) {
        const auto t0 = clock_type::now();
        const bias_correction_report r = options.bias_correction == bias_correction_method::empirical
                                             ? correct_bias_empirical(sim, calibration, options.bias_correction_opts)
                                             : correct_bias_analytical(sim, stats, options.bias_correction_opts);
        // The corrected biases shift the activations after them: calibrate again (frozen encodings stay).
        sim.compute_encodings(calibration, options.calibration);
        ptq_step s{"bias_correction", seconds_since(t0), {}, false};
        if (!r.log.empty()) s.log.push_back(r.log);
        s.log.push_back(str(r.layers.size()) + " layers corrected (" +
                        (options.bias_correction == bias_correction_method::empirical ? "empirical" : "analytical") +
                        "), activations recalibrated");
        report(std::move(s), &sim);
    }
    if (options.adaround) {
        const auto t0 = clock_type::now();
        const adaround_report r = adaround(sim, calibration, options.adaround_opts);
        sim.compute_encodings(calibration, options.calibration);  // AdaRound's weights are frozen
        ptq_step s{"adaround", seconds_since(t0), {}, false};
        for (const auto& l : r.layers) {
            std::ostringstream line;
            line.setf(std::ios::fixed);
            line.precision(2);
            line << l.weight << ": " << l.seconds << " s, output MSE " << std::scientific << l.mse_nearest << " -> "
                 << l.mse_adaround;
            s.log.push_back(line.str());
        }
        s.log.push_back(str(r.layers.size()) + " layers rounded in " + str(r.seconds) + " s, activations recalibrated");
        report(std::move(s), &sim);
    }
    return ptq_result{std::move(sim), std::move(steps), std::move(stats)};
}

}  // namespace quantsim
