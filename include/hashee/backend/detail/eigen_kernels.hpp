#pragma once
// The kernels behind eigen_cpu: per-row LayerNorm, GELU, a column block of a linear layer
// (its product by Eigen: the products where hashee is built without oneDNN), one attention
// head of one sequence. Plain functions over views; the backend does the
// threading. (The shape checks are in detail/checks.hpp, which needs no Eigen.)

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <hashee/core/detail/eigen.hpp>

#include <hashee/backend/backend.hpp>
#include <hashee/backend/detail/checks.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee::detail {

/// Below this many multiply-accumulates a product runs on one thread.
inline constexpr index_t min_parallel_macs = index_t{1} << 16;

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using col_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using stride_t = Eigen::OuterStride<>;

inline auto map(const_matrix_view<float> m) { return Eigen::Map<const row_major, 0, stride_t>(m.data, m.rows, m.cols, stride_t(m.stride)); }
inline auto map(matrix_view<float> m) { return Eigen::Map<row_major, 0, stride_t>(m.data, m.rows, m.cols, stride_t(m.stride)); }

/// LayerNorm of one row in place: (y - mean) / sqrt(var + eps) * gamma + beta (biased variance).
inline void layer_norm_row(float* y, const float* gamma, const float* beta, index_t n, float eps) {
    Eigen::Map<Eigen::ArrayXf> r(y, n);
    const float mean = r.mean();
    r -= mean;
    const float inv = 1.0f / std::sqrt(r.square().mean() + eps);
    r = r * inv * Eigen::Map<const Eigen::ArrayXf>(gamma, n) + Eigen::Map<const Eigen::ArrayXf>(beta, n);
}

/// Row r of the embeddings: word + position + token type, then LayerNorm.
inline void embed_row(index_t r, vector_view<const std::int32_t> ids, vector_view<const std::int32_t> type_ids,
                      vector_view<const std::int32_t> positions, const_matrix_view<float> word,
                      const_matrix_view<float> position, const_matrix_view<float> token_type,
                      vector_view<const float> gamma, vector_view<const float> beta, float eps, matrix_view<float> out) {
    float* y = out.row(r);
    const float* a = word.row(ids.data[r]);
    const float* b = position.row(positions.data[r]);
    const float* c = token_type.row(type_ids.data[r]);
    for (index_t j = 0; j < out.cols; ++j) y[j] = a[j] + b[j] + c[j];
    layer_norm_row(y, gamma.data, beta.data, out.cols, eps);
}

/// Row r of y = LayerNorm(y + residual).
inline void add_layer_norm_row(index_t r, matrix_view<float> y, const_matrix_view<float> residual,
                               vector_view<const float> gamma, vector_view<const float> beta, float eps) {
    float* yr = y.row(r);
    const float* xr = residual.row(r);
    for (index_t j = 0; j < y.cols; ++j) yr[j] += xr[j];
    layer_norm_row(yr, gamma.data, beta.data, y.cols, eps);
}

/// erf on an Eigen array expression: Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), built from
/// Eigen's vectorised exp so it runs at packet speed; the sign is restored afterwards.
template <class A>
inline auto erf_abs_approx(const A& z) {
    constexpr float p = 0.3275911f, a1 = 0.254829592f, a2 = -0.284496736f, a3 = 1.421413741f, a4 = -1.453152027f,
                    a5 = 1.061405429f;
    const auto t = (1.0f + p * z).inverse();
    return 1.0f - t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5)))) * (-z.square()).exp();
}

/// GELU with the exact erf form: 0.5 x (1 + erf(x / sqrt 2)).
inline void gelu_inplace(float* p, index_t n) {
    constexpr int chunk = 64;
    constexpr float inv_sqrt2 = 0.70710678118654752f;
    using fixed = Eigen::Array<float, chunk, 1>;
    index_t i = 0;
    for (; i + chunk <= n; i += chunk) {
        Eigen::Map<fixed> x(p + i);
        const fixed z = x.abs() * inv_sqrt2;
        const fixed e = erf_abs_approx(z);
        x = 0.5f * x * (1.0f + x.sign() * e);
    }
    if (i < n) {
        Eigen::Map<Eigen::ArrayXf> x(p + i, n - i);
        const Eigen::ArrayXf z = x.abs() * inv_sqrt2;
        const Eigen::ArrayXf e = erf_abs_approx(z);
        x = 0.5f * x * (1.0f + x.sign() * e);
    }
}

/// The epilogue over n values in place: GELU (gelu_inplace), tanh (Eigen's vectorised one) or nothing.
inline void apply_epilogue(float* p, index_t n, epilogue e) {
    if (e == epilogue::gelu) gelu_inplace(p, n);
    else if (e == epilogue::tanh) Eigen::Map<Eigen::ArrayXf>(p, n) = Eigen::Map<Eigen::ArrayXf>(p, n).tanh();
}

