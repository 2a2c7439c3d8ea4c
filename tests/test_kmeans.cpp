#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <hashee/core/detail/random.hpp>
#include <hashee/backend/eigen_cpu.hpp>
#include <hashee/hash/kmeans.hpp>
#include <hashee/io/safetensors.hpp>

#include "test_support.hpp"

using namespace hashee;

namespace {

struct blobs {
    std::vector<float> data;
    std::vector<int> label;
    index_t rows = 0, dim = 0;
    const_matrix_view<float> view() const { return {data.data(), rows, dim}; }
};

/// `clusters` Gaussian blobs (sigma) around centres spaced `spread` apart on distinct axes.
blobs make_blobs(int clusters, int per_cluster, index_t dim, float spread, float sigma, unsigned seed) {
    blobs b;
    b.rows = static_cast<index_t>(clusters) * per_cluster;
    b.dim = dim;
    hashee::detail::random_source rng(seed);
    for (int i = 0; i < per_cluster; ++i) {
        for (int c = 0; c < clusters; ++c) { // interleaved, so labels are not contiguous
            for (index_t j = 0; j < dim; ++j) {
                const float centre = (j == c % dim ? spread : 0.f) + (j == (c + 1) % dim ? 0.5f * spread * float(c / dim) : 0.f);
                b.data.push_back(centre + static_cast<float>(rng.normal(0.0, sigma)));
            }
            b.label.push_back(c);
        }
    }
    return b;
}

std::vector<float> uniform_data(index_t rows, index_t dim, unsigned seed) {
    hashee::detail::random_source rng(seed);
    std::vector<float> v(static_cast<std::size_t>(rows * dim));
    for (auto& x : v) x = static_cast<float>(rng.uniform(-1.0, 1.0));
    return v;
}

double brute_inertia(const_matrix_view<float> x, const kmeans_result& r) {
    double s = 0;
    for (index_t i = 0; i < x.rows; ++i) {
        const float* c = r.centroids.data() + r.assignment[static_cast<std::size_t>(i)] * x.cols;
        for (index_t j = 0; j < x.cols; ++j) {
            const double d = double(x.row(i)[j]) - double(c[j]);
            s += d * d;
        }
    }
    return s;
}

std::vector<std::int64_t> sizes(const kmeans_result& r, int k) {
    std::vector<std::int64_t> n(static_cast<std::size_t>(k), 0);
    for (int a : r.assignment) ++n[static_cast<std::size_t>(a)];
    return n;
}

void check_valid(const_matrix_view<float> x, const kmeans_result& r, int k) {
    REQUIRE(r.assignment.size() == static_cast<std::size_t>(x.rows));
    REQUIRE(r.centroids.size() == static_cast<std::size_t>(k * x.cols));
    for (int a : r.assignment) {
        REQUIRE(a >= 0);
        REQUIRE(a < k);
    }
    for (auto n : sizes(r, k)) CHECK(n > 0);
    const double brute = brute_inertia(x, r);
    CHECK(r.inertia == Approx(brute).epsilon(1e-12).margin(1e-12));
    // Every row sits at (or, within float rounding, next to) its nearest centroid.
    for (index_t i = 0; i < x.rows; ++i) {
        double best = std::numeric_limits<double>::infinity(), own = 0;
        for (int c = 0; c < k; ++c) {
            double d = 0;
            for (index_t j = 0; j < x.cols; ++j) {
                const double t = double(x.row(i)[j]) - double(r.centroids[static_cast<std::size_t>(c * x.cols + j)]);
                d += t * t;
            }
            best = std::min(best, d);
            if (c == r.assignment[static_cast<std::size_t>(i)]) own = d;
        }
        CHECK(own <= best + 1e-4 * (1 + best));
    }
}

void check_identical(const kmeans_result& a, const kmeans_result& b) {
    CHECK(a.assignment == b.assignment);
    CHECK(a.centroids == b.centroids);
    CHECK(a.inertia == b.inertia);
    CHECK(a.iterations == b.iterations);
}

/// True when `got` equals `truth` up to a relabelling (a bijection between labels).
bool same_partition(const std::vector<int>& truth, const std::vector<int>& got) {
    if (truth.size() != got.size()) return false;
    std::map<int, int> fwd, back;
    for (std::size_t i = 0; i < truth.size(); ++i) {
        auto [f, fnew] = fwd.emplace(truth[i], got[i]);
        auto [b, bnew] = back.emplace(got[i], truth[i]);
        if (f->second != got[i] || b->second != truth[i]) return false;
        (void)fnew;
        (void)bnew;
    }
    return true;
}

} // namespace

