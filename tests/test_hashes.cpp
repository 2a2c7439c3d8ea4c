// Hash policies and exit tables: rankings on hand-made corpora, the paper's equal-type
// bucketing, the target-speed-up bucketing on real corpora, the random hashes, and the
// versioned table file with every validation it promises; build_exit_table, the names of the
// hashes and of keep/drop, hash_exit over each kind of hash, and the errors of each (ids).

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <type_traits>

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
    CHECK(frequency_ranking(toy(), corpus) == std::vector<std::int32_t>{3, 5, 7, 9});
    // Equal type counts over 3 layers: 4 types -> 1, 1, 2 (the last bucket takes the remainder).
    const exit_table t = frequency_hash(toy(), corpus, equal_type_buckets{});
    CHECK(t.exit_layer(3) == 1);
    CHECK(t.exit_layer(5) == 2);
    CHECK(t.exit_layer(7) == 3);
    CHECK(t.exit_layer(9) == 3);
    CHECK(t.exit_layer(0) == 3); // special
    CHECK(t.exit_layer(4) == 3); // never seen
    CHECK(t.exit_layer(-5) == 3); // outside the table
    CHECK(t.name() == "frequency");
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
    CHECK_THROWS_ID_AS(make_exit_table(std::vector<std::int32_t>{13}, s, equal_type_buckets{}, "x"), usage_error, "U22");
}

TEST_CASE("mutual information counts every class and every joint occurrence", "[hashes]") {
    // Labels 0, 1, 2. Token 2 appears only with label 2; token 3 evenly everywhere.
    const auto corpus = toy_corpus({{2, 3}, {3, 4}, {3, 2, 2}});
    const std::vector<int> labels{2, 0, 2};
    const auto mi = mutual_information_scores(toy(), corpus, labels, 3);
    // Hand computation over 7 occurrences: p(y=0) = 2/7, p(y=2) = 5/7.
    const double N = 7;
    const double mi2 = (3 / N) * std::log((3 / N) / ((3 / N) * (5 / N)));
    const double mi3 = (1 / N) * std::log((1 / N) / ((3 / N) * (2 / N))) + (2 / N) * std::log((2 / N) / ((3 / N) * (5 / N)));
    const double mi4 = (1 / N) * std::log((1 / N) / ((1 / N) * (2 / N)));
    CHECK(mi[2] == Approx(mi2).epsilon(1e-12));
    CHECK(mi[3] == Approx(mi3).epsilon(1e-12));
    CHECK(mi[4] == Approx(mi4).epsilon(1e-12));
    CHECK(mi[5] == 0.0);
    CHECK(mutual_information_ranking(toy(), corpus, labels, 3) == std::vector<std::int32_t>{4, 2, 3});
    CHECK_THROWS_ID_AS(mutual_information_scores(toy(), corpus, std::vector<int>{0, 1}, 3), usage_error, "U24");
    CHECK_THROWS_ID_AS(mutual_information_scores(toy(), corpus, labels, 1), usage_error, "U24");
    CHECK_THROWS_ID_AS(mutual_information_scores(toy(), corpus, std::vector<int>{0, 1, 3}, 3), input_error, "E72");
    CHECK_THROWS_WITH(mutual_information_scores(toy(), corpus, std::vector<int>{0, 1, 3}, 3), Contains("label 3"));
}

