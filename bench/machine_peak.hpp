#pragma once
// The machine's own ceiling, measured in the benchmark's process: register-resident loops of
// independent fused multiply-adds (12 accumulators, no memory traffic), one std::thread per
// requested thread, for each instruction set the CPU has:
//   fp32 FMA with AVX-512 (vfmadd231ps zmm: 32 FLOP) and with AVX2 (ymm: 16 FLOP),
//   bf16 dot with AVX512_BF16 (vdpbf16ps zmm: 32 products + 32 sums = 64 FLOP),
//   int8 dot with AVX512_VNNI (vpdpbusd zmm: 64 products + 64 sums = 128 OP),
//   and, where the CPU has AMX and the kernel lets the process use its tiles, the tile products:
//   bf16 (tdpbf16ps: a 16 x 32 by 32 x 16 product, 16,384 FLOP) and int8 (tdpbssd: 16 x 64 by
//   64 x 16, 32,768 OP), four independent accumulator tiles.
// Every product and encoder figure is reported as a fraction of these, never of our own code.
// Also: the CPU's model name, read from /proc/cpuinfo.

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace hashee::bench {

/// One instruction set's peak: GFLOP/s (GOP/s for int8) on `threads` threads; 0 when absent.
struct peak {
    const char* name;
    double gflops = 0;
    bool present() const { return gflops > 0; }
};

struct machine_peaks {
    peak avx512_fp32{"AVX-512 fp32 FMA"}, avx2_fp32{"AVX2 fp32 FMA"}, avx512_bf16{"AVX512_BF16 dot"},
        avx512_vnni{"AVX512_VNNI int8 dot"}, amx_bf16{"AMX bf16 tiles"}, amx_int8{"AMX int8 tiles"};
    /// Why the AMX peaks are absent on a CPU that has AMX (the kernel refused the tiles); empty otherwise.
    std::string amx_refused;

    std::array<peak*, 6> all() { return {&avx512_fp32, &avx2_fp32, &avx512_bf16, &avx512_vnni, &amx_bf16, &amx_int8}; }
    std::array<const peak*, 6> all() const { return {&avx512_fp32, &avx2_fp32, &avx512_bf16, &avx512_vnni, &amx_bf16, &amx_int8}; }
    /// The peak products of each precision are measured against: the fastest instructions the CPU
    /// has for it (oneDNN picks AMX where present, then AVX512_BF16 / VNNI; fp32: AVX-512, else AVX2).
    const peak& fp32() const { return avx512_fp32.present() ? avx512_fp32 : avx2_fp32; }
    const peak& bf16() const { return amx_bf16.present() ? amx_bf16 : avx512_bf16; }
    const peak& int8() const { return amx_int8.present() ? amx_int8 : avx512_vnni; }
    template <class Precision> // hashee::gemm_precision: fp32, bf16 or int8
    const peak& of(Precision p) const { return p == Precision::bf16 ? bf16() : p == Precision::int8 ? int8() : fp32(); }
    /// Each peak the higher of two measurements: on a shared VM a probe that runs while the host
    /// puts both vCPUs on one core's FMA units reads half the machine (measured on a Zen 3
    /// EPYC: 100 GFLOP/s, and 195 a minute later), and a ceiling must not sit below what the
    /// products then reach.
    machine_peaks max_with(const machine_peaks& o) const {
        machine_peaks m = *this;
        const auto theirs = o.all();
        const auto mine = m.all();
        for (std::size_t i = 0; i < mine.size(); ++i) mine[i]->gflops = std::max(mine[i]->gflops, theirs[i]->gflops);
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

/// CPUID leaf 7, EDX: AMX-BF16 (bit 22), AMX-TILE (bit 24), AMX-INT8 (bit 25).
inline constexpr unsigned amx_bf16_bit = 22, amx_int8_bit = 25;
inline bool cpu_has_amx(unsigned edx_bit) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 24 & 1u) && (d >> edx_bit & 1u);
}

/// Linux hands out the AMX tile state only on request (arch_prctl ARCH_REQ_XCOMP_PERM for
/// XFEATURE_XTILEDATA); the permission is the process's. Returns an empty string, or why not.
inline std::string request_amx_tiles() {
    constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    if (syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) != 0)
        return std::string("arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) failed: ") + std::strerror(errno);
    return {};
}

