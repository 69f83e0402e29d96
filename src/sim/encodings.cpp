// AIMET encodings JSON, versions 0.6.1, 1.0.0 and 2.0.0.
#include <quantsim/sim/encodings.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <quantsim/core/error.hpp>
#include <quantsim/io/file.hpp>

namespace quantsim {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

// ---- writing ----------------------------------------------------------------------------------------------------

void check_writable(const tensor_encoding& t) {
    if (t.name.empty()) QUANTSIM_THROW(invalid_argument, "encodings: a tensor encoding has an empty name");
    if (t.float_bitwidth) return;
    const auto& p = t.params;
    if (p.scale.empty() || p.scale.size() != p.zero_point.size())
        QUANTSIM_THROW(invalid_argument, "encodings: tensor '", t.name, "' has ", p.scale.size(), " scales and ",
                       p.zero_point.size(), " zero points");
    for (std::size_t i = 0; i < p.size(); ++i) p.at(i).validate(("encodings: tensor '" + t.name + "'").c_str());
}

json entry_0_6_1(const encoding& e) {
    const aimet_encoding a = e.to_aimet();
    json j;
    j["bitwidth"] = a.bitwidth;
    j["dtype"] = "int";
    j["is_symmetric"] = a.is_symmetric ? "True" : "False";
    j["max"] = a.max;
    j["min"] = a.min;
    j["offset"] = a.offset;
    j["scale"] = a.scale;
    return j;
}

json section_0_6_1(const std::vector<tensor_encoding>& list) {
    json out = json::object();
    for (const auto& t : list) {
        check_writable(t);
        json arr = json::array();
        if (t.float_bitwidth) {
            arr.push_back({{"bitwidth", *t.float_bitwidth}, {"dtype", "float"}});
        } else {
            if (t.params.gran.kind == granularity_kind::per_block)
                QUANTSIM_THROW(unsupported_error, "encodings 0.6.1 cannot express the per-block encoding of '", t.name,
                               "': write version 1.0.0 or 2.0.0");
            for (std::size_t i = 0; i < t.params.size(); ++i) arr.push_back(entry_0_6_1(t.params.at(i)));
        }
        out[t.name] = arr;
    }
    return out;
}

json section_1_0_0(const std::vector<tensor_encoding>& list) {
    json out = json::array();
    for (const auto& t : list) {
        check_writable(t);
        json j;
        j["name"] = t.name;
        if (t.float_bitwidth) {
            j["dtype"] = "FLOAT";
            j["enc_type"] = "PER_TENSOR";
            j["bw"] = *t.float_bitwidth;
            out.push_back(j);
            continue;
        }
        const auto& p = t.params;
        j["dtype"] = "INT";
        j["bw"] = p.bitwidth;
        j["is_sym"] = p.scheme != qscheme::asymmetric;
        switch (p.gran.kind) {
            case granularity_kind::per_tensor: j["enc_type"] = "PER_TENSOR"; break;
            case granularity_kind::per_channel: j["enc_type"] = "PER_CHANNEL"; break;
            case granularity_kind::per_block:
                j["enc_type"] = "PER_BLOCK";
                j["block_size"] = p.gran.block_size;
                break;
        }
        json scales = json::array(), offsets = json::array();
        for (std::size_t i = 0; i < p.size(); ++i) {
            const aimet_encoding a = p.at(i).to_aimet();
            scales.push_back(a.scale);
            offsets.push_back(a.offset);
        }
        j["scale"] = scales;
        j["offset"] = offsets;
        out.push_back(j);
    }
    return out;
}

std::string onnx_dtype_name(const tensor_encoding& t) {
    const int bw = t.params.bitwidth;
    if (bw != 2 && bw != 4 && bw != 8 && bw != 16 && bw != 32)
        QUANTSIM_THROW(unsupported_error, "encodings 2.0.0 has no ", bw, "-bit integer type for '", t.name,
                       "': write version 1.0.0");
    return (t.params.is_signed ? "int" : "uint") + std::to_string(bw);
}

ojson encodings_2_0_0(const std::vector<tensor_encoding>& list, ojson& out) {
    for (const auto& t : list) {
        check_writable(t);
        if (t.float_bitwidth) continue;  // AIMET writes no QuantizeLinear-style entry for float quantizers
        const auto& p = t.params;
        ojson j;
        j["name"] = t.name;
        j["output_dtype"] = onnx_dtype_name(t);
        bool any_zp = false;
        for (auto z : p.zero_point) any_zp |= z != 0;
        if (p.gran.kind == granularity_kind::per_tensor) {
            j["y_scale"] = static_cast<double>(p.scale[0]);
            if (any_zp) j["y_zero_point"] = p.zero_point[0];
        } else if (p.gran.kind == granularity_kind::per_channel) {
            ojson s = ojson::array(), z = ojson::array();
            for (std::size_t i = 0; i < p.size(); ++i) {
                s.push_back(static_cast<double>(p.scale[i]));
                z.push_back(p.zero_point[i]);
            }
            j["y_scale"] = s;
            if (any_zp) j["y_zero_point"] = z;
            j["axis"] = p.gran.axis;
        } else {
            // [channels][blocks] nesting, axis = the block axis (ONNX blocked QuantizeLinear).
            const std::size_t n = p.size();
            if (p.gran.block_size <= 0)
                QUANTSIM_THROW(invalid_argument, "encodings: per-block tensor '", t.name, "' has no block size");
            const auto blocks = static_cast<std::size_t>(t.blocks_per_channel);
            if (blocks == 0 || n % blocks != 0)
                QUANTSIM_THROW(invalid_argument, "encodings: per-block tensor '", t.name, "' has ", n,
                               " scales, not a multiple of its ", blocks, " blocks per channel");
            ojson s = ojson::array(), z = ojson::array();
            for (std::size_t c = 0; c < n / blocks; ++c) {
                ojson sr = ojson::array(), zr = ojson::array();
                for (std::size_t b = 0; b < blocks; ++b) {
                    sr.push_back(static_cast<double>(p.scale[c * blocks + b]));
                    zr.push_back(p.zero_point[c * blocks + b]);
                }
                s.push_back(sr);
                z.push_back(zr);
            }
            j["y_scale"] = s;
            if (any_zp) j["y_zero_point"] = z;
            j["axis"] = p.gran.block_axis;
            j["block_size"] = p.gran.block_size;
        }
        out.push_back(j);
    }
    return out;
}

json args_json(const quantizer_args& a) {
    return {{"activation_bitwidth", a.activation_bitwidth},
            {"dtype", a.dtype},
            {"is_symmetric", a.is_symmetric},
            {"param_bitwidth", a.param_bitwidth},
            {"per_channel_quantization", a.per_channel_quantization},
            {"quant_scheme", a.quant_scheme}};
}

// ---- reading ----------------------------------------------------------------------------------------------------

struct reader {
    std::string source;

