// safetensors reader: the real all-MiniLM-L6-v2 checkpoint, files generated from scratch,
// a catalogue of corrupt files (one per validation rule) and truncations of the real file.

#include <hashee/io/detail/half.hpp>
#include <hashee/io/safetensors.hpp>

#include "safetensors_writer.hpp"
#include "test_support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <unistd.h>
#include <vector>

using Catch::Matchers::Contains;
using hashee::dtype;
using hashee::safetensors_file;

namespace {

using namespace hashee::test;

namespace fs = std::filesystem;


bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

const std::string src = "corrupt.safetensors";

/// Expects from_bytes to reject `bytes` with a format_error whose message names the source
/// and every string of `parts`.
/// Its catalogue id is one of the reader's (docs/errors.md): E01 the file ends early, E02 the
/// header is not a JSON object, E03 a header length that cannot be, E04 offsets or sizes that
/// lie, E36 JSON nested too deeply, E39 a malformed entry.
void expect_format_error(std::vector<std::byte> bytes, std::initializer_list<std::string> parts) {
    std::string id;
    try {
        (void)safetensors_file::from_bytes(bytes, src);
    } catch (const hashee::error& e) {
        id = e.id();
    }
    INFO("id " << id);
    CHECK((id == "E01" || id == "E02" || id == "E03" || id == "E04" || id == "E36" || id == "E39"));
    const auto msg = error_of<hashee::format_error>(
        [&] { (void)safetensors_file::from_bytes(std::move(bytes), src); });
    INFO(msg);
    CHECK(msg.rfind(src + ": ", 0) == 0);
    for (const auto& p : parts) CHECK_THAT(msg, Contains(p));
}

/// A one-tensor header with the given entry body.
std::string one(const std::string& entry_body) { return R"({"w":)" + entry_body + "}"; }

} // namespace

// ---------------------------------------------------------------------------------------------
// The real checkpoint

