// .npy reader/writer: every dtype, header versions, endianness, and clean errors for malformed files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include <quantsim/io/file.hpp>
#include <quantsim/io/npy.hpp>

namespace quantsim {
namespace {

namespace fs = std::filesystem;

std::span<const std::byte> as_bytes(const std::string& s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

// A .npy file from a header dict and raw data, with the given format version.
std::string npy(const std::string& dict, const std::string& data, int major = 1) {
    std::string h = dict;
    const std::size_t prefix = major == 1 ? 10 : 12;
    while ((prefix + h.size() + 1) % 64) h += ' ';
    h += '\n';
    std::string r = "\x93NUMPY";
    r += static_cast<char>(major);
    r += '\0';
    const std::size_t n = h.size();
    r += static_cast<char>(n & 0xff);
    r += static_cast<char>((n >> 8) & 0xff);
    if (major > 1) {
        r += static_cast<char>((n >> 16) & 0xff);
        r += static_cast<char>((n >> 24) & 0xff);
    }
    return r + h + data;
}

template <class T>
std::string raw(std::initializer_list<T> v) {
    return std::string(reinterpret_cast<const char*>(std::data(v)), v.size() * sizeof(T));
}

TEST(npy, round_trips_every_dtype) {
    const fs::path dir = fs::temp_directory_path() / "quantsim_npy_test";
    fs::create_directories(dir);
    std::mt19937 rng(7);
    auto check = [&](tensor t) {
        SCOPED_TRACE(std::string(name_of(t.type())));
        auto* p = static_cast<unsigned char*>(t.raw());
        for (std::size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<unsigned char>(rng());
        if (t.type() == dtype::boolean)
            for (std::size_t i = 0; i < t.nbytes(); ++i) p[i] &= 1;
        const fs::path f = dir / "t.npy";
        save_npy(f, t);
        const tensor r = load_npy(f);
        EXPECT_EQ(r.type(), t.type());
        EXPECT_EQ(r.shape(), t.shape());
        EXPECT_EQ(0, std::memcmp(r.raw(), t.raw(), t.nbytes()));
        const auto bytes = to_npy_bytes(t);
        const tensor m = load_npy_from_memory(bytes);
        EXPECT_EQ(0, std::memcmp(m.raw(), t.raw(), t.nbytes()));
    };
    for (dtype d : {dtype::float32, dtype::float64, dtype::int64, dtype::int32, dtype::int16, dtype::uint16, dtype::int8,
                    dtype::uint8, dtype::boolean})
        check(tensor::empty({3, 1, 5}, d));
    check(tensor::empty({}, dtype::float32));   // scalar
    check(tensor::empty({7}, dtype::int64));     // rank 1: "(7,)"
    check(tensor::empty({0, 4}, dtype::float32)); // empty
    fs::remove_all(dir);
}

TEST(npy, header_is_what_numpy_writes) {
    const auto b = to_npy_bytes(tensor::zeros({2, 3}));
    const std::string s(reinterpret_cast<const char*>(b.data()), b.size());
    EXPECT_EQ(s.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    EXPECT_NE(s.find("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), std::string::npos);
    const std::size_t hlen = static_cast<unsigned char>(s[8]) | (static_cast<unsigned char>(s[9]) << 8);
    EXPECT_EQ((10 + hlen) % 64, 0u);
    EXPECT_EQ(s[10 + hlen - 1], '\n');
    const auto b1 = to_npy_bytes(tensor::zeros({4}));
    EXPECT_NE(std::string(reinterpret_cast<const char*>(b1.data()), b1.size()).find("'shape': (4,)"), std::string::npos);
}

TEST(npy, reads_v2_v3_big_endian_and_converts_float64) {
    const auto v2 = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", raw<float>({1.5f, -2.f}), 2);
    EXPECT_EQ(load_npy_from_memory(as_bytes(v2)).f32()[1], -2.f);
    const auto v3 = npy("{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", raw<std::int32_t>({42}), 3);
    EXPECT_EQ(load_npy_from_memory(as_bytes(v3)).data<std::int32_t>()[0], 42);
    const std::string be_int = std::string("\x00\x00\x01\x02", 4);  // big-endian int32 258
    const auto be = npy("{'descr': '>i4', 'fortran_order': False, 'shape': (1,), }", be_int);
    EXPECT_EQ(load_npy_from_memory(as_bytes(be)).data<std::int32_t>()[0], 258);
    const auto f64 = npy("{'shape': (2,), 'fortran_order': False, 'descr': '<f8'}", raw<double>({0.25, 3.0}));
    const tensor d = load_npy_from_memory(as_bytes(f64));
    EXPECT_EQ(d.type(), dtype::float64);
    npy_load_options o;
    o.float64_to_float32 = true;
    const tensor f = load_npy_from_memory(as_bytes(f64), o);
    EXPECT_EQ(f.type(), dtype::float32);
    EXPECT_EQ(f.f32()[0], 0.25f);
    EXPECT_EQ(f.f32()[1], 3.f);
}

template <class E>
void expect_error(const std::string& file, const std::string& piece) {
    try {
        load_npy_from_memory(as_bytes(file), {}, "x.npy");
        FAIL() << "accepted";
    } catch (const E& e) {
        EXPECT_NE(std::string(e.what()).find(piece), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("x.npy"), std::string::npos) << e.what();
    } catch (const error& e) {
        FAIL() << "wrong error type: " << e.what();
    }
}

TEST(npy, malformed_files_are_rejected_cleanly) {
    const std::string ok_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
    expect_error<parse_error>("", "bad magic");
    expect_error<parse_error>("NUMPY not really", "bad magic");
    expect_error<parse_error>(std::string("\x93NUMPY\x01\x00\xff\xff", 10), "runs past the end");
    expect_error<parse_error>(std::string("\x93NUMPY\x04\x00\x10\x00", 10), "version 4.0");
    expect_error<parse_error>(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", raw<float>({1, 2})), "malformed");
    expect_error<parse_error>(npy("{'descr': <f4, 'fortran_order': False, 'shape': (2,), }", raw<float>({1, 2})), "malformed");
    expect_error<parse_error>(npy("{'descr': '<f4', 'shape': (2,), }", raw<float>({1, 2})), "'fortran_order'");
    expect_error<parse_error>(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }", raw<float>({1, 2})), "malformed");
    expect_error<parse_error>(npy("{'descr': '<f4', 'fortran_order': False, 'shape': 2, }", raw<float>({1, 2})), "malformed");
    expect_error<parse_error>(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1, }", raw<float>({1, 2})), "malformed");
    expect_error<parse_error>(npy(ok_dict, raw<float>({1})), "needs 8 data bytes but the file has 4");
    expect_error<parse_error>(npy(ok_dict, raw<float>({1, 2, 3})), "needs 8 data bytes but the file has 12");
    expect_error<unsupported_error>(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", raw<float>({1, 2})), "Fortran");
    expect_error<unsupported_error>(npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", raw<float>({1, 2})), "'<c8'");
    expect_error<unsupported_error>(npy("{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", "abc"), "'<U3'");
    expect_error<resource_error>(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000, 100000000000), }", ""), "x.npy");
    expect_error<resource_error>(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4000000000000,), }", ""), "x.npy");
    expect_error<parse_error>(npy("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", std::string("\x01\x07", 2)), "bool");
}

TEST(npy, truncations_and_byte_flips_never_crash) {
    const std::uint32_t seed = 99;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const auto base_bytes = to_npy_bytes(tensor::full({3, 4}, 1.f));
    const std::string base(reinterpret_cast<const char*>(base_bytes.data()), base_bytes.size());
    for (std::size_t len = 0; len < base.size(); ++len) EXPECT_THROW(load_npy_from_memory(as_bytes(base.substr(0, len))), error);
    for (int i = 0; i < 3000; ++i) {
        std::string b = base;
        b[rng() % std::min<std::size_t>(b.size(), 128)] = static_cast<char>(rng());
        try {
            (void)load_npy_from_memory(as_bytes(b));
        } catch (const error&) {
        }
    }
}

TEST(npy, file_errors_name_the_path) {
    try {
        load_npy("/nonexistent/dir/x.npy");
        FAIL();
    } catch (const io_error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/x.npy"), std::string::npos);
    }
    EXPECT_THROW(save_npy("/nonexistent/dir/x.npy", tensor::zeros({1})), io_error);
    EXPECT_THROW(save_npy(fs::temp_directory_path() / "q.npy", tensor()), invalid_argument);
}

}  // namespace
}  // namespace quantsim
