#pragma once
// The CPU backend: the products through oneDNN where hashee was built with it (HASHEE_HAS_DNNL:
// matmul primitives on weights prepacked at load, detail/dnnl_products.hpp), else through
// Eigen 3.4 (detail/eigen_kernels.hpp); the row-wise work and attention in Eigen; a
// caller-sized team of threads for all parallelism, the products included (each oneDNN call
// runs on one of its threads; detail/thread_team.hpp). No global state: each eigen_cpu owns its
// team and its primitives, and the thread count is the caller's choice.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <hashee/core/detail/eigen.hpp>

#include <hashee/backend/backend.hpp>
#include <hashee/backend/precision.hpp>
#include <hashee/backend/detail/checks.hpp>
#include <hashee/backend/detail/eigen_kernels.hpp>
#include <hashee/backend/detail/thread_team.hpp>
#include <hashee/backend/detail/training_ops.hpp>
#include <hashee/backend/training_backend.hpp>
// HASHEE_EIGEN_GEMM keeps the products off oneDNN (the tests run that path too).
#if HASHEE_HAS_DNNL && !defined(HASHEE_EIGEN_GEMM)
#define HASHEE_GEMM_BY_DNNL 1
#include <hashee/backend/detail/dnnl_products.hpp>
#endif
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee {

class eigen_cpu : public detail::training_ops<eigen_cpu> {
public:
    static constexpr bool host_accessible = true;
    template <class T>
    using buffer = std::vector<T, Eigen::aligned_allocator<T>>;

    /// `threads` threads take part in every operation: the caller's and threads - 1 workers.
    /// `precision`: the products' inputs (precision.hpp); bf16 and int8 need hashee built with oneDNN.
    explicit eigen_cpu(int threads = 1, gemm_precision precision = gemm_precision::fp32)
        : precision_(precision), threads_(threads) {
        if (threads < 1) throw input_error("E22", "eigen_cpu: thread count must be >= 1, got " + std::to_string(threads));
#if HASHEE_GEMM_BY_DNNL
        if (precision == gemm_precision::fp16) detail::unsupported_precision("eigen", precision, "it runs fp32, bf16 and int8");
#else
        if (precision != gemm_precision::fp32)
            detail::unsupported_precision("eigen", precision, "this build has no oneDNN: it runs fp32");
#endif
        if (threads > 1) team_ = std::make_unique<detail::thread_team>(threads - 1);
#if HASHEE_GEMM_BY_DNNL
        products_ = std::make_unique<detail::dnnl_products>();
#endif
    }
    /// One thread per hardware thread.
    static eigen_cpu all_cores() { return eigen_cpu(static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))); }

    eigen_cpu(eigen_cpu&&) noexcept = default;
    eigen_cpu& operator=(eigen_cpu&&) noexcept = default;

    int threads() const { return threads_; }
    gemm_precision precision() const { return precision_; }

    /// The library and kernels that do this backend's products on this machine, at the shape
    /// rows x in -> out (benchmarks print it): oneDNN's implementation name (e.g.
    /// "brg:avx512_core") or Eigen's instruction sets.
    std::string product_kernel(index_t rows = 1024, index_t in = 384, index_t out = 1536) const {
#if HASHEE_GEMM_BY_DNNL
        return "oneDNN " + std::to_string(dnnl_version()->major) + "." + std::to_string(dnnl_version()->minor) + "." +
               std::to_string(dnnl_version()->patch) + ", " + products_->kernel(rows, in, out, dnnl_type());
#else
        (void)rows, (void)in, (void)out;
        return detail::eigen_simd_name();
#endif
    }

    // ---- memory -------------------------------------------------------------------------
    template <class T>
    buffer<T> allocate(index_t n) const { return buffer<T>(static_cast<std::size_t>(n)); }
    template <class T>
    void upload(std::span<const T> host, T* dst) const { std::copy(host.begin(), host.end(), dst); }
    template <class T>
    void download(const T* src, std::span<T> host) const { std::copy(src, src + host.size(), host.begin()); }

    // ---- algebra ------------------------------------------------------------------------
