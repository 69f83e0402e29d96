// Encodings: grids per scheme, AIMET (min, max, scale, offset) conversion, encodings from observed ranges under
// the AIMET and PyTorch conventions, and quant_params built from per-channel encodings.
#include <cmath>

#include "quant_test_util.hpp"

namespace quantsim::test {
namespace {

TEST(quant_encoding, grids_per_scheme_and_bitwidth) {
    EXPECT_EQ(grid_range(8, false, qscheme::asymmetric).qmin, 0);
    EXPECT_EQ(grid_range(8, false, qscheme::asymmetric).qmax, 255);
    EXPECT_EQ(grid_range(8, true, qscheme::symmetric).qmin, -128);
    EXPECT_EQ(grid_range(8, true, qscheme::symmetric).qmax, 127);
    EXPECT_EQ(grid_range(8, true, qscheme::strict_symmetric).qmin, -127);
    EXPECT_EQ(grid_range(8, false, qscheme::strict_symmetric).qmax, 254);
    EXPECT_EQ(grid_range(8, false, qscheme::symmetric_unsigned).qmax, 255);
    EXPECT_EQ(grid_range(2, true, qscheme::symmetric).qmin, -2);
    EXPECT_EQ(grid_range(16, false, qscheme::asymmetric).qmax, 65535);
    EXPECT_EQ(grid_range(32, true, qscheme::symmetric).qmin, -2147483648LL);
    EXPECT_EQ(grid_range(32, true, qscheme::symmetric).qmax, 2147483647LL);
    for (int bad : {0, 1, 17, 24, 31, 33, 64})
        EXPECT_THROW(grid_range(bad, true, qscheme::symmetric), invalid_argument) << bad;
}

TEST(quant_encoding, aimet_round_trip_for_every_scheme) {
    // AIMET's legacy form: unsigned grid, offset = -(zero point on that grid).
    const encoding sym{0.002f, 0, 8, true, qscheme::symmetric};
    const auto a = sym.to_aimet();
    EXPECT_EQ(a.offset, -128);
    EXPECT_TRUE(a.is_symmetric);
    EXPECT_NEAR(a.min, -0.256, 1e-7);
    EXPECT_NEAR(a.max, 0.254, 1e-7);
    EXPECT_EQ(encoding::from_aimet(a.scale, a.offset, 8, true), sym);

    const encoding strict{0.002f, 0, 8, true, qscheme::strict_symmetric};
    EXPECT_EQ(strict.to_aimet().offset, -127);
    EXPECT_NEAR(strict.to_aimet().min, -0.254, 1e-7);
    EXPECT_EQ(encoding::from_aimet(0.002f, -127, 8, true), strict);

    const encoding usym{0.01f, 0, 8, false, qscheme::symmetric_unsigned};
    EXPECT_EQ(usym.to_aimet().offset, 0);
    EXPECT_EQ(encoding::from_aimet(0.01f, 0, 8, true), usym);

    const encoding asym{2.5f / 255, 31, 8, false, qscheme::asymmetric};
    EXPECT_EQ(asym.to_aimet().offset, -31);
    EXPECT_NEAR(asym.to_aimet().min, -0.30392156862745096, 1e-7);
    EXPECT_NEAR(asym.to_aimet().max, 2.196078431372549, 1e-7);
    EXPECT_EQ(encoding::from_aimet(2.5f / 255, -31, 8, false), asym);

    // A signed asymmetric grid converts to the same real grid (shifted offset).
    const encoding sasym{0.1f, -100, 8, true, qscheme::asymmetric};
    const auto sa = sasym.to_aimet();
    EXPECT_EQ(sa.offset, -28);
    const encoding back = encoding::from_aimet(sa.scale, sa.offset, 8, false);
    EXPECT_DOUBLE_EQ(back.min(), sasym.min());
    EXPECT_DOUBLE_EQ(back.max(), sasym.max());

    // 32-bit asymmetric with a zero point beyond INT32_MAX: stored as the equivalent signed grid.
    const encoding big = encoding::from_aimet(1e-3, -3000000000LL, 32, false);
    EXPECT_TRUE(big.is_signed);
    EXPECT_DOUBLE_EQ(big.min(), -3000000000.0 * static_cast<double>(big.scale));
    EXPECT_EQ(big.to_aimet().offset, -3000000000LL);

    EXPECT_THROW(encoding::from_aimet(0.1, 1, 8, false), invalid_argument);
    EXPECT_THROW(encoding::from_aimet(0.1, -256, 8, false), invalid_argument);
    EXPECT_THROW(encoding::from_aimet(-0.1, 0, 8, false), invalid_argument);
    EXPECT_THROW(encoding::from_aimet(std::nan(""), 0, 8, false), invalid_argument);
    EXPECT_THROW(encoding::from_aimet(0.1, 0, 1, false), invalid_argument);
}

TEST(quant_encoding, aimet_convention_from_range) {
    quant_spec spec;  // 8-bit asymmetric unsigned, AIMET
    // The aimet.md example: [-0.3, 2.2] -> delta 2.5/255, offset -31.
    const encoding a = encoding_from_range(-0.3, 2.2, spec);
    EXPECT_FLOAT_EQ(a.scale, static_cast<float>(2.5 / 255));
    EXPECT_EQ(a.zero_point, 31);
    // The range always includes zero.
    const encoding pos = encoding_from_range(1.0, 3.0, spec);
    EXPECT_EQ(pos.zero_point, 0);
    EXPECT_FLOAT_EQ(pos.scale, static_cast<float>(3.0 / 255));
    const encoding neg = encoding_from_range(-4.0, -1.0, spec);
    EXPECT_EQ(neg.zero_point, 255);
    // Minimum range: a constant-zero tensor still gets a valid grid of width min_range.
    const encoding z = encoding_from_range(0.0, 0.0, spec);
    EXPECT_FLOAT_EQ(z.scale, static_cast<float>(1e-5 / 255));
    z.validate();
    // Symmetric: absmax / (2^(b-1) - 1), signed, zero point 0; strict drops -128.
    spec.scheme = qscheme::symmetric;
    const encoding s = encoding_from_range(-0.254, 0.1, spec);
    EXPECT_FLOAT_EQ(s.scale, 0.002f);
    EXPECT_EQ(s.zero_point, 0);
    EXPECT_EQ(s.qmin(), -128);
    spec.scheme = qscheme::strict_symmetric;
    EXPECT_EQ(encoding_from_range(-0.254, 0.1, spec).qmin(), -127);
    // Unsigned symmetric for non-negative data, by flag or by scheme; negative data stays signed.
    spec.scheme = qscheme::symmetric;
    spec.unsigned_symmetric = true;
    const encoding u = encoding_from_range(0.5, 2.55, spec);
    EXPECT_EQ(u.scheme, qscheme::symmetric_unsigned);
    EXPECT_FLOAT_EQ(u.scale, 0.01f);
    EXPECT_EQ(encoding_from_range(-0.5, 2.55, spec).scheme, qscheme::symmetric);
    spec.unsigned_symmetric = false;
    spec.scheme = qscheme::symmetric_unsigned;
    EXPECT_EQ(encoding_from_range(0.0, 2.55, spec).scheme, qscheme::symmetric_unsigned);
    spec.scheme = qscheme::strict_symmetric;
    spec.unsigned_symmetric = true;
    const encoding us = encoding_from_range(0.0, 2.54, spec);  // AIMET keeps strict's 2^b - 2 steps
    EXPECT_EQ(us.qmax(), 254);
    EXPECT_FLOAT_EQ(us.scale, 0.01f);
    // Signed asymmetric grid.
    quant_spec sa;
    sa.is_signed = true;
    const encoding sae = encoding_from_range(-0.3, 2.2, sa);
    EXPECT_EQ(sae.zero_point, 31 - 128);
    // Every bit width gives a valid encoding; the observed range is representable up to one step.
    for (int bits = 2; bits <= 16; ++bits) {
        quant_spec q;
        q.bitwidth = bits;
        const encoding e = encoding_from_range(-1.25, 3.5, q);
        e.validate();
        EXPECT_LE(e.min(), -1.25 + e.scale);
        EXPECT_GE(e.max(), 3.5 - e.scale);
    }
}

TEST(quant_encoding, pytorch_convention_from_range) {
    quant_spec spec;
    spec.convention = range_convention::pytorch;
    // MinMaxObserver(quint8) on [-1, 2]: scale = 3/255 (float32), zp = 0 - round(-1/scale) = 85.
    const encoding a = encoding_from_range(-1.0, 2.0, spec);
    EXPECT_EQ(a.scale, 3.0f / 255.0f);
    EXPECT_EQ(a.zero_point, 85);
    // qint8 symmetric: absmax / ((qmax - qmin) / 2) = absmax / 127.5.
    spec.scheme = qscheme::symmetric;
    const encoding s = encoding_from_range(-1.0, 2.0, spec);
    EXPECT_EQ(s.scale, 2.0f / 127.5f);
    EXPECT_EQ(s.zero_point, 0);
    // Minimum scale is FLT_EPSILON.
    EXPECT_EQ(encoding_from_range(0.0, 0.0, spec).scale, std::numeric_limits<float>::epsilon());
}

TEST(quant_encoding, range_errors) {
    quant_spec spec;
    EXPECT_THROW(encoding_from_range(std::nan(""), 1.0, spec), numeric_error);
    EXPECT_THROW(encoding_from_range(2.0, 1.0, spec), invalid_argument);
    spec.min_range = -1;
    EXPECT_THROW(encoding_from_range(0.0, 1.0, spec), invalid_argument);
    spec.min_range = 1e-5;
    spec.bitwidth = 1;
    EXPECT_THROW(encoding_from_range(0.0, 1.0, spec), invalid_argument);
    // Infinite bounds are clamped to +-FLT_MAX: a valid (huge) grid, not a crash.
    spec.bitwidth = 8;
    const encoding e = encoding_from_range(-INFINITY, INFINITY, spec);
    e.validate();
}

TEST(quant_encoding, quant_params_from_mixed_symmetric_channels) {
    // AIMET's unsigned_symmetric per channel: a signed-symmetric channel next to an unsigned-symmetric one.
    const encoding signed_ch{0.02f, 0, 8, true, qscheme::symmetric};
    const encoding unsigned_ch{0.01f, 0, 8, false, qscheme::symmetric_unsigned};
    const quant_params p = quant_params::per_channel({signed_ch, unsigned_ch}, 0);
    EXPECT_FALSE(p.is_signed);
    EXPECT_EQ(p.zero_point[0], 128);
    EXPECT_EQ(p.zero_point[1], 0);
    // Fake-quant is identical to quantizing each channel with its own encoding.
    std::vector<float> x{-3.0f, -0.013f, 0.5f, 2.6f, -1.0f, 0.015f, 1.234f, 2.6f}, y(8);
    fake_quant(x, y, shape_t{2, 4}, p);
    for (int c = 0; c < 2; ++c) {
        std::vector<float> want(4);
        fake_quant(std::span<const float>(x.data() + 4 * c, 4), want, c == 0 ? signed_ch : unsigned_ch);
        for (int i = 0; i < 4; ++i) EXPECT_EQ(y[static_cast<std::size_t>(4 * c + i)], want[static_cast<std::size_t>(i)]);
    }
    // Strict channels keep 2^b - 2 steps.
    const quant_params ps = quant_params::per_channel(
        {{0.02f, 0, 8, true, qscheme::strict_symmetric}, {0.01f, 0, 8, false, qscheme::strict_symmetric}}, 0);
    EXPECT_EQ(ps.range().qmax, 254);
    EXPECT_EQ(ps.zero_point[0], 127);
    // Grids with different level counts cannot share one grid; bit widths must agree.
    EXPECT_THROW(quant_params::per_channel({signed_ch, {0.01f, 0, 8, true, qscheme::strict_symmetric}}, 0),
                 invalid_argument);
    EXPECT_THROW(quant_params::per_channel({signed_ch, {0.01f, 0, 4, true, qscheme::symmetric}}, 0), invalid_argument);
    EXPECT_THROW(quant_params::per_channel({}, 0), invalid_argument);
    EXPECT_THROW(quant_params::per_channel({{-1.0f, 0, 8, true, qscheme::symmetric}}, 0), invalid_argument);
}

TEST(quant_encoding, validate_names_the_bad_group) {
    quant_params p;
    p.scale = {0.1f, 0.0f, 0.1f};
    p.zero_point = {0, 0, 0};
    try {
        p.validate();
        FAIL();
    } catch (const invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("group 1"), std::string::npos) << e.what();
    }
    p.scale[1] = 0.1f;
    p.zero_point[2] = 300;
    try {
        p.validate();
        FAIL();
    } catch (const invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("zero point 300 of group 2"), std::string::npos) << e.what();
    }
    p.zero_point = {0, 0};
    EXPECT_THROW(p.validate(), invalid_argument);
}

}  // namespace
}  // namespace quantsim::test
