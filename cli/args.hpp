// Command-line argument parsing for quantsim subcommands: "--name value", "--name=value", flags, repeated options
// and positionals. Mistakes are usage_error (exit code 2 with the command's usage text).
#pragma once

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace quantsim::cli {

/// A mistake in how the command was called (exit code 2).
class usage_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class args {
public:
    /// `value_options` take a value; `flags` do not. "--help"/"-h" is always a flag.
    args(std::vector<std::string> argv, std::set<std::string> value_options, std::set<std::string> flags)
        : value_options_(std::move(value_options)), flags_(std::move(flags)) {
        flags_.insert("--help");
        for (std::size_t i = 0; i < argv.size(); ++i) {
            std::string a = argv[i];
            if (a == "-h") a = "--help";
            if (a == "--") {
                positionals_.insert(positionals_.end(), argv.begin() + static_cast<std::ptrdiff_t>(i) + 1, argv.end());
                break;
            }
            if (a.size() < 2 || a[0] != '-' || a == "-") {
                positionals_.push_back(a);
                continue;
            }
            std::string name = a, value;
            bool inline_value = false;
            if (auto eq = a.find('='); eq != std::string::npos && a.rfind("--", 0) == 0) {
                name = a.substr(0, eq);
                value = a.substr(eq + 1);
                inline_value = true;
            }
            if (flags_.count(name)) {
                if (inline_value) throw usage_error("option '" + name + "' takes no value");
                values_[name].push_back("");
            } else if (value_options_.count(name)) {
                if (!inline_value) {
                    if (i + 1 >= argv.size()) throw usage_error("option '" + name + "' needs a value");
                    value = argv[++i];
                }
                values_[name].push_back(value);
            } else {
                throw usage_error("unknown option '" + name + "'");
            }
        }
    }

    bool flag(const std::string& name) const { return values_.count(name) != 0; }
    bool help() const { return flag("--help"); }

    /// The option's value (the last one if repeated).
    std::optional<std::string> value(const std::string& name) const {
        auto it = values_.find(name);
        if (it == values_.end()) return std::nullopt;
        return it->second.back();
    }
    std::vector<std::string> values(const std::string& name) const {
        auto it = values_.find(name);
        return it == values_.end() ? std::vector<std::string>{} : it->second;
    }
    /// An integer option in [min, max], or `def` when absent.
    std::int64_t int_value(const std::string& name, std::int64_t def, std::int64_t min, std::int64_t max) const {
        auto v = value(name);
        if (!v) return def;
        std::int64_t r = 0;
        auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), r);
        if (ec != std::errc() || p != v->data() + v->size())
            throw usage_error("option '" + name + "' needs an integer, got '" + *v + "'");
        if (r < min || r > max)
            throw usage_error("option '" + name + "' must be between " + std::to_string(min) + " and " + std::to_string(max) +
                              ", got " + *v);
        return r;
    }
    /// A finite number option, at least `min`, or `def` when absent (or given empty, as in --mixquant=).
    double double_value(const std::string& name, double def, double min = -std::numeric_limits<double>::infinity()) const {
        auto v = value(name);
        if (!v || v->empty()) return def;
        double r = 0;
        auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), r);
        if (ec != std::errc() || p != v->data() + v->size() || !std::isfinite(r))
            throw usage_error("option '" + name + "' needs a number, got '" + *v + "'");
        if (r < min) {
            char m[32];
            std::snprintf(m, sizeof m, "%g", min);
            throw usage_error("option '" + name + "' must be at least " + m + ", got " + *v);
        }
        return r;
    }
    /// An on|off option, or `def` when absent.
    bool on_off(const std::string& name, bool def) const {
        const auto v = value(name);
        if (!v) return def;
        if (*v != "on" && *v != "off") throw usage_error(name + " must be on or off, got '" + *v + "'");
        return *v == "on";
    }
    /// An integer option in [min, max] or "off" (nullopt); `def` when absent.
    std::optional<std::int64_t> int_or_off(const std::string& name, std::optional<std::int64_t> def, std::int64_t min,
                                           std::int64_t max) const {
        const auto v = value(name);
        if (!v) return def;
        if (*v == "off") return std::nullopt;
        return int_value(name, 0, min, max);
    }
    const std::vector<std::string>& positionals() const { return positionals_; }
    /// Exactly `n` positionals, else a usage_error naming what is expected.
    void expect_positionals(std::size_t n, const std::string& what) const {
        if (positionals_.size() < n) throw usage_error("missing " + what);
        if (positionals_.size() > n) throw usage_error("unexpected argument '" + positionals_[n] + "'");
    }

private:
    std::set<std::string> value_options_;
    std::set<std::string> flags_;
    std::map<std::string, std::vector<std::string>> values_;
    std::vector<std::string> positionals_;
};

}  // namespace quantsim::cli