#if HASHEE_GEMM_BY_DNNL
    /// W [out, in] prepacked at load for oneDNN's kernels in the backend's precision (converted
    /// to bf16, or quantized to int8 per output channel), beside its plain view; and cut by
    /// output channels into one panel per thread (views of the same bytes; none where the
    /// layout does not allow it, dnnl_products::panel), for the products of few rows.
    struct weight_matrix {
        const_matrix_view<float> plain;
        detail::prepacked_weight packed;
        std::vector<std::pair<index_t, detail::prepacked_weight>> thread_panels;
    };
    weight_matrix prepare_weight(const_matrix_view<float> w) const { return with_panels({w, products_->prepack(w, dnnl_type()), {}}); }
    /// Rows [first, first + count) of a prepared W (its output channels) as a weight of their
    /// own: the same prepacked bytes where the layout allows, else prepacked anew.
    weight_matrix weight_rows(const weight_matrix& w, index_t first, index_t count) const {
        detail::check_weight_rows(w.plain, first, count);
        const const_matrix_view<float> rows = w.plain.block_rows(first, count);
        std::optional<detail::prepacked_weight> panel = products_->panel(w.packed, first, count);
        return with_panels({rows, panel ? std::move(*panel) : products_->prepack(rows, dnnl_type()), {}});
    }
    std::size_t weight_bytes(const weight_matrix& w) const { return w.packed.own_bytes(); }
    /// y = x W^T + bias, then `e`; W is [out, in]. Row blocks (detail::dnnl_row_blocks) go to the pool's
    /// threads, each one oneDNN call on its thread. On a plain W the product is fp32; on a
    /// prepared one, in the precision it was prepared in. A prepared product of at most one
    /// row block is cut by output channels instead (weight_matrix::thread_panels): each thread
    /// then reads its part of W only, not all of it.
    void linear(const_matrix_view<float> x, const_matrix_view<float> w, vector_view<const float> bias,
                matrix_view<float> y, epilogue e) const {
        detail::check_linear_shapes(x, w, bias, y);
        by_row_tiles(x, w, y, [&](const_matrix_view<float> xs, matrix_view<float> ys) { products_->linear(xs, w, bias, ys, e); });
    }
    void linear(const_matrix_view<float> x, const weight_matrix& w, vector_view<const float> bias, matrix_view<float> y,
                epilogue e) const {
        detail::check_linear_shapes(x, w.plain, bias, y);
        const detail::dnnl_row_blocks blocks(x.rows, w.plain.cols, w.plain.rows, threads_);
        if (blocks.by_columns && !w.thread_panels.empty()) {
            parallel_for(static_cast<index_t>(w.thread_panels.size()), [&](index_t t) {
                const auto& [first, panel] = w.thread_panels[static_cast<std::size_t>(t)];
                const index_t count = panel.desc.dims[1];
                products_->linear(x, panel, bias.slice(first, count), y.block_cols(first, count), e);
            });
            return;
        }
        by_row_tiles(x, w.plain, y,
                     [&](const_matrix_view<float> xs, matrix_view<float> ys) { products_->linear(xs, w.packed, bias, ys, e); });
    }
#else
    /// The products read W where it is: preparing it is the view itself.
    using weight_matrix = const_matrix_view<float>;
    weight_matrix prepare_weight(const_matrix_view<float> w) const { return w; }
    weight_matrix weight_rows(const weight_matrix& w, index_t first, index_t count) const {
        detail::check_weight_rows(w, first, count);
        return w.block_rows(first, count);
    }
    std::size_t weight_bytes(const weight_matrix&) const { return 0; }

    /// y = x W^T + bias, then `e`; W is [out, in]. Work is split in tiles (detail::linear_tiles).
    void linear(const_matrix_view<float> x, const_matrix_view<float> w, vector_view<const float> bias,
                matrix_view<float> y, epilogue e) const {
        detail::check_linear_shapes(x, w, bias, y);
        const detail::linear_tiles tiles(x, w, threads_);
        parallel_for(tiles.count(), [&](index_t t) { tiles.run(t, x, w, bias, y, e); });
    }
#endif

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
    using training_ops::gather_rows;  // in double
    using training_ops::scatter_rows;

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
        if (parts == 1 || !team_) {
            f(index_t{0}, n);
            return;
        }
        auto part = [&](int p) { f(n * p / parts, n * (p + 1) / parts); };
        team_->run(static_cast<int>(parts), part);
    }

private:
    friend class detail::training_ops<eigen_cpu>;
    /// training_ops' element work: f(i) for i in [0, n), in ranges of at least 256 items.
    template <class F>
    void for_each_index(index_t n, const F& f) const {
        parallel_for_ranges(n, 256, [&](index_t b, index_t e) {
            for (index_t i = b; i < e; ++i) f(i);
        });
    }
    /// training_ops' products: row blocks of C by Eigen (detail::matmul_rows) on the team.
    template <class T>
    void product(const_matrix_view<T> a, bool trans_a, const_matrix_view<T> b, bool trans_b, matrix_view<T> c, T beta) const {
        parallel_for_ranges(c.rows, detail::matmul_grain(c.cols, trans_a ? a.rows : a.cols),
                            [&](index_t r0, index_t r1) { detail::matmul_rows(a, trans_a, b, trans_b, c, beta, r0, r1); });
    }

#if HASHEE_GEMM_BY_DNNL
    /// Runs f(x rows, y rows) over the row blocks (detail::dnnl_row_blocks), spread over the
    /// threads in contiguous runs.
    template <class F>
    void by_row_tiles(const_matrix_view<float> x, const_matrix_view<float> w, matrix_view<float> y, F&& f) const {
        const detail::dnnl_row_blocks blocks(x.rows, w.cols, w.rows, threads_);
        const auto run = [&](index_t b0, index_t b1) {
            for (index_t i = b0; i < b1; ++i) f(x.block_rows(blocks.first(i), blocks.size(i)), y.block_rows(blocks.first(i), blocks.size(i)));
        };
        if (blocks.parallel) parallel_for_ranges(blocks.count, 1, run);
        else run(0, blocks.count);
    }

    weight_matrix with_panels(weight_matrix w) const {
        if (threads_ > 1) w.thread_panels = products_->column_panels(w.packed, threads_);
        return w;
    }
    dnnl_data_type_t dnnl_type() const {
        return precision_ == gemm_precision::bf16 ? dnnl_bf16 : precision_ == gemm_precision::int8 ? dnnl_s8 : dnnl_f32;
    }

    std::unique_ptr<detail::dnnl_products> products_;
#endif
    gemm_precision precision_;
    int threads_;
    std::unique_ptr<detail::thread_team> team_;
};

static_assert(training_backend<eigen_cpu>);

} // namespace hashee
