// The PTQ pipeline: sequences the passes (see pipeline.hpp).
#include <quantsim/ptq/pipeline.hpp>
#include <quantsim/sim/end_layers.hpp>

#include <chrono>
#include <map>
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
    if (options.mixquant && options.mixed_precision)
        QUANTSIM_THROW(invalid_argument,
                       "run_ptq: MixQuant and the accuracy-driven mixed precision search both choose the weight bit "
                       "widths: choose one");
    if (options.mixed_precision && !options.mixed_precision_eval)
        QUANTSIM_THROW(invalid_argument, "run_ptq: the mixed precision search needs an evaluation function");

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
    if (options.end_layers_bitwidth) {
        const auto ends = set_end_layers_bitwidth(sim, *options.end_layers_bitwidth, *options.end_layers_bitwidth);
        ptq_step s{"end_layers", 0, {}, false};
        std::string names;
        for (const auto& l : ends.first_layers) names += (names.empty() ? "" : ", ") + l;
        for (const auto& l : ends.last_layers) names += (names.empty() ? "" : ", ") + l;
        s.log.push_back("first and last layers at " + str(*options.end_layers_bitwidth) + " bits: " + names + " (" +
                        str(ends.params.size()) + " weights, " + str(ends.activations.size()) + " activations)");
        report(std::move(s), nullptr);
    }
    std::optional<mixquant_result> mq;
    if (options.mixquant) {
        const auto t0 = clock_type::now();
        mq = mixquant_search(sim, *options.mixquant);
        apply_mixquant(sim, *mq);
        ptq_step s{"mixquant", 0, {}, false};
        std::map<int, std::size_t> histogram;
        for (const auto& l : mq->layers) ++histogram[l.bitwidth];
        std::string counts;
        for (const auto& [bits, n] : histogram) counts += (counts.empty() ? "" : ", ") + str(n) + " x W" + str(bits);
        for (const auto& l : mq->layers) s.log.push_back(l.weight + ": W" + str(l.bitwidth));
        s.log.push_back(str(mq->layers.size()) + " weights at SQNR >= " + str(mq->min_sqnr_db) + " dB: " + counts +
                        "; mean " + str(mq->mean_bitwidth()) + " bits");
        s.seconds = seconds_since(t0);
        report(std::move(s), nullptr);
    }
    {
        const auto t0 = clock_type::now();
        sim.compute_encodings(calibration, options.calibration);
        std::size_t enabled = 0;
        for (const auto& q : sim.quantizers()) enabled += sim.effective_params(q.name).has_value();
        report({"range_setting", seconds_since(t0), {str(enabled) + " quantizers calibrated"}, false}, &sim);
    }
    std::optional<mp_search_result> mp;
    if (options.mixed_precision) {
        const auto t0 = clock_type::now();
        mp = mixed_precision_search(sim, calibration, options.mixed_precision_eval, *options.mixed_precision);
        ptq_step s{"mixed_precision", 0, {}, false};
        const mp_point& p = mp->curve[mp->chosen];
        for (std::size_t g = 0; g < mp->groups.size(); ++g)
            s.log.push_back((mp->groups[g].weights.empty() ? mp->groups[g].activation : mp->groups[g].weights[0]) +
                            (mp->groups[g].weights.size() > 1 ? " (+" + str(mp->groups[g].weights.size() - 1) + ")" : "") +
                            ": " + to_string(mp->candidates[p.choice[g]]));
        s.log.push_back(str(mp->groups.size()) + " groups, " + str(mp->evaluations) + " evaluations; " +
                        (mp->met_target ? "chosen" : "target not reached, kept") + ": accuracy " + str(p.accuracy) +
                        " (target " + str(mp->target_accuracy) + "), BitOps " +
                        str(p.bitops / mp->curve.front().bitops) + " of the baseline");
        s.seconds = seconds_since(t0);
        report(std::move(s), &sim);
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
    return ptq_result{std::move(sim), std::move(steps), std::move(stats), std::move(mq), std::move(mp)};
}

}  // namespace quantsim
