// Splitting an element range over OpenMP threads. Kernels are elementwise and index-addressed, so the split never
// changes a result; it only decides who computes what.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>

#include <quantsim/config.hpp>

namespace quantsim::detail {

/// Below this many elements per thread, forking costs more than it saves.
inline constexpr std::int64_t min_elements_per_thread = 32768;

inline int resolve_threads(int requested, std::int64_t work) {
    int t = requested > 0 ? requested : default_num_threads();
    const std::int64_t useful = std::max<std::int64_t>(1, work / min_elements_per_thread);
    return static_cast<int>(std::clamp<std::int64_t>(t, 1, useful));
}

/// Calls f(begin, end) on contiguous, 64-byte-aligned (in float elements) pieces of [0, n), one per thread, with
/// the OpenMP static split. An exception thrown by f is rethrown here (the first one).
template <class F>
void parallel_ranges(std::int64_t n, int requested_threads, F&& f) {
    const int threads = resolve_threads(requested_threads, n);
    if (threads <= 1 || !QUANTSIM_HAS_OPENMP) {
        if (n > 0) f(std::int64_t{0}, n);
        return;
    }
    std::exception_ptr error;
#if QUANTSIM_HAS_OPENMP
#pragma omp parallel num_threads(threads)
    {
        const std::int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
        const std::int64_t per = (n + nt - 1) / nt;
        const std::int64_t chunk = (per + 15) / 16 * 16;
        const std::int64_t begin = std::min(n, t * chunk), end = std::min(n, begin + chunk);
        if (begin < end) {
            try {
                f(begin, end);
            } catch (...) {
#pragma omp critical(quantsim_parallel_error)
                if (!error) error = std::current_exception();
            }
        }
    }
#endif
    if (error) std::rethrow_exception(error);
}

}  // namespace quantsim::detail
