// Hash policies and exit tables: rankings on hand-made corpora, the paper's equal-type
// bucketing, the target-speed-up bucketing on real corpora, the random hashes, and the
// versioned table file with every validation it promises.

#include <cmath>
#include <set>

#include <catch2/catch.hpp>

#include <hashee/hashee.hpp>

#include "hash_fixture.hpp"

using namespace hashee;
using Catch::Matchers::Contains;
using hashee::test::hash_fixture;

namespace {

/// A toy setup: 10 ids, 3 layers, id 0 and 1 special.
hash_setup toy() { return {10, 3, {0, 1}}; }

packed_batch toy_corpus(const std::vector<std::vector<std::int32_t>>& seqs) {
    packed_batch b;
    for (const auto& s : seqs) b.push_back(s, std::vector<std::int32_t>(s.size(), 0));
    return b;
}

} // namespace

TEST_CASE("frequency ranks seen ids by count, specials excluded", "[hashes]") {
    const auto corpus = toy_corpus({{0, 5, 5, 7, 1}, {0, 5, 3, 3, 3, 7, 1}, {0, 9, 1}});
    CHECK(frequency_hash::ranking(toy(), corpus) == std::vector<std::int32_t>{3, 5, 7, 9});
    // Equal type counts over 3 layers: 4 types -> 1, 1, 2 (the last bucket takes the remainder).
    const frequency_hash h(toy(), corpus, equal_type_buckets{});
    const auto& t = h.table();
    CHECK(t.exit_layer(3) == 1);
    CHECK(t.exit_layer(5) == 2);
    CHECK(t.exit_layer(7) == 3);
    CHECK(t.exit_layer(9) == 3);
    CHECK(t.exit_layer(0) == 3); // special
    CHECK(t.exit_layer(4) == 3); // never seen
    CHECK(t.exit_layer(-5) == 3); // outside the table
    CHECK(h.name() == "frequency");
}

TEST_CASE("the paper's bucketing maps B buckets onto L layers", "[hashes]") {
    const hash_setup s{13, 6, {}};
    std::vector<std::int32_t> ranking(12);
    std::iota(ranking.begin(), ranking.end(), 1);
    // B = 3 over 6 layers: buckets exit at layers 2, 4, 6.
    const auto t = make_exit_table(ranking, s, equal_type_buckets{3}, "x");
    CHECK(t.exit_layer(1) == 2);
    CHECK(t.exit_layer(4) == 2);
    CHECK(t.exit_layer(5) == 4);
    CHECK(t.exit_layer(9) == 6);
    CHECK(t.exit_layer(0) == 6); // not ranked
    // B = L: bucket k exits at k + 1; 12 types, 2 per bucket.
    const auto u = make_exit_table(ranking, s, equal_type_buckets{6}, "x");
    for (std::int32_t id = 1; id <= 12; ++id) CHECK(u.exit_layer(id) == (id + 1) / 2);
    CHECK_THROWS_AS(make_exit_table(std::vector<std::int32_t>{13}, s, equal_type_buckets{}, "x"), input_error);
}

TEST_CASE("mutual information counts every class and every joint occurrence", "[hashes]") {
    // Labels 0, 1, 2. Token 2 appears only with label 2; token 3 evenly everywhere.
    const auto corpus = toy_corpus({{2, 3}, {3, 4}, {3, 2, 2}});
    const std::vector<int> labels{2, 0, 2};
    const auto mi = mutual_information_hash::scores(toy(), corpus, labels, 3);
    // Hand computation over 7 occurrences: p(y=0) = 2/7, p(y=2) = 5/7.
    const double N = 7;
    const double mi2 = (3 / N) * std::log((3 / N) / ((3 / N) * (5 / N)));
    const double mi3 = (1 / N) * std::log((1 / N) / ((3 / N) * (2 / N))) + (2 / N) * std::log((2 / N) / ((3 / N) * (5 / N)));
    const double mi4 = (1 / N) * std::log((1 / N) / ((1 / N) * (2 / N)));
    CHECK(mi[2] == Approx(mi2).epsilon(1e-12));
    CHECK(mi[3] == Approx(mi3).epsilon(1e-12));
    CHECK(mi[4] == Approx(mi4).epsilon(1e-12));
    CHECK(mi[5] == 0.0);
    CHECK(mutual_information_hash::ranking(toy(), corpus, labels, 3) == std::vector<std::int32_t>{4, 2, 3});
    CHECK_THROWS_WITH(mutual_information_hash::scores(toy(), corpus, std::vector<int>{0, 1}, 3), Contains("2 labels for 3"));
    CHECK_THROWS_WITH(mutual_information_hash::scores(toy(), corpus, std::vector<int>{0, 1, 3}, 3), Contains("label 3"));
}

