#pragma once
// A fine-tuned model written as a Hugging Face model directory, so that users take it anywhere:
// transformers' AutoModelForSequenceClassification.from_pretrained (a classifier) or
// sentence-transformers (a bi-encoder) loads it, and so do hashee's own model::load, `hashee
// predict` and `hashee embed`.
//  - model.safetensors: every trained tensor, F32, under Hugging Face's names (a classifier's
//    "bert.*" and "classifier.*"; a bi-encoder's names as its source had them, with the source's
//    untrained float tensors, its pooler say, carried over);
//  - config.json: the source's, with architectures, id2label, label2id and problem_type for a
//    classifier;
//  - the source's tokenizer files, and for a bi-encoder its sentence-transformers files.
// Every file is written atomically (a temporary file renamed into place), model.safetensors
// last: a reader sees the previous model or this one, never a part.

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <hashee/backend/training_backend.hpp>
#include <hashee/core/detail/json.hpp>
#include <hashee/core/detail/write_file.hpp>
#include <hashee/core/error.hpp>
#include <hashee/io/safetensors.hpp>
#include <hashee/train/trainable_bert.hpp>

namespace hashee {

/// What a classifier's config.json says about its outputs: one name per label (labels >= 2) or
/// none (regression, one output).
struct checkpoint_labels {
    std::vector<std::string> names; ///< id2label, in class order
    bool regression = false;
};

namespace detail {

/// The bytes of a file (io_error E61 when it cannot be read).
inline std::string read_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw io_error("E61", located(p.string(), "cannot read"));
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Files of a model directory that travel with it: the tokenizer's, and sentence-transformers'.
inline const std::vector<std::string>& model_side_files(bool bi_encoder) {
    static const std::vector<std::string> tokenizer{"vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
    static const std::vector<std::string> both{"vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                               "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                                               "1_Pooling/config.json"};
    return bi_encoder ? both : tokenizer;
}

/// A trained model's tensors (F32, host copies) under their checkpoint names.
template <training_backend B>
std::vector<std::pair<std::string, std::vector<float>>> host_tensors(const trainable_bert<B, float>& m, const B& backend,
                                                                     bool strip_bert_prefix) {
    std::vector<std::pair<std::string, std::vector<float>>> out;
    for (const auto& t : m.tensors()) {
        std::vector<float> v(static_cast<std::size_t>(t.size()));
        backend.download(static_cast<const float*>(t.value.data()), std::span<float>(v));
        out.emplace_back(strip_bert_prefix ? t.name.substr(5) : t.name, std::move(v));
    }
    return out;
}

} // namespace detail

/// Writes `m` fine-tuned from the model in `source_dir` as a Hugging Face model directory
/// `out_dir` (created where missing; io_error E61 where it cannot be). `labels` names a
/// classifier's outputs (their count must be m.labels(), U52 otherwise); it is ignored for an
/// encoder alone (m.labels() == 0).
template <training_backend B>
void save_pretrained(const trainable_bert<B, float>& m, const B& backend, const std::filesystem::path& source_dir,
                     const std::filesystem::path& out_dir, const checkpoint_labels& labels) {
    namespace fs = std::filesystem;
    const bool bi_encoder = m.labels() == 0;
    if (!bi_encoder && (labels.regression ? m.labels() != 1 : static_cast<int>(labels.names.size()) != m.labels()))
        throw usage_error("U52", "save_pretrained: " + std::to_string(labels.names.size()) + " label names for a classifier of " +
                                     std::to_string(m.labels()) + " outputs");
    std::error_code ec;
    fs::create_directories(out_dir / (bi_encoder ? "1_Pooling" : ""), ec);
    if (!fs::is_directory(out_dir)) throw io_error("E61", detail::located(out_dir.string(), "cannot create the model folder"));

    // config.json: the source's, with the head's fields.
    nlohmann::json config = detail::read_json_file(source_dir / "config.json");
    if (!bi_encoder) {
        config["architectures"] = {"BertForSequenceClassification"};
        nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
        const std::vector<std::string> names = labels.regression ? std::vector<std::string>{"LABEL_0"} : labels.names;
        for (std::size_t i = 0; i < names.size(); ++i) {
            id2label[std::to_string(i)] = names[i];
            label2id[names[i]] = static_cast<int>(i);
        }
        config["id2label"] = id2label;
        config["label2id"] = label2id;
        config["num_labels"] = static_cast<int>(names.size());
        config["problem_type"] = labels.regression ? "regression" : "single_label_classification";
    }
    for (const std::string& name : detail::model_side_files(bi_encoder))
        if (fs::is_regular_file(source_dir / name, ec)) detail::write_file_atomically(out_dir / name, detail::read_bytes(source_dir / name));
    detail::write_file_atomically(out_dir / "config.json", config.dump(2) + "\n");

    // model.safetensors, last.
    const auto source = safetensors_file::open(source_dir / "model.safetensors");
    const bool prefixed = source.find("bert.embeddings.word_embeddings.weight") != nullptr;
    auto tensors = detail::host_tensors(m, backend, bi_encoder && !prefixed);
    std::set<std::string> written;
    for (const auto& [name, values] : tensors) written.insert(name);
    if (bi_encoder) // the source's untrained float tensors (its pooler) travel along
        for (const tensor_info& info : source.tensors()) {
            if (written.count(info.name) || !(info.dtype == dtype::f32 || info.dtype == dtype::f16 || info.dtype == dtype::bf16)) continue;
            std::vector<float> storage;
            const auto values = source.floats(info, storage);
            tensors.emplace_back(info.name, std::vector<float>(values.begin(), values.end()));
        }
    // Shapes: the model's for its own tensors (the source may lack the new head), the source's
    // for those carried over.
    std::vector<safetensors_tensor> out;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        std::vector<std::int64_t> shape;
        if (i < m.tensors().size()) {
            const auto& t = m.tensors()[i];
            shape = t.cols == 1 ? std::vector<std::int64_t>{t.rows} : std::vector<std::int64_t>{t.rows, t.cols};
        } else {
            shape = source.at(tensors[i].first).shape;
        }
        out.push_back({tensors[i].first, std::move(shape), tensors[i].second});
    }
    write_safetensors(out_dir / "model.safetensors", out, {{"format", "pt"}});
}

} // namespace hashee
