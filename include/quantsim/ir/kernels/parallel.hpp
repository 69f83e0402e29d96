// Thread control for quantsim's kernels: one team size for every kernel of a run, set by the executor.
//
// Kernels split their work into tasks (images x column tiles, channel planes, rows) and hand them to
// detail::parallel_for. Tasks are taken dynamically from an atomic counter by a small persistent pool, and a call
// returns as soon as every task is done: a thread that the OS has descheduled is never waited for unless it holds
// a task. (OpenMP's fork/join barrier waits for every team member; on a machine with more runnable threads than
// cores that made a 2-thread run several times slower than a 1-thread run.) Workers spin briefly for the next
// task set, then sleep. Eigen's own parallel GEMM is not used, so nothing nests or oversubscribes.
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

/// True on a pool worker, or while the calling thread runs tasks of a parallel_for (nested calls run serially).
bool in_parallel_region() noexcept;

/// Runs fn(ctx, i) for i in [0, n) on up to `threads` threads (the caller included). fn must not throw.
void parallel_for_impl(std::int64_t n, void (*fn)(void*, std::int64_t), void* ctx, int threads);

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

/// Runs fn(i) for i in [0, n) on kernel_threads() threads. fn must not throw.
template <class F>
void parallel_for(std::int64_t n, F&& fn) {
    if (n <= 0) return;
    const int nt = static_cast<int>(std::min<std::int64_t>(kernel_threads(), n));
    if (nt <= 1 || in_parallel_region()) {
        for (std::int64_t i = 0; i < n; ++i) fn(i);
        return;
    }
    using G = std::remove_reference_t<F>;
    parallel_for_impl(n, [](void* c, std::int64_t i) { (*static_cast<G*>(c))(i); }, static_cast<void*>(&fn), nt);
}

/// Runs fn(begin, end) on contiguous chunks of [0, n) of at least `grain` items (a few chunks per thread, so that
/// a busy thread's share moves to the others).
template <class F>
void parallel_range(std::int64_t n, std::int64_t grain, F&& fn) {
    if (n <= 0) return;
    std::int64_t chunks = std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, grain));
    const int threads = kernel_threads();
    chunks = std::min<std::int64_t>(chunks, threads > 1 ? 4 * threads : 1);
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
