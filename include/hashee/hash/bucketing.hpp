#pragma once
// From a ranking of token ids (earliest exit first) to an exit table. Two bucketings:
//  - equal_type_buckets: the paper's: B buckets of equal numbers of token types (the last takes
//    the remainder); bucket k (0-based) exits at layer ceil((k + 1) L / B), i.e. k + 1 when B = L.
//  - target_speedup: boundaries chosen so the FLOPs speed-up on a corpus meets a requested value:
//    a token whose occurrence mass along the ranking is at u (0..1) exits at
//    min(L, 1 + floor(L u / rho)), and rho is searched until the speed-up is within tolerance.
// Special tokens, and ids the ranking leaves out, exit at L. A corpus that holds no token but
// special tokens (no text at all, or only empty texts) is refused the same way by everything
// that ranks or measures on it (detail::require_text, input_error E70).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <hashee/core/config.hpp>
#include <hashee/core/cost.hpp>
#include <hashee/core/error.hpp>
#include <hashee/hash/exit_table.hpp>
#include <hashee/core/packed_batch.hpp>
#include <hashee/model/hash_setup.hpp>

namespace hashee {

struct equal_type_buckets {
    int buckets = 0; ///< 0 means one bucket per layer
};

struct target_speedup {
    double ratio = 2.0;             ///< requested dense FLOPs / actual FLOPs
    const packed_batch* corpus{};   ///< token ids (special tokens included) it is measured on
    const bert_config* config{};
    kv_semantics kv = kv_semantics::keep;
    double tolerance = 0.05;        ///< relative
};

using bucketing = std::variant<equal_type_buckets, target_speedup>;

namespace detail {

/// input_error E70 unless `corpus` holds a token other than the special tokens: what every
/// builder that reads a corpus asks first. `who`: the builder, `what`: the corpus it reads.
inline void require_text(const hash_setup& s, const packed_batch& corpus, std::string_view who,
                         std::string_view what = "the corpus") {
    for (const std::int32_t id : corpus.ids)
        if (!s.is_special(id)) return;
    std::string m(who);
    m += ": ";
    m += what;
    const index_t n = corpus.sequences();
    m += n == 0 ? " is empty (no sequences)"
                : " holds no token besides the special tokens (" + std::to_string(n) + (n == 1 ? " sequence" : " sequences") +
                      ", every text empty)";
    throw input_error("E70", m);
}

inline exit_table equal_types(std::span<const std::int32_t> ranking, const hash_setup& s, int buckets, std::string policy) {
    const int L = s.num_layers, B = buckets == 0 ? L : buckets;
    if (B < 1) throw usage_error("U23", "equal_type_buckets: bucket count must be >= 1, got " + std::to_string(buckets));
    exit_table t(s.vocab_size, L, std::move(policy));
    const std::size_t per = std::max<std::size_t>(1, ranking.size() / static_cast<std::size_t>(B));
    for (std::size_t r = 0; r < ranking.size(); ++r) {
        const int k = static_cast<int>(std::min<std::size_t>(r / per, static_cast<std::size_t>(B - 1)));
        t.set(ranking[r], (k + 1) * L / B + ((k + 1) * L % B != 0));
    }
    t.force_last(s.special_ids);
    return t;
}

/// Occurrence counts of every id in the corpus.
inline std::vector<std::int64_t> occurrence_counts(const packed_batch& corpus, std::int32_t vocab_size) {
    std::vector<std::int64_t> counts(static_cast<std::size_t>(vocab_size), 0);
    for (const std::int32_t id : corpus.ids)
        if (id >= 0 && id < vocab_size) ++counts[static_cast<std::size_t>(id)];
    return counts;
}

/// The ids the corpus shows (special tokens excluded), highest score first (ties: smaller id
/// first): the ranking of the corpus-based hashes.
template <class Score>
std::vector<std::int32_t> rank_seen_ids(const hash_setup& s, const packed_batch& corpus, Score&& score) {
    const auto counts = occurrence_counts(corpus, s.vocab_size);
    std::vector<std::int32_t> ids;
    for (std::int32_t id = 0; id < s.vocab_size; ++id)
        if (counts[static_cast<std::size_t>(id)] > 0 && !s.is_special(id)) ids.push_back(id);
    std::stable_sort(ids.begin(), ids.end(), [&](std::int32_t a, std::int32_t b) {
        return score(a, counts[static_cast<std::size_t>(a)]) > score(b, counts[static_cast<std::size_t>(b)]);
    });
    return ids;
}

inline std::string ratio_str(double r) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2fx", r);
    return buf;
}

inline exit_table to_target(std::span<const std::int32_t> ranking, const hash_setup& s, const target_speedup& t,
                            std::string policy) {
    if (!t.corpus || !t.config) throw usage_error("U23", "target_speedup: needs a corpus and a model config");
    if (!(t.ratio >= 1.0) || !std::isfinite(t.ratio))
        throw input_error("E76", "target_speedup: the ratio must be a number >= 1, got " + std::to_string(t.ratio));
    require_text(s, *t.corpus, "target_speedup");
    const int L = s.num_layers;
    const auto counts = occurrence_counts(*t.corpus, s.vocab_size);
    double total = 0;
    for (const std::int32_t id : ranking)
        if (!s.is_special(id)) total += static_cast<double>(counts[static_cast<std::size_t>(id)]);
    // u: the middle of each ranked token's share of the (non-special) occurrence mass.
    std::vector<double> u(ranking.size());
    double before = 0;
    for (std::size_t r = 0; r < ranking.size(); ++r) {
        const double c = s.is_special(ranking[r]) ? 0.0 : static_cast<double>(counts[static_cast<std::size_t>(ranking[r])]);
        u[r] = total > 0 ? (before + c / 2) / total : 0.0;
        before += c;
    }
    const auto table_for = [&](double rho) {
        exit_table e(s.vocab_size, L, policy);
        for (std::size_t r = 0; r < ranking.size(); ++r)
            e.set(ranking[r], static_cast<int>(std::min<double>(L, 1 + std::floor(L * u[r] / rho))));
        e.force_last(s.special_ids);
        return e;
    };
    std::vector<std::uint8_t> exits(t.corpus->ids.size());
    const auto speedup = [&](const exit_table& e) {
        for (std::size_t i = 0; i < exits.size(); ++i) exits[i] = static_cast<std::uint8_t>(e.exit_layer(t.corpus->ids[i]));
        return exit_cost(*t.config, t.corpus->offsets, exits, t.kv).flops_speedup();
    };
    // Speed-up grows with rho; bisect log(rho) for the crossing of the target.
    double lo = -12, hi = 12; // log(rho)
    exit_table best = table_for(std::exp(hi));
    double best_speedup = speedup(best);
    if (best_speedup < t.ratio * (1 - t.tolerance))
        throw input_error("E24", "target_speedup: " + ratio_str(t.ratio) + " is out of reach for the '" + policy +
                                     "' hash on this corpus (at most " + ratio_str(best_speedup) + " with " +
                                     std::string(to_string(t.kv)) + " key/value semantics)");
    for (int it = 0; it < 60; ++it) {
        const double mid = (lo + hi) / 2;
        exit_table e = table_for(std::exp(mid));
        const double sp = speedup(e);
        if (std::abs(sp - t.ratio) < std::abs(best_speedup - t.ratio)) {
            best = std::move(e);
            best_speedup = sp;
        }
        (sp < t.ratio ? lo : hi) = mid;
    }
    if (std::abs(best_speedup - t.ratio) > t.tolerance * t.ratio)
        throw input_error("E24", "target_speedup: the '" + policy + "' hash cannot get within " +
                          std::to_string(static_cast<int>(100 * t.tolerance)) + "% of " + ratio_str(t.ratio) +
                          " on this corpus (closest: " + ratio_str(best_speedup) + ")");
    return best;
}

} // namespace detail

/// The exit table of a ranking (token ids, earliest exit first) under a bucketing.
inline exit_table make_exit_table(std::span<const std::int32_t> ranking, const hash_setup& s, const bucketing& b,
                                  std::string policy) {
    if (s.num_layers < 1 || s.vocab_size < 1) throw usage_error("U22", "hash_setup: needs a vocabulary and layers");
    for (const std::int32_t id : ranking)
        if (id < 0 || id >= s.vocab_size)
            throw usage_error("U22", "ranking holds token id " + std::to_string(id) + " outside the vocabulary");
    if (const auto* e = std::get_if<equal_type_buckets>(&b)) return detail::equal_types(ranking, s, e->buckets, std::move(policy));
    return detail::to_target(ranking, s, std::get<target_speedup>(b), std::move(policy));
}

} // namespace hashee
