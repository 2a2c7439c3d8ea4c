// Sentence-level exits on the real model: each policy's rule; classify() over a batch equals
// an independent per-sample reference (every layer's [CLS] state or token mean observed from a full forward,
// heads and policy applied sample by sample) and equals classifying each sample alone; the
// cost counts exactly the layers and heads that ran.

#include <algorithm>
#include <cmath>
#include <set>

#include <catch2/catch.hpp>

#include <hashee/hashee.hpp>

#include "backends.hpp"
#include "test_support.hpp"

using namespace hashee;
using Catch::Matchers::Contains;

namespace {

std::vector<float> logits_of(float a, float b) { return {a, b}; }
exit_signal signal_at(int layer, const std::vector<float>& z) { return {layer, 6, z, {}}; }

/// Heads reading one kind of row, and thresholds at which their exits vary over the batch.
struct head_set {
    classifier_heads heads;
    double median_entropy = 0;               ///< of every head's entropy over the batch
    std::vector<float> median_first_feature; ///< per layer, of the rows' first feature
};

struct sentence_fixture {
    eigen_cpu cpu{2};
    model<eigen_cpu> m = model<eigen_cpu>::load(test::model_dir(), cpu);
    dense_params pooler = dense_params::copy_of(cpu, *m.encoder().weights().pooler());
    packed_batch batch;
    head_set cls_heads = unmeasured({6, pooler, 2, false, 7, head_input::cls});
    head_set mean_heads = unmeasured({6, pooler, 2, false, 7, head_input::mean});
    classifier_heads regression_heads{6, pooler, 1, true, 8, head_input::mean};

    sentence_fixture() {
        const auto dev = tsv_table::load(test::elue_dir() / "SST-2" / "dev.tsv");
        const std::size_t samples = test::under_sanitizer ? 16 : 48;
        std::vector<text_input> texts;
        for (std::size_t i = 0; i < samples; ++i) texts.push_back({dev.row(i * 7)[0], std::nullopt});
        batch = m.tokenize(texts);
        centre(regression_heads);
        for (head_set* hs : {&cls_heads, &mean_heads}) {
            centre(hs->heads);
            // The median entropy of every head over the batch: a threshold at which some
            // samples leave early and some do not. Likewise the rows' median first feature.
            // Both sit between two samples' values, never on one.
            const auto rows = reference_rows(no_exit{}, hs->heads.input());
            std::vector<double> h;
            for (int l = 1; l <= 6; ++l) {
                std::vector<float> first;
                for (index_t s = 0; s < batch.sequences(); ++s) first.push_back(rows[static_cast<std::size_t>(l - 1)][static_cast<std::size_t>(s * 384)]);
                hs->median_first_feature.push_back(static_cast<float>(between_samples(first)));
                const auto z = head_logits(hs->heads, l, rows[static_cast<std::size_t>(l - 1)]);
                for (index_t s = 0; s < batch.sequences(); ++s)
                    h.push_back(detail::softmax_entropy(std::span<const float>(z).subspan(static_cast<std::size_t>(2 * s), 2)));
            }
            hs->median_entropy = between_samples(h);
        }
    }
    /// A median-like threshold that no sample sits on: halfway between the two middle values
    /// (a threshold equal to one sample's own value would decide that sample by rounding).
    template <class T>
    static double between_samples(std::vector<T> v) {
        std::sort(v.begin(), v.end());
        return (static_cast<double>(v[v.size() / 2 - 1]) + static_cast<double>(v[v.size() / 2])) / 2.0;
    }
    static const sentence_fixture& get() {
        static const sentence_fixture f;
        return f;
    }
    static head_set unmeasured(classifier_heads h) {
        head_set s{std::move(h), 0, {}};
        return s;
    }
    const head_set& reading(head_input input) const { return input == head_input::cls ? cls_heads : mean_heads; }