/// How a CPU backend splits y = x W^T over `workers` into tiles, one tile per task. Many rows:
/// blocks of at most `max_tile_rows` rows, a multiple of `workers` of them, so each worker takes
/// whole blocks and a block's output is still in cache when its epilogue runs and the next
/// product reads it. Few rows: one block, its output columns split in ranges of a multiple of
/// 16, one range per worker (each reads only its part of W). A small product is one tile.
struct linear_tiles {
    static constexpr index_t max_tile_rows = 256, min_tile_rows = 64;
    index_t row_blocks = 1, rows_per, col_chunks = 1, cols_per;

    linear_tiles(const_matrix_view<float> x, const_matrix_view<float> w, index_t workers)
        : rows_per(x.rows), cols_per(w.rows) {
        if (x.rows * w.rows * w.cols < min_parallel_macs || workers <= 1) return;
        if (x.rows >= workers * min_tile_rows) {
            row_blocks = ((x.rows + max_tile_rows - 1) / max_tile_rows + workers - 1) / workers * workers;
            rows_per = (x.rows + row_blocks - 1) / row_blocks;
        } else {
            col_chunks = std::min<index_t>(workers, (w.rows + 15) / 16);
            cols_per = ((w.rows + col_chunks - 1) / col_chunks + 15) / 16 * 16;
        }
    }
    index_t count() const { return row_blocks * col_chunks; }

    /// Tile t of y = x W^T + bias, then the epilogue (empty tiles at the ends do nothing).
    void run(index_t t, const_matrix_view<float> x, const_matrix_view<float> w, vector_view<const float> bias,
             matrix_view<float> y, epilogue e) const;
};

/// Columns [c0, c1) of y = x W^T + bias, then the epilogue.
inline void linear_columns(const_matrix_view<float> x, const_matrix_view<float> w, vector_view<const float> bias,
                           matrix_view<float> y, epilogue e, index_t c0, index_t c1) {
    const index_t cols = c1 - c0;
    // Rows c0..c1 of W, read as a column-major [in, cols] matrix: that is W^T's column block.
    Eigen::Map<const col_major, 0, stride_t> wt(w.row(c0), w.cols, cols, stride_t(w.stride));
    auto out = map(y.block_cols(c0, cols));
    out.noalias() = map(x) * wt;
    for (index_t r = 0; r < y.rows; ++r) {
        float* row = y.row(r) + c0;
        if (bias.size) Eigen::Map<Eigen::ArrayXf>(row, cols) += Eigen::Map<const Eigen::ArrayXf>(bias.data + c0, cols);
        apply_epilogue(row, cols, e);
    }
}

/// Eigen's version and the SIMD instruction sets it was compiled for (it does the row-wise work
/// and attention, and the products where oneDNN does not).
inline std::string eigen_simd_name() {
    return "Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
           std::to_string(EIGEN_MINOR_VERSION) + ", " + Eigen::SimdInstructionSetsInUse();
}

/// One thread's room for attention heads: a head's K^T, its key columns padded to whole
/// register pairs, and the scores. Grown as needed, reused over the thread's heads.
struct attention_scratch {
    std::vector<float, Eigen::aligned_allocator<float>> keys_t, scores;
};

/// The register-blocked kernels of attention_head, on Eigen's SIMD packets (AVX-512: 16 floats,
/// AVX2: 8, SSE: 4): blocks of up to four query rows, two packets of columns at a time, every
/// accumulator in a register.
namespace attention_blocks {

using packet = Eigen::internal::packet_traits<float>::type;
inline constexpr index_t lanes = Eigen::internal::packet_traits<float>::size;
inline constexpr index_t max_rows = 4;

/// Scores of `R` query rows (q, row stride q_stride) against every key: s[r][j] = q_r . k_j,
/// for j < keys (a multiple of 2 lanes; K^T's padding columns are zero).
template <int R>
void scores(const float* q, index_t q_stride, const float* keys_t, index_t keys, index_t dh, float* s) {
    using namespace Eigen::internal;
    for (index_t j = 0; j < keys; j += 2 * lanes) {
        packet acc[R][2];
        for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = pset1<packet>(0.0f);
        for (index_t c = 0; c < dh; ++c) {
            const packet k0 = pload<packet>(keys_t + c * keys + j), k1 = pload<packet>(keys_t + c * keys + j + lanes);
            for (int r = 0; r < R; ++r) {
                const packet a = pset1<packet>(q[r * q_stride + c]);
                acc[r][0] = pmadd(a, k0, acc[r][0]);
                acc[r][1] = pmadd(a, k1, acc[r][1]);
            }
        }
        for (int r = 0; r < R; ++r) {
            pstore(s + r * keys + j, acc[r][0]);
            pstore(s + r * keys + j + lanes, acc[r][1]);
        }
    }
}

/// out[r][c] = sum_j p[r][j] v[j][c] for `R` rows (p: row stride p_stride; v and out: row
/// strides of their own), c < dh: two packets at a time, then one, then single lanes.
template <int R>
void weighted_values(const float* p, index_t p_stride, index_t keys, const float* v, index_t v_stride, index_t dh,
                     float* out, index_t out_stride) {
    using namespace Eigen::internal;
    index_t c = 0;
    for (; c + 2 * lanes <= dh; c += 2 * lanes) {
        packet acc[R][2];
        for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = pset1<packet>(0.0f);
        for (index_t j = 0; j < keys; ++j) {
            const packet v0 = ploadu<packet>(v + j * v_stride + c), v1 = ploadu<packet>(v + j * v_stride + c + lanes);
            for (int r = 0; r < R; ++r) {
                const packet a = pset1<packet>(p[r * p_stride + j]);
                acc[r][0] = pmadd(a, v0, acc[r][0]);
                acc[r][1] = pmadd(a, v1, acc[r][1]);
            }
        }
        for (int r = 0; r < R; ++r) {
            pstoreu(out + r * out_stride + c, acc[r][0]);
            pstoreu(out + r * out_stride + c + lanes, acc[r][1]);
        }
    }
    for (; c + lanes <= dh; c += lanes) {
        packet acc[R];
        for (int r = 0; r < R; ++r) acc[r] = pset1<packet>(0.0f);
        for (index_t j = 0; j < keys; ++j) {
            const packet v0 = ploadu<packet>(v + j * v_stride + c);
            for (int r = 0; r < R; ++r) acc[r] = pmadd(pset1<packet>(p[r * p_stride + j]), v0, acc[r]);
        }
        for (int r = 0; r < R; ++r) pstoreu(out + r * out_stride + c, acc[r]);
    }
    for (; c < dh; ++c)
        for (int r = 0; r < R; ++r) {
            float acc = 0;
            for (index_t j = 0; j < keys; ++j) acc += p[r * p_stride + j] * v[j * v_stride + c];
            out[r * out_stride + c] = acc;
        }
}

/// f<R>(row) for the query rows [0, rows) in blocks of max_rows, the last block shorter.
template <class F>
void by_row_blocks(index_t rows, F&& f) {
    index_t r = 0;
    for (; r + max_rows <= rows; r += max_rows) f(std::integral_constant<int, max_rows>{}, r);
    switch (rows - r) {
    case 3: f(std::integral_constant<int, 3>{}, r); break;
    case 2: f(std::integral_constant<int, 2>{}, r); break;
    case 1: f(std::integral_constant<int, 1>{}, r); break;
    default: break;
    }
}

} // namespace attention_blocks

