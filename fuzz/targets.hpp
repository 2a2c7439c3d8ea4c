#pragma once
// The fuzz targets of hashee's input readers, one `fuzz_<target>(data, size)` each. Shared by
// the libFuzzer harnesses (fuzz/fuzz_<target>.cpp, built by fuzz/CMakeLists.txt) and by the
// regression test (tests/test_fuzz_regressions.cpp), which replays fuzz/corpus/<target>/ and
// fuzz/regressions/<target>/ in the normal build.
//
// Contract under test: every reader either returns or throws a hashee::error. A target
// catches hashee::error and nothing else, so any other exception escapes (libFuzzer reports it
// as a crash; the regression test fails). Where a reader returns, the target checks what it
// promised (sizes, ranges) and throws fuzz_invariant_failure, which is not a hashee::error,
// when a promise is broken.

#include <hashee/core/config.hpp>
#include <hashee/core/error.hpp>
#include <hashee/hash/exit_table.hpp>
#include <hashee/io/safetensors.hpp>
#include <hashee/text/tokenizer.hpp>
#include <hashee/io/tsv.hpp>
#include <hashee/text/vocab.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace hashee_fuzz {

/// A reader returned something that breaks its own documented promises.
struct fuzz_invariant_failure : std::logic_error {
    using std::logic_error::logic_error;
};

inline void check(bool ok, const char* what) {
    if (!ok) throw fuzz_invariant_failure(what);
}

inline volatile unsigned consume_sink = 0;

/// Keeps reads of returned data from being optimised away (so ASan sees every byte).
inline void consume(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    unsigned acc = 0;
    for (std::size_t i = 0; i < n; ++i) acc += b[i];
    consume_sink = acc;
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
    return size == 0 ? std::string_view() : std::string_view(reinterpret_cast<const char*>(data), size);
}

/// The small fixed vocabulary of the tokenizer and exit_table targets: the five specials,
/// words, ## continuations, CJK ideographs, accented and non-Latin words, punctuation.
inline const hashee::vocab& small_vocab() {
    static const hashee::vocab v = hashee::vocab::from_string(
        "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"
        "the\na\ncat\nsat\non\nmat\nun\n##aff\n##able\n##s\n##ing\nplay\nrun\n##ning\n"
        "hello\nworld\n##ed\n##ly\nx\n##x\n##\n#\n"
        "\xE4\xB8\xAD\n\xE6\x96\x87\n\xE5\xAD\x97\n"                     // 中 文 字
        "caf\xC3\xA9\ncafe\nna\xC3\xAFve\nnaive\n"                        // café naïve
        "\xD0\xBC\xD0\xB8\xD1\x80\n\xCE\xB1\n##\xCE\xB2\n"                // мир α ##β
        ".\n,\n!\n?\n'\n\"\n-\n(\n)\n[\n]\n\xE3\x80\x82\n"                // ... 。
        "1\n2\n##3\n",
        "fuzz-vocab");
    return v;
}

inline std::size_t pick(std::uint8_t b, std::size_t n) { return static_cast<std::size_t>(b) % n; }

// ---- safetensors ---------------------------------------------------------------------------

inline void fuzz_safetensors(const std::uint8_t* data, std::size_t size) {
    try {
        std::vector<std::byte> bytes(size);
        if (size) std::memcpy(bytes.data(), data, size);
        const auto f = hashee::safetensors_file::from_bytes(std::move(bytes), "fuzz.safetensors");
        check(f.header_size() + 8 <= f.file_bytes().size(), "header runs past the file");
        std::size_t covered = 0;
        for (const auto& t : f.tensors()) {
            const std::int64_t n = t.numel();
            check(n >= 0, "negative element count");
            check(static_cast<std::uint64_t>(n) * hashee::size_of(t.dtype) == t.nbytes,
                  "nbytes does not match shape and dtype");
            check(f.find(t.name) == &t, "find does not return the tensor");
            check(&f.at(t.name) == &t, "at does not return the tensor");
            const auto raw = f.bytes(t);
            check(raw.size() == t.nbytes, "bytes() has the wrong size");
            consume(raw.data(), raw.size());
            covered += raw.size();
            std::vector<float> storage;
            try {
                const auto fl = f.floats(t, storage);
                check(fl.size() == static_cast<std::size_t>(n), "floats() has the wrong size");
                consume(fl.data(), fl.size_bytes());
            } catch (const hashee::weight_error&) {
                check(t.dtype != hashee::dtype::f32 && t.dtype != hashee::dtype::f16 &&
                          t.dtype != hashee::dtype::bf16,
                      "floats() refused a float tensor");
            }
            try {
                (void)f.expect(t.name, {1, 2});
            } catch (const hashee::weight_error&) {
            }
        }
        check(covered == f.data_buffer().size(), "tensors do not tile the data buffer");
        check(f.find("\x01 no such tensor") == nullptr, "find invents a tensor");
        for (const auto& [k, v] : f.metadata()) {
            consume(k.data(), k.size());
            consume(v.data(), v.size());
        }
    } catch (const hashee::error&) {
    }
}