TEST_CASE("random hashes: consistent tables are seeded; inconsistent draws differ per call", "[hashes]") {
    const hash_setup s{1000, 6, {0, 1}};
    const exit_table a = random_hash(s, 5, equal_type_buckets{}), b = random_hash(s, 5, equal_type_buckets{}),
                     c = random_hash(s, 6, equal_type_buckets{});
    CHECK(std::ranges::equal(a.exits(), b.exits()));
    CHECK(!std::ranges::equal(a.exits(), c.exits()));
    CHECK(a.name() == "random");
    const auto hist = a.histogram();
    for (int l = 0; l < 5; ++l) CHECK(hist[static_cast<std::size_t>(l)] == 998 / 6); // equal type counts
    CHECK(a.exit_layer(0) == 6);

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
    const exit_table freq = frequency_hash(f.setup, f.corpus, t);
    const exit_table mi = mutual_information_hash(f.setup, f.corpus, f.labels, 2, t);
    const exit_table rnd = random_hash(f.setup, 1, t);
    for (const exit_table* h : {&freq, &mi, &rnd}) {
        std::vector<std::uint8_t> exits(f.corpus.ids.size());
        h->assign(f.corpus.ids, exits);
        const double sp = exit_cost(f.m.config(), f.corpus.offsets, exits, kv).flops_speedup();
        CAPTURE(h->name(), target, static_cast<int>(kv), sp);
        CHECK(std::abs(sp - target) <= 0.05 * target);
    }
    // Far beyond what keep semantics allows: every token at layer 1 still pays K and V above it.
    CHECK_THROWS_ID_AS(frequency_hash(f.setup, f.corpus, target_speedup{20.0, &f.corpus, &f.m.config(), kv_semantics::keep}),
                       input_error, "E24");
    CHECK_THROWS_WITH(frequency_hash(f.setup, f.corpus, target_speedup{20.0, &f.corpus, &f.m.config(), kv_semantics::keep}),
                      Contains("out of reach") && Contains("keep key/value semantics"));
    CHECK_THROWS_ID_AS(frequency_hash(f.setup, f.corpus, target_speedup{0.5, &f.corpus, &f.m.config()}), input_error, "E76");
    CHECK_THROWS_ID_AS(frequency_hash(f.setup, f.corpus, target_speedup{2.0, nullptr, &f.m.config()}), usage_error, "U23");
}

TEST_CASE("exit table files round-trip and are validated", "[hashes][file]") {
    const auto& f = hash_fixture::get();
    const auto& v = f.m.tokenizer().vocab();
    const exit_table h = random_hash(f.setup, 3, equal_type_buckets{});
    const std::string json = h.to_json(v);
    const auto back = exit_table::parse(json, "t.json", v, 6);
    CHECK(std::ranges::equal(back.exits(), h.exits()));
    CHECK(back.policy() == "random");

    const auto tmp = std::filesystem::temp_directory_path() / ("hashee_table_" + std::to_string(::getpid()) + ".json");
    h.save(tmp, v);
    const exit_table loaded = exit_table::load(tmp, v, 6);
    CHECK(std::ranges::equal(loaded.exits(), h.exits()));
    CHECK(loaded.name() == "random");
    std::filesystem::remove(tmp);

    const auto edited = [&](auto&& change) {
        auto j = nlohmann::json::parse(json);
        change(j);
        return j.dump();
    };
    CHECK_THROWS_ID_AS(exit_table::parse("{", "t.json", v, 6), format_error, "E71");
    CHECK_THROWS_WITH(exit_table::parse("{", "t.json", v, 6), Contains("t.json: invalid JSON"));
    CHECK_THROWS_ID_AS(exit_table::parse("[]", "t.json", v, 6), format_error, "E71");
    CHECK_THROWS_WITH(exit_table::parse("[]", "t.json", v, 6), Contains("expected a JSON object"));
    CHECK_THROWS_ID_AS(exit_table::parse(edited([](auto& j) { j["version"] = 2; }), "t.json", v, 6), format_error, "E23");
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["version"] = 2; }), "t.json", v, 6), Contains("unsupported version 2"));
    CHECK_THROWS_ID_AS(exit_table::parse(edited([](auto& j) { j["format"] = "x"; }), "t.json", v, 6), format_error, "E23");
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["format"] = "x"; }), "t.json", v, 6), Contains("'format'"));
    CHECK_THROWS_ID_AS(exit_table::parse(edited([](auto& j) { j.erase("policy"); }), "t.json", v, 6), format_error, "E71");
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j.erase("policy"); }), "t.json", v, 6), Contains("missing field 'policy'"));
    CHECK_THROWS_ID_AS(exit_table::parse(edited([](auto& j) { j["extra"] = 1; }), "t.json", v, 6), format_error, "E71");
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["extra"] = 1; }), "t.json", v, 6), Contains("unknown field 'extra'"));
    CHECK_THROWS_ID_AS(exit_table::parse(json, "t.json", v, 12), format_error, "E23");
    CHECK_THROWS_WITH(exit_table::parse(json, "t.json", v, 12), Contains("the model has 12 layers"));
    CHECK_THROWS_ID_AS(exit_table::parse(edited([](auto& j) { j["vocab_size"] = 5; }), "t.json", v, 6), format_error, "E23");
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["vocab_size"] = 5; }), "t.json", v, 6), Contains("'vocab_size' is 5"));
    CHECK_THROWS_ID_AS(exit_table::parse(edited([](auto& j) { j["vocab_fingerprint"] = "00"; }), "t.json", v, 6), format_error, "E23");
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["vocab_fingerprint"] = "00"; }), "t.json", v, 6), Contains("another model"));
    CHECK_THROWS_ID_AS(exit_table::parse(edited([](auto& j) { j["exits"][17] = 7; }), "t.json", v, 6), format_error, "E71");
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["exits"][17] = 7; }), "t.json", v, 6), Contains("exits[17] = 7"));
    CHECK_THROWS_ID_AS(exit_table::parse(edited([](auto& j) { j["exits"][3] = 0; }), "t.json", v, 6), format_error, "E71");
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["exits"][3] = 0; }), "t.json", v, 6), Contains("exits[3] = 0"));
    CHECK_THROWS_ID_AS(exit_table::parse(edited([](auto& j) { j["exits"][3] = "2"; }), "t.json", v, 6), format_error, "E71");
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["exits"][3] = "2"; }), "t.json", v, 6), Contains("exits[3]"));
    CHECK_THROWS_ID_AS(exit_table::parse(edited([](auto& j) { j["exits"].erase(0); }), "t.json", v, 6), format_error, "E71");
    CHECK_THROWS_WITH(exit_table::parse(edited([](auto& j) { j["exits"].erase(0); }), "t.json", v, 6), Contains("array of 30522"));
    CHECK_THROWS_AS(exit_table::load("/nonexistent/t.json", v, 6), io_error);
}

