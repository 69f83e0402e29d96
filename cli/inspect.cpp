// quantsim inspect: the graph summary of an ONNX model (ops, parameters, inferred shapes).
#include <iostream>
#include <map>

#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/op.hpp>
#include <quantsim/ir/shape_inference.hpp>

#include "command.hpp"
#include "shape_arg.hpp"

namespace {

const char* const inspect_usage =
    "usage: quantsim inspect MODEL.onnx [--shape NAME=D0,D1,...] [--no-nodes] [--no-params]\n"
    "\n"
    "Prints the model's inputs, outputs, op counts, parameters with their shapes and one line per node with its\n"
    "inferred output shapes (symbolic dimensions such as the batch print by name). Ops quantsim cannot run are\n"
    "listed at the end; inspect still works on such models.\n"
    "\n"
    "options:\n"
    "  --shape NAME=DIMS   give input NAME a concrete shape for inference, e.g. --shape x=1,3,48,192 (repeatable;\n"
    "                      a dimension of ? or -1 stays symbolic)\n"
    "  --no-nodes          leave out the per-node listing\n"
    "  --no-params         leave out the per-parameter listing\n"
    "  -h, --help          this text\n";

int run_inspect(const std::vector<std::string>& argv) {
    quantsim::cli::args a(argv, {"--shape"}, {"--no-nodes", "--no-params"});
    a.expect_positionals(1, "MODEL.onnx");
    quantsim::onnx_load_options lo;
    lo.check_ops = false;
    lo.infer_shapes = false;
    quantsim::graph g = quantsim::load_onnx(a.positionals()[0], lo);
    for (const auto& s : a.values("--shape")) quantsim::cli::apply_shape_arg(g, s);

    quantsim::shape_inference_options so;
    so.strict = false;
    so.tolerate_errors = true;  // show everything that can be inferred; report the rest below
    const auto inferred = quantsim::run_shape_inference(g, so);
    quantsim::summary_options opts;
    opts.list_nodes = !a.flag("--no-nodes");
    opts.list_params = !a.flag("--no-params");
    std::cout << g.summary(opts);

    std::map<std::string, std::size_t> unsupported;
    const auto& reg = quantsim::op_registry::global();
    for (const auto& n : g.nodes)
        if (!reg.find(n.op_type, n.domain)) ++unsupported[(n.domain.empty() ? "" : n.domain + ".") + n.op_type];
    if (unsupported.empty()) {
        std::cout << "every op is supported by quantsim's executor\n";
    } else {
        std::cout << "ops quantsim cannot run:";
        for (const auto& [op, count] : unsupported) std::cout << ' ' << op << " (" << count << ')';
        std::cout << '\n';
    }
    if (!inferred.errors.empty()) {
        std::cout << std::flush;
        for (const auto& e : inferred.errors) std::cerr << "quantsim inspect: shape inference: " << e << '\n';
        std::cerr << "quantsim: error: shape inference failed at " << inferred.errors.size()
                  << " node(s); the shapes after them are unknown\n";
        return 1;
    }
    return 0;
}

}  // namespace

QUANTSIM_CLI_COMMAND(inspect, "print a model's inputs, outputs, ops, parameters and shapes", inspect_usage, run_inspect);
