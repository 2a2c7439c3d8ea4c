// The bad-input catalogue (docs/errors.md): every entry, its error type and what its message
// names, through the paths users take (model::load, forward, the readers). IDs match the doc.

#include <cmath>
#include <cstring>

#include <catch2/catch.hpp>

#include <hashee/hashee.hpp>

#include "safetensors_writer.hpp"
#include "test_support.hpp"

using namespace hashee;
using namespace hashee::test;
using Catch::Matchers::Contains;

namespace {

std::vector<std::byte> real_checkpoint() { return read_all(model_dir() / "model.safetensors"); }

/// A model directory holding the real config and vocabulary and the given checkpoint bytes.
struct model_copy {
    temp_dir dir;
    explicit model_copy(const std::vector<std::byte>& checkpoint, std::string config = {}) {
        for (const char* f : {"vocab.txt", "tokenizer_config.json", "config.json"})
            fs::copy_file(model_dir() / f, dir.path / f);
        if (!config.empty()) std::ofstream(dir.path / "config.json", std::ios::trunc) << config;
        dir.write("model.safetensors", checkpoint);
    }
    model<eigen_cpu> load() const { return model<eigen_cpu>::load(dir.path, eigen_cpu(1)); }
};

/// The real checkpoint rewritten: each tensor passes through `edit` (name, dtype, shape, bytes).
template <class Edit>
std::vector<std::byte> rewritten(Edit&& edit) {
    const auto f = safetensors_file::open(model_dir() / "model.safetensors");
    writer w;
    for (const tensor_info& t : f.tensors()) {
        const auto b = f.bytes(t);
        writer::item it{t.name, std::string(to_string(t.dtype)), t.shape, {b.begin(), b.end()}};
        if (edit(it)) w.items.push_back(std::move(it));
    }
    return w.build();
}

std::string config_text() { return read_file_text(model_dir() / "config.json"); }

const model<eigen_cpu>& real() {
    static const model<eigen_cpu> m = model<eigen_cpu>::load(model_dir(), eigen_cpu(1));
    return m;
}

} // namespace

TEST_CASE("checkpoints: truncated, corrupt, lying headers", "[errors]") {
    const auto bytes = real_checkpoint();
    SECTION("E01 truncated checkpoint") {
        for (std::size_t keep : {std::size_t{4}, std::size_t{5000}, bytes.size() / 2, bytes.size() - 1}) {
            const model_copy m({bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep)});
            CHECK_THROWS_MATCHES(m.load(), format_error, Catch::Matchers::Predicate<format_error>([](const format_error& e) {
                                     return std::string(e.what()).find("model.safetensors") != std::string::npos;
                                 }));
        }
    }
    SECTION("E02 corrupt header (not JSON)") {
        auto b = bytes;
        b[20] = std::byte{'{'};
        b[21] = std::byte{'{'};
        const model_copy m(b);
        CHECK_THROWS_AS(m.load(), format_error);
    }
    SECTION("E03 header length larger than the file") {
        auto b = bytes;
        b[5] = std::byte{0x7f};
        const model_copy m(b);
        CHECK_THROWS_WITH(m.load(), Contains("model.safetensors") && Contains("header length"));
    }
    SECTION("E04 offsets that lie (a tensor running past the data, or overlapping)") {
        const auto f = safetensors_file::from_bytes(bytes, "x");
        std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, f.header_size());
        const std::string from = "\"data_offsets\":[0,4096]", to = "\"data_offsets\":[0,4100]";
        const auto at = header.find(from);
        REQUIRE(at != std::string::npos);
        header.replace(at, from.size(), to);
        std::vector<std::byte> b(8);
        std::uint64_t n = header.size();
        for (int i = 0; i < 8; ++i) b[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
        for (char c : header) b.push_back(static_cast<std::byte>(c));
        b.insert(b.end(), bytes.begin() + 8 + static_cast<std::ptrdiff_t>(f.header_size()), bytes.end());
        const model_copy m(b);
        CHECK_THROWS_WITH(m.load(), Contains("model.safetensors") && Contains("embeddings.position_ids"));
    }
}

