// The training primitives (training_backend.hpp) over every backend: each backward against
// central finite differences in double of <R, y> for a random R (relative error of the whole
// gradient below 1e-6), the products against a plain reference, dropout's mask regenerated, and
// the float forward equal to the inference primitives.

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include <catch2/catch.hpp>

#include <hashee/backend/training_backend.hpp>
#include <hashee/core/detail/random.hpp>
#include <hashee/core/error.hpp>

#include "backends.hpp"

using namespace hashee;
using hashee::test::all_backends;
using hashee::test::to_device;
using hashee::test::to_host;

namespace {

using vec = std::vector<double>;

vec random_vec(std::size_t n, std::uint64_t seed, double scale = 1.0) {
    hashee::detail::random_source rng(seed);
    vec v(n);
    for (double& x : v) x = rng.normal(0.0, scale);
    return v;
}

double dot(const vec& a, const vec& b) {
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

/// ||analytic - central differences of loss over x|| / ||central differences||, h = 1e-6.
double fd_relative_error(vec& x, const vec& analytic, const std::function<double()>& loss) {
    REQUIRE(analytic.size() == x.size());
    const double h = 1e-6;
    double num = 0, den = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double keep = x[i];
        x[i] = keep + h;
        const double up = loss();
        x[i] = keep - h;
        const double down = loss();
        x[i] = keep;
        const double fd = (up - down) / (2 * h);
        num += (analytic[i] - fd) * (analytic[i] - fd);
        den += fd * fd;
    }
    return std::sqrt(num / std::max(den, 1e-300));
}

template <class B>
matrix_view<double> view(typename B::template buffer<double>& b, index_t rows, index_t cols) {
    return {b.data(), rows, cols};
}

} // namespace

TEMPLATE_LIST_TEST_CASE("training_ops: matmul computes op(A) op(B) + beta C in float and double", "[training]", all_backends) {
    const auto b = test::make_backend<TestType>(2);
    const auto [m, k, n] = GENERATE(table<index_t, index_t, index_t>({{1, 1, 1}, {5, 7, 3}, {130, 64, 200}, {3, 0, 4}}));
    const bool ta = GENERATE(false, true), tb = GENERATE(false, true);
    const double beta = GENERATE(0.0, 0.5);
    CAPTURE(m, k, n, ta, tb, beta);
    const vec a = random_vec(static_cast<std::size_t>(m * k), 1), bm = random_vec(static_cast<std::size_t>(k * n), 2),
              c0 = random_vec(static_cast<std::size_t>(m * n), 3);
    vec expect(static_cast<std::size_t>(m * n));
    for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n; ++j) {
            double s = 0;
            for (index_t t = 0; t < k; ++t) s += a[static_cast<std::size_t>(ta ? t * m + i : i * k + t)] * bm[static_cast<std::size_t>(tb ? j * k + t : t * n + j)];
            expect[static_cast<std::size_t>(i * n + j)] = s + beta * c0[static_cast<std::size_t>(i * n + j)];
        }
    const auto ad = to_device(b, a), bd = to_device(b, bm);
    auto cd = to_device(b, c0);
    b.matmul(const_matrix_view<double>(ad.data(), ta ? k : m, ta ? m : k), ta,
             const_matrix_view<double>(bd.data(), tb ? n : k, tb ? k : n), tb, view<TestType>(cd, m, n), beta);
    const vec got = to_host(b, cd, expect.size());
    for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == Approx(expect[i]).margin(1e-12));

    // float: the same product within float rounding
    std::vector<float> af(a.begin(), a.end()), bf(bm.begin(), bm.end()), cf(c0.begin(), c0.end());
    const auto afd = to_device(b, af), bfd = to_device(b, bf);
    auto cfd = to_device(b, cf);
    b.matmul(const_matrix_view<float>(afd.data(), ta ? k : m, ta ? m : k), ta,
             const_matrix_view<float>(bfd.data(), tb ? n : k, tb ? k : n), tb, matrix_view<float>(cfd.data(), m, n),
             static_cast<float>(beta));
    const auto gotf = to_host(b, cfd, expect.size());
    for (std::size_t i = 0; i < gotf.size(); ++i) REQUIRE(gotf[i] == Approx(expect[i]).margin(1e-4));

    CHECK_THROWS_ID_AS(b.matmul(const_matrix_view<double>(ad.data(), ta ? k : m, ta ? m : k), ta,
                                const_matrix_view<double>(bd.data(), tb ? n : k, tb ? k : n), tb,
                                matrix_view<double>(cd.data(), m, n - 1 > 0 ? n - 1 : n + 1), 0.0),
                       usage_error, "U43");
}

