#pragma once
// eigen_cpu's products through oneDNN (HASHEE_HAS_DNNL): y = x W^T + bias, then the epilogue,
// as a matmul primitive whose weights were reordered once, at load, into the blocked layout
// oneDNN's kernels read (prepacked_weight; a panel of its output channels is a prepacked_weight
// over the same bytes). Primitives are made once per shape class (rows, in, out, type, W's
// layout, bias, epilogue; x and y are always contiguous when they reach it) and kept by the
// product engine; row counts are rounded up to a multiple of row_quantum
// (the odd rows run from a zero-padded copy), so the classes stay few whatever the batch.
// Weights prepacked for bf16 make bf16 products: x's rows are rounded to bf16 (to nearest even)
// as they are staged, accumulation and y stay fp32. On a CPU for which oneDNN has no bf16
// kernels (no AVX512_BF16 or AMX: AVX2 machines), the same numbers come from fp32 kernels on
// bf16-rounded inputs (W rounded at load, x per product): the same results everywhere, faster
// where the hardware has bf16; kernel() says which ran. Weights prepacked for int8 are
// quantized per output channel (quantize_int8: symmetric, scale max|w|/127, or /63 on CPUs
// without VNNI, whose kernels would saturate: int8_weight_levels); x is quantized per
// row as it is staged, the int8 product is accumulated exactly in int32 (VNNI or AMX kernels
// where the CPU has them), and y = acc * x_scale[row] * w_scale[col] + bias, then the
// epilogue, runs here (oneDNN 2.x scales per column only). Each call runs on the calling thread
// only (the backend's thread team does the threading), so no second thread pool ever spins against
// it: oneDNN threads through OpenMP here, and omp_set_num_threads(1) holds for the call and is
// restored after.
//
// Written against oneDNN 2.x's C API (dnnl.h): its C++ header does not get through nvcc 13's
// front end in C++20 (an internal error), and CUDA translation units include this header too.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <type_traits>
#include <vector>

#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <oneapi/dnnl/dnnl.h>

#include <hashee/backend/backend.hpp>
#include <hashee/backend/detail/eigen_kernels.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/matrix_view.hpp>

static_assert(DNNL_VERSION_MAJOR == 2, "hashee's oneDNN products are written against oneDNN 2.x's C API (Debian's libdnnl-dev "
                                       "2.x); build with -DHASHEE_USE_DNNL=OFF for another major version");

