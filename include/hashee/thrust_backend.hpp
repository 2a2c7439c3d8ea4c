#pragma once
// The Thrust backend: one class template over a Thrust system, the same encoder and exit
// policies on top (backend.hpp states what they need).
//  - thrust_backend<thrust_cpp>, thrust_backend<thrust_omp>: Thrust's CPU systems. Memory is
//    the system's vector; GEMMs are Eigen products, split over column blocks by a Thrust
//    algorithm; LayerNorm, GELU, softmax and attention over packed ragged batches, row gather
//    and scatter and the selection of active rows (a stream compaction: scan + scatter inside
//    thrust::copy_if) are Thrust algorithms over rows. The OMP system runs them on OpenMP's
//    threads (OMP_NUM_THREADS), the CPP system on the calling thread.
//  - thrust_backend<thrust_cuda> (thrust_cuda_backend.cuh, with nvcc): device_vector memory,
//    cuBLAS GEMMs, CUDA kernels for the rest.
// Pointers in views point into the system's memory: host memory for the CPU systems.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include <thrust/copy.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/system/cpp/execution_policy.h>
#include <thrust/system/cpp/vector.h>
#include <thrust/system/omp/execution_policy.h>
#include <thrust/system/omp/vector.h>
#include <omp.h>

#include <hashee/backend.hpp>
#include <hashee/detail/eigen.hpp>
#include <hashee/detail/eigen_kernels.hpp>
#include <hashee/error.hpp>
#include <hashee/matrix_view.hpp>

namespace hashee {

/// Thrust's serial CPU system.
struct thrust_cpp {
    static constexpr bool host = true;
    static constexpr const char* name = "thrust-cpp";
    template <class T>
    using vector = thrust::cpp::vector<T>;
    static auto policy() { return thrust::cpp::par; }
    static int parallelism() { return 1; }
};

/// Thrust's OpenMP system: as many threads as OpenMP gives a parallel region.
struct thrust_omp {
    static constexpr bool host = true;
    static constexpr const char* name = "thrust-omp";
    template <class T>
    using vector = thrust::omp::vector<T>;
    static auto policy() { return thrust::omp::par; }
    static int parallelism() { return std::max(1, omp_get_max_threads()); }
};

/// What a Thrust system descriptor provides to thrust_backend.
template <class S>
concept thrust_system = requires {
    { S::host } -> std::convertible_to<bool>;
    { S::name } -> std::convertible_to<const char*>;
    typename S::template vector<float>;
    typename S::template vector<std::int32_t>;
};

template <thrust_system System>
class thrust_backend;

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

/// The CPU systems' backend.
template <thrust_system System>
    requires(System::host)
class thrust_backend<System> {
public:
    static constexpr bool host_accessible = true;

    template <class T>
    using buffer = detail::thrust_buffer<typename System::template vector<T>>;

    /// `threads` is accepted for symmetry with eigen_cpu and ignored: the OMP system takes
    /// OpenMP's thread count, the CPP system runs on the calling thread.
    explicit thrust_backend(int threads = 1) {
        if (threads < 1) throw input_error("thrust_backend: thread count must be >= 1, got " + std::to_string(threads));
    }

    // ---- memory -------------------------------------------------------------------------
    template <class T>
    buffer<T> allocate(index_t n) const { return buffer<T>(n); }
    template <class T>
    void upload(std::span<const T> host, T* dst) const { std::copy(host.begin(), host.end(), dst); }
    template <class T>
    void download(const T* src, std::span<T> host) const { std::copy(src, src + host.size(), host.begin()); }

    // ---- algebra ------------------------------------------------------------------------
    /// y = x W^T + bias, then `e`: Eigen products on column blocks of 16, one block range per
    /// thread of the system.
    void linear(const_matrix_view<float> x, const_matrix_view<float> w, vector_view<const float> bias,
                matrix_view<float> y, epilogue e) const {
        detail::check_linear_shapes(x, w, bias, y);
        const detail::column_split split(x, w, System::parallelism());
        for_each_index(split.chunks, [=](index_t c) {
            const index_t c0 = c * split.per, c1 = std::min(w.rows, c0 + split.per);
            if (c0 < c1) detail::linear_columns(x, w, bias, y, e, c0, c1);
        });
    }

    /// softmax(Q K^T / sqrt(d_head)) V per head of each sequence, one (sequence, head) per item.
    void attention(const_matrix_view<float> q, const_matrix_view<float> k, const_matrix_view<float> v,
                   vector_view<const std::int32_t> q_offsets, vector_view<const std::int32_t> kv_offsets, int heads,
                   matrix_view<float> out) const {
        detail::check_attention_shapes(q, k, v, q_offsets, kv_offsets, heads, out);
        for_each_index((q_offsets.size - 1) * heads, [=](index_t t) {
            detail::attention_scratch scratch;
            detail::attention_head(q, k, v, q_offsets, kv_offsets, t / heads, static_cast<int>(t % heads), heads, out,
                                   scratch);
        });
    }

    // ---- row-wise ----------------------------------------------------------------------
    void embed(vector_view<const std::int32_t> ids, vector_view<const std::int32_t> type_ids,
               vector_view<const std::int32_t> positions, const_matrix_view<float> word,
               const_matrix_view<float> position, const_matrix_view<float> token_type, vector_view<const float> gamma,
               vector_view<const float> beta, float eps, matrix_view<float> out) const {
        for_each_index(out.rows, [=](index_t r) {
            detail::embed_row(r, ids, type_ids, positions, word, position, token_type, gamma, beta, eps, out);
        });
    }

    void add_layer_norm(matrix_view<float> y, const_matrix_view<float> residual, vector_view<const float> gamma,
                        vector_view<const float> beta, float eps) const {
        for_each_index(y.rows, [=](index_t r) { detail::add_layer_norm_row(r, y, residual, gamma, beta, eps); });
    }

    void gather_rows(const_matrix_view<float> x, vector_view<const std::int32_t> rows, matrix_view<float> y) const {
        for_each_index(rows.size, [=](index_t i) {
            std::memcpy(y.row(i), x.row(rows.data[i]), static_cast<std::size_t>(x.cols) * sizeof(float));
        });
    }

    void scatter_rows(const_matrix_view<float> x, vector_view<const std::int32_t> rows, matrix_view<float> y) const {
        for_each_index(rows.size, [=](index_t i) {
            std::memcpy(y.row(rows.data[i]), x.row(i), static_cast<std::size_t>(x.cols) * sizeof(float));
        });
    }

    /// rows[0..count) = the indices t, in order, with exit_layers[t] >= layer; returns count.
    index_t select_rows(vector_view<const std::int32_t> exit_layers, int layer, vector_view<std::int32_t> rows) const {
        const std::int32_t* e = exit_layers.data;
        std::int32_t* end = thrust::copy_if(System::policy(), thrust::counting_iterator<std::int32_t>(0),
                                            thrust::counting_iterator<std::int32_t>(static_cast<std::int32_t>(exit_layers.size)),
                                            rows.data, [=](std::int32_t t) { return e[t] >= layer; });
        return end - rows.data;
    }

private:
    /// f(i) for i in [0, n), as one Thrust algorithm on the system.
    template <class F>
    static void for_each_index(index_t n, F f) {
        if (n <= 0) return;
        thrust::for_each(System::policy(), thrust::counting_iterator<index_t>(0), thrust::counting_iterator<index_t>(n), f);
    }
};

static_assert(backend<thrust_backend<thrust_cpp>>);
static_assert(backend<thrust_backend<thrust_omp>>);

} // namespace hashee
