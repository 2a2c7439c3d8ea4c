// hashee: the command-line front of the library.
//
//   hashee embed --model DIR [--input FILE | --tsv FILE --column NAME [--column NAME]]
//                [--output FILE] [--batch-size N] [--threads N] [--max-length N]
//
// Input: one text per line, or two tab-separated texts (a pair) per line; or named columns of
// a TSV file with a header (the ELUE task files). Without --input or --tsv it reads standard
// input, or, when standard input is a terminal, a few built-in sample sentences.
// Output: one JSON object per input line, {"index": i, "embedding": [...]}, written atomically
// (a temporary file renamed into place) when --output is given. Progress and throughput go to
// standard error. Errors exit with status 1 and a message naming the file and line.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <hashee/hashee.hpp>

#include "default_input.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

/// Texts to embed and where each came from (for error messages).
struct input_set {
    std::vector<std::string> first;
    std::vector<std::optional<std::string>> second;
    std::string source;
};

input_set read_lines(std::string_view text, std::string source) {
    const auto t = hashee::tsv_table::parse(text, source, /*has_header=*/false, 1, 2);
    input_set in;
    in.source = std::move(source);
    for (std::size_t i = 0; i < t.size(); ++i) {
        in.first.push_back(t.row(i)[0]);
        in.second.push_back(t.row(i).size() == 2 ? std::optional(t.row(i)[1]) : std::nullopt);
    }
    return in;
}

input_set read_tsv_columns(const std::filesystem::path& file, const std::vector<std::string>& columns) {
    if (columns.empty() || columns.size() > 2)
        throw hashee::input_error("--tsv needs one --column (single texts) or two (pairs)");
    const auto t = hashee::tsv_table::load(file);
    std::vector<std::size_t> idx;
    for (const auto& c : columns) idx.push_back(t.column(c));
    input_set in;
    in.source = file.string();
    for (std::size_t i = 0; i < t.size(); ++i) {
        in.first.push_back(t.row(i)[idx[0]]);
        in.second.push_back(idx.size() == 2 ? std::optional(t.row(i)[idx[1]]) : std::nullopt);
    }
    return in;
}

std::string read_stream(std::istream& s, const std::string& name) {
    std::ostringstream o;
    o << s.rdbuf();
    if (s.bad()) throw hashee::io_error(name + ": read failed");
    return o.str();
}

/// Writes to `path` through a temporary file in the same folder, renamed into place on
/// commit(); a failed run leaves no half-written output. An empty path means stdout.
class output_file {
public:
    explicit output_file(std::filesystem::path path) : path_(std::move(path)) {
        if (path_.empty()) return;
        tmp_ = path_;
        tmp_ += ".tmp." + std::to_string(::getpid());
        file_.open(tmp_, std::ios::binary | std::ios::trunc);
        if (!file_) throw hashee::io_error(path_.string() + ": cannot create " + tmp_.string());
    }
    ~output_file() {
        if (!tmp_.empty() && !committed_) {
            file_.close();
            std::error_code ec;
            std::filesystem::remove(tmp_, ec);
        }
    }
    std::ostream& stream() { return path_.empty() ? std::cout : static_cast<std::ostream&>(file_); }
    void commit() {
        stream().flush();
        if (!stream()) throw hashee::io_error((path_.empty() ? "stdout" : path_.string()) + ": write failed");
        if (path_.empty()) return;
        file_.close();
        if (!file_) throw hashee::io_error(tmp_.string() + ": write failed");
        std::filesystem::rename(tmp_, path_);
        committed_ = true;
    }

private:
    std::filesystem::path path_, tmp_;
    std::ofstream file_;
    bool committed_ = false;
};

struct embed_options {
    std::filesystem::path model_dir, input, tsv, output;
    std::vector<std::string> columns;
    int batch_size = 32;
    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    int max_length = 0;
    bool quiet = false;
};

