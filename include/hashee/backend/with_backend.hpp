#pragma once
// Dispatch at the edge: a backend chosen by name at run time, the code above it compiled once
// per backend type.
//
//   with_backend(parse_backend("thrust-omp"), threads, [&](const auto& backend) { ... });
//   with_backend("eigen", threads, parse_precision("bf16"), [&](const auto& backend) { ... });
//
// eigen_cpu always; thrust_backend<thrust_omp> and <thrust_cpp> where hashee was built with
// Thrust (HASHEE_HAS_THRUST); thrust_backend<thrust_cuda> where the caller is compiled by nvcc
// (this header includes <hashee/backend/cuda.cuh> there). Asking for one that is not built in is an
// input_error (E62) that says so.

#include <string>
#include <string_view>
#include <utility>

#include <hashee/backend/eigen_cpu.hpp>
#include <hashee/core/error.hpp>
#if HASHEE_HAS_THRUST
#include <hashee/backend/thrust.hpp>
#endif
#if defined(__CUDACC__)
#include <hashee/backend/cuda.cuh>
#endif

namespace hashee {

enum class backend_kind { eigen, thrust_omp, thrust_cpp, cuda };

inline const char* backend_name(backend_kind k) {
    switch (k) {
    case backend_kind::eigen: return "eigen";
    case backend_kind::thrust_omp: return "thrust-omp";
    case backend_kind::thrust_cpp: return "thrust-cpp";
    case backend_kind::cuda: return "cuda";
    }
    return "?";
}

/// "eigen", "thrust-omp", "thrust-cpp" or "cuda"; anything else is input_error E62.
inline backend_kind parse_backend(std::string_view name) {
    for (const backend_kind k : {backend_kind::eigen, backend_kind::thrust_omp, backend_kind::thrust_cpp, backend_kind::cuda})
        if (name == backend_name(k)) return k;
    throw input_error("E62", "unknown backend '" + std::string(name) + "' (eigen, thrust-omp, thrust-cpp, cuda)");
}

/// Whether this build can run backend `k`.
inline bool backend_available(backend_kind k) {
    switch (k) {
    case backend_kind::eigen: return true;
    case backend_kind::thrust_omp:
    case backend_kind::thrust_cpp:
#if HASHEE_HAS_THRUST
        return true;
#else
        return false;
#endif
    case backend_kind::cuda:
#if defined(__CUDACC__)
        return true;
#else
        return false;
#endif
    }
    return false;
}

/// Constructs backend `k` with `threads` threads and products in `precision` (a precision the
/// backend does not run is input_error E63) and returns f(const B&).
template <class F>
decltype(auto) with_backend(backend_kind k, int threads, gemm_precision precision, F&& f) {
    switch (k) {
    case backend_kind::eigen: break;
    case backend_kind::thrust_omp:
#if HASHEE_HAS_THRUST
        return f(thrust_backend<thrust_omp>(threads, precision));
#else
        throw input_error("E62", "backend 'thrust-omp': this build of hashee has no Thrust (CCCL) backend");
#endif
    case backend_kind::thrust_cpp:
#if HASHEE_HAS_THRUST
        return f(thrust_backend<thrust_cpp>(threads, precision));
#else
        throw input_error("E62", "backend 'thrust-cpp': this build of hashee has no Thrust (CCCL) backend");
#endif
    case backend_kind::cuda:
#if defined(__CUDACC__)
        return f(thrust_backend<thrust_cuda>(threads, precision));
#else
        throw input_error("E62", "backend 'cuda': this program was not compiled by nvcc with the CUDA backend");
#endif
    }
    return f(eigen_cpu(threads, precision));
}

template <class F>
decltype(auto) with_backend(std::string_view name, int threads, gemm_precision precision, F&& f) {
    return with_backend(parse_backend(name), threads, precision, std::forward<F>(f));
}

/// The same with fp32 products.
template <class F>
decltype(auto) with_backend(backend_kind k, int threads, F&& f) {
    return with_backend(k, threads, gemm_precision::fp32, std::forward<F>(f));
}
template <class F>
decltype(auto) with_backend(std::string_view name, int threads, F&& f) {
    return with_backend(parse_backend(name), threads, gemm_precision::fp32, std::forward<F>(f));
}

} // namespace hashee
