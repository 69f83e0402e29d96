// Untrusted inputs beyond what the fuzzers reach easily: numbers chosen to sit exactly on a conversion or overflow
// edge (the fuzzers mutate bytes, so they rarely produce 2^32 + 3 or two doubles one ulp apart), and models that load
// fine but carry hostile constants into the kernels (the ONNX fuzz target imports and re-exports; it does not run).
// Each case was a silent wrong answer, undefined behaviour, a hang or a signal before the fix named in its comment.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <quantsim/core/error.hpp>
#include <quantsim/io/npy.hpp>
#include <quantsim/io/onnx.hpp>
#include <quantsim/ir/executor.hpp>
#include <quantsim/sim/encodings.hpp>

#include "onnx_model_maker.hpp"

namespace quantsim {
namespace {

using test::onnx_model_maker;

// The error's type and that its message contains every piece.
template <class E, class F>
void expect_error(F&& f, std::initializer_list<std::string> pieces) {
    try {
        f();
        ADD_FAILURE() << "accepted";
    } catch (const E& e) {
        for (const auto& p : pieces) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    } catch (const error& e) {
        ADD_FAILURE() << "wrong error type: " << e.what();
    }
}

// ---- AIMET encodings ------------------------------------------------------------------------------------------------

TEST(untrusted_encodings, zero_point_beyond_int32_is_rejected_not_wrapped) {
    // 2^32 + 3 used to be narrowed to int32 before the range check: the tensor got zero point 3.
    for (const char* dt : {"int8", "uint8", "int32"}) {
        SCOPED_TRACE(dt);
        const std::string text = std::string(R"({"version": "2.0.0", "encodings": [{"name": "x", "output_dtype": ")") +
                                 dt + R"(", "y_scale": 0.1, "y_zero_point": 4294967299}]})";
        expect_error<config_error>([&] { (void)read_encodings(text, "zp.json"); },
                                   {"zp.json", "encodings[\"x\"]", "4294967299", "does not fit"});
    }
    // Per-channel lists too.
    expect_error<config_error>(
        [] {
            (void)read_encodings(R"({"version": "2.0.0", "encodings": [{"name": "w", "output_dtype": "int8", "axis": 0,
                "y_scale": [0.1, 0.2], "y_zero_point": [0, -4294967296]}]})", "pc.json");
        },
        {"pc.json", "y_zero_point[1]"});
}

TEST(untrusted_encodings, min_max_one_ulp_apart_is_an_error_not_undefined_behaviour) {
    // scale = (max - min) / 65535 is ~2^-52 * min / 65535, so min / scale ~ 3e20 does not fit int64: the conversion
    // was undefined behaviour (x86 gives INT64_MIN, reported as "offset -9223372036854775808").
    const std::string text = R"({"version": "0.6.1", "activation_encodings": {"x": [{"bitwidth": 16, "min": 1.0,
        "max": 1.0000000000000002}]}, "param_encodings": {}})";
    expect_error<config_error>([&] { (void)read_encodings(text, "mm.json"); },
                               {"mm.json", "activation_encodings[\"x\"][0]", "outside the 16-bit grid"});
    // The same pair at 8 bits is a legal (if useless) encoding: the offset fits, the grid check decides.
    const std::string ok = R"({"version": "0.6.1", "activation_encodings": {"x": [{"bitwidth": 8, "min": -1.0,
        "max": 1.0}]}, "param_encodings": {}})";
    const auto f = read_encodings(ok, "ok.json");
    ASSERT_EQ(f.activations.size(), 1u);
    EXPECT_EQ(f.activations[0].params.bitwidth, 8);
}

TEST(untrusted_encodings, quantizer_args_bit_widths_are_range_checked) {
    // 2^32 + 8 used to become 8 through a plain int cast.
    expect_error<config_error>(
        [] {
            (void)read_encodings(R"({"version": "1.0.0", "activation_encodings": [], "param_encodings": [],
                "quantizer_args": {"activation_bitwidth": 4294967304}})", "qa.json");
        },
        {"qa.json", "quantizer_args.activation_bitwidth", "4294967304"});
    expect_error<config_error>(
        [] {
            (void)read_encodings(R"({"version": "1.0.0", "activation_encodings": [], "param_encodings": [],
                "quantizer_args": {"param_bitwidth": 0}})", "qa.json");
        },
        {"qa.json", "quantizer_args.param_bitwidth"});
    const auto f = read_encodings(R"({"version": "1.0.0", "activation_encodings": [], "param_encodings": [],
        "quantizer_args": {"activation_bitwidth": 16, "param_bitwidth": 4}})", "qa.json");
    ASSERT_TRUE(f.args.has_value());
    EXPECT_EQ(f.args->activation_bitwidth, 16);
    EXPECT_EQ(f.args->param_bitwidth, 4);
}

