#pragma once
// Internal classifiers: one head per layer that turns layer l's states into logits (C classes,
// or C = 1 for regression), read by the sentence-level exit policies (sentence_exit.hpp).
//  - classifier_heads: pooler (tanh(W x + b)) + linear, per layer, on one row per sequence:
//    its [CLS] state (DeeBERT, PABEE, ElasticBERT) or the mean of its token states (what
//    sentence-transformers encoders such as all-MiniLM-L6-v2 were trained to be read by;
//    hashee-spec section 7 notes the deviation). Poolers are one per layer (DeeBERT,
//    ElasticBERT) or one shared by every layer (PABEE). Loads the checkpoint names of all
//    three (hashee-spec section 8) and saves DeeBERT's (or PABEE's when shared).
//  - fastbert_heads (fastbert_heads.hpp): FastBERT's own small head, reading every token.
// Heads run on the host: the encoder hands them the rows they read, as head_input says.
// Parameters are plain host vectors, so they can be trained here (head_training.hpp).

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <hashee/core/detail/random.hpp>
#include <hashee/backend/backend.hpp>
#include <hashee/model/bert_weights.hpp>
#include <hashee/core/detail/eigen.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>
#include <hashee/io/safetensors.hpp>

namespace hashee {

/// What a head reads of each sequence's states after its layer.
enum class head_input {
    cls,       ///< the [CLS] row
    mean,      ///< the mean of the sequence's token rows
    all_tokens ///< every token row
};

inline const char* to_string(head_input i) {
    switch (i) {
    case head_input::cls: return "cls";
    case head_input::mean: return "mean";
    case head_input::all_tokens: return "all_tokens";
    }
    return "?";
}

/// What a set of internal classifiers provides to the encoder and the exit policies.
template <class H>
concept internal_classifiers = requires(const H& h, int layer, const_matrix_view<float> states,
                                        std::span<const std::int32_t> offsets, matrix_view<float> logits) {
    { h.input() } -> std::same_as<head_input>;
    { h.num_layers() } -> std::convertible_to<int>;
    { h.outputs() } -> std::convertible_to<index_t>; ///< classes; 1 for regression
    /// logits [sequences, outputs] of head `layer` (1..L) from the rows the heads read:
    /// states.row(offsets[s]) .. offsets[s+1] - 1 belong to sequence s, which is one row (its
    /// [CLS] state or its mean, as input() says) unless input() is all_tokens.
    h.logits(layer, states, offsets, logits);
    /// The multiply-accumulates of head `layer` on one sequence of n tokens.
    { h.macs(layer, index_t{}) } -> std::convertible_to<std::int64_t>;
};

/// y = x W^T + b (optionally tanh of it) on the host; W is [out, in] as in PyTorch.
struct dense_params {
    index_t out = 0, in = 0;
    std::vector<float> weight, bias;

    static dense_params zeros(index_t out, index_t in) {
        return {out, in, std::vector<float>(static_cast<std::size_t>(out * in)), std::vector<float>(static_cast<std::size_t>(out))};
    }
    /// PyTorch's nn.Linear default: weight and bias uniform in +-1/sqrt(in), from `rng`.
    static dense_params uniform(index_t out, index_t in, detail::random_source& rng) {
        dense_params p = zeros(out, in);
        const double bound = 1.0 / std::sqrt(static_cast<double>(in));
        auto draw = [&] { return static_cast<float>((rng.uniform() * 2.0 - 1.0) * bound); };
        for (float& w : p.weight) w = draw();
        for (float& b : p.bias) b = draw();
        return p;
    }
    /// A host copy of a backbone linear layer (e.g. its pooler).
    template <backend B>
    static dense_params copy_of(const B& backend, const linear_weights& w) {
        dense_params p = zeros(w.weight.rows, w.weight.cols);
        if (w.weight.stride != w.weight.cols) throw usage_error("U34", "dense_params::copy_of: strided weights are not supported");
        backend.download(w.weight.data, std::span<float>(p.weight));
        backend.download(w.bias.data, std::span<float>(p.bias));
        return p;
    }

