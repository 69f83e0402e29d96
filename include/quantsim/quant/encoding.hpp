// Quantization encodings: the integer grid (bit width, signedness, scheme), scale and zero point, their
// AIMET (min, max, scale, offset) form, and how an encoding is computed from an observed range.
//
// Convention (docs/quantization.md): q = clamp(round(x / scale) + zero_point, qmin, qmax), x' = (q - zero_point) *
// scale. AIMET's offset is -zero_point on the UNSIGNED grid 0..2^b-1 (so a signed-symmetric int8 weight has
// offset -128).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

#include <quantsim/core/error.hpp>

namespace quantsim {

/// How the grid is placed around zero.
enum class qscheme : std::uint8_t {
    asymmetric,          ///< zero point anywhere on the grid (activations)
    symmetric,           ///< zero point in the middle: int8 [-128, 127] with zp 0 (weights)
    symmetric_unsigned,  ///< non-negative data on an unsigned grid with zp 0: uint8 [0, 255]
    strict_symmetric,    ///< symmetric without the extra negative level: int8 [-127, 127] (unsigned: 0..2^b-2)
};

constexpr std::string_view name_of(qscheme s) noexcept {
    switch (s) {
        case qscheme::asymmetric: return "asymmetric";
        case qscheme::symmetric: return "symmetric";
        case qscheme::symmetric_unsigned: return "symmetric_unsigned";
        case qscheme::strict_symmetric: return "strict_symmetric";
    }
    return "unknown";
}

/// How a quantizer turns the observed range into an encoding.
enum class range_convention : std::uint8_t {
    aimet,    ///< AIMET C++: symmetric scale = absmax / (2^(b-1) - 1); asymmetric zp = round-half-away(-min/scale)
    pytorch,  ///< torch.ao observers: symmetric scale = absmax / ((qmax - qmin) / 2); float32 math; half-even zp
};

constexpr int min_bitwidth = 2;
constexpr int max_bitwidth = 16;
constexpr int bias_bitwidth = 32;  ///< int32 bias (scale = s_in * s_w) is the only width above 16

inline void check_bitwidth(int bitwidth, const char* where = "encoding") {
    if (!((bitwidth >= min_bitwidth && bitwidth <= max_bitwidth) || bitwidth == bias_bitwidth))
        QUANTSIM_THROW(invalid_argument, where, ": bit width ", bitwidth, " is outside 2..16 (or 32 for bias)");
}

/// The integer range [qmin, qmax] for a bit width, signedness and scheme.
struct int_range {
    std::int64_t qmin;
    std::int64_t qmax;
};
inline int_range grid_range(int bitwidth, bool is_signed, qscheme scheme) {
    check_bitwidth(bitwidth);
    const std::int64_t levels = std::int64_t{1} << bitwidth;
    const bool strict = scheme == qscheme::strict_symmetric;
    if (is_signed) return {-(levels / 2) + (strict ? 1 : 0), levels / 2 - 1};
    return {0, levels - 1 - (strict ? 1 : 0)};
}

/// AIMET's legacy (0.6.1 / 1.0.0) view of an encoding: unsigned grid, offset = -zero_point on that grid.
struct aimet_encoding {
    double min = 0;
    double max = 0;
    double scale = 0;
    std::int64_t offset = 0;
    int bitwidth = 8;
    bool is_symmetric = false;
};

/// One grid: a per-tensor encoding, or one channel / block of a per-channel / per-block quantizer.
struct encoding {
    float scale = 1.0f;
    std::int32_t zero_point = 0;
    int bitwidth = 8;
    bool is_signed = false;
    qscheme scheme = qscheme::asymmetric;

    int_range range() const { return grid_range(bitwidth, is_signed, scheme); }
    std::int64_t qmin() const { return range().qmin; }
    std::int64_t qmax() const { return range().qmax; }
    /// Smallest and largest representable real values.
    double min() const { return (static_cast<double>(qmin()) - zero_point) * static_cast<double>(scale); }
    double max() const { return (static_cast<double>(qmax()) - zero_point) * static_cast<double>(scale); }
    bool is_symmetric() const { return scheme != qscheme::asymmetric; }
    bool operator==(const encoding&) const = default;

