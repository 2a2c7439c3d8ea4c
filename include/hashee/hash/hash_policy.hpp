#pragma once
// What a HashEE hash must provide (hash_policy), the setup every hash is built for, and
// table_hash: the lookup behind every consistent hash (frequency, mutual information,
// clustering, random, or a table loaded from a file).

#include <concepts>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hashee/core/error.hpp>
#include <hashee/hash/exit_table.hpp>
#include <hashee/model/hash_setup.hpp>

namespace hashee {

/// A hash assigns every token occurrence an exit layer in 1..num_layers().
template <class H>
concept hash_policy = requires(const H& h, std::span<const std::int32_t> ids, std::span<std::uint8_t> exits) {
    { h.name() } -> std::convertible_to<std::string_view>;
    { h.num_layers() } -> std::same_as<int>;
    h.assign(ids, exits); ///< exits[i] = exit layer of the occurrence ids[i]
};

/// A consistent hash: one exit layer per token id, looked up.
class table_hash {
public:
    explicit table_hash(exit_table table) : table_(std::move(table)) {}

    std::string_view name() const { return table_.policy(); }
    int num_layers() const { return table_.num_layers(); }
    const exit_table& table() const { return table_; }
    void assign(std::span<const std::int32_t> ids, std::span<std::uint8_t> exits) const {
        if (ids.size() != exits.size()) throw input_error("table_hash::assign: ids and exits differ in length");
        for (std::size_t i = 0; i < ids.size(); ++i) exits[i] = static_cast<std::uint8_t>(table_.exit_layer(ids[i]));
    }

    /// A table saved by exit_table::save (e.g. by `hashee hash build`), validated against the
    /// vocabulary and layer count of the model it will run with.
    static table_hash load(const std::filesystem::path& file, const vocab& v, int num_layers) {
        return table_hash(exit_table::load(file, v, num_layers));
    }

private:
    exit_table table_;
};

static_assert(hash_policy<table_hash>);

} // namespace hashee