namespace hashee::detail {

/// A oneDNN status other than success as a device_error (E86) naming the call.
inline void dnnl_check(dnnl_status_t s, const char* call) {
    if (s != dnnl_success) throw device_error("E86", std::string("oneDNN: ") + call + " failed (dnnl_status_t " + std::to_string(int(s)) + ")");
}

/// Owning handles of oneDNN's C objects.
template <class T, dnnl_status_t (*Destroy)(T)>
struct dnnl_deleter {
    void operator()(T h) const noexcept {
        if (h) Destroy(h);
    }
};
template <class T, dnnl_status_t (*Destroy)(T)>
using dnnl_handle = std::unique_ptr<std::remove_pointer_t<T>, dnnl_deleter<T, Destroy>>;
using dnnl_engine_handle = dnnl_handle<dnnl_engine_t, dnnl_engine_destroy>;
using dnnl_primitive_handle = dnnl_handle<dnnl_primitive_t, dnnl_primitive_destroy>;
using dnnl_primitive_desc_handle = dnnl_handle<dnnl_primitive_desc_t, dnnl_primitive_desc_destroy>;
using dnnl_memory_handle = dnnl_handle<dnnl_memory_t, dnnl_memory_destroy>;
using dnnl_stream_handle = dnnl_handle<dnnl_stream_t, dnnl_stream_destroy>;
using dnnl_attr_handle = dnnl_handle<dnnl_primitive_attr_t, dnnl_primitive_attr_destroy>;
using dnnl_post_ops_handle = dnnl_handle<dnnl_post_ops_t, dnnl_post_ops_destroy>;

/// W [out, in] as oneDNN's kernels read it for x W^T: the bytes in the layout a matmul
/// primitive asked for, and that layout. Shared, immutable once made, and usable by any
/// dnnl_products (the layout depends on the shape, the data type and the instruction set
/// only): a model loaded through one backend object runs on another.
struct prepacked_weight {
    std::shared_ptr<const void> data;
    dnnl_memory_desc_t desc{}; ///< desc.data_type: the storage, dnnl_f32 or dnnl_bf16
    std::size_t bytes = 0;
    /// bf16 products: x is rounded to bf16 (W is: stored as bf16, or as bf16-exact fp32
    /// values where the CPU has no bf16 kernels).
    bool bf16_inputs = false;
    /// int8 (desc.data_type dnnl_s8): W[c, :] = channel_scales[c] * the stored integers.
    std::vector<float> channel_scales;
    /// A panel of another prepacked_weight (dnnl_products::panel): data points into its bytes,
    /// which it shares, so it holds no bytes of its own.
    bool is_panel = false;
    /// The bytes this weight holds beside the checkpoint (a panel: none).
    std::size_t own_bytes() const { return is_panel ? 0 : bytes + channel_scales.size() * sizeof(float); }
};

/// Symmetric int8 quantization of n values: q[i] = round(x[i] / scale) in [-levels, levels],
/// ties to even, with scale = max |x| / levels (1 for an all-zero row); returns the scale. A row
/// holding a NaN or an infinity gets the scale NaN (and zeros), so its products come out NaN, as
/// in fp32, never as finite garbage.
inline float quantize_int8(const float* x, index_t n, std::int8_t* q, int levels = 127) {
    // Loops the compiler vectorises (no libm call per value, no reduction across lanes until
    // the end; a third of the time std::isfinite and std::nearbyint per value took on 128 x 384
    // values, measured on a Xeon with AMX): 16 running maxima of |x|, and 16 sums of x * 0,
    // which are NaN exactly where some x is a NaN or an infinity; rounding to the nearest even
    // integer is the sum with 1.5 * 2^23 and back, exact for |v| <= 127.
    constexpr index_t lanes = 16;
    float amax_lanes[lanes] = {}, probe_lanes[lanes] = {};
    for (index_t i = 0; i < n; i += lanes)
        for (index_t j = 0; j < std::min(lanes, n - i); ++j) {
            const float a = std::abs(x[i + j]);
            amax_lanes[j] = a > amax_lanes[j] ? a : amax_lanes[j];
            probe_lanes[j] += x[i + j] * 0.0f;
        }
    float amax = 0;
    bool finite = true;
    for (index_t j = 0; j < lanes; ++j) {
        amax = std::max(amax, amax_lanes[j]);
        finite = finite && probe_lanes[j] == 0.0f;
    }
    if (!finite) {
        std::fill_n(q, n, std::int8_t{0});
        return std::numeric_limits<float>::quiet_NaN();
    }
    const auto top = static_cast<float>(levels);
    const float scale = amax > 0 ? amax / top : 1.0f, inv = 1.0f / scale;
    index_t k = 0;
#if defined(__AVX512F__)
    // 16 at a time: scaled, clamped, rounded to nearest even and narrowed in 4 instructions (the
    // loop below, which the compiler does not vectorise, took 2.3x as long on 384-value rows).
    // Zero-masked forms with a full mask: GCC 12's unmasked min, max and conversions start from
    // _mm512_undefined_* and trip -Wmaybe-uninitialized.
    const __m512 lo = _mm512_set1_ps(-top), hi = _mm512_set1_ps(top), inv16 = _mm512_set1_ps(inv);
    constexpr __mmask16 all = 0xFFFF;
    for (; k + 16 <= n; k += 16) {
        const __m512 scaled = _mm512_mul_ps(_mm512_loadu_ps(x + k), inv16);
        const __m512 v = _mm512_maskz_min_ps(all, _mm512_maskz_max_ps(all, scaled, lo), hi);
        const __m512i r = _mm512_maskz_cvt_roundps_epi32(all, v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k), _mm512_maskz_cvtepi32_epi8(all, r));
    }
#endif
    constexpr float round_even = 12582912.0f; // 1.5 * 2^23
    for (; k < n; ++k) {
        const float v = std::min(std::max(x[k] * inv, -top), top);
        q[k] = static_cast<std::int8_t>(static_cast<int>((v + round_even) - round_even));
    }
    return scale;
}

/// The largest |integer| int8 weights are quantized to on this CPU. With VNNI (AVX512_VNNI,
/// AVX_VNNI) or AMX, oneDNN sums the byte products straight into int32: 127. Without (AVX2,
/// AVX-512 before Cascade Lake), its kernels add pairs of u8 x s8 products in int16 first
/// (vpmaddubsw), with x shifted to u8, and those pairs saturate for |w| past 64 (measured on Zen
/// 3: at 127, 1,022 of 1,024 sums wrong, silently); weights of 7 bits (|w| <= 63) keep every sum
/// exact, as ONNX Runtime's reduce_range does. The effective ISA honours DNNL_MAX_CPU_ISA.
inline int int8_weight_levels() {
    const auto isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
    constexpr auto vnni = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_vnni) & ~static_cast<unsigned>(dnnl_cpu_isa_avx512_core),
                   avx2_vnni = static_cast<unsigned>(dnnl_cpu_isa_avx2_vnni) & ~static_cast<unsigned>(dnnl_cpu_isa_avx2);
    return (isa & vnni) || (isa & avx2_vnni) ? 127 : 63;
}