    /// Throws invalid_argument unless the scale is finite and positive and the zero point lies on the grid.
    void validate(const char* where = "encoding") const {
        check_bitwidth(bitwidth, where);
        if (!(std::isfinite(scale) && scale > 0))
            QUANTSIM_THROW(invalid_argument, where, ": scale ", scale, " must be finite and positive");
        const auto r = range();
        if (zero_point < r.qmin || zero_point > r.qmax)
            QUANTSIM_THROW(invalid_argument, where, ": zero point ", zero_point, " is outside [", r.qmin, ", ",
                           r.qmax, "]");
    }

    /// The AIMET legacy form: offset = -(zero_point - qmin), min = offset * scale, max = min + scale * steps.
    aimet_encoding to_aimet() const {
        const auto r = range();
        aimet_encoding a;
        a.bitwidth = bitwidth;
        a.is_symmetric = is_symmetric();
        a.scale = scale;
        a.offset = -(static_cast<std::int64_t>(zero_point) - r.qmin);
        a.min = static_cast<double>(a.offset) * a.scale;
        a.max = a.min + a.scale * static_cast<double>(r.qmax - r.qmin);
        return a;
    }

    /// From AIMET's (scale, offset, bitwidth, is_symmetric). Symmetric encodings with offset -2^(b-1) become signed
    /// symmetric, -(2^(b-1)-1) strict symmetric, 0 unsigned symmetric; others are unsigned asymmetric.
    static encoding from_aimet(double scale, std::int64_t offset, int bitwidth, bool is_symmetric) {
        check_bitwidth(bitwidth, "AIMET encoding");
        encoding e;
        e.scale = static_cast<float>(scale);
        e.bitwidth = bitwidth;
        const std::int64_t half = std::int64_t{1} << (bitwidth - 1);
        if (is_symmetric && offset == -half) {
            e.is_signed = true;
            e.scheme = qscheme::symmetric;
        } else if (is_symmetric && offset == -(half - 1)) {
            e.is_signed = true;
            e.scheme = qscheme::strict_symmetric;
        } else if (is_symmetric && offset == 0) {
            e.is_signed = false;
            e.scheme = qscheme::symmetric_unsigned;
        } else {
            const std::int64_t levels = std::int64_t{1} << bitwidth;
            if (offset > 0 || offset < -(levels - 1))
                QUANTSIM_THROW(invalid_argument, "AIMET encoding: offset ", offset, " is outside [", -(levels - 1),
                               ", 0] for ", bitwidth, " bits");
            e.scheme = qscheme::asymmetric;
            if (-offset > std::numeric_limits<std::int32_t>::max()) {
                // 32-bit grids: the unsigned zero point does not fit int32; the same grid shifted by 2^31 does.
                e.is_signed = true;
                e.zero_point = static_cast<std::int32_t>(-offset - half);
            } else {
                e.is_signed = false;
                e.zero_point = static_cast<std::int32_t>(-offset);
            }
        }
        e.validate("AIMET encoding");
        return e;
    }
};

/// What a quantizer should compute from an observed range.
struct quant_spec {
    int bitwidth = 8;
    /// asymmetric, symmetric, strict_symmetric, or symmetric_unsigned (= symmetric with unsigned_symmetric set).
    qscheme scheme = qscheme::asymmetric;
    bool is_signed = false;                ///< grid signedness for asymmetric; symmetric grids are signed
    bool unsigned_symmetric = false;       ///< symmetric with all data >= 0 -> symmetric_unsigned grid (AIMET)
    range_convention convention = range_convention::aimet;
    /// The range is widened to at least this (AIMET gates max >= min + eps). pytorch convention uses a minimum
    /// scale of FLT_EPSILON instead. Must be finite and >= 0.
    double min_range = 1e-5;
};

namespace detail {
/// Round half away from zero (std::round), used by AIMET's C++ core for zero points.
inline double round_half_away(double v) { return std::round(v); }
/// Round half to even (IEEE default; torch.round, std::nearbyint).
inline double round_half_even(double v) { return std::nearbyint(v); }

/// An int32 zero point for an unsigned grid whose zero point may exceed INT32_MAX (32-bit grids only): such grids
/// are stored as the equivalent signed grid (every q shifted by -2^31), which fake-quantizes identically.
inline void set_zero_point_on_grid(encoding& e, double zp_on_unsigned_grid) {
    const auto zp = static_cast<std::int64_t>(zp_on_unsigned_grid);
    const std::int64_t qmin = e.range().qmin;  // 0 on unsigned grids, -2^(b-1) on signed ones
    if (zp + qmin > std::numeric_limits<std::int32_t>::max()) {
        e.is_signed = true;
        e.zero_point = static_cast<std::int32_t>(zp - (std::int64_t{1} << (e.bitwidth - 1)));
    } else {
        e.zero_point = static_cast<std::int32_t>(zp + qmin);
    }
}
}  // namespace detail

/// Encoding for data observed in [min, max]. The range is first extended to include 0. Throws invalid_argument on
/// min > max or a bad spec, numeric_error on NaN bounds; infinite bounds are clamped to +-FLT_MAX (as AIMET does).
/// Formulas per convention: docs/quantization.md, "Encodings from a range".
inline encoding encoding_from_range(double min, double max, const quant_spec& spec) {
    check_bitwidth(spec.bitwidth, "quant_spec");
    if (std::isnan(min) || std::isnan(max))
        QUANTSIM_THROW(numeric_error, "encoding_from_range: range [", min, ", ", max, "] contains NaN");
    if (min > max) QUANTSIM_THROW(invalid_argument, "encoding_from_range: min ", min, " > max ", max);
    if (!(std::isfinite(spec.min_range) && spec.min_range >= 0))
        QUANTSIM_THROW(invalid_argument, "quant_spec: min_range ", spec.min_range, " must be finite and >= 0");
    constexpr double fmax = std::numeric_limits<float>::max();
    min = std::clamp(min, -fmax, fmax);
    max = std::clamp(max, -fmax, fmax);

    encoding e;
    e.bitwidth = spec.bitwidth;
    const bool sym = spec.scheme != qscheme::asymmetric;
    const bool strict = spec.scheme == qscheme::strict_symmetric;
    const bool unsigned_ok = spec.unsigned_symmetric || spec.scheme == qscheme::symmetric_unsigned;

    if (spec.convention == range_convention::pytorch) {
        // Mirrors torch.ao.quantization.observer._calculate_qparams in float32.
        const float mn = std::min(static_cast<float>(min), 0.0f);
        const float mx = std::max(static_cast<float>(max), 0.0f);
        const float eps = std::numeric_limits<float>::epsilon();
        if (sym && unsigned_ok && mn >= 0.0f) {
            // torch has no unsigned symmetric grid; this is its asymmetric formula with min pinned at 0.
            e.scheme = strict ? qscheme::strict_symmetric : qscheme::symmetric_unsigned;
            e.is_signed = false;
            const auto r = grid_range(spec.bitwidth, false, e.scheme);
            e.scale = std::max(mx / static_cast<float>(r.qmax - r.qmin), eps);
            e.zero_point = 0;
        } else if (sym) {
            e.scheme = strict ? qscheme::strict_symmetric : qscheme::symmetric;
            e.is_signed = true;
            const auto r = grid_range(spec.bitwidth, true, e.scheme);
            const float absmax = std::max(-mn, mx);
            e.scale = std::max(absmax / (static_cast<float>(r.qmax - r.qmin) / 2.0f), eps);
            e.zero_point = 0;
        } else {
            e.scheme = qscheme::asymmetric;
            e.is_signed = spec.is_signed;
            const auto r = grid_range(spec.bitwidth, spec.is_signed, qscheme::asymmetric);
            e.scale = std::max((mx - mn) / static_cast<float>(r.qmax - r.qmin), eps);
            const double zp = static_cast<double>(r.qmin) - detail::round_half_even(mn / e.scale);
            const double zp_clamped = std::clamp<double>(zp, static_cast<double>(r.qmin), static_cast<double>(r.qmax));
            detail::set_zero_point_on_grid(e, zp_clamped - static_cast<double>(r.qmin));
        }
        return e;
    }

    // AIMET convention (quantization_utils.cpp::getComputedEncodings with gateMinMax), in double.
    min = std::min(min, 0.0);
    max = std::max(max, 0.0);
    if (max - min < spec.min_range) {
        if (sym && min == 0.0)
            max = spec.min_range;
        else if (sym)
            min = std::min(min, -spec.min_range / 2), max = std::max(max, spec.min_range / 2);
        else
            max = min + spec.min_range;
    }
    if (sym && !(unsigned_ok && min >= 0.0)) {
        e.scheme = strict ? qscheme::strict_symmetric : qscheme::symmetric;
        e.is_signed = true;
        const double absmax = std::max(-min, max);
        const double positive_steps = static_cast<double>((std::int64_t{1} << (spec.bitwidth - 1)) - 1);
        e.scale = static_cast<float>(absmax / positive_steps);
        e.zero_point = 0;
    } else if (sym) {
        // Unsigned symmetric: AIMET keeps strict's step count (2^b - 2), so strict gives the grid 0..2^b-2.
        e.scheme = strict ? qscheme::strict_symmetric : qscheme::symmetric_unsigned;
        e.is_signed = false;
        const auto r = grid_range(spec.bitwidth, false, e.scheme);
        e.scale = static_cast<float>(max / static_cast<double>(r.qmax - r.qmin));
        e.zero_point = 0;
    } else {
        e.scheme = qscheme::asymmetric;
        e.is_signed = spec.is_signed;
        const auto r = grid_range(spec.bitwidth, spec.is_signed, qscheme::asymmetric);
        const double steps = static_cast<double>(r.qmax - r.qmin);
        e.scale = static_cast<float>((max - min) / steps);
        if (!(e.scale > 0)) e.scale = std::numeric_limits<float>::min();
        const double zp_unsigned = std::clamp(detail::round_half_away(-min / static_cast<double>(e.scale)), 0.0, steps);
        detail::set_zero_point_on_grid(e, zp_unsigned);
    }
    if (!(e.scale > 0)) e.scale = std::numeric_limits<float>::min();  // denormal ranges: keep the grid valid
    return e;
}

// ---------------------------------------------------------------------------------------------------------------
// Granularity: one encoding for the whole tensor, one per channel along an axis, or one per block.

enum class granularity_kind : std::uint8_t { per_tensor, per_channel, per_block };

constexpr std::string_view name_of(granularity_kind k) noexcept {
    switch (k) {
        case granularity_kind::per_tensor: return "per_tensor";
        case granularity_kind::per_channel: return "per_channel";
        case granularity_kind::per_block: return "per_block";
    }
    return "unknown";
}

struct granularity {
    granularity_kind kind = granularity_kind::per_tensor;
    int axis = 0;                ///< channel axis (per_channel and per_block); negative counts from the end
    int block_axis = 1;          ///< per_block: the axis split into blocks (e.g. the input-channel axis of a weight)
    std::int64_t block_size = 0; ///< per_block: elements per block along block_axis