TEST(untrusted_encodings, scales_beyond_float_and_huge_bit_widths) {
    // Finite in JSON (double) but infinite or zero as float: the encoding's own check names them.
    expect_error<config_error>(
        [] { (void)read_encodings(R"({"version": "2.0.0", "encodings": [{"name": "x", "output_dtype": "int8", "y_scale": 1e300}]})", "s.json"); },
        {"s.json", "scale inf"});
    expect_error<config_error>(
        [] {
            (void)read_encodings(R"({"version": "1.0.0", "activation_encodings": [{"name": "x", "dtype": "INT",
                "enc_type": "PER_TENSOR", "bw": 8, "is_sym": true, "scale": [1e-300], "offset": [-128]}], "param_encodings": []})", "s.json");
        },
        {"s.json", "scale 0"});
    for (const char* bw : {"1e20", "4294967304", "64", "1", "-8", "8.5"}) {
        SCOPED_TRACE(bw);
        const std::string text = std::string(R"({"version": "1.0.0", "activation_encodings": [{"name": "x", "dtype": "INT",
            "enc_type": "PER_TENSOR", "bw": )") + bw + R"(, "is_sym": true, "scale": [0.1], "offset": [-128]}], "param_encodings": []})";
        expect_error<config_error>([&] { (void)read_encodings(text, "bw.json"); }, {"bw.json", ".bw"});
    }
}

// ---- .npy ----------------------------------------------------------------------------------------------------------

std::string npy_file(const std::string& dict, const std::string& data) {
    std::string h = dict;
    while ((10 + h.size() + 1) % 64) h += ' ';
    h += '\n';
    std::string r("\x93NUMPY\x01\x00", 8);
    r += static_cast<char>(h.size() & 0xff);
    r += static_cast<char>(h.size() >> 8);
    return r + h + data;
}

tensor load_npy_text(const std::string& bytes) {
    return load_npy_from_memory(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()), {},
                                "a.npy");
}