TEST_CASE("real all-MiniLM-L6-v2 checkpoint opens and validates", "[safetensors][real]") {
    const auto path = hashee::test::model_dir() / "model.safetensors";
    const auto f = safetensors_file::open(path);

    CHECK(f.source() == path.string());
    // 104 tensors; the JSON header has 105 entries counting "__metadata__".
    CHECK(f.tensors().size() == 104);
    REQUIRE(f.metadata().count("format") == 1);
    CHECK(f.metadata().at("format") == "pt");
    CHECK(f.file_bytes().size() == fs::file_size(path));
    CHECK(f.header_size() == 11408);

    // Sorted by offset and contiguous.
    std::size_t expected = 0;
    for (const auto& t : f.tensors()) {
        CHECK(t.offset == expected);
        CHECK(t.nbytes == static_cast<std::size_t>(t.numel()) * hashee::size_of(t.dtype));
        expected = t.offset + t.nbytes;
    }
    CHECK(8 + f.header_size() + expected == f.file_bytes().size());

    SECTION("position_ids is I64 [1, 512] holding 0..511") {
        const auto& t = f.expect("embeddings.position_ids", {1, 512});
        CHECK(t.dtype == dtype::i64);
        CHECK(hashee::to_string(t.dtype) == "I64");
        const auto b = f.bytes(t);
        REQUIRE(b.size() == 512 * 8);
        for (std::size_t i = 0; i < 512; ++i)
            CHECK(hashee::detail::load_u64_le(b.data() + 8 * i) == i);
    }

    SECTION("word embeddings are a zero-copy F32 view matching the bytes read by hand") {
        const auto& t = f.expect("embeddings.word_embeddings.weight", {30522, 384});
        CHECK(t.dtype == dtype::f32);
        CHECK(t.numel() == 30522 * 384);
        std::vector<float> storage;
        const auto v = f.floats(t, storage);
        REQUIRE(v.size() == 30522u * 384u);
        CHECK(storage.empty());
        // The span lies inside the mapping.
        const auto file = f.file_bytes();
        const auto* lo = reinterpret_cast<const std::byte*>(v.data());
        const auto* hi = reinterpret_cast<const std::byte*>(v.data() + v.size());
        CHECK(lo >= file.data());
        CHECK(hi <= file.data() + file.size());
        CHECK(lo == file.data() + 8 + f.header_size() + t.offset);

        // Independent read of the same values with ifstream.
        std::ifstream in(path, std::ios::binary);
        for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{384 * 100 + 7},
                              std::size_t{384 * 2000 + 383}, v.size() - 1}) {
            in.seekg(static_cast<std::streamoff>(8 + f.header_size() + t.offset + 4 * k));
            float x;
            in.read(reinterpret_cast<char*>(&x), 4);
            REQUIRE(in.good());
            INFO("element " << k);
            CHECK(same_bits(v[k], x));
        }
        // Known leading values (from the reference reader).
        CHECK(v[0] == -0.019989013671875f);
        CHECK(v[1] == -0.0034027099609375f);
        CHECK(v[2] == -0.014678955078125f);
    }

    SECTION("checked accessors report file, tensor, shapes and dtype") {
        const auto not_found = error_of<hashee::weight_error>([&] { (void)f.at("no.such.tensor"); });
        CHECK(not_found == path.string() + ": tensor 'no.such.tensor' not found");
        CHECK(f.find("no.such.tensor") == nullptr);
        CHECK(f.find("embeddings.LayerNorm.bias") != nullptr);

        const auto bad_shape = error_of<hashee::weight_error>(
            [&] { (void)f.expect("embeddings.word_embeddings.weight", {384, 30522}); });
        CHECK_THAT(bad_shape, Contains(path.string()) &&
                                  Contains("embeddings.word_embeddings.weight") &&
                                  Contains("[30522, 384]") && Contains("[384, 30522]"));
        const auto bad_rank = error_of<hashee::weight_error>(
            [&] { (void)f.expect("embeddings.LayerNorm.bias", {384, 1}); });
        CHECK_THAT(bad_rank, Contains("[384]") && Contains("[384, 1]"));
        CHECK_THROWS_ID_AS(f.expect("missing", {1}), hashee::weight_error, "E07");

        std::vector<float> storage;
        const auto bad_dtype = error_of<hashee::weight_error>(
            [&] { (void)f.floats(f.at("embeddings.position_ids"), storage); });
        CHECK_THAT(bad_dtype, Contains(path.string()) && Contains("embeddings.position_ids") &&
                                  Contains("I64"));
    }

    SECTION("from_bytes of the same bytes gives the same tensors") {
        const auto g = safetensors_file::from_bytes(read_all(path), "copy");
        REQUIRE(g.tensors().size() == f.tensors().size());
        for (std::size_t i = 0; i < g.tensors().size(); ++i) {
            CHECK(g.tensors()[i].name == f.tensors()[i].name);
            CHECK(g.tensors()[i].shape == f.tensors()[i].shape);
            CHECK(g.tensors()[i].offset == f.tensors()[i].offset);
        }
        std::vector<float> s1, s2;
        const auto a = f.floats(f.at("encoder.layer.5.output.dense.weight"), s1);
        const auto b = g.floats(g.at("encoder.layer.5.output.dense.weight"), s2);
        REQUIRE(a.size() == b.size());
        CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
    }

    SECTION("moving keeps the mapping and its spans alive") {
        auto g = safetensors_file::open(path);
        std::vector<float> storage;
        const auto before = g.floats(g.at("pooler.dense.bias"), storage);
        safetensors_file h = std::move(g);
        const auto after = h.floats(h.at("pooler.dense.bias"), storage);
        CHECK(before.data() == after.data());
        CHECK(after[0] == before[0]);
        safetensors_file k = safetensors_file::from_bytes(raw_file("{}", 0), "empty");
        k = std::move(h);
        CHECK(k.tensors().size() == 104);
        CHECK(k.source() == path.string());
    }
}

TEST_CASE("truncations of the real file are format errors, never crashes", "[safetensors][real]") {
    const auto path = hashee::test::model_dir() / "model.safetensors";
    const auto all = read_all(path);
    const std::size_t n = 8 + hashee::detail::load_u64_le(all.data());
    for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{8},
                          std::size_t{9}, std::size_t{100}, n - 1, n, n + 1, n + 4096,
                          all.size() / 2, all.size() - 4, all.size() - 1}) {
        INFO("first " << k << " bytes");
        std::vector<std::byte> part(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k));
        CHECK_THROWS_ID_AS(safetensors_file::from_bytes(part, "truncated.safetensors"), hashee::format_error, "E01");
        const auto msg = error_of<hashee::format_error>(
            [&] { (void)safetensors_file::from_bytes(std::move(part), "truncated.safetensors"); });
        CHECK_THAT(msg, Contains("truncated.safetensors"));
    }
    // One byte too many is as wrong as one too few.
    auto longer = all;
    longer.push_back(std::byte{0});
    CHECK_THROWS_ID_AS(safetensors_file::from_bytes(std::move(longer), "longer"), hashee::format_error, "E04");
}

