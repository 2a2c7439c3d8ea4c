// Precision as a backend option (backend/precision.hpp): bf16 and int8 products against fp32
// on the real model and the ELUE dev data, dense, under HashEE's exits (keep and drop) and
// under sentence-level exits; and the precisions a backend does not run (E63). bf16 and int8 run
// on eigen_cpu built with oneDNN (bf16 also on CUDA, test_backend's CUDA cases); the Thrust CPU
// systems run fp32.

#include <algorithm>
#include <cmath>

#include <catch2/catch.hpp>

#include <hashee/backend/with_backend.hpp>
#include <hashee/hashee.hpp>

#include "backends.hpp"
#include "test_support.hpp"

using namespace hashee;

#if HASHEE_HAS_DNNL && !defined(HASHEE_EIGEN_GEMM)
namespace {

/// The real model loaded once per precision, and the SST-2 and STS-B dev texts.
struct precision_fixture {
    eigen_cpu fp32{2}, bf16{2, gemm_precision::bf16}, int8{2, gemm_precision::int8};
    model<eigen_cpu> m32 = model<eigen_cpu>::load(test::model_dir(), fp32);
    model<eigen_cpu> m16 = model<eigen_cpu>::load(test::model_dir(), bf16);
    model<eigen_cpu> m8 = model<eigen_cpu>::load(test::model_dir(), int8);
    tsv_table sst = tsv_table::load(test::elue_dir() / "SST-2" / "dev.tsv"), sts = tsv_table::load(test::elue_dir() / "STS-B" / "dev.tsv");
    std::vector<text_input> sst2, stsb_a, stsb_b; // views of the tables' text
    std::vector<double> stsb_score;

    precision_fixture() {
        const std::size_t limit = test::under_sanitizer ? 48 : 100000;
        const std::size_t text = sst.column("sentence");
        for (std::size_t i = 0; i < std::min(sst.size(), limit); ++i) sst2.push_back({sst.row(i)[text], std::nullopt});
        const std::size_t a = sts.column("sentence1"), b = sts.column("sentence2"), score = sts.column("label");
        for (std::size_t i = 0; i < std::min(sts.size(), limit); ++i) {
            stsb_a.push_back({sts.row(i)[a], std::nullopt});
            stsb_b.push_back({sts.row(i)[b], std::nullopt});
            stsb_score.push_back(std::stod(std::string(sts.row(i)[score])));
        }
    }
    static const precision_fixture& get() {
        static const precision_fixture f;
        return f;
    }
    /// The backend and the model of a reduced precision.
    std::pair<const eigen_cpu&, const model<eigen_cpu>&> reduced(gemm_precision p) const {
        if (p == gemm_precision::int8) return {int8, m8};
        return {bf16, m16};
    }
};

/// What each reduced precision must keep: the mean and the least cosine of SST-2 dev
/// embeddings to fp32's (bf16: the 0.9999; int8: 0.995, above ONNX Runtime's
/// quantize_dynamic at 0.991), the STS-B dev Spearman (x100) gap, and the logits' gap under a
/// sentence-level exit.
struct precision_bounds {
    gemm_precision precision;
    double mean_cosine, least_cosine, spearman_gap;
    float logit_gap;
};
constexpr precision_bounds bounds[] = {{gemm_precision::bf16, 0.9999, 0.999, 0.2, 2e-2f},
                                       {gemm_precision::int8, 0.995, 0.97, 0.5, 2e-2f}};

/// Mean-pooled embeddings of every text, [texts, hidden], in batches of 32.
template <class Policy>
std::vector<float> embeddings(const model<eigen_cpu>& m, const eigen_cpu& b, const std::vector<text_input>& texts,
                              const Policy& policy) {
    const index_t d = m.config().hidden_size;
    std::vector<float> out(texts.size() * static_cast<std::size_t>(d));
    for (const input_batch& batch : m.batches(texts, {.max_sequences = 32})) {
        const std::vector<float> mean = m.encoder().forward(b, batch.tokens, policy).mean_pooled(false);
        for (std::size_t i = 0; i < batch.inputs.size(); ++i)
            std::copy_n(mean.begin() + static_cast<std::ptrdiff_t>(i * d), d, out.begin() + static_cast<std::ptrdiff_t>(batch.inputs[i] * d));
    }
    return out;
}

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
    float worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
    return worst;
}

/// The mean and the least cosine of row pairs.
std::pair<double, double> cosines(const std::vector<float>& a, const std::vector<float>& b, index_t d) {
    double sum = 0, least = 1;
    const std::size_t n = a.size() / static_cast<std::size_t>(d);
    for (std::size_t i = 0; i < n; ++i) {
        const double c = cosine(std::span(a).subspan(i * d, d), std::span(b).subspan(i * d, d));
        sum += c;
        least = std::min(least, c);
    }
    return {sum / static_cast<double>(n), least};
}

exit_table hashee_table(const precision_fixture& f, kv_semantics kv, const packed_batch& corpus) {
    return random_hash(f.m32.hash_setup_for(), 3, target_speedup{2.0, &corpus, &f.m32.config(), kv});
}

} // namespace

