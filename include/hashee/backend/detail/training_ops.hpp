#pragma once
// The training primitives (training_backend.hpp), written once for every backend as a base
// class: eigen_cpu and thrust_backend<System> derive from training_ops<themselves> and provide
//  - for_each_index(n, f): f(i) for i in [0, n) on their threads or device (the functors of
//    detail/train_functors.hpp);
//  - allocate<T>(n): scratch in their memory;
//  - product(a, trans_a, b, trans_b, c, beta): the matrix product on their library.
// Each primitive checks its shapes, then runs its functors. Parameter gradients (dW, db, dgamma,
// dbeta, the embedding tables) accumulate (+=): the caller zeroes them once per step, and
// accumulated micro-batches add up. Activation gradients are written.

#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include <hashee/backend/backend.hpp>
#include <hashee/backend/detail/checks.hpp>
#include <hashee/backend/detail/thrust_functors.hpp>
#include <hashee/backend/detail/train_functors.hpp>
#include <hashee/core/detail/random.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee::detail {

/// Parameters that take no part in deducing T (it comes from a primitive's output), so views of
/// mutable T and plain numbers pass where const views and T are expected.
template <class T>
using input = std::type_identity_t<const_matrix_view<T>>;
template <class T>
using input_vector = std::type_identity_t<vector_view<const T>>;

template <class Backend>
class training_ops {
public:
    /// C = op(A) op(B) + beta C, op(X) = X or X^T (beta 0: C is written, whatever it held).
    template <class T>
    void matmul(input<T> a, bool trans_a, input<T> b, bool trans_b, matrix_view<T> c, std::type_identity_t<T> beta = T(0)) const {
        check_matmul_shapes(a, trans_a, b, trans_b, c);
        if (c.empty()) return;
        if ((trans_a ? a.rows : a.cols) == 0) {
            run(c.rows * c.cols, train_fn::scale<T>{c, beta});
            return;
        }
        self().product(a, trans_a, b, trans_b, c, beta);
    }

    /// pre += bias (empty: none), then out = epilogue(pre) (out may be pre itself).
    template <class T>
    void add_bias_epilogue(matrix_view<T> pre, input_vector<T> bias, epilogue e, matrix_view<T> out) const {
        check_training_shapes(same_shape(pre, out) && (bias.size == 0 || bias.size == pre.cols),
                              "add_bias_epilogue: pre and out [rows, n], bias [n] or empty");
        run(pre.rows * pre.cols, train_fn::add_bias_epilogue<T>{pre, bias, e, out});
    }

    /// dy *= epilogue'(pre), pre: the epilogue's input.
    template <class T>
    void epilogue_backward(input<T> pre, matrix_view<T> dy, epilogue e) const {
        check_training_shapes(same_shape(pre, dy), "epilogue_backward: pre and dy [rows, n]");
        if (e != epilogue::none) run(dy.rows * dy.cols, train_fn::epilogue_backward<T>{pre, dy, e});
    }

    /// sums += the column sums of x (the bias gradient of a linear layer: db += sum over rows of dy).
    template <class T>
    void add_column_sums(input<T> x, vector_view<T> sums) const {
        check_training_shapes(sums.size == x.cols, "add_column_sums: x [rows, n], sums [n]");
        run(x.cols, train_fn::add_column_sums<T>{x, sums});
    }

    /// y += alpha x.
    template <class T>
    void add_scaled(matrix_view<T> y, input<T> x, std::type_identity_t<T> alpha = T(1)) const {
        check_training_shapes(same_shape(x, y), "add_scaled: x and y [rows, n]");
        run(y.rows * y.cols, train_fn::add_scaled<T>{y, x, alpha});
    }

    /// y = value everywhere.
    template <class T>
    void fill(matrix_view<T> y, std::type_identity_t<T> value) const {
        run(y.rows * y.cols, train_fn::fill<T>{y, value});
    }

    /// y = LayerNorm(x) = xhat gamma + beta, keeping xhat and rstd = 1 / sqrt(var + eps) per row.
    template <class T>
    void layer_norm_train(input<T> x, input_vector<T> gamma, input_vector<T> beta, std::type_identity_t<T> eps,
                          matrix_view<T> y, matrix_view<T> xhat, vector_view<T> rstd) const {
        check_training_shapes(same_shape(x, y) && same_shape(x, xhat) && gamma.size == x.cols && beta.size == x.cols &&
                                  rstd.size == x.rows && x.cols > 0,
                              "layer_norm_train: x, y, xhat [rows, d], gamma and beta [d], rstd [rows]");
        run(x.rows, train_fn::layer_norm_train_row<T>{x, gamma, beta, eps, y, xhat, rstd});
    }

