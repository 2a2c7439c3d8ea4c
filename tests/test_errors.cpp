// The bad-input catalogue (docs/errors.md): every entry, its error type and what its message
// names, through the paths users take (model::load, forward, the readers). IDs match the doc.

#include <chrono>
#include <cmath>
#include <cstring>

#include <sys/stat.h>

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
            INFO("kept " << keep << " bytes");
            CHECK_THROWS_ID_AS(m.load(), format_error, "E01");
            CHECK_THROWS_WITH(m.load(), Contains("model.safetensors"));
        }
    }
    SECTION("E02 corrupt header (not JSON)") {
        auto b = bytes;
        b[9] = std::byte{'}'}; // {"__metadata__"... becomes {}__metadata__"...: not JSON
        const model_copy m(b);
        CHECK_THROWS_ID_AS(m.load(), format_error, "E02");
    }
    SECTION("E03 header length larger than the file") {
        auto b = bytes;
        b[5] = std::byte{0x7f};
        const model_copy m(b);
        CHECK_THROWS_ID_AS(m.load(), format_error, "E03");
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
        CHECK_THROWS_ID_AS(m.load(), format_error, "E04");
        CHECK_THROWS_WITH(m.load(), Contains("model.safetensors") && Contains("embeddings.position_ids"));
    }
}

TEST_CASE("checkpoints: wrong dtypes, shapes, missing tensors, non-finite weights", "[errors]") {
    SECTION("E05 wrong dtype") {
        const model_copy m(rewritten([](writer::item& it) {
            if (it.name == "encoder.layer.2.output.dense.bias") it.dtype = "I32";
            return true;
        }));
        CHECK_THROWS_ID_AS(m.load(), weight_error, "E05");
        CHECK_THROWS_WITH(m.load(), Contains("encoder.layer.2.output.dense.bias") && Contains("I32"));
    }
    SECTION("E06 wrong shape") {
        const model_copy m(rewritten([](writer::item& it) {
            if (it.name == "pooler.dense.bias") {
                it.shape = {383};
                it.data.resize(383 * 4);
            }
            return true;
        }));
        CHECK_THROWS_ID_AS(m.load(), weight_error, "E06");
        CHECK_THROWS_WITH(m.load(), Contains("pooler.dense.bias") && Contains("383"));
    }
    SECTION("E07 missing tensor") {
        const model_copy m(rewritten([](const writer::item& it) { return it.name != "encoder.layer.5.output.LayerNorm.weight"; }));
        CHECK_THROWS_ID_AS(m.load(), weight_error, "E07");
        CHECK_THROWS_WITH(m.load(), Contains("encoder.layer.5.output.LayerNorm.weight") && Contains("not found"));
    }
    SECTION("E08 NaN or infinity in a weight") {
        for (const float bad : {std::nanf(""), INFINITY}) {
            const model_copy m(rewritten([&](writer::item& it) {
                if (it.name == "encoder.layer.1.attention.self.key.weight") std::memcpy(it.data.data() + 4 * 7, &bad, 4);
                return true;
            }));
            CHECK_THROWS_ID_AS(m.load(), weight_error, "E08");
            CHECK_THROWS_WITH(m.load(), Contains("encoder.layer.1.attention.self.key.weight") && Contains("element 7"));
        }
    }
}

TEST_CASE("configurations and model directories", "[errors]") {
    const auto bytes = real_checkpoint();
    SECTION("E09 unsupported configuration") {
        auto c = config_text();
        c.replace(c.find("\"gelu\""), 6, "\"relu\"");
        const model_copy m(bytes, c);
        CHECK_THROWS_ID_AS(m.load(), config_error, "E09");
        CHECK_THROWS_WITH(m.load(), Contains("hidden_act"));
    }
    SECTION("E10 unknown configuration field") {
        auto c = config_text();
        c.insert(c.find('{') + 1, "\"rotary_dim\": 64,");
        const model_copy m(bytes, c);
        CHECK_THROWS_ID_AS(m.load(), config_error, "E10");
        CHECK_THROWS_WITH(m.load(), Contains("rotary_dim"));
    }
    SECTION("E11 vocabulary and config disagree") {
        auto c = config_text();
        c.replace(c.find("30522"), 5, "30521");
        const model_copy m(bytes, c);
        CHECK_THROWS_ID_AS(m.load(), weight_error, "E11"); // the embedding table no longer fits the config
    }
    SECTION("E12 missing files") {
        CHECK_THROWS_ID_AS(model<eigen_cpu>::load("/nonexistent/model", eigen_cpu(1)), io_error, "E12");
        temp_dir d;
        fs::copy_file(model_dir() / "config.json", d.path / "config.json");
        fs::create_directory(d.path / "model.safetensors"); // a directory where the file should be
        CHECK_THROWS_ID_AS(model<eigen_cpu>::load(d.path, eigen_cpu(1)), io_error, "E12");
    }
}

