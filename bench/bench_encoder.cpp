// Dense encoder throughput on the real all-MiniLM-L6-v2 against the machine's own ceiling, its
// fp32 FMA peak (bench/machine_peak.hpp), measured in the same run, before and after the
// products (the higher of the two: a shared VM's cores come and go): the CPU model, every FMA
// peak the CPU has, the kernels the product library chose (a generic fallback fails the
// benchmark), the encoder's products at its shapes and then tokens/s and achieved GFLOP/s at
// batch 1, 8, 32 and 64 on the SST-2 dev sentences and on fixed 128-token inputs, each as a
// fraction of the peak; peak resident memory and the bytes of weights held beside the mapped
// checkpoint; two runtimes running at once against one alone (idle pools must not spin against
// each other). Each figure in every precision the backend runs: fp32 products (against the fp32
// FMA peak), bf16 ones (against the AMX bf16 tile peak where the CPU has AMX, else the
// AVX512_BF16 peak where it has one; elsewhere the bf16 numbers come from fp32 kernels, and the
// kernel column says so) and int8 ones (against the AMX int8 tile peak, else the AVX512_VNNI one).
//
//   build/bench/bench_encoder [--benchmark_min_time=2]        (scripts/bench.sh runs it)
// Environment: HASHEE_MODEL_DIR, HASHEE_ELUE_DIR, HASHEE_THREADS (default: all cores).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <sys/resource.h>

#include <benchmark/benchmark.h>

#include <hashee/hashee.hpp>

#include "machine_peak.hpp"