TEST_CASE("kmeans recovers well-separated Gaussian blobs", "[kmeans]") {
    for (int k : {2, 3, 6, 12}) {
        const blobs b = make_blobs(k, 40, 8, 10.f, 0.3f, 1234u + static_cast<unsigned>(k));
        for (std::uint64_t seed : {0ull, 1ull, 99ull}) {
            kmeans_options o;
            o.k = k;
            o.seed = seed;
            const auto r = kmeans(b.view(), o);
            INFO("k = " << k << ", seed = " << seed);
            check_valid(b.view(), r, k);
            CHECK(same_partition(b.label, r.assignment));
            CHECK(r.iterations >= 1);
            CHECK(r.iterations <= o.max_iterations);
        }
    }
}

TEST_CASE("kmeans is deterministic for a seed, whatever the thread count", "[kmeans]") {
    const index_t rows = 5000, dim = 24;
    const auto data = uniform_data(rows, dim, 7u);
    const const_matrix_view<float> x(data.data(), rows, dim);
    kmeans_options o;
    o.k = 7;
    o.seed = 42;
    const auto a = kmeans(x, o);
    const auto b = kmeans(x, o);
    check_identical(a, b);
    check_valid(x, a, o.k);
    for (int threads : {1, 2, 3, 5}) {
        INFO("threads = " << threads);
        const eigen_cpu backend(threads);
        check_identical(a, kmeans(x, o, backend));
    }

    SECTION("a strided view gives the same result as a packed one") {
        std::vector<float> padded(static_cast<std::size_t>(rows * (dim + 3)), -777.f);
        for (index_t i = 0; i < rows; ++i)
            std::copy(x.row(i), x.row(i) + dim, padded.begin() + i * (dim + 3));
        const const_matrix_view<float> px(padded.data(), rows, dim, dim + 3);
        check_identical(a, kmeans(px, o, eigen_cpu(2)));
    }
}

TEST_CASE("kmeans with different seeds still gives valid clusterings", "[kmeans]") {
    const index_t rows = 800, dim = 5;
    const auto data = uniform_data(rows, dim, 3u);
    const const_matrix_view<float> x(data.data(), rows, dim);
    std::set<double> inertias;
    for (std::uint64_t seed = 0; seed < 6; ++seed) {
        kmeans_options o;
        o.k = 5;
        o.seed = seed;
        o.restarts = 1;
        const auto r = kmeans(x, o, eigen_cpu(2));
        INFO("seed = " << seed);
        check_valid(x, r, o.k);
        inertias.insert(r.inertia);
    }
    // Single restarts from different seeds land in more than one local optimum (or at least
    // are not all bit-identical by accident of a shared stream).
    CHECK(inertias.size() >= 2);

    SECTION("more restarts never do worse than the first of them") {
        kmeans_options one;
        one.k = 5;
        one.seed = 11;
        one.restarts = 1;
        kmeans_options many = one;
        many.restarts = 8;
        CHECK(kmeans(x, many).inertia <= kmeans(x, one).inertia);
    }
}

TEST_CASE("kmeans edge cases: k = 1 and k = rows", "[kmeans]") {
    const index_t rows = 37, dim = 4;
    const auto data = uniform_data(rows, dim, 5u);
    const const_matrix_view<float> x(data.data(), rows, dim);

    SECTION("k = 1: one cluster at the mean") {
        kmeans_options o;
        o.k = 1;
        const auto r = kmeans(x, o);
        check_valid(x, r, 1);
        for (int a : r.assignment) CHECK(a == 0);
        for (index_t j = 0; j < dim; ++j) {
            double m = 0;
            for (index_t i = 0; i < rows; ++i) m += x.row(i)[j];
            m /= double(rows);
            CHECK(r.centroids[static_cast<std::size_t>(j)] == Approx(m).margin(1e-6));
        }
    }

    SECTION("k = rows: every row alone, inertia 0") {
        kmeans_options o;
        o.k = static_cast<int>(rows);
        const auto r = kmeans(x, o, eigen_cpu(2));
        check_valid(x, r, o.k);
        CHECK(r.inertia == 0);
        for (auto n : sizes(r, o.k)) CHECK(n == 1);
        for (index_t i = 0; i < rows; ++i) {
            const float* c = r.centroids.data() + r.assignment[static_cast<std::size_t>(i)] * dim;
            CHECK(std::equal(c, c + dim, x.row(i)));
        }
    }

    SECTION("a single row") {
        const float one[3] = {1.f, 2.f, 3.f};
        kmeans_options o;
        o.k = 1;
        const auto r = kmeans(const_matrix_view<float>(one, 1, 3), o);
        CHECK(r.assignment == std::vector<int>{0});
        CHECK(r.centroids == std::vector<float>{1.f, 2.f, 3.f});
        CHECK(r.inertia == 0);
    }

    SECTION("identical rows, k > distinct rows: no cluster stays empty") {
        std::vector<float> same(20 * 3, 0.5f);
        kmeans_options o;
        o.k = 3;
        const auto r = kmeans(const_matrix_view<float>(same.data(), 20, 3), o);
        for (auto n : sizes(r, 3)) CHECK(n > 0);
        CHECK(r.inertia == 0);
    }

    SECTION("max_iterations = 0: seeding and one assignment") {
        kmeans_options o;
        o.k = 4;
        o.max_iterations = 0;
        const auto r = kmeans(x, o);
        check_valid(x, r, 4);
        CHECK(r.iterations == 0);
    }
}

