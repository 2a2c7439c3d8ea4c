#pragma once
// Training internal classifiers on a frozen backbone, from per-layer features cached once
// (layer_features.hpp):
//  - train_deebert:  every layer's pooler + classifier, each by its own loss (DeeBERT stage 2).
//  - train_pabee:    all classifiers and one shared pooler by one joint loss weighted by depth.
//  - train_fastbert: the last layer's FastBERT head on the labels (teacher), then every other
//                    layer's head by self-distillation to the teacher's distribution.
//  - train_berxit:   BERxiT's learning-to-exit units, one logistic unit per layer predicting
//                    whether that layer's head is right.
// Forward and backward passes are written out by hand in double (Eigen for the products) and
// parameters are updated by AdamW. As in probe.hpp: single-threaded, fixed summation order, a
// seeded random_source (core/detail/random.hpp), so the same inputs and options give
// bit-identical parameters.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <hashee/core/detail/random.hpp>
#include <hashee/core/detail/eigen.hpp>
#include <hashee/core/error.hpp>
#include <hashee/exit/exit_heads.hpp>
#include <hashee/exit/fastbert_heads.hpp>
#include <hashee/train/adamw.hpp>
#include <hashee/train/layer_features.hpp>
#include <hashee/core/matrix_view.hpp>
#include <hashee/core/detail/softmax.hpp>
#include <hashee/io/safetensors.hpp>

namespace hashee {

struct head_training_options {
    int epochs = 3;
    int batch_size = 32;
    double learning_rate = 1e-3;
    double weight_decay = 0.01; ///< decoupled (AdamW) decay of the weights; biases are not decayed
    std::uint64_t seed = 0;     ///< drives the minibatch shuffling
};

/// How training went: the mean training loss of each epoch (over its samples; each minibatch
/// contributes its mean loss times its size).
struct training_report {
    /// layer_loss[l - 1][e]: head l's own loss in epoch e (cross-entropy or squared error;
    /// FastBERT's students: KL to the teacher; BERxiT: binary cross-entropy of unit l).
    std::vector<std::vector<double>> layer_loss;
    /// objective[e]: what the routine minimises, per epoch: PABEE's depth-weighted sum, the
    /// mean over the layers otherwise (FastBERT: epoch e of the teacher's stage and of the
    /// students' stage together).
    std::vector<double> objective;

    double final_loss() const { return objective.empty() ? std::numeric_limits<double>::quiet_NaN() : objective.back(); }
    double final_loss(int layer) const {
        const auto& v = layer_loss.at(static_cast<std::size_t>(layer - 1));
        return v.empty() ? std::numeric_limits<double>::quiet_NaN() : v.back();
    }
};

/// BERxiT's learning-to-exit module: per layer l a logistic unit on layer l's sentence state
/// (the row the heads read: [CLS] or the mean; exit_signal::state),
/// confidence = sigmoid(w_l . h + b_l), the predicted probability that head l is right.
class exit_predictor {
public:
    /// Zero units (confidence 0.5 everywhere) for `layers` layers of width `hidden`.
    exit_predictor(int layers, index_t hidden) {
        if (layers < 1) throw usage_error("U08", "exit_predictor: need at least one layer");
        if (hidden < 1) throw usage_error("U08", "exit_predictor: hidden size must be >= 1");
        units_.assign(static_cast<std::size_t>(layers), dense_params::zeros(1, hidden));
    }

    int num_layers() const { return static_cast<int>(units_.size()); }
    index_t hidden_size() const { return units_.front().in; }
    const dense_params& unit(int layer) const { return units_[index(layer)]; }
    dense_params& unit(int layer) { return units_[index(layer)]; }

    /// sigmoid(w . h + b) in [0, 1] for layer `layer`'s sentence state h.
    double confidence(int layer, std::span<const float> state) const {
        const dense_params& u = unit(layer);
        if (static_cast<index_t>(state.size()) != u.in)
            throw usage_error("U08", detail::located("exit_predictor::confidence",
                                              std::string("state has ") + std::to_string(state.size()) +
                                                  " values, the units read " + std::to_string(u.in)));
        double z = u.bias[0];
        for (std::size_t j = 0; j < state.size(); ++j) z += static_cast<double>(u.weight[j]) * state[j];
        return z >= 0.0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z));
    }
    std::int64_t macs(int layer) const { return unit(layer).macs(); }

    /// F32 safetensors: berxit.N.weight [1, hidden] and berxit.N.bias [1], N = 0..L-1.
    void save(const std::filesystem::path& path) const {
        std::vector<safetensors_tensor> t;
        for (int n = 0; n < num_layers(); ++n) {
            const dense_params& u = units_[static_cast<std::size_t>(n)];
            t.push_back({name(n) + ".weight", {u.out, u.in}, u.weight});
            t.push_back({name(n) + ".bias", {u.out}, u.bias});
        }
        write_safetensors(path, t);
    }
    static exit_predictor load(const std::filesystem::path& path) {
        const safetensors_file f = safetensors_file::open(path);
        int layers = 0;
        while (f.find(name(layers) + ".weight")) ++layers;
        if (layers == 0)
            throw weight_error("E27", detail::located(f.source(), std::string("tensor '") + name(0) + ".weight' not found"));
        exit_predictor p(layers, detail::read_dense(f, name(0), 1, -1).in);
        for (int n = 0; n < layers; ++n)
            p.units_[static_cast<std::size_t>(n)] = detail::read_dense(f, name(n), 1, p.hidden_size());
        return p;
    }

