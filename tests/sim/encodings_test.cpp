#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>
#include <string>

#include <quantsim/core/error.hpp>
#include <quantsim/sim/encodings.hpp>

namespace qs = quantsim;

namespace {

qs::tensor_encoding act(const std::string& name, double mn, double mx, int bw = 8) {
    qs::quant_spec s;
    s.bitwidth = bw;
    return {name, qs::quant_params::per_tensor(qs::encoding_from_range(mn, mx, s)), {}, true, 0};
}

qs::tensor_encoding weight_pc(const std::string& name, std::vector<double> absmax, int bw = 8, int axis = 0) {
    qs::quant_spec s;
    s.bitwidth = bw;
    s.scheme = qs::qscheme::symmetric;
    std::vector<qs::encoding> g;
    for (double a : absmax) g.push_back(qs::encoding_from_range(-a, a, s));
    return {name, qs::quant_params::from(g, qs::granularity::per_channel(axis)), {}, true, 0};
}

qs::encodings_file sample() {
    qs::encodings_file f;
    f.activations.push_back(act("input.1", -0.3, 2.2));
    f.activations.push_back(act("/conv1/Conv_output_0", 0.0, 6.0, 16));
    f.params.push_back(weight_pc("conv1.weight", {0.254, 0.127}));
    qs::quant_spec s;
    s.bitwidth = 4;
    s.scheme = qs::qscheme::symmetric;
    f.params.push_back({"fc.weight", qs::quant_params::per_tensor(qs::encoding_from_range(-1, 1, s)), {}, true, 0});
    f.params.push_back({"fc.bias", {}, 16, true, 0});
    f.args = qs::quantizer_args{};
    return f;
}

void expect_same(const qs::quant_params& a, const qs::quant_params& b, const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (std::size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a.scale[i], b.scale[i]) << what << " scale " << i;
        EXPECT_EQ(a.zero_point[i], b.zero_point[i]) << what << " zero point " << i;
    }
    EXPECT_EQ(a.bitwidth, b.bitwidth) << what;
    EXPECT_EQ(a.is_signed, b.is_signed) << what;
    EXPECT_EQ(a.gran.kind, b.gran.kind) << what;
}

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void expect_error(const std::string& text, std::initializer_list<std::string> fragments) {
    try {
        (void)qs::read_encodings(text, "enc.json");
        ADD_FAILURE() << "no error for " << text;
    } catch (const qs::config_error& e) {
        for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(encodings, round_trip_every_version) {
    const auto f = sample();
    for (auto v : {qs::encodings_version::v0_6_1, qs::encodings_version::v1_0_0, qs::encodings_version::v2_0_0}) {
        SCOPED_TRACE(std::string(qs::to_string(v)));
        const auto back = qs::read_encodings(qs::write_encodings(f, v));
        for (const auto& t : f.activations) {
            const auto* r = back.find(t.name);
            ASSERT_NE(r, nullptr) << t.name;
            expect_same(t.params, r->params, t.name);
        }
        for (const auto& t : f.params) {
            const auto* r = back.find(t.name);
            if (t.float_bitwidth) {
                // 2.0.0 has no entry for float quantizers, as AIMET writes it.
                if (v == qs::encodings_version::v2_0_0) {
                    EXPECT_EQ(r, nullptr);
                } else {
                    ASSERT_NE(r, nullptr);
                    EXPECT_EQ(r->float_bitwidth, t.float_bitwidth);
                }
                continue;
            }
            ASSERT_NE(r, nullptr) << t.name;
            expect_same(t.params, r->params, t.name);
        }
    }
}

TEST(encodings, aimet_conventions_in_each_version) {
    const auto f = sample();
    const std::string v061 = qs::write_encodings(f, qs::encodings_version::v0_6_1);
    // AIMET's worked example: TF min -0.3, max 2.2 -> delta 2.5/255, offset -31; symmetric int8 weight offset -128.
    EXPECT_NE(v061.find("\"offset\": -31"), std::string::npos) << v061;
    EXPECT_NE(v061.find("\"offset\": -128"), std::string::npos);
    EXPECT_NE(v061.find("\"is_symmetric\": \"True\""), std::string::npos);
    EXPECT_NE(v061.find("\"dtype\": \"float\""), std::string::npos);
    const std::string v100 = qs::write_encodings(f, qs::encodings_version::v1_0_0);
    EXPECT_NE(v100.find("\"enc_type\": \"PER_CHANNEL\""), std::string::npos);
    EXPECT_NE(v100.find("\"is_sym\": true"), std::string::npos);
    const std::string v200 = qs::write_encodings(f, qs::encodings_version::v2_0_0);
    // 2.0.0: y_zero_point = zero point in the dtype's own grid; omitted for signed symmetric.
    EXPECT_NE(v200.find("\"y_zero_point\": 31"), std::string::npos) << v200;
    EXPECT_NE(v200.find("\"output_dtype\": \"int4\""), std::string::npos);
    EXPECT_NE(v200.find("\"output_dtype\": \"uint16\""), std::string::npos);
}

TEST(encodings, golden_files) {
    // tests/sim/golden/sample_<version>.json hold the reviewed output of sample(); a diff means the format changed.
    const std::filesystem::path dir = std::filesystem::path(QUANTSIM_SOURCE_DIR) / "tests/sim/golden";
    const auto f = sample();
    for (auto v : {qs::encodings_version::v0_6_1, qs::encodings_version::v1_0_0, qs::encodings_version::v2_0_0}) {
        const auto path = dir / ("sample_" + std::string(qs::to_string(v)) + ".json");
        EXPECT_EQ(qs::write_encodings(f, v), read_file(path)) << path;
    }
}

TEST(encodings, reads_aimet_reference_examples) {
    // The examples of AIMET's encoding specification (values as AIMET writes them).
    const auto a = qs::read_encodings(R"({
      "version": "0.6.1",
      "activation_encodings": {"input.1": [{"bitwidth": 8, "dtype": "int", "is_symmetric": "False",
          "max": 2.196078431372549, "min": -0.30392156862745096, "offset": -31, "scale": 0.00980392156862745}]},
      "param_encodings": {"conv1.weight": [
          {"bitwidth": 8, "dtype": "int", "is_symmetric": "True", "max": 0.254, "min": -0.256, "offset": -128, "scale": 0.002},
          {"bitwidth": 8, "dtype": "int", "is_symmetric": "True", "max": 0.127, "min": -0.128, "offset": -128, "scale": 0.001}],
        "fc.bias": [{"bitwidth": 16, "dtype": "float"}]},
      "excluded_layers": [],
      "quantizer_args": {"activation_bitwidth": 8, "dtype": "int", "is_symmetric": true, "param_bitwidth": 8,
                         "per_channel_quantization": true, "quant_scheme": "post_training_tf_enhanced"}})");
    const auto* in = a.find("input.1");
    ASSERT_NE(in, nullptr);
    EXPECT_EQ(in->params.zero_point[0], 31);
    EXPECT_FALSE(in->params.is_signed);
    EXPECT_EQ(in->params.scale[0], static_cast<float>(0.00980392156862745));
    const auto* w = a.find("conv1.weight");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->params.gran.kind, qs::granularity_kind::per_channel);
    EXPECT_FALSE(w->axis_known);
    EXPECT_TRUE(w->params.is_signed);
    EXPECT_EQ(w->params.scheme, qs::qscheme::symmetric);
    EXPECT_EQ(w->params.zero_point[1], 0);
    EXPECT_EQ(w->params.scale[1], 0.001f);
    EXPECT_EQ(a.find("fc.bias")->float_bitwidth, 16);
    ASSERT_TRUE(a.args.has_value());
    EXPECT_EQ(a.args->quant_scheme, "post_training_tf_enhanced");

    const auto b = qs::read_encodings(R"({
      "version": "1.0.0",
      "activation_encodings": [{"name": "input.1", "dtype": "INT", "enc_type": "PER_TENSOR", "bw": 8, "is_sym": false,
                                "scale": [0.00980392156862745], "offset": [-31]}],
      "param_encodings": [
        {"name": "conv1.weight", "dtype": "INT", "enc_type": "PER_CHANNEL", "bw": 8, "is_sym": true,
         "scale": [0.002, 0.001], "offset": [-128, -128]},
        {"name": "fc.weight", "dtype": "INT", "enc_type": "LPBQ", "bw": 8, "compressed_bw": 4, "is_sym": true,
         "block_size": 64, "scale": [0.0004, 0.0003], "offset": [-128, -128], "per_block_int_scale": [16, 9, 12, 16]},
        {"name": "ln.weight", "dtype": "FLOAT", "enc_type": "PER_TENSOR", "bw": 16}],
      "excluded_layers": [],
      "quantizer_args": {"activation_bitwidth": 8, "dtype": "int", "is_symmetric": true, "param_bitwidth": 8,
                         "per_channel_quantization": true, "quant_scheme": "post_training_tf_enhanced"}})");
    const auto* lp = b.find("fc.weight");
    ASSERT_NE(lp, nullptr);
    EXPECT_EQ(lp->params.gran.kind, qs::granularity_kind::per_block);
    EXPECT_EQ(lp->params.bitwidth, 4);
    ASSERT_EQ(lp->params.size(), 4u);
    EXPECT_EQ(lp->params.scale[1], static_cast<float>(9 * 0.0004));
    EXPECT_EQ(lp->params.scale[2], static_cast<float>(12 * 0.0003));
    EXPECT_EQ(lp->blocks_per_channel, 2);
    EXPECT_EQ(b.find("ln.weight")->float_bitwidth, 16);

    const auto c = qs::read_encodings(R"({
      "version": "2.0.0",
      "encodings": [
        {"name": "input.1", "output_dtype": "uint8", "y_scale": 0.00980392156862745, "y_zero_point": 31},
        {"name": "conv1.weight", "output_dtype": "int8", "y_scale": [0.002, 0.001], "axis": 0},
        {"name": "fc.weight", "output_dtype": "int4", "axis": 1, "block_size": 32, "y_scale": [[0.01, 0.02], [0.03, 0.04]]},
        {"name": "conv1.bias", "output_dtype": "int32", "y_scale": [1.96e-05, 9.8e-06], "axis": 0}]})");
    EXPECT_EQ(c.find("input.1")->params.zero_point[0], 31);
    EXPECT_EQ(c.find("conv1.weight")->params.gran.axis, 0);
    EXPECT_EQ(c.find("conv1.weight")->params.scheme, qs::qscheme::symmetric);
    const auto* blk = c.find("fc.weight");
    EXPECT_EQ(blk->params.gran.kind, qs::granularity_kind::per_block);
    EXPECT_EQ(blk->params.gran.block_axis, 1);
    EXPECT_EQ(blk->params.gran.block_size, 32);
    EXPECT_EQ(blk->blocks_per_channel, 2);
    EXPECT_EQ(blk->params.scale[2], 0.03f);
    EXPECT_EQ(c.find("conv1.bias")->params.bitwidth, 32);
}