    static granularity per_tensor() { return {}; }
    static granularity per_channel(int axis) { return {granularity_kind::per_channel, axis, 1, 0}; }
    static granularity per_block(int channel_axis, int block_axis, std::int64_t block_size) {
        return {granularity_kind::per_block, channel_axis, block_axis, block_size};
    }
    bool operator==(const granularity&) const = default;
};

/// All encodings of one quantizer over one tensor. Per-block encodings are ordered channel-major:
/// index = channel * num_blocks + block. All groups share bit width, signedness and scheme (one integer grid);
/// check_quant_params (quant/layout.hpp) validates them against a tensor shape.
struct quant_params {
    std::vector<float> scale{1.0f};
    std::vector<std::int32_t> zero_point{0};
    int bitwidth = 8;
    bool is_signed = false;
    qscheme scheme = qscheme::asymmetric;
    granularity gran;

    std::size_t size() const noexcept { return scale.size(); }
    int_range range() const { return grid_range(bitwidth, is_signed, scheme); }
    encoding at(std::size_t i) const {
        if (i >= scale.size() || i >= zero_point.size())
            QUANTSIM_THROW(invalid_argument, "quant_params::at: group ", i, " of ", scale.size());
        return {scale[i], zero_point[i], bitwidth, is_signed, scheme};
    }
    bool operator==(const quant_params&) const = default;