TEST_CASE("kmeans inertia equals a brute-force recomputation", "[kmeans]") {
    const index_t rows = 3000, dim = 17;
    const auto data = uniform_data(rows, dim, 9u);
    const const_matrix_view<float> x(data.data(), rows, dim);
    for (int k : {2, 6, 12}) {
        kmeans_options o;
        o.k = k;
        o.seed = 5;
        const auto r = kmeans(x, o, eigen_cpu(2));
        INFO("k = " << k);
        CHECK(r.inertia == Approx(brute_inertia(x, r)).epsilon(1e-12));
        check_valid(x, r, k);
    }
}

TEST_CASE("lloyd re-seeds an empty cluster with the farthest row", "[kmeans]") {
    // 1-D rows 0 1 2 | 10 11 12 and centroids 1, 11, 1000: cluster 2 is empty after the first
    // assignment; the farthest rows (distance 1: rows 0, 2, 3, 5) tie, the lowest (row 0) moves.
    const float rows[] = {0, 1, 2, 10, 11, 12};
    const const_matrix_view<float> x(rows, 6, 1);
    const std::vector<float> init = {1.f, 11.f, 1000.f};
    kmeans_options o;
    o.k = 3;
    for (int threads : {1, 2}) {
        const auto r = lloyd(x, init, o, eigen_cpu(threads));
        CHECK(r.assignment == std::vector<int>{2, 0, 0, 1, 1, 1});
        CHECK(r.centroids == std::vector<float>{1.5f, 11.f, 0.f});
        CHECK(r.inertia == Approx(2.5));
        CHECK(r.iterations == 2);
    }

    SECTION("two empty clusters take two different rows") {
        const std::vector<float> far = {1.f, -500.f, 1000.f};
        const auto r = lloyd(x, far, o);
        check_valid(x, r, 3);
        CHECK(r.inertia == Approx(brute_inertia(x, r)));
    }

    SECTION("bad initial centroids") {
        CHECK_THROWS_ID_AS(lloyd(x, std::vector<float>{1.f, 2.f}, o), usage_error, "U26");
        CHECK_THROWS_ID_AS(lloyd(x, std::vector<float>{1.f, 2.f, std::nanf("")}, o), usage_error, "U26");
    }
}

TEST_CASE("order_clusters_by_norm_sum", "[kmeans]") {
    // norms: 5, 1, 2, 0, 1  -> cluster sums: c0 = 5, c1 = 1 + 2 = 3, c2 = 0 + 1 = 1, c3 empty = 0
    const float rows[] = {3, 4, 1, 0, 0, 2, 0, 0, 0, -1};
    const const_matrix_view<float> x(rows, 5, 2);
    const std::vector<int> assignment = {0, 1, 1, 2, 2};
    CHECK(order_clusters_by_norm_sum(x, assignment, 4) == std::vector<int>{3, 2, 1, 0});

    SECTION("ties are broken by cluster id") {
        const float t[] = {1, 0, 0, 1, 0, -1};
        const std::vector<int> a = {2, 0, 1};
        CHECK(order_clusters_by_norm_sum(const_matrix_view<float>(t, 3, 2), a, 3) == std::vector<int>{0, 1, 2});
        const std::vector<int> a2 = {2, 2, 1};
        CHECK(order_clusters_by_norm_sum(const_matrix_view<float>(t, 3, 2), a2, 3) == std::vector<int>{0, 1, 2});
        const std::vector<int> a3 = {1, 1, 1};
        CHECK(order_clusters_by_norm_sum(const_matrix_view<float>(t, 3, 2), a3, 3) == std::vector<int>{0, 2, 1});
    }

    SECTION("errors") {
        CHECK_THROWS_ID_AS(order_clusters_by_norm_sum(x, assignment, 0), usage_error, "U26");
        CHECK_THROWS_ID_AS(order_clusters_by_norm_sum(x, assignment, 2), usage_error, "U26"); // 2 is out of [0, 2)
        const std::vector<int> short_a = {0, 1};
        CHECK_THROWS_ID_AS(order_clusters_by_norm_sum(x, short_a, 4), usage_error, "U26");
        const std::vector<int> neg = {0, 1, -1, 2, 2};
        CHECK_THROWS_ID_AS(order_clusters_by_norm_sum(x, neg, 4), usage_error, "U26");
    }
}