TEST(encodings, version_inferred_without_version_key) {
    EXPECT_EQ(qs::read_encodings(R"({"encodings": [{"name": "x", "output_dtype": "uint8", "y_scale": 0.5}]})")
                  .find("x")->params.scale[0], 0.5f);
    EXPECT_EQ(qs::read_encodings(R"({"activation_encodings": [{"name": "x", "dtype": "INT", "enc_type": "PER_TENSOR",
                                     "bw": 8, "is_sym": false, "scale": [0.5], "offset": [-3]}]})")
                  .find("x")->params.zero_point[0], 3);
    EXPECT_EQ(qs::read_encodings(R"({"activation_encodings": {"x": [{"bitwidth": 8, "is_symmetric": "False",
                                     "scale": 0.5, "offset": -3.0}]}})")
                  .find("x")->params.zero_point[0], 3);
}

TEST(encodings, per_block_round_trip_in_1_0_0_and_2_0_0) {
    qs::quant_spec s;
    s.bitwidth = 4;
    s.scheme = qs::qscheme::symmetric;
    std::vector<qs::encoding> g;
    for (int i = 0; i < 6; ++i) g.push_back(qs::encoding_from_range(-0.1 * (i + 1), 0.1 * (i + 1), s));
    qs::encodings_file f;
    f.params.push_back({"w", qs::quant_params::from(g, qs::granularity::per_block(0, 1, 32)), {}, true, 3});
    for (auto v : {qs::encodings_version::v1_0_0, qs::encodings_version::v2_0_0}) {
        const auto back = qs::read_encodings(qs::write_encodings(f, v));
        const auto* r = back.find("w");
        ASSERT_NE(r, nullptr);
        expect_same(f.params[0].params, r->params, "w");
        EXPECT_EQ(r->params.gran.block_size, 32);
    }
    EXPECT_THROW(qs::write_encodings(f, qs::encodings_version::v0_6_1), qs::unsupported_error);
}

