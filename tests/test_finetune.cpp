// The fine-tuning loop (train/finetune.hpp) over every backend on the tiny random BERT: a
// state saved mid-run and restored into a fresh model continues to the same weights bit for bit;
// the same seed gives the same run and another seed another one; micro-batches accumulate to the
// whole batch's gradient; a checkpoint written by save_pretrained loads back with the same logits;
// and the typed errors (E88, E89, E28, U51).

#include <cstdint>
#include <filesystem>
#include <string>
#include <typeinfo>
#include <vector>

#include <catch2/catch.hpp>

#include <hashee/train/checkpoint.hpp>
#include <hashee/train/finetune.hpp>

#include "training_goldens.hpp"

using namespace hashee;
using hashee::test::all_backends;
using hashee::test::gradient;
using hashee::test::tiny_golden;

namespace {

/// 10 examples from the tiny golden's sequences (lengths 1, 4, 7, and their prefixes), 3 classes.
training_set tiny_set(const tiny_golden& g) {
    training_set set;
    for (int k = 0; k < 10; ++k) {
        const index_t s = k % 3;
        const auto first = g.batch.ids.begin() + g.batch.offsets[static_cast<std::size_t>(s)];
        const index_t length = std::max<index_t>(1, g.batch.length(s) - k / 3);
        encoding e;
        e.ids.assign(first, first + length);
        e.type_ids.assign(static_cast<std::size_t>(length), 0);
        set.first.push_back(e);
        set.targets.push_back(static_cast<double>((k * 7) % 3));
    }
    return set;
}

template <class B>
std::vector<double> weights_of(const B& b, const trainable_bert<B, float>& m) {
    std::vector<double> all;
    for (const auto& t : m.tensors()) {
        const auto v = gradient(b, t, true);
        all.insert(all.end(), v.begin(), v.end());
    }
    return all;
}

finetune_options tiny_options() {
    finetune_options o;
    o.epochs = 3;
    o.batch_size = 4;
    o.learning_rate = 1e-3;
    o.seed = 7;
    return o;
}

} // namespace

TEMPLATE_LIST_TEST_CASE("finetuner: resumed runs, seeds, accumulation and the saved model", "[training]", all_backends) {
    const auto b = test::make_backend<TestType>(2);
    const tiny_golden g = tiny_golden::load("");
    const training_set data = tiny_set(g);
    auto fresh = [&] { return trainable_bert<TestType, float>::load(g.weights, g.config, g.labels, b); };
    auto run = [&](finetune_options o) {
        auto m = fresh();
        finetuner<TestType> t(m, data, o, b);
        while (!t.done()) t.step();
        return weights_of(b, m);
    };

    // 3 epochs of ceil(10 / 4) = 3 steps; the same seed repeats, another seed differs.
    const std::vector<double> whole = run(tiny_options());
    CHECK(whole == run(tiny_options()));
    finetune_options other = tiny_options();
    other.seed = 8;
    CHECK(whole != run(other));

    // Stopped after 4 steps (mid-epoch 2), saved, restored into a fresh model: the same weights.
    const auto dir = std::filesystem::temp_directory_path() / ("hashee_test_finetune_" + std::to_string(typeid(TestType).hash_code()));
    std::filesystem::remove_all(dir);
    {
        auto m = fresh();
        finetuner<TestType> t(m, data, tiny_options(), b);
        for (int k = 0; k < 4; ++k) t.step();
        t.save_state(dir, {{"note", "kept"}});
    }
    {
        auto m = fresh();
        finetuner<TestType> t(m, data, tiny_options(), b);
        CHECK(t.restore_state(dir)["note"] == "kept");
        CHECK(t.steps_done() == 4);
        CHECK(t.epoch() == 1);
        long steps = 0;
        while (!t.done()) {
            const finetune_progress p = t.step();
            CHECK(p.total_steps == 9);
            ++steps;
        }
        CHECK(steps == 5);
        CHECK(weights_of(b, m) == whole);
    }
    // Another run's options or data: E89.
    {
        auto m = fresh();
        finetuner<TestType> t(m, data, other, b);
        CHECK_THROWS_ID_AS(t.restore_state(dir), input_error, "E89");
        training_set fewer = data;
        fewer.first.pop_back();
        fewer.targets.pop_back();
        finetuner<TestType> t2(m, fewer, tiny_options(), b);
        CHECK_THROWS_ID_AS(t2.restore_state(dir), input_error, "E89");
    }
    std::filesystem::remove_all(dir);

    // Micro-batches of 1 accumulate to the gradient of the whole batch (dropout off: the masks
    // of pieces differ from the whole's), to float round-off; the step leaves it in the grads.
    finetune_options plain = tiny_options();
    plain.hidden_dropout = plain.attention_dropout = 0;
    finetune_options pieces = plain;
    pieces.micro_batch = 1;
    auto first_gradient = [&](const finetune_options& o) {
        auto m = fresh();
        finetuner<TestType> t(m, data, o, b);
        t.step();
        std::vector<double> all;
        for (const auto& x : m.tensors()) {
            const auto v = gradient(b, x);
            all.insert(all.end(), v.begin(), v.end());
        }
        return all;
    };
    CHECK(hashee::test::relative_gap(first_gradient(pieces), first_gradient(plain)) < 1e-5);

    // save_pretrained writes what model::load-style readers and trainable_bert read back.
    {
        auto m = fresh();
        finetuner<TestType> t(m, data, tiny_options(), b);
        t.step();
        const auto out = std::filesystem::temp_directory_path() / ("hashee_test_pretrained_" + std::to_string(typeid(TestType).hash_code()));
        std::filesystem::remove_all(out);
        save_pretrained(m, b, test::data_dir() / "training" / "tiny" / "model", out, {{"a", "b", "c"}, false});
        CHECK_THROWS_ID_AS(save_pretrained(m, b, test::data_dir() / "training" / "tiny" / "model", out, {{"a", "b"}, false}),
                           usage_error, "U52");
        const auto config = detail::read_json_file(out / "config.json");
        CHECK(config["id2label"]["2"] == "c");
        CHECK(config["problem_type"] == "single_label_classification");
        const auto saved = safetensors_file::open(out / "model.safetensors");
        auto back = trainable_bert<TestType, float>::load(saved, bert_config::load(out / "config.json"), g.labels, b);
        CHECK(weights_of(b, back) == weights_of(b, m));
        CHECK(back.infer(g.batch, no_exit{}) == m.infer(g.batch, no_exit{}));
        std::filesystem::remove_all(out);
    }

    // Typed errors before any step.
    auto m = fresh();
    finetune_options bad = tiny_options();
    bad.learning_rate = 0;
    CHECK_THROWS_ID_AS((finetuner<TestType>(m, data, bad, b)), input_error, "E88");
    CHECK_THROWS_ID_AS((finetuner<TestType>(m, training_set{}, tiny_options(), b)), input_error, "E88");
    training_set outside = data;
    outside.targets[3] = 3;
    CHECK_THROWS_ID_AS((finetuner<TestType>(m, outside, tiny_options(), b)), input_error, "E28");
    finetune_options cosine = tiny_options();
    cosine.task = objective::cosine;
    CHECK_THROWS_ID_AS((finetuner<TestType>(m, data, cosine, b)), usage_error, "U51");
    CHECK_THROWS_ID_AS(parse_objective("ranking"), input_error, "E88");
}
