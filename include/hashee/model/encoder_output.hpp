#pragma once
// What an encoder forward returns, on the host: the final hidden state of every real token
// (packed), the pooler output, and the poolings sentence embeddings are made of.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include <hashee/core/cost.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee {

struct encoder_output {
    index_t hidden_size = 0;
    std::vector<std::int32_t> offsets{0}; ///< sequence s owns rows offsets[s]..offsets[s+1]
    std::vector<float> hidden;            ///< [tokens, hidden_size], packed
    std::vector<float> pooled;            ///< [sequences, hidden_size]; empty without a pooler
    std::vector<std::uint8_t> exits;      ///< exit layer of every token (L: full depth)
    forward_cost cost;                    ///< what the forward ran, layer by layer

    index_t sequences() const { return static_cast<index_t>(offsets.size()) - 1; }
    index_t tokens() const { return offsets.back(); }
    const_matrix_view<float> hidden_states() const { return {hidden.data(), tokens(), hidden_size}; }
    /// The final states of sequence s: [length, hidden_size].
    const_matrix_view<float> sequence(index_t s) const { return hidden_states().block_rows(offsets[s], offsets[s + 1] - offsets[s]); }

    /// Hugging Face's last_hidden_state: [sequences, seq_len, hidden_size], zeros at padding;
    /// usage_error (U06) when seq_len is shorter than a sequence.
    std::vector<float> last_hidden_state(index_t seq_len) const {
        std::vector<float> out(static_cast<std::size_t>(sequences() * seq_len * hidden_size), 0.0f);
        for (index_t s = 0; s < sequences(); ++s) {
            const auto rows = sequence(s);
            if (rows.rows > seq_len) throw usage_error("U06", "last_hidden_state: seq_len is shorter than sequence " + std::to_string(s));
            std::copy(rows.data, rows.data + rows.rows * hidden_size, out.begin() + s * seq_len * hidden_size);
        }
        return out;
    }

    /// The final state of each sequence's first token ([CLS]): [sequences, hidden_size].
    std::vector<float> cls() const {
        std::vector<float> out;
        out.reserve(static_cast<std::size_t>(sequences() * hidden_size));
        for (index_t s = 0; s < sequences(); ++s) out.insert(out.end(), sequence(s).row(0), sequence(s).row(0) + hidden_size);
        return out;
    }

    /// The mean of each sequence's final states over its real tokens; with `normalize`, each
    /// mean is divided by max(||mean||_2, 1e-12) as sentence-transformers' Normalize does.
    std::vector<float> mean_pooled(bool normalize = false) const {
        std::vector<float> out(static_cast<std::size_t>(sequences() * hidden_size), 0.0f);
        for (index_t s = 0; s < sequences(); ++s) {
            const auto rows = sequence(s);
            std::span<float> o(out.data() + s * hidden_size, static_cast<std::size_t>(hidden_size));
            for (index_t r = 0; r < rows.rows; ++r)
                for (index_t j = 0; j < hidden_size; ++j) o[j] += rows.row(r)[j];
            const float inv = 1.0f / static_cast<float>(std::max<index_t>(rows.rows, 1));
            for (float& x : o) x *= inv;
            if (normalize) normalize_l2(o);
        }
        return out;
    }

    static void normalize_l2(std::span<float> v) {
        double ss = 0;
        for (float x : v) ss += double(x) * x;
        const float inv = 1.0f / std::max(static_cast<float>(std::sqrt(ss)), 1e-12f);
        for (float& x : v) x *= inv;
    }
};

} // namespace hashee
