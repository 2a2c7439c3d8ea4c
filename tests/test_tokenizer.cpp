// WordPiece tokenizer: parity with Hugging Face's BertTokenizer (goldens made by
// scripts/make_tokenizer_goldens.py), vocabulary loading, errors, truncation, batching.

#include <hashee/text/tokenizer.hpp>
#include <hashee/text/vocab.hpp>

#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using hashee::wordpiece_tokenizer;

namespace {

const wordpiece_tokenizer& real_tokenizer() {
    static const wordpiece_tokenizer tok = wordpiece_tokenizer::from_directory(hashee::test::model_dir());
    return tok;
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + p.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (true) {
        const std::size_t e = s.find(sep, pos);
        out.emplace_back(s.substr(pos, e == std::string_view::npos ? std::string_view::npos : e - pos));
        if (e == std::string_view::npos) break;
        pos = e + 1;
    }
    return out;
}

/// Same reading as the golden script: split on '\n' only, drop a BOM, a trailing '\r' and a
/// final empty line; fields split on '\t'.
std::vector<std::vector<std::string>> read_tsv(const fs::path& p) {
    std::string text = read_file(p);
    if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
    auto lines = split(text, '\n');
    if (!lines.empty() && lines.back().empty()) lines.pop_back();
    std::vector<std::vector<std::string>> rows;
    for (auto& l : lines) {
        if (!l.empty() && l.back() == '\r') l.pop_back();
        rows.push_back(split(l, '\t'));
    }
    return rows;
}

std::uint32_t fnv1a32(const std::vector<std::int32_t>& ids) {
    std::uint32_t h = 0x811C9DC5u;
    for (const std::int32_t id : ids) {
        const auto u = static_cast<std::uint32_t>(id);
        for (int b = 0; b < 4; ++b) {
            h ^= (u >> (8 * b)) & 0xFFu;
            h *= 0x01000193u;
        }
    }
    return h;
}

std::string join_ids(const std::vector<std::int32_t>& ids) {
    std::string s;
    for (std::size_t k = 0; k < ids.size(); ++k) {
        if (k) s += ' ';
        s += std::to_string(ids[k]);
    }
    return s;
}

std::string join_tokens(const wordpiece_tokenizer& tok, const std::vector<std::int32_t>& ids) {
    std::string s;
    for (std::size_t k = 0; k < ids.size(); ++k) {
        if (k) s += ' ';
        s += tok.vocab().token(ids[k]);
    }
    return s;
}

struct golden_value {
    std::uint32_t hash;
    std::size_t len;
};

/// A tiny vocabulary for unit tests.
hashee::vocab toy_vocab() {
    return hashee::vocab::from_string(
        "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nquick\nbrown\nfox\nun\n##aff\n##able\n,\n.\n"
        "a\nb\nc\nd\ne\nf\ncafe\ncafé\nCafé\n##s\n",
        "toy");
}

} // namespace

