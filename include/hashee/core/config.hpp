#pragma once
// config.json of a Hugging Face BERT or ElasticBERT checkpoint.
//
// Strict: a field hashee does not know is an error, and so is a value it does not support
// (another activation, relative position embeddings, a decoder, ...). The fields real BERT and
// ElasticBERT configs carry that do not change inference (dropout rates, labels, generation
// defaults, ...) are listed explicitly and ignored. See docs/formats.md.

#include <hashee/core/detail/json.hpp>
#include <hashee/core/detail/read_file.hpp>
#include <hashee/core/error.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <limits>
#include <set>
#include <string>
#include <string_view>

namespace hashee {

struct bert_config {
    std::string model_type;  ///< "bert" or "elasticbert"
    int hidden_size = 0;
    int num_hidden_layers = 0;
    int num_attention_heads = 0;
    int intermediate_size = 0;
    std::string hidden_act;  ///< only "gelu" (exact erf)
    double layer_norm_eps = 0.0;
    int max_position_embeddings = 0;
    int type_vocab_size = 0;
    int vocab_size = 0;
    int pad_token_id = 0;

    int head_dim() const noexcept { return hidden_size / num_attention_heads; }

    /// Parses config.json text; `source` names it in messages. format_error when the text is
    /// not a JSON object, config_error for a missing, mistyped, unknown or unsupported field.
    static bert_config parse(std::string_view json_text, const std::string& source);