    [[noreturn]] void fail(const std::string& where, const std::string& what) const {
        QUANTSIM_THROW(config_error, source, ": ", where, ": ", what);
    }
    const json& get(const json& obj, const char* key, const std::string& where) const {
        auto it = obj.find(key);
        if (it == obj.end()) fail(where, std::string("missing '") + key + "'");
        return *it;
    }
    double number(const json& j, const std::string& where) const {
        if (!j.is_number()) fail(where, std::string("expected a number, got ") + j.type_name());
        const double v = j.get<double>();
        if (!std::isfinite(v)) fail(where, "expected a finite number");
        return v;
    }
    std::int64_t integer(const json& j, const std::string& where) const {
        // AIMET writers sometimes emit offsets as floats (-128.0): accept integral values.
        const double v = number(j, where);
        if (v != std::floor(v) || std::fabs(v) > 9.0e15) fail(where, "expected an integer");
        return static_cast<std::int64_t>(v);
    }
    bool boolean(const json& j, const std::string& where) const {
        if (j.is_boolean()) return j.get<bool>();
        if (j.is_string()) {
            const auto s = j.get<std::string>();
            if (s == "True" || s == "true") return true;
            if (s == "False" || s == "false") return false;
        }
        fail(where, "expected a boolean (true/false or \"True\"/\"False\")");
    }
    std::string string(const json& j, const std::string& where) const {
        if (!j.is_string()) fail(where, std::string("expected a string, got ") + j.type_name());
        return j.get<std::string>();
    }
    int bitwidth(const json& j, const std::string& where, bool allow_float) const {
        const auto v = integer(j, where);
        if (allow_float && (v == 8 || v == 16 || v == 32)) return static_cast<int>(v);
        if (!((v >= min_bitwidth && v <= max_bitwidth) || v == bias_bitwidth))
            fail(where, "bit width " + std::to_string(v) + " is outside 2..16 and not 32");
        return static_cast<int>(v);
    }
    void only_keys(const json& j, const std::string& where, std::initializer_list<std::string_view> allowed) const {
        for (auto it = j.begin(); it != j.end(); ++it) {
            bool ok = false;
            for (auto a : allowed) ok |= it.key() == a;
            if (!ok) fail(where + "." + it.key(), "unknown key");
        }
    }
    encoding from_aimet(double scale, std::int64_t offset, int bw, bool sym, const std::string& where) const {
        if (!(scale > 0)) fail(where, "scale must be positive");
        try {
            return encoding::from_aimet(scale, offset, bw, sym);
        } catch (const error& e) {
            fail(where, e.what());
        }
    }
    static std::string at(const std::string& section, const std::string& name) {
        return section + "[\"" + name + "\"]";
    }
};

void check_unique(const reader& rd, const std::vector<tensor_encoding>& list, const std::string& section) {
    std::set<std::string> seen;
    for (const auto& t : list)
        if (!seen.insert(t.name).second) rd.fail(reader::at(section, t.name), "tensor named twice");
}

tensor_encoding read_entry_0_6_1(const reader& rd, const std::string& name, const json& arr, const std::string& where) {
    if (!arr.is_array() || arr.empty()) rd.fail(where, "expected a non-empty list of encodings");
    tensor_encoding t;
    t.name = name;
    std::vector<encoding> groups;
    for (std::size_t i = 0; i < arr.size(); ++i) {
        const std::string w = where + "[" + std::to_string(i) + "]";
        const json& e = arr[i];
        if (!e.is_object()) rd.fail(w, "expected an object");
        rd.only_keys(e, w, {"bitwidth", "dtype", "is_symmetric", "max", "min", "offset", "scale"});
        const std::string dt = e.contains("dtype") ? rd.string(e["dtype"], w + ".dtype") : "int";
        if (dt == "float") {
            if (arr.size() != 1) rd.fail(w, "a float encoding must be the only entry");
            t.float_bitwidth = rd.bitwidth(rd.get(e, "bitwidth", w), w + ".bitwidth", true);
            return t;
        }
        if (dt != "int") rd.fail(w + ".dtype", "expected \"int\" or \"float\"");
        const int bw = rd.bitwidth(rd.get(e, "bitwidth", w), w + ".bitwidth", false);
        const bool sym = e.contains("is_symmetric") && rd.boolean(e["is_symmetric"], w + ".is_symmetric");
        double scale;
        std::int64_t offset;
        if (e.contains("scale") && e.contains("offset")) {
            scale = rd.number(e["scale"], w + ".scale");
            offset = rd.integer(e["offset"], w + ".offset");
        } else {
            // Only min/max: derive as AIMET's generateScaleOffset does.
            const double mn = rd.number(rd.get(e, "min", w), w + ".min");
            const double mx = rd.number(rd.get(e, "max", w), w + ".max");
            if (!(mx > mn)) rd.fail(w, "max must be above min");
            scale = (mx - mn) / static_cast<double>((std::int64_t{1} << bw) - 1);
            // min and max far apart only in their last bits give an offset beyond int64 (converting it would be
            // undefined behaviour); any offset beyond the grid is rejected by from_aimet below anyway.
            const double o = std::round(mn / scale);
            if (!(std::fabs(o) <= 0x1p40)) {
                std::ostringstream m;
                m << "min " << mn << " and max " << mx << " give offset " << o << ", outside the " << bw << "-bit grid";
                rd.fail(w, m.str());
            }
            offset = static_cast<std::int64_t>(o);
        }
        groups.push_back(rd.from_aimet(scale, offset, bw, sym, w));
    }
    t.params = quant_params::from(groups, arr.size() > 1 ? granularity::per_channel(0) : granularity::per_tensor());
    t.axis_known = arr.size() == 1;
    return t;
}

std::vector<tensor_encoding> read_section_0_6_1(const reader& rd, const json& sec, const std::string& section) {
    if (!sec.is_object()) rd.fail(section, "expected an object keyed by tensor name");
    std::vector<tensor_encoding> out;
    for (auto it = sec.begin(); it != sec.end(); ++it)
        out.push_back(read_entry_0_6_1(rd, it.key(), it.value(), reader::at(section, it.key())));
    return out;
}

std::vector<tensor_encoding> read_section_1_0_0(const reader& rd, const json& sec, const std::string& section) {
    if (!sec.is_array()) rd.fail(section, "expected a list of encodings");
    std::vector<tensor_encoding> out;
    for (std::size_t i = 0; i < sec.size(); ++i) {
        std::string w = section + "[" + std::to_string(i) + "]";
        const json& e = sec[i];
        if (!e.is_object()) rd.fail(w, "expected an object");
        tensor_encoding t;
        t.name = rd.string(rd.get(e, "name", w), w + ".name");
        if (t.name.empty()) rd.fail(w + ".name", "empty tensor name");
        w = reader::at(section, t.name);
        rd.only_keys(e, w,
                     {"name", "enc_type", "dtype", "bw", "is_sym", "scale", "offset", "block_size", "compressed_bw",
                      "per_block_int_scale"});
        const std::string dt = rd.string(rd.get(e, "dtype", w), w + ".dtype");
        if (dt == "FLOAT") {
            t.float_bitwidth = rd.bitwidth(rd.get(e, "bw", w), w + ".bw", true);
            out.push_back(std::move(t));
            continue;
        }
        if (dt != "INT") rd.fail(w + ".dtype", "expected \"INT\" or \"FLOAT\"");
        const std::string kind = rd.string(rd.get(e, "enc_type", w), w + ".enc_type");
        int bw = rd.bitwidth(rd.get(e, "bw", w), w + ".bw", false);
        const bool sym = e.contains("is_sym") && rd.boolean(e["is_sym"], w + ".is_sym");
        const json& sc = rd.get(e, "scale", w);
        const json& of = rd.get(e, "offset", w);
        if (!sc.is_array() || sc.empty()) rd.fail(w + ".scale", "expected a non-empty list");
        if (!of.is_array() || of.size() != sc.size())
            rd.fail(w + ".offset", "expected a list as long as scale (" + std::to_string(sc.size()) + ")");
        std::vector<encoding> groups;
        std::int64_t block_size = 0;
        if (kind == "LPBQ") {
            // Low-power blockwise: effective block scale = per_block_int_scale * per-channel scale, grid of
            // compressed_bw bits. Read as an ordinary per-block encoding.
            const int cbw = rd.bitwidth(rd.get(e, "compressed_bw", w), w + ".compressed_bw", false);
            const json& ints = rd.get(e, "per_block_int_scale", w);
            block_size = rd.integer(rd.get(e, "block_size", w), w + ".block_size");
            if (block_size <= 0) rd.fail(w + ".block_size", "must be positive");
            if (!ints.is_array() || ints.empty() || ints.size() % sc.size() != 0)
                rd.fail(w + ".per_block_int_scale", "expected a list whose length is a multiple of the channels");
            const std::size_t blocks = ints.size() / sc.size();
            for (std::size_t c = 0; c < sc.size(); ++c) {
                const double s = rd.number(sc[c], w + ".scale[" + std::to_string(c) + "]");
                for (std::size_t b = 0; b < blocks; ++b) {
                    const std::string wb = w + ".per_block_int_scale[" + std::to_string(c * blocks + b) + "]";
                    const auto m = rd.integer(ints[c * blocks + b], wb);
                    if (m <= 0) rd.fail(wb, "must be positive");
                    groups.push_back(rd.from_aimet(s * static_cast<double>(m), -(std::int64_t{1} << (cbw - 1)), cbw,
                                                   true, wb));
                }
            }
            t.params = quant_params::from(groups, granularity::per_block(0, 1, block_size));
            t.blocks_per_channel = static_cast<std::int64_t>(blocks);
            t.axis_known = false;
            out.push_back(std::move(t));
            continue;
        }
        for (std::size_t k = 0; k < sc.size(); ++k) {
            const std::string wk = w + "[" + std::to_string(k) + "]";
            groups.push_back(rd.from_aimet(rd.number(sc[k], w + ".scale[" + std::to_string(k) + "]"),
                                           rd.integer(of[k], w + ".offset[" + std::to_string(k) + "]"), bw, sym, wk));
        }
        if (kind == "PER_TENSOR") {
            if (groups.size() != 1) rd.fail(w + ".scale", "PER_TENSOR needs exactly one scale");
            t.params = quant_params::per_tensor(groups[0]);
        } else if (kind == "PER_CHANNEL") {
            t.params = quant_params::from(groups, granularity::per_channel(0));
            t.axis_known = false;
        } else if (kind == "PER_BLOCK") {
            block_size = rd.integer(rd.get(e, "block_size", w), w + ".block_size");
            if (block_size <= 0) rd.fail(w + ".block_size", "must be positive");
            t.params = quant_params::from(groups, granularity::per_block(0, 1, block_size));
            t.axis_known = false;
        } else {
            rd.fail(w + ".enc_type", "unsupported enc_type '" + kind + "' (PER_TENSOR, PER_CHANNEL, PER_BLOCK, LPBQ)");
        }
        out.push_back(std::move(t));
    }
    return out;
}

void parse_onnx_dtype(const reader& rd, const std::string& name, const std::string& w, int& bw, bool& is_signed) {
    std::string n = name;
    is_signed = true;
    if (n.rfind("uint", 0) == 0) {
        is_signed = false;
        n = n.substr(4);
    } else if (n.rfind("int", 0) == 0) {
        n = n.substr(3);
    } else {
        rd.fail(w, "unsupported output_dtype '" + name + "' (int2..int32, uint2..uint16)");
    }
    if (n != "2" && n != "4" && n != "8" && n != "16" && n != "32")
        rd.fail(w, "unsupported output_dtype '" + name + "'");
    bw = std::stoi(n);
}

std::vector<tensor_encoding> read_2_0_0(const reader& rd, const json& list) {
    if (!list.is_array()) rd.fail("encodings", "expected a list");
    std::vector<tensor_encoding> out;
    for (std::size_t i = 0; i < list.size(); ++i) {
        std::string w = "encodings[" + std::to_string(i) + "]";
        const json& e = list[i];
        if (!e.is_object()) rd.fail(w, "expected an object");
        tensor_encoding t;
        t.name = rd.string(rd.get(e, "name", w), w + ".name");
        if (t.name.empty()) rd.fail(w + ".name", "empty tensor name");
        w = reader::at("encodings", t.name);
        rd.only_keys(e, w, {"name", "output_dtype", "y_scale", "y_zero_point", "axis", "block_size"});
        int bw = 8;
        bool is_signed = true;
        parse_onnx_dtype(rd, rd.string(rd.get(e, "output_dtype", w), w + ".output_dtype"), w + ".output_dtype", bw,
                         is_signed);
        const json& ys = rd.get(e, "y_scale", w);
        const json* yz = e.contains("y_zero_point") ? &e["y_zero_point"] : nullptr;
        std::vector<double> scales;
        std::vector<std::int64_t> zps;
        std::size_t blocks = 0;
        auto read_flat = [&](const json& arr, const std::string& where, auto conv, auto& dst) {
            if (!arr.is_array() || arr.empty()) rd.fail(where, "expected a non-empty list");
            for (std::size_t k = 0; k < arr.size(); ++k) dst.push_back(conv(arr[k], where + "[" + std::to_string(k) + "]"));
        };
        auto num = [&](const json& v, const std::string& where) { return rd.number(v, where); };
        auto intg = [&](const json& v, const std::string& where) { return rd.integer(v, where); };
        granularity g;
        if (ys.is_number()) {
            scales.push_back(rd.number(ys, w + ".y_scale"));
            if (yz) zps.push_back(rd.integer(*yz, w + ".y_zero_point"));
        } else if (ys.is_array() && !ys.empty() && ys[0].is_array()) {
            if (!e.contains("block_size")) rd.fail(w, "nested y_scale needs block_size");
            for (std::size_t c = 0; c < ys.size(); ++c) {
                const std::string wc = w + ".y_scale[" + std::to_string(c) + "]";
                std::vector<double> row;
                read_flat(ys[c], wc, num, row);
                if (c == 0) blocks = row.size();
                if (row.size() != blocks) rd.fail(wc, "rows of y_scale differ in length");
                scales.insert(scales.end(), row.begin(), row.end());
                if (yz) {
                    if (!yz->is_array() || yz->size() != ys.size())
                        rd.fail(w + ".y_zero_point", "must nest like y_scale");
                    std::vector<std::int64_t> zr;
                    read_flat((*yz)[c], w + ".y_zero_point[" + std::to_string(c) + "]", intg, zr);
                    if (zr.size() != blocks) rd.fail(w + ".y_zero_point", "must nest like y_scale");
                    zps.insert(zps.end(), zr.begin(), zr.end());
                }
            }
            const auto block_axis = rd.integer(rd.get(e, "axis", w), w + ".axis");
            const auto block_size = rd.integer(e["block_size"], w + ".block_size");
            if (block_size <= 0) rd.fail(w + ".block_size", "must be positive");
            if (block_axis < 0 || block_axis > 7) rd.fail(w + ".axis", "axis out of range");
            g = granularity::per_block(block_axis == 0 ? 1 : 0, static_cast<int>(block_axis), block_size);
            t.blocks_per_channel = static_cast<std::int64_t>(blocks);
        } else {
            read_flat(ys, w + ".y_scale", num, scales);
            if (yz) read_flat(*yz, w + ".y_zero_point", intg, zps);
            if (scales.size() > 1 || e.contains("axis")) {
                const auto axis = rd.integer(rd.get(e, "axis", w), w + ".axis");
                if (axis < 0 || axis > 7) rd.fail(w + ".axis", "axis out of range");
                g = granularity::per_channel(static_cast<int>(axis));
            }
        }
        if (!zps.empty() && zps.size() != scales.size())
            rd.fail(w + ".y_zero_point", "must have as many entries as y_scale");
        bool all_zero = true;
        for (auto z : zps) all_zero &= z == 0;
        std::vector<encoding> groups;
        for (std::size_t k = 0; k < scales.size(); ++k) {
            encoding en;
            en.scale = static_cast<float>(scales[k]);
            // Checked before the narrowing: a zero point of 2^32 + 3 must not become 3.
            if (!zps.empty() && (zps[k] < std::numeric_limits<std::int32_t>::min() ||
                                 zps[k] > std::numeric_limits<std::int32_t>::max()))
                rd.fail(w + ".y_zero_point[" + std::to_string(k) + "]",
                        "zero point " + std::to_string(zps[k]) + " does not fit in 32 bits");
            en.zero_point = zps.empty() ? 0 : static_cast<std::int32_t>(zps[k]);
            en.bitwidth = bw;
            en.is_signed = is_signed;
            en.scheme = all_zero ? (is_signed ? qscheme::symmetric : qscheme::symmetric_unsigned) : qscheme::asymmetric;
            try {
                en.validate();
            } catch (const error& err) {
                rd.fail(w + "[" + std::to_string(k) + "]", err.what());
            }
            groups.push_back(en);
        }
        t.params = quant_params::from(groups, g);
        out.push_back(std::move(t));
    }
    return out;
}

quantizer_args read_args(const reader& rd, const json& j) {
    if (!j.is_object()) rd.fail("quantizer_args", "expected an object");
    quantizer_args a;
    // quantizer_args is informational: tolerate keys AIMET versions added, check the types of those we use.
    // Range-checked like the entries' bit widths (a plain cast would turn 2^32 + 8 into 8).
    if (j.contains("activation_bitwidth"))
        a.activation_bitwidth = rd.bitwidth(j["activation_bitwidth"], "quantizer_args.activation_bitwidth", true);
    if (j.contains("param_bitwidth"))
        a.param_bitwidth = rd.bitwidth(j["param_bitwidth"], "quantizer_args.param_bitwidth", true);
    if (j.contains("is_symmetric")) a.is_symmetric = rd.boolean(j["is_symmetric"], "quantizer_args.is_symmetric");
    if (j.contains("per_channel_quantization"))
        a.per_channel_quantization = rd.boolean(j["per_channel_quantization"], "quantizer_args.per_channel_quantization");
    if (j.contains("quant_scheme")) a.quant_scheme = rd.string(j["quant_scheme"], "quantizer_args.quant_scheme");
    if (j.contains("dtype")) a.dtype = rd.string(j["dtype"], "quantizer_args.dtype");
    return a;
}

}  // namespace

