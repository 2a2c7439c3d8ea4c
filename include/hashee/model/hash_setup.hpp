#pragma once
// What every HashEE hash is built for, as a model gives it (model::hash_setup_for): the
// vocabulary size, the layer count, and the special tokens.

#include <cstdint>
#include <vector>

namespace hashee {

/// What every hash is built for: the vocabulary size, the layer count, and the special tokens
/// (which always exit at the last layer).
struct hash_setup {
    std::int32_t vocab_size = 0;
    int num_layers = 0;
    std::vector<std::int32_t> special_ids;

    bool is_special(std::int32_t id) const {
        for (const std::int32_t s : special_ids)
            if (s == id) return true;
        return false;
    }
};

} // namespace hashee
