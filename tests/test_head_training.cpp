// Head training on a frozen backbone (head_training.hpp) and FastBERT's heads
// (fastbert_heads.hpp), on synthetic features only: every hand-written backward pass against
// central finite differences, each routine learning separable data, bit-for-bit determinism,
// exact save/load round trips (including DeeBERT, PABEE and ElasticBERT layouts of
// classifier_heads), and bad inputs as input_errors with their messages.

#include <catch2/catch.hpp>

#include <hashee/core/detail/random.hpp>
#include <hashee/core/error.hpp>
#include <hashee/exit/exit_heads.hpp>
#include <hashee/exit/fastbert_heads.hpp>
#include <hashee/train/head_training.hpp>
#include <hashee/io/safetensors.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "test_support.hpp"

using namespace hashee;
using Catch::Matchers::Contains;
using hashee::detail::batch_targets;
using hashee::detail::dense64;
using hashee::detail::head_loss;
using hashee::test::error_of;
using matd = hashee::detail::row_matrix<double>;

namespace {

// ---- Synthetic features ----

struct synthetic {
    layer_features features;
    std::vector<float> targets;
};

/// S samples of 2..6 tokens, L layers of width d. The class means mu_c (C >= 2) are N(0, 1)^d
/// drawn from a fixed seed, so train and test sets (different `seed`s) share them; regression
/// (C = 1) uses targets t ~ N(0, 1) and mean t u for a fixed direction u. Every token state of
/// layer l is (l / L) * 2 * mean + N(0, 1): the class is a linear function of the state, more
/// clearly at deeper layers. [CLS] is token 0.
synthetic make_synthetic(index_t S, int L, index_t d, index_t C, std::uint64_t seed, bool with_tokens) {
    hashee::detail::random_source fixed(99), rng(seed);
    auto normal = [](hashee::detail::random_source& r) { return static_cast<float>(r.normal()); };
    const auto dim = static_cast<std::size_t>(d);
    std::vector<std::vector<float>> mu(static_cast<std::size_t>(std::max<index_t>(C, 1)), std::vector<float>(dim));
    for (auto& m : mu)
        for (float& v : m) v = normal(fixed);
    synthetic s;
    layer_features& f = s.features;
    f.num_layers = L;
    f.hidden = d;
    std::vector<std::vector<float>> mean(static_cast<std::size_t>(S));
    for (index_t i = 0; i < S; ++i) {
        f.offsets.push_back(f.offsets.back() + 2 + static_cast<std::int32_t>(rng.below(5)));
        if (C >= 2) {
            const auto c = static_cast<std::size_t>(rng.below(static_cast<std::uint64_t>(C)));
            s.targets.push_back(static_cast<float>(c));
            mean[static_cast<std::size_t>(i)] = mu[c];
        } else {
            const float t = normal(rng);
            s.targets.push_back(t);
            for (float u : mu[0]) mean[static_cast<std::size_t>(i)].push_back(t * u);
        }
    }
    for (int l = 1; l <= L; ++l) {
        const float a = 2.0f * static_cast<float>(l) / static_cast<float>(L);
        for (index_t i = 0; i < S; ++i)
            for (std::int32_t r = f.offsets[static_cast<std::size_t>(i)]; r < f.offsets[static_cast<std::size_t>(i) + 1]; ++r)
                for (index_t j = 0; j < d; ++j) {
                    const float v = a * mean[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)] + normal(rng);
                    if (with_tokens) f.tokens.push_back(v);
                    if (r == f.offsets[static_cast<std::size_t>(i)]) f.sentences.push_back(v);
                }
    }
    return s;
}

/// The logits of head `layer` on every sample of `f`, [samples, outputs] row-major.
template <class H>
std::vector<float> logits_of(const H& heads, int layer, const layer_features& f) {
    const index_t S = f.samples(), C = heads.outputs();
    std::vector<float> z(static_cast<std::size_t>(S * C));
    if (heads.input() == head_input::all_tokens) {
        heads.logits(layer, f.token_states(layer), f.offsets, {z.data(), S, C});
    } else {
        std::vector<std::int32_t> one_row_each(static_cast<std::size_t>(S) + 1);
        std::iota(one_row_each.begin(), one_row_each.end(), 0);
        heads.logits(layer, f.sentence_states(layer), one_row_each, {z.data(), S, C});
    }
    return z;
}

std::vector<int> predictions(const std::vector<float>& z, index_t C) {
    std::vector<int> out;
    for (std::size_t i = 0; i < z.size(); i += static_cast<std::size_t>(C))
        out.push_back(static_cast<int>(std::max_element(z.begin() + static_cast<std::ptrdiff_t>(i),
                                                        z.begin() + static_cast<std::ptrdiff_t>(i) + C) -
                                       (z.begin() + static_cast<std::ptrdiff_t>(i))));
    return out;
}

template <class H>
double accuracy(const H& heads, int layer, const synthetic& s) {
    const auto p = predictions(logits_of(heads, layer, s.features), heads.outputs());
    std::size_t right = 0;
    for (std::size_t i = 0; i < p.size(); ++i) right += static_cast<float>(p[i]) == s.targets[i];
    return static_cast<double>(right) / static_cast<double>(p.size());
}

/// Mean squared error of a regression head.
double mse(const classifier_heads& heads, int layer, const synthetic& s) {
    const auto z = logits_of(heads, layer, s.features);
    double e = 0.0;
    for (std::size_t i = 0; i < z.size(); ++i) e += (z[i] - s.targets[i]) * (z[i] - s.targets[i]);
    return e / static_cast<double>(z.size());
}