TEST_CASE("tokenizer: ELUE parity with HF BertTokenizer (hash goldens)", "[tokenizer][parity]") {
    const auto& tok = real_tokenizer();
    const fs::path golden_dir = hashee::test::data_dir() / "tokenizer" / "elue";
    const fs::path elue = hashee::test::elue_dir();
    std::vector<fs::path> goldens;
    for (const auto& e : fs::directory_iterator(golden_dir))
        if (e.path().extension() == ".txt") goldens.push_back(e.path());
    std::sort(goldens.begin(), goldens.end());
    REQUIRE(goldens.size() == 8);

    std::size_t total_lines = 0;
    for (const auto& gpath : goldens) {
        auto glines = split(read_file(gpath), '\n');
        if (!glines.empty() && glines.back().empty()) glines.pop_back();
        REQUIRE(glines.size() > 2);
        // "# SNLI/dev.tsv columns=premise,hypothesis pair_max_length=128 rows=9842"
        // (column names may hold spaces: "#1 String")
        const std::string& hdr = glines[0];
        const auto p_cols = hdr.find(" columns="), p_pml = hdr.find(" pair_max_length="),
                   p_rows = hdr.find(" rows=");
        REQUIRE(hdr.rfind("# ", 0) == 0);
        REQUIRE(p_cols != std::string::npos);
        REQUIRE(p_pml != std::string::npos);
        REQUIRE(p_rows != std::string::npos);
        const std::string rel = hdr.substr(2, p_cols - 2);
        const auto cols = split(hdr.substr(p_cols + 9, p_pml - p_cols - 9), ',');
        const std::size_t pair_max = std::stoul(hdr.substr(p_pml + 17, p_rows - p_pml - 17));
        const std::size_t nrows = std::stoul(hdr.substr(p_rows + 6));
        INFO("golden " << gpath.filename().string() << " for " << rel);

        const auto rows = read_tsv(elue / rel);
        REQUIRE(rows.size() == nrows + 1);
        std::vector<std::size_t> idx;
        for (const auto& c : cols) {
            auto it = std::find(rows[0].begin(), rows[0].end(), c);
            REQUIRE(it != rows[0].end());
            idx.push_back(static_cast<std::size_t>(it - rows[0].begin()));
        }
        REQUIRE(glines.size() == nrows + 2);
        const bool pair = cols.size() == 2;

        // Pairs go through encode_batch (as the goldens went through HF's batch call).
        std::vector<std::vector<std::int32_t>> pair_ids(nrows);
        if (pair) {
            const std::size_t chunk = 64;
            for (std::size_t r0 = 0; r0 < nrows; r0 += chunk) {
                std::vector<hashee::text_input> in;
                for (std::size_t r = r0; r < std::min(nrows, r0 + chunk); ++r)
                    in.push_back({rows[r + 1][idx[0]], std::string_view(rows[r + 1][idx[1]])});
                const auto b = tok.encode_batch(in, pair_max);
                for (std::size_t k = 0; k < in.size(); ++k)
                    pair_ids[r0 + k].assign(b.ids.begin() + static_cast<std::ptrdiff_t>(k * b.seq_len),
                                            b.ids.begin() + static_cast<std::ptrdiff_t>(k * b.seq_len + b.lengths[k]));
            }
        }

        std::size_t mismatches = 0;
        for (std::size_t r = 0; r < nrows; ++r) {
            const auto fields = split(glines[r + 2], ' ');
            REQUIRE(fields.size() == 2 * (cols.size() + (pair ? 1 : 0)));
            auto golden_at = [&](std::size_t k) {
                return golden_value{static_cast<std::uint32_t>(std::stoul(fields[2 * k], nullptr, 16)),
                                    std::stoul(fields[2 * k + 1])};
            };
            const std::size_t line_no = r + 2;  // 1-based line in the .tsv (header is line 1)
            auto compare = [&](const std::vector<std::int32_t>& ids, golden_value g, const std::string& what,
                               const std::string& text) {
                if (fnv1a32(ids) == g.hash && ids.size() == g.len) return;
                ++mismatches;
                if (mismatches <= 10) {
                    FAIL_CHECK(rel << ":" << line_no << " " << what << ": mismatch\n  text: " << text
                                   << "\n  ours (" << ids.size() << "): " << join_ids(ids) << "\n  tokens: "
                                   << join_tokens(tok, ids) << "\n  ours:   fnv1a32 " << std::hex
                                   << fnv1a32(ids) << std::dec << " len " << ids.size()
                                   << "\n  golden: fnv1a32 " << std::hex << g.hash << std::dec
                                   << " len " << g.len << " (HF ids: rerun "
                                   << "scripts/make_tokenizer_goldens.py or tokenizer(text) in Python)");
                }
            };
            for (std::size_t k = 0; k < cols.size(); ++k) {
                const std::string& text = rows[r + 1][idx[k]];
                const auto e = tok.encode(text, std::nullopt, hashee::no_truncation);
                compare(e.ids, golden_at(k), cols[k], text);
            }
            if (pair)
                compare(pair_ids[r], golden_at(2), "pair max_length=" + std::to_string(pair_max),
                        rows[r + 1][idx[0]] + " ||| " + rows[r + 1][idx[1]]);
        }
        CHECK(mismatches == 0);
        total_lines += nrows;
        WARN(rel << ": " << nrows << " lines compared (" << cols.size() << " column(s)"
                 << (pair ? " + pair" : "") << "), " << mismatches << " mismatches");
    }
    CHECK(total_lines == 8544 + 1101 + 3668 + 408 + 5749 + 1500 + 9842 + 1304);
}

