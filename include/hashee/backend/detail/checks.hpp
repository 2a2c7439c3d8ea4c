#pragma once
// The shape checks every backend runs before a primitive (eigen_cpu, thrust_backend over any
// system): plain code over views, no Eigen, so the CUDA backend's include closure stays free of
// it. A mismatch is a broken precondition of the call (the encoder never makes one), so a
// usage_error.

#include <cstdint>
#include <string>

#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee::detail {

inline std::string shape_str(index_t r, index_t c) {
    std::string s = "[";
    s.append(std::to_string(r)).append(", ").append(std::to_string(c)).append("]");
    return s;
}

/// y = x W^T + bias fits: x [m, k], W [n, k], y [m, n], bias empty or [n].
inline void check_linear_shapes(const_matrix_view<float> x, const_matrix_view<float> w, vector_view<const float> bias,
                                matrix_view<float> y) {
    if (x.cols != w.cols || y.rows != x.rows || y.cols != w.rows || (bias.size != 0 && bias.size != w.rows))
        throw usage_error("U40", "linear: shapes do not fit: x " + shape_str(x.rows, x.cols) + ", W " +
                                     shape_str(w.rows, w.cols) + ", bias [" + std::to_string(bias.size) + "], y " +
                                     shape_str(y.rows, y.cols));
}

/// Rows [first, first + count) lie within W and are not none (backend_gemm's weight_rows).
inline void check_weight_rows(const_matrix_view<float> w, index_t first, index_t count) {
    if (first < 0 || count < 1 || first + count > w.rows)
        throw usage_error("U42", "weight_rows: rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                                     ") of a weight with " + std::to_string(w.rows) + " rows");
}

/// The attention shapes fit; `offsets_readable`: the offsets are in host memory, so their last
/// values are checked against the row counts too (a device backend cannot read them here).
inline void check_attention_shapes(const_matrix_view<float> q, const_matrix_view<float> k, const_matrix_view<float> v,
                                   vector_view<const std::int32_t> q_offsets, vector_view<const std::int32_t> kv_offsets,
                                   int heads, matrix_view<float> out, bool offsets_readable = true) {
    const bool ok = heads > 0 && q.cols % heads == 0 && k.cols == q.cols && v.cols == q.cols && out.cols == q.cols &&
                    out.rows == q.rows && k.rows == v.rows && q_offsets.size >= 1 && q_offsets.size == kv_offsets.size &&
                    (!offsets_readable ||
                     (q_offsets.data[q_offsets.size - 1] == q.rows && kv_offsets.data[kv_offsets.size - 1] == k.rows));
    if (!ok)
        throw usage_error("U41", "attention: shapes do not fit: q " + shape_str(q.rows, q.cols) + ", k " +
                                     shape_str(k.rows, k.cols) + ", v " + shape_str(v.rows, v.cols) + ", heads " +
                                     std::to_string(heads) + ", " + std::to_string(q_offsets.size) + " query offsets");
}

/// C = op(A) op(B) + beta C fits: op(A) [m, k], op(B) [k, n], C [m, n] (training_backend's matmul).
template <class T>
void check_matmul_shapes(const_matrix_view<T> a, bool trans_a, const_matrix_view<T> b, bool trans_b, matrix_view<T> c) {
    const index_t m = trans_a ? a.cols : a.rows, k = trans_a ? a.rows : a.cols;
    const index_t kb = trans_b ? b.cols : b.rows, n = trans_b ? b.rows : b.cols;
    if (k != kb || c.rows != m || c.cols != n)
        throw usage_error("U43", std::string("matmul: shapes do not fit: A") + (trans_a ? "^T " : " ") + shape_str(a.rows, a.cols) +
                                     ", B" + (trans_b ? "^T " : " ") + shape_str(b.rows, b.cols) + ", C " + shape_str(c.rows, c.cols));
}

/// A training primitive's views fit one another (`what`: the primitive and the views at odds).
inline void check_training_shapes(bool fits, const char* what) {
    if (!fits) throw usage_error("U44", std::string(what) + ": shapes do not fit");
}

} // namespace hashee::detail
