#pragma once
// FastBERT's own internal classifier ("student"/"teacher" head), one per layer. It reads every
// token of the sequence, narrows it to width w, lets the [CLS] row attend over the sequence with
// a few heads, then classifies:
//   x_j    = tanh(N h_j + b_N)                         narrow, w x d, every token j (x_0 is [CLS])
//   q      = W_q x_0 + b_q,  k_j = W_k x_j + b_k,  v_j = W_v x_j + b_v       each w x w
//   per attention head a (width w/A, slice _a):
//   s_aj   = q_a . k_ja / sqrt(w/A),  p_a = softmax_j(s_a),  o_a = sum_j p_aj v_ja
//   g      = tanh(D o + b_D)                           dense, w x w (o = concat_a o_a)
//   logits = K g + b_K                                 classifier, C x w
// The forward pass is a template on the scalar: float for inference here, double for training
// (head_training.hpp), which keeps the activations it needs for the backward pass.

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <hashee/core/detail/random.hpp>
#include <hashee/core/detail/eigen.hpp>
#include <hashee/core/error.hpp>
#include <hashee/exit/exit_heads.hpp>
#include <hashee/core/matrix_view.hpp>
#include <hashee/core/detail/softmax.hpp>
#include <hashee/io/safetensors.hpp>

namespace hashee {

/// The six dense layers of one FastBERT head; `Dense` is dense_params (the heads' float
/// parameters) or a training-time stand-in (double parameters, gradients, Eigen maps).
template <class Dense>
struct basic_fastbert_head {
    Dense narrow, query, key, value, dense, classifier;

    /// f(name, layer) for each of the six, in checkpoint order.
    template <class Self, class F>
    static void for_each(Self& self, F&& f) {
        f("narrow", self.narrow);
        f("query", self.query);
        f("key", self.key);
        f("value", self.value);
        f("dense", self.dense);
        f("classifier", self.classifier);
    }
};
using fastbert_head = basic_fastbert_head<dense_params>;

namespace detail {

template <class T>
using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using column = Eigen::Matrix<T, Eigen::Dynamic, 1>;
/// Rows of token states (any row stride).
template <class T>
using token_rows = Eigen::Map<const row_matrix<T>, 0, Eigen::OuterStride<>>;

/// Read-only Eigen views of one dense layer's W [out, in] and b [out] in scalar T.
template <class T>
struct dense_map {
    Eigen::Map<const row_matrix<T>> W;
    Eigen::Map<const column<T>> b;
};
inline dense_map<float> map_of(const dense_params& p) {
    return {{p.weight.data(), p.out, p.in}, {p.bias.data(), p.out}};
}

/// The activations of one sequence's forward pass (the backward pass reads them).
template <class T>
struct fastbert_pass {
    row_matrix<T> x;    ///< [n, w] tanh(narrow(h))
    column<T> q;        ///< [w]    query of [CLS]
    row_matrix<T> k, v; ///< [n, w]
    row_matrix<T> p;    ///< [A, n] attention probabilities per head
    column<T> o;        ///< [w]    attention output, heads concatenated
    column<T> g;        ///< [w]    tanh(dense(o))
    column<T> z;        ///< [C]    logits
};

/// One sequence's forward pass: h holds its n token rows, [CLS] first.
template <class T>
void fastbert_forward(const basic_fastbert_head<dense_map<T>>& m, int heads, const token_rows<T>& h,
                      fastbert_pass<T>& a) {
    const index_t n = h.rows(), w = m.query.W.rows(), dh = w / heads;
    a.x.noalias() = h * m.narrow.W.transpose();
    a.x.rowwise() += m.narrow.b.transpose();
    a.x = a.x.array().tanh();
    a.q.noalias() = m.query.W * a.x.row(0).transpose();
    a.q += m.query.b;
    a.k.noalias() = a.x * m.key.W.transpose();
    a.k.rowwise() += m.key.b.transpose();
    a.v.noalias() = a.x * m.value.W.transpose();
    a.v.rowwise() += m.value.b.transpose();
    a.p.resize(heads, n);
    a.o.resize(w);
    const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
    std::vector<double> s(static_cast<std::size_t>(n)); // the scores, softmaxed in double
    for (int head = 0; head < heads; ++head) {
        const index_t c0 = head * dh;
        const auto q_a = a.q.segment(c0, dh).transpose();
        for (index_t j = 0; j < n; ++j)
            s[static_cast<std::size_t>(j)] = static_cast<double>(a.k.row(j).segment(c0, dh).dot(q_a)) * scale;
        softmax_inplace(s);
        for (index_t j = 0; j < n; ++j) a.p(head, j) = static_cast<T>(s[static_cast<std::size_t>(j)]);
        a.o.segment(c0, dh).noalias() = a.v.middleCols(c0, dh).transpose() * a.p.row(head).transpose();
    }
    a.g.noalias() = m.dense.W * a.o;
    a.g = (a.g + m.dense.b).array().tanh();
    a.z.noalias() = m.classifier.W * a.g;
    a.z += m.classifier.b;
}

} // namespace detail

/// FastBERT's heads, one per layer (see the top of this file).
class fastbert_heads {
public:
    head_input input() const { return head_input::all_tokens; }

