// Axis and channel-count bookkeeping shared by the per-channel observers.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <quantsim/core/tensor.hpp>
#include <quantsim/quant/encoding.hpp>
#include <quantsim/quant/observers/observer.hpp>

namespace quantsim::detail {

class channel_axis {
public:
    explicit channel_axis(int axis) : axis_(axis) {}
    int axis() const noexcept { return axis_; }
    /// Channels seen so far (0 before the first observe()).
    std::int64_t channels() const noexcept { return channels_; }
    /// The axis normalized for the observed rank (axis() itself before the first observe()).
    int resolved_axis() const noexcept { return resolved_; }

    /// Layout of a tensor of `shape` around the axis. Throws invalid_argument for a bad axis and shape_error when
    /// the channel count differs from earlier tensors or the data size does not match the shape.
    channel_layout layout(const shape_t& shape, std::size_t numel, std::string_view who) const {
        const int a =
            normalize_axis(axis_, static_cast<int>(shape.size()), (std::string(who) + ": channel axis").c_str());
        if (static_cast<std::int64_t>(numel) != checked_numel(shape, 0, std::string(who)))
            QUANTSIM_THROW(shape_error, who, ": ", numel, " values do not match shape ", to_string(shape));
        const channel_layout l = layout_around(shape, a);
        if (channels_ > 0 && l.channels != channels_)
            QUANTSIM_THROW(shape_error, who, ": tensor ", to_string(shape), " has ", l.channels,
                           " channels along axis ", axis_, ", earlier tensors had ", channels_);
        return l;
    }
    void commit(const shape_t& shape, std::int64_t channels) {
        resolved_ = normalize_axis(axis_, static_cast<int>(shape.size()));
        channels_ = channels;
    }
    void reset() noexcept { channels_ = 0, resolved_ = axis_; }

    /// Throws invalid_argument unless o can be merged into this (same axis; same channel count when both have
    /// data).
    void check_mergeable(const channel_axis& o, std::string_view who) const {
        if (o.axis_ != axis_)
            QUANTSIM_THROW(invalid_argument, who, ": cannot merge observers of channel axes ", axis_, " and ", o.axis_);
        if (channels_ > 0 && o.channels_ > 0 && channels_ != o.channels_)
            QUANTSIM_THROW(invalid_argument, who, ": cannot merge observers of ", channels_, " and ", o.channels_,
                           " channels");
    }
    bool operator==(const channel_axis&) const = default;

private:
    int axis_;
    int resolved_ = axis_;
    std::int64_t channels_ = 0;
};

/// quant_params from one encoding per channel. With unsigned_symmetric, the grid must be the same for all
/// channels, so it is unsigned only when every channel's data is >= 0 (decided by the caller via mins).
template <class RangeOf>
quant_params per_channel_params(std::int64_t channels, int axis, const quant_spec& spec,
                                const std::vector<double>& mins, RangeOf&& range_of) {
    quant_spec s = spec;
    if (s.unsigned_symmetric)
        for (double m : mins)
            if (m < 0) s.unsigned_symmetric = false;
    std::vector<encoding> e;
    e.reserve(static_cast<std::size_t>(channels));
    for (std::int64_t c = 0; c < channels; ++c) {
        const value_range r = range_of(c, s);
        e.push_back(encoding_from_range(r.min, r.max, s));
    }
    return quant_params::from(e, granularity::per_channel(axis));
}

}  // namespace quantsim::detail