    /// y[r] = W x[r] + b, or tanh of it, for every row r of x.
    void apply(const_matrix_view<float> x, matrix_view<float> y, bool with_tanh = false) const {
        if (x.cols != in || y.cols != out || y.rows != x.rows)
            throw usage_error("U34", "dense_params::apply: shapes [" + std::to_string(x.rows) + ", " + std::to_string(x.cols) +
                              "] -> [" + std::to_string(y.rows) + ", " + std::to_string(y.cols) + "] do not fit [" +
                              std::to_string(out) + ", " + std::to_string(in) + "]");
        using mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        using stride = Eigen::OuterStride<>;
        Eigen::Map<const mat, 0, stride> X(x.data, x.rows, x.cols, stride(x.stride));
        Eigen::Map<mat, 0, stride> Y(y.data, y.rows, y.cols, stride(y.stride));
        Eigen::Map<const mat> W(weight.data(), out, in);
        Eigen::Map<const Eigen::RowVectorXf> b(bias.data(), out);
        Y.noalias() = X * W.transpose();
        Y.rowwise() += b;
        if (with_tanh) Y = Y.array().tanh();
    }
    std::int64_t macs() const { return out * in; }
};

namespace detail {

/// One row per sequence, as `input` (cls or mean) says, from token rows `tokens` of which
/// sequence s owns offsets[s] .. offsets[s+1] - 1: `out` becomes [sequences, hidden].
inline void sentence_rows(head_input input, const_matrix_view<float> tokens, std::span<const std::int32_t> offsets,
                          std::vector<float>& out) {
    const index_t d = tokens.cols, s = static_cast<index_t>(offsets.size()) - 1;
    out.assign(static_cast<std::size_t>(s * d), 0.0f);
    for (index_t i = 0; i < s; ++i) {
        float* o = out.data() + i * d;
        const std::int32_t first = offsets[static_cast<std::size_t>(i)], end = offsets[static_cast<std::size_t>(i) + 1];
        if (input == head_input::cls) {
            std::copy_n(tokens.row(first), d, o);
            continue;
        }
        for (std::int32_t r = first; r < end; ++r)
            for (index_t j = 0; j < d; ++j) o[j] += tokens.row(r)[j];
        const float n = static_cast<float>(end - first);
        for (index_t j = 0; j < d; ++j) o[j] /= n;
    }
}

/// The dense layer `name` of a checkpoint: name.weight [out, in] and name.bias [out] (-1 accepts
/// any size); a missing tensor, a shape that does not fit or a non-finite value is a weight_error
/// naming file and tensor. Shared by every head type that loads from safetensors.
inline dense_params read_dense(const safetensors_file& f, const std::string& name, index_t out, index_t in) {
    for (const char* part : {".weight", ".bias"})
        if (!f.find(name + part))
            throw weight_error("E27", detail::located(f.source(), "tensor '" + name + part + "' not found"));
    const tensor_info& w = f.at(name + ".weight");
    if (w.shape.size() != 2 || (out >= 0 && w.shape[0] != out) || (in >= 0 && w.shape[1] != in) || w.shape[0] < 1 ||
        w.shape[1] < 1)
        throw weight_error("E06", detail::located(f.source(), "tensor '" + w.name + "' has shape " + detail::shape_string(w.shape) +
                                                       "; expected [" + (out >= 0 ? std::to_string(out) : "out") +
                                                       ", " + (in >= 0 ? std::to_string(in) : "in") + "]"));
    dense_params p = dense_params::zeros(w.shape[0], w.shape[1]);
    std::vector<float> storage;
    const auto wv = f.floats(w, storage);
    std::copy(wv.begin(), wv.end(), p.weight.begin());
    const tensor_info& b = f.expect(name + ".bias", {p.out});
    const auto bv = f.floats(b, storage);
    std::copy(bv.begin(), bv.end(), p.bias.begin());
    for (const auto* v : {&p.weight, &p.bias})
        for (std::size_t i = 0; i < v->size(); ++i)
            if (!std::isfinite((*v)[i]))
                throw weight_error("E08", detail::located(f.source(), "tensor '" + (v == &p.weight ? w.name : b.name) + "': element " +
                                                               std::to_string(i) + " is not finite"));
    return p;
}

} // namespace detail

/// Pooler + linear classifier per layer, reading one row per sequence.
class classifier_heads {
public:
    /// Fresh heads for `layers` layers of width `hidden`: every pooler starts as a copy of
    /// `pooler` (the backbone's, as DeeBERT and PABEE do), every classifier from PyTorch's
    /// default initialisation drawn with `seed`. `shared_pooler`: one pooler for all layers.
    /// `input`: the row they read, [CLS] (as DeeBERT, PABEE, ElasticBERT) or the mean.
    classifier_heads(int layers, dense_params pooler, index_t outputs, bool shared_pooler, std::uint64_t seed,
                     head_input input = head_input::cls)
        : input_(input), hidden_(pooler.in) {
        if (layers < 1) throw usage_error("U35", "classifier_heads: need at least one layer");
        if (outputs < 1) throw usage_error("U35", "classifier_heads: need at least one output");
        if (pooler.in != pooler.out) throw usage_error("U35", "classifier_heads: a pooler must be square");
        if (input == head_input::all_tokens)
            throw input_error("E31", "classifier_heads: they read one row per sequence ([CLS] or the mean), not all tokens");
        detail::random_source rng(seed);
        poolers_.assign(shared_pooler ? 1 : static_cast<std::size_t>(layers), pooler);
        for (int l = 0; l < layers; ++l) classifiers_.push_back(dense_params::uniform(outputs, hidden_, rng));
    }