dense_params random_pooler(index_t d, std::uint64_t seed) {
    hashee::detail::random_source rng(seed);
    return dense_params::uniform(d, d, rng);
}

// ---- Flattened parameters, for exact comparisons ----

void append(std::vector<float>& v, const dense_params& p) {
    v.insert(v.end(), p.weight.begin(), p.weight.end());
    v.insert(v.end(), p.bias.begin(), p.bias.end());
}
std::vector<float> parameters(const classifier_heads& h) {
    std::vector<float> v;
    for (int l = 1; l <= h.num_layers(); ++l) {
        append(v, h.pooler(l));
        append(v, h.classifier(l));
    }
    return v;
}
std::vector<float> parameters(const fastbert_heads& h) {
    std::vector<float> v;
    for (int l = 1; l <= h.num_layers(); ++l)
        fastbert_head::for_each(h.head(l), [&](const char*, const dense_params& p) { append(v, p); });
    return v;
}
std::vector<float> parameters(const exit_predictor& p) {
    std::vector<float> v;
    for (int l = 1; l <= p.num_layers(); ++l) append(v, p.unit(l));
    return v;
}

// ---- Gradient-check problems: tiny shapes, random parameters, in double ----

struct problem_base {
    hashee::detail::random_source rng{7};
    double uniform(double bound) { return rng.uniform(-bound, bound); }
    matd random_rows(index_t r, index_t c, double bound) {
        matd m(r, c);
        for (index_t i = 0; i < r; ++i)
            for (index_t j = 0; j < c; ++j) m(i, j) = uniform(bound);
        return m;
    }
    dense64 random_dense(index_t out, index_t in) { return {random_rows(out, in, 0.9), random_rows(out, 1, 0.9)}; }
    /// Probabilities: a softmax of random logits; `with_zero` puts an exact 0 in row 0.
    matd random_probabilities(index_t r, index_t c, bool with_zero) {
        matd p = random_rows(r, c, 2.0).array().exp().matrix();
        if (with_zero) p(0, 0) = 0.0;
        for (index_t i = 0; i < r; ++i) p.row(i) /= p.row(i).sum();
        return p;
    }
};

struct deebert_cross_entropy : problem_base {
    dense64 P = random_dense(3, 3), K = random_dense(3, 3);
    matd X = random_rows(5, 3, 1.5);
    batch_targets t{head_loss::cross_entropy, {0, 2, 1, 1, 0}, {}};
    std::vector<dense64*> params() { return {&P, &K}; }
    double loss(std::vector<dense64>* g) {
        return hashee::detail::classifier_head_loss(P, K, X, t, 1.0, g ? &(*g)[0] : nullptr, g ? &(*g)[1] : nullptr);
    }
};

struct deebert_squared_error : problem_base {
    dense64 P = random_dense(3, 3), K = random_dense(1, 3);
    matd X = random_rows(4, 3, 1.5);
    batch_targets t{head_loss::squared_error, {0.5, -1.0, 2.0, 0.0}, {}};
    std::vector<dense64*> params() { return {&P, &K}; }
    double loss(std::vector<dense64>* g) {
        return hashee::detail::classifier_head_loss(P, K, X, t, 1.0, g ? &(*g)[0] : nullptr, g ? &(*g)[1] : nullptr);
    }
};

struct pabee_joint : problem_base {
    dense64 P = random_dense(3, 3);
    std::vector<dense64> K{random_dense(2, 3), random_dense(2, 3), random_dense(2, 3)};
    std::vector<matd> X{random_rows(4, 3, 1.5), random_rows(4, 3, 1.5), random_rows(4, 3, 1.5)};
    batch_targets t{head_loss::cross_entropy, {1, 0, 0, 1}, {}};
    std::vector<dense64*> params() { return {&P, &K[0], &K[1], &K[2]}; }
    double loss(std::vector<dense64>* g) {
        if (!g) return hashee::detail::pabee_loss(P, K, X, t);
        return hashee::detail::pabee_loss(P, K, X, t, &(*g)[0], std::span<dense64>(*g).subspan(1));
    }
};

using fastbert_head64 = hashee::basic_fastbert_head<dense64>;
struct fastbert_base : problem_base {
    static constexpr int heads = 2;
    fastbert_head64 h{random_dense(4, 3), random_dense(4, 4), random_dense(4, 4),
                      random_dense(4, 4), random_dense(4, 4), random_dense(3, 4)};
    std::vector<std::int32_t> offsets{0, 3, 4, 7}; // sequences of 3, 1 and 3 tokens
    matd tokens = random_rows(7, 3, 1.5);
    std::vector<dense64*> params() { return {&h.narrow, &h.query, &h.key, &h.value, &h.dense, &h.classifier}; }
    /// The loss against `t`; with g, its gradient flattened in params() order.
    double loss_against(const batch_targets& t, std::vector<dense64>* g) {
        if (!g) return hashee::detail::fastbert_loss(h, heads, tokens, offsets, t);
        fastbert_head64 grad = h;
        fastbert_head64::for_each(grad, [](const char*, dense64& d) {
            d.W.setZero();
            d.b.setZero();
        });
        const double loss = hashee::detail::fastbert_loss(h, heads, tokens, offsets, t, &grad);
        g->clear();
        fastbert_head64::for_each(grad, [&](const char*, dense64& d) { g->push_back(d); });
        return loss;
    }
};
struct fastbert_cross_entropy : fastbert_base {
    batch_targets t{head_loss::cross_entropy, {2, 0, 1}, {}};
    double loss(std::vector<dense64>* g) { return loss_against(t, g); }
};
struct fastbert_distillation : fastbert_base {
    batch_targets t{head_loss::distillation, {}, random_probabilities(3, 3, true)};
    double loss(std::vector<dense64>* g) { return loss_against(t, g); }
};

