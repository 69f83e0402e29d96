// ONNX import: ModelProto -> graph, with every size and index checked, external data confined to the model's
// folder, and opset differences normalized into the canonical op forms of docs/ir.md.
#include <quantsim/io/onnx.hpp>

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <quantsim/io/file.hpp>
#include <quantsim/ir/detail/error_context.hpp>
#include <quantsim/ir/op.hpp>
#include <quantsim/ir/shape_inference.hpp>

#include "onnx_common.hpp"

namespace quantsim {

namespace fs = std::filesystem;

namespace {

using detail::onnx_type_name;

struct import_context {
    fs::path external_dir;  // empty: external data refused
    bool external_allowed = false;
};

// ---- tensors -----------------------------------------------------------------------------------------------------

std::uint64_t parse_uint(const std::string& s, const std::string& what, const char* key) {
    if (s.empty() || s.size() > 19 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
        QUANTSIM_THROW(parse_error, what, ": external data '", key, "' = '", s, "' is not a non-negative integer");
    return std::stoull(s);
}

// Resolves an external-data location inside `dir`, refusing absolute paths and paths that leave the folder
// (through '..' or a symbolic link).
fs::path resolve_external(const import_context& ctx, const std::string& location, const std::string& what) {
    if (!ctx.external_allowed)
        QUANTSIM_THROW(io_error, what, ": uses external data file '", location,
                       "' but no folder was given for external data (load from a file, or set "
                       "onnx_load_options::external_data_dir)");
    if (location.empty()) QUANTSIM_THROW(parse_error, what, ": external data has an empty 'location'");
    if (location.find('\0') != std::string::npos)
        QUANTSIM_THROW(parse_error, what, ": external data location contains a NUL byte");
    const fs::path loc(location);
    if (loc.is_absolute() || loc.has_root_name() || loc.has_root_directory())
        QUANTSIM_THROW(parse_error, what, ": external data location '", location,
                       "' is absolute; it must be relative to the model's folder");
    const fs::path norm = loc.lexically_normal();
    if (!norm.empty() && *norm.begin() == "..")
        QUANTSIM_THROW(parse_error, what, ": external data location '", location, "' leaves the model's folder");
    const fs::path full = ctx.external_dir / norm;
    std::error_code ec;
    const fs::path base_c = fs::weakly_canonical(ctx.external_dir, ec);
    const fs::path full_c = fs::weakly_canonical(full, ec);
    if (!ec) {
        auto rel = full_c.lexically_relative(base_c);
        if (rel.empty() || *rel.begin() == "..")
            QUANTSIM_THROW(parse_error, what, ": external data location '", location,
                           "' resolves (through a link) outside the model's folder");
    }
    return full;
}

void unpack_int4(const std::uint8_t* packed, std::int64_t n, bool is_signed, std::uint8_t* out) {
    for (std::int64_t i = 0; i < n; ++i) {
        const std::uint8_t byte = packed[i / 2];
        std::uint8_t nib = (i % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
        if (is_signed && (nib & 0x08)) nib |= 0xF0;  // sign-extend into the int8 storage byte
        out[i] = nib;
    }
}

void byteswap_if_big_endian(tensor& t) {
    if constexpr (std::endian::native == std::endian::big) {
        const std::size_t es = size_of(t.type());
        auto* p = static_cast<unsigned char*>(t.raw());
        for (std::int64_t i = 0; es > 1 && i < t.numel(); ++i) std::reverse(p + i * es, p + (i + 1) * es);
    }
}

// Fills `t` from little-endian bytes (or packed nibbles for int4/uint4).
void fill_from_bytes(tensor& t, const std::uint8_t* bytes) {
    if (t.type() == dtype::int4 || t.type() == dtype::uint4) {
        unpack_int4(bytes, t.numel(), t.type() == dtype::int4, static_cast<std::uint8_t*>(t.raw()));
        return;
    }
    if (t.nbytes()) std::memcpy(t.raw(), bytes, t.nbytes());
    byteswap_if_big_endian(t);
    if (t.type() == dtype::boolean) {
        auto* p = static_cast<std::uint8_t*>(t.raw());
        for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = p[i] != 0;
    }
}

std::uint64_t stored_bytes(dtype type, std::int64_t numel) {
    if (type == dtype::int4 || type == dtype::uint4) return (static_cast<std::uint64_t>(numel) + 1) / 2;
    return static_cast<std::uint64_t>(numel) * size_of(type);
}

template <class Dst, class Src>
void copy_checked(const Src* src, std::int64_t n, Dst* dst, const std::string& what, const char* type_name) {
    for (std::int64_t i = 0; i < n; ++i) {
        const Src v = src[i];
        if constexpr (std::is_integral_v<Dst> && !std::is_same_v<Dst, bool>) {
            if (v < static_cast<Src>(std::numeric_limits<Dst>::min()) || v > static_cast<Src>(std::numeric_limits<Dst>::max()))
                QUANTSIM_THROW(parse_error, what, ": element ", i, " = ", v, " does not fit in ", type_name);
        }
        dst[i] = static_cast<Dst>(v);
    }
}

tensor tensor_from_proto(const onnx::TensorProto& p, const import_context& ctx, const std::string& what_in) {
    const std::string what = what_in.empty() ? "tensor '" + p.name() + "'" : what_in;
    if (p.has_segment()) QUANTSIM_THROW(unsupported_error, what, ": segmented tensors are not supported");
    const auto type = detail::dtype_from_onnx(p.data_type());
    if (!type)
        QUANTSIM_THROW(unsupported_error, what, ": data type ", onnx_type_name(p.data_type()), " (", p.data_type(),
                       ") is not supported (supported: FLOAT, DOUBLE, INT64, INT32, INT16, UINT16, INT8, UINT8, "
                       "INT4, UINT4, BOOL)");
    if (p.dims_size() > 64) QUANTSIM_THROW(parse_error, what, ": rank ", p.dims_size(), " is implausible");
    shape_t shape(p.dims().begin(), p.dims().end());
    for (auto d : shape)
        if (d < 0) QUANTSIM_THROW(parse_error, what, ": negative dimension in shape ", to_string(shape));
    const std::int64_t n = checked_numel(shape, std::max<std::size_t>(1, size_of(*type)), what);
    const std::uint64_t need = stored_bytes(*type, n);
    const bool external = p.has_data_location() && p.data_location() == onnx::TensorProto_DataLocation_EXTERNAL;

    const int typed_fields = (p.float_data_size() > 0) + (p.int32_data_size() > 0) + (p.int64_data_size() > 0) +
                             (p.double_data_size() > 0) + (p.uint64_data_size() > 0) + (p.string_data_size() > 0);
    if ((p.has_raw_data() || external) && typed_fields > 0)
        QUANTSIM_THROW(parse_error, what, ": holds both raw/external data and typed data fields");
    if (typed_fields > 1) QUANTSIM_THROW(parse_error, what, ": holds data in more than one typed field");

    // The tensor is allocated only after the bytes or values that fill it are known to be present: a few bytes of
    // protobuf may claim any shape up to max_tensor_bytes(), and must not make quantsim allocate it.
    if (external) {
        std::string location;
        std::optional<std::uint64_t> offset, length;
        for (const auto& kv : p.external_data()) {
            if (kv.key() == "location") location = kv.value();
            else if (kv.key() == "offset") offset = parse_uint(kv.value(), what, "offset");
            else if (kv.key() == "length") length = parse_uint(kv.value(), what, "length");
        }
        const fs::path file = resolve_external(ctx, location, what);
        std::error_code ec;
        const auto fsize = fs::file_size(file, ec);
        if (ec) QUANTSIM_THROW(io_error, what, ": cannot read external data file '", file.string(), "'");
        const std::uint64_t off = offset.value_or(0);
        if (length && *length != need)
            QUANTSIM_THROW(parse_error, what, ": external data length ", *length, " does not match shape ",
                           to_string(shape), " of ", name_of(*type), " (", need, " bytes)");
        if (off > fsize || need > fsize - off)
            QUANTSIM_THROW(parse_error, what, ": external data [", off, ", ", off + need, ") runs past the end of '",
                           location, "' (", fsize, " bytes)");
        std::ifstream is(file, std::ios::binary);
        if (!is) QUANTSIM_THROW(io_error, what, ": cannot open external data file '", file.string(), "'");
        check_fits_in_memory(need, what);
        tensor t = tensor::empty(shape, *type);
        is.seekg(static_cast<std::streamoff>(off));
        std::vector<std::uint8_t> buf;
        if (*type == dtype::int4 || *type == dtype::uint4 || std::endian::native == std::endian::big) {
            buf.resize(static_cast<std::size_t>(need));
            if (need && !is.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(need)))
                QUANTSIM_THROW(io_error, what, ": reading external data from '", file.string(), "' failed");
            fill_from_bytes(t, buf.data());
        } else {
            if (need && !is.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(need)))
                QUANTSIM_THROW(io_error, what, ": reading external data from '", file.string(), "' failed");
            if (t.type() == dtype::boolean) {
                auto* q = static_cast<std::uint8_t*>(t.raw());
                for (std::int64_t i = 0; i < n; ++i) q[i] = q[i] != 0;
            }
        }
        return t;
    }
    if (p.has_raw_data()) {
        const std::string& raw = p.raw_data();
        if (raw.size() != need)
            QUANTSIM_THROW(parse_error, what, ": raw_data has ", raw.size(), " bytes but shape ", to_string(shape),
                           " of ", name_of(*type), " needs ", need);
        tensor t = tensor::empty(shape, *type);
        fill_from_bytes(t, reinterpret_cast<const std::uint8_t*>(raw.data()));
        return t;
    }
    auto count_check = [&](std::int64_t have, std::int64_t want, const char* field) {
        if (have != want)
            QUANTSIM_THROW(parse_error, what, ": ", field, " has ", have, " values but shape ", to_string(shape),
                           " needs ", want);
    };
    // Typed fields: the count must match before allocating (same reason as above).
    {
        std::int64_t have = 0;
        const char* field = "int32_data";
        std::int64_t want = n;
        switch (*type) {
            case dtype::float32: have = p.float_data_size(); field = "float_data"; break;
            case dtype::float64: have = p.double_data_size(); field = "double_data"; break;
            case dtype::int64: have = p.int64_data_size(); field = "int64_data"; break;
            case dtype::int4:
            case dtype::uint4:
                have = p.int32_data_size();
                field = "int32_data (packed int4)";
                want = static_cast<std::int64_t>(need);
                break;
            default: have = p.int32_data_size(); break;
        }
        count_check(have, want, field);
    }
    tensor t = tensor::empty(shape, *type);
    switch (*type) {
        case dtype::float32:
            count_check(p.float_data_size(), n, "float_data");
            if (n) std::memcpy(t.raw(), p.float_data().data(), static_cast<std::size_t>(n) * 4);
            break;
        case dtype::float64:
            count_check(p.double_data_size(), n, "double_data");
            if (n) std::memcpy(t.raw(), p.double_data().data(), static_cast<std::size_t>(n) * 8);
            break;
        case dtype::int64:
            count_check(p.int64_data_size(), n, "int64_data");
            if (n) std::memcpy(t.raw(), p.int64_data().data(), static_cast<std::size_t>(n) * 8);
            break;
        case dtype::int32:
            count_check(p.int32_data_size(), n, "int32_data");
            if (n) std::memcpy(t.raw(), p.int32_data().data(), static_cast<std::size_t>(n) * 4);
            break;
        case dtype::int16:
            count_check(p.int32_data_size(), n, "int32_data");
            copy_checked(p.int32_data().data(), n, t.data<std::int16_t>(), what, "int16");
            break;
        case dtype::uint16:
            count_check(p.int32_data_size(), n, "int32_data");
            copy_checked(p.int32_data().data(), n, t.data<std::uint16_t>(), what, "uint16");
            break;
        case dtype::int8:
            count_check(p.int32_data_size(), n, "int32_data");
            copy_checked(p.int32_data().data(), n, t.data<std::int8_t>(), what, "int8");
            break;
        case dtype::uint8:
            count_check(p.int32_data_size(), n, "int32_data");
            copy_checked(p.int32_data().data(), n, t.data<std::uint8_t>(), what, "uint8");
            break;
        case dtype::boolean: {
            count_check(p.int32_data_size(), n, "int32_data");
            auto* q = static_cast<std::uint8_t*>(t.raw());
            for (std::int64_t i = 0; i < n; ++i) q[i] = p.int32_data(static_cast<int>(i)) != 0;
            break;
        }
        case dtype::int4:
        case dtype::uint4: {
            // int32_data holds one packed byte (two nibbles) per entry.
            const auto want = static_cast<std::int64_t>(need);
            count_check(p.int32_data_size(), want, "int32_data (packed int4)");
            std::vector<std::uint8_t> packed(static_cast<std::size_t>(want));
            copy_checked(p.int32_data().data(), want, packed.data(), what, "a packed int4 byte");
            fill_from_bytes(t, packed.data());
            break;
        }
    }
    return t;
}

// ---- value infos -----------------------------------------------------------------------------------------------

value_info value_info_from_proto(const onnx::ValueInfoProto& v, const std::string& what) {
    value_info r;
    r.name = v.name();
    if (!v.has_type() || v.type().value_case() != onnx::TypeProto::kTensorType) {
        if (v.has_type() && v.type().value_case() != onnx::TypeProto::VALUE_NOT_SET)
            QUANTSIM_THROW(unsupported_error, what, " '", v.name(), "': only tensor types are supported (not sequences, maps or optionals)");
        QUANTSIM_THROW(parse_error, what, " '", v.name(), "' has no type");
    }
    const auto& tt = v.type().tensor_type();
    const auto type = detail::dtype_from_onnx(tt.elem_type());
    if (!type)
        QUANTSIM_THROW(unsupported_error, what, " '", v.name(), "': data type ", onnx_type_name(tt.elem_type()), " (",
                       tt.elem_type(), ") is not supported");
    r.type = *type;
    if (tt.has_shape()) {
        if (tt.shape().dim_size() > 64) QUANTSIM_THROW(parse_error, what, " '", v.name(), "': rank ", tt.shape().dim_size(), " is implausible");
        bool any_param = false;
        for (const auto& d : tt.shape().dim()) {
            if (d.value_case() == onnx::TensorShapeProto_Dimension::kDimValue) {
                if (d.dim_value() < 0)
                    QUANTSIM_THROW(parse_error, what, " '", v.name(), "': negative dimension ", d.dim_value());
                r.shape.push_back(d.dim_value());
                r.dim_params.emplace_back();
            } else {
                r.shape.push_back(-1);
                r.dim_params.push_back(d.value_case() == onnx::TensorShapeProto_Dimension::kDimParam ? d.dim_param() : "");
                any_param |= !r.dim_params.back().empty();
            }
        }
        if (!any_param) r.dim_params.clear();
        r.shape_known = true;
    }
    return r;
}

// ---- attributes ----------------------------------------------------------------------------------------------------

attribute_value attr_from_proto(const onnx::AttributeProto& a, const node& n, const import_context& ctx) {
    using A = onnx::AttributeProto;
    auto type = a.type();
    if (!a.ref_attr_name().empty())
        QUANTSIM_THROW(unsupported_error, n.describe(), ": attribute '", a.name(), "' refers to a function attribute");
    if (type == A::UNDEFINED) {
        // Old writers (IR version < 2) leave the type out: infer it from the field that is set.
        if (a.has_f()) type = A::FLOAT;
        else if (a.has_i()) type = A::INT;
        else if (a.has_s()) type = A::STRING;
        else if (a.has_t()) type = A::TENSOR;
        else if (a.floats_size()) type = A::FLOATS;
        else if (a.ints_size()) type = A::INTS;
        else if (a.strings_size()) type = A::STRINGS;
        else if (a.has_g() || a.graphs_size()) type = A::GRAPH;
        else QUANTSIM_THROW(parse_error, n.describe(), ": attribute '", a.name(), "' has no type and no value");
    }
    switch (type) {
        case A::FLOAT: return a.f();
        case A::INT: return static_cast<std::int64_t>(a.i());
        case A::STRING: return a.s();
        case A::TENSOR: return tensor_from_proto(a.t(), ctx, n.describe() + " attribute '" + a.name() + "'");
        case A::FLOATS: return std::vector<float>(a.floats().begin(), a.floats().end());
        case A::INTS: return std::vector<std::int64_t>(a.ints().begin(), a.ints().end());
        case A::STRINGS: return std::vector<std::string>(a.strings().begin(), a.strings().end());
        case A::GRAPH:
        case A::GRAPHS:
            QUANTSIM_THROW(unsupported_error, n.describe(), ": attribute '", a.name(),
                           "' is a subgraph; control flow (If, Loop, Scan) is not supported");
        default:
            QUANTSIM_THROW(unsupported_error, n.describe(), ": attribute '", a.name(), "' has unsupported type ",
                           static_cast<int>(type));
    }
}

// ---- canonicalization (docs/ir.md section 1) -------------------------------------------------------------------------

class canonicalizer {
public:
    // `reserved`: every value name in the model file, so that new parameter names never collide with one.
    canonicalizer(graph& g, std::int64_t opset, std::unordered_set<std::string> reserved)
        : g_(g), opset_(opset), used_(std::move(reserved)) {}