    head_input input() const { return input_; }
    int num_layers() const { return static_cast<int>(classifiers_.size()); }
    index_t hidden_size() const { return hidden_; }
    index_t outputs() const { return classifiers_.front().out; }
    bool shared_pooler() const { return poolers_.size() == 1 && classifiers_.size() > 1; }

    const dense_params& pooler(int layer) const { return poolers_[pooler_index(layer)]; }
    dense_params& pooler(int layer) { return poolers_[pooler_index(layer)]; }
    const dense_params& classifier(int layer) const { return classifiers_[index(layer)]; }
    dense_params& classifier(int layer) { return classifiers_[index(layer)]; }

    /// logits = W_c tanh(W_p x + b_p) + b_c of head `layer` for the row x each sequence has.
    void logits(int layer, const_matrix_view<float> states, std::span<const std::int32_t> offsets,
                matrix_view<float> out) const {
        const index_t s = static_cast<index_t>(offsets.size()) - 1;
        std::vector<float> x(static_cast<std::size_t>(s * hidden_)), pooled(x.size());
        for (index_t i = 0; i < s; ++i) std::copy_n(states.row(offsets[static_cast<std::size_t>(i)]), hidden_, x.data() + i * hidden_);
        pooler(layer).apply({x.data(), s, hidden_}, {pooled.data(), s, hidden_}, /*with_tanh=*/true);
        classifier(layer).apply(const_matrix_view<float>(pooled.data(), s, hidden_), out);
    }
    std::int64_t macs(int layer, index_t) const { return pooler(layer).macs() + classifier(layer).macs(); }