    /// Random heads put every sample in the same class; centring each head's logits over the
    /// batch (bias -= mean logit) makes predictions, entropies and agreement vary by sample.
    void centre(classifier_heads& hs) const {
        const auto rows = reference_rows(no_exit{}, hs.input());
        for (int l = 1; l <= 6; ++l) {
            const auto z = head_logits(hs, l, rows[static_cast<std::size_t>(l - 1)]);
            const index_t C = hs.outputs();
            for (index_t c = 0; c < C; ++c) {
                double mean = 0;
                for (index_t s = 0; s < batch.sequences(); ++s) mean += z[static_cast<std::size_t>(s * C + c)];
                hs.classifier(l).bias[static_cast<std::size_t>(c)] -= static_cast<float>(mean / static_cast<double>(batch.sequences()));
            }
        }
    }

    /// [layer][sequence * hidden]: every sequence's [CLS] state, or the mean of its token
    /// states, after each layer, observed from a full forward.
    template <token_exit_policy P>
    std::vector<std::vector<float>> reference_rows(const P& policy, head_input input) const {
        std::vector<std::vector<float>> rows;
        m.encoder().observe(cpu, batch, policy, [&](int, const_matrix_view<float> h, std::span<const std::int32_t> offsets) {
            std::vector<float> layer;
            for (std::size_t s = 0; s + 1 < offsets.size(); ++s) {
                std::vector<double> sum(static_cast<std::size_t>(h.cols));
                const std::int32_t last = input == head_input::cls ? offsets[s] + 1 : offsets[s + 1];
                for (std::int32_t r = offsets[s]; r < last; ++r)
                    for (index_t j = 0; j < h.cols; ++j) sum[static_cast<std::size_t>(j)] += h.row(r)[j];
                for (double v : sum) layer.push_back(static_cast<float>(v / (last - offsets[s])));
            }
            rows.push_back(std::move(layer));
        });
        return rows;
    }
    static std::vector<float> head_logits(const classifier_heads& hs, int layer, const std::vector<float>& rows) {
        const index_t s = static_cast<index_t>(rows.size()) / hs.hidden_size();
        std::vector<std::int32_t> offsets(static_cast<std::size_t>(s + 1));
        for (index_t i = 0; i <= s; ++i) offsets[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
        std::vector<float> z(static_cast<std::size_t>(s * hs.outputs()));
        hs.logits(layer, {rows.data(), s, hs.hidden_size()}, offsets, {z.data(), s, hs.outputs()});
        return z;
    }
};

/// A stand-in for a trained exit predictor: confident when the sentence state's first feature
/// is above its median over the batch at that layer.
struct first_feature_predictor {
    std::vector<float> median;
    double confidence(int layer, std::span<const float> state) const {
        return 1.0 / (1.0 + std::exp(-10.0 * (state[0] - median[static_cast<std::size_t>(layer - 1)])));
    }
};

// One factory per policy; thresholds come from the heads' set so that exits really vary.
struct no_exit_case {
    static no_exit make(const sentence_fixture&, const head_set&) { return {}; }
};
struct static_case {
    static static_exit make(const sentence_fixture&, const head_set&) { return {3}; }
};
struct entropy_case {
    static entropy_exit make(const sentence_fixture&, const head_set& h) { return {h.median_entropy}; }
};
struct fastbert_case {
    static fastbert_exit make(const sentence_fixture&, const head_set& h) { return {h.median_entropy / std::log(2.0)}; }
};
struct patience_case {
    static patience_exit make(const sentence_fixture&, const head_set&) { return {2}; }
};
struct learned_case {
    static learned_exit<first_feature_predictor> make(const sentence_fixture&, const head_set& h) {
        return {std::make_shared<const first_feature_predictor>(first_feature_predictor{h.median_first_feature}), 0.5};
    }
};
struct composed_case {
    static auto make(const sentence_fixture& f, const head_set& h) {
        const hash_setup setup = f.m.hash_setup_for();
        return composed_exit<hash_exit<>, entropy_exit>{hash_exit<>(random_hash(setup, 42, equal_type_buckets{})),
                                                                  entropy_exit{h.median_entropy}};
    }
};

/// A sentence-level policy whose depth is 0 (a broken contract).
struct no_depth {
    struct sample_state {};
    static constexpr bool reads_every_layer = false;
    int depth(int) const { return 0; }
    bool should_exit(sample_state&, const exit_signal&) const { return false; }
};
/// A token-level policy that gives every token exit layer 0 (a broken contract).
struct exit_at_zero {
    static constexpr kv_semantics kv = kv_semantics::keep;
    void exit_layers(const packed_batch&, std::span<std::uint8_t> exits) const { std::fill(exits.begin(), exits.end(), 0); }
};
/// The odd tokens leave after layer 1, the others run on.
struct odd_tokens_exit_first {
    static constexpr kv_semantics kv = kv_semantics::keep;
    void exit_layers(const packed_batch&, std::span<std::uint8_t> exits) const {
        for (std::size_t t = 0; t < exits.size(); ++t) exits[t] = t % 2 ? 1 : 6;
    }
};
/// eigen_cpu whose stream compaction lists one row too few (a broken backend).
struct lying_cpu : eigen_cpu {
    using eigen_cpu::eigen_cpu;
    index_t select_rows(vector_view<const std::int32_t> exit_layers, int layer, vector_view<std::int32_t> rows) const {
        return eigen_cpu::select_rows(exit_layers, layer, rows) - 1;
    }
};

template <class P>
const auto& token_policy_of(const P& p) {
    if constexpr (sentence_exit_policy<P>) {
        static const no_exit none;
        return none;
    } else {
        return p.token;
    }
}
template <class P>
auto sentence_policy_of(const P& p) {
    if constexpr (sentence_exit_policy<P>) return p;
    else return p.sentence;
}

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
    REQUIRE(a.size() == b.size());
    float m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}

} // namespace

