// The C interface (bench/compare/hashee_compare.h), as another program uses it: hc_open gives
// the library's own fp32 embeddings, hc_open_precision bf16 and int8 ones within cosine 0.9999 and 0.98 of them;
// failures are a status and a message with its catalogue id, never an exception across C.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <hashee/hashee.hpp>

#include "../bench/compare/hashee_compare.h"
#include "test_support.hpp"

using namespace hashee;
using Catch::Matchers::Contains;

namespace {
struct closer {
    void operator()(hc_model* m) const { hc_close(m); }
};
using handle = std::unique_ptr<hc_model, closer>;
} // namespace

TEST_CASE("the C interface embeds as the library does, in fp32, bf16 and int8, and reports errors with their ids", "[c]") {
    const std::string dir = test::model_dir().string();
    char err[512] = {};
    const handle fp32(hc_open(dir.c_str(), nullptr, 2, err, sizeof err));
    REQUIRE(fp32);
    REQUIRE(hc_hidden_size(fp32.get()) == 384);

    // Three sequences packed back to back, one of a single token.
    const auto tok = wordpiece_tokenizer::from_directory(test::model_dir());
    std::vector<std::int32_t> ids, lengths;
    for (const char* text : {"a quiet, lovely film.", "the plot goes nowhere at all, slowly and loudly."}) {
        const auto e = tok.encode(text, std::nullopt, 0);
        ids.insert(ids.end(), e.ids.begin(), e.ids.end());
        lengths.push_back(static_cast<std::int32_t>(e.ids.size()));
    }
    ids.push_back(tok.cls_id());
    lengths.push_back(1);
    const int batch = static_cast<int>(lengths.size());
    std::vector<float> out(static_cast<std::size_t>(batch) * 384);
    double flops[2] = {};
    REQUIRE(hc_embed(fp32.get(), ids.data(), lengths.data(), batch, out.data(), flops, err, sizeof err) == 0);
    CHECK(flops[0] == flops[1]); // dense: every FLOP ran

    // The library's own forward on the same backend: the same bits.
    const eigen_cpu cpu(2);
    const auto m = model<eigen_cpu>::load(test::model_dir(), cpu);
    packed_batch b;
    for (std::size_t s = 0, at = 0; s < lengths.size(); at += static_cast<std::size_t>(lengths[s]), ++s) {
        const std::vector<std::int32_t> types(static_cast<std::size_t>(lengths[s]), 0);
        b.push_back(std::span(ids).subspan(at, static_cast<std::size_t>(lengths[s])), types);
    }
    CHECK(m.encoder().forward(cpu, b).mean_pooled(false) == out);

#if HASHEE_HAS_DNNL
    // Reduced precisions: each sentence's embedding within a cosine bound of fp32's.
    for (const auto& [precision, least] : {std::pair{"bf16", 0.9999}, std::pair{"int8", 0.98}}) {
        CAPTURE(precision);
        const handle reduced(hc_open_precision(dir.c_str(), nullptr, 2, precision, err, sizeof err));
        REQUIRE(reduced);
        char kernel[256];
        CHECK(hc_product_kernel(reduced.get(), kernel, sizeof kernel) > 0);
        CHECK_THAT(std::string(kernel), Contains("oneDNN"));
        std::vector<float> got(out.size());
        REQUIRE(hc_embed(reduced.get(), ids.data(), lengths.data(), batch, got.data(), nullptr, err, sizeof err) == 0);
        for (int s = 0; s < batch; ++s) {
            const auto at = static_cast<std::size_t>(s) * 384;
            const double c = cosine(std::span(out).subspan(at, 384), std::span(got).subspan(at, 384));
            CAPTURE(s, c);
            CHECK(c >= least);
            CHECK(c < 1.0);
        }
    }
#endif
    // Failures: null or a non-zero status, the message naming its id.
    CHECK(hc_open_precision(dir.c_str(), nullptr, 2, "fp8", err, sizeof err) == nullptr);
    CHECK_THAT(std::string(err), Contains("[E63]") && Contains("fp8"));
    CHECK(hc_open((dir + "/no-such").c_str(), nullptr, 2, err, sizeof err) == nullptr);
    CHECK_THAT(std::string(err), Contains("no-such"));
    const std::int32_t none[1] = {0};
    CHECK(hc_embed(fp32.get(), ids.data(), none, 1, out.data(), nullptr, err, sizeof err) != 0);
    CHECK_THAT(std::string(err), Contains("[E15]"));
}
