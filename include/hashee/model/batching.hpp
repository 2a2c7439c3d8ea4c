#pragma once
// Where text meets the model: tokenizer encodings packed into the padding-free batch every
// layer runs on, and the one way hashee splits many inputs into such batches.
//
//   const auto batches = make_batches(tokenizer, inputs, {.max_sequences = 32});
//   for (const input_batch& b : batches) {
//       const auto out = with_input_context(b, &source, [&] { return encoder.forward(cpu, b.tokens); });
//       // sequence k of b is input b.inputs[k]
//   }
//
// Inputs (texts or pairs) are tokenised with truncation to the tokenizer's max length (or the
// one asked for), then cut into batches of at most N sequences and, optionally, at most T tokens.
// Sorting by length (fewer wasted rows in attention) is optional; each batch carries the input
// index of every sequence it holds, so the caller puts the results back in input order. Every
// error names the input: its index, or, given an input_source, the source and the input's number
// (from 1) or line.

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <hashee/core/error.hpp>
#include <hashee/core/packed_batch.hpp>
#include <hashee/text/tokenizer.hpp>

namespace hashee {

inline packed_batch pack(std::span<const encoding> encodings) {
    packed_batch b;
    for (const encoding& e : encodings) b.push_back(e.ids, e.type_ids);
    return b;
}

/// Takes the real tokens (mask == 1) of a right-padded batch.
inline packed_batch pack(const encoded_batch& padded) {
    packed_batch b;
    for (std::size_t s = 0; s < padded.batch; ++s) {
        const std::size_t row = s * padded.seq_len;
        std::size_t n = 0;
        while (n < padded.seq_len && padded.mask[row + n]) ++n;
        for (std::size_t j = n; j < padded.seq_len; ++j)
            if (padded.mask[row + j])
                throw input_error("E60", "packed_batch: row " + std::to_string(s) +
                                             " of the attention mask is not right-padded (a real token at position " +
                                             std::to_string(j) + " follows padding)");
        b.push_back(std::span(padded.ids).subspan(row, n), std::span(padded.type_ids).subspan(row, n));
    }
    return b;
}

/// How many inputs go into one batch, and how they are cut.
struct batching_options {
    std::size_t max_sequences = 32; ///< N: at most this many sequences per batch (>= 1)
    std::size_t max_tokens = 0;     ///< T: at most this many tokens per batch (0: no bound); a
                                    ///< sequence longer than T gets a batch of its own
    std::size_t max_length = 0;     ///< truncation (0: the tokenizer's max length; no_truncation: none)
    bool sort_by_length = false;    ///< batch inputs of similar length together (undo with input_batch::inputs)
};

/// Where inputs came from, for error messages: "long.txt, input 3" (inputs counted from 1), or,
/// with line numbers, "long.txt:4".
struct input_source {
    std::string name;
    std::vector<std::size_t> lines; ///< the line of each input (optional; empty: inputs are counted)

    std::string where(std::size_t input) const {
        if (input < lines.size()) return name + ":" + std::to_string(lines[input]);
        return name + ", input " + std::to_string(input + 1);
    }
};

/// One batch: the packed sequences, and the input each came from (sequence k is input inputs[k]).
struct input_batch {
    packed_batch tokens;
    std::vector<std::size_t> inputs;

    std::size_t size() const { return inputs.size(); }