    /// Fresh heads for `layers` layers of backbone width `hidden`, head width `width` split over
    /// `heads` attention heads; every layer drawn with PyTorch's nn.Linear default from one
    /// random_source seeded with `seed` (layer by layer, in checkpoint order).
    fastbert_heads(int layers, index_t hidden, index_t outputs, std::uint64_t seed, index_t width = 128, int heads = 2)
        : hidden_(hidden), width_(width), heads_(heads) {
        check_shape("fastbert_heads", layers, hidden, outputs, width, heads);
        detail::random_source rng(seed);
        heads_per_layer_.reserve(static_cast<std::size_t>(layers));
        for (int l = 0; l < layers; ++l) {
            auto u = [&](index_t out, index_t in) { return dense_params::uniform(out, in, rng); };
            fastbert_head h;
            // Sequenced draws: the order of the initialisation is part of the seed's meaning.
            h.narrow = u(width, hidden);
            h.query = u(width, width);
            h.key = u(width, width);
            h.value = u(width, width);
            h.dense = u(width, width);
            h.classifier = u(outputs, width);
            heads_per_layer_.push_back(std::move(h));
        }
    }

    int num_layers() const { return static_cast<int>(heads_per_layer_.size()); }
    index_t hidden_size() const { return hidden_; }
    index_t width() const { return width_; }
    int attention_heads() const { return heads_; }
    index_t outputs() const { return heads_per_layer_.front().classifier.out; }

    const fastbert_head& head(int layer) const { return heads_per_layer_[index(layer)]; }
    fastbert_head& head(int layer) { return heads_per_layer_[index(layer)]; }

    /// logits [sequences, outputs] of head `layer` (1..L); sequence s owns the state rows
    /// offsets[s] .. offsets[s+1] - 1, [CLS] first.
    void logits(int layer, const_matrix_view<float> states, std::span<const std::int32_t> offsets,
                matrix_view<float> out) const {
        const fastbert_head& h = head(layer);
        constexpr const char* where = "fastbert_heads::logits";
        if (states.cols != hidden_)
            throw usage_error("U37", detail::located(where, std::string("states have ") + std::to_string(states.cols) +
                                                         " columns, the heads read " + std::to_string(hidden_)));
        if (offsets.empty() || out.rows != static_cast<index_t>(offsets.size()) - 1 || out.cols != outputs())
            throw usage_error("U37", detail::located(where, std::string("logits are [") + std::to_string(out.rows) + ", " +
                                                         std::to_string(out.cols) + "] for " + std::to_string(offsets.size()) +
                                                         " offsets and " + std::to_string(outputs()) + " outputs"));
        const auto m = maps(h);
        detail::fastbert_pass<float> a;
        for (index_t s = 0; s < out.rows; ++s) {
            const index_t begin = offsets[static_cast<std::size_t>(s)], end = offsets[static_cast<std::size_t>(s) + 1];
            if (begin < 0 || end <= begin || end > states.rows)
                throw usage_error("U37", detail::located(where, std::string("sequence ") + std::to_string(s) + " has rows [" +
                                                             std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                                                             std::to_string(states.rows)));
            const detail::token_rows<float> tokens(states.row(begin), end - begin, hidden_, Eigen::OuterStride<>(states.stride));
            detail::fastbert_forward<float>(m, heads_, tokens, a);
            for (index_t c = 0; c < out.cols; ++c) out.row(s)[c] = a.z(c);
        }
    }

