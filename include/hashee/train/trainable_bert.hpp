#pragma once
// A BERT encoder whose every parameter trains, in a training backend's memory, in T = float
// (training) or double (the gradient tests): Hugging Face's BertForSequenceClassification
// (embeddings, L layers, pooler on [CLS], dropout, classifier) or the bare encoder of a
// sentence-transformers bi-encoder. One call runs a packed batch (no padding is computed)
// forward under a token exit policy, exactly as inference runs it, keeps what the backward
// needs, and accumulates every parameter's gradient:
//  - forward_backward: cross-entropy for two or more labels, mean squared error for one (as
//    Hugging Face's problem types);
//  - forward_backward_cosine: the bi-encoder's cosine-similarity loss on mean-pooled pairs.
// Under an exit policy, layer l runs its queries, attention output, LayerNorms and feed-forward
// block on the active rows (exit >= l) only; keys and values come from every row (keep: exited
// rows' frozen states) or the active rows (drop). The gradient from upper layers reaches an
// exited row's frozen state through those keys and values, and through it the layers below its
// exit (no detach). Dropout is Hugging Face's, its masks regenerated from (seed, draw, layer,
// site). docs/training.md has the equations.

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <hashee/backend/training_backend.hpp>
#include <hashee/core/config.hpp>
#include <hashee/core/cost.hpp>
#include <hashee/core/detail/random.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>
#include <hashee/core/packed_batch.hpp>
#include <hashee/io/safetensors.hpp>
#include <hashee/model/token_exit.hpp>

namespace hashee {

/// One trainable tensor: its Hugging Face name and shape, its value and gradient (backend
/// memory), and whether weight decay applies (not to biases and LayerNorm parameters).
template <training_backend B, class T>
struct trainable_tensor {
    std::string name;
    index_t rows = 0, cols = 1; ///< a vector is [rows, 1]
    typename B::template buffer<T> value, grad;
    bool decays = true;
    const_matrix_view<T> v() const { return {value.data(), rows, cols}; }
    matrix_view<T> g() { return {grad.data(), rows, cols}; }
    vector_view<const T> vec() const { return {value.data(), rows * cols}; }
    vector_view<T> gvec() { return {grad.data(), rows * cols}; }
    index_t size() const { return rows * cols; }
};

/// Dropout in training, at Hugging Face's sites: `hidden` after the embeddings' LayerNorm,
/// after the attention-output and feed-forward-output products and on the pooled vector;
/// `attention` on the attention probabilities. 0 turns a site off. Each mask is a function of
/// (seed, draw, layer, site, element), so the backward regenerates it; `draw` must differ
/// between the forward_backward calls of a run (the trainer counts its micro-batches).
struct training_dropout {
    double hidden = 0, attention = 0;
    std::uint64_t seed = 0, draw = 0;
};

/// What one forward_backward call takes besides the batch and its targets.
struct step_options {
    double weight = 1.0;             ///< the gradient added is weight x the batch's mean loss
    training_dropout dropout;        ///< off by default
    std::vector<double>* outputs = nullptr; ///< receives the logits [sequences, labels] or the cosines [pairs]
};

template <training_backend B, class T>
class trainable_bert {
public:
    using tensor = trainable_tensor<B, T>;

    /// Every parameter from a checkpoint (Hugging Face names, with or without "bert."), converted
    /// to T; the classifier ("classifier.weight" [labels, d], "classifier.bias") must be in it.
    /// A missing or mis-shaped tensor is a weight_error (E07, E08); labels < 1 a usage_error (U46).
    static trainable_bert load(const safetensors_file& f, const bert_config& config, int labels, const B& backend) {
        check_labels(labels);
        return load(f, config, labels, backend, {});
    }

    /// The same from an encoder checkpoint without a classifier (all-MiniLM-L6-v2, say): the new
    /// classifier takes `classifier_weight` ([labels, d] row-major, U48 otherwise) and a zero
    /// bias; every other tensor comes from the checkpoint.
    static trainable_bert load_with_new_head(const safetensors_file& f, const bert_config& config, int labels, const B& backend,
                                             std::span<const float> classifier_weight) {
        check_labels(labels);
        if (classifier_weight.size() != static_cast<std::size_t>(labels) * static_cast<std::size_t>(config.hidden_size))
            throw usage_error("U48", "trainable_bert: a new classifier of " + std::to_string(labels) + " labels and width " +
                                         std::to_string(config.hidden_size) + " takes " + std::to_string(labels * config.hidden_size) +
                                         " weights, not " + std::to_string(classifier_weight.size()));
        const std::vector<float> bias(static_cast<std::size_t>(labels), 0.0f);
        return load(f, config, labels, backend, {std::vector<float>(classifier_weight.begin(), classifier_weight.end()), bias});
    }

