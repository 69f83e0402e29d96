// The real models: the three PaddleOCR models (opset 9/11, Constant-node weights, legacy forms) and torchvision's
// resnet18 / mobilenet_v2 (opset 13, made by tests/data/make_torchvision_like.py). Each must import, shape-infer
// with the built-in ops, summarize, round-trip through export bit for bit, and run identically before and after.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/ir/passes.hpp>

#include "io/round_trip.hpp"

namespace quantsim {
namespace {

namespace fs = std::filesystem;

constexpr float roundtrip_tolerance = 1e-6f;  // same graph, same kernels: differences only from thread scheduling
constexpr float bn_fold_tolerance = 2e-3f;    // relative to the output's scale; folding reorders float rounding

struct model_case {
    std::string name;
    fs::path path;
    shape_t input_shape;  // a small input that the model accepts
};

fs::path ocr_dir() { return fs::path(QUANTSIM_PEERS_DIR) / "node_modules" / "@gutenye" / "ocr-models" / "assets"; }

std::vector<model_case> cases() {
    return {
        {"cls", ocr_dir() / "ch_ppocr_mobile_v2.0_cls_infer.onnx", {2, 3, 48, 192}},
        {"det", ocr_dir() / "ch_PP-OCRv4_det_infer.onnx", {1, 3, 96, 128}},
        {"rec", ocr_dir() / "ch_PP-OCRv4_rec_infer.onnx", {1, 3, 48, 160}},
        {"resnet18", fs::path(QUANTSIM_SOURCE_DIR) / ".data" / "models" / "resnet18.onnx", {1, 3, 224, 224}},
        {"mobilenet_v2", fs::path(QUANTSIM_SOURCE_DIR) / ".data" / "models" / "mobilenet_v2.onnx", {1, 3, 224, 224}},
    };
}

tensor random_input(const shape_t& shape, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.f, 1.f);
    tensor t = tensor::empty(shape);
    for (auto& v : t.span<float>()) v = d(rng);
    return t;
}

float max_abs(const tensor& t) {
    float m = 0;
    for (float v : t.span<float>()) m = std::max(m, std::abs(v));
    return m;
}

class real_model : public ::testing::TestWithParam<model_case> {
protected:
    void SetUp() override {
        if (!fs::exists(GetParam().path))
            GTEST_SKIP() << GetParam().path << " is missing (PaddleOCR models: `make peers`; torchvision models: "
                         << "/usr/bin/python3 tests/data/make_torchvision_like.py)";
    }
};

TEST_P(real_model, imports_infers_summarizes_and_round_trips) {
    const auto& c = GetParam();
    const graph g = load_onnx(c.path);  // strict: every op known, shape inference must succeed
    ASSERT_FALSE(g.nodes.empty());
    for (const auto& n : g.nodes) EXPECT_NE(n.op_type, "Constant") << "Constant nodes become parameters";
    ASSERT_EQ(g.inputs.size(), 1u);
    EXPECT_TRUE(g.inputs[0].shape_known);
    EXPECT_LT(g.inputs[0].shape[0], 0) << "the batch stays symbolic";
    for (const auto& o : g.outputs) {
        EXPECT_TRUE(o.shape_known) << o.name;
        if (o.shape_known) {
            EXPECT_LT(o.shape[0], 0) << o.name << " keeps the symbolic batch";
        }
    }
    const std::string s = g.summary();
    EXPECT_NE(s.find(g.inputs[0].name), std::string::npos);
    EXPECT_NE(s.find("nodes:"), std::string::npos);

    // Export at the model's opset (raised to 13) and re-import: same graph, parameters bit for bit.
    const std::string bytes = save_onnx_to_string(g);
    const graph h = load_onnx_from_memory(bytes, {}, c.name + " (re-imported)");
    test::expect_same_graph(g, h);

    // Every export opset gives back the same canonical graph (Reduce* axes travel as attributes below opset 18).
    for (std::int64_t opset : {18, 21}) {
        SCOPED_TRACE("opset " + std::to_string(opset));
        onnx_save_options so;
        so.opset = opset;
        test::expect_same_graph(g, load_onnx_from_memory(save_onnx_to_string(g, so), {}, c.name));
    }

    // And the same outputs.
    const tensor x = random_input(c.input_shape, 42);
    executor e1(g), e2(h);
    const auto y1 = e1.run(std::vector<tensor>{x});
    const auto y2 = e2.run(std::vector<tensor>{x});
    ASSERT_EQ(y1.size(), y2.size());
    for (std::size_t i = 0; i < y1.size(); ++i) {
        ASSERT_EQ(y1[i].shape(), y2[i].shape());
        const float scale = std::max(1.f, max_abs(y1[i]));
        for (std::int64_t k = 0; k < y1[i].numel(); ++k)
            ASSERT_NEAR(y1[i].f32()[k], y2[i].f32()[k], roundtrip_tolerance * scale) << "output " << i << " element " << k;
    }
}

TEST_P(real_model, batch_norm_folding_keeps_outputs) {
    const auto& c = GetParam();
    const graph g = load_onnx(c.path);
    graph folded = g;
    const std::size_t bns = static_cast<std::size_t>(
        std::count_if(g.nodes.begin(), g.nodes.end(), [](const node& n) { return n.op_type == "BatchNormalization"; }));
    const std::size_t n = fold_batch_norm(folded);
    EXPECT_LE(n, bns);
    if (c.name == "cls") {
        EXPECT_GT(n, 30u) << "the classifier has 35 unfused BatchNormalizations after Conv";
    }
    EXPECT_EQ(folded.nodes.size(), g.nodes.size() - n);
    EXPECT_NO_THROW(folded.validate());
    const tensor x = random_input(c.input_shape, 7);
    const auto y1 = executor(g).run(std::vector<tensor>{x});
    const auto y2 = executor(folded).run(std::vector<tensor>{x});
    for (std::size_t i = 0; i < y1.size(); ++i) {
        const float scale = std::max(1e-3f, max_abs(y1[i]));
        for (std::int64_t k = 0; k < y1[i].numel(); ++k)
            ASSERT_NEAR(y1[i].f32()[k], y2[i].f32()[k], bn_fold_tolerance * scale) << "output " << i << " element " << k;
    }
}

INSTANTIATE_TEST_SUITE_P(models, real_model, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<model_case>& i) { return i.param.name; });

}  // namespace
}  // namespace quantsim