    // Rewrites node `n` (not yet in the graph) into canonical form; may append helper nodes to `extra` (placed
    // before n) and record legacy softmax nodes.
    void run(node& n, std::vector<node>& before, std::vector<node>& after) {
        if (!n.domain.empty() && n.domain != "ai.onnx") return;
        n.domain.clear();
        const std::string& op = n.op_type;
        if (op == "Clip" && opset_ < 11) return clip(n);
        if ((op == "Squeeze" || op == "Unsqueeze") && opset_ < 13) return attr_to_input(n, "axes", 1, true);
        if (op == "Split") return split(n);
        if (is_reduce(op) && opset_ < (op == "ReduceSum" ? 13 : 18)) return attr_to_input(n, "axes", 1, true);
        if (op == "Slice" && opset_ < 10) return slice(n);
        if (op == "Pad" && opset_ < 11) return pad(n);
        if (op == "TopK" && opset_ < 10) return topk(n);
        if (op == "Upsample") return upsample(n);
        if (op == "Resize") return resize(n);
        if ((op == "Softmax" || op == "LogSoftmax" || op == "Hardmax")) return softmax(n);
        if (op == "Dropout") return dropout(n);
        if (op == "BatchNormalization") return batchnorm(n);
        (void)before;
        (void)after;
    }

