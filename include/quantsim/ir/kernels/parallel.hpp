// Thread control for quantsim's kernels: one OpenMP team size for every kernel of a run, set by the executor.
// Kernels partition their own work into tasks (images x column tiles x ...), so any Eigen product called inside a
// task runs single-threaded (Eigen does not nest into an active OpenMP team): no oversubscription.
#pragma once

#include <algorithm>
#include <cstdint>

#include <quantsim/config.hpp>

namespace quantsim {
namespace detail {

inline int& kernel_threads_ref() noexcept {
    thread_local int n = 0;
    return n;
}

}  // namespace detail

/// Threads the kernels called from this thread use (executor_options::num_threads while an executor runs;
/// default_num_threads() otherwise).
inline int kernel_threads() noexcept {
    const int n = detail::kernel_threads_ref();
    return n > 0 ? n : default_num_threads();
}

/// Sets kernel_threads() for the current thread until the scope ends (0 = default).
class kernel_threads_scope {
public:
    explicit kernel_threads_scope(int n) noexcept : prev_(detail::kernel_threads_ref()) {
        detail::kernel_threads_ref() = n;
    }
    ~kernel_threads_scope() { detail::kernel_threads_ref() = prev_; }
    kernel_threads_scope(const kernel_threads_scope&) = delete;
    kernel_threads_scope& operator=(const kernel_threads_scope&) = delete;

private:
    int prev_;
};

namespace detail {

/// Runs fn(i) for i in [0, n) on kernel_threads() threads (static schedule). fn must not throw.
template <class F>
void parallel_for(std::int64_t n, F&& fn) {
    if (n <= 0) return;
#if QUANTSIM_HAS_OPENMP
    const int nt = static_cast<int>(std::min<std::int64_t>(kernel_threads(), n));
    if (nt > 1 && !omp_in_parallel()) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (std::int64_t i = 0; i < n; ++i) fn(i);
        return;
    }
#endif
    for (std::int64_t i = 0; i < n; ++i) fn(i);
}

/// Runs fn(begin, end) on contiguous chunks of [0, n) of at least `grain` items, one chunk per thread at most.
template <class F>
void parallel_range(std::int64_t n, std::int64_t grain, F&& fn) {
    if (n <= 0) return;
    std::int64_t chunks = std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, grain));
    chunks = std::min<std::int64_t>(chunks, kernel_threads());
    if (chunks <= 1) {
        fn(std::int64_t{0}, n);
        return;
    }
    parallel_for(chunks, [&](std::int64_t c) {
        const std::int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
        if (b < e) fn(b, e);
    });
}

}  // namespace detail
}  // namespace quantsim
