// Gradients of every built-in rule against central finite differences, optimized backward kernels against their
// reference loops, the cross-entropy loss, and the tape's error handling.
#include <filesystem>

#include <quantsim/core/error.hpp>
#include <quantsim/ir/detail/autograd_kernels.hpp>
#include <quantsim/ir/kernels/parallel.hpp>
#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>

#include "autograd_test_util.hpp"

namespace qs = quantsim;
namespace qd = quantsim::detail;
using namespace qat_test;
using qs::graph_builder;
using qs::tensor;

namespace {

constexpr std::uint32_t base_seed = 20261122;
constexpr float kernel_tol = 2e-4f;  // optimized vs reference backward (relative to the magnitude)

std::mt19937 seeded(std::uint32_t offset) {
    const std::uint32_t s = base_seed + offset;
    ::testing::Test::RecordProperty("seed", static_cast<int>(s));
    return std::mt19937(s);
}
#define SEED_TRACE(off) SCOPED_TRACE("seed " + std::to_string(base_seed + (off)))

void fd(qs::graph g, std::map<std::string, tensor> feeds, const std::vector<std::string>& wrt, std::mt19937& rng,
        bool training = false) {
    qs::autograd_options o;
    o.training = training;
    qs::autograd_tape tape(std::move(g), o);
    fd_checker c{tape, std::move(feeds), {}};
    c.check(wrt, rng);
}

qs::attribute_map ints(const char* k, std::vector<std::int64_t> v) { return {{k, std::move(v)}}; }

}  // namespace

TEST(ConvBackward, OptimizedMatchesReference) {
    struct geo {
        std::int64_t c, m, group, kh, kw, stride, dil, pad, h, w;
    };
    const std::vector<geo> cases = {
        {3, 8, 1, 3, 3, 2, 1, 1, 9, 12},   // first layer, stride 2
        {8, 8, 8, 3, 3, 1, 1, 1, 7, 6},    // depthwise
        {8, 8, 8, 5, 5, 2, 1, 2, 11, 9},   // depthwise 5x5 stride 2
        {6, 4, 2, 3, 1, 1, 2, 1, 8, 5},    // grouped, dilated, non-square kernel
        {16, 12, 1, 1, 1, 1, 1, 0, 5, 7},  // pointwise (input is the column matrix)
        {4, 6, 1, 2, 2, 1, 1, 0, 6, 6},
    };
    std::mt19937 rng = seeded(1);
    SEED_TRACE(1);
    for (const auto& k : cases) {
        SCOPED_TRACE("c=" + std::to_string(k.c) + " m=" + std::to_string(k.m) + " g=" + std::to_string(k.group));
        qs::conv_geometry g;
        g.in_channels = k.c;
        g.out_channels = k.m;
        g.group = k.group;
        g.kernel = {k.kh, k.kw};
        g.stride = {k.stride, k.stride};
        g.dilation = {k.dil, k.dil};
        g.pad_begin = {k.pad, k.pad};
        g.pad_end = {k.pad, k.pad};
        const std::int64_t n = 3, oh = g.conv_out(0, k.h), ow = g.conv_out(1, k.w);
        tensor x = random_tensor({n, k.c, k.h, k.w}, rng), w = random_tensor({k.m, k.c / k.group, k.kh, k.kw}, rng);
        tensor dy = random_tensor({n, k.m, oh, ow}, rng);
        tensor dx0(x.shape()), dw0(w.shape()), db0({k.m}), dx1(x.shape()), dw1(w.shape()), db1({k.m});
        qd::conv2d_backward_ref(g, n, k.h, k.w, x.f32(), w.f32(), dy.f32(), dx0.f32(), dw0.f32(), db0.f32());
        for (int threads : {1, 2}) {
            qs::kernel_threads_scope scope(threads);
            qd::conv2d_backward(g, n, k.h, k.w, x.f32(), w.f32(), dy.f32(), dx1.f32(), dw1.f32(), db1.f32());
            for (auto [a, b] : {std::pair{&dx0, &dx1}, std::pair{&dw0, &dw1}, std::pair{&db0, &db1}})
                for (std::int64_t i = 0; i < a->numel(); ++i)
                    ASSERT_NEAR(a->f32()[i], b->f32()[i], kernel_tol * (1 + std::abs(a->f32()[i]))) << i;
        }
    }
}

