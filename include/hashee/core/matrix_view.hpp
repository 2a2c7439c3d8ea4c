#pragma once
// A row-major matrix view that owns nothing. Its pointer lives in the memory space of the
// backend that made it (host memory for eigen_cpu, device memory for a CUDA backend).

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace hashee {

using index_t = std::int64_t;

template <class T>
struct matrix_view {
    T* data = nullptr;
    index_t rows = 0;
    index_t cols = 0;
    index_t stride = 0; ///< elements between the starts of two consecutive rows (>= cols)

    constexpr matrix_view() = default;
    constexpr matrix_view(T* d, index_t r, index_t c) : data(d), rows(r), cols(c), stride(c) {}
    constexpr matrix_view(T* d, index_t r, index_t c, index_t s) : data(d), rows(r), cols(c), stride(s) {}

    /// A view of const elements converts implicitly from a view of mutable ones.
    template <class U>
        requires(std::is_same_v<std::remove_const_t<T>, U> && std::is_const_v<T>)
    constexpr matrix_view(const matrix_view<U>& o) : data(o.data), rows(o.rows), cols(o.cols), stride(o.stride) {}

    constexpr T* row(index_t r) const { return data + r * stride; }
    constexpr matrix_view block_rows(index_t first, index_t count) const {
        assert(first >= 0 && first + count <= rows);
        return {data + first * stride, count, cols, stride};
    }
    constexpr matrix_view block_cols(index_t first, index_t count) const {
        assert(first >= 0 && first + count <= cols);
        return {data + first, rows, count, stride};
    }
    constexpr bool empty() const { return rows == 0 || cols == 0; }
};

template <class T>
using const_matrix_view = matrix_view<const T>;

/// A vector view (bias, LayerNorm parameters, index lists) in a backend's memory space.
template <class T>
struct vector_view {
    T* data = nullptr;
    index_t size = 0;

    constexpr vector_view() = default;
    constexpr vector_view(T* d, index_t n) : data(d), size(n) {}
    template <class U>
        requires(std::is_same_v<std::remove_const_t<T>, U> && std::is_const_v<T>)
    constexpr vector_view(const vector_view<U>& o) : data(o.data), size(o.size) {}

    /// Elements [first, first + count); an empty view stays empty (an absent bias).
    constexpr vector_view slice(index_t first, index_t count) const {
        assert(size == 0 || (first >= 0 && first + count <= size));
        return size == 0 ? vector_view{} : vector_view{data + first, count};
    }
};

} // namespace hashee