TEST_CASE("entropy, FastBERT, patience and static exits follow their rules", "[exit]") {
    // H(softmax(0, 0)) = log 2; H(softmax(10, 0)) ~ 0.0005.
    entropy_exit::sample_state none;
    CHECK(detail::softmax_entropy(logits_of(0, 0)) == Approx(std::log(2.0)));
    CHECK(entropy_exit{0.01}.should_exit(none, signal_at(1, logits_of(10, 0))));
    CHECK_FALSE(entropy_exit{0.01}.should_exit(none, signal_at(1, logits_of(0.5, 0))));
    fastbert_exit::sample_state fb;
    CHECK(fastbert_exit{0.999}.should_exit(fb, signal_at(1, logits_of(0.5, 0))));      // u < 1
    CHECK_FALSE(fastbert_exit{0.5}.should_exit(fb, signal_at(1, logits_of(0.01, 0)))); // u ~ 1
    CHECK_THROWS_ID_AS(entropy_exit{0.1}.should_exit(none, signal_at(1, {0.3f})), input_error, "E26");
    CHECK_THROWS_ID_AS(fastbert_exit{0.1}.should_exit(fb, signal_at(1, {0.3f})), input_error, "E26");

    // Patience 2: the argmax sequence 0, 1, 1, 1 agrees twice in a row only at the 4th layer.
    const patience_exit p{2};
    patience_exit::sample_state st;
    CHECK_FALSE(p.should_exit(st, signal_at(1, logits_of(1, 0))));
    CHECK_FALSE(p.should_exit(st, signal_at(2, logits_of(0, 1))));
    CHECK_FALSE(p.should_exit(st, signal_at(3, logits_of(0, 1))));
    CHECK(p.should_exit(st, signal_at(4, logits_of(0, 2))));
    // Regression: |y_l - y_(l-1)| < tau.
    const patience_exit r{1, 0.1};
    patience_exit::sample_state rs;
    CHECK_FALSE(r.should_exit(rs, signal_at(1, {2.0f})));
    CHECK_FALSE(r.should_exit(rs, signal_at(2, {2.5f})));
    CHECK(r.should_exit(rs, signal_at(3, {2.45f})));

    CHECK(static_exit{4}.depth(6) == 4);
    CHECK(static_exit{9}.depth(6) == 6);
    CHECK_THROWS_ID_AS(static_exit{0}.depth(6), usage_error, "U38");
    CHECK_THROWS_ID_AS(patience_exit{0}.depth(6), usage_error, "U38");
    CHECK_THROWS_ID_AS(learned_exit<first_feature_predictor>{}.depth(6), usage_error, "U38");
    CHECK(no_exit{}.depth(6) == 6);
}

