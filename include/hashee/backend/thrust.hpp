#pragma once
// The Thrust backend's CPU systems, for thrust_backend<System> (thrust_backend.hpp):
//  - thrust_backend<thrust_omp>: OpenMP's threads (OMP_NUM_THREADS);
//  - thrust_backend<thrust_cpp>: the calling thread.
// Memory is host memory; the GEMM is eigen_cpu's host products (oneDNN's matmul on row blocks,
// detail::dnnl_row_blocks, where hashee is built with oneDNN; else detail::linear_tiles by
// Eigen), one thrust::for_each item per block or tile. Everything else is the functors every system runs.
// Build with OpenMP and Thrust (CCCL): the CMake target hashee::thrust carries both.
//  - thrust_backend<thrust_cuda>: include <hashee/backend/cuda.cuh> instead (nvcc; no Eigen).

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/system/cpp/execution_policy.h>
#include <thrust/system/omp/execution_policy.h>
#include <omp.h>

#include <hashee/backend/backend.hpp>
#include <hashee/backend/detail/eigen_kernels.hpp>
#if HASHEE_HAS_DNNL && !defined(HASHEE_EIGEN_GEMM)
#define HASHEE_THRUST_GEMM_BY_DNNL 1
#include <memory>

#include <hashee/backend/detail/dnnl_products.hpp>
#endif
#include <hashee/backend/thrust_backend.hpp>
#include <hashee/backend/training_backend.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee {

namespace detail {

/// A CPU system's GEMM: y = x W^T by eigen_cpu's host products (oneDNN on row blocks; else
/// tiles by Eigen), spread over the system's workers (its execution policy and
/// parallelism come from System). W is read where it is (the Thrust backend prepares no
/// weights).
template <class System>
struct host_gemm {
    explicit host_gemm(gemm_precision p) {
        if (p != gemm_precision::fp32)
            detail::unsupported_precision(System::name, p, "the Thrust CPU systems run fp32; fp16 and bf16 are CUDA's, bf16 and int8 eigen's");
    }
    void product(const_matrix_view<float> x, const_matrix_view<float> w, matrix_view<float> y) const {
#if HASHEE_THRUST_GEMM_BY_DNNL
        const dnnl_row_blocks blocks(x.rows, w.cols, w.rows, System::parallelism());
        const dnnl_products* products = products_.get();
        const auto block = [=](index_t i) {
            products->linear(x.block_rows(blocks.first(i), blocks.size(i)), w, {}, y.block_rows(blocks.first(i), blocks.size(i)),
                             epilogue::none);
        };
        if (!blocks.parallel) {
            for (index_t i = 0; i < blocks.count; ++i) block(i);
            return;
        }
        thrust::for_each(System::policy(), thrust::counting_iterator<index_t>(0), thrust::counting_iterator<index_t>(blocks.count),
                         block);
#else
        const linear_tiles tiles(x, w, System::parallelism());
        thrust::for_each(System::policy(), thrust::counting_iterator<index_t>(0), thrust::counting_iterator<index_t>(tiles.count()),
                         [=](index_t t) { tiles.run(t, x, w, {}, y, epilogue::none); });
#endif
    }

    /// C = op(A) op(B) + beta C (training's products, float or double): row blocks of C by
    /// Eigen (detail::matmul_rows), one per worker.
    template <class T>
    void matmul(const_matrix_view<T> a, bool trans_a, const_matrix_view<T> b, bool trans_b, matrix_view<T> c, T beta) const {
        const index_t grain = matmul_grain(c.cols, trans_a ? a.rows : a.cols);
        const index_t parts = std::clamp<index_t>(c.rows / grain, 1, System::parallelism());
        thrust::for_each(System::policy(), thrust::counting_iterator<index_t>(0), thrust::counting_iterator<index_t>(parts),
                         [=](index_t p) { matmul_rows(a, trans_a, b, trans_b, c, beta, c.rows * p / parts, c.rows * (p + 1) / parts); });
    }

#if HASHEE_THRUST_GEMM_BY_DNNL
private:
    std::shared_ptr<const dnnl_products> products_ = std::make_shared<const dnnl_products>();
#endif
};

/// The CPU systems' memory: host memory aligned as eigen_cpu's. Eigen's small products peel
/// and vectorise by the alignment of their data, so the same alignment on every allocation
/// keeps the sums in the same order: the same run gives the same bits twice.
template <class T>
using aligned_host_vector = std::vector<T, Eigen::aligned_allocator<T>>;

/// Host memory copies for the CPU systems.
struct host_copies {
    template <class T>
    static void upload(std::span<const T> host, T* dst) { std::copy(host.begin(), host.end(), dst); }
    template <class T>
    static void download(const T* src, std::span<T> host) { std::copy(src, src + host.size(), host.begin()); }
};

} // namespace detail

/// Thrust's serial CPU system.
struct thrust_cpp : detail::host_copies {
    static constexpr bool host = true;
    static constexpr const char* name = "thrust-cpp";
    template <class T>
    using vector = detail::aligned_host_vector<T>;
    using gemm = detail::host_gemm<thrust_cpp>;
    static auto policy() { return thrust::cpp::par; }
    static int parallelism() { return 1; }
};

/// Thrust's OpenMP system: as many threads as OpenMP gives a parallel region.
struct thrust_omp : detail::host_copies {
    static constexpr bool host = true;
    static constexpr const char* name = "thrust-omp";
    template <class T>
    using vector = detail::aligned_host_vector<T>;
    using gemm = detail::host_gemm<thrust_omp>;
    static auto policy() { return thrust::omp::par; }
    static int parallelism() { return std::max(1, omp_get_max_threads()); }
};

static_assert(training_backend<thrust_backend<thrust_cpp>>);
static_assert(training_backend<thrust_backend<thrust_omp>>);

} // namespace hashee
