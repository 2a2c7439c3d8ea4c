#pragma once
// The hash policies by name: "frequency", "mutual_information", "clustering", "random" (the
// consistent ones: each builds an exit table, build_exit_table.hpp) and "random_inconsistent"
// (a fresh draw per occurrence, random_hash.hpp). Parsing and printing, for commands and
// configuration files.

#include <array>
#include <string>
#include <string_view>

#include <hashee/core/error.hpp>

namespace hashee {

enum class hash_kind { frequency, mutual_information, clustering, random, random_inconsistent };

/// Every kind, in the order above.
inline constexpr std::array<hash_kind, 5> hash_kinds{hash_kind::frequency, hash_kind::mutual_information,
                                                     hash_kind::clustering, hash_kind::random,
                                                     hash_kind::random_inconsistent};

/// The name of a kind, as parse_hash_kind takes it and as an exit table records it.
inline std::string_view to_string(hash_kind k) {
    switch (k) {
    case hash_kind::frequency: return "frequency";
    case hash_kind::mutual_information: return "mutual_information";
    case hash_kind::clustering: return "clustering";
    case hash_kind::random: return "random";
    case hash_kind::random_inconsistent: return "random_inconsistent";
    }
    return "unknown";
}

/// True for the kinds that build an exit table (all but random_inconsistent).
constexpr bool is_consistent(hash_kind k) { return k != hash_kind::random_inconsistent; }

/// True for the kinds that rank the ids of a corpus (frequency, mutual_information).
constexpr bool needs_corpus(hash_kind k) { return k == hash_kind::frequency || k == hash_kind::mutual_information; }

/// A kind by name; input_error E73 naming the known ones for any other name.
inline hash_kind parse_hash_kind(std::string_view name) {
    for (const hash_kind k : hash_kinds)
        if (name == to_string(k)) return k;
    std::string m = "unknown hash policy '" + std::string(name) + "' (";
    for (std::size_t i = 0; i < hash_kinds.size(); ++i) {
        if (i) m += ", ";
        m += to_string(hash_kinds[i]);
    }
    throw input_error("E73", m + ")");
}

} // namespace hashee
