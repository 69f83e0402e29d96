// PyTorch golden vectors (tests/golden/make_fake_quant_golden.py): torch.fake_quantize_per_tensor_affine and
// torch.fake_quantize_per_channel_affine must match quantsim's fake_quant with quant_options::pytorch() bit for bit.
#include <bit>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "quant_test_util.hpp"

namespace quantsim::test {
namespace {

const std::string golden_dir = std::string(QUANTSIM_SOURCE_DIR) + "/tests/golden/";

struct golden_case {
    std::string name;
    shape_t shape;
    quant_params params;
    std::vector<float> input, expected;
};

std::vector<golden_case> load_golden() {
    std::ifstream js(golden_dir + "fake_quant_golden.json");
    if (!js) throw std::runtime_error("cannot open " + golden_dir + "fake_quant_golden.json");
    const auto index = nlohmann::json::parse(js);
    std::ifstream bin(golden_dir + index.at("data_file").get<std::string>(), std::ios::binary);
    const std::vector<char> blob((std::istreambuf_iterator<char>(bin)), std::istreambuf_iterator<char>());
    std::vector<golden_case> cases;
    for (const auto& c : index.at("cases")) {
        golden_case g;
        g.name = c.at("name").get<std::string>();
        g.shape = c.at("shape").get<shape_t>();
        const auto count = c.at("count").get<std::size_t>();
        const auto read = [&](std::size_t offset) {
            if (offset + count * 4 > blob.size()) throw std::runtime_error(g.name + ": data outside the .bin file");
            std::vector<float> v(count);
            std::memcpy(v.data(), blob.data() + offset, count * 4);
            return v;
        };
        g.input = read(c.at("input_offset").get<std::size_t>());
        g.expected = read(c.at("output_offset").get<std::size_t>());
        const auto qmin = c.at("quant_min").get<std::int64_t>(), qmax = c.at("quant_max").get<std::int64_t>();
        quant_params& p = g.params;
        p.bitwidth = c.at("bitwidth").get<int>();
        p.is_signed = qmin < 0;
        p.zero_point = c.at("zero_point").get<std::vector<std::int32_t>>();
        p.scale.clear();
        for (auto b : c.at("scale_bits").get<std::vector<std::uint32_t>>()) p.scale.push_back(std::bit_cast<float>(b));
        const bool all_zero = std::all_of(p.zero_point.begin(), p.zero_point.end(), [](auto z) { return z == 0; });
        p.scheme = p.is_signed && all_zero ? qscheme::symmetric : qscheme::asymmetric;
        p.gran = c.at("axis").is_null() ? granularity::per_tensor() : granularity::per_channel(c.at("axis").get<int>());
        // torch's [quant_min, quant_max] must be exactly our grid.
        if (p.range().qmin != qmin || p.range().qmax != qmax)
            throw std::runtime_error(g.name + ": grid does not map onto quantsim's");
        cases.push_back(std::move(g));
    }
    return cases;
}

TEST(quant_golden, torch_fake_quantize_matches_bit_for_bit) {
    const auto cases = load_golden();
    ASSERT_GE(cases.size(), 60u);
    std::size_t per_channel = 0, elements = 0, ties = 0;
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        std::vector<float> got(c.input.size());
        fake_quant(c.input, got, c.shape, c.params, quant_options::pytorch());
        const auto bad = first_bit_mismatch(c.expected, got);
        ASSERT_EQ(bad, -1) << "element " << bad << ": x=" << c.input[static_cast<std::size_t>(bad)]
                           << " torch=" << c.expected[static_cast<std::size_t>(bad)]
                           << " quantsim=" << got[static_cast<std::size_t>(bad)];
        // Multithreaded and in-place give the same bits.
        std::vector<float> inplace = c.input;
        fake_quant_(inplace, c.shape, c.params, quant_options::pytorch().with_threads(2));
        ASSERT_EQ(first_bit_mismatch(c.expected, inplace), -1);
        per_channel += c.params.gran.kind == granularity_kind::per_channel;
        elements += c.input.size();
        for (std::size_t i = 0; i < c.input.size(); ++i) {
            const auto k = static_cast<std::size_t>(
                group_index_ref(check_quant_params(c.params, c.shape), c.shape, static_cast<std::int64_t>(i)));
            const double v = static_cast<double>(c.input[i]) / c.params.scale[k];
            ties += std::abs(v - std::floor(v) - 0.5) < 1e-6;
        }
    }
    EXPECT_GE(per_channel, 40u);
    EXPECT_GT(ties, elements / 10) << "the golden data should be rich in (near-)ties";
}

TEST(quant_golden, divide_arithmetic_differs_from_torch_at_some_ties) {
    // The golden data discriminates the two arithmetics: x / s (ONNX) moves some ties that x * (1/s) (torch) keeps.
    const auto cases = load_golden();
    std::size_t differ = 0;
    for (const auto& c : cases) {
        std::vector<float> got(c.input.size());
        fake_quant(c.input, got, c.shape, c.params, quant_options::onnx());
        for (std::size_t i = 0; i < got.size(); ++i)
            differ += std::bit_cast<std::uint32_t>(got[i]) != std::bit_cast<std::uint32_t>(c.expected[i]);
    }
    std::ifstream js(golden_dir + "fake_quant_golden.json");
    const auto index = nlohmann::json::parse(js);
    EXPECT_EQ(differ, index.at("elements_where_divide_differs_from_torch").get<std::size_t>());
    EXPECT_GT(differ, 100u);
}

}  // namespace
}  // namespace quantsim::test
