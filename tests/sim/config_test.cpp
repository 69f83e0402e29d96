#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <quantsim/core/error.hpp>
#include <quantsim/sim/config.hpp>

namespace qs = quantsim;

namespace {

// Expects parse() to throw config_error whose message contains every fragment (the JSON path among them).
void expect_config_error(const std::string& text, std::initializer_list<std::string> fragments) {
    try {
        (void)qs::quantsim_config::parse(text, "test.json");
        ADD_FAILURE() << "no error for: " << text;
    } catch (const qs::config_error& e) {
        const std::string msg = e.what();
        for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
        EXPECT_NE(msg.find("test.json"), std::string::npos) << msg;
    }
}

// A minimal valid config with one section replaced.
std::string with(const std::string& key, const std::string& value) {
    std::string defaults = R"({"ops": {"is_output_quantized": "True"}, "params": {"is_quantized": "True"}})";
    std::string params = "{}", op_type = "{}", supergroups = "[]", model_input = "{}", model_output = "{}";
    if (key == "defaults") defaults = value;
    if (key == "params") params = value;
    if (key == "op_type") op_type = value;
    if (key == "supergroups") supergroups = value;
    if (key == "model_input") model_input = value;
    return R"({"defaults": )" + defaults + R"(, "params": )" + params + R"(, "op_type": )" + op_type +
           R"(, "supergroups": )" + supergroups + R"(, "model_input": )" + model_input +
           R"(, "model_output": )" + model_output + "}";
}

}  // namespace

TEST(config, default_config_resolves_like_aimet) {
    const auto c = qs::quantsim_config::default_config();
    EXPECT_TRUE(c.output_quantized("Conv"));
    EXPECT_FALSE(c.output_quantized("Cast"));
    EXPECT_FALSE(c.output_quantized("Gather"));
    EXPECT_FALSE(c.input_quantized("Conv"));
    EXPECT_TRUE(c.param_quantized("Conv", "weight"));
    EXPECT_TRUE(c.param_symmetric("Conv", "weight"));
    EXPECT_FALSE(c.param_quantized("Conv", "bias"));
    EXPECT_FALSE(c.activation_symmetric("Relu"));
    EXPECT_FALSE(c.per_channel("Conv"));
    EXPECT_FALSE(c.strict_symmetric);
    ASSERT_EQ(c.supergroups.size(), 5u);
    EXPECT_EQ(c.supergroups[0], (std::vector<std::string>{"Conv", "Relu"}));
    ASSERT_TRUE(c.model_input_quantized.has_value());
    EXPECT_TRUE(*c.model_input_quantized);
    EXPECT_FALSE(c.model_output_quantized.has_value());
}

TEST(config, per_channel_and_htp_configs) {
    const auto pc = qs::quantsim_config::builtin("per_channel");
    EXPECT_TRUE(pc.per_channel("Conv"));
    EXPECT_FALSE(pc.per_channel("Gemm"));
    EXPECT_FALSE(pc.per_channel("MatMul"));

    const auto htp = qs::quantsim_config::builtin("htp");
    EXPECT_EQ(htp.hw_version, "V75");
    EXPECT_FALSE(htp.output_quantized("Reshape"));
    EXPECT_FALSE(htp.output_quantized("MaxPool"));
    const auto sig = htp.output_constraints("Sigmoid");
    ASSERT_TRUE(sig.has_value());
    EXPECT_EQ(sig->first, 0.0);
    EXPECT_EQ(sig->second, 1.0);
    EXPECT_FALSE(htp.param_quantized("BatchNormalization", "running_mean"));
    EXPECT_TRUE(htp.param_quantized("GroupNormalization", "bias"));
    EXPECT_FALSE(htp.param_quantized("Conv", "bias"));
    EXPECT_FALSE(htp.param_symmetric("LayerNormalization", "weight"));
    EXPECT_EQ(htp.supergroups.size(), 12u);
}

