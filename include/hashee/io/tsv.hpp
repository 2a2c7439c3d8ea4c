#pragma once
// Tab-separated text as the ELUE tasks ship it: a header line naming the columns, one record a
// line, no quoting (quotes are text). A UTF-8 byte-order mark and CRLF line ends are accepted;
// a ragged line or a missing column is a format_error (E18) naming the file and the line, a
// line that is not UTF-8 one with E17. The file is read whole, up to max_text_file_size (E35).

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <hashee/core/detail/utf8.hpp>
#include <hashee/core/detail/read_file.hpp>
#include <hashee/core/error.hpp>

namespace hashee {

class tsv_table {
public:
    /// Parses `text`; `source` names it in errors. Without a header, every line must have
    /// `min_fields`..`max_fields` fields (columns are then named by position).
    static tsv_table parse(std::string_view text, std::string source, bool has_header = true, std::size_t min_fields = 1,
                           std::size_t max_fields = SIZE_MAX) {
        tsv_table t;
        t.source_ = std::move(source);
        if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
        std::size_t line_no = 0, pos = 0;
        while (pos < text.size()) {
            std::size_t end = text.find('\n', pos);
            if (end == std::string_view::npos) end = text.size();
            std::string_view line = text.substr(pos, end - pos);
            pos = end + 1;
            ++line_no;
            if (line.ends_with('\r')) line.remove_suffix(1);
            if (const std::size_t bad = detail::find_invalid_utf8(line); bad != std::string_view::npos)
                throw format_error("E17", t.where(line_no) + ": invalid UTF-8 at byte " + std::to_string(bad + 1) + " of the line");
            std::vector<std::string> fields = split(line);
            if (has_header && t.header_.empty()) {
                for (const auto& f : fields)
                    if (f.empty()) throw format_error("E18", t.where(line_no) + ": the header has an empty column name");
                t.header_ = std::move(fields);
                continue;
            }
            const std::size_t lo = has_header ? t.header_.size() : min_fields;
            const std::size_t hi = has_header ? t.header_.size() : max_fields;
            if (fields.size() < lo || fields.size() > hi)
                throw format_error("E18", t.where(line_no) + ": expected " +
                                   (lo == hi ? std::to_string(lo) : std::to_string(lo) + " to " + std::to_string(hi)) +
                                   " tab-separated fields, found " + std::to_string(fields.size()));
            t.rows_.push_back(std::move(fields));
            t.lines_.push_back(line_no);
        }
        if (has_header && t.header_.empty()) throw format_error("E18", t.source_ + ": empty file (no header line)");
        return t;
    }

    static tsv_table load(const std::filesystem::path& file, bool has_header = true, std::size_t min_fields = 1,
                          std::size_t max_fields = SIZE_MAX) {
        return parse(detail::read_text_file(file), file.string(), has_header, min_fields, max_fields);
    }

    const std::string& source() const { return source_; }
    const std::vector<std::string>& header() const { return header_; }
    std::size_t size() const { return rows_.size(); }
    const std::vector<std::string>& row(std::size_t i) const { return rows_[i]; }
    /// The 1-based line of the file that record i came from.
    std::size_t line(std::size_t i) const { return lines_[i]; }

    /// Index of the column named `name`; format_error listing the columns there are if absent.
    std::size_t column(std::string_view name) const {
        for (std::size_t i = 0; i < header_.size(); ++i)
            if (header_[i] == name) return i;
        std::string have;
        for (const auto& h : header_) have += (have.empty() ? "'" : ", '") + h + "'";
        throw format_error("E18", source_ + ": no column '" + std::string(name) + "' (columns: " + have + ")");
    }

    std::string where(std::size_t line_no) const { return source_ + ":" + std::to_string(line_no); }

private:
    static std::vector<std::string> split(std::string_view line) {
        std::vector<std::string> out;
        std::size_t start = 0;
        for (;;) {
            const std::size_t tab = line.find('\t', start);
            out.emplace_back(line.substr(start, tab == std::string_view::npos ? std::string_view::npos : tab - start));
            if (tab == std::string_view::npos) return out;
            start = tab + 1;
        }
    }

    std::string source_;
    std::vector<std::string> header_;
    std::vector<std::vector<std::string>> rows_;
    std::vector<std::size_t> lines_;
};

} // namespace hashee
