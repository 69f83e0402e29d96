// .npy reader and writer (include/quantsim/io/npy.hpp). The header is a Python dict literal; this parser accepts
// exactly the subset numpy writes (string keys, string/bool/tuple-of-int values) and rejects anything else.
#include <quantsim/io/npy.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>

#include <quantsim/core/error.hpp>
#include <quantsim/io/file.hpp>

namespace quantsim {

namespace {

constexpr char magic[] = "\x93NUMPY";
constexpr std::size_t magic_len = 6;
constexpr std::size_t max_header_len = std::size_t{1} << 20;  // numpy itself refuses headers above 10 KB by default

struct npy_header {
    dtype type = dtype::float32;
    bool swap = false;  // stored big-endian
    shape_t shape;
    std::size_t data_offset = 0;
};

struct dict_value {
    enum kind_t { str, boolean, tuple } kind = str;
    std::string s;
    bool b = false;
    std::vector<std::int64_t> ints;
};

class dict_parser {
public:
    dict_parser(std::string_view text, const std::string& what) : t_(text), what_(what) {}

    std::map<std::string, dict_value> parse() {
        std::map<std::string, dict_value> r;
        skip();
        expect('{');
        skip();
        while (peek() != '}') {
            std::string key = parse_string();
            skip();
            expect(':');
            skip();
            dict_value v = parse_value();
            if (!r.emplace(key, std::move(v)).second) fail("key '" + key + "' appears twice");
            skip();
            if (peek() == ',') {
                ++p_;
                skip();
            } else if (peek() != '}') {
                fail("expected ',' or '}'");
            }
        }
        ++p_;
        skip();
        if (p_ != t_.size()) fail("unexpected text after the closing '}'");
        return r;
    }

private:
    [[noreturn]] void fail(const std::string& m) const {
        QUANTSIM_THROW(parse_error, what_, ": malformed .npy header at character ", p_, ": ", m);
    }
    char peek() const { return p_ < t_.size() ? t_[p_] : '\0'; }
    void skip() {
        while (p_ < t_.size() && (t_[p_] == ' ' || t_[p_] == '\n' || t_[p_] == '\t' || t_[p_] == '\r')) ++p_;
    }
    void expect(char c) {
        if (peek() != c) fail(std::string("expected '") + c + "'");
        ++p_;
    }
    std::string parse_string() {
        const char q = peek();
        if (q != '\'' && q != '"') fail("expected a quoted string");
        ++p_;
        std::string s;
        while (p_ < t_.size() && t_[p_] != q) {
            if (t_[p_] == '\\') fail("escapes are not supported in header strings");
            s += t_[p_++];
        }
        if (p_ >= t_.size()) fail("unterminated string");
        ++p_;
        return s;
    }
    std::int64_t parse_int() {
        std::int64_t v = 0;
        bool any = false;
        while (p_ < t_.size() && t_[p_] >= '0' && t_[p_] <= '9') {
            const int d = t_[p_] - '0';
            if (v > (std::numeric_limits<std::int64_t>::max() - d) / 10) fail("dimension does not fit in 64 bits");
            v = v * 10 + d;
            ++p_;
            any = true;
        }
        // numpy may write 'L' suffixes (Python 2 longs).
        if (any && peek() == 'L') ++p_;
        if (!any) fail("expected a non-negative integer");
        return v;
    }
    dict_value parse_value() {
        dict_value v;
        const char c = peek();
        if (c == '\'' || c == '"') {
            v.kind = dict_value::str;
            v.s = parse_string();
        } else if (t_.substr(p_, 4) == "True") {
            v.kind = dict_value::boolean;
            v.b = true;
            p_ += 4;
        } else if (t_.substr(p_, 5) == "False") {
            v.kind = dict_value::boolean;
            p_ += 5;
        } else if (c == '(') {
            v.kind = dict_value::tuple;
            ++p_;
            skip();
            while (peek() != ')') {
                v.ints.push_back(parse_int());
                if (v.ints.size() > 64) fail("more than 64 dimensions");
                skip();
                if (peek() == ',') {
                    ++p_;
                    skip();
                } else if (peek() != ')') {
                    fail("expected ',' or ')' in the shape");
                }
            }
            ++p_;
        } else {
            fail("expected a string, True, False or a tuple");
        }
        return v;
    }

