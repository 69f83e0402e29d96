// "--shape NAME=D0,D1,..." for CLI commands: fixes the shape of a model input before shape inference.
#pragma once

#include <charconv>
#include <string>

#include <quantsim/ir/detail/error_context.hpp>
#include <quantsim/ir/graph.hpp>

#include "args.hpp"

namespace quantsim::cli {

inline void apply_shape_arg(graph& g, const std::string& spec) {
    const auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 >= spec.size())
        throw usage_error("--shape needs NAME=D0,D1,..., got '" + spec + "'");
    const std::string name = spec.substr(0, eq);
    shape_t dims;
    std::string rest = spec.substr(eq + 1);
    std::size_t start = 0;
    while (start <= rest.size()) {
        const auto comma = rest.find(',', start);
        const std::string d = rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (d == "?" || d == "-1") {
            dims.push_back(-1);
        } else {
            std::int64_t v = 0;
            auto [p, ec] = std::from_chars(d.data(), d.data() + d.size(), v);
            if (ec != std::errc() || p != d.data() + d.size() || v < 0)
                throw usage_error("--shape " + spec + ": '" + d + "' is not a dimension");
            dims.push_back(v);
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    for (auto& in : g.inputs) {
        if (in.name != name) continue;
        if (in.shape_known && in.shape.size() != dims.size())
            QUANTSIM_THROW(invalid_argument, "--shape ", spec, ": input '", name, "' has rank ", in.shape.size(), " (",
                           to_string(in), "), not ", dims.size());
        for (std::size_t i = 0; in.shape_known && i < dims.size(); ++i)
            if (in.shape[i] >= 0 && dims[i] >= 0 && in.shape[i] != dims[i])
                QUANTSIM_THROW(invalid_argument, "--shape ", spec, ": input '", name, "' has dimension ", i, " fixed to ",
                               in.shape[i]);
        std::vector<std::string> params(dims.size());
        for (std::size_t i = 0; i < dims.size(); ++i)
            if (dims[i] < 0 && in.shape_known && i < in.dim_params.size()) params[i] = in.dim_params[i];
        in.shape = dims;
        in.dim_params = params;
        in.shape_known = true;
        return;
    }
    std::string names;
    for (const auto& in : g.inputs) names += (names.empty() ? "" : ", ") + in.name;
    QUANTSIM_THROW(invalid_argument, "--shape ", spec, ": the model has no input '", name, "' (inputs: ", names, ")");
}

}  // namespace quantsim::cli
