#pragma once
// The CPU backend's threads: the caller and `workers` more, which take part in one job at a
// time. Between the jobs of a forward pass (a few microseconds apart at batch 1) the workers
// spin briefly, then yield their core, then sleep once no job has come for `spin_for`
// (await): waking a sleeping thread costs tens of microseconds in a VM (measured at batch 1
// with Eigen's ThreadPool, whose workers sleep sooner: 21% of the samples in its worker loop
// and the kernel's scheduler). A job that comes while another runs (the same backend used
// from two threads) runs on its caller alone.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace hashee::detail {

class thread_team {
public:
    static constexpr std::chrono::microseconds spin_for{200};

    explicit thread_team(int workers) {
        if (workers >= (1 << parts_bits)) throw std::invalid_argument("thread_team: too many workers");
        threads_.reserve(static_cast<std::size_t>(workers));
        for (int w = 1; w <= workers; ++w) threads_.emplace_back([this, w] { work(w); });
    }
    thread_team(const thread_team&) = delete;
    thread_team& operator=(const thread_team&) = delete;
    ~thread_team() {
        stopping_.store(true, std::memory_order_relaxed);
        generation_.fetch_add(std::uint64_t{1} << parts_bits, std::memory_order_release);
        generation_.notify_all();
        for (std::thread& t : threads_) t.join();
    }

    int size() const { return static_cast<int>(threads_.size()) + 1; }

    /// Runs f(p) for p in [0, parts), parts <= size(): p = 0 on the caller, the others on
    /// workers; returns when all are done, rethrowing the first exception any of them threw.
    template <class F>
    void run(int parts, F& f) {
        std::unique_lock busy(busy_, std::try_to_lock);
        if (!busy || parts <= 1) {
            for (int p = 0; p < parts; ++p) f(p);
            return;
        }
        job_ = [](void* ctx, int p) { (*static_cast<F*>(ctx))(p); };
        context_ = &f;
        failure_ = nullptr;
        pending_.store(parts - 1, std::memory_order_relaxed);
        // One word says both which job this is and how many take part in it.
        generation_.store(((generation_.load(std::memory_order_relaxed) >> parts_bits) + 1) << parts_bits |
                              static_cast<std::uint64_t>(parts),
                          std::memory_order_release);
        generation_.notify_all();
        try {
            f(0);
        } catch (...) {
            record(std::current_exception());
        }
        await([&] { return pending_.load(std::memory_order_acquire) == 0; },
              [&] {
                  if (const int left = pending_.load(std::memory_order_acquire); left != 0) pending_.wait(left);
              });
        if (failure_) std::rethrow_exception(failure_);
    }

private:
    static constexpr int parts_bits = 16, pure_spins = 256;

    static void pause() {
#if defined(__x86_64__) || defined(_M_X64)
        _mm_pause();
#else
        std::this_thread::yield();
#endif
    }
    /// Spins until done() for up to spin_for, then calls sleep() until done().
    template <class Done, class Sleep>
    static void await(Done done, Sleep sleep) {
        const auto until = std::chrono::steady_clock::now() + spin_for;
        for (int i = 0; !done(); ++i) {
            // A short spin, then yields: where more threads than cores are runnable (two
            // backends on the same cores), a waiting thread gives its core away.
            if (i < pure_spins) pause();
            else std::this_thread::yield();
            if (i % 64 == 63 && std::chrono::steady_clock::now() > until) {
                while (!done()) sleep();
                return;
            }
        }
    }
    void record(std::exception_ptr e) {
        const std::lock_guard lock(failure_mutex_);
        if (!failure_) failure_ = e;
    }
    void work(int w) {
        std::uint64_t seen = 0;
        for (;;) {
            await([&] { return generation_.load(std::memory_order_acquire) != seen; },
                  [&] { generation_.wait(seen, std::memory_order_acquire); });
            seen = generation_.load(std::memory_order_acquire);
            if (stopping_.load(std::memory_order_relaxed)) return;
            if (w >= static_cast<int>(seen & ((std::uint64_t{1} << parts_bits) - 1))) continue;
            try {
                job_(context_, w);
            } catch (...) {
                record(std::current_exception());
            }
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
        }
    }

    std::vector<std::thread> threads_;
    std::mutex busy_, failure_mutex_;
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    std::atomic<bool> stopping_{false};
    // The job: written by run() before generation_ moves on, read by the workers after.
    void (*job_)(void*, int) = nullptr;
    void* context_ = nullptr;
    std::exception_ptr failure_;
};

} // namespace hashee::detail
