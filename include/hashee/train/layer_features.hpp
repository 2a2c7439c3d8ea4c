#pragma once
// Backbone states cached for training heads on a frozen backbone: every layer's sentence state
// of every sample (its [CLS] row or the mean of its token rows, the row classifier_heads and
// BERxiT's predictor read) and, for heads that read all tokens (FastBERT's), every token's
// state, taken by one forward pass over the training examples (under any token-level exit
// policy, so heads for a hashed backbone see the states it really produces).

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <hashee/model/encoder.hpp>
#include <hashee/core/error.hpp>
#include <hashee/exit/exit_heads.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee {

/// Backbone states cached for head training: every layer's sentence state of every sample and,
/// for heads that read all tokens, every token's state.
struct layer_features {
    int num_layers = 0;
    index_t hidden = 0;
    /// What `sentences` holds of each sample: its [CLS] row (head_input::cls) or its mean
    /// (head_input::mean).
    head_input pooling = head_input::cls;
    /// Sample s owns token rows offsets[s] .. offsets[s+1] - 1 (row offsets[s] is [CLS]).
    std::vector<std::int32_t> offsets{0};
    /// [num_layers][samples][hidden]: layer l's sentence state of each sample (always filled).
    std::vector<float> sentences;
    /// [num_layers][total_tokens][hidden]: every token's state; empty unless the features were
    /// taken with all tokens (FastBERT's heads need them).
    std::vector<float> tokens;

    index_t samples() const { return static_cast<index_t>(offsets.size()) - 1; }
    index_t total_tokens() const { return offsets.empty() ? 0 : offsets.back(); }

    /// Layer `layer`'s (1..L) sentence states, [samples, hidden].
    const_matrix_view<float> sentence_states(int layer) const {
        return block(sentences, layer, samples(), "layer_features::sentence_states", "sentence states");
    }
    /// Layer `layer`'s (1..L) token states, [total_tokens, hidden]; input_error when the
    /// features were taken without them.
    const_matrix_view<float> token_states(int layer) const {
        if (tokens.empty())
            throw input_error("E30", detail::located("layer_features::token_states",
                                              "no token states (the features were taken from one row per sample)"));
        return block(tokens, layer, total_tokens(), "layer_features::token_states", "token states");
    }

private:
    const_matrix_view<float> block(const std::vector<float>& v, int layer, index_t rows, const char* where,
                                   const char* what) const {
        if (layer < 1 || layer > num_layers)
            throw usage_error("U08", detail::located(where, std::string("layer ") + std::to_string(layer) + " is outside 1.." +
                                                         std::to_string(num_layers)));
        if (rows < 0 || hidden < 1 || static_cast<index_t>(v.size()) != num_layers * rows * hidden)
            throw input_error("E29", detail::located(where, std::string(what) + " hold " + std::to_string(v.size()) + " values, not " +
                                                         std::to_string(num_layers) + " x " + std::to_string(rows) + " x " +
                                                         std::to_string(hidden)));
        return {v.data() + (layer - 1) * rows * hidden, rows, hidden};
    }
};

/// Runs `encoder` over `batches` under `token_policy` and keeps every layer's sentence states
/// as `pooling` (cls or mean) says and, `with_tokens`, every token's state, samples in batch
/// order.
template <backend B, token_exit_policy P>
layer_features collect_layer_features(const B& backend, const bert_encoder<B>& encoder, std::span<const packed_batch> batches,
                                      const P& token_policy, head_input pooling, bool with_tokens = false) {
    if (pooling == head_input::all_tokens)
        throw usage_error("U10", "collect_layer_features: the pooling is one row per sample (cls or mean); ask for every "
                          "token's state with with_tokens");
    const int L = encoder.config().num_hidden_layers;
    const index_t d = encoder.config().hidden_size;
    layer_features f;
    f.num_layers = L;
    f.hidden = d;
    f.pooling = pooling;
    std::vector<std::vector<float>> sentences(static_cast<std::size_t>(L)), tokens(with_tokens ? static_cast<std::size_t>(L) : 0);
    std::vector<float> host, rows;
    for (const packed_batch& b : batches) {
        encoder.observe(backend, b, token_policy, [&](int l, const_matrix_view<float> h, std::span<const std::int32_t> offsets) {
            host.resize(static_cast<std::size_t>(h.rows * d));
            backend.download(h.data, std::span<float>(host));
            detail::sentence_rows(f.pooling, {host.data(), h.rows, d}, offsets, rows);
            auto& s = sentences[static_cast<std::size_t>(l - 1)];
            s.insert(s.end(), rows.begin(), rows.end());
            if (with_tokens) tokens[static_cast<std::size_t>(l - 1)].insert(tokens[static_cast<std::size_t>(l - 1)].end(), host.begin(), host.end());
        });
        for (index_t s = 0; s < b.sequences(); ++s) f.offsets.push_back(f.offsets.back() + static_cast<std::int32_t>(b.length(s)));
    }
    for (auto& s : sentences) f.sentences.insert(f.sentences.end(), s.begin(), s.end());
    for (auto& t : tokens) f.tokens.insert(f.tokens.end(), t.begin(), t.end());
    return f;
}

} // namespace hashee
