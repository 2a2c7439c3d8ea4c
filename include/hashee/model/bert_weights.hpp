#pragma once
// The weights of a BERT encoder, bound to a backend. On a host backend F32 tensors are views
// straight into the memory-mapped checkpoint (no copy); F16/BF16 tensors are converted once.
// On a device backend every tensor is uploaded once. Each layer's query, key and value weights
// are stacked into one owned [3d, d] weight (one fused product). Immutable after loading.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <hashee/backend/backend.hpp>
#include <hashee/core/config.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>
#include <hashee/io/safetensors.hpp>

namespace hashee {

/// A linear layer: its weight [out, in] as `Weight` (a plain view, or what a backend prepared
/// from one for its products: backend_gemm's weight_matrix) and its bias [out].
template <class Weight>
struct basic_linear_weights {
    Weight weight;                 ///< [out, in]
    vector_view<const float> bias; ///< [out]
};
using linear_weights = basic_linear_weights<const_matrix_view<float>>;

struct layer_norm_weights {
    vector_view<const float> gamma, beta;
};

struct embedding_weights {
    const_matrix_view<float> word, position, token_type;
    layer_norm_weights norm;
};

/// A transformer layer. Q, K and V are one product (query_key_value: the three weights stacked
/// [3d, d] at load, their biases [3d]); `query` (rows [0, d)) and `key_value` (rows [d, 3d)) are
/// its parts as products of their own, for the keep path, whose queries run on the active rows
/// and its keys and values on every row.
template <class Weight>
struct basic_layer_weights {
    basic_linear_weights<Weight> query_key_value, query, key_value, attention_output;
    layer_norm_weights attention_norm;
    basic_linear_weights<Weight> intermediate, output;
    layer_norm_weights output_norm;
};
using layer_weights = basic_layer_weights<const_matrix_view<float>>;

template <backend B>
class bert_weights {
public:
    /// A transformer layer's weights, its products' weights prepared by the backend at load.
    using layer_type = basic_layer_weights<typename B::weight_matrix>;

    /// Binds every tensor the config calls for. Accepts Hugging Face BERT names with or without
    /// a "bert." prefix and ElasticBERT's ("elasticbert.", one pooler per exit); ignores
    /// embeddings.position_ids and task heads. A missing or mis-shaped tensor is a weight_error.
    static bert_weights load(std::shared_ptr<const safetensors_file> file, const bert_config& config, const B& backend) {
        bert_weights w;
        w.file_ = std::move(file);
        const safetensors_file& f = *w.file_;
        w.prefix_ = detect_prefix(f);
        const std::int64_t d = config.hidden_size, ff = config.intermediate_size;
        auto name = [&](const std::string& n) { return w.prefix_ + n; };
        auto mat = [&](const std::string& n, std::int64_t rows, std::int64_t cols) {
            const tensor_info& t = f.expect(name(n), {rows, cols});
            return const_matrix_view<float>(w.bind(t, backend), rows, cols);
        };
        auto vec = [&](const std::string& n, std::int64_t size) {
            const tensor_info& t = f.expect(name(n), {size});
            return vector_view<const float>(w.bind(t, backend), size);
        };
        auto lin = [&](const std::string& n, std::int64_t out, std::int64_t in) {
            return linear_weights{mat(n + ".weight", out, in), vec(n + ".bias", out)};
        };
        auto norm = [&](const std::string& n) { return layer_norm_weights{vec(n + ".weight", d), vec(n + ".bias", d)}; };
        using prepared_linear = basic_linear_weights<typename B::weight_matrix>;
        auto prepare = [&](const linear_weights& l) { return prepared_linear{backend.prepare_weight(l.weight), l.bias}; };
        auto prepared = [&](const std::string& n, std::int64_t out, std::int64_t in) { return prepare(lin(n, out, in)); };
        // Linear layers of one input side by side: their weights' rows stacked, their biases.
        auto stacked = [&](const std::string& n, std::initializer_list<const char*> parts, std::int64_t out, std::int64_t in) {
            std::vector<const tensor_info*> weights, biases;
            for (const char* part : parts) {
                weights.push_back(&f.expect(name(n + part + ".weight"), {out, in}));
                biases.push_back(&f.expect(name(n + part + ".bias"), {out}));
            }
            const auto rows = static_cast<std::int64_t>(parts.size()) * out;
            return linear_weights{const_matrix_view<float>(w.bind_stacked(weights, backend), rows, in),
                                  vector_view<const float>(w.bind_stacked(biases, backend), rows)};
        };
        auto part = [&](const prepared_linear& l, index_t first, index_t count) {
            return prepared_linear{backend.weight_rows(l.weight, first, count), l.bias.slice(first, count)};
        };

        // The embedding table against config.json's vocab_size: the two files disagree (E11).
        if (const tensor_info* t = f.find(name("embeddings.word_embeddings.weight"));
            t && t->shape.size() == 2 && t->shape[1] == d && t->shape[0] != config.vocab_size) {
            const std::int64_t want[] = {config.vocab_size, d};
            throw weight_error("E11", detail::located(f.source(), "tensor '" + t->name + "' has shape " +
                                                                      detail::shape_string(t->shape) + ", expected " +
                                                                      detail::shape_string(want) + " (config.json says vocab_size " +
                                                                      std::to_string(config.vocab_size) + ")"));
        }
        w.embeddings_ = {mat("embeddings.word_embeddings.weight", config.vocab_size, d),
                         mat("embeddings.position_embeddings.weight", config.max_position_embeddings, d),
                         mat("embeddings.token_type_embeddings.weight", config.type_vocab_size, d),
                         norm("embeddings.LayerNorm")};
        for (int l = 0; l < config.num_hidden_layers; ++l) {
            const std::string p = "encoder.layer." + std::to_string(l) + ".";
            const prepared_linear qkv = prepare(stacked(p + "attention.self.", {"query", "key", "value"}, d, d));
            w.layers_.push_back({qkv, part(qkv, 0, d), part(qkv, d, 2 * d), prepared(p + "attention.output.dense", d, d),
                                 norm(p + "attention.output.LayerNorm"), prepared(p + "intermediate.dense", ff, d),
                                 prepared(p + "output.dense", d, ff), norm(p + "output.LayerNorm")});
            const layer_type& lw = w.layers_.back();
            for (const prepared_linear* l : {&lw.query_key_value, &lw.query, &lw.key_value, &lw.attention_output,
                                             &lw.intermediate, &lw.output})
                w.prepared_bytes_ += backend.weight_bytes(l->weight);
        }
        if (f.find(name("pooler.dense.weight"))) {
            w.poolers_.push_back(lin("pooler.dense", d, d));
        } else {
            for (int l = 0; f.find(name("encoder.pooler." + std::to_string(l) + ".dense.weight")); ++l)
                w.poolers_.push_back(lin("encoder.pooler." + std::to_string(l) + ".dense", d, d));
        }
        return w;
    }

