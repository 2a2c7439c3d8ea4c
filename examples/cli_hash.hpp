#pragma once
// hashee hash build: an exit table from a hash policy, saved as a versioned JSON file.

#include <cstdio>

#include "cli_common.hpp"

namespace hashee::cli {

struct hash_build_options {
    std::filesystem::path model_dir, corpus, out;
    std::vector<std::string> columns;
    std::string policy = "frequency", label_column, kv = "keep";
    int buckets = 0;
    double target = 0;
    std::uint64_t seed = 0;
    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
};

inline int run_hash_build(const hash_build_options& o) {
    const eigen_cpu cpu(o.threads);
    const auto m = model<eigen_cpu>::load(o.model_dir, cpu);
    hash_corpus corpus;
    const hash_kind kind = parse_hash_kind(o.policy);
    if ((needs_corpus(kind) || o.target > 0) && o.corpus.empty())
        throw input_error("C24", "the " + o.policy + " hash" + (o.target > 0 ? " with --target" : "") +
                          " needs --corpus TSV and --column");
    if (!o.corpus.empty()) {
        const auto t = tsv_table::load(o.corpus);
        const auto in = read_tsv_columns(t, o.columns);
        if (o.label_column.empty()) {
            corpus.add(m.tokenizer(), in);
        } else {
            const auto labels = read_labels(t, o.label_column);
            corpus.add(m.tokenizer(), in, &labels);
        }
    }
    bucketing b = equal_type_buckets{o.buckets};
    if (o.target > 0) b = target_speedup{o.target, &corpus.tokens, &m.config(), parse_kv_semantics(o.kv, "--kv")};
    if (kind == hash_kind::mutual_information && corpus.labels.empty())
        throw input_error("C08", "the mutual_information hash needs labels (--label-column)");
    const exit_table h = build_exit_table(kind, m.hash_setup_for(), b,
                                          {.corpus = &corpus.tokens, .labels = corpus.labels,
                                           .word_embeddings = m.encoder().weights().embeddings().word, .cpu = &cpu,
                                           .seed = o.seed});
    if (o.out.empty()) throw input_error("C13", "--out is required");
    h.save(o.out, m.tokenizer().vocab());
    std::cerr << "hashee: wrote " << o.out.string() << " (" << o.policy << ", " << h.num_layers()
              << " layers); vocabulary ids per exit layer:";
    for (const auto c : h.histogram()) std::cerr << ' ' << c;
    if (!corpus.tokens.ids.empty()) {
        std::vector<std::uint8_t> exits(corpus.tokens.ids.size());
        h.assign(corpus.tokens.ids, exits);
        const auto fc = exit_cost(m.config(), corpus.tokens.offsets, exits, parse_kv_semantics(o.kv, "--kv"));
        char buf[160];
        std::snprintf(buf, sizeof buf, "; on the corpus: FLOPs speed-up %.2fx (%s), %.2f layers per token", fc.flops_speedup(),
                      o.kv.c_str(), fc.average_layers());
        std::cerr << buf;
    }
    std::cerr << '\n';
    return 0;
}

} // namespace hashee::cli
