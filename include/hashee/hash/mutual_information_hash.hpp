#pragma once
// The mutual-information hash: from a labelled corpus (one label per sequence, any number of
// classes up to mutual_information_max_classes), MI(x; y) = sum_y p(x, y) log(p(x, y) /
// (p(x) p(y))) over token occurrences; tokens with high MI exit earliest. Unlike the original
// code, every class counts and every joint occurrence is counted. mutual_information_hash
// builds its exit table (named "mutual_information").

#include <algorithm>
#include <cmath>
#include <span>

#include <hashee/core/packed_batch.hpp>
#include <hashee/hash/bucketing.hpp>
#include <hashee/hash/exit_table.hpp>

namespace hashee {

/// The most classes the mutual-information hash takes: it holds vocabulary x classes counts,
/// so a class count read from data (a label of 1e9) must not size that allocation.
inline constexpr int mutual_information_max_classes = 1024;

/// MI(x; y) of every id (0 for ids never seen). `classes`: 2..mutual_information_max_classes
/// (input_error E72 above it); every label in [0, classes) (input_error E72).
inline std::vector<double> mutual_information_scores(const hash_setup& s, const packed_batch& corpus,
                                                     std::span<const int> labels, int classes) {
    if (classes < 2)
        throw usage_error("U24", "mutual_information_hash: needs at least 2 classes, got " + std::to_string(classes));
    if (classes > mutual_information_max_classes)
        throw input_error("E72", "mutual_information_hash: " + std::to_string(classes) + " classes; at most " +
                                     std::to_string(mutual_information_max_classes) +
                                     " are supported (labels are class indices 0, 1, ...)");
    if (static_cast<index_t>(labels.size()) != corpus.sequences())
        throw usage_error("U24", "mutual_information_hash: " + std::to_string(labels.size()) + " labels for " +
                                     std::to_string(corpus.sequences()) + " sequences");
    const auto V = static_cast<std::size_t>(s.vocab_size), C = static_cast<std::size_t>(classes);
    std::vector<double> joint(V * C, 0.0), per_class(C, 0.0);
    double total = 0;
    for (index_t q = 0; q < corpus.sequences(); ++q) {
        const int y = labels[static_cast<std::size_t>(q)];
        if (y < 0 || y >= classes)
            throw input_error("E72", "mutual_information_hash: label " + std::to_string(y) + " of sequence " +
                                         std::to_string(q) + " is outside [0, " + std::to_string(classes) + ")");
        for (index_t t = corpus.offsets[q]; t < corpus.offsets[q + 1]; ++t) {
            const std::int32_t id = corpus.ids[t];
            if (id < 0 || id >= s.vocab_size || s.is_special(id)) continue;
            joint[static_cast<std::size_t>(id) * C + static_cast<std::size_t>(y)] += 1;
            per_class[static_cast<std::size_t>(y)] += 1;
            total += 1;
        }
    }
    std::vector<double> mi(V, 0.0);
    if (total == 0) return mi;
    for (std::size_t x = 0; x < V; ++x) {
        double px = 0;
        for (std::size_t y = 0; y < C; ++y) px += joint[x * C + y];
        if (px == 0) continue;
        px /= total;
        for (std::size_t y = 0; y < C; ++y) {
            const double pxy = joint[x * C + y] / total, py = per_class[y] / total;
            if (pxy > 0) mi[x] += pxy * std::log(pxy / (px * py));
        }
    }
    return mi;
}

/// Ids seen in the corpus, highest MI first (ties: smaller id first).
inline std::vector<std::int32_t> mutual_information_ranking(const hash_setup& s, const packed_batch& corpus,
                                                            std::span<const int> labels, int classes) {
    const auto mi = mutual_information_scores(s, corpus, labels, classes);
    return detail::rank_seen_ids(s, corpus, [&](std::int32_t id, std::int64_t) { return mi[static_cast<std::size_t>(id)]; });
}

/// The mutual-information hash's exit table; input_error E70 for a corpus without a
/// non-special token.
inline exit_table mutual_information_hash(const hash_setup& s, const packed_batch& corpus, std::span<const int> labels,
                                          int classes, const bucketing& b) {
    detail::require_text(s, corpus, "mutual_information_hash");
    return make_exit_table(mutual_information_ranking(s, corpus, labels, classes), s, b, "mutual_information");
}

} // namespace hashee