    const std::vector<std::pair<std::string, std::int64_t>>& legacy_softmax() const { return legacy_softmax_; }

private:
    static bool is_reduce(const std::string& op) {
        static const std::set<std::string> r = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
                                                "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"};
        return r.count(op) != 0;
    }

    std::string add_param(const node& n, const std::string& input_name, tensor t) {
        std::string base = n.name + "." + input_name;
        std::string name = base;
        for (int k = 1; used_.count(name) || g_.params.count(name); ++k) name = base + "_" + std::to_string(k);
        used_.insert(name);
        g_.params.emplace(name, std::move(t));
        return name;
    }
    std::string int_param(const node& n, const std::string& input_name, const std::vector<std::int64_t>& v) {
        return add_param(n, input_name, tensor::from(v, {static_cast<std::int64_t>(v.size())}));
    }
    static void set_input(node& n, std::size_t i, std::string v) {
        if (n.inputs.size() <= i) n.inputs.resize(i + 1);
        n.inputs[i] = std::move(v);
    }
    static void trim(node& n) {
        while (!n.inputs.empty() && n.inputs.back().empty()) n.inputs.pop_back();
    }

    void attr_to_input(node& n, const char* attr, std::size_t index, bool optional) {
        if (!n.has_attr(attr)) {
            if (!optional) QUANTSIM_THROW(parse_error, n.describe(), ": required attribute '", attr, "' is missing");
            return;
        }
        if (n.has_input(index))
            QUANTSIM_THROW(parse_error, n.describe(), ": has both an '", attr, "' attribute and an input for it");
        const auto v = n.attr_ints(attr);
        n.attrs.erase(n.attrs.find(attr));
        set_input(n, index, int_param(n, attr, v));
    }

