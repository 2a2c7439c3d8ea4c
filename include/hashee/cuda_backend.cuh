#pragma once
// thrust_backend<thrust_cuda>: the Thrust backend on Thrust's CUDA system (nvcc only; needs
// --expt-relaxed-constexpr, which the hashee CMake target adds for CUDA sources).
//  - memory: thrust::device_vector; upload/download are cudaMemcpy.
//  - GEMM: cuBLAS (cublasSgemm in fp32; cublasGemmEx with fp16 or bf16 inputs and fp32
//    accumulation on tensor cores when the backend is made with gemm_precision::fp16/bf16;
//    inputs and weights are converted per call, which is correct for any weights but costs a
//    pass over W: keeping 16-bit weights in bert_weights is the next step).
//  - LayerNorm, GELU (GEMM epilogue), softmax and attention over packed ragged batches, row
//    gather and scatter: CUDA kernels (detail/cuda_kernels.cuh).
//  - selection of active rows: thrust::copy_if on the device (scan + scatter).
// Everything runs on the legacy default stream, so results are ready when download returns.
// One backend may be shared by threads: its cuBLAS calls are serialised.

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <thrust/copy.h>
#include <thrust/device_ptr.h>
#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#include <thrust/iterator/counting_iterator.h>

#include <hashee/detail/cuda_kernels.cuh>
#include <hashee/detail/eigen_kernels.hpp>
#include <hashee/error.hpp>
#include <hashee/thrust_backend.hpp>

namespace hashee {

/// Thrust's CUDA system.
struct thrust_cuda {
    static constexpr bool host = false;
    static constexpr const char* name = "thrust-cuda";
    template <class T>
    using vector = thrust::device_vector<T>;
};

/// The input precision of the CUDA backend's GEMMs (accumulation is fp32 in every case).
enum class gemm_precision { fp32, fp16, bf16 };

namespace detail::cuda {
inline void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw device_error(located(what, cudaGetErrorString(e)));
}
inline void check(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) throw device_error(located(what, "cuBLAS status " + std::to_string(static_cast<int>(s))));
}
} // namespace detail::cuda

template <>
class thrust_backend<thrust_cuda> {
public:
    static constexpr bool host_accessible = false;

    template <class T>
    using buffer = detail::thrust_buffer<thrust::device_vector<T>>;

