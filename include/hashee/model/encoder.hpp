#pragma once
// The BERT encoder: embeddings, post-LayerNorm transformer layers, pooler, over a packed batch
// (padding never enters a layer, so it is masked by construction). Written once against the
// backend concepts; immutable after construction and safe to share across threads.
// forward, observe and the exit layer's classify (exit/classify.hpp) all drive one
// forward_state: a forward in progress that steps one layer at a time.

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <hashee/backend/backend.hpp>
#include <hashee/model/bert_weights.hpp>
#include <hashee/core/config.hpp>
#include <hashee/core/cost.hpp>
#include <hashee/core/error.hpp>
#include <hashee/model/encoder_output.hpp>
#include <hashee/model/token_exit.hpp>
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

    template <kv_semantics KV>
    class forward_state;

    /// Starts a forward under a token-level policy: validates the batch (input_error), gives
    /// every token its exit layer and embeds the batch; no layer has run yet. The state keeps
    /// references to `backend` and this encoder, which must outlive it.
    template <token_exit_policy P>
    forward_state<P::kv> begin(const B& backend, const packed_batch& batch, const P& policy) const {
        return forward_state<P::kv>(backend, *this, batch, policy);
    }
    /// Starts a dense forward (every token runs every layer).
    forward_state<kv_semantics::keep> begin(const B& backend, const packed_batch& batch) const {
        return begin(backend, batch, no_exit{});
    }

    /// Runs every layer on every real token. Throws input_error for an invalid batch.
    encoder_output forward(const B& backend, const packed_batch& batch) const { return forward(backend, batch, no_exit{}); }

    /// Runs layer l on the tokens whose exit layer (given by the policy) is >= l; the state of
    /// an exited token is frozen and carried to the output. Counts the cost of what ran.
    template <token_exit_policy P>
    encoder_output forward(const B& backend, const packed_batch& batch, const P& policy) const {
        forward_state<P::kv> state = begin(backend, batch, policy);
        while (!state.done()) state.step();
        return std::move(state).finish();
    }

    /// Calls observe(layer, states, offsets) after every layer l = 1..L of a forward under a
    /// token-level policy: states are the [tokens, hidden] states in the backend's memory,
    /// offsets (host) the batch's. What training heads on a frozen backbone reads.
    template <token_exit_policy P, class Observer>
        requires std::invocable<Observer&, int, const_matrix_view<float>, std::span<const std::int32_t>>
    forward_cost observe(const B& backend, const packed_batch& batch, const P& policy, Observer&& observe) const {
        forward_state<P::kv> state = begin(backend, batch, policy);
        while (!state.done()) {
            state.step();
            observe(state.layer(), state.hidden(), std::span<const std::int32_t>(state.batch().offsets));
        }
        return std::move(state).take_cost();
    }