    void clip(node& n) {
        auto take = [&](const char* attr, std::size_t index) {
            if (!n.has_attr(attr)) return;
            const float v = n.attr_float(attr);
            n.attrs.erase(n.attrs.find(attr));
            set_input(n, index, add_param(n, attr, tensor::scalar(v)));
        };
        if (n.inputs.size() > 1) QUANTSIM_THROW(parse_error, n.describe(), ": Clip before opset 11 takes one input");
        take("min", 1);
        take("max", 2);
        trim(n);
    }

    void split(node& n) {
        if (opset_ < 13) attr_to_input(n, "split", 1, true);
        if (n.has_attr("num_outputs")) {
            const auto k = n.attr_int("num_outputs");
            if (k != static_cast<std::int64_t>(n.outputs.size()))
                QUANTSIM_THROW(parse_error, n.describe(), ": num_outputs = ", k, " but the node has ",
                               n.outputs.size(), " outputs");
            n.attrs.erase(n.attrs.find("num_outputs"));
        }
    }

    void slice(node& n) {
        if (n.inputs.size() > 1) QUANTSIM_THROW(parse_error, n.describe(), ": Slice before opset 10 takes one input");
        attr_to_input(n, "starts", 1, false);
        attr_to_input(n, "ends", 2, false);
        attr_to_input(n, "axes", 3, true);
        trim(n);
    }

    void pad(node& n) {
        if (n.inputs.size() > 1) QUANTSIM_THROW(parse_error, n.describe(), ": Pad before opset 11 takes one input");
        attr_to_input(n, "pads", 1, false);
        if (n.has_attr("value")) {
            const float v = n.attr_float("value");
            n.attrs.erase(n.attrs.find("value"));
            if (v != 0.0f) set_input(n, 2, add_param(n, "constant_value", tensor::scalar(v)));
        }
        trim(n);
    }

    void topk(node& n) {
        if (!n.has_attr("k")) QUANTSIM_THROW(parse_error, n.describe(), ": required attribute 'k' is missing");
        const auto k = n.attr_int("k");
        n.attrs.erase(n.attrs.find("k"));
        set_input(n, 1, int_param(n, "k", {k}));
    }

