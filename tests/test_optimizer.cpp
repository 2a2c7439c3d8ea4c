// The encoder's optimizer (train/optimizer.hpp) over every backend: the real all-MiniLM-L6-v2
// with a new classifier on 4 SST-2 dev rows against PyTorch (tests/data/training/minilm,
// scripts/make_training_goldens.py): the loss, the logits and every parameter's gradient (in
// full for vectors and the classifier, 64 sampled values and the Frobenius norm for matrices)
// within 1e-4 relative, then 3 AdamW steps with warm-up, decay and clipping, after which every
// stored parameter value is within 1e-5. On the tiny model: the clipping coefficient, the
// schedule, seeded runs repeating bit for bit, and the typed errors.

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <hashee/train/optimizer.hpp>

#include "training_goldens.hpp"

using namespace hashee;
using hashee::test::all_backends;
using hashee::test::gradient;
using hashee::test::relative_gap;
using hashee::test::tiny_golden;

namespace {

/// max |a - b| / max |b| (no floor: these values are small).
double gap_to_scale(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double gap = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        gap = std::max(gap, std::abs(a[i] - b[i]));
        scale = std::max(scale, std::abs(b[i]));
    }
    return scale > 0 ? gap / scale : gap;
}

struct minilm_golden {
    nlohmann::json manifest;
    std::vector<float> values;
    packed_batch batch;
    std::vector<double> labels, logits;

    static minilm_golden load() {
        const auto dir = test::data_dir() / "training" / "minilm";
        minilm_golden g;
        g.manifest = nlohmann::json::parse(test::read_file_text(dir / "manifest.json"));
        const std::vector<char> raw = test::read_binary(dir / g.manifest["binary"].get<std::string>());
        g.values.resize(raw.size() / 4);
        std::memcpy(g.values.data(), raw.data(), raw.size());
        nlohmann::json ids = nlohmann::json::array(), types = nlohmann::json::array();
        for (const auto& in : g.manifest["inputs"]) {
            ids.push_back(in["input_ids"]);
            types.push_back(in["token_type_ids"]);
        }
        g.batch = test::pack_ids(ids, &types);
        for (const auto& l : g.manifest["labels"]) g.labels.push_back(l.get<double>());
        for (const auto& row : g.manifest["logits"])
            for (const auto& z : row) g.logits.push_back(z.get<double>());
        return g;
    }
    std::vector<double> at(std::size_t offset, std::size_t count) const {
        return {values.begin() + static_cast<std::ptrdiff_t>(offset), values.begin() + static_cast<std::ptrdiff_t>(offset + count)};
    }
    /// The stored values of a tensor row (all of it, or its sampled indices) from `full`.
    static std::vector<double> stored(const nlohmann::json& row, const std::vector<double>& full) {
        if (!row.contains("indices")) return full;
        std::vector<double> picked;
        for (const auto& i : row["indices"]) picked.push_back(full.at(i.get<std::size_t>()));
        return picked;
    }
    static std::size_t count(const nlohmann::json& row) {
        if (row.contains("indices")) return row["indices"].size();
        std::size_t n = 1;
        for (const auto& d : row["shape"]) n *= d.get<std::size_t>();
        return n;
    }
};

double max_abs(const std::vector<double>& x) {
    double m = 0;
    for (const double v : x) m = std::max(m, std::abs(v));
    return m;
}

double frobenius(const std::vector<double>& x) {
    double s = 0;
    for (const double v : x) s += v * v;
    return std::sqrt(s);
}

adamw_options golden_options(const nlohmann::json& training) {
    adamw_options o;
    o.schedule = {training["optimizer"]["lr"].get<double>(), 1, 3};
    o.weight_decay = training["optimizer"]["weight_decay"].get<double>();
    o.max_grad_norm = 1.0;
    return o;
}

} // namespace