    const embedding_weights& embeddings() const { return embeddings_; }
    const std::vector<layer_type>& layers() const { return layers_; }
    /// The pooler of the last layer, if the checkpoint has one.
    const linear_weights* pooler() const { return poolers_.empty() ? nullptr : &poolers_.back(); }
    /// Every pooler (ElasticBERT: one per exit; Hugging Face BERT: one).
    const std::vector<linear_weights>& poolers() const { return poolers_; }
    const std::string& prefix() const { return prefix_; }
    const safetensors_file& file() const { return *file_; }
    /// Bytes of the products' weights as the backend prepared them at load (e.g. oneDNN's
    /// blocked layout), held beside the mapped checkpoint; 0 where the backend reads W in place.
    std::size_t prepared_bytes() const { return prepared_bytes_; }
    /// Bytes this object holds beyond the mapped checkpoint (converted or uploaded tensors).
    std::size_t owned_bytes() const {
        std::size_t n = 0;
        for (const auto& b : owned_) n += b.size() * sizeof(float);
        return n;
    }

private:
    static std::string detect_prefix(const safetensors_file& f) {
        for (const char* p : {"", "bert.", "elasticbert."})
            if (f.find(std::string(p) + "embeddings.word_embeddings.weight")) return p;
        throw weight_error("E07", detail::located(f.source(), "no BERT embeddings found (looked for "
                                                       "'embeddings.word_embeddings.weight' with the prefixes "
                                                       "'', 'bert.' and 'elasticbert.')"));
    }

    /// The tensor's floats on the host (in the mapping, or converted into `converted`). A NaN or
    /// infinity in a weight would spread silently through every output, so it is a weight_error.
    std::span<const float> finite_floats(const tensor_info& t, std::vector<float>& converted) const {
        std::span<const float> host = file_->floats(t, converted);
        if (const auto bad = std::find_if_not(host.begin(), host.end(), [](float x) { return std::isfinite(x); });
            bad != host.end())
            throw weight_error("E08", detail::located(file_->source(), "tensor '" + t.name + "' holds a non-finite value (" +
                                                                    std::to_string(*bad) + ") at element " +
                                                                    std::to_string(bad - host.begin())));
        return host;
    }
    /// A copy of these floats in the backend's memory space, owned by this object.
    const float* own(std::span<const float> host, const B& backend) {
        auto& buf = owned_.emplace_back(backend.template allocate<float>(static_cast<index_t>(host.size())));
        backend.upload(host, buf.data());
        return buf.data();
    }
    /// A pointer to the tensor's floats in the backend's memory space.
    const float* bind(const tensor_info& t, const B& backend) {
        std::vector<float> converted;
        std::span<const float> host = finite_floats(t, converted);
        if constexpr (B::host_accessible) {
            if (converted.empty()) return host.data(); // zero-copy view into the mapping
        }
        return own(host, backend);
    }
    /// The tensors' floats one after the other (a stacked weight), owned by this object.
    const float* bind_stacked(std::span<const tensor_info* const> tensors, const B& backend) {
        std::vector<float> all, converted;
        for (const tensor_info* t : tensors) {
            const std::span<const float> host = finite_floats(*t, converted);
            all.insert(all.end(), host.begin(), host.end());
        }
        return own(all, backend);
    }

    std::shared_ptr<const safetensors_file> file_;
    std::string prefix_;
    // A deque: growing it never moves a buffer (the views point into them), whether or not a
    // backend's buffer type moves without copying.
    std::deque<typename B::template buffer<float>> owned_;
    embedding_weights embeddings_;
    std::vector<layer_type> layers_;
    std::size_t prepared_bytes_ = 0;
    std::vector<linear_weights> poolers_;
};

} // namespace hashee