std::string_view to_string(encodings_version v) noexcept {
    switch (v) {
        case encodings_version::v0_6_1: return "0.6.1";
        case encodings_version::v1_0_0: return "1.0.0";
        case encodings_version::v2_0_0: return "2.0.0";
    }
    return "?";
}

encodings_version parse_encodings_version(std::string_view text) {
    if (text == "0.6.1") return encodings_version::v0_6_1;
    if (text == "1.0.0") return encodings_version::v1_0_0;
    if (text == "2.0.0") return encodings_version::v2_0_0;
    QUANTSIM_THROW(invalid_argument, "unknown encodings version '", text, "' (0.6.1, 1.0.0 or 2.0.0)");
}

const tensor_encoding* encodings_file::find(std::string_view name) const {
    for (const auto& t : params)
        if (t.name == name) return &t;
    for (const auto& t : activations)
        if (t.name == name) return &t;
    return nullptr;
}

std::string write_encodings(const encodings_file& f, encodings_version v) {
    if (v == encodings_version::v2_0_0) {
        ojson root;
        root["version"] = "2.0.0";
        ojson list = ojson::array();
        encodings_2_0_0(f.params, list);
        encodings_2_0_0(f.activations, list);
        root["encodings"] = list;
        return root.dump(4) + "\n";
    }
    json root;  // std::map keys: sorted, as AIMET's json.dump(sort_keys=True)
    root["version"] = std::string(to_string(v));
    if (v == encodings_version::v0_6_1) {
        root["activation_encodings"] = section_0_6_1(f.activations);
        root["param_encodings"] = section_0_6_1(f.params);
    } else {
        root["activation_encodings"] = section_1_0_0(f.activations);
        root["param_encodings"] = section_1_0_0(f.params);
    }
    root["excluded_layers"] = f.excluded_layers;
    if (f.args) root["quantizer_args"] = args_json(*f.args);
    return root.dump(4) + "\n";
}