TEMPLATE_LIST_TEST_CASE("training_ops: linear layer backward (dX, dW, db through each epilogue) matches finite differences",
                        "[training]", all_backends) {
    const auto b = test::make_backend<TestType>(2);
    const epilogue e = GENERATE(epilogue::none, epilogue::gelu, epilogue::tanh);
    CAPTURE(static_cast<int>(e));
    const index_t rows = 5, in = 6, out = 4;
    vec x = random_vec(rows * in, 11), w = random_vec(out * in, 12, 0.7), bias = random_vec(out, 13);
    const vec r = random_vec(rows * out, 14);
    // forward: pre = x W^T + bias, y = e(pre); loss = <R, y>
    auto forward = [&](vec* pre_out) {
        const auto xd = to_device(b, x), wd = to_device(b, w), bd = to_device(b, bias);
        auto pre = b.template allocate<double>(rows * out);
        auto y = b.template allocate<double>(rows * out);
        b.matmul(const_matrix_view<double>(xd.data(), rows, in), false, const_matrix_view<double>(wd.data(), out, in), true,
                 view<TestType>(pre, rows, out), 0.0);
        b.add_bias_epilogue(view<TestType>(pre, rows, out), vector_view<const double>(bd.data(), out), e, view<TestType>(y, rows, out));
        if (pre_out) *pre_out = to_host(b, pre, static_cast<std::size_t>(rows * out));
        return dot(r, to_host(b, y, static_cast<std::size_t>(rows * out)));
    };
    vec pre;
    forward(&pre);
    // backward: dpre = R * e'(pre); dx = dpre W; dW = dpre^T x; db = column sums of dpre
    const auto pred = to_device(b, pre), xd = to_device(b, x), wd = to_device(b, w);
    auto dpre = to_device(b, r);
    b.epilogue_backward(const_matrix_view<double>(pred.data(), rows, out), view<TestType>(dpre, rows, out), e);
    auto dx = b.template allocate<double>(rows * in);
    auto dw = to_device(b, vec(out * in, 0.0));
    auto db = to_device(b, vec(out, 0.0));
    const const_matrix_view<double> dpv(dpre.data(), rows, out);
    b.matmul(dpv, false, const_matrix_view<double>(wd.data(), out, in), false, view<TestType>(dx, rows, in), 0.0);
    b.matmul(dpv, true, const_matrix_view<double>(xd.data(), rows, in), false, view<TestType>(dw, out, in), 1.0);
    b.add_column_sums(dpv, vector_view<double>(db.data(), out));
    const auto loss = [&] { return forward(nullptr); };
    CHECK(fd_relative_error(x, to_host(b, dx, static_cast<std::size_t>(rows * in)), loss) < 1e-6);
    CHECK(fd_relative_error(w, to_host(b, dw, static_cast<std::size_t>(out * in)), loss) < 1e-6);
    CHECK(fd_relative_error(bias, to_host(b, db, static_cast<std::size_t>(out)), loss) < 1e-6);
}