    /// Loads heads saved under any of the checkpoint namings of hashee-spec section 8:
    ///   DeeBERT      bert.encoder.highway.N.pooler.dense.* and bert.encoder.highway.N.classifier.*
    ///   PABEE        bert.pooler.dense.* (shared) and classifiers.N.*
    ///   ElasticBERT  elasticbert.encoder.pooler.N.dense.* and classifiers.N.*
    /// (N = 0..L-1 for layers 1..L). The layer count is the number of classifiers found; a
    /// missing pooler or a shape that does not fit is a weight_error naming file and tensor.
    /// The heads read [CLS] unless the file's metadata says "hashee.head_input": "mean" (as
    /// save writes for heads that read the mean).
    static classifier_heads load(const std::filesystem::path& path) {
        const safetensors_file f = safetensors_file::open(path);
        head_input input = head_input::cls;
        if (const auto it = f.metadata().find(input_key); it != f.metadata().end()) {
            if (it->second == "mean") input = head_input::mean;
            else if (it->second != "cls")
                throw weight_error("E32", detail::located(f.source(), std::string("metadata '") + input_key + "' is '" + it->second +
                                                               "'; expected 'cls' or 'mean'"));
        }
        const bool deebert = f.find("bert.encoder.highway.0.classifier.weight") != nullptr;
        const bool elastic = f.find("elasticbert.encoder.pooler.0.dense.weight") != nullptr;
        const bool pabee = !deebert && !elastic && f.find("classifiers.0.weight") != nullptr;
        if (!deebert && !elastic && !pabee)
            throw weight_error("E27", detail::located(f.source(), "no internal classifiers found (expected DeeBERT's "
                                                           "bert.encoder.highway.N.*, PABEE's classifiers.N.* with "
                                                           "bert.pooler.dense.*, or ElasticBERT's "
                                                           "elasticbert.encoder.pooler.N.dense.* with classifiers.N.*)"));
        auto classifier_name = [&](int n) {
            return deebert ? "bert.encoder.highway." + std::to_string(n) + ".classifier" : "classifiers." + std::to_string(n);
        };
        auto pooler_name = [&](int n) {
            if (deebert) return "bert.encoder.highway." + std::to_string(n) + ".pooler.dense";
            if (elastic) return "elasticbert.encoder.pooler." + std::to_string(n) + ".dense";
            return std::string("bert.pooler.dense");
        };
        int layers = 0;
        while (f.find(classifier_name(layers) + ".weight")) ++layers;
        if (layers == 0) throw weight_error("E27", detail::located(f.source(), "tensor '" + classifier_name(0) + ".weight' not found"));
        const dense_params first_pooler = detail::read_dense(f, pooler_name(0), -1, -1);
        const index_t hidden = first_pooler.in;
        if (first_pooler.out != hidden)
            throw weight_error("E06", detail::located(f.source(), "tensor '" + pooler_name(0) + ".weight' is not square"));
        const dense_params first_classifier = detail::read_dense(f, classifier_name(0), -1, hidden);
        classifier_heads h(layers, first_pooler, first_classifier.out, pabee, 0, input);
        for (int n = 0; n < layers; ++n) {
            h.classifiers_[static_cast<std::size_t>(n)] = detail::read_dense(f, classifier_name(n), first_classifier.out, hidden);
            if (!pabee) h.poolers_[static_cast<std::size_t>(n)] = detail::read_dense(f, pooler_name(n), hidden, hidden);
        }
        return h;
    }

    /// Saves as F32 safetensors under DeeBERT's names, or PABEE's when the pooler is shared,
    /// with what the heads read in the metadata.
    void save(const std::filesystem::path& path) const {
        std::vector<safetensors_tensor> t;
        auto add = [&](const std::string& name, const dense_params& p) {
            t.push_back({name + ".weight", {p.out, p.in}, p.weight});
            t.push_back({name + ".bias", {p.out}, p.bias});
        };
        const bool shared = poolers_.size() == 1 && classifiers_.size() > 1;
        if (shared) add("bert.pooler.dense", poolers_.front());
        for (int n = 0; n < num_layers(); ++n) {
            const auto N = std::to_string(n);
            if (shared) {
                add("classifiers." + N, classifiers_[static_cast<std::size_t>(n)]);
            } else {
                add("bert.encoder.highway." + N + ".pooler.dense", poolers_[static_cast<std::size_t>(n)]);
                add("bert.encoder.highway." + N + ".classifier", classifiers_[static_cast<std::size_t>(n)]);
            }
        }
        write_safetensors(path, t, {{input_key, to_string(input_)}});
    }

private:
    static constexpr const char* input_key = "hashee.head_input";
    std::size_t index(int layer) const {
        if (layer < 1 || layer > num_layers())
            throw usage_error("U36", "classifier_heads: layer " + std::to_string(layer) + " is outside 1.." + std::to_string(num_layers()));
        return static_cast<std::size_t>(layer - 1);
    }
    std::size_t pooler_index(int layer) const { return poolers_.size() == 1 ? (index(layer), 0) : index(layer); }

    head_input input_ = head_input::cls;
    index_t hidden_ = 0;
    std::vector<dense_params> poolers_, classifiers_;
};

static_assert(internal_classifiers<classifier_heads>);

} // namespace hashee