void save_encodings(const encodings_file& f, const std::filesystem::path& path, encodings_version v) {
    write_file_atomic(path, write_encodings(f, v));  // serialize first: a failure leaves `path` untouched
}

encodings_file read_encodings(std::string_view text, std::string_view source) {
    reader rd{std::string(source)};
    json root;
    try {
        root = json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
        // Not only parse_error: a number too large for a double ("1e999") is out_of_range (406).
        QUANTSIM_THROW(config_error, source, ": not valid JSON: ", e.what());
    }
    if (!root.is_object()) rd.fail("top level", "expected an object");
    std::string version;
    if (root.contains("version")) {
        version = rd.string(root["version"], "version");
    } else if (root.contains("encodings")) {
        version = "2.0.0";
    } else if (root.contains("activation_encodings") && root["activation_encodings"].is_array()) {
        version = "1.0.0";
    } else {
        version = "0.6.1";
    }
    encodings_file f;
    if (version == "2.0.0") {
        rd.only_keys(root, "top level", {"version", "encodings"});
        auto all = read_2_0_0(rd, rd.get(root, "encodings", "top level"));
        // 2.0.0 has one list; parameters and activations are told apart by the model, not the file.
        f.activations = std::move(all);
        check_unique(rd, f.activations, "encodings");
        return f;
    }
    if (version != "0.6.1" && version != "1.0.0")
        rd.fail("version", "unsupported encodings version '" + version + "' (0.6.1, 1.0.0, 2.0.0)");
    rd.only_keys(root, "top level", {"version", "activation_encodings", "param_encodings", "excluded_layers", "quantizer_args"});
    const bool v061 = version == "0.6.1";
    if (root.contains("activation_encodings"))
        f.activations = v061 ? read_section_0_6_1(rd, root["activation_encodings"], "activation_encodings")
                             : read_section_1_0_0(rd, root["activation_encodings"], "activation_encodings");
    if (root.contains("param_encodings"))
        f.params = v061 ? read_section_0_6_1(rd, root["param_encodings"], "param_encodings")
                        : read_section_1_0_0(rd, root["param_encodings"], "param_encodings");
    check_unique(rd, f.activations, "activation_encodings");
    check_unique(rd, f.params, "param_encodings");
    if (root.contains("excluded_layers")) {
        const json& ex = root["excluded_layers"];
        if (!ex.is_array()) rd.fail("excluded_layers", "expected a list of names");
        for (std::size_t i = 0; i < ex.size(); ++i)
            f.excluded_layers.push_back(rd.string(ex[i], "excluded_layers[" + std::to_string(i) + "]"));
    }
    if (root.contains("quantizer_args")) f.args = read_args(rd, root["quantizer_args"]);
    return f;
}

encodings_file load_encodings(const std::filesystem::path& path) {
    // Encodings files are small; a 1 GiB cap keeps a wrong path (a model, a device) from exhausting memory.
    return read_encodings(read_file_string(path, std::size_t{1} << 30), path.string());
}

}  // namespace quantsim