TEST_CASE("tokenizer: Unicode torture set parity", "[tokenizer][parity]") {
    const auto& tok = real_tokenizer();
    const auto doc = nlohmann::json::parse(read_file(hashee::test::data_dir() / "tokenizer" / "torture.json"));

    for (const auto& [name, id] : doc.at("special_ids").items())
        CHECK(tok.vocab().id(name) == id.get<std::int32_t>());
    CHECK(tok.cls_id() == doc["special_ids"]["[CLS]"].get<std::int32_t>());
    CHECK(tok.sep_id() == doc["special_ids"]["[SEP]"].get<std::int32_t>());
    CHECK(tok.pad_id() == doc["special_ids"]["[PAD]"].get<std::int32_t>());
    CHECK(tok.unk_id() == doc["special_ids"]["[UNK]"].get<std::int32_t>());
    CHECK(tok.mask_id() == doc["special_ids"]["[MASK]"].get<std::int32_t>());

    std::size_t n = 0;
    for (const auto& s : doc.at("singles")) {
        const auto text = s.at("text").get<std::string>();
        INFO("torture case " << s.at("name").get<std::string>() << ": " << text);
        const auto want = s.at("ids").get<std::vector<std::int32_t>>();
        const auto got = tok.encode(text, std::nullopt, hashee::no_truncation).ids;
        INFO("ours:   " << join_tokens(tok, got));
        INFO("golden: " << join_tokens(tok, want));
        CHECK(got == want);
        CHECK(tok.tokenize(text) == s.at("tokens").get<std::vector<std::string>>());
        ++n;
    }
    CHECK(n >= 50);

    for (const auto& p : doc.at("pairs")) {
        const auto a = p.at("a").get<std::string>(), b = p.at("b").get<std::string>();
        const auto ml = p.at("max_length").get<std::size_t>();
        INFO("pair '" << a << "' / '" << b << "' max_length " << ml);
        const auto e = tok.encode(a, std::string_view(b), ml);
        INFO("ours: " << join_tokens(tok, e.ids));
        CHECK(e.ids == p.at("ids").get<std::vector<std::int32_t>>());
        CHECK(e.type_ids == p.at("type_ids").get<std::vector<std::int32_t>>());
    }

    for (const auto& t : doc.at("single_truncation")) {
        const auto text = t.at("text").get<std::string>();
        const auto ml = t.at("max_length").get<std::size_t>();
        INFO("single '" << text << "' max_length " << ml);
        const auto e = tok.encode(text, std::nullopt, ml);
        CHECK(e.ids == t.at("ids").get<std::vector<std::int32_t>>());
        CHECK(e.type_ids == std::vector<std::int32_t>(e.ids.size(), 0));
    }

    for (const auto& b : doc.at("batches")) {
        std::vector<std::string> storage;
        for (const auto& in : b.at("inputs")) {
            storage.push_back(in.at("first").get<std::string>());
            storage.push_back(in.contains("second") ? in["second"].get<std::string>() : std::string());
        }
        std::vector<hashee::text_input> inputs;
        std::size_t k = 0;
        for (const auto& in : b.at("inputs")) {
            hashee::text_input ti{storage[2 * k], std::nullopt};
            if (in.contains("second")) ti.second = storage[2 * k + 1];
            inputs.push_back(ti);
            ++k;
        }
        const auto got = tok.encode_batch(inputs, b.at("max_length").get<std::size_t>());
        const auto want_ids = b.at("ids").get<std::vector<std::vector<std::int32_t>>>();
        const auto want_type = b.at("type_ids").get<std::vector<std::vector<std::int32_t>>>();
        const auto want_mask = b.at("mask").get<std::vector<std::vector<std::int32_t>>>();
        INFO("batch with first input '" << storage[0] << "'");
        REQUIRE(got.batch == want_ids.size());
        REQUIRE(got.seq_len == want_ids[0].size());
        std::vector<std::int32_t> flat_ids, flat_type, flat_mask;
        for (std::size_t r = 0; r < got.batch; ++r) {
            flat_ids.insert(flat_ids.end(), want_ids[r].begin(), want_ids[r].end());
            flat_type.insert(flat_type.end(), want_type[r].begin(), want_type[r].end());
            flat_mask.insert(flat_mask.end(), want_mask[r].begin(), want_mask[r].end());
            CHECK(got.lengths[r] ==
                  static_cast<std::size_t>(std::count(want_mask[r].begin(), want_mask[r].end(), 1)));
        }
        CHECK(got.ids == flat_ids);
        CHECK(got.type_ids == flat_type);
        CHECK(got.mask == flat_mask);
    }
}