TEST_CASE("random hashes: consistent tables are seeded; inconsistent draws differ per call", "[hashes]") {
    const hash_setup s{1000, 6, {0, 1}};
    const random_hash a(s, 5, equal_type_buckets{}), b(s, 5, equal_type_buckets{}), c(s, 6, equal_type_buckets{});
    CHECK(std::ranges::equal(a.table().exits(), b.table().exits()));
    CHECK(!std::ranges::equal(a.table().exits(), c.table().exits()));
    const auto hist = a.table().histogram();
    for (int l = 0; l < 5; ++l) CHECK(hist[static_cast<std::size_t>(l)] == 998 / 6); // equal type counts
    CHECK(a.table().exit_layer(0) == 6);

    const random_inconsistent_hash r(s, {1, 1, 1, 1, 1, 1}, 9);
    std::vector<std::int32_t> ids(600);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>(i % 100);
    std::vector<std::uint8_t> e1(ids.size()), e2(ids.size());
    r.assign(ids, e1);
    r.assign(ids, e2);
    CHECK(e1 != e2);                       // fresh per occurrence
    CHECK(e1[0] == 6);                     // specials stay at L
    CHECK(e1[100] == 6);
    std::set<int> seen(e1.begin(), e1.end());
    CHECK(seen.size() == 6);
}

TEST_CASE("target bucketing meets the requested FLOPs speed-up within 5%", "[hashes][target]") {
    const auto& f = hash_fixture::get();
    const double target = GENERATE(1.5, 2.0, 2.5);
    const kv_semantics kv = GENERATE(kv_semantics::keep, kv_semantics::drop);
    const target_speedup t{target, &f.corpus, &f.m.config(), kv};
    const frequency_hash freq(f.setup, f.corpus, t);
    const mutual_information_hash mi(f.setup, f.corpus, f.labels, 2, t);
    const random_hash rnd(f.setup, 1, t);
    for (const table_hash* h : {static_cast<const table_hash*>(&freq), static_cast<const table_hash*>(&mi),
                                static_cast<const table_hash*>(&rnd)}) {
        std::vector<std::uint8_t> exits(f.corpus.ids.size());
        h->assign(f.corpus.ids, exits);
        const double sp = exit_cost(f.m.config(), f.corpus.offsets, exits, kv).flops_speedup();
        CAPTURE(h->name(), target, static_cast<int>(kv), sp);
        CHECK(std::abs(sp - target) <= 0.05 * target);
    }
    // Far beyond what keep semantics allows: every token at layer 1 still pays K and V above it.
    CHECK_THROWS_WITH(frequency_hash(f.setup, f.corpus, target_speedup{20.0, &f.corpus, &f.m.config(), kv_semantics::keep}),
                      Contains("out of reach"));
}

TEST_CASE("exit table files round-trip and are validated", "[hashes][file]") {
    const auto& f = hash_fixture::get();
    const auto& v = f.m.tokenizer().vocab();
    const random_hash h(f.setup, 3, equal_type_buckets{});
    const std::string json = h.table().to_json(v);
    const auto back = exit_table::parse(json, "t.json", v, 6);
    CHECK(std::ranges::equal(back.exits(), h.table().exits()));
    CHECK(back.policy() == "random");

    const auto tmp = std::filesystem::temp_directory_path() / ("hashee_table_" + std::to_string(::getpid()) + ".json");
    h.table().save(tmp, v);
    CHECK(std::ranges::equal(table_hash::load(tmp, v, 6).table().exits(), h.table().exits()));
    std::filesystem::remove(tmp);

    const auto edited = [&](auto&& change) {
        auto j = nlohmann::json::parse(json);
        change(j);
        return j.dump();
    };
    CHECK_THROWS_WITH(exit_table::parse("{", "t.json", v, 6), Contains("t.json: invalid JSON"));
    CHECK_THROWS_WITH(exit_table::parse("[]", "t.json", v, 6), Contains("expected a JSON object"));
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["version"] = 2; }), "t.json", v, 6), Contains("unsupported version 2"));
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["format"] = "x"; }), "t.json", v, 6), Contains("'format'"));
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j.erase("policy"); }), "t.json", v, 6), Contains("missing field 'policy'"));
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["extra"] = 1; }), "t.json", v, 6), Contains("unknown field 'extra'"));
    CHECK_THROWS_WITH(exit_table::parse(json, "t.json", v, 12), Contains("the model has 12 layers"));
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["vocab_size"] = 5; }), "t.json", v, 6), Contains("'vocab_size' is 5"));
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["vocab_fingerprint"] = "00"; }), "t.json", v, 6), Contains("another model"));
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["exits"][17] = 7; }), "t.json", v, 6), Contains("exits[17] = 7"));
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["exits"][3] = 0; }), "t.json", v, 6), Contains("exits[3] = 0"));
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["exits"][3] = "2"; }), "t.json", v, 6), Contains("exits[3]"));
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["exits"].erase(0); }), "t.json", v, 6), Contains("array of 30522"));
    CHECK_THROWS_AS(exit_table::load("/nonexistent/t.json", v, 6), io_error);
}

TEST_CASE("clustering orders k-means clusters of the word embeddings by norm sum", "[hashes][clustering]") {
    const auto& f = hash_fixture::get();
    const auto h = test::clustering_factory::make(f);
    const auto hist = h.table().histogram();
    CHECK(hist.size() == 6);
    for (const auto c : hist) CHECK(c > 0); // every cluster, hence every layer, gets tokens
    // Deterministic for a seed.
    CHECK(std::ranges::equal(test::clustering_factory::make(f).table().exits(), h.table().exits()));
    for (const std::int32_t s : f.setup.special_ids) CHECK(h.table().exit_layer(s) == 6);
}