    /// `threads` is accepted for symmetry with the CPU backends and ignored.
    explicit thrust_backend(int threads = 1, gemm_precision precision = gemm_precision::fp32)
        : state_(std::make_shared<state>()) {
        if (threads < 1) throw input_error("thrust_backend: thread count must be >= 1, got " + std::to_string(threads));
        state_->precision = precision;
        detail::cuda::check(cublasCreate(&state_->handle), "cublasCreate");
        if (precision != gemm_precision::fp32)
            detail::cuda::check(cublasSetMathMode(state_->handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    }

    gemm_precision precision() const { return state_->precision; }

    // ---- memory -------------------------------------------------------------------------
    template <class T>
    buffer<T> allocate(index_t n) const { return buffer<T>(n); }
    template <class T>
    void upload(std::span<const T> host, T* dst) const {
        if (!host.empty())
            detail::cuda::check(cudaMemcpy(dst, host.data(), host.size_bytes(), cudaMemcpyHostToDevice), "upload");
    }
    template <class T>
    void download(const T* src, std::span<T> host) const {
        if (!host.empty())
            detail::cuda::check(cudaMemcpy(host.data(), src, host.size_bytes(), cudaMemcpyDeviceToHost), "download");
    }

    // ---- algebra ------------------------------------------------------------------------
    /// y = x W^T + bias, then `e`. Row-major x [m, k], W [n, k], y [m, n] are column-major
    /// x^T, W^T, y^T, so cuBLAS computes y^T = op_T(W^T) x^T.
    void linear(const_matrix_view<float> x, const_matrix_view<float> w, vector_view<const float> bias,
                matrix_view<float> y, epilogue e) const {
        detail::check_linear_shapes(x, w, bias, y);
        if (y.rows == 0 || y.cols == 0) return;
        const float one = 1.0f, zero = 0.0f;
        const int m = static_cast<int>(x.rows), n = static_cast<int>(w.rows), k = static_cast<int>(w.cols);
        if (state_->precision == gemm_precision::fp32) {
            const std::lock_guard lock(state_->mutex);
            detail::cuda::check(cublasSgemm(state_->handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w.data,
                                            static_cast<int>(w.stride), x.data, static_cast<int>(x.stride), &zero, y.data,
                                            static_cast<int>(y.stride)),
                                "cublasSgemm");
        } else {
            reduced_gemm(x, w, y);
        }
        detail::cuda::bias_epilogue_kernel<<<detail::cuda::grid_for(y.rows * y.cols), 256>>>(y, bias, e);
        detail::cuda::check(cudaGetLastError(), "linear epilogue");
    }

    void attention(const_matrix_view<float> q, const_matrix_view<float> k, const_matrix_view<float> v,
                   vector_view<const std::int32_t> q_offsets, vector_view<const std::int32_t> kv_offsets, int heads,
                   matrix_view<float> out) const {
        detail::check_attention_shapes(q, k, v, q_offsets, kv_offsets, heads, out, /*offsets_readable=*/false);
        if (q.cols / heads > detail::cuda::max_head_dim)
            throw input_error("attention: head width " + std::to_string(q.cols / heads) + " exceeds the CUDA kernel's " +
                              std::to_string(detail::cuda::max_head_dim));
        const index_t blocks = (q_offsets.size - 1) * heads;
        if (blocks == 0) return;
        detail::cuda::attention_kernel<<<static_cast<unsigned>(blocks), 64>>>(q, k, v, q_offsets, kv_offsets, heads, out);
        detail::cuda::check(cudaGetLastError(), "attention");
    }

    // ---- row-wise ----------------------------------------------------------------------
    void embed(vector_view<const std::int32_t> ids, vector_view<const std::int32_t> type_ids,
               vector_view<const std::int32_t> positions, const_matrix_view<float> word,
               const_matrix_view<float> position, const_matrix_view<float> token_type, vector_view<const float> gamma,
               vector_view<const float> beta, float eps, matrix_view<float> out) const {
        if (out.rows == 0) return;
        detail::cuda::embed_kernel<<<static_cast<unsigned>(out.rows), detail::cuda::row_threads>>>(
            ids, type_ids, positions, word, position, token_type, gamma, beta, eps, out);
        detail::cuda::check(cudaGetLastError(), "embed");
    }

    void add_layer_norm(matrix_view<float> y, const_matrix_view<float> residual, vector_view<const float> gamma,
                        vector_view<const float> beta, float eps) const {
        if (y.rows == 0) return;
        detail::cuda::add_layer_norm_kernel<<<static_cast<unsigned>(y.rows), detail::cuda::row_threads>>>(y, residual, gamma,
                                                                                                       beta, eps);
        detail::cuda::check(cudaGetLastError(), "add_layer_norm");
    }

    void gather_rows(const_matrix_view<float> x, vector_view<const std::int32_t> rows, matrix_view<float> y) const {
        move_rows<false>(x, rows, y);
    }
    void scatter_rows(const_matrix_view<float> x, vector_view<const std::int32_t> rows, matrix_view<float> y) const {
        move_rows<true>(x, rows, y);
    }

    index_t select_rows(vector_view<const std::int32_t> exit_layers, int layer, vector_view<std::int32_t> rows) const {
        const auto out = thrust::device_pointer_cast(rows.data);
        const auto end = thrust::copy_if(thrust::device, thrust::counting_iterator<std::int32_t>(0),
                                         thrust::counting_iterator<std::int32_t>(static_cast<std::int32_t>(exit_layers.size)),
                                         out, detail::cuda::still_active{exit_layers.data, layer});
        return end - out;
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

    template <bool Scatter>
    void move_rows(const_matrix_view<float> x, vector_view<const std::int32_t> rows, matrix_view<float> y) const {
        if (rows.size == 0) return;
        detail::cuda::move_rows_kernel<Scatter><<<static_cast<unsigned>(rows.size), detail::cuda::row_threads>>>(x, rows, y);
        detail::cuda::check(cudaGetLastError(), Scatter ? "scatter_rows" : "gather_rows");
    }

    /// x (fp32) -> 16-bit `dst`, compact [rows, cols].
    void convert(const_matrix_view<float> x, std::uint16_t* dst) const {
        if (state_->precision == gemm_precision::fp16)
            detail::cuda::convert_kernel<__half><<<detail::cuda::grid_for(x.rows * x.cols), 256>>>(x, reinterpret_cast<__half*>(dst));
        else
            detail::cuda::convert_kernel<__nv_bfloat16>
                <<<detail::cuda::grid_for(x.rows * x.cols), 256>>>(x, reinterpret_cast<__nv_bfloat16*>(dst));
        detail::cuda::check(cudaGetLastError(), "convert");
    }

    /// y = x W^T on tensor cores: 16-bit inputs, fp32 accumulation and output.
    void reduced_gemm(const_matrix_view<float> x, const_matrix_view<float> w, matrix_view<float> y) const {
        const int m = static_cast<int>(x.rows), n = static_cast<int>(w.rows), k = static_cast<int>(w.cols);
        const cudaDataType_t type = state_->precision == gemm_precision::fp16 ? CUDA_R_16F : CUDA_R_16BF;
        thrust::device_vector<std::uint16_t> x16(static_cast<std::size_t>(x.rows * x.cols)),
            w16(static_cast<std::size_t>(w.rows * w.cols));
        convert(x, thrust::raw_pointer_cast(x16.data()));
        convert(w, thrust::raw_pointer_cast(w16.data()));
        const float one = 1.0f, zero = 0.0f;
        const std::lock_guard lock(state_->mutex);
        detail::cuda::check(cublasGemmEx(state_->handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one,
                                         thrust::raw_pointer_cast(w16.data()), type, k,
                                         thrust::raw_pointer_cast(x16.data()), type, k, &zero, y.data, CUDA_R_32F,
                                         static_cast<int>(y.stride), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                            "cublasGemmEx");
    }

    std::shared_ptr<state> state_;
};

static_assert(backend<thrust_backend<thrust_cuda>>);

} // namespace hashee