    /// Throws invalid_argument unless the scale and zero-point lists have the same non-zero length, every scale is
    /// finite and positive and every zero point lies on the grid. The message names the group. (Shape checks:
    /// check_quant_params in quant/layout.hpp.)
    void validate(const char* where = "quant_params") const {
        check_bitwidth(bitwidth, where);
        if (scale.size() != zero_point.size())
            QUANTSIM_THROW(invalid_argument, where, ": ", scale.size(), " scales but ", zero_point.size(),
                           " zero points");
        const auto r = range();
        for (std::size_t i = 0; i < scale.size(); ++i) {
            if (!(std::isfinite(scale[i]) && scale[i] > 0))
                QUANTSIM_THROW(invalid_argument, where, ": scale ", scale[i], " of group ", i,
                               " must be finite and positive");
            if (zero_point[i] < r.qmin || zero_point[i] > r.qmax)
                QUANTSIM_THROW(invalid_argument, where, ": zero point ", zero_point[i], " of group ", i,
                               " is outside the grid [", r.qmin, ", ", r.qmax, "]");
        }
    }

    static quant_params per_tensor(const encoding& e) {
        return {{e.scale}, {e.zero_point}, e.bitwidth, e.is_signed, e.scheme, granularity::per_tensor()};
    }
    /// From one encoding per group. They must share the bit width. Grids that differ only by a shift (AIMET's
    /// unsigned_symmetric per channel: signed-symmetric channels next to unsigned-symmetric ones) are put on the
    /// unsigned grid (zero point + 2^(b-1) for the signed ones), which fake-quantizes identically.
    static quant_params from(const std::vector<encoding>& groups, granularity g) {
        if (groups.empty()) QUANTSIM_THROW(invalid_argument, "quant_params::from: no encodings");
        quant_params p;
        p.scale.clear();
        p.zero_point.clear();
        p.bitwidth = groups[0].bitwidth;
        p.is_signed = groups[0].is_signed;
        p.scheme = groups[0].scheme;
        p.gran = g;
        bool same_grid = true;
        bool all_symmetric = true;
        for (std::size_t i = 0; i < groups.size(); ++i) {
            const auto& e = groups[i];
            e.validate("quant_params::from");
            if (e.bitwidth != p.bitwidth)
                QUANTSIM_THROW(invalid_argument, "quant_params::from: group ", i, " has bit width ", e.bitwidth,
                               ", group 0 has ", p.bitwidth);
            same_grid = same_grid && e.range().qmin == groups[0].range().qmin &&
                        e.range().qmax == groups[0].range().qmax;
            all_symmetric = all_symmetric && e.is_symmetric();
        }
        if (same_grid) {
            for (const auto& e : groups) {
                p.scale.push_back(e.scale);
                p.zero_point.push_back(e.zero_point);
            }
            return p;
        }
        // Different grids: each is shifted onto 0..levels (zero point - qmin); they must have the same level count.
        const std::int64_t levels = groups[0].range().qmax - groups[0].range().qmin;
        p.is_signed = false;
        p.scheme = !all_symmetric ? qscheme::asymmetric
                   : levels == (std::int64_t{1} << p.bitwidth) - 1 ? qscheme::symmetric
                                                                   : qscheme::strict_symmetric;
        for (std::size_t i = 0; i < groups.size(); ++i) {
            const auto r = groups[i].range();
            const std::int64_t zp = groups[i].zero_point - r.qmin;
            if (r.qmax - r.qmin != levels || p.range().qmax != levels || zp > std::numeric_limits<std::int32_t>::max())
                QUANTSIM_THROW(invalid_argument, "quant_params::from: group ", i, " (grid [", r.qmin, ", ", r.qmax,
                               "]) cannot share one integer grid with group 0 ([", groups[0].range().qmin, ", ",
                               groups[0].range().qmax, "])");
            p.scale.push_back(groups[i].scale);
            p.zero_point.push_back(static_cast<std::int32_t>(zp));
        }
        return p;
    }
    /// Per-channel parameters along `axis`, one encoding per channel.
    static quant_params per_channel(const std::vector<encoding>& channels, int axis) {
        return from(channels, granularity::per_channel(axis));
    }
    /// Per-block parameters, channel-major (index = channel * num_blocks + block).
    static quant_params per_block(const std::vector<encoding>& blocks, int channel_axis, int block_axis,
                                  std::int64_t block_size) {
        return from(blocks, granularity::per_block(channel_axis, block_axis, block_size));
    }
};

}  // namespace quantsim
