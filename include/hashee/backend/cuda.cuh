#pragma once
// Thrust's CUDA system for thrust_backend (thrust_backend.hpp): nvcc only, with
// --expt-relaxed-constexpr (the CMake target hashee::cuda adds it, with cuBLAS and the CUDA
// runtime). Its include closure holds neither Eigen nor oneDNN (tests: headers.cuda_without_eigen).
//  - memory: thrust::device_vector; upload/download are cudaMemcpy.
//  - GEMM: cuBLAS, cublasSgemm in fp32; with gemm_precision::fp16 or bf16, cublasGemmEx on
//    16-bit inputs with fp32 accumulation (tensor cores). Inputs and weights are converted per
//    call: correct for any weights, at the cost of a pass over W (keeping 16-bit copies of the
//    weights is the next step, for a GPU to measure).
//  - everything else: the functors of detail/thrust_functors.hpp, through thrust::for_each on
//    the device, the same code the CPU systems run in every test suite.
// Work runs on the legacy default stream, so results are ready when download returns. One
// backend may be shared by threads: its cuBLAS calls are serialised.
//   hashee::thrust_backend<hashee::thrust_cuda> gpu(1, hashee::gemm_precision::fp16);

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <type_traits>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/transform.h>

#include <hashee/backend/backend.hpp>
#include <hashee/backend/thrust_backend.hpp>
#include <hashee/backend/training_backend.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee {

namespace detail {

inline void cuda_check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw device_error("E85", located(what, cudaGetErrorString(e)));
}
inline void cuda_check(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) throw device_error("E85", located(what, "cuBLAS status " + std::to_string(static_cast<int>(s))));
}

/// fp32 -> a 16-bit type (__half or __nv_bfloat16), element i of a strided matrix into a
/// compact one.
template <class T>
struct to_16bit {
    const_matrix_view<float> src;
    T* dst;
    __host__ __device__ void operator()(index_t i) const {
        const float x = src.row(i / src.cols)[i % src.cols];
        if constexpr (std::is_same_v<T, __half>) dst[i] = __float2half_rn(x);
        else dst[i] = __float2bfloat16_rn(x);
    }
};

/// The CUDA system's GEMM: y = x W^T by cuBLAS. Row-major x [m, k], W [n, k], y [m, n] are
/// column-major x^T, W^T, y^T, so cuBLAS computes y^T = op_T(W^T) x^T.
class cublas_gemm {
public:
    explicit cublas_gemm(gemm_precision precision) : state_(std::make_shared<state>()) {
        if (precision == gemm_precision::int8)
            detail::unsupported_precision("thrust-cuda", precision, "it runs fp32, fp16 and bf16; int8 is eigen's");
        state_->precision = precision;
        cuda_check(cublasCreate(&state_->handle), "cublasCreate");
    }

    void product(const_matrix_view<float> x, const_matrix_view<float> w, matrix_view<float> y) const {
        const int m = static_cast<int>(x.rows), n = static_cast<int>(w.rows), k = static_cast<int>(w.cols);
        const float one = 1.0f, zero = 0.0f;
        if (state_->precision == gemm_precision::fp32) {
            const std::lock_guard lock(state_->mutex);
            cuda_check(cublasSgemm(state_->handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w.data, static_cast<int>(w.stride),
                                   x.data, static_cast<int>(x.stride), &zero, y.data, static_cast<int>(y.stride)),
                       "cublasSgemm");
            return;
        }
        const bool half = state_->precision == gemm_precision::fp16;
        thrust::device_vector<std::uint16_t> x16(static_cast<std::size_t>(x.rows * x.cols)),
            w16(static_cast<std::size_t>(w.rows * w.cols));
        convert(x, thrust::raw_pointer_cast(x16.data()), half);
        convert(w, thrust::raw_pointer_cast(w16.data()), half);
        const cudaDataType_t type = half ? CUDA_R_16F : CUDA_R_16BF;
        const std::lock_guard lock(state_->mutex);
        cuda_check(cublasGemmEx(state_->handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, thrust::raw_pointer_cast(w16.data()),
                                type, k, thrust::raw_pointer_cast(x16.data()), type, k, &zero, y.data, CUDA_R_32F,
                                static_cast<int>(y.stride), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "cublasGemmEx");
    }

    /// C = op(A) op(B) + beta C in float or double (training's products; cublasSgemm or
    /// cublasDgemm). Row-major C [m, n] is column-major C^T = op(B)^T op(A)^T, and a row-major
    /// X is column-major X^T, so op(B) and op(A) pass with their own transposition flags.
    template <class T>
    void matmul(const_matrix_view<T> a, bool trans_a, const_matrix_view<T> b, bool trans_b, matrix_view<T> c, T beta) const {
        const int m = static_cast<int>(c.rows), n = static_cast<int>(c.cols), k = static_cast<int>(trans_a ? a.rows : a.cols);
        const T one = T(1);
        const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
        const std::lock_guard lock(state_->mutex);
        if constexpr (std::is_same_v<T, double>)
            cuda_check(cublasDgemm(state_->handle, op_b, op_a, n, m, k, &one, b.data, static_cast<int>(b.stride), a.data,
                                   static_cast<int>(a.stride), &beta, c.data, static_cast<int>(c.stride)),
                       "cublasDgemm");
        else
            cuda_check(cublasSgemm(state_->handle, op_b, op_a, n, m, k, &one, b.data, static_cast<int>(b.stride), a.data,
                                   static_cast<int>(a.stride), &beta, c.data, static_cast<int>(c.stride)),
                       "cublasSgemm");
    }

private:
    struct state {
        cublasHandle_t handle = nullptr;
        gemm_precision precision = gemm_precision::fp32;
        std::mutex mutex;
        ~state() {
            if (handle) cublasDestroy(handle);
        }
    };
    static void convert(const_matrix_view<float> x, std::uint16_t* dst, bool half) {
        const auto first = thrust::counting_iterator<index_t>(0);
        if (half) thrust::for_each(thrust::device, first, first + x.rows * x.cols, to_16bit<__half>{x, reinterpret_cast<__half*>(dst)});
        else
            thrust::for_each(thrust::device, first, first + x.rows * x.cols,
                             to_16bit<__nv_bfloat16>{x, reinterpret_cast<__nv_bfloat16*>(dst)});
    }
    std::shared_ptr<state> state_;
};

} // namespace detail

/// Thrust's CUDA system.
struct thrust_cuda {
    static constexpr bool host = false;
    static constexpr const char* name = "thrust-cuda";
    template <class T>
    using vector = thrust::device_vector<T>;
    using gemm = detail::cublas_gemm;
    static auto policy() { return thrust::device; }
    template <class T>
    static void upload(std::span<const T> host, T* dst) {
        if (!host.empty()) detail::cuda_check(cudaMemcpy(dst, host.data(), host.size_bytes(), cudaMemcpyHostToDevice), "upload");
    }
    template <class T>
    static void download(const T* src, std::span<T> host) {
        if (!host.empty()) detail::cuda_check(cudaMemcpy(host.data(), src, host.size_bytes(), cudaMemcpyDeviceToHost), "download");
    }
};

static_assert(training_backend<thrust_backend<thrust_cuda>>);

} // namespace hashee