    // Upsample (opset 7 to 9) and Resize-10 share ONNX Runtime's "asymmetric + floor (ceil when shrinking)" rule.
    void legacy_resize(node& n, const std::string& scales_input) {
        std::string mode = n.attr_string("mode", "nearest");
        if (mode == "bilinear") mode = "linear";
        if (mode != "nearest" && mode != "linear")
            QUANTSIM_THROW(unsupported_error, n.describe(), ": mode '", mode, "' is not supported");
        std::string nearest_mode = "floor";
        if (auto it = g_.params.find(scales_input); it != g_.params.end() && it->second.type() == dtype::float32) {
            const auto s = it->second.span<float>();
            // ONNX Runtime rounds up when shrinking and down when growing; one attribute must cover all axes.
            const bool shrinks = std::any_of(s.begin(), s.end(), [](float v) { return v < 1.0f; });
            const bool grows = std::any_of(s.begin(), s.end(), [](float v) { return v > 1.0f; });
            if (shrinks && !grows) nearest_mode = "ceil";
        }
        n.op_type = "Resize";
        n.attrs.clear();
        n.attrs["mode"] = mode;
        n.attrs["coordinate_transformation_mode"] = std::string("asymmetric");
        n.attrs["nearest_mode"] = nearest_mode;
        n.inputs = {n.inputs.at(0), "", scales_input};
    }

    void upsample(node& n) {
        if (n.inputs.empty()) QUANTSIM_THROW(parse_error, n.describe(), ": has no input");
        std::string scales;
        if (n.has_attr("scales")) {
            const auto s = n.attr_floats("scales");
            scales = add_param(n, "scales", tensor::from(s, {static_cast<std::int64_t>(s.size())}));
        } else if (n.has_input(1)) {
            scales = n.inputs[1];
        } else {
            QUANTSIM_THROW(parse_error, n.describe(), ": has no scales (attribute or input)");
        }
        legacy_resize(n, scales);
    }

    void resize(node& n) {
        if (opset_ < 11) {
            if (!n.has_input(1)) QUANTSIM_THROW(parse_error, n.describe(), ": Resize-10 needs a scales input");
            return legacy_resize(n, n.inputs[1]);
        }
        if (!n.has_attr("mode")) n.attrs["mode"] = std::string("nearest");
        if (!n.has_attr("coordinate_transformation_mode"))
            n.attrs["coordinate_transformation_mode"] = std::string("half_pixel");
        if (!n.has_attr("nearest_mode")) n.attrs["nearest_mode"] = std::string("round_prefer_floor");
        const bool crop = n.attr_string("coordinate_transformation_mode") == "tf_crop_and_resize";
        auto empty_param = [&](std::size_t i) {
            if (!n.has_input(i)) return false;
            auto it = g_.params.find(n.inputs[i]);
            return it != g_.params.end() && it->second.numel() == 0;
        };
        if (n.has_input(1) && (!crop || empty_param(1))) n.inputs[1].clear();
        if (empty_param(2)) n.inputs[2].clear();
        if (empty_param(3)) n.inputs[3].clear();
        if (n.has_input(2) && n.has_input(3))
            QUANTSIM_THROW(parse_error, n.describe(), ": has both scales and sizes");
        trim(n);
    }

    void softmax(node& n) {
        if (opset_ >= 13) return;
        const std::int64_t axis = n.attr_int("axis", 1);
        n.attrs["axis"] = axis;
        legacy_softmax_.emplace_back(n.name, axis);
    }

    void dropout(node& n) {
        n.op_type = "Identity";
        n.attrs.clear();
        if (n.inputs.empty()) QUANTSIM_THROW(parse_error, n.describe(), ": has no input");
        n.inputs.resize(1);
        if (n.outputs.size() > 1) dropped_outputs_.emplace_back(n.name, std::vector<std::string>(n.outputs.begin() + 1, n.outputs.end()));
        n.outputs.resize(1);
    }