TEST_CASE("bf16 and int8 products keep SST-2 dev embeddings close to fp32's (cosine 0.9999 and 0.995), dense and "
          "under HashEE",
          "[precision]") {
    const auto& f = precision_fixture::get();
    const index_t d = f.m32.config().hidden_size;
    const precision_bounds bound = GENERATE(from_range(std::begin(bounds), std::end(bounds)));
    CAPTURE(precision_name(bound.precision));
    const auto [backend, reduced] = f.reduced(bound.precision);
    {
        const auto [mean, least] = cosines(embeddings(f.m32, f.fp32, f.sst2, no_exit{}), embeddings(reduced, backend, f.sst2, no_exit{}), d);
        CAPTURE(mean, least);
        CHECK(mean >= bound.mean_cosine);
        CHECK(least >= bound.least_cosine);
        CHECK(mean < 1.0 - 1e-9); // the reduced products really ran: they round
    }
    const packed_batch corpus = f.m32.tokenize(f.sst2);
    for (const kv_semantics kv : {kv_semantics::keep, kv_semantics::drop}) {
        CAPTURE(to_string(kv));
        const exit_table table = hashee_table(f, kv, corpus);
        with_hash_exit(table, kv, [&](const auto& policy) {
            const auto [mean, least] = cosines(embeddings(f.m32, f.fp32, f.sst2, policy), embeddings(reduced, backend, f.sst2, policy), d);
            CAPTURE(mean, least);
            CHECK(mean >= bound.mean_cosine);
            CHECK(least >= bound.least_cosine);
        });
    }
}

TEST_CASE("bf16 products keep STS-B dev Spearman within 0.2 (x100) of fp32, int8 ones within 0.5", "[precision]") {
    const auto& f = precision_fixture::get();
    const precision_bounds bound = GENERATE(from_range(std::begin(bounds), std::end(bounds)));
    CAPTURE(precision_name(bound.precision));
    const auto [backend, reduced] = f.reduced(bound.precision);
    const index_t d = f.m32.config().hidden_size;
    const auto spearman_x100 = [&](const model<eigen_cpu>& m, const eigen_cpu& b) {
        const auto ea = embeddings(m, b, f.stsb_a, no_exit{}), eb = embeddings(m, b, f.stsb_b, no_exit{});
        std::vector<double> sim;
        for (std::size_t i = 0; i < f.stsb_a.size(); ++i) sim.push_back(cosine(std::span(ea).subspan(i * d, d), std::span(eb).subspan(i * d, d)));
        return 100.0 * spearman(sim, f.stsb_score);
    };
    const double s32 = spearman_x100(f.m32, f.fp32), s_reduced = spearman_x100(reduced, backend);
    CAPTURE(s32, s_reduced);
    CHECK(std::abs(s_reduced - s32) <= bound.spearman_gap);
    if (!test::under_sanitizer) CHECK(s32 > 80.0); // all-MiniLM-L6-v2's own quality on STS-B dev
}

TEST_CASE("sentence-level exits run on bf16 and int8 products: the same exits and logits as fp32, within their rounding",
          "[precision]") {
    const auto& f = precision_fixture::get();
    const precision_bounds bound = GENERATE(from_range(std::begin(bounds), std::end(bounds)));
    CAPTURE(precision_name(bound.precision));
    const auto [backend, reduced] = f.reduced(bound.precision);
    const std::vector<text_input> texts(f.sst2.begin(), f.sst2.begin() + 32);
    const packed_batch b32 = f.m32.tokenize(texts);
    const classifier_heads heads(6, dense_params::copy_of(f.fp32, *f.m32.encoder().weights().pooler()), 2, false, 7, head_input::mean);
    const auto z32 = classify(f.m32.encoder(), f.fp32, b32, heads, static_exit{3});
    const auto z = classify(reduced.encoder(), backend, b32, heads, static_exit{3});
    CHECK(z.exit_layers == z32.exit_layers);
    CAPTURE(max_abs_diff(z.logits, z32.logits));
    CHECK(max_abs_diff(z.logits, z32.logits) <= bound.logit_gap);
    CHECK(max_abs_diff(z.logits, z32.logits) > 0.0f);
    CHECK(z.cost.actual.flops() == z32.cost.actual.flops());
}
#endif

TEST_CASE("precisions: names round-trip; one a backend does not run is E63", "[precision]") {
    for (const gemm_precision p : all_precisions) CHECK(parse_precision(precision_name(p)) == p);
    CHECK_THROWS_ID_AS(parse_precision("fp8"), input_error, "E63");
    CHECK_THROWS_ID_AS(parse_precision("FP32"), input_error, "E63");
    CHECK_THROWS_ID_AS(eigen_cpu(1, gemm_precision::fp16), input_error, "E63");
    CHECK(eigen_cpu(1).precision() == gemm_precision::fp32);
#if HASHEE_HAS_DNNL && !defined(HASHEE_EIGEN_GEMM)
    CHECK(eigen_cpu(1, gemm_precision::bf16).precision() == gemm_precision::bf16);
    CHECK(eigen_cpu(1, gemm_precision::int8).precision() == gemm_precision::int8);
#else
    CHECK_THROWS_ID_AS(eigen_cpu(1, gemm_precision::bf16), input_error, "E63");
    CHECK_THROWS_ID_AS(eigen_cpu(1, gemm_precision::int8), input_error, "E63");
#endif
    CHECK_THROWS_ID_AS(with_backend("eigen", 1, gemm_precision::fp16, [](const auto&) { return 0; }), input_error, "E63");
#if HASHEE_HAS_THRUST && !HASHEE_TEST_CUDA
    CHECK_THROWS_ID_AS(with_backend("thrust-omp", 1, gemm_precision::bf16, [](const auto&) { return 0; }), input_error, "E63");
    CHECK_THROWS_ID_AS(with_backend("thrust-cpp", 1, gemm_precision::int8, [](const auto&) { return 0; }), input_error, "E63");
#endif
}
