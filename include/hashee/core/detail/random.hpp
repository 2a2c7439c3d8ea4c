#pragma once
// The one random source of hashee. Every draw comes from std::mt19937_64, whose output sequence
// the C++ standard fixes, through the transformations below, which are ours: the standard
// library's distributions are not used, so the same seed gives the same numbers with every
// standard library, on every machine and at every thread count (a stream never depends on
// which thread draws from it).

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <utility>
#include <vector>

namespace hashee::detail {

/// SplitMix64's finaliser: a well-mixed 64-bit value from any 64-bit value (e.g. the seed of
/// one of several independent streams: stream_seed(seed, k)).
constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/// The seed of stream k of a seed: independent streams for restarts, layers or calls.
constexpr std::uint64_t stream_seed(std::uint64_t seed, std::uint64_t k) noexcept {
    return splitmix64(seed ^ splitmix64(k));
}

class random_source {
public:
    explicit random_source(std::uint64_t seed) : engine_(seed) {}

    /// The next raw 64-bit draw.
    std::uint64_t next() { return engine_(); }

    /// Uniform integer in [0, n), n >= 1, by rejection (no modulo bias).
    std::uint64_t below(std::uint64_t n) {
        const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
        const std::uint64_t limit = max - max % n;
        std::uint64_t v;
        do {
            v = engine_();
        } while (v >= limit);
        return v % n;
    }

    /// Uniform double in [0, 1) from the top 53 bits of one draw.
    double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

    /// Uniform double in [lo, hi).
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

    /// Normal(mean, sigma) by Box-Muller from two draws (no cached second value, so every call
    /// takes exactly two draws). Its bits depend on std::log, std::sqrt and std::cos: the same
    /// with every standard library, and with every libm that rounds them correctly.
    double normal(double mean = 0.0, double sigma = 1.0) {
        const double u1 = 1.0 - uniform(); // (0, 1]: log never sees 0
        const double u2 = uniform();
        return mean + sigma * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }

    /// Fisher-Yates: every permutation equally likely.
    template <class T>
    void shuffle(std::vector<T>& v) {
        for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<std::size_t>(below(i))]);
    }

private:
    std::mt19937_64 engine_;
};

} // namespace hashee::detail
