// HashEE wall-clock speed-up against dense, next to its FLOPs speed-up, on the real
// all-MiniLM-L6-v2: SST-2 dev sentences and 128-token inputs, batch 1, 8, 32 and 64, keep and
// drop key/values, frequency hash at a 2x FLOPs target (met on SST-2 train + dev text), in
// every precision of the products the build runs (fp32, bf16, int8). Dense and HashEE passes
// over the same batches, in the same precision, are interleaved and the median of each is
// taken, so the ratio is measured side by side. Target: wall >= 0.9 x FLOPs speed-up at
// batch >= 8, in every precision.
//
//   build/bench/bench_hashee [reps [precisions]]   e.g. bench_hashee 5 fp32,int8
//                                                   (scripts/bench.sh runs it after bench_encoder)
// Environment: HASHEE_MODEL_DIR, HASHEE_ELUE_DIR, HASHEE_THREADS (default: all cores).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <hashee/hashee.hpp>

namespace {

using namespace hashee;
using clock_type = std::chrono::steady_clock;

std::string env_or(const char* var, const std::string& fallback) {
    const char* v = std::getenv(var);
    return v && *v ? v : fallback;
}

std::vector<packed_batch> split(const std::vector<encoding>& encs, std::size_t batch) {
    return packed_batches(make_batches(encs, {.max_sequences = batch}));
}

template <class Policy>
double pass(const model<eigen_cpu>& m, const eigen_cpu& cpu, const std::vector<packed_batch>& batches, const Policy& p,
            forward_cost* cost) {
    const auto t0 = clock_type::now();
    for (const auto& b : batches) {
        auto out = m.encoder().forward(cpu, b, p);
        if (cost) *cost += out.cost;
    }
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

} // namespace

int run(int argc, char** argv) {
    const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
    const std::filesystem::path model_dir = env_or("HASHEE_MODEL_DIR", HASHEE_BENCH_MODEL_DIR);
    const std::filesystem::path elue = env_or("HASHEE_ELUE_DIR", HASHEE_BENCH_ELUE_DIR);
    const int threads = std::stoi(env_or("HASHEE_THREADS", std::to_string(std::max(1u, std::thread::hardware_concurrency()))));
    const std::string precisions = argc > 2 ? argv[2] : "fp32,bf16,int8";
    const eigen_cpu fp32_cpu(threads);
    const auto m32 = model<eigen_cpu>::load(model_dir, fp32_cpu);
    const auto& tok = m32.tokenizer();

    // Hash corpus: SST-2 train + dev text. Benchmark inputs: 256 dev sentences, 64 x 128 tokens.
    packed_batch corpus;
    std::vector<encoding> sst2, fixed128;
    std::string stitched;
    for (const char* split_name : {"train", "dev"}) {
        const auto t = tsv_table::load(elue / "SST-2" / (std::string(split_name) + ".tsv"));
        for (std::size_t i = 0; i < t.size(); ++i) {
            const auto e = tok.encode(t.row(i)[0]);
            corpus.push_back(e.ids, e.type_ids);
            if (std::string(split_name) != "dev") continue;
            if (sst2.size() < 256) sst2.push_back(e);
            stitched += t.row(i)[0] + " ";
            if (stitched.size() > 1200 && fixed128.size() < 64) {
                fixed128.push_back(tok.encode(stitched, std::nullopt, 128));
                stitched.clear();
            }
        }
    }
    const hash_setup setup = m32.hash_setup_for();
    const hash_exit<kv_semantics::keep> keep(
        frequency_hash(setup, corpus, target_speedup{2.0, &corpus, &m32.config(), kv_semantics::keep}));
    const hash_exit<kv_semantics::drop> drop(
        frequency_hash(setup, corpus, target_speedup{2.0, &corpus, &m32.config(), kv_semantics::drop}));

    std::printf("threads %d, %d interleaved repetitions, median times; products: %s\n\n", threads, reps,
                fp32_cpu.product_kernel().c_str());
    std::printf("| precision | input | batch | K/V | dense (s) | HashEE (s) | wall speed-up | FLOPs speed-up | wall / FLOPs |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    for (std::size_t at = 0; at < precisions.size();) {
        const std::size_t comma = std::min(precisions.find(',', at), precisions.size());
        const gemm_precision precision = parse_precision(std::string_view(precisions).substr(at, comma - at));
        at = comma + 1;
        const eigen_cpu cpu(threads, precision);
        const auto m = model<eigen_cpu>::load(model_dir, cpu);
        for (const auto& [name, inputs] : {std::pair{"SST-2 dev (256)", &sst2}, std::pair{"128 tokens (64)", &fixed128}}) {
            for (const std::size_t batch : {1, 8, 32, 64}) {
                const auto batches = split(*inputs, batch);
                const auto run = [&](const auto& policy, const char* kv) {
                    forward_cost cost;
                    pass(m, cpu, batches, policy, &cost); // warm-up, and the FLOPs count
                    std::vector<double> dense_t, hash_t;
                    for (int r = 0; r < reps; ++r) {
                        dense_t.push_back(pass(m, cpu, batches, no_exit{}, nullptr));
                        hash_t.push_back(pass(m, cpu, batches, policy, nullptr));
                    }
                    const double d = median(dense_t), h = median(hash_t), wall = d / h, flops = cost.flops_speedup();
                    std::printf("| %s | %s | %zu | %s | %.3f | %.3f | %.2fx | %.2fx | %.2f |\n", precision_name(precision), name, batch, kv,
                                d, h, wall, flops, wall / flops);
                    std::fflush(stdout);
                };
                run(keep, "keep");
                run(drop, "drop");
            }
        }
    }
    return 0;
}

// Bad input (a missing model or data directory, a corrupt file) ends the run with its typed
// message and catalogue id, not with std::terminate.
int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const hashee::error& e) {
        std::fprintf(stderr, "bench_hashee: [%s] %s\n", std::string(e.id()).c_str(), e.what());
        return 2;
    }
}
