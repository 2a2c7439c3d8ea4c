// The training step under token exits, over every backend, on the tiny random BERT of
// tests/data/training/tiny (3 layers, sequences of lengths 1, 4 and 7; [CLS] runs the full
// depth, the other tokens exit at layers 1, 2 or 3):
//  - its forward is the inference encoder's under the same exits (keep and drop), to 1e-5 in
//    float: training runs the model users run;
//  - every gradient, with dropout on (hidden and attention probabilities), matches central finite
//    differences in double (relative error of the sampled gradient below 1e-6), keep and drop,
//    for the classifier (cross-entropy) and the bi-encoder's cosine loss;
//  - under keep an exited token's frozen state is a key and value above its exit (its gradient
//    differs from drop's), and the exit layers are validated (U32).

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <hashee/core/detail/random.hpp>
#include <hashee/model/bert_weights.hpp>
#include <hashee/model/encoder.hpp>
#include <hashee/train/trainable_bert.hpp>

#include "training_goldens.hpp"

using namespace hashee;
using hashee::test::all_backends;
using hashee::test::gradient;
using hashee::test::tiny_golden;

namespace {

/// A token policy that gives the listed exit layers (the test's stand-in for a hash).
template <kv_semantics KV>
struct listed_exits {
    static constexpr kv_semantics kv = KV;
    std::vector<std::uint8_t> layers;
    void exit_layers(const packed_batch&, std::span<std::uint8_t> exits) const {
        for (std::size_t t = 0; t < exits.size(); ++t) exits[t] = layers.at(t);
    }
};

/// The tiny batch's exits: [CLS] (each sequence's first token) at the full depth, the others
/// at layers 1, 2, 3 in turn.
std::vector<std::uint8_t> tiny_exits(const packed_batch& batch) {
    std::vector<std::uint8_t> e(static_cast<std::size_t>(batch.tokens()));
    for (index_t s = 0; s < batch.sequences(); ++s)
        for (std::int32_t t = batch.offsets[s]; t < batch.offsets[s + 1]; ++t)
            e[static_cast<std::size_t>(t)] = t == batch.offsets[s] ? 3 : static_cast<std::uint8_t>(1 + t % 3);
    return e;
}

/// The batch's sequences in this order (pairs for the cosine loss: 2 p and 2 p + 1).
packed_batch reorder(const packed_batch& b, const std::vector<int>& order) {
    packed_batch p;
    for (const int s : order) {
        const auto first = b.ids.begin() + b.offsets[static_cast<std::size_t>(s)], last = b.ids.begin() + b.offsets[static_cast<std::size_t>(s) + 1];
        const std::vector<std::int32_t> ids(first, last), types(ids.size(), 0);
        p.push_back(ids, types);
    }
    return p;
}

/// ||analytic - central differences|| / ||central differences|| over up to `per_tensor` sampled
/// elements of every tensor (h = 1e-6), the loss evaluated by `loss`.
template <class B>
double fd_relative_error(const B& b, trainable_bert<B, double>& m, const std::function<double()>& loss, int per_tensor) {
    m.zero_grad();
    loss();
    std::vector<std::vector<double>> analytic;
    for (const auto& t : m.tensors()) analytic.push_back(gradient(b, t));
    hashee::detail::random_source rng(11);
    const double h = 1e-6;
    double num = 0, den = 0;
    for (std::size_t i = 0; i < m.tensors().size(); ++i) {
        auto& t = m.tensors()[i];
        std::vector<double> value = gradient(b, t, true);
        for (int k = 0; k < per_tensor && k < t.size(); ++k) {
            const auto e = static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(t.size())));
            const double keep = value[e];
            auto at = [&](double x) {
                value[e] = x;
                b.upload(std::span<const double>(value), t.value.data());
                return loss();
            };
            const double fd = (at(keep + h) - at(keep - h)) / (2 * h);
            at(keep);
            num += (analytic[i][e] - fd) * (analytic[i][e] - fd);
            den += fd * fd;
        }
    }
    return std::sqrt(num / den);
}

} // namespace

TEMPLATE_LIST_TEST_CASE("training under token exits: the forward is the inference encoder's (keep and drop)", "[training]",
                        all_backends) {
    const auto b = test::make_backend<TestType>(2);
    const tiny_golden g = tiny_golden::load("");
    const auto dir = test::data_dir() / "training" / "tiny" / "model";
    const auto file = std::make_shared<const safetensors_file>(safetensors_file::open(dir / "model.safetensors"));
    const bert_encoder<TestType> encoder(g.config, bert_weights<TestType>::load(file, g.config, b));
    auto m = trainable_bert<TestType, float>::load(g.weights, g.config, g.labels, b);
    std::vector<float> wc_storage, bc_storage;
    const auto wc = file->floats(file->expect("classifier.weight", {g.labels, g.config.hidden_size}), wc_storage);
    const auto bc = file->floats(file->expect("classifier.bias", {g.labels}), bc_storage);
    const std::vector<std::uint8_t> layers = tiny_exits(g.batch);
    auto check = [&](const auto& policy) {
        std::vector<double> logits;
        m.forward_backward(g.batch, g.targets, policy, {1.0, {}, &logits});
        const encoder_output out = encoder.forward(b, g.batch, policy);
        const index_t d = g.config.hidden_size;
        for (index_t s = 0; s < g.batch.sequences(); ++s)
            for (int c = 0; c < g.labels; ++c) {
                double z = bc[static_cast<std::size_t>(c)];
                for (index_t j = 0; j < d; ++j)
                    z += static_cast<double>(wc[static_cast<std::size_t>(c * d + j)]) * out.pooled[static_cast<std::size_t>(s * d + j)];
                CHECK(logits[static_cast<std::size_t>(s * g.labels + c)] == Approx(z).margin(1e-5));
            }
    };
    check(listed_exits<kv_semantics::keep>{layers});
    check(listed_exits<kv_semantics::drop>{layers});
    // Exiting changes the output (so the comparison above is not the dense one twice).
    std::vector<double> dense, exited;
    m.forward_backward(g.batch, g.targets, &dense);
    m.forward_backward(g.batch, g.targets, listed_exits<kv_semantics::keep>{layers}, {1.0, {}, &exited});
    CHECK(dense != exited);
}

