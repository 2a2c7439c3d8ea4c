// The logistic-regression probe on synthetic problems: separable 2-D data is fitted exactly,
// 3-class Gaussian blobs generalise to held-out points, the same seed gives bit-identical
// parameters, another seed still trains, and bad arguments are input_errors.

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <hashee/core/detail/random.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>
#include <hashee/eval/metrics.hpp>
#include <hashee/eval/probe.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

using namespace hashee;
using Catch::Matchers::Contains;

namespace {

struct dataset {
    std::vector<float> x; // [n, dim]
    std::vector<int> y;
    index_t dim = 0;
    index_t n() const { return static_cast<index_t>(y.size()); }
    const_matrix_view<float> view() const { return {x.data(), n(), dim}; }
};

/// Uniform in [-1, 1]^2, label = [x0 + 2 x1 > 0.3], points within 0.05 of the boundary dropped;
/// a third, constant feature (std 0) rides along.
dataset separable(std::size_t n, std::uint64_t seed) {
    hashee::detail::random_source rng(seed);
    auto u = [&] { return static_cast<float>(rng.uniform(-1.0, 1.0)); };
    dataset d;
    d.dim = 3;
    while (d.y.size() < n) {
        const float a = u(), b = u();
        const float m = a + 2.0f * b - 0.3f;
        if (std::abs(m) < 0.05f) continue;
        d.x.insert(d.x.end(), {a, b, 7.0f});
        d.y.push_back(m > 0.0f ? 1 : 0);
    }
    return d;
}

/// Three isotropic Gaussian blobs (std 1) in 4-D, centres 4.5 apart (Bayes accuracy about
/// 0.97), with an offset and scale per feature so that standardisation matters.
dataset blobs(std::size_t per_class, std::uint64_t seed) {
    hashee::detail::random_source rng(seed);
    const float centres[3][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {4.5f, 0.0f, 0.0f, 0.0f}, {0.0f, 4.5f, 0.0f, 0.0f}};
    const float scale[4] = {10.0f, 0.1f, 1.0f, 100.0f};
    const float offset[4] = {50.0f, -3.0f, 0.0f, 1000.0f};
    dataset d;
    d.dim = 4;
    for (std::size_t i = 0; i < per_class; ++i)
        for (int c = 0; c < 3; ++c) {
            for (int j = 0; j < 4; ++j) d.x.push_back((centres[c][j] + static_cast<float>(rng.normal())) * scale[j] + offset[j]);
            d.y.push_back(c);
        }
    return d;
}

} // namespace

TEST_CASE("linearly separable 2-D data is fitted exactly", "[probe]") {
    const auto d = separable(300, 1);
    probe_options opt;
    opt.epochs = 200;
    opt.learning_rate = 0.05;
    const auto p = logistic_probe::train(d.view(), d.y, 2, opt);
    CHECK(p.classes() == 2);
    CHECK(p.dim() == 3);
    const auto pred = p.predict(d.view());
    REQUIRE(pred.size() == d.y.size());
    CHECK(accuracy(pred, d.y) == 1.0);
    // The constant feature got scale 1 (std 0) and contributes nothing.
    CHECK(p.feature_scale()[2] == 1.0);
    CHECK(p.feature_mean()[2] == Approx(7.0));
    CHECK(p.weights()[2] == 0.0);
    CHECK(p.weights()[5] == 0.0);
    // Held-out points from the same distribution are classified almost perfectly too.
    const auto test = separable(300, 2);
    CHECK(accuracy(p.predict(test.view()), test.y) > 0.97);
}

TEST_CASE("3-class Gaussian blobs: held-out accuracy above 0.9", "[probe]") {
    const auto train = blobs(100, 11);
    const auto test = blobs(100, 12);
    const auto p = logistic_probe::train(train.view(), train.y, 3);
    CHECK(p.classes() == 3);
    CHECK(p.dim() == 4);
    const double acc = accuracy(p.predict(test.view()), test.y);
    INFO("held-out accuracy " << acc);
    CHECK(acc > 0.9);

    const auto probs = p.probabilities(test.view());
    REQUIRE(probs.size() == test.y.size() * 3);
    const auto pred = p.predict(test.view());
    for (std::size_t i = 0; i < test.y.size(); ++i) {
        const double* r = &probs[i * 3];
        CHECK(r[0] + r[1] + r[2] == Approx(1.0).epsilon(1e-12));
        const int arg = r[1] > r[0] ? (r[2] > r[1] ? 2 : 1) : (r[2] > r[0] ? 2 : 0);
        CHECK(pred[i] == arg);
    }
}

