// quantsim: the command-line tool. Subcommands register themselves (cli/command.hpp); this file dispatches them
// and turns every failure into an exit code and one clear message: 0 ok, 1 bad input, 2 usage error.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include <quantsim/core/error.hpp>
#include <quantsim/ir/detail/error_context.hpp>
#include <quantsim/version_info.hpp>

#include "command.hpp"

namespace {

using quantsim::cli::command;
using quantsim::cli::commands;

void print_usage(std::ostream& os) {
    os << "usage: quantsim <command> [options]\n"
          "       quantsim <command> --help\n"
          "       quantsim --version\n\n"
          "Simulates neural-network quantization and runs PTQ on ONNX models.\n\n"
          "commands:\n";
    std::vector<const command*> sorted;
    for (const auto& c : commands()) sorted.push_back(&c);
    std::sort(sorted.begin(), sorted.end(), [](const command* a, const command* b) { return a->name < b->name; });
    std::size_t width = 0;
    for (const auto* c : sorted) width = std::max(width, c->name.size());
    for (const auto* c : sorted) os << "  " << c->name << std::string(width - c->name.size() + 3, ' ') << c->summary << '\n';
    os << "\nexit codes: 0 success, 1 bad input (message on stderr), 2 usage error\n";
}

// Messages quote names from the input files (node names, JSON keys, paths), which may hold newlines or terminal
// control bytes: printed escaped, so that a failure is always exactly one line on stderr.
std::string one_line(std::string_view m) {
    static const char hex[] = "0123456789abcdef";
    std::string r;
    r.reserve(m.size());
    for (const char ch : m) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\n') r += "\\n";
        else if (c == '\r') r += "\\r";
        else if (c < 0x20 || c == 0x7f) {
            r += "\\x";
            r += hex[c >> 4];
            r += hex[c & 15];
        } else {
            r += ch;
        }
    }
    return r;
}

const command* find_command(const std::string& name) {
    for (const auto& c : commands())
        if (c.name == name) return &c;
    return nullptr;
}

int run(int argc, char** argv) {
    std::vector<std::string> a(argv + 1, argv + argc);
    if (a.empty()) {
        print_usage(std::cerr);
        return 2;
    }
    if (a[0] == "--version" || a[0] == "-V") {
        std::cout << "quantsim " << quantsim::library_version() << '\n';
        return 0;
    }
    if (a[0] == "--help" || a[0] == "-h" || a[0] == "help") {
        if (a[0] == "help" && a.size() > 1) {
            if (const command* c = find_command(a[1])) {
                std::cout << c->usage;
                return 0;
            }
            std::cerr << "quantsim: error: unknown command '" << a[1] << "'\n\n";
            print_usage(std::cerr);
            return 2;
        }
        print_usage(std::cout);
        return 0;
    }
    const command* c = find_command(a[0]);
    if (!c) {
        std::cerr << "quantsim: error: " << (a[0].rfind('-', 0) == 0 ? "unknown option '" : "unknown command '") << a[0]
                  << "'\n\n";
        print_usage(std::cerr);
        return 2;
    }
    std::vector<std::string> rest(a.begin() + 1, a.end());
    if (std::find(rest.begin(), rest.end(), "--help") != rest.end() || std::find(rest.begin(), rest.end(), "-h") != rest.end()) {
        std::cout << c->usage;
        return 0;
    }
    try {
        return c->run(rest);
    } catch (const quantsim::cli::usage_error& e) {
        std::cerr << "quantsim " << c->name << ": error: " << one_line(e.what()) << "\n\n" << c->usage;
        return 2;
    }
}

}  // namespace

int main(int argc, char** argv) {
    // A closed pipe (quantsim inspect m.onnx | head) must end the program with an error code, not a signal.
    std::signal(SIGPIPE, SIG_IGN);
    try {
        const int rc = run(argc, argv);
        std::cout.flush();
        if (!std::cout) return rc == 0 ? 1 : rc;
        return rc;
    } catch (const quantsim::error& e) {
        std::cerr << "quantsim: error: " << one_line(quantsim::detail::bare_message(e)) << '\n';
        return 1;
    } catch (const std::bad_alloc&) {
        std::cerr << "quantsim: error: out of memory\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "quantsim: error: " << one_line(e.what()) << '\n';
        return 1;
    } catch (...) {
        std::cerr << "quantsim: error: unknown failure\n";
        return 1;
    }
}
