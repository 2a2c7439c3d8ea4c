#pragma once
// Backbone states cached for training heads on a frozen backbone: every layer's [CLS] state of
// every sample and, for heads that read all tokens (FastBERT's), every token's state, taken by
// one forward pass over the training examples (under any token-level exit policy, so heads for
// a hashed backbone see the states it really produces).

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <hashee/encoder.hpp>
#include <hashee/error.hpp>
#include <hashee/matrix_view.hpp>

namespace hashee {

/// Backbone states cached for head training: every layer's [CLS] state of every sample and,
/// for heads that read all tokens, every token's state.
struct layer_features {
    int num_layers = 0;
    index_t hidden = 0;
    /// Sample s owns token rows offsets[s] .. offsets[s+1] - 1 (row offsets[s] is [CLS]).
    std::vector<std::int32_t> offsets{0};
    /// [num_layers][samples][hidden]: layer l's [CLS] state of each sample (always filled).
    std::vector<float> cls;
    /// [num_layers][total_tokens][hidden]: every token's state; empty unless the features were
    /// taken with all tokens (FastBERT's heads need them).
    std::vector<float> tokens;

    index_t samples() const { return static_cast<index_t>(offsets.size()) - 1; }
    index_t total_tokens() const { return offsets.empty() ? 0 : offsets.back(); }

    /// Layer `layer`'s (1..L) [CLS] states, [samples, hidden].
    const_matrix_view<float> cls_states(int layer) const {
        return block(cls, layer, samples(), "layer_features::cls_states", "[CLS] states");
    }
    /// Layer `layer`'s (1..L) token states, [total_tokens, hidden]; input_error when the
    /// features were taken from [CLS] only.
    const_matrix_view<float> token_states(int layer) const {
        if (tokens.empty())
            throw input_error(detail::located("layer_features::token_states",
                                              "no token states (the features were taken from [CLS] only)"));
        return block(tokens, layer, total_tokens(), "layer_features::token_states", "token states");
    }

private:
    const_matrix_view<float> block(const std::vector<float>& v, int layer, index_t rows, const char* where,
                                   const char* what) const {
        if (layer < 1 || layer > num_layers)
            throw input_error(detail::located(where, std::string("layer ") + std::to_string(layer) + " is outside 1.." +
                                                         std::to_string(num_layers)));
        if (rows < 0 || hidden < 1 || static_cast<index_t>(v.size()) != num_layers * rows * hidden)
            throw input_error(detail::located(where, std::string(what) + " hold " + std::to_string(v.size()) + " values, not " +
                                                         std::to_string(num_layers) + " x " + std::to_string(rows) + " x " +
                                                         std::to_string(hidden)));
        return {v.data() + (layer - 1) * rows * hidden, rows, hidden};
    }
};

/// Runs `encoder` over `batches` under `token_policy` and keeps every layer's [CLS] states
/// (and every token's with `all_tokens`), samples in batch order.
template <backend B, token_exit_policy P>
layer_features collect_layer_features(const B& backend, const bert_encoder<B>& encoder, std::span<const packed_batch> batches,
                                      const P& token_policy, bool all_tokens) {
    const int L = encoder.config().num_hidden_layers;
    const index_t d = encoder.config().hidden_size;
    layer_features f;
    f.num_layers = L;
    f.hidden = d;
    std::vector<std::vector<float>> cls(static_cast<std::size_t>(L)), tokens(all_tokens ? static_cast<std::size_t>(L) : 0);
    std::vector<float> host;
    for (const packed_batch& b : batches) {
        encoder.observe(backend, b, token_policy, [&](int l, const_matrix_view<float> h, std::span<const std::int32_t> offsets) {
            host.resize(static_cast<std::size_t>(h.rows * d));
            backend.download(h.data, std::span<float>(host));
            auto& c = cls[static_cast<std::size_t>(l - 1)];
            for (std::size_t s = 0; s + 1 < offsets.size(); ++s)
                c.insert(c.end(), host.begin() + offsets[s] * d, host.begin() + (offsets[s] + 1) * d);
            if (all_tokens) tokens[static_cast<std::size_t>(l - 1)].insert(tokens[static_cast<std::size_t>(l - 1)].end(), host.begin(), host.end());
        });
        for (index_t s = 0; s < b.sequences(); ++s) f.offsets.push_back(f.offsets.back() + static_cast<std::int32_t>(b.length(s)));
    }
    for (auto& c : cls) f.cls.insert(f.cls.end(), c.begin(), c.end());
    for (auto& t : tokens) f.tokens.insert(f.tokens.end(), t.begin(), t.end());
    return f;
}

} // namespace hashee