TEMPLATE_LIST_TEST_CASE("training_ops: LayerNorm backward matches finite differences", "[training]", all_backends) {
    const auto b = test::make_backend<TestType>(2);
    const double eps = GENERATE(1e-12, 1e-8);
    const index_t rows = 4, d = 7;
    vec x = random_vec(rows * d, 21, 2.0), gamma = random_vec(d, 22), beta = random_vec(d, 23);
    const vec r = random_vec(rows * d, 24);
    auto xhat = b.template allocate<double>(rows * d);
    auto rstd = b.template allocate<double>(rows);
    auto forward = [&] {
        const auto xd = to_device(b, x), gd = to_device(b, gamma), bd = to_device(b, beta);
        auto y = b.template allocate<double>(rows * d);
        b.layer_norm_train(const_matrix_view<double>(xd.data(), rows, d), vector_view<const double>(gd.data(), d),
                           vector_view<const double>(bd.data(), d), eps, view<TestType>(y, rows, d), view<TestType>(xhat, rows, d),
                           vector_view<double>(rstd.data(), rows));
        return dot(r, to_host(b, y, static_cast<std::size_t>(rows * d)));
    };
    forward();
    const auto rd = to_device(b, r), gd = to_device(b, gamma);
    auto dx = b.template allocate<double>(rows * d);
    auto dg = to_device(b, vec(d, 0.0)), dbeta = to_device(b, vec(d, 0.0));
    b.layer_norm_backward(const_matrix_view<double>(rd.data(), rows, d), const_matrix_view<double>(xhat.data(), rows, d),
                          vector_view<const double>(rstd.data(), rows), vector_view<const double>(gd.data(), d),
                          view<TestType>(dx, rows, d), vector_view<double>(dg.data(), d), vector_view<double>(dbeta.data(), d));
    const vec dxh = to_host(b, dx, rows * d), dgh = to_host(b, dg, d), dbh = to_host(b, dbeta, static_cast<std::size_t>(d));
    CHECK(fd_relative_error(x, dxh, forward) < 1e-6);
    CHECK(fd_relative_error(gamma, dgh, forward) < 1e-6);
    CHECK(fd_relative_error(beta, dbh, forward) < 1e-6);
}