struct berxit_binary_cross_entropy : problem_base {
    dense64 unit = random_dense(1, 4);
    matd X = random_rows(5, 4, 2.0);
    batch_targets t{head_loss::binary_cross_entropy, {1, 0, 0, 1, 1}, {}};
    std::vector<dense64*> params() { return {&unit}; }
    double loss(std::vector<dense64>* g) { return hashee::detail::linear_loss(unit, X, t, 1.0, g ? &(*g)[0] : nullptr); }
};

} // namespace

TEST_CASE("loss values match their formulas", "[head_training]") {
    matd dz;
    const matd z{{0.0, std::log(3.0)}}; // softmax = [1/4, 3/4]
    CHECK(hashee::detail::loss_and_gradient(z, {head_loss::cross_entropy, {1}, {}}, dz) == Approx(-std::log(0.75)));
    CHECK(dz(0, 0) == Approx(0.25));
    CHECK(dz(0, 1) == Approx(-0.25));
    const matd teacher{{0.5, 0.5}};
    CHECK(hashee::detail::loss_and_gradient(z, {head_loss::distillation, {}, teacher}, dz) ==
          Approx(0.5 * std::log(0.5 / 0.25) + 0.5 * std::log(0.5 / 0.75)));
    CHECK(hashee::detail::loss_and_gradient(matd{{0.0}}, {head_loss::binary_cross_entropy, {1}, {}}, dz) ==
          Approx(std::log(2.0)));
    CHECK(dz(0, 0) == Approx(-0.5));
    CHECK(hashee::detail::loss_and_gradient(matd{{3.0}, {1.0}}, {head_loss::squared_error, {1, 1}, {}}, dz) == Approx(2.0));
    CHECK(dz(0, 0) == Approx(2.0)); // 2 (3 - 1) / B
    CHECK(hashee::detail::pabee_weights(3) == std::vector<double>{1.0 / 6, 2.0 / 6, 3.0 / 6});
}

// Central differences (L(theta + e) - L(theta - e)) / 2e with e = 1e-5, all in double: the
// truncation error is O(e^2) ~ 1e-10 and rounding ~ 1e-16 / e ~ 1e-11, so every analytic
// partial derivative must agree to 1e-7 * max(1, |numeric|).
TEMPLATE_TEST_CASE("every backward pass matches central finite differences", "[head_training][gradient]", deebert_cross_entropy,
                   deebert_squared_error, pabee_joint, fastbert_cross_entropy, fastbert_distillation,
                   berxit_binary_cross_entropy) {
    TestType p;
    std::vector<dense64> g;
    for (dense64* q : p.params()) g.push_back(dense64::zeros(q->W.rows(), q->W.cols()));
    p.loss(&g);
    const double e = 1e-5;
    double worst = 0.0, norm = 0.0;
    std::size_t checked = 0;
    const auto params = p.params();
    for (std::size_t k = 0; k < params.size(); ++k) {
        auto check = [&](double& theta, double analytic) {
            const double saved = theta;
            theta = saved + e;
            const double up = p.loss(nullptr);
            theta = saved - e;
            const double down = p.loss(nullptr);
            theta = saved;
            const double numeric = (up - down) / (2.0 * e);
            worst = std::max(worst, std::abs(analytic - numeric) / std::max(1.0, std::abs(numeric)));
            norm += analytic * analytic;
            ++checked;
        };
        for (index_t i = 0; i < params[k]->W.size(); ++i) check(params[k]->W.data()[i], g[k].W.data()[i]);
        for (index_t i = 0; i < params[k]->b.size(); ++i) check(params[k]->b.data()[i], g[k].b.data()[i]);
    }
    INFO("partial derivatives checked: " << checked << ", worst relative error " << worst);
    CHECK(checked > 0);
    CHECK(std::sqrt(norm) > 1e-3); // not trivially zero
    CHECK(worst < 1e-7);
}

TEST_CASE("FastBERT heads: float inference matches the double training forward", "[head_training][fastbert]") {
    const fastbert_heads heads(2, 6, 3, 5, 8, 2);
    const synthetic s = make_synthetic(7, 2, 6, 3, 1, true);
    const auto z = logits_of(heads, 2, s.features);
    std::vector<hashee::detail::fastbert_pass<double>> passes;
    std::vector<std::size_t> all(7);
    std::iota(all.begin(), all.end(), std::size_t{0});
    std::vector<std::int32_t> offsets;
    const matd tokens = hashee::detail::gather_tokens(s.features, 2, all, offsets);
    CHECK(offsets == s.features.offsets);
    const auto head64 = hashee::detail::fastbert_head64(heads.head(2));
    const matd z64 = hashee::detail::fastbert_logits64(head64, 2, tokens, offsets, passes);
    for (index_t i = 0; i < 7; ++i)
        for (index_t c = 0; c < 3; ++c) CHECK(z[static_cast<std::size_t>(i * 3 + c)] == Approx(z64(i, c)).margin(1e-5));
    // MACs at width 8, hidden 6, 3 classes, n = 5: narrow 240, k/v 640, q 64, attention 80, dense 64, classifier 24.
    CHECK(heads.macs(1, 5) == 240 + 640 + 64 + 80 + 64 + 24);
    CHECK(heads.num_layers() == 2);
    CHECK(heads.outputs() == 3);
}

