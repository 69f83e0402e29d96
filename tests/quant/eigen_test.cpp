// Eigen overloads: Matrix, Array, Map (with outer and inner strides), Ref, Block and expressions, row- and
// col-major, agree bit for bit with the tensor path on the logical [rows, cols] matrix, for every granularity and
// rounding mode (stochastic uses the logical row-major index, so storage order does not matter).
#include <Eigen/Core>

#include "quant_test_util.hpp"

namespace quantsim::test {
namespace {

using row_major_t = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using col_major_t = Eigen::MatrixXf;

/// The reference: the tensor path on the row-major copy of m.
template <class M>
row_major_t tensor_reference(const M& m, const quant_params& p, const quant_options& o) {
    row_major_t r = m;
    std::vector<float> y(static_cast<std::size_t>(r.size()));
    fake_quant_ref(std::span<const float>(r.data(), y.size()), y, shape_t{r.rows(), r.cols()}, p, o);
    return Eigen::Map<row_major_t>(y.data(), r.rows(), r.cols());
}

template <class A, class B>
bool same_bits(const A& a, const B& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
    for (Eigen::Index i = 0; i < a.rows(); ++i)
        for (Eigen::Index j = 0; j < a.cols(); ++j) {
            const float x = a(i, j), y = b(i, j);
            if (std::isnan(x) && std::isnan(y)) continue;
            if (std::bit_cast<std::uint32_t>(x) != std::bit_cast<std::uint32_t>(y)) return false;
        }
    return true;
}

std::vector<granularity> granularities_for(Eigen::Index rows, Eigen::Index cols) {
    std::vector<granularity> g{granularity::per_tensor(), granularity::per_channel(0), granularity::per_channel(1),
                               granularity::per_channel(-1)};
    for (Eigen::Index b : {1, 2, 4})
        if (cols % b == 0) g.push_back(granularity::per_block(0, 1, b));
    for (Eigen::Index b : {1, 3, 5})
        if (rows % b == 0) g.push_back(granularity::per_block(1, 0, b));
    return g;
}

TEST(quant_eigen, every_layout_matches_the_tensor_path) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const Eigen::Index rows = 15, cols = 36;
    row_major_t base(rows, cols);
    for (Eigen::Index i = 0; i < base.size(); ++i) base.data()[i] = nd(rng);
    for (const auto& g : granularities_for(rows, cols))
        for (auto mode : {rounding_mode::nearest_even, rounding_mode::nearest_away, rounding_mode::floor,
                          rounding_mode::stochastic}) {
            const quant_params p = make_params(4, false, qscheme::asymmetric, g, groups_for(g, {rows, cols}), rng);
            quant_options o;
            o.rounding = mode;
            o.arithmetic = scale_arithmetic::multiply_reciprocal;
            o.seed = 99;
            SCOPED_TRACE(std::string(name_of(g.kind)) + " axis " + std::to_string(g.axis) + " " +
                         std::string(name_of(mode)));
            const row_major_t want = tensor_reference(base, p, o);
            // Plain matrices, both storage orders, out of place and in place.
            const col_major_t cm = base;
            EXPECT_TRUE(same_bits(fake_quant(base, p, o), want));
            EXPECT_TRUE(same_bits(fake_quant(cm, p, o), want));
            row_major_t rm_in = base;
            col_major_t cm_in = cm;
            fake_quant_(rm_in, p, o);
            fake_quant_(cm_in, p, o);
            EXPECT_TRUE(same_bits(rm_in, want));
            EXPECT_TRUE(same_bits(cm_in, want));
            // Arrays.
            Eigen::ArrayXXf arr = cm.array();
            fake_quant_(arr, p, o);
            EXPECT_TRUE(same_bits(arr.matrix(), want));
            // A block inside a larger matrix (outer stride != inner size), in place through the rvalue overload.
            col_major_t big = col_major_t::Constant(rows + 7, cols + 3, 123.0f);
            big.block(2, 1, rows, cols) = cm;
            fake_quant_(big.block(2, 1, rows, cols), p, o);
            EXPECT_TRUE(same_bits(big.block(2, 1, rows, cols), want));
            EXPECT_EQ(big(0, 0), 123.0f);
            EXPECT_EQ(big(rows + 6, cols + 2), 123.0f);
            EXPECT_EQ(big(1, 5), 123.0f);
            // Map with an outer stride over row-major storage; Ref; out of place from a strided map.
            std::vector<float> buf(static_cast<std::size_t>(rows * (cols + 5)), -7.0f);
            Eigen::Map<row_major_t, 0, Eigen::OuterStride<>> map(buf.data(), rows, cols, Eigen::OuterStride<>(cols + 5));
            map = base;
            EXPECT_TRUE(same_bits(fake_quant(map, p, o), want));
            fake_quant_(map, p, o);
            EXPECT_TRUE(same_bits(map, want));
            EXPECT_EQ(buf[static_cast<std::size_t>(cols + 2)], -7.0f);
            col_major_t r2 = cm;
            Eigen::Ref<col_major_t> ref(r2);
            fake_quant_(ref, p, o);
            EXPECT_TRUE(same_bits(r2, want));
            // Inner stride != 1 and expressions: handled through a contiguous copy.
            std::vector<float> sbuf(static_cast<std::size_t>(rows * cols * 2));
            Eigen::Map<col_major_t, 0, Eigen::Stride<Eigen::Dynamic, 2>> smap(sbuf.data(), rows, cols,
                                                                             Eigen::Stride<Eigen::Dynamic, 2>(rows * 2, 2));
            smap = cm;
            fake_quant_(smap, p, o);
            EXPECT_TRUE(same_bits(smap, want));
            EXPECT_TRUE(same_bits(fake_quant(cm * 1.0f, p, o), want));
            EXPECT_TRUE(same_bits(fake_quant(base.transpose().transpose(), p, o), want));
        }
}

TEST(quant_eigen, vectors_and_quantize_round_trip) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    Eigen::VectorXf v = Eigen::VectorXf::LinSpaced(101, -3.0f, 3.0f);
    const encoding e{0.05f, 0, 8, true, qscheme::symmetric};
    Eigen::VectorXf fv = fake_quant(v, e);
    std::vector<float> want(101);
    fake_quant(std::span<const float>(v.data(), 101), want, e);
    for (int i = 0; i < 101; ++i) EXPECT_EQ(fv(i), want[static_cast<std::size_t>(i)]);
    // Row vector, and a row of a col-major matrix (inner stride != 1).
    Eigen::RowVectorXf rv = v.transpose();
    EXPECT_TRUE(same_bits(fake_quant(rv, e), fv.transpose()));
    Eigen::MatrixXf m(3, 101);
    m.row(1) = rv;
    fake_quant_(m.row(1), e);
    EXPECT_TRUE(same_bits(m.row(1), fv.transpose()));