/// Sets the calling thread's OpenMP thread count for a scope, restores it after.
class omp_threads_scope {
public:
    explicit omp_threads_scope(int n) : saved_(omp_get_max_threads()) {
        if (saved_ != n) omp_set_num_threads(n);
    }
    ~omp_threads_scope() {
        if (omp_get_max_threads() != saved_) omp_set_num_threads(saved_);
    }
    omp_threads_scope(const omp_threads_scope&) = delete;
    omp_threads_scope& operator=(const omp_threads_scope&) = delete;

private:
    int saved_;
};

/// fp32 -> bf16, rounded to nearest even (NaN stays NaN): the conversion x's rows get on their
/// way into a bf16 product.
inline std::uint16_t to_bf16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
    return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/// How a product of `rows` rows is cut for `threads` workers: `count` blocks of `per` rows (the
/// last one shorter), each one oneDNN call on one worker. Blocks hold at most max_rows rows and
/// a multiple of dnnl_products::row_quantum, so the shape classes stay few; a product of fewer
/// than min_parallel_macs multiply-accumulates is one block run on the calling thread (at
/// batch 1, no thread hand-off per tiny product: `parallel` is false). A parallel product of at
/// most max_rows rows is better cut by output channels where W can be (`by_columns`): each
/// thread reads a part of W, not all of it, and runs every row.
struct dnnl_row_blocks {
    static constexpr index_t max_rows = 128;
    static constexpr index_t min_parallel_macs = index_t{1} << 21;

    index_t rows = 0, per = 0, count = 0;
    bool parallel = false, by_columns = false;

    dnnl_row_blocks(index_t rows_, index_t in, index_t out, int threads);
    index_t first(index_t i) const { return i * per; }
    index_t size(index_t i) const { return std::min(per, rows - i * per); }
};

class dnnl_products {
public:
    dnnl_products() {
        dnnl_engine_t e = nullptr;
        dnnl_check(dnnl_engine_create(&e, dnnl_cpu, 0), "dnnl_engine_create");
        engine_.reset(e);
    }

