#pragma once
// The frequency hash: token ids counted over an unlabelled corpus (special tokens excluded),
// most frequent first; frequent tokens exit earliest. Ids the corpus never shows exit at L.
// frequency_hash builds its exit table (named "frequency").

#include <hashee/core/packed_batch.hpp>
#include <hashee/hash/bucketing.hpp>
#include <hashee/hash/exit_table.hpp>

namespace hashee {

/// Ids seen in the corpus, most frequent first (ties: smaller id first).
inline std::vector<std::int32_t> frequency_ranking(const hash_setup& s, const packed_batch& corpus) {
    return detail::rank_seen_ids(s, corpus, [](std::int32_t, std::int64_t count) { return count; });
}

/// The frequency hash's exit table; input_error E70 for a corpus without a non-special token.
inline exit_table frequency_hash(const hash_setup& s, const packed_batch& corpus, const bucketing& b) {
    detail::require_text(s, corpus, "frequency_hash");
    return make_exit_table(frequency_ranking(s, corpus), s, b, "frequency");
}

} // namespace hashee