// ---------------------------------------------------------------------------------------------
// Files written from scratch

TEST_CASE("generated files round-trip F32, F16, BF16 and other dtypes", "[safetensors]") {
    const float inf = std::numeric_limits<float>::infinity();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float denorm = std::numeric_limits<float>::denorm_min();
    const std::vector<float> f32 = {1.5f, -0.0f, inf, -inf, nan, denorm};

    // binary16 bit patterns and their exact values.
    const std::vector<std::uint16_t> f16_bits = {0x0000, 0x8000, 0x3C00, 0xC000, 0x7BFF, 0x0001,
                                                 0x03FF, 0x0400, 0x7C00, 0xFC00, 0x7E00, 0x3555};
    const std::vector<float> f16_vals = {0.0f, -0.0f, 1.0f, -2.0f, 65504.0f,
                                         std::ldexp(1.0f, -24), std::ldexp(1023.0f, -24),
                                         std::ldexp(1.0f, -14), inf, -inf, nan, 0.333251953125f};
    // bfloat16 bit patterns and their exact values.
    const std::vector<std::uint16_t> bf16_bits = {0x3F80, 0xC040, 0x0001, 0x807F,
                                                  0x7F80, 0xFF80, 0x7FC0, 0x4049};
    const std::vector<float> bf16_vals = {1.0f, -3.0f, std::ldexp(1.0f, -133),
                                          -std::ldexp(127.0f, -133), inf, -inf, nan, 3.140625f};

    writer w;
    w.metadata = nlohmann::json{{"format", "pt"}, {"note", "généré"}};
    w.add("a.f32", "F32", {2, 3}, f32)
        .add("b.f16", "F16", {3, 4}, f16_bits)
        .add("c.bf16", "BF16", {8}, bf16_bits)
        .add("d.i64", "I64", {3}, std::vector<std::int64_t>{-1, 0, 1LL << 40})
        .add("e.empty", "F32", {0, 4}, std::vector<float>{})
        .add("f.scalar", "F32", {}, std::vector<float>{42.0f})
        .add("g.u8", "U8", {3}, std::vector<std::uint8_t>{1, 2, 3})
        .add("h.unaligned", "F32", {2}, std::vector<float>{0.25f, -8.0f})
        .add("i.bool", "BOOL", {2}, std::vector<std::uint8_t>{0, 1})
        .add("j.f64", "F64", {1}, std::vector<double>{2.5})
        .add("k.f8", "F8_E4M3", {1}, std::vector<std::uint8_t>{0x38});
    const auto bytes = w.build();

    auto check = [&](const safetensors_file& f) {
        REQUIRE(f.tensors().size() == 11);
        CHECK(f.metadata().at("note") == "généré");
        std::vector<float> st;

        const auto& a = f.expect("a.f32", {2, 3});
        const auto av = f.floats(a, st);
        REQUIRE(av.size() == f32.size());
        for (std::size_t i = 0; i < f32.size(); ++i) CHECK(same_bits(av[i], f32[i]));

        const auto& b = f.expect("b.f16", {3, 4});
        CHECK(b.dtype == dtype::f16);
        const auto bv = f.floats(b, st);
        REQUIRE(bv.size() == f16_vals.size());
        CHECK(bv.data() == st.data());
        for (std::size_t i = 0; i < bv.size(); ++i) {
            INFO("f16 bits " << f16_bits[i]);
            if (std::isnan(f16_vals[i]))
                CHECK(std::isnan(bv[i]));
            else
                CHECK(same_bits(bv[i], f16_vals[i]));
        }

        const auto& c = f.expect("c.bf16", {8});
        const auto cv = f.floats(c, st);
        REQUIRE(cv.size() == bf16_vals.size());
        for (std::size_t i = 0; i < cv.size(); ++i) {
            INFO("bf16 bits " << bf16_bits[i]);
            if (std::isnan(bf16_vals[i]))
                CHECK(std::isnan(cv[i]));
            else
                CHECK(same_bits(cv[i], bf16_vals[i]));
        }

        const auto& d = f.expect("d.i64", {3});
        CHECK(d.dtype == dtype::i64);
        CHECK(static_cast<std::int64_t>(hashee::detail::load_u64_le(f.bytes(d).data() + 16)) ==
              (1LL << 40));
        CHECK_THROWS_ID_AS(f.floats(d, st), hashee::weight_error, "E05");

        const auto& e = f.expect("e.empty", {0, 4});
        CHECK(e.numel() == 0);
        CHECK(e.nbytes == 0);
        CHECK(f.floats(e, st).empty());

        const auto& s = f.expect("f.scalar", {});
        CHECK(s.numel() == 1);
        REQUIRE(f.floats(s, st).size() == 1);
        CHECK(f.floats(s, st)[0] == 42.0f);

        CHECK(f.at("g.u8").dtype == dtype::u8);
        CHECK(f.at("i.bool").dtype == dtype::boolean);
        CHECK(f.at("k.f8").dtype == dtype::f8_e4m3);
        const auto f64_msg = error_of<hashee::weight_error>([&] { (void)f.floats(f.at("j.f64"), st); });
        CHECK_THAT(f64_msg, Contains("j.f64") && Contains("F64"));

        // "h.unaligned" starts 3 bytes after a 4-aligned offset: converted, not zero-copy.
        const auto& h = f.expect("h.unaligned", {2});
        REQUIRE(h.offset % 4 != 0);
        const auto hv = f.floats(h, st);
        CHECK(hv.data() == st.data());
        REQUIRE(hv.size() == 2);
        CHECK(hv[0] == 0.25f);
        CHECK(hv[1] == -8.0f);

        // Aligned F32 is zero-copy.
        CHECK(reinterpret_cast<const std::byte*>(f.floats(a, st).data()) ==
              f.data_buffer().data() + a.offset);
    };

    SECTION("from_bytes") { check(safetensors_file::from_bytes(bytes, "gen.safetensors")); }
    SECTION("open (mmap)") {
        temp_dir dir;
        const auto p = dir.write("gen.safetensors", bytes);
        check(safetensors_file::open(p));
    }
    SECTION("tensors() is sorted by offset whatever the header's key order") {
        const auto f = safetensors_file::from_bytes(bytes, "gen");
        for (std::size_t i = 1; i < f.tensors().size(); ++i)
            CHECK(f.tensors()[i - 1].offset <= f.tensors()[i].offset);
    }
}

