#pragma once
// The Thrust backend's CPU systems, for thrust_backend<System> (thrust_backend.hpp):
//  - thrust_backend<thrust_omp>: OpenMP's threads (OMP_NUM_THREADS);
//  - thrust_backend<thrust_cpp>: the calling thread.
// Memory is host memory; the GEMM is eigen_cpu's, on tiles (detail::linear_tiles: BLIS or
// Eigen), one thrust::for_each item each. Everything else is the functors every system runs.
// Build with OpenMP and Thrust (CCCL): the CMake target hashee::thrust carries both.
//  - thrust_backend<thrust_cuda>: include <hashee/backend/cuda.cuh> instead (nvcc; no Eigen).

#include <algorithm>
#include <span>
#include <string>

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/system/cpp/execution_policy.h>
#include <thrust/system/cpp/vector.h>
#include <thrust/system/omp/execution_policy.h>
#include <thrust/system/omp/vector.h>
#include <omp.h>

#include <hashee/backend/backend.hpp>
#include <hashee/backend/detail/eigen_kernels.hpp>
#include <hashee/backend/thrust_backend.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee {

namespace detail {

/// A CPU system's GEMM: y = x W^T on tiles (detail::linear_tiles; BLIS or Eigen, as in
/// eigen_cpu), spread over the system's workers (its execution policy and parallelism come
/// from System).
template <class System>
struct host_gemm {
    explicit host_gemm(gemm_precision p) {
        if (p != gemm_precision::fp32)
            throw input_error("E33", std::string(System::name) + ": fp16 and bf16 GEMMs are a CUDA option; the CPU systems run fp32");
    }
    void product(const_matrix_view<float> x, const_matrix_view<float> w, matrix_view<float> y) const {
        const linear_tiles tiles(x, w, System::parallelism());
        thrust::for_each(System::policy(), thrust::counting_iterator<index_t>(0), thrust::counting_iterator<index_t>(tiles.count()),
                         [=](index_t t) { tiles.run(t, x, w, {}, y, epilogue::none); });
    }
};

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
    using vector = thrust::cpp::vector<T>;
    using gemm = detail::host_gemm<thrust_cpp>;
    static auto policy() { return thrust::cpp::par; }
    static int parallelism() { return 1; }
};

/// Thrust's OpenMP system: as many threads as OpenMP gives a parallel region.
struct thrust_omp : detail::host_copies {
    static constexpr bool host = true;
    static constexpr const char* name = "thrust-omp";
    template <class T>
    using vector = thrust::omp::vector<T>;
    using gemm = detail::host_gemm<thrust_omp>;
    static auto policy() { return thrust::omp::par; }
    static int parallelism() { return std::max(1, omp_get_max_threads()); }
};

static_assert(backend<thrust_backend<thrust_cpp>>);
static_assert(backend<thrust_backend<thrust_omp>>);

} // namespace hashee
