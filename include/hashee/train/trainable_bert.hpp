#pragma once
// A BERT sequence classifier whose every parameter trains: Hugging Face's
// BertForSequenceClassification (embeddings, L layers, pooler on [CLS], classifier) with its
// parameters and their gradients in a training backend's memory, in T = float (training) or
// double (the gradient tests). forward_backward runs one packed batch (no padding is computed),
// keeps what the backward needs, and accumulates every parameter's gradient: cross-entropy for
// two or more labels, mean squared error for one (as Hugging Face's problem types). Dropout is
// off; the exits come with the training step. docs/training.md has the equations.

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <hashee/backend/training_backend.hpp>
#include <hashee/core/config.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>
#include <hashee/core/packed_batch.hpp>
#include <hashee/io/safetensors.hpp>

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

template <training_backend B, class T>
class trainable_bert {
public:
    using tensor = trainable_tensor<B, T>;

    /// Every parameter from a checkpoint (Hugging Face names, with or without "bert."), converted
    /// to T; the classifier ("classifier.weight" [labels, d], "classifier.bias") must be in it.
    /// A missing or mis-shaped tensor is a weight_error (E07, E08).
    static trainable_bert load(const safetensors_file& f, const bert_config& config, int labels, const B& backend) {
        trainable_bert m(config, labels, backend);
        const std::string prefix = f.find("bert.embeddings.word_embeddings.weight") ? "bert." : "";
        for (tensor& t : m.tensors_) {
            const bool head = t.name.rfind("classifier.", 0) == 0;
            const std::string name = head ? t.name : prefix + t.name.substr(5); // drop the "bert." of the canonical name
            const std::initializer_list<std::int64_t> vector_shape{t.rows}, matrix_shape{t.rows, t.cols};
            const tensor_info& info = f.expect(name, t.cols == 1 ? vector_shape : matrix_shape);
            std::vector<float> storage;
            const std::span<const float> values = f.floats(info, storage);
            const std::vector<T> converted(values.begin(), values.end());
            backend.upload(std::span<const T>(converted), t.value.data());
        }
        return m;
    }

    /// Every parameter, in Hugging Face's named_parameters() order.
    std::vector<tensor>& tensors() { return tensors_; }
    const std::vector<tensor>& tensors() const { return tensors_; }
    const bert_config& config() const { return config_; }
    int labels() const { return labels_; }

    /// Every gradient = 0.
    void zero_grad() {
        for (tensor& t : tensors_) backend_->fill(t.g(), T(0));
    }