TEST(config, shipped_files_equal_builtin_copies) {
    const std::filesystem::path dir = std::filesystem::path(QUANTSIM_SOURCE_DIR) / "configs";
    const std::pair<const char*, const char*> files[] = {{"default_config.json", "default"},
                                                        {"default_config_per_channel.json", "per_channel"},
                                                        {"htp_config.json", "htp"}};
    for (const auto& [file, name] : files) {
        const auto from_file = qs::quantsim_config::load(dir / file);
        EXPECT_EQ(from_file.to_json(), qs::quantsim_config::builtin(name).to_json()) << file;
    }
}

TEST(config, to_json_round_trips) {
    for (const char* name : {"default", "per_channel", "htp"}) {
        const auto c = qs::quantsim_config::builtin(name);
        const auto again = qs::quantsim_config::parse(c.to_json());
        EXPECT_EQ(again.to_json(), c.to_json()) << name;
    }
}

TEST(config, accepts_json_booleans_and_aliases) {
    const auto c = qs::quantsim_config::parse(
        with("op_type", R"({"LayerNorm": {"is_output_quantized": false}, "Relu": {"is_symmetric": true}})"));
    EXPECT_FALSE(c.output_quantized("LayerNormalization"));
    EXPECT_TRUE(c.activation_symmetric("Relu"));
}

TEST(config, errors_name_the_json_path) {
    expect_config_error("{", {"not valid JSON"});
    expect_config_error("[]", {"expected an object"});
    expect_config_error(R"({"defaults": {}})", {"missing required section"});
    expect_config_error(with("params", R"({"weight": {"is_quantised": "True"}})"),
                        {"/params/weight/is_quantised", "unknown key"});
    expect_config_error(with("op_type", R"({"Convv": {}})"), {"/op_type/Convv", "unknown op type"});
    expect_config_error(with("op_type", R"({"Conv": {"is_symmetric": 1}})"), {"/op_type/Conv/is_symmetric"});
    expect_config_error(with("op_type", R"({"Conv": {"is_symmetric": "Yes"}})"),
                        {"/op_type/Conv/is_symmetric", "\"Yes\""});
    expect_config_error(with("op_type", R"({"Sigmoid": {"encoding_constraints": {"min": 1, "max": 0}}})"),
                        {"/op_type/Sigmoid/encoding_constraints", "below"});
    expect_config_error(with("op_type", R"({"Conv": {"supported_kernels": []}})"),
                        {"/op_type/Conv/supported_kernels", "at least one"});
    expect_config_error(
        with("op_type", R"({"Conv": {"supported_kernels": [{"activation": {"bitwidth": 7.5, "dtype": "int"}}]}})"),
        {"/op_type/Conv/supported_kernels/0/activation/bitwidth"});
    expect_config_error(with("supergroups", R"([{"op_list": ["Conv"]}])"), {"/supergroups/0/op_list", "two"});
    expect_config_error(with("supergroups", R"([{"op_list": ["Conv", "Reluu"]}])"),
                        {"/supergroups/0/op_list/1", "Reluu"});
    expect_config_error(with("model_input", R"({"is_output_quantized": "True"})"),
                        {"/model_input/is_output_quantized"});
    expect_config_error(with("defaults", R"({"ops": {}, "params": {}, "per_channel": "True"})"),
                        {"/defaults/per_channel", "unknown key"});
    expect_config_error(with("defaults", R"({"ops": {"per_channel_quantization": "True"}, "params": {}})"),
                        {"/defaults/ops/per_channel_quantization"});
}

TEST(config, missing_file_and_unknown_builtin) {
    EXPECT_THROW(qs::quantsim_config::load("/nonexistent/quantsim.json"), qs::io_error);
    EXPECT_THROW(qs::quantsim_config::builtin("tflite"), qs::config_error);
}

TEST(config, param_kinds_of_onnx_inputs) {
    EXPECT_EQ(qs::param_kind("Conv", 1), "weight");
    EXPECT_EQ(qs::param_kind("Conv", 2), "bias");
    EXPECT_EQ(qs::param_kind("Conv", 0), "");
    EXPECT_EQ(qs::param_kind("Gemm", 1), "weight");
    EXPECT_EQ(qs::param_kind("MatMul", 1), "weight");
    EXPECT_EQ(qs::param_kind("BatchNormalization", 4), "running_var");
}
