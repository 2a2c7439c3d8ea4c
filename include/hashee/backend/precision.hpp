#pragma once
// The input precision of a backend's products (x W^T); accumulation is fp32 in every case.
//  - fp32: every backend; Hugging Face parity within 1e-4.
//  - bf16: bf16 weights (converted at load) and activations (per product): eigen_cpu built
//    with oneDNN (AVX512_BF16 or AMX where the CPU has them), and CUDA's tensor cores.
//  - int8: W quantized per output channel (symmetric, at load), x per row (symmetric, per
//    product), integer products accumulated exactly in int32 and scaled back to fp32 before the
//    bias and the epilogue: eigen_cpu built with oneDNN (VNNI or AMX kernels where the CPU has
//    them).
//  - fp16: CUDA's tensor cores only.
// A backend asked for a precision it does not run throws input_error E63.

#include <string>
#include <string_view>

#include <hashee/core/error.hpp>

namespace hashee {

enum class gemm_precision { fp32, fp16, bf16, int8 };

inline constexpr gemm_precision all_precisions[] = {gemm_precision::fp32, gemm_precision::fp16, gemm_precision::bf16,
                                                   gemm_precision::int8};

inline const char* precision_name(gemm_precision p) {
    switch (p) {
    case gemm_precision::fp32: return "fp32";
    case gemm_precision::fp16: return "fp16";
    case gemm_precision::bf16: return "bf16";
    case gemm_precision::int8: return "int8";
    }
    return "?";
}

/// "fp32", "fp16", "bf16" or "int8"; anything else is input_error E63.
inline gemm_precision parse_precision(std::string_view name) {
    for (const gemm_precision p : all_precisions)
        if (name == precision_name(p)) return p;
    throw input_error("E63", "unknown precision '" + std::string(name) + "' (fp32, bf16, int8, fp16)");
}

namespace detail {
/// The E63 a backend throws for a precision it does not run.
[[noreturn]] inline void unsupported_precision(std::string_view backend, gemm_precision p, std::string_view runs) {
    throw input_error("E63", std::string(backend) + ": " + precision_name(p) + " products are not available here (" +
                                 std::string(runs) + ")");
}
} // namespace detail

} // namespace hashee
