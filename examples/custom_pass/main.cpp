// A user-written graph pass: fold a multiplication by a constant (a scalar or one value per channel) into the
// preceding Conv's weights and bias, and drop Identity nodes with the built-in pass. The graph is built in C++ (or
// loaded from the ONNX file given as the first argument); the result is checked against the original with the
// executor and, with a second argument, saved as ONNX.
//
//   build/bin/example_custom_pass                     # the built-in demo graph
//   build/bin/example_custom_pass model.onnx out.onnx # any model
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>

#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/ir/pass.hpp>
#include <quantsim/ir/passes.hpp>
#include <quantsim/ir/pattern.hpp>

using namespace quantsim;

// Conv -> Mul(constant) becomes one Conv with scaled weights. The constant must be a scalar or hold one value per
// output channel, shaped [M, 1, 1] or [1, M, 1, 1].
class fold_mul_into_conv final : public pass {
public:
    std::string name() const override { return "fold_mul_into_conv"; }

    bool run(graph& g) override {
        bool changed = false;
        // A predicate restricts the Mul link to "multiplied by a foldable constant".
        const op_pattern mul_by_constant("Mul", [](const graph& gg, const node& n) { return scale_of(gg, n) != nullptr; });
        for (;;) {
            auto matches = match_chains(g, {"Conv", mul_by_constant});
            if (matches.empty()) break;
            const std::size_t ci = matches[0][0], mi = matches[0][1];
            node conv = g.nodes[ci];
            const tensor* w = param_value(g, conv.inputs.at(1));
            const tensor* s = scale_of(g, g.nodes[mi]);
            if (!w || w->type() != dtype::float32 || (conv.has_input(2) && !param_value(g, conv.inputs[2]))) break;
            const std::int64_t m = w->dim(0), per_channel = w->numel() / m;
            tensor w2 = w->clone();
            tensor b2 = conv.has_input(2) ? param_value(g, conv.inputs[2])->clone() : tensor::zeros({m});
            for (std::int64_t k = 0; k < m; ++k) {
                const float f = s->numel() == 1 ? s->f32()[0] : s->f32()[k];
                for (std::int64_t j = 0; j < per_channel; ++j) w2.f32()[k * per_channel + j] *= f;
                b2.f32()[k] *= f;
            }
            // New parameters (the old ones may be shared); replace_chain prunes what is no longer read.
            conv.inputs.resize(3);
            conv.inputs[1] = g.add_param(conv.name + ".w_scaled", std::move(w2));
            conv.inputs[2] = g.add_param(conv.name + ".b_scaled", std::move(b2));
            conv.outputs.clear();  // take over the Mul's output, so every reader stays connected
            replace_chain(g, {ci, mi}, conv);
            changed = true;
        }
        return changed;
    }

private:
    // The Mul's constant operand when it can be folded, else nullptr.
    static const tensor* scale_of(const graph& g, const node& mul) {
        if (mul.inputs.size() != 2) return nullptr;
        const tensor* s = param_value(g, mul.inputs[1]);
        if (!s || s->type() != dtype::float32) return nullptr;
        if (s->numel() == 1) return s;
        const auto& sh = s->shape();
        const bool chw = sh.size() == 3 && sh[1] == 1 && sh[2] == 1;
        const bool nchw = sh.size() == 4 && sh[0] == 1 && sh[2] == 1 && sh[3] == 1;
        if (!chw && !nchw) return nullptr;
        // One value per output channel of the producing Conv.
        const auto p = g.producer(mul.inputs[0]);
        const tensor* w = p >= 0 ? param_value(g, g.nodes[static_cast<std::size_t>(p)].inputs.at(1)) : nullptr;
        return w && w->dim(0) == s->numel() ? s : nullptr;
    }
};

graph demo_graph() {
    std::mt19937 rng(1);
    std::normal_distribution<float> d(0.f, 0.5f);
    auto rand = [&](shape_t shape) {
        tensor t = tensor::empty(std::move(shape));
        for (auto& v : t.span<float>()) v = d(rng);
        return t;
    };
    graph_builder b("demo");
    auto x = b.input("x", {-1, 3, 16, 16});
    auto c1 = b.node("Conv", {x, b.param("w1", rand({8, 3, 3, 3})), b.param("b1", rand({8}))},
                     {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "conv1");
    auto m1 = b.node("Mul", {c1, b.param("scale", rand({8, 1, 1}))}, {}, "scale1");
    auto id = b.node("Identity", {m1}, {}, "copy");
    auto r = b.node("Relu", {id}, {}, "relu");
    auto c2 = b.node("Conv", {r, b.param("w2", rand({4, 8, 1, 1}))}, {}, "conv2");
    auto m2 = b.node("Mul", {c2, b.constant_scalar(0.5f)}, {}, "half");
    b.output(b.node("Relu", {m2}, {}, node_options("relu2").outputs({"y"})));
    graph g = b.build(/*validate_ops=*/true);
    g.infer_shapes();
    return g;
}

int main(int argc, char** argv) {
    try {
        graph g = argc > 1 ? load_onnx(argv[1]) : demo_graph();
        const graph original = g;
        std::cout << "before:\n" << g.summary(summary_options{true, true, 60}) << '\n';

        pass_manager pm;  // validates (structure, ops, shapes) after every pass that changes the graph
        pm.emplace<remove_identity_pass>();
        pm.emplace<fold_mul_into_conv>();
        pm.emplace<eliminate_dead_nodes_pass>();
        pm.run(g);
        std::cout << "passes:\n" << pm.report() << "\nafter:\n" << g.summary(summary_options{false, true, 60}) << '\n';

        // Same outputs on a random input (fixed batch 2; symbolic dims other than the batch become 16).
        shape_t shape = g.inputs.at(0).shape;
        for (std::size_t i = 0; i < shape.size(); ++i) shape[i] = shape[i] >= 0 ? shape[i] : (i == 0 ? 2 : 16);
        tensor x = tensor::empty(shape);
        std::mt19937 rng(3);
        std::uniform_real_distribution<float> u(-1.f, 1.f);
        for (auto& v : x.span<float>()) v = u(rng);
        const tensor a = executor(original).run(std::vector<tensor>{x}).at(0);
        const tensor b = executor(g).run(std::vector<tensor>{x}).at(0);
        double max_diff = 0, max_abs = 0;
        for (std::int64_t i = 0; i < a.numel(); ++i) {
            max_diff = std::max(max_diff, std::abs(double(a.f32()[i]) - b.f32()[i]));
            max_abs = std::max(max_abs, std::abs(double(a.f32()[i])));
        }
        std::printf("nodes %zu -> %zu, max |difference| %.3g (output max %.3g)\n", original.nodes.size(), g.nodes.size(),
                    max_diff, max_abs);
        if (argc > 2) {
            save_onnx(g, argv[2]);
            std::cout << "saved " << argv[2] << '\n';
        }
        return max_diff <= 1e-4 * std::max(1.0, max_abs) ? 0 : 1;
    } catch (const quantsim::error& e) {
        std::cerr << "example_custom_pass: " << e.what() << '\n';
        return 1;
    }
}