// ---- config.json ---------------------------------------------------------------------------

inline void fuzz_config(const std::uint8_t* data, std::size_t size) {
    try {
        const auto c = hashee::bert_config::parse(as_text(data, size), "fuzz/config.json");
        check(c.hidden_size > 0 && c.num_attention_heads > 0 && c.num_hidden_layers > 0,
              "config accepted a non-positive size");
        check(c.hidden_size % c.num_attention_heads == 0, "head_dim is not whole");
        check(c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size, "pad_token_id out of range");
        check(c.layer_norm_eps > 0.0, "layer_norm_eps not positive");
        check(c.head_dim() > 0, "head_dim not positive");
    } catch (const hashee::error&) {
    }
}

// ---- vocab.txt -----------------------------------------------------------------------------

inline void fuzz_vocab(const std::uint8_t* data, std::size_t size) {
    try {
        const auto v = hashee::vocab::from_string(as_text(data, size), "fuzz/vocab.txt");
        check(v.size() > 0, "empty vocabulary accepted");
        for (const std::int32_t id : {0, v.size() - 1, v.size() / 2}) {
            const std::string& tok = v.token(id);
            check(!tok.empty(), "empty token");
            check(v.find(tok) == id, "token and id do not round-trip");
            check(v.id(tok) == id, "id() does not round-trip");
        }
        for (const char* probe : {"[UNK]", "[CLS]", "the", "##s", "", "\xE4\xB8\xAD"}) {
            (void)v.find(probe);
            try {
                (void)v.id(probe);
            } catch (const hashee::format_error&) {
            }
        }
        for (const std::int32_t bad : {-1, v.size()}) {
            try {
                (void)v.token(bad);
                check(false, "token() accepted an id out of range");
            } catch (const hashee::usage_error&) {  // U03
            }
        }
        // A vocabulary that holds the specials must also make a working tokenizer.
        if (v.find("[UNK]") && v.find("[CLS]") && v.find("[SEP]") && v.find("[PAD]") && v.find("[MASK]")) {
            const hashee::wordpiece_tokenizer tok(v);
            const auto e = tok.encode("Hello, unaffable world! [MASK] caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87",
                                      std::string_view("x ##y"), 16);
            check(e.ids.size() == e.type_ids.size() && e.ids.size() <= 16, "bad encoding");
            for (const auto id : e.ids) check(id >= 0 && id < v.size(), "id out of the vocabulary");
        }
    } catch (const hashee::error&) {
    }
}

// ---- tokenizer -----------------------------------------------------------------------------

/// The tokenizers under test: every combination of lower_case, strip_accents (unset, false,
/// true), tokenize_chinese_chars and a normal or tiny max_input_chars_per_word.
inline const hashee::wordpiece_tokenizer& tokenizer_variant(std::uint8_t flags) {
    static const auto all = [] {
        std::vector<std::unique_ptr<hashee::wordpiece_tokenizer>> v;
        for (int i = 0; i < 24; ++i) {
            hashee::tokenizer_options o;
            o.lower_case = (i & 1) != 0;
            const int sa = (i >> 1) % 3;
            if (sa == 1) o.strip_accents = false;
            if (sa == 2) o.strip_accents = true;
            o.tokenize_chinese_chars = ((i / 6) & 1) == 0;
            o.max_input_chars_per_word = (i / 12) == 0 ? 100 : 3;
            o.max_length = 32;
            v.push_back(std::make_unique<hashee::wordpiece_tokenizer>(small_vocab(), o));
        }
        return v;
    }();
    return *all[flags % all.size()];
}

inline void check_encoding(const hashee::encoding& e, const hashee::wordpiece_tokenizer& tok,
                           std::size_t max_len, bool pair) {
    check(e.ids.size() == e.type_ids.size(), "ids and type_ids differ in length");
    check(e.ids.size() >= (pair ? 3u : 2u), "specials missing");
    if (max_len != hashee::no_truncation) check(e.ids.size() <= max_len, "longer than max_length");
    check(e.ids.front() == tok.cls_id(), "does not start with [CLS]");
    check(e.ids.back() == tok.sep_id(), "does not end with [SEP]");
    const auto vs = tok.vocab().size();
    for (std::size_t i = 0; i < e.ids.size(); ++i) {
        check(e.ids[i] >= 0 && e.ids[i] < vs, "id outside the vocabulary");
        check(e.type_ids[i] == 0 || (pair && e.type_ids[i] == 1), "bad type id");
        if (i > 0) check(e.type_ids[i] >= e.type_ids[i - 1], "type ids not monotonic");
    }
}

