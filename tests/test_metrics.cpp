// The metrics against numbers computed with scipy 1.x / numpy (see the comments), ties
// included, and every argument error.

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <hashee/core/error.hpp>
#include <hashee/eval/metrics.hpp>

#include <cmath>
#include <vector>

using namespace hashee;
using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;

namespace {
// Fixed vectors; the expected values below were computed with
//   scipy.stats.pearsonr(x, y)[0], scipy.stats.spearmanr(x, y)[0], scipy.stats.rankdata(x)
// (scipy 1.x, numpy 2.x, float64).
const std::vector<double> a_x{1.0, 2.0, 3.0, 4.0, 5.0};
const std::vector<double> a_y{2.0, 1.0, 4.0, 3.0, 5.5};
const std::vector<double> ties_x{1.0, 2.0, 2.0, 3.0, 5.0, 5.0, 5.0, 0.5};
const std::vector<double> ties_y{3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0};
const std::vector<double> neg_x{0.1, -2.5, 3.25, 7.0, -1.0, 4.5};
const std::vector<double> neg_y{10.0, 8.0, -3.0, -7.5, 9.0, 0.0};
constexpr double tol = 1e-12;
} // namespace

TEST_CASE("pearson matches scipy.stats.pearsonr", "[metrics]") {
    CHECK_THAT(pearson(a_x, a_y), WithinAbs(0.8148217143826667, tol));
    CHECK_THAT(pearson(ties_x, ties_y), WithinAbs(0.22181079888968414, tol));
    CHECK_THAT(pearson(neg_x, neg_y), WithinAbs(-0.9214312033373553, tol));
    CHECK_THAT(pearson(a_x, a_x), WithinAbs(1.0, tol));
    const std::vector<double> rev{5.0, 4.0, 3.0, 2.0, 1.0};
    CHECK_THAT(pearson(a_x, rev), WithinAbs(-1.0, tol));
    CHECK(std::abs(pearson(a_x, a_y)) <= 1.0);
}

TEST_CASE("spearman matches scipy.stats.spearmanr, ties averaged", "[metrics]") {
    CHECK_THAT(spearman(a_x, a_y), WithinAbs(0.7999999999999999, tol));
    CHECK_THAT(spearman(ties_x, ties_y), WithinAbs(0.055572498390824586, tol));
    CHECK_THAT(spearman(neg_x, neg_y), WithinAbs(-0.7142857142857143, tol));
    // Monotone but non-linear: Spearman 1, Pearson below 1.
    const std::vector<double> cube{1.0, 8.0, 27.0, 64.0, 125.0};
    CHECK_THAT(spearman(a_x, cube), WithinAbs(1.0, tol));
    CHECK(pearson(a_x, cube) < 0.99);
}

TEST_CASE("average_ranks matches scipy.stats.rankdata(method='average')", "[metrics]") {
    CHECK(average_ranks(ties_x) == std::vector<double>{2.0, 3.5, 3.5, 5.0, 7.0, 7.0, 7.0, 1.0});
    CHECK(average_ranks(ties_y) == std::vector<double>{4.0, 1.5, 5.0, 1.5, 6.0, 8.0, 3.0, 7.0});
    CHECK(average_ranks(neg_x) == std::vector<double>{3.0, 1.0, 4.0, 6.0, 2.0, 5.0});
    CHECK(average_ranks(std::vector<double>{}).empty());
    CHECK(average_ranks(std::vector<double>{4.0, 4.0, 4.0}) == std::vector<double>{2.0, 2.0, 2.0});
    CHECK_THROWS_ID_AS(average_ranks(std::vector<double>{1.0, std::nan("")}), input_error, "E44");
}

