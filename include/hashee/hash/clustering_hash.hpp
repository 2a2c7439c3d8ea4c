#pragma once
// The clustering hash: k-means++ (seeded, with restarts) over the rows of the word-embedding
// matrix; clusters ordered by the ascending sum of their members' L2 norms, the first exiting
// earliest. Needs no corpus. With the paper's bucketing the cluster of rank r (of k) exits at
// layer ceil((r + 1) L / k); with a target speed-up the cluster order ranks the ids and the
// boundaries move. word_clusters holds one k-means run, so several tables can share it;
// clustering_hash builds the exit table (named "clustering").

#include <hashee/hash/bucketing.hpp>
#include <hashee/backend/eigen_cpu.hpp>
#include <hashee/hash/exit_table.hpp>
#include <hashee/hash/kmeans.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee {

struct clustering_options {
    int restarts = 5;
    int max_iterations = 100;
    std::uint64_t seed = 0;
};

/// k clusters of the vocabulary's word embeddings, in exit order.
struct word_clusters {
    int k = 0;
    std::vector<int> assignment; ///< cluster of each token id
    std::vector<int> rank;       ///< rank of each cluster: 0 exits earliest

    /// `word_embeddings`: [vocab_size, hidden] in host memory.
    static word_clusters compute(const_matrix_view<float> word_embeddings, int k, const eigen_cpu& cpu,
                                 const clustering_options& o = {}) {
        const kmeans_result km = kmeans(word_embeddings, {.k = k, .restarts = o.restarts, .max_iterations = o.max_iterations,
                                                          .tolerance = 1e-6, .seed = o.seed}, cpu);
        word_clusters c{k, km.assignment, std::vector<int>(static_cast<std::size_t>(k))};
        const std::vector<int> order = order_clusters_by_norm_sum(word_embeddings, km.assignment, k);
        for (int r = 0; r < k; ++r) c.rank[static_cast<std::size_t>(order[static_cast<std::size_t>(r)])] = r;
        return c;
    }
};

/// The number of clusters the clustering hash makes for a bucketing: the bucket count of the
/// paper's bucketing (when given), else one per layer.
inline int clusters_for(const hash_setup& s, const bucketing& b) {
    const auto* equal = std::get_if<equal_type_buckets>(&b);
    return equal && equal->buckets > 0 ? equal->buckets : s.num_layers;
}

/// The clustering hash's exit table (named "clustering") from clusters already computed.
inline exit_table clustering_hash(const hash_setup& s, const word_clusters& c, const bucketing& b) {
    if (static_cast<std::int32_t>(c.assignment.size()) != s.vocab_size)
        throw usage_error("U22", "clustering_hash: clusters of " + std::to_string(c.assignment.size()) +
                                     " ids for a vocabulary of " + std::to_string(s.vocab_size));
    const auto rank_of = [&](std::int32_t id) { return c.rank[static_cast<std::size_t>(c.assignment[static_cast<std::size_t>(id)])]; };
    if (std::holds_alternative<equal_type_buckets>(b)) {
        exit_table t(s.vocab_size, s.num_layers, "clustering");
        for (std::int32_t id = 0; id < s.vocab_size; ++id) t.set(id, ((rank_of(id) + 1) * s.num_layers + c.k - 1) / c.k);
        t.force_last(s.special_ids);
        return t;
    }
    std::vector<std::int32_t> ranking;
    for (std::int32_t id = 0; id < s.vocab_size; ++id)
        if (!s.is_special(id)) ranking.push_back(id);
    std::stable_sort(ranking.begin(), ranking.end(), [&](std::int32_t a, std::int32_t b2) { return rank_of(a) < rank_of(b2); });
    return make_exit_table(ranking, s, b, "clustering");
}

/// Clusters the embeddings (k = clusters_for(s, b)) and builds the table from them.
inline exit_table clustering_hash(const hash_setup& s, const_matrix_view<float> word_embeddings, const bucketing& b,
                                  const eigen_cpu& cpu, const clustering_options& o = {}) {
    return clustering_hash(s, word_clusters::compute(word_embeddings, clusters_for(s, b), cpu, o), b);
}

} // namespace hashee
