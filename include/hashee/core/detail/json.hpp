#pragma once
// Parsing JSON text, the one way every reader does it (config.json, the safetensors header, the
// tokenizer and pooling configs, exit tables): one depth limit, one size limit, and errors with
// ids that name the file.
//
// - Nesting deeper than max_json_depth objects and arrays is refused while parsing (E36): no
//   hashee file nests more than four deep, and nlohmann's serializer and destructor recurse, so a
//   deeper document could overflow the stack.
// - Text longer than max_json_size is refused before parsing (E35, as for any text file).
// - A raw NUL is refused (nlohmann's lexer would take it for the end of the input).
// - Anything else that is not JSON is a format_error with the id the caller gives (E37 unless
//   the reader has its own entry, as the safetensors header has E02).
// Readers that must see every key (to refuse duplicates, which nlohmann collapses silently)
// pass an on_event callback.

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <hashee/core/detail/read_file.hpp>
#include <hashee/core/error.hpp>

namespace hashee::detail {

/// The deepest nesting of objects and arrays any JSON reader accepts (the outermost value is
/// depth 1).
inline constexpr int max_json_depth = 32;

/// The longest JSON text any reader accepts (100 MB, the safetensors reference's bound on its
/// header).
inline constexpr std::size_t max_json_size = 100'000'000;

struct json_options {
    /// Catalogue id of "not valid JSON".
    std::string_view invalid_id = "E37";
    /// What the text is, when it is part of the file: "<source>: <what> is not valid JSON: ..."
    /// (e.g. "header"); empty: "<source>: not valid JSON: ...".
    std::string_view what = "";
    /// How messages say "not valid JSON" (an exit table says "invalid JSON", as it always has).
    std::string_view not_json = "not valid JSON";
    /// Called for every parse event after the depth check (nlohmann's depth: 1 for a key of the
    /// outermost object), e.g. to refuse duplicate keys; it may throw a hashee::error.
    std::function<void(int depth, nlohmann::json::parse_event_t event, const nlohmann::json& parsed)> on_event;
};

/// Parses `text` as JSON; `source` names it in every message.
inline nlohmann::json parse_json(std::string_view text, const std::string& source, const json_options& opt = {}) {
    using json = nlohmann::json;
    const std::string subject = opt.what.empty() ? std::string() : std::string(opt.what) + " ";
    const std::string not_json = (opt.what.empty() ? std::string() : subject + "is ") + std::string(opt.not_json) + ": ";
    if (text.size() > max_json_size)
        throw format_error("E35", located(source, (opt.what.empty() ? std::string("JSON text") : std::string(opt.what)) +
                                                      " is " + std::to_string(text.size()) + " bytes, more than the " +
                                                      std::to_string(max_json_size) + " hashee reads as JSON"));
    const std::string invalid_id(opt.invalid_id);
    if (const auto nul = text.find('\0'); nul != std::string_view::npos)
        throw format_error(invalid_id,
                           located(source, not_json + "NUL byte at offset " + std::to_string(nul)));
    const json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
        if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
            depth >= max_json_depth)
            throw format_error("E36", located(source, subject + "JSON is nested too deeply (more than " +
                                                          std::to_string(max_json_depth) + " levels)"));
        if (opt.on_event) opt.on_event(depth, event, parsed);
        return true;
    };
    try {
        return json::parse(text.begin(), text.end(), cb);
    } catch (const json::exception& e) {
        throw format_error(invalid_id, located(source, not_json + e.what()));
    }
}

/// Reads a JSON file (at most max_json_size bytes) and parses it as parse_json does.
inline nlohmann::json read_json_file(const std::filesystem::path& path, const json_options& opt = {}) {
    return parse_json(read_text_file(path, max_json_size), path.string(), opt);
}

} // namespace hashee::detail
