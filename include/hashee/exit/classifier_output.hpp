#pragma once
// What an early-exit classification returns (classify, classify.hpp): per sample, the logits
// of the head it left with and that head's layer, and the cost of what ran.

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include <hashee/core/cost.hpp>
#include <hashee/core/matrix_view.hpp>

namespace hashee {

struct classifier_output {
    index_t outputs = 0;                   ///< classes; 1 for regression
    std::vector<float> logits;             ///< [sequences, outputs]
    std::vector<std::uint8_t> exit_layers; ///< per sequence: the layer whose head answered
    forward_cost cost;                     ///< encoder layers and heads that ran

    index_t sequences() const { return static_cast<index_t>(exit_layers.size()); }
    std::span<const float> logits_of(index_t s) const {
        return std::span<const float>(logits).subspan(static_cast<std::size_t>(s * outputs), static_cast<std::size_t>(outputs));
    }
    /// argmax of sample s's logits (classification).
    int predicted_class(index_t s) const {
        const auto z = logits_of(s);
        return static_cast<int>(std::max_element(z.begin(), z.end()) - z.begin());
    }
    /// Sample s's single output (regression).
    float value(index_t s) const { return logits_of(s)[0]; }
};

} // namespace hashee
