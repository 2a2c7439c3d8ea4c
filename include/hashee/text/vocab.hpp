#pragma once
// A WordPiece vocabulary (BERT's vocab.txt): one token per line, id = 0-based line number.

#include <hashee/core/detail/read_file.hpp>
#include <hashee/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace hashee {

namespace detail {
/// Transparent string hash: lets unordered_map<std::string, ...> be searched with a
/// string_view without building a std::string.
struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};
} // namespace detail

class vocab {
public:
    vocab() = default;

    /// Reads vocab.txt. io_error when the file cannot be read (E12, E34) and format_error E35
    /// when it is larger than a text file may be; format_error E43 (naming the file and line)
    /// when it is empty, holds an empty line or the same token twice.
    static vocab load(const std::filesystem::path& path) {
        return from_string(detail::read_text_file(path), path.string());
    }

    /// Parses vocabulary text: lines separated by '\n', a trailing '\r' stripped from each
    /// line, a final newline optional. `source_name` names the text in error messages.
    static vocab from_string(std::string_view text, std::string source_name) {
        vocab v;
        v.source_ = std::move(source_name);
        if (text.empty()) throw format_error("E43", detail::located(v.source_, "empty vocabulary"));
        std::size_t pos = 0;
        std::size_t line = 0;
        while (pos < text.size()) {
            ++line;
            std::size_t eol = text.find('\n', pos);
            if (eol == std::string_view::npos) eol = text.size();
            std::string_view tok = text.substr(pos, eol - pos);
            pos = eol + 1;
            if (!tok.empty() && tok.back() == '\r') tok.remove_suffix(1);
            const std::string where = v.source_ + ":" + std::to_string(line);
            if (tok.empty()) throw format_error("E43", detail::located(where, "empty token"));
            const auto id = static_cast<std::int32_t>(v.tokens_.size());
            auto [it, inserted] = v.index_.emplace(std::string(tok), id);
            if (!inserted) {
                throw format_error("E43", detail::located(
                    where, "duplicate token '" + std::string(tok) + "' (first on line " +
                               std::to_string(it->second + 1) + ")"));
            }
            v.tokens_.emplace_back(tok);
        }
        return v;
    }

    std::optional<std::int32_t> find(std::string_view token) const {
        auto it = index_.find(token);
        if (it == index_.end()) return std::nullopt;
        return it->second;
    }

    /// The id of a token the vocabulary must hold; format_error (E42) when it does not.
    std::int32_t id(std::string_view token) const {
        auto it = index_.find(token);
        if (it == index_.end())
            throw format_error("E42", detail::located(
                source_, "vocabulary has no token '" + std::string(token) + "'"));
        return it->second;
    }

    /// The token of an id; usage_error (U03) when the id is out of range.
    const std::string& token(std::int32_t id) const {
        if (id < 0 || id >= size())
            throw usage_error("U03", detail::located(source_, "token id " + std::to_string(id) +
                                                           " out of range [0, " +
                                                           std::to_string(size()) + ")"));
        return tokens_[static_cast<std::size_t>(id)];
    }

    std::int32_t size() const { return static_cast<std::int32_t>(tokens_.size()); }

    /// Where the vocabulary came from (file path or the name given to from_string).
    const std::string& source() const { return source_; }

private:
    std::string source_;
    std::vector<std::string> tokens_;
    std::unordered_map<std::string, std::int32_t, detail::string_hash, std::equal_to<>> index_;
};

} // namespace hashee