/// Input: [flags][max_length selector][split byte] text. The text is cut in two at the split
/// byte's position (modulo its length) for the pair encodings.
inline void fuzz_tokenizer_input(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return;
    const auto& tok = tokenizer_variant(data[0]);
    static constexpr std::size_t lengths[] = {0, 1, 2, 3, 4, 5, 8, 13, 64, hashee::no_truncation};
    const std::size_t max_length = lengths[pick(data[1], std::size(lengths))];
    const std::string_view text = as_text(data + 3, size - 3);
    const std::size_t cut = text.empty() ? 0 : pick(data[2], text.size() + 1);
    const std::string_view a = text.substr(0, cut), b = text.substr(cut);
    try {
        const auto e = tok.encode(text);
        check_encoding(e, tok, tok.options().max_length, false);
        const auto ids = tok.token_ids(text);
        const auto pieces = tok.tokenize(text);
        check(ids.size() == pieces.size(), "token_ids and tokenize differ");
        for (std::size_t i = 0; i < ids.size(); ++i)
            check(tok.vocab().token(ids[i]) == pieces[i], "token_ids and tokenize disagree");
        const auto w = tok.words(text);
        for (const auto& word : w) check(!word.empty(), "empty word");
    } catch (const hashee::error&) {
    }
    try {
        const auto e = tok.encode(a, b, max_length);
        const std::size_t eff = max_length == 0 ? tok.options().max_length : max_length;
        check_encoding(e, tok, eff, !b.empty());
    } catch (const hashee::error&) {
    }
    try {
        const hashee::text_input in[] = {{a, b}, {b, std::nullopt}, {text, std::string_view()}};
        const auto batch = tok.encode_batch(in, max_length);
        check(batch.batch == 3 && batch.ids.size() == 3 * batch.seq_len &&
                  batch.mask.size() == batch.ids.size() && batch.type_ids.size() == batch.ids.size(),
              "encode_batch shape");
        for (std::size_t r = 0; r < 3; ++r) check(batch.lengths[r] <= batch.seq_len, "row longer than seq_len");
    } catch (const hashee::error&) {
    }
}

inline void fuzz_tokenizer(const std::uint8_t* data, std::size_t size) {
    fuzz_tokenizer_input(data, size);
}

// ---- exit table ----------------------------------------------------------------------------

inline void fuzz_exit_table(const std::uint8_t* data, std::size_t size) {
    constexpr int num_layers = 6;
    const auto& v = small_vocab();
    try {
        const auto t = hashee::exit_table::parse(as_text(data, size), "fuzz/exits.json", v, num_layers);
        check(t.num_layers() == num_layers, "wrong layer count");
        check(t.vocab_size() == v.size(), "wrong vocabulary size");
        for (const auto e : t.exits()) check(e >= 1 && e <= num_layers, "exit layer out of range");
        const auto h = t.histogram();
        std::int64_t total = 0;
        for (const auto c : h) total += c;
        check(total == v.size(), "histogram does not add up");
        check(t.exit_layer(-1) == num_layers && t.exit_layer(v.size()) == num_layers,
              "ids outside the table must exit last");
        // What it writes, it reads back.
        const auto again = hashee::exit_table::parse(t.to_json(v), "fuzz/again.json", v, num_layers);
        check(std::equal(again.exits().begin(), again.exits().end(), t.exits().begin(), t.exits().end()) &&
                  again.policy() == t.policy(),
              "to_json/parse does not round-trip");
    } catch (const hashee::error&) {
    }
}

// ---- TSV -----------------------------------------------------------------------------------

/// Input: [mode byte] text. Bit 0 of the mode: header or not; bits 1-2: min_fields 0..3;
/// bits 3-5: max_fields min..min+6, 7 meaning SIZE_MAX.
inline void fuzz_tsv(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return;
    const std::uint8_t mode = data[0];
    const bool has_header = (mode & 1) != 0;
    const std::size_t min_fields = (mode >> 1) & 3;
    const std::size_t span = (mode >> 3) & 7;
    const std::size_t max_fields = span == 7 ? SIZE_MAX : min_fields + span;
    try {
        const auto t = hashee::tsv_table::parse(as_text(data + 1, size - 1), "fuzz.tsv", has_header,
                                                min_fields, max_fields);
        std::size_t prev_line = 0;
        for (std::size_t i = 0; i < t.size(); ++i) {
            const auto& row = t.row(i);
            if (has_header) check(row.size() == t.header().size(), "ragged row accepted");
            else check(row.size() >= min_fields && row.size() <= max_fields, "row outside the field bounds");
            check(t.line(i) > prev_line, "line numbers not increasing");
            prev_line = t.line(i);
            for (const auto& f : row) consume(f.data(), f.size());
        }
        for (const char* name : {"x", "sentence", ""}) {
            try {
                const std::size_t c = t.column(name);
                check(c < t.header().size() && t.header()[c] == name, "column() is wrong");
            } catch (const hashee::format_error&) {
            }
        }
        if (!t.header().empty()) check(t.column(t.header().back()) < t.header().size(), "column() misses a header");
    } catch (const hashee::error&) {
    }
}

} // namespace hashee_fuzz

using hashee_fuzz::fuzz_config;
using hashee_fuzz::fuzz_exit_table;
using hashee_fuzz::fuzz_safetensors;
using hashee_fuzz::fuzz_tokenizer;
using hashee_fuzz::fuzz_tsv;
using hashee_fuzz::fuzz_vocab;
