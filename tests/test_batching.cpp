// The one batching API (model/batching.hpp): limits on sequences and tokens, sorting undone
// through the input indices, truncation to the tokenizer's length, errors naming the input.

#include <hashee/core/detail/write_file.hpp>
#include <hashee/model/batching.hpp>

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace hashee;

namespace {

const wordpiece_tokenizer& tok() {
    static const wordpiece_tokenizer t = wordpiece_tokenizer::from_directory(hashee::test::model_dir());
    return t;
}

std::vector<encoding> of_lengths(const std::vector<std::size_t>& lengths) {
    std::vector<encoding> out;
    for (const std::size_t n : lengths) {
        encoding e;
        for (std::size_t j = 0; j < n; ++j) {
            e.ids.push_back(static_cast<std::int32_t>(100 + n));
            e.type_ids.push_back(0);
        }
        out.push_back(std::move(e));
    }
    return out;
}

} // namespace

TEST_CASE("batching: at most N sequences, inputs in order", "[batching]") {
    const auto encs = of_lengths({3, 5, 4, 2, 6, 7, 3});
    const auto bs = make_batches(encs, {.max_sequences = 3});
    REQUIRE(bs.size() == 3);
    CHECK(bs[0].inputs == std::vector<std::size_t>{0, 1, 2});
    CHECK(bs[1].inputs == std::vector<std::size_t>{3, 4, 5});
    CHECK(bs[2].inputs == std::vector<std::size_t>{6});
    CHECK(bs[1].tokens.sequences() == 3);
    CHECK(bs[1].tokens.length(1) == 6);
    // the same batches as packing consecutive slices by hand
    const packed_batch by_hand = pack(std::span(encs).subspan(3, 3));
    CHECK(bs[1].tokens.ids == by_hand.ids);
    CHECK(bs[1].tokens.offsets == by_hand.offsets);
    CHECK(make_batches(std::span<const encoding>{}, {}).empty());
    CHECK_THROWS_ID_AS(make_batches(encs, {.max_sequences = 0}), usage_error, "U50");
}

TEST_CASE("batching: at most T tokens; a longer sequence alone", "[batching]") {
    const auto encs = of_lengths({3, 5, 4, 20, 2, 2});
    const auto bs = make_batches(encs, {.max_sequences = 10, .max_tokens = 9});
    REQUIRE(bs.size() == 4);
    CHECK(bs[0].inputs == std::vector<std::size_t>{0, 1});
    CHECK(bs[1].inputs == std::vector<std::size_t>{2});
    CHECK(bs[2].inputs == std::vector<std::size_t>{3});
    CHECK(bs[3].inputs == std::vector<std::size_t>{4, 5});
    for (const auto& b : bs) CHECK((b.tokens.tokens() <= 9 || b.size() == 1));
}

TEST_CASE("batching: sorting by length is undone through the input indices", "[batching]") {
    const auto encs = of_lengths({5, 1, 4, 1, 3, 2});
    const auto bs = make_batches(encs, {.max_sequences = 2, .sort_by_length = true});
    REQUIRE(bs.size() == 3);
    CHECK(bs[0].inputs == std::vector<std::size_t>{1, 3}); // stable: ties in input order
    CHECK(bs[1].inputs == std::vector<std::size_t>{5, 4});
    CHECK(bs[2].inputs == std::vector<std::size_t>{2, 0});
    std::vector<std::size_t> back(encs.size(), 0);
    std::vector<bool> seen(encs.size(), false);
    for (const auto& b : bs)
        for (std::size_t k = 0; k < b.size(); ++k) {
            back[b.inputs[k]] = static_cast<std::size_t>(b.tokens.length(static_cast<index_t>(k)));
            seen[b.inputs[k]] = true;
        }
    CHECK(back == std::vector<std::size_t>{5, 1, 4, 1, 3, 2});
    CHECK(std::all_of(seen.begin(), seen.end(), [](bool s) { return s; }));
}