TEST_CASE("legal edge cases are accepted", "[safetensors]") {
    SECTION("no tensors at all") {
        const auto f = safetensors_file::from_bytes(raw_file("{}", 0), src);
        CHECK(f.tensors().empty());
        CHECK(f.metadata().empty());
    }
    SECTION("only metadata") {
        const auto f = safetensors_file::from_bytes(raw_file(R"({"__metadata__":{}})", 0), src);
        CHECK(f.tensors().empty());
    }
    SECTION("header padded with trailing spaces") {
        const auto f = safetensors_file::from_bytes(
            raw_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}       )", 4), src);
        CHECK(f.tensors().size() == 1);
    }
    SECTION("several empty tensors at the same offset, between others") {
        const auto f = safetensors_file::from_bytes(
            raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                     R"("z":{"dtype":"F16","shape":[0],"data_offsets":[4,4]},)"
                     R"("y":{"dtype":"I8","shape":[3,0,2],"data_offsets":[4,4]},)"
                     R"("b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})",
                     6),
            src);
        REQUIRE(f.tensors().size() == 4);
        CHECK(f.tensors()[0].name == "a");
        CHECK(f.tensors()[1].name == "y");
        CHECK(f.tensors()[2].name == "z");
        CHECK(f.tensors()[3].name == "b");
        CHECK(f.at("y").numel() == 0);
    }
    SECTION("tensor names with non-ASCII UTF-8 and escapes") {
        const auto f = safetensors_file::from_bytes(
            raw_file("{\"h\xC3\xA9\\u00e9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1),
            src);
        CHECK(f.find("h\xC3\xA9\xC3\xA9") != nullptr);
    }
}

