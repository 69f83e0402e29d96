// Every optimized kernel equals its plain reference bit for bit: fake_quant (in place and out of place), quantize
// and dequantize, for all rounding modes, both arithmetics, every granularity, bit widths 2..16 and 32, odd sizes
// (vector tails, folded short rows, strided group tables) and 1 or 2 threads.
#include <cstring>
#include <sstream>

#include "quant_test_util.hpp"

namespace quantsim::test {
namespace {

struct layout_case {
    shape_t shape;
    granularity gran;
};

std::string describe(const layout_case& c, int bits, bool is_signed, qscheme scheme, const quant_options& o) {
    std::ostringstream s;
    s << "shape " << to_string(c.shape) << " " << name_of(c.gran.kind) << " axis " << c.gran.axis;
    if (c.gran.kind == granularity_kind::per_block) s << " block_axis " << c.gran.block_axis << " B " << c.gran.block_size;
    s << " bits " << bits << (is_signed ? " signed " : " unsigned ") << name_of(scheme) << " " << name_of(o.rounding)
      << " " << name_of(o.arithmetic) << " threads " << o.num_threads;
    return s.str();
}

std::vector<layout_case> layout_cases() {
    std::vector<layout_case> v;
    const std::vector<shape_t> shapes = {{1}, {17}, {257}, {3, 5, 7}, {2, 3, 1, 67}, {64, 33}, {7, 130}, {4, 3, 49},
                                         {16, 8, 2, 2}, {1, 1}, {5, 1}, {6, 64, 3}};
    for (const auto& s : shapes) {
        v.push_back({s, granularity::per_tensor()});
        for (int a = 0; a < static_cast<int>(s.size()); ++a) v.push_back({s, granularity::per_channel(a)});
        v.push_back({s, granularity::per_channel(-1)});
        for (int a = 0; a < static_cast<int>(s.size()); ++a)
            for (int b = 0; b < static_cast<int>(s.size()); ++b) {
                if (a == b) continue;
                for (std::int64_t bs : {std::int64_t{1}, std::int64_t{2}, std::int64_t{3}, std::int64_t{32}, s[b]})
                    if (s[static_cast<std::size_t>(b)] % bs == 0) v.push_back({s, granularity::per_block(a, b, bs)});
            }
    }
    return v;
}

struct grid_case {
    int bits;
    bool is_signed;
    qscheme scheme;
};
const std::vector<grid_case> grids = {
    {2, true, qscheme::asymmetric},    {2, false, qscheme::symmetric},     {3, true, qscheme::strict_symmetric},
    {4, false, qscheme::asymmetric},   {4, true, qscheme::symmetric},      {8, false, qscheme::asymmetric},
    {8, true, qscheme::asymmetric},    {8, true, qscheme::strict_symmetric}, {8, false, qscheme::symmetric_unsigned},
    {12, true, qscheme::symmetric},    {16, false, qscheme::asymmetric},   {16, true, qscheme::symmetric},
    {32, true, qscheme::symmetric},    {32, true, qscheme::asymmetric},
};

constexpr rounding_mode all_modes[] = {rounding_mode::nearest_even, rounding_mode::nearest_away, rounding_mode::floor,
                                       rounding_mode::ceil, rounding_mode::stochastic};
constexpr scale_arithmetic all_arith[] = {scale_arithmetic::divide, scale_arithmetic::multiply_reciprocal};

TEST(quant_kernels, fake_quant_equals_reference_everywhere) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    std::size_t checked = 0;
    const auto cases = layout_cases();
    for (std::size_t ci = 0; ci < cases.size(); ++ci) {
        const auto& c = cases[ci];
        // Every layout with a few grids; every grid with a few layouts (the full product is slow and redundant).
        for (std::size_t gi = 0; gi < grids.size(); ++gi) {
            if ((gi + ci) % 5 != 0 && c.gran.kind != granularity_kind::per_tensor) continue;
            const auto& gc = grids[gi];
            const quant_params p = make_params(gc.bits, gc.is_signed, gc.scheme, c.gran, groups_for(c.gran, c.shape), rng);
            const std::int64_t n = checked_numel(c.shape);
            const auto r = p.range();
            const auto x = grid_probe_data(static_cast<std::size_t>(n), p.scale[0], r.qmin - p.zero_point[0],
                                           r.qmax - p.zero_point[0], rng);
            for (auto mode : all_modes)
                for (auto arith : all_arith) {
                    quant_options o;
                    o.rounding = mode;
                    o.arithmetic = arith;
                    o.seed = rng();
                    o.num_threads = 1;
                    SCOPED_TRACE(describe(c, gc.bits, gc.is_signed, gc.scheme, o));
                    std::vector<float> want(x.size()), got(x.size()), inplace = x;
                    fake_quant_ref(x, want, c.shape, p, o);
                    fake_quant(x, got, c.shape, p, o);
                    fake_quant_(inplace, c.shape, p, o);
                    const auto bad = first_bit_mismatch(want, got);
                    ASSERT_EQ(bad, -1) << "x=" << x[static_cast<std::size_t>(std::max<std::int64_t>(bad, 0))]
                                       << " want=" << want[static_cast<std::size_t>(std::max<std::int64_t>(bad, 0))]
                                       << " got=" << got[static_cast<std::size_t>(std::max<std::int64_t>(bad, 0))];
                    ASSERT_EQ(first_bit_mismatch(want, inplace), -1);
                    ++checked;
                }
        }
    }
    EXPECT_GT(checked, 1000u);
}

template <class T>
void check_quantize_dequantize(const shape_t& shape, const quant_params& p, dtype storage, const quant_options& o,
                               std::mt19937_64& rng) {
    const std::int64_t n = checked_numel(shape);
    const auto r = p.range();
    const auto x = grid_probe_data(static_cast<std::size_t>(n), p.scale[0], r.qmin - p.zero_point[0],
                                   r.qmax - p.zero_point[0], rng);
    std::vector<T> q(x.size()), qr(x.size());
    quantize<T>(x, q, shape, p, o, storage);
    quantize_ref<T>(x, qr, shape, p, o, storage);
    ASSERT_EQ(0, std::memcmp(q.data(), qr.data(), q.size() * sizeof(T)));
    for (std::size_t i = 0; i < q.size(); ++i) {
        ASSERT_GE(static_cast<std::int64_t>(q[i]), r.qmin);
        ASSERT_LE(static_cast<std::int64_t>(q[i]), r.qmax);
    }
    std::vector<float> y(x.size()), yr(x.size()), fq(x.size());
    dequantize<T>(q, y, shape, p, storage);
    dequantize_ref<T>(q, yr, shape, p);
    ASSERT_EQ(first_bit_mismatch(y, yr), -1);
    // fake_quant == dequantize(quantize(x)) bit for bit.
    fake_quant(x, fq, shape, p, o);
    ASSERT_EQ(first_bit_mismatch(fq, y), -1);
}

TEST(quant_kernels, quantize_and_dequantize_equal_reference_for_every_storage) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    const std::vector<layout_case> layouts = {{{37}, granularity::per_tensor()},
                                              {{5, 67}, granularity::per_channel(0)},
                                              {{67, 5}, granularity::per_channel(1)},
                                              {{3, 4, 7}, granularity::per_channel(1)},
                                              {{6, 64}, granularity::per_block(0, 1, 32)},
                                              {{64, 6}, granularity::per_block(1, 0, 16)}};
    for (const auto& c : layouts)
        for (auto mode : all_modes)
            for (auto arith : all_arith) {
                quant_options o;
                o.rounding = mode;
                o.arithmetic = arith;
                o.seed = rng();
                SCOPED_TRACE(describe(c, 0, false, qscheme::asymmetric, o));
                const auto g = groups_for(c.gran, c.shape);
                check_quantize_dequantize<std::int8_t>(c.shape, make_params(4, true, qscheme::asymmetric, c.gran, g, rng),
                                                       dtype::int4, o, rng);
                check_quantize_dequantize<std::uint8_t>(c.shape, make_params(4, false, qscheme::asymmetric, c.gran, g, rng),
                                                        dtype::uint4, o, rng);
                check_quantize_dequantize<std::int8_t>(c.shape, make_params(8, true, qscheme::symmetric, c.gran, g, rng),
                                                       dtype::int8, o, rng);
                check_quantize_dequantize<std::uint8_t>(c.shape, make_params(8, false, qscheme::asymmetric, c.gran, g, rng),
                                                        dtype::uint8, o, rng);
                check_quantize_dequantize<std::int16_t>(c.shape, make_params(16, true, qscheme::asymmetric, c.gran, g, rng),
                                                        dtype::int16, o, rng);
                check_quantize_dequantize<std::uint16_t>(c.shape, make_params(16, false, qscheme::asymmetric, c.gran, g, rng),
                                                         dtype::uint16, o, rng);
                check_quantize_dequantize<std::int32_t>(c.shape, make_params(32, true, qscheme::symmetric, c.gran, g, rng),
                                                        dtype::int32, o, rng);
                check_quantize_dequantize<std::int32_t>(c.shape, make_params(8, false, qscheme::asymmetric, c.gran, g, rng),
                                                        dtype::int32, o, rng);
                check_quantize_dequantize<std::int8_t>(c.shape, make_params(3, true, qscheme::strict_symmetric, c.gran, g, rng),
                                                       dtype::int8, o, rng);
            }
}

