// The kernels' thread pool (see parallel.hpp for why not OpenMP's fork/join).
#include <quantsim/ir/kernels/parallel.hpp>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define QUANTSIM_PAUSE() _mm_pause()
#else
#define QUANTSIM_PAUSE() std::this_thread::yield()
#endif

namespace quantsim::detail {

namespace {

thread_local bool t_in_region = false;

struct job {
    void (*fn)(void*, std::int64_t) = nullptr;
    void* ctx = nullptr;
    std::int64_t n = 0;
    std::atomic<std::int64_t> next{0};
    std::atomic<std::int64_t> done{0};
    std::atomic<int> seats{0};  ///< workers that may still join
};

void run_tasks(job& j) {
    for (;;) {
        const std::int64_t i = j.next.fetch_add(1, std::memory_order_relaxed);
        if (i >= j.n) return;
        j.fn(j.ctx, i);
        j.done.fetch_add(1, std::memory_order_release);
    }
}

class pool {
public:
    ~pool() {
        {
            std::lock_guard<std::mutex> l(m_);
            stop_ = true;
            gen_.fetch_add(1, std::memory_order_release);
        }
        cv_.notify_all();
        for (auto& t : threads_) t.join();
    }

    void run(std::int64_t n, void (*fn)(void*, std::int64_t), void* ctx, int threads) {
        grow(threads - 1);
        auto j = std::make_shared<job>();
        j->fn = fn;
        j->ctx = ctx;
        j->n = n;
        j->seats.store(threads - 1, std::memory_order_relaxed);
        {
            std::lock_guard<std::mutex> l(m_);
            current_ = j;
            gen_.fetch_add(1, std::memory_order_release);
        }
        if (sleeping_.load(std::memory_order_acquire) > 0) cv_.notify_all();
        t_in_region = true;
        run_tasks(*j);
        t_in_region = false;
        // Wait for tasks other threads hold; yield so that a descheduled holder gets the CPU sooner.
        for (int spins = 0; j->done.load(std::memory_order_acquire) < n; ++spins) {
            if (spins < 4000)
                QUANTSIM_PAUSE();
            else
                std::this_thread::yield();
        }
        std::lock_guard<std::mutex> l(m_);
        if (current_ == j) current_.reset();
    }

private:
    void grow(int workers) {
        std::lock_guard<std::mutex> l(m_);
        while (static_cast<int>(threads_.size()) < workers) threads_.emplace_back([this] { loop(); });
    }

    void loop() {
        t_in_region = true;
        std::uint64_t seen = gen_.load(std::memory_order_acquire);
        for (;;) {
            // Spin a little for the next task set (kernels of one run come back to back), then sleep.
            bool fresh = false;
            for (int i = 0; i < 4000 && !fresh; ++i) {
                fresh = gen_.load(std::memory_order_acquire) != seen;
                if (!fresh) QUANTSIM_PAUSE();
            }
            std::shared_ptr<job> j;
            {
                std::unique_lock<std::mutex> l(m_);
                if (!fresh) {
                    sleeping_.fetch_add(1, std::memory_order_acq_rel);
                    cv_.wait(l, [&] { return gen_.load(std::memory_order_acquire) != seen; });
                    sleeping_.fetch_sub(1, std::memory_order_acq_rel);
                }
                if (stop_) return;
                seen = gen_.load(std::memory_order_acquire);
                j = current_;
            }
            if (j && j->seats.fetch_sub(1, std::memory_order_acq_rel) > 0) run_tasks(*j);
        }
    }

    std::mutex m_;
    std::condition_variable cv_;
    std::atomic<std::uint64_t> gen_{0};
    std::atomic<int> sleeping_{0};
    std::shared_ptr<job> current_;
    std::vector<std::thread> threads_;
    bool stop_ = false;
};

pool& the_pool() {
    static pool p;
    return p;
}

}  // namespace

bool in_parallel_region() noexcept { return t_in_region; }

void parallel_for_impl(std::int64_t n, void (*fn)(void*, std::int64_t), void* ctx, int threads) {
    the_pool().run(n, fn, ctx, threads);
}

}  // namespace quantsim::detail