TEST_CASE("binary16 and bfloat16 conversions are exact", "[safetensors][half]") {
    using hashee::detail::bf16_to_float;
    using hashee::detail::half_to_float;
    for (std::uint32_t bits = 0; bits <= 0xFFFF; ++bits) {
        const auto h = static_cast<std::uint16_t>(bits);
        const int sign = (h >> 15) ? -1 : 1;
        const int e = (h >> 10) & 0x1F;
        const int m = h & 0x3FF;
        const float got = half_to_float(h);
        float want;
        if (e == 31)
            want = m ? std::numeric_limits<float>::quiet_NaN()
                     : sign * std::numeric_limits<float>::infinity();
        else if (e == 0)
            want = static_cast<float>(sign) * std::ldexp(static_cast<float>(m), -24);
        else
            want = static_cast<float>(sign) * std::ldexp(static_cast<float>(1024 + m), e - 25);
        if (std::isnan(want)) {
            REQUIRE(std::isnan(got));
            // The payload survives: the top 10 mantissa bits of the float are the half's.
            REQUIRE(((std::bit_cast<std::uint32_t>(got) >> 13) & 0x3FF) == static_cast<std::uint32_t>(m));
        } else {
            REQUIRE(got == want);
            REQUIRE(std::signbit(got) == (sign < 0));
        }
#if defined(__FLT16_MAX__) && (defined(__x86_64__) || defined(__aarch64__))
        _Float16 native;
        std::memcpy(&native, &h, 2);
        if (!std::isnan(want)) REQUIRE(same_bits(static_cast<float>(native), got));
#endif
        // bfloat16 is the top half of a float, bit for bit.
        REQUIRE(std::bit_cast<std::uint32_t>(bf16_to_float(h)) == (bits << 16));
    }
}

TEST_CASE("open: files that cannot be read are io errors or format errors", "[safetensors]") {
    temp_dir dir;
    SECTION("missing file") {
        const auto p = dir.path / "missing.safetensors";
        CHECK_THROWS_ID_AS(safetensors_file::open(p), hashee::io_error, "E12");
        const auto msg = error_of<hashee::io_error>([&] { (void)safetensors_file::open(p); });
        CHECK_THAT(msg, Contains(p.string()));
    }
    SECTION("a directory") {
        CHECK_THROWS_ID_AS(safetensors_file::open(dir.path), hashee::io_error, "E12");
        const auto msg = error_of<hashee::io_error>([&] { (void)safetensors_file::open(dir.path); });
        CHECK_THAT(msg, Contains(dir.path.string()));
    }
    SECTION("an empty file") {
        const auto p = dir.write("empty.safetensors", {});
        const auto msg = error_of<hashee::format_error>([&] { (void)safetensors_file::open(p); });
        CHECK_THAT(msg, Contains(p.string()) && Contains("shorter than"));
    }
    SECTION("a corrupt file on disk names its path") {
        const auto p = dir.write("bad.safetensors", raw_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), 4));
        const auto msg = error_of<hashee::format_error>([&] { (void)safetensors_file::open(p); });
        CHECK_THAT(msg, Contains(p.string()) && Contains("tensor 'w'"));
    }
}

// ---------------------------------------------------------------------------------------------
// Catalogue of corrupt files: one section per validation rule.

TEST_CASE("corrupt: the 8-byte header length", "[safetensors][corrupt]") {
    SECTION("file shorter than 8 bytes") {
        expect_format_error({}, {"0 bytes", "shorter than"});
        expect_format_error(std::vector<std::byte>(7), {"7 bytes", "shorter than"});
    }
    SECTION("header length 0") { expect_format_error(raw_file("", 16, 0), {"header length is 0"}); }
    SECTION("header length larger than the file") {
        expect_format_error(raw_file("{}", 0, 3), {"header length 3", "end of the file"});
        expect_format_error(raw_file("{}", 10, 1000), {"header length 1000"});
        expect_format_error(raw_file("{}", 0, ~std::uint64_t{0}), {"header length"});
        expect_format_error(raw_file("{}", 0, std::uint64_t{1} << 63), {"header length"});
    }
    SECTION("header length larger than 100 MB") {
        expect_format_error(raw_file("{}", 0, 100'000'001), {"100000001", "limit"});
    }
}

