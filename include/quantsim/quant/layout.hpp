// Which encoding applies to which element: validating quant_params against a tensor shape, and the plain
// (reference) mapping from an element's flat index to its group (per-tensor, per-channel, per-block).
#pragma once

#include <cstdint>
#include <string>

#include <quantsim/core/tensor.hpp>
#include <quantsim/quant/encoding.hpp>

namespace quantsim {

/// quant_params checked against a shape, with its axes normalized (non-negative).
struct resolved_granularity {
    granularity_kind kind = granularity_kind::per_tensor;
    int axis = 0;                 ///< channel axis (per_channel, per_block)
    int block_axis = 0;           ///< per_block
    std::int64_t block_size = 0;  ///< per_block
    std::int64_t num_blocks = 0;  ///< per_block: blocks per channel, dim(block_axis) / block_size
    std::int64_t groups = 1;      ///< number of encodings the shape needs
};

/// Validates `p` for a tensor of `shape` and returns its normalized granularity. Throws invalid_argument for a bad
/// bit width, scale, zero point, axis or block size (including a block size that does not divide its axis), and
/// shape_error when the number of encodings does not match the shape. Messages start with `where`.
inline resolved_granularity check_quant_params(const quant_params& p, const shape_t& shape,
                                               const char* where = "quant_params") {
    p.validate(where);
    const int rank = static_cast<int>(shape.size());
    resolved_granularity g;
    g.kind = p.gran.kind;
    switch (p.gran.kind) {
        case granularity_kind::per_tensor: g.groups = 1; break;
        case granularity_kind::per_channel: {
            if (rank == 0)
                QUANTSIM_THROW(invalid_argument, where, ": per-channel quantization of a scalar (rank 0) tensor");
            g.axis = normalize_axis(p.gran.axis, rank, (std::string(where) + ": channel axis").c_str());
            g.groups = shape[static_cast<std::size_t>(g.axis)];
            break;
        }
        case granularity_kind::per_block: {
            if (rank < 2)
                QUANTSIM_THROW(invalid_argument, where, ": per-block quantization needs rank >= 2, the tensor has shape ",
                               to_string(shape));
            g.axis = normalize_axis(p.gran.axis, rank, (std::string(where) + ": channel axis").c_str());
            g.block_axis = normalize_axis(p.gran.block_axis, rank, (std::string(where) + ": block axis").c_str());
            if (g.axis == g.block_axis)
                QUANTSIM_THROW(invalid_argument, where, ": the channel axis and the block axis are both ", g.axis);
            const std::int64_t d = shape[static_cast<std::size_t>(g.block_axis)];
            if (p.gran.block_size < 1)
                QUANTSIM_THROW(invalid_argument, where, ": block size ", p.gran.block_size, " must be >= 1");
            if (d % p.gran.block_size != 0)
                QUANTSIM_THROW(invalid_argument, where, ": block size ", p.gran.block_size,
                               " does not divide block axis ", g.block_axis, " of size ", d, " (shape ",
                               to_string(shape), ")");
            g.block_size = p.gran.block_size;
            g.num_blocks = d / p.gran.block_size;
            g.groups = shape[static_cast<std::size_t>(g.axis)] * g.num_blocks;
            break;
        }
        default: QUANTSIM_THROW(invalid_argument, where, ": unknown granularity ", static_cast<int>(p.gran.kind));
    }
    if (static_cast<std::int64_t>(p.size()) != g.groups) {
        if (g.kind == granularity_kind::per_tensor)
            QUANTSIM_THROW(shape_error, where, ": per-tensor quantization needs 1 scale, got ", p.size());
        if (g.kind == granularity_kind::per_channel)
            QUANTSIM_THROW(shape_error, where, ": ", p.size(), " scales for axis ", g.axis, " of size ", g.groups,
                           " (shape ", to_string(shape), ")");
        QUANTSIM_THROW(shape_error, where, ": ", p.size(), " scales for ", shape[static_cast<std::size_t>(g.axis)],
                       " channels (axis ", g.axis, ") x ", g.num_blocks, " blocks of ", g.block_size, " (axis ",
                       g.block_axis, "), shape ", to_string(shape), ": expected ", g.groups);
    }
    return g;
}

/// The group (index into p.scale / p.zero_point) of the element at row-major flat index `flat`: the plain
/// reference mapping, one division per axis.
inline std::int64_t group_index_ref(const resolved_granularity& g, const shape_t& shape, std::int64_t flat) {
    if (g.kind == granularity_kind::per_tensor) return 0;
    std::int64_t channel = 0, block_pos = 0;
    for (int a = static_cast<int>(shape.size()) - 1; a >= 0; --a) {
        const std::int64_t d = shape[static_cast<std::size_t>(a)];
        const std::int64_t i = flat % d;
        flat /= d;
        if (a == g.axis) channel = i;
        if (g.kind == granularity_kind::per_block && a == g.block_axis) block_pos = i;
    }
    if (g.kind == granularity_kind::per_channel) return channel;
    return channel * g.num_blocks + block_pos / g.block_size;
}

/// "[i, j, k]" multi-index of a flat row-major index, for error messages.
inline std::string index_string(const shape_t& shape, std::int64_t flat) {
    shape_t idx(shape.size());
    for (std::size_t a = shape.size(); a-- > 0;) {
        idx[a] = shape[a] ? flat % shape[a] : 0;
        flat = shape[a] ? flat / shape[a] : 0;
    }
    return to_string(idx);
}

}  // namespace quantsim