/// softmax(Q K^T / sqrt(d_head)) V for one head of one sequence of a packed batch: K^T of the
/// head copied once into scratch (zero-padded to whole packet pairs), the scores and the
/// weighted values by the register-blocked kernels above, the softmax over each score row.
inline void attention_head(const_matrix_view<float> q, const_matrix_view<float> k, const_matrix_view<float> v,
                           vector_view<const std::int32_t> q_offsets, vector_view<const std::int32_t> kv_offsets,
                           index_t seq, int head, int heads, matrix_view<float> out, attention_scratch& scratch) {
    namespace blocks = attention_blocks;
    const index_t dh = q.cols / heads, col = head * dh;
    const index_t q0 = q_offsets.data[seq], mq = q_offsets.data[seq + 1] - q0;
    const index_t k0 = kv_offsets.data[seq], nk = kv_offsets.data[seq + 1] - k0;
    if (mq == 0) return;
    if (nk == 0) {
        for (index_t r = 0; r < mq; ++r) std::fill_n(out.row(q0 + r) + col, dh, 0.0f);
        return;
    }
    const index_t keys = (nk + 2 * blocks::lanes - 1) / (2 * blocks::lanes) * (2 * blocks::lanes);
    scratch.keys_t.resize(static_cast<std::size_t>(dh * keys));
    scratch.scores.resize(static_cast<std::size_t>(blocks::max_rows * keys));
    float* kt = scratch.keys_t.data();
    for (index_t c = 0; c < dh; ++c) {
        for (index_t j = 0; j < nk; ++j) kt[c * keys + j] = k.data[(k0 + j) * k.stride + col + c];
        std::fill(kt + c * keys + nk, kt + (c + 1) * keys, 0.0f);
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
    blocks::by_row_blocks(mq, [&](auto rows, index_t r0) {
        constexpr int R = decltype(rows)::value;
        float* s = scratch.scores.data();
        blocks::scores<R>(q.row(q0 + r0) + col, q.stride, kt, keys, dh, s);
        for (int r = 0; r < R; ++r) {
            auto row = Eigen::Map<Eigen::ArrayXf>(s + r * keys, nk);
            const float m = row.maxCoeff();
            row = ((row - m) * scale).exp();
            row *= 1.0f / row.sum();
        }
        blocks::weighted_values<R>(s, keys, nk, v.row(k0) + col, v.stride, dh, out.row(q0 + r0) + col, out.stride);
    });
}

inline void linear_tiles::run(index_t t, const_matrix_view<float> x, const_matrix_view<float> w,
                              vector_view<const float> bias, matrix_view<float> y, epilogue e) const {
    const index_t r0 = (t / col_chunks) * rows_per, r1 = std::min(x.rows, r0 + rows_per);
    const index_t c0 = (t % col_chunks) * cols_per, c1 = std::min(w.rows, c0 + cols_per);
    if (r0 < r1 && c0 < c1) linear_columns(x.block_rows(r0, r1 - r0), w, bias, y.block_rows(r0, r1 - r0), e, c0, c1);
}

} // namespace hashee::detail