TEST(ReduceToShape, MatchesReference) {
    std::mt19937 rng = seeded(2);
    SEED_TRACE(2);
    const std::vector<std::pair<qs::shape_t, qs::shape_t>> cases = {
        {{2, 3, 4, 5}, {2, 3, 1, 1}}, {{2, 3, 4, 5}, {3, 1, 1}}, {{2, 3, 4, 5}, {}},    {{2, 3, 4, 5}, {5}},
        {{2, 3, 4, 5}, {1, 3, 4, 1}}, {{2, 3, 4, 5}, {2, 1, 4, 1}}, {{4, 5}, {4, 5}}, {{6, 1, 5}, {6, 1, 1}}};
    for (const auto& [out, in] : cases) {
        tensor g = random_tensor(out, rng);
        tensor a = qd::reduce_to_shape(g, in), b = qd::reduce_to_shape_ref(g, in);
        ASSERT_EQ(a.shape(), in);
        for (std::int64_t i = 0; i < a.numel(); ++i) EXPECT_NEAR(a.f32()[i], b.f32()[i], 1e-4f * (1 + std::abs(b.f32()[i])));
    }
    EXPECT_THROW(qd::reduce_to_shape(random_tensor({2, 3}, rng), {4}), qs::shape_error);
}

TEST(GradCheck, Conv) {
    std::mt19937 rng = seeded(3);
    SEED_TRACE(3);
    {  // grouped, strided, padded, dilated, with bias
        graph_builder b;
        auto x = b.input("x", {2, 4, 9, 8});
        auto y = b.node("Conv", {x, b.param("w", random_tensor({6, 2, 3, 3}, rng, 0.5f)), b.param("b", random_tensor({6}, rng))},
                        {{"group", std::int64_t{2}}, {"strides", std::vector<std::int64_t>{2, 1}},
                         {"pads", std::vector<std::int64_t>{1, 0, 2, 1}}, {"dilations", std::vector<std::int64_t>{1, 2}}});
        b.output(y);
        fd(b.build(), {{"x", random_tensor({2, 4, 9, 8}, rng)}}, {"x", "w", "b"}, rng);
    }
    {  // depthwise, SAME_UPPER
        graph_builder b;
        auto x = b.input("x", {2, 3, 7, 6});
        auto y = b.node("Conv", {x, b.param("w", random_tensor({3, 1, 3, 3}, rng, 0.5f))},
                        {{"group", std::int64_t{3}}, {"strides", std::vector<std::int64_t>{2, 2}},
                         {"auto_pad", std::string("SAME_UPPER")}});
        b.output(y);
        fd(b.build(), {{"x", random_tensor({2, 3, 7, 6}, rng)}}, {"x", "w"}, rng);
    }
    {  // 1-D
        graph_builder b;
        auto x = b.input("x", {2, 3, 10});
        auto y = b.node("Conv", {x, b.param("w", random_tensor({4, 3, 3}, rng, 0.5f))}, ints("pads", {1, 1}));
        b.output(y);
        fd(b.build(), {{"x", random_tensor({2, 3, 10}, rng)}}, {"x", "w"}, rng);
    }
}

TEST(GradCheck, BatchNormalizationInferenceAndTraining) {
    std::mt19937 rng = seeded(4);
    SEED_TRACE(4);
    const auto build = [&] {
        graph_builder b;
        auto x = b.input("x", {3, 4, 3, 5});
        tensor var = random_tensor({4}, rng, 0.3f);
        for (auto& v : var.span<float>()) v = std::abs(v) + 0.5f;
        auto y = b.node("BatchNormalization",
                        {x, b.param("gamma", random_tensor({4}, rng, 0.5f, 1.0f)), b.param("beta", random_tensor({4}, rng)),
                         b.param("mean", random_tensor({4}, rng, 0.2f)), b.param("var", var)},
                        {{"epsilon", 1e-3f}});
        b.output(y);
        return b.build();
    };
    const tensor x = random_tensor({3, 4, 3, 5}, rng, 1.5f, 0.3f);
    fd(build(), {{"x", x}}, {"x", "gamma", "beta", "mean", "var"}, rng, false);
    fd(build(), {{"x", x}}, {"x", "gamma", "beta"}, rng, true);
}

