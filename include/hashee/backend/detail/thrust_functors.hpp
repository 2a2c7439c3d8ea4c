#pragma once
// The per-item work of the Thrust backend, one functor per primitive, written once for every
// Thrust system: __host__ __device__ under nvcc, plain host code under g++. The CPU systems
// run them through thrust::for_each on OpenMP's threads or serially, so every suite tests them;
// the CUDA system runs the very same functors through thrust::for_each on the device.
// (Raw pointers throughout: no thrust::pointer dereferences, which UBSan flags inside Thrust.)

#include <cmath>
#include <cstdint>

#include <hashee/backend/backend.hpp>
#include <hashee/core/matrix_view.hpp>

#if defined(__CUDACC__)
#define HASHEE_HOST_DEVICE __host__ __device__
#else
#define HASHEE_HOST_DEVICE
#endif

namespace hashee::detail::thrust_fn {

/// The widest attention head the attention functor holds in its accumulator.
inline constexpr index_t max_head_dim = 128;

/// LayerNorm of one row in place: (y - mean) / sqrt(var + eps) * gamma + beta (biased variance).
HASHEE_HOST_DEVICE inline void layer_norm(float* y, const float* gamma, const float* beta, index_t n, float eps) {
    float mean = 0.0f;
    for (index_t j = 0; j < n; ++j) mean += y[j];
    mean /= static_cast<float>(n);
    float var = 0.0f;
    for (index_t j = 0; j < n; ++j) var += (y[j] - mean) * (y[j] - mean);
    const float inv = 1.0f / sqrtf(var / static_cast<float>(n) + eps);
    for (index_t j = 0; j < n; ++j) y[j] = (y[j] - mean) * inv * gamma[j] + beta[j];
}

/// Row r: word + position + token type embeddings, then LayerNorm.
struct embed_row {
    vector_view<const std::int32_t> ids, type_ids, positions;
    const_matrix_view<float> word, position, token_type;
    vector_view<const float> gamma, beta;
    float eps;
    matrix_view<float> out;
    HASHEE_HOST_DEVICE void operator()(index_t r) const {
        float* y = out.row(r);
        const float* a = word.row(ids.data[r]);
        const float* b = position.row(positions.data[r]);
        const float* c = token_type.row(type_ids.data[r]);
        for (index_t j = 0; j < out.cols; ++j) y[j] = a[j] + b[j] + c[j];
        layer_norm(y, gamma.data, beta.data, out.cols, eps);
    }
};

/// Row r: y = LayerNorm(y + residual).
struct add_layer_norm_row {
    matrix_view<float> y;
    const_matrix_view<float> residual;
    vector_view<const float> gamma, beta;
    float eps;
    HASHEE_HOST_DEVICE void operator()(index_t r) const {
        float* yr = y.row(r);
        const float* xr = residual.row(r);
        for (index_t j = 0; j < y.cols; ++j) yr[j] += xr[j];
        layer_norm(yr, gamma.data, beta.data, y.cols, eps);
    }
};

/// Element i (row-major) of y: += bias, then the epilogue (exact erf GELU, or tanh).
struct bias_epilogue {
    matrix_view<float> y;
    vector_view<const float> bias;
    epilogue e;
    HASHEE_HOST_DEVICE void operator()(index_t i) const {
        const index_t c = i % y.cols;
        float& v = y.row(i / y.cols)[c];
        if (bias.size) v += bias.data[c];
        if (e == epilogue::gelu) v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        else if (e == epilogue::tanh) v = tanhf(v);
    }
};

/// Element i (row-major over the listed rows): y[i] = x[rows[i]] (gather) or y[rows[i]] = x[i]
/// (scatter).
template <bool Scatter, class T = float>
struct move_rows {
    const_matrix_view<T> x;
    vector_view<const std::int32_t> rows;
    matrix_view<T> y;
    HASHEE_HOST_DEVICE void operator()(index_t i) const {
        const index_t r = i / x.cols, c = i % x.cols;
        if (Scatter) y.row(rows.data[r])[c] = x.row(r)[c];
        else y.row(r)[c] = x.row(rows.data[r])[c];
    }
};

/// Item (query row i, head h) = i * heads + h: softmax(q_i K^T / sqrt(dh)) V over its
/// sequence's keys, by an online softmax (one pass, the running maximum rescaling the sum).
struct attention_query {
    const_matrix_view<float> q, k, v;
    vector_view<const std::int32_t> q_offsets, kv_offsets;
    int heads;
    matrix_view<float> out;
    HASHEE_HOST_DEVICE void operator()(index_t item) const {
        const index_t i = item / heads, dh = q.cols / heads, col = (item % heads) * dh;
        // The sequence of query row i: the last s with q_offsets[s] <= i (binary search).
        index_t lo = 0, hi = q_offsets.size - 1;
        while (hi - lo > 1) {
            const index_t mid = (lo + hi) / 2;
            (q_offsets.data[mid] <= i ? lo : hi) = mid;
        }
        const index_t k0 = kv_offsets.data[lo], k1 = kv_offsets.data[lo + 1];
        const float scale = 1.0f / sqrtf(static_cast<float>(dh));
        const float* qi = q.row(i) + col;
        float acc[max_head_dim];
        for (index_t j = 0; j < dh; ++j) acc[j] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        for (index_t t = k0; t < k1; ++t) {
            const float* kt = k.row(t) + col;
            float s = 0.0f;
            for (index_t j = 0; j < dh; ++j) s += qi[j] * kt[j];
            s *= scale;
            const float m_new = fmaxf(m, s), correction = expf(m - m_new), p = expf(s - m_new);
            l = l * correction + p;
            const float* vt = v.row(t) + col;
            for (index_t j = 0; j < dh; ++j) acc[j] = acc[j] * correction + p * vt[j];
            m = m_new;
        }
        float* o = out.row(i) + col;
        for (index_t j = 0; j < dh; ++j) o[j] = l > 0.0f ? acc[j] / l : 0.0f;
    }
};

/// flags[t] = 1 when row t is still active at `layer` (exit layer >= layer), else 0.
struct flag_active {
    const std::int32_t* exit_layers;
    int layer;
    std::int32_t* flags;
    HASHEE_HOST_DEVICE void operator()(index_t t) const { flags[t] = exit_layers[t] >= layer ? 1 : 0; }
};

/// rows[positions[t]] = t for every flagged t (positions: the exclusive scan of the flags).
struct scatter_active {
    const std::int32_t *flags, *positions;
    std::int32_t* rows;
    HASHEE_HOST_DEVICE void operator()(index_t t) const {
        if (flags[t]) rows[positions[t]] = static_cast<std::int32_t>(t);
    }
};

} // namespace hashee::detail::thrust_fn
