#pragma once
// Evaluation metrics: correlations (Pearson, Spearman), classification scores (accuracy, binary
// F1) and the cosine similarity of two embeddings. Everything is accumulated in double, in a
// fixed order, so results are deterministic.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <hashee/core/error.hpp>

namespace hashee {

namespace detail {

inline void require_same_size(std::size_t a, std::size_t b, const char* where) {
    if (a != b) {
        std::string what = "inputs differ in length (";
        what += std::to_string(a);
        what += " vs ";
        what += std::to_string(b);
        what += ")";
        throw usage_error("U09", located(where, what));
    }
}

inline void require_finite(std::span<const double> x, const char* where) {
    for (std::size_t i = 0; i < x.size(); ++i)
        if (!std::isfinite(x[i])) {
            std::string what = "non-finite value at index ";
            what += std::to_string(i);
            throw input_error("E44", located(where, what));
        }
}

/// Pearson correlation without argument checks beyond zero variance.
inline double pearson_unchecked(std::span<const double> x, std::span<const double> y, const char* where) {
    const auto n = static_cast<double>(x.size());
    double mx = 0.0, my = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        mx += x[i];
        my += y[i];
    }
    mx /= n;
    my /= n;
    double sxx = 0.0, syy = 0.0, sxy = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double dx = x[i] - mx, dy = y[i] - my;
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    if (!(sxx > 0.0) || !(syy > 0.0)) throw input_error("E44", located(where, "zero variance: correlation undefined"));
    const double r = sxy / (std::sqrt(sxx) * std::sqrt(syy));
    return std::clamp(r, -1.0, 1.0);
}

} // namespace detail

/// 1-based ranks of `x`; tied values all get the mean of the ranks they span (scipy's
/// rankdata(method="average")). NaN is rejected with input_error.
inline std::vector<double> average_ranks(std::span<const double> x) {
    for (std::size_t i = 0; i < x.size(); ++i)
        if (std::isnan(x[i])) {
            std::string what = "NaN at index ";
            what += std::to_string(i);
            throw input_error("E44", detail::located("average_ranks", what));
        }
    std::vector<std::size_t> order(x.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
    std::vector<double> ranks(x.size());
    std::size_t i = 0;
    while (i < order.size()) {
        std::size_t j = i + 1;
        while (j < order.size() && x[order[j]] == x[order[i]]) ++j;
        // Positions i..j-1 (0-based) hold equal values: ranks i+1..j, mean (i+1+j)/2.
        const double mean_rank = 0.5 * static_cast<double>(i + 1 + j);
        for (std::size_t k = i; k < j; ++k) ranks[order[k]] = mean_rank;
        i = j;
    }
    return ranks;
}

/// Pearson's correlation coefficient. input_error on a length mismatch, fewer than two points,
/// a non-finite value, or zero variance in either input.
inline double pearson(std::span<const double> x, std::span<const double> y) {
    detail::require_same_size(x.size(), y.size(), "pearson");
    if (x.size() < 2) throw input_error("E44", detail::located("pearson", "need at least 2 points"));
    detail::require_finite(x, "pearson");
    detail::require_finite(y, "pearson");
    return detail::pearson_unchecked(x, y, "pearson");
}

/// Spearman's rank correlation: Pearson of the average ranks (ties get their mean rank), as
/// scipy.stats.spearmanr. Same errors as pearson (constant input = zero variance).
inline double spearman(std::span<const double> x, std::span<const double> y) {
    detail::require_same_size(x.size(), y.size(), "spearman");
    if (x.size() < 2) throw input_error("E44", detail::located("spearman", "need at least 2 points"));
    detail::require_finite(x, "spearman");
    detail::require_finite(y, "spearman");
    const auto rx = average_ranks(x);
    const auto ry = average_ranks(y);
    return detail::pearson_unchecked(rx, ry, "spearman");
}

/// Fraction of positions where predicted == truth. input_error on a length mismatch or empty input.
inline double accuracy(std::span<const int> predicted, std::span<const int> truth) {
    detail::require_same_size(predicted.size(), truth.size(), "accuracy");
    if (predicted.empty()) throw input_error("E44", detail::located("accuracy", "empty input"));
    std::size_t correct = 0;
    for (std::size_t i = 0; i < predicted.size(); ++i) correct += predicted[i] == truth[i] ? 1 : 0;
    return static_cast<double>(correct) / static_cast<double>(predicted.size());
}

/// F1 score of class `positive`: 2 tp / (2 tp + fp + fn). When neither input holds `positive`
/// (tp = fp = fn = 0) the score is 0 (scikit-learn's zero_division=0). input_error on a length
/// mismatch or empty input.
inline double f1_binary(std::span<const int> predicted, std::span<const int> truth, int positive = 1) {
    detail::require_same_size(predicted.size(), truth.size(), "f1_binary");
    if (predicted.empty()) throw input_error("E44", detail::located("f1_binary", "empty input"));
    std::size_t tp = 0, fp = 0, fn = 0;
    for (std::size_t i = 0; i < predicted.size(); ++i) {
        const bool p = predicted[i] == positive, t = truth[i] == positive;
        tp += p && t ? 1 : 0;
        fp += p && !t ? 1 : 0;
        fn += !p && t ? 1 : 0;
    }
    const std::size_t denom = 2 * tp + fp + fn;
    if (denom == 0) return 0.0;
    return static_cast<double>(2 * tp) / static_cast<double>(denom);
}

/// Cosine similarity, accumulated in double; 0 when either vector is all zeros (or empty).
/// input_error on a length mismatch.
inline double cosine(std::span<const float> a, std::span<const float> b) {
    detail::require_same_size(a.size(), b.size(), "cosine");
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double x = a[i], y = b[i];
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if (aa == 0.0 || bb == 0.0) return 0.0;
    return std::clamp(ab / (std::sqrt(aa) * std::sqrt(bb)), -1.0, 1.0);
}

} // namespace hashee