    /// Runs the batch forward and backward, adds the gradient of `weight` x the batch's mean loss
    /// to every parameter's, and returns that mean loss; `logits` (if given) receives [sequences,
    /// labels]. `targets`: one per sequence, a class index (labels >= 2) or a value (labels == 1).
    /// Micro-batches accumulate: weights of their share of the sequences add up to the batch.
    /// Bad input is an input_error before anything runs: the batch's (packed_batch::validate:
    /// E13, E14, E15) and the targets' (E28: their count, a class outside the labels, NaN).
    double forward_backward(const packed_batch& batch, std::span<const double> targets, std::vector<double>* logits = nullptr,
                            double weight = 1.0);

private:
    trainable_bert(const bert_config& config, int labels, const B& backend)
        : config_(config), labels_(labels), backend_(&backend) {
        if (labels < 1) throw usage_error("U46", "trainable_bert: labels must be >= 1, not " + std::to_string(labels));
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
        pooler_ = linear("bert.pooler.dense", d, d);
        linear("classifier", labels, d);
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

    /// What the backward of one layer reads.
    struct layer_activations {
        scratch x, q, k, v, context, lse, xhat1, rstd1, h1, pre, act, xhat2, rstd2;
    };

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

    bert_config config_;
    int labels_;
    const B* backend_;
    std::vector<tensor> tensors_;
    std::size_t word_ = 0, pooler_ = 0;
    std::vector<std::size_t> layers_; ///< each layer's first tensor (its query weight)
};

template <training_backend B, class T>
double trainable_bert<B, T>::forward_backward(const packed_batch& batch, std::span<const double> targets,
                                              std::vector<double>* logits_out, double weight) {
    const B& b = *backend_;
    const index_t n = static_cast<index_t>(batch.ids.size()), d = config_.hidden_size, heads = config_.num_attention_heads;
    const index_t sequences = static_cast<index_t>(batch.offsets.size()) - 1, ff = config_.intermediate_size;
    batch.validate(config_); // E13, E14, E15
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
    auto upload_ints = [&](const std::vector<std::int32_t>& host) {
        auto buf = b.template allocate<std::int32_t>(static_cast<index_t>(host.size()));
        b.upload(std::span<const std::int32_t>(host), buf.data());
        return buf;
    };
    const auto ids = upload_ints(batch.ids), types = upload_ints(batch.type_ids), positions = upload_ints(batch.positions),
               offsets = upload_ints(batch.offsets);
    std::vector<std::int32_t> cls_host(batch.offsets.begin(), batch.offsets.end() - 1);
    const auto cls = upload_ints(cls_host);
    const vector_view<const std::int32_t> idv(ids.data(), n), tv(types.data(), n), pv(positions.data(), n),
        ov(offsets.data(), sequences + 1), clsv(cls.data(), sequences);

    // ---- forward, keeping what the backward reads --------------------------------------------
    scratch sum = make(n, d), emb_xhat, emb_rstd;
    const std::size_t emb = word_;
    b.embed_sum(idv, tv, pv, tensors_[emb].v(), tensors_[emb + 1].v(), tensors_[emb + 2].v(), sum.m);
    scratch h = make(n, d);
    norm_forward(sum.m, emb + 3, h.m, emb_xhat, emb_rstd);
    std::vector<layer_activations> acts(layers_.size());
    for (std::size_t l = 0; l < layers_.size(); ++l) {
        const std::size_t w = layers_[l]; // query, key, value, output, norm, intermediate, output, norm
        layer_activations& a = acts[l];
        a.x = std::move(h);
        a.q = make(n, d), a.k = make(n, d), a.v = make(n, d), a.context = make(n, d), a.lse = make(n, heads);
        linear_forward(a.x.m, w, a.q.m);
        linear_forward(a.x.m, w + 2, a.k.m);
        linear_forward(a.x.m, w + 4, a.v.m);
        b.attention_train(const_matrix_view<T>(a.q.m), a.k.m, a.v.m, ov, ov, static_cast<int>(heads), a.context.m, a.lse.m);
        scratch s1 = make(n, d);
        linear_forward(a.context.m, w + 6, s1.m);
        b.add_scaled(s1.m, const_matrix_view<T>(a.x.m));
        a.h1 = make(n, d);
        norm_forward(s1.m, w + 8, a.h1.m, a.xhat1, a.rstd1);
        a.pre = make(n, ff), a.act = make(n, ff);
        backend_->matmul(const_matrix_view<T>(a.h1.m), false, tensors_[w + 10].v(), true, a.pre.m);
        b.add_bias_epilogue(a.pre.m, tensors_[w + 11].vec(), epilogue::gelu, a.act.m);
        scratch s2 = make(n, d);
        linear_forward(a.act.m, w + 12, s2.m);
        b.add_scaled(s2.m, const_matrix_view<T>(a.h1.m));
        h = make(n, d);
        norm_forward(s2.m, w + 14, h.m, a.xhat2, a.rstd2);
    }
    // pooler on [CLS], then the classifier
    scratch first = make(sequences, d), pooled_pre = make(sequences, d), pooled = make(sequences, d), z = make(sequences, labels_);
    b.gather_rows(const_matrix_view<T>(h.m), clsv, first.m);
    backend_->matmul(const_matrix_view<T>(first.m), false, tensors_[pooler_].v(), true, pooled_pre.m);
    b.add_bias_epilogue(pooled_pre.m, tensors_[pooler_ + 1].vec(), epilogue::tanh, pooled.m);
    linear_forward(pooled.m, pooler_ + 2, z.m);

    // ---- the loss and its gradient on the host (sequences x labels values) -----------------
    std::vector<T> zh(static_cast<std::size_t>(sequences * labels_)), dz(zh.size());
    b.download(static_cast<const T*>(z.buf.data()), std::span<T>(zh));
    double loss = 0;
    const double inv = 1.0 / static_cast<double>(sequences);
    for (index_t s = 0; s < sequences; ++s) {
        const T* row = zh.data() + s * labels_;
        T* drow = dz.data() + s * labels_;
        if (labels_ == 1) {
            const double diff = static_cast<double>(row[0]) - targets[static_cast<std::size_t>(s)];
            loss += diff * diff * inv;
            drow[0] = static_cast<T>(2.0 * diff * inv * weight);
            continue;
        }
        double m = row[0], denom = 0;
        for (int c = 1; c < labels_; ++c) m = std::max(m, static_cast<double>(row[c]));
        for (int c = 0; c < labels_; ++c) denom += std::exp(static_cast<double>(row[c]) - m);
        const int y = static_cast<int>(targets[static_cast<std::size_t>(s)]);
        loss += (m + std::log(denom) - static_cast<double>(row[y])) * inv;
        for (int c = 0; c < labels_; ++c)
            drow[c] = static_cast<T>((std::exp(static_cast<double>(row[c]) - m) / denom - (c == y ? 1.0 : 0.0)) * inv * weight);
    }
    if (logits_out) logits_out->assign(zh.begin(), zh.end());
    b.upload(std::span<const T>(dz), z.buf.data()); // z now holds dL/dz

    // ---- backward ---------------------------------------------------------------------------
    scratch du = make(sequences, d), dfirst = make(sequences, d);
    linear_backward(pooled.m, z.m, pooler_ + 2, du.m, false);
    b.epilogue_backward(const_matrix_view<T>(pooled_pre.m), du.m, epilogue::tanh);
    linear_backward(first.m, du.m, pooler_, dfirst.m, false);
    scratch dh = make(n, d);
    b.fill(dh.m, T(0));
    b.scatter_add_rows(const_matrix_view<T>(dfirst.m), clsv, dh.m);
    scratch ds = make(n, d), dff = make(n, ff), dctx = make(n, d), dq = make(n, d), dk = make(n, d), dv = make(n, d);
    for (std::size_t l = layers_.size(); l-- > 0;) {
        const std::size_t w = layers_[l];
        layer_activations& a = acts[l];
        norm_backward(dh.m, w + 14, a.xhat2, a.rstd2, ds.m);   // ds: d(output + h1)
        linear_backward(a.act.m, ds.m, w + 12, dff.m, false);  // dff: d act
        b.epilogue_backward(const_matrix_view<T>(a.pre.m), dff.m, epilogue::gelu);
        linear_backward(a.h1.m, dff.m, w + 10, ds.m, true);    // ds: d h1 (residual + intermediate)
        norm_backward(ds.m, w + 8, a.xhat1, a.rstd1, dh.m);    // dh: d(attention output + x)
        linear_backward(a.context.m, dh.m, w + 6, dctx.m, false);
        b.attention_backward(const_matrix_view<T>(a.q.m), a.k.m, a.v.m, a.context.m, dctx.m, a.lse.m, ov, ov,
                             static_cast<int>(heads), dq.m, dk.m, dv.m);
        linear_backward(a.x.m, dq.m, w, dh.m, true);            // dh: d x (residual + q, k, v)
        linear_backward(a.x.m, dk.m, w + 2, dh.m, true);
        linear_backward(a.x.m, dv.m, w + 4, dh.m, true);
    }
    norm_backward(dh.m, emb + 3, emb_xhat, emb_rstd, ds.m);
    b.embed_backward(const_matrix_view<T>(ds.m), idv, tv, pv, tensors_[emb].g(), tensors_[emb + 1].g(), tensors_[emb + 2].g());
    return loss;
}

} // namespace hashee