TEST_CASE("runtime input", "[errors]") {
    const auto& m = real();
    const eigen_cpu b(1);
    SECTION("E13 over-long sequence") {
        packed_batch p;
        p.push_back(std::vector<std::int32_t>(600, 1000), std::vector<std::int32_t>(600, 0));
        CHECK_THROWS_ID_AS(m.encoder().forward(b, p), input_error, "E13");
        CHECK_THROWS_WITH(m.encoder().forward(b, p), Contains("600 tokens") && Contains("at most 512"));
    }
    SECTION("E14 invalid token id / token type id") {
        packed_batch p;
        p.push_back(std::vector<std::int32_t>{101, 99999, 102}, std::vector<std::int32_t>(3, 0));
        CHECK_THROWS_ID_AS(m.encoder().forward(b, p), input_error, "E14");
        CHECK_THROWS_WITH(m.encoder().forward(b, p), Contains("token id 99999"));
        packed_batch q;
        q.push_back(std::vector<std::int32_t>{101, 102}, std::vector<std::int32_t>{0, 5});
        CHECK_THROWS_ID_AS(m.encoder().forward(b, q), input_error, "E14");
        CHECK_THROWS_WITH(m.encoder().forward(b, q), Contains("token type id 5"));
    }
    SECTION("E15 empty batch, empty sequence") {
        CHECK_THROWS_ID_AS(m.encoder().forward(b, packed_batch{}), input_error, "E15");
        CHECK_THROWS_ID_AS(m.embed(b, std::span<const text_input>{}), input_error, "E15");
        CHECK_THROWS_ID_AS(m.tokenizer().encode_batch(std::span<const text_input>{}), input_error, "E15");
    }
    SECTION("E16 empty text is a valid input ([CLS] [SEP])") {
        const std::vector<text_input> in{{"", std::nullopt}};
        CHECK(m.forward(b, in).tokens() == 2);
    }
    SECTION("E17 text that is not UTF-8") {
        CHECK_THROWS_ID_AS(m.tokenizer().encode("ok \xC3\x28 bad"), input_error, "E17");
        CHECK_THROWS_WITH(m.tokenizer().encode("ok \xC3\x28 bad"), Contains("invalid UTF-8") && Contains("byte offset 3"));
        CHECK_THROWS_ID_AS(tsv_table::parse("a\n\xff\n", "in.tsv"), format_error, "E17");
        CHECK_THROWS_WITH(tsv_table::parse("a\n\xff\n", "in.tsv"), Contains("in.tsv:2: invalid UTF-8"));
    }
    SECTION("E18 malformed and ragged TSV") {
        CHECK_THROWS_ID_AS(tsv_table::parse("a\tb\n1\n", "in.tsv"), format_error, "E18");
        CHECK_THROWS_WITH(tsv_table::parse("a\tb\n1\n", "in.tsv"), Contains("in.tsv:2: expected 2"));
        CHECK_THROWS_ID_AS(tsv_table::parse("a\tb\n1\t2\n", "in.tsv").column("label"), format_error, "E18");
    }
    SECTION("E19 byte-order marks and CRLF are accepted") {
        const auto t = tsv_table::parse("\xEF\xBB\xBFsentence\tlabel\r\nfine\t1\r\n", "in.tsv");
        CHECK(t.header().front() == "sentence");
        CHECK(t.row(0) == std::vector<std::string>{"fine", "1"});
    }
    SECTION("E20 truncation length too small for the special tokens") {
        CHECK_THROWS_ID_AS(m.tokenizer().encode("a b", std::string_view("c"), 2), input_error, "E20");
    }
    SECTION("E21 NaN features reaching the probe") {
        std::vector<float> x{1, 2, std::nanf(""), 4};
        const std::vector<int> y{0, 1};
        CHECK_THROWS_ID_AS(logistic_probe::train({x.data(), 2, 2}, y, 2), input_error, "E21");
    }
    SECTION("E22 a backend with no threads") { CHECK_THROWS_ID(eigen_cpu(0), "E22"); }
}