TEST_CASE("accuracy and f1_binary", "[metrics]") {
    // numpy: p = [1,0,1,1,0,1,0,0,1,1], t = [1,0,0,1,0,1,1,0,1,0]; (p == t).mean() = 0.7;
    // positive 1: tp 4, fp 2, fn 1 -> 2*4/(8+2+1) = 0.7272727272727273;
    // positive 0: tp 3, fp 1, fn 2 -> 6/9 = 0.6666666666666666.
    const std::vector<int> p{1, 0, 1, 1, 0, 1, 0, 0, 1, 1};
    const std::vector<int> t{1, 0, 0, 1, 0, 1, 1, 0, 1, 0};
    CHECK_THAT(accuracy(p, t), WithinAbs(0.7, tol));
    CHECK_THAT(f1_binary(p, t), WithinAbs(0.7272727272727273, tol));
    CHECK_THAT(f1_binary(p, t, 0), WithinAbs(0.6666666666666666, tol));
    CHECK(accuracy(t, t) == 1.0);
    CHECK(f1_binary(t, t) == 1.0);
    // No positive anywhere: 0 (scikit-learn's zero_division=0).
    const std::vector<int> zeros{0, 0, 0};
    CHECK(f1_binary(zeros, zeros) == 0.0);
}

TEST_CASE("cosine similarity", "[metrics]") {
    // numpy (float64 of the float32 values): a @ b / |a| / |b| = 0.5547568916601264
    const std::vector<float> a{0.5f, -1.25f, 2.0f, 3.0f};
    const std::vector<float> b{1.0f, 0.75f, -0.5f, 2.5f};
    CHECK_THAT(cosine(a, b), WithinAbs(0.5547568916601264, tol));
    CHECK_THAT(cosine(a, a), WithinAbs(1.0, tol));
    const std::vector<float> neg{-0.5f, 1.25f, -2.0f, -3.0f};
    CHECK_THAT(cosine(a, neg), WithinAbs(-1.0, tol));
    const std::vector<float> zero(4, 0.0f);
    CHECK(cosine(a, zero) == 0.0);
    CHECK(cosine(zero, zero) == 0.0);
    CHECK(cosine(std::vector<float>{}, std::vector<float>{}) == 0.0);
}

TEST_CASE("metric argument errors are input_errors", "[metrics][errors]") {
    const std::vector<double> three{1.0, 2.0, 3.0}, two{1.0, 2.0}, one{1.0}, flat{2.0, 2.0, 2.0};
    CHECK_THROWS_ID_AS(pearson(three, two), usage_error, "U09");
    CHECK_THROWS_MATCHES(pearson(three, two), usage_error, Catch::Message("pearson: inputs differ in length (3 vs 2)"));
    CHECK_THROWS_ID_AS(pearson(one, one), hashee::error, "E44");
    CHECK_THROWS_WITH(pearson(one, one), Contains("at least 2"));
    CHECK_THROWS_ID_AS(pearson(three, flat), hashee::error, "E44");
    CHECK_THROWS_WITH(pearson(three, flat), Contains("zero variance"));
    CHECK_THROWS_ID_AS(pearson(flat, three), hashee::error, "E44");
    CHECK_THROWS_WITH(pearson(flat, three), Contains("zero variance"));
    CHECK_THROWS_ID_AS(pearson(three, std::vector<double>{1.0, INFINITY, 2.0}), hashee::error, "E44");
    CHECK_THROWS_WITH(pearson(three, std::vector<double>{1.0, INFINITY, 2.0}), Contains("non-finite"));
    CHECK_THROWS_ID_AS(spearman(three, two), usage_error, "U09");
    CHECK_THROWS_ID_AS(spearman(one, one), input_error, "E44");
    CHECK_THROWS_ID_AS(spearman(three, flat), hashee::error, "E44");
    CHECK_THROWS_WITH(spearman(three, flat), Contains("spearman: zero variance"));
    CHECK_THROWS_ID_AS(spearman(three, std::vector<double>{1.0, NAN, 2.0}), input_error, "E44");
    const std::vector<int> i3{1, 0, 1}, i2{1, 0};
    CHECK_THROWS_ID_AS(accuracy(i3, i2), usage_error, "U09");
    CHECK_THROWS_ID_AS(accuracy(std::vector<int>{}, std::vector<int>{}), hashee::error, "E44");
    CHECK_THROWS_WITH(accuracy(std::vector<int>{}, std::vector<int>{}), Contains("empty"));
    CHECK_THROWS_ID_AS(f1_binary(i3, i2), usage_error, "U09");
    CHECK_THROWS_ID_AS(f1_binary(std::vector<int>{}, std::vector<int>{}), input_error, "E44");
    CHECK_THROWS_ID_AS(cosine(std::vector<float>{1.0f}, std::vector<float>{1.0f, 2.0f}), usage_error, "U09");
}