TEST(BatchNormalization, TrainingForwardUsesBatchStatisticsAndUpdatesRunningOnes) {
    std::mt19937 rng = seeded(5);
    SEED_TRACE(5);
    graph_builder b;
    auto x = b.input("x", {4, 2, 3, 3});
    b.output(b.node("BatchNormalization", {x, b.param("gamma", tensor::full({2}, 1.0f)), b.param("beta", tensor({2})),
                                           b.param("mean", tensor({2})), b.param("var", tensor::full({2}, 1.0f))},
                    {{"epsilon", 1e-5f}}));
    qs::autograd_options o;
    o.training = true;
    o.bn_momentum = 0.75f;
    qs::autograd_tape tape(b.build(), o);
    const tensor in = random_tensor({4, 2, 3, 3}, rng, 2.0f, 1.0f);
    tensor y = tape.forward({in})[0];
    for (std::int64_t c = 0; c < 2; ++c) {
        double s = 0, s2 = 0, xs = 0, xs2 = 0;
        for (std::int64_t n = 0; n < 4; ++n)
            for (std::int64_t i = 0; i < 9; ++i) {
                const double v = y.f32()[(n * 2 + c) * 9 + i], u = in.f32()[(n * 2 + c) * 9 + i];
                s += v, s2 += v * v, xs += u, xs2 += u * u;
            }
        EXPECT_NEAR(s / 36, 0.0, 1e-5);
        EXPECT_NEAR(s2 / 36, 1.0, 1e-3);
        const double mu = xs / 36, unbiased = (xs2 - 36 * mu * mu) / 35;
        EXPECT_NEAR(tape.param("mean").f32()[c], 0.25 * mu, 1e-5);
        EXPECT_NEAR(tape.param("var").f32()[c], 0.75 + 0.25 * unbiased, 1e-4);
    }
}

TEST(GradCheck, GemmAllTransposes) {
    std::mt19937 rng = seeded(6);
    SEED_TRACE(6);
    for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
            SCOPED_TRACE("transA " + std::to_string(ta) + " transB " + std::to_string(tb));
            graph_builder b;
            const std::int64_t m = 3, k = 5, n = 4;
            auto a = b.input("a", ta ? qs::shape_t{k, m} : qs::shape_t{m, k});
            auto y = b.node("Gemm", {a, b.param("b", random_tensor(tb ? qs::shape_t{n, k} : qs::shape_t{k, n}, rng)),
                                     b.param("c", random_tensor({n}, rng))},
                            {{"transA", std::int64_t{ta}}, {"transB", std::int64_t{tb}}, {"alpha", 0.7f}, {"beta", 1.3f}});
            b.output(y);
            fd(b.build(), {{"a", random_tensor(ta ? qs::shape_t{k, m} : qs::shape_t{m, k}, rng)}}, {"a", "b", "c"}, rng);
        }
}

TEST(GradCheck, MatMulBatchedAndBroadcast) {
    std::mt19937 rng = seeded(7);
    SEED_TRACE(7);
    const std::vector<std::pair<qs::shape_t, qs::shape_t>> cases = {
        {{6, 5}, {5, 3}}, {{2, 3, 4, 5}, {5, 6}}, {{3, 1, 4, 5}, {2, 5, 6}}, {{5}, {5, 3}}, {{2, 4, 5}, {5}}};
    for (const auto& [sa, sb] : cases) {
        SCOPED_TRACE(qs::to_string(sa) + " x " + qs::to_string(sb));
        graph_builder b;
        auto a = b.input("a", sa);
        b.output(b.node("MatMul", {a, b.param("b", random_tensor(sb, rng))}));
        fd(b.build(), {{"a", random_tensor(sa, rng)}}, {"a", "b"}, rng);
    }
}

