// Dense encoder throughput on the real all-MiniLM-L6-v2 next to the machine's GEMM ceiling (the
// best single product through the same backend),
// measured in the same run: tokens/s and achieved GFLOP/s at batch 1, 8, 32 and 64, on the
// SST-2 dev sentences and on fixed 128-token inputs; peak resident memory and the bytes of
// weights copied out of the checkpoint (zero: F32 weights are used in place).
//
//   build/bench/bench_encoder [--benchmark_min_time=2]        (scripts/bench.sh runs it)
// Environment: HASHEE_MODEL_DIR, HASHEE_ELUE_DIR, HASHEE_THREADS (default: all cores).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include <benchmark/benchmark.h>

#include <hashee/hashee.hpp>

namespace {

using namespace hashee;
using clock_type = std::chrono::steady_clock;

std::string env_or(const char* var, const char* fallback) {
    const char* v = std::getenv(var);
    return v && *v ? v : fallback;
}

struct context {
    int threads;
    eigen_cpu backend;
    model<eigen_cpu> m;
    std::vector<encoding> sst2, fixed128;
    double ceiling_flops = 0; // FLOP/s of the plain GEMM, measured first
    std::map<std::string, double> results_flops, results_tokens;
};

context* ctx = nullptr;

/// y = x W^T with x [m, k] and W [n, k], through the same backend.
double measure_gemm(const eigen_cpu& b, index_t m, index_t k, index_t n, benchmark::State* state) {
    std::vector<float> x(m * k, 0.5f), w(n * k, 0.25f), y(m * n);
    const const_matrix_view<float> xv(x.data(), m, k), wv(w.data(), n, k);
    const matrix_view<float> yv(y.data(), m, n);
    b.linear(xv, wv, {}, yv, epilogue::none); // warm-up
    const double flops = 2.0 * m * n * k;
    if (state) {
        for (auto _ : *state) {
            b.linear(xv, wv, {}, yv, epilogue::none);
            benchmark::DoNotOptimize(y.data());
        }
        state->counters["FLOP/s"] = benchmark::Counter(flops * state->iterations(), benchmark::Counter::kIsRate);
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

void bm_gemm(benchmark::State& state) { measure_gemm(ctx->backend, state.range(0), state.range(1), state.range(2), &state); }

/// The machine's GEMM ceiling: the best of a square 1536^3 product and the encoder's two
/// feed-forward shapes at 4,096 rows, each a single product through the same backend.
double gemm_ceiling(const eigen_cpu& b, const bert_config& c) {
    const index_t d = c.hidden_size, f = c.intermediate_size;
    return std::max({measure_gemm(b, 1536, 1536, 1536, nullptr), measure_gemm(b, 4096, d, f, nullptr),
                     measure_gemm(b, 4096, f, d, nullptr)});
}

void bm_dense(benchmark::State& state, const std::vector<encoding>* inputs, std::string name) {
    const auto batch = static_cast<std::size_t>(state.range(0));
    // Consecutive batches of the input set (at most 64, whole ones where there are), cycled.
    const std::size_t whole = std::max<std::size_t>(1, std::min<std::size_t>(64, inputs->size() / batch));
    const std::vector<packed_batch> batches = packed_batches(
        make_batches(std::span(*inputs).first(std::min(inputs->size(), whole * batch)), {.max_sequences = batch}));
    std::vector<double> batch_flops;
    for (const packed_batch& b : batches) {
        std::vector<index_t> lengths;
        for (index_t q = 0; q < b.sequences(); ++q) lengths.push_back(b.length(q));
        batch_flops.push_back(static_cast<double>(dense_macs(ctx->m.config(), std::span<const index_t>(lengths)).flops()));
    }
    double flops = 0, tokens = 0;
    std::size_t next = 0;
    const auto t0 = clock_type::now();
    for (auto _ : state) {
        const auto out = ctx->m.encoder().forward(ctx->backend, batches[next]);
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
    state.counters["of_ceiling"] = flops / secs / ctx->ceiling_flops;
    ctx->results_flops[name + "/" + std::to_string(batch)] = flops / secs;
    ctx->results_tokens[name + "/" + std::to_string(batch)] = tokens / secs;
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

long peak_rss_kib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

} // namespace

int main(int argc, char** argv) {
    const std::filesystem::path model_dir = env_or("HASHEE_MODEL_DIR", HASHEE_BENCH_MODEL_DIR);
    const std::filesystem::path elue = env_or("HASHEE_ELUE_DIR", HASHEE_BENCH_ELUE_DIR);
    const int threads = std::stoi(env_or("HASHEE_THREADS", std::to_string(std::max(1u, std::thread::hardware_concurrency())).c_str()));
    const long rss_before = peak_rss_kib();
    eigen_cpu backend(threads);
    auto m = model<eigen_cpu>::load(model_dir, backend);
    context c{threads, std::move(backend), std::move(m), {}, {}, 0, {}, {}};
    ctx = &c;
    c.sst2 = load_sst2(c.m.tokenizer(), elue);
    c.fixed128 = make_fixed128(c.m.tokenizer(), elue);
    c.ceiling_flops = gemm_ceiling(c.backend, c.m.config());
    std::printf("threads %d; GEMM ceiling (best of 1536^3 and the feed-forward shapes at 4096 rows, best of 10) %.1f GFLOP/s\n",
                threads, c.ceiling_flops / 1e9);

    benchmark::Initialize(&argc, argv);
    benchmark::RegisterBenchmark("gemm", bm_gemm)->Args({1536, 1536, 1536})->Args({4096, 384, 1536})->Args({4096, 1536, 384})->UseRealTime()->Unit(benchmark::kMillisecond);
    for (int b : {1, 8, 32, 64}) {
        benchmark::RegisterBenchmark("dense/sst2_dev/batch", bm_dense, &c.sst2, std::string("sst2_dev"))
            ->Arg(b)->UseRealTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark("dense/fixed128/batch", bm_dense, &c.fixed128, std::string("fixed128"))
            ->Arg(b)->UseRealTime()->Unit(benchmark::kMillisecond);
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();

    std::printf("\n| input | batch | tokens/s | GFLOP/s | of GEMM ceiling |\n|---|---|---|---|---|\n");
    for (const auto& [key, f] : c.results_flops) {
        const auto slash = key.find('/');
        std::printf("| %s | %s | %.0f | %.1f | %.0f%% |\n", key.substr(0, slash).c_str(), key.substr(slash + 1).c_str(),
                    c.results_tokens[key], f / 1e9, 100 * f / c.ceiling_flops);
    }
    const auto file_bytes = std::filesystem::file_size(model_dir / "model.safetensors");
    std::printf("\nGEMM ceiling %.1f GFLOP/s (%d threads). Peak RSS %.1f MiB (%.1f MiB before loading); "
                "checkpoint %.1f MiB, weight bytes copied out of it: %zu\n",
                c.ceiling_flops / 1e9, threads, peak_rss_kib() / 1024.0, rss_before / 1024.0,
                static_cast<double>(file_bytes) / (1 << 20), c.m.encoder().weights().owned_bytes());
    return 0;
}
