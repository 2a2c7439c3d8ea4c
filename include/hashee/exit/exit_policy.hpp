#pragma once
// Token-level exit policies: every token of a packed batch gets an exit layer e (1..L; any
// value >= L means the full depth). The encoder packs, layer by layer, the tokens still active
// (e >= l) and runs the layer on them only.
//  - no_exit: every token runs every layer (the dense encoder).
//  - hash_exit<Hash, KV>: HashEE; the hash gives each token's exit, KV says whether exited
//    tokens stay keys and values above their exit (keep, the paper's) or not (drop).

#include <concepts>
#include <cstdint>
#include <limits>
#include <span>

#include <hashee/core/cost.hpp>
#include <hashee/model/token_exit.hpp>
#include <hashee/hash/hash_policy.hpp>
#include <hashee/core/packed_batch.hpp>

namespace hashee {

template <hash_policy Hash, kv_semantics KV = kv_semantics::keep>
class hash_exit {
public:
    static constexpr kv_semantics kv = KV;
    explicit hash_exit(Hash hash) : hash_(std::move(hash)) {}
    void exit_layers(const packed_batch& b, std::span<std::uint8_t> exits) const { hash_.assign(b.ids, exits); }
    const Hash& hash() const { return hash_; }

private:
    Hash hash_;
};

static_assert(token_exit_policy<hash_exit<table_hash>>);

} // namespace hashee
