// The kernels' thread pool (see parallel.hpp for why not OpenMP's fork/join).
#include <quantsim/ir/kernels/parallel.hpp>

#include <algorithm>
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

    // Several application threads may submit at once (e.g. one executor per calibration worker): every active
    // task set is listed, and an idle worker joins any of them that still has seats.
    void run(std::int64_t n, void (*fn)(void*, std::int64_t), void* ctx, int threads) {
        auto j = std::make_shared<job>();
        j->fn = fn;
        j->ctx = ctx;
        j->n = n;
        j->seats.store(threads - 1, std::memory_order_relaxed);
        {
            std::lock_guard<std::mutex> l(m_);
            active_.push_back(j);
            int seats = busy_;
            for (const auto& a : active_) seats += std::max(0, a->seats.load(std::memory_order_relaxed));
            // A new worker starts from the generation before this task set, so it joins it however late the OS
            // starts the thread.
            const std::uint64_t g = gen_.load(std::memory_order_relaxed);
            while (static_cast<int>(threads_.size()) < seats) threads_.emplace_back([this, g] { loop(g); });
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
        active_.erase(std::remove(active_.begin(), active_.end(), j), active_.end());
    }

private:
    // A task set with work and seats left (caller holds m_), or nullptr.
    std::shared_ptr<job> pick() {
        for (const auto& a : active_)
            if (a->next.load(std::memory_order_relaxed) < a->n && a->seats.load(std::memory_order_relaxed) > 0) {
                a->seats.fetch_sub(1, std::memory_order_relaxed);
                return a;
            }
        return nullptr;
    }

    void loop(std::uint64_t seen) {
        t_in_region = true;
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
                // stop_ is part of the condition: a worker that starts after the destructor bumped the generation
                // must not sleep forever (that hung process exit).
                if (!fresh && !stop_) {
                    sleeping_.fetch_add(1, std::memory_order_acq_rel);
                    cv_.wait(l, [&] { return stop_ || gen_.load(std::memory_order_acquire) != seen; });
                    sleeping_.fetch_sub(1, std::memory_order_acq_rel);
                }
                if (stop_) return;
                seen = gen_.load(std::memory_order_acquire);
                j = pick();
                if (j) ++busy_;
            }
            while (j) {
                run_tasks(*j);
                std::lock_guard<std::mutex> l(m_);
                j = pick();  // another submitter's task set may be waiting
                if (!j) --busy_;
            }
        }
    }

    std::mutex m_;
    std::condition_variable cv_;
    std::atomic<std::uint64_t> gen_{0};
    std::atomic<int> sleeping_{0};
    std::vector<std::shared_ptr<job>> active_;
    int busy_ = 0;  ///< workers inside a task set
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