TEST(GradCheck, BroadcastingArithmetic) {
    std::mt19937 rng = seeded(8);
    SEED_TRACE(8);
    for (const char* op : {"Add", "Sub", "Mul", "Div"}) {
        for (const auto& sb : std::vector<qs::shape_t>{{2, 3, 4, 5}, {2, 3, 1, 1}, {5}, {}, {3, 1, 5}}) {
            SCOPED_TRACE(std::string(op) + " by " + qs::to_string(sb));
            graph_builder b;
            auto a = b.input("a", {2, 3, 4, 5});
            tensor pb = random_tensor(sb, rng);
            if (std::string(op) == "Div")
                for (auto& v : pb.span<float>()) v = (v < 0 ? -1.0f : 1.0f) * (std::abs(v) + 0.8f);
            b.output(b.node(op, {a, b.param("b", pb)}));
            qs::autograd_options o;
            o.variables = {"b"};  // a scalar parameter is a constant by default
            qs::autograd_tape tape(b.build(), o);
            fd_checker c{tape, {{"a", random_tensor({2, 3, 4, 5}, rng)}}, {}};
            c.check({"a", "b"}, rng);
        }
    }
}

TEST(GradCheck, Activations) {
    std::mt19937 rng = seeded(9);
    SEED_TRACE(9);
    const qs::shape_t s{2, 3, 4, 4};
    const auto unary = [&](const char* op, qs::attribute_map attrs, std::vector<qs::value_ref> extra = {}) {
        SCOPED_TRACE(op);
        graph_builder b;
        auto x = b.input("x", s);
        std::vector<qs::value_ref> ins{x};
        for (auto& e : extra) ins.push_back(b.constant_scalar(std::stof(e.name)));
        b.output(b.node(op, ins, std::move(attrs)));
        // Inputs kept away from the kinks at 0, +-1 (Clip), +-3 (HardSwish) and -2.5/2.5 (HardSigmoid).
        tensor x0 = away_from(s, rng, 0.05f, 2.0f);
        for (auto& v : x0.span<float>())
            for (float k : {-3.0f, -2.5f, -1.0f, 1.0f, 2.5f, 3.0f})
                if (std::abs(v - k) < 0.05f) v += 0.1f;
        fd(b.build(), {{"x", x0}}, {"x"}, rng);
    };
    unary("Relu", {});
    unary("HardSigmoid", {{"alpha", 0.2f}, {"beta", 0.5f}});
    unary("HardSigmoid", {{"alpha", 1.0f / 6}, {"beta", 0.5f}});
    unary("HardSwish", {});
    unary("Sigmoid", {});
    unary("LeakyRelu", {{"alpha", 0.1f}});
    unary("Clip", {}, {"-1", "1"});                            // bounds as inputs (opset 11+)
    unary("Clip", {{"min", -1.0f}, {"max", 1.0f}});             // bounds as attributes (opset 6-10)
    unary("Clip", {{"min", 0.0f}});
}

TEST(GradCheck, PoolingShapesAndSoftmax) {
    std::mt19937 rng = seeded(10);
    SEED_TRACE(10);
    {
        graph_builder b;
        auto x = b.input("x", {2, 3, 4, 5});
        auto p = b.node("GlobalAveragePool", {x});
        auto f = b.node("Flatten", {p}, {{"axis", std::int64_t{1}}});
        auto u = b.node("Unsqueeze", {f, b.constant_ints({2})});
        auto sq = b.node("Squeeze", {u, b.constant_ints({2})});
        auto r = b.node("Reshape", {sq, b.constant_ints({3, 2})});
        auto t = b.node("Transpose", {r}, ints("perm", {1, 0}));
        auto i = b.node("Identity", {t});
        b.output(b.node("Softmax", {i}, {{"axis", std::int64_t{1}}}));
        fd(b.build(), {{"x", random_tensor({2, 3, 4, 5}, rng)}}, {"x"}, rng);
    }
    {  // Softmax over a middle axis of a rank-3 tensor; Transpose with a 3-D permutation
        graph_builder b;
        auto x = b.input("x", {2, 4, 3});
        auto t = b.node("Transpose", {x}, ints("perm", {2, 0, 1}));
        b.output(b.node("Softmax", {t}, {{"axis", std::int64_t{1}}}));
        fd(b.build(), {{"x", random_tensor({2, 4, 3}, rng, 2.0f)}}, {"x"}, rng);
    }
}

