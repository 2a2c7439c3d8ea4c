#pragma once
// The BERT encoder: embeddings, post-LayerNorm transformer layers, pooler, over a packed batch
// (padding never enters a layer, so it is masked by construction). Written once against the
// backend concepts; immutable after construction and safe to share across threads.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <hashee/backend.hpp>
#include <hashee/bert_weights.hpp>
#include <hashee/config.hpp>
#include <hashee/cost.hpp>
#include <hashee/encoder_output.hpp>
#include <hashee/exit_policy.hpp>
#include <hashee/matrix_view.hpp>
#include <hashee/packed_batch.hpp>

namespace hashee {

template <backend B>
class bert_encoder {
public:
    bert_encoder(bert_config config, bert_weights<B> weights)
        : config_(std::move(config)), weights_(std::make_shared<const bert_weights<B>>(std::move(weights))) {}

    const bert_config& config() const { return config_; }
    const bert_weights<B>& weights() const { return *weights_; }

    /// Runs every layer on every real token. Throws input_error for an invalid batch.
    encoder_output forward(const B& backend, const packed_batch& batch) const { return forward(backend, batch, no_exit{}); }

    /// Runs layer l on the tokens whose exit layer (given by the policy) is >= l; the state of
    /// an exited token is frozen and carried to the output. Counts the cost of what ran.
    template <token_exit_policy P>
    encoder_output forward(const B& backend, const packed_batch& batch, const P& policy) const {
        batch.validate(config_);
        const index_t n = batch.tokens(), d = config_.hidden_size;
        const int L = config_.num_hidden_layers;
        std::vector<std::uint8_t> exits(static_cast<std::size_t>(n));
        policy.exit_layers(batch, exits);
        for (std::size_t t = 0; t < exits.size(); ++t) {
            if (exits[t] == 0) throw input_error("token " + std::to_string(t) + " of the batch was given exit layer 0");
            exits[t] = static_cast<std::uint8_t>(std::min<int>(exits[t], L));
        }
        device_batch db(backend, batch);
        workspace ws(backend, n, d, config_.intermediate_size);
        active_rows active(backend, batch);
        embed(backend, db, ws.h);
        forward_cost cost;
        for (int l = 1; l <= L; ++l) {
            const layer_weights& lw = weights_->layers()[static_cast<std::size_t>(l - 1)];
            active.select(backend, batch, exits, l);
            if (active.count == n) {
                layer(backend, lw, db.offsets_view(), ws);
            } else if (active.count > 0) {
                packed_layer<P::kv>(backend, lw, db.offsets_view(), active, ws);
            }
            cost.layers.push_back(active.cost(config_, batch, P::kv));
            cost.actual += cost.layers.back().cost;
            for (index_t s = 0; s < batch.sequences(); ++s) cost.dense += layer_macs(config_, batch.length(s), batch.length(s));
        }
        encoder_output out = finish(backend, batch, db, ws.h);
        out.exits = std::move(exits);
        out.cost = std::move(cost);
        return out;
    }

private:
    using fbuf = typename B::template buffer<float>;
    using ibuf = typename B::template buffer<std::int32_t>;

    /// A batch's index arrays, in the backend's memory.
    struct device_batch {
        ibuf ids, type_ids, positions, offsets;
        index_t tokens, sequences;
        device_batch(const B& b, const packed_batch& p)
            : ids(upload(b, p.ids)), type_ids(upload(b, p.type_ids)), positions(upload(b, p.positions)),
              offsets(upload(b, p.offsets)), tokens(p.tokens()), sequences(p.sequences()) {}
        vector_view<const std::int32_t> offsets_view() const { return {offsets.data(), sequences + 1}; }
        static ibuf upload(const B& b, const std::vector<std::int32_t>& v) {
            ibuf buf = b.template allocate<std::int32_t>(static_cast<index_t>(v.size()));
            b.upload(std::span<const std::int32_t>(v), buf.data());
            return buf;
        }
    };

