#pragma once
// The dense reference of token-level exits (hashee-spec section 3), written independently of
// the encoder's packed path from the backend primitives: every layer runs on every row; then
// rows whose exit layer is below the layer get their previous state back. With `drop`, only
// rows still active serve as keys and values.

#include <algorithm>
#include <vector>

#include <hashee/hashee.hpp>

#include "backends.hpp"

namespace hashee::test {

template <class B>
std::vector<float> dense_reference(const B& b, const bert_encoder<B>& enc, const packed_batch& batch,
                                   const std::vector<std::uint8_t>& exits, kv_semantics kv) {
    const auto& c = enc.config();
    const auto& w = enc.weights();
    const index_t n = batch.tokens(), d = c.hidden_size, ff = c.intermediate_size, S = batch.sequences();
    const float eps = static_cast<float>(c.layer_norm_eps);
    auto ids = to_device(b, batch.ids), types = to_device(b, batch.type_ids), pos = to_device(b, batch.positions),
         offs = to_device(b, batch.offsets);
    auto h = b.template allocate<float>(n * d);
    auto q = b.template allocate<float>(n * d), k = b.template allocate<float>(n * d), v = b.template allocate<float>(n * d),
         ctx = b.template allocate<float>(n * d), a = b.template allocate<float>(n * d),
         inter = b.template allocate<float>(n * ff);
    const matrix_view<float> H(h.data(), n, d), Q(q.data(), n, d), K(k.data(), n, d), V(v.data(), n, d), C(ctx.data(), n, d),
        A(a.data(), n, d), I(inter.data(), n, ff);
    b.embed({ids.data(), n}, {types.data(), n}, {pos.data(), n}, w.embeddings().word, w.embeddings().position,
            w.embeddings().token_type, w.embeddings().norm.gamma, w.embeddings().norm.beta, eps, H);
    for (int l = 1; l <= c.num_hidden_layers; ++l) {
        const auto& lw = w.layers()[static_cast<std::size_t>(l - 1)];
        const std::vector<float> before = to_host(b, h, static_cast<std::size_t>(n * d));
        // Q, K and V as three products (the encoder runs one fused product, or two).
        const auto key = b.weight_rows(lw.key_value.weight, 0, d), value = b.weight_rows(lw.key_value.weight, d, d);
        b.linear(H, lw.query.weight, lw.query.bias, Q, epilogue::none);
        b.linear(H, key, lw.key_value.bias.slice(0, d), K, epilogue::none);
        b.linear(H, value, lw.key_value.bias.slice(d, d), V, epilogue::none);
        if (kv == kv_semantics::keep) {
            b.attention(Q, K, V, {offs.data(), S + 1}, {offs.data(), S + 1}, c.num_attention_heads, C);
        } else { // keys and values: the rows still active, sequence by sequence
            std::vector<std::int32_t> rows, kv_off{0};
            for (index_t s = 0; s < S; ++s) {
                for (auto t = batch.offsets[s]; t < batch.offsets[s + 1]; ++t)
                    if (exits[static_cast<std::size_t>(t)] >= l) rows.push_back(t);
                kv_off.push_back(static_cast<std::int32_t>(rows.size()));
            }
            const index_t m = static_cast<index_t>(rows.size());
            auto r = to_device(b, rows), ko = to_device(b, kv_off);
            auto k2 = b.template allocate<float>(m * d), v2 = b.template allocate<float>(m * d);
            b.gather_rows(K, {r.data(), m}, {k2.data(), m, d});
            b.gather_rows(V, {r.data(), m}, {v2.data(), m, d});
            b.attention(Q, const_matrix_view<float>(k2.data(), m, d), const_matrix_view<float>(v2.data(), m, d),
                        {offs.data(), S + 1}, {ko.data(), S + 1}, c.num_attention_heads, C);
        }
        b.linear(C, lw.attention_output.weight, lw.attention_output.bias, A, epilogue::none);
        b.add_layer_norm(A, H, lw.attention_norm.gamma, lw.attention_norm.beta, eps);
        b.linear(A, lw.intermediate.weight, lw.intermediate.bias, I, epilogue::gelu);
        b.linear(I, lw.output.weight, lw.output.bias, H, epilogue::none);
        b.add_layer_norm(H, A, lw.output_norm.gamma, lw.output_norm.beta, eps);
        // Exited rows keep their state from before this layer.
        std::vector<float> after = to_host(b, h, static_cast<std::size_t>(n * d));
        for (index_t t = 0; t < n; ++t)
            if (exits[static_cast<std::size_t>(t)] < l)
                std::copy(before.begin() + t * d, before.begin() + (t + 1) * d, after.begin() + t * d);
        b.upload(std::span<const float>(after), h.data());
    }
    return to_host(b, h, static_cast<std::size_t>(n * d));
}

} // namespace hashee::test
