#pragma once
// The per-item work of training (training_backend.hpp), one functor per primitive, templated on
// the element type T (float or double) and written once for every backend: eigen_cpu runs them
// on its thread team, thrust_backend through thrust::for_each on its system, the CUDA device
// included (HASHEE_HOST_DEVICE). Every sum runs in a fixed order inside one item, so results do
// not depend on scheduling: no atomics.

#include <cmath>
#include <cstdint>

#include <hashee/backend/adamw_update.hpp>
#include <hashee/backend/backend.hpp>
#include <hashee/backend/detail/thrust_functors.hpp>
#include <hashee/core/detail/random.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee::detail::train_fn {

// Math in T: the float functions for float, the double ones for double (host and device).
HASHEE_HOST_DEVICE inline float t_exp(float x) { return expf(x); }
HASHEE_HOST_DEVICE inline double t_exp(double x) { return exp(x); }
HASHEE_HOST_DEVICE inline float t_log(float x) { return logf(x); }
HASHEE_HOST_DEVICE inline double t_log(double x) { return log(x); }
HASHEE_HOST_DEVICE inline float t_erf(float x) { return erff(x); }
HASHEE_HOST_DEVICE inline double t_erf(double x) { return erf(x); }
HASHEE_HOST_DEVICE inline float t_tanh(float x) { return tanhf(x); }
HASHEE_HOST_DEVICE inline double t_tanh(double x) { return tanh(x); }
HASHEE_HOST_DEVICE inline float t_sqrt(float x) { return sqrtf(x); }
HASHEE_HOST_DEVICE inline double t_sqrt(double x) { return sqrt(x); }

/// The last s in [0, offsets.size - 1) with offsets[s] <= i: the sequence that row i of a
/// packed batch belongs to (empty sequences are skipped over).
HASHEE_HOST_DEVICE inline index_t sequence_of(vector_view<const std::int32_t> offsets, index_t i) {
    index_t lo = 0, hi = offsets.size - 1;
    while (hi - lo > 1) {
        const index_t mid = (lo + hi) / 2;
        (offsets.data[mid] <= i ? lo : hi) = mid;
    }
    return lo;
}

/// Element i (row-major): pre += bias, then out = epilogue(pre) (exact erf GELU or tanh).
template <class T>
struct add_bias_epilogue {
    matrix_view<T> pre;
    vector_view<const T> bias;
    epilogue e;
    matrix_view<T> out;
    HASHEE_HOST_DEVICE void operator()(index_t i) const {
        const index_t r = i / pre.cols, c = i % pre.cols;
        T& x = pre.row(r)[c];
        if (bias.size) x += bias.data[c];
        const T v = x;
        out.row(r)[c] = e == epilogue::gelu ? T(0.5) * v * (T(1) + t_erf(v * T(0.70710678118654752440)))
                        : e == epilogue::tanh ? t_tanh(v)
                                              : v;
    }
};

/// Element i: dy *= epilogue'(pre): GELU' = Phi(x) + x phi(x), tanh' = 1 - tanh(x)^2.
template <class T>
struct epilogue_backward {
    const_matrix_view<T> pre;
    matrix_view<T> dy;
    epilogue e;
    HASHEE_HOST_DEVICE void operator()(index_t i) const {
        const index_t r = i / dy.cols, c = i % dy.cols;
        const T x = pre.row(r)[c];
        T d = T(1);
        if (e == epilogue::gelu)
            d = T(0.5) * (T(1) + t_erf(x * T(0.70710678118654752440))) + x * T(0.39894228040143267794) * t_exp(T(-0.5) * x * x);
        else if (e == epilogue::tanh) {
            const T u = t_tanh(x);
            d = T(1) - u * u;
        }
        dy.row(r)[c] *= d;
    }
};

/// Column c: sums[c] += the sum of x's column c, rows in order.
template <class T>
struct add_column_sums {
    const_matrix_view<T> x;
    vector_view<T> sums;
    HASHEE_HOST_DEVICE void operator()(index_t c) const {
        T s = T(0);
        for (index_t r = 0; r < x.rows; ++r) s += x.row(r)[c];
        sums.data[c] += s;
    }
};

/// Element i: y += alpha x.
template <class T>
struct add_scaled {
    matrix_view<T> y;
    const_matrix_view<T> x;
    T alpha;
    HASHEE_HOST_DEVICE void operator()(index_t i) const {
        const index_t r = i / y.cols, c = i % y.cols;
        y.row(r)[c] += alpha * x.row(r)[c];
    }
};

/// Element i: y = value.
template <class T>
struct fill {
    matrix_view<T> y;
    T value;
    HASHEE_HOST_DEVICE void operator()(index_t i) const { y.row(i / y.cols)[i % y.cols] = value; }
};