TEST_CASE("kmeans rejects bad input", "[kmeans]") {
    const auto data = uniform_data(10, 3, 1u);
    const const_matrix_view<float> x(data.data(), 10, 3);
    kmeans_options o;
    o.k = 0;
    CHECK_THROWS_ID_AS(kmeans(x, o), usage_error, "U26");
    o.k = -2;
    CHECK_THROWS_ID_AS(kmeans(x, o), usage_error, "U26");
    o.k = 11;
    CHECK_THROWS_ID_AS(kmeans(x, o), usage_error, "U26");
    o.k = 2;
    CHECK_THROWS_ID_AS(kmeans(const_matrix_view<float>(data.data(), 0, 3), o), usage_error, "U26");
    CHECK_THROWS_ID_AS(kmeans(const_matrix_view<float>(data.data(), 10, 0), o), usage_error, "U26");
    o.restarts = 0;
    CHECK_THROWS_ID_AS(kmeans(x, o), usage_error, "U26");
    o.restarts = 1;
    o.max_iterations = -1;
    CHECK_THROWS_ID_AS(kmeans(x, o), usage_error, "U26");
    o.max_iterations = 10;
    o.tolerance = -1;
    CHECK_THROWS_ID_AS(kmeans(x, o), usage_error, "U26");
    o.tolerance = 1e-6;
    auto bad = data;
    bad[7] = std::numeric_limits<float>::infinity();
    CHECK_THROWS_ID_AS(kmeans(const_matrix_view<float>(bad.data(), 10, 3), o), input_error, "E75");
    CHECK_NOTHROW(kmeans(x, o));
    try {
        o.k = 11;
        (void)kmeans(x, o);
        FAIL("no throw");
    } catch (const usage_error& e) {
        CHECK(e.id() == "U26");
        CHECK_THAT(e.what(), Catch::Contains("kmeans") && Catch::Contains("11"));
    }
}

TEST_CASE("kmeans on the real word-embedding matrix (k = 6)", "[kmeans][model]") {
    const auto file = safetensors_file::open(test::model_dir() / "model.safetensors");
    const auto& info = file.expect("embeddings.word_embeddings.weight", {30522, 384});
    std::vector<float> storage;
    const auto values = file.floats(info, storage);
    const const_matrix_view<float> x(values.data(), 30522, 384);

    kmeans_options o;
    o.k = 6;
    o.seed = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const auto a = kmeans(x, o, eigen_cpu(2));
    const auto t1 = std::chrono::steady_clock::now();
    const auto b = kmeans(x, o, eigen_cpu(1));
    const auto t2 = std::chrono::steady_clock::now();
    check_identical(a, b);

    const auto n = sizes(a, o.k);
    for (auto c : n) CHECK(c > 0);
    CHECK(a.inertia == Approx(brute_inertia(x, a)).epsilon(1e-12));
    const auto order = order_clusters_by_norm_sum(x, a.assignment, o.k);

    std::ostringstream msg;
    msg << "k-means k=6, 5 restarts on 30522x384: " << std::chrono::duration<double>(t1 - t0).count()
        << " s (2 threads), " << std::chrono::duration<double>(t2 - t1).count() << " s (1 thread); "
        << "iterations " << a.iterations << ", inertia " << a.inertia << "; sizes";
    for (auto c : n) msg << ' ' << c;
    msg << "; exit order";
    for (int c : order) msg << ' ' << c;
    WARN(msg.str());
#ifdef NDEBUG // the speed target applies to optimised builds
    CHECK(std::chrono::duration<double>(t1 - t0).count() < 10.0);
#endif
}
