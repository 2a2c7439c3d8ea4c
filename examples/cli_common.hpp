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

#include <hashee/backend/with_backend.hpp>
#include <hashee/core/detail/write_file.hpp>

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
    if (columns.empty() || columns.size() > 2) throw input_error("C20", "give one column (single texts) or two (pairs)");
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
    if (s.bad()) throw io_error("C21", name + ": read failed");
    return o.str();
}

inline std::string read_file(const std::filesystem::path& p) { return detail::read_text_file(p); }

/// The command's output: a file written through detail::atomic_file (a temporary file in the
/// same folder, renamed into place on commit()), or stdout held in memory and written only on
/// commit(), so a failed run leaves no partial output on either. An empty path means stdout.
class output_file {
public:
    explicit output_file(const std::filesystem::path& path) {
        if (!path.empty()) file_.emplace(path);
    }
    std::ostream& stream() { return file_ ? file_->stream() : static_cast<std::ostream&>(held_); }
    void commit() {
        if (file_) return file_->commit();
        const std::string bytes = held_.str();
        std::cout.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        std::cout.flush();
        if (!std::cout) throw io_error("C19", "stdout: write failed");
    }

private:
    std::optional<detail::atomic_file> file_;
    std::ostringstream held_;
};

/// Fails early (before a long run) when an output folder's path is taken by something else.
inline void check_output_dir(const std::filesystem::path& dir) {
    std::error_code ec;
    if (!dir.empty() && std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec))
        throw io_error("C14", dir.string() + ": cannot create the output folder (a file is in the way)");
}

/// Creates an output folder; a path that is a file, or one that cannot be made, is io_error C14
/// naming the path (never a raw std::filesystem exception).
inline void make_output_dir(const std::filesystem::path& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec || !std::filesystem::is_directory(dir))
        throw io_error("C14", dir.string() + ": cannot create the output folder" + (ec ? " (" + ec.message() + ")" : std::string()));
}

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

/// The one label parser. A label is a finite number of at most `max_label_magnitude`; a class
/// label (class_index) is in addition one of 0 .. max_label_class after rounding to the nearest
/// integer (real scores, STS-B's, become classes). Anything else is format_error C12 naming the
/// file, line and column: never an overflow, nor an allocation the label sizes.
inline constexpr double max_label_class = 1000;
inline constexpr double max_label_magnitude = 1e6;

inline double parse_label(const tsv_table& t, std::size_t row, std::size_t c, const std::string& column, bool class_index) {
    const std::string& v = t.row(row)[c];
    char* end = nullptr;
    const double x = v.empty() ? 0 : std::strtod(v.c_str(), &end);
    const bool number = !v.empty() && *end == '\0' && std::isfinite(x);
    if (class_index && (!number || x < 0 || x > max_label_class))
        throw format_error("C12", t.where(t.line(row)) + ": label '" + v + "' in column '" + column +
                                      "' is not a class (a number from 0 to " + std::to_string(static_cast<int>(max_label_class)) + ")");
    if (!number || std::abs(x) > max_label_magnitude)
        throw format_error("C12", t.where(t.line(row)) + ": label '" + v + "' in column '" + column +
                                      "' is not a number (finite, of magnitude at most 1e6)");
    return x;
}

/// Class labels from a TSV column: integers as they are; real scores (STS-B) rounded to the
/// nearest integer class.
inline std::vector<int> read_labels(const tsv_table& t, const std::string& column) {
    const std::size_t c = t.column(column);
    std::vector<int> labels;
    for (std::size_t i = 0; i < t.size(); ++i) labels.push_back(static_cast<int>(std::lround(parse_label(t, i, c, column, true))));
    return labels;
}

/// Real-valued labels (regression targets, STS-B's similarity scores) from a TSV column.
inline std::vector<double> read_scores(const tsv_table& t, const std::string& column) {
    const std::size_t c = t.column(column);
    std::vector<double> scores;
    for (std::size_t i = 0; i < t.size(); ++i) scores.push_back(parse_label(t, i, c, column, false));
    return scores;
}

} // namespace hashee::cli
