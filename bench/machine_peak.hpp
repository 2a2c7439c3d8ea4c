#pragma once
// The machine's own ceiling, measured in the benchmark's process: register-resident loops of
// independent fused multiply-adds (12 accumulators, no memory traffic), one std::thread per
// requested thread, for each instruction set the CPU has:
//   fp32 FMA with AVX-512 (vfmadd231ps zmm: 32 FLOP) and with AVX2 (ymm: 16 FLOP),
//   bf16 dot with AVX512_BF16 (vdpbf16ps zmm: 32 products + 32 sums = 64 FLOP),
//   int8 dot with AVX512_VNNI (vpdpbusd zmm: 64 products + 64 sums = 128 OP).
// Every product and encoder figure is reported as a fraction of these, never of our own code.
// Also: the CPU's model name, read from /proc/cpuinfo.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <immintrin.h>

namespace hashee::bench {

/// One instruction set's peak: GFLOP/s (GOP/s for int8) on `threads` threads; 0 when absent.
struct peak {
    const char* name;
    double gflops = 0;
    bool present() const { return gflops > 0; }
};

struct machine_peaks {
    peak avx512_fp32{"AVX-512 fp32 FMA"}, avx2_fp32{"AVX2 fp32 FMA"}, avx512_bf16{"AVX512_BF16 dot"},
        avx512_vnni{"AVX512_VNNI int8 dot"};
    /// The fp32 peak products are measured against: AVX-512 where present, else AVX2.
    double fp32() const { return avx512_fp32.present() ? avx512_fp32.gflops : avx2_fp32.gflops; }
    /// Each peak the higher of two measurements: on a shared VM a probe that runs while the host
    /// puts both vCPUs on one core's FMA units reads half the machine (measured on a Zen 3
    /// EPYC: 100 GFLOP/s, and 195 a minute later), and a ceiling must not sit below what the
    /// products then reach.
    machine_peaks max_with(const machine_peaks& o) const {
        machine_peaks m = *this;
        for (auto [mine, theirs] : {std::pair{&m.avx512_fp32, &o.avx512_fp32}, std::pair{&m.avx2_fp32, &o.avx2_fp32},
                                    std::pair{&m.avx512_bf16, &o.avx512_bf16}, std::pair{&m.avx512_vnni, &o.avx512_vnni}})
            mine->gflops = std::max(mine->gflops, theirs->gflops);
        return m;
    }
};

inline std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            return colon == std::string::npos ? line : line.substr(line.find_first_not_of(' ', colon + 1));
        }
    return "unknown CPU";
}

namespace detail {

inline constexpr long peak_iterations = 20'000'000;

/// The sum of a register's lanes, through memory (GCC 12's reduce intrinsics warn).
template <class Lane, class Register>
float sum_lanes(const Register& r) {
    Lane lanes[sizeof(Register) / sizeof(Lane)];
    std::memcpy(lanes, &r, sizeof(Register));
    double s = 0;
    for (Lane v : lanes) s += static_cast<double>(v);
    return static_cast<float>(s);
}

// Each kernel returns a value that depends on every accumulator, so nothing is optimised away.
__attribute__((target("avx512f"))) inline float loop_avx512_fp32(long n) {
    __m512 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i) * 1e-3f);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < n; ++it)
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    __m512 s = acc[0];
    for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
    return sum_lanes<float>(s);
}

__attribute__((target("avx2,fma"))) inline float loop_avx2_fp32(long n) {
    __m256 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i) * 1e-3f);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < n; ++it)
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    __m256 s = acc[0];
    for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
    return sum_lanes<float>(s);
}

__attribute__((target("avx512f,avx512bf16"))) inline float loop_avx512_bf16(long n) {
    __m512 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i) * 1e-3f);
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(2e-3f));
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(3e-4f));
    for (long it = 0; it < n; ++it)
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    __m512 s = acc[0];
    for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
    return sum_lanes<float>(s);
}

__attribute__((target("avx512f,avx512vnni"))) inline float loop_avx512_vnni(long n) {
    __m512i acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_epi32(i);
    const __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(-1);
    for (long it = 0; it < n; ++it)
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    __m512i s = acc[0];
    for (int i = 1; i < 12; ++i) s = _mm512_add_epi32(s, acc[i]);
    return sum_lanes<std::int32_t>(s);
}

/// GFLOP/s of `loop` on `threads` threads at once, `flops_per_iteration` each; best of 3.
template <class Loop>
double measure(Loop loop, double flops_per_iteration, int threads) {
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {
        std::vector<float> sink(static_cast<std::size_t>(threads));
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { sink[static_cast<std::size_t>(t)] = loop(peak_iterations); });
        for (auto& th : pool) th.join();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        volatile float keep = sink[0];
        (void)keep;
        best = std::max(best, flops_per_iteration * static_cast<double>(peak_iterations) * threads / s * 1e-9);
    }
    return best;
}

} // namespace detail

/// Measures every peak the CPU has, on `threads` threads (each about 0.1-0.3 s).
inline machine_peaks measure_machine_peaks(int threads) {
    machine_peaks p;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) p.avx512_fp32.gflops = detail::measure(detail::loop_avx512_fp32, 12 * 32.0, threads);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        p.avx2_fp32.gflops = detail::measure(detail::loop_avx2_fp32, 12 * 16.0, threads);
    if (__builtin_cpu_supports("avx512bf16"))
        p.avx512_bf16.gflops = detail::measure(detail::loop_avx512_bf16, 12 * 64.0, threads);
    if (__builtin_cpu_supports("avx512vnni"))
        p.avx512_vnni.gflops = detail::measure(detail::loop_avx512_vnni, 12 * 128.0, threads);
    return p;
}

} // namespace hashee::bench
