#pragma once
// A multinomial (softmax) logistic-regression probe, trained in C++ with AdamW on minibatches.
// Used to measure sentence embeddings: train on train-set embeddings, report dev accuracy.
// Single-threaded with a fixed summation order and a seeded random_source (core/detail/random.hpp,
// whose numbers do not depend on the standard library): the same data, options and seed give
// bit-identical parameters.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <hashee/core/detail/random.hpp>
#include <hashee/core/detail/softmax.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>
#include <hashee/train/adamw.hpp>

namespace hashee {

struct probe_options {
    int epochs = 100;
    int batch_size = 64;
    double learning_rate = 1e-2;
    double weight_decay = 1e-4; ///< decoupled (AdamW) decay of the weights; the bias is not decayed
    std::uint64_t seed = 0;     ///< drives the minibatch shuffling
    bool standardize = true;    ///< z-score each feature with the training set's mean and std
};

/// Multinomial logistic regression over `classes` >= 2 classes.
class logistic_probe {
public:
    /// Trains on `features` ([n, dim], row-major; any stride) with `labels` in [0, classes).
    /// input_error on an empty training set, a label count that differs from n, a label out of
    /// range, a non-finite feature, fewer than 2 classes, or invalid options.
    static logistic_probe train(const_matrix_view<float> features, std::span<const int> labels, int classes,
                                const probe_options& opt = {}) {
        constexpr const char* where = "logistic_probe::train";
        if (features.rows <= 0 || features.cols <= 0 || features.data == nullptr)
            throw input_error("E21", detail::located(where, "empty training set"));
        if (static_cast<std::size_t>(features.rows) != labels.size()) {
            std::string what = "features have ";
            what += std::to_string(features.rows);
            what += " rows but there are ";
            what += std::to_string(labels.size());
            what += " labels";
            throw input_error("E21", detail::located(where, what));
        }
        if (features.stride < features.cols) throw usage_error("U07", detail::located(where, "stride smaller than cols"));
        if (classes < 2) throw input_error("E21", detail::located(where, "need at least 2 classes"));
        if (opt.epochs < 0) throw usage_error("U07", detail::located(where, "epochs must be >= 0"));
        if (opt.batch_size < 1) throw usage_error("U07", detail::located(where, "batch_size must be >= 1"));
        if (!(opt.learning_rate > 0.0) || !std::isfinite(opt.learning_rate))
            throw usage_error("U07", detail::located(where, "learning_rate must be positive and finite"));
        if (!(opt.weight_decay >= 0.0) || !std::isfinite(opt.weight_decay))
            throw usage_error("U07", detail::located(where, "weight_decay must be >= 0 and finite"));
        for (std::size_t i = 0; i < labels.size(); ++i)
            if (labels[i] < 0 || labels[i] >= classes) {
                std::string what = "label ";
                what += std::to_string(labels[i]);
                what += " at row ";
                what += std::to_string(i);
                what += " is outside [0, ";
                what += std::to_string(classes);
                what += ")";
                throw input_error("E21", detail::located(where, what));
            }

        const auto n = static_cast<std::size_t>(features.rows);
        const auto d = static_cast<std::size_t>(features.cols);
        const auto k = static_cast<std::size_t>(classes);

        logistic_probe p;
        p.classes_ = classes;
        p.dim_ = static_cast<int>(d);
        p.mean_.assign(d, 0.0);
        p.scale_.assign(d, 1.0);

        // Training features in double, standardized if asked.
        std::vector<double> x(n * d);
        for (std::size_t i = 0; i < n; ++i) {
            const float* row = features.row(static_cast<index_t>(i));
            for (std::size_t j = 0; j < d; ++j) {
                const double v = row[j];
                if (!std::isfinite(v)) {
                    std::string what = "non-finite feature at row ";
                    what += std::to_string(i);
                    what += ", column ";
                    what += std::to_string(j);
                    throw input_error("E21", detail::located(where, what));
                }
                x[i * d + j] = v;
            }
        }
        if (opt.standardize) {
            for (std::size_t i = 0; i < n; ++i)
                for (std::size_t j = 0; j < d; ++j) p.mean_[j] += x[i * d + j];
            for (std::size_t j = 0; j < d; ++j) p.mean_[j] /= static_cast<double>(n);
            std::vector<double> var(d, 0.0);
            for (std::size_t i = 0; i < n; ++i)
                for (std::size_t j = 0; j < d; ++j) {
                    const double c = x[i * d + j] - p.mean_[j];
                    var[j] += c * c;
                }
            for (std::size_t j = 0; j < d; ++j) {
                const double s = std::sqrt(var[j] / static_cast<double>(n));
                p.scale_[j] = s > 0.0 ? s : 1.0;
            }
            for (std::size_t i = 0; i < n; ++i)
                for (std::size_t j = 0; j < d; ++j) x[i * d + j] = (x[i * d + j] - p.mean_[j]) / p.scale_[j];
        }

        // Parameters start at zero (the problem is convex; the seed only orders the minibatches).
        p.w_.assign(k * d, 0.0);
        p.b_.assign(k, 0.0);
        std::vector<double> gw(k * d), gb(k), mw(k * d, 0.0), vw(k * d, 0.0), mb(k, 0.0), vb(k, 0.0), z(k);
        detail::adamw_step adamw(opt.learning_rate);

        detail::random_source rng(opt.seed);
        std::vector<std::size_t> order(n);
        std::iota(order.begin(), order.end(), std::size_t{0});
        const auto batch = static_cast<std::size_t>(opt.batch_size);

        for (int epoch = 0; epoch < opt.epochs; ++epoch) {
            rng.shuffle(order);
            for (std::size_t start = 0; start < n; start += batch) {
                const std::size_t end = std::min(n, start + batch);
                std::fill(gw.begin(), gw.end(), 0.0);
                std::fill(gb.begin(), gb.end(), 0.0);
                for (std::size_t s = start; s < end; ++s) {
                    const std::size_t i = order[s];
                    const double* xi = &x[i * d];
                    p.logits(xi, z);
                    detail::softmax_inplace(z);
                    z[static_cast<std::size_t>(labels[i])] -= 1.0; // dL/dz = softmax - onehot
                    for (std::size_t c = 0; c < k; ++c) {
                        const double g = z[c];
                        double* gwc = &gw[c * d];
                        for (std::size_t j = 0; j < d; ++j) gwc[j] += g * xi[j];
                        gb[c] += g;
                    }
                }
                const double inv = 1.0 / static_cast<double>(end - start);
                adamw.next();
                for (std::size_t q = 0; q < k * d; ++q) adamw.update(p.w_[q], gw[q] * inv, mw[q], vw[q], opt.weight_decay);
                for (std::size_t c = 0; c < k; ++c) adamw.update(p.b_[c], gb[c] * inv, mb[c], vb[c]);  // no decay
            }
        }
        return p;
    }

