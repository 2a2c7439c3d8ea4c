#pragma once
// Token-level exit policies: every token of a packed batch gets an exit layer e (1..L; any
// value >= L means the full depth). The encoder packs, layer by layer, the tokens still active
// (e >= l) and runs the layer on them only.
//  - no_exit: every token runs every layer (the dense encoder).
//  - hash_exit<KV>: HashEE; its hash gives each token's exit: an exit table (every consistent
//    hash builds one), the inconsistent random draw, or any hash_policy a user provides (held
//    as an any_hash). KV says whether exited tokens stay keys and values above their exit
//    (keep, the paper's) or not (drop). Only KV (and the backend) are template parameters of
//    the encoder's forward; which hash runs is decided once per batch.

#include <concepts>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <variant>

#include <hashee/core/cost.hpp>
#include <hashee/core/packed_batch.hpp>
#include <hashee/hash/exit_table.hpp>
#include <hashee/hash/hash_policy.hpp>
#include <hashee/hash/random_hash.hpp>
#include <hashee/model/token_exit.hpp>

namespace hashee {

template <kv_semantics KV = kv_semantics::keep>
class hash_exit {
public:
    static constexpr kv_semantics kv = KV;
    /// What the exits are drawn from.
    using hash_type = std::variant<exit_table, random_inconsistent_hash, any_hash>;

    explicit hash_exit(exit_table table) : hash_(std::move(table)) {}
    explicit hash_exit(random_inconsistent_hash draw) : hash_(std::move(draw)) {}
    explicit hash_exit(any_hash hash) : hash_(std::move(hash)) {}
    /// Any other hash a user provides (a hash_policy), held as an any_hash.
    template <hash_policy Hash>
    explicit hash_exit(Hash hash) : hash_(any_hash(std::move(hash))) {}

    void exit_layers(const packed_batch& b, std::span<std::uint8_t> exits) const {
        std::visit([&](const auto& h) { h.assign(b.ids, exits); }, hash_);
    }

    std::string_view name() const { return std::visit([](const auto& h) { return std::string_view(h.name()); }, hash_); }
    int num_layers() const { return std::visit([](const auto& h) { return h.num_layers(); }, hash_); }
    const hash_type& hash() const { return hash_; }
    /// The exit table, or nullptr when the exits are not a table's.
    const exit_table* table() const { return std::get_if<exit_table>(&hash_); }

private:
    hash_type hash_;
};

static_assert(token_exit_policy<hash_exit<>>);
static_assert(token_exit_policy<hash_exit<kv_semantics::drop>>);

/// Calls f(hash_exit<KV>(hash)) with KV chosen at run time: the one place keep/drop meets a
/// template parameter. `hash`: an exit_table, a random_inconsistent_hash or any hash_policy.
template <class Hash, class F>
decltype(auto) with_hash_exit(Hash&& hash, kv_semantics kv, F&& f) {
    if (kv == kv_semantics::keep) return f(hash_exit<kv_semantics::keep>(std::forward<Hash>(hash)));
    return f(hash_exit<kv_semantics::drop>(std::forward<Hash>(hash)));
}

} // namespace hashee