TEMPLATE_LIST_TEST_CASE("adamw_optimizer: all-MiniLM-L6-v2 matches PyTorch's gradients and 3 AdamW steps", "[training][model]",
                        all_backends) {
    const auto b = test::make_backend<TestType>(2);
    const minilm_golden g = minilm_golden::load();
    const auto model_dir = test::model_dir();
    const auto config = bert_config::load(model_dir / "config.json");
    const auto weights = safetensors_file::open(model_dir / "model.safetensors");
    const auto& init = g.manifest["classifier_init"]["weight"];
    const std::vector<float> classifier(g.values.begin(), g.values.begin() + init["count"].get<std::ptrdiff_t>());
    auto m = trainable_bert<TestType, float>::load_with_new_head(weights, config, 2, b, classifier);
    const auto& rows = g.manifest["tensors"];
    REQUIRE(rows.size() == m.tensors().size());

    adamw_optimizer<TestType, float> opt(m.tensors(), golden_options(g.manifest["training"]), b);
    const auto& steps = g.manifest["training"]["steps"];
    for (std::size_t step = 0; step < steps.size(); ++step) {
        CAPTURE(step);
        m.zero_grad();
        std::vector<double> logits;
        const double loss = m.forward_backward(g.batch, g.labels, &logits);
        CHECK(loss == Approx(steps[step]["loss"].get<double>()).epsilon(1e-4));
        if (step == 0) {
            CHECK(gap_to_scale(logits, g.logits) < 1e-4);
            for (std::size_t i = 0; i < rows.size(); ++i) {
                const auto& row = rows[i];
                const auto& t = m.tensors()[i];
                CAPTURE(t.name);
                REQUIRE(t.name == row["name"].get<std::string>());
                const auto grad = gradient(b, t);
                const auto expected = g.at(row["grad_offset"].get<std::size_t>(), minilm_golden::count(row));
                if (t.name.ends_with("attention.self.key.bias")) {
                    // Exactly 0 in exact arithmetic (softmax is invariant to a shift of every
                    // score of a query): both sides hold round-off, far below the other biases'.
                    CHECK(max_abs(grad) < 1e-7);
                    CHECK(max_abs(expected) < 1e-7);
                    continue;
                }
                CHECK(gap_to_scale(minilm_golden::stored(row, grad), expected) < 1e-4);
                if (row.contains("grad_frobenius_norm"))
                    CHECK(frobenius(grad) == Approx(row["grad_frobenius_norm"].get<double>()).epsilon(1e-4));
            }
        }
        const step_report r = opt.step();
        CHECK(r.step == static_cast<long>(step) + 1);
        CHECK(r.learning_rate == Approx(steps[step]["lr"].get<double>()).margin(1e-15));
        CHECK(r.grad_norm == Approx(steps[step]["grad_norm_preclip"].get<double>()).epsilon(1e-4));
    }
    // The parameters after the 3 steps (each step moves a weight by at most about lr = 5e-5).
    double worst = 0;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& row = rows[i];
        const auto& t = m.tensors()[i];
        CAPTURE(t.name);
        const auto after = minilm_golden::stored(row, gradient(b, t, true));
        const auto expected = g.at(row["after_offset"].get<std::size_t>(), minilm_golden::count(row));
        for (std::size_t k = 0; k < after.size(); ++k) worst = std::max(worst, std::abs(after[k] - expected[k]));
        CHECK(relative_gap(after, expected) < 1e-5);
    }
    UNSCOPED_INFO("largest parameter gap after 3 steps: " << worst);
    CHECK(worst < 1e-5);
}

