// Top-1 accuracy of a model (any callable from a batch of inputs to the model outputs) on a labelled data set.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include <quantsim/core/error.hpp>

#include "dataset.hpp"

namespace quantsim::cli {

struct eval_result {
    std::int64_t samples = 0;
    std::int64_t correct = 0;
    double seconds = 0;
    double top1() const { return samples ? static_cast<double>(correct) / static_cast<double>(samples) : 0.0; }
};

using forward_fn = std::function<std::vector<tensor>(const std::vector<tensor>&)>;

/// Runs `forward` over the data in batches; the first output must be [batch, classes] (scores or probabilities).
inline eval_result evaluate_top1(const forward_fn& forward, const dataset& data, const std::vector<std::int64_t>& labels,
                                 std::int64_t batch) {
    if (static_cast<std::int64_t>(labels.size()) < (data.kept.empty() ? data.samples : data.kept.back() + 1))
        QUANTSIM_THROW(shape_error, "labels: ", labels.size(), " labels for ", data.samples, " samples");
    eval_result r;
    const auto t0 = std::chrono::steady_clock::now();
    std::int64_t s = 0;
    for (const auto& b : data.batches(batch)) {
        const std::vector<tensor> out = forward(b);
        if (out.empty()) QUANTSIM_THROW(graph_error, "the model has no outputs");
        const tensor& y = out[0];
        const std::int64_t n = b[0].dim(0);
        if (y.rank() != 2 || y.dim(0) != n)
            QUANTSIM_THROW(shape_error, "the model's first output has shape ", to_string(y.shape()),
                           "; top-1 needs [batch, classes]");
        const std::int64_t c = y.dim(1);
        for (std::int64_t i = 0; i < n; ++i, ++s) {
            const float* row = y.f32() + i * c;
            std::int64_t best = 0;
            for (std::int64_t k = 1; k < c; ++k)
                if (row[k] > row[best]) best = k;
            const std::int64_t original = data.kept.empty() ? s : data.kept[static_cast<std::size_t>(s)];
            r.correct += best == labels[static_cast<std::size_t>(original)];
            ++r.samples;
        }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace quantsim::cli
