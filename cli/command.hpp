// The quantsim CLI's subcommand registry. Each subcommand lives in its own cli/<name>.cpp and registers itself:
//
//   static int run_ptq(const std::vector<std::string>& argv) {
//       quantsim::cli::args a(argv, {"--output", "--config"}, {"--verbose"});  // options with values, flags
//       ...
//       return 0;
//   }
//   QUANTSIM_CLI_COMMAND(ptq, "post-training quantization of an ONNX model", "usage text...", run_ptq);
//
// main.cpp dispatches `quantsim <name> ...`, prints `--help`, and maps exceptions to exit codes: 0 ok, 1 bad input
// (a quantsim::error: one "quantsim: error: ..." line on stderr), 2 usage errors (message plus usage text).
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "args.hpp"

namespace quantsim::cli {

struct command {
    std::string name;
    std::string summary;  ///< one line for `quantsim --help`
    std::string usage;    ///< full help text for `quantsim <name> --help`
    /// Runs with the arguments after the command name. `--help` never reaches it (main prints `usage`).
    std::function<int(const std::vector<std::string>&)> run;
};

/// Every registered command, in registration order (main sorts them by name for display).
inline std::vector<command>& commands() {
    static std::vector<command> all;
    return all;
}

struct command_registrar {
    explicit command_registrar(command c) { commands().push_back(std::move(c)); }
};

}  // namespace quantsim::cli

/// Registers a subcommand from its own .cpp file (static registration is fine here: the CLI's object files are
/// linked directly into the executable, not through a static library that could drop them).
#define QUANTSIM_CLI_COMMAND(id, summary_text, usage_text, fn) \
    static const ::quantsim::cli::command_registrar quantsim_cli_command_##id{  \
        ::quantsim::cli::command{#id, summary_text, usage_text, fn}}
