// Bad input gets a quantsim::error subclass whose message says what is wrong and where.
#include <gmock/gmock.h>

#include "quant_test_util.hpp"

namespace quantsim::test {
namespace {

using ::testing::HasSubstr;

template <class E, class F>
std::string message_of(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    } catch (const std::exception& e) {
        return std::string("wrong exception type: ") + e.what();
    }
    return "no exception";
}

quant_params per_channel_params(std::size_t n, int axis) {
    quant_params p;
    p.scale.assign(n, 0.1f);
    p.zero_point.assign(n, 0);
    p.gran = granularity::per_channel(axis);
    return p;
}

TEST(quant_errors, bad_parameters_name_what_and_where) {
    std::vector<float> x(12, 1.0f), y(12);
    const shape_t shape{3, 4};
    quant_params p;
    p.bitwidth = 17;
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x, y, shape, p); }), HasSubstr("bit width 17"));
    p.bitwidth = 8;
    p.scale = {-0.5f};
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x, y, shape, p); }),
                HasSubstr("scale -0.5 of group 0 must be finite and positive"));
    p.scale = {std::numeric_limits<float>::infinity()};
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x, y, shape, p); }), HasSubstr("scale inf"));
    p.scale = {0.1f};
    p.zero_point = {256};
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x, y, shape, p); }),
                HasSubstr("zero point 256 of group 0 is outside the grid [0, 255]"));
    p.zero_point = {0};
    p.scale = {0.1f, 0.2f};
    p.zero_point = {0, 0};
    EXPECT_THAT(message_of<shape_error>([&] { fake_quant(x, y, shape, p); }),
                HasSubstr("per-tensor quantization needs 1 scale, got 2"));

    EXPECT_THAT(message_of<shape_error>([&] { fake_quant(x, y, shape, per_channel_params(3, 1)); }),
                HasSubstr("3 scales for axis 1 of size 4 (shape [3, 4])"));
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x, y, shape, per_channel_params(3, 2)); }),
                HasSubstr("channel axis 2 is out of range for a tensor of rank 2"));
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x, y, shape, per_channel_params(3, -3)); }),
                HasSubstr("axis -3 is out of range"));
    fake_quant(x, y, shape, per_channel_params(4, -1));  // negative axes count from the end

    quant_params b = per_channel_params(6, 0);
    b.gran = granularity::per_block(0, 1, 3);
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x, y, shape, b); }),
                HasSubstr("block size 3 does not divide block axis 1 of size 4"));
    b.gran = granularity::per_block(0, 1, 0);
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x, y, shape, b); }), HasSubstr("block size 0 must be >= 1"));
    b.gran = granularity::per_block(1, 1, 2);
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x, y, shape, b); }),
                HasSubstr("the channel axis and the block axis are both 1"));
    b.gran = granularity::per_block(0, 1, 2);
    b.scale.assign(5, 0.1f), b.zero_point.assign(5, 0);
    EXPECT_THAT(message_of<shape_error>([&] { fake_quant(x, y, shape, b); }), HasSubstr("expected 6"));
    b.scale.assign(6, 0.1f), b.zero_point.assign(6, 0);
    fake_quant(x, y, shape, b);
    std::vector<float> x1(4), y1(4);
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x1, y1, shape_t{4}, b); }), HasSubstr("rank >= 2"));
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x1, y1, shape_t{}, per_channel_params(1, 0)); }),
                HasSubstr("scalar"));
}

