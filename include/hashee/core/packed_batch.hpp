#pragma once
// A batch with the padding taken out: the real tokens of every sequence, one after another,
// with offsets[s]..offsets[s+1] the rows of sequence s. This is the layout every layer runs on.

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <hashee/core/config.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee {

struct packed_batch {
    std::vector<std::int32_t> ids, type_ids, positions; ///< one entry per real token
    std::vector<std::int32_t> offsets{0};              ///< sequences() + 1 entries

    index_t sequences() const { return static_cast<index_t>(offsets.size()) - 1; }
    index_t tokens() const { return static_cast<index_t>(ids.size()); }
    index_t length(index_t s) const { return offsets[s + 1] - offsets[s]; }
    index_t max_length() const {
        index_t m = 0;
        for (index_t s = 0; s < sequences(); ++s) m = std::max(m, length(s));
        return m;
    }

    /// Appends one sequence (token ids and token type ids of equal length; usage_error U05 when
    /// they differ).
    void push_back(std::span<const std::int32_t> seq_ids, std::span<const std::int32_t> seq_types) {
        if (seq_ids.size() != seq_types.size())
            throw usage_error("U05", "packed_batch: sequence " + std::to_string(sequences()) + " has " +
                              std::to_string(seq_ids.size()) + " token ids but " + std::to_string(seq_types.size()) +
                              " token type ids");
        ids.insert(ids.end(), seq_ids.begin(), seq_ids.end());
        type_ids.insert(type_ids.end(), seq_types.begin(), seq_types.end());
        for (std::size_t p = 0; p < seq_ids.size(); ++p) positions.push_back(static_cast<std::int32_t>(p));
        offsets.push_back(static_cast<std::int32_t>(ids.size()));
    }

    /// Throws input_error (E15 an empty batch or sequence, E13 too long, E14 an id outside its
    /// table) unless every sequence is non-empty, fits the position table, and
    /// every token id and token type id is inside its embedding table.
    void validate(const bert_config& c) const {
        if (sequences() == 0) throw input_error("E15", "empty batch: no sequences to encode");
        for (index_t s = 0; s < sequences(); ++s) {
            if (length(s) == 0) throw input_error("E15", "sequence " + std::to_string(s) + " is empty");
            if (length(s) > c.max_position_embeddings)
                throw input_error("E13", "sequence " + std::to_string(s) + " has " + std::to_string(length(s)) +
                                  " tokens; the model takes at most " + std::to_string(c.max_position_embeddings));
            for (index_t t = offsets[s]; t < offsets[s + 1]; ++t) {
                if (ids[t] < 0 || ids[t] >= c.vocab_size)
                    throw input_error("E14", "sequence " + std::to_string(s) + ", position " + std::to_string(t - offsets[s]) +
                                      ": token id " + std::to_string(ids[t]) + " is outside the vocabulary [0, " +
                                      std::to_string(c.vocab_size) + ")");
                if (type_ids[t] < 0 || type_ids[t] >= c.type_vocab_size)
                    throw input_error("E14", "sequence " + std::to_string(s) + ", position " + std::to_string(t - offsets[s]) +
                                      ": token type id " + std::to_string(type_ids[t]) + " is outside [0, " +
                                      std::to_string(c.type_vocab_size) + ")");
            }
        }
    }
};

} // namespace hashee