TEMPLATE_LIST_TEST_CASE("training under token exits: every gradient matches finite differences, with dropout (keep and drop)",
                        "[training]", all_backends) {
    const auto b = test::make_backend<TestType>(2);
    const tiny_golden g = tiny_golden::load("");
    const std::vector<std::uint8_t> layers = tiny_exits(g.batch);
    const step_options with_dropout{1.0, {0.1, 0.1, 5, 9}, nullptr};
    const listed_exits<kv_semantics::keep> keep{layers};
    const listed_exits<kv_semantics::drop> drop{layers};

    auto classifier = trainable_bert<TestType, double>::load(g.weights, g.config, g.labels, b);
    // Dropout is on (the loss moves with it) and repeatable (the same draw, the same loss).
    const double with = classifier.forward_backward(g.batch, g.targets, keep, with_dropout);
    CHECK(with != classifier.forward_backward(g.batch, g.targets, keep));
    CHECK(with == classifier.forward_backward(g.batch, g.targets, keep, with_dropout));
    CHECK(fd_relative_error(b, classifier, [&] { return classifier.forward_backward(g.batch, g.targets, keep, with_dropout); }, 6) < 1e-6);
    CHECK(fd_relative_error(b, classifier, [&] { return classifier.forward_backward(g.batch, g.targets, drop, with_dropout); }, 6) < 1e-6);

    // The bi-encoder: pairs (sequence 1, 2) and (0, 2) of the tiny batch, cosine loss.
    const packed_batch pairs = reorder(g.batch, {1, 2, 0, 2});
    const std::vector<double> scores{0.2, 0.9};
    const std::vector<std::uint8_t> pair_layers = tiny_exits(pairs);
    auto encoder = trainable_bert<TestType, double>::load_encoder(g.weights, g.config, b);
    CHECK(encoder.tensors().size() == classifier.tensors().size() - 4); // no pooler, no classifier
    const listed_exits<kv_semantics::keep> pair_keep{pair_layers};
    const listed_exits<kv_semantics::drop> pair_drop{pair_layers};
    CHECK(fd_relative_error(b, encoder, [&] { return encoder.forward_backward_cosine(pairs, scores, pair_keep, with_dropout); }, 6) < 1e-6);
    CHECK(fd_relative_error(b, encoder, [&] { return encoder.forward_backward_cosine(pairs, scores, pair_drop, with_dropout); }, 6) < 1e-6);
    CHECK(fd_relative_error(b, encoder, [&] { return encoder.forward_backward_cosine(pairs, scores, no_exit{}, {}); }, 6) < 1e-6);

    // Keep: the layer-1 weights get gradient from the upper layers' keys and values of the
    // tokens that exited at layer 1; drop cuts that path, so the gradients differ.
    auto layer0_key = [&](const auto& policy) {
        classifier.zero_grad();
        classifier.forward_backward(g.batch, g.targets, policy);
        return gradient(b, classifier.tensors()[7]);
    };
    REQUIRE(classifier.tensors()[7].name == "bert.encoder.layer.0.attention.self.key.weight");
    CHECK(layer0_key(keep) != layer0_key(drop));

    // Validation before anything runs: an exit layer of 0, a dropout of 1, a model without a
    // classifier asked for logits, scores that do not pair up.
    std::vector<std::uint8_t> zero = layers;
    zero[2] = 0;
    CHECK_THROWS_ID_AS(classifier.forward_backward(g.batch, g.targets, listed_exits<kv_semantics::keep>{zero}), usage_error, "U32");
    CHECK_THROWS_ID_AS(classifier.forward_backward(g.batch, g.targets, keep, {1.0, {1.0, 0.0, 0, 0}, nullptr}), usage_error, "U45");
    CHECK_THROWS_ID_AS(encoder.forward_backward(g.batch, g.targets, keep), usage_error, "U49");
    CHECK_THROWS_ID_AS(encoder.forward_backward_cosine(g.batch, std::vector<double>{0.5}, keep), input_error, "E28");
    CHECK_THROWS_ID_AS(encoder.forward_backward_cosine(pairs, std::vector<double>{0.5}, pair_keep), input_error, "E28");
    CHECK_THROWS_ID_AS(encoder.forward_backward_cosine(pairs, std::vector<double>{0.5, std::nan("")}, pair_keep), input_error, "E28");
}