namespace {

using namespace hashee;
using clock_type = std::chrono::steady_clock;

std::string env_or(const char* var, const char* fallback) {
    const char* v = std::getenv(var);
    return v && *v ? v : fallback;
}

/// The model loaded for one precision of the products, and the peak its products are held to.
struct variant {
    gemm_precision precision;
    eigen_cpu backend;
    model<eigen_cpu> m;
    double peak_flops = 0; ///< FLOP/s (OP/s for int8) of the matching instructions; 0 where the CPU has none
    const char* peak_name = "";
};

struct context {
    int threads;
    std::vector<std::unique_ptr<variant>> variants; // fp32 first
    std::vector<encoding> sst2, fixed128;
    double peak_flops = 0; // the machine's fp32 FMA peak, FLOP/s: the higher of two measurements
    std::map<std::string, double> results_flops, results_tokens;
    std::map<std::string, const variant*> results_variant;
    struct product { std::vector<double> flops; std::vector<std::string> kernels; }; // per variant
    std::vector<std::pair<std::string, product>> products; // in measuring order
    const variant& fp32() const { return *variants.front(); }
};

context* ctx = nullptr;

/// y = x W^T with x [m, k] and W [n, k], through the backend, on W as the backend prepares it
/// at load (as the encoder runs its products).
double measure_gemm(const eigen_cpu& b, index_t m, index_t k, index_t n, benchmark::State* state) {
    std::vector<float> x(m * k, 0.5f), w(n * k, 0.25f), y(m * n);
    const const_matrix_view<float> xv(x.data(), m, k);
    const auto wv = b.prepare_weight(const_matrix_view<float>(w.data(), n, k));
    const matrix_view<float> yv(y.data(), m, n);
    b.linear(xv, wv, {}, yv, epilogue::none); // warm-up
    const double flops = 2.0 * m * n * k;
    if (state) {
        for (auto _ : *state) {
            b.linear(xv, wv, {}, yv, epilogue::none);
            benchmark::DoNotOptimize(y.data());
        }
        state->counters["FLOP/s"] = benchmark::Counter(flops * state->iterations(), benchmark::Counter::kIsRate);
        state->counters["of_peak"] = benchmark::Counter(flops * state->iterations() / ctx->peak_flops, benchmark::Counter::kIsRate);
        return 0;
    }
    double best = 0;
    for (int rep = 0; rep < 10; ++rep) {
        const auto t0 = clock_type::now();
        for (int i = 0; i < 4; ++i) b.linear(xv, wv, {}, yv, epilogue::none);
        best = std::max(best, 4 * flops / std::chrono::duration<double>(clock_type::now() - t0).count());
    }
    return best;
}

void bm_gemm(benchmark::State& state) { measure_gemm(ctx->fp32().backend, state.range(0), state.range(1), state.range(2), &state); }

/// The encoder's products (rows x in -> out) through the backend, each best of 10, with the
/// kernel the product library chose for it, into c.products: the feed-forward and attention
/// shapes at 4,096 and 1,024 rows, and at 64 and 16 rows.
void measure_products(context& c) {
    const index_t d = c.fp32().m.config().hidden_size, f = c.fp32().m.config().intermediate_size;
    const index_t shapes[][3] = {{4096, d, f}, {4096, f, d}, {1024, d, d}, {1024, d, f}, {64, d, f}, {64, f, d}, {16, d, d}};
    for (const auto& s : shapes) {
        context::product p;
        for (const auto& v : c.variants) {
            p.flops.push_back(measure_gemm(v->backend, s[0], s[1], s[2], nullptr));
            p.kernels.push_back(v->backend.product_kernel(s[0], s[1], s[2]));
        }
        c.products.push_back({std::to_string(s[0]) + " rows, " + std::to_string(s[1]) + " -> " + std::to_string(s[2]), std::move(p)});
    }
}

/// A kernel name that says the library runs its portable fallback, not code for this CPU:
/// oneDNN's reference implementations ("ref:"), a 'generic' kernel.
bool generic_fallback(const std::string& kernel) {
    return kernel.find("generic") != std::string::npos || kernel.find("ref:") != std::string::npos;
}

void bm_dense(benchmark::State& state, const std::vector<encoding>* inputs, std::string name, const variant* v) {
    const model<eigen_cpu>& m = v->m;
    const eigen_cpu& backend = v->backend;
    const auto batch = static_cast<std::size_t>(state.range(0));
    // Consecutive batches of the input set (at most 64, whole ones where there are), cycled.
    const std::size_t whole = std::max<std::size_t>(1, std::min<std::size_t>(64, inputs->size() / batch));
    const std::vector<packed_batch> batches = packed_batches(
        make_batches(std::span(*inputs).first(std::min(inputs->size(), whole * batch)), {.max_sequences = batch}));
    std::vector<double> batch_flops;
    for (const packed_batch& b : batches) {
        std::vector<index_t> lengths;
        for (index_t q = 0; q < b.sequences(); ++q) lengths.push_back(b.length(q));
        batch_flops.push_back(static_cast<double>(dense_macs(m.config(), std::span<const index_t>(lengths)).flops()));
    }
    double flops = 0, tokens = 0;
    std::size_t next = 0;
    const auto t0 = clock_type::now();
    for (auto _ : state) {
        const auto out = m.encoder().forward(backend, batches[next]);
        benchmark::DoNotOptimize(out.hidden.data());
        flops += batch_flops[next];
        tokens += static_cast<double>(batches[next].tokens());
        next = (next + 1) % batches.size();
    }
    const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    state.counters["tokens/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
    state.counters["sentences/s"] =
        benchmark::Counter(static_cast<double>(state.iterations() * batch), benchmark::Counter::kIsRate);
    state.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsRate);
    if (v->peak_flops > 0) state.counters["of_peak"] = flops / secs / v->peak_flops;
    const std::string key = name + "/" + precision_name(v->precision) + "/" + std::to_string(batch);
    ctx->results_flops[key] = flops / secs;
    ctx->results_tokens[key] = tokens / secs;
    ctx->results_variant[key] = v;
}

std::vector<encoding> load_sst2(const wordpiece_tokenizer& tok, const std::filesystem::path& elue) {
    const auto t = tsv_table::load(elue / "SST-2" / "dev.tsv");
    const std::size_t col = t.column("sentence");
    std::vector<encoding> out;
    for (std::size_t i = 0; i < t.size(); ++i) out.push_back(tok.encode(t.row(i)[col]));
    return out;
}

/// 128-token inputs cut from real text (SST-2 sentences stitched together).
std::vector<encoding> make_fixed128(const wordpiece_tokenizer& tok, const std::filesystem::path& elue) {
    const auto t = tsv_table::load(elue / "SST-2" / "dev.tsv");
    std::vector<encoding> out;
    std::string text;
    for (std::size_t i = 0; i < t.size() && out.size() < 256; ++i) {
        text += t.row(i)[0] + " ";
        if (text.size() > 1200) {
            out.push_back(tok.encode(text, std::nullopt, 128));
            text.clear();
        }
    }
    return out;
}

double cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

/// Two runtimes on one machine (two eigen_cpu, each with its own pool of c.threads threads,
/// sharing the loaded model): the same 2n forwards of `batch` SST-2 sentences run by one of them
/// alone, then n by each at once from two threads. Pools that spin while idle fight over the
/// cores, so the pair takes longer than one runtime alone; hashee's should not (a ratio near 1).
/// Also the process's CPU seconds per wall second while one runtime runs alone: its idle threads'
/// spinning shows as more than the work needs.
void measure_two_runtimes(const context& c, std::size_t batch) {
    const model<eigen_cpu>& m = c.fp32().m;
    const std::vector<packed_batch> batches =
        packed_batches(make_batches(std::span(c.sst2).first(std::min<std::size_t>(c.sst2.size(), 64 * batch)), {.max_sequences = batch}));
    const eigen_cpu first(c.threads), second(c.threads);
    const int n = static_cast<int>(std::max<std::size_t>(8, 256 / batch));
    auto run = [&](const eigen_cpu& b, int count, std::size_t offset) {
        for (int i = 0; i < count; ++i) benchmark::DoNotOptimize(m.encoder().forward(b, batches[(offset + i) % batches.size()]).hidden.data());
    };
    run(first, 2, 0), run(second, 2, 0); // warm-up: primitives made, buffers grown
    double alone = 1e300, together = 1e300, cpu_per_wall = 0;
    for (int round = 0; round < 3; ++round) {
        const double cpu0 = cpu_seconds();
        auto t0 = clock_type::now();
        run(first, 2 * n, 0);
        const double t_alone = std::chrono::duration<double>(clock_type::now() - t0).count();
        if (t_alone < alone) alone = t_alone, cpu_per_wall = (cpu_seconds() - cpu0) / t_alone;
        t0 = clock_type::now();
        std::thread other([&] { run(second, n, static_cast<std::size_t>(n)); });
        run(first, n, 0);
        other.join();
        together = std::min(together, std::chrono::duration<double>(clock_type::now() - t0).count());
    }
    std::printf("| %zu | %d | %.1f | %.1f | %.2f | %.2f |\n", batch, 2 * n, 1e3 * alone, 1e3 * together, together / alone, cpu_per_wall);
}

void print_peaks(const bench::machine_peaks& peaks) {
    for (const bench::peak* p : peaks.all())
        std::printf("  %-22s %s\n", p->name, p->present() ? (std::to_string(static_cast<long>(p->gflops)) + " G/s").c_str() : "absent");
    if (!peaks.amx_refused.empty()) std::printf("  (the CPU has AMX, but %s)\n", peaks.amx_refused.c_str());
}

long peak_rss_kib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

} // namespace