    /// dx = LayerNorm's input gradient (written); dgamma += sum dy xhat, dbeta += sum dy.
    template <class T>
    void layer_norm_backward(input<T> dy, input<T> xhat, input_vector<T> rstd,
                             input_vector<T> gamma, matrix_view<T> dx, vector_view<T> dgamma, vector_view<T> dbeta) const {
        check_training_shapes(same_shape(dy, xhat) && same_shape(dy, dx) && rstd.size == dy.rows && gamma.size == dy.cols &&
                                  dgamma.size == dy.cols && dbeta.size == dy.cols,
                              "layer_norm_backward: dy, xhat, dx [rows, d], gamma, dgamma, dbeta [d], rstd [rows]");
        run(dy.rows, train_fn::layer_norm_backward_row<T>{dy, xhat, rstd, gamma, dx});
        run(dy.cols, train_fn::layer_norm_parameter_grads<T>{dy, xhat, dgamma, dbeta});
    }

    /// attention (backend.hpp) in T, keeping lse [q rows, heads]: the log of each query's
    /// softmax denominator, for attention_backward. `drop`: dropout on the probabilities (the
    /// same drop to attention_backward).
    template <class T>
    void attention_train(input<T> q, input<T> k, input<T> v,
                         vector_view<const std::int32_t> q_offsets, vector_view<const std::int32_t> kv_offsets, int heads,
                         matrix_view<T> out, matrix_view<T> lse, train_fn::attention_dropout drop = {}) const {
        check_attention(q, k, v, q_offsets, kv_offsets, heads, out);
        check_training_shapes(lse.rows == q.rows && lse.cols == heads, "attention_train: lse [q rows, heads]");
        check_probability(drop.p);
        run(q.rows * heads, train_fn::attention_train_query<T>{q, k, v, q_offsets, kv_offsets, heads, out, lse, drop});
    }

    /// The gradients of attention_train's inputs (written) from dout, its output and lse: per
    /// query and head, then per key and head, each summed in order (no atomics).
    template <class T>
    void attention_backward(input<T> q, input<T> k, input<T> v,
                            input<T> out, input<T> dout, input<T> lse,
                            vector_view<const std::int32_t> q_offsets, vector_view<const std::int32_t> kv_offsets, int heads,
                            matrix_view<T> dq, matrix_view<T> dk, matrix_view<T> dv, train_fn::attention_dropout drop = {}) const {
        check_attention(q, k, v, q_offsets, kv_offsets, heads, dq);
        check_probability(drop.p);
        check_training_shapes(same_shape(out, q) && same_shape(dout, q) && lse.rows == q.rows && lse.cols == heads &&
                                  same_shape(dk, k) && same_shape(dv, v),
                              "attention_backward: out, dout, dq like q; dk, dv like k; lse [q rows, heads]");
        auto delta_buffer = self().template allocate<T>(q.rows * heads);
        const matrix_view<T> delta(delta_buffer.data(), q.rows, heads);
        run(q.rows * heads, train_fn::attention_backward_query<T>{q, k, v, out, dout, lse, q_offsets, kv_offsets, heads, delta, dq, drop});
        run(k.rows * heads, train_fn::attention_backward_key<T>{q, k, v, dout, lse, delta, q_offsets, kv_offsets, heads, dk, dv, drop});
    }

    /// y[i] = x[rows[i]] and y[rows[i]] = x[i] in double (each backend has its own in float).
    void gather_rows(const_matrix_view<double> x, vector_view<const std::int32_t> rows, matrix_view<double> y) const {
        run(rows.size * x.cols, thrust_fn::move_rows<false, double>{x, rows, y});
    }
    void scatter_rows(const_matrix_view<double> x, vector_view<const std::int32_t> rows, matrix_view<double> y) const {
        run(rows.size * x.cols, thrust_fn::move_rows<true, double>{x, rows, y});
    }

    /// y[rows[i]] += x[i]; the rows are distinct (the active rows of a layer).
    template <class T>
    void scatter_add_rows(input<T> x, vector_view<const std::int32_t> rows, matrix_view<T> y) const {
        check_training_shapes(x.rows == rows.size && x.cols == y.cols, "scatter_add_rows: x [rows, n], y [any, n]");
        run(x.rows * x.cols, train_fn::scatter_add_rows<T>{x, rows, y});
    }