private:
    static std::string name(int n) { return std::string("berxit.") + std::to_string(n); }
    std::size_t index(int layer) const {
        if (layer < 1 || layer > num_layers())
            throw usage_error("U08", std::string("exit_predictor: layer ") + std::to_string(layer) + " is outside 1.." +
                              std::to_string(num_layers()));
        return static_cast<std::size_t>(layer - 1);
    }
    std::vector<dense_params> units_;
};

namespace detail {

/// A dense layer in double: the parameters a training step works on, or their gradient.
struct dense64 {
    row_matrix<double> W; ///< [out, in]
    column<double> b;     ///< [out]

    static dense64 of(const dense_params& p) {
        return {Eigen::Map<const row_matrix<float>>(p.weight.data(), p.out, p.in).cast<double>(),
                Eigen::Map<const column<float>>(p.bias.data(), p.out).cast<double>()};
    }
    static dense64 zeros(index_t out, index_t in) { return {row_matrix<double>::Zero(out, in), column<double>::Zero(out)}; }
    static dense64 zeros_like(const dense_params& p) { return zeros(p.out, p.in); }
};
inline dense_map<double> map_of(const dense64& p) { return {{p.W.data(), p.W.rows(), p.W.cols()}, {p.b.data(), p.b.size()}}; }

inline basic_fastbert_head<dense64> fastbert_head64(const fastbert_head& h) {
    return {dense64::of(h.narrow), dense64::of(h.query), dense64::of(h.key), dense64::of(h.value), dense64::of(h.dense),
            dense64::of(h.classifier)};
}
inline basic_fastbert_head<dense64> fastbert_zeros_like(const fastbert_head& h) {
    return {dense64::zeros_like(h.narrow), dense64::zeros_like(h.query), dense64::zeros_like(h.key), dense64::zeros_like(h.value),
            dense64::zeros_like(h.dense), dense64::zeros_like(h.classifier)};
}

/// AdamW (train/adamw.hpp) on float dense layers, with double moments; weights are decayed,
/// biases are not.
class adamw {
public:
    adamw(std::vector<dense_params*> params, double learning_rate, double weight_decay)
        : params_(std::move(params)), step_(learning_rate), wd_(weight_decay) {
        for (const dense_params* p : params_)
            moments_.push_back({std::vector<double>(2 * p->weight.size()), std::vector<double>(2 * p->bias.size())});
    }