    /// The encoder alone (embeddings and layers; no pooler, no classifier), for the bi-encoder
    /// objective: the tensors the cosine loss trains, and no others.
    static trainable_bert load_encoder(const safetensors_file& f, const bert_config& config, const B& backend) {
        return load(f, config, 0, backend, {});
    }

    /// Hugging Face's initialisation of a new classifier's weight: normal(0, sigma) draws, row
    /// by row, from the portable random source seeded with `seed` (sigma: initializer_range).
    static std::vector<float> random_classifier(int labels, index_t width, std::uint64_t seed, double sigma = 0.02) {
        detail::random_source rng(seed);
        std::vector<float> w(static_cast<std::size_t>(labels) * static_cast<std::size_t>(width));
        for (float& x : w) x = static_cast<float>(rng.normal(0.0, sigma));
        return w;
    }

    /// Every parameter, in Hugging Face's named_parameters() order.
    std::vector<tensor>& tensors() { return tensors_; }
    const std::vector<tensor>& tensors() const { return tensors_; }
    const bert_config& config() const { return config_; }
    /// The classifier's outputs; 0 for an encoder alone.
    int labels() const { return labels_; }

    /// Every gradient = 0.
    void zero_grad() {
        for (tensor& t : tensors_) backend_->fill(t.g(), T(0));
    }

    /// Runs the batch forward under `policy` and backward, adds the gradient of options.weight x
    /// the batch's mean loss to every parameter's, and returns that mean loss. `targets`: one
    /// per sequence, a class index (labels >= 2) or a value (labels == 1). Micro-batches
    /// accumulate: weights of their share of the sequences add up to the batch. Bad input is an
    /// error before anything runs: the batch's (packed_batch::validate: E13, E14, E15), the
    /// targets' (E28: their count, a class outside the labels, NaN), a model without a
    /// classifier (U49), an exit layer of 0 (U32), a dropout outside [0, 1) (U45).
    template <token_exit_policy P>
    double forward_backward(const packed_batch& batch, std::span<const double> targets, const P& policy,
                            const step_options& options = {});

    /// The same without exits or dropout (the dense classifier).
    double forward_backward(const packed_batch& batch, std::span<const double> targets, std::vector<double>* logits = nullptr,
                            double weight = 1.0) {
        return forward_backward(batch, targets, no_exit{}, step_options{weight, {}, logits});
    }

    /// The bi-encoder objective (sentence-transformers' CosineSimilarityLoss): the batch holds
    /// pairs as consecutive sequences (2 p and 2 p + 1); each is mean-pooled over its tokens
    /// (exited tokens' frozen states included) and the loss is the mean over pairs of
    /// (cos(m_a, m_b) - score)^2. Adds options.weight x its gradient and returns the loss.
    /// `scores`: one per pair, finite (E28); an odd number of sequences is E28 as well.
    template <token_exit_policy P>
    double forward_backward_cosine(const packed_batch& batch, std::span<const double> scores, const P& policy,
                                   const step_options& options = {});

    /// Forward only, as the training step runs it without dropout: the logits [sequences,
    /// labels] of a classifier, or the cosine of each pair (2 p, 2 p + 1) of an encoder alone.
    /// No gradient changes. The batch's errors are forward_backward's.
    template <token_exit_policy P>
    std::vector<double> infer(const packed_batch& batch, const P& policy) const;

private:
    using ibuf = typename B::template buffer<std::int32_t>;

    static void check_labels(int labels) {
        if (labels < 1) throw usage_error("U46", "trainable_bert: labels must be >= 1, not " + std::to_string(labels));
    }

    /// Loads every tensor from f, or the classifier from `head` (weight, bias) when it is given.
    static trainable_bert load(const safetensors_file& f, const bert_config& config, int labels, const B& backend,
                               const std::vector<std::vector<float>>& head) {
        trainable_bert m(config, labels, backend);
        const std::string prefix = f.find("bert.embeddings.word_embeddings.weight") ? "bert." : "";
        std::size_t head_part = 0;
        for (tensor& t : m.tensors_) {
            const bool classifier = t.name.rfind("classifier.", 0) == 0;
            std::vector<T> converted;
            if (classifier && !head.empty()) {
                const std::vector<float>& values = head.at(head_part++);
                converted.assign(values.begin(), values.end());
            } else {
                const std::string name = classifier ? t.name : prefix + t.name.substr(5); // drop the "bert." of the canonical name
                const std::initializer_list<std::int64_t> vector_shape{t.rows}, matrix_shape{t.rows, t.cols};
                const tensor_info& info = f.expect(name, t.cols == 1 ? vector_shape : matrix_shape);
                std::vector<float> storage;
                const std::span<const float> values = f.floats(info, storage);
                converted.assign(values.begin(), values.end());
            }
            backend.upload(std::span<const T>(converted), t.value.data());
        }
        return m;
    }

