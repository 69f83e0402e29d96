// .npy reading and writing for the peer harness: float32, int64, int32, uint8 (what the fixtures and ort_run.js
// use), little-endian, C order. Kept in the test tree, apart from quantsim's own .npy I/O, so the comparison with
// ONNX Runtime does not run the inputs through the code it is checking.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <quantsim/core/tensor.hpp>

namespace quantsim::peer {

inline const char* npy_descr(dtype t) {
    switch (t) {
        case dtype::float32: return "<f4";
        case dtype::int64: return "<i8";
        case dtype::int32: return "<i4";
        case dtype::uint8: return "|u1";
        default: throw std::invalid_argument("peer npy: unsupported dtype " + std::string(name_of(t)));
    }
}

inline tensor load_npy(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("peer npy: cannot open " + path.string());
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
        throw std::runtime_error("peer npy: " + path.string() + " is not a .npy file");
    const int major = static_cast<unsigned char>(bytes[6]);
    std::size_t hlen = 0, start = 0;
    if (major == 1) {
        hlen = static_cast<unsigned char>(bytes[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8);
        start = 10;
    } else if (major == 2 || major == 3) {
        if (bytes.size() < 12) throw std::runtime_error("peer npy: truncated header in " + path.string());
        for (int i = 0; i < 4; ++i) hlen |= static_cast<std::size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
        start = 12;
    } else {
        throw std::runtime_error("peer npy: unsupported version in " + path.string());
    }
    if (start + hlen > bytes.size()) throw std::runtime_error("peer npy: truncated header in " + path.string());
    const std::string header = bytes.substr(start, hlen);
    std::smatch m_descr, m_order, m_shape;
    if (!std::regex_search(header, m_descr, std::regex("'descr'\\s*:\\s*'([^']+)'")) ||
        !std::regex_search(header, m_order, std::regex("'fortran_order'\\s*:\\s*(True|False)")) ||
        !std::regex_search(header, m_shape, std::regex("'shape'\\s*:\\s*\\(([^)]*)\\)")))
        throw std::runtime_error("peer npy: malformed header in " + path.string());
    if (m_order[1] == "True") throw std::runtime_error("peer npy: Fortran order in " + path.string());
    const std::string d = m_descr[1];
    dtype type;
    if (d == "<f4") type = dtype::float32;
    else if (d == "<i8") type = dtype::int64;
    else if (d == "<i4") type = dtype::int32;
    else if (d == "|u1" || d == "<u1") type = dtype::uint8;
    else throw std::runtime_error("peer npy: unsupported dtype " + d + " in " + path.string());
    shape_t shape;
    std::stringstream dims(m_shape[1].str());
    for (std::string tok; std::getline(dims, tok, ',');) {
        tok.erase(0, tok.find_first_not_of(" \t"));
        tok.erase(tok.find_last_not_of(" \t") + 1);
        if (!tok.empty()) shape.push_back(std::stoll(tok));
    }
    tensor t = tensor::empty(shape, type);
    const std::size_t data_start = start + hlen;
    if (bytes.size() - data_start != t.nbytes())
        throw std::runtime_error("peer npy: " + path.string() + " holds " + std::to_string(bytes.size() - data_start) +
                                 " data bytes, shape " + to_string(shape) + " needs " + std::to_string(t.nbytes()));
    if (t.nbytes()) std::memcpy(t.raw(), bytes.data() + data_start, t.nbytes());
    return t;
}

inline void save_npy(const std::filesystem::path& path, const tensor& t) {
    std::string shape = "(";
    for (std::size_t i = 0; i < t.shape().size(); ++i) shape += std::to_string(t.shape()[i]) + ", ";
    if (t.shape().size() > 1) shape.resize(shape.size() - 2);
    if (t.shape().size() == 1) shape.resize(shape.size() - 1);
    shape += ")";
    std::string header = std::string("{'descr': '") + npy_descr(t.type()) + "', 'fortran_order': False, 'shape': " +
                         shape + ", }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::ofstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("peer npy: cannot write " + path.string());
    const char pre[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
    f.write(pre, 8);
    const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                  static_cast<unsigned char>(header.size() >> 8)};
    f.write(reinterpret_cast<const char*>(len), 2);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    f.write(static_cast<const char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
    if (!f) throw std::runtime_error("peer npy: write failed for " + path.string());
}

}  // namespace quantsim::peer
