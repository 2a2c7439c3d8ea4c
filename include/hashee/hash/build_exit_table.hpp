#pragma once
// One entry point for every consistent hash: build_exit_table(kind, setup, bucketing, sources)
// builds the exit table of a hash kind (by name: parse_hash_kind) from what that kind needs,
// gathered in hash_sources. Tables are those of the kind's own builder (frequency_hash,
// mutual_information_hash, clustering_hash, random_hash), bit for bit.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include <hashee/backend/eigen_cpu.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>
#include <hashee/core/packed_batch.hpp>
#include <hashee/hash/bucketing.hpp>
#include <hashee/hash/clustering_hash.hpp>
#include <hashee/hash/exit_table.hpp>
#include <hashee/hash/frequency_hash.hpp>
#include <hashee/hash/hash_kind.hpp>
#include <hashee/hash/mutual_information_hash.hpp>
#include <hashee/hash/random_hash.hpp>
#include <hashee/model/hash_setup.hpp>

namespace hashee {

/// What the hash kinds are built from; each kind reads only its own fields.
struct hash_sources {
    const packed_batch* corpus = nullptr;      ///< frequency, mutual_information: the corpus ranked
    std::span<const int> labels{};             ///< mutual_information: one class per corpus sequence
    int classes = 0;                           ///< mutual_information: 0 = one more than the largest label (>= 2)
    const_matrix_view<float> word_embeddings{}; ///< clustering: [vocab_size, hidden] in host memory
    const eigen_cpu* cpu = nullptr;            ///< clustering: runs the k-means
    std::uint64_t seed = 0;                    ///< clustering (k-means), random (permutation)
    /// clustering: a k-means run kept between calls. When it holds clusters of the k this
    /// bucketing needs they are reused; otherwise they are computed and stored here.
    std::optional<word_clusters>* clusters = nullptr;
};

namespace detail {
/// The class count of labels: 1 + the largest (at least 2), in 64 bits so that no label
/// overflows it; mutual_information_scores bounds it.
inline int classes_of(std::span<const int> labels) {
    std::int64_t c = 2;
    for (const int l : labels) c = std::max<std::int64_t>(c, static_cast<std::int64_t>(l) + 1);
    if (c > mutual_information_max_classes)
        throw input_error("E72", "mutual_information_hash: a label of " + std::to_string(c - 1) + " asks for " +
                                     std::to_string(c) + " classes; at most " +
                                     std::to_string(mutual_information_max_classes) +
                                     " are supported (labels are class indices 0, 1, ...)");
    return static_cast<int>(c);
}
} // namespace detail

/// The exit table of a consistent hash kind. usage_error U20 when `src` lacks what the kind
/// needs or the kind has no table (random_inconsistent: see random_inconsistent_hash::like);
/// otherwise the errors of the kind's builder (E70 for a corpus without text, E72 for labels).
inline exit_table build_exit_table(hash_kind kind, const hash_setup& s, const bucketing& b, const hash_sources& src) {
    const auto missing = [&](const char* what) {
        return usage_error("U20", "build_exit_table: the " + std::string(to_string(kind)) + " hash needs " + what);
    };
    switch (kind) {
    case hash_kind::frequency:
        if (!src.corpus) throw missing("a corpus (hash_sources::corpus)");
        return frequency_hash(s, *src.corpus, b);
    case hash_kind::mutual_information:
        if (!src.corpus) throw missing("a corpus (hash_sources::corpus)");
        if (src.labels.empty() && src.corpus->sequences() > 0) throw missing("labels (hash_sources::labels)");
        return mutual_information_hash(s, *src.corpus, src.labels,
                                       src.classes > 0 ? src.classes : detail::classes_of(src.labels), b);
    case hash_kind::clustering: {
        const int k = clusters_for(s, b);
        if (src.clusters && *src.clusters && (*src.clusters)->k == k) return clustering_hash(s, **src.clusters, b);
        if (src.word_embeddings.empty()) throw missing("the word embeddings (hash_sources::word_embeddings)");
        if (!src.cpu) throw missing("a CPU backend for its k-means (hash_sources::cpu)");
        word_clusters c = word_clusters::compute(src.word_embeddings, k, *src.cpu, {.seed = src.seed});
        if (!src.clusters) return clustering_hash(s, c, b);
        *src.clusters = std::move(c);
        return clustering_hash(s, **src.clusters, b);
    }
    case hash_kind::random: return random_hash(s, src.seed, b);
    case hash_kind::random_inconsistent:
        throw usage_error("U20", "build_exit_table: the random_inconsistent hash draws afresh for every occurrence and "
                                 "has no table (random_inconsistent_hash::like draws like a table)");
    }
    throw usage_error("U20", "build_exit_table: unknown hash kind");
}

} // namespace hashee