    trainable_bert(const bert_config& config, int labels, const B& backend) : config_(config), labels_(labels), backend_(&backend) {
        const index_t d = config.hidden_size, ff = config.intermediate_size;
        auto add = [&](std::string name, index_t rows, index_t cols, bool decays) {
            tensor t;
            t.name = std::move(name);
            t.rows = rows;
            t.cols = cols;
            t.decays = decays;
            t.value = backend.template allocate<T>(rows * cols);
            t.grad = backend.template allocate<T>(rows * cols);
            tensors_.push_back(std::move(t));
            return tensors_.size() - 1;
        };
        auto linear = [&](const std::string& n, index_t out, index_t in) {
            const std::size_t w = add(n + ".weight", out, in, true);
            add(n + ".bias", out, 1, false);
            return w;
        };
        auto norm = [&](const std::string& n) {
            const std::size_t g = add(n + ".weight", d, 1, false);
            add(n + ".bias", d, 1, false);
            return g;
        };
        word_ = add("bert.embeddings.word_embeddings.weight", config.vocab_size, d, true);
        add("bert.embeddings.position_embeddings.weight", config.max_position_embeddings, d, true);
        add("bert.embeddings.token_type_embeddings.weight", config.type_vocab_size, d, true);
        norm("bert.embeddings.LayerNorm");
        for (int l = 0; l < config.num_hidden_layers; ++l) {
            const std::string p = "bert.encoder.layer." + std::to_string(l) + ".";
            layers_.push_back(linear(p + "attention.self.query", d, d));
            linear(p + "attention.self.key", d, d);
            linear(p + "attention.self.value", d, d);
            linear(p + "attention.output.dense", d, d);
            norm(p + "attention.output.LayerNorm");
            linear(p + "intermediate.dense", ff, d);
            linear(p + "output.dense", d, ff);
            norm(p + "output.LayerNorm");
        }
        if (labels > 0) {
            pooler_ = linear("bert.pooler.dense", d, d);
            linear("classifier", labels, d);
        }
    }

    /// A [rows, cols] buffer of T and its view.
    struct scratch {
        typename B::template buffer<T> buf;
        matrix_view<T> m;
    };
    scratch make(index_t rows, index_t cols) const {
        scratch s{backend_->template allocate<T>(rows * cols), {}};
        s.m = matrix_view<T>(s.buf.data(), rows, cols);
        return s;
    }
    ibuf upload_ints(const std::vector<std::int32_t>& host) const {
        auto buf = backend_->template allocate<std::int32_t>(static_cast<index_t>(host.size()));
        backend_->upload(std::span<const std::int32_t>(host), buf.data());
        return buf;
    }

    /// What the backward of one layer reads. `input` holds every row's state before the layer;
    /// the rest hold the active rows only (m of them; k and v every row under keep).
    struct layer_activations {
        index_t m = 0;
        bool dense = true;                 ///< every row active: no gather or scatter
        ibuf rows, q_offsets;              ///< the active rows and each sequence's first (not dense)
        scratch input, x, q, k, v, context, lse, xhat1, rstd1, h1, pre, act, xhat2, rstd2;
        const_matrix_view<T> active_input() const { return dense ? const_matrix_view<T>(input.m) : const_matrix_view<T>(x.m); }
    };

    /// The forward of the encoder, kept for its backward.
    struct tape {
        ibuf ids, types, positions, offsets;
        scratch emb_xhat, emb_rstd, h; ///< h: the final states of every row
        std::vector<layer_activations> layers;
        index_t tokens = 0, sequences = 0;
        vector_view<const std::int32_t> offsets_view() const { return {offsets.data(), sequences + 1}; }
    };

    /// The key of the dropout mask of (layer, site) in this call: layer 0 the embeddings, 1..L
    /// the layers, L + 1 the pooler.
    enum class site : std::uint64_t { embeddings, attention_probabilities, attention_output, ffn_output, pooled };
    static std::uint64_t dropout_key(const training_dropout& d, int layer, site s) {
        return (d.draw << 12) | (static_cast<std::uint64_t>(layer) << 3) | static_cast<std::uint64_t>(s);
    }
    detail::train_fn::attention_dropout attention_drop(const training_dropout& d, int layer) const {
        return {d.attention, detail::stream_seed(d.seed, dropout_key(d, layer, site::attention_probabilities))};
    }
    void drop(matrix_view<T> x, const training_dropout& d, int layer, site s) const {
        backend_->dropout(x, d.hidden, d.seed, dropout_key(d, layer, s));
    }
    /// dy through a dropout site into `into` (dy itself when the site is off; dy is kept: the
    /// residual path reads it unmasked).
    matrix_view<T> dropped(matrix_view<T> dy, matrix_view<T> into, const training_dropout& d, int layer, site s) const {
        if (d.hidden == 0) return dy;
        backend_->fill(into, T(0));
        backend_->add_scaled(into, const_matrix_view<T>(dy));
        drop(into, d, layer, s);
        return into;
    }

