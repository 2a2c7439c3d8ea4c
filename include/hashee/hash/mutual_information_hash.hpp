#pragma once
// The mutual-information hash: from a labelled corpus (one label per sequence, any number of
// classes), MI(x; y) = sum_y p(x, y) log(p(x, y) / (p(x) p(y))) over token occurrences; tokens
// with high MI exit earliest. Unlike the original code, every class counts and every joint
// occurrence is counted.

#include <algorithm>
#include <cmath>
#include <span>

#include <hashee/hash/bucketing.hpp>
#include <hashee/hash/hash_policy.hpp>
#include <hashee/core/packed_batch.hpp>

namespace hashee {

class mutual_information_hash : public table_hash {
public:
    mutual_information_hash(const hash_setup& s, const packed_batch& corpus, std::span<const int> labels, int classes,
                            const bucketing& b)
        : table_hash(make_exit_table(ranking(s, corpus, labels, classes), s, b, "mutual_information")) {}

    /// MI(x; y) of every id (0 for ids never seen).
    static std::vector<double> scores(const hash_setup& s, const packed_batch& corpus, std::span<const int> labels,
                                      int classes) {
        if (classes < 2) throw input_error("mutual_information_hash: needs at least 2 classes");
        if (static_cast<index_t>(labels.size()) != corpus.sequences())
            throw input_error("mutual_information_hash: " + std::to_string(labels.size()) + " labels for " +
                              std::to_string(corpus.sequences()) + " sequences");
        const auto V = static_cast<std::size_t>(s.vocab_size), C = static_cast<std::size_t>(classes);
        std::vector<double> joint(V * C, 0.0), per_class(C, 0.0);
        double total = 0;
        for (index_t q = 0; q < corpus.sequences(); ++q) {
            const int y = labels[static_cast<std::size_t>(q)];
            if (y < 0 || y >= classes)
                throw input_error("mutual_information_hash: label " + std::to_string(y) + " of sequence " +
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
    static std::vector<std::int32_t> ranking(const hash_setup& s, const packed_batch& corpus, std::span<const int> labels,
                                             int classes) {
        const auto mi = scores(s, corpus, labels, classes);
        return detail::rank_seen_ids(s, corpus, [&](std::int32_t id, std::int64_t) { return mi[static_cast<std::size_t>(id)]; });
    }
};

static_assert(hash_policy<mutual_information_hash>);

} // namespace hashee