    /// Reads and parses a config.json file: io_error when it cannot be read, else as parse.
    static bert_config load(const std::filesystem::path& file);
};

namespace detail {

/// Fields of real BERT / ElasticBERT configs (and of transformers' PretrainedConfig) that do
/// not affect encoder inference; accepted and ignored, whatever their value.
inline bool is_ignored_config_field(std::string_view key) noexcept {
    static constexpr std::string_view ignored[] = {
        // provenance
        "_name_or_path", "_commit_hash", "_attn_implementation", "_attn_implementation_autoset",
        "architectures", "transformers_version", "torch_dtype", "dtype", "use_bfloat16",
        "tokenizer_class", "prefix",
        // training-only
        "attention_probs_dropout_prob", "hidden_dropout_prob", "classifier_dropout",
        "initializer_range", "gradient_checkpointing", "tf_legacy_loss",
        // task heads / labels
        "id2label", "label2id", "num_labels", "problem_type", "finetuning_task",
        "task_specific_params",
        // output / runtime switches
        "output_hidden_states", "output_attentions", "return_dict", "torchscript", "use_cache",
        "output_past", "chunk_size_feed_forward", "tie_word_embeddings",
        "tie_encoder_decoder", "cross_attention_hidden_size",
        // special token ids other than padding
        "bos_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id",
        "forced_bos_token_id", "forced_eos_token_id",
        // generation defaults
        "max_length", "min_length", "do_sample", "early_stopping", "num_beams",
        "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
        "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
        "output_scores", "return_dict_in_generate", "remove_invalid_values",
        "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
        // original Google BERT (e.g. bert-base-chinese) pooler description
        "directionality", "pooler_fc_size", "pooler_num_attention_heads",
        "pooler_num_fc_layers", "pooler_size_per_head", "pooler_type",
        // ElasticBERT: how many exit classifiers the checkpoint was configured with
        "num_output_layers", "max_output_layers",
    };
    return std::find(std::begin(ignored), std::end(ignored), key) != std::end(ignored);
}

/// config_error `id` "<source>: field '<field>': <what>".
[[noreturn]] inline void config_field_error(std::string_view id, const std::string& source, std::string_view field,
                                            const std::string& what) {
    throw config_error(id, located(source, "field '" + std::string(field) + "': " + what));
}

} // namespace detail

inline bert_config bert_config::parse(std::string_view json_text, const std::string& source) {
    using json = nlohmann::json;
    // E38: a field missing, mistyped, repeated or out of range; E09: a value hashee does not
    // support; E10: a field hashee does not know.
    auto fail = [&](std::string_view field, const std::string& what) {
        detail::config_field_error("E38", source, field, what);
    };
    auto unsupported = [&](std::string_view field, const std::string& what) {
        detail::config_field_error("E09", source, field, what);
    };

    // Duplicate top-level keys would be silently collapsed by nlohmann; reject them.
    std::set<std::string> seen;
    detail::json_options opt;
    opt.on_event = [&](int depth, json::parse_event_t event, const json& parsed) {
        if (event != json::parse_event_t::key || depth != 1) return;
        const auto& k = parsed.get_ref<const std::string&>();
        if (!seen.insert(k).second) fail(k, "appears twice");
    };
    const json root = detail::parse_json(json_text, source, opt);
    if (!root.is_object()) throw format_error("E37", detail::located(source, "not a JSON object"));

    bert_config c;
    // Unknown fields first: a typo must not hide behind a later "missing field".
    static constexpr std::string_view handled[] = {
        "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "hidden_act", "layer_norm_eps", "max_position_embeddings",
        "type_vocab_size", "vocab_size", "pad_token_id", "position_embedding_type",
        "is_decoder", "add_cross_attention", "is_encoder_decoder", "pruned_heads",
    };
    for (const auto& [key, value] : root.items()) {
        if (std::find(std::begin(handled), std::end(handled), key) != std::end(handled)) continue;
        if (detail::is_ignored_config_field(key)) continue;
        detail::config_field_error("E10", source, key, "unknown field (hashee does not know what it would change)");
    }

    auto required = [&](const char* field) -> const json& {
        auto it = root.find(field);
        if (it == root.end()) detail::config_field_error("E38", source, field, "required field is missing");
        return *it;
    };
    auto get_int = [&](const char* field) -> int {
        const json& v = required(field);
        if (!v.is_number_integer()) fail(field, "must be an integer, got " + v.dump());
        if (v.is_number_unsigned()) {
            const auto u = v.get<std::uint64_t>();
            if (u > static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
                fail(field, "value " + v.dump() + " is out of range");
            return static_cast<int>(u);
        }
        const auto s = v.get<std::int64_t>();
        if (s < std::numeric_limits<int>::min() || s > std::numeric_limits<int>::max())
            fail(field, "value " + v.dump() + " is out of range");
        return static_cast<int>(s);
    };
    auto get_string = [&](const char* field) -> std::string {
        const json& v = required(field);
        if (!v.is_string()) fail(field, "must be a string, got " + v.dump());
        return v.get<std::string>();
    };
    auto positive = [&](const char* field, int v) {
        if (v <= 0) fail(field, "must be positive, got " + std::to_string(v));
    };

    c.model_type = get_string("model_type");
    c.hidden_size = get_int("hidden_size");
    c.num_hidden_layers = get_int("num_hidden_layers");
    c.num_attention_heads = get_int("num_attention_heads");
    c.intermediate_size = get_int("intermediate_size");
    c.hidden_act = get_string("hidden_act");
    {
        const json& v = required("layer_norm_eps");
        if (!v.is_number()) fail("layer_norm_eps", "must be a number, got " + v.dump());
        c.layer_norm_eps = v.get<double>();
    }
    c.max_position_embeddings = get_int("max_position_embeddings");
    c.type_vocab_size = get_int("type_vocab_size");
    c.vocab_size = get_int("vocab_size");
    c.pad_token_id = get_int("pad_token_id");

    if (c.model_type != "bert" && c.model_type != "elasticbert")
        unsupported("model_type", "'" + c.model_type + "' is not supported (bert, elasticbert)");
    if (c.hidden_act != "gelu")
        unsupported("hidden_act", "'" + c.hidden_act + "' is not supported (only \"gelu\", exact erf)");
    positive("hidden_size", c.hidden_size);
    positive("num_hidden_layers", c.num_hidden_layers);
    positive("num_attention_heads", c.num_attention_heads);
    positive("intermediate_size", c.intermediate_size);
    positive("max_position_embeddings", c.max_position_embeddings);
    positive("type_vocab_size", c.type_vocab_size);
    positive("vocab_size", c.vocab_size);
    if (c.hidden_size % c.num_attention_heads != 0)
        fail("hidden_size", std::to_string(c.hidden_size) + " is not divisible by num_attention_heads " +
                                std::to_string(c.num_attention_heads));
    if (c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size)
        fail("pad_token_id", std::to_string(c.pad_token_id) + " is outside [0, vocab_size " +
                                 std::to_string(c.vocab_size) + ")");
    if (!(c.layer_norm_eps > 0.0) || !std::isfinite(c.layer_norm_eps))
        fail("layer_norm_eps", "must be positive and finite, got " + root["layer_norm_eps"].dump());

    // Optional fields whose non-default values hashee does not implement.
    if (auto it = root.find("position_embedding_type"); it != root.end()) {
        if (!it->is_string())
            fail("position_embedding_type", "must be a string, got " + it->dump());
        if (it->get_ref<const std::string&>() != "absolute")
            unsupported("position_embedding_type",
                        it->dump() + " is not supported (only \"absolute\")");
    }
    for (const char* flag : {"is_decoder", "add_cross_attention", "is_encoder_decoder"}) {
        auto it = root.find(flag);
        if (it == root.end()) continue;
        if (!it->is_boolean()) fail(flag, "must be a boolean, got " + it->dump());
        if (it->get<bool>()) unsupported(flag, "true is not supported (encoder-only BERT)");
    }
    if (auto it = root.find("pruned_heads"); it != root.end()) {
        if (!it->is_object()) fail("pruned_heads", "must be an object, got " + it->dump());
        if (!it->empty()) unsupported("pruned_heads", "pruned attention heads are not supported");
    }
    return c;
}

inline bert_config bert_config::load(const std::filesystem::path& file) {
    return parse(detail::read_text_file(file, detail::max_json_size), file.string());
}

} // namespace hashee