TEMPLATE_LIST_TEST_CASE("training_ops: ragged attention backward (separate query and key offsets) matches finite differences",
                        "[training]", all_backends) {
    const auto b = test::make_backend<TestType>(2);
    // Without and with dropout on the probabilities (its mask regenerated by the backward).
    const double p = GENERATE(0.0, 0.3);
    CAPTURE(p);
    const hashee::detail::train_fn::attention_dropout drop{p, 77};
    // Sequences: 1 query over 1 key; 2 queries over 4 keys; no query over 3 keys (every token
    // exited: its keys still get no gradient); 3 queries over 3 keys.
    const std::vector<std::int32_t> q_off{0, 1, 3, 3, 6}, kv_off{0, 1, 5, 8, 11};
    const index_t nq = 6, nk = 11, heads = 2, d = 6;
    vec q = random_vec(nq * d, 31), k = random_vec(nk * d, 32), v = random_vec(nk * d, 33);
    const vec r = random_vec(nq * d, 34);
    const auto qo = to_device(b, q_off), ko = to_device(b, kv_off);
    const vector_view<const std::int32_t> qov(qo.data(), 5), kov(ko.data(), 5);
    auto out = b.template allocate<double>(nq * d);
    auto lse = b.template allocate<double>(nq * heads);
    auto forward = [&] {
        const auto qd = to_device(b, q), kd = to_device(b, k), vd = to_device(b, v);
        b.attention_train(const_matrix_view<double>(qd.data(), nq, d), const_matrix_view<double>(kd.data(), nk, d),
                          const_matrix_view<double>(vd.data(), nk, d), qov, kov, heads, view<TestType>(out, nq, d),
                          view<TestType>(lse, nq, heads), drop);
        return dot(r, to_host(b, out, static_cast<std::size_t>(nq * d)));
    };
    forward();
    const auto qd = to_device(b, q), kd = to_device(b, k), vd = to_device(b, v), rd = to_device(b, r);
    auto dq = b.template allocate<double>(nq * d);
    auto dk = b.template allocate<double>(nk * d);
    auto dv = b.template allocate<double>(nk * d);
    b.attention_backward(const_matrix_view<double>(qd.data(), nq, d), const_matrix_view<double>(kd.data(), nk, d),
                         const_matrix_view<double>(vd.data(), nk, d), const_matrix_view<double>(out.data(), nq, d),
                         const_matrix_view<double>(rd.data(), nq, d), const_matrix_view<double>(lse.data(), nq, heads), qov, kov,
                         heads, view<TestType>(dq, nq, d), view<TestType>(dk, nk, d), view<TestType>(dv, nk, d), drop);
    const vec dqh = to_host(b, dq, nq * d), dkh = to_host(b, dk, nk * d), dvh = to_host(b, dv, static_cast<std::size_t>(nk * d));
    CHECK(fd_relative_error(q, dqh, forward) < 1e-6);
    CHECK(fd_relative_error(k, dkh, forward) < 1e-6);
    CHECK(fd_relative_error(v, dvh, forward) < 1e-6);
    for (index_t i = 5 * d; i < 8 * d; ++i) CHECK(dkh[static_cast<std::size_t>(i)] == 0.0); // the sequence without queries
    if (p > 0) {
        // The mask drops: the output differs from attention without dropout.
        auto plain = b.template allocate<double>(nq * d);
        b.attention_train(const_matrix_view<double>(qd.data(), nq, d), const_matrix_view<double>(kd.data(), nk, d),
                          const_matrix_view<double>(vd.data(), nk, d), qov, kov, heads, view<TestType>(plain, nq, d),
                          view<TestType>(lse, nq, heads));
        CHECK(to_host(b, plain, static_cast<std::size_t>(nq * d)) != to_host(b, out, static_cast<std::size_t>(nq * d)));
        CHECK_THROWS_ID_AS(b.attention_train(const_matrix_view<double>(qd.data(), nq, d), const_matrix_view<double>(kd.data(), nk, d),
                                             const_matrix_view<double>(vd.data(), nk, d), qov, kov, heads, view<TestType>(plain, nq, d),
                                             view<TestType>(lse, nq, heads), {1.0, 0}),
                           usage_error, "U45");
        return;
    }

    // In float, attention_train's output is the inference primitive's.
    std::vector<float> qf(q.begin(), q.end()), kf(k.begin(), k.end()), vf(v.begin(), v.end());
    const auto qfd = to_device(b, qf), kfd = to_device(b, kf), vfd = to_device(b, vf);
    auto of = b.template allocate<float>(nq * d), oi = b.template allocate<float>(nq * d);
    auto lf = b.template allocate<float>(nq * heads);
    const const_matrix_view<float> qv(qfd.data(), nq, d), kv(kfd.data(), nk, d), vv(vfd.data(), nk, d);
    b.attention_train(qv, kv, vv, qov, kov, heads, matrix_view<float>(of.data(), nq, d), matrix_view<float>(lf.data(), nq, heads));
    b.attention(qv, kv, vv, qov, kov, heads, matrix_view<float>(oi.data(), nq, d));
    const auto a1 = to_host(b, of, nq * d), a2 = to_host(b, oi, static_cast<std::size_t>(nq * d));
    for (std::size_t i = 0; i < a1.size(); ++i) CHECK(a1[i] == Approx(a2[i]).margin(1e-5));
}

