#pragma once
// A hash table of HashEE: token id -> exit layer e in 1..L (hashee-spec section 2). Layers
// 1..e update a token's state; after layer e it is frozen. Special tokens and ids the hash
// never saw exit at L. Saved as a versioned JSON file that is validated on load. Every
// consistent hash (frequency, mutual information, clustering, random) is a builder of one;
// the table is the hash (a hash_policy: name(), num_layers(), assign()).

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <hashee/core/detail/json.hpp>
#include <hashee/core/detail/read_file.hpp>
#include <hashee/core/detail/write_file.hpp>
#include <hashee/core/error.hpp>
#include <hashee/text/vocab.hpp>

namespace hashee {

class exit_table {
public:
    static constexpr std::string_view file_format = "hashee-exit-table";
    static constexpr int file_version = 1;

    exit_table() = default;
    /// Every id exits at the last layer.
    exit_table(std::int32_t vocab_size, int num_layers, std::string policy = "dense")
        : layers_(num_layers), policy_(std::move(policy)),
          exits_(static_cast<std::size_t>(check_sizes(vocab_size, num_layers)), static_cast<std::uint8_t>(num_layers)) {}

    int num_layers() const { return layers_; }
    std::int32_t vocab_size() const { return static_cast<std::int32_t>(exits_.size()); }
    /// The hash that built it ("frequency", "mutual_information", "clustering", "random", ...).
    const std::string& policy() const { return policy_; }
    std::string_view name() const { return policy_; }
    std::span<const std::uint8_t> exits() const { return exits_; }

    /// The exit layer of a token id; ids outside the table exit at the last layer.
    int exit_layer(std::int32_t id) const {
        return id >= 0 && id < vocab_size() ? exits_[static_cast<std::size_t>(id)] : layers_;
    }
    /// exits[i] = the exit layer of the occurrence ids[i] (the hash_policy's lookup).
    void assign(std::span<const std::int32_t> ids, std::span<std::uint8_t> exits) const {
        if (ids.size() != exits.size())
            throw usage_error("U21", "exit_table::assign: " + std::to_string(ids.size()) + " ids but " +
                                         std::to_string(exits.size()) + " exits");
        for (std::size_t i = 0; i < ids.size(); ++i) exits[i] = static_cast<std::uint8_t>(exit_layer(ids[i]));
    }
    void set(std::int32_t id, int layer) {
        if (id < 0 || id >= vocab_size()) throw usage_error("U22", "exit_table: token id " + std::to_string(id) + " outside [0, " + std::to_string(vocab_size()) + ")");
        if (layer < 1 || layer > layers_) throw usage_error("U22", "exit_table: exit layer " + std::to_string(layer) + " outside [1, " + std::to_string(layers_) + "]");
        exits_[static_cast<std::size_t>(id)] = static_cast<std::uint8_t>(layer);
    }
    /// Sends these ids (the special tokens) to the last layer.
    void force_last(std::span<const std::int32_t> ids) {
        for (const std::int32_t id : ids)
            if (id >= 0 && id < vocab_size()) exits_[static_cast<std::size_t>(id)] = static_cast<std::uint8_t>(layers_);
    }

    /// How many vocabulary ids exit at each layer (index 0 is layer 1).
    std::vector<std::int64_t> histogram() const {
        std::vector<std::int64_t> h(static_cast<std::size_t>(layers_), 0);
        for (const std::uint8_t e : exits_) ++h[e - 1u];
        return h;
    }

    // ---- file -------------------------------------------------------------------------------
    /// {"format": "hashee-exit-table", "version": 1, "policy": ..., "num_layers": L,
    ///  "vocab_size": V, "vocab_fingerprint": "<hex>", "exits": [e_0, ..., e_{V-1}]}
    std::string to_json(const vocab& v) const {
        nlohmann::json j;
        j["format"] = file_format;
        j["version"] = file_version;
        j["policy"] = policy_;
        j["num_layers"] = layers_;
        j["vocab_size"] = vocab_size();
        j["vocab_fingerprint"] = fingerprint(v);
        j["exits"] = exits_;
        return j.dump();
    }

    void save(const std::filesystem::path& file, const vocab& v) const {
        detail::write_file_atomically(file, to_json(v) + '\n');
    }