TEMPLATE_TEST_CASE("batched sentence exits equal the per-sample reference and each sample alone", "[exit]", no_exit_case,
                   static_case, entropy_case, fastbert_case, patience_case, learned_case, composed_case) {
    const auto& f = sentence_fixture::get();
    const head_input input = GENERATE(head_input::cls, head_input::mean);
    CAPTURE(to_string(input));
    const head_set& set = f.reading(input);
    const classifier_heads& heads = set.heads;
    const auto policy = TestType::make(f, set);
    const auto& token = token_policy_of(policy);
    const auto sentence = sentence_policy_of(policy);
    using S = std::remove_cvref_t<decltype(sentence)>;
    const int L = 6, depth = sentence.depth(L);

    const classifier_output out = classify(f.m.encoder(), f.cpu, f.batch, heads, policy);
    REQUIRE(out.sequences() == f.batch.sequences());
    REQUIRE(out.outputs == 2);

    // Reference: the rows of a full forward (a sample's states do not depend on the others),
    // heads and policy applied one sample at a time.
    const auto rows = f.reference_rows(token, input);
    std::vector<std::vector<float>> z;
    for (int l = 1; l <= L; ++l) z.push_back(sentence_fixture::head_logits(heads, l, rows[static_cast<std::size_t>(l - 1)]));
    std::set<int> layers_used;
    for (index_t s = 0; s < f.batch.sequences(); ++s) {
        typename S::sample_state st;
        int exit = depth;
        for (int l = 1; l < depth; ++l) {
            if (!S::reads_every_layer) break;
            const std::span<const float> zl = std::span<const float>(z[static_cast<std::size_t>(l - 1)]).subspan(static_cast<std::size_t>(2 * s), 2);
            const std::span<const float> c = std::span<const float>(rows[static_cast<std::size_t>(l - 1)]).subspan(static_cast<std::size_t>(384 * s), 384);
            if (sentence.should_exit(st, exit_signal{l, L, zl, c})) {
                exit = l;
                break;
            }
        }
        CAPTURE(s);
        CHECK(out.exit_layers[static_cast<std::size_t>(s)] == exit);
        CHECK(max_abs_diff(out.logits_of(s), std::span<const float>(z[static_cast<std::size_t>(exit - 1)]).subspan(static_cast<std::size_t>(2 * s), 2)) <= 1e-4f);
        layers_used.insert(exit);
    }
    if constexpr (S::reads_every_layer) CHECK(layers_used.size() >= 2); // exits really vary

    // Each sample alone gives the same exit and logits.
    for (index_t s = 0; s < f.batch.sequences(); s += 5) {
        packed_batch one;
        const auto first = static_cast<std::size_t>(f.batch.offsets[s]), n = static_cast<std::size_t>(f.batch.length(s));
        one.push_back(std::span(f.batch.ids).subspan(first, n), std::span(f.batch.type_ids).subspan(first, n));
        const auto alone = classify(f.m.encoder(), f.cpu, one, heads, policy);
        CAPTURE(s);
        CHECK(alone.exit_layers[0] == out.exit_layers[static_cast<std::size_t>(s)]);
        CHECK(max_abs_diff(alone.logits_of(0), out.logits_of(s)) <= 1e-4f);
    }

    // The cost: per sample, the layers it ran and the heads it read.
    std::int64_t expect_heads = 0, layers_run = 0;
    for (index_t s = 0; s < f.batch.sequences(); ++s) {
        const int e = out.exit_layers[static_cast<std::size_t>(s)];
        expect_heads += S::reads_every_layer ? e * heads.macs(1, 0) : heads.macs(e, 0);
        layers_run += e;
    }
    CHECK(out.cost.actual.heads == expect_heads);
    std::int64_t rows_run = 0;
    for (const auto& l : out.cost.layers) rows_run += l.all_rows;
    std::int64_t expect_rows = 0;
    for (index_t s = 0; s < f.batch.sequences(); ++s) expect_rows += f.batch.length(s) * out.exit_layers[static_cast<std::size_t>(s)];
    CHECK(rows_run == expect_rows);
    CHECK(out.cost.dense.heads == f.batch.sequences() * heads.macs(L, 0));
    if (layers_run < f.batch.sequences() * L) CHECK(out.cost.flops_speedup() > 1.0);
}

