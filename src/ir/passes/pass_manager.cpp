// The pass manager: runs passes in order, validates after each, names the failing pass in errors.
#include <quantsim/ir/pass.hpp>

#include <iomanip>
#include <sstream>

#include <quantsim/ir/detail/error_context.hpp>

namespace quantsim {

namespace {

class function_pass final : public pass {
public:
    function_pass(std::string name, std::function<bool(graph&)> fn) : name_(std::move(name)), fn_(std::move(fn)) {}
    std::string name() const override { return name_; }
    bool run(graph& g) override { return fn_(g); }

private:
    std::string name_;
    std::function<bool(graph&)> fn_;
};

}  // namespace

std::unique_ptr<pass> make_pass(std::string name, std::function<bool(graph&)> fn) {
    if (!fn) QUANTSIM_THROW(invalid_argument, "make_pass: pass '", name, "' has no function");
    return std::make_unique<function_pass>(std::move(name), std::move(fn));
}

pass_manager& pass_manager::add(std::unique_ptr<pass> p) {
    if (!p) QUANTSIM_THROW(invalid_argument, "pass_manager::add: null pass");
    passes_.push_back(std::move(p));
    return *this;
}

bool pass_manager::run(graph& g) {
    records_.clear();
    bool any = false;
    const int iterations = options_.max_iterations < 1 ? 1 : options_.max_iterations;
    for (int it = 0; it < iterations; ++it) {
        bool changed_this_round = false;
        for (auto& p : passes_) {
            pass_record rec;
            rec.name = p->name();
            rec.nodes_before = g.nodes.size();
            const auto t0 = std::chrono::steady_clock::now();
            try {
                rec.changed = p->run(g);
                if (rec.changed) {
                    if (options_.validate) {
                        validate_options vo;
                        vo.registry = options_.registry;
                        vo.check_ops = options_.check_ops;
                        vo.check_shapes = options_.check_shapes;
                        g.validate(vo);
                    }
                    if (options_.infer_shapes) {
                        shape_inference_options so;
                        so.registry = options_.registry;
                        so.strict = options_.check_ops;
                        g.value_infos.clear();
                        g.infer_shapes(so);
                    }
                }
            } catch (...) {
                detail::rethrow_with_prefix("pass '" + rec.name + "': ");
            }
            rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            rec.nodes_after = g.nodes.size();
            changed_this_round |= rec.changed;
            records_.push_back(std::move(rec));
        }
        any |= changed_this_round;
        if (!changed_this_round) break;
    }
    return any;
}

std::string pass_manager::report() const {
    std::ostringstream os;
    for (const auto& r : records_) {
        os << std::left << std::setw(28) << r.name << std::right << (r.changed ? " changed  " : " no change")
           << "  nodes " << r.nodes_before << " -> " << r.nodes_after << "  " << std::fixed << std::setprecision(2)
           << r.seconds * 1e3 << " ms\n";
    }
    return os.str();
}

}  // namespace quantsim