    /// One update; grads[i] has the shape of *params[i].
    void step(std::span<const dense64> grads) {
        step_.next();
        for (std::size_t i = 0; i < params_.size(); ++i) {
            dense_params& p = *params_[i];
            update(p.weight, grads[i].W.data(), moments_[i].weight, wd_);
            update(p.bias, grads[i].b.data(), moments_[i].bias, 0.0);
        }
    }

private:
    struct moments {
        std::vector<double> weight, bias; ///< m and v interleaved: [2 i] = m_i, [2 i + 1] = v_i
    };
    void update(std::vector<float>& theta, const double* g, std::vector<double>& mv, double decay) const {
        for (std::size_t q = 0; q < theta.size(); ++q) {
            double t = theta[q];
            step_.update(t, g[q], mv[2 * q], mv[2 * q + 1], decay);  // a decay of 0.0 for biases, as always
            theta[q] = static_cast<float>(t);
        }
    }
    std::vector<dense_params*> params_;
    std::vector<moments> moments_;
    adamw_step step_;
    double wd_;
};

enum class head_loss { cross_entropy, squared_error, distillation, binary_cross_entropy };

/// What one minibatch's logits are scored against: class indices (cross_entropy), values
/// (squared_error, C = 1), 0/1 labels (binary_cross_entropy, C = 1) in y; or the teacher's
/// probabilities [B, C] (distillation).
struct batch_targets {
    head_loss loss = head_loss::cross_entropy;
    std::vector<double> y;
    row_matrix<double> teacher;
};

/// log sum_c e^{z_c}, stable.
inline double log_sum_exp(std::span<const double> z) {
    const double m = *std::max_element(z.begin(), z.end());
    double s = 0.0;
    for (double v : z) s += std::exp(v - m);
    return m + std::log(s);
}

/// The mean over the B rows of z [B, C] of the loss, and dz = dL/dz (the 1/B included):
///   cross-entropy  L = lse(z) - z_y                              dL/dz = softmax(z) - onehot(y)
///   squared error  L = (z - y)^2                                 dL/dz = 2 (z - y)
///   distillation   L = KL(t || p) = sum_c t_c (log t_c - log p_c), p = softmax(z)
///                                                                dL/dz = p - t
///   binary CE      L = log(1 + e^z) - y z                        dL/dz = sigmoid(z) - y
inline double loss_and_gradient(const row_matrix<double>& z, const batch_targets& t, row_matrix<double>& dz) {
    const index_t B = z.rows(), C = z.cols();
    dz.resize(B, C);
    std::vector<double> row(static_cast<std::size_t>(C));
    double total = 0.0;
    for (index_t i = 0; i < B; ++i) {
        for (index_t c = 0; c < C; ++c) row[static_cast<std::size_t>(c)] = z(i, c);
        switch (t.loss) {
        case head_loss::cross_entropy:
        case head_loss::distillation: {
            const double lse = log_sum_exp(row);
            softmax_inplace(row);
            for (index_t c = 0; c < C; ++c) dz(i, c) = row[static_cast<std::size_t>(c)];
            if (t.loss == head_loss::cross_entropy) {
                const auto y = static_cast<index_t>(t.y[static_cast<std::size_t>(i)]);
                total += lse - z(i, y);
                dz(i, y) -= 1.0;
            } else {
                for (index_t c = 0; c < C; ++c) {
                    const double tc = t.teacher(i, c);
                    if (tc > 0.0) total += tc * (std::log(tc) - (z(i, c) - lse)); // 0 log 0 = 0
                    dz(i, c) -= tc;
                }
            }
            break;
        }
        case head_loss::squared_error: {
            const double r = z(i, 0) - t.y[static_cast<std::size_t>(i)];
            total += r * r;
            dz(i, 0) = 2.0 * r;
            break;
        }
        case head_loss::binary_cross_entropy: {
            const double v = z(i, 0), y = t.y[static_cast<std::size_t>(i)];
            total += std::max(v, 0.0) + std::log1p(std::exp(-std::abs(v))) - y * v; // log(1 + e^v) - y v
            dz(i, 0) = (v >= 0.0 ? 1.0 / (1.0 + std::exp(-v)) : std::exp(v) / (1.0 + std::exp(v))) - y;
            break;
        }
        }
    }
    dz /= static_cast<double>(B);
    return total / static_cast<double>(B);
}

/// A linear unit z = X W^T + b on rows X [B, in] (BERxiT's exit units). Returns the mean
/// loss; with `grad`, adds weight * gradient:  dW = dz^T X,  db = sum_rows dz.
inline double linear_loss(const dense64& unit, const row_matrix<double>& X, const batch_targets& t, double weight = 1.0,
                          dense64* grad = nullptr) {
    row_matrix<double> z = X * unit.W.transpose(), dz;
    z.rowwise() += unit.b.transpose();
    const double loss = loss_and_gradient(z, t, dz);
    if (grad) {
        dz *= weight;
        grad->W.noalias() += dz.transpose() * X;
        grad->b += dz.colwise().sum().transpose();
    }
    return loss;
}

/// A pooler + classifier head on sentence rows X [B, d]:  u = tanh(X P^T + b_P),  z = u K^T + b_K.
/// Returns the mean loss; with gradients given, adds weight * gradient (backward from dz):
///   dK = dz^T u,  db_K = sum_rows dz,  du = dz K,  da = du .* (1 - u^2),  dP = da^T X,  db_P = sum_rows da.
inline double classifier_head_loss(const dense64& pooler, const dense64& classifier, const row_matrix<double>& X,
                                   const batch_targets& t, double weight = 1.0, dense64* d_pooler = nullptr,
                                   dense64* d_classifier = nullptr) {
    row_matrix<double> u = X * pooler.W.transpose();
    u.rowwise() += pooler.b.transpose();
    u = u.array().tanh();
    row_matrix<double> z = u * classifier.W.transpose(), dz;
    z.rowwise() += classifier.b.transpose();
    const double loss = loss_and_gradient(z, t, dz);
    if (d_pooler && d_classifier) {
        dz *= weight;
        d_classifier->W.noalias() += dz.transpose() * u;
        d_classifier->b += dz.colwise().sum().transpose();
        const row_matrix<double> da = ((dz * classifier.W).array() * (1.0 - u.array().square())).matrix();
        d_pooler->W.noalias() += da.transpose() * X;
        d_pooler->b += da.colwise().sum().transpose();
    }
    return loss;
}

/// The depth weights of PABEE's joint loss, i / sum_j j for layers i = 1..L.
inline std::vector<double> pabee_weights(int layers) {
    std::vector<double> w(static_cast<std::size_t>(layers));
    const double total = 0.5 * layers * (layers + 1.0);
    for (int i = 1; i <= layers; ++i) w[static_cast<std::size_t>(i - 1)] = i / total;
    return w;
}

/// Equal weights 1 / L: the objective reported for heads trained on their own.
inline std::vector<double> uniform_weights(int layers) {
    return std::vector<double>(static_cast<std::size_t>(layers), 1.0 / layers);
}

/// PABEE's joint loss  sum_i i L_i / sum_i i  over layers i = 1..L (X[i - 1]: layer i's sentence
/// rows). The pooler is shared, so its gradient is the weighted sum of every head's. With
/// gradients given, adds the gradient; with `layer_losses`, stores every L_i.
inline double pabee_loss(const dense64& pooler, std::span<const dense64> classifiers, std::span<const row_matrix<double>> X,
                         const batch_targets& t, dense64* d_pooler = nullptr, std::span<dense64> d_classifiers = {},
                         std::vector<double>* layer_losses = nullptr) {
    const auto w = pabee_weights(static_cast<int>(classifiers.size()));
    double joint = 0.0;
    for (std::size_t i = 0; i < classifiers.size(); ++i) {
        const double li = classifier_head_loss(pooler, classifiers[i], X[i], t, w[i], d_pooler,
                                               d_classifiers.empty() ? nullptr : &d_classifiers[i]);
        if (layer_losses) layer_losses->push_back(li);
        joint += w[i] * li;
    }
    return joint;
}

/// Backward pass of one sequence through a FastBERT head (the forward's activations in `a`,
/// its tokens h), adding to `grad` the gradient for dL/dz = dz:
///   dK = dz g^T, db_K = dz;  dg' = (K^T dz) .* (1 - g^2);  dD = dg' o^T, db_D = dg';  do = D^T dg'
///   per attention head a:  dv_ja = p_aj do_a,  dp_aj = do_a . v_ja,
///                          ds_aj = p_aj (dp_aj - sum_k p_ak dp_ak)            (softmax)
///                          dq_a = sum_j ds_aj k_ja / sqrt(w/A),  dk_ja = ds_aj q_a / sqrt(w/A)
///   dW_q = dq x_0^T, db_q = dq;  dW_k = dk^T x, db_k = sum_j dk_j;  dW_v likewise;
///   dx = dk W_k + dv W_v, plus W_q^T dq on row 0;  dx' = dx .* (1 - x^2);  dN = dx'^T h, db_N = sum_j dx'_j
inline void fastbert_backward(const basic_fastbert_head<dense_map<double>>& m, int heads, const token_rows<double>& h,
                              const fastbert_pass<double>& a, const column<double>& dz, basic_fastbert_head<dense64>& grad) {
    const index_t n = h.rows(), w = a.q.size(), dh = w / heads;
    grad.classifier.W.noalias() += dz * a.g.transpose();
    grad.classifier.b += dz;
    const column<double> dg = ((m.classifier.W.transpose() * dz).array() * (1.0 - a.g.array().square())).matrix();
    grad.dense.W.noalias() += dg * a.o.transpose();
    grad.dense.b += dg;
    const column<double> d_o = m.dense.W.transpose() * dg;

    row_matrix<double> dk(n, w), dv(n, w);
    column<double> dq(w);
    const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
    for (int head = 0; head < heads; ++head) {
        const index_t c0 = head * dh;
        const auto p = a.p.row(head);
        const column<double> dp = a.v.middleCols(c0, dh) * d_o.segment(c0, dh);    // [n]
        dv.middleCols(c0, dh).noalias() = p.transpose() * d_o.segment(c0, dh).transpose();
        const double mean_dp = p.dot(dp.transpose());
        const column<double> ds = (p.transpose().array() * (dp.array() - mean_dp)).matrix(); // [n]
        dq.segment(c0, dh).noalias() = scale * (a.k.middleCols(c0, dh).transpose() * ds);
        dk.middleCols(c0, dh).noalias() = scale * (ds * a.q.segment(c0, dh).transpose());
    }
    grad.query.W.noalias() += dq * a.x.row(0);
    grad.query.b += dq;
    grad.key.W.noalias() += dk.transpose() * a.x;
    grad.key.b += dk.colwise().sum().transpose();
    grad.value.W.noalias() += dv.transpose() * a.x;
    grad.value.b += dv.colwise().sum().transpose();
    row_matrix<double> dx = dk * m.key.W;
    dx.noalias() += dv * m.value.W;
    dx.row(0).noalias() += (m.query.W.transpose() * dq).transpose();
    const row_matrix<double> dx_pre = (dx.array() * (1.0 - a.x.array().square())).matrix();
    grad.narrow.W.noalias() += dx_pre.transpose() * h;
    grad.narrow.b += dx_pre.colwise().sum().transpose();
}

inline basic_fastbert_head<dense_map<double>> fastbert_maps(const basic_fastbert_head<dense64>& h) {
    return {map_of(h.narrow), map_of(h.query), map_of(h.key), map_of(h.value), map_of(h.dense), map_of(h.classifier)};
}
inline token_rows<double> sequence_rows(const row_matrix<double>& tokens, std::span<const std::int32_t> offsets, std::size_t s) {
    return {tokens.data() + offsets[s] * tokens.cols(), offsets[s + 1] - offsets[s], tokens.cols(),
            Eigen::OuterStride<>(tokens.cols())};
}

/// Logits [B, C] of a FastBERT head for the B sequences in `tokens` (sequence s owns rows
/// offsets[s] .. offsets[s+1]-1), keeping each sequence's activations in `passes`.
inline row_matrix<double> fastbert_logits64(const basic_fastbert_head<dense64>& h, int heads, const row_matrix<double>& tokens,
                                            std::span<const std::int32_t> offsets, std::vector<fastbert_pass<double>>& passes) {
    const auto m = fastbert_maps(h);
    const std::size_t B = offsets.size() - 1;
    passes.resize(B);
    row_matrix<double> z(static_cast<index_t>(B), h.classifier.W.rows());
    for (std::size_t s = 0; s < B; ++s) {
        fastbert_forward<double>(m, heads, sequence_rows(tokens, offsets, s), passes[s]);
        z.row(static_cast<index_t>(s)) = passes[s].z.transpose();
    }
    return z;
}

/// A FastBERT head's mean loss over a minibatch of sequences; with `grad`, adds its gradient.
inline double fastbert_loss(const basic_fastbert_head<dense64>& h, int heads, const row_matrix<double>& tokens,
                            std::span<const std::int32_t> offsets, const batch_targets& t,
                            basic_fastbert_head<dense64>* grad = nullptr) {
    std::vector<fastbert_pass<double>> passes;
    const row_matrix<double> z = fastbert_logits64(h, heads, tokens, offsets, passes);
    row_matrix<double> dz;
    const double loss = loss_and_gradient(z, t, dz);
    if (grad) {
        const auto m = fastbert_maps(h);
        for (std::size_t s = 0; s < passes.size(); ++s) {
            const column<double> dz_s = dz.row(static_cast<index_t>(s)).transpose();
            fastbert_backward(m, heads, sequence_rows(tokens, offsets, s), passes[s], dz_s, *grad);
        }
    }
    return loss;
}

// ---- Minibatches ----

/// Runs opt.epochs epochs over n samples in minibatches of opt.batch_size, in an order
/// reshuffled each epoch (random_source::shuffle, seeded with opt.seed).
/// step(batch) trains on the samples in `batch` and returns the batch-mean loss of each of
/// its `terms`; the result is, per term and epoch, the mean over the epoch's samples.
template <class Step>
std::vector<std::vector<double>> run_epochs(std::size_t n, std::size_t terms, const head_training_options& opt, Step&& step) {
    std::vector<std::vector<double>> loss(terms);
    detail::random_source rng(opt.seed);
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    const auto batch = static_cast<std::size_t>(opt.batch_size);
    for (int epoch = 0; epoch < opt.epochs; ++epoch) {
        rng.shuffle(order);
        std::vector<double> sum(terms, 0.0);
        for (std::size_t start = 0; start < n; start += batch) {
            const std::size_t end = std::min(n, start + batch);
            const std::vector<double> l = step(std::span<const std::size_t>(order).subspan(start, end - start));
            for (std::size_t k = 0; k < terms; ++k) sum[k] += l[k] * static_cast<double>(end - start);
        }
        for (std::size_t k = 0; k < terms; ++k) loss[k].push_back(sum[k] / static_cast<double>(n));
    }
    return loss;
}

/// Rows `batch` of a float matrix, in double.
inline row_matrix<double> gather_rows(const_matrix_view<float> x, std::span<const std::size_t> batch) {
    row_matrix<double> out(static_cast<index_t>(batch.size()), x.cols);
    for (std::size_t i = 0; i < batch.size(); ++i)
        for (index_t j = 0; j < x.cols; ++j) out(static_cast<index_t>(i), j) = x.row(static_cast<index_t>(batch[i]))[j];
    return out;
}
/// The token rows of the samples `batch` of layer `layer`, in double, with their offsets.
inline row_matrix<double> gather_tokens(const layer_features& f, int layer, std::span<const std::size_t> batch,
                                        std::vector<std::int32_t>& offsets) {
    const const_matrix_view<float> x = f.token_states(layer);
    offsets.assign(1, 0);
    for (std::size_t s : batch) offsets.push_back(offsets.back() + f.offsets[s + 1] - f.offsets[s]);
    row_matrix<double> out(offsets.back(), x.cols);
    for (std::size_t i = 0; i < batch.size(); ++i)
        for (std::int32_t r = f.offsets[batch[i]]; r < f.offsets[batch[i] + 1]; ++r)
            for (index_t j = 0; j < x.cols; ++j) out(offsets[i] + r - f.offsets[batch[i]], j) = x.row(r)[j];
    return out;
}
inline batch_targets gather_targets(head_loss loss, std::span<const float> y, std::span<const std::size_t> batch) {
    batch_targets t{loss, {}, {}};
    for (std::size_t s : batch) t.y.push_back(y[s]);
    return t;
}

// ---- Validation ----

inline void check_options(const head_training_options& o, const char* where) {
    if (o.epochs < 0) throw usage_error("U07", located(where, "epochs must be >= 0"));
    if (o.batch_size < 1) throw usage_error("U07", located(where, "batch_size must be >= 1"));
    if (!(o.learning_rate > 0.0) || !std::isfinite(o.learning_rate))
        throw usage_error("U07", located(where, "learning_rate must be positive and finite"));
    if (!(o.weight_decay >= 0.0) || !std::isfinite(o.weight_decay))
        throw usage_error("U07", located(where, "weight_decay must be >= 0 and finite"));
}

inline void check_finite(std::span<const float> v, index_t rows_per_layer, index_t hidden, const char* what, const char* where) {
    for (std::size_t i = 0; i < v.size(); ++i)
        if (!std::isfinite(v[i])) {
            const auto per_layer = static_cast<std::size_t>(rows_per_layer * hidden), width = static_cast<std::size_t>(hidden);
            std::string m("non-finite value in the ");
            m += what;
            m += " of layer ";
            m += std::to_string(i / per_layer + 1);
            m += ", row ";
            m += std::to_string(i % per_layer / width);
            m += ", column ";
            m += std::to_string(i % width);
            throw input_error("E29", located(where, m));
        }
}

/// The features are well-formed, finite, and fit heads of `layers` layers of width `hidden`.
/// `wants`: what the heads read (the features' pooling must match it, or hold token states for
/// heads that read all tokens).
inline void check_features(const layer_features& f, int layers, index_t hidden, head_input wants, const char* where) {
    if (f.num_layers < 1 || f.hidden < 1) throw input_error("E29", located(where, "features have no layers or zero width"));
    if (f.offsets.size() < 2 || f.offsets.front() != 0) throw input_error("E29", located(where, "features hold no samples"));
    for (std::size_t s = 0; s + 1 < f.offsets.size(); ++s)
        if (f.offsets[s + 1] <= f.offsets[s])
            throw input_error("E29",
                located(where, std::string("sample ") + std::to_string(s) + " has no tokens (offsets must increase)"));
    if (f.num_layers != layers)
        throw input_error("E30", located(where, std::string("the heads have ") + std::to_string(layers) + " layers, the features " +
                                             std::to_string(f.num_layers)));
    if (f.hidden != hidden)
        throw input_error("E30", located(where, std::string("the heads read width ") + std::to_string(hidden) + ", the features have " +
                                             std::to_string(f.hidden)));
    const auto expected = [&](index_t rows) { return static_cast<std::size_t>(f.num_layers * rows * f.hidden); };
    if (f.sentences.size() != expected(f.samples()))
        throw input_error("E29", located(where, std::string("sentences holds ") + std::to_string(f.sentences.size()) +
                                             " values, expected layers x samples x hidden = " + std::to_string(expected(f.samples()))));
    check_finite(f.sentences, f.samples(), f.hidden, "sentence states", where);
    if (wants != head_input::all_tokens) {
        if (f.pooling != wants)
            throw input_error("E31", located(where, std::string("the heads read the ") + to_string(wants) +
                                                 " row of each sample, the features hold the " + to_string(f.pooling) +
                                                 " row (take the features with the heads' input)"));
        return;
    }
    if (f.tokens.empty())
        throw input_error("E30", located(where, "the features have no token states (FastBERT heads read every token: "
                                         "take the features with all tokens)"));
    if (f.tokens.size() != expected(f.total_tokens()))
        throw input_error("E29", located(where, std::string("tokens holds ") + std::to_string(f.tokens.size()) +
                                             " values, expected layers x total tokens x hidden = " +
                                             std::to_string(expected(f.total_tokens()))));
    check_finite(f.tokens, f.total_tokens(), f.hidden, "token states", where);
}

/// One target per sample: a class index in [0, outputs) when outputs >= 2, any finite value
/// for regression (outputs == 1).
inline void check_targets(std::span<const float> y, index_t samples, index_t outputs, const char* where) {
    if (static_cast<index_t>(y.size()) != samples)
        throw input_error("E28", located(where, std::to_string(y.size()) + " targets for " + std::to_string(samples) + " samples"));
    for (std::size_t s = 0; s < y.size(); ++s) {
        const float v = y[s];
        if (!std::isfinite(v))
            throw input_error("E28", located(where, std::string("target of sample ") + std::to_string(s) + " is not finite"));
        if (outputs < 2) continue;
        if (v != std::floor(v))
            throw input_error("E28", located(where, std::string("target ") + std::to_string(v) + " of sample " + std::to_string(s) +
                                                 " is not a class index"));
        if (v < 0.0f || v >= static_cast<float>(outputs))
            throw input_error("E28", located(where, std::string("class ") + std::to_string(static_cast<long long>(v)) + " of sample " +
                                                 std::to_string(s) + " is outside [0, " + std::to_string(outputs) + ")"));
    }
}

inline void check_classification(index_t outputs, const char* where) {
    if (outputs < 2)
        throw input_error("E30", located(where, "needs classification heads (outputs >= 2); these are regression heads (1 output)"));
}

inline training_report make_report(std::vector<std::vector<double>> layer_loss, std::span<const double> weights) {
    training_report r{std::move(layer_loss), {}};
    const std::size_t epochs = r.layer_loss.empty() ? 0 : r.layer_loss.front().size();
    for (std::size_t e = 0; e < epochs; ++e) {
        double o = 0.0;
        for (std::size_t l = 0; l < r.layer_loss.size(); ++l) o += weights[l] * r.layer_loss[l][e];
        r.objective.push_back(o);
    }
    return r;
}

} // namespace detail

