// quantsim's ONNX export checked by a real runtime: import a real model, export it again, and ONNX Runtime must give
// the same outputs on real inputs for the exported model as for the original. (Later QDQ exports build on this.)
#include "peer_models.hpp"

namespace qp = quantsim::peer;

namespace {

// Same ops and weights, same runtime: only float reassociation from a different node order or fusion may differ.
constexpr double export_rel_tol = 1e-5;

class peer_onnx_export : public ::testing::TestWithParam<std::string> {};

TEST_P(peer_onnx_export, exported_model_matches_original_in_ort) {
    QUANTSIM_REQUIRE_PEER_NODE();
    const qp::peer_model model = qp::load_peer_model(GetParam());
    QUANTSIM_REQUIRE_PEER_FILE(model.path);
    const quantsim::graph g = quantsim::load_onnx(model.path);
    qp::ort_options opt;
    opt.all_outputs = true;
    const auto original = qp::run_ort(model.path, {{"", model.input}}, opt);
    const auto exported = qp::run_ort_on_graph(g, {{"", model.input}}, opt);
    ASSERT_EQ(exported.output_names, original.output_names);
    for (std::size_t i = 0; i < original.outputs.size(); ++i) {
        SCOPED_TRACE("output " + original.output_names[i]);
        EXPECT_TRUE(qp::outputs_match(exported.outputs[i], original.outputs[i], export_rel_tol));
    }
}

INSTANTIATE_TEST_SUITE_P(models, peer_onnx_export, ::testing::ValuesIn(qp::peer_model_names()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
