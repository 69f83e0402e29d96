// Data sets for the CLI: .npy files bound to model inputs, checked for NaN/Inf, cut into batches along axis 0.
#pragma once

#include <cmath>
#include <cstdint>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <quantsim/core/error.hpp>
#include <quantsim/io/npy.hpp>
#include <quantsim/ir/graph.hpp>

#include "args.hpp"

namespace quantsim::cli {

/// Samples for every model input, all with the same count along axis 0.
struct dataset {
    std::vector<tensor> inputs;  ///< in the model's input order
    std::int64_t samples = 0;
    std::vector<std::int64_t> kept;  ///< original sample indices (after dropping non-finite samples)

    /// Batches of at most `batch` samples: each a list of model inputs.
    std::vector<std::vector<tensor>> batches(std::int64_t batch) const {
        std::vector<std::vector<tensor>> out;
        for (std::int64_t s = 0; s < samples; s += batch) {
            std::vector<tensor> b;
            for (const auto& t : inputs) b.push_back(t.slice(s, std::min(samples, s + batch)));
            out.push_back(std::move(b));
        }
        return out;
    }
};

inline tensor as_float32(const tensor& t, const std::string& file) {
    if (t.type() == dtype::float32) return t;
    if (t.type() != dtype::float64)
        QUANTSIM_THROW(invalid_argument, file, ": holds ", name_of(t.type()), " data; inputs must be float32 or float64");
    tensor f = tensor::empty(t.shape(), dtype::float32);
    const double* s = t.data<double>();
    for (std::int64_t i = 0; i < t.numel(); ++i) f.f32()[i] = static_cast<float>(s[i]);
    return f;
}

/// Loads the files of an option (each "[NAME=]FILE") for the model's inputs. Non-finite samples are an error that
/// names the file and the sample, unless `allow_nonfinite`: then they are dropped (with a note on stderr).
inline dataset load_dataset(const graph& g, const std::vector<std::string>& specs, const std::string& option,
                            bool allow_nonfinite, bool quiet) {
    if (specs.empty()) throw usage_error("missing " + option);
    std::map<std::string, std::pair<tensor, std::string>> by_name;
    for (const auto& spec : specs) {
        std::string name, file = spec;
        if (auto eq = spec.find('='); eq != std::string::npos && eq > 0 && g.inputs.size() > 1) {
            name = spec.substr(0, eq);
            file = spec.substr(eq + 1);
        } else if (g.inputs.size() == 1) {
            name = g.inputs[0].name;
        } else {
            throw usage_error("the model has " + std::to_string(g.inputs.size()) + " inputs: name them, " + option +
                              " NAME=FILE");
        }
        if (!g.is_input(name)) QUANTSIM_THROW(invalid_argument, option, " ", spec, ": the model has no input '", name, "'");
        if (by_name.count(name)) throw usage_error("input '" + name + "' is given twice");
        tensor t = as_float32(load_npy(file), file);
        if (t.rank() == 0) QUANTSIM_THROW(invalid_argument, file, ": a scalar has no samples along axis 0");
        if (t.dim(0) == 0) QUANTSIM_THROW(invalid_argument, file, ": the data set is empty (0 samples)");
        by_name.emplace(name, std::make_pair(std::move(t), file));
    }
    dataset d;
    for (const auto& in : g.inputs) {
        auto it = by_name.find(in.name);
        if (it == by_name.end()) throw usage_error("no " + option + " file for model input '" + in.name + "'");
        d.inputs.push_back(it->second.first);
    }
    d.samples = d.inputs[0].dim(0);
    for (const auto& [name, tf] : by_name)
        if (tf.first.dim(0) != d.samples)
            QUANTSIM_THROW(shape_error, tf.second, ": ", tf.first.dim(0), " samples, but ", by_name.begin()->second.second,
                           " has ", d.samples);

    // Non-finite samples.
    std::vector<char> bad(static_cast<std::size_t>(d.samples), 0);
    std::size_t nbad = 0;
    for (const auto& [name, tf] : by_name) {
        const tensor& t = tf.first;
        const std::int64_t per = t.numel() / d.samples;
        for (std::int64_t s = 0; s < d.samples; ++s) {
            const float* p = t.f32() + s * per;
            for (std::int64_t k = 0; k < per; ++k) {
                if (std::isfinite(p[k])) continue;
                if (!allow_nonfinite)
                    QUANTSIM_THROW(numeric_error, tf.second, ": sample ", s, " contains ", std::isnan(p[k]) ? "NaN" : "Inf",
                                   " (element ", k, " of the sample); pass --allow-nonfinite to skip such samples");
                if (!bad[static_cast<std::size_t>(s)]) ++nbad;
                bad[static_cast<std::size_t>(s)] = 1;
                break;
            }
        }
    }
    for (std::int64_t s = 0; s < d.samples; ++s)
        if (!bad[static_cast<std::size_t>(s)]) d.kept.push_back(s);
    if (nbad) {
        if (!quiet) std::cerr << "quantsim: note: skipping " << nbad << " of " << d.samples << " samples with NaN/Inf\n";
        if (d.kept.empty()) QUANTSIM_THROW(invalid_argument, option, ": every sample contains NaN or Inf");
        for (auto& t : d.inputs) {
            shape_t sh = t.shape();
            const std::int64_t per = t.numel() / sh[0];
            sh[0] = static_cast<std::int64_t>(d.kept.size());
            tensor c = tensor::empty(sh);
            for (std::size_t i = 0; i < d.kept.size(); ++i)
                std::copy_n(t.f32() + d.kept[i] * per, per, c.f32() + static_cast<std::int64_t>(i) * per);
            t = c;
        }
        d.samples = static_cast<std::int64_t>(d.kept.size());
    }
    return d;
}

/// Integer class labels [N] (int64, int32 or uint8 .npy).
inline std::vector<std::int64_t> load_labels(const std::string& file) {
    const tensor t = load_npy(file);
    if (t.rank() != 1) QUANTSIM_THROW(shape_error, file, ": labels must be a 1-D array, got shape ", to_string(t.shape()));
    std::vector<std::int64_t> out(static_cast<std::size_t>(t.numel()));
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        switch (t.type()) {
            case dtype::int64: out[static_cast<std::size_t>(i)] = t.data<std::int64_t>()[i]; break;
            case dtype::int32: out[static_cast<std::size_t>(i)] = t.data<std::int32_t>()[i]; break;
            case dtype::uint8: out[static_cast<std::size_t>(i)] = t.data<std::uint8_t>()[i]; break;
            default: QUANTSIM_THROW(invalid_argument, file, ": labels must be int64, int32 or uint8, got ", name_of(t.type()));
        }
    }
    return out;
}

}  // namespace quantsim::cli