    /// Multiply-accumulates of head `layer` on one sequence of n tokens: narrow n w d, keys and
    /// values 2 n w^2, query w^2, scores and weighted sum 2 n w, dense w^2, classifier C w.
    std::int64_t macs(int layer, index_t n) const {
        const fastbert_head& h = head(layer);
        const std::int64_t w = width_;
        return n * w * hidden_ + 2 * n * w * w + w * w + 2 * n * w + w * w + h.classifier.out * w;
    }

    /// Saves as F32 safetensors: fastbert.N.{narrow,query,key,value,dense,classifier}.{weight,bias}
    /// for N = 0..L-1 (layers 1..L). The attention-head count is not stored (load takes it).
    void save(const std::filesystem::path& path) const {
        std::vector<safetensors_tensor> t;
        for (int n = 0; n < num_layers(); ++n)
            fastbert_head::for_each(heads_per_layer_[static_cast<std::size_t>(n)], [&](const char* part, const dense_params& p) {
                const std::string name = tensor_name(n, part);
                t.push_back({name + ".weight", {p.out, p.in}, p.weight});
                t.push_back({name + ".bias", {p.out}, p.bias});
            });
        write_safetensors(path, t);
    }

    /// Loads heads saved by save(); `heads` is the attention-head count (FastBERT uses 2). The
    /// layer count is the number of fastbert.N.classifier tensors; every shape must agree with
    /// layer 0's (a weight_error naming file and tensor otherwise).
    static fastbert_heads load(const std::filesystem::path& path, int heads = 2) {
        const safetensors_file f = safetensors_file::open(path);
        int layers = 0;
        while (f.find(tensor_name(layers, "classifier") + ".weight")) ++layers;
        if (layers == 0)
            throw weight_error("E27", detail::located(f.source(), std::string("tensor '") + tensor_name(0, "classifier") +
                                                               ".weight' not found"));
        const dense_params narrow0 = detail::read_dense(f, tensor_name(0, "narrow"), -1, -1);
        const index_t width = narrow0.out, hidden = narrow0.in;
        const index_t outputs = detail::read_dense(f, tensor_name(0, "classifier"), -1, width).out;
        if (heads < 1 || width % heads != 0)
            throw weight_error("E80", detail::located(f.source(), std::string("tensor '") + tensor_name(0, "narrow") +
                                                               ".weight': width " + std::to_string(width) + " does not split into " +
                                                               std::to_string(heads) + " attention heads"));
        fastbert_heads h(layers, hidden, outputs, 0, width, heads);
        for (int n = 0; n < layers; ++n)
            fastbert_head::for_each(h.heads_per_layer_[static_cast<std::size_t>(n)], [&](const char* part, dense_params& p) {
                p = detail::read_dense(f, tensor_name(n, part), p.out, p.in);
            });
        return h;
    }

private:
    /// Eigen views of head `h`'s parameters, for the forward pass.
    static basic_fastbert_head<detail::dense_map<float>> maps(const fastbert_head& h) {
        using detail::map_of;
        return {map_of(h.narrow), map_of(h.query), map_of(h.key), map_of(h.value), map_of(h.dense), map_of(h.classifier)};
    }
    static std::string tensor_name(int n, const char* part) {
        std::string s("fastbert.");
        s += std::to_string(n);
        s += '.';
        s += part;
        return s;
    }
    static void check_shape(const char* where, int layers, index_t hidden, index_t outputs, index_t width, int heads) {
        if (layers < 1) throw usage_error("U35", detail::located(where, "need at least one layer"));
        if (hidden < 1 || outputs < 1 || width < 1)
            throw usage_error("U35", detail::located(where, "hidden size, outputs and width must be >= 1"));
        if (heads < 1 || width % heads != 0)
            throw usage_error("U35", detail::located(where, std::string("width ") + std::to_string(width) + " does not split into " +
                                                         std::to_string(heads) + " attention heads"));
    }
    std::size_t index(int layer) const {
        if (layer < 1 || layer > num_layers())
            throw usage_error("U36", std::string("fastbert_heads: layer ") + std::to_string(layer) + " is outside 1.." +
                              std::to_string(num_layers()));
        return static_cast<std::size_t>(layer - 1);
    }

    index_t hidden_ = 0, width_ = 0;
    int heads_ = 0;
    std::vector<fastbert_head> heads_per_layer_;
};

static_assert(internal_classifiers<fastbert_heads>);

} // namespace hashee