TEST_CASE("corrupt: the header text", "[safetensors][corrupt]") {
    SECTION("not starting with '{'") {
        expect_format_error(raw_file("[]", 0), {"does not start with '{'"});
        expect_format_error(raw_file(" {}", 0), {"does not start with '{'"});
    }
    SECTION("not valid UTF-8") {
        expect_format_error(raw_file("{\"w\xFF\":{}}", 0), {"UTF-8", "byte 3"});
        expect_format_error(raw_file("{\"\xC0\xAF\":1}", 0), {"UTF-8"});             // overlong
        expect_format_error(raw_file("{\"\xED\xA0\x80\":1}", 0), {"UTF-8"});         // surrogate
        expect_format_error(raw_file("{\"\xF4\x90\x80\x80\":1}", 0), {"UTF-8"});     // > U+10FFFF
        expect_format_error(raw_file("{\"\xE2\x82\":1}", 0), {"UTF-8"});             // truncated
    }
    SECTION("not JSON") {
        expect_format_error(raw_file("{\"w\": ", 0), {"not valid JSON"});
        expect_format_error(raw_file("{]", 0), {"not valid JSON"});
        expect_format_error(raw_file("{} {}", 0), {"not valid JSON"});
        expect_format_error(raw_file(std::string_view("{}\0\0", 4), 0), {"not valid JSON", "NUL"});
        expect_format_error(raw_file(std::string_view("{}\0x", 4), 0), {"NUL"});
        expect_format_error(raw_file("{\"a\":NaN}", 0), {"not valid JSON"});
        expect_format_error(raw_file("{/*c*/}", 0), {"not valid JSON"});
        expect_format_error(raw_file("{\"\\ud800\":1}", 0), {"not valid JSON"});  // lone surrogate escape
    }
    SECTION("absurd nesting") {
        expect_format_error(raw_file("{\"w\":" + std::string(100000, '[') + std::string(100000, ']') + "}", 0),
                            {"nested too deeply"});
    }
    SECTION("duplicate tensor names") {
        expect_format_error(
            raw_file(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                     R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", 2),
            {"tensor 'w'", "duplicate tensor name"});
    }
    SECTION("duplicate key inside an entry") {
        expect_format_error(raw_file(one(R"({"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]})"), 1),
                            {"tensor 'w'", "duplicate key 'dtype'"});
    }
    SECTION("duplicate __metadata__") {
        expect_format_error(raw_file(R"({"__metadata__":{},"__metadata__":{}})", 0), {"__metadata__"});
    }
}

TEST_CASE("corrupt: __metadata__", "[safetensors][corrupt]") {
    SECTION("not an object") {
        expect_format_error(raw_file(R"({"__metadata__":"pt"})", 0), {"__metadata__"});
        expect_format_error(raw_file(R"({"__metadata__":["a"]})", 0), {"__metadata__"});
        expect_format_error(raw_file(R"({"__metadata__":null})", 0), {"__metadata__"});
    }
    SECTION("a value that is not a string") {
        expect_format_error(raw_file(R"({"__metadata__":{"format":1}})", 0), {"__metadata__", "'format'"});
        expect_format_error(raw_file(R"({"__metadata__":{"x":null}})", 0), {"'x'"});
        expect_format_error(raw_file(R"({"__metadata__":{"x":{"y":"z"}}})", 0), {"'x'"});
    }
}