TEST_CASE("tokenizer: from_directory reads the configuration", "[tokenizer]") {
    const auto& tok = real_tokenizer();
    CHECK(tok.options().lower_case);
    CHECK_FALSE(tok.options().strip_accents.has_value());
    CHECK(tok.options().tokenize_chinese_chars);
    CHECK(tok.options().max_length == 256);  // sentence_bert_config.json overrides 512
    CHECK(tok.vocab().size() == 30522);
    CHECK(tok.vocab().token(tok.cls_id()) == "[CLS]");
    CHECK(tok.vocab().token(tok.mask_id()) == "[MASK]");
    // default max_length truncates to 256
    std::string long_text;
    for (int k = 0; k < 400; ++k) long_text += "word ";
    CHECK(tok.encode(long_text).ids.size() == 256);
    CHECK(tok.encode(long_text, std::nullopt, hashee::no_truncation).ids.size() == 402);
}

TEST_CASE("tokenizer: speed on SNLI dev", "[tokenizer][perf]") {
    const auto& tok = real_tokenizer();
    const auto rows = read_tsv(hashee::test::elue_dir() / "SNLI" / "dev.tsv");
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t tokens = 0;
    for (std::size_t r = 1; r < rows.size(); ++r)
        tokens += tok.encode(rows[r][0], std::string_view(rows[r][1]), 128).ids.size();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    WARN("SNLI dev: " << rows.size() - 1 << " pairs, " << tokens << " tokens in " << s << " s");
    CHECK(tokens > 0);
    CHECK(s < 5.0);  // generous: well under a second in a Release build
}

TEST_CASE("vocab: loading and errors", "[tokenizer][vocab]") {
    const fs::path dir = fs::temp_directory_path() / "hashee_test_tokenizer_vocab";
    fs::create_directories(dir);

    SECTION("missing file -> io_error") {
        CHECK_THROWS_ID_AS(hashee::vocab::load(dir / "does_not_exist.txt"), hashee::io_error, "E12");
    }
    SECTION("duplicate token -> format_error naming file and line") {
        const auto p = dir / "dup.txt";
        std::ofstream(p, std::ios::binary) << "[PAD]\nhello\nworld\nhello\n";
        try {
            (void)hashee::vocab::load(p);
            FAIL("no exception");
        } catch (const hashee::format_error& e) {
            const std::string msg = e.what();
            CHECK(e.id() == "E43");
            CHECK_THAT(msg, Catch::Contains(p.string() + ":4"));
            CHECK_THAT(msg, Catch::Contains("hello"));
        }
    }
    SECTION("empty file -> format_error") {
        const auto p = dir / "empty.txt";
        std::ofstream(p, std::ios::binary).flush();
        CHECK_THROWS_ID_AS(hashee::vocab::load(p), hashee::format_error, "E43");
    }
    SECTION("empty line -> format_error naming the line") {
        CHECK_THROWS_ID(hashee::vocab::from_string("a\n\nb\n", "v.txt"), "E43");
        CHECK_THROWS_WITH(hashee::vocab::from_string("a\n\nb\n", "v.txt"), Catch::Contains("v.txt:2"));
    }
    SECTION("CRLF vocabulary") {
        const auto p = dir / "crlf.txt";
        std::ofstream(p, std::ios::binary) << "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nhello\r\nworld";
        const auto v = hashee::vocab::load(p);
        CHECK(v.size() == 7);
        CHECK(v.id("hello") == 5);
        CHECK(v.id("world") == 6);  // no final newline
        CHECK(v.token(5) == "hello");
        CHECK_FALSE(v.find("hello\r").has_value());
        const wordpiece_tokenizer tok(v);
        CHECK(tok.token_ids("Hello, WORLD") == std::vector<std::int32_t>{5, 1, 6});
    }
    SECTION("lookups") {
        const auto v = toy_vocab();
        CHECK(v.find("fox") == std::optional<std::int32_t>(8));
        CHECK_FALSE(v.find("wolf").has_value());
        CHECK_THROWS_ID_AS(v.id("wolf"), hashee::format_error, "E42");
        CHECK_THROWS_ID_AS(v.token(-1), hashee::usage_error, "U03");
        CHECK_THROWS_ID_AS(v.token(v.size()), hashee::usage_error, "U03");
    }
    SECTION("the real vocabulary has the special tokens at their usual ids") {
        const auto v = hashee::vocab::load(hashee::test::model_dir() / "vocab.txt");
        CHECK(v.id("[PAD]") == 0);
        CHECK(v.id("[UNK]") == 100);
        CHECK(v.id("[CLS]") == 101);
    }
    fs::remove_all(dir);
}