/// Element i: y *= alpha (alpha 0: y = 0, whatever it held).
template <class T>
struct scale {
    matrix_view<T> y;
    T alpha;
    HASHEE_HOST_DEVICE void operator()(index_t i) const {
        T& v = y.row(i / y.cols)[i % y.cols];
        v = alpha == T(0) ? T(0) : v * alpha;
    }
};

/// Row r: y = xhat gamma + beta with xhat = (x - mean) rstd, rstd = 1 / sqrt(var + eps) (biased
/// variance); keeps xhat and rstd for the backward.
template <class T>
struct layer_norm_train_row {
    const_matrix_view<T> x;
    vector_view<const T> gamma, beta;
    T eps;
    matrix_view<T> y, xhat;
    vector_view<T> rstd;
    HASHEE_HOST_DEVICE void operator()(index_t r) const {
        const T* xr = x.row(r);
        const index_t n = x.cols;
        T mean = T(0);
        for (index_t j = 0; j < n; ++j) mean += xr[j];
        mean /= static_cast<T>(n);
        T var = T(0);
        for (index_t j = 0; j < n; ++j) var += (xr[j] - mean) * (xr[j] - mean);
        const T inv = T(1) / t_sqrt(var / static_cast<T>(n) + eps);
        rstd.data[r] = inv;
        T *yr = y.row(r), *hr = xhat.row(r);
        for (index_t j = 0; j < n; ++j) {
            const T h = (xr[j] - mean) * inv;
            hr[j] = h;
            yr[j] = h * gamma.data[j] + beta.data[j];
        }
    }
};

/// Row r of the LayerNorm backward: with g = dy gamma, dx = rstd (g - mean(g) - xhat mean(g xhat)).
template <class T>
struct layer_norm_backward_row {
    const_matrix_view<T> dy, xhat;
    vector_view<const T> rstd, gamma;
    matrix_view<T> dx;
    HASHEE_HOST_DEVICE void operator()(index_t r) const {
        const T *g = dy.row(r), *h = xhat.row(r);
        const index_t n = dy.cols;
        T mean_g = T(0), mean_gh = T(0);
        for (index_t j = 0; j < n; ++j) {
            const T gj = g[j] * gamma.data[j];
            mean_g += gj;
            mean_gh += gj * h[j];
        }
        mean_g /= static_cast<T>(n);
        mean_gh /= static_cast<T>(n);
        T* d = dx.row(r);
        const T inv = rstd.data[r];
        for (index_t j = 0; j < n; ++j) d[j] = inv * (g[j] * gamma.data[j] - mean_g - h[j] * mean_gh);
    }
};

/// Column c of the LayerNorm parameter gradients: dgamma[c] += sum_r dy xhat, dbeta[c] += sum_r dy.
template <class T>
struct layer_norm_parameter_grads {
    const_matrix_view<T> dy, xhat;
    vector_view<T> dgamma, dbeta;
    HASHEE_HOST_DEVICE void operator()(index_t c) const {
        T sg = T(0), sb = T(0);
        for (index_t r = 0; r < dy.rows; ++r) {
            sg += dy.row(r)[c] * xhat.row(r)[c];
            sb += dy.row(r)[c];
        }
        dgamma.data[c] += sg;
        dbeta.data[c] += sb;
    }
};

/// Whether inverted dropout with probability p keeps element `index` of a mask stream: its
/// uniform draw splitmix64(stream + index) >> 11 (53 bits) is at least p.
HASHEE_HOST_DEVICE inline bool dropout_keeps(std::uint64_t stream, std::uint64_t index, double p) {
    return static_cast<double>(splitmix64(stream + index) >> 11) * 0x1.0p-53 >= p;
}

/// Dropout on the attention probabilities (p = 0: none): the mask of (query row i, key row t,
/// head h) is element (i kv_rows + t) heads + h of the stream, so the forward and both backward
/// passes regenerate it; factor() is 0 or 1 / (1 - p).
struct attention_dropout {
    double p = 0;
    std::uint64_t stream = 0;
    template <class T>
    HASHEE_HOST_DEVICE T factor(index_t i, index_t t, index_t kv_rows, index_t h, index_t heads) const {
        if (p == 0) return T(1);
        const auto index = static_cast<std::uint64_t>((i * kv_rows + t) * heads + h);
        return dropout_keeps(stream, index, p) ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
    }
};