TEST_CASE("hash tables", "[errors]") {
    const auto& m = real();
    const auto& v = m.tokenizer().vocab();
    SECTION("E23 a table file made for another model or version") {
        const exit_table t(v.size(), 6, "x");
        CHECK_THROWS_ID(exit_table::parse(t.to_json(v), "t.json", v, 12), "E23");
        CHECK_THROWS_WITH(exit_table::parse(t.to_json(v), "t.json", v, 12), Contains("t.json") && Contains("12 layers"));
        auto j = nlohmann::json::parse(t.to_json(v));
        j["version"] = 7;
        CHECK_THROWS_ID(exit_table::parse(j.dump(), "t.json", v, 6), "E23");
        CHECK_THROWS_WITH(exit_table::parse(j.dump(), "t.json", v, 6), Contains("unsupported version 7"));
    }
    SECTION("E24 a target speed-up out of reach") {
        packed_batch corpus;
        corpus.push_back(std::vector<std::int32_t>{101, 1996, 4937, 102}, std::vector<std::int32_t>(4, 0));
        CHECK_THROWS_ID(frequency_hash(m.hash_setup_for(), corpus, target_speedup{10, &corpus, &m.config()}), "E24");
        CHECK_THROWS_WITH(frequency_hash(m.hash_setup_for(), corpus, target_speedup{10, &corpus, &m.config()}),
                          Contains("out of reach"));
    }
}

// ---- Errors that used to escape (issue 13, 6b): special files, unbounded reads, misblamed files --

