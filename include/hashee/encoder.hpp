#pragma once
// The BERT encoder: embeddings, post-LayerNorm transformer layers, pooler, over a packed batch
// (padding never enters a layer, so it is masked by construction). Written once against the
// backend concepts; immutable after construction and safe to share across threads.

#include <memory>
#include <utility>

#include <hashee/backend.hpp>
#include <hashee/bert_weights.hpp>
#include <hashee/config.hpp>
#include <hashee/encoder_output.hpp>
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
    encoder_output forward(const B& backend, const packed_batch& batch) const {
        batch.validate(config_);
        const index_t n = batch.tokens(), d = config_.hidden_size;
        device_batch db(backend, batch);
        workspace ws(backend, n, d, config_.intermediate_size);
        embed(backend, db, ws.h);
        for (const layer_weights& lw : weights_->layers()) layer(backend, lw, db.offsets_view(), ws);
        return finish(backend, batch, db, ws.h);
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
        fbuf h_buf, q_buf, k_buf, v_buf, ctx_buf, a_buf, inter_buf;
        matrix_view<float> h, q, k, v, ctx, a, inter;
        workspace(const B& b, index_t n_, index_t d_, index_t ff_)
            : n(n_), d(d_), ff(ff_), h_buf(b.template allocate<float>(n * d)), q_buf(b.template allocate<float>(n * d)),
              k_buf(b.template allocate<float>(n * d)), v_buf(b.template allocate<float>(n * d)),
              ctx_buf(b.template allocate<float>(n * d)), a_buf(b.template allocate<float>(n * d)),
              inter_buf(b.template allocate<float>(n * ff)), h(h_buf.data(), n, d), q(q_buf.data(), n, d),
              k(k_buf.data(), n, d), v(v_buf.data(), n, d), ctx(ctx_buf.data(), n, d), a(a_buf.data(), n, d),
              inter(inter_buf.data(), n, ff) {}
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