    /// Parses and validates a table for this vocabulary and layer count; format_error naming
    /// `source` and the field: E71 for anything malformed, E23 for a table of another version
    /// or made for another model.
    static exit_table parse(std::string_view text, const std::string& source, const vocab& v, int num_layers) {
        // One depth limit for every reader (core/detail/json.hpp): the error messages below dump
        // offending values, and nlohmann's serializer recurses.
        detail::json_options json_opt;
        json_opt.invalid_id = "E71";
        json_opt.not_json = "invalid JSON";
        const nlohmann::json j = detail::parse_json(text, source, json_opt);
        const auto fail = [&](const std::string& what) { return format_error("E71", detail::located(source, what)); };
        const auto other = [&](const std::string& what) { return format_error("E23", detail::located(source, what)); };
        if (!j.is_object()) throw fail("expected a JSON object");
        for (const auto& [key, _] : j.items())
            if (key != "format" && key != "version" && key != "policy" && key != "num_layers" && key != "vocab_size" &&
                key != "vocab_fingerprint" && key != "exits")
                throw fail("unknown field '" + key + "'");
        const auto field = [&](const char* name) -> const nlohmann::json& {
            if (!j.contains(name)) throw fail(std::string("missing field '") + name + "'");
            return j.at(name);
        };
        if (!field("format").is_string() || field("format").get<std::string>() != file_format)
            throw other("field 'format' is not \"hashee-exit-table\"");
        if (!field("version").is_number_integer() || field("version").get<std::int64_t>() != file_version)
            throw other("unsupported version " + field("version").dump() + " (this build reads version " +
                       std::to_string(file_version) + ")");
        if (!field("policy").is_string()) throw fail("field 'policy' must be a string");
        if (!field("num_layers").is_number_integer() || field("num_layers").get<std::int64_t>() != num_layers)
            throw other("field 'num_layers' is " + field("num_layers").dump() + " but the model has " +
                       std::to_string(num_layers) + " layers");
        if (!field("vocab_size").is_number_integer() || field("vocab_size").get<std::int64_t>() != v.size())
            throw other("field 'vocab_size' is " + field("vocab_size").dump() + " but the vocabulary has " +
                       std::to_string(v.size()) + " tokens");
        if (!field("vocab_fingerprint").is_string() || field("vocab_fingerprint").get<std::string>() != fingerprint(v))
            throw other("field 'vocab_fingerprint' does not match this vocabulary (the table was made for another model)");
        const auto& ex = field("exits");
        if (!ex.is_array() || ex.size() != static_cast<std::size_t>(v.size()))
            throw fail("field 'exits' must be an array of " + std::to_string(v.size()) + " exit layers");
        exit_table t(v.size(), num_layers, field("policy").get<std::string>());
        for (std::size_t i = 0; i < ex.size(); ++i) {
            if (!ex[i].is_number_integer() || ex[i].get<std::int64_t>() < 1 || ex[i].get<std::int64_t>() > num_layers)
                throw fail("exits[" + std::to_string(i) + "] = " + ex[i].dump() + " is not a layer in 1.." +
                           std::to_string(num_layers));
            t.exits_[i] = static_cast<std::uint8_t>(ex[i].get<int>());
        }
        return t;
    }

    static exit_table load(const std::filesystem::path& file, const vocab& v, int num_layers) {
        return parse(detail::read_text_file(file, detail::max_json_size), file.string(), v, num_layers);
    }

    /// FNV-1a 64 over the vocabulary's tokens in id order: ties a table to its vocabulary.
    static std::string fingerprint(const vocab& v) {
        std::uint64_t h = 0xcbf29ce484222325ull;
        for (std::int32_t id = 0; id < v.size(); ++id) {
            for (const char c : v.token(id)) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
            h = (h ^ 0x0Au) * 0x100000001b3ull;
        }
        char buf[17];
        std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
        return buf;
    }

private:
    static std::int32_t check_sizes(std::int32_t vocab_size, int num_layers) {
        if (vocab_size < 1) throw usage_error("U22", "exit_table: vocabulary size must be >= 1");
        if (num_layers < 1 || num_layers > 255) throw usage_error("U22", "exit_table: layer count must be in 1..255");
        return vocab_size;
    }

    int layers_ = 0;
    std::string policy_;
    std::vector<std::uint8_t> exits_;
};

} // namespace hashee