TEST_CASE("clustering orders k-means clusters of the word embeddings by norm sum", "[hashes][clustering]") {
    const auto& f = hash_fixture::get();
    const auto h = test::clustering_factory::make(f);
    const auto hist = h.histogram();
    CHECK(hist.size() == 6);
    for (const auto c : hist) CHECK(c > 0); // every cluster, hence every layer, gets tokens
    // Deterministic for a seed.
    CHECK(std::ranges::equal(test::clustering_factory::make(f).exits(), h.exits()));
    CHECK(h.name() == "clustering");
    for (const std::int32_t s : f.setup.special_ids) CHECK(h.exit_layer(s) == 6);
}

TEST_CASE("every builder refuses a corpus without text the same way (E70)", "[hashes][errors]") {
    const hash_setup s = toy();
    const bert_config& c = hash_fixture::get().m.config();
    const exit_table consistent = random_hash(s, 1, equal_type_buckets{});
    // No sequences at all, and sequences of special tokens only (empty texts: [CLS] [SEP]).
    for (const packed_batch& corpus : {packed_batch{}, toy_corpus({{0, 1}, {0, 1}, {0, 1}})}) {
        const std::vector<int> labels(static_cast<std::size_t>(corpus.sequences()), 0);
        CAPTURE(corpus.sequences());
        CHECK_THROWS_ID_AS(frequency_hash(s, corpus, equal_type_buckets{}), input_error, "E70");
        CHECK_THROWS_ID_AS(mutual_information_hash(s, corpus, labels, 2, equal_type_buckets{}), input_error, "E70");
        CHECK_THROWS_ID_AS(random_inconsistent_hash::like(consistent, s, corpus, 3), input_error, "E70");
        const target_speedup target{1.5, &corpus, &c};
        CHECK_THROWS_ID_AS(random_hash(s, 1, target), input_error, "E70");
        CHECK_THROWS_ID_AS(frequency_hash(s, corpus, target), input_error, "E70");
        for (const hash_kind k : {hash_kind::frequency, hash_kind::mutual_information}) {
            CHECK_THROWS_ID_AS(build_exit_table(k, s, equal_type_buckets{}, {.corpus = &corpus, .labels = labels}),
                               input_error, "E70");
        }
        // The message names the builder and what is empty.
        CHECK_THROWS_WITH(frequency_hash(s, corpus, equal_type_buckets{}),
                          Contains("frequency_hash: the corpus") &&
                              Contains(corpus.sequences() == 0 ? "is empty" : "no token besides the special tokens"));
    }
    // A single token of text is enough.
    CHECK_NOTHROW(frequency_hash(s, toy_corpus({{0, 1}, {0, 4, 1}}), equal_type_buckets{}));
}