TEMPLATE_LIST_TEST_CASE("adamw_optimizer: clipping, the schedule, repeatable runs and typed errors", "[training]", all_backends) {
    const auto b = test::make_backend<TestType>(2);
    const tiny_golden g = tiny_golden::load("");

    // Linear warm-up over 2 steps, then linear decay to 0 at step 6.
    const linear_schedule s{1e-3, 2, 6};
    CHECK(s.at(0) == 0.0);
    CHECK(s.at(1) == Approx(5e-4));
    CHECK(s.at(2) == Approx(1e-3));
    CHECK(s.at(4) == Approx(5e-4));
    CHECK(s.at(6) == 0.0);
    CHECK(s.at(9) == 0.0);
    CHECK(linear_schedule{1e-3, 0, 4}.at(0) == Approx(1e-3));

    // The global norm is over every gradient; clipped, the first moment is (1 - beta1) g c with
    // c = max_norm / (norm + 1e-6).
    auto m = trainable_bert<TestType, double>::load(g.weights, g.config, g.labels, b);
    m.zero_grad();
    m.forward_backward(g.batch, g.targets);
    double squares = 0;
    for (const auto& [name, grad] : g.grads)
        for (const double x : grad) squares += x * x;
    adamw_options o;
    o.schedule = {1e-3, 0, 10};
    o.max_grad_norm = 0.5 * std::sqrt(squares);
    adamw_optimizer<TestType, double> opt(m.tensors(), o, b);
    CHECK(opt.grad_norm() == Approx(std::sqrt(squares)).epsilon(1e-9));
    std::vector<std::vector<double>> grads;
    for (const auto& t : m.tensors()) grads.push_back(gradient(b, t));
    const step_report r = opt.step();
    const double c = o.max_grad_norm / (r.grad_norm + 1e-6);
    REQUIRE(c < 0.51);
    for (std::size_t i = 0; i < m.tensors().size(); ++i) {
        const auto& t = m.tensors()[i];
        std::vector<double> m1(static_cast<std::size_t>(t.size()));
        b.download(static_cast<const double*>(opt.first_moment(i).data), std::span<double>(m1));
        std::vector<double> expected = grads[i];
        for (double& x : expected) x *= 0.1 * c;
        CAPTURE(t.name);
        CHECK(relative_gap(m1, expected) < 1e-12);
    }

    // The same seeded run twice gives the same weights, bit for bit.
    auto run = [&] {
        auto model = trainable_bert<TestType, double>::load(g.weights, g.config, g.labels, b);
        adamw_optimizer<TestType, double> o2(model.tensors(), o, b);
        for (int k = 0; k < 3; ++k) {
            model.zero_grad();
            model.forward_backward(g.batch, g.targets);
            o2.step();
        }
        std::vector<double> all;
        for (const auto& t : model.tensors()) {
            const auto v = gradient(b, t, true);
            all.insert(all.end(), v.begin(), v.end());
        }
        return all;
    };
    CHECK(run() == run());

    // Bad options are U47; a gradient that is not finite is E87 and changes no parameter.
    for (const double lr : {0.0, -1e-5, std::numeric_limits<double>::quiet_NaN()}) {
        adamw_options bad = o;
        bad.schedule.base_rate = lr;
        CHECK_THROWS_ID_AS((adamw_optimizer<TestType, double>(m.tensors(), bad, b)), usage_error, "U47");
    }
    adamw_options bad = o;
    bad.schedule.warmup_steps = 11;
    CHECK_THROWS_ID_AS((adamw_optimizer<TestType, double>(m.tensors(), bad, b)), usage_error, "U47");
    bad = o;
    bad.schedule.total_steps = 0;
    CHECK_THROWS_ID_AS((adamw_optimizer<TestType, double>(m.tensors(), bad, b)), usage_error, "U47");
    const auto before = gradient(b, m.tensors()[0], true);
    auto& t0 = m.tensors()[0];
    std::vector<double> poisoned(static_cast<std::size_t>(t0.size()), 0.0);
    poisoned[3] = std::numeric_limits<double>::quiet_NaN();
    b.upload(std::span<const double>(poisoned), t0.grad.data());
    CHECK_THROWS_ID_AS(opt.step(), input_error, "E87");
    CHECK(opt.steps_taken() == 1);
    CHECK(gradient(b, m.tensors()[0], true) == before);
}
