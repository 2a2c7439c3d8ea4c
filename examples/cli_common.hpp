#pragma once
// What the hashee subcommands share: reading inputs (lines or TSV columns), writing outputs
// atomically, the corpus hashes are built from, and timing.

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <hashee/hashee.hpp>

namespace hashee::cli {

using clock_type = std::chrono::steady_clock;
inline double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Texts to embed, pairs where there is a second text, and where they came from.
struct input_set {
    std::vector<std::string> first;
    std::vector<std::optional<std::string>> second;
    std::string source;
    std::size_t size() const { return first.size(); }
    text_input at(std::size_t i) const {
        return second[i] ? text_input{first[i], std::string_view(*second[i])} : text_input{first[i], std::nullopt};
    }
};

/// One text, or two tab-separated texts, per line.
inline input_set read_lines(std::string_view text, std::string source) {
    const auto t = tsv_table::parse(text, source, /*has_header=*/false, 1, 2);
    input_set in;
    in.source = std::move(source);
    for (std::size_t i = 0; i < t.size(); ++i) {
        in.first.push_back(t.row(i)[0]);
        in.second.push_back(t.row(i).size() == 2 ? std::optional(t.row(i)[1]) : std::nullopt);
    }
    return in;
}

/// Named columns (one, or two for pairs) of a TSV file with a header.
inline input_set read_tsv_columns(const tsv_table& t, const std::vector<std::string>& columns) {
    if (columns.empty() || columns.size() > 2) throw input_error("give one column (single texts) or two (pairs)");
    std::vector<std::size_t> idx;
    for (const auto& c : columns) idx.push_back(t.column(c));
    input_set in;
    in.source = t.source();
    for (std::size_t i = 0; i < t.size(); ++i) {
        in.first.push_back(t.row(i)[idx[0]]);
        in.second.push_back(idx.size() == 2 ? std::optional(t.row(i)[idx[1]]) : std::nullopt);
    }
    return in;
}

inline std::string read_stream(std::istream& s, const std::string& name) {
    std::ostringstream o;
    o << s.rdbuf();
    if (s.bad()) throw io_error(name + ": read failed");
    return o.str();
}

inline std::string read_file(const std::filesystem::path& p) { return detail::read_text_file(p); }

/// Writes to `path` through a temporary file in the same folder, renamed into place on
/// commit(); a failed run leaves no half-written output. An empty path means stdout.
class output_file {
public:
    explicit output_file(std::filesystem::path path) : path_(std::move(path)) {
        if (path_.empty()) return;
        tmp_ = path_;
        tmp_ += ".tmp." + std::to_string(::getpid());
        file_.open(tmp_, std::ios::binary | std::ios::trunc);
        if (!file_) throw io_error(path_.string() + ": cannot create " + tmp_.string());
    }
    output_file(const output_file&) = delete;
    output_file& operator=(const output_file&) = delete;
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
        if (!stream()) throw io_error((path_.empty() ? "stdout" : path_.string()) + ": write failed");
        if (path_.empty()) return;
        file_.close();
        if (!file_) throw io_error(tmp_.string() + ": write failed");
        std::filesystem::rename(tmp_, path_);
        committed_ = true;
    }

private:
    std::filesystem::path path_, tmp_;
    std::ofstream file_;
    bool committed_ = false;
};

/// A corpus for building hashes: token ids of every text, and a class label per text where the
/// hash needs labels (mutual information). Pairs contribute each text as its own sequence.
struct hash_corpus {
    packed_batch tokens;
    std::vector<int> labels;
    int classes = 0;

    void add(const wordpiece_tokenizer& tok, const input_set& in, const std::vector<int>* labels_per_input = nullptr) {
        for (std::size_t i = 0; i < in.size(); ++i) {
            const auto add_one = [&](const std::string& text) {
                const auto e = tok.encode(text);
                tokens.push_back(e.ids, e.type_ids);
                if (labels_per_input) labels.push_back((*labels_per_input)[i]);
            };
            add_one(in.first[i]);
            if (in.second[i]) add_one(*in.second[i]);
        }
        if (labels_per_input)
            for (const int l : *labels_per_input) classes = std::max(classes, l + 1);
    }
};

/// Class labels from a TSV column: integers as they are; real scores (STS-B) rounded to the
/// nearest integer class.
inline std::vector<int> read_labels(const tsv_table& t, const std::string& column) {
    const std::size_t c = t.column(column);
    std::vector<int> labels;
    for (std::size_t i = 0; i < t.size(); ++i) {
        const std::string& v = t.row(i)[c];
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (v.empty() || *end != '\0' || !std::isfinite(x) || x < 0)
            throw format_error(t.where(t.line(i)) + ": label '" + v + "' in column '" + column +
                               "' is not a non-negative number");
        labels.push_back(static_cast<int>(std::lround(x)));
    }
    return labels;
}

} // namespace hashee::cli
