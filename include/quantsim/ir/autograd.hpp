// Reverse-mode gradients over the graph IR: a tape that runs a graph forward, keeps what each node's backward rule
// needs, and then computes gradients of seeded values (a loss gradient) with respect to chosen parameters and model
// inputs. See docs/qat.md.
//
// Forward values come from the ordinary op kernels (op_registry), so a training forward computes exactly what
// inference computes; an op whose training forward differs (BatchNormalization with batch statistics, Clip with
// opset-9 attributes) has its own forward in its rule. Backward rules live in a grad_registry keyed by op type; users
// may add or replace rules. A node that must be differentiated but has no rule is an unsupported_error naming it.
//
// Value transforms (fake quantizers for QAT) sit on values: on a parameter or model input they apply when it is read,
// on a node output as it is produced. Their backward maps the gradient of the transformed value to the raw one (and
// may record gradients of the transform's own parameters, e.g. LSQ scales).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/ir/graph.hpp>
#include <quantsim/ir/op.hpp>

namespace quantsim {

/// What a rule's forward sees. Fill `outputs` (one per node output) and, if the backward needs more than the inputs
/// and outputs, `saved`. `state_updates` lets a training forward replace parameter inputs (BatchNormalization's
/// running statistics): (input index, new value); the tape applies them when that input is a parameter.
struct grad_forward_context {
    const node& n;
    const std::vector<const tensor*>& inputs;  ///< nullptr for an omitted optional input
    std::vector<tensor>& outputs;
    std::vector<tensor>& saved;
    std::vector<std::pair<std::size_t, tensor>>& state_updates;
    bool training;       ///< training mode (BatchNormalization uses batch statistics)
    float bn_momentum;   ///< running = momentum * running + (1 - momentum) * batch (ONNX's convention)
};

/// What a rule's backward sees. Return one tensor per node input: the gradient with the input's shape, or an
/// undefined tensor where needs_grad is false (or the input is not differentiable).
struct grad_backward_context {
    const node& n;
    const std::vector<const tensor*>& inputs;        ///< the values the forward read (after transforms)
    const std::vector<const tensor*>& outputs;       ///< the values the forward produced (before transforms)
    const std::vector<tensor>& saved;
    const std::vector<const tensor*>& grad_outputs;  ///< nullptr where no gradient reaches that output (zero)
    const std::vector<bool>& needs_grad;             ///< per input
    bool training;
};

/// Returns false to let the op's kernel compute the outputs instead (e.g. BatchNormalization outside training).
using grad_forward_fn = std::function<bool(grad_forward_context&)>;
using grad_backward_fn = std::function<std::vector<tensor>(const grad_backward_context&)>;

/// Gradient rule of one op type. `forward` is optional: without it the op's kernel computes the outputs.
struct grad_rule {
    std::string op_type;
    std::string domain;  ///< "" = default ONNX domain
    grad_forward_fn forward;
    grad_backward_fn backward;
};

/// The set of backward rules. global() holds the built-in ones (registered on first use).
class grad_registry {
public:
    static grad_registry& global();
    void add(grad_rule rule);  ///< replaces an existing rule of the same (domain, op_type)
    const grad_rule* find(std::string_view op_type, std::string_view domain = "") const;
    std::vector<std::string> op_types() const;

private:
    std::vector<grad_rule> rules_;
};

/// Registers the built-in rules: Conv, BatchNormalization, Gemm, MatMul, Add, Sub, Mul, Div, Neg, Clip, Relu,
/// LeakyRelu, Sigmoid, HardSigmoid, HardSwish, GlobalAveragePool, MaxPool, Reshape, Flatten,
/// Transpose, Squeeze, Unsqueeze, Identity, Softmax, Dropout.
void register_builtin_grad_rules(grad_registry& registry);

/// A differentiable function on one value (fake quantization in QAT).
struct value_transform {
    /// y = f(x). Must not modify x.
    std::function<tensor(const tensor& x)> forward;
    /// dL/dx from x and dL/dy. May record gradients of the transform's own parameters.
    std::function<tensor(const tensor& x, const tensor& grad_y)> backward;
    /// The transform learns (LSQ scales): its value is differentiated even when no wrt depends on it.
    bool learnable = false;
};

struct autograd_options {
    int num_threads = 0;  ///< 0 = default_num_threads()
    /// Training mode: BatchNormalization normalizes with batch statistics and updates its running statistics.
    bool training = false;
    float bn_momentum = 0.9f;
    /// Parameters read as run-time inputs (changeable by set_param without rebuilding kernels; differentiable).
    /// Empty = every float32 parameter with more than one element.
    std::set<std::string, std::less<>> variables{};
    const op_registry* ops = nullptr;       ///< nullptr = op_registry::global()
    const grad_registry* rules = nullptr;   ///< nullptr = grad_registry::global()
};

/// Forward with a tape, then backward. Not thread-safe; one forward/backward at a time.
class autograd_tape {
public:
    /// The graph is copied and shape-inferred. Throws what kernel creation throws (unsupported ops, bad attributes).
    explicit autograd_tape(graph g, autograd_options options = {});
    ~autograd_tape();
    autograd_tape(autograd_tape&&) noexcept;
    autograd_tape& operator=(autograd_tape&&) noexcept;