/// DeeBERT's second stage: every layer's head (pooler and classifier) trained on its own by
/// cross-entropy on the labels (squared error for a regression head), the backbone frozen.
/// The heads need a pooler per layer (input_error when they share one: see train_pabee).
inline training_report train_deebert(classifier_heads& heads, const layer_features& features,
                                     std::span<const float> targets, const head_training_options& opt = {}) {
    constexpr const char* where = "train_deebert";
    using namespace detail;
    check_options(opt, where);
    if (heads.shared_pooler())
        throw input_error("E30", located(where, "the heads share one pooler; DeeBERT trains a pooler per layer "
                                         "(train_pabee trains a shared one)"));
    check_features(features, heads.num_layers(), heads.hidden_size(), heads.input(), where);
    check_targets(targets, features.samples(), heads.outputs(), where);
    const int L = heads.num_layers();
    const head_loss kind = heads.outputs() >= 2 ? head_loss::cross_entropy : head_loss::squared_error;

    std::vector<dense_params*> params; // pooler 1, classifier 1, pooler 2, ...
    for (int l = 1; l <= L; ++l) {
        params.push_back(&heads.pooler(l));
        params.push_back(&heads.classifier(l));
    }
    adamw optimizer(params, opt.learning_rate, opt.weight_decay);
    auto step = [&](std::span<const std::size_t> batch) {
        const batch_targets t = gather_targets(kind, targets, batch);
        std::vector<double> loss;
        std::vector<dense64> grads;
        for (int l = 1; l <= L; ++l) {
            dense64 d_pooler = dense64::zeros_like(heads.pooler(l)), d_classifier = dense64::zeros_like(heads.classifier(l));
            loss.push_back(classifier_head_loss(dense64::of(heads.pooler(l)), dense64::of(heads.classifier(l)),
                                                gather_rows(features.sentence_states(l), batch), t, 1.0, &d_pooler, &d_classifier));
            grads.push_back(std::move(d_pooler));
            grads.push_back(std::move(d_classifier));
        }
        optimizer.step(grads);
        return loss;
    };
    return make_report(run_epochs(static_cast<std::size_t>(features.samples()), static_cast<std::size_t>(L), opt, step),
                       uniform_weights(L));
}