TEST_CASE("same seed, same parameters; another seed still trains", "[probe]") {
    const auto train = blobs(60, 21);
    const auto test = blobs(60, 22);
    probe_options opt;
    opt.epochs = 50;
    opt.batch_size = 16;
    opt.seed = 1234;
    const auto a = logistic_probe::train(train.view(), train.y, 3, opt);
    const auto b = logistic_probe::train(train.view(), train.y, 3, opt);
    CHECK(std::vector<double>(a.weights().begin(), a.weights().end()) ==
          std::vector<double>(b.weights().begin(), b.weights().end()));
    CHECK(std::vector<double>(a.bias().begin(), a.bias().end()) ==
          std::vector<double>(b.bias().begin(), b.bias().end()));
    CHECK(a.probabilities(test.view()) == b.probabilities(test.view()));
    CHECK(a.predict(test.view()) == b.predict(test.view()));

    opt.seed = 99;
    const auto c = logistic_probe::train(train.view(), train.y, 3, opt);
    CHECK(std::vector<double>(a.weights().begin(), a.weights().end()) !=
          std::vector<double>(c.weights().begin(), c.weights().end()));
    CHECK(accuracy(c.predict(test.view()), test.y) > 0.9);
}

TEST_CASE("strided views and standardize = false", "[probe]") {
    const auto d = blobs(50, 31);
    // Copy into rows of stride 6 with garbage in the padding.
    std::vector<float> padded(static_cast<std::size_t>(d.n()) * 6, 1e30f);
    for (index_t i = 0; i < d.n(); ++i)
        for (index_t j = 0; j < 4; ++j)
            padded[static_cast<std::size_t>(i * 6 + j)] = d.x[static_cast<std::size_t>(i * 4 + j)];
    const const_matrix_view<float> strided(padded.data(), d.n(), 4, 6);
    const auto a = logistic_probe::train(d.view(), d.y, 3);
    const auto b = logistic_probe::train(strided, d.y, 3);
    CHECK(std::vector<double>(a.weights().begin(), a.weights().end()) ==
          std::vector<double>(b.weights().begin(), b.weights().end()));
    CHECK(a.predict(strided) == a.predict(d.view()));

    probe_options raw;
    raw.standardize = false;
    const auto s = separable(200, 3);
    const auto p = logistic_probe::train(s.view(), s.y, 2, raw);
    CHECK(p.feature_mean()[0] == 0.0);
    CHECK(p.feature_scale()[1] == 1.0);
    CHECK(accuracy(p.predict(s.view()), s.y) > 0.95);
    // Zero rows predict nothing.
    CHECK(p.predict(const_matrix_view<float>(s.x.data(), 0, 3)).empty());
}

TEST_CASE("probe argument errors are input_errors", "[probe][errors]") {
    const auto d = separable(20, 4);
    CHECK_THROWS_ID_AS(logistic_probe::train(const_matrix_view<float>(d.x.data(), 0, 3), {}, 2), hashee::error, "E21");
    CHECK_THROWS_MATCHES(logistic_probe::train(const_matrix_view<float>(d.x.data(), 0, 3), {}, 2), input_error,
                         Catch::Message("logistic_probe::train: empty training set"));
    std::vector<int> bad = d.y;
    bad[5] = 2;
    CHECK_THROWS_ID_AS(logistic_probe::train(d.view(), bad, 2), hashee::error, "E21");
    CHECK_THROWS_WITH(logistic_probe::train(d.view(), bad, 2), Contains("label 2 at row 5"));
    bad[5] = -1;
    CHECK_THROWS_ID_AS(logistic_probe::train(d.view(), bad, 2), input_error, "E21");
    CHECK_THROWS_ID_AS(logistic_probe::train(d.view(), std::span<const int>(d.y).first(10), 2), hashee::error, "E21");
    CHECK_THROWS_WITH(logistic_probe::train(d.view(), std::span<const int>(d.y).first(10), 2), Contains("10 labels"));
    CHECK_THROWS_ID_AS(logistic_probe::train(d.view(), d.y, 1), hashee::error, "E21");
    CHECK_THROWS_WITH(logistic_probe::train(d.view(), d.y, 1), Contains("at least 2 classes"));
    probe_options opt;
    opt.batch_size = 0;
    CHECK_THROWS_ID_AS(logistic_probe::train(d.view(), d.y, 2, opt), usage_error, "U07");
    opt = {};
    opt.learning_rate = 0.0;
    CHECK_THROWS_ID_AS(logistic_probe::train(d.view(), d.y, 2, opt), usage_error, "U07");
    auto nan_x = d.x;
    nan_x[4] = std::nanf("");
    CHECK_THROWS_ID_AS(logistic_probe::train(const_matrix_view<float>(nan_x.data(), d.n(), 3), d.y, 2), hashee::error, "E21");
    CHECK_THROWS_WITH(logistic_probe::train(const_matrix_view<float>(nan_x.data(), d.n(), 3), d.y, 2),
                      Contains("non-finite feature at row 1, column 1"));

    const auto p = logistic_probe::train(d.view(), d.y, 2);
    const const_matrix_view<float> two_cols(d.x.data(), 5, 2);
    CHECK_THROWS_ID_AS(p.predict(two_cols), usage_error, "U07");
    CHECK_THROWS_WITH(p.predict(two_cols), Contains("2 columns") && Contains("trained on 3"));
    CHECK_THROWS_ID_AS(p.probabilities(two_cols), usage_error, "U07");
}