TEST_CASE("checkpoints: wrong dtypes, shapes, missing tensors, non-finite weights", "[errors]") {
    SECTION("E05 wrong dtype") {
        const model_copy m(rewritten([](writer::item& it) {
            if (it.name == "encoder.layer.2.output.dense.bias") it.dtype = "I32";
            return true;
        }));
        CHECK_THROWS_MATCHES(m.load(), weight_error, Catch::Matchers::Predicate<weight_error>([](const weight_error& e) {
                                 const std::string s = e.what();
                                 return s.find("encoder.layer.2.output.dense.bias") != std::string::npos &&
                                        s.find("I32") != std::string::npos;
                             }));
    }
    SECTION("E06 wrong shape") {
        const model_copy m(rewritten([](writer::item& it) {
            if (it.name == "pooler.dense.bias") {
                it.shape = {383};
                it.data.resize(383 * 4);
            }
            return true;
        }));
        CHECK_THROWS_WITH(m.load(), Contains("pooler.dense.bias") && Contains("383"));
    }
    SECTION("E07 missing tensor") {
        const model_copy m(rewritten([](const writer::item& it) { return it.name != "encoder.layer.5.output.LayerNorm.weight"; }));
        CHECK_THROWS_WITH(m.load(), Contains("encoder.layer.5.output.LayerNorm.weight") && Contains("not found"));
    }
    SECTION("E08 NaN or infinity in a weight") {
        for (const float bad : {std::nanf(""), INFINITY}) {
            const model_copy m(rewritten([&](writer::item& it) {
                if (it.name == "encoder.layer.1.attention.self.key.weight") std::memcpy(it.data.data() + 4 * 7, &bad, 4);
                return true;
            }));
            CHECK_THROWS_MATCHES(m.load(), weight_error, Catch::Matchers::Predicate<weight_error>([](const weight_error& e) {
                                     const std::string s = e.what();
                                     return s.find("encoder.layer.1.attention.self.key.weight") != std::string::npos &&
                                            s.find("element 7") != std::string::npos;
                                 }));
        }
    }
}

TEST_CASE("configurations and model directories", "[errors]") {
    const auto bytes = real_checkpoint();
    SECTION("E09 unsupported configuration") {
        auto c = config_text();
        c.replace(c.find("\"gelu\""), 6, "\"relu\"");
        const model_copy m(bytes, c);
        CHECK_THROWS_MATCHES(m.load(), config_error, Catch::Matchers::Predicate<config_error>([](const config_error& e) {
                                 return std::string(e.what()).find("hidden_act") != std::string::npos;
                             }));
    }
    SECTION("E10 unknown configuration field") {
        auto c = config_text();
        c.insert(c.find('{') + 1, "\"rotary_dim\": 64,");
        const model_copy m(bytes, c);
        CHECK_THROWS_WITH(m.load(), Contains("rotary_dim"));
    }
    SECTION("E11 vocabulary and config disagree") {
        auto c = config_text();
        c.replace(c.find("30522"), 5, "30521");
        const model_copy m(bytes, c);
        CHECK_THROWS_AS(m.load(), weight_error); // the embedding table no longer fits the config
    }
    SECTION("E12 missing files") {
        CHECK_THROWS_AS(model<eigen_cpu>::load("/nonexistent/model", eigen_cpu(1)), io_error);
        temp_dir d;
        fs::copy_file(model_dir() / "config.json", d.path / "config.json");
        fs::create_directory(d.path / "model.safetensors"); // a directory where the file should be
        CHECK_THROWS_AS(model<eigen_cpu>::load(d.path, eigen_cpu(1)), io_error);
    }
}