    /// What an error about this batch is prefixed with: "long.txt, inputs 1 to 1 (sequence k is
    /// input 1 + k)" for consecutive inputs, else the list of them; without a source, the
    /// inputs' indices ("inputs 0 to 31 (sequence k is input 0 + k)").
    std::string describe(const input_source* source = nullptr) const {
        const std::size_t base = source ? 1 : 0;
        std::string s = source ? source->name + ", " : std::string();
        const bool consecutive = std::adjacent_find(inputs.begin(), inputs.end(), [](std::size_t a, std::size_t b) {
                                     return b != a + 1;
                                 }) == inputs.end();
        if (inputs.empty()) return s + "no inputs";
        if (consecutive)
            return s + "inputs " + std::to_string(inputs.front() + base) + " to " + std::to_string(inputs.back() + base) +
                   " (sequence k is input " + std::to_string(inputs.front() + base) + " + k)";
        s += "inputs";
        for (std::size_t k = 0; k < inputs.size(); ++k) s += (k ? ", " : " ") + std::to_string(inputs[k] + base);
        return s + " (sequence k is the k-th of these)";
    }
};

/// Runs f() (a forward over `b`); an input_error it throws is thrown again, with its id, prefixed
/// with b.describe(source), so it names the inputs.
template <class F>
decltype(auto) with_input_context(const input_batch& b, const input_source* source, F&& f) {
    try {
        return f();
    } catch (const input_error& e) {
        throw input_error(e.id(), b.describe(source) + ": " + e.what());
    }
}

namespace detail {
inline void check_batching(const batching_options& o) {
    if (o.max_sequences == 0) throw usage_error("U50", "batching_options: max_sequences must be >= 1");
}

/// Cuts sequences of the given lengths, in the order `order`, into batches under the limits.
inline std::vector<std::vector<std::size_t>> cut(std::span<const std::size_t> lengths, const batching_options& o) {
    std::vector<std::size_t> order(lengths.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    if (o.sort_by_length)
        std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return lengths[a] < lengths[b]; });
    std::vector<std::vector<std::size_t>> out;
    std::size_t tokens = 0;
    for (const std::size_t i : order) {
        const bool full = out.empty() || out.back().size() >= o.max_sequences ||
                          (o.max_tokens > 0 && tokens + lengths[i] > o.max_tokens);
        if (full) {
            out.emplace_back();
            tokens = 0;
        }
        out.back().push_back(i);
        tokens += lengths[i];
    }
    return out;
}
} // namespace detail

/// Batches of encodings already made (options().max_length does not apply: they are as given).
inline std::vector<input_batch> make_batches(std::span<const encoding> encodings, const batching_options& o = {}) {
    detail::check_batching(o);
    std::vector<std::size_t> lengths(encodings.size());
    for (std::size_t i = 0; i < encodings.size(); ++i) lengths[i] = encodings[i].ids.size();
    std::vector<input_batch> out;
    for (const auto& members : detail::cut(lengths, o)) {
        input_batch& b = out.emplace_back();
        b.inputs = members;
        for (const std::size_t i : members) b.tokens.push_back(encodings[i].ids, encodings[i].type_ids);
    }
    return out;
}

/// Tokenises every input (truncated to o.max_length, or the tokenizer's) and batches them. An
/// error names the input (its index, or source->where(i)). No inputs: no batches.
inline std::vector<encoding> tokenize_inputs(const wordpiece_tokenizer& tok, std::span<const text_input> inputs,
                                             std::size_t max_length = 0, const input_source* source = nullptr) {
    std::vector<encoding> encodings;
    encodings.reserve(inputs.size());
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        try {
            const text_input& in = inputs[i];
            // A text or a pair, each by its own call (GCC 12 sees the optional's copy as
            // maybe-uninitialized when it is passed on as it is).
            encodings.push_back(in.second ? tok.encode(in.first, *in.second, max_length) : tok.encode(in.first, std::nullopt, max_length));
        } catch (const input_error& e) {
            throw input_error(e.id(), (source ? source->where(i) : "input " + std::to_string(i)) + ": " + e.what());
        }
    }
    return encodings;
}

inline std::vector<input_batch> make_batches(const wordpiece_tokenizer& tok, std::span<const text_input> inputs,
                                             const batching_options& o = {}, const input_source* source = nullptr) {
    detail::check_batching(o);
    return make_batches(tokenize_inputs(tok, inputs, o.max_length, source), o);
}

/// The packed batches alone, for code that runs them in order and needs no input indices.
inline std::vector<packed_batch> packed_batches(std::vector<input_batch> batches) {
    std::vector<packed_batch> out;
    out.reserve(batches.size());
    for (auto& b : batches) out.push_back(std::move(b.tokens));
    return out;
}

} // namespace hashee