TEST_CASE("static-k and no-exit classification equal the dense forward's heads", "[exit]") {
    const auto& f = sentence_fixture::get();
    const classifier_heads& heads = f.mean_heads.heads;
    const auto rows = f.reference_rows(no_exit{}, head_input::mean);
    for (int k : {1, 3, 6}) {
        const auto out = classify(f.m.encoder(), f.cpu, f.batch, heads, static_exit{k});
        CHECK(max_abs_diff(out.logits, sentence_fixture::head_logits(heads, k, rows[static_cast<std::size_t>(k - 1)])) <= 1e-4f);
        CHECK(out.cost.layers.size() == static_cast<std::size_t>(k));
        CHECK(out.cost.flops_speedup() == Approx(static_cast<double>(out.cost.dense.total()) / out.cost.actual.total()));
    }
    const auto dense = classify(f.m.encoder(), f.cpu, f.batch, heads, no_exit{});
    CHECK(dense.cost.flops_speedup() == 1.0);
}

TEST_CASE("regression heads exit with patience and tau", "[exit]") {
    const auto& f = sentence_fixture::get();
    const auto out = classify(f.m.encoder(), f.cpu, f.batch, f.regression_heads, patience_exit{1, 0.05});
    REQUIRE(out.outputs == 1);
    const auto rows = f.reference_rows(no_exit{}, head_input::mean);
    for (index_t s = 0; s < f.batch.sequences(); ++s) {
        const int e = out.exit_layers[static_cast<std::size_t>(s)];
        CHECK(out.value(s) == Approx(sentence_fixture::head_logits(f.regression_heads, e, rows[static_cast<std::size_t>(e - 1)])[static_cast<std::size_t>(s)]).margin(1e-4));
    }
}

TEST_CASE("classify rejects heads for another depth and bad batches", "[exit][errors]") {
    const auto& f = sentence_fixture::get();
    const classifier_heads four(4, f.pooler, 2, false, 1);
    CHECK_THROWS_ID_AS(classify(f.m.encoder(), f.cpu, f.batch, four, entropy_exit{0.1}), input_error, "E25");
    // The batch is checked by the encoder (its id is packed_batch's).
    CHECK_THROWS_AS(classify(f.m.encoder(), f.cpu, packed_batch{}, f.cls_heads.heads, entropy_exit{0.1}), input_error);
    CHECK_THROWS_WITH(classify(f.m.encoder(), f.cpu, packed_batch{}, f.cls_heads.heads, entropy_exit{0.1}), Contains("empty batch"));
    CHECK_THROWS_ID_AS(classify(f.m.encoder(), f.cpu, f.batch, f.regression_heads, entropy_exit{0.1}), input_error, "E26");
    CHECK_THROWS_ID_AS(classify(f.m.encoder(), f.cpu, f.batch, f.cls_heads.heads, no_depth{}), usage_error, "U30");
    CHECK_THROWS_ID_AS(f.m.encoder().forward(f.cpu, f.batch, exit_at_zero{}), usage_error, "U32");
}