TEST(quant_kernels, results_do_not_depend_on_thread_count) {
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    // Large enough that two threads really run (detail::min_elements_per_thread each).
    const std::vector<layout_case> layouts = {{{301, 523}, granularity::per_tensor()},
                                              {{301, 523}, granularity::per_channel(0)},
                                              {{301, 523}, granularity::per_channel(1)},
                                              {{8, 41, 7, 61}, granularity::per_channel(1)},
                                              {{256, 640}, granularity::per_block(0, 1, 64)},
                                              {{640, 256}, granularity::per_block(1, 0, 32)}};
    for (const auto& c : layouts)
        for (auto mode : all_modes) {
            quant_options o;
            o.rounding = mode;
            o.arithmetic = scale_arithmetic::multiply_reciprocal;
            o.seed = rng();
            const quant_params p = make_params(8, false, qscheme::asymmetric, c.gran, groups_for(c.gran, c.shape), rng);
            const auto r = p.range();
            const auto x = grid_probe_data(static_cast<std::size_t>(checked_numel(c.shape)), p.scale[0],
                                           r.qmin - p.zero_point[0], r.qmax - p.zero_point[0], rng);
            SCOPED_TRACE(describe(c, 8, false, qscheme::asymmetric, o));
            ASSERT_GE(static_cast<std::int64_t>(x.size()), 2 * detail::min_elements_per_thread);
            std::vector<float> want(x.size()), one(x.size()), two(x.size()), two_inplace = x;
            fake_quant_ref(x, want, c.shape, p, o);
            fake_quant(x, one, c.shape, p, quant_options(o).with_threads(1));
            fake_quant(x, two, c.shape, p, quant_options(o).with_threads(2));
            fake_quant_(two_inplace, c.shape, p, quant_options(o).with_threads(2));
            EXPECT_EQ(first_bit_mismatch(want, one), -1);
            EXPECT_EQ(first_bit_mismatch(want, two), -1);
            EXPECT_EQ(first_bit_mismatch(want, two_inplace), -1);
            std::vector<std::uint8_t> q1(x.size()), q2(x.size());
            quantize<std::uint8_t>(x, q1, c.shape, p, quant_options(o).with_threads(1));
            quantize<std::uint8_t>(x, q2, c.shape, p, quant_options(o).with_threads(2));
            EXPECT_EQ(0, std::memcmp(q1.data(), q2.data(), q1.size()));
        }
}

