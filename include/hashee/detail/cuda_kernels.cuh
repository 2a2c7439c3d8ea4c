#pragma once
// The CUDA kernels behind thrust_backend<thrust_cuda> (cuda_backend.cuh): the GEMM epilogue,
// embeddings + LayerNorm, residual + LayerNorm, row gather/scatter, attention over a packed
// ragged batch, and fp32 -> fp16/bf16 conversion for reduced-precision GEMMs. nvcc only.
// Every kernel mirrors the CPU kernel of the same name in eigen_kernels.hpp.

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <hashee/backend.hpp>
#include <hashee/matrix_view.hpp>

namespace hashee::detail::cuda {

/// The largest head width attention_kernel holds in registers.
inline constexpr int max_head_dim = 128;
inline constexpr int row_threads = 128;

/// The sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ inline float block_sum(float v) {
    __shared__ float partial[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
    __syncthreads(); // partial may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < warps ? partial[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/// LayerNorm of one row in place, by the whole block: (y - mean) / sqrt(var + eps) * g + b.
__device__ inline void layer_norm_row(float* y, const float* gamma, const float* beta, index_t n, float eps) {
    float s = 0;
    for (index_t j = threadIdx.x; j < n; j += blockDim.x) s += y[j];
    const float mean = block_sum(s) / static_cast<float>(n);
    float q = 0;
    for (index_t j = threadIdx.x; j < n; j += blockDim.x) q += (y[j] - mean) * (y[j] - mean);
    const float inv = rsqrtf(block_sum(q) / static_cast<float>(n) + eps);
    for (index_t j = threadIdx.x; j < n; j += blockDim.x) y[j] = (y[j] - mean) * inv * gamma[j] + beta[j];
}

__global__ void embed_kernel(vector_view<const std::int32_t> ids, vector_view<const std::int32_t> type_ids,
                             vector_view<const std::int32_t> positions, const_matrix_view<float> word,
                             const_matrix_view<float> position, const_matrix_view<float> token_type,
                             vector_view<const float> gamma, vector_view<const float> beta, float eps,
                             matrix_view<float> out) {
    const index_t r = blockIdx.x;
    float* y = out.row(r);
    const float *a = word.row(ids.data[r]), *b = position.row(positions.data[r]), *c = token_type.row(type_ids.data[r]);
    for (index_t j = threadIdx.x; j < out.cols; j += blockDim.x) y[j] = a[j] + b[j] + c[j];
    __syncthreads();
    layer_norm_row(y, gamma.data, beta.data, out.cols, eps);
}

__global__ void add_layer_norm_kernel(matrix_view<float> y, const_matrix_view<float> residual, vector_view<const float> gamma,
                                      vector_view<const float> beta, float eps) {
    const index_t r = blockIdx.x;
    float* yr = y.row(r);
    const float* xr = residual.row(r);
    for (index_t j = threadIdx.x; j < y.cols; j += blockDim.x) yr[j] += xr[j];
    __syncthreads();
    layer_norm_row(yr, gamma.data, beta.data, y.cols, eps);
}

/// y[r] = x[rows[r]] (gather) or y[rows[r]] = x[r] (scatter), one block per listed row.
template <bool Scatter>
__global__ void move_rows_kernel(const_matrix_view<float> x, vector_view<const std::int32_t> rows, matrix_view<float> y) {
    const index_t i = blockIdx.x;
    const float* from = Scatter ? x.row(i) : x.row(rows.data[i]);
    float* to = Scatter ? y.row(rows.data[i]) : y.row(i);
    for (index_t j = threadIdx.x; j < x.cols; j += blockDim.x) to[j] = from[j];
}

__device__ inline float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

/// y += bias, then the epilogue, over every element of y.
__global__ void bias_epilogue_kernel(matrix_view<float> y, vector_view<const float> bias, epilogue e) {
    const index_t n = y.rows * y.cols;
    for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<index_t>(gridDim.x) * blockDim.x) {
        const index_t r = i / y.cols, c = i % y.cols;
        float v = y.row(r)[c] + (bias.size ? bias.data[c] : 0.0f);
        if (e == epilogue::gelu) v = gelu(v);
        else if (e == epilogue::tanh) v = tanhf(v);
        y.row(r)[c] = v;
    }
}

/// softmax(Q K^T / sqrt(dh)) V: block (sequence, head); each thread takes queries in turn and
/// runs an online softmax over the sequence's keys, its output row in registers.
__global__ void attention_kernel(const_matrix_view<float> q, const_matrix_view<float> k, const_matrix_view<float> v,
                                 vector_view<const std::int32_t> q_offsets, vector_view<const std::int32_t> kv_offsets,
                                 int heads, matrix_view<float> out) {
    const index_t seq = blockIdx.x / heads;
    const int head = static_cast<int>(blockIdx.x % heads);
    const index_t dh = q.cols / heads, col = head * dh;
    const index_t q0 = q_offsets.data[seq], q1 = q_offsets.data[seq + 1];
    const index_t k0 = kv_offsets.data[seq], k1 = kv_offsets.data[seq + 1];
    const float scale = rsqrtf(static_cast<float>(dh));
    for (index_t i = q0 + threadIdx.x; i < q1; i += blockDim.x) {
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
}

/// dst (rows x cols, compact) = src converted to T (__half or __nv_bfloat16).
template <class T>
__global__ void convert_kernel(const_matrix_view<float> src, T* dst) {
    const index_t n = src.rows * src.cols;
    for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<index_t>(gridDim.x) * blockDim.x) {
        const float x = src.row(i / src.cols)[i % src.cols];
        if constexpr (std::is_same_v<T, __half>) dst[i] = __float2half_rn(x);
        else dst[i] = __float2bfloat16_rn(x);
    }
}

/// Whether exit layer e is at least `layer` (the predicate of select_rows' stream compaction).
struct still_active {
    const std::int32_t* exit_layers;
    int layer;
    __host__ __device__ bool operator()(std::int32_t t) const { return exit_layers[t] >= layer; }
};

inline unsigned grid_for(index_t n, int threads = 256) {
    const index_t blocks = (n + threads - 1) / threads;
    return static_cast<unsigned>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

} // namespace hashee::detail::cuda
