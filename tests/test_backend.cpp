// Every backend primitive against a plain double-precision reference written here, over every
// backend (TEMPLATE_LIST_TEST_CASE) and several thread counts.

#include <cmath>
#include <cstring>
#include <numeric>
#include <set>
#include <mutex>
#include <atomic>
#include <stdexcept>
#include <thread>

#include <catch2/catch.hpp>

#include <hashee/core/detail/random.hpp>
#include <hashee/backend/backend.hpp>
#include <hashee/backend/detail/thread_team.hpp>
#include <hashee/core/error.hpp>

#include "backends.hpp"

using namespace hashee;
using hashee::test::all_backends;
using hashee::test::to_device;
using hashee::test::to_host;

namespace {

std::vector<float> random_vector(std::size_t n, hashee::detail::random_source& rng, float scale = 1.0f) {
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(rng.normal(0.0, scale));
    return v;
}

double gelu_exact(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

void layer_norm_ref(std::vector<double>& row, const std::vector<float>& g, const std::vector<float>& b, double eps) {
    double mean = 0, var = 0;
    for (double x : row) mean += x;
    mean /= static_cast<double>(row.size());
    for (double x : row) var += (x - mean) * (x - mean);
    var /= static_cast<double>(row.size());
    for (std::size_t j = 0; j < row.size(); ++j) row[j] = (row[j] - mean) / std::sqrt(var + eps) * g[j] + b[j];
}

} // namespace

TEMPLATE_LIST_TEST_CASE("linear computes x W^T + bias and its epilogue", "[backend]", all_backends) {
    const int threads = GENERATE(1, 2, 3);
    const auto b = test::make_backend<TestType>(threads);
    const auto [n, in, out] = GENERATE(table<index_t, index_t, index_t>(
        {{1, 8, 5}, {3, 384, 384}, {17, 64, 48}, {64, 384, 1536}, {129, 384, 384}, {300, 96, 384}, {1000, 32, 24}, {1, 1536, 384}}));
    const auto e = GENERATE(epilogue::none, epilogue::gelu, epilogue::tanh);
    const bool prepared = GENERATE(false, true); // on W as given, or as the backend prepares it at load
    CAPTURE(threads, n, in, out, static_cast<int>(e), prepared);
    hashee::detail::random_source rng(static_cast<std::uint64_t>(n * 131 + in * 7 + out));
    const auto x = random_vector(n * in, rng), w = random_vector(out * in, rng, 0.1f), bias = random_vector(out, rng);
    const auto xd = to_device(b, x), wd = to_device(b, w), bd = to_device(b, bias);
    auto yd = b.template allocate<float>(n * out);
    const const_matrix_view<float> wv(wd.data(), out, in);
    if (prepared)
        b.linear({xd.data(), n, in}, b.prepare_weight(wv), {bd.data(), out}, {yd.data(), n, out}, e);
    else
        b.linear({xd.data(), n, in}, wv, {bd.data(), out}, {yd.data(), n, out}, e);
    const auto y = to_host(b, yd, n * out);
    double worst = 0;
    for (index_t r = 0; r < n; ++r)
        for (index_t c = 0; c < out; ++c) {
            double acc = bias[c];
            for (index_t k = 0; k < in; ++k) acc += double(x[r * in + k]) * w[c * in + k];
            if (e == epilogue::gelu) acc = gelu_exact(acc);
            if (e == epilogue::tanh) acc = std::tanh(acc);
            worst = std::max(worst, std::abs(acc - y[r * out + c]) / (1.0 + std::abs(acc)));
        }
    CHECK(worst < 2e-5);
}

TEMPLATE_LIST_TEST_CASE("linear writes strided column blocks and rejects misfit shapes", "[backend]", all_backends) {
    const auto b = test::make_backend<TestType>(2);
    hashee::detail::random_source rng(3);
    const index_t n = 300, in = 16, out = 24, ld = 36; // large enough to be split in row blocks
    const auto x = random_vector(n * in, rng), w = random_vector(out * in, rng);
    const auto xd = to_device(b, x), wd = to_device(b, w);
    auto yd = to_device(b, std::vector<float>(n * ld, 7.0f));
    const matrix_view<float> y_all(yd.data(), n, ld);
    b.linear({xd.data(), n, in}, {wd.data(), out, in}, {}, y_all.block_cols(5, out), epilogue::none);
    const auto y = to_host(b, yd, n * ld);
    for (index_t r = 0; r < n; ++r)
        for (index_t c = 0; c < ld; ++c) {
            if (c < 5 || c >= 5 + out) {
                CHECK(y[r * ld + c] == 7.0f); // untouched outside the block
            } else {
                double acc = 0;
                for (index_t k = 0; k < in; ++k) acc += double(x[r * in + k]) * w[(c - 5) * in + k];
                CHECK(std::abs(acc - y[r * ld + c]) < 1e-4);
            }
        }
    // Views of shapes that do not fit are a misuse of the API.
    CHECK_THROWS_ID_AS(b.linear({xd.data(), n, in}, {wd.data(), out, in - 1}, {}, {yd.data(), n, out}, epilogue::none),
                       usage_error, "U40");
    CHECK_THROWS_ID_AS(b.linear({xd.data(), n, in}, {wd.data(), out, in}, {wd.data(), out - 1}, {yd.data(), n, out},
                                epilogue::none),
                       usage_error, "U40");
}

TEMPLATE_LIST_TEST_CASE("weight_rows: a prepared weight's rows as products of their own (the fused Q/K/V's parts)",
                        "[backend]", all_backends) {
    const int threads = GENERATE(1, 2, 3);
    const auto [n, in, d] = GENERATE(table<index_t, index_t, index_t>({{5, 64, 48}, {32, 384, 384}, {300, 384, 384}}));
    CAPTURE(threads, n, in, d);
    const auto b = test::make_backend<TestType>(threads);
    hashee::detail::random_source rng(static_cast<std::uint64_t>(n + in + d));
    const index_t out = 3 * d;
    const auto x = random_vector(n * in, rng), w = random_vector(out * in, rng, 0.1f), bias = random_vector(out, rng);
    const auto xd = to_device(b, x), wd = to_device(b, w), bd = to_device(b, bias);
    const auto fused = b.prepare_weight({wd.data(), out, in});
    auto yd = b.template allocate<float>(n * out);
    b.linear({xd.data(), n, in}, fused, {bd.data(), out}, {yd.data(), n, out}, epilogue::none);
    const auto y = to_host(b, yd, n * out);
    for (const auto& [first, count] : {std::pair<index_t, index_t>{0, d}, {d, 2 * d}, {2 * d, d}}) {
        CAPTURE(first, count);
        auto pd = b.template allocate<float>(n * count);
        const vector_view<const float> part_bias(bd.data() + first, count);
        b.linear({xd.data(), n, in}, b.weight_rows(fused, first, count), part_bias, {pd.data(), n, count}, epilogue::none);
        const auto part = to_host(b, pd, n * count);
        double worst = 0;
        for (index_t r = 0; r < n; ++r)
            for (index_t c = 0; c < count; ++c) {
                const double full = y[r * out + first + c];
                worst = std::max(worst, std::abs(full - part[r * count + c]) / (1.0 + std::abs(full)));
            }
        CHECK(worst < 1e-5);
    }
    CHECK_THROWS_ID_AS(b.weight_rows(fused, 2 * d, d + 1), usage_error, "U42");
    CHECK_THROWS_ID_AS(b.weight_rows(fused, -1, d), usage_error, "U42");
    CHECK_THROWS_ID_AS(b.weight_rows(fused, 0, 0), usage_error, "U42");
}

TEMPLATE_LIST_TEST_CASE("attention over a ragged packed batch, queries a subset of keys", "[backend]", all_backends) {
    const int threads = GENERATE(1, 2);
    const auto b = test::make_backend<TestType>(threads);
    // Head widths 96, 32 (the model's), 24 and 8.
    const int heads = GENERATE(1, 3, 4, 12);
    const index_t d = 96;
    // Three sequences, either with 5, 1 and 9 keys and 3, 1 and 0 queries (a sequence may have
    // none), or with 70, 1 and 37 keys and 38, 1 and 23 queries (odd lengths, longer than a SIMD
    // register's lanes).
    const bool long_sequences = GENERATE(false, true);
    const std::vector<std::int32_t> kv_off = long_sequences ? std::vector<std::int32_t>{0, 70, 71, 108} : std::vector<std::int32_t>{0, 5, 6, 15};
    const std::vector<std::int32_t> q_off = long_sequences ? std::vector<std::int32_t>{0, 38, 39, 62} : std::vector<std::int32_t>{0, 3, 4, 4};
    const index_t nk = kv_off.back(), nq = q_off.back();
    hashee::detail::random_source rng(static_cast<std::uint64_t>(heads));
    const auto q = random_vector(nq * d, rng), k = random_vector(nk * d, rng), v = random_vector(nk * d, rng);
    const auto qd = to_device(b, q), kd = to_device(b, k), vd = to_device(b, v);
    const auto qo = to_device(b, q_off), ko = to_device(b, kv_off);
    auto od = b.template allocate<float>(nq * d);
    b.attention({qd.data(), nq, d}, {kd.data(), nk, d}, {vd.data(), nk, d}, {qo.data(), 4}, {ko.data(), 4}, heads,
                {od.data(), nq, d});
    const auto o = to_host(b, od, nq * d);
    const index_t dh = d / heads;
    for (int s = 0; s < 3; ++s)
        for (index_t i = q_off[s]; i < q_off[s + 1]; ++i)
            for (int h = 0; h < heads; ++h) {
                std::vector<double> p;
                double mx = -1e300, sum = 0;
                for (index_t j = kv_off[s]; j < kv_off[s + 1]; ++j) {
                    double dot = 0;
                    for (index_t t = 0; t < dh; ++t) dot += double(q[i * d + h * dh + t]) * k[j * d + h * dh + t];
                    p.push_back(dot / std::sqrt(double(dh)));
                    mx = std::max(mx, p.back());
                }
                for (double& x : p) sum += (x = std::exp(x - mx));
                for (index_t t = 0; t < dh; ++t) {
                    double acc = 0;
                    for (index_t j = kv_off[s]; j < kv_off[s + 1]; ++j) acc += p[j - kv_off[s]] / sum * v[j * d + h * dh + t];
                    CHECK(std::abs(acc - o[i * d + h * dh + t]) < 1e-5);
                }
            }
    // Shapes that do not fit (heads that do not divide the width, k and v of different lengths)
    // are a misuse of the API.
    CHECK_THROWS_ID_AS(b.attention({qd.data(), nq, d}, {kd.data(), nk, d}, {vd.data(), nk, d}, {qo.data(), 4},
                                   {ko.data(), 4}, 7, {od.data(), nq, d}),
                       usage_error, "U41");
    CHECK_THROWS_ID_AS(b.attention({qd.data(), nq, d}, {kd.data(), nk, d}, {vd.data(), nk - 1, d}, {qo.data(), 4},
                                   {ko.data(), 4}, heads, {od.data(), nq, d}),
                       usage_error, "U41");
}

TEMPLATE_LIST_TEST_CASE("embed sums three tables and normalises; add_layer_norm adds the residual", "[backend]",
                        all_backends) {
    const auto b = test::make_backend<TestType>(GENERATE(1, 2));
    const index_t d = 40, vocab = 11, positions = 7, types = 2, n = 19;
    const float eps = 1e-12f;
    hashee::detail::random_source rng(5);
    const auto word = random_vector(vocab * d, rng), pos = random_vector(positions * d, rng),
               type = random_vector(types * d, rng), g = random_vector(d, rng), beta = random_vector(d, rng);
    std::vector<std::int32_t> ids(n), tids(n), pids(n);
    for (index_t i = 0; i < n; ++i) {
        ids[i] = static_cast<std::int32_t>((i * 7) % vocab);
        tids[i] = static_cast<std::int32_t>(i % 2);
        pids[i] = static_cast<std::int32_t>(i % positions);
    }
    const auto wd = to_device(b, word), pd = to_device(b, pos), td = to_device(b, type), gd = to_device(b, g),
               bd = to_device(b, beta);
    const auto idd = to_device(b, ids), tdd = to_device(b, tids), pdd = to_device(b, pids);
    auto yd = b.template allocate<float>(n * d);
    b.embed({idd.data(), n}, {tdd.data(), n}, {pdd.data(), n}, {wd.data(), vocab, d}, {pd.data(), positions, d},
            {td.data(), types, d}, {gd.data(), d}, {bd.data(), d}, eps, {yd.data(), n, d});
    auto y = to_host(b, yd, n * d);
    std::vector<std::vector<double>> expect(n, std::vector<double>(d));
    for (index_t i = 0; i < n; ++i) {
        for (index_t j = 0; j < d; ++j)
            expect[i][j] = double(word[ids[i] * d + j]) + pos[pids[i] * d + j] + type[tids[i] * d + j];
        layer_norm_ref(expect[i], g, beta, eps);
        for (index_t j = 0; j < d; ++j) CHECK(std::abs(expect[i][j] - y[i * d + j]) < 1e-4);
    }
    // y = LayerNorm(y + residual)
    const auto residual = random_vector(n * d, rng);
    const auto rd = to_device(b, residual);
    b.add_layer_norm({yd.data(), n, d}, {rd.data(), n, d}, {gd.data(), d}, {bd.data(), d}, eps);
    const auto z = to_host(b, yd, n * d);
    for (index_t i = 0; i < n; ++i) {
        std::vector<double> row(d);
        for (index_t j = 0; j < d; ++j) row[j] = double(y[i * d + j]) + residual[i * d + j];
        layer_norm_ref(row, g, beta, eps);
        for (index_t j = 0; j < d; ++j) CHECK(std::abs(row[j] - z[i * d + j]) < 1e-4);
    }
}

TEMPLATE_LIST_TEST_CASE("gather_rows picks rows by index", "[backend]", all_backends) {
    const auto b = test::make_backend<TestType>(1);
    std::vector<float> x(6 * 3);
    std::iota(x.begin(), x.end(), 0.0f);
    const std::vector<std::int32_t> rows{5, 0, 5, 2};
    const auto xd = to_device(b, x);
    const auto rd = to_device(b, rows);
    auto yd = b.template allocate<float>(4 * 3);
    b.gather_rows({xd.data(), 6, 3}, {rd.data(), 4}, {yd.data(), 4, 3});
    const auto y = to_host(b, yd, 12);
    CHECK(y == std::vector<float>{15, 16, 17, 0, 1, 2, 15, 16, 17, 6, 7, 8});
}

TEMPLATE_LIST_TEST_CASE("scatter_rows puts rows back by index and leaves the others alone", "[backend]", all_backends) {
    const auto b = test::make_backend<TestType>(1);
    const std::vector<float> x{1, 2, 3, 4, 5, 6};
    const std::vector<std::int32_t> rows{3, 1};
    const auto xd = to_device(b, x);
    const auto rd = to_device(b, rows);
    auto yd = to_device(b, std::vector<float>(5 * 3, -1.0f));
    b.scatter_rows({xd.data(), 2, 3}, {rd.data(), 2}, {yd.data(), 5, 3});
    const auto y = to_host(b, yd, 15);
    CHECK(y == std::vector<float>{-1, -1, -1, 4, 5, 6, -1, -1, -1, 1, 2, 3, -1, -1, -1});
}

TEMPLATE_LIST_TEST_CASE("select_rows lists the rows still active, in order (a stream compaction)", "[backend]", all_backends) {
    const auto b = test::make_backend<TestType>(2);
    hashee::detail::random_source rng(5);
    for (const index_t n : {index_t{1}, index_t{7}, index_t{1000}, index_t{20000}}) {
        std::vector<std::int32_t> exits(static_cast<std::size_t>(n));
        for (auto& e : exits) e = 1 + static_cast<std::int32_t>(rng.below(6));
        const auto ed = to_device(b, exits);
        auto rd = b.template allocate<std::int32_t>(n);
        for (int layer = 1; layer <= 7; ++layer) {
            std::vector<std::int32_t> want;
            for (index_t t = 0; t < n; ++t)
                if (exits[static_cast<std::size_t>(t)] >= layer) want.push_back(static_cast<std::int32_t>(t));
            const index_t count = b.select_rows({ed.data(), n}, layer, {rd.data(), n});
            CAPTURE(n, layer);
            REQUIRE(count == static_cast<index_t>(want.size()));
            CHECK(to_host(b, rd, want.size()) == want);
        }
    }
}

#if HASHEE_HAS_THRUST && !HASHEE_TEST_CUDA
TEST_CASE("the Thrust CPU systems take fp32 GEMMs only and heads up to 128 wide", "[backend]") {
    CHECK_THROWS_ID_AS(thrust_backend<thrust_omp>(1, gemm_precision::fp16), input_error, "E63");
    CHECK_THROWS_ID_AS(thrust_backend<thrust_cpp>(1, gemm_precision::bf16), input_error, "E63");
    CHECK_THROWS_ID_AS(thrust_backend<thrust_omp>(1, gemm_precision::int8), input_error, "E63");
    CHECK_THROWS_ID_AS(thrust_backend<thrust_cpp>(0), input_error, "E22");
    const thrust_backend<thrust_cpp> b;
    const std::vector<std::int32_t> offsets{0, 1};
    const auto x = to_device(b, std::vector<float>(129, 1.0f));
    const auto o = to_device(b, offsets);
    auto out = b.template allocate<float>(129);
    CHECK_THROWS_ID_AS(b.attention({x.data(), 1, 129}, {x.data(), 1, 129}, {x.data(), 1, 129}, {o.data(), 2}, {o.data(), 2}, 1,
                                   {out.data(), 1, 129}),
                       input_error, "E33");
}
#endif

#if HASHEE_TEST_CUDA
TEST_CASE("a failure the CUDA runtime or cuBLAS reports is a device_error", "[backend][cuda]") {
    CHECK_THROWS_ID_AS(detail::cuda_check(cudaErrorInvalidValue, "upload"), device_error, "E85");
    CHECK_THROWS_ID_AS(detail::cuda_check(CUBLAS_STATUS_INVALID_VALUE, "cublasSgemm"), device_error, "E85");
    CHECK_NOTHROW(detail::cuda_check(cudaSuccess, "upload"));
    CHECK_THROWS_ID_AS(thrust_backend<thrust_cuda>(1, gemm_precision::int8), input_error, "E63"); // int8 is eigen's
}

TEST_CASE("fp16 and bf16 GEMMs accumulate in fp32 within their stated tolerances", "[backend][cuda]") {
    // |y - y_ref| / (1 + |y_ref|) with x ~ N(0, 1), W ~ N(0, 0.01), k up to 1536: fp16 inputs
    // (11-bit significand) within 5e-3, bf16 (8-bit) within 4e-2.
    const auto [precision, tolerance] =
        GENERATE(table<gemm_precision, double>({{gemm_precision::fp16, 5e-3}, {gemm_precision::bf16, 4e-2}}));
    const thrust_backend<thrust_cuda> b(1, precision);
    const auto [n, in, out] = GENERATE(table<index_t, index_t, index_t>({{1, 384, 384}, {64, 384, 1536}, {300, 1536, 384}}));
    hashee::detail::random_source rng(static_cast<std::uint64_t>(n + in));
    const auto x = random_vector(n * in, rng), w = random_vector(out * in, rng, 0.1f), bias = random_vector(out, rng);
    const auto xd = to_device(b, x), wd = to_device(b, w), bd = to_device(b, bias);
    auto yd = b.template allocate<float>(n * out);
    b.linear({xd.data(), n, in}, {wd.data(), out, in}, {bd.data(), out}, {yd.data(), n, out}, epilogue::gelu);
    const auto y = to_host(b, yd, n * out);
    double worst = 0;
    for (index_t r = 0; r < n; ++r)
        for (index_t c = 0; c < out; ++c) {
            double acc = bias[c];
            for (index_t k = 0; k < in; ++k) acc += double(x[r * in + k]) * w[c * in + k];
            acc = gelu_exact(acc);
            worst = std::max(worst, std::abs(acc - y[r * out + c]) / (1.0 + std::abs(acc)));
        }
    CAPTURE(n, in, out);
    CHECK(worst < tolerance);
}
#endif

TEST_CASE("eigen_cpu runs every index exactly once and rejects a thread count below 1", "[backend]") {
    for (int threads : {1, 2, 3, 8}) {
        const eigen_cpu b(threads);
        for (index_t n : {0, 1, 5, 1000}) {
            std::vector<int> hits(static_cast<std::size_t>(n), 0);
            std::mutex m;
            std::set<std::thread::id> seen;
            b.parallel_for_ranges(n, 1, [&](index_t begin, index_t end) {
                for (index_t i = begin; i < end; ++i) ++hits[i];
                std::lock_guard lock(m);
                seen.insert(std::this_thread::get_id());
            });
            CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
            CHECK(seen.size() <= static_cast<std::size_t>(threads));
        }
    }
    CHECK_THROWS_ID_AS(eigen_cpu(0), input_error, "E22");
}

TEST_CASE("thread_team: each part once per job, on its own thread, across sleeps, failures and concurrent callers", "[backend]") {
    using hashee::detail::thread_team;
    thread_team team(3);
    REQUIRE(team.size() == 4);
    // Many jobs back to back (the workers spin between them), of every width, then one after
    // the workers have gone to sleep.
    for (int round = 0; round < 2; ++round) {
        for (int job = 0; job < 2000; ++job) {
            const int parts = 1 + job % team.size();
            std::vector<std::atomic<int>> hits(static_cast<std::size_t>(parts));
            std::vector<std::thread::id> by(static_cast<std::size_t>(parts));
            auto f = [&](int p) {
                hits[static_cast<std::size_t>(p)].fetch_add(1);
                by[static_cast<std::size_t>(p)] = std::this_thread::get_id();
            };
            team.run(parts, f);
            for (int p = 0; p < parts; ++p) REQUIRE(hits[static_cast<std::size_t>(p)].load() == 1);
            REQUIRE(by[0] == std::this_thread::get_id());
            REQUIRE(std::set<std::thread::id>(by.begin(), by.end()).size() == static_cast<std::size_t>(parts));
        }
        std::this_thread::sleep_for(thread_team::spin_for * 10);
    }
    // A part that throws: the others still run, the job waits for them, the caller gets the
    // exception, and the team goes on working.
    for (int thrower : {0, 2}) {
        std::atomic<int> ran{0};
        auto f = [&](int p) {
            ran.fetch_add(1);
            if (p == thrower) throw std::runtime_error("part " + std::to_string(p));
        };
        CHECK_THROWS_WITH(team.run(4, f), "part " + std::to_string(thrower));
        CHECK(ran.load() == 4);
    }
    // Callers on two threads at once: a job that finds the team busy runs on its caller alone.
    std::atomic<long> total{0};
    auto caller = [&] {
        for (int job = 0; job < 500; ++job) {
            auto f = [&](int p) { total.fetch_add(p + 1); };
            team.run(4, f);
        }
    };
    std::thread other(caller);
    caller();
    other.join();
    CHECK(total.load() == 2 * 500 * (1 + 2 + 3 + 4));
}

#if HASHEE_HAS_DNNL && !defined(HASHEE_EIGEN_GEMM)
TEST_CASE("eigen_cpu's bf16 products: x and W rounded to bf16 (to nearest even), accumulated in fp32", "[backend]") {
    using hashee::detail::to_bf16;
    const auto from_bf16 = [](std::uint16_t h) {
        const std::uint32_t u = std::uint32_t{h} << 16;
        float f;
        std::memcpy(&f, &u, sizeof f);
        return double(f);
    };
    // Rounding: to nearest, ties to even; NaN stays NaN.
    CHECK(to_bf16(1.0f) == 0x3f80);
    CHECK(to_bf16(1.0f + 0x1p-8f) == 0x3f80);          // a tie, kept even
    CHECK(to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82);      // a tie, rounded up to even
    CHECK(to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81); // above the tie
    CHECK(std::isnan(from_bf16(to_bf16(std::nanf("")))));
    const int threads = GENERATE(1, 2);
    const eigen_cpu b(threads, gemm_precision::bf16);
    const auto [n, in, out] = GENERATE(table<index_t, index_t, index_t>({{1, 384, 384}, {17, 64, 48}, {64, 384, 1536}, {300, 1536, 384}}));
    const auto e = GENERATE(epilogue::none, epilogue::gelu);
    CAPTURE(threads, n, in, out, static_cast<int>(e));
    hashee::detail::random_source rng(static_cast<std::uint64_t>(n * 17 + in + out));
    const auto x = random_vector(n * in, rng), w = random_vector(out * in, rng, 0.1f), bias = random_vector(out, rng);
    std::vector<float> y(static_cast<std::size_t>(n * out));
    b.linear({x.data(), n, in}, b.prepare_weight({w.data(), out, in}), {bias.data(), out}, {y.data(), n, out}, e);
    double worst = 0, worst_fp32 = 0;
    for (index_t r = 0; r < n; ++r)
        for (index_t c = 0; c < out; ++c) {
            double acc = bias[c], exact = bias[c];
            for (index_t k = 0; k < in; ++k) {
                acc += from_bf16(to_bf16(x[r * in + k])) * from_bf16(to_bf16(w[c * in + k]));
                exact += double(x[r * in + k]) * w[c * in + k];
            }
            if (e == epilogue::gelu) acc = gelu_exact(acc), exact = gelu_exact(exact);
            worst = std::max(worst, std::abs(acc - y[r * out + c]) / (1.0 + std::abs(acc)));
            worst_fp32 = std::max(worst_fp32, std::abs(exact - y[r * out + c]) / (1.0 + std::abs(exact)));
        }
    CAPTURE(worst, worst_fp32);
    CHECK(worst < 2e-5);     // the product of the rounded inputs, to fp32 accumulation
    CHECK(worst_fp32 > 1e-4); // and not an fp32 product: the inputs were rounded
    // A plain W (not prepared) is an fp32 product whatever the backend's precision.
    std::vector<float> y32(y.size());
    b.linear({x.data(), n, in}, const_matrix_view<float>(w.data(), out, in), {bias.data(), out}, {y32.data(), n, out}, e);
    double worst_plain = 0;
    for (index_t r = 0; r < n; ++r)
        for (index_t c = 0; c < out; ++c) {
            double exact = bias[c];
            for (index_t k = 0; k < in; ++k) exact += double(x[r * in + k]) * w[c * in + k];
            if (e == epilogue::gelu) exact = gelu_exact(exact);
            worst_plain = std::max(worst_plain, std::abs(exact - y32[r * out + c]) / (1.0 + std::abs(exact)));
        }
    CHECK(worst_plain < 2e-5);
}

TEST_CASE("eigen_cpu's int8 products: W per output channel, x per row, exact int32 sums scaled back to fp32",
          "[backend]") {
    using hashee::detail::quantize_int8;
    // Quantization: symmetric, scale max|x| / 127, ties to even, an all-zero row has scale 1.
    {
        const std::vector<float> v = {1.27f, -0.635f, 0.005f, 0.015f, 0.0f};
        std::vector<std::int8_t> q(v.size());
        CHECK(quantize_int8(v.data(), 5, q.data()) == Approx(0.01f));
        CHECK(q == std::vector<std::int8_t>{127, -64, 0, 2, 0}); // -63.5 -> -64 and 0.5 -> 0 (even), 1.5 -> 2
        const std::vector<float> zero(4, 0.0f);
        CHECK(quantize_int8(zero.data(), 4, q.data()) == 1.0f);
        const std::vector<float> bad = {1.0f, std::nanf(""), 2.0f, INFINITY};
        CHECK(std::isnan(quantize_int8(bad.data(), 2, q.data()))); // a NaN row scales to NaN: its products are NaN
        CHECK(std::isnan(quantize_int8(bad.data() + 2, 2, q.data())));
        CHECK(quantize_int8(v.data(), 5, q.data(), 63) == Approx(1.27f / 63));
        CHECK(q == std::vector<std::int8_t>{63, -32, 0, 1, 0}); // -31.5 -> -32 (even), 0.744 -> 1
    }
    // Rows of whole and partial 16-value lanes: the integers std::nearbyint gives, and a NaN or
    // an infinity found wherever it sits.
    {
        hashee::detail::random_source rng(7);
        for (const std::size_t n : {std::size_t{16}, std::size_t{37}, std::size_t{391}}) {
            std::vector<float> x = random_vector(n, rng, 3.0f);
            std::vector<std::int8_t> q(n);
            const float scale = quantize_int8(x.data(), static_cast<index_t>(n), q.data());
            float amax = 0;
            for (const float f : x) amax = std::max(amax, std::abs(f));
            CHECK(scale == amax / 127.0f);
            std::size_t differ = 0;
            for (std::size_t i = 0; i < n; ++i)
                differ += q[i] != static_cast<std::int8_t>(std::nearbyint(std::clamp(x[i] * (1.0f / scale), -127.0f, 127.0f)));
            CHECK(differ == 0);
            for (const std::size_t at : {std::size_t{0}, n / 2, n - 1})
                for (const float bad_value : {std::nanf(""), -INFINITY}) {
                    std::vector<float> y = x;
                    y[at] = bad_value;
                    CHECK(std::isnan(quantize_int8(y.data(), static_cast<index_t>(n), q.data())));
                }
        }
    }
    CHECK((hashee::detail::int8_weight_levels() == 127 || hashee::detail::int8_weight_levels() == 63));
    const int threads = GENERATE(1, 2);
    const eigen_cpu b(threads, gemm_precision::int8);
    const auto [n, in, out] = GENERATE(table<index_t, index_t, index_t>({{1, 384, 384}, {17, 64, 48}, {64, 384, 1536}, {300, 1536, 384}}));
    const auto e = GENERATE(epilogue::none, epilogue::gelu, epilogue::tanh);
    CAPTURE(threads, n, in, out, static_cast<int>(e));
    hashee::detail::random_source rng(static_cast<std::uint64_t>(n * 31 + in + out));
    const auto x = random_vector(n * in, rng), w = random_vector(out * in, rng, 0.1f), bias = random_vector(out, rng);
    std::vector<float> y(static_cast<std::size_t>(n * out));
    const auto prepared = b.prepare_weight({w.data(), out, in});
    b.linear({x.data(), n, in}, prepared, {bias.data(), out}, {y.data(), n, out}, e);
    std::vector<std::int8_t> qx(static_cast<std::size_t>(n * in)), qw(static_cast<std::size_t>(out * in));
    std::vector<float> sx(static_cast<std::size_t>(n)), sw(static_cast<std::size_t>(out));
    for (index_t r = 0; r < n; ++r) sx[r] = quantize_int8(x.data() + r * in, in, qx.data() + r * in);
    // W to 8 bits where the CPU has VNNI, to 7 where it does not (its kernels' pairs would saturate).
    const int levels = hashee::detail::int8_weight_levels();
    CAPTURE(levels, b.product_kernel(n, in, out));
    for (index_t c = 0; c < out; ++c) sw[c] = quantize_int8(w.data() + c * in, in, qw.data() + c * in, levels);
    double worst = 0, worst_fp32 = 0;
    for (index_t r = 0; r < n; ++r)
        for (index_t c = 0; c < out; ++c) {
            std::int64_t sum = 0;
            double exact = bias[c];
            for (index_t k = 0; k < in; ++k) {
                sum += std::int64_t{qx[r * in + k]} * qw[c * in + k];
                exact += double(x[r * in + k]) * w[c * in + k];
            }
            double acc = double(sum) * sx[r] * sw[c] + bias[c];
            if (e == epilogue::gelu) acc = gelu_exact(acc), exact = gelu_exact(exact);
            if (e == epilogue::tanh) acc = std::tanh(acc), exact = std::tanh(exact);
            worst = std::max(worst, std::abs(acc - y[r * out + c]) / (1.0 + std::abs(acc)));
            worst_fp32 = std::max(worst_fp32, std::abs(exact - y[r * out + c]) / (1.0 + std::abs(exact)));
        }
    CAPTURE(worst, worst_fp32);
    CHECK(worst < 2e-6);      // the integer product, exactly summed, scaled back in fp32
    CHECK(worst_fp32 > 1e-4); // and not an fp32 product: the inputs were quantized
    CHECK(worst_fp32 < 0.25); // but near it (worst element: 0.16 at 1,536 inputs)
    // The integers and their scales are what is kept: a quarter of fp32's bytes, plus a scale per row of W.
    CHECK(b.weight_bytes(prepared) >= static_cast<std::size_t>(out * in) + out * sizeof(float));
    CHECK(b.weight_bytes(prepared) < static_cast<std::size_t>(out * in) * sizeof(float));
    CHECK_THAT(b.product_kernel(), Catch::Matchers::Contains("oneDNN"));
    // A row holding a NaN gives NaN outputs (in that row only), as an fp32 product does.
    auto x_nan = x;
    x_nan[0] = std::nanf("");
    b.linear({x_nan.data(), n, in}, prepared, {bias.data(), out}, {y.data(), n, out}, e);
    CHECK(std::all_of(y.begin(), y.begin() + out, [](float v) { return std::isnan(v); }));
    CHECK(std::none_of(y.begin() + out, y.end(), [](float v) { return std::isnan(v); }));
}

TEST_CASE("eigen_cpu's products on strided rows: the same bits as on contiguous ones, in every precision", "[backend]") {
    // oneDNN 2.6 runs strided rows some 2,000 times slower; the products stage them instead.
    const gemm_precision precision = GENERATE(gemm_precision::fp32, gemm_precision::bf16, gemm_precision::int8);
    CAPTURE(precision_name(precision));
    const eigen_cpu b(2, precision);
    const index_t n = 37, in = 64, out = 48, x_stride = 80, y_stride = 56;
    hashee::detail::random_source rng(11);
    const auto x = random_vector(n * x_stride, rng), w = random_vector(out * in, rng, 0.1f), bias = random_vector(out, rng);
    std::vector<float> packed_x(static_cast<std::size_t>(n * in));
    for (index_t r = 0; r < n; ++r) std::copy_n(x.begin() + r * x_stride, in, packed_x.begin() + r * in);
    const auto prepared = b.prepare_weight({w.data(), out, in});
    std::vector<float> y(static_cast<std::size_t>(n * out)), y_strided(static_cast<std::size_t>(n * y_stride), -7.0f);
    b.linear({packed_x.data(), n, in}, prepared, {bias.data(), out}, {y.data(), n, out}, epilogue::gelu);
    b.linear(const_matrix_view<float>(x.data(), n, in, x_stride), prepared, {bias.data(), out}, matrix_view<float>(y_strided.data(), n, out, y_stride),
             epilogue::gelu);
    for (index_t r = 0; r < n; ++r) {
        CHECK(std::equal(y.begin() + r * out, y.begin() + (r + 1) * out, y_strided.begin() + r * y_stride));
        CHECK(std::all_of(y_strided.begin() + r * y_stride + out, y_strided.begin() + (r + 1) * y_stride, [](float v) { return v == -7.0f; }));
    }
}

TEST_CASE("eigen_cpu's weight_rows: the same bits as the rows prepared alone, in every precision, sharing the bytes", "[backend]") {
    const gemm_precision precision = GENERATE(gemm_precision::fp32, gemm_precision::bf16, gemm_precision::int8);
    const int threads = GENERATE(1, 2);
    const index_t n = GENERATE(16, 37, 200), in = 384, d = 384;
    CAPTURE(precision_name(precision), threads, n);
    const eigen_cpu b(threads, precision);
    hashee::detail::random_source rng(17);
    const auto x = random_vector(n * in, rng), w = random_vector(3 * d * in, rng, 0.1f), bias = random_vector(3 * d, rng);
    const auto fused = b.prepare_weight({w.data(), 3 * d, in});
    const auto kv = b.weight_rows(fused, d, 2 * d);
    const auto alone = b.prepare_weight({w.data() + d * in, 2 * d, in});
    std::vector<float> y(static_cast<std::size_t>(n * 2 * d)), y_alone(y.size());
    b.linear({x.data(), n, in}, kv, {bias.data() + d, 2 * d}, {y.data(), n, 2 * d}, epilogue::gelu);
    b.linear({x.data(), n, in}, alone, {bias.data() + d, 2 * d}, {y_alone.data(), n, 2 * d}, epilogue::gelu);
    CHECK(y == y_alone);
    // Where oneDNN reads W^T plain (gemm:jit, the AVX2 kernels) a part is a view of the fused
    // bytes, never a copy; brgemm's blocked layouts share too where the output blocks are outermost.
    INFO(b.product_kernel(n, in, 3 * d) << ": a part holds " << b.weight_bytes(kv) << " bytes of its own");
    if (b.product_kernel(n, in, 3 * d).find("gemm:jit") != std::string::npos) CHECK(b.weight_bytes(kv) == 0);
    CHECK(b.weight_bytes(kv) <= b.weight_bytes(alone));
}

TEST_CASE("a failure oneDNN reports is a device_error naming the call", "[backend]") {
    CHECK_NOTHROW(hashee::detail::dnnl_check(dnnl_success, "dnnl_stream_wait"));
    CHECK_THROWS_ID_AS(hashee::detail::dnnl_check(dnnl_invalid_arguments, "dnnl_matmul_desc_init"), device_error, "E86");
    CHECK_THROWS_WITH(hashee::detail::dnnl_check(dnnl_out_of_memory, "dnnl_memory_create"),
                      Catch::Matchers::Contains("dnnl_memory_create"));
    // A product oneDNN cannot make: W^T's inner size at odds with x's.
    const hashee::detail::dnnl_products products;
    std::vector<float> x(16 * 4), w(3 * 5), y(16 * 3);
    CHECK_THROWS_ID_AS(products.linear({x.data(), 16, 4}, const_matrix_view<float>(w.data(), 3, 5), {}, {y.data(), 16, 3},
                                       epilogue::none),
                       device_error, "E86");
}
#endif
