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

#include <hashee/cost.hpp>
#include <hashee/hash_policy.hpp>
#include <hashee/packed_batch.hpp>

namespace hashee {

template <class P>
concept token_exit_policy = requires(const P& p, const packed_batch& b, std::span<std::uint8_t> exits) {
    { P::kv } -> std::convertible_to<kv_semantics>; ///< what exited tokens are to the layers above
    p.exit_layers(b, exits);                        ///< exits[t] for every packed token t
};

/// No exit at all. Also a sentence-level policy (sentence_exit.hpp): every sample runs the
/// full depth and only the last layer's head is read.
struct no_exit {
    static constexpr kv_semantics kv = kv_semantics::keep;
    void exit_layers(const packed_batch&, std::span<std::uint8_t> exits) const {
        std::fill(exits.begin(), exits.end(), std::numeric_limits<std::uint8_t>::max());
    }

    struct sample_state {};
    static constexpr bool reads_every_layer = false;
    int depth(int num_layers) const { return num_layers; }
    bool should_exit(sample_state&, const auto& /*exit_signal*/) const { return false; }
};

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

static_assert(token_exit_policy<no_exit>);
static_assert(token_exit_policy<hash_exit<table_hash>>);

} // namespace hashee