TEST(quant_errors, bad_buffers_and_options) {
    std::vector<float> x(12, 1.0f), y(12);
    const encoding e{0.1f, 0, 8, true, qscheme::symmetric};
    const quant_params p = quant_params::per_tensor(e);
    std::vector<float> short_y(11);
    EXPECT_THAT(message_of<shape_error>([&] { fake_quant(x, short_y, shape_t{3, 4}, p); }),
                HasSubstr("shape [3, 4] has 12 elements but the input has 12 and the output 11"));
    EXPECT_THAT(message_of<shape_error>([&] { fake_quant(x, y, shape_t{3, 5}, p); }), HasSubstr("[3, 5]"));
    EXPECT_THAT(message_of<invalid_argument>([&] {
                    fake_quant(std::span<const float>(x.data(), 8), std::span<float>(x.data() + 2, 8), shape_t{8}, p);
                }),
                HasSubstr("overlap partially"));
    quant_options o;
    o.rounding = static_cast<rounding_mode>(9);
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x, y, shape_t{12}, p, o); }), HasSubstr("rounding mode 9"));
    o = {};
    o.arithmetic = static_cast<scale_arithmetic>(7);
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(x, y, shape_t{12}, p, o); }), HasSubstr("arithmetic 7"));
    EXPECT_THAT(message_of<shape_error>([&] { fake_quant(x, y, shape_t{-1, -12}, p); }), HasSubstr("negative dimension"));

    tensor i8 = tensor::zeros({4}, dtype::int8);
    EXPECT_THAT(message_of<unsupported_error>([&] { fake_quant(i8, e); }), HasSubstr("dtype int8"));
    tensor undefined;
    EXPECT_THAT(message_of<invalid_argument>([&] { fake_quant(undefined, e); }), HasSubstr("undefined"));
}

TEST(quant_errors, storage_must_hold_the_grid) {
    std::vector<float> x(4, 1.0f);
    std::vector<std::int8_t> q(4);
    const quant_params u8 = quant_params::per_tensor({0.1f, 10, 8, false, qscheme::asymmetric});
    EXPECT_THAT(message_of<invalid_argument>([&] { quantize<std::int8_t>(x, q, shape_t{4}, u8); }),
                HasSubstr("the grid [0, 255] does not fit int8 storage [-128, 127]"));
    const quant_params s8 = quant_params::per_tensor({0.1f, 0, 8, true, qscheme::symmetric});
    EXPECT_THAT(message_of<invalid_argument>([&] { quantize<std::int8_t>(x, q, shape_t{4}, s8, {}, dtype::int4); }),
                HasSubstr("does not fit int4"));
    EXPECT_THAT(message_of<invalid_argument>([&] { quantize<std::int8_t>(x, q, shape_t{4}, s8, {}, dtype::uint8); }),
                HasSubstr("uint8 storage is not held in this element type"));
    tensor t = tensor::full({4}, 1.0f);
    EXPECT_THAT(message_of<unsupported_error>([&] { quantize(t, s8, dtype::float32); }),
                HasSubstr("float32 is not an integer storage type"));
    const quant_params u32 = quant_params::per_tensor({0.1f, 0, 32, false, qscheme::asymmetric});
    EXPECT_THAT(message_of<unsupported_error>([&] { quantize(t, u32); }), HasSubstr("no integer storage"));

    // int4 bytes must hold int4 values.
    const quant_params s4 = quant_params::per_tensor({0.1f, 0, 4, true, qscheme::symmetric});
    tensor bad = tensor::zeros({2, 3}, dtype::int4);
    bad.data<std::int8_t>()[4] = 100;
    EXPECT_THAT(message_of<invalid_argument>([&] { dequantize(bad, s4); }),
                HasSubstr("element 4 (index [1, 1]) holds 100, outside int4 [-8, 7]"));
    tensor f = tensor::zeros({2});
    EXPECT_THAT(message_of<unsupported_error>([&] { dequantize(f, s4); }), HasSubstr("not an integer storage type"));
}

TEST(quant_errors, gradient_inputs_are_checked) {
    tensor x = tensor::full({2, 3}, 0.5f), g = tensor::full({3, 2}, 1.0f);
    const quant_params p = quant_params::per_tensor({0.1f, 0, 8, true, qscheme::symmetric});
    EXPECT_THAT(message_of<shape_error>([&] { ste_grad(x, g, p); }), HasSubstr("input shape [2, 3] but gradient shape [3, 2]"));
    learned_range r;
    r.min = {1.0f};
    r.max = {0.5f};
    EXPECT_THAT(message_of<invalid_argument>([&] { r.params(); }), HasSubstr("needs min < max"));
    r.min = {0.0f, 0.0f};
    EXPECT_THAT(message_of<invalid_argument>([&] { r.params(); }), HasSubstr("2 minimums and 1 maximums"));
    r.min = {-1.0f};
    r.max = {1.0f};
    r.gran = granularity::per_block(0, 1, 2);
    EXPECT_THROW(r.params(), unsupported_error);
}

}  // namespace
}  // namespace quantsim::test