/// PABEE's training: every classifier and the one shared pooler by the joint loss
/// sum_i i L_i / sum_i i (layers i = 1..L). input_error unless the pooler is shared.
inline training_report train_pabee(classifier_heads& heads, const layer_features& features, std::span<const float> targets,
                                   const head_training_options& opt = {}) {
    constexpr const char* where = "train_pabee";
    using namespace detail;
    check_options(opt, where);
    const int L = heads.num_layers();
    if (!heads.shared_pooler() && L > 1)
        throw input_error("E30", located(where, "PABEE's heads share one pooler; these have one per layer"));
    check_features(features, L, heads.hidden_size(), heads.input(), where);
    check_targets(targets, features.samples(), heads.outputs(), where);
    const head_loss kind = heads.outputs() >= 2 ? head_loss::cross_entropy : head_loss::squared_error;

    std::vector<dense_params*> params{&heads.pooler(1)}; // the pooler, then classifiers 1..L
    for (int l = 1; l <= L; ++l) params.push_back(&heads.classifier(l));
    adamw optimizer(params, opt.learning_rate, opt.weight_decay);
    auto step = [&](std::span<const std::size_t> batch) {
        std::vector<dense64> classifiers, grads{dense64::zeros_like(heads.pooler(1))};
        std::vector<row_matrix<double>> X;
        for (int l = 1; l <= L; ++l) {
            classifiers.push_back(dense64::of(heads.classifier(l)));
            grads.push_back(dense64::zeros_like(heads.classifier(l)));
            X.push_back(gather_rows(features.sentence_states(l), batch));
        }
        std::vector<double> loss;
        pabee_loss(dense64::of(heads.pooler(1)), classifiers, X, gather_targets(kind, targets, batch), &grads[0],
                   std::span<dense64>(grads).subspan(1), &loss);
        optimizer.step(grads);
        return loss;
    };
    return make_report(run_epochs(static_cast<std::size_t>(features.samples()), static_cast<std::size_t>(L), opt, step),
                       pabee_weights(L));
}

