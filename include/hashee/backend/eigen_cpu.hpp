#pragma once
// The CPU backend: Eigen 3.4 for every product, a caller-sized thread pool for parallelism.
// No global state: each eigen_cpu owns its pool, and the thread count is the caller's choice.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <hashee/core/detail/eigen.hpp>

#include <hashee/backend/backend.hpp>
#include <hashee/backend/detail/checks.hpp>
#include <hashee/backend/detail/eigen_kernels.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee {

class eigen_cpu {
public:
    static constexpr bool host_accessible = true;
    template <class T>
    using buffer = std::vector<T, Eigen::aligned_allocator<T>>;

    /// `threads` threads take part in every operation: the caller's and threads - 1 workers.
    explicit eigen_cpu(int threads = 1) : threads_(threads) {
        if (threads < 1) throw input_error("E22", "eigen_cpu: thread count must be >= 1, got " + std::to_string(threads));
        if (threads > 1) pool_ = std::make_unique<Eigen::ThreadPool>(threads - 1);
    }
    /// One thread per hardware thread.
    static eigen_cpu all_cores() { return eigen_cpu(static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))); }

    eigen_cpu(eigen_cpu&&) noexcept = default;
    eigen_cpu& operator=(eigen_cpu&&) noexcept = default;

    int threads() const { return threads_; }

    // ---- memory -------------------------------------------------------------------------
    template <class T>
    buffer<T> allocate(index_t n) const { return buffer<T>(static_cast<std::size_t>(n)); }
    template <class T>
    void upload(std::span<const T> host, T* dst) const { std::copy(host.begin(), host.end(), dst); }
    template <class T>
    void download(const T* src, std::span<T> host) const { std::copy(src, src + host.size(), host.begin()); }

    // ---- algebra ------------------------------------------------------------------------
    /// y = x W^T + bias, then `e`; W is [out, in]. Work is split in tiles (detail::linear_tiles).
    void linear(const_matrix_view<float> x, const_matrix_view<float> w, vector_view<const float> bias,
                matrix_view<float> y, epilogue e) const {
        detail::check_linear_shapes(x, w, bias, y);
        const detail::linear_tiles tiles(x, w, threads_);
        parallel_for(tiles.count(), [&](index_t t) { tiles.run(t, x, w, bias, y, e); });
    }

    void attention(const_matrix_view<float> q, const_matrix_view<float> k, const_matrix_view<float> v,
                   vector_view<const std::int32_t> q_offsets, vector_view<const std::int32_t> kv_offsets, int heads,
                   matrix_view<float> out) const {
        detail::check_attention_shapes(q, k, v, q_offsets, kv_offsets, heads, out);
        const index_t sequences = q_offsets.size - 1;
        parallel_for_ranges(sequences * heads, 1, [&](index_t begin, index_t end) {
            detail::attention_scratch scratch;
            for (index_t t = begin; t < end; ++t)
                detail::attention_head(q, k, v, q_offsets, kv_offsets, t / heads, static_cast<int>(t % heads), heads,
                                       out, scratch);
        });
    }

    // ---- row-wise ----------------------------------------------------------------------
    void embed(vector_view<const std::int32_t> ids, vector_view<const std::int32_t> type_ids,
               vector_view<const std::int32_t> positions, const_matrix_view<float> word,
               const_matrix_view<float> position, const_matrix_view<float> token_type, vector_view<const float> gamma,
               vector_view<const float> beta, float eps, matrix_view<float> out) const {
        parallel_for_ranges(out.rows, 16, [&](index_t begin, index_t end) {
            for (index_t r = begin; r < end; ++r)
                detail::embed_row(r, ids, type_ids, positions, word, position, token_type, gamma, beta, eps, out);
        });
    }

    void add_layer_norm(matrix_view<float> y, const_matrix_view<float> residual, vector_view<const float> gamma,
                        vector_view<const float> beta, float eps) const {
        parallel_for_ranges(y.rows, 16, [&](index_t begin, index_t end) {
            for (index_t r = begin; r < end; ++r) detail::add_layer_norm_row(r, y, residual, gamma, beta, eps);
        });
    }

    void gather_rows(const_matrix_view<float> x, vector_view<const std::int32_t> rows, matrix_view<float> y) const {
        for (index_t i = 0; i < rows.size; ++i)
            std::memcpy(y.row(i), x.row(rows.data[i]), static_cast<std::size_t>(x.cols) * sizeof(float));
    }

    void scatter_rows(const_matrix_view<float> x, vector_view<const std::int32_t> rows, matrix_view<float> y) const {
        for (index_t i = 0; i < rows.size; ++i)
            std::memcpy(y.row(rows.data[i]), x.row(i), static_cast<std::size_t>(x.cols) * sizeof(float));
    }

    index_t select_rows(vector_view<const std::int32_t> exit_layers, int layer, vector_view<std::int32_t> rows) const {
        index_t n = 0;
        for (index_t t = 0; t < exit_layers.size; ++t)
            if (exit_layers.data[t] >= layer) rows.data[n++] = static_cast<std::int32_t>(t);
        return n;
    }

    // ---- parallelism -------------------------------------------------------------------
    /// Runs f(i) for i in [0, tasks), one task per participating thread at most at once.
    template <class F>
    void parallel_for(index_t tasks, F&& f) const {
        parallel_for_ranges(tasks, 1, [&](index_t b, index_t e) {
            for (index_t i = b; i < e; ++i) f(i);
        });
    }

    /// Splits [0, n) into at most threads() contiguous ranges of at least `grain` items and
    /// runs f(begin, end) on each; the calling thread takes the first range.
    template <class F>
    void parallel_for_ranges(index_t n, index_t grain, F&& f) const {
        if (n <= 0) return;
        const index_t parts = std::clamp<index_t>(n / std::max<index_t>(grain, 1), 1, threads_);
        if (parts == 1 || !pool_) {
            f(index_t{0}, n);
            return;
        }
        Eigen::Barrier done(static_cast<unsigned>(parts - 1));
        for (index_t p = 1; p < parts; ++p) {
            pool_->Schedule([&, p] {
                f(n * p / parts, n * (p + 1) / parts);
                done.Notify();
            });
        }
        f(index_t{0}, n / parts);
        done.Wait();
    }

private:
    int threads_;
    std::unique_ptr<Eigen::ThreadPool> pool_;
};

static_assert(backend<eigen_cpu>);

} // namespace hashee