    std::string_view t_;
    const std::string& what_;
    std::size_t p_ = 0;
};

std::uint32_t read_le(const std::byte* p, int n) {
    std::uint32_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<std::uint32_t>(p[i]);
    return v;
}

npy_header parse_header(std::span<const std::byte> head, std::uint64_t total_size, const std::string& what) {
    // `head` holds at least the first 12 bytes (or the whole file if shorter).
    if (head.size() < magic_len + 2 || std::memcmp(head.data(), magic, magic_len) != 0)
        QUANTSIM_THROW(parse_error, what, ": not a .npy file (bad magic bytes)");
    const int major = static_cast<int>(head[6]);
    const int minor = static_cast<int>(head[7]);
    if ((major != 1 && major != 2 && major != 3) || minor != 0)
        QUANTSIM_THROW(parse_error, what, ": unsupported .npy format version ", major, ".", minor);
    const std::size_t len_bytes = major == 1 ? 2 : 4;
    if (head.size() < 8 + len_bytes) QUANTSIM_THROW(parse_error, what, ": file ends inside the .npy header");
    const std::uint64_t hlen = read_le(head.data() + 8, static_cast<int>(len_bytes));
    npy_header h;
    h.data_offset = 8 + len_bytes + static_cast<std::size_t>(hlen);
    if (hlen > max_header_len) QUANTSIM_THROW(parse_error, what, ": .npy header length ", hlen, " is implausibly large");
    if (8 + len_bytes + hlen > total_size)
        QUANTSIM_THROW(parse_error, what, ": .npy header length ", hlen, " runs past the end of the file (",
                       total_size, " bytes)");
    if (head.size() < h.data_offset) QUANTSIM_THROW(parse_error, what, ": file ends inside the .npy header");
    std::string_view text(reinterpret_cast<const char*>(head.data()) + 8 + len_bytes, static_cast<std::size_t>(hlen));
    for (char c : text)
        if (static_cast<unsigned char>(c) >= 0x80 && major < 3)
            QUANTSIM_THROW(parse_error, what, ": non-ASCII byte in a version ", major, " .npy header");
    const auto dict = dict_parser(text, what).parse();
    for (const auto& [k, v] : dict)
        if (k != "descr" && k != "fortran_order" && k != "shape")
            QUANTSIM_THROW(parse_error, what, ": unexpected key '", k, "' in the .npy header");
    auto get = [&](const char* key, dict_value::kind_t kind, const char* type_name) -> const dict_value& {
        auto it = dict.find(key);
        if (it == dict.end()) QUANTSIM_THROW(parse_error, what, ": .npy header has no '", key, "'");
        if (it->second.kind != kind) QUANTSIM_THROW(parse_error, what, ": .npy header '", key, "' must be ", type_name);
        return it->second;
    };
    const std::string descr = get("descr", dict_value::str, "a string").s;
    if (get("fortran_order", dict_value::boolean, "True or False").b)
        QUANTSIM_THROW(unsupported_error, what, ": Fortran-order .npy arrays are not supported; save with "
                       "numpy.ascontiguousarray(a) (C order)");
    const auto& dims = get("shape", dict_value::tuple, "a tuple").ints;
    h.shape.assign(dims.begin(), dims.end());

    if (descr.size() < 3) QUANTSIM_THROW(unsupported_error, what, ": unsupported .npy dtype '", descr, "'");
    const char order = descr[0];
    const std::string code = descr.substr(1);
    static const std::map<std::string, dtype> codes = {
        {"f4", dtype::float32}, {"f8", dtype::float64}, {"i8", dtype::int64}, {"i4", dtype::int32},
        {"i2", dtype::int16},   {"u2", dtype::uint16},  {"i1", dtype::int8},  {"u1", dtype::uint8},
        {"b1", dtype::boolean}};
    auto it = codes.find(code);
    if (it == codes.end() || (order != '<' && order != '>' && order != '|' && order != '='))
        QUANTSIM_THROW(unsupported_error, what, ": unsupported .npy dtype '", descr,
                       "' (supported: float32, float64, int64, int32, int16, uint16, int8, uint8, bool)");
    h.type = it->second;
    h.swap = size_of(h.type) > 1 && (order == '>') == (std::endian::native == std::endian::little);
    if (order == '=' && std::endian::native != std::endian::little) h.swap = false;
    return h;
}

void byteswap_inplace(tensor& t) {
    const std::size_t es = size_of(t.type());
    auto* p = static_cast<unsigned char*>(t.raw());
    for (std::int64_t i = 0; i < t.numel(); ++i) std::reverse(p + i * es, p + (i + 1) * es);
}

tensor finish(tensor t, bool swap, const npy_load_options& options, const std::string& what) {
    if (swap) byteswap_inplace(t);
    if (t.type() == dtype::boolean) {
        // numpy bools are bytes 0/1; anything else would make later comparisons lie.
        const auto* p = static_cast<const unsigned char*>(t.raw());
        for (std::int64_t i = 0; i < t.numel(); ++i)
            if (p[i] > 1) QUANTSIM_THROW(parse_error, what, ": bool element ", i, " holds byte ", int(p[i]), " (not 0 or 1)");
    }
    if (options.float64_to_float32 && t.type() == dtype::float64) {
        tensor f = tensor::empty(t.shape(), dtype::float32);
        const double* s = t.data<double>();
        float* d = f.data<float>();
        for (std::int64_t i = 0; i < t.numel(); ++i) d[i] = static_cast<float>(s[i]);
        return f;
    }
    return t;
}

std::string descr_of(dtype t) {
    const char* le = std::endian::native == std::endian::little ? "<" : ">";
    switch (t) {
        case dtype::float32: return std::string(le) + "f4";
        case dtype::float64: return std::string(le) + "f8";
        case dtype::int64: return std::string(le) + "i8";
        case dtype::int32: return std::string(le) + "i4";
        case dtype::int16: return std::string(le) + "i2";
        case dtype::uint16: return std::string(le) + "u2";
        case dtype::int8:
        case dtype::int4: return "|i1";
        case dtype::uint8:
        case dtype::uint4: return "|u1";
        case dtype::boolean: return "|b1";
    }
    QUANTSIM_THROW(unsupported_error, "save_npy: dtype ", name_of(t), " has no .npy equivalent");
}

std::string header_of(const tensor& t) {
    std::string dict = "{'descr': '" + descr_of(t.type()) + "', 'fortran_order': False, 'shape': (";
    for (std::size_t i = 0; i < t.shape().size(); ++i) dict += std::to_string(t.shape()[i]) + (t.rank() == 1 ? "," : (i + 1 < t.shape().size() ? ", " : ""));
    dict += "), }";
    // Pad with spaces so that the data starts on a 64-byte boundary (numpy's own rule), ending with '\n'.
    std::size_t prefix = 10;
    int major = 1;
    if (dict.size() + 1 + prefix > 65535) {
        prefix = 12;
        major = 2;
    }
    const std::size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
    dict.append(total - prefix - dict.size() - 1, ' ');
    dict += '\n';
    std::string h(magic, magic_len);
    h += static_cast<char>(major);
    h += '\0';
    const std::size_t hl = dict.size();
    for (std::size_t i = 0; i < prefix - 8; ++i) h += static_cast<char>((hl >> (8 * i)) & 0xff);
    return h + dict;
}

}  // namespace

tensor load_npy_from_memory(std::span<const std::byte> bytes, const npy_load_options& options, const std::string& what) {
    const npy_header h = parse_header(bytes, bytes.size(), what);
    const std::int64_t n = checked_numel(h.shape, size_of(h.type), what);
    const std::uint64_t need = static_cast<std::uint64_t>(n) * size_of(h.type);
    const std::uint64_t have = bytes.size() - h.data_offset;
    if (have != need)
        QUANTSIM_THROW(parse_error, what, ": shape ", to_string(h.shape), " of ", name_of(h.type), " needs ", need,
                       " data bytes but the file has ", have);
    tensor t = tensor::empty(h.shape, h.type);
    if (need) std::memcpy(t.raw(), bytes.data() + h.data_offset, static_cast<std::size_t>(need));
    return finish(std::move(t), h.swap, options, what);
}

tensor load_npy(const std::filesystem::path& path, const npy_load_options& options) {
    const std::string what = path.string();
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) QUANTSIM_THROW(io_error, "cannot read '", what, "': it is a directory");
    std::ifstream is(path, std::ios::binary);
    if (!is) QUANTSIM_THROW(io_error, "cannot open '", what, "': ", std::filesystem::exists(path, ec) ? "unreadable" : "no such file");
    is.seekg(0, std::ios::end);
    const auto end = is.tellg();
    if (end < 0) QUANTSIM_THROW(io_error, "cannot read '", what, "': cannot determine its size");
    const auto total = static_cast<std::uint64_t>(end);
    is.seekg(0);
    // Read the fixed prefix, then exactly the header, then the data straight into the tensor.
    std::vector<std::byte> head(static_cast<std::size_t>(std::min<std::uint64_t>(total, 12)));
    is.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
    if (head.size() >= 10 && std::memcmp(head.data(), magic, magic_len) == 0) {
        const int major = static_cast<int>(head[6]);
        const std::size_t len_bytes = major == 1 ? 2 : 4;
        if (head.size() >= 8 + len_bytes) {
            const std::uint64_t hlen = read_le(head.data() + 8, static_cast<int>(len_bytes));
            const std::uint64_t want = std::min<std::uint64_t>(total, 8 + len_bytes + std::min<std::uint64_t>(hlen, max_header_len + 1));
            if (want > head.size()) {
                const std::size_t old = head.size();
                head.resize(static_cast<std::size_t>(want));
                is.read(reinterpret_cast<char*>(head.data() + old), static_cast<std::streamsize>(want - old));
            }
        }
    }
    if (!is) QUANTSIM_THROW(io_error, "cannot read '", what, "': read failed");
    const npy_header h = parse_header(head, total, what);
    const std::int64_t n = checked_numel(h.shape, size_of(h.type), what);
    const std::uint64_t need = static_cast<std::uint64_t>(n) * size_of(h.type);
    const std::uint64_t have = total - h.data_offset;
    if (have != need)
        QUANTSIM_THROW(parse_error, what, ": shape ", to_string(h.shape), " of ", name_of(h.type), " needs ", need,
                       " data bytes but the file has ", have);
    check_fits_in_memory(need, what);
    tensor t = tensor::empty(h.shape, h.type);
    is.seekg(static_cast<std::streamoff>(h.data_offset));
    if (need && !is.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(need)))
        QUANTSIM_THROW(io_error, "cannot read '", what, "': read failed");
    return finish(std::move(t), h.swap, options, what);
}

std::vector<std::byte> to_npy_bytes(const tensor& t) {
    if (!t.defined()) QUANTSIM_THROW(invalid_argument, "save_npy: the tensor is empty (undefined)");
    const std::string h = header_of(t);
    std::vector<std::byte> r(h.size() + t.nbytes());
    std::memcpy(r.data(), h.data(), h.size());
    if (t.nbytes()) std::memcpy(r.data() + h.size(), t.raw(), t.nbytes());
    return r;
}

void save_npy(const std::filesystem::path& path, const tensor& t) {
    if (!t.defined()) QUANTSIM_THROW(invalid_argument, "save_npy '", path.string(), "': the tensor is empty (undefined)");
    const std::string h = header_of(t);
    write_file_atomic(path, [&](std::ostream& os) {
        os.write(h.data(), static_cast<std::streamsize>(h.size()));
        os.write(static_cast<const char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
    });
}

}  // namespace quantsim
