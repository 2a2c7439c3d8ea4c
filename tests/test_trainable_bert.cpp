// The whole trainable BERT classifier over every backend against PyTorch autograd
// (tests/data/training/tiny, scripts/make_training_goldens.py): a random 3-layer model of width
// 8, three sequences of lengths 1, 4 and 7 packed without padding, cross-entropy over 3 labels
// and mean squared error over 1. In double the loss, logits and the gradient of every parameter
// match to 1e-9 relative; in float to 1e-4. Two half-batches accumulated with their weights
// equal the whole batch, and permuting the sequences changes no gradient. PyTorch ran the batch
// padded to the longest sequence with an attention mask, so matching it is the invariant that
// the packed path (no_exit) equals a padded reference.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <hashee/train/trainable_bert.hpp>

#include "training_goldens.hpp"

using namespace hashee;
using hashee::test::all_backends;
using hashee::test::gradient;
using hashee::test::relative_gap;
using hashee::test::tiny_golden;

namespace {

template <class B, class T>
void check_against_golden(const std::string& sub, double tolerance) {
    const auto b = test::make_backend<B>(2);
    const tiny_golden g = tiny_golden::load(sub);
    auto m = trainable_bert<B, T>::load(g.weights, g.config, g.labels, b);
    REQUIRE(m.tensors().size() == g.grads.size());
    m.zero_grad();
    std::vector<double> logits;
    const double loss = m.forward_backward(g.batch, g.targets, &logits);
    CHECK(loss == Approx(g.loss).epsilon(tolerance));
    CHECK(relative_gap(logits, g.logits) < tolerance);
    for (const auto& t : m.tensors()) {
        CAPTURE(t.name);
        REQUIRE(g.grads.count(t.name) == 1);
        CHECK(relative_gap(gradient(b, t), g.grads.at(t.name)) < tolerance);
    }
}

} // namespace

TEMPLATE_LIST_TEST_CASE("trainable_bert: loss, logits and every gradient match PyTorch (cross-entropy and MSE)", "[training]",
                        all_backends) {
    const std::string sub = GENERATE(as<std::string>{}, "", "mse");
    CAPTURE(sub);
    check_against_golden<TestType, double>(sub, 1e-9);
    check_against_golden<TestType, float>(sub, 1e-4);
}

TEMPLATE_LIST_TEST_CASE("trainable_bert: two accumulated half-batches equal the batch; permuting sequences changes nothing",
                        "[training]", all_backends) {
    const auto b = test::make_backend<TestType>(2);
    const tiny_golden g = tiny_golden::load("");
    auto m = trainable_bert<TestType, double>::load(g.weights, g.config, g.labels, b);
    auto sub_batch = [&](std::vector<int> order) {
        packed_batch p;
        std::vector<double> targets;
        for (int s : order) {
            for (std::int32_t t = g.batch.offsets[static_cast<std::size_t>(s)]; t < g.batch.offsets[static_cast<std::size_t>(s) + 1]; ++t) {
                p.ids.push_back(g.batch.ids[static_cast<std::size_t>(t)]);
                p.type_ids.push_back(g.batch.type_ids[static_cast<std::size_t>(t)]);
                p.positions.push_back(g.batch.positions[static_cast<std::size_t>(t)]);
            }
            p.offsets.push_back(static_cast<std::int32_t>(p.ids.size()));
            targets.push_back(g.targets[static_cast<std::size_t>(s)]);
        }
        return std::pair{p, targets};
    };
    // Each half's mean loss weighted by its share of the batch (1/3 and 2/3 of the sequences),
    // accumulated without zeroing in between.
    m.zero_grad();
    const auto [first, t1] = sub_batch({1});
    const auto [second, t2] = sub_batch({2, 0});
    m.forward_backward(first, t1, nullptr, 1.0 / 3);
    m.forward_backward(second, t2, nullptr, 2.0 / 3);
    std::vector<std::vector<double>> accumulated;
    for (const auto& t : m.tensors()) accumulated.push_back(gradient(b, t));
    m.zero_grad();
    const auto [permuted, tp] = sub_batch({2, 0, 1});
    const double loss = m.forward_backward(permuted, tp);
    CHECK(loss == Approx(g.loss).epsilon(1e-12));
    for (std::size_t i = 0; i < m.tensors().size(); ++i) {
        CAPTURE(m.tensors()[i].name);
        CHECK(relative_gap(gradient(b, m.tensors()[i]), accumulated[i]) < 1e-12);
        CHECK(relative_gap(gradient(b, m.tensors()[i]), g.grads.at(m.tensors()[i].name)) < 1e-9);
    }
    // Bad targets are an input error, before anything runs: a class outside the labels, not a
    // class index, not finite, or a count that is not the batch's.
    CHECK_THROWS_ID_AS(m.forward_backward(first, std::vector<double>{3.0}), input_error, "E28");
    CHECK_THROWS_ID_AS(m.forward_backward(first, std::vector<double>{0.5}), input_error, "E28");
    CHECK_THROWS_ID_AS(m.forward_backward(first, std::vector<double>{std::nan("")}), input_error, "E28");
    CHECK_THROWS_ID_AS(m.forward_backward(first, std::vector<double>{0.0, 1.0}), input_error, "E28");
    packed_batch bad = first;
    bad.ids[0] = g.config.vocab_size;
    CHECK_THROWS_ID_AS(m.forward_backward(bad, t1), input_error, "E14");
    CHECK_THROWS_ID_AS((trainable_bert<TestType, double>::load(g.weights, g.config, 0, b)), usage_error, "U46");
}