/// FastBERT's training on a frozen backbone. Stage 1: the last layer's head (the teacher) by
/// cross-entropy on the labels. Stage 2 (self-distillation, no labels): every other layer's
/// head by KL(p_teacher || p_student) to the fixed teacher's distribution. Each stage runs
/// opt.epochs epochs. Classification heads only; the features need every token's state.
inline training_report train_fastbert(fastbert_heads& heads, const layer_features& features,
                                      std::span<const float> targets, const head_training_options& opt = {}) {
    constexpr const char* where = "train_fastbert";
    using namespace detail;
    check_options(opt, where);
    check_classification(heads.outputs(), where);
    check_features(features, heads.num_layers(), heads.hidden_size(), heads.input(), where);
    check_targets(targets, features.samples(), heads.outputs(), where);
    const int L = heads.num_layers(), A = heads.attention_heads();
    const auto n = static_cast<std::size_t>(features.samples());
    auto params_of = [](fastbert_head& h, std::vector<dense_params*>& out) {
        fastbert_head::for_each(h, [&](const char*, dense_params& d) { out.push_back(&d); });
    };
    auto append_flat = [](basic_fastbert_head<dense64>& g, std::vector<dense64>& out) {
        basic_fastbert_head<dense64>::for_each(g, [&](const char*, dense64& d) { out.push_back(std::move(d)); });
    };

    // Stage 1: the teacher on the labels.
    fastbert_head& teacher = heads.head(L);
    std::vector<dense_params*> teacher_params;
    params_of(teacher, teacher_params);
    adamw teacher_optimizer(teacher_params, opt.learning_rate, opt.weight_decay);
    auto teacher_step = [&](std::span<const std::size_t> batch) {
        std::vector<std::int32_t> offsets;
        const row_matrix<double> tokens = gather_tokens(features, L, batch, offsets);
        auto grad = fastbert_zeros_like(teacher);
        const double loss = fastbert_loss(fastbert_head64(teacher), A, tokens, offsets,
                                          gather_targets(head_loss::cross_entropy, targets, batch), &grad);
        std::vector<dense64> grads;
        append_flat(grad, grads);
        teacher_optimizer.step(grads);
        return std::vector<double>{loss};
    };
    auto teacher_loss = run_epochs(n, 1, opt, teacher_step);

    // The teacher's distribution on every sample, fixed from here on.
    row_matrix<double> p_teacher(static_cast<index_t>(n), heads.outputs());
    {
        const auto t64 = fastbert_head64(teacher);
        std::vector<fastbert_pass<double>> passes;
        std::vector<std::int32_t> offsets;
        std::vector<double> p(static_cast<std::size_t>(heads.outputs()));
        for (std::size_t s = 0; s < n; ++s) {
            const std::size_t one[] = {s};
            const row_matrix<double> tokens = gather_tokens(features, L, one, offsets);
            const row_matrix<double> z = fastbert_logits64(t64, A, tokens, offsets, passes);
            for (std::size_t c = 0; c < p.size(); ++c) p[c] = z(0, static_cast<index_t>(c));
            softmax_inplace(p);
            for (std::size_t c = 0; c < p.size(); ++c) p_teacher(static_cast<index_t>(s), static_cast<index_t>(c)) = p[c];
        }
    }

    // Stage 2: the students, by distillation.
    std::vector<dense_params*> student_params;
    for (int l = 1; l < L; ++l) params_of(heads.head(l), student_params);
    adamw student_optimizer(student_params, opt.learning_rate, opt.weight_decay);
    auto student_step = [&](std::span<const std::size_t> batch) {
        batch_targets t{head_loss::distillation, {}, row_matrix<double>(static_cast<index_t>(batch.size()), heads.outputs())};
        for (std::size_t i = 0; i < batch.size(); ++i)
            t.teacher.row(static_cast<index_t>(i)) = p_teacher.row(static_cast<index_t>(batch[i]));
        std::vector<double> loss;
        std::vector<dense64> grads;
        for (int l = 1; l < L; ++l) {
            std::vector<std::int32_t> offsets;
            const row_matrix<double> tokens = gather_tokens(features, l, batch, offsets);
            auto grad = fastbert_zeros_like(heads.head(l));
            loss.push_back(fastbert_loss(fastbert_head64(heads.head(l)), A, tokens, offsets, t, &grad));
            append_flat(grad, grads);
        }
        student_optimizer.step(grads);
        return loss;
    };
    auto layer_loss = run_epochs(n, static_cast<std::size_t>(L - 1), opt, student_step);
    layer_loss.push_back(std::move(teacher_loss.front()));
    return make_report(std::move(layer_loss), uniform_weights(L));
}