    /// W [out, in] reordered (and converted, for bf16 and int8) into the layout the matmul
    /// kernels want for products in `type` (dnnl_f32, dnnl_bf16 or dnnl_s8); the same for every
    /// row count: oneDNN's blocked weights depend on in, out, the type and the instruction set only.
    prepacked_weight prepack(const_matrix_view<float> w, dnnl_data_type_t type = dnnl_f32) const {
        const std::lock_guard lock(mutex_);
        const omp_threads_scope one(1);
        const bool bf16 = type == dnnl_bf16;
        prepacked_weight packed;
        packed.bf16_inputs = bf16;
        dnnl_memory_desc_t plain_md = plain_weight_desc(w);
        const void* plain = w.data;
        std::vector<float> rounded; // W rounded to bf16 in fp32, for CPUs without bf16 kernels
        std::vector<std::int8_t> quantized; // W quantized per output channel, row-major
        if (type == dnnl_s8) {
            quantized.resize(static_cast<std::size_t>(w.rows * w.cols));
            packed.channel_scales.resize(static_cast<std::size_t>(w.rows));
            for (index_t r = 0; r < w.rows; ++r)
                packed.channel_scales[static_cast<std::size_t>(r)] =
                    quantize_int8(w.row(r), w.cols, quantized.data() + r * w.cols, int8_weight_levels());
            plain_md = strided_desc(w.cols, w.rows, 1, w.cols, dnnl_s8);
            plain = quantized.data();
        } else if (bf16 && !bf16_kernels()) {
            rounded.resize(static_cast<std::size_t>(w.rows * w.cols));
            for (index_t r = 0; r < w.rows; ++r)
                for (index_t c = 0; c < w.cols; ++c) rounded[static_cast<std::size_t>(r * w.cols + c)] = bf16_rounded(w.row(r)[c]);
            plain_md = plain_weight_desc(const_matrix_view<float>(rounded.data(), w.rows, w.cols));
            plain = rounded.data();
            type = dnnl_f32;
        }
        const dnnl_primitive_desc_handle pd = matmul_desc(rows_desc(pack_rows, w.cols, w.cols, type), any_weight_desc(w.cols, w.rows, type),
                                                          nullptr, rows_desc(pack_rows, w.rows, w.rows, accumulator(type)), nullptr);
        packed.desc = *dnnl_primitive_desc_query_md(pd.get(), dnnl_query_weights_md, 0);
        packed.bytes = dnnl_memory_desc_get_size(&packed.desc);
        packed.data = std::shared_ptr<const void>(::operator new(packed.bytes, std::align_val_t{64}),
                                                  [](const void* p) { ::operator delete(const_cast<void*>(p), std::align_val_t{64}); });
        dnnl_primitive_desc_t rpd_raw = nullptr;
        dnnl_check(dnnl_reorder_primitive_desc_create(&rpd_raw, &plain_md, engine_.get(), &packed.desc, engine_.get(), nullptr),
                   "dnnl_reorder_primitive_desc_create");
        const dnnl_primitive_desc_handle rpd(rpd_raw);
        const dnnl_primitive_handle reorder = make_primitive(rpd.get());
        const dnnl_memory_handle from = make_memory(plain_md, plain), to = make_memory(packed.desc, packed.data.get());
        const dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from.get()}, {DNNL_ARG_TO, to.get()}};
        execute(reorder.get(), args);
        return packed;
    }

    /// Output channels [first, first + count) of a prepacked W (the rows [first, first + count)
    /// of the W it was made from) as a prepacked_weight over the same bytes, nothing copied;
    /// nullopt where the layout does not allow it. `first` and `count` must be whole blocks of
    /// the layout's output channels (any for plain W^T, as AVX2's gemm:jit reads it; 64 for
    /// brgemm's BA16a64b), the layout must carry no extra data (the s8s8 compensation of some
    /// int8 layouts), and a matmul primitive must accept the panel with the implementation the
    /// whole W gets (brgemm does where the output blocks are outermost, so that a panel is
    /// contiguous). Checked once, here, at load.
    std::optional<prepacked_weight> panel(const prepacked_weight& w, index_t first, index_t count) const {
        const dnnl_memory_desc_t& d = w.desc;
        if (d.ndims != 2 || d.format_kind != dnnl_blocked || d.extra.flags != 0 || d.offset0 != 0 || count <= 0 ||
            first < 0 || first + count > d.dims[1])
            return std::nullopt;
        const dnnl_blocking_desc_t& blk = d.format_desc.blocking;
        const index_t block = output_block(d);
        if (first % block != 0 || (count % block != 0 && first + count != d.dims[1])) return std::nullopt;
        // The panel keeps W's strides: element (k, c) of the panel is element (k, first + c) of W,
        // `first / block` output blocks further on.
        prepacked_weight p;
        p.desc = d;
        p.desc.dims[1] = count;
        p.desc.padded_dims[1] = (count + block - 1) / block * block;
        p.bytes = dnnl_memory_desc_get_size(&p.desc);
        const std::size_t offset = static_cast<std::size_t>(first / block * blk.strides[1]) * dnnl_data_type_size(d.data_type);
        p.data = std::shared_ptr<const void>(w.data, static_cast<const std::byte*>(w.data.get()) + offset);
        p.bf16_inputs = w.bf16_inputs;
        if (!w.channel_scales.empty())
            p.channel_scales.assign(w.channel_scales.begin() + first, w.channel_scales.begin() + first + count);
        p.is_panel = true;
        const dnnl_data_type_t type = d.data_type;
        const dnnl_memory_desc_t src = rows_desc(pack_rows, d.dims[0], d.dims[0], type),
                                 dst = rows_desc(pack_rows, count, count, accumulator(type));
        const omp_threads_scope one(1);
        const dnnl_primitive_desc_handle pd = try_matmul_desc(src, p.desc, dst);
        if (!pd || implementation(pd.get()) != dense_implementation(pack_rows, d.dims[0], d.dims[1], type)) return std::nullopt;
        return p;
    }

    /// W cut by output channels into `parts` panels of whole layout blocks, as even as the
    /// blocks allow, each with its first channel; empty where W cannot be cut (panel).
    std::vector<std::pair<index_t, prepacked_weight>> column_panels(const prepacked_weight& w, int parts) const {
        const index_t out = w.desc.dims[1], block = output_block(w.desc);
        const index_t blocks = (out + block - 1) / block;
        std::vector<std::pair<index_t, prepacked_weight>> panels;
        if (parts < 2 || blocks < parts) return panels;
        for (index_t p = 0; p < parts; ++p) {
            const index_t first = blocks * p / parts * block, last = std::min(out, blocks * (p + 1) / parts * block);
            std::optional<prepacked_weight> made = panel(w, first, last - first);
            if (!made) return {};
            panels.emplace_back(first, std::move(*made));
        }
        return panels;
    }

    /// y = x W^T + bias, then e, on the calling thread; W prepacked from a [y.cols, x.cols] matrix.
    void linear(const_matrix_view<float> x, const prepacked_weight& w, vector_view<const float> bias,
                matrix_view<float> y, epilogue e) const {
        run(x, w.desc, w.data.get(), w.bf16_inputs, w.channel_scales.data(), bias, y, e);
    }

    /// The same on a plain row-major W [y.cols, x.cols], read where it is (oneDNN copies its
    /// blocks as it goes: slower than a prepacked W).
    void linear(const_matrix_view<float> x, const_matrix_view<float> w, vector_view<const float> bias,
                matrix_view<float> y, epilogue e) const {
        run(x, plain_weight_desc(w), w.data, false, nullptr, bias, y, e);
    }

    /// The implementation oneDNN chose for W^T products of this shape and input type (e.g.
    /// "brg:avx512_core", "brg:avx512_core_bf16", "brg:avx512_core_vnni" for int8).
    std::string kernel(index_t rows, index_t in, index_t out, dnnl_data_type_t type = dnnl_f32) const {
        if (type == dnnl_bf16) {
            const std::lock_guard lock(mutex_);
            if (!bf16_kernels())
                return "bf16 emulated (no bf16 kernels in oneDNN for this CPU): " + kernel(rows, in, out, dnnl_f32) +
                       " on bf16-rounded inputs";
        }
        return dense_implementation(rows, in, out, type) +
               (type == dnnl_s8 && int8_weight_levels() < 127 ? ", 7-bit weights (no VNNI)" : "");
    }

    /// Row counts are run in multiples of this (a shape class per multiple).
    static constexpr index_t row_quantum = 16;

