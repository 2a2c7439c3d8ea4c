#pragma once
// What a backend must provide to train (backward passes and the forward pieces they need), as a
// concept of its own beside `backend`, so an inference-only backend stays valid. Every primitive
// runs in T = float (training accumulates in fp32, whatever precision the forward products take)
// and T = double (the finite-difference tests). eigen_cpu and thrust_backend<System> (every
// system, CUDA included) provide them through detail::training_ops; docs/training.md gives
// their equations.

#include <concepts>
#include <cstdint>

#include <hashee/backend/adamw_update.hpp>
#include <hashee/backend/backend.hpp>
#include <hashee/backend/detail/train_functors.hpp> // attention_dropout
#include <hashee/core/matrix_view.hpp>

namespace hashee {

/// The training primitives in element type T.
template <class B, class T>
concept training_primitives = requires(const B& b, matrix_view<T> m, const_matrix_view<T> c, vector_view<T> v,
                                       vector_view<const T> cv, vector_view<const std::int32_t> idx, T s, int heads) {
    typename B::template buffer<T>;
    { b.template allocate<T>(index_t{}).data() } -> std::same_as<T*>;
    b.matmul(c, bool{}, c, bool{}, m, s);                  ///< C = op(A) op(B) + beta C
    b.add_bias_epilogue(m, cv, epilogue::none, m);         ///< pre += bias; out = epilogue(pre)
    b.epilogue_backward(c, m, epilogue::none);             ///< dy *= epilogue'(pre)
    b.add_column_sums(c, v);                               ///< db += sum over rows of dy
    b.add_scaled(m, c, s);                                 ///< y += alpha x
    b.fill(m, s);                                          ///< y = value
    b.layer_norm_train(c, cv, cv, s, m, m, v);             ///< y, xhat, rstd
    b.layer_norm_backward(c, c, cv, cv, m, v, v);          ///< dx; dgamma, dbeta +=
    b.attention_train(c, c, c, idx, idx, heads, m, m);     ///< out, lse
    b.attention_backward(c, c, c, c, c, c, idx, idx, heads, m, m, m); ///< dq, dk, dv
    b.gather_rows(c, idx, m);                              ///< y[i] = x[idx[i]]
    b.scatter_rows(c, idx, m);                             ///< y[idx[i]] = x[i]
    b.scatter_add_rows(c, idx, m);                         ///< y[idx[i]] += x[i]
    b.embed_sum(idx, idx, idx, c, c, c, m);                ///< word + position + token type
    b.embed_backward(c, idx, idx, idx, m, m, m);           ///< the tables' gradients +=
    b.dropout(m, double{}, std::uint64_t{}, std::uint64_t{}); ///< in place; the backward is the same call
    b.adamw_update(m, c, m, m, adamw_scalars{}); ///< theta, m, v updated
    { b.squared_norm(c) } -> std::same_as<double>;         ///< sum of squares
};

template <class B>
concept training_backend = backend<B> && training_primitives<B, float> && training_primitives<B, double>;

} // namespace hashee