// ---- Learning ----

TEST_CASE("DeeBERT: every head learns its layer; deeper layers do better", "[head_training][deebert]") {
    const synthetic train = make_synthetic(512, 4, 8, 3, 1, false), test = make_synthetic(300, 4, 8, 3, 2, false);
    classifier_heads heads(4, random_pooler(8, 3), 3, false, 11);
    head_training_options opt;
    opt.epochs = 20;
    opt.learning_rate = 1e-2;
    const training_report r = train_deebert(heads, train.features, train.targets, opt);
    REQUIRE(r.objective.size() == 20);
    REQUIRE(r.layer_loss.size() == 4);
    for (int l = 1; l <= 4; ++l) CHECK(r.layer_loss[static_cast<std::size_t>(l - 1)].front() > r.final_loss(l));
    CHECK(r.final_loss(1) > r.final_loss(4)); // shallow layers are noisier
    CHECK(r.objective.front() > 1.5 * r.final_loss());
    const double first = accuracy(heads, 1, test), last = accuracy(heads, 4, test);
    INFO("held-out accuracy: layer 1 " << first << ", layer 4 " << last);
    CHECK(last >= 0.97);
    CHECK(first < last);
}

TEST_CASE("DeeBERT and PABEE regression heads learn by squared error", "[head_training][regression]") {
    const synthetic train = make_synthetic(512, 3, 8, 1, 1, false), test = make_synthetic(300, 3, 8, 1, 2, false);
    head_training_options opt;
    opt.epochs = 30;
    opt.learning_rate = 1e-2;
    for (const bool shared : {false, true}) {
        classifier_heads heads(3, random_pooler(8, 3), 1, shared, 11);
        const double before = mse(heads, 3, test);
        const training_report r = shared ? train_pabee(heads, train.features, train.targets, opt)
                                         : train_deebert(heads, train.features, train.targets, opt);
        const double after = mse(heads, 3, test);
        INFO((shared ? "PABEE" : "DeeBERT") << ": held-out MSE of layer 3 " << before << " -> " << after);
        CHECK(r.objective.front() > r.final_loss());
        CHECK(after < 0.1); // targets have variance 1
        CHECK(after < 0.1 * before);
    }
}

TEST_CASE("PABEE: the joint depth-weighted loss trains every classifier and the shared pooler", "[head_training][pabee]") {
    const synthetic train = make_synthetic(512, 4, 8, 3, 1, false), test = make_synthetic(300, 4, 8, 3, 2, false);
    const dense_params pooler = random_pooler(8, 3);
    classifier_heads heads(4, pooler, 3, true, 11);
    head_training_options opt;
    opt.epochs = 20;
    opt.learning_rate = 1e-2;
    const training_report r = train_pabee(heads, train.features, train.targets, opt);
    CHECK(heads.pooler(1).weight != pooler.weight); // the shared pooler moved
    CHECK(&heads.pooler(1) == &heads.pooler(4));
    // objective = sum_i i L_i / 10 in every epoch.
    for (std::size_t e = 0; e < r.objective.size(); ++e) {
        double joint = 0.0;
        for (int i = 1; i <= 4; ++i) joint += i * r.layer_loss[static_cast<std::size_t>(i - 1)][e] / 10.0;
        CHECK(r.objective[e] == Approx(joint).epsilon(1e-12));
    }
    CHECK(r.objective.front() > 1.5 * r.final_loss());
    INFO("held-out accuracy of layer 4: " << accuracy(heads, 4, test));
    CHECK(accuracy(heads, 4, test) >= 0.97);
    CHECK(accuracy(heads, 2, test) >= 0.8);
}

TEST_CASE("FastBERT: the teacher learns the labels, the students learn the teacher", "[head_training][fastbert]") {
    const synthetic train = make_synthetic(400, 3, 8, 3, 1, true), test = make_synthetic(200, 3, 8, 3, 2, true);
    fastbert_heads heads(3, 8, 3, 5, 16, 2);
    head_training_options opt;
    opt.epochs = 15;
    opt.learning_rate = 1e-2;
    const training_report r = train_fastbert(heads, train.features, train.targets, opt);
    REQUIRE(r.layer_loss.size() == 3);
    for (const auto& l : r.layer_loss) {
        REQUIRE(l.size() == 15);
        CHECK(l.front() > 1.5 * l.back());
    }
    const double teacher = accuracy(heads, 3, test);
    INFO("held-out accuracy: teacher " << teacher << ", student 2 " << accuracy(heads, 2, test));
    CHECK(teacher >= 0.97);
    // Student 2 agrees with the teacher on most held-out samples (it never saw a label).
    const auto pt = predictions(logits_of(heads, 3, test.features), 3), ps = predictions(logits_of(heads, 2, test.features), 3);
    std::size_t agree = 0;
    for (std::size_t i = 0; i < pt.size(); ++i) agree += pt[i] == ps[i];
    CHECK(static_cast<double>(agree) / static_cast<double>(pt.size()) >= 0.9);
}