private:
    static constexpr index_t pack_rows = 128;

    /// Whether oneDNN makes bf16 matmuls on this CPU (asked once; call with mutex_ held).
    bool bf16_kernels() const {
        if (!bf16_kernels_)
            bf16_kernels_ = try_matmul_desc(rows_desc(pack_rows, 64, 64, dnnl_bf16), any_weight_desc(64, 64, dnnl_bf16),
                                            rows_desc(pack_rows, 64, 64)) != nullptr;
        return *bf16_kernels_;
    }
    /// The type the products of `type` inputs are written in: int32 for int8, else fp32.
    static dnnl_data_type_t accumulator(dnnl_data_type_t type) { return type == dnnl_s8 ? dnnl_s32 : dnnl_f32; }
    static float bf16_rounded(float f) {
        const std::uint32_t u = std::uint32_t{to_bf16(f)} << 16;
        float r;
        std::memcpy(&r, &u, sizeof r);
        return r;
    }

    static dnnl_memory_desc_t strided_desc(index_t rows, index_t cols, index_t row_stride, index_t col_stride,
                                           dnnl_data_type_t type = dnnl_f32) {
        const dnnl_dims_t dims{rows, cols}, strides{row_stride, col_stride};
        dnnl_memory_desc_t md{};
        dnnl_check(dnnl_memory_desc_init_by_strides(&md, 2, dims, type, strides), "dnnl_memory_desc_init_by_strides");
        return md;
    }
    /// Row-major [rows, cols] with a row stride.
    static dnnl_memory_desc_t rows_desc(index_t rows, index_t cols, index_t stride, dnnl_data_type_t type = dnnl_f32) {
        return strided_desc(rows, cols, stride, 1, type);
    }
    /// W [out, in] row-major read as W^T [in, out]: strides {1, stride}.
    static dnnl_memory_desc_t plain_weight_desc(const_matrix_view<float> w) { return strided_desc(w.cols, w.rows, 1, w.stride); }
    /// W^T [in, out] in whatever layout the kernels want.
    static dnnl_memory_desc_t any_weight_desc(index_t in, index_t out, dnnl_data_type_t type) {
        const dnnl_dims_t dims{in, out};
        dnnl_memory_desc_t md{};
        dnnl_check(dnnl_memory_desc_init_by_tag(&md, 2, dims, type, dnnl_format_tag_any), "dnnl_memory_desc_init_by_tag");
        return md;
    }

    dnnl_primitive_desc_handle matmul_desc(const dnnl_memory_desc_t& src, const dnnl_memory_desc_t& weights,
                                           const dnnl_memory_desc_t* bias, const dnnl_memory_desc_t& dst,
                                           const_dnnl_primitive_attr_t attr) const {
        dnnl_matmul_desc_t d{};
        dnnl_check(dnnl_matmul_desc_init(&d, &src, &weights, bias, &dst), "dnnl_matmul_desc_init");
        dnnl_primitive_desc_t pd = nullptr;
        dnnl_check(dnnl_primitive_desc_create(&pd, &d, attr, engine_.get(), nullptr), "dnnl_primitive_desc_create (matmul)");
        return dnnl_primitive_desc_handle(pd);
    }
    /// Output channels per block of a W^T layout (1 for a plain one).
    static index_t output_block(const dnnl_memory_desc_t& d) {
        index_t block = 1;
        const dnnl_blocking_desc_t& blk = d.format_desc.blocking;
        for (int i = 0; i < blk.inner_nblks; ++i)
            if (blk.inner_idxs[i] == 1) block *= blk.inner_blks[i];
        return block;
    }
    /// A matmul's primitive descriptor, or null where oneDNN has no implementation for it.
    dnnl_primitive_desc_handle try_matmul_desc(const dnnl_memory_desc_t& src, const dnnl_memory_desc_t& weights,
                                               const dnnl_memory_desc_t& dst) const {
        dnnl_matmul_desc_t d{};
        dnnl_primitive_desc_t pd = nullptr;
        if (dnnl_matmul_desc_init(&d, &src, &weights, nullptr, &dst) != dnnl_success ||
            dnnl_primitive_desc_create(&pd, &d, nullptr, engine_.get(), nullptr) != dnnl_success)
            return nullptr;
        return dnnl_primitive_desc_handle(pd);
    }
    /// oneDNN's implementation of a matmul of this shape on a W in the layout it wants.
    std::string dense_implementation(index_t rows, index_t in, index_t out, dnnl_data_type_t type) const {
        const omp_threads_scope one(1);
        return implementation(matmul_desc(rows_desc(rows, in, in, type), any_weight_desc(in, out, type), nullptr,
                                          rows_desc(rows, out, out, accumulator(type)), nullptr)
                                  .get());
    }
    static std::string implementation(const_dnnl_primitive_desc_t pd) {
        const char* info = nullptr;
        dnnl_check(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info), "dnnl_primitive_desc_query");
        return info ? info : "";
    }
    static dnnl_primitive_handle make_primitive(const_dnnl_primitive_desc_t pd) {
        dnnl_primitive_t p = nullptr;
        dnnl_check(dnnl_primitive_create(&p, pd), "dnnl_primitive_create");
        return dnnl_primitive_handle(p);
    }
    /// Memory of this engine over bytes that live elsewhere (read only where const).
    dnnl_memory_handle make_memory(const dnnl_memory_desc_t& md, const void* data) const {
        dnnl_memory_t m = nullptr;
        dnnl_check(dnnl_memory_create(&m, &md, engine_.get(), const_cast<void*>(data)), "dnnl_memory_create");
        return dnnl_memory_handle(m);
    }
    /// Runs p to completion on the calling thread.
    void execute(const_dnnl_primitive_t p, std::span<const dnnl_exec_arg_t> args) const {
        dnnl_stream_t s_raw = nullptr;
        dnnl_check(dnnl_stream_create(&s_raw, engine_.get(), dnnl_stream_default_flags), "dnnl_stream_create");
        const dnnl_stream_handle s(s_raw);
        dnnl_check(dnnl_primitive_execute(p, s.get(), static_cast<int>(args.size()), args.data()), "dnnl_primitive_execute");
        dnnl_check(dnnl_stream_wait(s.get()), "dnnl_stream_wait");
    }

    /// x is staged (copied, zero-padded to a multiple of row_quantum rows, rounded to bf16 for
    /// bf16 products, quantized per row for int8 ones) where the kernels cannot read it in
    /// place; so is y where it is padded. A row stride other than the row's length is staged
    /// too: for those oneDNN 2.6 picks an implementation some 2,000 times slower (measured at
    /// 128 x 384 -> 768 on Emerald Rapids: 1.4 s against 0.6 ms), so the primitives only ever
    /// see contiguous rows. int8 products are written as int32 over y's own bytes, then scaled
    /// back to fp32 in place (w_scales: W's per-channel scales).
    void run(const_matrix_view<float> x, const dnnl_memory_desc_t& wd, const void* w, bool round_bf16,
             const float* w_scales, vector_view<const float> bias, matrix_view<float> y, epilogue e) const {
        if (x.rows == 0) return;
        const omp_threads_scope one(1);
        const dnnl_data_type_t type = wd.data_type;
        const index_t rows = (x.rows + row_quantum - 1) / row_quantum * row_quantum;
        const bool padded = rows != x.rows, x_staged = padded || x.stride != x.cols, y_staged = padded || y.stride != y.cols;
        // Staging per calling thread, grown as needed: a cache, never part of a result.
        thread_local std::vector<std::uint16_t> xs16;
        thread_local std::vector<std::int8_t> xs8;
        thread_local std::vector<float> xs32, ys, row_scales;
        const void* src = x.data;
        const bool int8 = type == dnnl_s8;
        if (int8) {
            xs8.resize(static_cast<std::size_t>(rows * x.cols));
            row_scales.resize(static_cast<std::size_t>(x.rows));
            for (index_t r = 0; r < x.rows; ++r)
                row_scales[static_cast<std::size_t>(r)] = quantize_int8(x.data + r * x.stride, x.cols, xs8.data() + r * x.cols);
            std::fill(xs8.begin() + x.rows * x.cols, xs8.end(), std::int8_t{0});
            src = xs8.data();
        } else if (type == dnnl_bf16) {
            xs16.resize(static_cast<std::size_t>(rows * x.cols));
            for (index_t r = 0; r < x.rows; ++r) {
                const float* from = x.data + r * x.stride;
                std::uint16_t* to = xs16.data() + r * x.cols;
                for (index_t c = 0; c < x.cols; ++c) to[c] = to_bf16(from[c]);
            }
            std::fill(xs16.begin() + x.rows * x.cols, xs16.end(), std::uint16_t{0});
            src = xs16.data();
        } else if (x_staged || round_bf16) {
            xs32.assign(static_cast<std::size_t>(rows * x.cols), 0.0f);
            for (index_t r = 0; r < x.rows; ++r) {
                const float* from = x.data + r * x.stride;
                float* to = xs32.data() + r * x.cols;
                if (round_bf16)
                    for (index_t c = 0; c < x.cols; ++c) to[c] = bf16_rounded(from[c]);
                else
                    std::copy_n(from, x.cols, to);
            }
            src = xs32.data();
        }
        float* dst = y.data;
        if (y_staged) {
            ys.resize(static_cast<std::size_t>(rows * y.cols));
            dst = ys.data();
        }
        // int8: the bias and the epilogue come after the scaling, here, not in the primitive.
        const vector_view<const float> primitive_bias = int8 ? vector_view<const float>{} : bias;
        const entry& p = primitive(rows, x.cols, y.cols, type, wd, primitive_bias.size > 0,
                                   int8 ? epilogue::none : e);
        thread_local std::vector<std::byte> scratch;
        if (scratch.size() < p.scratchpad_bytes) scratch.resize(p.scratchpad_bytes);
        const dnnl_memory_handle src_m = make_memory(rows_desc(rows, x.cols, x.cols, type), src), weights = make_memory(wd, w),
                                 dst_m = make_memory(rows_desc(rows, y.cols, y.cols, accumulator(type)), dst),
                                 scratchpad = make_memory(p.scratchpad, scratch.data());
        const dnnl_memory_handle b = primitive_bias.size ? make_memory(rows_desc(1, y.cols, y.cols), bias.data) : nullptr;
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, src_m.get()},
                                  {DNNL_ARG_WEIGHTS, weights.get()},
                                  {DNNL_ARG_DST, dst_m.get()},
                                  {DNNL_ARG_SCRATCHPAD, scratchpad.get()},
                                  {DNNL_ARG_BIAS, b.get()}};
        execute(p.matmul.get(), std::span(args).first(b ? 5 : 4));
        if (int8) {
            for (index_t r = 0; r < y.rows; ++r)
                dequantize_row(dst + r * y.cols, row_scales[static_cast<std::size_t>(r)], w_scales, bias, y.row(r), y.cols, e);
        } else if (y_staged) {
            for (index_t r = 0; r < y.rows; ++r) std::copy_n(ys.data() + r * y.cols, y.cols, y.data + r * y.stride);
        }
    }

    /// One row of an int8 product: the int32 sums (bytes at acc, possibly y's own) to
    /// y = sum * x_scale * w_scales[c] + bias[c], then the epilogue.
    static void dequantize_row(const float* acc, float x_scale, const float* w_scales, vector_view<const float> bias, float* y,
                               index_t cols, epilogue e) {
        for (index_t c = 0; c < cols; ++c) {
            std::int32_t sum;
            std::memcpy(&sum, acc + c, sizeof sum);
            y[c] = static_cast<float>(sum) * (x_scale * w_scales[c]) + (bias.size ? bias.data[c] : 0.0f);
        }
        apply_epilogue(y, cols, e);
    }

    /// rows, in, out, the input type, W's layout (its strides and its number of blocks: a plain
    /// W of some row stride, W prepacked, or a panel of a wider prepacked W), bias, epilogue.
    using key = std::tuple<index_t, index_t, index_t, dnnl_data_type_t, dnnl_dim_t, dnnl_dim_t, int, bool, epilogue>;
    struct entry {
        dnnl_primitive_handle matmul;
        dnnl_memory_desc_t scratchpad{};
        std::size_t scratchpad_bytes = 0;
    };

    /// The primitive of this shape class, made on first use (the blocks of a prepacked W's
    /// layout are a function of in, out and the type).
    const entry& primitive(index_t rows, index_t in, index_t out, dnnl_data_type_t type, const dnnl_memory_desc_t& wd,
                           bool has_bias, epilogue e) const {
        const dnnl_blocking_desc_t& blk = wd.format_desc.blocking;
        const key k{rows, in, out, type, blk.strides[0], blk.strides[1], blk.inner_nblks, has_bias, e};
        const std::lock_guard lock(mutex_);
        if (auto it = primitives_.find(k); it != primitives_.end()) return it->second;
        dnnl_post_ops_t ops_raw = nullptr;
        dnnl_check(dnnl_post_ops_create(&ops_raw), "dnnl_post_ops_create");
        const dnnl_post_ops_handle ops(ops_raw);
        if (e == epilogue::gelu) dnnl_check(dnnl_post_ops_append_eltwise(ops.get(), 1.0f, dnnl_eltwise_gelu_erf, 0.0f, 0.0f), "append_eltwise");
        if (e == epilogue::tanh) dnnl_check(dnnl_post_ops_append_eltwise(ops.get(), 1.0f, dnnl_eltwise_tanh, 0.0f, 0.0f), "append_eltwise");
        dnnl_primitive_attr_t attr_raw = nullptr;
        dnnl_check(dnnl_primitive_attr_create(&attr_raw), "dnnl_primitive_attr_create");
        const dnnl_attr_handle attr(attr_raw);
        dnnl_check(dnnl_primitive_attr_set_post_ops(attr.get(), ops.get()), "dnnl_primitive_attr_set_post_ops");
        // The caller passes the scratch memory: concurrent calls on one primitive never share it.
        dnnl_check(dnnl_primitive_attr_set_scratchpad_mode(attr.get(), dnnl_scratchpad_mode_user), "set_scratchpad_mode");
        const dnnl_memory_desc_t bias_md = rows_desc(1, out, out);
        const dnnl_primitive_desc_handle pd = matmul_desc(rows_desc(rows, in, in, type), wd, has_bias ? &bias_md : nullptr,
                                                          rows_desc(rows, out, out, accumulator(type)), attr.get());
        entry made;
        made.matmul = make_primitive(pd.get());
        made.scratchpad = *dnnl_primitive_desc_query_md(pd.get(), dnnl_query_scratchpad_md, 0);
        made.scratchpad_bytes = dnnl_memory_desc_get_size(&made.scratchpad);
        return primitives_.emplace(k, std::move(made)).first->second;
    }

    dnnl_engine_handle engine_;
    mutable std::mutex mutex_;
    mutable std::optional<bool> bf16_kernels_;
    mutable std::map<key, entry> primitives_;
};

inline dnnl_row_blocks::dnnl_row_blocks(index_t rows_, index_t in, index_t out, int threads) : rows(rows_) {
    if (rows == 0) return;
    constexpr index_t q = dnnl_products::row_quantum;
    parallel = threads > 1 && rows * in * out >= min_parallel_macs;
    by_columns = parallel && rows <= max_rows;
    per = max_rows;
    // Few rows for the threads: share them, a multiple of the quantum each.
    if (parallel && rows < max_rows * threads) per = std::max(q, ((rows + threads - 1) / threads + q - 1) / q * q);
    count = (rows + per - 1) / per;
    parallel = parallel && count > 1;
}

} // namespace hashee::detail