TEST_CASE("a mutual-information class count from labels is bounded (E72)", "[hashes][errors]") {
    const auto corpus = toy_corpus({{2, 3}, {3, 4}});
    const std::vector<int> huge{0, 1000000000}, max_int{0, std::numeric_limits<int>::max()};
    for (const auto* labels : {&huge, &max_int}) {
        CHECK_THROWS_ID_AS(build_exit_table(hash_kind::mutual_information, toy(), equal_type_buckets{},
                                            {.corpus = &corpus, .labels = *labels}),
                           input_error, "E72");
    }
    CHECK_THROWS_ID_AS(mutual_information_hash(toy(), corpus, huge, 1000000001, equal_type_buckets{}), input_error, "E72");
    CHECK_THROWS_WITH(mutual_information_scores(toy(), corpus, huge, 1000000001), Contains("at most 1024"));
    const std::vector<int> top{0, mutual_information_max_classes - 1};
    CHECK_NOTHROW(build_exit_table(hash_kind::mutual_information, toy(), equal_type_buckets{},
                                   {.corpus = &corpus, .labels = top}));
}

TEST_CASE("hash policy names and key/value semantics parse and print", "[hashes][names]") {
    for (const hash_kind k : hash_kinds) CHECK(parse_hash_kind(to_string(k)) == k);
    CHECK(to_string(hash_kind::mutual_information) == "mutual_information");
    CHECK(to_string(hash_kind::random_inconsistent) == "random_inconsistent");
    CHECK(!is_consistent(hash_kind::random_inconsistent));
    CHECK(is_consistent(hash_kind::clustering));
    CHECK(needs_corpus(hash_kind::frequency));
    CHECK(!needs_corpus(hash_kind::random));
    CHECK_THROWS_ID_AS(parse_hash_kind("nope"), input_error, "E73");
    CHECK_THROWS_WITH(parse_hash_kind("Frequency"), Contains("unknown hash policy 'Frequency'") && Contains("random_inconsistent"));
    CHECK(parse_kv_semantics("keep") == kv_semantics::keep);
    CHECK(parse_kv_semantics("drop") == kv_semantics::drop);
    CHECK(to_string(kv_semantics::keep) == "keep");
    CHECK(to_string(kv_semantics::drop) == "drop");
    CHECK_THROWS_ID_AS(parse_kv_semantics("both"), input_error, "E74");
    CHECK_THROWS_WITH(parse_kv_semantics("both", "--kv"), Contains("--kv must be keep or drop, not 'both'"));
}

TEST_CASE("build_exit_table builds what each builder builds, bit for bit", "[hashes][build]") {
    const auto& f = hash_fixture::get();
    const target_speedup t{2.0, &f.corpus, &f.m.config(), kv_semantics::keep};
    for (const bucketing& b : {bucketing{equal_type_buckets{}}, bucketing{t}}) {
        const hash_sources src{.corpus = &f.corpus, .labels = f.labels, .seed = 42};
        const exit_table freq = build_exit_table(parse_hash_kind("frequency"), f.setup, b, src);
        CHECK(std::ranges::equal(freq.exits(), frequency_hash(f.setup, f.corpus, b).exits()));
        CHECK(freq.name() == "frequency");
        const exit_table mi = build_exit_table(hash_kind::mutual_information, f.setup, b, src);
        CHECK(std::ranges::equal(mi.exits(), mutual_information_hash(f.setup, f.corpus, f.labels, 2, b).exits()));
        CHECK(mi.name() == "mutual_information");
        const exit_table rnd = build_exit_table(hash_kind::random, f.setup, b, src);
        CHECK(std::ranges::equal(rnd.exits(), random_hash(f.setup, 42, b).exits()));
    }
    // Clustering: computed once into the cache, then reused while k fits.
    std::optional<word_clusters> cache;
    const hash_sources src{.word_embeddings = f.m.encoder().weights().embeddings().word, .cpu = &f.cpu, .seed = 1,
                           .clusters = &cache};
    word_clusters small = word_clusters::compute(f.m.encoder().weights().embeddings().word, 3, f.cpu,
                                                 {.restarts = 1, .max_iterations = 5, .seed = 1});
    cache = small;
    const exit_table from_cache = build_exit_table(hash_kind::clustering, f.setup, equal_type_buckets{3}, src);
    CHECK(std::ranges::equal(from_cache.exits(), clustering_hash(f.setup, small, equal_type_buckets{3}).exits()));
    CHECK(from_cache.name() == "clustering");
    // Misuse: what a kind needs is missing, or the kind has no table.
    CHECK_THROWS_ID_AS(build_exit_table(hash_kind::frequency, f.setup, equal_type_buckets{}, {}), usage_error, "U20");
    CHECK_THROWS_ID_AS(build_exit_table(hash_kind::mutual_information, f.setup, equal_type_buckets{}, {.corpus = &f.corpus}),
                       usage_error, "U20");
    CHECK_THROWS_ID_AS(build_exit_table(hash_kind::clustering, f.setup, equal_type_buckets{}, {}), usage_error, "U20");
    CHECK_THROWS_ID_AS(build_exit_table(hash_kind::random_inconsistent, f.setup, equal_type_buckets{}, {}), usage_error,
                       "U20");
}

