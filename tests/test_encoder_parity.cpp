// Parity with Hugging Face transformers on the real all-MiniLM-L6-v2: last hidden states,
// pooler and mean-pooled outputs of 66 inputs (single texts and pairs, 1 to 256 tokens) run
// together in mixed batches, within 1e-4 absolute, on every backend. Goldens:
// scripts/make_encoder_goldens.py.

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <hashee/core/detail/random.hpp>
#include <hashee/hashee.hpp>

#include "backends.hpp"
#include "test_support.hpp"

namespace {

using namespace hashee;

constexpr float tolerance = 1e-4f;

struct golden_input {
    std::string text;
    std::optional<std::string> pair;
    bool raw_ids = false;
    std::vector<std::int32_t> ids, type_ids;
    std::size_t offset = 0; // in floats, into outputs.f32
};

struct goldens {
    std::vector<golden_input> inputs;
    std::vector<float> values;
    index_t hidden = 0;

    static const goldens& get() {
        static const goldens g = load();
        return g;
    }
    static goldens load() {
        goldens g;
        const auto dir = test::data_dir() / "encoder";
        std::ifstream mf(dir / "manifest.json");
        REQUIRE(mf);
        const auto j = nlohmann::json::parse(mf);
        g.hidden = j.at("hidden_size").get<index_t>();
        for (const auto& e : j.at("inputs")) {
            golden_input in;
            in.raw_ids = e.contains("ids");
            if (!in.raw_ids) in.text = e.at("text").get<std::string>();
            if (e.contains("pair")) in.pair = e.at("pair").get<std::string>();
            in.ids = e.at("input_ids").get<std::vector<std::int32_t>>();
            in.type_ids = e.at("token_type_ids").get<std::vector<std::int32_t>>();
            in.offset = e.at("offset").get<std::size_t>();
            g.inputs.push_back(std::move(in));
        }
        std::ifstream bf(dir / "outputs.f32", std::ios::binary | std::ios::ate);
        REQUIRE(bf);
        g.values.resize(static_cast<std::size_t>(bf.tellg()) / sizeof(float));
        bf.seekg(0);
        bf.read(reinterpret_cast<char*>(g.values.data()), static_cast<std::streamsize>(g.values.size() * sizeof(float)));
        return g;
    }
    // Per input: hidden[len*h], pooler[h], mean[h], mean_normalized[h].
    const float* hidden_of(const golden_input& in) const { return values.data() + in.offset; }
    const float* pooler_of(const golden_input& in) const { return hidden_of(in) + in.ids.size() * hidden; }
    const float* mean_of(const golden_input& in) const { return pooler_of(in) + hidden; }
    const float* normalized_of(const golden_input& in) const { return mean_of(in) + hidden; }
};

float max_abs_diff(const float* a, const float* b, std::size_t n) {
    float m = 0;
    for (std::size_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}

const model<eigen_cpu>& real_model() { return test::real_model<eigen_cpu>::get().m; }

/// Runs the goldens' inputs in the given order, split into batches of the given sizes, and
/// checks every output of every input.
template <class B>
void check_batches(const B& backend, const std::vector<std::size_t>& order, const std::vector<std::size_t>& sizes) {
    const goldens& g = goldens::get();
    const auto& m = test::real_model<B>::get().m;
    std::size_t next = 0;
    for (std::size_t bs : sizes) {
        packed_batch batch;
        std::vector<const golden_input*> members;
        for (std::size_t i = 0; i < bs && next < order.size(); ++i, ++next) {
            const golden_input& in = g.inputs[order[next]];
            batch.push_back(in.ids, in.type_ids);
            members.push_back(&in);
        }
        const encoder_output out = m.encoder().forward(backend, batch);
        const auto mean = out.mean_pooled(false), normalized = out.mean_pooled(true);
        for (std::size_t s = 0; s < members.size(); ++s) {
            const golden_input& in = *members[s];
            INFO("input with " << in.ids.size() << " tokens: " << in.text.substr(0, 80));
            const auto rows = out.sequence(static_cast<index_t>(s));
            REQUIRE(rows.rows == static_cast<index_t>(in.ids.size()));
            CHECK(max_abs_diff(rows.data, g.hidden_of(in), in.ids.size() * g.hidden) <= tolerance);
            CHECK(max_abs_diff(out.pooled.data() + s * g.hidden, g.pooler_of(in), g.hidden) <= tolerance);
            CHECK(max_abs_diff(mean.data() + s * g.hidden, g.mean_of(in), g.hidden) <= tolerance);
            CHECK(max_abs_diff(normalized.data() + s * g.hidden, g.normalized_of(in), g.hidden) <= tolerance);
        }
    }
    REQUIRE(next == order.size());
}

} // namespace

TEST_CASE("the C++ tokenizer gives the goldens' token ids", "[parity][encoder]") {
    const auto& tok = real_model().tokenizer();
    const goldens& g = goldens::get();
    REQUIRE(g.inputs.size() >= 64);
    for (const auto& in : g.inputs) {
        if (in.raw_ids) continue;
        const encoding e = tok.encode(in.text, in.pair ? std::optional<std::string_view>(*in.pair) : std::nullopt);
        INFO(in.text.substr(0, 80));
        CHECK(e.ids == in.ids);
        CHECK(e.type_ids == in.type_ids);
    }
}

TEMPLATE_LIST_TEST_CASE("encoder matches transformers on all-MiniLM-L6-v2 in mixed batches", "[parity][encoder]",
                        test::all_backends) {
    const goldens& g = goldens::get();
    std::vector<std::size_t> order(g.inputs.size());
    std::iota(order.begin(), order.end(), 0);
    hashee::detail::random_source rng(7);
    rng.shuffle(order);
    const int threads = GENERATE(filter([](int t) { return !test::under_sanitizer || t == 2; }, values({1, 2})));
    const auto backend = test::make_backend<TestType>(threads);
    SECTION("one batch of everything") { check_batches(backend, order, {order.size()}); }
    SECTION("batches of 1, 3, 8, 17 and the rest") { check_batches(backend, order, {1, 3, 8, 17, order.size()}); }
}

TEST_CASE("model::embed tokenises, encodes and pools like sentence-transformers", "[parity][encoder]") {
    const goldens& g = goldens::get();
    const auto& m = real_model();
    REQUIRE(m.pooling().how == pooling_config::mode::mean);
    REQUIRE(m.pooling().normalize);
    std::vector<text_input> texts;
    std::vector<const golden_input*> members;
    for (const auto& in : g.inputs) {
        if (in.raw_ids) continue;
        texts.push_back({in.text, in.pair ? std::optional<std::string_view>(*in.pair) : std::nullopt});
        members.push_back(&in);
    }
    const eigen_cpu backend(2);
    const auto emb = m.embed(backend, texts);
    REQUIRE(emb.size() == texts.size() * static_cast<std::size_t>(g.hidden));
    for (std::size_t i = 0; i < members.size(); ++i)
        CHECK(max_abs_diff(emb.data() + i * g.hidden, g.normalized_of(*members[i]), g.hidden) <= tolerance);
}
