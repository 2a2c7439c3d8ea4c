// Weight binding: Hugging Face names with and without "bert.", ElasticBERT's (one pooler per
// exit), F16/BF16 checkpoints (converted once, exactly), and the errors for missing,
// mis-shaped and mistyped tensors. Variants are rewritten from the real checkpoint.

#include <bit>
#include <cmath>
#include <functional>

#include <catch2/catch.hpp>

#include <hashee/hashee.hpp>

#include "safetensors_writer.hpp"
#include "test_support.hpp"

using namespace hashee;
using Catch::Matchers::Contains;

namespace {

const safetensors_file& real_file() {
    static const safetensors_file f = safetensors_file::open(test::model_dir() / "model.safetensors");
    return f;
}

const bert_config& real_config() {
    static const bert_config c = bert_config::load(test::model_dir() / "config.json");
    return c;
}

std::vector<float> floats_of(const tensor_info& t) {
    std::vector<float> storage;
    const auto s = real_file().floats(t, storage);
    return {s.begin(), s.end()};
}

std::uint16_t to_f16(float x) { return std::bit_cast<std::uint16_t>(static_cast<_Float16>(x)); }
std::uint16_t to_bf16(float x) { // round to nearest even (no NaNs in weights)
    const auto u = std::bit_cast<std::uint32_t>(x);
    return static_cast<std::uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

/// Rewrites the real checkpoint: rename(name) gives the new name (empty: drop the tensor);
/// encode(name, values) may change a tensor's dtype, values and shape.
struct rewrite {
    std::function<std::string(const std::string&)> rename = [](const std::string& n) { return n; };
    std::string dtype = "F32"; // F32, F16 or BF16 for float tensors
    std::function<void(const std::string&, std::vector<std::int64_t>&, std::vector<float>&)> edit;

    std::shared_ptr<const safetensors_file> build() const {
        test::writer w;
        for (const tensor_info& t : real_file().tensors()) {
            const std::string name = rename(t.name);
            if (name.empty()) continue;
            if (t.dtype != hashee::dtype::f32) {
                const auto b = real_file().bytes(t);
                w.items.push_back({name, std::string(to_string(t.dtype)), t.shape, {b.begin(), b.end()}});
                continue;
            }
            auto shape = t.shape;
            auto v = floats_of(t);
            if (edit) edit(t.name, shape, v);
            if (dtype == "F32") {
                w.add(name, "F32", shape, v);
            } else {
                std::vector<std::uint16_t> h(v.size());
                for (std::size_t i = 0; i < v.size(); ++i) h[i] = dtype == "F16" ? to_f16(v[i]) : to_bf16(v[i]);
                w.add(name, dtype, shape, h);
            }
        }
        return std::make_shared<const safetensors_file>(safetensors_file::from_bytes(w.build(), "rewritten.safetensors"));
    }
};

encoder_output run(std::shared_ptr<const safetensors_file> f) {
    const eigen_cpu b(2);
    const bert_encoder<eigen_cpu> enc(real_config(), bert_weights<eigen_cpu>::load(std::move(f), real_config(), b));
    packed_batch p;
    p.push_back(std::vector<std::int32_t>{101, 1037, 4937, 2003, 5777, 1012, 102}, std::vector<std::int32_t>(7, 0));
    p.push_back(std::vector<std::int32_t>{101, 7592, 102}, std::vector<std::int32_t>(3, 0));
    return enc.forward(b, p);
}

const encoder_output& reference() {
    static const encoder_output r = run(std::make_shared<const safetensors_file>(
        safetensors_file::open(test::model_dir() / "model.safetensors")));
    return r;
}

} // namespace

TEST_CASE("a 'bert.' prefix and task heads next to the encoder are handled", "[weights]") {
    rewrite r;
    r.rename = [](const std::string& n) { return "bert." + n; };
    auto f = r.build();
    const eigen_cpu b(1);
    const auto w = bert_weights<eigen_cpu>::load(f, real_config(), b);
    CHECK(w.prefix() == "bert.");
    const auto out = run(f);
    CHECK(out.hidden == reference().hidden);
    CHECK(out.pooled == reference().pooled);
}

TEST_CASE("ElasticBERT names: 'elasticbert.' prefix and one pooler per exit", "[weights]") {
    rewrite r;
    r.rename = [](const std::string& n) {
        if (n.starts_with("pooler.")) return std::string("elasticbert.encoder.pooler.5.") + n.substr(7);
        return "elasticbert." + n;
    };
    // Poolers 0..4 are copies of the last one under their own names.
    test::writer extra;
    auto base = r.build();
    for (const tensor_info& t : base->tensors()) {
        auto b = base->bytes(t);
        extra.items.push_back({t.name, std::string(to_string(t.dtype)), t.shape, {b.begin(), b.end()}});
        if (t.name.starts_with("elasticbert.encoder.pooler.5."))
            for (int l = 0; l < 5; ++l)
                extra.items.push_back({"elasticbert.encoder.pooler." + std::to_string(l) + "." + t.name.substr(29),
                                       std::string(to_string(t.dtype)), t.shape, {b.begin(), b.end()}});
    }
    auto f = std::make_shared<const safetensors_file>(safetensors_file::from_bytes(extra.build(), "elastic.safetensors"));
    const eigen_cpu b(1);
    const auto w = bert_weights<eigen_cpu>::load(f, real_config(), b);
    CHECK(w.prefix() == "elasticbert.");
    CHECK(w.poolers().size() == 6);
    const auto out = run(f);
    CHECK(out.hidden == reference().hidden);
    CHECK(out.pooled == reference().pooled);
}

TEST_CASE("F16 and BF16 checkpoints convert exactly: same outputs as F32 holding the same values", "[weights]") {
    const std::string dt = GENERATE("F16", "BF16");
    // The same rounded values, once as F32 and once in the reduced type.
    rewrite rounded;
    rounded.edit = [&](const std::string&, std::vector<std::int64_t>&, std::vector<float>& v) {
        for (float& x : v)
            x = dt == "F16" ? static_cast<float>(static_cast<_Float16>(x))
                            : std::bit_cast<float>(static_cast<std::uint32_t>(to_bf16(x)) << 16);
    };
    rewrite reduced;
    reduced.dtype = dt;
    auto f_reduced = reduced.build();
    const eigen_cpu b(1);
    CHECK(bert_weights<eigen_cpu>::load(f_reduced, real_config(), b).owned_bytes() > 0);
    const auto a = run(rounded.build()), c = run(f_reduced);
    CHECK(a.hidden == c.hidden);
    // And the rounding itself costs little.
    float worst = 0;
    for (std::size_t i = 0; i < c.hidden.size(); ++i) worst = std::max(worst, std::abs(c.hidden[i] - reference().hidden[i]));
    CHECK(worst < (dt == "F16" ? 0.05f : 0.3f));
}

TEST_CASE("missing, mis-shaped and mistyped tensors are weight_errors naming file and tensor", "[weights][errors]") {
    const eigen_cpu b(1);
    const auto load = [&](const rewrite& r) { return bert_weights<eigen_cpu>::load(r.build(), real_config(), b); };

    rewrite missing;
    missing.rename = [](const std::string& n) {
        return n == "encoder.layer.3.intermediate.dense.weight" ? std::string() : n;
    };
    CHECK_THROWS_ID_AS(load(missing), hashee::error, "E07");
    CHECK_THROWS_MATCHES(load(missing), weight_error,
                         Catch::Matchers::Predicate<weight_error>([](const weight_error& e) {
                             const std::string m = e.what();
                             return m.find("rewritten.safetensors") != std::string::npos &&
                                    m.find("encoder.layer.3.intermediate.dense.weight") != std::string::npos;
                         }));

    rewrite misshaped;
    misshaped.edit = [](const std::string& n, std::vector<std::int64_t>& shape, std::vector<float>& v) {
        if (n == "encoder.layer.0.attention.self.key.weight") {
            shape = {384, 383};
            v.resize(384 * 383);
        }
    };
    CHECK_THROWS_ID_AS(load(misshaped), hashee::error, "E06");
    CHECK_THROWS_WITH(load(misshaped), Contains("encoder.layer.0.attention.self.key.weight") && Contains("383"));

    rewrite no_embeddings;
    no_embeddings.rename = [](const std::string& n) { return n.starts_with("embeddings.word") ? std::string() : n; };
    CHECK_THROWS_ID_AS(load(no_embeddings), hashee::error, "E07");
    CHECK_THROWS_WITH(load(no_embeddings), Contains("no BERT embeddings found"));

    // An integer tensor where floats belong.
    test::writer w;
    for (const tensor_info& t : real_file().tensors()) {
        const auto bytes = real_file().bytes(t);
        const bool swap = t.name == "embeddings.LayerNorm.bias";
        w.items.push_back({t.name, swap ? "I32" : std::string(to_string(t.dtype)), t.shape, {bytes.begin(), bytes.end()}});
    }
    const auto typed = std::make_shared<const safetensors_file>(safetensors_file::from_bytes(w.build(), "typed.safetensors"));
    CHECK_THROWS_ID_AS(bert_weights<eigen_cpu>::load(typed, real_config(), b), hashee::error, "E05");
    CHECK_THROWS_WITH(bert_weights<eigen_cpu>::load(typed, real_config(), b),
                      Contains("typed.safetensors") && Contains("embeddings.LayerNorm.bias") && Contains("I32"));
}