/// Forces the streaming (non-temporal) output path for every size while alive.
struct force_streaming {
    std::int64_t saved = detail::stream_threshold_bytes();
    force_streaming() { detail::stream_threshold_bytes() = 0; }
    ~force_streaming() { detail::stream_threshold_bytes() = saved; }
};

TEST(quant_kernels, streaming_output_paths_equal_reference) {
    // Large out-of-place outputs take the streaming paths (vector non-temporal kernels for long runs, blocked and
    // periodic layouts; an L1 staging buffer elsewhere). Forced on here for every layout, with the output aligned
    // to 64 bytes and misaligned by 4, 16 and 36 bytes, so heads, tails and every branch run.
    const force_streaming on;
    const std::uint64_t seed = test_seed();
    SCOPED_TRACE(seed_trace(seed));
    std::mt19937_64 rng(seed);
    std::vector<layout_case> layouts = layout_cases();
    const std::vector<layout_case> large = {{{100003}, granularity::per_tensor()},
                                            {{96, 4096}, granularity::per_block(0, 1, 64)},
                                            {{96, 4096}, granularity::per_block(0, 1, 32)},
                                            {{96, 4096}, granularity::per_block(0, 1, 8)},
                                            {{4096, 24}, granularity::per_block(1, 0, 128)},
                                            {{512, 256}, granularity::per_channel(1)},
                                            {{512, 36}, granularity::per_channel(1)},
                                            {{256, 512}, granularity::per_channel(0)},
                                            {{3, 100, 300}, granularity::per_channel(1)},
                                            {{4, 64, 7, 7}, granularity::per_channel(1)},
                                            {{8, 64, 4, 4}, granularity::per_channel(1)}};
    layouts.insert(layouts.end(), large.begin(), large.end());
    for (std::size_t ci = 0; ci < layouts.size(); ++ci) {
        const auto& c = layouts[ci];
        const bool is_large = ci + large.size() >= layouts.size();
        const grid_case gc = grids[(ci * 7) % grids.size()];
        const quant_params p = make_params(gc.bits, gc.is_signed, gc.scheme, c.gran, groups_for(c.gran, c.shape), rng);
        const std::int64_t n = checked_numel(c.shape);
        const auto r = p.range();
        const auto x = grid_probe_data(static_cast<std::size_t>(n), p.scale[0], r.qmin - p.zero_point[0],
                                       r.qmax - p.zero_point[0], rng);
        for (auto mode : all_modes) {
            if (!is_large && mode != rounding_mode::nearest_even && mode != rounding_mode::stochastic) continue;
            for (auto arith : all_arith) {
                quant_options o;
                o.rounding = mode;
                o.arithmetic = arith;
                o.seed = rng();
                o.num_threads = is_large ? 2 : 1;
                SCOPED_TRACE(describe(c, gc.bits, gc.is_signed, gc.scheme, o));
                std::vector<float> want(x.size());
                fake_quant_ref(x, want, c.shape, p, o);
                tensor out = tensor::empty({n + 16});  // 64-byte aligned storage
                for (std::int64_t offset : {0, 1, 4, 9}) {
                    std::span<float> y(out.f32() + offset, static_cast<std::size_t>(n));
                    std::fill(y.begin(), y.end(), -123.0f);
                    fake_quant(x, y, c.shape, p, o);
                    ASSERT_EQ(first_bit_mismatch(want.data(), y.data(), n), -1) << "output offset " << offset;
                }
            }
        }
    }
}

