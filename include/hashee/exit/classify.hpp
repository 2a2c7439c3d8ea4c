#pragma once
// Classification with sentence-level exits (sentence_exit.hpp), driving the encoder's
// layer-stepping forward_state: after each layer the samples still running show their head's
// logits to the policy; those it lets go leave the batch, and the rest run on, compacted (their
// rows gathered, offsets rebuilt). A composed_exit also applies its token-level policy inside
// every sample.

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <hashee/backend/backend.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>
#include <hashee/core/packed_batch.hpp>
#include <hashee/exit/classifier_output.hpp>
#include <hashee/exit/exit_heads.hpp>
#include <hashee/exit/sentence_exit.hpp>
#include <hashee/model/encoder.hpp>
#include <hashee/model/token_exit.hpp>

namespace hashee {

namespace detail {

/// classify() with its token-level and sentence-level policies apart.
template <backend B, internal_classifiers H, token_exit_policy T, sentence_exit_policy S>
classifier_output classify_with(const bert_encoder<B>& encoder, const B& b, const packed_batch& batch, const H& heads,
                                const T& token_policy, const S& policy) {
    const int L = encoder.config().num_hidden_layers, depth = policy.depth(L);
    if (heads.num_layers() != L)
        throw input_error("E25", "classify: the heads are for " + std::to_string(heads.num_layers()) +
                                     " layers, the model has " + std::to_string(L));
    if (depth < 1 || depth > L)
        throw usage_error("U30", "classify: the policy's depth " + std::to_string(depth) + " is outside 1.." +
                                     std::to_string(L));
    auto state = encoder.begin(b, batch, token_policy);
    const index_t C = heads.outputs(), d = encoder.config().hidden_size;
    classifier_output out;
    out.outputs = C;
    out.logits.assign(static_cast<std::size_t>(batch.sequences() * C), 0.0f);
    out.exit_layers.assign(static_cast<std::size_t>(batch.sequences()), 0);
    std::vector<typename S::sample_state> states(static_cast<std::size_t>(batch.sequences()));
    std::vector<index_t> origin(static_cast<std::size_t>(batch.sequences())); // running sequence -> input index
    for (std::size_t s = 0; s < origin.size(); ++s) origin[s] = static_cast<index_t>(s);
    const head_input input = heads.input();
    std::vector<float> tokens_host, sentences_host, logits;
    std::vector<std::int32_t> one_row_each;
    for (int l = 1; l <= depth; ++l) {
        state.step();
        if (!S::reads_every_layer && l < depth) continue;
        const packed_batch& running_batch = state.batch();
        const index_t running = running_batch.sequences();
        // The rows the heads read, on the host: every token's, or one row per sequence
        // ([CLS] or the mean); the policies see one row per sequence ([CLS] for all tokens).
        tokens_host.resize(static_cast<std::size_t>(running_batch.tokens() * d));
        b.download(state.hidden().data, std::span<float>(tokens_host));
        const const_matrix_view<float> tokens(tokens_host.data(), running_batch.tokens(), d);
        const std::span<const std::int32_t> token_offsets(running_batch.offsets);
        sentence_rows(input == head_input::mean ? head_input::mean : head_input::cls, tokens, token_offsets, sentences_host);
        one_row_each.resize(static_cast<std::size_t>(running) + 1);
        std::iota(one_row_each.begin(), one_row_each.end(), 0);
        logits.resize(static_cast<std::size_t>(running * C));
        if (input == head_input::all_tokens)
            heads.logits(l, tokens, token_offsets, matrix_view<float>(logits.data(), running, C));
        else
            heads.logits(l, const_matrix_view<float>(sentences_host.data(), running, d),
                         std::span<const std::int32_t>(one_row_each), matrix_view<float>(logits.data(), running, C));
        std::vector<bool> leaving(static_cast<std::size_t>(running));
        bool any = false, all = true;
        for (index_t s = 0; s < running; ++s) {
            state.add_head_macs(heads.macs(l, running_batch.length(s)));
            const std::span<const float> z(logits.data() + s * C, static_cast<std::size_t>(C));
            const exit_signal signal{l, L, z, std::span<const float>(sentences_host.data() + s * d, static_cast<std::size_t>(d))};
            const index_t who = origin[static_cast<std::size_t>(s)];
            if (l == depth || policy.should_exit(states[static_cast<std::size_t>(who)], signal)) {
                std::copy(z.begin(), z.end(), out.logits.begin() + who * C);
                out.exit_layers[static_cast<std::size_t>(who)] = static_cast<std::uint8_t>(l);
                leaving[static_cast<std::size_t>(s)] = any = true;
            } else {
                all = false;
            }
        }
        if (all) break;
        if (any) {
            state.compact(leaving);
            std::erase_if(origin, [&, i = std::size_t{0}](index_t) mutable { return leaving[i++]; });
        }
    }
    out.cost = std::move(state).take_cost();
    for (index_t s = 0; s < batch.sequences(); ++s) out.cost.dense.heads += heads.macs(L, batch.length(s));
    return out;
}

} // namespace detail

/// Classifies `batch` with `encoder` and one internal classifier per layer (`heads`) under a
/// sentence-level policy or a composed_exit (a token-level policy inside every sample): after
/// each layer the samples still running show their head's logits to the policy; those it lets
/// go leave the batch with that head's logits, and the rest run on, compacted. Every sample
/// leaves at the policy's depth at the latest. The cost counts the layers and heads that ran;
/// its dense side is every sample through every layer and head L. input_error E25 for heads
/// of another depth; an invalid batch is an input_error as in bert_encoder::forward.
template <backend B, internal_classifiers H, classification_exit_policy P>
classifier_output classify(const bert_encoder<B>& encoder, const B& backend, const packed_batch& batch, const H& heads,
                           const P& policy) {
    if constexpr (sentence_exit_policy<P>) {
        return detail::classify_with(encoder, backend, batch, heads, no_exit{}, policy);
    } else {
        return detail::classify_with(encoder, backend, batch, heads, policy.token, policy.sentence);
    }
}

} // namespace hashee