namespace {

/// BERxiT data: heads that predict class 1 iff h_0 > 0 (pooler tanh(I h), classifier
/// [-e_0; e_0]); each sample's layer-l state points h_0 at its class, except that with
/// probability 0.3 (layer 1) or 0.1 (layer 2) it points the other way and then h_1 > 0.6
/// (else h_1 < 0.4): head l is right exactly when h_1 < 0.5.
synthetic berxit_data(index_t S, std::uint64_t seed) {
    hashee::detail::random_source rng(seed);
    auto u = [&](double a, double b) { return static_cast<float>(rng.uniform(a, b)); };
    synthetic s;
    s.features.num_layers = 2;
    s.features.hidden = 4;
    for (index_t i = 0; i < S; ++i) {
        s.features.offsets.push_back(s.features.offsets.back() + 1);
        s.targets.push_back(static_cast<float>(rng.below(2)));
    }
    for (int l = 1; l <= 2; ++l)
        for (index_t i = 0; i < S; ++i) {
            const bool flip = u(0, 1) < (l == 1 ? 0.3 : 0.1);
            const float sign = (s.targets[static_cast<std::size_t>(i)] == 1.0f) != flip ? 1.0f : -1.0f;
            // Braced lists evaluate left to right: the draws are in a fixed order.
            const std::initializer_list<float> h{sign * u(0.1, 1.0), flip ? u(0.6, 1.0) : u(-1.0, 0.4), u(-1, 1), u(-1, 1)};
            s.features.sentences.insert(s.features.sentences.end(), h);
        }
    return s;
}

classifier_heads sign_heads() {
    dense_params identity = dense_params::zeros(4, 4);
    for (int j = 0; j < 4; ++j) identity.weight[static_cast<std::size_t>(j * 5)] = 1.0f;
    classifier_heads heads(2, identity, 2, false, 0);
    for (int l = 1; l <= 2; ++l) {
        heads.classifier(l) = dense_params::zeros(2, 4);
        heads.classifier(l).weight[0] = -1.0f;
        heads.classifier(l).weight[4] = 1.0f;
    }
    return heads;
}

} // namespace

TEST_CASE("BERxiT: the exit units learn when their head is right", "[head_training][berxit]") {
    const synthetic train = berxit_data(600, 1), test = berxit_data(400, 2);
    const classifier_heads heads = sign_heads();
    CHECK(accuracy(heads, 1, test) == Approx(0.7).margin(0.07));
    head_training_options opt;
    opt.epochs = 40;
    opt.learning_rate = 5e-2;
    training_report r;
    const exit_predictor p = train_berxit(heads, train.features, train.targets, opt, &r);
    REQUIRE(p.num_layers() == 2);
    CHECK(p.macs(1) == 4);
    CHECK(r.objective.front() > 2.0 * r.final_loss());
    for (int l = 1; l <= 2; ++l) {
        const auto pred = predictions(logits_of(heads, l, test.features), 2);
        std::size_t right = 0;
        for (index_t i = 0; i < test.features.samples(); ++i) {
            const auto h = test.features.sentence_states(l);
            const double c = p.confidence(l, std::span<const float>(h.row(i), 4));
            REQUIRE((c >= 0.0 && c <= 1.0));
            const auto k = static_cast<std::size_t>(i);
            const bool correct = static_cast<float>(pred[k]) == test.targets[k];
            right += (c > 0.5) == correct;
        }
        const double acc = static_cast<double>(right) / static_cast<double>(test.features.samples());
        INFO("layer " << l << ": held-out accuracy of the exit unit " << acc);
        CHECK(acc >= 0.97);
    }
}

// ---- Determinism ----

namespace {

struct deebert_run {
    static std::vector<float> train(std::uint64_t seed) {
        const synthetic s = make_synthetic(100, 3, 6, 3, 1, false);
        classifier_heads heads(3, random_pooler(6, 3), 3, false, 4);
        train_deebert(heads, s.features, s.targets, {2, 16, 1e-2, 0.01, seed});
        return parameters(heads);
    }
};
struct pabee_run {
    static std::vector<float> train(std::uint64_t seed) {
        const synthetic s = make_synthetic(100, 3, 6, 3, 1, false);
        classifier_heads heads(3, random_pooler(6, 3), 3, true, 4);
        train_pabee(heads, s.features, s.targets, {2, 16, 1e-2, 0.01, seed});
        return parameters(heads);
    }
};
struct fastbert_run {
    static std::vector<float> train(std::uint64_t seed) {
        const synthetic s = make_synthetic(60, 3, 6, 3, 1, true);
        fastbert_heads heads(3, 6, 3, 4, 8, 2);
        train_fastbert(heads, s.features, s.targets, {2, 16, 1e-2, 0.01, seed});
        return parameters(heads);
    }
};
struct berxit_run {
    static std::vector<float> train(std::uint64_t seed) {
        const synthetic s = make_synthetic(100, 3, 6, 3, 1, false);
        const classifier_heads heads(3, random_pooler(6, 3), 3, false, 4);
        return parameters(train_berxit(heads, s.features, s.targets, {2, 16, 1e-2, 0.01, seed}));
    }
};

} // namespace

TEMPLATE_TEST_CASE("training is bit-for-bit deterministic; another seed gives other parameters", "[head_training][determinism]",
                   deebert_run, pabee_run, fastbert_run, berxit_run) {
    const auto a = TestType::train(1), b = TestType::train(1), c = TestType::train(2);
    REQUIRE(a.size() == b.size());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    CHECK(a != c);
}

// ---- Save and load ----