    /// out = word[ids] + position[positions] + token_type[type_ids] (embed without its LayerNorm).
    template <class T>
    void embed_sum(vector_view<const std::int32_t> ids, vector_view<const std::int32_t> type_ids,
                   vector_view<const std::int32_t> positions, input<T> word, input<T> position,
                   input<T> token_type, matrix_view<T> out) const {
        check_training_shapes(ids.size == out.rows && type_ids.size == out.rows && positions.size == out.rows &&
                                  word.cols == out.cols && position.cols == out.cols && token_type.cols == out.cols,
                              "embed_sum: ids, type ids, positions [rows]; the tables and out [*, d]");
        run(out.rows * out.cols, train_fn::embed_sum<T>{ids, type_ids, positions, word, position, token_type, out});
    }

    /// The tables' gradients += dout's rows, at each token's ids, in token order.
    template <class T>
    void embed_backward(input<T> dout, vector_view<const std::int32_t> ids, vector_view<const std::int32_t> type_ids,
                        vector_view<const std::int32_t> positions, matrix_view<T> dword, matrix_view<T> dposition,
                        matrix_view<T> dtoken_type) const {
        check_training_shapes(ids.size == dout.rows && type_ids.size == dout.rows && positions.size == dout.rows &&
                                  dword.cols == dout.cols && dposition.cols == dout.cols && dtoken_type.cols == dout.cols,
                              "embed_backward: ids, type ids, positions [rows]; the tables and dout [*, d]");
        run(dout.cols, train_fn::embed_backward_column<T>{dout, ids, type_ids, positions, dword, dposition, dtoken_type});
    }

    /// Inverted dropout with probability p in [0, 1), in place; the mask is a function of
    /// (seed, key, element) alone, so the same call on the gradient is the backward.
    template <class T>
    void dropout(matrix_view<T> x, double p, std::uint64_t seed, std::uint64_t key) const {
        check_probability(p);
        if (p > 0.0) run(x.rows * x.cols, train_fn::dropout<T>{x, p, stream_seed(seed, key)});
    }

    /// One AdamW step of a parameter theta with its gradient and moments m, v (all of one shape).
    template <class T>
    void adamw_update(matrix_view<T> theta, input<T> grad, matrix_view<T> m, matrix_view<T> v, const adamw_scalars& s) const {
        check_training_shapes(same_shape(theta, grad) && same_shape(theta, m) && same_shape(theta, v),
                              "adamw_update: theta, grad, m and v [rows, n]");
        run(theta.rows * theta.cols, train_fn::adamw_update<T>{theta, grad, m, v, s});
    }

    /// The sum of x's squares, in double: per row in parallel, the rows added in order on the
    /// host (the same on every backend and thread count).
    template <class T>
    double squared_norm(const_matrix_view<T> x) const {
        auto row_sums = self().template allocate<double>(x.rows);
        run(x.rows, train_fn::row_squares<T>{x, row_sums.data()});
        std::vector<double> host(static_cast<std::size_t>(x.rows));
        self().download(static_cast<const double*>(row_sums.data()), std::span<double>(host));
        double total = 0;
        for (const double s : host) total += s;
        return total;
    }

private:
    static void check_probability(double p) {
        if (!(p >= 0.0 && p < 1.0)) throw usage_error("U45", "dropout: probability must be in [0, 1), not " + std::to_string(p));
    }
    const Backend& self() const { return static_cast<const Backend&>(*this); }
    template <class F>
    void run(index_t n, F f) const {
        if (n > 0) self().for_each_index(n, f);
    }
    template <class T, class U>
    static bool same_shape(matrix_view<T> a, matrix_view<U> b) {
        return a.rows == b.rows && a.cols == b.cols;
    }
    template <class T>
    void check_attention(const_matrix_view<T> q, const_matrix_view<T> k, const_matrix_view<T> v,
                         vector_view<const std::int32_t> q_offsets, vector_view<const std::int32_t> kv_offsets, int heads,
                         matrix_view<T> out) const {
        const auto as_float = [](auto m) { return const_matrix_view<float>(nullptr, m.rows, m.cols); };
        check_attention_shapes(as_float(q), as_float(k), as_float(v), q_offsets, kv_offsets, heads,
                               matrix_view<float>(nullptr, out.rows, out.cols), Backend::host_accessible);
        if (q.cols / heads > thrust_fn::max_head_dim)
            throw input_error("E33", "attention: head width " + std::to_string(q.cols / heads) + " exceeds the training kernels' " +
                                         std::to_string(thrust_fn::max_head_dim));
    }
};

} // namespace hashee::detail
