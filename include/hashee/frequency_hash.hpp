#pragma once
// The frequency hash: token ids counted over an unlabelled corpus (special tokens excluded),
// most frequent first; frequent tokens exit earliest. Ids the corpus never shows exit at L.

#include <algorithm>
#include <numeric>

#include <hashee/bucketing.hpp>
#include <hashee/hash_policy.hpp>
#include <hashee/packed_batch.hpp>

namespace hashee {

class frequency_hash : public table_hash {
public:
    frequency_hash(const hash_setup& s, const packed_batch& corpus, const bucketing& b)
        : table_hash(make_exit_table(ranking(s, corpus), s, b, "frequency")) {}

    /// Ids seen in the corpus, most frequent first (ties: smaller id first).
    static std::vector<std::int32_t> ranking(const hash_setup& s, const packed_batch& corpus) {
        const auto counts = detail::occurrence_counts(corpus, s.vocab_size);
        std::vector<std::int32_t> ids;
        for (std::int32_t id = 0; id < s.vocab_size; ++id)
            if (counts[static_cast<std::size_t>(id)] > 0 && !s.is_special(id)) ids.push_back(id);
        std::stable_sort(ids.begin(), ids.end(), [&](std::int32_t a, std::int32_t b) {
            return counts[static_cast<std::size_t>(a)] > counts[static_cast<std::size_t>(b)];
        });
        return ids;
    }
};

static_assert(hash_policy<frequency_hash>);

} // namespace hashee