namespace {

struct fastbert_kind {
    using type = fastbert_heads;
    static type make() {
        fastbert_heads h(3, 6, 4, 9, 8, 2);
        h.head(2).classifier.bias[1] = std::numeric_limits<float>::denorm_min(); // exact, not approximately
        return h;
    }
    static type load(const std::filesystem::path& p) { return fastbert_heads::load(p); }
};
struct exit_predictor_kind {
    using type = exit_predictor;
    static type make() {
        const synthetic s = make_synthetic(50, 2, 5, 3, 1, false);
        const classifier_heads heads(2, random_pooler(5, 3), 3, false, 4);
        return train_berxit(heads, s.features, s.targets, {1, 8, 1e-2, 0.01, 0});
    }
    static type load(const std::filesystem::path& p) { return exit_predictor::load(p); }
};
template <bool Shared>
struct classifier_kind {
    using type = classifier_heads;
    static type make() {
        classifier_heads h(3, random_pooler(5, 3), 2, Shared, 8);
        const synthetic s = make_synthetic(40, 3, 5, 2, 1, false);
        if (Shared) train_pabee(h, s.features, s.targets, {1, 8, 1e-2, 0.01, 0});
        else train_deebert(h, s.features, s.targets, {1, 8, 1e-2, 0.01, 0});
        return h;
    }
    static type load(const std::filesystem::path& p) { return classifier_heads::load(p); }
};
using deebert_layout = classifier_kind<false>;
using pabee_layout = classifier_kind<true>;

} // namespace

TEMPLATE_TEST_CASE("save then load gives back the exact parameters", "[head_training][io]", fastbert_kind, exit_predictor_kind,
                   deebert_layout, pabee_layout) {
    const hashee::test::temp_dir dir;
    const auto saved = TestType::make();
    saved.save(dir.path / "heads.safetensors");
    const auto loaded = TestType::load(dir.path / "heads.safetensors");
    CHECK(loaded.num_layers() == saved.num_layers());
    const auto a = parameters(saved), b = parameters(loaded);
    REQUIRE(a.size() == b.size());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    if constexpr (std::is_same_v<typename TestType::type, classifier_heads>) {
        CHECK(loaded.shared_pooler() == saved.shared_pooler());
        const synthetic s = make_synthetic(10, 3, 5, 2, 3, false);
        for (int l = 1; l <= 3; ++l) CHECK(logits_of(loaded, l, s.features) == logits_of(saved, l, s.features));
    } else if constexpr (std::is_same_v<typename TestType::type, fastbert_heads>) {
        CHECK(loaded.width() == 8);
        CHECK(loaded.attention_heads() == 2);
        const synthetic s = make_synthetic(10, 3, 6, 4, 3, true);
        for (int l = 1; l <= 3; ++l) CHECK(logits_of(loaded, l, s.features) == logits_of(saved, l, s.features));
    }
}

TEST_CASE("classifier_heads load ElasticBERT's names (a pooler per layer)", "[head_training][io]") {
    const hashee::test::temp_dir dir;
    hashee::detail::random_source rng(3);
    std::vector<dense_params> poolers, classifiers;
    std::vector<safetensors_tensor> t;
    for (int n = 0; n < 2; ++n) {
        poolers.push_back(dense_params::uniform(4, 4, rng));
        classifiers.push_back(dense_params::uniform(3, 4, rng));
    }
    for (std::size_t n = 0; n < 2; ++n) {
        const std::string pooler = std::string("elasticbert.encoder.pooler.") + std::to_string(n) + ".dense";
        const std::string classifier = std::string("classifiers.") + std::to_string(n);
        t.push_back({pooler + ".weight", {4, 4}, poolers[n].weight});
        t.push_back({pooler + ".bias", {4}, poolers[n].bias});
        t.push_back({classifier + ".weight", {3, 4}, classifiers[n].weight});
        t.push_back({classifier + ".bias", {3}, classifiers[n].bias});
    }
    write_safetensors(dir.path / "elastic.safetensors", t);
    const classifier_heads h = classifier_heads::load(dir.path / "elastic.safetensors");
    REQUIRE(h.num_layers() == 2);
    CHECK_FALSE(h.shared_pooler());
    CHECK(h.outputs() == 3);
    for (int l = 1; l <= 2; ++l) {
        CHECK(h.pooler(l).weight == poolers[static_cast<std::size_t>(l - 1)].weight);
        CHECK(h.pooler(l).bias == poolers[static_cast<std::size_t>(l - 1)].bias);
        CHECK(h.classifier(l).weight == classifiers[static_cast<std::size_t>(l - 1)].weight);
        CHECK(h.classifier(l).bias == classifiers[static_cast<std::size_t>(l - 1)].bias);
    }
}

TEST_CASE("loading FastBERT heads or exit units reports the file and the tensor", "[head_training][io]") {
    const hashee::test::temp_dir dir;
    const auto path = dir.path / "partial.safetensors";
    const std::vector<float> w(8 * 6), b(8);
    const std::span<const float> ws(w), bs(b);
    write_safetensors(path, std::vector<safetensors_tensor>{{"fastbert.0.narrow.weight", {8, 6}, ws},
                                                            {"fastbert.0.narrow.bias", {8}, bs},
                                                            {"fastbert.0.classifier.weight", {3, 8}, ws.first(24)},
                                                            {"fastbert.0.classifier.bias", {3}, bs.first(3)}});
    auto msg = error_of<weight_error>([&] { (void)fastbert_heads::load(path); });
    CHECK_THAT(msg, Contains(path.string()) && Contains("fastbert.0.query.weight") && Contains("not found"));
    msg = error_of<weight_error>([&] { (void)fastbert_heads::load(path, 3); });
    CHECK_THAT(msg, Contains("does not split into 3 attention heads"));
    msg = error_of<weight_error>([&] { (void)exit_predictor::load(path); });
    CHECK_THAT(msg, Contains(path.string()) && Contains("berxit.0.weight") && Contains("not found"));
}

// ---- Bad inputs ----

