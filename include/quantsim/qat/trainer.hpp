// Quantization-aware training over a quant_sim: the simulated model (fake-quantized weights and activations, as
// sim.forward() computes it) is run on an autograd tape; weights and the quantizers' encodings are learned with
// cross-entropy on labelled batches, then written back into the quant_sim (sim.update_param, set_encoding with
// freeze). See docs/qat.md.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/autograd.hpp>
#include <quantsim/qat/optimizer.hpp>
#include <quantsim/quant/encoding.hpp>
#include <quantsim/sim/quantsim.hpp>

namespace quantsim {

/// How the quantizers' encodings behave during training (the input gradient is the STE in every case).
enum class qat_range_mode : std::uint8_t {
    fixed,           ///< activation encodings fixed; weight encodings recomputed from the weights (min/max) each step
    lsq,             ///< LSQ / LSQ+: scale (and, for asymmetric grids, zero point) learned
    range_learning,  ///< AIMET's range learning: (min, max) per group learned
};

struct qat_options {
    qat_range_mode range_mode = qat_range_mode::lsq;
    bool lsq_grad_scaling = true;  ///< LSQ's 1 / sqrt(N * Qp) on the scale and zero-point gradients
    optimizer_options weight_optimizer{optimizer_kind::adam, 1e-3};
    optimizer_options quantizer_optimizer{optimizer_kind::adam, 1e-3};
    bool cosine_schedule = true;       ///< cosine decay of both learning rates to min_lr_fraction over the run
    double min_lr_fraction = 0.0;
    std::int64_t warmup_steps = 0;
    int batch_size = 32;
    int epochs = 1;
    /// false (default): BatchNormalization stays in inference mode (its running statistics are constants and
    /// gamma/beta train), AIMET's recommendation for QAT. true: batch statistics during training with the running
    /// statistics updated (bn_momentum); re-estimate them afterwards with reestimate_bn_statistics().
    bool bn_training = false;
    float bn_momentum = 0.9f;
    /// Parameters to train. Empty: Conv/Gemm weights and biases, MatMul parameter operands, BatchNormalization
    /// scale and bias, and parameter operands of Add/Sub/Mul with more than one element.
    std::vector<std::string> trainable{};
    float label_smoothing = 0.0f;
    int num_threads = 0;       ///< 0 = default_num_threads()
    std::uint64_t seed = 0;    ///< shuffling of the training set per epoch
    /// The value the loss reads. Empty: the input of the final Softmax when the model ends in one, else output 0.
    std::string logits{};

    // ---- weight oscillations (Nagel et al., "Overcoming Oscillations in QAT", 2022; docs/qat.md) ----------------
    /// Track integer flips of weights with at most oscillation_max_bits (implied by dampening and freezing).
    bool track_oscillations = false;
    int oscillation_max_bits = 4;
    /// EMA momentum m of the oscillation frequency f = m * o + (1 - m) * f and of each weight's integer value.
    double oscillation_momentum = 0.01;
    /// Dampening: loss += lambda * sum((q(w) - clip(w, grid))^2) / (numel / dim0) per weight (q(w) constant);
    /// lambda follows a cosine from 0 to dampening_lambda from 25 % of the run on.
    bool dampening = false;
    double dampening_lambda = 0.1;
    /// Iterative freezing: a weight whose frequency exceeds the threshold is fixed at the rounded EMA of its integer
    /// value for the rest of training. The threshold follows a cosine from freeze_threshold to
    /// freeze_threshold_final from 25 % of the run on (nothing is frozen before).
    bool freezing = false;
    double freeze_threshold = 0.1;
    double freeze_threshold_final = 0.01;

    /// In-hindsight range estimation (Fournarakis & Nagel 2021) for per-tensor activation quantizers: the encoding
    /// used at step t comes from running min/max statistics of steps < t (range = m * range + (1 - m) * batch range,
    /// initialized with step 0's batch), updated after each step from the values the step's forward saw. These
    /// quantizers are then not learned (STE only).
    bool hindsight_activations = false;
    double hindsight_momentum = 0.9;
};

struct qat_oscillation_stats {
    std::int64_t tracked = 0;      ///< weights tracked
    std::int64_t oscillating = 0;  ///< frequency above freeze_threshold_final
    std::int64_t frozen = 0;
    double mean_frequency = 0;
};

struct qat_step_info {
    std::int64_t step = 0;  ///< 0-based, over the whole run
    int epoch = 0;
    double loss = 0;
    double lr = 0;          ///< the weights' learning rate of this step
    double dampening_loss = 0;  ///< the dampening term added to the loss (0 without dampening)
    std::int64_t correct = 0;
    std::int64_t count = 0;
    double seconds = 0;
};

struct qat_epoch_info {
    int epoch = 0;
    double mean_loss = 0;
    double train_accuracy = 0;
    std::optional<double> eval_accuracy;
    double seconds = 0;
};

struct qat_callbacks {
    std::function<void(const qat_step_info&)> on_step;
    /// After each epoch (and its evaluation when eval data were given). Return false to stop training.
    std::function<bool(const qat_epoch_info&)> on_epoch;
};

class qat_trainer {
public:
    /// Uses the sim's quantizers as they are (compute encodings first: quantizers without one are skipped).
    /// The sim must outlive the trainer. Throws invalid_argument for a bad option or unknown trainable name.
    qat_trainer(quant_sim& sim, qat_options options = {});
    ~qat_trainer();
    qat_trainer(qat_trainer&&) noexcept;
    qat_trainer& operator=(qat_trainer&&) noexcept;

    const qat_options& options() const noexcept;
    const std::string& logits() const noexcept;
    const std::vector<std::string>& trainable() const noexcept;
    autograd_tape& tape() noexcept;

    /// One optimizer step on a batch (x: the model input, labels int64 [N]) with learning rates scaled by
    /// lr_scale (the schedule's factor).
    qat_step_info train_step(const tensor& x, const tensor& labels, double lr_scale = 1.0);
    /// Epochs over (x, labels), shuffled per epoch, with the cosine schedule; optional evaluation per epoch.
    std::vector<qat_epoch_info> fit(const tensor& x, const tensor& labels, const qat_callbacks& callbacks = {},
                                    const tensor* eval_x = nullptr, const tensor* eval_labels = nullptr);
    /// Top-1 accuracy of the simulated model as currently trained (BatchNormalization in inference mode).
    double evaluate(const tensor& x, const tensor& labels, int batch_size = 64);
    /// Re-estimates BatchNormalization running statistics as the average of batch statistics of the quantized
    /// model over up to max_batches batches (needed after bn_training).
    void reestimate_bn_statistics(const tensor& x, int batch_size = 64, int max_batches = 16);

    /// Length of the run for the schedules of train_step (fit sets it); 0 = no decay.
    void set_total_steps(std::int64_t steps) noexcept;
    /// Oscillation tracking so far (zeros when not tracking).
    qat_oscillation_stats oscillation_stats() const;

    /// The current encoding of a quantizer (by tensor name) as trained.
    std::optional<quant_params> encoding(std::string_view tensor_name) const;
    /// Writes the trained weights (and BatchNormalization statistics) into the sim with update_param, then the
    /// trained encodings with set_encoding(freeze = true).
    void write_back();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace quantsim
