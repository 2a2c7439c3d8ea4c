// The encoder on the real model: results independent of batch companions, order and thread
// count; the padded-batch path equals the packed one; weights are used in place; and every
// bad input gets a typed error.

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

#include <hashee/hashee.hpp>

#include "backends.hpp"
#include "test_support.hpp"

using namespace hashee;
using Catch::Matchers::Contains;

namespace {

const model<eigen_cpu>& real_model() {
    static const eigen_cpu loader(1);
    static const model<eigen_cpu> m = model<eigen_cpu>::load(test::model_dir(), loader);
    return m;
}

const std::vector<std::string>& sentences() {
    static const std::vector<std::string> s{
        "a gripping, funny and moving film .",
        "The movie was far too long and the plot made no sense at all, which is a pity given the cast .",
        "ok",
        "It 's a lovely film with lovely performances by Buy and Accorsi .",
        "Unflinchingly bleak and desperate",
    };
    return s;
}

float max_abs_diff(const float* a, const float* b, index_t n) {
    float m = 0;
    for (index_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}

packed_batch batch_of(const std::vector<std::size_t>& which) {
    std::vector<text_input> texts;
    for (std::size_t i : which) texts.push_back({sentences()[i], std::nullopt});
    return real_model().tokenize(texts);
}

} // namespace

TEST_CASE("a sequence's outputs do not depend on its batch, its place in it, or the thread count", "[encoder]") {
    const auto& m = real_model();
    const eigen_cpu one(1);
    std::vector<encoder_output> alone;
    for (std::size_t i = 0; i < sentences().size(); ++i) alone.push_back(m.encoder().forward(one, batch_of({i})));
    const int threads = GENERATE(1, 2, 3);
    const eigen_cpu backend(threads);
    const std::vector<std::size_t> order{3, 0, 4, 1, 2};
    const auto together = m.encoder().forward(backend, batch_of(order));
    const index_t d = m.config().hidden_size;
    for (std::size_t k = 0; k < order.size(); ++k) {
        const auto& a = alone[order[k]];
        const auto rows = together.sequence(static_cast<index_t>(k));
        REQUIRE(rows.rows == a.tokens());
        CHECK(max_abs_diff(rows.data, a.hidden.data(), rows.rows * d) < 1e-5f);
        CHECK(max_abs_diff(together.pooled.data() + k * d, a.pooled.data(), d) < 1e-5f);
    }
}

TEST_CASE("a right-padded batch packs to the same outputs as its encodings", "[encoder]") {
    const auto& m = real_model();
    std::vector<text_input> inputs;
    for (const auto& s : sentences()) inputs.push_back({s, std::nullopt});
    inputs.push_back({sentences()[0], std::string_view(sentences()[1])});
    const auto padded = m.tokenizer().encode_batch(inputs);
    const auto packed = pack(padded);
    REQUIRE(packed.sequences() == static_cast<index_t>(inputs.size()));
    const eigen_cpu b(2);
    const auto out = m.encoder().forward(b, packed);
    const auto direct = m.forward(b, inputs);
    REQUIRE(out.hidden.size() == direct.hidden.size());
    CHECK(max_abs_diff(out.hidden.data(), direct.hidden.data(), static_cast<index_t>(out.hidden.size())) == 0.0f);
    // last_hidden_state restores the padding as zeros.
    const auto lhs = out.last_hidden_state(static_cast<index_t>(padded.seq_len));
    const index_t d = m.config().hidden_size;
    for (std::size_t s = 0; s < padded.batch; ++s)
        for (std::size_t p = 0; p < padded.seq_len; ++p) {
            const float* row = lhs.data() + (s * padded.seq_len + p) * d;
            if (padded.mask[s * padded.seq_len + p])
                CHECK(row[0] == out.sequence(static_cast<index_t>(s)).row(static_cast<index_t>(p))[0]);
            else
                CHECK(std::all_of(row, row + d, [](float x) { return x == 0.0f; }));
        }
}

TEST_CASE("F32 weights are used in place, straight from the mapped checkpoint", "[encoder]") {
    const auto& w = real_model().encoder().weights();
    const auto& c = real_model().config();
    const auto& f = w.file();
    const auto* word = f.find("embeddings.word_embeddings.weight");
    REQUIRE(word);
    CHECK(static_cast<const void*>(w.embeddings().word.data) == static_cast<const void*>(f.bytes(*word).data()));
    const auto* dense_bias = f.find("encoder.layer.0.attention.output.dense.bias");
    REQUIRE(dense_bias);
    CHECK(static_cast<const void*>(w.layers()[0].attention_output.bias.data) == static_cast<const void*>(f.bytes(*dense_bias).data()));
    // The one copy: each layer's query, key and value weights and biases, stacked for the fused product.
    const auto d = static_cast<std::size_t>(c.hidden_size);
    CHECK(w.owned_bytes() == static_cast<std::size_t>(c.num_hidden_layers) * 3 * (d * d + d) * sizeof(float));
    const auto* key_bias = f.find("encoder.layer.2.attention.self.key.bias");
    REQUIRE(key_bias);
    std::vector<float> converted;
    const std::span<const float> key = f.floats(*key_bias, converted);
    const auto& qkv = w.layers()[2].query_key_value.bias;
    REQUIRE(qkv.size == static_cast<index_t>(3 * d));
    CHECK(std::equal(key.begin(), key.end(), qkv.data + d));
    CHECK(w.layers()[2].key_value.bias.data == qkv.data + d);
    CHECK(w.layers().size() == 6);
    CHECK(w.prefix().empty());
    REQUIRE(w.pooler() != nullptr);
}

TEST_CASE("bad batches get a typed error that says what is wrong", "[encoder][errors]") {
    const auto& m = real_model();
    const eigen_cpu b(1);
    const auto forward = [&](const packed_batch& p) { return m.encoder().forward(b, p); };
    auto ok = batch_of({0});

    CHECK_THROWS_MATCHES(forward(packed_batch{}), input_error, Catch::Message("empty batch: no sequences to encode"));
    CHECK_THROWS_WITH(m.forward(b, std::span<const text_input>{}), Contains("empty batch"));

    packed_batch empty_seq = ok;
    empty_seq.push_back({}, {});
    CHECK_THROWS_WITH(forward(empty_seq), Contains("sequence 1 is empty"));

    packed_batch too_long;
    std::vector<std::int32_t> ids(513, 1000), types(513, 0);
    too_long.push_back(ids, types);
    CHECK_THROWS_WITH(forward(too_long), Contains("513 tokens") && Contains("at most 512"));

    for (std::int32_t bad : {-1, 30522, 1 << 30}) {
        packed_batch p = ok;
        p.ids[2] = bad;
        CHECK_THROWS_WITH(forward(p), Contains("token id " + std::to_string(bad)) && Contains("position 2"));
    }
    packed_batch bad_type = ok;
    bad_type.type_ids[1] = 2;
    CHECK_THROWS_WITH(forward(bad_type), Contains("token type id 2"));

    packed_batch p;
    const std::vector<std::int32_t> three{1, 2, 3}, two{0, 0};
    CHECK_THROWS_ID_AS(p.push_back(three, two), usage_error, "U05");

    encoded_batch holes;
    holes.batch = 1;
    holes.seq_len = 3;
    holes.ids = {101, 0, 102};
    holes.type_ids = {0, 0, 0};
    holes.mask = {1, 0, 1};
    holes.lengths = {2};
    CHECK_THROWS_WITH(pack(holes), Contains("not right-padded"));
}

TEST_CASE("dense cost follows the spec's formula", "[encoder][cost]") {
    const auto& c = real_model().config();
    // MiniLM-L6-H384 at 128 tokens: 6 x (4 n d^2 + 2 n d f + 2 n^2 d) MACs, about 2.9 GFLOPs.
    const std::vector<int> lengths{128};
    const macs m = dense_macs(c, std::span<const int>(lengths));
    const std::int64_t n = 128, d = 384, f = 1536;
    CHECK(m.query_output == 6 * 2 * n * d * d);
    CHECK(m.key_value == 6 * 2 * n * d * d);
    CHECK(m.feed_forward == 6 * 2 * n * d * f);
    CHECK(m.attention == 6 * 2 * n * n * d);
    CHECK(m.flops() == 2 * m.total());
    CHECK(std::abs(static_cast<double>(m.flops()) / 1e9 - 2.87) < 0.01);
}