private:
    using layer_type = typename bert_weights<B>::layer_type;
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

    /// Activations of one forward: hidden states, Q, K and V side by side (one fused product
    /// writes them: [n, 3d]), the keep path's queries of the active rows, attention context,
    /// the attention block's output and the feed-forward intermediate.
    struct workspace {
        index_t n, d, ff;
        fbuf h_buf, qkv_buf, q_buf, ctx_buf, a_buf, inter_buf, x_buf;
        matrix_view<float> h, ctx, a, inter;
        workspace(const B& b, index_t n_, index_t d_, index_t ff_)
            : n(n_), d(d_), ff(ff_), h_buf(b.template allocate<float>(n * d)), qkv_buf(b.template allocate<float>(3 * n * d)),
              q_buf(b.template allocate<float>(n * d)), ctx_buf(b.template allocate<float>(n * d)),
              a_buf(b.template allocate<float>(n * d)), inter_buf(b.template allocate<float>(n * ff)),
              x_buf(b.template allocate<float>(n * d)), h(h_buf.data(), n, d), ctx(ctx_buf.data(), n, d),
              a(a_buf.data(), n, d), inter(inter_buf.data(), n, ff) {}
        /// Views the first `rows` rows of every buffer (a compacted batch keeps its buffers).
        void use_rows(index_t rows) {
            n = rows;
            h = {h_buf.data(), n, d};
            ctx = {ctx_buf.data(), n, d};
            a = {a_buf.data(), n, d};
            inter = {inter_buf.data(), n, ff};
        }
        /// `rows` rows of `parts` products of width d side by side in qkv_buf: [rows, parts * d].
        matrix_view<float> fused(index_t rows, index_t parts) { return {qkv_buf.data(), rows, parts * d}; }
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
                throw usage_error("U33", "active_rows: the backend selected " + std::to_string(listed) + " rows, not " +
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

    static std::vector<std::int32_t> lengths(const packed_batch& p) {
        std::vector<std::int32_t> n;
        for (index_t s = 0; s < p.sequences(); ++s) n.push_back(static_cast<std::int32_t>(p.length(s)));
        return n;
    }

    void embed(const B& b, const device_batch& db, matrix_view<float> h) const {
        const embedding_weights& e = weights_->embeddings();
        b.embed({db.ids.data(), db.tokens}, {db.type_ids.data(), db.tokens}, {db.positions.data(), db.tokens}, e.word,
                e.position, e.token_type, e.norm.gamma, e.norm.beta, eps(), h);
    }

    /// One post-LayerNorm transformer layer on every row of ws.h, in place.
    void layer(const B& b, const layer_type& w, vector_view<const std::int32_t> offsets, workspace& ws) const {
        const index_t d = ws.d;
        const matrix_view<float> qkv = ws.fused(ws.n, 3);
        b.linear(ws.h, w.query_key_value.weight, w.query_key_value.bias, qkv, epilogue::none);
        b.attention(qkv.block_cols(0, d), qkv.block_cols(d, d), qkv.block_cols(2 * d, d), offsets, offsets,
                    config_.num_attention_heads, ws.ctx);
        b.linear(ws.ctx, w.attention_output.weight, w.attention_output.bias, ws.a, epilogue::none);
        b.add_layer_norm(ws.a, ws.h, w.attention_norm.gamma, w.attention_norm.beta, eps());
        b.linear(ws.a, w.intermediate.weight, w.intermediate.bias, ws.inter, epilogue::gelu);
        b.linear(ws.inter, w.output.weight, w.output.bias, ws.h, epilogue::none);
        b.add_layer_norm(ws.h, ws.a, w.output_norm.gamma, w.output_norm.beta, eps());
    }

    /// One layer on the active rows only: gather them, run queries, attention output,
    /// LayerNorms and the feed-forward block on the packed rows, scatter the results back.
    /// Keys and values come from every row (keep: exited rows' frozen states; the queries then
    /// run apart, on the active rows) or from the active rows only (drop: one fused product).
    template <kv_semantics KV>
    void packed_layer(const B& b, const layer_type& w, vector_view<const std::int32_t> offsets, const active_rows& act,
                      workspace& ws) const {
        const index_t m = act.count, d = ws.d;
        const matrix_view<float> x(ws.x_buf.data(), m, d), ctx(ws.ctx_buf.data(), m, d), a(ws.a_buf.data(), m, d),
            inter(ws.inter_buf.data(), m, ws.ff);
        b.gather_rows(ws.h, act.rows_view(), x);
        if constexpr (KV == kv_semantics::keep) {
            const matrix_view<float> q(ws.q_buf.data(), m, d), kv = ws.fused(ws.n, 2);
            b.linear(x, w.query.weight, w.query.bias, q, epilogue::none);
            b.linear(ws.h, w.key_value.weight, w.key_value.bias, kv, epilogue::none);
            b.attention(q, kv.block_cols(0, d), kv.block_cols(d, d), act.offsets_view(), offsets, config_.num_attention_heads,
                        ctx);
        } else {
            const matrix_view<float> qkv = ws.fused(m, 3);
            b.linear(x, w.query_key_value.weight, w.query_key_value.bias, qkv, epilogue::none);
            b.attention(qkv.block_cols(0, d), qkv.block_cols(d, d), qkv.block_cols(2 * d, d), act.offsets_view(),
                        act.offsets_view(), config_.num_attention_heads, ctx);
        }
        b.linear(ctx, w.attention_output.weight, w.attention_output.bias, a, epilogue::none);
        b.add_layer_norm(a, x, w.attention_norm.gamma, w.attention_norm.beta, eps());
        b.linear(a, w.intermediate.weight, w.intermediate.bias, inter, epilogue::gelu);
        b.linear(inter, w.output.weight, w.output.bias, x, epilogue::none);
        b.add_layer_norm(x, a, w.output_norm.gamma, w.output_norm.beta, eps());
        b.scatter_rows(x, act.rows_view(), ws.h);
    }

    /// Copies the states to the host and applies the pooler to each [CLS].
    encoder_output output(const B& b, const packed_batch& batch, const ibuf& offsets, matrix_view<float> h) const {
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

public:
    /// A forward in progress, one layer at a time: the sequences still running (host and
    /// backend copies), their tokens' exit layers, the activations and the cost so far. KV is
    /// what exited tokens are to the layers above (the token policy's kv). Made by begin();
    /// forward, observe and classify (exit/classify.hpp) are loops over step(). Not copyable
    /// or movable (it holds views into its own buffers); it refers to the backend and the
    /// encoder it was begun with.
    template <kv_semantics KV>
    class forward_state {
    public:
        static constexpr kv_semantics kv = KV;

        forward_state(const forward_state&) = delete;
        forward_state& operator=(const forward_state&) = delete;

        /// The layers run so far (0 after begin) and the model's depth.
        int layer() const { return layer_; }
        int num_layers() const { return enc_->config_.num_hidden_layers; }
        bool done() const { return layer_ == num_layers(); }

        /// Runs the next layer on the running sequences' active tokens (exit layer >= it) and
        /// appends what ran to the cost. usage_error U31 once every layer has run.
        void step() {
            if (done())
                throw usage_error("U31", "forward_state::step: all " + std::to_string(num_layers()) + " layers have run");
            ++layer_;
            const B& b = *backend_;
            const layer_type& lw = enc_->weights_->layers()[static_cast<std::size_t>(layer_ - 1)];
            const vector_view<const std::int32_t> offsets = device_.offsets_view();
            active_.select(b, batch_, exits_, exits_view(), layer_);
            if (active_.count == batch_.tokens()) {
                enc_->layer(b, lw, offsets, ws_);
            } else if (active_.count > 0) {
                enc_->template packed_layer<KV>(b, lw, offsets, active_, ws_);
            }
            cost_.layers.push_back(active_.cost(enc_->config_, batch_, KV));
            cost_.actual += cost_.layers.back().cost;
        }

        /// The running tokens' states after layer(), [tokens, hidden], in the backend's memory;
        /// valid until the next step or compact.
        const_matrix_view<float> hidden() const { return const_matrix_view<float>(ws_.h); }
        /// The running sequences (host): the batch begin() got, less the samples compacted out.
        const packed_batch& batch() const { return batch_; }
        /// The running tokens' exit layers (1..L), in packed order.
        std::span<const std::uint8_t> exits() const { return exits_; }

        /// The cost so far: every layer that ran (shapes and MACs) and their total; its dense
        /// side is every sequence begin() got through every layer.
        const forward_cost& cost() const { return cost_; }
        /// Counts `macs` of work beside the encoder (an exit head) on the last layer that ran
        /// and in the total. usage_error U31 before the first step.
        void add_head_macs(std::int64_t macs) {
            if (cost_.layers.empty()) throw usage_error("U31", "forward_state::add_head_macs: no layer has run yet");
            cost_.layers.back().cost.heads += macs;
            cost_.actual.heads += macs;
        }

        /// Removes the running sequences whose `leaving` flag is set (one flag per running
        /// sequence; at least one must stay, else usage_error U31): the rows of those that stay
        /// are gathered to the front of the hidden states, their offsets and exit layers
        /// rebuilt, in their order.
        void compact(const std::vector<bool>& leaving) {
            if (static_cast<index_t>(leaving.size()) != batch_.sequences())
                throw usage_error("U31", "forward_state::compact: " + std::to_string(leaving.size()) + " flags for " +
                                             std::to_string(batch_.sequences()) + " running sequences");
            if (std::find(leaving.begin(), leaving.end(), false) == leaving.end())
                throw usage_error("U31", "forward_state::compact: every sequence leaves (stop the forward instead)");
            const B& b = *backend_;
            packed_batch kept;
            std::vector<std::uint8_t> kept_exits;
            std::vector<std::int32_t> rows;
            for (index_t s = 0; s < batch_.sequences(); ++s) {
                if (leaving[static_cast<std::size_t>(s)]) continue;
                const auto first = static_cast<std::size_t>(batch_.offsets[s]), n = static_cast<std::size_t>(batch_.length(s));
                kept.push_back(std::span(batch_.ids).subspan(first, n), std::span(batch_.type_ids).subspan(first, n));
                kept_exits.insert(kept_exits.end(), exits_.begin() + batch_.offsets[s], exits_.begin() + batch_.offsets[s + 1]);
                for (std::int32_t t = batch_.offsets[s]; t < batch_.offsets[s + 1]; ++t) rows.push_back(t);
            }
            const index_t m = kept.tokens();
            ibuf rows_dev = device_batch::upload(b, rows);
            b.gather_rows(const_matrix_view<float>(ws_.h), {rows_dev.data(), m}, {ws_.x_buf.data(), m, ws_.d});
            std::swap(ws_.h_buf, ws_.x_buf);
            ws_.use_rows(m);
            b.upload(std::span<const std::int32_t>(kept.offsets), device_.offsets.data());
            device_.tokens = m;
            device_.sequences = kept.sequences();
            batch_ = std::move(kept);
            exits_ = std::move(kept_exits);
            upload_exits();
        }

        /// The running sequences' states after layer() on the host, the pooler applied to each
        /// [CLS], their exit layers and the cost. Ends the forward.
        encoder_output finish() && {
            encoder_output out = enc_->output(*backend_, batch_, device_.offsets, ws_.h);
            out.exits = std::move(exits_);
            out.cost = std::move(cost_);
            return out;
        }
        /// The cost, without the states. Ends the forward.
        forward_cost take_cost() && { return std::move(cost_); }

    private:
        friend class bert_encoder;

        template <token_exit_policy P>
        forward_state(const B& b, const bert_encoder& enc, const packed_batch& p, const P& policy)
            : backend_(&b), enc_(&enc), batch_((p.validate(enc.config_), p)), exits_(token_exit_layers(enc.config_.num_hidden_layers, p, policy)),
              exits_dev_(b.template allocate<std::int32_t>(p.tokens())), device_(b, p),
              ws_(b, p.tokens(), enc.config_.hidden_size, enc.config_.intermediate_size), active_(b, p) {
            upload_exits();
            enc.embed(b, device_, ws_.h);
            cost_.dense = dense_macs(enc.config_, std::span<const std::int32_t>(lengths(p)));
        }

        vector_view<const std::int32_t> exits_view() const { return {exits_dev_.data(), batch_.tokens()}; }
        void upload_exits() {
            const std::vector<std::int32_t> wide(exits_.begin(), exits_.end());
            backend_->upload(std::span<const std::int32_t>(wide), exits_dev_.data());
        }

        const B* backend_;
        const bert_encoder* enc_;
        packed_batch batch_;
        std::vector<std::uint8_t> exits_;
        ibuf exits_dev_;
        device_batch device_;
        workspace ws_;
        active_rows active_;
        forward_cost cost_;
        int layer_ = 0;
    };

private:
    float eps() const { return static_cast<float>(config_.layer_norm_eps); }

    bert_config config_;
    std::shared_ptr<const bert_weights<B>> weights_;
};

} // namespace hashee