namespace {

// Each trains heads of `layers` layers (the features' count unless given) with default options.
struct deebert_trainer {
    static constexpr bool needs_tokens = false;
    static void train(const synthetic& s, std::span<const float> y, int layers = 0) {
        classifier_heads h(layers ? layers : s.features.num_layers, random_pooler(s.features.hidden, 1), 3, false, 0);
        train_deebert(h, s.features, y);
    }
};
struct pabee_trainer {
    static constexpr bool needs_tokens = false;
    static void train(const synthetic& s, std::span<const float> y, int layers = 0) {
        classifier_heads h(layers ? layers : s.features.num_layers, random_pooler(s.features.hidden, 1), 3, true, 0);
        train_pabee(h, s.features, y);
    }
};
struct fastbert_trainer {
    static constexpr bool needs_tokens = true;
    static void train(const synthetic& s, std::span<const float> y, int layers = 0) {
        fastbert_heads h(layers ? layers : s.features.num_layers, s.features.hidden, 3, 0, 4, 2);
        train_fastbert(h, s.features, y);
    }
};
struct berxit_trainer {
    static constexpr bool needs_tokens = false;
    static void train(const synthetic& s, std::span<const float> y, int layers = 0) {
        const classifier_heads h(layers ? layers : s.features.num_layers, random_pooler(s.features.hidden, 1), 3, false, 0);
        (void)train_berxit(h, s.features, y);
    }
};

} // namespace

TEMPLATE_TEST_CASE("bad targets and features are input_errors that say what is wrong", "[head_training][errors]", deebert_trainer,
                   pabee_trainer, fastbert_trainer, berxit_trainer) {
    const synthetic s = make_synthetic(4, 2, 3, 3, 1, TestType::needs_tokens);
    auto error = [&](const synthetic& data, std::vector<float> y) {
        return error_of<input_error>([&] { TestType::train(data, y); });
    };
    CHECK_THROWS_ID_AS(TestType::train(s, std::vector<float>{0, 1, 2}), input_error, "E28");
    CHECK_THROWS_ID_AS(TestType::train(s, std::vector<float>{0, 3, 1, 2}), input_error, "E28");
    CHECK_THAT(error(s, {0, 1, 2}), Contains("3 targets for 4 samples"));
    CHECK_THAT(error(s, {0, 3, 1, 2}), Contains("class 3 of sample 1 is outside [0, 3)"));
    CHECK_THAT(error(s, {0, 1, -1, 2}), Contains("class -1 of sample 2 is outside [0, 3)"));
    CHECK_THAT(error(s, {0, 1, 1.5f, 2}), Contains("target 1.5") && Contains("of sample 2 is not a class index"));
    CHECK_THAT(error(s, {0, 1, std::nanf(""), 2}), Contains("target of sample 2 is not finite"));

    synthetic bad = s;
    bad.features.sentences[bad.features.sentences.size() - 2] = std::numeric_limits<float>::infinity();
    CHECK_THROWS_ID_AS(TestType::train(bad, s.targets), input_error, "E29");
    CHECK_THAT(error(bad, s.targets), Contains("non-finite value in the sentence states of layer 2, row 3, column 1"));
    bad = s;
    bad.features.sentences.pop_back();
    CHECK_THAT(error(bad, s.targets), Contains("sentences holds 23 values, expected layers x samples x hidden = 24"));
    bad = s;
    bad.features.offsets[2] = bad.features.offsets[1];
    CHECK_THAT(error(bad, s.targets), Contains("sample 1 has no tokens"));
    bad = s;
    bad.features.offsets = {0};
    bad.features.sentences.clear();
    CHECK_THAT(error(bad, {}), Contains("features hold no samples"));
    CHECK_NOTHROW(TestType::train(s, s.targets));
    CHECK_THROWS_ID_AS(TestType::train(s, s.targets, 3), input_error, "E30");
    const auto msg = error_of<input_error>([&] { TestType::train(s, s.targets, 3); });
    CHECK_THAT(msg, Contains("the heads have 3 layers, the features 2"));
}