TEST_CASE("tokenizer: special tokens are looked up, not hard-coded", "[tokenizer]") {
    const wordpiece_tokenizer tok(toy_vocab());
    CHECK(tok.pad_id() == 0);
    CHECK(tok.unk_id() == 1);
    CHECK(tok.cls_id() == 2);
    CHECK(tok.sep_id() == 3);
    CHECK(tok.mask_id() == 4);
    hashee::tokenizer_options o;
    o.mask_token = "<mask>";
    CHECK_THROWS_ID_AS(wordpiece_tokenizer(toy_vocab(), o), hashee::format_error, "E42");
    o.mask_token = "";
    CHECK_THROWS_ID_AS(wordpiece_tokenizer(toy_vocab(), o), hashee::usage_error, "U04");
}

TEST_CASE("tokenizer: WordPiece and normalisation on a toy vocabulary", "[tokenizer]") {
    const wordpiece_tokenizer tok(toy_vocab());
    CHECK(tok.tokenize("The QUICK, brown fox.") ==
          std::vector<std::string>{"the", "quick", ",", "brown", "fox", "."});
    CHECK(tok.tokenize("unaffable") == std::vector<std::string>{"un", "##aff", "##able"});
    CHECK(tok.tokenize("unaffablex") == std::vector<std::string>{"[UNK]"});  // cannot be covered
    CHECK(tok.tokenize("Café") == std::vector<std::string>{"cafe"});        // lower + strip accents
    CHECK(tok.tokenize("cafe\xCC\x81s") == std::vector<std::string>{"cafe", "##s"});  // NFD input
    CHECK(tok.tokenize("a[MASK]b") == std::vector<std::string>{"a", "[MASK]", "b"});
    CHECK(tok.tokenize("[mask]") == std::vector<std::string>{"[UNK]", "[UNK]", "[UNK]"});
    CHECK(tok.tokenize("").empty());
    CHECK(tok.tokenize(" \t\r\n\xC2\xA0").empty());

    hashee::tokenizer_options keep;
    keep.lower_case = false;
    const wordpiece_tokenizer cased(toy_vocab(), keep);
    CHECK(cased.tokenize("Café café") == std::vector<std::string>{"Café", "café"});
    hashee::tokenizer_options lower_only;
    lower_only.strip_accents = false;
    const wordpiece_tokenizer lo(toy_vocab(), lower_only);
    CHECK(lo.tokenize("CAFÉ") == std::vector<std::string>{"café"});

    hashee::tokenizer_options short_words;
    short_words.max_input_chars_per_word = 4;
    const wordpiece_tokenizer sw(toy_vocab(), short_words);
    CHECK(sw.tokenize("fox quick") == std::vector<std::string>{"fox", "[UNK]"});
    // exactly max_input_chars_per_word is still tokenised
    CHECK(sw.tokenize("cafe") == std::vector<std::string>{"cafe"});
}

TEST_CASE("tokenizer: invalid UTF-8 -> input_error naming the byte offset", "[tokenizer]") {
    const wordpiece_tokenizer tok(toy_vocab());
    CHECK_THROWS_ID_AS(tok.tokenize("ab\xC3"), hashee::input_error, "E17");
    CHECK_THROWS_WITH(tok.tokenize("ab\xC3"), Catch::Contains("byte offset 2"));
    CHECK_THROWS_WITH(tok.token_ids("fox \xFF"), Catch::Contains("byte offset 4"));
    CHECK_THROWS_WITH(tok.encode("a", std::string_view("\xC0\xAF")), Catch::Contains("byte offset 0"));  // overlong
    CHECK_THROWS_ID_AS(tok.tokenize("\xED\xA0\x80"), hashee::input_error, "E17");      // surrogate
    CHECK_THROWS_ID_AS(tok.tokenize("\xF4\x90\x80\x80"), hashee::input_error, "E17");  // > U+10FFFF
    CHECK_THROWS_ID_AS(tok.tokenize("x\xE2\x82"), hashee::input_error, "E17");         // truncated
    CHECK_THROWS_ID_AS(tok.tokenize("\x80"), hashee::input_error, "E17");              // lone continuation
    const std::vector<hashee::text_input> batch{{"fox", std::nullopt}, {"\xFE", std::nullopt}};
    CHECK_THROWS_ID_AS(tok.encode_batch(batch), hashee::input_error, "E17");
    CHECK_NOTHROW(tok.tokenize("\xF0\x9F\x98\x80 \xE4\xB8\xAD"));
}

