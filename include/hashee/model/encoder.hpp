#pragma once
// The BERT encoder: embeddings, post-LayerNorm transformer layers, pooler, over a packed batch
// (padding never enters a layer, so it is masked by construction). Written once against the
// backend concepts; immutable after construction and safe to share across threads.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <hashee/backend/backend.hpp>
#include <hashee/model/bert_weights.hpp>
#include <hashee/core/config.hpp>
#include <hashee/core/cost.hpp>
#include <hashee/exit/classifier_output.hpp>
#include <hashee/model/encoder_output.hpp>
#include <hashee/exit/exit_heads.hpp>
#include <hashee/model/token_exit.hpp>
#include <hashee/exit/sentence_exit.hpp>
#include <hashee/core/matrix_view.hpp>
#include <hashee/core/packed_batch.hpp>

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
        run r(backend, *this, batch, policy);
        for (int l = 1; l <= config_.num_hidden_layers; ++l) run_layer<P::kv>(backend, r, l);
        r.cost.dense = dense_macs(config_, std::span<const std::int32_t>(lengths(batch)));
        encoder_output out = finish(backend, batch, r.device.offsets, r.ws.h);
        out.exits = std::move(r.exits);
        out.cost = std::move(r.cost);
        return out;
    }

    /// Calls observe(layer, states, offsets) after every layer l = 1..L of a forward under a
    /// token-level policy: states are the [tokens, hidden] states in the backend's memory,
    /// offsets (host) the batch's. What training heads on a frozen backbone reads.
    template <token_exit_policy P, class Observer>
        requires std::invocable<Observer&, int, const_matrix_view<float>, std::span<const std::int32_t>>
    forward_cost observe(const B& backend, const packed_batch& batch, const P& policy, Observer&& observe) const {
        run r(backend, *this, batch, policy);
        for (int l = 1; l <= config_.num_hidden_layers; ++l) {
            run_layer<P::kv>(backend, r, l);
            observe(l, const_matrix_view<float>(r.ws.h), std::span<const std::int32_t>(batch.offsets));
        }
        r.cost.dense = dense_macs(config_, std::span<const std::int32_t>(lengths(batch)));
        return std::move(r.cost);
    }

    /// Classification with sentence-level exits (sentence_exit.hpp): after each layer the
    /// samples still running show their head's logits to the policy; those it lets go leave
    /// the batch, and the rest run on, compacted (their rows gathered, offsets rebuilt). A
    /// composed_exit also applies its token-level policy inside every sample. The cost counts
    /// the layers and heads that ran; its dense side is every sample through every layer and
    /// head L.
    template <internal_classifiers H, classification_exit_policy P>
    classifier_output classify(const B& backend, const packed_batch& batch, const H& heads, const P& policy) const {
        if constexpr (sentence_exit_policy<P>) {
            return classify_impl(backend, batch, heads, no_exit{}, policy);
        } else {
            return classify_impl(backend, batch, heads, policy.token, policy.sentence);
        }
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
        /// Views the first `rows` rows of every buffer (a compacted batch keeps its buffers).
        void use_rows(index_t rows) {
            n = rows;
            h = {h_buf.data(), n, d};
            q = {q_buf.data(), n, d};
            k = {k_buf.data(), n, d};
            v = {v_buf.data(), n, d};
            ctx = {ctx_buf.data(), n, d};
            a = {a_buf.data(), n, d};
            inter = {inter_buf.data(), n, ff};
        }
    };

    /// The rows still active at a layer (exit >= l), in packed order, and where each
    /// sequence's active rows start: the host copy drives the cost count, the device copy the
    /// gather, attention and scatter.
    struct active_rows {
        std::vector<std::int32_t> offsets;
        ibuf rows_dev, offsets_dev;
        index_t count = 0;
        active_rows(const B& b, const packed_batch& p)
            : offsets(static_cast<std::size_t>(p.sequences() + 1)), rows_dev(b.template allocate<std::int32_t>(p.tokens())),
              offsets_dev(b.template allocate<std::int32_t>(p.sequences() + 1)) {}

        /// The rows with exit layer >= `layer`: counted per sequence on the host (offsets, cost),
        /// listed in the backend's memory by its stream compaction (select_rows) from the
        /// device copy of the exit layers.
        void select(const B& b, const packed_batch& p, const std::vector<std::uint8_t>& exits,
                    vector_view<const std::int32_t> exits_dev, int layer) {
            offsets.resize(static_cast<std::size_t>(p.sequences() + 1)); // fewer once a batch is compacted
            index_t n = 0;
            for (index_t s = 0; s < p.sequences(); ++s) {
                offsets[static_cast<std::size_t>(s)] = static_cast<std::int32_t>(n);
                for (std::int32_t t = p.offsets[s]; t < p.offsets[s + 1]; ++t) n += exits[static_cast<std::size_t>(t)] >= layer;
            }
            offsets.back() = static_cast<std::int32_t>(n);
            count = n;
            if (count == p.tokens() || count == 0) return; // the dense path needs no index lists
            const index_t listed = b.select_rows(exits_dev, layer, {rows_dev.data(), p.tokens()});
            if (listed != count)
                throw std::logic_error("active_rows: the backend selected " + std::to_string(listed) + " rows, not " +
                                       std::to_string(count));
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

    /// A forward in progress: the sequences still running (host and device copies), their
    /// tokens' exit layers (host and device copies), the activations, and the cost so far.
    struct run {
        packed_batch batch;
        std::vector<std::uint8_t> exits;
        ibuf exits_dev;
        device_batch device;
        workspace ws;
        active_rows active;
        forward_cost cost;

        template <token_exit_policy P>
        run(const B& b, const bert_encoder& enc, const packed_batch& p, const P& policy)
            : batch((p.validate(enc.config_), p)), exits(token_exits(enc.config_, p, policy)),
              exits_dev(b.template allocate<std::int32_t>(p.tokens())), device(b, p),
              ws(b, p.tokens(), enc.config_.hidden_size, enc.config_.intermediate_size), active(b, p) {
            upload_exits(b);
            enc.embed(b, device, ws.h);
        }
        vector_view<const std::int32_t> exits_view() const { return {exits_dev.data(), batch.tokens()}; }
        void upload_exits(const B& b) {
            const std::vector<std::int32_t> wide(exits.begin(), exits.end());
            b.upload(std::span<const std::int32_t>(wide), exits_dev.data());
        }

        /// Keeps the running sequences whose `leaving` flag is false: their rows are gathered to
        /// the front of the hidden states and the index arrays are rebuilt.
        void compact(const B& b, const std::vector<bool>& leaving) {
            packed_batch kept;
            std::vector<std::uint8_t> kept_exits;
            std::vector<std::int32_t> rows;
            for (index_t s = 0; s < batch.sequences(); ++s) {
                if (leaving[static_cast<std::size_t>(s)]) continue;
                const auto first = static_cast<std::size_t>(batch.offsets[s]), n = static_cast<std::size_t>(batch.length(s));
                kept.push_back(std::span(batch.ids).subspan(first, n), std::span(batch.type_ids).subspan(first, n));
                kept_exits.insert(kept_exits.end(), exits.begin() + batch.offsets[s], exits.begin() + batch.offsets[s + 1]);
                for (std::int32_t t = batch.offsets[s]; t < batch.offsets[s + 1]; ++t) rows.push_back(t);
            }
            const index_t m = kept.tokens();
            ibuf rows_dev = device_batch::upload(b, rows);
            b.gather_rows(const_matrix_view<float>(ws.h), {rows_dev.data(), m}, {ws.x_buf.data(), m, ws.d});
            std::swap(ws.h_buf, ws.x_buf);
            ws.use_rows(m);
            b.upload(std::span<const std::int32_t>(kept.offsets), device.offsets.data());
            device.tokens = m;
            device.sequences = kept.sequences();
            batch = std::move(kept);
            exits = std::move(kept_exits);
            upload_exits(b);
        }
    };

    template <token_exit_policy P>
    static std::vector<std::uint8_t> token_exits(const bert_config& c, const packed_batch& batch, const P& policy) {
        std::vector<std::uint8_t> exits(static_cast<std::size_t>(batch.tokens()));
        policy.exit_layers(batch, exits);
        for (std::size_t t = 0; t < exits.size(); ++t) {
            if (exits[t] == 0) throw input_error("token " + std::to_string(t) + " of the batch was given exit layer 0");
            exits[t] = static_cast<std::uint8_t>(std::min<int>(exits[t], c.num_hidden_layers));
        }
        return exits;
    }

    static std::vector<std::int32_t> lengths(const packed_batch& p) {
        std::vector<std::int32_t> n;
        for (index_t s = 0; s < p.sequences(); ++s) n.push_back(static_cast<std::int32_t>(p.length(s)));
        return n;
    }

    /// Layer l on the running sequences' active tokens; appends what ran to the cost.
    template <kv_semantics KV>
    void run_layer(const B& b, run& r, int l) const {
        const layer_weights& lw = weights_->layers()[static_cast<std::size_t>(l - 1)];
        const vector_view<const std::int32_t> offsets = r.device.offsets_view();
        r.active.select(b, r.batch, r.exits, r.exits_view(), l);
        if (r.active.count == r.batch.tokens()) {
            layer(b, lw, offsets, r.ws);
        } else if (r.active.count > 0) {
            packed_layer<KV>(b, lw, offsets, r.active, r.ws);
        }
        r.cost.layers.push_back(r.active.cost(config_, r.batch, KV));
        r.cost.actual += r.cost.layers.back().cost;
    }

    template <internal_classifiers H, token_exit_policy T, sentence_exit_policy S>
    classifier_output classify_impl(const B& b, const packed_batch& batch, const H& heads, const T& token_policy,
                                    const S& policy) const {
        const int L = config_.num_hidden_layers, depth = policy.depth(L);
        if (heads.num_layers() != L)
            throw input_error("classify: the heads are for " + std::to_string(heads.num_layers()) + " layers, the model has " +
                              std::to_string(L));
        if (depth < 1 || depth > L)
            throw input_error("classify: the policy's depth " + std::to_string(depth) + " is outside 1.." + std::to_string(L));
        run r(b, *this, batch, token_policy);
        const index_t C = heads.outputs(), d = config_.hidden_size;
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
            run_layer<T::kv>(b, r, l);
            if (!S::reads_every_layer && l < depth) continue;
            const index_t running = r.batch.sequences();
            // The rows the heads read, on the host: every token's, or one row per sequence
            // ([CLS] or the mean); the policies see one row per sequence ([CLS] for all tokens).
            tokens_host.resize(static_cast<std::size_t>(r.batch.tokens() * d));
            b.download(static_cast<const float*>(r.ws.h.data), std::span<float>(tokens_host));
            const const_matrix_view<float> tokens(tokens_host.data(), r.batch.tokens(), d);
            const std::span<const std::int32_t> token_offsets(r.batch.offsets);
            detail::sentence_rows(input == head_input::mean ? head_input::mean : head_input::cls, tokens, token_offsets,
                                  sentences_host);
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
                const std::int64_t head_cost = heads.macs(l, r.batch.length(s));
                r.cost.layers.back().cost.heads += head_cost;
                r.cost.actual.heads += head_cost;
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
                r.compact(b, leaving);
                std::erase_if(origin, [&, i = std::size_t{0}](index_t) mutable { return leaving[i++]; });
            }
        }
        const auto n = lengths(batch);
        r.cost.dense = dense_macs(config_, std::span<const std::int32_t>(n));
        for (const std::int32_t len : n) r.cost.dense.heads += heads.macs(L, len);
        out.cost = std::move(r.cost);
        return out;
    }

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
    encoder_output finish(const B& b, const packed_batch& batch, const ibuf& offsets, matrix_view<float> h) const {
        const index_t d = config_.hidden_size, s = batch.sequences();
        encoder_output out;
        out.hidden_size = d;
        out.offsets = batch.offsets;
        out.hidden.resize(static_cast<std::size_t>(batch.tokens() * d));
        b.download(static_cast<const float*>(h.data), std::span<float>(out.hidden));
        if (const linear_weights* p = weights_->pooler()) {
            fbuf cls = b.template allocate<float>(s * d), pooled = b.template allocate<float>(s * d);
            b.gather_rows(h, {offsets.data(), s}, {cls.data(), s, d});
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