    /// y = x W^T + b (tensor index w: the weight, w + 1 its bias).
    void linear_forward(const_matrix_view<T> x, std::size_t w, matrix_view<T> y) const {
        backend_->matmul(x, false, tensors_[w].v(), true, y);
        backend_->add_bias_epilogue(y, tensors_[w + 1].vec(), epilogue::none, y);
    }
    /// dW += dy^T x, db += column sums of dy; dx = dy W (+= when accumulate).
    void linear_backward(const_matrix_view<T> x, const_matrix_view<T> dy, std::size_t w, matrix_view<T> dx, bool accumulate) {
        backend_->matmul(dy, true, x, false, tensors_[w].g(), T(1));
        backend_->add_column_sums(dy, tensors_[w + 1].gvec());
        if (dx.data) backend_->matmul(dy, false, tensors_[w].v(), false, dx, accumulate ? T(1) : T(0));
    }
    /// y = LayerNorm(s) with the tensors at g (gamma) and g + 1 (beta), keeping xhat and rstd.
    void norm_forward(const_matrix_view<T> s, std::size_t g, matrix_view<T> y, scratch& xhat, scratch& rstd) const {
        xhat = make(s.rows, s.cols);
        rstd = make(s.rows, 1);
        backend_->layer_norm_train(s, tensors_[g].vec(), tensors_[g + 1].vec(), static_cast<T>(config_.layer_norm_eps), y, xhat.m,
                                   vector_view<T>(rstd.buf.data(), s.rows));
    }
    void norm_backward(const_matrix_view<T> dy, std::size_t g, const scratch& xhat, const scratch& rstd, matrix_view<T> dx) {
        backend_->layer_norm_backward(dy, const_matrix_view<T>(xhat.m), vector_view<const T>(rstd.buf.data(), dy.rows),
                                      tensors_[g].vec(), dx, tensors_[g].gvec(), tensors_[g + 1].gvec());
    }

    /// Validates the batch and the exit policy's layers, then runs the encoder forward.
    template <token_exit_policy P>
    tape encode_checked(const packed_batch& batch, const P& policy, const training_dropout& d) const {
        batch.validate(config_); // E13, E14, E15
        const std::vector<std::uint8_t> exits = token_exit_layers(config_.num_hidden_layers, batch, policy); // U32
        for (const double p : {d.hidden, d.attention})
            if (!(p >= 0 && p < 1)) throw usage_error("U45", "dropout: probability must be in [0, 1), not " + std::to_string(p));
        return encode<P::kv>(batch, exits, d);
    }
    template <kv_semantics KV>
    tape encode(const packed_batch& batch, const std::vector<std::uint8_t>& exits, const training_dropout& d) const;
    template <kv_semantics KV>
    void encode_backward(tape& t, matrix_view<T> dh, const training_dropout& d);

