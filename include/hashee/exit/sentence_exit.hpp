#pragma once
// Sentence-level exit policies (hashee-spec section 7): after layer l every sample still
// running shows its internal classifier's logits (and its sentence state) to the policy, which
// says whether the sample leaves the batch now with head l's prediction. Every sample leaves
// at the policy's depth at the latest.
//  - no_exit            the full depth (L); only head L is read (exit_policy.hpp).
//  - static_exit        the first k layers; only head k is read.
//  - entropy_exit       DeeBERT: H(p_l) < threshold.
//  - fastbert_exit      FastBERT: H(p_l) / log C < speed.
//  - patience_exit      PABEE: the prediction has not changed for `patience` consecutive layers
//                       (regression: |y_l - y_(l-1)| < tau).
//  - learned_exit       BERxiT: a learned predictor is confident enough that head l is right.
// composed_exit puts one of these on top of a token-level policy (e.g. hash_exit): tokens
// leave inside the sample, samples leave the batch.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include <hashee/core/detail/softmax.hpp>
#include <hashee/core/error.hpp>
#include <hashee/exit/exit_policy.hpp>

namespace hashee {

/// What a sentence-level policy sees of one running sample after layer `layer`.
struct exit_signal {
    int layer = 0, num_layers = 0;
    std::span<const float> logits; ///< head `layer`'s output for this sample (1 value: regression)
    /// this sample's sentence state after `layer`: the row its heads read ([CLS] or the mean of
    /// its tokens, as the heads' head_input says; [CLS] for heads that read every token)
    std::span<const float> state;
};

template <class P>
concept sentence_exit_policy =
    std::default_initializable<typename P::sample_state> && std::copyable<typename P::sample_state> &&
    requires(const P& p, typename P::sample_state& state, const exit_signal& signal, int num_layers) {
        { P::reads_every_layer } -> std::convertible_to<bool>; ///< false: only the head at depth() runs
        { p.depth(num_layers) } -> std::convertible_to<int>;   ///< the deepest layer a sample reaches
        { p.should_exit(state, signal) } -> std::same_as<bool>;
    };

namespace detail {
inline int argmax(std::span<const float> z) {
    return static_cast<int>(std::max_element(z.begin(), z.end()) - z.begin());
}
inline void require_classes(std::span<const float> z, const char* policy) {
    if (z.size() < 2)
        throw input_error("E26", std::string(policy) + " needs classification heads (2 or more outputs); these have " +
                          std::to_string(z.size()));
}
} // namespace detail

/// The first k layers, for every sample.
struct static_exit {
    int k = 1;
    struct sample_state {};
    static constexpr bool reads_every_layer = false;
    int depth(int num_layers) const {
        if (k < 1) throw usage_error("U38", "static_exit: k must be at least 1, not " + std::to_string(k));
        return std::min(k, num_layers);
    }
    bool should_exit(sample_state&, const exit_signal&) const { return false; }
};

/// DeeBERT: exit at the first layer whose prediction entropy is below `threshold` (nats).
struct entropy_exit {
    double threshold = 0.0;
    struct sample_state {};
    static constexpr bool reads_every_layer = true;
    int depth(int num_layers) const { return num_layers; }
    bool should_exit(sample_state&, const exit_signal& s) const {
        detail::require_classes(s.logits, "entropy_exit");
        return detail::softmax_entropy(s.logits) < threshold;
    }
};

/// FastBERT: exit when the normalised entropy H(p) / log C is below `speed` (0..1).
struct fastbert_exit {
    double speed = 0.0;
    struct sample_state {};
    static constexpr bool reads_every_layer = true;
    int depth(int num_layers) const { return num_layers; }
    bool should_exit(sample_state&, const exit_signal& s) const {
        detail::require_classes(s.logits, "fastbert_exit");
        return detail::softmax_entropy(s.logits) / std::log(static_cast<double>(s.logits.size())) < speed;
    }
};

/// PABEE: exit once `patience` consecutive layers agree with the layer before them
/// (classification: the same argmax; regression, one output: |y_l - y_(l-1)| < tau).
struct patience_exit {
    int patience = 1;
    double tau = 0.0; ///< regression only
    struct sample_state {
        int agreeing = 0;
        bool seen = false;
        float previous = 0.0f;
    };
    static constexpr bool reads_every_layer = true;
    int depth(int num_layers) const {
        if (patience < 1) throw usage_error("U38", "patience_exit: patience must be at least 1, not " + std::to_string(patience));
        return num_layers;
    }
    bool should_exit(sample_state& st, const exit_signal& s) const {
        const bool regression = s.logits.size() == 1;
        const float now = regression ? s.logits[0] : static_cast<float>(detail::argmax(s.logits));
        const bool agrees = regression ? std::abs(now - st.previous) < tau : now == st.previous;
        st.agreeing = st.seen && agrees ? st.agreeing + 1 : 0;
        st.seen = true;
        st.previous = now;
        return st.agreeing >= patience;
    }
};

/// What learned_exit asks of its predictor: how sure it is, from layer l's sentence state, that
/// head l is right.
template <class P>
concept exit_confidence = requires(const P& p, int layer, std::span<const float> state) {
    { p.confidence(layer, state) } -> std::convertible_to<double>;
};

/// BERxiT: exit when the learned predictor's confidence reaches `threshold`.
template <exit_confidence Predictor>
struct learned_exit {
    std::shared_ptr<const Predictor> predictor;
    double threshold = 0.5;
    struct sample_state {};
    static constexpr bool reads_every_layer = true;
    int depth(int num_layers) const {
        if (!predictor) throw usage_error("U38", "learned_exit: no predictor");
        return num_layers;
    }
    bool should_exit(sample_state&, const exit_signal& s) const { return predictor->confidence(s.layer, s.state) >= threshold; }
};

/// A token-level policy inside, a sentence-level one on top.
template <token_exit_policy Token, sentence_exit_policy Sentence>
struct composed_exit {
    Token token;
    Sentence sentence;
};

/// What an early-exit classification accepts: a sentence-level policy (every token runs
/// every layer the sample runs) or a composed_exit.
template <class P>
concept classification_exit_policy = sentence_exit_policy<P> || requires(const P& p) {
    requires token_exit_policy<std::remove_cvref_t<decltype(p.token)>>;
    requires sentence_exit_policy<std::remove_cvref_t<decltype(p.sentence)>>;
};

static_assert(sentence_exit_policy<no_exit>);
static_assert(sentence_exit_policy<static_exit>);
static_assert(sentence_exit_policy<entropy_exit>);
static_assert(sentence_exit_policy<fastbert_exit>);
static_assert(sentence_exit_policy<patience_exit>);

} // namespace hashee