TEMPLATE_LIST_TEST_CASE("training_ops: embeddings with repeated ids, then LayerNorm, match finite differences", "[training]",
                        all_backends) {
    const auto b = test::make_backend<TestType>(2);
    const std::vector<std::int32_t> ids{2, 5, 5, 1, 5, 2}, types{0, 0, 1, 1, 0, 1}, pos{0, 1, 2, 0, 1, 2};
    const index_t rows = 6, d = 5, vocab = 7, positions = 4;
    vec word = random_vec(vocab * d, 41), position = random_vec(positions * d, 42), type = random_vec(2 * d, 43);
    const vec gamma = random_vec(d, 44), beta = random_vec(d, 45), r = random_vec(rows * d, 46);
    const auto idd = to_device(b, ids), td = to_device(b, types), pd = to_device(b, pos);
    const auto gd = to_device(b, gamma), bd = to_device(b, beta);
    const vector_view<const std::int32_t> iv(idd.data(), rows), tv(td.data(), rows), pv(pd.data(), rows);
    auto sum = b.template allocate<double>(rows * d);
    auto xhat = b.template allocate<double>(rows * d);
    auto rstd = b.template allocate<double>(rows);
    auto forward = [&] {
        const auto wd = to_device(b, word), posd = to_device(b, position), tyd = to_device(b, type);
        auto y = b.template allocate<double>(rows * d);
        b.embed_sum(iv, tv, pv, const_matrix_view<double>(wd.data(), vocab, d), const_matrix_view<double>(posd.data(), positions, d),
                    const_matrix_view<double>(tyd.data(), 2, d), view<TestType>(sum, rows, d));
        b.layer_norm_train(const_matrix_view<double>(sum.data(), rows, d), vector_view<const double>(gd.data(), d),
                           vector_view<const double>(bd.data(), d), 1e-12, view<TestType>(y, rows, d), view<TestType>(xhat, rows, d),
                           vector_view<double>(rstd.data(), rows));
        return dot(r, to_host(b, y, static_cast<std::size_t>(rows * d)));
    };
    forward();
    const auto rd = to_device(b, r);
    auto dsum = b.template allocate<double>(rows * d);
    auto dg = to_device(b, vec(d, 0.0)), dbeta = to_device(b, vec(d, 0.0));
    b.layer_norm_backward(const_matrix_view<double>(rd.data(), rows, d), const_matrix_view<double>(xhat.data(), rows, d),
                          vector_view<const double>(rstd.data(), rows), vector_view<const double>(gd.data(), d),
                          view<TestType>(dsum, rows, d), vector_view<double>(dg.data(), d), vector_view<double>(dbeta.data(), d));
    auto dw = to_device(b, vec(vocab * d, 0.0)), dp = to_device(b, vec(positions * d, 0.0)), dt = to_device(b, vec(2 * d, 0.0));
    b.embed_backward(const_matrix_view<double>(dsum.data(), rows, d), iv, tv, pv, view<TestType>(dw, vocab, d),
                     view<TestType>(dp, positions, d), view<TestType>(dt, 2, d));
    const vec dwh = to_host(b, dw, vocab * d), dph = to_host(b, dp, positions * d), dth = to_host(b, dt, static_cast<std::size_t>(2 * d));
    CHECK(fd_relative_error(word, dwh, forward) < 1e-6);
    CHECK(fd_relative_error(position, dph, forward) < 1e-6);
    CHECK(fd_relative_error(type, dth, forward) < 1e-6);
    for (index_t j = 0; j < d; ++j) CHECK(dwh[static_cast<std::size_t>(3 * d + j)] == 0.0); // an id no token has
}