    /// Activations of one forward: hidden states, Q, K, V, attention context, the attention
    /// block's output and the feed-forward intermediate.
    struct workspace {
        index_t n, d, ff;
        fbuf h_buf, q_buf, k_buf, v_buf, ctx_buf, a_buf, inter_buf, x_buf;
        matrix_view<float> h, q, k, v, ctx, a, inter;
        workspace(const B& b, index_t n_, index_t d_, index_t ff_)
            : n(n_), d(d_), ff(ff_), h_buf(b.template allocate<float>(n * d)), q_buf(b.template allocate<float>(n * d)),
              k_buf(b.template allocate<float>(n * d)), v_buf(b.template allocate<float>(n * d)),
              ctx_buf(b.template allocate<float>(n * d)), a_buf(b.template allocate<float>(n * d)),
              inter_buf(b.template allocate<float>(n * ff)), x_buf(b.template allocate<float>(n * d)),
              h(h_buf.data(), n, d), q(q_buf.data(), n, d),
              k(k_buf.data(), n, d), v(v_buf.data(), n, d), ctx(ctx_buf.data(), n, d), a(a_buf.data(), n, d),
              inter(inter_buf.data(), n, ff) {}
    };

    /// The rows still active at a layer (exit >= l), in packed order, and where each
    /// sequence's active rows start: the host copy drives the cost count, the device copy the
    /// gather, attention and scatter.
    struct active_rows {
        std::vector<std::int32_t> rows, offsets;
        ibuf rows_dev, offsets_dev;
        index_t count = 0;
        active_rows(const B& b, const packed_batch& p)
            : offsets(static_cast<std::size_t>(p.sequences() + 1)), rows_dev(b.template allocate<std::int32_t>(p.tokens())),
              offsets_dev(b.template allocate<std::int32_t>(p.sequences() + 1)) {}

        void select(const B& b, const packed_batch& p, const std::vector<std::uint8_t>& exits, int layer) {
            rows.clear();
            for (index_t s = 0; s < p.sequences(); ++s) {
                offsets[static_cast<std::size_t>(s)] = static_cast<std::int32_t>(rows.size());
                for (std::int32_t t = p.offsets[s]; t < p.offsets[s + 1]; ++t)
                    if (exits[static_cast<std::size_t>(t)] >= layer) rows.push_back(t);
            }
            offsets.back() = static_cast<std::int32_t>(rows.size());
            count = static_cast<index_t>(rows.size());
            if (count == p.tokens() || count == 0) return; // the dense path needs no index lists
            b.upload(std::span<const std::int32_t>(rows), rows_dev.data());
            b.upload(std::span<const std::int32_t>(offsets), offsets_dev.data());
        }
        vector_view<const std::int32_t> rows_view() const { return {rows_dev.data(), count}; }
        vector_view<const std::int32_t> offsets_view() const {
            return {offsets_dev.data(), static_cast<index_t>(offsets.size())};
        }
        /// The shapes this layer runs: per sequence, n positions of which m active.
        layer_stats cost(const bert_config& c, const packed_batch& p, kv_semantics kv) const {
            layer_stats st;
            for (index_t s = 0; s < p.sequences(); ++s) {
                const index_t n = p.length(s), m = offsets[static_cast<std::size_t>(s) + 1] - offsets[static_cast<std::size_t>(s)];
                st.cost += layer_macs(c, n, m, kv);
                st.active_rows += m;
                st.all_rows += n;
                st.key_rows += kv == kv_semantics::keep ? n : m;
            }
            return st;
        }
    };

    void embed(const B& b, const device_batch& db, matrix_view<float> h) const {
        const embedding_weights& e = weights_->embeddings();
        b.embed({db.ids.data(), db.tokens}, {db.type_ids.data(), db.tokens}, {db.positions.data(), db.tokens}, e.word,
                e.position, e.token_type, e.norm.gamma, e.norm.beta, eps(), h);
    }