TEST(quant_kernels, layout_folds_short_rows_and_keeps_long_ones) {
    // Not a numeric test: checks that the optimized walk uses the intended run shapes (speed depends on it).
    const auto layout = [](const shape_t& s, const quant_params& p) {
        return detail::make_run_layout(check_quant_params(p, s), s);
    };
    quant_params pc;
    pc.scale.assign(64, 1.0f), pc.zero_point.assign(64, 0), pc.gran = granularity::per_channel(1);
    const auto nchw = layout({8, 64, 7, 7}, pc);  // 49-element rows are folded with the channel axis
    EXPECT_EQ(nchw.kind, detail::run_layout::row_kind::table);
    EXPECT_EQ(nchw.row, 64 * 49);
    quant_params pb;
    pb.scale.assign(64 * 64, 1.0f), pb.zero_point.assign(64 * 64, 0), pb.gran = granularity::per_block(0, 1, 64);
    const auto blocks = layout({64, 4096}, pb);  // blocks of 64 along the rows: long "blocked" rows
    EXPECT_EQ(blocks.kind, detail::run_layout::row_kind::blocked);
    EXPECT_EQ(blocks.block, 64);
    EXPECT_GE(blocks.row, 4096);
    pc.gran = granularity::per_channel(-1);
    const auto last = layout({1000, 64}, pc);
    EXPECT_EQ(last.kind, detail::run_layout::row_kind::contiguous);
    EXPECT_EQ(last.row, 64);
    pc.gran = granularity::per_channel(0);
    const auto first = layout({64, 4096}, pc);
    EXPECT_EQ(first.kind, detail::run_layout::row_kind::constant);
    EXPECT_EQ(first.row, 4096);
    const auto tensor_layout = layout({64, 4096}, quant_params{});
    EXPECT_EQ(tensor_layout.row, 64 * 4096);
    EXPECT_TRUE(tensor_layout.outer.empty());
}

}  // namespace
}  // namespace quantsim::test