/// Item (query row i, head h) = i * heads + h: softmax(q_i K^T / sqrt(dh)) V over its sequence's
/// keys (online softmax), and lse[i, h] = the log of the softmax's denominator, max included
/// (-inf over no keys), from which the backward recomputes the probabilities.
template <class T>
struct attention_train_query {
    const_matrix_view<T> q, k, v;
    vector_view<const std::int32_t> q_offsets, kv_offsets;
    int heads;
    matrix_view<T> out, lse;
    attention_dropout drop;
    HASHEE_HOST_DEVICE void operator()(index_t item) const {
        const index_t i = item / heads, h = item % heads, dh = q.cols / heads, col = h * dh;
        const index_t s = sequence_of(q_offsets, i), k0 = kv_offsets.data[s], k1 = kv_offsets.data[s + 1];
        const T scale = T(1) / t_sqrt(static_cast<T>(dh));
        const T* qi = q.row(i) + col;
        T acc[thrust_fn::max_head_dim];
        for (index_t j = 0; j < dh; ++j) acc[j] = T(0);
        T m = -static_cast<T>(INFINITY), l = T(0);
        for (index_t t = k0; t < k1; ++t) {
            const T* kt = k.row(t) + col;
            T dot = T(0);
            for (index_t j = 0; j < dh; ++j) dot += qi[j] * kt[j];
            dot *= scale;
            const T m_new = dot > m ? dot : m, correction = t_exp(m - m_new), p = t_exp(dot - m_new);
            l = l * correction + p;
            const T* vt = v.row(t) + col;
            const T pv = p * drop.factor<T>(i, t, k.rows, h, heads); // the denominator takes p, the sum the dropped p
            for (index_t j = 0; j < dh; ++j) acc[j] = acc[j] * correction + pv * vt[j];
            m = m_new;
        }
        T* o = out.row(i) + col;
        for (index_t j = 0; j < dh; ++j) o[j] = l > T(0) ? acc[j] / l : T(0);
        lse.row(i)[h] = l > T(0) ? m + t_log(l) : -static_cast<T>(INFINITY);
    }
};

/// The probability P_it = exp(q_i . k_t scale - lse_i) of one (query, key) pair of one head.
template <class T>
HASHEE_HOST_DEVICE inline T attention_probability(const T* qi, const T* kt, index_t dh, T scale, T lse) {
    T dot = T(0);
    for (index_t j = 0; j < dh; ++j) dot += qi[j] * kt[j];
    return t_exp(dot * scale - lse);
}

/// Item (query row i, head h): delta[i, h] = dout_i . out_i (the rowsum of dP * P), then
/// dq_i = scale sum_t P_it (dout_i . v_t - delta) k_t.
template <class T>
struct attention_backward_query {
    const_matrix_view<T> q, k, v, out, dout, lse;
    vector_view<const std::int32_t> q_offsets, kv_offsets;
    int heads;
    matrix_view<T> delta, dq;
    attention_dropout drop;
    HASHEE_HOST_DEVICE void operator()(index_t item) const {
        const index_t i = item / heads, h = item % heads, dh = q.cols / heads, col = h * dh;
        const index_t s = sequence_of(q_offsets, i), k0 = kv_offsets.data[s], k1 = kv_offsets.data[s + 1];
        const T scale = T(1) / t_sqrt(static_cast<T>(dh));
        const T *qi = q.row(i) + col, *gi = dout.row(i) + col, *oi = out.row(i) + col;
        T d = T(0);
        for (index_t j = 0; j < dh; ++j) d += gi[j] * oi[j];
        delta.row(i)[h] = d;
        T acc[thrust_fn::max_head_dim];
        for (index_t j = 0; j < dh; ++j) acc[j] = T(0);
        for (index_t t = k0; t < k1; ++t) {
            const T *kt = k.row(t) + col, *vt = v.row(t) + col;
            const T p = attention_probability(qi, kt, dh, scale, lse.row(i)[h]);
            T dp = T(0);
            for (index_t j = 0; j < dh; ++j) dp += gi[j] * vt[j];
            const T ds = p * (drop.factor<T>(i, t, k.rows, h, heads) * dp - d) * scale;
            for (index_t j = 0; j < dh; ++j) acc[j] += ds * kt[j];
        }
        T* o = dq.row(i) + col;
        for (index_t j = 0; j < dh; ++j) o[j] = acc[j];
    }
};