TEST_CASE("tokenizer: truncation and batching", "[tokenizer]") {
    const wordpiece_tokenizer tok(toy_vocab());
    const std::int32_t CLS = tok.cls_id(), SEP = tok.sep_id(), PAD = tok.pad_id();
    const std::int32_t a = 14, b = 15, c = 16, d = 17, e = 18, f = 19;

    SECTION("longest_first arithmetic (HF tokenizers)") {
        using hashee::detail::longest_first;
        CHECK(longest_first(3, 2, 10) == std::pair<std::size_t, std::size_t>{3, 2});
        CHECK(longest_first(10, 2, 6) == std::pair<std::size_t, std::size_t>{4, 2});
        CHECK(longest_first(2, 10, 6) == std::pair<std::size_t, std::size_t>{2, 4});
        CHECK(longest_first(6, 6, 5) == std::pair<std::size_t, std::size_t>{2, 3});  // tie: second gets the odd one
        CHECK(longest_first(7, 6, 5) == std::pair<std::size_t, std::size_t>{3, 2});  // longer gets the odd one
        CHECK(longest_first(6, 7, 5) == std::pair<std::size_t, std::size_t>{2, 3});
        CHECK(longest_first(4, 4, 0) == std::pair<std::size_t, std::size_t>{0, 0});
        CHECK(longest_first(0, 9, 3) == std::pair<std::size_t, std::size_t>{0, 3});
    }
    SECTION("single") {
        const auto en = tok.encode("a b c d e f", std::nullopt, 5);
        CHECK(en.ids == std::vector<std::int32_t>{CLS, a, b, c, SEP});
        CHECK(tok.encode("a b c", std::nullopt, 2).ids == std::vector<std::int32_t>{CLS, SEP});
        CHECK_THROWS_ID_AS(tok.encode("a", std::nullopt, 1), hashee::input_error, "E20");
    }
    SECTION("pair") {
        const auto en = tok.encode("a b c d", std::string_view("e f"), 7);
        CHECK(en.ids == std::vector<std::int32_t>{CLS, a, b, SEP, e, f, SEP});
        CHECK(en.type_ids == std::vector<std::int32_t>{0, 0, 0, 0, 1, 1, 1});
        CHECK(tok.encode("a b", std::string_view("c"), 3).ids == std::vector<std::int32_t>{CLS, SEP, SEP});
        CHECK_THROWS_ID_AS(tok.encode("a b", std::string_view("c"), 2), hashee::input_error, "E20");
        // an empty second text is no second text, as in HF's tokenizer(a, "")
        CHECK(tok.encode("a", std::string_view("")).ids == std::vector<std::int32_t>{CLS, a, SEP});
        CHECK(tok.encode("a b c", std::string_view("d e f")).ids.size() == 9);  // no truncation needed
    }
    SECTION("batch") {
        const std::vector<hashee::text_input> in{{"a b c", std::nullopt}, {"d", std::string_view("e f")}, {"", std::nullopt}};
        const auto bt = tok.encode_batch(in, 6);
        CHECK(bt.batch == 3);
        CHECK(bt.seq_len == 6);
        CHECK(bt.lengths == std::vector<std::size_t>{5, 6, 2});
        CHECK(bt.ids == std::vector<std::int32_t>{CLS, a, b, c, SEP, PAD,  //
                                                  CLS, d, SEP, e, f, SEP,  //
                                                  CLS, SEP, PAD, PAD, PAD, PAD});
        CHECK(bt.type_ids == std::vector<std::int32_t>{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0});
        CHECK(bt.mask == std::vector<std::int32_t>{1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0});
        const std::vector<hashee::text_input> empty_second{{"a", std::string_view("")}};
        CHECK(tok.encode_batch(empty_second).ids == std::vector<std::int32_t>{CLS, a, SEP, SEP});
    }
    SECTION("errors") {
        CHECK_THROWS_ID_AS(tok.encode_batch({}), hashee::input_error, "E15");
        const std::vector<hashee::text_input> pair{{"a", std::string_view("b")}};
        CHECK_THROWS_ID_AS(tok.encode_batch(pair, 2), hashee::input_error, "E20");
        CHECK_NOTHROW(tok.encode_batch(pair, 3));
    }
}