namespace {

/// A model directory with the real files, where `name` (relative) is replaced by what `make`
/// puts there.
struct model_dir_with {
    temp_dir dir;
    template <class Make>
    model_dir_with(const std::string& name, Make&& make) {
        for (const char* f : {"vocab.txt", "tokenizer_config.json", "config.json", "modules.json", "sentence_bert_config.json"})
            fs::copy_file(model_dir() / f, dir.path / f);
        fs::create_symlink(model_dir() / "model.safetensors", dir.path / "model.safetensors");  // 90 MB: not copied
        fs::create_directories(dir.path / "1_Pooling");
        fs::copy_file(model_dir() / "1_Pooling" / "config.json", dir.path / "1_Pooling" / "config.json");
        fs::remove(dir.path / name);
        make(dir.path / name);
    }
    model<eigen_cpu> load() const { return model<eigen_cpu>::load(dir.path, eigen_cpu(1)); }
};

void make_fifo(const fs::path& p) { REQUIRE(::mkfifo(p.c_str(), 0600) == 0); }
void write_text(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

} // namespace

TEST_CASE("E34 a named pipe or a device where a file belongs fails at once", "[errors]") {
    // A FIFO nobody writes to: opening it for reading would block forever.
    for (const char* name : {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
                             "1_Pooling/config.json", "modules.json", "sentence_bert_config.json"}) {
        INFO(name);
        const model_dir_with m(name, make_fifo);
        const auto t0 = std::chrono::steady_clock::now();
        CHECK_THROWS_ID_AS(m.load(), io_error, "E34");
        CHECK_THROWS_WITH(m.load(), Contains(name) && Contains("named pipe"));
        CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
    }
    temp_dir d;
    const auto fifo = d.path / "in.tsv";
    make_fifo(fifo);
    CHECK_THROWS_ID(tsv_table::load(fifo), "E34");
    CHECK_THROWS_ID(vocab::load(fifo), "E34");
    CHECK_THROWS_ID(bert_config::load(fifo), "E34");
    CHECK_THROWS_ID(safetensors_file::open(fifo), "E34");
    // Devices that never end.
    for (const char* dev : {"/dev/zero", "/dev/urandom"}) {
        INFO(dev);
        CHECK_THROWS_ID(tsv_table::load(dev), "E34");
        CHECK_THROWS_ID(vocab::load(dev), "E34");
        CHECK_THROWS_ID(bert_config::load(dev), "E34");
        CHECK_THROWS_ID(safetensors_file::open(dev), "E34");
        CHECK_THROWS_ID(exit_table::load(dev, real().tokenizer().vocab(), 6), "E34");
        CHECK_THROWS_WITH(tsv_table::load(dev), Contains(dev) && Contains("character device"));
    }
    // A directory stays E12.
    CHECK_THROWS_ID_AS(vocab::load(d.path), io_error, "E12");
}

TEST_CASE("E35 a text file larger than the stated limit", "[errors]") {
    temp_dir d;
    const auto p = d.path / "big.txt";
    write_text(p, std::string(1000, 'a') + "\n");
    CHECK_THROWS_ID_AS(detail::read_text_file(p, 100), format_error, "E35");
    CHECK_THROWS_WITH(detail::read_text_file(p, 100), Contains(p.string()));
    CHECK(detail::read_text_file(p, 1001).size() == 1001);
    CHECK_THROWS_ID(detail::read_text_file(p, 1000), "E35");
    CHECK(detail::max_text_file_size == std::size_t{256} << 20);
}

TEST_CASE("E36 JSON nested too deeply: one limit, one id, every reader", "[errors]") {
    const std::string deep = std::string(40, '[') + std::string(40, ']');
    const std::string deep_obj = "{\"a\":" + deep + "}";
    CHECK_THROWS_ID(bert_config::parse(deep_obj, "config.json"), "E36");
    CHECK_THROWS_ID(exit_table::parse(deep_obj, "t.json", real().tokenizer().vocab(), 6), "E36");
    std::vector<std::byte> st(8);
    std::string header = deep_obj;
    for (int i = 0; i < 8; ++i) st[i] = static_cast<std::byte>((header.size() >> (8 * i)) & 0xff);
    for (char c : header) st.push_back(static_cast<std::byte>(c));
    CHECK_THROWS_ID(safetensors_file::from_bytes(st, "x.safetensors"), "E36");
    for (const char* name : {"1_Pooling/config.json", "modules.json", "tokenizer_config.json", "sentence_bert_config.json"}) {
        INFO(name);
        const model_dir_with m(name, [&](const fs::path& p) { write_text(p, deep_obj); });
        CHECK_THROWS_ID(m.load(), "E36");
        CHECK_THROWS_WITH(m.load(), Contains(name));
    }
    // At the limit itself (32 levels) a document parses.
    CHECK_NOTHROW(detail::parse_json(std::string(32, '[') + std::string(32, ']'), "x"));
    CHECK_THROWS_ID(detail::parse_json(std::string(33, '[') + std::string(33, ']'), "x"), "E36");
}

TEST_CASE("E37 a JSON side file that is not JSON names that file", "[errors]") {
    for (const char* name : {"1_Pooling/config.json", "modules.json", "tokenizer_config.json", "sentence_bert_config.json"}) {
        INFO(name);
        const model_dir_with m(name, [&](const fs::path& p) { write_text(p, "{\"a\": "); });
        CHECK_THROWS_ID_AS(m.load(), format_error, "E37");
        CHECK_THROWS_WITH(m.load(), Contains(name));
    }
    CHECK_THROWS_ID(bert_config::parse("{\"a\": ", "config.json"), "E37");
    CHECK_THROWS_ID(bert_config::parse("[]", "config.json"), "E37");
}

TEST_CASE("E38 a config.json field missing, mistyped or out of range", "[errors]") {
    auto j = nlohmann::json::parse(config_text());
    j["hidden_size"] = "384";
    CHECK_THROWS_ID_AS(bert_config::parse(j.dump(), "config.json"), config_error, "E38");
    CHECK_THROWS_WITH(bert_config::parse(j.dump(), "config.json"), Contains("config.json") && Contains("hidden_size"));
    CHECK_THROWS_ID(bert_config::parse(R"({"model_type": "bert", "model_type": "bert"})", "config.json"), "E38");
}

TEST_CASE("E40 an error in a pooling config is blamed on that file and field", "[errors]") {
    const auto pooling = [](const std::string& text) {
        return model_dir_with("1_Pooling/config.json", [&](const fs::path& p) { write_text(p, text); });
    };
    {
        const auto m = pooling(R"({"pooling_mode_mean_tokens": 1, "pooling_mode_cls_token": false})");
        CHECK_THROWS_ID_AS(m.load(), config_error, "E40");
        CHECK_THROWS_WITH(m.load(), Contains("1_Pooling/config.json") && Contains("pooling_mode_mean_tokens"));
    }
    {
        const auto m = pooling(R"({"pooling_mode_mean_tokens": false, "pooling_mode_cls_token": false})");
        CHECK_THROWS_ID(m.load(), "E40");
        CHECK_THROWS_WITH(m.load(), Contains("1_Pooling/config.json"));
    }
    {
        const auto m = pooling(R"({"pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true})");
        CHECK_THROWS_WITH(m.load(), Contains("1_Pooling/config.json") && Contains("pooling_mode_max_tokens"));
    }
    {
        const auto m = pooling("[1, 2]");
        CHECK_THROWS_ID(m.load(), "E40");
        CHECK_THROWS_WITH(m.load(), Contains("1_Pooling/config.json"));
    }
    for (const char* text : {R"({"type": "x"})", R"([{"type": 5}])", R"([7])"}) {
        INFO(text);
        const model_dir_with m("modules.json", [&](const fs::path& p) { write_text(p, text); });
        CHECK_THROWS_ID(m.load(), "E40");
        CHECK_THROWS_WITH(m.load(), Contains("modules.json"));
    }
}