/// BERxiT's learning-to-exit module for `heads`: per layer l a logistic unit on layer l's
/// sentence state, trained by binary cross-entropy to predict whether head l's prediction (the
/// argmax of its logits, ties to the lowest class) on the features is the label. The heads are
/// not changed. Classification heads only. With `report`, stores how training went.
inline exit_predictor train_berxit(const classifier_heads& heads, const layer_features& features,
                                   std::span<const float> targets, const head_training_options& opt = {},
                                   training_report* report = nullptr) {
    constexpr const char* where = "train_berxit";
    using namespace detail;
    check_options(opt, where);
    check_classification(heads.outputs(), where);
    check_features(features, heads.num_layers(), heads.hidden_size(), heads.input(), where);
    check_targets(targets, features.samples(), heads.outputs(), where);
    const int L = heads.num_layers();
    const index_t S = features.samples(), C = heads.outputs();

    // correct[l - 1][s] = 1 when head l gets sample s right, from the heads' own (float) logits.
    std::vector<std::vector<float>> correct(static_cast<std::size_t>(L));
    std::vector<std::int32_t> one_row_each(static_cast<std::size_t>(S) + 1);
    std::iota(one_row_each.begin(), one_row_each.end(), 0);
    std::vector<float> logits(static_cast<std::size_t>(S * C));
    for (int l = 1; l <= L; ++l) {
        heads.logits(l, features.sentence_states(l), one_row_each, {logits.data(), S, C});
        for (index_t s = 0; s < S; ++s) {
            const float* z = logits.data() + s * C;
            const auto predicted = static_cast<float>(std::max_element(z, z + C) - z);
            correct[static_cast<std::size_t>(l - 1)].push_back(predicted == targets[static_cast<std::size_t>(s)] ? 1.0f : 0.0f);
        }
    }

    exit_predictor predictor(L, heads.hidden_size());
    std::vector<dense_params*> params;
    for (int l = 1; l <= L; ++l) params.push_back(&predictor.unit(l));
    adamw optimizer(params, opt.learning_rate, opt.weight_decay);
    auto step = [&](std::span<const std::size_t> batch) {
        std::vector<double> loss;
        std::vector<dense64> grads;
        for (int l = 1; l <= L; ++l) {
            grads.push_back(dense64::zeros_like(predictor.unit(l)));
            const batch_targets t = gather_targets(head_loss::binary_cross_entropy, correct[static_cast<std::size_t>(l - 1)], batch);
            loss.push_back(linear_loss(dense64::of(predictor.unit(l)), gather_rows(features.sentence_states(l), batch), t, 1.0,
                                       &grads.back()));
        }
        optimizer.step(grads);
        return loss;
    };
    auto layer_loss = run_epochs(static_cast<std::size_t>(S), static_cast<std::size_t>(L), opt, step);
    if (report) *report = make_report(std::move(layer_loss), uniform_weights(L));
    return predictor;
}

} // namespace hashee