TEST(untrusted_npy, dtypes_numpy_can_write_but_quantsim_cannot_read_are_named) {
    // Object arrays (pickled Python objects: never unpickled), structured dtypes, float16, complex, strings.
    const std::string eight(8, '\0');
    expect_error<unsupported_error>([&] { (void)load_npy_text(npy_file("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", eight)); },
                                    {"a.npy", "'|O'"});
    expect_error<unsupported_error>([&] { (void)load_npy_text(npy_file("{'descr': '<f2', 'fortran_order': False, 'shape': (4,), }", eight)); },
                                    {"a.npy", "'<f2'"});
    expect_error<unsupported_error>([&] { (void)load_npy_text(npy_file("{'descr': '<M8[s]', 'fortran_order': False, 'shape': (1,), }", eight)); },
                                    {"a.npy", "'<M8[s]'"});
    // A structured dtype's descr is a list, not a string: a header error, not a crash or a misread.
    expect_error<parse_error>(
        [&] { (void)load_npy_text(npy_file("{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (1,), }", eight)); },
        {"a.npy", "header"});
    expect_error<unsupported_error>(
        [&] { (void)load_npy_text(npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 1), }", eight)); }, {"a.npy", "Fortran"});
}

TEST(untrusted_npy, big_endian_values_are_swapped) {
    // 1.5 as a big-endian float64 and 258 as a big-endian uint16: the values, not the bytes, must come through.
    const std::string f64("\x3f\xf8\x00\x00\x00\x00\x00\x00", 8);
    const tensor d = load_npy_text(npy_file("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", f64));
    ASSERT_EQ(d.type(), dtype::float64);
    EXPECT_EQ(d.data<double>()[0], 1.5);
    const tensor u = load_npy_text(npy_file("{'descr': '>u2', 'fortran_order': False, 'shape': (1,), }", std::string("\x01\x02", 2)));
    EXPECT_EQ(u.data<std::uint16_t>()[0], 258);
}

// ---- ONNX models with hostile constants -------------------------------------------------------------------------------

void add_scalar(onnx_model_maker& m, const std::string& name, std::int32_t type, const void* value, std::size_t size) {
    auto* t = m.g->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    t->set_raw_data(std::string(static_cast<const char*>(value), size));
}

graph load(const onnx_model_maker& m, const std::string& name) { return load_onnx_from_memory(m.bytes(), {}, name); }

TEST(untrusted_models, inferred_sizes_that_overflow_fail_at_load_naming_the_node) {
    // Pad / Tile with 2^40 from the file: the model loaded, `inspect` printed a shape whose element count overflows,
    // and `run` failed in the allocator with "tensor: element count ... overflows" (no file, no node).
    {
        onnx_model_maker m;
        m.input("x", {2, 3});
        m.init_i64("p", {0, 0, std::int64_t{1} << 40, std::int64_t{1} << 40});
        m.node("Pad", {"x", "p"}, {"y"}, "pad_huge");
        m.output("y");
        expect_error<resource_error>([&] { (void)load(m, "pad.onnx"); }, {"pad.onnx", "node 'pad_huge' (Pad)", "output 'y'", "overflows"});
    }
    {
        onnx_model_maker m;
        m.input("x", {2, 3});
        m.init_i64("r", {std::int64_t{1} << 20, std::int64_t{1} << 20});
        m.node("Tile", {"x", "r"}, {"y"}, "tile_big");
        m.output("y");
        // 2^41 floats = 8 TiB: no overflow, but above max_tensor_bytes().
        expect_error<resource_error>([&] { (void)load(m, "tile.onnx"); }, {"tile.onnx", "node 'tile_big' (Tile)", "MiB"});
    }
    {
        // Symbolic dimensions count as 1: [N, 2^31, 2^31] is refused at any batch size...
        onnx_model_maker m;
        m.input("x", {-1, 1, 1}, {"N"});
        m.init_i64("s", {1, std::int64_t{1} << 31, std::int64_t{1} << 31});
        m.node("Expand", {"x", "s"}, {"y"}, "expand_big");
        m.output("y");
        expect_error<resource_error>([&] { (void)load(m, "expand.onnx"); }, {"expand.onnx", "node 'expand_big' (Expand)"});
    }
    {
        // ... and a symbolic batch alone is not a size.
        onnx_model_maker m;
        m.input("x", {-1, 3}, {"N"});
        m.node("Relu", {"x"}, {"y"}, "relu");
        m.output("y");
        EXPECT_NO_THROW((void)load(m, "batch.onnx"));
    }
}

TEST(untrusted_models, range_with_extreme_int64_constants) {
    // limit - start of INT64_MAX and INT64_MIN overflowed int64 in shape inference (undefined behaviour). The count is
    // ceil((2^64 - 1) / 2^62) = 4 and the values -2^63, -2^62, 0, 2^62.
    onnx_model_maker m;
    m.input("x", {4}, {}, 7);
    m.init_i64("a", {std::numeric_limits<std::int64_t>::min()});
    m.init_i64("b", {std::numeric_limits<std::int64_t>::max()});
    m.init_i64("c", {std::int64_t{1} << 62});
    m.node("Range", {"a", "b", "c"}, {"r"}, "range");
    m.node("Add", {"x", "r"}, {"y"}, "add");
    m.output("y", 7);
    graph g = load(m, "range.onnx");
    executor ex(std::move(g));
    const tensor zero = tensor::from(std::vector<std::int64_t>{0, 0, 0, 0}, {4});
    const auto out = ex.run({zero});
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].numel(), 4);
    const std::int64_t* y = out[0].data<std::int64_t>();
    EXPECT_EQ(y[0], std::numeric_limits<std::int64_t>::min());
    EXPECT_EQ(y[1], -(std::int64_t{1} << 62));
    EXPECT_EQ(y[2], 0);
    EXPECT_EQ(y[3], std::int64_t{1} << 62);
}

TEST(untrusted_models, float_range_with_nan_or_a_huge_count_is_an_error) {
    // ceil(1e30) and ceil(NaN) were converted to int64 unchecked (undefined behaviour; x86 gave an empty Range).
    for (float limit : {1e30f, std::numeric_limits<float>::quiet_NaN()}) {
        SCOPED_TRACE(limit);
        onnx_model_maker m;
        m.input("x", {1});
        const float zero = 0.0f, one = 1.0f;
        add_scalar(m, "a", 1, &zero, 4);
        add_scalar(m, "b", 1, &limit, 4);
        add_scalar(m, "c", 1, &one, 4);
        m.node("Range", {"a", "b", "c"}, {"r"}, "range_f");
        m.node("Add", {"x", "r"}, {"y"}, "add");
        m.output("y");
        try {
            executor ex(load(m, "rangef.onnx"));
            (void)ex.run({tensor::zeros({1})});
            ADD_FAILURE() << "accepted";
        } catch (const error& e) {
            EXPECT_NE(std::string(e.what()).find("node 'range_f' (Range)"), std::string::npos) << e.what();
        }
    }
}