TEST(GradCheck, MaxPool) {
    std::mt19937 rng = seeded(14);
    SEED_TRACE(14);
    for (const auto& attrs : std::vector<qs::attribute_map>{
             {{"kernel_shape", std::vector<std::int64_t>{2, 2}}, {"strides", std::vector<std::int64_t>{2, 2}}},
             {{"kernel_shape", std::vector<std::int64_t>{3, 3}}, {"strides", std::vector<std::int64_t>{2, 1}},
              {"pads", std::vector<std::int64_t>{1, 1, 1, 1}}},
             {{"kernel_shape", std::vector<std::int64_t>{3, 2}}, {"ceil_mode", std::int64_t{1}},
              {"strides", std::vector<std::int64_t>{2, 2}}}}) {
        graph_builder b;
        auto x = b.input("x", {2, 3, 7, 6});
        b.output(b.node("MaxPool", {x}, attrs));
        // Distinct values (no ties within a window).
        tensor x0 = tensor::empty({2, 3, 7, 6});
        std::vector<float> v(static_cast<std::size_t>(x0.numel()));
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.01f * static_cast<float>(i);
        std::shuffle(v.begin(), v.end(), rng);
        std::copy(v.begin(), v.end(), x0.f32());
        fd(b.build(), {{"x", x0}}, {"x"}, rng);
    }
}

TEST(CrossEntropy, GradientMatchesFiniteDifferencesAndIsStable) {
    std::mt19937 rng = seeded(11);
    SEED_TRACE(11);
    tensor z = random_tensor({5, 4}, rng, 3.0f);
    tensor y = tensor::empty({5}, qs::dtype::int64);
    for (std::int64_t i = 0; i < 5; ++i) y.data<std::int64_t>()[i] = (i * 3) % 4;
    for (float smoothing : {0.0f, 0.1f}) {
        auto r = qs::softmax_cross_entropy(z, y, smoothing);
        for (std::int64_t i = 0; i < z.numel(); ++i) {
            tensor zp = z.clone(), zm = z.clone();
            zp.f32()[i] += static_cast<float>(fd_step);
            zm.f32()[i] -= static_cast<float>(fd_step);
            const double fdv = (qs::softmax_cross_entropy(zp, y, smoothing).loss -
                                qs::softmax_cross_entropy(zm, y, smoothing).loss) / (2 * fd_step);
            EXPECT_NEAR(r.grad.f32()[i], fdv, 1e-3);
        }
    }
    // Huge logits: log-sum-exp keeps it finite; the loss of a confident right answer is ~0.
    tensor big = tensor::from({1000.0f, -1000.0f, 1000.5f, 900.0f}, {2, 2});
    tensor lab = tensor::from(std::vector<std::int64_t>{0, 1}, {2});
    auto r = qs::softmax_cross_entropy(big, lab);
    EXPECT_TRUE(std::isfinite(r.loss));
    EXPECT_NEAR(r.loss, (1000.5 - 900.0) / 2, 1e-3);  // row 0 is right (loss ~0), row 1 wrong by 100.5
    EXPECT_EQ(r.correct, 1);
    EXPECT_THROW(qs::softmax_cross_entropy(big, tensor::from(std::vector<std::int64_t>{0, 2}, {2})), qs::invalid_argument);
    EXPECT_THROW(qs::softmax_cross_entropy(big, tensor::from(std::vector<std::int64_t>{0}, {1})), qs::shape_error);
}

