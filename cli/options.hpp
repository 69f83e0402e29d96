// Small helpers the subcommands share: the --config argument and JSON string escaping for the result line.
#pragma once

#include <cstdio>
#include <string>

#include <quantsim/sim/config.hpp>

namespace quantsim::cli {

/// --config NAME|FILE: a built-in config (default, per_channel, htp) or an AIMET-format JSON file.
inline quantsim_config load_config(const std::string& spec) {
    if (spec == "default" || spec == "per_channel" || spec == "htp") return quantsim_config::builtin(spec);
    return quantsim_config::load(spec);
}

/// The contents of a JSON string literal: quotes and backslashes escaped, control characters as \u00XX.
inline std::string json_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
            o += buf;
            continue;
        }
        o += c;
    }
    return o;
}

}  // namespace quantsim::cli