TEST(encodings, unrepresentable_and_invalid_on_write) {
    qs::encodings_file f;
    f.activations.push_back(act("x", -1, 1, 6));
    EXPECT_THROW(qs::write_encodings(f, qs::encodings_version::v2_0_0), qs::unsupported_error);
    EXPECT_NO_THROW(qs::write_encodings(f, qs::encodings_version::v1_0_0));
    f.activations[0].params.scale[0] = -1.0f;
    EXPECT_THROW(qs::write_encodings(f, qs::encodings_version::v1_0_0), qs::invalid_argument);
}

TEST(encodings, malformed_input_names_the_place) {
    expect_error("{", {"enc.json", "not valid JSON"});
    expect_error(R"({"version": "3.0.0"})", {"unsupported encodings version"});
    expect_error(R"({"version": "0.6.1", "activation_encodings": {"/conv/out": [{"bitwidth": 8, "scale": "x", "offset": 0}]}})",
                 {"activation_encodings[\"/conv/out\"][0].scale", "expected a number"});
    expect_error(R"({"version": "0.6.1", "activation_encodings": {"a": [{"bitwidth": 8, "scale": 0.1, "offset": -300}]}})",
                 {"activation_encodings[\"a\"][0]", "offset -300"});
    expect_error(R"({"version": "0.6.1", "activation_encodings": {"a": [{"bitwidth": 40, "scale": 0.1, "offset": 0}]}})",
                 {"bitwidth", "40"});
    expect_error(R"({"version": "1.0.0", "activation_encodings": [{"name": "a", "dtype": "INT", "enc_type": "PER_TENSOR",
                   "bw": 8, "scale": [0.1, 0.2], "offset": [0]}]})",
                 {"activation_encodings[\"a\"].offset", "as long as scale"});
    expect_error(R"({"version": "1.0.0", "activation_encodings": [{"name": "a", "dtype": "INT", "enc_type": "PER_TENSOR",
                   "bw": 8, "scale": [-0.1], "offset": [0]}]})",
                 {"activation_encodings[\"a\"]", "positive"});
    expect_error(R"({"version": "1.0.0", "activation_encodings": [{"name": "a", "dtype": "INT", "enc_type": "VECTOR",
                   "bw": 8, "scale": [0.1], "offset": [0]}]})",
                 {"enc_type", "VECTOR"});
    expect_error(R"({"version": "1.0.0", "param_encodings": [{"name": "a", "dtype": "INT", "enc_type": "PER_TENSOR",
                   "bw": 8, "scale": [0.1], "offset": [0]}, {"name": "a", "dtype": "INT", "enc_type": "PER_TENSOR",
                   "bw": 8, "scale": [0.1], "offset": [0]}]})",
                 {"param_encodings[\"a\"]", "twice"});
    expect_error(R"({"version": "2.0.0", "encodings": [{"name": "a", "output_dtype": "float8", "y_scale": 0.1}]})",
                 {"output_dtype", "float8"});
    expect_error(R"({"version": "2.0.0", "encodings": [{"name": "a", "output_dtype": "uint8", "y_scale": 0.1,
                   "y_zero_point": 300}]})",
                 {"encodings[\"a\"]", "zero point 300"});
    expect_error(R"({"version": "2.0.0", "encodings": [{"name": "a", "output_dtype": "int8", "y_scale": [0.1, 0.2]}]})",
                 {"encodings[\"a\"]", "axis"});
    expect_error(R"({"version": "2.0.0", "encodings": [{"name": "a", "output_dtype": "int8", "y_scale": 0.1, "scale": 1}]})",
                 {"encodings[\"a\"].scale", "unknown key"});
}

TEST(encodings, save_is_atomic) {
    const auto dir = std::filesystem::temp_directory_path() / ("qs_enc_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto path = dir / "model.encodings.json";
    const auto f = sample();
    qs::save_encodings(f, path, qs::encodings_version::v1_0_0);
    const std::string before = read_file(path);
    ASSERT_FALSE(before.empty());
    // A failing write (per-block cannot be 0.6.1) must leave the earlier file as it was, and no temporary behind.
    qs::encodings_file bad = f;
    bad.params[0].params.gran = qs::granularity::per_block(0, 1, 1);
    EXPECT_THROW(qs::save_encodings(bad, path, qs::encodings_version::v0_6_1), qs::unsupported_error);
    EXPECT_EQ(read_file(path), before);
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator{}), 1);
    EXPECT_THROW(qs::save_encodings(f, dir / "missing_dir" / "x.json", qs::encodings_version::v1_0_0), qs::io_error);
    EXPECT_THROW(qs::load_encodings(dir / "nope.json"), qs::io_error);
    std::filesystem::remove_all(dir);
}