    /// Class probabilities, [n, classes] row-major. input_error when features.cols != dim().
    std::vector<double> probabilities(const_matrix_view<float> features) const {
        std::vector<double> out;
        for_each_row(features, "logistic_probe::probabilities", [&](std::span<double> z) {
            detail::softmax_inplace(z);
            out.insert(out.end(), z.begin(), z.end());
        });
        return out;
    }

    /// The most probable class of every row (ties: the lowest class). input_error when
    /// features.cols != dim().
    std::vector<int> predict(const_matrix_view<float> features) const {
        std::vector<int> out;
        for_each_row(features, "logistic_probe::predict", [&](std::span<double> z) {
            out.push_back(static_cast<int>(std::max_element(z.begin(), z.end()) - z.begin()));
        });
        return out;
    }

    int classes() const { return classes_; }
    int dim() const { return dim_; }

    /// The learned parameters, acting on standardized features: weights [classes, dim]
    /// row-major, bias [classes]; and the standardization (mean, scale; 0 and 1 without it).
    std::span<const double> weights() const { return w_; }
    std::span<const double> bias() const { return b_; }
    std::span<const double> feature_mean() const { return mean_; }
    std::span<const double> feature_scale() const { return scale_; }

private:
    logistic_probe() = default;

    /// z = W x + b for a standardized row x.
    void logits(const double* x, std::span<double> z) const {
        const auto d = static_cast<std::size_t>(dim_);
        for (std::size_t c = 0; c < z.size(); ++c) {
            const double* wc = &w_[c * d];
            double s = b_[c];
            for (std::size_t j = 0; j < d; ++j) s += wc[j] * x[j];
            z[c] = s;
        }
    }

    template <class F>
    void for_each_row(const_matrix_view<float> features, const char* where, F&& f) const {
        if (features.rows < 0) throw usage_error("U07", detail::located(where, "negative row count"));
        if (features.cols != dim_) {
            std::string what = "features have ";
            what += std::to_string(features.cols);
            what += " columns, the probe was trained on ";
            what += std::to_string(dim_);
            throw usage_error("U07", detail::located(where, what));
        }
        if (features.rows == 0) return;
        if (features.stride < features.cols) throw usage_error("U07", detail::located(where, "stride smaller than cols"));
        if (features.data == nullptr) throw usage_error("U07", detail::located(where, "null feature data"));
        const auto d = static_cast<std::size_t>(dim_);
        std::vector<double> x(d), z(static_cast<std::size_t>(classes_));
        for (index_t i = 0; i < features.rows; ++i) {
            const float* row = features.row(i);
            for (std::size_t j = 0; j < d; ++j) x[j] = (static_cast<double>(row[j]) - mean_[j]) / scale_[j];
            logits(x.data(), z);
            f(std::span<double>(z));
        }
    }

    int classes_ = 0;
    int dim_ = 0;
    std::vector<double> w_, b_, mean_, scale_;
};

} // namespace hashee