    /// The classifier head's forward on the final [CLS] rows, kept for its backward.
    struct head_state {
        ibuf cls;
        scratch first, pooled_pre, pooled, z;
        std::vector<T> logits; ///< z on the host
    };
    head_state head_forward(const tape& t, const packed_batch& batch, const training_dropout& d) const {
        const B& b = *backend_;
        const index_t dm = config_.hidden_size, sequences = batch.sequences();
        head_state h;
        h.cls = upload_ints(std::vector<std::int32_t>(batch.offsets.begin(), batch.offsets.end() - 1));
        h.first = make(sequences, dm), h.pooled_pre = make(sequences, dm), h.pooled = make(sequences, dm), h.z = make(sequences, labels_);
        b.gather_rows(const_matrix_view<T>(t.h.m), vector_view<const std::int32_t>(h.cls.data(), sequences), h.first.m);
        b.matmul(const_matrix_view<T>(h.first.m), false, tensors_[pooler_].v(), true, h.pooled_pre.m);
        b.add_bias_epilogue(h.pooled_pre.m, tensors_[pooler_ + 1].vec(), epilogue::tanh, h.pooled.m);
        drop(h.pooled.m, d, config_.num_hidden_layers + 1, site::pooled);
        linear_forward(h.pooled.m, pooler_ + 2, h.z.m);
        h.logits.resize(static_cast<std::size_t>(sequences * labels_));
        b.download(static_cast<const T*>(h.z.buf.data()), std::span<T>(h.logits));
        return h;
    }
    /// Each sequence's mean final state [sequences, d], in double on the host, and the states.
    std::vector<double> mean_pool(const tape& t, const packed_batch& batch, std::vector<T>& states) const {
        const index_t dm = config_.hidden_size, sequences = batch.sequences();
        states.resize(static_cast<std::size_t>(t.tokens * dm));
        backend_->download(static_cast<const T*>(t.h.buf.data()), std::span<T>(states));
        std::vector<double> mean(static_cast<std::size_t>(sequences * dm), 0.0);
        for (index_t s = 0; s < sequences; ++s) {
            double* ms = mean.data() + s * dm;
            for (std::int32_t r = batch.offsets[s]; r < batch.offsets[s + 1]; ++r)
                for (index_t c = 0; c < dm; ++c) ms[c] += static_cast<double>(states[static_cast<std::size_t>(r * dm + c)]);
            for (index_t c = 0; c < dm; ++c) ms[c] /= static_cast<double>(batch.length(s));
        }
        return mean;
    }
    /// The cosine of two means and their norms (each at least 1e-8).
    struct pair_cosine {
        double cosine, norm_a, norm_b;
    };
    static pair_cosine cosine_of(const double* a, const double* b, index_t d) {
        double ab = 0, aa = 0, bb = 0;
        for (index_t c = 0; c < d; ++c) ab += a[c] * b[c], aa += a[c] * a[c], bb += b[c] * b[c];
        const double na = std::max(std::sqrt(aa), 1e-8), nb = std::max(std::sqrt(bb), 1e-8);
        return {ab / (na * nb), na, nb};
    }
    static void check_pairs(const packed_batch& batch) {
        if (batch.sequences() % 2 != 0)
            throw input_error("E28", "the cosine objective takes pairs of sequences; this batch has " + std::to_string(batch.sequences()));
    }