TEST_CASE("wrong head layouts, missing tokens and bad options are typed errors", "[head_training][errors]") {
    const synthetic s = make_synthetic(6, 2, 4, 3, 1, false);
    const synthetic regression = make_synthetic(6, 2, 4, 1, 1, true);
    {
        classifier_heads per_layer(2, random_pooler(4, 1), 3, false, 0);
        CHECK_THAT(error_of<input_error>([&] { train_pabee(per_layer, s.features, s.targets); }),
                   Contains("train_pabee") && Contains("share one pooler; these have one per layer"));
        classifier_heads shared(2, random_pooler(4, 1), 3, true, 0);
        CHECK_THAT(error_of<input_error>([&] { train_deebert(shared, s.features, s.targets); }),
                   Contains("train_deebert: the heads share one pooler"));
    }
    {
        fastbert_heads h(2, 4, 3, 0, 4, 2);
        CHECK_THAT(error_of<input_error>([&] { train_fastbert(h, s.features, s.targets); }),
                   Contains("train_fastbert: the features have no token states"));
        CHECK_THAT(error_of<input_error>([&] { (void)s.features.token_states(1); }),
                   Contains("no token states (the features were taken from one row per sample)"));
        fastbert_heads r(2, 4, 1, 0, 4, 2);
        CHECK_THAT(error_of<input_error>([&] { train_fastbert(r, regression.features, regression.targets); }),
                   Contains("train_fastbert: needs classification heads (outputs >= 2)"));
        const classifier_heads c(2, random_pooler(4, 1), 1, false, 0);
        CHECK_THAT(error_of<input_error>([&] { (void)train_berxit(c, regression.features, regression.targets); }),
                   Contains("train_berxit: needs classification heads (outputs >= 2)"));
        CHECK_THAT(error_of<usage_error>([&] { (void)h.head(3); }), Contains("fastbert_heads: layer 3 is outside 1..2"));
        CHECK_THROWS_ID_AS(h.head(3), usage_error, "U36");
        CHECK_THAT(error_of<usage_error>([&] { (void)fastbert_heads(2, 4, 3, 0, 5, 2); }),
                   Contains("width 5 does not split into 2 attention heads"));
        CHECK_THROWS_ID_AS((void)fastbert_heads(2, 4, 3, 0, 5, 2), usage_error, "U35");
        const exit_predictor p(2, 4);
        CHECK_THROWS_ID_AS(p.confidence(0, std::vector<float>(4)), usage_error, "U08");
        CHECK_THAT(error_of<usage_error>([&] { (void)p.confidence(0, std::vector<float>(4)); }),
                   Contains("exit_predictor: layer 0 is outside 1..2"));
        CHECK_THAT(error_of<usage_error>([&] { (void)p.confidence(1, std::vector<float>(3)); }),
                   Contains("state has 3 values, the units read 4"));
        CHECK(p.confidence(1, std::vector<float>{1, 2, 3, 4}) == 0.5);
    }
    {
        classifier_heads h(2, random_pooler(4, 1), 3, false, 0);
        head_training_options opt;
        opt.batch_size = 0;
        CHECK_THROWS_ID_AS(train_deebert(h, s.features, s.targets, opt), usage_error, "U07");
        CHECK_THAT(error_of<usage_error>([&] { train_deebert(h, s.features, s.targets, opt); }),
                   Contains("batch_size must be >= 1"));
        opt = {};
        opt.learning_rate = std::numeric_limits<double>::infinity();
        CHECK_THAT(error_of<usage_error>([&] { train_deebert(h, s.features, s.targets, opt); }),
                   Contains("learning_rate must be positive and finite"));
        opt = {};
        opt.epochs = -1;
        CHECK_THAT(error_of<usage_error>([&] { train_deebert(h, s.features, s.targets, opt); }), Contains("epochs must be >= 0"));
        classifier_heads wide(2, random_pooler(5, 1), 3, false, 0);
        CHECK_THAT(error_of<input_error>([&] { train_deebert(wide, s.features, s.targets); }),
                   Contains("the heads read width 5, the features have 4"));
    }
    {
        // Heads reading the mean trained on [CLS] features (and the other way round).
        classifier_heads mean(2, random_pooler(4, 1), 3, false, 0, head_input::mean);
        CHECK_THAT(error_of<input_error>([&] { train_deebert(mean, s.features, s.targets); }),
                   Contains("train_deebert: the heads read the mean row of each sample, the features hold the cls row"));
        CHECK_THAT(error_of<input_error>([&] { (void)train_berxit(mean, s.features, s.targets); }),
                   Contains("train_berxit: the heads read the mean row"));
        synthetic means = s;
        means.features.pooling = head_input::mean;
        classifier_heads cls(2, random_pooler(4, 1), 3, true, 0);
        CHECK_THAT(error_of<input_error>([&] { train_pabee(cls, means.features, means.targets); }),
                   Contains("train_pabee: the heads read the cls row of each sample, the features hold the mean row"));
        CHECK_NOTHROW(train_deebert(mean, means.features, means.targets));
        CHECK_THAT(error_of<input_error>([&] { (void)classifier_heads(2, random_pooler(4, 1), 3, false, 0, head_input::all_tokens); }),
                   Contains("classifier_heads: they read one row per sequence"));
    }
}

TEST_CASE("classifier_heads keep what they read through save and load", "[head_training][io]") {
    const hashee::test::temp_dir dir;
    for (const head_input input : {head_input::cls, head_input::mean}) {
        const classifier_heads h(2, random_pooler(4, 1), 3, false, 5, input);
        h.save(dir.path / "heads.safetensors");
        CHECK(classifier_heads::load(dir.path / "heads.safetensors").input() == input);
        CHECK(safetensors_file::open(dir.path / "heads.safetensors").metadata().at("hashee.head_input") == to_string(input));
    }
    // A file without the metadata (DeeBERT's, PABEE's, ElasticBERT's own) reads [CLS].
    const classifier_heads h(1, random_pooler(4, 1), 2, false, 5, head_input::mean);
    auto tensors = [&](const std::string& pooler, const std::string& classifier) {
        return std::vector<safetensors_tensor>{{pooler + ".weight", {4, 4}, h.pooler(1).weight},
                                               {pooler + ".bias", {4}, h.pooler(1).bias},
                                               {classifier + ".weight", {2, 4}, h.classifier(1).weight},
                                               {classifier + ".bias", {2}, h.classifier(1).bias}};
    };
    const auto t = tensors("bert.encoder.highway.0.pooler.dense", "bert.encoder.highway.0.classifier");
    write_safetensors(dir.path / "deebert.safetensors", t);
    CHECK(classifier_heads::load(dir.path / "deebert.safetensors").input() == head_input::cls);
    write_safetensors(dir.path / "odd.safetensors", t, {{"hashee.head_input", "max"}});
    CHECK_THAT(error_of<weight_error>([&] { (void)classifier_heads::load(dir.path / "odd.safetensors"); }),
               Contains("odd.safetensors") && Contains("metadata 'hashee.head_input' is 'max'; expected 'cls' or 'mean'"));
}
