#pragma once
// Random hashes. random_hash (consistent): a seeded random permutation of the vocabulary cut
// into buckets, so each id gets one fixed, uniformly random bucket; it builds an exit table.
// random_inconsistent_hash (a hash_policy, not a table):
// the paper's ablation: a fresh random exit for every occurrence, so training and inference
// disagree; it draws from the per-layer distribution of a consistent table on a corpus, so both
// cost the same FLOPs on average.

#include <atomic>
#include <cmath>
#include <cstdint>
#include <numeric>

#include <hashee/core/detail/random.hpp>
#include <hashee/hash/bucketing.hpp>
#include <hashee/hash/hash_policy.hpp>
#include <hashee/core/packed_batch.hpp>

namespace hashee {

/// Every non-special id, in a seeded random order.
inline std::vector<std::int32_t> random_ranking(const hash_setup& s, std::uint64_t seed) {
    std::vector<std::int32_t> ids;
    for (std::int32_t id = 0; id < s.vocab_size; ++id)
        if (!s.is_special(id)) ids.push_back(id);
    detail::random_source(seed).shuffle(ids);
    return ids;
}

/// The consistent random hash's exit table (named "random").
inline exit_table random_hash(const hash_setup& s, std::uint64_t seed, const bucketing& b) {
    return make_exit_table(random_ranking(s, seed), s, b, "random");
}

class random_inconsistent_hash {
public:
    /// Draws exits from `layer_probabilities` (index 0 is layer 1); special tokens exit at L.
    random_inconsistent_hash(const hash_setup& s, std::vector<double> layer_probabilities, std::uint64_t seed)
        : setup_(s), cumulative_(std::move(layer_probabilities)), seed_(seed) {
        if (s.num_layers < 1 || static_cast<int>(cumulative_.size()) != s.num_layers)
            throw usage_error("U25", "random_inconsistent_hash: needs one probability per layer (" +
                                         std::to_string(s.num_layers) + "), got " + std::to_string(cumulative_.size()));
        for (const double p : cumulative_)
            if (!(p >= 0) || !std::isfinite(p))
                throw usage_error("U25", "random_inconsistent_hash: a layer probability is negative or not finite");
        std::partial_sum(cumulative_.begin(), cumulative_.end(), cumulative_.begin());
        if (!(cumulative_.back() > 0)) throw usage_error("U25", "random_inconsistent_hash: probabilities sum to zero");
        for (double& c : cumulative_) c /= cumulative_.back();
    }
    random_inconsistent_hash(const random_inconsistent_hash& o)
        : setup_(o.setup_), cumulative_(o.cumulative_), seed_(o.seed_), calls_(o.calls_.load()) {}

    /// The same exit distribution (over non-special occurrences of `corpus`) as `consistent`;
    /// input_error E70 for a corpus without a non-special token.
    static random_inconsistent_hash like(const exit_table& consistent, const hash_setup& s, const packed_batch& corpus,
                                         std::uint64_t seed) {
        detail::require_text(s, corpus, "random_inconsistent_hash");
        if (consistent.num_layers() != s.num_layers)
            throw usage_error("U25", "random_inconsistent_hash: a table of " + std::to_string(consistent.num_layers()) +
                                         " layers for a setup of " + std::to_string(s.num_layers));
        std::vector<double> p(static_cast<std::size_t>(s.num_layers), 0.0);
        for (const std::int32_t id : corpus.ids)
            if (!s.is_special(id)) p[static_cast<std::size_t>(consistent.exit_layer(id) - 1)] += 1;
        return random_inconsistent_hash(s, std::move(p), seed);
    }

    std::string_view name() const { return "random_inconsistent"; }
    int num_layers() const { return setup_.num_layers; }

    /// A fresh draw for every occurrence: each call uses its own random stream.
    void assign(std::span<const std::int32_t> ids, std::span<std::uint8_t> exits) const {
        if (ids.size() != exits.size())
            throw usage_error("U21", "random_inconsistent_hash::assign: " + std::to_string(ids.size()) + " ids but " +
                                         std::to_string(exits.size()) + " exits");
        detail::random_source rng(seed_ ^ (0x9E3779B97F4A7C15ull * (calls_.fetch_add(1) + 1)));
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (setup_.is_special(ids[i])) {
                exits[i] = static_cast<std::uint8_t>(setup_.num_layers);
                continue;
            }
            const double r = rng.uniform();
            std::size_t l = 0;
            while (l + 1 < cumulative_.size() && r >= cumulative_[l]) ++l;
            exits[i] = static_cast<std::uint8_t>(l + 1);
        }
    }

private:
    hash_setup setup_;
    std::vector<double> cumulative_;
    std::uint64_t seed_;
    mutable std::atomic<std::uint64_t> calls_{0};
};

static_assert(hash_policy<random_inconsistent_hash>);

} // namespace hashee