/// Palette 1, tiles 0-7 of 16 rows x 64 bytes each.
struct tile_config {
    std::uint8_t palette_id = 1, start_row = 0, reserved[14] = {};
    std::uint16_t colsb[16] = {};
    std::uint8_t rows[16] = {};
    tile_config() {
        for (int t = 0; t < 8; ++t) colsb[t] = 64, rows[t] = 16;
    }
};

/// Four accumulator tiles (0-3), each the product of one of two A tiles (4, 5) and one of two B
/// tiles (6, 7): four independent tile products per iteration. Element: std::uint16_t holding
/// bf16 (tdpbf16ps, fp32 sums) or std::int8_t (tdpbssd, int32 sums); every element is small
/// (bf16 2^-7, int8 1), so the sums stay finite and exact over any run.
template <class Element>
__attribute__((target("amx-tile,amx-bf16,amx-int8"))) float loop_amx(long n) {
    constexpr bool bf16 = sizeof(Element) == 2;
    using sum = std::conditional_t<bf16, float, std::int32_t>;
    const tile_config config;
    _tile_loadconfig(&config);
    alignas(64) Element a[16 * 64 / sizeof(Element)];
    std::fill(std::begin(a), std::end(a), bf16 ? Element(0x3C00) : Element(1));
    _tile_loadd(4, a, 64);
    _tile_loadd(5, a, 64);
    _tile_loadd(6, a, 64);
    _tile_loadd(7, a, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (long it = 0; it < n; ++it) {
        if constexpr (bf16) {
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        } else {
            _tile_dpbssd(0, 4, 6);
            _tile_dpbssd(1, 4, 7);
            _tile_dpbssd(2, 5, 6);
            _tile_dpbssd(3, 5, 7);
        }
    }
    alignas(64) sum c[4][16 * 16];
    _tile_stored(0, c[0], 64);
    _tile_stored(1, c[1], 64);
    _tile_stored(2, c[2], 64);
    _tile_stored(3, c[3], 64);
    _tile_release();
    double s = 0;
    for (const auto& tile : c)
        for (sum v : tile) s += static_cast<double>(v);
    return static_cast<float>(s);
}

/// GFLOP/s of `loop` on `threads` threads at once, `flops_per_iteration` each, `iterations` per
/// loop; best of 3.
template <class Loop>
double measure(Loop loop, double flops_per_iteration, int threads, long iterations = peak_iterations) {
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {
        std::vector<float> sink(static_cast<std::size_t>(threads));
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { sink[static_cast<std::size_t>(t)] = loop(iterations); });
        for (auto& th : pool) th.join();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        volatile float keep = sink[0];
        (void)keep;
        best = std::max(best, flops_per_iteration * static_cast<double>(iterations) * threads / s * 1e-9);
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
    if (detail::cpu_has_amx(detail::amx_bf16_bit) || detail::cpu_has_amx(detail::amx_int8_bit)) {
        p.amx_refused = detail::request_amx_tiles();
        // Four tile products per iteration, each 16 cycles' work on one core: 1/10 the iterations.
        if (p.amx_refused.empty() && detail::cpu_has_amx(detail::amx_bf16_bit))
            p.amx_bf16.gflops = detail::measure(detail::loop_amx<std::uint16_t>, 4 * 16 * 16 * 32 * 2.0, threads, detail::peak_iterations / 10);
        if (p.amx_refused.empty() && detail::cpu_has_amx(detail::amx_int8_bit))
            p.amx_int8.gflops = detail::measure(detail::loop_amx<std::int8_t>, 4 * 16 * 16 * 64 * 2.0, threads, detail::peak_iterations / 10);
    }
    return p;
}

} // namespace hashee::bench
