#pragma once
// hashee embed: sentence embeddings as JSON lines, dense or with HashEE exits (--exit TABLE).

#include <cstdio>

#include "cli_common.hpp"
#include "default_input.hpp"

namespace hashee::cli {

struct embed_options {
    std::filesystem::path model_dir, input, tsv, output, exit_table;
    std::vector<std::string> columns;
    std::string kv = "keep", backend = "eigen", precision = "fp32";
    int batch_size = 32;
    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    int max_length = 0;
    bool quiet = false;
};

inline input_set embed_inputs(const embed_options& o) {
    if (!o.tsv.empty()) return read_tsv_columns(tsv_table::load(o.tsv), o.columns);
    if (!o.input.empty() && o.input != "-") return read_lines(read_file(o.input), o.input.string());
    if (o.input.empty() && ::isatty(STDIN_FILENO)) {
        if (!o.quiet) std::cerr << "hashee: no input given; embedding the built-in sample sentences\n";
        return read_lines(default_input, "built-in sample");
    }
    return read_lines(read_stream(std::cin, "stdin"), "stdin");
}

template <class B, class Policy>
int embed_with(const embed_options& o, const input_set& in, const model<B>& m, const B& backend, const Policy& policy,
               double load_s) {
    const auto& tok = m.tokenizer();
    const std::size_t max_length = o.max_length > 0 ? static_cast<std::size_t>(o.max_length) : tok.options().max_length;
    output_file out(o.output);
    const std::size_t n = in.size(), bs = static_cast<std::size_t>(std::max(1, o.batch_size));
    const bool progress = !o.quiet && n >= 1000;
    double encode_s = 0;
    forward_cost cost;
    auto last_report = clock_type::now();
    nlohmann::json line;
    const auto d = static_cast<std::size_t>(m.config().hidden_size);
    std::vector<text_input> inputs;
    inputs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) inputs.push_back(in.at(i));
    const input_source source{in.source, {}};
    const auto t_tok = clock_type::now();
    const std::vector<input_batch> batches = m.batches(inputs, {.max_sequences = bs, .max_length = max_length}, &source);
    encode_s += seconds_since(t_tok);
    for (const input_batch& batch : batches) {
        const std::size_t start = batch.inputs.front(), end = batch.inputs.back() + 1;
        const auto t0 = clock_type::now();
        std::vector<float> emb = with_input_context(batch, &source, [&] {
            const encoder_output eo = m.encoder().forward(backend, batch.tokens, policy);
            cost += eo.cost;
            return m.pooling().apply(eo);
        });
        encode_s += seconds_since(t0);
        for (std::size_t i = start; i < end; ++i) {
            line["index"] = i;
            line["embedding"] = std::vector<float>(emb.begin() + (i - start) * d, emb.begin() + (i - start + 1) * d);
            out.stream() << line.dump() << '\n';
        }
        if (progress && clock_type::now() - last_report > std::chrono::seconds(2)) {
            last_report = clock_type::now();
            std::cerr << "hashee: " << end << "/" << n << " embedded (" << static_cast<long>(end / encode_s)
                      << " sentences/s)\n";
        }
    }
    out.commit();
    if (!o.quiet) {
        char buf[320];
        std::snprintf(buf, sizeof buf,
                      "hashee: embedded %zu inputs in %.2f s: %.1f sentences/s (batch %zu, %d threads, %s products; model load %.2f s); "
                      "FLOPs speed-up %.2fx, %.2f layers per token\n",
                      n, encode_s, static_cast<double>(n) / encode_s, bs, o.threads, o.precision.c_str(), load_s, cost.flops_speedup(),
                      cost.average_layers());
        std::cerr << buf;
    }
    return 0;
}

inline int run_embed(const embed_options& o) {
    const input_set in = embed_inputs(o);
    if (in.size() == 0) throw input_error("C04", in.source + ": no input lines");
    return with_backend(o.backend, o.threads, parse_precision(o.precision), [&](const auto& backend) {
        using B = std::decay_t<decltype(backend)>;
        const auto t0 = clock_type::now();
        const auto m = model<B>::load(o.model_dir, backend);
        const double load_s = seconds_since(t0);
        if (o.exit_table.empty()) return embed_with(o, in, m, backend, no_exit{}, load_s);
        auto table = exit_table::load(o.exit_table, m.tokenizer().vocab(), m.config().num_hidden_layers);
        return with_hash_exit(std::move(table), parse_kv_semantics(o.kv, "--kv"),
                              [&](const auto& policy) { return embed_with(o, in, m, backend, policy, load_s); });
    });
}

} // namespace hashee::cli