TEMPLATE_LIST_TEST_CASE("training_ops: gather, scatter and scatter-add of rows in float and double", "[training]", all_backends) {
    const auto b = test::make_backend<TestType>(2);
    const std::vector<std::int32_t> rows{4, 0, 2};
    const vec x = random_vec(5 * 3, 51), y0 = random_vec(5 * 3, 52);
    const auto xd = to_device(b, x);
    const auto rd = to_device(b, rows);
    const vector_view<const std::int32_t> rv(rd.data(), 3);
    auto g = b.template allocate<double>(3 * 3);
    b.gather_rows(const_matrix_view<double>(xd.data(), 5, 3), rv, view<TestType>(g, 3, 3));
    auto y = to_device(b, y0);
    b.scatter_add_rows(const_matrix_view<double>(g.data(), 3, 3), rv, view<TestType>(y, 5, 3));
    const vec gh = to_host(b, g, 9), yh = to_host(b, y, 15);
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t c = 0; c < 3; ++c) {
            const auto src = static_cast<std::size_t>(rows[i]) * 3 + c;
            CHECK(gh[i * 3 + c] == x[src]);
            CHECK(yh[src] == y0[src] + x[src]);
        }
    for (std::size_t c = 0; c < 3; ++c) CHECK(yh[3 + c] == y0[3 + c]); // rows 1 and 3 untouched
    auto s = to_device(b, vec(15, 0.0));
    b.scatter_rows(const_matrix_view<double>(g.data(), 3, 3), rv, view<TestType>(s, 5, 3));
    const vec sh = to_host(b, s, 15);
    for (std::size_t i = 0; i < 15; ++i) CHECK(sh[i] == (i / 3 == 1 || i / 3 == 3 ? 0.0 : x[i]));
}

TEMPLATE_LIST_TEST_CASE("training_ops: dropout keeps 1 - p of the elements, scaled, and regenerates its mask", "[training]",
                        all_backends) {
    const auto b = test::make_backend<TestType>(2);
    const index_t rows = 64, cols = 100;
    const double p = 0.1;
    auto x = to_device(b, std::vector<float>(rows * cols, 1.0f));
    b.dropout(matrix_view<float>(x.data(), rows, cols), p, 42, 7);
    const auto xh = to_host(b, x, static_cast<std::size_t>(rows * cols));
    std::size_t kept = 0;
    for (float v : xh) {
        REQUIRE((v == 0.0f || v == Approx(1.0 / 0.9)));
        kept += v != 0.0f;
    }
    // 6,400 draws: the kept fraction within 4 standard deviations (0.015) of 0.9.
    CHECK(static_cast<double>(kept) / (rows * cols) == Approx(0.9).margin(0.015));
    // The same (seed, key) drops the same elements of the gradient (in double too); another key others.
    auto g = to_device(b, vec(rows * cols, 2.0));
    b.dropout(view<TestType>(g, rows, cols), p, 42, 7);
    const vec gh = to_host(b, g, static_cast<std::size_t>(rows * cols));
    for (std::size_t i = 0; i < gh.size(); ++i) REQUIRE((gh[i] == 0.0) == (xh[i] == 0.0f));
    auto o = to_device(b, std::vector<float>(rows * cols, 1.0f));
    b.dropout(matrix_view<float>(o.data(), rows, cols), p, 42, 8);
    CHECK(to_host(b, o, static_cast<std::size_t>(rows * cols)) != xh);
    b.dropout(matrix_view<float>(o.data(), rows, cols), 0.0, 42, 8); // p = 0: nothing changes
    CHECK_THROWS_ID_AS(b.dropout(matrix_view<float>(o.data(), rows, cols), 1.0, 42, 8), usage_error, "U45");
}

TEMPLATE_LIST_TEST_CASE("training_ops: views whose shapes do not fit are a usage error", "[training]", all_backends) {
    const auto b = test::make_backend<TestType>(1);
    auto m = to_device(b, vec(12, 0.0));
    auto v = to_device(b, vec(4, 0.0));
    CHECK_THROWS_ID_AS(b.add_column_sums(const_matrix_view<double>(m.data(), 4, 3), vector_view<double>(v.data(), 4)), usage_error,
                       "U44");
    CHECK_THROWS_ID_AS(b.add_scaled(view<TestType>(m, 4, 3), const_matrix_view<double>(m.data(), 3, 4), 1.0), usage_error, "U44");
    CHECK_THROWS_ID_AS(b.layer_norm_train(const_matrix_view<double>(m.data(), 4, 3), vector_view<const double>(v.data(), 3),
                                          vector_view<const double>(v.data(), 3), 1e-12, view<TestType>(m, 4, 3),
                                          view<TestType>(m, 4, 3), vector_view<double>(v.data(), 3)),
                       usage_error, "U44");
}