TEST_CASE("batching: texts and pairs are truncated to the tokenizer's length", "[batching]") {
    const std::string long_text = [] {
        std::string s;
        for (int i = 0; i < 700; ++i) s += "word ";
        return s;
    }();
    const std::vector<text_input> in{{"a cat sat", std::nullopt}, {long_text, std::nullopt}, {long_text, std::string_view(long_text)}};
    const auto bs = make_batches(tok(), in, {.max_sequences = 8});
    REQUIRE(bs.size() == 1);
    CHECK(bs[0].tokens.length(0) == 5);
    CHECK(bs[0].tokens.length(1) == static_cast<index_t>(tok().options().max_length));
    CHECK(bs[0].tokens.length(2) == static_cast<index_t>(tok().options().max_length));
    const auto e = tok().encode("a cat sat");
    CHECK(std::vector<std::int32_t>(bs[0].tokens.ids.begin(), bs[0].tokens.ids.begin() + 5) == e.ids);
    const auto short_bs = make_batches(tok(), in, {.max_sequences = 8, .max_length = 16});
    CHECK(short_bs[0].tokens.length(1) == 16);
    CHECK(short_bs[0].tokens.length(2) == 16);
}

TEST_CASE("batching: errors name the input, its index or its source and line", "[batching]") {
    const std::vector<text_input> in{{"fine", std::nullopt}, {"a", std::string_view("b")}};
    // max_length 2 cannot hold the three specials of a pair (E20): the error names input 1
    CHECK_THROWS_WITH(make_batches(tok(), in, {.max_length = 2}), Catch::StartsWith("input 1: "));
    const input_source counted{"in.txt", {}};
    CHECK_THROWS_WITH(make_batches(tok(), in, {.max_length = 2}, &counted), Catch::StartsWith("in.txt, input 2: "));
    const input_source lined{"in.tsv", {2, 7}};
    CHECK_THROWS_WITH(make_batches(tok(), in, {.max_length = 2}, &lined), Catch::StartsWith("in.tsv:7: "));

    // a forward's error, prefixed with the batch's inputs, its id kept
    const auto bs = make_batches(of_lengths({1, 1, 1}), {.max_sequences = 2});
    const auto fail = [] { throw input_error("E13", "sequence 0 has 600 tokens"); };
    CHECK_THROWS_WITH(with_input_context(bs[0], &counted, fail),
                      "in.txt, inputs 1 to 2 (sequence k is input 1 + k): sequence 0 has 600 tokens");
    CHECK_THROWS_ID(with_input_context(bs[1], nullptr, fail), "E13");
    CHECK_THROWS_WITH(with_input_context(bs[1], nullptr, fail), Catch::StartsWith("inputs 2 to 2 "));
    const auto sorted = make_batches(of_lengths({3, 1, 2}), {.max_sequences = 3, .sort_by_length = true});
    CHECK(sorted[0].describe(&counted) == "in.txt, inputs 2, 3, 1 (sequence k is the k-th of these)");
}

TEST_CASE("atomic_file: renamed into place on commit, removed on failure", "[batching][write_file]") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("hashee_atomic_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    {
        detail::atomic_file f(dir / "a.txt");
        f.stream() << "half";
        CHECK_FALSE(fs::exists(dir / "a.txt"));
    } // not committed: nothing left
    CHECK(fs::is_empty(dir));
    {
        detail::atomic_file f(dir / "b.txt");
        f.stream() << "whole";
        f.commit();
    }
    std::ifstream in(dir / "b.txt");
    std::string s;
    in >> s;
    CHECK(s == "whole");
    CHECK_THROWS_ID_AS(detail::atomic_file(dir), io_error, "E61");
    CHECK_THROWS_ID_AS(detail::write_file_atomically(dir / "no" / "such" / "c.txt", "x"), io_error, "E61");
    fs::remove_all(dir);
}