TEST(Tape, ErrorsNameTheProblem) {
    graph_builder b;
    auto x = b.input("x", {2, 3});
    b.output(b.node("Exp", {b.node("Relu", {x})}, {}, "my_exp"));
    qs::autograd_tape tape(b.build());
    EXPECT_THROW(tape.backward({}, {"x"}), qs::graph_error);  // no forward yet
    auto out = tape.forward({tensor::full({2, 3}, 0.5f)});
    const std::string y = tape.model().outputs[0].name;
    try {
        tape.backward({{y, tensor::full({2, 3}, 1.0f)}}, {"x"});
        FAIL() << "expected unsupported_error";
    } catch (const qs::unsupported_error& e) {
        EXPECT_NE(std::string(e.what()).find("my_exp"), std::string::npos) << e.what();
    }
    EXPECT_THROW(tape.backward({{y, tensor::full({3, 2}, 1.0f)}}, {"x"}), qs::shape_error);
    EXPECT_THROW(tape.backward({{"nope", tensor::full({2, 3}, 1.0f)}}, {"x"}), qs::invalid_argument);
    EXPECT_THROW(tape.backward({{y, tensor::full({2, 3}, 1.0f)}}, {"nope"}), qs::invalid_argument);
    EXPECT_THROW(tape.forward(std::map<std::string, tensor>{}), qs::graph_error);
    EXPECT_THROW(tape.set_transform("nope", {}), qs::invalid_argument);

    // A user rule makes it differentiable: d exp(v) / dv = exp(v).
    qs::grad_registry reg = qs::grad_registry::global();
    reg.add({"Exp", "", {}, [](const qs::grad_backward_context& c) {
                 std::vector<tensor> r(c.inputs.size());
                 tensor g = tensor::empty(c.outputs[0]->shape());
                 for (std::int64_t i = 0; i < g.numel(); ++i) g.f32()[i] = c.outputs[0]->f32()[i] * c.grad_outputs[0]->f32()[i];
                 r[0] = g;
                 return r;
             }});
    qs::autograd_options o;
    o.rules = &reg;
    graph_builder b2;
    auto x2 = b2.input("x", {2, 3});
    b2.output(b2.node("Exp", {b2.node("Relu", {x2})}));
    qs::autograd_tape t2(b2.build(), o);
    std::mt19937 rng = seeded(12);
    fd_checker c{t2, {{"x", away_from({2, 3}, rng, 0.05f)}}, {}};
    c.check({"x"}, rng);
}

TEST(Tape, TransformsOnParametersAndActivations) {
    std::mt19937 rng = seeded(13);
    SEED_TRACE(13);
    graph_builder b;
    auto x = b.input("x", {2, 4});
    auto h = b.node("MatMul", {x, b.param("w", random_tensor({4, 3}, rng))}, {}, qs::node_options("mm").outputs({"h"}));
    b.output(b.node("Mul", {h, h}));
    qs::autograd_tape tape(b.build());
    // y = 2 * w on the weight, z = z^3 on the activation: gradients follow the chain rule through both.
    tape.set_transform("w", {[](const tensor& v) {
                                 tensor r = v.clone();
                                 for (auto& e : r.span<float>()) e *= 2;
                                 return r;
                             },
                             [](const tensor&, const tensor& g) {
                                 tensor r = g.clone();
                                 for (auto& e : r.span<float>()) e *= 2;
                                 return r;
                             }});
    tape.set_transform("h", {[](const tensor& v) {
                                 tensor r = v.clone();
                                 for (auto& e : r.span<float>()) e = e * e * e;
                                 return r;
                             },
                             [](const tensor& v, const tensor& g) {
                                 tensor r = g.clone();
                                 for (std::int64_t i = 0; i < r.numel(); ++i) r.f32()[i] *= 3 * v.f32()[i] * v.f32()[i];
                                 return r;
                             }});
    fd_checker c{tape, {{"x", random_tensor({2, 4}, rng, 0.5f)}}, {}};
    c.check({"x", "w"}, rng);
}
