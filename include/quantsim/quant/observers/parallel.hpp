// observe_parallel: one large batch observed by several threads (OpenMP): split into contiguous chunks, each
// thread observes its chunk with an empty copy of the observer, and the copies are merged in chunk order.
// For exactly-mergeable observers (min-max, histograms) the result equals observe(x). For moving-average
// observers the batch must count once, so its bounds are reduced in parallel and passed to observe_range().
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <type_traits>
#include <variant>
#include <vector>

#include <quantsim/config.hpp>
#include <quantsim/quant/observers/any_observer.hpp>

namespace quantsim {

/// Chunks smaller than this are not worth a thread.
constexpr std::size_t observe_parallel_min_chunk = std::size_t{1} << 16;

template <range_observer O>
void observe_parallel(O& obs, std::span<const float> x, int num_threads = default_num_threads()) {
    if constexpr (std::is_same_v<O, observer>) {
        std::visit([&](auto& o) { observe_parallel(o, x, num_threads); }, obs.variant());
        return;
    } else {
        const std::size_t n = x.size();
        const int t = static_cast<int>(std::clamp<std::size_t>(n / observe_parallel_min_chunk, 1,
                                                               static_cast<std::size_t>(std::max(num_threads, 1))));
        if (t <= 1 || !QUANTSIM_HAS_OPENMP) {
            obs.observe(x);
            return;
        }
        using part_type = std::conditional_t<std::is_same_v<O, moving_average_observer>, minmax_observer, O>;
        std::vector<part_type> parts;
        if constexpr (std::is_same_v<part_type, O>) {
            parts.assign(static_cast<std::size_t>(t), obs);
            for (auto& p : parts) p.reset();
        } else {
            parts.assign(static_cast<std::size_t>(t), minmax_observer{});
        }
        bool failed = false;
#if QUANTSIM_HAS_OPENMP
#pragma omp parallel for num_threads(t) schedule(static, 1) reduction(|| : failed)
#endif
        for (int i = 0; i < t; ++i) {
            const std::size_t b = n * static_cast<std::size_t>(i) / static_cast<std::size_t>(t);
            const std::size_t e = n * static_cast<std::size_t>(i + 1) / static_cast<std::size_t>(t);
            try {
                parts[static_cast<std::size_t>(i)].observe(x.subspan(b, e - b));
            } catch (...) {
                failed = true;
            }
        }
        if (failed) {  // rerun serially: throws the error naming the first bad element, obs unchanged
            obs.observe(x);
            return;
        }
        if constexpr (std::is_same_v<part_type, O>) {
            for (const auto& p : parts) obs.merge(p);
        } else {
            minmax_observer all;
            for (const auto& p : parts) all.merge(p);
            const auto r = all.observed_range();
            obs.observe_range(static_cast<float>(r.min), static_cast<float>(r.max));
        }
    }
}

}  // namespace quantsim