TEST_CASE("a forward stepped by hand equals forward, and compacting keeps the samples that stay", "[exit][encoder]") {
    const auto& f = sentence_fixture::get();
    const auto& enc = f.m.encoder();
    const encoder_output whole = enc.forward(f.cpu, f.batch);

    auto state = enc.begin(f.cpu, f.batch);
    CHECK(state.layer() == 0);
    CHECK(state.num_layers() == 6);
    CHECK_THROWS_ID_AS(state.add_head_macs(1), usage_error, "U31");
    while (!state.done()) {
        state.step();
        CHECK(state.hidden().rows == f.batch.tokens());
        CHECK(state.cost().layers.size() == static_cast<std::size_t>(state.layer()));
    }
    CHECK_THROWS_ID_AS(state.step(), usage_error, "U31");
    CHECK_THROWS_ID_AS(state.compact(std::vector<bool>(3, true)), usage_error, "U31");
    CHECK_THROWS_ID_AS(state.compact(std::vector<bool>(static_cast<std::size_t>(f.batch.sequences()), true)), usage_error, "U31");
    const encoder_output stepped = std::move(state).finish();
    CHECK(stepped.hidden == whole.hidden);
    CHECK(stepped.pooled == whole.pooled);
    CHECK(stepped.exits == whole.exits);
    CHECK(stepped.cost.actual.total() == whole.cost.actual.total());
    CHECK(stepped.cost.dense.total() == whole.cost.dense.total());

    // After layer 3 the odd samples leave; the even ones run on, compacted, to the end.
    auto half = enc.begin(f.cpu, f.batch);
    for (int l = 1; l <= 3; ++l) half.step();
    std::vector<bool> leaving;
    for (index_t s = 0; s < f.batch.sequences(); ++s) leaving.push_back(s % 2 == 1);
    half.compact(leaving);
    packed_batch evens;
    for (index_t s = 0; s < f.batch.sequences(); s += 2) {
        const auto first = static_cast<std::size_t>(f.batch.offsets[s]), n = static_cast<std::size_t>(f.batch.length(s));
        evens.push_back(std::span(f.batch.ids).subspan(first, n), std::span(f.batch.type_ids).subspan(first, n));
    }
    CHECK(half.batch().offsets == evens.offsets);
    CHECK(half.batch().ids == evens.ids);
    CHECK(half.exits().size() == static_cast<std::size_t>(evens.tokens()));
    CHECK(half.hidden().rows == evens.tokens());
    while (!half.done()) half.step();
    CHECK(half.cost().layers[2].all_rows == f.batch.tokens());
    CHECK(half.cost().layers[3].all_rows == evens.tokens());
    CHECK(half.cost().dense.total() == whole.cost.dense.total()); // every sample begin() got
    const encoder_output rest = std::move(half).finish();
    REQUIRE(rest.offsets == evens.offsets);
    for (index_t s = 0, kept = 0; s < f.batch.sequences(); s += 2, ++kept) {
        const auto n = static_cast<std::size_t>(f.batch.length(s) * 384);
        const std::vector<float> got(rest.hidden.begin() + rest.offsets[kept] * 384, rest.hidden.begin() + rest.offsets[kept] * 384 + static_cast<std::ptrdiff_t>(n));
        const std::vector<float> want(whole.hidden.begin() + f.batch.offsets[s] * 384, whole.hidden.begin() + f.batch.offsets[s] * 384 + static_cast<std::ptrdiff_t>(n));
        CHECK(max_abs_diff(got, want) <= 1e-4f);
    }
}

TEST_CASE("a backend that lists other rows than the exits say is a usage error", "[exit][encoder][errors]") {
    const lying_cpu liar(1);
    const model<lying_cpu> m = model<lying_cpu>::load(test::model_dir(), liar);
    const auto& f = sentence_fixture::get();
    CHECK_THROWS_ID_AS(m.encoder().forward(liar, f.batch, odd_tokens_exit_first{}), usage_error, "U33");
}