    bert_config config_;
    int labels_;
    const B* backend_;
    std::vector<tensor> tensors_;
    std::size_t word_ = 0, pooler_ = 0;
    std::vector<std::size_t> layers_; ///< each layer's first tensor (its query weight)
};

template <training_backend B, class T>
template <kv_semantics KV>
auto trainable_bert<B, T>::encode(const packed_batch& batch, const std::vector<std::uint8_t>& exits, const training_dropout& d) const
    -> tape {
    const B& b = *backend_;
    const index_t n = batch.tokens(), dm = config_.hidden_size, heads = config_.num_attention_heads, ff = config_.intermediate_size;
    tape t;
    t.tokens = n;
    t.sequences = batch.sequences();
    t.ids = upload_ints(batch.ids), t.types = upload_ints(batch.type_ids), t.positions = upload_ints(batch.positions);
    t.offsets = upload_ints(batch.offsets);
    const vector_view<const std::int32_t> all_offsets = t.offsets_view();
    scratch sum = make(n, dm), h = make(n, dm);
    const std::size_t emb = word_;
    b.embed_sum(vector_view<const std::int32_t>(t.ids.data(), n), vector_view<const std::int32_t>(t.types.data(), n),
                vector_view<const std::int32_t>(t.positions.data(), n), tensors_[emb].v(), tensors_[emb + 1].v(), tensors_[emb + 2].v(),
                sum.m);
    norm_forward(sum.m, emb + 3, h.m, t.emb_xhat, t.emb_rstd);
    drop(h.m, d, 0, site::embeddings);
    t.layers.resize(layers_.size());
    for (std::size_t l = 0; l < layers_.size(); ++l) {
        const std::size_t w = layers_[l]; // query, key, value, output, norm, intermediate, output, norm
        const int layer = static_cast<int>(l) + 1;
        layer_activations& a = t.layers[l];
        // The active rows (exit >= this layer), per sequence, in packed order.
        std::vector<std::int32_t> rows, q_offsets{0};
        for (index_t s = 0; s < t.sequences; ++s) {
            for (std::int32_t r = batch.offsets[s]; r < batch.offsets[s + 1]; ++r)
                if (exits[static_cast<std::size_t>(r)] >= layer) rows.push_back(r);
            q_offsets.push_back(static_cast<std::int32_t>(rows.size()));
        }
        a.m = static_cast<index_t>(rows.size());
        a.dense = a.m == n;
        a.input = std::move(h);
        if (a.m == 0) { // every token has exited: the states pass through
            h = std::move(a.input);
            continue;
        }
        vector_view<const std::int32_t> q_off = all_offsets;
        if (!a.dense) {
            a.rows = upload_ints(rows), a.q_offsets = upload_ints(q_offsets);
            q_off = {a.q_offsets.data(), t.sequences + 1};
            a.x = make(a.m, dm);
            b.gather_rows(const_matrix_view<T>(a.input.m), vector_view<const std::int32_t>(a.rows.data(), a.m), a.x.m);
        }
        const index_t m = a.m;
        const const_matrix_view<T> x = a.active_input();
        const bool keep = KV == kv_semantics::keep;
        const const_matrix_view<T> kv_source = keep ? const_matrix_view<T>(a.input.m) : x;
        const vector_view<const std::int32_t> kv_off = keep ? all_offsets : q_off;
        a.q = make(m, dm), a.k = make(kv_source.rows, dm), a.v = make(kv_source.rows, dm), a.context = make(m, dm);
        a.lse = make(m, heads);
        linear_forward(x, w, a.q.m);
        linear_forward(kv_source, w + 2, a.k.m);
        linear_forward(kv_source, w + 4, a.v.m);
        b.attention_train(const_matrix_view<T>(a.q.m), a.k.m, a.v.m, q_off, kv_off, static_cast<int>(heads), a.context.m, a.lse.m,
                          attention_drop(d, layer));
        scratch s1 = make(m, dm);
        linear_forward(a.context.m, w + 6, s1.m);
        drop(s1.m, d, layer, site::attention_output);
        b.add_scaled(s1.m, x);
        a.h1 = make(m, dm);
        norm_forward(s1.m, w + 8, a.h1.m, a.xhat1, a.rstd1);
        a.pre = make(m, ff), a.act = make(m, ff);
        b.matmul(const_matrix_view<T>(a.h1.m), false, tensors_[w + 10].v(), true, a.pre.m);
        b.add_bias_epilogue(a.pre.m, tensors_[w + 11].vec(), epilogue::gelu, a.act.m);
        scratch s2 = make(m, dm);
        linear_forward(a.act.m, w + 12, s2.m);
        drop(s2.m, d, layer, site::ffn_output);
        b.add_scaled(s2.m, const_matrix_view<T>(a.h1.m));
        scratch y = make(m, dm);
        norm_forward(s2.m, w + 14, y.m, a.xhat2, a.rstd2);
        if (a.dense) {
            h = std::move(y);
        } else { // the exited rows keep their frozen states
            h = make(n, dm);
            b.fill(h.m, T(0));
            b.add_scaled(h.m, const_matrix_view<T>(a.input.m));
            b.scatter_rows(const_matrix_view<T>(y.m), vector_view<const std::int32_t>(a.rows.data(), m), h.m);
        }
    }
    t.h = std::move(h);
    return t;
}

template <training_backend B, class T>
template <kv_semantics KV>
void trainable_bert<B, T>::encode_backward(tape& t, matrix_view<T> dh, const training_dropout& d) {
    const B& b = *backend_;
    const index_t n = t.tokens, dm = config_.hidden_size, heads = config_.num_attention_heads, ff = config_.intermediate_size;
    const vector_view<const std::int32_t> all_offsets = t.offsets_view();
    scratch ds = make(n, dm), dff = make(n, ff), dctx = make(n, dm), dq = make(n, dm), dk = make(n, dm), dv = make(n, dm),
            dy = make(n, dm), dmask = make(d.hidden > 0 ? n : 0, dm);
    auto rows_of = [](const scratch& s, index_t m) { return s.m.block_rows(0, m); };
    for (std::size_t l = t.layers.size(); l-- > 0;) {
        layer_activations& a = t.layers[l];
        if (a.m == 0) continue; // the states passed through: so does their gradient
        const std::size_t w = layers_[l];
        const int layer = static_cast<int>(l) + 1;
        const index_t m = a.m;
        const bool keep = KV == kv_semantics::keep;
        const vector_view<const std::int32_t> rows(a.rows.data(), m);
        const vector_view<const std::int32_t> q_off = a.dense ? all_offsets : vector_view<const std::int32_t>(a.q_offsets.data(), t.sequences + 1);
        const vector_view<const std::int32_t> kv_off = keep ? all_offsets : q_off;
        const const_matrix_view<T> x = a.active_input();
        // dx first holds the gradient of the layer's output on the active rows (gathered from dh),
        // then, reused, that of their input.
        const matrix_view<T> dx = a.dense ? dh : rows_of(dy, m);
        if (!a.dense) b.gather_rows(const_matrix_view<T>(dh), rows, dx);
        const matrix_view<T> dsm = rows_of(ds, m), dffm = rows_of(dff, m), dmm = rows_of(dmask, d.hidden > 0 ? m : 0);
        norm_backward(dx, w + 14, a.xhat2, a.rstd2, dsm); // ds: d(output + h1)
        linear_backward(a.act.m, dropped(dsm, dmm, d, layer, site::ffn_output), w + 12, dffm, false); // dff: d act
        b.epilogue_backward(const_matrix_view<T>(a.pre.m), dffm, epilogue::gelu);
        linear_backward(a.h1.m, dffm, w + 10, dsm, true);   // ds: d h1 (residual + intermediate)
        norm_backward(dsm, w + 8, a.xhat1, a.rstd1, dx);     // dx: d(attention output + x)
        const matrix_view<T> dctxm = rows_of(dctx, m), dqm = rows_of(dq, m), dkm = rows_of(dk, a.k.m.rows), dvm = rows_of(dv, a.v.m.rows);
        linear_backward(a.context.m, dropped(dx, dmm, d, layer, site::attention_output), w + 6, dctxm, false);
        b.attention_backward(const_matrix_view<T>(a.q.m), a.k.m, a.v.m, a.context.m, dctxm, a.lse.m, q_off, kv_off,
                             static_cast<int>(heads), dqm, dkm, dvm, attention_drop(d, layer));
        linear_backward(x, dqm, w, dx, true); // dx: residual + query path
        const const_matrix_view<T> kv_source = keep ? const_matrix_view<T>(a.input.m) : x;
        if (keep && !a.dense) {
            // The active rows' gradient into dh (exited rows keep theirs: the pass-through), then
            // the key and value paths of every row, exited ones included.
            b.scatter_rows(const_matrix_view<T>(dx), rows, dh);
            linear_backward(kv_source, dkm, w + 2, dh, true);
            linear_backward(kv_source, dvm, w + 4, dh, true);
        } else {
            linear_backward(kv_source, dkm, w + 2, dx, true);
            linear_backward(kv_source, dvm, w + 4, dx, true);
            if (!a.dense) b.scatter_rows(const_matrix_view<T>(dx), rows, dh);
        }
    }
    drop(dh, d, 0, site::embeddings);
    const std::size_t emb = word_;
    norm_backward(dh, emb + 3, t.emb_xhat, t.emb_rstd, ds.m);
    b.embed_backward(const_matrix_view<T>(ds.m), vector_view<const std::int32_t>(t.ids.data(), n),
                     vector_view<const std::int32_t>(t.types.data(), n), vector_view<const std::int32_t>(t.positions.data(), n),
                     tensors_[emb].g(), tensors_[emb + 1].g(), tensors_[emb + 2].g());
}

template <training_backend B, class T>
template <token_exit_policy P>
double trainable_bert<B, T>::forward_backward(const packed_batch& batch, std::span<const double> targets, const P& policy,
                                              const step_options& options) {
    if (labels_ == 0) throw usage_error("U49", "trainable_bert: an encoder without a classifier trains by forward_backward_cosine");
    const B& b = *backend_;
    const index_t d = config_.hidden_size, sequences = batch.sequences();
    if (static_cast<index_t>(targets.size()) != sequences)
        throw input_error("E28", std::to_string(targets.size()) + " targets for " + std::to_string(sequences) + " samples");
    for (std::size_t s = 0; s < targets.size(); ++s) {
        const double t = targets[s];
        if (!std::isfinite(t)) throw input_error("E28", "target of sample " + std::to_string(s) + " is not finite");
        if (labels_ == 1) continue;
        if (t != std::floor(t)) throw input_error("E28", "target " + std::to_string(t) + " of sample " + std::to_string(s) + " is not a class index");
        if (t < 0 || t >= labels_)
            throw input_error("E28", "class " + std::to_string(static_cast<long long>(t)) + " of sample " + std::to_string(s) +
                                         " is outside [0, " + std::to_string(labels_) + ")");
    }
    const training_dropout& drop_opts = options.dropout;
    tape t = encode_checked(batch, policy, drop_opts);
    head_state head = head_forward(t, batch, drop_opts);
    const std::vector<T>& zh = head.logits;

    // the loss and its gradient on the host (sequences x labels values)
    std::vector<T> dz(zh.size());
    double loss = 0;
    const double inv = 1.0 / static_cast<double>(sequences), weight = options.weight;
    for (index_t s = 0; s < sequences; ++s) {
        const T* row = zh.data() + s * labels_;
        T* drow = dz.data() + s * labels_;
        if (labels_ == 1) {
            const double diff = static_cast<double>(row[0]) - targets[static_cast<std::size_t>(s)];
            loss += diff * diff * inv;
            drow[0] = static_cast<T>(2.0 * diff * inv * weight);
            continue;
        }
        double mx = row[0], denom = 0;
        for (int c = 1; c < labels_; ++c) mx = std::max(mx, static_cast<double>(row[c]));
        for (int c = 0; c < labels_; ++c) denom += std::exp(static_cast<double>(row[c]) - mx);
        const int y = static_cast<int>(targets[static_cast<std::size_t>(s)]);
        loss += (mx + std::log(denom) - static_cast<double>(row[y])) * inv;
        for (int c = 0; c < labels_; ++c)
            drow[c] = static_cast<T>((std::exp(static_cast<double>(row[c]) - mx) / denom - (c == y ? 1.0 : 0.0)) * inv * weight);
    }
    if (options.outputs) options.outputs->assign(zh.begin(), zh.end());
    b.upload(std::span<const T>(dz), head.z.buf.data()); // z now holds dL/dz

    // backward through the head into the [CLS] rows, then the encoder
    scratch du = make(sequences, d), dfirst = make(sequences, d);
    linear_backward(head.pooled.m, head.z.m, pooler_ + 2, du.m, false);
    drop(du.m, drop_opts, config_.num_hidden_layers + 1, site::pooled);
    b.epilogue_backward(const_matrix_view<T>(head.pooled_pre.m), du.m, epilogue::tanh);
    linear_backward(head.first.m, du.m, pooler_, dfirst.m, false);
    scratch dh = make(t.tokens, d);
    b.fill(dh.m, T(0));
    b.scatter_add_rows(const_matrix_view<T>(dfirst.m), vector_view<const std::int32_t>(head.cls.data(), sequences), dh.m);
    encode_backward<P::kv>(t, dh.m, drop_opts);
    return loss;
}

template <training_backend B, class T>
template <token_exit_policy P>
double trainable_bert<B, T>::forward_backward_cosine(const packed_batch& batch, std::span<const double> scores, const P& policy,
                                                     const step_options& options) {
    const index_t d = config_.hidden_size, sequences = batch.sequences(), pairs = sequences / 2;
    check_pairs(batch);
    if (static_cast<index_t>(scores.size()) != pairs)
        throw input_error("E28", std::to_string(scores.size()) + " scores for " + std::to_string(pairs) + " pairs");
    for (std::size_t p = 0; p < scores.size(); ++p)
        if (!std::isfinite(scores[p])) throw input_error("E28", "score of pair " + std::to_string(p) + " is not finite");
    tape t = encode_checked(batch, policy, options.dropout);

    // Mean pooling, the cosines, the loss and the gradient of the states, on the host in double.
    std::vector<T> h;
    const std::vector<double> mean = mean_pool(t, batch, h);
    std::vector<T> dh(h.size());
    std::vector<double> cosines;
    double loss = 0;
    const double inv = 1.0 / static_cast<double>(pairs);
    for (index_t p = 0; p < pairs; ++p) {
        const double *ma = mean.data() + 2 * p * d, *mb = ma + d;
        const auto [cosine, na, nb] = cosine_of(ma, mb, d);
        const double diff = cosine - scores[static_cast<std::size_t>(p)];
        cosines.push_back(cosine);
        loss += diff * diff * inv;
        const double dcos = 2.0 * diff * inv * options.weight;
        // d cos / d m_a = m_b / (|a||b|) - cos m_a / |a|^2, and d m / d h_t = 1 / n per token
        for (int side = 0; side < 2; ++side) {
            const double *self = side == 0 ? ma : mb, *other = side == 0 ? mb : ma, n_self = side == 0 ? na : nb;
            const index_t s = 2 * p + side;
            const double per_token = 1.0 / static_cast<double>(batch.length(s));
            for (index_t c = 0; c < d; ++c) {
                const double g = dcos * (other[c] / (na * nb) - cosine * self[c] / (n_self * n_self)) * per_token;
                for (std::int32_t r = batch.offsets[s]; r < batch.offsets[s + 1]; ++r) dh[static_cast<std::size_t>(r * d + c)] = static_cast<T>(g);
            }
        }
    }
    if (options.outputs) *options.outputs = cosines;
    backend_->upload(std::span<const T>(dh), t.h.buf.data()); // the final states now hold their gradient
    encode_backward<P::kv>(t, t.h.m, options.dropout);
    return loss;
}

template <training_backend B, class T>
template <token_exit_policy P>
std::vector<double> trainable_bert<B, T>::infer(const packed_batch& batch, const P& policy) const {
    const tape t = encode_checked(batch, policy, training_dropout{});
    if (labels_ > 0) {
        const head_state head = head_forward(t, batch, training_dropout{});
        return {head.logits.begin(), head.logits.end()};
    }
    check_pairs(batch);
    std::vector<T> states;
    const std::vector<double> mean = mean_pool(t, batch, states);
    std::vector<double> cosines;
    const index_t d = config_.hidden_size;
    for (index_t p = 0; p < batch.sequences() / 2; ++p) cosines.push_back(cosine_of(mean.data() + 2 * p * d, mean.data() + (2 * p + 1) * d, d).cosine);
    return cosines;
}

} // namespace hashee