int run(int argc, char** argv) {
    const std::filesystem::path model_dir = env_or("HASHEE_MODEL_DIR", HASHEE_BENCH_MODEL_DIR);
    const std::filesystem::path elue = env_or("HASHEE_ELUE_DIR", HASHEE_BENCH_ELUE_DIR);
    const int threads = std::stoi(env_or("HASHEE_THREADS", std::to_string(std::max(1u, std::thread::hardware_concurrency())).c_str()));
    const long rss_before = peak_rss_kib();
    context c{threads, {}, {}, {}, 0, {}, {}, {}, {}};
    ctx = &c;
    const bench::machine_peaks first_peaks = bench::measure_machine_peaks(threads);
    bench::machine_peaks peaks = first_peaks;
    c.peak_flops = peaks.fp32().gflops * 1e9;
    for (const gemm_precision precision : {gemm_precision::fp32, gemm_precision::bf16, gemm_precision::int8}) {
        try {
            eigen_cpu backend(threads, precision);
            auto m = model<eigen_cpu>::load(model_dir, backend);
            const bench::peak& peak = peaks.of(precision);
            c.variants.push_back(std::make_unique<variant>(variant{precision, std::move(backend), std::move(m), peak.gflops * 1e9, peak.name}));
        } catch (const input_error& e) { // E63: a precision this build does not run
            std::printf("%s products: not measured: %s\n", precision_name(precision), e.what());
        }
    }
    c.sst2 = load_sst2(c.fp32().m.tokenizer(), elue);
    c.fixed128 = make_fixed128(c.fp32().m.tokenizer(), elue);
    std::printf("CPU: %s; %d threads\nmachine peaks (register-resident loops, same run):\n", bench::cpu_model().c_str(), threads);
    print_peaks(peaks);
    for (const auto& v : c.variants) std::printf("%s products: %s\n", precision_name(v->precision), v->backend.product_kernel().c_str());
    std::printf("the rest (attention, LayerNorm, GELU where not fused): %s\n", hashee::detail::eigen_simd_name().c_str());
    if (c.peak_flops <= 0) {
        std::fprintf(stderr, "bench_encoder: FAIL: no fp32 FMA peak could be measured (neither AVX-512 nor AVX2+FMA)\n");
        return 1;
    }
    measure_products(c);
    // The peaks once more, after the products: each the higher of the two (machine_peaks::max_with).
    peaks = first_peaks.max_with(bench::measure_machine_peaks(threads));
    c.peak_flops = peaks.fp32().gflops * 1e9;
    for (const auto& v : c.variants) v->peak_flops = 1e9 * peaks.of(v->precision).gflops;
    std::printf("machine peaks again after the products (the higher of the two is the ceiling):\n");
    print_peaks(peaks);
    std::printf("\n| product (best of 10) | precision | GFLOP/s (GOP/s for int8) | of its peak | kernel |\n|---|---|---|---|---|\n");
    for (const auto& [shape, p] : c.products)
        for (std::size_t i = 0; i < c.variants.size(); ++i) {
            const variant& v = *c.variants[i];
            const std::string of = v.peak_flops > 0 ? std::to_string(static_cast<int>(100 * p.flops[i] / v.peak_flops)) + "% of " + v.peak_name
                                                    : std::string("no ") + v.peak_name + " on this CPU";
            std::printf("| %s | %s | %.1f | %s | %s |\n", shape.c_str(), precision_name(v.precision), p.flops[i] / 1e9, of.c_str(),
                        p.kernels[i].c_str());
        }
    for (const auto& [shape, p] : c.products)
        for (const std::string& kernel : p.kernels)
            if (generic_fallback(kernel)) {
                std::fprintf(stderr, "bench_encoder: FAIL: the product library fell back to generic kernels on this CPU for %s (%s): "
                                     "its figures measure the fallback, not the machine\n", shape.c_str(), kernel.c_str());
                return 1;
            }

    benchmark::Initialize(&argc, argv);
    benchmark::RegisterBenchmark("gemm", bm_gemm)->Args({1536, 1536, 1536})->Args({4096, 384, 1536})->Args({4096, 1536, 384})->UseRealTime()->Unit(benchmark::kMillisecond);
    for (const auto& v : c.variants)
        for (int b : {1, 8, 32, 64}) {
            const std::string prefix = std::string("dense_") + precision_name(v->precision) + "/";
            benchmark::RegisterBenchmark((prefix + "sst2_dev/batch").c_str(), bm_dense, &c.sst2, std::string("sst2_dev"), v.get())
                ->Arg(b)->UseRealTime()->Unit(benchmark::kMillisecond);
            benchmark::RegisterBenchmark((prefix + "fixed128/batch").c_str(), bm_dense, &c.fixed128, std::string("fixed128"), v.get())
                ->Arg(b)->UseRealTime()->Unit(benchmark::kMillisecond);
        }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();

    std::printf("\n| input | products | batch | tokens/s | GFLOP/s (as fp32 FLOPs) | of fp32 peak | of its products' peak |\n"
                "|---|---|---|---|---|---|---|\n");
    for (const auto& [key, f] : c.results_flops) {
        const auto a = key.find('/'), b = key.find('/', a + 1);
        const variant& v = *c.results_variant[key];
        const std::string of = v.peak_flops > 0 ? std::to_string(static_cast<int>(100 * f / v.peak_flops)) + "% of " + v.peak_name
                                                : std::string("no ") + v.peak_name + " on this CPU";
        std::printf("| %s | %s | %s | %.0f | %.1f | %.0f%% | %s |\n", key.substr(0, a).c_str(), key.substr(a + 1, b - a - 1).c_str(),
                    key.substr(b + 1).c_str(), c.results_tokens[key], f / 1e9, 100 * f / c.peak_flops, of.c_str());
    }
    std::printf("\ntwo runtimes at once (fp32, SST-2 dev, %d threads each; best of 3):\n"
                "| batch | forwards | one runtime alone, ms | two at once (half each), ms | ratio | CPU s per wall s, alone |\n"
                "|---|---|---|---|---|---|\n", threads);
    for (std::size_t batch : {1, 8}) measure_two_runtimes(c, batch);
    const auto file_bytes = std::filesystem::file_size(model_dir / "model.safetensors");
    std::printf("\nfp32 FMA peak %.1f GFLOP/s (%d threads). Peak RSS %.1f MiB (%.1f MiB before loading, all %zu models loaded); "
                "checkpoint %.1f MiB (mapped), weight bytes held beside it: %zu converted; prepacked for the products:",
                c.peak_flops / 1e9, threads, peak_rss_kib() / 1024.0, rss_before / 1024.0, c.variants.size(),
                static_cast<double>(file_bytes) / (1 << 20), c.fp32().m.encoder().weights().owned_bytes());
    for (const auto& v : c.variants) std::printf(" %s %zu", precision_name(v->precision), v->m.encoder().weights().prepared_bytes());
    std::printf("\n");
    return 0;
}

// Bad input (a missing model or data directory, a corrupt file) ends the run with its typed
// message and catalogue id, not with std::terminate.
int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const hashee::error& e) {
        std::fprintf(stderr, "bench_encoder: [%s] %s\n", std::string(e.id()).c_str(), e.what());
        return 2;
    }
}