TEST_CASE("corrupt: tensor entries", "[safetensors][corrupt]") {
    SECTION("entry not an object") {
        expect_format_error(raw_file(one("5"), 0), {"tensor 'w'", "not a JSON object"});
        expect_format_error(raw_file(one("[\"F32\",[1],[0,4]]"), 4), {"tensor 'w'"});
        expect_format_error(raw_file(one("null"), 0), {"tensor 'w'"});
    }
    SECTION("missing keys") {
        expect_format_error(raw_file(one(R"({"shape":[1],"data_offsets":[0,4]})"), 4),
                            {"tensor 'w'", "missing key 'dtype'"});
        expect_format_error(raw_file(one(R"({"dtype":"F32","data_offsets":[0,4]})"), 4),
                            {"tensor 'w'", "missing key 'shape'"});
        expect_format_error(raw_file(one(R"({"dtype":"F32","shape":[1]})"), 4),
                            {"tensor 'w'", "missing key 'data_offsets'"});
    }
    SECTION("extra keys") {
        expect_format_error(raw_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"stride":[1]})"), 4),
                            {"tensor 'w'", "unexpected key 'stride'"});
    }
    SECTION("unknown dtype names") {
        for (const char* bad : {"F33", "f32", "FLOAT", "", "F4", "C64"}) {
            INFO(bad);
            expect_format_error(
                raw_file(one(std::string(R"({"dtype":")") + bad + R"(","shape":[1],"data_offsets":[0,4]})"), 4),
                {"tensor 'w'", std::string("unknown dtype '") + bad + "'"});
        }
        expect_format_error(raw_file(one(R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})"), 4),
                            {"tensor 'w'", "dtype is not a string"});
    }
    SECTION("shape not a list of non-negative integers") {
        for (const char* bad : {"3", "null", "\"[1]\"", "[-1]", "[1.5]", "[2.0]", "[\"2\"]",
                                "[[1]]", "[true]", "[9223372036854775808]", "[1e2]", "[-0]"}) {
            INFO(bad);
            expect_format_error(
                raw_file(one(std::string(R"({"dtype":"U8","shape":)") + bad + R"(,"data_offsets":[0,1]})"), 1),
                {"tensor 'w'", "shape"});
        }
    }
    SECTION("data_offsets not two non-negative integers with begin <= end") {
        for (const char* bad : {"4", "[4]", "[0,2,4]", "[]", "[-1,3]", "[0,4.0]", "[0,\"4\"]",
                                "null", "[0,18446744073709551616]"}) {
            INFO(bad);
            expect_format_error(
                raw_file(one(std::string(R"({"dtype":"F32","shape":[1],"data_offsets":)") + bad + "}"), 4),
                {"tensor 'w'", "data_offsets"});
        }
        expect_format_error(raw_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,0]})"), 4),
                            {"tensor 'w'", "begin is after end"});
    }
    SECTION("byte size differs from product(shape) * dtype size") {
        expect_format_error(raw_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), 4),
                            {"tensor 'w'", "hold 4 bytes", "needs 8"});
        expect_format_error(raw_file(one(R"({"dtype":"BF16","shape":[2,3],"data_offsets":[0,6]})"), 6),
                            {"tensor 'w'", "needs 12"});
        expect_format_error(raw_file(one(R"({"dtype":"F32","shape":[0],"data_offsets":[0,4]})"), 4),
                            {"tensor 'w'", "needs 0"});
    }
    SECTION("overflowing element count or byte size") {
        // 2^32 * 2^32 overflows u64.
        expect_format_error(
            raw_file(one(R"({"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]})"), 1),
            {"tensor 'w'", "overflows"});
        // 2^32 * 2^31 = 2^63 fits u64 but not int64.
        expect_format_error(
            raw_file(one(R"({"dtype":"U8","shape":[4294967296,2147483648],"data_offsets":[0,1]})"), 1),
            {"tensor 'w'", "overflows"});
        // 2^62 elements of F32 is 2^64 bytes.
        expect_format_error(
            raw_file(one(R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]})"), 4),
            {"tensor 'w'", "overflows"});
        // A zero dimension makes any other dimension harmless.
        CHECK_NOTHROW(safetensors_file::from_bytes(
            raw_file(one(R"({"dtype":"F64","shape":[0,9223372036854775807],"data_offsets":[0,0]})"), 0), src));
    }
}

TEST_CASE("corrupt: the layout of the data buffer", "[safetensors][corrupt]") {
    SECTION("first tensor does not start at 0") {
        expect_format_error(raw_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), 8),
                            {"tensor 'w'", "gap", "begins at 4"});
    }
    SECTION("gap between tensors") {
        expect_format_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12),
                            {"tensor 'b'", "gap", "'a'"});
    }
    SECTION("overlapping tensors") {
        expect_format_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                            {"tensor 'b'", "overlap", "'a'"});
        expect_format_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                     R"("b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})", 4),
                            {"overlap"});
        // An empty tensor inside another one.
        expect_format_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                     R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", 8),
                            {"tensor 'e'", "overlap"});
    }
    SECTION("tensor running past the data buffer") {
        expect_format_error(raw_file(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})"), 4),
                            {"tensor 'w'", "past the end", "4-byte data buffer"});
        expect_format_error(raw_file(one(R"({"dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615]})"), 4),
                            {"tensor 'w'"});
    }
    SECTION("trailing bytes after the last tensor") {
        expect_format_error(raw_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})"), 5),
                            {"data buffer is 5 bytes", "cover 4"});
        expect_format_error(raw_file("{}", 1), {"data buffer is 1 bytes"});
    }
}

