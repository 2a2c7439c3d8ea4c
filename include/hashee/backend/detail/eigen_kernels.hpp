#pragma once
// The kernels behind eigen_cpu: per-row LayerNorm, GELU, a column block of a linear layer
// (its product by Eigen: the products where hashee is built without oneDNN), one attention
// head of one sequence. Plain functions over views; the backend does the
// threading. (The shape checks are in detail/checks.hpp, which needs no Eigen.)

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

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

template <class T>
inline auto map_t(const_matrix_view<T> m) {
    using rm = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    return Eigen::Map<const rm, 0, stride_t>(m.data, m.rows, m.cols, stride_t(m.stride));
}
template <class T>
inline auto map_t(matrix_view<T> m) {
    using rm = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    return Eigen::Map<rm, 0, stride_t>(m.data, m.rows, m.cols, stride_t(m.stride));
}

/// Rows [r0, r1) of C = op(A) op(B) + beta C by Eigen (training's products, in float or double;
/// beta 0 writes C whatever it held). A worker's share of training_ops::matmul on a CPU backend.
template <class T>
void matmul_rows(const_matrix_view<T> a, bool trans_a, const_matrix_view<T> b, bool trans_b, matrix_view<T> c, T beta,
                 index_t r0, index_t r1) {
    if (r0 >= r1) return;
    auto out = map_t(c.block_rows(r0, r1 - r0));
    const auto assign = [&](const auto& op_a, const auto& op_b) {
        if (beta == T(0)) out.noalias() = op_a * op_b;
        else {
            out *= beta;
            out.noalias() += op_a * op_b;
        }
    };
    const auto with_b = [&](const auto& op_a) {
        if (trans_b) assign(op_a, map_t(b).transpose());
        else assign(op_a, map_t(b));
    };
    if (trans_a) with_b(map_t(a.block_cols(r0, r1 - r0)).transpose());
    else with_b(map_t(a.block_rows(r0, r1 - r0)));
}

/// The rows of C a CPU backend's worker takes at least in matmul_rows: so many that each task
/// has min_parallel_macs multiply-accumulates.
inline index_t matmul_grain(index_t n, index_t k) { return std::max<index_t>(1, min_parallel_macs / std::max<index_t>(1, n * k)); }

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

/// GELU with the exact erf form, 0.5 x (1 + erf(x / sqrt 2)) = 0.5 (x + |x| erf(|x| / sqrt 2)),
/// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7) over Eigen's widest packets and its
/// vectorised exp: 3.6x the same formula written as Eigen array expressions (0.5 against 1.9 ns a
/// value on 128 x 1536 values in cache, measured on a Xeon with AVX-512), which the int8 products,
/// whose epilogue runs here, spent a fifth of their time in.
inline void gelu_inplace(float* p, index_t n) {
    using namespace Eigen::internal;
    using packet = packet_traits<float>::type;
    constexpr index_t width = packet_traits<float>::size;
    constexpr float inv_sqrt2 = 0.70710678118654752f, c = 0.3275911f, a1 = 0.254829592f, a2 = -0.284496736f,
                    a3 = 1.421413741f, a4 = -1.453152027f, a5 = 1.061405429f;
    const packet one = pset1<packet>(1.0f);
    index_t i = 0;
    for (; i + width <= n; i += width) {
        const packet x = ploadu<packet>(p + i), ax = pabs(x), z = pmul(ax, pset1<packet>(inv_sqrt2));
        const packet t = pdiv(one, pmadd(pset1<packet>(c), z, one));
        packet poly = pmadd(t, pset1<packet>(a5), pset1<packet>(a4));
        poly = pmadd(t, poly, pset1<packet>(a3));
        poly = pmadd(t, poly, pset1<packet>(a2));
        poly = pmadd(t, poly, pset1<packet>(a1));
        const packet erf = psub(one, pmul(pmul(t, poly), pexp(pnegate(pmul(z, z)))));
        pstoreu(p + i, pmul(pset1<packet>(0.5f), pmadd(ax, erf, x)));
    }
    for (; i < n; ++i) {
        const float x = p[i], ax = std::abs(x), z = ax * inv_sqrt2, t = 1.0f / (1.0f + c * z);
        const float erf = 1.0f - t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5)))) * std::exp(-z * z);
        p[i] = 0.5f * (x + ax * erf);
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

struct attention_scratch {
    row_major scores;
};

/// softmax(Q K^T / sqrt(d_head)) V for one head of one sequence of a packed batch.
inline void attention_head(const_matrix_view<float> q, const_matrix_view<float> k, const_matrix_view<float> v,
                           vector_view<const std::int32_t> q_offsets, vector_view<const std::int32_t> kv_offsets,
                           index_t seq, int head, int heads, matrix_view<float> out, attention_scratch& scratch) {
    const index_t dh = q.cols / heads, col = head * dh;
    const index_t q0 = q_offsets.data[seq], mq = q_offsets.data[seq + 1] - q0;
    const index_t k0 = kv_offsets.data[seq], nk = kv_offsets.data[seq + 1] - k0;
    if (mq == 0) return;
    auto o = map(out.block_rows(q0, mq).block_cols(col, dh));
    if (nk == 0) {
        o.setZero();
        return;
    }
    const auto qh = map(q.block_rows(q0, mq).block_cols(col, dh));
    const auto kh = map(k.block_rows(k0, nk).block_cols(col, dh));
    const auto vh = map(v.block_rows(k0, nk).block_cols(col, dh));
    row_major& s = scratch.scores;
    s.resize(mq, nk);
    s.noalias() = qh * kh.transpose();
    const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
    for (index_t r = 0; r < mq; ++r) {
        auto row = s.row(r).array();
        const float m = row.maxCoeff();
        row = ((row - m) * scale).exp();
        row /= row.sum();
    }
    o.noalias() = s * vh;
}

inline void linear_tiles::run(index_t t, const_matrix_view<float> x, const_matrix_view<float> w,
                              vector_view<const float> bias, matrix_view<float> y, epilogue e) const {
    const index_t r0 = (t / col_chunks) * rows_per, r1 = std::min(x.rows, r0 + rows_per);
    const index_t c0 = (t % col_chunks) * cols_per, c1 = std::min(w.rows, c0 + cols_per);
    if (r0 < r1 && c0 < c1) linear_columns(x.block_rows(r0, r1 - r0), w, bias, y.block_rows(r0, r1 - r0), e, c0, c1);
}

} // namespace hashee::detail
