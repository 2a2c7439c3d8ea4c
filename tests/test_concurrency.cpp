// One loaded model shared by several threads at once, as the README promises ("a loaded model
// is immutable: share it across threads by const&; the backend can be shared too, or each
// thread can have its own"). Four threads run mixed batches (sizes 1..16, different SST-2 dev
// sentences) under four exit policies (dense, frequency hash with keep, random hash with drop,
// a fully random table), several rounds each, in a different order per thread; two threads share
// one eigen_cpu(2), the other two own theirs (one eigen_cpu(1), one eigen_cpu(2)). Every
// concurrent result must be bit-identical to the same forward run single-threaded beforehand
// on a backend with the same thread count (different thread counts split the products
// differently, so they may differ in the last bits). Run under ThreadSanitizer by
// scripts/sanitize.sh (docs/sanitizers.md).

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "hash_fixture.hpp"

using namespace hashee;
using hashee::test::hash_fixture;

namespace {

// Sanitizers slow the forward 5-20x; one round already overlaps every kind of work.
constexpr int rounds = test::under_sanitizer ? 1 : 3;
constexpr std::size_t jobs_per_thread = test::under_sanitizer ? 4 : 8;
constexpr int thread_count = 4;

/// The policies the threads mix; `run` dispatches on the index.
struct policies {
    no_exit dense;
    hash_exit<kv_semantics::keep> frequency;
    hash_exit<kv_semantics::drop> random;
    hash_exit<> table;
    static constexpr int count = 4;

    explicit policies(const hash_fixture& f)
        : frequency(test::frequency_factory::make(f)), random(test::random_factory::make(f)),
          table(test::fully_random_table_factory::make(f)) {}

    encoder_output run(int which, const eigen_cpu& cpu, const hash_fixture& f, const packed_batch& b) const {
        switch (which) {
        case 0: return f.m.encoder().forward(cpu, b, dense);
        case 1: return f.m.encoder().forward(cpu, b, frequency);
        case 2: return f.m.encoder().forward(cpu, b, random);
        default: return f.m.encoder().forward(cpu, b, table);
        }
    }
};

struct job {
    int policy;       ///< index into policies
    std::size_t first; ///< first SST-2 dev sentence
    std::size_t size;  ///< batch size, 1..16
};

/// Bit-identical: every field, floats compared with == (no tolerance).
bool identical(const encoder_output& a, const encoder_output& b) {
    if (a.hidden_size != b.hidden_size || a.offsets != b.offsets || a.hidden != b.hidden || a.pooled != b.pooled ||
        a.exits != b.exits)
        return false;
    if (a.cost.actual.total() != b.cost.actual.total() || a.cost.dense.total() != b.cost.dense.total() ||
        a.cost.layers.size() != b.cost.layers.size())
        return false;
    for (std::size_t l = 0; l < a.cost.layers.size(); ++l)
        if (a.cost.layers[l].active_rows != b.cost.layers[l].active_rows ||
            a.cost.layers[l].key_rows != b.cost.layers[l].key_rows ||
            a.cost.layers[l].all_rows != b.cost.layers[l].all_rows)
            return false;
    return true;
}

} // namespace

TEST_CASE("one model shared by concurrent threads gives bit-identical results", "[concurrency]") {
    const auto& f = hash_fixture::get();
    const policies pol(f);

    // Backends: one eigen_cpu(2) shared by threads 0 and 1; thread 2 owns an eigen_cpu(1),
    // thread 3 an eigen_cpu(2). The references run on their own backends of the same sizes.
    const eigen_cpu shared_cpu(2);
    const eigen_cpu own_cpu1(1), own_cpu2(2);
    const eigen_cpu ref_cpu1(1), ref_cpu2(2);
    const eigen_cpu* thread_cpu[thread_count] = {&shared_cpu, &shared_cpu, &own_cpu1, &own_cpu2};
    const eigen_cpu* thread_ref[thread_count] = {&ref_cpu2, &ref_cpu2, &ref_cpu1, &ref_cpu2};

    // Each thread's jobs: every policy, sizes spread over 1..16, different sentences per thread.
    std::vector<std::vector<job>> jobs(thread_count);
    std::vector<std::vector<packed_batch>> batches(thread_count);
    std::vector<std::vector<encoder_output>> expected(thread_count);
    for (int t = 0; t < thread_count; ++t) {
        for (std::size_t j = 0; j < jobs_per_thread; ++j) {
            const std::size_t size = 1 + (j * 5 + static_cast<std::size_t>(t) * 3) % 16;
            const job jb{static_cast<int>((j + static_cast<std::size_t>(t)) % policies::count),
                         (static_cast<std::size_t>(t) * 211 + j * 37) % f.dev.size(), size};
            jobs[static_cast<std::size_t>(t)].push_back(jb);
            batches[static_cast<std::size_t>(t)].push_back(f.dev_batch(jb.first, jb.size));
        }
    }
    // Sizes 1 and 16 both occur, and so does every policy on every kind of backend.
    bool saw_1 = false, saw_16 = false;
    for (const auto& js : jobs)
        for (const job& jb : js) saw_1 |= jb.size == 1, saw_16 |= jb.size == 16;
    REQUIRE(saw_1);
    REQUIRE(saw_16);

    // Single-threaded first: the expected result of every job, one at a time.
    for (int t = 0; t < thread_count; ++t)
        for (std::size_t j = 0; j < jobs_per_thread; ++j) {
            const auto ti = static_cast<std::size_t>(t);
            expected[ti].push_back(pol.run(jobs[ti][j].policy, *thread_ref[t], f, batches[ti][j]));
            // A re-run on the same backend is already bit-identical (the test's premise).
            REQUIRE(identical(expected[ti][j], pol.run(jobs[ti][j].policy, *thread_ref[t], f, batches[ti][j])));
        }

    // Then all threads at once, each walking its jobs in a different order every round.
    std::atomic<int> ready{0};
    std::mutex failures_mutex;
    std::vector<std::string> failures;
    std::atomic<int> forwards{0};
    auto worker = [&](int t) {
        const auto ti = static_cast<std::size_t>(t);
        ready.fetch_add(1);
        while (ready.load() < thread_count) std::this_thread::yield(); // start together
        try {
            for (int r = 0; r < rounds; ++r)
                for (std::size_t k = 0; k < jobs_per_thread; ++k) {
                    const std::size_t j = (k * (2 * static_cast<std::size_t>(t) + 1) + static_cast<std::size_t>(r)) % jobs_per_thread;
                    const encoder_output out = pol.run(jobs[ti][j].policy, *thread_cpu[t], f, batches[ti][j]);
                    forwards.fetch_add(1);
                    if (!identical(out, expected[ti][j])) {
                        std::ostringstream msg;
                        msg << "thread " << t << " round " << r << " job " << j << " (policy " << jobs[ti][j].policy
                            << ", batch " << jobs[ti][j].size << " from " << jobs[ti][j].first << ", backend threads "
                            << thread_cpu[t]->threads() << ") differs from its single-threaded twin";
                        const std::lock_guard lock(failures_mutex);
                        failures.push_back(msg.str());
                    }
                }
        } catch (const std::exception& e) {
            const std::lock_guard lock(failures_mutex);
            failures.push_back("thread " + std::to_string(t) + " threw: " + e.what());
        }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < thread_count; ++t) threads.emplace_back(worker, t);
    for (auto& th : threads) th.join();

    for (const auto& msg : failures) FAIL_CHECK(msg);
    CHECK(failures.empty());
    CHECK(forwards.load() == thread_count * rounds * static_cast<int>(jobs_per_thread));
}