TEST_CASE("heads reject misuse and heads files that do not fit, with their ids", "[exit][errors]") {
    const auto& f = sentence_fixture::get();
    // Misuse by code.
    const dense_params d = dense_params::zeros(2, 4);
    std::vector<float> x(6), y(4);
    CHECK_THROWS_ID_AS(d.apply({x.data(), 2, 3}, {y.data(), 2, 2}), usage_error, "U34");
    CHECK_THROWS_ID_AS(classifier_heads(0, f.pooler, 2, false, 1), usage_error, "U35");
    CHECK_THROWS_ID_AS(classifier_heads(2, f.pooler, 0, false, 1), usage_error, "U35");
    CHECK_THROWS_ID_AS(classifier_heads(2, dense_params::zeros(3, 4), 2, false, 1), usage_error, "U35");
    CHECK_THROWS_ID_AS(classifier_heads(2, f.pooler, 2, false, 1, head_input::all_tokens), input_error, "E31");
    CHECK_THROWS_ID_AS(fastbert_heads(2, 4, 3, 0, 5, 2), usage_error, "U35");
    CHECK_THROWS_ID_AS(fastbert_heads(0, 4, 3, 0, 4, 2), usage_error, "U35");
    CHECK_THROWS_ID_AS((void)f.cls_heads.heads.classifier(7), usage_error, "U36");
    const fastbert_heads fb(2, 4, 3, 0, 4, 2);
    CHECK_THROWS_ID_AS((void)fb.head(3), usage_error, "U36");
    std::vector<float> states(2 * 5), logits(3);
    const std::vector<std::int32_t> offsets{0, 2};
    CHECK_THROWS_ID_AS(fb.logits(1, {states.data(), 2, 5}, offsets, {logits.data(), 1, 3}), usage_error, "U37");
    CHECK_THROWS_ID_AS(fb.logits(1, {states.data(), 2, 4}, offsets, {logits.data(), 1, 2}), usage_error, "U37");
    const std::vector<std::int32_t> past_end{0, 3};
    CHECK_THROWS_ID_AS(fb.logits(1, {states.data(), 2, 4}, past_end, {logits.data(), 1, 3}), usage_error, "U37");

    // Heads files.
    const test::temp_dir dir;
    const fastbert_heads wide(1, 6, 3, 0, 8, 2);
    wide.save(dir.path / "fastbert.safetensors");
    CHECK(fastbert_heads::load(dir.path / "fastbert.safetensors").width() == 8);
    CHECK_THROWS_ID_AS(fastbert_heads::load(dir.path / "fastbert.safetensors", 3), weight_error, "E80");
    const std::vector<float> w(8 * 6), b(8);
    const std::span<const float> ws(w), bs(b);
    write_safetensors(dir.path / "partial.safetensors",
                      std::vector<safetensors_tensor>{{"fastbert.0.narrow.weight", {8, 6}, ws},
                                                      {"fastbert.0.narrow.bias", {8}, bs},
                                                      {"fastbert.0.classifier.weight", {3, 8}, ws.first(24)},
                                                      {"fastbert.0.classifier.bias", {3}, bs.first(3)}});
    CHECK_THROWS_ID_AS(fastbert_heads::load(dir.path / "partial.safetensors"), weight_error, "E27");
    CHECK_THROWS_ID_AS(classifier_heads::load(dir.path / "partial.safetensors"), weight_error, "E27");
    write_safetensors(dir.path / "no_bias.safetensors",
                      std::vector<safetensors_tensor>{{"fastbert.0.narrow.weight", {8, 6}, ws},
                                                      {"fastbert.0.classifier.weight", {3, 8}, ws.first(24)},
                                                      {"fastbert.0.classifier.bias", {3}, bs.first(3)}});
    CHECK_THROWS_ID_AS(fastbert_heads::load(dir.path / "no_bias.safetensors"), weight_error, "E27");
    CHECK_THROWS_WITH(fastbert_heads::load(dir.path / "no_bias.safetensors"),
                      Contains("no_bias.safetensors") && Contains("tensor 'fastbert.0.narrow.bias' not found"));
    const classifier_heads small(1, dense_params::zeros(4, 4), 2, false, 5);
    const auto tensors = [&](std::vector<float> pooler_weight) {
        return std::vector<safetensors_tensor>{{"bert.encoder.highway.0.pooler.dense.weight", {4, 4}, std::move(pooler_weight)},
                                               {"bert.encoder.highway.0.pooler.dense.bias", {4}, small.pooler(1).bias},
                                               {"bert.encoder.highway.0.classifier.weight", {2, 4}, small.classifier(1).weight},
                                               {"bert.encoder.highway.0.classifier.bias", {2}, small.classifier(1).bias}};
    };
    write_safetensors(dir.path / "odd.safetensors", tensors(small.pooler(1).weight), {{"hashee.head_input", "max"}});
    CHECK_THROWS_ID_AS(classifier_heads::load(dir.path / "odd.safetensors"), weight_error, "E32");
    std::vector<float> nan_pooler = small.pooler(1).weight;
    nan_pooler[5] = std::nanf("");
    write_safetensors(dir.path / "nan.safetensors", tensors(nan_pooler));
    CHECK_THROWS_ID_AS(classifier_heads::load(dir.path / "nan.safetensors"), weight_error, "E08");
}

