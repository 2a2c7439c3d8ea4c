#pragma once
// The frequency hash: token ids counted over an unlabelled corpus (special tokens excluded),
// most frequent first; frequent tokens exit earliest. Ids the corpus never shows exit at L.

#include <hashee/hash/bucketing.hpp>
#include <hashee/hash/hash_policy.hpp>
#include <hashee/core/packed_batch.hpp>

namespace hashee {

class frequency_hash : public table_hash {
public:
    frequency_hash(const hash_setup& s, const packed_batch& corpus, const bucketing& b)
        : table_hash(make_exit_table(ranking(s, corpus), s, b, "frequency")) {}

    /// Ids seen in the corpus, most frequent first (ties: smaller id first).
    static std::vector<std::int32_t> ranking(const hash_setup& s, const packed_batch& corpus) {
        return detail::rank_seen_ids(s, corpus, [](std::int32_t, std::int64_t count) { return count; });
    }
};

static_assert(hash_policy<frequency_hash>);

} // namespace hashee
