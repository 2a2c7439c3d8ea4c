#pragma once
// The Thrust backend: one class template over a Thrust system, the same encoder and exit
// policies on top (backend.hpp states what they need). Whatever the system:
//  - memory is the system's vector (detail::thrust_buffer);
//  - LayerNorm, the GEMM epilogue (bias, exact-erf GELU, tanh), attention over packed ragged
//    batches (online softmax per query and head), row gather and scatter are the functors of
//    detail/thrust_functors.hpp run by thrust::for_each, and the selection of active rows is a
//    stream compaction (flag, thrust::exclusive_scan, scatter);
//  - the GEMM product is the system's own (the thrust_system concept below);
//  - the training primitives (training_backend.hpp) are detail::training_ops over the same
//    for_each and the system's matmul, in float and double.
// This header is the template alone, with no system and no Eigen or oneDNN: the systems come
// from
//  - <hashee/backend/thrust.hpp>: thrust_omp (OpenMP's threads) and thrust_cpp (the calling
//    thread), their products by eigen_cpu's host products (oneDNN or Eigen);
//  - <hashee/backend/cuda.cuh>: thrust_cuda (nvcc), its products by cuBLAS.
// So the CPU systems, run by every test suite, execute the very functors the GPU runs.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/memory.h>
#include <thrust/scan.h>

#include <hashee/backend/backend.hpp>
#include <hashee/backend/detail/checks.hpp>
#include <hashee/backend/detail/thrust_functors.hpp>
#include <hashee/backend/detail/training_ops.hpp>
#include <hashee/backend/precision.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee {

namespace detail {

/// A buffer in a Thrust system's memory (Vector: that system's vector); data() is the raw
/// pointer views are made of.
template <class Vector>
class thrust_buffer {
public:
    using value_type = typename Vector::value_type;
    thrust_buffer() = default;
    explicit thrust_buffer(index_t n) : v_(static_cast<std::size_t>(n)) {}
    value_type* data() { return thrust::raw_pointer_cast(v_.data()); }
    const value_type* data() const { return thrust::raw_pointer_cast(v_.data()); }
    std::size_t size() const { return v_.size(); }

private:
    Vector v_;
};

} // namespace detail

/// What a Thrust system descriptor provides to thrust_backend.
template <class S>
concept thrust_system = requires(const typename S::gemm& g, const_matrix_view<float> x, matrix_view<float> y,
                                 std::span<const float> host_in, std::span<float> host_out, float* device) {
    { S::host } -> std::convertible_to<bool>; ///< its memory is host memory
    { S::name } -> std::convertible_to<const char*>;
    typename S::template vector<float>;
    typename S::template vector<std::int32_t>;
    S::policy();                                ///< the Thrust execution policy
    requires std::constructible_from<typename S::gemm, gemm_precision>;
    g.product(x, x, y);                         ///< y = x W^T
    g.matmul(x, bool{}, x, bool{}, y, float{}); ///< C = op(A) op(B) + beta C (also in double)
    S::upload(host_in, device);
    S::download(static_cast<const float*>(device), host_out);
};

template <thrust_system System>
class thrust_backend : public detail::training_ops<thrust_backend<System>> {
public:
    static constexpr bool host_accessible = System::host;
    template <class T>
    using buffer = detail::thrust_buffer<typename System::template vector<T>>;

    /// `threads` is accepted for symmetry with eigen_cpu and ignored: the OMP system takes
    /// OpenMP's thread count, the CPP system runs on the calling thread, CUDA on the device.
    /// `precision`: fp16/bf16 GEMM inputs on CUDA; the CPU systems take fp32 only.
    explicit thrust_backend(int threads = 1, gemm_precision precision = gemm_precision::fp32) : gemm_(precision) {
        if (threads < 1) throw input_error("E22", "thrust_backend: thread count must be >= 1, got " + std::to_string(threads));
    }

    // ---- memory -------------------------------------------------------------------------
    template <class T>
    buffer<T> allocate(index_t n) const { return buffer<T>(n); }
    template <class T>
    void upload(std::span<const T> host, T* dst) const { System::upload(host, dst); }
    template <class T>
    void download(const T* src, std::span<T> host) const { System::download(src, host); }

    // ---- algebra ------------------------------------------------------------------------
    /// y = x W^T (the system's GEMM), then bias and the epilogue per element.
    /// The products read W where it is: preparing it is the view itself.
    using weight_matrix = const_matrix_view<float>;
    weight_matrix prepare_weight(const_matrix_view<float> w) const { return w; }
    weight_matrix weight_rows(const weight_matrix& w, index_t first, index_t count) const {
        detail::check_weight_rows(w, first, count);
        return w.block_rows(first, count);
    }
    std::size_t weight_bytes(const weight_matrix&) const { return 0; }

