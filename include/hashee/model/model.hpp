#pragma once
// A Hugging Face model directory loaded for one backend: config.json, model.safetensors,
// vocab.txt (+ tokenizer_config.json), and the sentence-transformers pooling settings when the
// directory has them. Immutable once loaded; share it across threads by const reference.

#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <hashee/backend/backend.hpp>
#include <hashee/model/bert_weights.hpp>
#include <hashee/core/config.hpp>
#include <hashee/model/encoder.hpp>
#include <hashee/model/batching.hpp>
#include <hashee/model/encoder_output.hpp>
#include <hashee/model/hash_setup.hpp>
#include <hashee/model/token_exit.hpp>
#include <hashee/core/detail/json.hpp>
#include <hashee/core/detail/read_file.hpp>
#include <hashee/core/error.hpp>
#include <hashee/core/packed_batch.hpp>
#include <hashee/io/safetensors.hpp>
#include <hashee/text/tokenizer.hpp>

namespace hashee {

/// How token states become one sentence embedding.
struct pooling_config {
    enum class mode { mean, cls };
    mode how = mode::mean;
    bool normalize = false;

    /// sentence-transformers' settings: 1_Pooling/config.json (mean or cls) and a Normalize
    /// module in modules.json. A plain Hugging Face directory gets mean pooling, unnormalised.
    /// Every error names the file it is about, and the field: E40 for a field that is mistyped
    /// or asks for a pooling hashee does not have, E37 for text that is not JSON (E36 too deep).
    static pooling_config from_directory(const std::filesystem::path& dir) {
        pooling_config p;
        const auto pooling_file = dir / "1_Pooling" / "config.json";
        if (detail::optional_file_present(pooling_file)) {
            const std::string name = pooling_file.string();
            const nlohmann::json j = detail::read_json_file(pooling_file);
            if (!j.is_object()) throw format_error("E40", detail::located(name, "not a JSON object"));
            const auto flag = [&](const char* key) {
                const auto it = j.find(key);
                if (it == j.end() || it->is_null()) return false;
                if (!it->is_boolean())
                    throw config_error("E40", detail::located(name, "field '" + std::string(key) + "': must be a boolean, got " +
                                                                        it->dump()));
                return it->get<bool>();
            };
            const bool mean = flag("pooling_mode_mean_tokens");
            const bool cls = flag("pooling_mode_cls_token");
            for (const char* other : {"pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                                      "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"})
                if (flag(other)) throw config_error("E40", detail::located(name, std::string(other) + " is not supported"));
            if (mean == cls)
                throw config_error("E40", detail::located(name, "exactly one of pooling_mode_mean_tokens and "
                                                                "pooling_mode_cls_token must be true"));
            p.how = cls ? mode::cls : mode::mean;
        }
        const auto modules_file = dir / "modules.json";
        if (detail::optional_file_present(modules_file)) {
            const std::string name = modules_file.string();
            const nlohmann::json j = detail::read_json_file(modules_file);
            if (!j.is_array()) throw format_error("E40", detail::located(name, "expected a JSON array"));
            for (std::size_t i = 0; i < j.size(); ++i) {
                const nlohmann::json& m = j[i];
                const std::string where = "module " + std::to_string(i);
                if (!m.is_object()) throw format_error("E40", detail::located(name, where + " is not a JSON object"));
                const auto type = m.find("type");
                if (type == m.end() || type->is_null()) continue;
                if (!type->is_string())
                    throw format_error("E40", detail::located(name, where + ": field 'type' must be a string, got " + type->dump()));
                if (type->get_ref<const std::string&>() == "sentence_transformers.models.Normalize") p.normalize = true;
            }
        }
        return p;
    }

    /// [sequences, hidden] sentence embeddings of an encoder output.
    std::vector<float> apply(const encoder_output& out) const {
        if (how == mode::mean) return out.mean_pooled(normalize);
        std::vector<float> v = out.cls();
        if (normalize)
            for (index_t s = 0; s < out.sequences(); ++s)
                encoder_output::normalize_l2(std::span<float>(v).subspan(s * out.hidden_size, out.hidden_size));
        return v;
    }

};

template <backend B>
class model {
public:
    /// Loads config.json, model.safetensors and the tokenizer files from `dir`.
    static model load(const std::filesystem::path& dir, const B& backend) {
        bert_config config = bert_config::load(dir / "config.json");
        auto file = std::make_shared<const safetensors_file>(safetensors_file::open(dir / "model.safetensors"));
        auto weights = bert_weights<B>::load(std::move(file), config, backend);
        wordpiece_tokenizer tok = wordpiece_tokenizer::from_directory(dir);
        if (tok.vocab().size() != config.vocab_size)
            throw config_error("E11", detail::located((dir / "vocab.txt").string(),
                                               "holds " + std::to_string(tok.vocab().size()) +
                                                   " tokens but config.json says vocab_size " +
                                                   std::to_string(config.vocab_size)));
        return model(bert_encoder<B>(config, std::move(weights)), std::move(tok), pooling_config::from_directory(dir));
    }

    model(bert_encoder<B> encoder, wordpiece_tokenizer tokenizer, pooling_config pooling)
        : encoder_(std::move(encoder)), tokenizer_(std::move(tokenizer)), pooling_(pooling) {}

    const bert_config& config() const { return encoder_.config(); }
    const bert_encoder<B>& encoder() const { return encoder_; }
    const wordpiece_tokenizer& tokenizer() const { return tokenizer_; }
    const pooling_config& pooling() const { return pooling_; }

    /// Tokenises (truncating to the tokenizer's max length) into one packed batch; an error names
    /// the input (batching.hpp).
    packed_batch tokenize(std::span<const text_input> inputs) const {
        if (inputs.empty()) throw input_error("E15", "empty batch: no texts to encode");
        return pack(tokenize_inputs(tokenizer_, inputs));
    }

    /// Tokenises every input (truncated to o.max_length, else the tokenizer's) and cuts them into
    /// batches (batching.hpp): at most o.max_sequences sequences and o.max_tokens tokens each,
    /// sorted by length if asked; each batch names the inputs it holds. Errors name the input.
    std::vector<input_batch> batches(std::span<const text_input> inputs, const batching_options& o = {},
                                     const input_source* source = nullptr) const {
        return make_batches(tokenizer_, inputs, o, source);
    }

    /// Tokenises and runs the encoder, every token through every layer.
    encoder_output forward(const B& backend, std::span<const text_input> inputs) const {
        return encoder_.forward(backend, tokenize(inputs));
    }
    /// Tokenises and runs the encoder under a token-level exit policy (e.g. hash_exit).
    template <token_exit_policy P>
    encoder_output forward(const B& backend, std::span<const text_input> inputs, const P& policy) const {
        return encoder_.forward(backend, tokenize(inputs), policy);
    }

    /// Sentence embeddings, [inputs, hidden], pooled as the model directory says.
    std::vector<float> embed(const B& backend, std::span<const text_input> inputs) const {
        return pooling_.apply(forward(backend, inputs));
    }
    template <token_exit_policy P>
    std::vector<float> embed(const B& backend, std::span<const text_input> inputs, const P& policy) const {
        return pooling_.apply(forward(backend, inputs, policy));
    }

    /// The setup hashes for this model are built with (vocabulary, layers, special tokens).
    hash_setup hash_setup_for() const {
        const wordpiece_tokenizer& t = tokenizer_;
        return {t.vocab().size(), config().num_hidden_layers, {t.cls_id(), t.sep_id(), t.pad_id(), t.unk_id(), t.mask_id()}};
    }

private:
    bert_encoder<B> encoder_;
    wordpiece_tokenizer tokenizer_;
    pooling_config pooling_;
};

} // namespace hashee