    // quantize / dequantize on matrices: per-channel rows, int8 storage; equals fake_quant after dequantize.
    Eigen::MatrixXf w(6, 9);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = nd(rng);
    const quant_params p = make_params(8, true, qscheme::symmetric, granularity::per_channel(0), 6, rng);
    const Eigen::Matrix<std::int8_t, Eigen::Dynamic, Eigen::Dynamic> q = quantize<std::int8_t>(w, p);
    EXPECT_TRUE(same_bits(dequantize(q, p), fake_quant(w, p)));
    const row_major_t wr = w;
    const auto qr = quantize<std::int8_t>(wr, p);
    for (Eigen::Index i = 0; i < 6; ++i)
        for (Eigen::Index j = 0; j < 9; ++j) EXPECT_EQ(qr(i, j), q(i, j));
    // int4 storage in int8, stochastic rounding agrees across storage orders.
    quant_options so;
    so.rounding = rounding_mode::stochastic;
    so.seed = 5;
    const quant_params p4 = make_params(4, true, qscheme::symmetric, granularity::per_block(0, 1, 3), 18, rng);
    const auto q4 = quantize<std::int8_t>(w, p4, so, dtype::int4);
    const auto q4r = quantize<std::int8_t>(wr, p4, so, dtype::int4);
    for (Eigen::Index i = 0; i < 6; ++i)
        for (Eigen::Index j = 0; j < 9; ++j) {
            EXPECT_EQ(q4(i, j), q4r(i, j));
            EXPECT_GE(q4(i, j), -8);
            EXPECT_LE(q4(i, j), 7);
        }
    EXPECT_TRUE(same_bits(dequantize(q4, p4, dtype::int4), fake_quant(w, p4, so)));
    // NaN in an Eigen quantize names (row, col).
    Eigen::MatrixXf bad = w;
    bad(4, 7) = std::numeric_limits<float>::quiet_NaN();
    try {
        (void)quantize<std::int8_t>(bad, p);
        FAIL();
    } catch (const numeric_error& err) {
        EXPECT_NE(std::string(err.what()).find("(4, 7)"), std::string::npos) << err.what();
    }
    // Shape checks use the logical matrix: per-channel on axis 1 needs one scale per column.
    EXPECT_THROW((void)fake_quant(w, make_params(8, true, qscheme::symmetric, granularity::per_channel(1), 6, rng)),
                 shape_error);
}

TEST(quant_eigen, large_strided_maps_use_threads_consistently) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    const Eigen::Index rows = 300, cols = 257;
    col_major_t big(rows + 1, cols);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (Eigen::Index i = 0; i < big.size(); ++i) big.data()[i] = nd(rng);
    const quant_params p = make_params(8, false, qscheme::asymmetric, granularity::per_channel(1), cols, rng);
    quant_options o;
    o.rounding = rounding_mode::stochastic;
    o.seed = 3;
    const row_major_t want = tensor_reference(big.topRows(rows), p, o);
    auto a = fake_quant(big.topRows(rows), quant_params(p), quant_options(o).with_threads(1));
    auto b = fake_quant(big.topRows(rows), quant_params(p), quant_options(o).with_threads(2));
    EXPECT_TRUE(same_bits(a, want));
    EXPECT_TRUE(same_bits(b, want));
}

}  // namespace
}  // namespace quantsim::test
