#pragma once
// What a device backend must provide. Model code is written once against these concepts and
// instantiated per backend (eigen_cpu; thrust_backend over Thrust's CPP, OMP and CUDA systems).
//
// A backend is an object that owns execution resources (a thread pool, a library handle) and
// exposes the tensor primitives of a BERT encoder as const member functions, so one backend
// may be shared by several threads. Pointers in views live in the backend's memory space.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include <hashee/core/matrix_view.hpp>

namespace hashee {

/// What a linear layer applies to its output after adding the bias.
enum class epilogue { none, gelu, tanh };

/// Memory: typed buffers with raw data pointers, allocation, and host <-> backend copies.
template <class B>
concept backend_memory = requires(const B& b, typename B::template buffer<float>& fb,
                                  typename B::template buffer<std::int32_t>& ib,
                                  std::span<const float> host_in, std::span<float> host_out,
                                  std::span<const std::int32_t> host_idx) {
    { B::host_accessible } -> std::convertible_to<bool>; ///< may views point into host memory?
    { b.template allocate<float>(index_t{}) } -> std::same_as<typename B::template buffer<float>>;
    { b.template allocate<std::int32_t>(index_t{}) } -> std::same_as<typename B::template buffer<std::int32_t>>;
    { fb.data() } -> std::same_as<float*>;
    { ib.data() } -> std::same_as<std::int32_t*>;
    b.upload(host_in, fb.data());
    b.upload(host_idx, ib.data());
    b.download(static_cast<const float*>(fb.data()), host_out);
};

/// Dense algebra: y = x W^T + bias, then the epilogue (W is [out, in] as in PyTorch), on a
/// plain W or on a `weight_matrix`: W as the backend prepared it once, at load, for its
/// products (a blocked layout its kernels read; or the plain view itself), which holds
/// weight_bytes of its own beside the checkpoint. weight_rows(W, first, count): the products
/// of W's rows [first, first + count) alone, at load, sharing W's prepared bytes where the
/// backend can (a fused Q/K/V weight serves its Q and its K/V parts).
template <class B>
concept backend_gemm = requires(const B& b, const_matrix_view<float> x, const_matrix_view<float> w,
                                const typename B::weight_matrix& prepared, vector_view<const float> bias,
                                matrix_view<float> y) {
    { b.prepare_weight(w) } -> std::same_as<typename B::weight_matrix>;
    { b.weight_rows(prepared, index_t{}, index_t{}) } -> std::same_as<typename B::weight_matrix>;
    { b.weight_bytes(prepared) } -> std::convertible_to<std::size_t>;
    b.linear(x, w, bias, y, epilogue::none);
    b.linear(x, prepared, bias, y, epilogue::none);
};

/// Row-wise primitives: embeddings + LayerNorm, residual + LayerNorm, and the packing of
/// active rows for token-level exits: their selection (a stream compaction), gather and scatter.
template <class B>
concept backend_rowwise = requires(const B& b, matrix_view<float> y, const_matrix_view<float> x,
                                   vector_view<const float> v, vector_view<const std::int32_t> idx,
                                   vector_view<std::int32_t> out_idx, float eps, int layer) {
    b.embed(idx, idx, idx, x, x, x, v, v, eps, y); ///< ids, type ids, positions, 3 tables, LayerNorm
    b.add_layer_norm(y, x, v, v, eps);              ///< y = LayerNorm(y + x)
    b.gather_rows(x, idx, y);                       ///< y[i] = x[idx[i]]
    b.scatter_rows(x, idx, y);                      ///< y[idx[i]] = x[i]
    /// out_idx[0..n) = the t, ascending, with idx[t] >= layer (idx: exit layers); returns n.
    { b.select_rows(idx, layer, out_idx) } -> std::convertible_to<index_t>;
};

/// Multi-head attention over a packed ragged batch: sequence s has queries
/// q_offsets[s]..q_offsets[s+1] and keys/values kv_offsets[s]..kv_offsets[s+1].
template <class B>
concept backend_attention = requires(const B& b, const_matrix_view<float> q, matrix_view<float> out,
                                     vector_view<const std::int32_t> offsets, int heads) {
    b.attention(q, q, q, offsets, offsets, heads, out);
};

template <class B>
concept backend = backend_memory<B> && backend_gemm<B> && backend_rowwise<B> && backend_attention<B>;

template <class B>
concept host_backend = backend<B> && B::host_accessible;

} // namespace hashee
