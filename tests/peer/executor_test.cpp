// quantsim's executor against ONNX Runtime on real models and real inputs: the three PaddleOCR models (classifier,
// recognizer, detector) on the committed rendered fixtures, and torchvision resnet18 / mobilenet_v2 (exported by
// examples/data/export_torchvision.py) on rendered scenes. Outputs must agree within 1e-4 of the largest output
// magnitude; the classifier and recognizer must also be right about the fixtures themselves.
#include <fstream>
#include <iostream>

#include <quantsim/ir/executor.hpp>

#include "peer_models.hpp"

namespace qp = quantsim::peer;
using quantsim::tensor;

namespace {

// Threads for quantsim: 2 exercises the parallel paths (results must not depend on the thread count).
constexpr int quantsim_threads = 2;

class peer_executor : public ::testing::TestWithParam<std::string> {};

TEST_P(peer_executor, matches_onnx_runtime) {
    QUANTSIM_REQUIRE_PEER_NODE();
    const qp::peer_model model = qp::load_peer_model(GetParam());
    QUANTSIM_REQUIRE_PEER_FILE(model.path);
    quantsim::executor ex(quantsim::load_onnx(model.path), {.num_threads = quantsim_threads});
    const std::vector<tensor> ours = ex.run({model.input});
    const tensor theirs = qp::run_ort_first(model.path, model.input);
    ASSERT_FALSE(ours.empty());
    const auto match = qp::outputs_match(ours[0], theirs);
    EXPECT_TRUE(match);
    std::cout << "[ quantsim vs ORT ] " << model.name << ": " << match.message() << "\n";
}

// One thread, no fusion (the plain node-by-node path), and the input in sub-batches: a batch size other than the
// one the model was first run with, and a short last batch.
TEST_P(peer_executor, unfused_single_thread_sub_batches_match_onnx_runtime) {
    QUANTSIM_REQUIRE_PEER_NODE();
    const qp::peer_model model = qp::load_peer_model(GetParam());
    QUANTSIM_REQUIRE_PEER_FILE(model.path);
    const tensor theirs = qp::run_ort_first(model.path, model.input);
    quantsim::executor_options options;
    options.num_threads = 1;
    options.fuse = false;
    quantsim::executor ex(quantsim::load_onnx(model.path), options);
    const std::int64_t n = model.input.shape()[0];
    const std::int64_t step = model.sub_batch > 0 ? model.sub_batch : n;
    const std::int64_t row = theirs.numel() / theirs.shape()[0];
    for (std::int64_t b = 0; b < n; b += step) {
        const std::int64_t e = std::min(n, b + step);
        SCOPED_TRACE("samples [" + std::to_string(b) + ", " + std::to_string(e) + ")");
        const std::vector<tensor> ours = ex.run({model.input.slice(b, e).clone()});
        ASSERT_FALSE(ours.empty());
        tensor expected = tensor::empty(ours[0].shape());
        ASSERT_EQ(expected.numel(), (e - b) * row);
        std::copy_n(theirs.f32() + b * row, expected.numel(), expected.f32());
        EXPECT_TRUE(qp::outputs_match(ours[0], expected));
    }
}

INSTANTIATE_TEST_SUITE_P(models, peer_executor, ::testing::ValuesIn(qp::peer_model_names()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

// Beyond matching ORT: quantsim itself classifies and reads the fixtures (catches a shared preprocessing mistake).
TEST(peer_executor_accuracy, classifier_orientation) {
    const qp::peer_model model = qp::load_peer_model("paddle_cls");
    QUANTSIM_REQUIRE_PEER_FILE(model.path);
    quantsim::executor ex(quantsim::load_onnx(model.path), {.num_threads = quantsim_threads});
    const auto pred = qp::argmax_rows(ex.run({model.input}).at(0));
    const tensor labels = qp::load_fixture("cls_label.npy");
    int correct = 0;
    for (std::size_t i = 0; i < pred.size(); ++i) correct += pred[i] == labels.data<std::int64_t>()[i];
    EXPECT_GE(correct, 31) << "quantsim classifies only " << correct << "/32 fixture lines correctly";
}

TEST(peer_executor_accuracy, recognizer_reads_text) {
    const qp::peer_model model = qp::load_peer_model("paddle_rec");
    QUANTSIM_REQUIRE_PEER_FILE(model.path);
    quantsim::executor ex(quantsim::load_onnx(model.path), {.num_threads = quantsim_threads});
    const auto texts = qp::ctc_greedy_decode(ex.run({model.input}).at(0),
                                             qp::load_rec_classes(qp::paddle_model("ppocr_keys_v1.txt")));
    std::ifstream f(qp::fixture_dir() / "rec_labels.txt");
    int exact = 0, i = 0;
    std::string misread;
    for (std::string label; std::getline(f, label); ++i) {
        if (qp::trim(texts.at(i)) == label) ++exact;
        else misread += " '" + label + "' -> '" + texts.at(i) + "'";
    }
    EXPECT_EQ(i, 8);
    EXPECT_GE(exact, 7) << "quantsim reads only " << exact << "/8 fixture lines exactly:" << misread;
}

}  // namespace
