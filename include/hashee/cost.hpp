#pragma once
// Multiply-accumulates counted from the shapes that run (hashee-spec section 5). Per layer and
// sequence, with n positions of which m are active: Q and attention-output projections 2 m d^2,
// K and V 2 n d^2, feed-forward 2 m d f, attention scores and weighted sum 2 m n d.
// FLOPs = 2 x MACs. The dense encoder is the case m = n.

#include <cstdint>
#include <span>

#include <hashee/config.hpp>

namespace hashee {

struct macs {
    std::int64_t query_output = 0, key_value = 0, feed_forward = 0, attention = 0;

    std::int64_t total() const { return query_output + key_value + feed_forward + attention; }
    std::int64_t flops() const { return 2 * total(); }
    macs& operator+=(const macs& o) {
        query_output += o.query_output;
        key_value += o.key_value;
        feed_forward += o.feed_forward;
        attention += o.attention;
        return *this;
    }
};

/// The MACs of one layer for one sequence with n positions, m of them active.
inline macs layer_macs(const bert_config& c, std::int64_t n, std::int64_t m) {
    const std::int64_t d = c.hidden_size, f = c.intermediate_size;
    return {2 * m * d * d, 2 * n * d * d, 2 * m * d * f, 2 * m * n * d};
}

/// The MACs of a dense forward (every layer, every position) over sequences of these lengths.
template <class Int>
inline macs dense_macs(const bert_config& c, std::span<const Int> lengths) {
    macs total;
    for (const Int n : lengths)
        for (int l = 0; l < c.num_hidden_layers; ++l) total += layer_macs(c, n, n);
    return total;
}

} // namespace hashee