    /// One post-LayerNorm transformer layer on every row of ws.h, in place.
    void layer(const B& b, const layer_weights& w, vector_view<const std::int32_t> offsets, workspace& ws) const {
        b.linear(ws.h, w.query.weight, w.query.bias, ws.q, epilogue::none);
        b.linear(ws.h, w.key.weight, w.key.bias, ws.k, epilogue::none);
        b.linear(ws.h, w.value.weight, w.value.bias, ws.v, epilogue::none);
        b.attention(ws.q, ws.k, ws.v, offsets, offsets, config_.num_attention_heads, ws.ctx);
        b.linear(ws.ctx, w.attention_output.weight, w.attention_output.bias, ws.a, epilogue::none);
        b.add_layer_norm(ws.a, ws.h, w.attention_norm.gamma, w.attention_norm.beta, eps());
        b.linear(ws.a, w.intermediate.weight, w.intermediate.bias, ws.inter, epilogue::gelu);
        b.linear(ws.inter, w.output.weight, w.output.bias, ws.h, epilogue::none);
        b.add_layer_norm(ws.h, ws.a, w.output_norm.gamma, w.output_norm.beta, eps());
    }

    /// One layer on the active rows only: gather them, run queries, attention output,
    /// LayerNorms and the feed-forward block on the packed rows, scatter the results back.
    /// Keys and values come from every row (keep: exited rows' frozen states) or from the
    /// active rows only (drop).
    template <kv_semantics KV>
    void packed_layer(const B& b, const layer_weights& w, vector_view<const std::int32_t> offsets, const active_rows& act,
                      workspace& ws) const {
        const index_t m = act.count, d = ws.d;
        const matrix_view<float> x(ws.x_buf.data(), m, d), q(ws.q_buf.data(), m, d), ctx(ws.ctx_buf.data(), m, d),
            a(ws.a_buf.data(), m, d), inter(ws.inter_buf.data(), m, ws.ff);
        b.gather_rows(ws.h, act.rows_view(), x);
        b.linear(x, w.query.weight, w.query.bias, q, epilogue::none);
        if constexpr (KV == kv_semantics::keep) {
            b.linear(ws.h, w.key.weight, w.key.bias, ws.k, epilogue::none);
            b.linear(ws.h, w.value.weight, w.value.bias, ws.v, epilogue::none);
            b.attention(q, ws.k, ws.v, act.offsets_view(), offsets, config_.num_attention_heads, ctx);
        } else {
            const matrix_view<float> k(ws.k_buf.data(), m, d), v(ws.v_buf.data(), m, d);
            b.linear(x, w.key.weight, w.key.bias, k, epilogue::none);
            b.linear(x, w.value.weight, w.value.bias, v, epilogue::none);
            b.attention(q, k, v, act.offsets_view(), act.offsets_view(), config_.num_attention_heads, ctx);
        }
        b.linear(ctx, w.attention_output.weight, w.attention_output.bias, a, epilogue::none);
        b.add_layer_norm(a, x, w.attention_norm.gamma, w.attention_norm.beta, eps());
        b.linear(a, w.intermediate.weight, w.intermediate.bias, inter, epilogue::gelu);
        b.linear(inter, w.output.weight, w.output.bias, x, epilogue::none);
        b.add_layer_norm(x, a, w.output_norm.gamma, w.output_norm.beta, eps());
        b.scatter_rows(x, act.rows_view(), ws.h);
    }

    /// Copies the final states to the host and applies the pooler to each [CLS].
    encoder_output finish(const B& b, const packed_batch& batch, const device_batch& db, matrix_view<float> h) const {
        const index_t d = config_.hidden_size, s = batch.sequences();
        encoder_output out;
        out.hidden_size = d;
        out.offsets = batch.offsets;
        out.hidden.resize(static_cast<std::size_t>(batch.tokens() * d));
        b.download(static_cast<const float*>(h.data), std::span<float>(out.hidden));
        if (const linear_weights* p = weights_->pooler()) {
            fbuf cls = b.template allocate<float>(s * d), pooled = b.template allocate<float>(s * d);
            b.gather_rows(h, {db.offsets.data(), s}, {cls.data(), s, d});
            b.linear(const_matrix_view<float>(cls.data(), s, d), p->weight, p->bias, {pooled.data(), s, d}, epilogue::tanh);
            out.pooled.resize(static_cast<std::size_t>(s * d));
            b.download(static_cast<const float*>(pooled.data()), std::span<float>(out.pooled));
        }
        return out;
    }

    float eps() const { return static_cast<float>(config_.layer_norm_eps); }

    bert_config config_;
    std::shared_ptr<const bert_weights<B>> weights_;
};

} // namespace hashee