/// Item (key row t, head h): dv_t = sum_i P_it dout_i and dk_t = scale sum_i P_it (dout_i . v_t -
/// delta_i) q_i over the queries of t's sequence (delta: attention_backward_query's).
template <class T>
struct attention_backward_key {
    const_matrix_view<T> q, k, v, dout, lse, delta;
    vector_view<const std::int32_t> q_offsets, kv_offsets;
    int heads;
    matrix_view<T> dk, dv;
    attention_dropout drop;
    HASHEE_HOST_DEVICE void operator()(index_t item) const {
        const index_t t = item / heads, h = item % heads, dh = k.cols / heads, col = h * dh;
        const index_t s = sequence_of(kv_offsets, t), q0 = q_offsets.data[s], q1 = q_offsets.data[s + 1];
        const T scale = T(1) / t_sqrt(static_cast<T>(dh));
        const T *kt = k.row(t) + col, *vt = v.row(t) + col;
        T acc_k[thrust_fn::max_head_dim], acc_v[thrust_fn::max_head_dim];
        for (index_t j = 0; j < dh; ++j) acc_k[j] = acc_v[j] = T(0);
        for (index_t i = q0; i < q1; ++i) {
            const T *qi = q.row(i) + col, *gi = dout.row(i) + col;
            const T p = attention_probability(qi, kt, dh, scale, lse.row(i)[h]);
            T dp = T(0);
            for (index_t j = 0; j < dh; ++j) dp += gi[j] * vt[j];
            const T f = drop.factor<T>(i, t, k.rows, h, heads);
            const T ds = p * (f * dp - delta.row(i)[h]) * scale;
            for (index_t j = 0; j < dh; ++j) {
                acc_v[j] += p * f * gi[j];
                acc_k[j] += ds * qi[j];
            }
        }
        T *ok = dk.row(t) + col, *ov = dv.row(t) + col;
        for (index_t j = 0; j < dh; ++j) {
            ok[j] = acc_k[j];
            ov[j] = acc_v[j];
        }
    }
};

/// Element i (row-major over the listed rows): y[rows[r]] += x[r] (the rows are distinct).
template <class T>
struct scatter_add_rows {
    const_matrix_view<T> x;
    vector_view<const std::int32_t> rows;
    matrix_view<T> y;
    HASHEE_HOST_DEVICE void operator()(index_t i) const {
        const index_t r = i / x.cols, c = i % x.cols;
        y.row(rows.data[r])[c] += x.row(r)[c];
    }
};

/// Element i: out = word[ids] + position[positions] + token_type[type_ids], row by row.
template <class T>
struct embed_sum {
    vector_view<const std::int32_t> ids, type_ids, positions;
    const_matrix_view<T> word, position, token_type;
    matrix_view<T> out;
    HASHEE_HOST_DEVICE void operator()(index_t i) const {
        const index_t r = i / out.cols, c = i % out.cols;
        out.row(r)[c] = word.row(ids.data[r])[c] + position.row(positions.data[r])[c] + token_type.row(type_ids.data[r])[c];
    }
};

/// Column c of the embedding gradients: each table's row of each token += dout's row, the
/// tokens in order (repeated ids sum in the same order on every run).
template <class T>
struct embed_backward_column {
    const_matrix_view<T> dout;
    vector_view<const std::int32_t> ids, type_ids, positions;
    matrix_view<T> dword, dposition, dtoken_type;
    HASHEE_HOST_DEVICE void operator()(index_t c) const {
        for (index_t r = 0; r < dout.rows; ++r) {
            const T g = dout.row(r)[c];
            dword.row(ids.data[r])[c] += g;
            dposition.row(positions.data[r])[c] += g;
            dtoken_type.row(type_ids.data[r])[c] += g;
        }
    }
};

/// Element i = r * cols + c: inverted dropout, x *= keep / (1 - p), element i kept when the
/// uniform draw splitmix64(stream) >> 11 of (seed, key, i) is at least p. The mask is a pure
/// function of (seed, key, i), so the backward regenerates it by the same call on dy.
template <class T>
struct dropout {
    matrix_view<T> x;
    double p;
    std::uint64_t stream;
    HASHEE_HOST_DEVICE void operator()(index_t i) const {
        T& v = x.row(i / x.cols)[i % x.cols];
        v = dropout_keeps(stream, static_cast<std::uint64_t>(i), p) ? v * static_cast<T>(1.0 / (1.0 - p)) : T(0);
    }
};

/// Element i of a parameter: its AdamW update with its gradient and moments.
template <class T>
struct adamw_update {
    matrix_view<T> theta;
    const_matrix_view<T> grad;
    matrix_view<T> m, v;
    hashee::adamw_scalars s;
    HASHEE_HOST_DEVICE void operator()(index_t i) const {
        const index_t r = i / theta.cols, c = i % theta.cols;
        hashee::adamw_apply(theta.row(r)[c], grad.row(r)[c], m.row(r)[c], v.row(r)[c], s);
    }
};

/// Row r: sums[r] = the sum of x's squares in double, left to right.
template <class T>
struct row_squares {
    const_matrix_view<T> x;
    double* sums;
    HASHEE_HOST_DEVICE void operator()(index_t r) const {
        double sum = 0;
        for (index_t c = 0; c < x.cols; ++c) sum += static_cast<double>(x.row(r)[c]) * static_cast<double>(x.row(r)[c]);
        sums[r] = sum;
    }
};

} // namespace hashee::detail::train_fn
