#pragma once
// Where text meets the model: tokenizer encodings packed into the padding-free batch every
// layer runs on.

#include <span>
#include <string>

#include <hashee/core/error.hpp>
#include <hashee/core/packed_batch.hpp>
#include <hashee/text/tokenizer.hpp>

namespace hashee {

inline packed_batch pack(std::span<const encoding> encodings) {
    packed_batch b;
    for (const encoding& e : encodings) b.push_back(e.ids, e.type_ids);
    return b;
}

/// Takes the real tokens (mask == 1) of a right-padded batch.
inline packed_batch pack(const encoded_batch& padded) {
    packed_batch b;
    for (std::size_t s = 0; s < padded.batch; ++s) {
        const std::size_t row = s * padded.seq_len;
        std::size_t n = 0;
        while (n < padded.seq_len && padded.mask[row + n]) ++n;
        for (std::size_t j = n; j < padded.seq_len; ++j)
            if (padded.mask[row + j])
                throw input_error("packed_batch: row " + std::to_string(s) +
                                  " of the attention mask is not right-padded (a real token at position " +
                                  std::to_string(j) + " follows padding)");
        b.push_back(std::span(padded.ids).subspan(row, n), std::span(padded.type_ids).subspan(row, n));
    }
    return b;
}

} // namespace hashee