int run_embed(const embed_options& o) {
    input_set in;
    if (!o.tsv.empty()) {
        in = read_tsv_columns(o.tsv, o.columns);
    } else if (!o.input.empty() && o.input != "-") {
        std::ifstream f(o.input, std::ios::binary);
        if (!f) throw hashee::io_error(o.input.string() + ": cannot open");
        in = read_lines(read_stream(f, o.input.string()), o.input.string());
    } else if (o.input.empty() && ::isatty(STDIN_FILENO)) {
        in = read_lines(default_input, "built-in sample");
        if (!o.quiet) std::cerr << "hashee: no input given; embedding the built-in sample sentences\n";
    } else {
        in = read_lines(read_stream(std::cin, "stdin"), "stdin");
    }
    if (in.first.empty()) throw hashee::input_error(in.source + ": no input lines");

    const hashee::eigen_cpu backend(o.threads);
    const auto t_load = clock_type::now();
    const auto model = hashee::model<hashee::eigen_cpu>::load(o.model_dir, backend);
    const double load_s = std::chrono::duration<double>(clock_type::now() - t_load).count();
    const auto& tok = model.tokenizer();
    const std::size_t max_length = o.max_length > 0 ? static_cast<std::size_t>(o.max_length) : tok.options().max_length;

    output_file out(o.output);
    const std::size_t n = in.first.size(), bs = static_cast<std::size_t>(std::max(1, o.batch_size));
    const bool progress = !o.quiet && n >= 1000;
    double encode_s = 0;
    auto last_report = clock_type::now();
    nlohmann::json line;
    for (std::size_t start = 0; start < n; start += bs) {
        const std::size_t end = std::min(n, start + bs);
        const auto t0 = clock_type::now();
        std::vector<hashee::encoding> encodings;
        for (std::size_t i = start; i < end; ++i) {
            try {
                encodings.push_back(in.second[i] ? tok.encode(in.first[i], std::string_view(*in.second[i]), max_length)
                                                 : tok.encode(in.first[i], std::nullopt, max_length));
            } catch (const hashee::input_error& e) {
                throw hashee::input_error(in.source + ", input " + std::to_string(i + 1) + ": " + e.what());
            }
        }
        std::vector<float> emb;
        try {
            emb = model.pooling().apply(model.encoder().forward(backend, hashee::packed_batch::from(encodings)));
        } catch (const hashee::input_error& e) {
            throw hashee::input_error(in.source + ", inputs " + std::to_string(start + 1) + " to " +
                                      std::to_string(end) + " (sequence k is input " + std::to_string(start + 1) +
                                      " + k): " + e.what());
        }
        encode_s += std::chrono::duration<double>(clock_type::now() - t0).count();
        const auto d = static_cast<std::size_t>(model.config().hidden_size);
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
        char buf[256];
        std::snprintf(buf, sizeof buf,
                      "hashee: embedded %zu inputs in %.2f s: %.1f sentences/s (batch %zu, %d threads; model load "
                      "%.2f s)\n",
                      n, encode_s, static_cast<double>(n) / encode_s, bs, o.threads, load_s);
        std::cerr << buf;
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"hashee: early-exit transformer inference"};
    app.require_subcommand(1);
    embed_options eo;
    auto* embed = app.add_subcommand("embed", "Sentence embeddings as JSON lines");
    embed->add_option("--model", eo.model_dir, "Model directory (model.safetensors, config.json, vocab.txt)")
        ->required()
        ->check(CLI::ExistingDirectory);
    embed->add_option("--input", eo.input, "Text file: one text, or two tab-separated texts, per line ('-' = stdin)");
    embed->add_option("--tsv", eo.tsv, "TSV file with a header line (e.g. an ELUE task file)")->excludes("--input");
    embed->add_option("--column", eo.columns, "TSV column(s) to embed: one, or two for pairs")->needs("--tsv");
    embed->add_option("--output", eo.output, "Output file (default: stdout), written atomically");
    embed->add_option("--batch-size", eo.batch_size, "Inputs per forward pass")->check(CLI::Range(1, 4096));
    embed->add_option("--threads", eo.threads, "Threads")->check(CLI::Range(1, 1024));
    embed->add_option("--max-length", eo.max_length, "Truncate to this many tokens (default: the model's)")
        ->check(CLI::Range(2, 100000));
    embed->add_flag("--quiet", eo.quiet, "No progress or summary on stderr");
    CLI11_PARSE(app, argc, argv);
    try {
        if (embed->parsed()) return run_embed(eo);
    } catch (const hashee::error& e) {
        std::cerr << "hashee: error: " << e.what() << '\n';
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "hashee: error: " << e.what() << '\n';
        return 1;
    }
    return 0;
}