    void batchnorm(node& n) {
        if (n.has_attr("spatial") && n.attr_int("spatial") == 0)
            QUANTSIM_THROW(unsupported_error, n.describe(), ": spatial = 0 (per-activation statistics) is not supported");
        if (n.has_attr("training_mode") && n.attr_int("training_mode") != 0)
            QUANTSIM_THROW(unsupported_error, n.describe(), ": training_mode = 1 is not supported (inference only)");
        for (const char* a : {"spatial", "training_mode", "momentum", "is_test"})
            if (auto it = n.attrs.find(a); it != n.attrs.end()) n.attrs.erase(it);
        if (n.outputs.size() > 1) dropped_outputs_.emplace_back(n.name, std::vector<std::string>(n.outputs.begin() + 1, n.outputs.end()));
        n.outputs.resize(1);
    }

public:
    // Outputs removed from nodes (Dropout mask, BatchNormalization training statistics): must be unread.
    std::vector<std::pair<std::string, std::vector<std::string>>> dropped_outputs_;

private:
    graph& g_;
    std::int64_t opset_;
    std::unordered_set<std::string> used_;
    std::vector<std::pair<std::string, std::int64_t>> legacy_softmax_;
};

// Ops whose trailing outputs are optional: unused ones are dropped (docs/ir.md 1.1).
bool has_optional_outputs(const node& n) {
    static const std::set<std::string> ops = {"MaxPool", "LSTM", "GRU", "RNN", "LayerNormalization"};
    return n.domain.empty() && ops.count(n.op_type);
}

// Opset < 13 Softmax: keep `axis` when it is the last axis, else rewrite into the exact Flatten/Softmax/Reshape form.
void resolve_legacy_softmax(graph& g, const std::vector<std::pair<std::string, std::int64_t>>& legacy,
                            const op_registry* registry) {
    if (legacy.empty()) return;
    // Ranks from a lenient shape inference run on a copy (unknown ops and failures just leave ranks unknown).
    std::map<std::string, std::size_t> ranks;
    try {
        graph copy(g);
        shape_inference_options so;
        so.registry = registry;
        so.strict = false;
        so.tolerate_errors = true;
        run_shape_inference(copy, so);
        for (const auto& [k, v] : copy.value_infos)
            if (v.shape_known) ranks[k] = v.shape.size();
        for (const auto& v : copy.inputs)
            if (v.shape_known) ranks[v.name] = v.shape.size();
    } catch (const error&) {
        // Shape inference problems are reported by the real inference run; here they only cost the short form.
    }
    for (const auto& [node_name, axis] : legacy) {
        const auto idx = g.find_node(node_name);
        if (idx < 0) continue;
        node& n = g.nodes[static_cast<std::size_t>(idx)];
        const std::string x = n.inputs.empty() ? std::string() : n.inputs[0];
        std::optional<std::size_t> rank;
        if (auto it = ranks.find(x); it != ranks.end()) rank = it->second;
        if (auto p = g.params.find(x); p != g.params.end()) rank = static_cast<std::size_t>(p->second.rank());
        if (rank) {
            const auto r = static_cast<std::int64_t>(*rank);
            if (axis < -r || axis >= r)
                QUANTSIM_THROW(graph_error, n.describe(), ": axis ", axis, " is out of range for an input of rank ", r);
            const std::int64_t a = axis < 0 ? axis + r : axis;
            if (a == r - 1) {
                n.attrs["axis"] = std::int64_t{-1};
                continue;
            }
        }
        // Flatten(axis) -> Softmax(-1) -> Reshape(Shape(x)): the opset < 13 "coerce to 2-D" semantics exactly.
        const std::string op = n.op_type;
        const std::string out = n.outputs.at(0);
        const std::string base = n.name;
        node flat;
        flat.name = g.unique_name(base + "/flatten");
        flat.op_type = "Flatten";
        flat.inputs = {x};
        flat.outputs = {g.unique_name(base + "/flat")};
        flat.attrs["axis"] = axis;
        node shape;
        shape.name = g.unique_name(base + "/shape");
        shape.op_type = "Shape";
        shape.inputs = {x};
        shape.outputs = {g.unique_name(base + "/shape_out")};
        node sm;
        sm.name = base;
        sm.op_type = op;
        sm.inputs = {flat.outputs[0]};
        sm.outputs = {g.unique_name(base + "/2d")};
        sm.attrs["axis"] = std::int64_t{-1};
        node reshape;
        reshape.op_type = "Reshape";
        reshape.inputs = {sm.outputs[0], shape.outputs[0]};
        reshape.outputs = {out};
        const auto pos = static_cast<std::size_t>(idx);
        g.nodes.erase(g.nodes.begin() + idx);
        // Reshape's name: unique among the names that remain.
        reshape.name = g.unique_name(base + "/reshape");
        g.nodes.insert(g.nodes.begin() + static_cast<std::ptrdiff_t>(pos),
                       {std::move(flat), std::move(shape), std::move(sm), std::move(reshape)});
    }
}

// Frees a tensor's payload once converted, so peak memory is the parsed model plus the tensors converted so far
// rather than both in full (clear() would keep the string's capacity).
void release_payload(onnx::TensorProto& t) {
    std::string().swap(*t.mutable_raw_data());
    t.clear_float_data();
    t.clear_int32_data();
    t.clear_int64_data();
    t.clear_double_data();
}

// Every value whose size shape inference knows must be allocatable: a Pad, Tile, Expand or ConstantOfShape with
// huge constants from the file would otherwise load fine and fail at run time with no node named (or, with a
// product that overflows, inspect would print nonsense). Unknown (symbolic) dimensions count as 1, so this is the
// size at batch 1. Same limits as initializers: checked_numel (overflow, max_tensor_bytes()).
void check_inferred_sizes(const graph& g) {
    for (const node& n : g.nodes)
        for (const std::string& out : n.outputs) {
            if (out.empty()) continue;
            const value_info* vi = g.info(out);
            if (!vi || !vi->shape_known) continue;
            shape_t at_least = vi->shape;
            for (auto& d : at_least) d = d < 0 ? 1 : d;
            checked_numel(at_least, size_of(vi->type), n.describe() + ": output '" + out + "'");
        }
}

graph import_model(onnx::ModelProto& model, const import_context& ctx, const onnx_load_options& options) {
    graph g;
    // Opsets.
    std::optional<std::int64_t> opset;
    for (const auto& o : model.opset_import()) {
        if (o.domain().empty() || o.domain() == "ai.onnx") {
            if (opset) QUANTSIM_THROW(parse_error, "the default-domain opset is imported twice");
            opset = o.version();
        } else {
            g.domain_opsets[o.domain()] = o.version();
        }
    }
    if (!opset) QUANTSIM_THROW(parse_error, "the model imports no default-domain opset (opset_import is missing or empty)");
    if (*opset < detail::min_import_opset || *opset > detail::max_opset)
        QUANTSIM_THROW(unsupported_error, "opset ", *opset, " is not supported (quantsim reads opsets ",
                       detail::min_import_opset, " to ", detail::max_opset, ")");
    g.opset = *opset;
    if (!model.has_graph()) QUANTSIM_THROW(parse_error, "the model has no graph");
    auto& gp = *model.mutable_graph();
    g.name = gp.name().empty() ? "graph" : gp.name();
    if (gp.sparse_initializer_size() > 0) QUANTSIM_THROW(unsupported_error, "sparse initializers are not supported");

    // Parameters: initializers.
    for (int i = 0; i < gp.initializer_size(); ++i) {
        auto& t = *gp.mutable_initializer(i);
        if (t.name().empty()) QUANTSIM_THROW(parse_error, "initializer #", i, " has no name");
        if (g.params.count(t.name())) QUANTSIM_THROW(graph_error, "initializer '", t.name(), "' is defined twice");
        g.params.emplace(t.name(), tensor_from_proto(t, ctx, "initializer '" + t.name() + "'"));
        release_payload(t);
    }
    // Model inputs (those that are also initializers are parameters with a default value: parameters).
    std::unordered_set<std::string> input_names;
    for (const auto& v : gp.input()) {
        if (v.name().empty()) QUANTSIM_THROW(parse_error, "a graph input has no name");
        if (g.params.count(v.name())) continue;
        if (!input_names.insert(v.name()).second) QUANTSIM_THROW(graph_error, "graph input '", v.name(), "' is listed twice");
        g.inputs.push_back(value_info_from_proto(v, "graph input"));
    }

    // Nodes.
    std::unordered_set<std::string> all_names;
    for (const auto& np : gp.node()) {
        all_names.insert(np.input().begin(), np.input().end());
        all_names.insert(np.output().begin(), np.output().end());
        all_names.insert(np.name());
    }
    for (const auto& v : gp.input()) all_names.insert(v.name());
    for (const auto& v : gp.output()) all_names.insert(v.name());
    for (const auto& [k, t] : g.params) all_names.insert(k);
    canonicalizer canon(g, *opset, std::move(all_names));
    std::unordered_set<std::string> node_names;
    std::vector<node> nodes;
    nodes.reserve(static_cast<std::size_t>(gp.node_size()));
    for (int i = 0; i < gp.node_size(); ++i) {
        auto& np = *gp.mutable_node(i);
        node n;
        n.op_type = np.op_type();
        n.domain = np.domain() == "ai.onnx" ? std::string() : np.domain();
        n.name = np.name();
        if (n.op_type.empty()) QUANTSIM_THROW(parse_error, "node #", i, " ('", np.name(), "') has no op type");
        if (n.name.empty() || node_names.count(n.name)) {
            const std::string base = n.name.empty() ? n.op_type + "_" + std::to_string(i) : n.name;
            std::string name = base;
            for (int k = 1; node_names.count(name); ++k) name = base + "_" + std::to_string(k);
            n.name = name;
        }
        node_names.insert(n.name);
        n.inputs.assign(np.input().begin(), np.input().end());
        n.outputs.assign(np.output().begin(), np.output().end());
        while (!n.inputs.empty() && n.inputs.back().empty()) n.inputs.pop_back();
        if (n.outputs.empty()) QUANTSIM_THROW(parse_error, n.describe(), ": has no outputs");
        for (const auto& a : np.attribute()) {
            if (a.name().empty()) QUANTSIM_THROW(parse_error, n.describe(), ": an attribute has no name");
            if (n.attrs.count(a.name())) QUANTSIM_THROW(parse_error, n.describe(), ": attribute '", a.name(), "' is given twice");
            n.attrs.emplace(a.name(), attr_from_proto(a, n, ctx));
        }
        for (auto& a : *np.mutable_attribute())
            if (a.has_t()) release_payload(*a.mutable_t());
        if (!n.domain.empty() && !g.domain_opsets.count(n.domain))
            QUANTSIM_THROW(parse_error, n.describe(), ": domain '", n.domain, "' is not in the model's opset_import");

        if (n.domain.empty() && n.op_type == "Constant") {
            if (n.outputs.size() != 1 || n.outputs[0].empty())
                QUANTSIM_THROW(parse_error, n.describe(), ": a Constant has exactly one output");
            if (!n.inputs.empty()) QUANTSIM_THROW(parse_error, n.describe(), ": a Constant has no inputs");
            if (n.attrs.size() != 1)
                QUANTSIM_THROW(parse_error, n.describe(), ": a Constant needs exactly one value attribute, it has ", n.attrs.size());
            const auto& [key, val] = *n.attrs.begin();
            tensor t;
            if (key == "value") t = n.attr_tensor("value");
            else if (key == "value_float") t = tensor::scalar(n.attr_float("value_float"));
            else if (key == "value_floats") {
                auto v = n.attr_floats("value_floats");
                t = tensor::from(v, {static_cast<std::int64_t>(v.size())});
            } else if (key == "value_int") {
                std::vector<std::int64_t> v{n.attr_int("value_int")};
                t = tensor::from(v, {});
            } else if (key == "value_ints") {
                auto v = n.attr_ints("value_ints");
                t = tensor::from(v, {static_cast<std::int64_t>(v.size())});
            } else {
                QUANTSIM_THROW(unsupported_error, n.describe(), ": Constant attribute '", key, "' is not supported");
            }
            (void)val;
            if (g.params.count(n.outputs[0]) || input_names.count(n.outputs[0]))
                QUANTSIM_THROW(graph_error, n.describe(), ": output '", n.outputs[0], "' is already defined");
            g.params.emplace(n.outputs[0], std::move(t));
            continue;
        }
        std::vector<node> before, after;
        canon.run(n, before, after);
        nodes.push_back(std::move(n));
    }
    g.nodes = std::move(nodes);

    // Graph outputs.
    for (const auto& v : gp.output()) {
        if (v.name().empty()) QUANTSIM_THROW(parse_error, "a graph output has no name");
        g.outputs.push_back(value_info_from_proto(v, "graph output"));
    }
    if (g.outputs.empty()) QUANTSIM_THROW(parse_error, "the graph has no outputs");
    // Value infos of intermediates: hints only, so entries quantsim cannot represent are skipped.
    for (const auto& v : gp.value_info()) {
        try {
            auto vi = value_info_from_proto(v, "value_info");
            if (!vi.name.empty() && vi.shape_known) g.value_infos[vi.name] = std::move(vi);
        } catch (const unsupported_error&) {
        } catch (const parse_error&) {
        }
    }

    // Outputs the canonical form dropped must be unread.
    {
        std::unordered_set<std::string> read;
        for (const auto& n : g.nodes)
            for (const auto& i : n.inputs) read.insert(i);
        for (const auto& o : g.outputs) read.insert(o.name);
        for (const auto& [node_name, outs] : canon.dropped_outputs_)
            for (const auto& o : outs)
                if (!o.empty() && read.count(o))
                    QUANTSIM_THROW(unsupported_error, "node '", node_name, "': output '", o,
                                   "' (training-only: Dropout mask or BatchNormalization statistics) is used");
        for (auto& n : g.nodes) {
            if (!has_optional_outputs(n)) continue;
            for (std::size_t k = 1; k < n.outputs.size(); ++k)
                if (!read.count(n.outputs[k])) n.outputs[k].clear();
            while (n.outputs.size() > 1 && n.outputs.back().empty()) n.outputs.pop_back();
        }
    }

    // Structure: order, definitions, cycles. Files are usually sorted; topological_sort keeps that order.
    g.topological_sort();
    validate_options structural;
    structural.check_ops = false;
    structural.check_shapes = false;
    g.validate(structural);

    resolve_legacy_softmax(g, canon.legacy_softmax(), options.registry);
    g.prune_unused_params();
    if (options.check_ops) {
        validate_options vo;
        vo.registry = options.registry;
        vo.check_ops = true;
        vo.check_shapes = false;
        g.validate(vo);
    }
    if (options.infer_shapes) {
        shape_inference_options so;
        so.registry = options.registry;
        so.strict = options.check_ops;
        g.infer_shapes(so);
        check_inferred_sizes(g);
    }
    return g;
}

// Parses a ModelProto from any protobuf input stream with quantsim's limits.
graph parse_and_import(google::protobuf::io::ZeroCopyInputStream& input, std::size_t size, const import_context& ctx,
                       const onnx_load_options& options) {
    if (size > static_cast<std::size_t>(INT_MAX) || size > options.max_model_bytes)
        QUANTSIM_THROW(resource_error, "the model is ", size, " bytes, above the ",
                       std::min<std::size_t>(INT_MAX, options.max_model_bytes),
                       "-byte limit of a single protobuf message; store the weights as external data");
    if (size == 0) QUANTSIM_THROW(parse_error, "the file is empty");
    // The parsed message takes at least as much memory as its serialized size.
    check_fits_in_memory(size, "the model");
    onnx::ModelProto model;
    {
        google::protobuf::io::CodedInputStream cis(&input);
        cis.SetTotalBytesLimit(INT_MAX);
        cis.SetRecursionLimit(64);
        if (!model.ParseFromCodedStream(&cis) || !cis.ConsumedEntireMessage())
            QUANTSIM_THROW(parse_error, "not a valid ONNX model (protobuf parsing failed: truncated or corrupt file)");
    }
    if (!model.has_graph() && model.opset_import_size() == 0)
        QUANTSIM_THROW(parse_error, "not an ONNX model (no graph and no opset_import)");
    return import_model(model, ctx, options);
}

}  // namespace