namespace {
/// A hash a user provides: every occurrence exits at layer 2.
struct layer_two_hash {
    std::string_view name() const { return "layer_two"; }
    int num_layers() const { return 3; }
    void assign(std::span<const std::int32_t>, std::span<std::uint8_t> exits) const {
        std::fill(exits.begin(), exits.end(), std::uint8_t{2});
    }
};
} // namespace

TEST_CASE("hash_exit holds a table, the inconsistent draw, or a user's hash", "[hashes][hash_exit]") {
    const hash_setup s = toy();
    const auto corpus = toy_corpus({{0, 5, 5, 7, 1}, {0, 5, 3, 3, 3, 7, 1}, {0, 9, 1}});
    const exit_table table = frequency_hash(s, corpus, equal_type_buckets{});
    std::vector<std::uint8_t> exits(corpus.ids.size()), expect(corpus.ids.size());
    table.assign(corpus.ids, expect);

    const hash_exit<> by_table(table);
    CHECK(by_table.name() == "frequency");
    CHECK(by_table.num_layers() == 3);
    REQUIRE(by_table.table() != nullptr);
    by_table.exit_layers(corpus, exits);
    CHECK(exits == expect);

    const hash_exit<kv_semantics::drop> drawn(random_inconsistent_hash::like(table, s, corpus, 5));
    CHECK(drawn.name() == "random_inconsistent");
    CHECK(drawn.table() == nullptr);
    std::vector<std::uint8_t> first(exits.size());
    drawn.exit_layers(corpus, first);
    CHECK(first[0] == 3); // [CLS] stays at L

    const hash_exit<> user(layer_two_hash{});
    CHECK(user.name() == "layer_two");
    user.exit_layers(corpus, exits);
    CHECK(std::ranges::all_of(exits, [](std::uint8_t e) { return e == 2; }));
    const hash_exit<> copy = user; // copies share the hash
    CHECK(copy.name() == "layer_two");

    // keep/drop chosen at run time.
    for (const kv_semantics kv : {kv_semantics::keep, kv_semantics::drop})
        CHECK(with_hash_exit(table, kv, [](const auto& p) { return std::remove_cvref_t<decltype(p)>::kv; }) == kv);

    std::vector<std::uint8_t> short_exits(2);
    CHECK_THROWS_ID_AS(table.assign(corpus.ids, short_exits), usage_error, "U21");
    CHECK_THROWS_ID_AS(random_inconsistent_hash(s, {1, 1}, 1), usage_error, "U25");
    CHECK_THROWS_ID_AS(random_inconsistent_hash(s, {0, 0, 0}, 1), usage_error, "U25");
    exit_table t(10, 3);
    CHECK_THROWS_ID_AS(t.set(10, 1), usage_error, "U22");
    CHECK_THROWS_ID_AS(t.set(1, 4), usage_error, "U22");
    CHECK_THROWS_ID_AS(exit_table(0, 3), usage_error, "U22");
}