    const graph& model() const noexcept;  ///< parameters as currently set
    const tensor& param(const std::string& name) const;
    /// Replaces a parameter's value (same shape and dtype; shape_error / invalid_argument naming it otherwise).
    void set_param(const std::string& name, tensor value);
    bool is_variable(std::string_view param) const;

    void set_training(bool training) noexcept;
    bool training() const noexcept;
    void set_num_threads(int n) noexcept;
    /// BatchNormalization running statistics in training mode: running = m * running + (1 - m) * batch.
    void set_bn_momentum(float m) noexcept;

    /// Transforms by value name (a parameter, model input or node output); invalid_argument for unknown names.
    void set_transform(const std::string& value, value_transform t);
    void remove_transform(const std::string& value);
    void clear_transforms();

    /// Runs the graph on named inputs and records the tape. Returns the fetched values (after transforms; empty
    /// fetch = model outputs). Missing feeds are graph_error naming the input.
    std::map<std::string, tensor> forward(const std::map<std::string, tensor>& feeds,
                                          const std::vector<std::string>& fetch = {});
    /// Positional single-call convenience: inputs in model().inputs order; returns the model outputs.
    std::vector<tensor> forward(const std::vector<tensor>& inputs);

    /// Gradients of sum_v <seed_v, v> (v after its transform) with respect to `wrt` (parameters or model inputs,
    /// raw values before their transforms) after the last forward. A wrt the seeds do not depend on gets zeros.
    /// Throws invalid_argument for unknown names, unsupported_error naming a node without a rule, and
    /// graph_error when there is no recorded forward.
    std::map<std::string, tensor> backward(const std::map<std::string, tensor>& seeds,
                                           const std::vector<std::string>& wrt);

    /// A recorded value of the last forward (after its transform), or an undefined tensor.
    tensor value(std::string_view name) const;
    /// Drops the recorded tape (frees the activations).
    void clear_tape();
    /// Bytes of buffers kept between steps for reuse (at most one step's recorded values: they are what the next
    /// step of the same shapes needs).
    std::size_t cached_bytes() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// Mean softmax cross-entropy over a batch, computed stably (log-sum-exp), and its gradient w.r.t. the logits.
struct cross_entropy_result {
    double loss = 0;          ///< mean over the batch
    tensor grad;              ///< d loss / d logits, the logits' shape
    std::int64_t correct = 0; ///< rows whose argmax equals the label
};
/// logits [N, C] (or [N, C, 1, ...]: everything after axis 0 is the class axis), labels int64 or int32 [N] in
/// [0, C). label_smoothing in [0, 1): target = (1 - eps) * onehot + eps / C. Errors name the bad label's row.
cross_entropy_result softmax_cross_entropy(const tensor& logits, const tensor& labels, float label_smoothing = 0.0f);

}  // namespace quantsim