TEST_CASE("E41 an error in a tokenizer config is blamed on that file and field", "[errors]") {
    const auto tokenizer = [](const std::string& text) {
        return model_dir_with("tokenizer_config.json", [&](const fs::path& p) { write_text(p, text); });
    };
    const std::vector<std::pair<std::string, std::string>> cases{
        {R"({"do_lower_case": "yes"})", "do_lower_case"},
        {R"({"strip_accents": 1})", "strip_accents"},
        {R"({"unk_token": 5})", "unk_token"},
        {R"({"mask_token": ""})", "mask_token"},
        {R"({"cls_token": "<s>"})", "cls_token"},  // not a token of vocab.txt: still this file's fault
        {R"({"pad_token": {"content": "<pad>"}})", "pad_token"},
        {"[]", "tokenizer_config.json"},
    };
    for (const auto& [text, field] : cases) {
        INFO(text);
        const auto m = tokenizer(text);
        CHECK_THROWS_ID_AS(m.load(), format_error, "E41");
        CHECK_THROWS_WITH(m.load(), Contains("tokenizer_config.json") && Contains(field));
    }
    const model_dir_with st("sentence_bert_config.json", [](const fs::path& p) { write_text(p, R"({"max_seq_length": -3})"); });
    CHECK_THROWS_ID(st.load(), "E41");
    CHECK_THROWS_WITH(st.load(), Contains("sentence_bert_config.json") && Contains("max_seq_length"));
}

TEST_CASE("U05 U06 misuse of packed batches and encoder outputs", "[errors]") {
    packed_batch p;
    CHECK_THROWS_ID_AS(p.push_back(std::vector<std::int32_t>{101, 102}, std::vector<std::int32_t>{0}), usage_error, "U05");
    p.push_back(std::vector<std::int32_t>{101, 1996, 102}, std::vector<std::int32_t>(3, 0));
    const auto out = real().encoder().forward(eigen_cpu(1), p);
    CHECK_THROWS_ID_AS(out.last_hidden_state(2), usage_error, "U06");
    CHECK(out.last_hidden_state(3).size() == 3u * 384u);
}

TEST_CASE("U10 collect_layer_features asked to pool every token", "[errors]") {
    packed_batch p;
    p.push_back(std::vector<std::int32_t>{101, 1996, 102}, std::vector<std::int32_t>(3, 0));
    const std::vector<packed_batch> batches{p};
    CHECK_THROWS_ID_AS(collect_layer_features(eigen_cpu(1), real().encoder(), std::span<const packed_batch>(batches), no_exit{},
                                              head_input::all_tokens),
                       usage_error, "U10");
}
