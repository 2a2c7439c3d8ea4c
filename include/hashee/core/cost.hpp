#pragma once
// Multiply-accumulates counted from the shapes that run (hashee-spec section 5). Per layer and
// sequence, with n positions of which m are active: Q and attention-output projections 2 m d^2,
// K and V 2 n d^2, feed-forward 2 m d f, attention scores and weighted sum 2 m n d.
// FLOPs = 2 x MACs. The dense encoder is the case m = n.

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hashee/core/config.hpp>
#include <hashee/core/error.hpp>

namespace hashee {

struct macs {
    std::int64_t query_output = 0, key_value = 0, feed_forward = 0, attention = 0;
    std::int64_t heads = 0; ///< internal classifiers of sentence-level exits (zero otherwise)

    std::int64_t total() const { return query_output + key_value + feed_forward + attention + heads; }
    std::int64_t flops() const { return 2 * total(); }
    macs& operator+=(const macs& o) {
        query_output += o.query_output;
        key_value += o.key_value;
        feed_forward += o.feed_forward;
        attention += o.attention;
        heads += o.heads;
        return *this;
    }
};

/// What exited tokens are at the layers above their exit: still keys and values, projected
/// from their frozen state ("keep", the paper's semantics), or gone ("drop").
enum class kv_semantics { keep, drop };

/// "keep" or "drop".
inline std::string_view to_string(kv_semantics kv) { return kv == kv_semantics::keep ? "keep" : "drop"; }

/// kv_semantics by name ("keep", "drop"); input_error E74 for any other name, as "`what` must be
/// keep or drop, not '...'" (`what`: where the name came from, e.g. a command's option "--kv").
inline kv_semantics parse_kv_semantics(std::string_view name, std::string_view what = "key/value semantics") {
    if (name == "keep") return kv_semantics::keep;
    if (name == "drop") return kv_semantics::drop;
    throw input_error("E74", std::string(what) + " must be keep or drop, not '" + std::string(name) + "'");
}

/// The MACs of one layer for one sequence with n positions, m of them active. With `drop`
/// only the m active positions are keys and values.
inline macs layer_macs(const bert_config& c, std::int64_t n, std::int64_t m, kv_semantics kv = kv_semantics::keep) {
    const std::int64_t d = c.hidden_size, f = c.intermediate_size, keys = kv == kv_semantics::keep ? n : m;
    return {2 * m * d * d, 2 * keys * d * d, 2 * m * d * f, 2 * m * keys * d};
}

/// What one layer of a forward ran: rows that were updated (active), rows of the batch, rows
/// that served as keys and values, and the MACs of those shapes.
struct layer_stats {
    std::int64_t active_rows = 0, all_rows = 0, key_rows = 0;
    macs cost;
};

/// The cost of one forward, counted from the shapes that ran, next to its dense equivalent.
struct forward_cost {
    std::vector<layer_stats> layers;
    macs actual, dense;

    /// dense FLOPs / actual FLOPs.
    double flops_speedup() const { return actual.total() ? static_cast<double>(dense.total()) / actual.total() : 1.0; }
    /// Mean number of layers that updated a token: sum of active rows / tokens.
    double average_layers() const {
        if (layers.empty() || layers.front().all_rows == 0) return 0.0;
        std::int64_t sum = 0;
        for (const auto& l : layers) sum += l.active_rows;
        return static_cast<double>(sum) / layers.front().all_rows;
    }
    forward_cost& operator+=(const forward_cost& o) {
        if (layers.size() < o.layers.size()) layers.resize(o.layers.size());
        for (std::size_t i = 0; i < o.layers.size(); ++i) {
            layers[i].active_rows += o.layers[i].active_rows;
            layers[i].all_rows += o.layers[i].all_rows;
            layers[i].key_rows += o.layers[i].key_rows;
            layers[i].cost += o.layers[i].cost;
        }
        actual += o.actual;
        dense += o.dense;
        return *this;
    }
};

/// The cost of token-level exits over packed sequences (offsets) whose tokens exit at
/// `exits` (1..L), without running anything: what a forward with these exits will count.
inline forward_cost exit_cost(const bert_config& c, std::span<const std::int32_t> offsets,
                              std::span<const std::uint8_t> exits, kv_semantics kv) {
    forward_cost fc;
    fc.layers.resize(static_cast<std::size_t>(c.num_hidden_layers));
    std::vector<std::int64_t> active(static_cast<std::size_t>(c.num_hidden_layers) + 2);
    for (std::size_t s = 0; s + 1 < offsets.size(); ++s) {
        const std::int64_t n = offsets[s + 1] - offsets[s];
        std::fill(active.begin(), active.end(), 0);
        for (std::int32_t t = offsets[s]; t < offsets[s + 1]; ++t) ++active[exits[static_cast<std::size_t>(t)]];
        std::int64_t m = n; // tokens with exit >= l
        for (int l = 1; l <= c.num_hidden_layers; ++l) {
            auto& ls = fc.layers[static_cast<std::size_t>(l - 1)];
            const macs cost = layer_macs(c, n, m, kv);
            ls.active_rows += m;
            ls.all_rows += n;
            ls.key_rows += kv == kv_semantics::keep ? n : m;
            ls.cost += cost;
            fc.actual += cost;
            fc.dense += layer_macs(c, n, n);
            m -= active[static_cast<std::size_t>(l)];
        }
    }
    return fc;
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