graph load_onnx(const fs::path& path, const onnx_load_options& options) {
    const std::string what = path.string();
    try {
        std::error_code ec;
        if (fs::is_directory(path, ec)) QUANTSIM_THROW(io_error, "cannot read: it is a directory");
        std::ifstream is(path, std::ios::binary);
        if (!is) QUANTSIM_THROW(io_error, "cannot open: ", fs::exists(path, ec) ? "permission denied or unreadable" : "no such file");
        const auto size = fs::file_size(path, ec);
        if (ec) QUANTSIM_THROW(io_error, "cannot determine the file size");
        import_context ctx;
        ctx.external_allowed = true;
        ctx.external_dir = options.external_data_dir.empty()
                               ? (path.parent_path().empty() ? fs::path(".") : path.parent_path())
                               : options.external_data_dir;
        // Streamed: the file's bytes are never held in memory next to the parsed model.
        google::protobuf::io::IstreamInputStream input(&is);
        return parse_and_import(input, static_cast<std::size_t>(size), ctx, options);
    } catch (...) {
        detail::rethrow_with_prefix(what + ": ");
    }
}

graph load_onnx_from_memory(std::span<const std::byte> bytes, const onnx_load_options& options, const std::string& what) {
    try {
        import_context ctx;
        ctx.external_allowed = !options.external_data_dir.empty();
        ctx.external_dir = options.external_data_dir;
        if (bytes.size() > static_cast<std::size_t>(INT_MAX))
            QUANTSIM_THROW(resource_error, "the model is ", bytes.size(), " bytes, above protobuf's 2 GiB message limit");
        google::protobuf::io::ArrayInputStream input(bytes.data(), static_cast<int>(bytes.size()));
        return parse_and_import(input, bytes.size(), ctx, options);
    } catch (...) {
        detail::rethrow_with_prefix(what + ": ");
    }
}

graph load_onnx_from_memory(std::string_view bytes, const onnx_load_options& options, const std::string& what) {
    return load_onnx_from_memory(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()),
                                 options, what);
}

}  // namespace quantsim