TEST_CASE("ids: a malformed entry is E39, misuse of the writer U02", "[safetensors]") {
    CHECK_THROWS_ID_AS(safetensors_file::from_bytes(raw_file(one(R"({"dtype":"F33","shape":[1],"data_offsets":[0,1]})"), 1), src),
                       hashee::format_error, "E39");
    CHECK_THROWS_ID_AS(safetensors_file::from_bytes(raw_file(one(R"({"dtype":"U8","shape":[1]})"), 1), src),
                       hashee::format_error, "E39");
    temp_dir dir;
    const std::vector<float> three{1, 2, 3};
    const std::vector<hashee::safetensors_tensor> bad{{"w", {2, 2}, three}};
    CHECK_THROWS_ID_AS(hashee::write_safetensors(dir.path / "h.safetensors", bad), hashee::usage_error, "U02");
    const std::vector<hashee::safetensors_tensor> twice{{"w", {3}, three}, {"w", {3}, three}};
    CHECK_THROWS_ID_AS(hashee::write_safetensors(dir.path / "h.safetensors", twice), hashee::usage_error, "U02");
    CHECK_FALSE(fs::exists(dir.path / "h.safetensors"));
}

TEST_CASE("bytes() rejects a tensor_info from another file", "[safetensors]") {
    const auto f = safetensors_file::from_bytes(
        raw_file(one(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})"), 4), "small");
    hashee::tensor_info alien{"alien", dtype::f32, {100}, 0, 400};
    CHECK_THROWS_ID_AS(f.bytes(alien), hashee::usage_error, "U01");
    const auto msg = error_of<hashee::usage_error>([&] { (void)f.bytes(alien); });
    CHECK_THAT(msg, Contains("small") && Contains("alien"));
}

TEST_CASE("dtype names", "[safetensors]") {
    for (auto [t, name, size] : std::initializer_list<std::tuple<dtype, const char*, std::size_t>>{
             {dtype::f64, "F64", 8}, {dtype::f32, "F32", 4}, {dtype::f16, "F16", 2},
             {dtype::bf16, "BF16", 2}, {dtype::i64, "I64", 8}, {dtype::i32, "I32", 4},
             {dtype::i16, "I16", 2}, {dtype::i8, "I8", 1}, {dtype::u8, "U8", 1},
             {dtype::boolean, "BOOL", 1}, {dtype::u64, "U64", 8}, {dtype::u32, "U32", 4},
             {dtype::u16, "U16", 2}, {dtype::f8_e4m3, "F8_E4M3", 1}, {dtype::f8_e5m2, "F8_E5M2", 1}}) {
        CHECK(hashee::to_string(t) == name);
        CHECK(hashee::size_of(t) == size);
        CHECK(hashee::dtype_from_string(name) == t);
    }
    CHECK_FALSE(hashee::dtype_from_string("f32").has_value());
}

TEST_CASE("random byte mutations of a valid file parse or throw format_error", "[safetensors][fuzz]") {
    writer w;
    w.metadata = nlohmann::json{{"format", "pt"}};
    w.add("a", "F32", {2, 2}, std::vector<float>{1, 2, 3, 4})
        .add("b", "F16", {3}, std::vector<std::uint16_t>{0x3C00, 0x0001, 0x7C00})
        .add("c", "I64", {1}, std::vector<std::int64_t>{7});
    const auto good = w.build();
    std::uint64_t state = 0x9E3779B97F4A7C15ULL;  // fixed seed: reproducible
    auto next = [&] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    };
    int accepted = 0;
    for (int iter = 0; iter < 20000; ++iter) {
        auto bytes = good;
        const int edits = 1 + static_cast<int>(next() % 4);
        for (int e = 0; e < edits; ++e) {
            const auto pos = static_cast<std::size_t>(next() % bytes.size());
            switch (next() % 4) {
            case 0: bytes[pos] = static_cast<std::byte>(next() & 0xFF); break;
            case 1: bytes[pos] ^= static_cast<std::byte>(1u << (next() % 8)); break;
            case 2: bytes.resize(pos); break;
            default: bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<std::byte>(next() & 0xFF)); break;
            }
            if (bytes.empty()) break;
        }
        try {
            const auto f = safetensors_file::from_bytes(std::move(bytes), "fuzz");
            ++accepted;
            std::vector<float> st;
            for (const auto& t : f.tensors()) {
                (void)f.bytes(t);
                if (t.dtype == dtype::f32 || t.dtype == dtype::f16 || t.dtype == dtype::bf16)
                    (void)f.floats(t, st);
            }
        } catch (const hashee::format_error&) {
        }
    }
    // Mutations of the data buffer keep the file valid, so some must be accepted.
    CHECK(accepted > 0);
}