// Cast(x) to `type`, then op with a scalar constant of that type, then Cast back to float: the int kernels on
// values from the model.
tensor run_int_op(const std::string& op, std::int32_t type, std::int64_t constant, const std::vector<float>& x) {
    onnx_model_maker m;
    m.input("x", {static_cast<std::int64_t>(x.size())});
    auto* c = m.node("Cast", {"x"}, {"xi"}, "cast_in");
    onnx_model_maker::attr_i(c, "to", type);
    if (type == 6) {
        const auto v = static_cast<std::int32_t>(constant);
        add_scalar(m, "k", 6, &v, 4);
    } else {
        add_scalar(m, "k", 7, &constant, 8);
    }
    m.node(op, op == "Neg" ? std::vector<std::string>{"xi"} : std::vector<std::string>{"xi", "k"}, {"r"}, "op");
    auto* back = m.node("Cast", {"r"}, {"y"}, "cast_out");
    onnx_model_maker::attr_i(back, "to", 1);
    m.output("y");
    executor ex(load(m, "int.onnx"));
    return ex.run({tensor::from(x, {static_cast<std::int64_t>(x.size())})})[0];
}

TEST(untrusted_models, integer_min_divided_by_minus_one_wraps_instead_of_trapping) {
    // INT_MIN / -1 raised SIGFPE: `quantsim run` died by a signal. Now it wraps (INT_MIN), like the other int ops.
    const float min32 = -2147483648.0f;
    EXPECT_EQ(run_int_op("Div", 6, -1, {min32, 6.0f}).f32()[0], min32);
    EXPECT_EQ(run_int_op("Div", 6, -1, {min32, 6.0f}).f32()[1], -6.0f);
    EXPECT_EQ(run_int_op("Mod", 6, -1, {min32, 7.0f}).f32()[0], 0.0f);
    EXPECT_EQ(run_int_op("Div", 7, -1, {-9.2233720368547758e18f}).f32()[0], -9.2233720368547758e18f);
    EXPECT_THROW((void)run_int_op("Div", 6, 0, {1.0f}), numeric_error);
}

TEST(untrusted_models, integer_overflow_wraps_and_huge_exponents_finish) {
    // Signed overflow was undefined behaviour; Pow ran one multiplication per unit of the exponent (4e18 steps).
    const auto t0 = std::chrono::steady_clock::now();
    const tensor p = run_int_op("Pow", 7, 4'000'000'000'000'000'000, {1.0f, 0.0f, 2.0f, -1.0f, 3.0f});
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60)) << "Pow loops over the exponent";
    const float* y = p.f32();
    EXPECT_EQ(y[0], 1.0f);
    EXPECT_EQ(y[1], 0.0f);
    EXPECT_EQ(y[2], 0.0f);  // 2^(4e18) mod 2^64
    EXPECT_EQ(y[3], 1.0f);  // even exponent
    EXPECT_EQ(run_int_op("Pow", 7, 3, {3.0f, -2.0f}).f32()[0], 27.0f);
    EXPECT_EQ(run_int_op("Pow", 7, 3, {3.0f, -2.0f}).f32()[1], -8.0f);
    EXPECT_EQ(run_int_op("Pow", 7, -1, {2.0f, -1.0f}).f32()[0], 0.0f);  // 1/2 truncates to 0
    EXPECT_EQ(run_int_op("Pow", 7, -1, {2.0f, -1.0f}).f32()[1], -1.0f);
    EXPECT_EQ(run_int_op("Mul", 6, 2147483647, {2.0f}).f32()[0], -2.0f);
    EXPECT_EQ(run_int_op("Add", 6, 2147483647, {1.0f}).f32()[0], -2147483648.0f);
    EXPECT_EQ(run_int_op("Sub", 6, 2147483647, {-2.0f}).f32()[0], 2147483647.0f);
    EXPECT_EQ(run_int_op("Neg", 6, 0, {-2147483648.0f, 5.0f}).f32()[0], -2147483648.0f);
    EXPECT_EQ(run_int_op("Neg", 6, 0, {-2147483648.0f, 5.0f}).f32()[1], -5.0f);
}

}  // namespace
}  // namespace quantsim
