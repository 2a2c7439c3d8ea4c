#pragma once
// What a token-level exit policy gives the encoder: an exit layer e (1..L; any value >= L
// means the full depth) for every token of a packed batch, and what exited tokens are to the
// layers above (kv). no_exit is the dense encoder; HashEE's hash_exit is in exit/exit_policy.hpp.

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <hashee/core/cost.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/packed_batch.hpp>

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

static_assert(token_exit_policy<no_exit>);

/// Every token's exit layer from a policy, capped at the depth (any value >= L means L); an exit
/// layer of 0 is a usage_error (U32): every token runs at least one layer.
template <token_exit_policy P>
std::vector<std::uint8_t> token_exit_layers(int num_layers, const packed_batch& batch, const P& policy) {
    std::vector<std::uint8_t> exits(static_cast<std::size_t>(batch.tokens()));
    policy.exit_layers(batch, exits);
    for (std::size_t t = 0; t < exits.size(); ++t) {
        if (exits[t] == 0) throw usage_error("U32", "token " + std::to_string(t) + " of the batch was given exit layer 0");
        exits[t] = static_cast<std::uint8_t>(std::min<int>(exits[t], num_layers));
    }
    return exits;
}

} // namespace hashee