    void linear(const_matrix_view<float> x, const_matrix_view<float> w, vector_view<const float> bias,
                matrix_view<float> y, epilogue e) const {
        detail::check_linear_shapes(x, w, bias, y);
        if (y.rows == 0 || y.cols == 0) return;
        gemm_.product(x, w, y);
        if (bias.size || e != epilogue::none) for_each_index(y.rows * y.cols, detail::thrust_fn::bias_epilogue{y, bias, e});
    }

    void attention(const_matrix_view<float> q, const_matrix_view<float> k, const_matrix_view<float> v,
                   vector_view<const std::int32_t> q_offsets, vector_view<const std::int32_t> kv_offsets, int heads,
                   matrix_view<float> out) const {
        detail::check_attention_shapes(q, k, v, q_offsets, kv_offsets, heads, out, /*offsets_readable=*/System::host);
        if (q.cols / heads > detail::thrust_fn::max_head_dim)
            throw input_error("E33", "attention: head width " + std::to_string(q.cols / heads) + " exceeds the Thrust backend's " +
                              std::to_string(detail::thrust_fn::max_head_dim));
        for_each_index(q.rows * heads, detail::thrust_fn::attention_query{q, k, v, q_offsets, kv_offsets, heads, out});
    }

    // ---- row-wise ----------------------------------------------------------------------
    void embed(vector_view<const std::int32_t> ids, vector_view<const std::int32_t> type_ids,
               vector_view<const std::int32_t> positions, const_matrix_view<float> word,
               const_matrix_view<float> position, const_matrix_view<float> token_type, vector_view<const float> gamma,
               vector_view<const float> beta, float eps, matrix_view<float> out) const {
        for_each_index(out.rows, detail::thrust_fn::embed_row{ids, type_ids, positions, word, position, token_type, gamma,
                                                              beta, eps, out});
    }

    void add_layer_norm(matrix_view<float> y, const_matrix_view<float> residual, vector_view<const float> gamma,
                        vector_view<const float> beta, float eps) const {
        for_each_index(y.rows, detail::thrust_fn::add_layer_norm_row{y, residual, gamma, beta, eps});
    }

    void gather_rows(const_matrix_view<float> x, vector_view<const std::int32_t> rows, matrix_view<float> y) const {
        for_each_index(rows.size * x.cols, detail::thrust_fn::move_rows<false>{x, rows, y});
    }

    void scatter_rows(const_matrix_view<float> x, vector_view<const std::int32_t> rows, matrix_view<float> y) const {
        for_each_index(rows.size * x.cols, detail::thrust_fn::move_rows<true>{x, rows, y});
    }
    using detail::training_ops<thrust_backend>::gather_rows; // in double
    using detail::training_ops<thrust_backend>::scatter_rows;

    /// rows[0..count) = the t, ascending, with exit_layers[t] >= layer; returns count. A stream
    /// compaction in three Thrust steps on raw pointers: flag, exclusive scan, scatter.
    index_t select_rows(vector_view<const std::int32_t> exit_layers, int layer, vector_view<std::int32_t> rows) const {
        const index_t n = exit_layers.size;
        if (n == 0) return 0;
        buffer<std::int32_t> flags(n), positions(n);
        std::int32_t *f = flags.data(), *p = positions.data();
        for_each_index(n, detail::thrust_fn::flag_active{exit_layers.data, layer, f});
        thrust::exclusive_scan(System::policy(), f, f + n, p);
        for_each_index(n, detail::thrust_fn::scatter_active{f, p, rows.data});
        std::int32_t last[2];
        download(p + n - 1, std::span<std::int32_t>(last, 1));
        download(static_cast<const std::int32_t*>(f + n - 1), std::span<std::int32_t>(last + 1, 1));
        return index_t{last[0]} + last[1];
    }

private:
    friend class detail::training_ops<thrust_backend>;
    /// training_ops' products: the system's (System::gemm::matmul).
    template <class T>
    void product(const_matrix_view<T> a, bool trans_a, const_matrix_view<T> b, bool trans_b, matrix_view<T> c, T beta) const {
        gemm_.matmul(a, trans_a, b, trans_b, c, beta);
    }

    /// f(i) for i in [0, n), as one Thrust algorithm on the system.
    template <class F>
    static void for_each_index(index_t n, F f) {
        if (n > 0) thrust::for_each(System::policy(), thrust::counting_iterator<index_t>(0), thrust::counting_iterator<index_t>(n), f);
    }

    typename System::gemm gemm_;
};

} // namespace hashee
