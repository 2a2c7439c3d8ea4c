#pragma once
// Shared fixture of the HashEE tests: the real model, its hash setup, and the SST-2 corpus
// (train sentences, labels) hashes are built from; plus one factory per hash policy so test
// bodies can be templated over every policy.

#include <type_traits>

#include <hashee/core/detail/random.hpp>
#include <hashee/hashee.hpp>

#include "test_support.hpp"

namespace hashee::test {

struct hash_fixture {
    eigen_cpu cpu{2};
    model<eigen_cpu> m = model<eigen_cpu>::load(model_dir(), cpu);
    hash_setup setup = m.hash_setup_for();
    packed_batch corpus;     ///< SST-2 train, tokenised
    std::vector<int> labels; ///< its labels
    std::vector<std::string> dev;

    hash_fixture() {
        const auto train = tsv_table::load(elue_dir() / "SST-2" / "train.tsv");
        std::vector<text_input> texts;
        for (std::size_t i = 0; i < train.size(); ++i) {
            texts.push_back({train.row(i)[0], std::nullopt});
            labels.push_back(std::stoi(train.row(i)[1]));
        }
        corpus = m.tokenize(texts);
        const auto d = tsv_table::load(elue_dir() / "SST-2" / "dev.tsv");
        for (std::size_t i = 0; i < d.size(); ++i) dev.push_back(d.row(i)[0]);
    }
    static const hash_fixture& get() {
        static const hash_fixture f;
        return f;
    }
    packed_batch dev_batch(std::size_t first, std::size_t count) const {
        std::vector<text_input> texts;
        for (std::size_t i = first; i < first + count; ++i) texts.push_back({dev[i % dev.size()], std::nullopt});
        return m.tokenize(texts);
    }
};

struct frequency_factory {
    static exit_table make(const hash_fixture& f) { return frequency_hash(f.setup, f.corpus, equal_type_buckets{}); }
};
struct mutual_information_factory {
    static exit_table make(const hash_fixture& f) {
        return mutual_information_hash(f.setup, f.corpus, f.labels, 2, equal_type_buckets{});
    }
};
struct clustering_factory {
    static exit_table make(const hash_fixture& f) {
        return clustering_hash(f.setup, f.m.encoder().weights().embeddings().word, equal_type_buckets{}, f.cpu,
                               {.restarts = test::under_sanitizer ? 1 : 2, .max_iterations = test::under_sanitizer ? 8 : 30, .seed = 1});
    }
};
struct random_factory {
    static exit_table make(const hash_fixture& f) { return random_hash(f.setup, 42, equal_type_buckets{}); }
};
struct random_inconsistent_factory {
    static random_inconsistent_hash make(const hash_fixture& f) {
        return random_inconsistent_hash::like(random_factory::make(f), f.setup, f.corpus, 7);
    }
};
/// Every id, special tokens included, at a uniformly random layer: sequences whose every
/// token (even [CLS]) has exited at some layer, and layers with nothing to do.
struct fully_random_table_factory {
    static exit_table make(const hash_fixture& f) {
        exit_table t(f.setup.vocab_size, f.setup.num_layers, "fully_random");
        hashee::detail::random_source rng(3);
        for (std::int32_t id = 0; id < t.vocab_size(); ++id) t.set(id, 1 + static_cast<int>(rng.below(static_cast<std::uint64_t>(t.num_layers()))));
        return t;
    }
};

template <class Factory, kv_semantics KV>
struct policy_case {
    using factory = Factory;
    static constexpr kv_semantics kv = KV;
};

using every_policy_case =
    std::tuple<policy_case<frequency_factory, kv_semantics::keep>, policy_case<frequency_factory, kv_semantics::drop>,
               policy_case<mutual_information_factory, kv_semantics::keep>,
               policy_case<mutual_information_factory, kv_semantics::drop>,
               policy_case<clustering_factory, kv_semantics::keep>, policy_case<clustering_factory, kv_semantics::drop>,
               policy_case<random_factory, kv_semantics::keep>, policy_case<random_factory, kv_semantics::drop>,
               policy_case<random_inconsistent_factory, kv_semantics::keep>,
               policy_case<random_inconsistent_factory, kv_semantics::drop>,
               policy_case<fully_random_table_factory, kv_semantics::keep>,
               policy_case<fully_random_table_factory, kv_semantics::drop>>;

/// Under the sanitizers each hash once, with keep and drop alternating (both semantics and
/// every hash's table still run instrumented; the full product runs in the release suite).
using sanitizer_policy_cases =
    std::tuple<policy_case<frequency_factory, kv_semantics::keep>, policy_case<mutual_information_factory, kv_semantics::drop>,
               policy_case<clustering_factory, kv_semantics::keep>, policy_case<random_factory, kv_semantics::drop>,
               policy_case<random_inconsistent_factory, kv_semantics::keep>,
               policy_case<fully_random_table_factory, kv_semantics::drop>>;

using all_policy_cases = std::conditional_t<under_sanitizer, sanitizer_policy_cases, every_policy_case>;

} // namespace hashee::test