TEST_CASE("runtime input", "[errors]") {
    const auto& m = real();
    const eigen_cpu b(1);
    SECTION("E13 over-long sequence") {
        packed_batch p;
        p.push_back(std::vector<std::int32_t>(600, 1000), std::vector<std::int32_t>(600, 0));
        CHECK_THROWS_WITH(m.encoder().forward(b, p), Contains("600 tokens") && Contains("at most 512"));
    }
    SECTION("E14 invalid token id / token type id") {
        packed_batch p;
        p.push_back(std::vector<std::int32_t>{101, 99999, 102}, std::vector<std::int32_t>(3, 0));
        CHECK_THROWS_WITH(m.encoder().forward(b, p), Contains("token id 99999"));
        packed_batch q;
        q.push_back(std::vector<std::int32_t>{101, 102}, std::vector<std::int32_t>{0, 5});
        CHECK_THROWS_WITH(m.encoder().forward(b, q), Contains("token type id 5"));
    }
    SECTION("E15 empty batch, empty sequence") {
        CHECK_THROWS_AS(m.encoder().forward(b, packed_batch{}), input_error);
        CHECK_THROWS_AS(m.embed(b, std::span<const text_input>{}), input_error);
        CHECK_THROWS_AS(m.tokenizer().encode_batch(std::span<const text_input>{}), input_error);
    }
    SECTION("E16 empty text is a valid input ([CLS] [SEP])") {
        const std::vector<text_input> in{{"", std::nullopt}};
        CHECK(m.forward(b, in).tokens() == 2);
    }
    SECTION("E17 text that is not UTF-8") {
        CHECK_THROWS_WITH(m.tokenizer().encode("ok \xC3\x28 bad"), Contains("invalid UTF-8") && Contains("byte offset 3"));
        CHECK_THROWS_WITH(tsv_table::parse("a\n\xff\n", "in.tsv"), Contains("in.tsv:2: invalid UTF-8"));
    }
    SECTION("E18 malformed and ragged TSV") {
        CHECK_THROWS_WITH(tsv_table::parse("a\tb\n1\n", "in.tsv"), Contains("in.tsv:2: expected 2"));
        CHECK_THROWS_WITH(tsv_table::parse("a\tb\n1\t2\n", "in.tsv").column("label"), Contains("no column 'label'"));
    }
    SECTION("E19 byte-order marks and CRLF are accepted") {
        const auto t = tsv_table::parse("\xEF\xBB\xBFsentence\tlabel\r\nfine\t1\r\n", "in.tsv");
        CHECK(t.header().front() == "sentence");
        CHECK(t.row(0) == std::vector<std::string>{"fine", "1"});
    }
    SECTION("E20 truncation length too small for the special tokens") {
        CHECK_THROWS_AS(m.tokenizer().encode("a b", std::string_view("c"), 2), input_error);
    }
    SECTION("E21 NaN features reaching the probe") {
        std::vector<float> x{1, 2, std::nanf(""), 4};
        const std::vector<int> y{0, 1};
        CHECK_THROWS_AS(logistic_probe::train({x.data(), 2, 2}, y, 2), input_error);
    }
    SECTION("E22 a backend with no threads") { CHECK_THROWS_AS(eigen_cpu(0), input_error); }
}

TEST_CASE("hash tables", "[errors]") {
    const auto& m = real();
    const auto& v = m.tokenizer().vocab();
    SECTION("E23 a table file made for another model or version") {
        const exit_table t(v.size(), 6, "x");
        CHECK_THROWS_WITH(exit_table::parse(t.to_json(v), "t.json", v, 12), Contains("t.json") && Contains("12 layers"));
        auto j = nlohmann::json::parse(t.to_json(v));
        j["version"] = 7;
        CHECK_THROWS_WITH(exit_table::parse(j.dump(), "t.json", v, 6), Contains("unsupported version 7"));
    }
    SECTION("E24 a target speed-up out of reach") {
        packed_batch corpus;
        corpus.push_back(std::vector<std::int32_t>{101, 1996, 4937, 102}, std::vector<std::int32_t>(4, 0));
        CHECK_THROWS_WITH(frequency_hash(m.hash_setup_for(), corpus, target_speedup{10, &corpus, &m.config()}),
                          Contains("out of reach"));
    }
}