TEST_CASE("layer features hold the rows the heads read, under a token policy too", "[exit][head_training]") {
    const auto& f = sentence_fixture::get();
    const hash_exit<> hashed(random_hash(f.m.hash_setup_for(), 42, equal_type_buckets{}));
    // The batch split in two: the features keep the samples in batch order.
    packed_batch first, second;
    for (index_t s = 0; s < f.batch.sequences(); ++s) {
        const auto at = static_cast<std::size_t>(f.batch.offsets[s]), n = static_cast<std::size_t>(f.batch.length(s));
        (s < 10 ? first : second).push_back(std::span(f.batch.ids).subspan(at, n), std::span(f.batch.type_ids).subspan(at, n));
    }
    const std::vector<packed_batch> batches{first, second};
    for (const head_input input : {head_input::cls, head_input::mean}) {
        CAPTURE(to_string(input));
        const layer_features plain = collect_layer_features(f.cpu, f.m.encoder(), batches, no_exit{}, input, true);
        const layer_features exiting = collect_layer_features(f.cpu, f.m.encoder(), batches, hashed, input);
        CHECK(plain.pooling == input);
        CHECK(plain.offsets == f.batch.offsets);
        CHECK(exiting.tokens.empty());
        const auto want_plain = f.reference_rows(no_exit{}, input), want_exiting = f.reference_rows(hashed, input);
        float changed = 0;
        for (int l = 1; l <= 6; ++l) {
            const auto got = [&](const layer_features& lf) {
                const auto v = lf.sentence_states(l);
                return std::vector<float>(v.data, v.data + v.rows * v.cols);
            };
            CHECK(max_abs_diff(got(plain), want_plain[static_cast<std::size_t>(l - 1)]) <= 1e-5f);
            CHECK(max_abs_diff(got(exiting), want_exiting[static_cast<std::size_t>(l - 1)]) <= 1e-5f);
            changed = std::max(changed, max_abs_diff(got(plain), got(exiting)));
            // The token states hold every token; row offsets[s] is sample s's [CLS] row.
            const auto tokens = plain.token_states(l);
            REQUIRE(tokens.rows == f.batch.tokens());
            if (input == head_input::cls)
                CHECK(max_abs_diff({tokens.row(f.batch.offsets[3]), 384}, {plain.sentence_states(l).row(3), 384}) == 0.0f);
        }
        CHECK(changed > 1e-3f); // the token policy changed the states the heads read
    }
    CHECK_THAT(hashee::test::error_of<usage_error>([&] {
                   (void)collect_layer_features(f.cpu, f.m.encoder(), batches, no_exit{}, head_input::all_tokens);
               }),
               Contains("one row per sample (cls or mean); ask for every token's state with with_tokens"));
}

TEMPLATE_LIST_TEST_CASE("sentence exits give the same exits and logits on every backend", "[exit][backend]", test::all_backends) {
    const auto& f = sentence_fixture::get();
    const auto& r = test::real_model<TestType>::get();
    const head_set& set = f.reading(head_input::mean);
    auto same = [&](const auto& policy) {
        const classifier_output want = classify(f.m.encoder(), f.cpu, f.batch, set.heads, policy);
        const classifier_output got = classify(r.m.encoder(), r.backend, f.batch, set.heads, policy);
        CHECK(got.exit_layers == want.exit_layers);
        CHECK(max_abs_diff(got.logits, want.logits) <= 1e-4f);
        CHECK(got.cost.actual.total() == want.cost.actual.total());
    };
    same(entropy_exit{set.median_entropy});
    same(patience_exit{2});
    same(composed_case::make(f, set));
    const classifier_output fastbert_like = classify(r.m.encoder(), r.backend, f.batch, f.cls_heads.heads, fastbert_exit{0.9});
    CHECK(fastbert_like.exit_layers == classify(f.m.encoder(), f.cpu, f.batch, f.cls_heads.heads, fastbert_exit{0.9}).exit_layers);
}
